"""The package as a user installs it: an sdist and a wheel from ``python -m build``, the wheel in a
fresh virtual environment, used from a folder outside the clone.

The tests marked ``wheel`` (``make test-wheel``, ``pytest -m wheel``) build both archives (the
wheel from the sdist, as ``python -m build`` does), make a fresh venv *without* system site
packages and without pip (the test's own pip installs into it with ``--python``), install the
wheel's run-time dependencies there, then the wheel with ``--no-deps``, check the result with
``pip check``, and run from a temporary folder outside the clone:

* ``elm-neuro --version`` (the version written once, in ``elm_neuro/__init__.py``);
* ``elm-neuro budget`` (the exact parameter count, computed here with the package under test);
* ``from elm_neuro import ...`` (every public name, ``py.typed``, modules loaded from the venv);
* the missing optional dependency (Ray) named with its ``pip install``;
* ``elm-neuro demo`` at its smallest real size (``--params 6000 --epochs 1 --batches-per-epoch 2``;
  the demo's data set has no size option: it always makes its 3000 + 1000 synthetic digits).

Why a venv without system site packages: a ``--system-site-packages`` venv over an interpreter
that has no elm_neuro would see whatever else that interpreter has (here: none of torch, numba,
...), so the install would not be what a user gets. torch is installed pinned to the version of
the environment running the tests (``torch==2.13.0`` from ``make``), which pip takes from a local
wheel where one is on the machine. Other dependencies are resolved by pip from the index.

Time on the 2-core machine with another job running (the CI's suite): build 2 s, venv 1 s,
dependencies 60-70 s (torch's wheel alone 34 s), commands 10 s, demo 75-80 s (Numba compiles
every kernel on first use: no cache in a fresh install): about 2.5 min in all. That is too long for
the ordinary suite, so the marked tests run only when selected with ``-m wheel`` (they skip
otherwise, saying so); the cheap checks of this file (version in one place, package data, the
missing-dependency message, no path out of the package) run in the ordinary suite.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import elm_neuro

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "elm_neuro"
VERSION = elm_neuro.__version__
OPTIONAL = ("ray", "tonic", "snntorch", "nir", "lauscher")  # in no run-time dependency
BUDGET_CASE = {"preset": "shd-adding", "d_m": 4, "n": 20}
DEMO_ARGS = ["--params", "6000", "--epochs", "1", "--batches-per-epoch", "2", "--workers", "1", "--no-progress"]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --------------------------------------------------------------------------- cheap checks (ordinary suite)
def test_version_is_written_once():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "elm_neuro.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    assert re.search(rf'^__version__ = "{re.escape(VERSION)}"$', (PACKAGE / "__init__.py").read_text(), re.M)
    out = subprocess.run([sys.executable, "-m", "elm_neuro.cli.main", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"elm-neuro {VERSION}"
    # the newest CHANGELOG entry is this version
    entries = re.findall(r"^## \[(\S+)\] - (\d{4}-\d\d-\d\d)$", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert entries and entries[0][0] == VERSION, entries


def test_package_data_is_declared_and_inside_the_package():
    declared = _pyproject()["tool"]["setuptools"]["package-data"]["elm_neuro"]
    assert "py.typed" in declared and (PACKAGE / "py.typed").is_file()
    # every file of the package that is not a module is declared (nothing is left out of the wheel)
    data = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)
    assert data == sorted(declared), f"files under elm_neuro/ not declared as package data: {data}"


# Every use of __file__ in the package, and the folder it names: the package's own folder, or the
# folder that holds the package (the import root that a subprocess gets on PYTHONPATH: site-packages
# when installed). Anything else (parents[1] of a module reaching the repository's datasets/ or docs/)
# does not exist in an installed wheel.
FILE_USES = {
    "atomic.py": "Path(__file__).resolve().parent",
    "networks/engines/triton_compile.py": "Path(__file__).resolve().parents[3]",
}


def test_no_path_leaves_the_package():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "__file__" in line and not line.lstrip().startswith("#"):
                found.setdefault(path.relative_to(PACKAGE).as_posix(), []).append(line.strip())
    assert set(found) == set(FILE_USES), f"uses of __file__ to check: {found}"
    for rel, expr in FILE_USES.items():
        assert len(found[rel]) == 1 and expr in found[rel][0], (rel, found[rel])
    # parents[3] of elm_neuro/networks/engines/X.py is the folder that holds elm_neuro/, not above it
    assert (PACKAGE / "networks/engines/triton_compile.py").resolve().parents[3] == PACKAGE.resolve().parent


def test_missing_optional_dependency_names_the_pip_command():
    from elm_neuro.cli.main import EXIT_BAD_INPUT, EXIT_FAILURE, _describe

    code, line = _describe(ModuleNotFoundError("No module named 'ray'", name="ray"))
    assert code == EXIT_BAD_INPUT and "'ray'" in line and "pip install 'elm_neuro[distributed]'" in line
    code, line = _describe(ImportError("the ray executor needs Ray: pip install elm_neuro[distributed]"))
    assert code == EXIT_BAD_INPUT and line == "the ray executor needs Ray: pip install elm_neuro[distributed]"
    code, line = _describe(ModuleNotFoundError("No module named 'numba.core'", name="numba.core"))
    assert code == EXIT_FAILURE and "'numba'" in line and "pip install numba" in line
    code, line = _describe(ImportError("cannot import name 'x' from 'y'"))  # a bug, not a missing package
    assert code == EXIT_FAILURE and line.startswith("unexpected ImportError")


# --------------------------------------------------------------------------- the wheel (pytest -m wheel)
def _selected(request) -> None:
    if "wheel" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("builds and installs the wheel in a fresh venv (about 2.5 min): run with -m wheel "
                    "(make test-wheel)")


def _env(venv: Path) -> dict:
    """The environment of a command in ``venv``: its bin/ first on PATH, nothing pointing at the clone."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(venv)
    return env


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = 600, ok: bool = True):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert out.returncode == 0, f"{cmd} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _runtime_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist without extras, torch pinned to the torch of this environment."""
    import torch
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = []
    for line in meta.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement
        if req.name == "torch":
            mine = torch.__version__.split("+")[0]
            assert req.specifier.contains(mine, prereleases=True), (str(req), mine)
            reqs.append(f"torch=={mine}")
        else:
            reqs.append(str(req))
    return reqs


