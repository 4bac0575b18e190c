"""The package's layering, checked on every import of every module (function-local ones included).

    base (defaults, atomic) -> neurons, wiring -> networks -> data -> training | analysis
        -> experiments -> cli

A module may import from its own package and from the layers below it. Also: the base modules
import nothing from the package; ``data`` never imports ``networks``; ``training`` and
``analysis`` are siblings and never import each other (nor do other same-level packages); nothing
outside ``cli`` imports ``cli``. ``elm_neuro/__init__.py`` is the public façade on top of every
layer (and is itself imported by no module of the package).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

import elm_neuro

ROOT = Path(elm_neuro.__file__).resolve().parent
PKG = "elm_neuro"

# Layer of each part of the package (the first name below ``elm_neuro``); equal ranks are siblings.
LAYERS = {
    "defaults": 0, "atomic": 0,
    "neurons": 1, "wiring": 1,
    "networks": 2,
    "data": 3, "interop": 3,
    "training": 4, "analysis": 4,
    "experiments": 5,
    "cli": 6,
}
FACADE_RANK = 7  # elm_neuro/__init__.py
BASE = {"defaults", "atomic"}
FORBIDDEN = {("data", "networks")}  # (importer part, imported part) pairs ruled out on top of the ranks


class Violation(NamedTuple):
    module: str
    line: int
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} ({self.reason})"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_module(name: str) -> bool:
    """Whether ``name`` (dotted, under elm_neuro) is a module or package on disk."""
    base = ROOT.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _part(name: str) -> str | None:
    """The part of the package a module belongs to (``training``, ``defaults``...); None for the façade."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def _rank(part: str | None) -> int:
    return FACADE_RANK if part is None else LAYERS[part]


def imported_modules(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a package module in ``source``, at any depth, relative
    imports resolved; ``from X import name`` gives ``X.name`` when that is a module, else ``X``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == PKG]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PKG:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((node.lineno, sub if a.name != "*" and _is_module(sub) else base))
    return sorted(found)


def check_source(module: str, source: str, is_package: bool = False) -> list[Violation]:
    """The layering violations of one module's source (see the module docstring)."""
    me = _part(module)
    if me is not None and me not in LAYERS:
        return [Violation(module, 0, module, f"{PKG}.{me} has no layer: add it to LAYERS")]
    out = []
    for line, target in imported_modules(module, source, is_package):
        them = _part(target)
        if them is not None and them not in LAYERS:
            out.append(Violation(module, line, target, f"{PKG}.{them} has no layer: add it to LAYERS"))
        elif them == me:
            continue
        elif me in BASE:
            out.append(Violation(module, line, target, "base modules import nothing from the package"))
        elif them == "cli" and me != "cli":
            out.append(Violation(module, line, target, "only cli modules import cli"))
        elif _rank(them) > _rank(me):
            out.append(Violation(module, line, target, f"upward: {me} (layer {_rank(me)}) below "
                                                       f"{them or 'the façade'} (layer {_rank(them)})"))
        elif _rank(them) == _rank(me):
            out.append(Violation(module, line, target, f"sideways: {me} and {them} are siblings"))
        elif (me, them) in FORBIDDEN:
            out.append(Violation(module, line, target, f"{me} must not import {them}"))
    return out


def test_every_import_follows_the_layers():
    violations = []
    for name, path in all_modules().items():
        violations += check_source(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")
    assert not violations, "layering violations:\n" + "\n".join(map(str, violations))


def test_the_check_sees_the_whole_package():
    mods = all_modules()
    n_files = sum(1 for _ in ROOT.rglob("*.py"))
    assert len(mods) == n_files >= 60
    seen_parts = {_part(m) for m in mods}
    assert set(LAYERS) <= seen_parts, f"layers without modules: {set(LAYERS) - seen_parts}"
    for name in ("elm_neuro", "elm_neuro.defaults", "elm_neuro.training.trainer", "elm_neuro.experiments.sweep",
                 "elm_neuro.experiments.run_analysis", "elm_neuro.cli.main", "elm_neuro.analysis.timescales"):
        assert name in mods
    edges = [(m, t) for m, p in mods.items()
             for _, t in imported_modules(m, p.read_text(encoding="utf-8"), p.name == "__init__.py")]
    assert len(edges) >= 150, f"only {len(edges)} package imports found"
    # function-local imports are seen (cli imports its commands' implementations when they run)
    local = imported_modules("elm_neuro.cli.demo", mods["elm_neuro.cli.demo"].read_text(encoding="utf-8"))
    assert any(t == "elm_neuro.experiments.demo" for _, t in local)


@pytest.mark.parametrize("module, source, line, imported, reason", [
    ("elm_neuro.training.fake", "import os\n\ndef f():\n    from elm_neuro.experiments.sweep import run_sweep\n",
     4, "elm_neuro.experiments.sweep", "upward"),
    ("elm_neuro.training.fake", "from ..analysis import timescales as TS\n", 1, "elm_neuro.analysis.timescales",
     "sideways"),
    ("elm_neuro.analysis.fake", "class A:\n    import elm_neuro.training.run\n", 2, "elm_neuro.training.run",
     "sideways"),
    ("elm_neuro.data.fake", "from elm_neuro.networks import registry\n", 1, "elm_neuro.networks.registry",
     "must not import"),
    ("elm_neuro.experiments.fake", "try:\n    from elm_neuro.cli.budget import parse_overrides\nexcept ImportError:\n"
     "    pass\n", 2, "elm_neuro.cli.budget", "only cli"),
    ("elm_neuro.defaults", "from . import atomic\n", 1, "elm_neuro.atomic", "base modules"),
    ("elm_neuro.networks.fake", "from elm_neuro import load_run\n", 1, "elm_neuro", "upward"),
])
def test_a_bad_import_is_reported(module, source, line, imported, reason):
    found = check_source(module, source)
    assert len(found) == 1, found
    v = found[0]
    assert (v.module, v.line, v.imported) == (module, line, imported) and reason in v.reason
    assert module in str(v) and imported in str(v) and str(line) in str(v)


def test_downward_and_own_package_imports_pass():
    src = ("from elm_neuro import defaults as D\nfrom elm_neuro.training.trainer import run_training\n"
           "from elm_neuro.analysis import timescales\nfrom .compare import run_cell\n"
           "def f():\n    from elm_neuro.networks.registry import MODEL_FAMILIES\n")
    assert check_source("elm_neuro.experiments.fake", src) == []
    assert [t for _, t in imported_modules("elm_neuro.experiments.fake", src)] == [
        "elm_neuro.defaults", "elm_neuro.training.trainer", "elm_neuro.analysis.timescales",
        "elm_neuro.experiments.compare", "elm_neuro.networks.registry"]


# --------------------------------------------------------------------------- inside networks/
ENGINES = "elm_neuro.networks.engines"
# the engines' roles: a backend imports, from the engines, only the contracts and the shared
# helpers; the contracts import only each other and the helpers; nothing below the dispatch layer
# imports it; nothing imports a tool
ENGINE_CONTRACTS = {f"{ENGINES}.{m}" for m in ("inputs", "elm_contract", "lif_contract")}
ENGINE_HELPERS = {f"{ENGINES}.{m}" for m in ("backends", "simd", "numba_threads", "workspace", "triton_helpers")}
ENGINE_BACKENDS = {f"{ENGINES}.{m}" for m in ("elm_numba", "elm_triton", "elm_triton_grid", "lif_numba", "lif_triton",
                                               "inputs_numba")}
ENGINE_DISPATCH = {f"{ENGINES}.{m}" for m in ("elm_sequence", "lif_sequence", "projection", "leaky_scan")}
# tools work on the engines from outside (triton_compile: compile the Triton kernels for a GPU
# without one); they may import any engine module, and no module of the package imports them
ENGINE_TOOLS = {f"{ENGINES}.{m}" for m in ("triton_compile",)}


def _graph(prefix: str) -> dict[str, set[str]]:
    """Imports among the modules under ``prefix`` (function-local ones included)."""
    mods = {m: p for m, p in all_modules().items() if m == prefix or m.startswith(prefix + ".")}
    return {m: {t for _, t in imported_modules(m, p.read_text(encoding="utf-8"), p.name == "__init__.py")
                if t in mods and t != m} for m, p in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a list of modules (first = last), or [] when it has none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return []


def test_no_import_cycle_inside_networks():
    graph = _graph("elm_neuro.networks")
    assert f"{ENGINES}.elm_sequence" in graph and len(graph) >= 30
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_every_engine_module_has_a_role():
    engine_mods = {m for m in _graph(ENGINES) if m != ENGINES}
    roles = ENGINE_CONTRACTS | ENGINE_HELPERS | ENGINE_BACKENDS | ENGINE_DISPATCH | ENGINE_TOOLS
    assert engine_mods == roles, f"without a role: {engine_mods - roles}; gone: {roles - engine_mods}"


def test_backends_import_only_the_contracts():
    graph = _graph(ENGINES)
    allowed = {
        "backend": ENGINE_CONTRACTS | ENGINE_HELPERS,
        "contract": ENGINE_CONTRACTS | ENGINE_HELPERS,
        "helper": ENGINE_HELPERS,
    }
    bad = []
    for role, mods in (("backend", ENGINE_BACKENDS), ("contract", ENGINE_CONTRACTS), ("helper", ENGINE_HELPERS)):
        for m in mods:
            bad += [f"{m} ({role}) imports {t}" for t in graph[m] if t.startswith(ENGINES + ".") and t not in allowed[role]]
    assert not bad, "\n".join(bad)
    # and nothing outside the engines reaches a backend directly: the layers go through the dispatch
    outside = _graph("elm_neuro.networks")
    direct = [f"{m} imports {t}" for m, ts in outside.items() if not m.startswith(ENGINES) for t in ts
              if t in ENGINE_BACKENDS]
    assert not direct, "\n".join(direct)


def test_nothing_imports_an_engine_tool():
    importers = [f"{m} imports {t}" for m, p in all_modules().items()
                 for _, t in imported_modules(m, p.read_text(encoding="utf-8"), p.name == "__init__.py")
                 if t in ENGINE_TOOLS and m != t]
    assert not importers, "\n".join(importers)


def test_triton_kernel_modules_keep_their_annotations_evaluated():
    """A module defining ``@triton.jit`` kernels must not use ``from __future__ import annotations``:
    Triton 3.0's interpreter recognises a ``tl.constexpr`` parameter only by its evaluated
    annotation, and takes the string ``"tl.constexpr"`` for a tensor argument."""
    kernels = [p for p in ROOT.rglob("*.py") if "@triton.jit" in p.read_text()]
    assert {p.name for p in kernels} >= {"elm_triton.py", "lif_triton.py"}
    for p in kernels:
        future = [n for n in ast.parse(p.read_text()).body if isinstance(n, ast.ImportFrom)
                  and n.module == "__future__" and any(a.name == "annotations" for a in n.names)]
        assert not future, f"{p.relative_to(ROOT)}: from __future__ import annotations"