@pytest.fixture(scope="module")
def installed(request, tmp_path_factory):
    """(venv, working folder outside the clone, dist folder): the wheel installed in a fresh venv."""
    _selected(request)
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.fail("python -m build is missing: pip install -e '.[test]' (the test extra has it)")
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.parents and root != REPO
    # a copy of what the sdist is made of, so that building writes nothing (build/, egg-info) in the clone
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / "elm_neuro", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = root / "dist"
    # --no-isolation: the build backend (setuptools) of this environment, no download for an isolated one
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], cwd=root, timeout=300)
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, timeout=120)
    venv_py = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", venv_py]
    wheel = next(dist.glob("*.whl"))
    _run(pip + ["install", "-q", *_runtime_requirements(wheel)], cwd=root, timeout=600)
    _run(pip + ["install", "-q", "--no-deps", wheel], cwd=root, timeout=120)
    _run(pip + ["check"], cwd=root, timeout=120)
    work = root / "work"  # outside the clone: nothing of the repository is on the path
    work.mkdir()
    return venv, work, dist


@pytest.mark.wheel
def test_sdist_and_wheel_hold_the_package(installed):
    _, _, dist = installed
    sdists, wheels = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    assert [p.name for p in sdists] == [f"elm_neuro-{VERSION}.tar.gz"]
    assert [p.name for p in wheels] == [f"elm_neuro-{VERSION}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        meta = z.read(f"elm_neuro-{VERSION}.dist-info/METADATA").decode()
        scripts = z.read(f"elm_neuro-{VERSION}.dist-info/entry_points.txt").decode()
    modules = {("elm_neuro" / p.relative_to(PACKAGE)).as_posix() for p in PACKAGE.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules - names == set(), "modules missing from the wheel"
    assert "elm_neuro/py.typed" in names
    assert not {n for n in names if not n.startswith(("elm_neuro/", f"elm_neuro-{VERSION}.dist-info/"))}
    assert f"\nVersion: {VERSION}\n" in meta and "elm-neuro = elm_neuro.cli.main:main" in scripts
    assert not re.search(r"^Requires-Dist: (ray|tonic|snntorch|nir|lauscher)\b(?!.*extra ==)", meta, re.M)


@pytest.mark.wheel
def test_installed_version(installed):
    venv, work, _ = installed
    out = _run([venv / "bin" / "elm-neuro", "--version"], cwd=work, env=_env(venv), timeout=300)
    assert out.stdout.strip() == f"elm-neuro {VERSION}"


@pytest.mark.wheel
def test_installed_budget(installed):
    from elm_neuro import preset_config

    venv, work, _ = installed
    case = BUDGET_CASE
    b = preset_config(case["preset"], d_m=case["d_m"], n=case["n"]).budget()
    args = [venv / "bin" / "elm-neuro", "budget", "--preset", case["preset"], "--d-m", str(case["d_m"]),
            "--n", str(case["n"])]
    out = _run(args + ["--json"], cwd=work, env=_env(venv), timeout=300)
    assert json.loads(out.stdout) == {"N": case["n"], "d_m": case["d_m"], "k_e": b.k_e, "k_c": b.k_c, "P": b.p}
    out = _run(args, cwd=work, env=_env(venv), timeout=300)
    assert out.stdout.strip() == f"N={case['n']}  d_m={case['d_m']}  k_e={b.k_e}  k_c={b.k_c}  P={b.p}"


IMPORT_CHECK = """
import importlib.resources, importlib.util, json, sys
import elm_neuro
from elm_neuro import *  # every public name (__all__) resolves
from elm_neuro import ELMNetwork, preset_config, closest_n
names = {n: getattr(elm_neuro, n).__module__ for n in elm_neuro.__all__}
net = ELMNetwork.from_preset("shd-adding", d_m=4, n=20)
cfg = preset_config("lif-shd-adding", n=30)
n = closest_n(lambda k: cfg.replace(n=k).budget().p, 20000)
optional = {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}
print(json.dumps({"file": elm_neuro.__file__, "version": elm_neuro.__version__, "names": sorted(names),
                  "p": net.budget().p, "closest_n": n, "typed": importlib.resources.files("elm_neuro")
                  .joinpath("py.typed").is_file(), "optional": optional, "path": sys.path}))
"""


@pytest.mark.wheel
def test_installed_imports(installed):
    from elm_neuro import ELMNetwork, preset_config, closest_n

    venv, work, _ = installed
    out = _run([venv / "bin" / "python", "-c", IMPORT_CHECK, *OPTIONAL], cwd=work, env=_env(venv), timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    site = Path(got["file"]).resolve()
    assert venv.resolve() in site.parents and "site-packages" in site.parts, got["file"]
    assert not [p for p in got["path"] if p and (Path(p).resolve() == REPO or REPO in Path(p).resolve().parents)]
    assert got["version"] == VERSION and got["names"] == sorted(elm_neuro.__all__) and got["typed"]
    assert got["p"] == ELMNetwork.from_preset("shd-adding", d_m=4, n=20).budget().p
    cfg = preset_config("lif-shd-adding", n=30)
    assert got["closest_n"] == closest_n(lambda k: cfg.replace(n=k).budget().p, 20000)
    assert got["optional"] == {m: False for m in OPTIONAL}, "the fresh venv has an optional package"


@pytest.mark.wheel
def test_installed_without_extras(installed):
    venv, work, _ = installed
    env = _env(venv)
    # the ray executor without Ray: one line naming it and the pip command, exit 2, nothing written
    out = _run([venv / "bin" / "elm-neuro", "sweep", "--executor", "ray", "--out", work / "sweep-ray",
                "--d-m", "2,4", "--params", "3000", "--data", work / "no-data"], cwd=work, env=env, ok=False)
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip()
    assert "\n" not in err and "Ray" in err and "pip install elm_neuro[distributed]" in err, err
    assert not (work / "sweep-ray").exists()
    # tonic-style datasets need no tonic
    _run([venv / "bin" / "python", "-c", "import elm_neuro.data.tonic_adapter as t; t.SHDEventDataset"],
         cwd=work, env=env, timeout=300)


@pytest.mark.wheel
def test_installed_demo(installed):
    venv, work, _ = installed
    out_dir = work / "demo"
    out = _run([venv / "bin" / "elm-neuro", "demo", "--out", out_dir, *DEMO_ARGS], cwd=work, env=_env(venv))
    report = out_dir / "compare" / "report.md"
    assert f"report: {report}" in out.stdout
    text = report.read_text()
    assert "# shd-adding: models at P ≈ 6000" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if re.match(r"\| (elm|lif) \|", line)}
    assert set(rows) == {"elm", "lif"}, text
    for name in ("compare/learning_curves.png", "timescales.png"):
        assert (out_dir / name).stat().st_size > 1000, name
    # the trained run loads with the installed package; nothing written names the clone
    check = ("import sys, elm_neuro; run = elm_neuro.load_run(sys.argv[1]); "
             "print(type(run.model).__name__, run.model_config.budget().p)")
    loaded = _run([venv / "bin" / "python", "-c", check, out_dir / "compare" / "elm-s0"], cwd=work, env=_env(venv),
                  timeout=300)
    name, p = loaded.stdout.split()
    assert name == "ELMNetwork" and f"| {p} |" in rows["elm"]
    for path in out_dir.rglob("*"):
        if path.suffix in (".json", ".md", ".csv", ".txt"):
            assert str(REPO) not in path.read_text(errors="replace"), path
