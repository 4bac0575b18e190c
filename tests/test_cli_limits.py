"""Configurations that cannot fit are refused through the CLI before anything is allocated: exit
code 2, one line with every part of the estimate against the memory available and a setting that
would fit, no traceback, nothing written, in well under a second of work and without the memory
the configuration would take (train, compare and every cell of a sweep; ``budget`` stays instant).

Each command runs in a fresh interpreter whose address space is capped (``RLIMIT_AS``), so that a
regression allocates nothing large but fails the test at once, and whose available memory is set
to :data:`AVAILABLE` (a machine of that size), so that the outcome does not depend on the machine
running the tests. Before this check, ``train --d-m 10000 --n 10`` ran past 300 s at 16 GB,
``--n 10000000`` failed after 46 s and 15 GB allocating the connectome, and ``--n 200000`` was
refused after 70 s and 14 GB.
"""
import json
import subprocess
import sys
import time

import pytest

from elm_neuro.cli.main import main
from elm_neuro.data.synth import write_synthetic_shd

AVAILABLE = 16 * 2 ** 30  # the machine the commands are refused on
ADDRESS_SPACE = 8 * 2 ** 30  # the child's cap: imports need about 2 GiB of address space
MAX_SECONDS = 20.0  # the command itself (imports included), loosely: the check takes milliseconds
MAX_RSS = 1.5 * 2 ** 30  # the interpreter with torch, numba and h5py imported: about 0.4 GiB

_CHILD = r'''
import json, resource, sys, time
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import torch
import elm_neuro.training.preflight as P
available = int(sys.argv[2])
P.available_memory = lambda device: available
from elm_neuro.cli.main import main
t0 = time.perf_counter()
rc = main(json.loads(sys.argv[3]))
seconds = time.perf_counter() - t0
print(json.dumps({"rc": rc, "seconds": seconds, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
'''


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 30, 10, seed=0)
    return d


def run_capped(argv: list[str]) -> tuple[dict, str]:
    res = subprocess.run([sys.executable, "-c", _CHILD, str(ADDRESS_SPACE), str(AVAILABLE), json.dumps(argv)],
                         capture_output=True, text=True, timeout=300)
    assert res.stdout.strip(), res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def check_refused(argv: list[str], command: str, out, *expect: str) -> str:
    stats, err = run_capped(argv)
    lines = err.strip().splitlines()
    assert stats["rc"] == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    line = lines[0]
    assert line.startswith(f"elm-neuro {command}: error: ")
    for part in ("one training step needs about", "parameters", "gradients", "optimizer state",
                 "connectome and synapse maps", "activations", "engine workspace", "data",
                 f"more than the {AVAILABLE / 2 ** 30:.1f} GiB available on cpu", *expect):
        assert part in line, (part, line)
    assert stats["seconds"] < MAX_SECONDS, stats
    assert stats["maxrss"] < MAX_RSS, stats
    assert not out.exists()
    return line


def test_d_m_10000_is_refused_at_once(shd, tmp_path):
    out = tmp_path / "r"
    line = check_refused(["train", "--task", "shd-adding", "--data", str(shd), "--d-m", "10000", "--n", "10",
                          "--out", str(out)], "train", out, "P=4,006,411,104", "--d-m ")
    assert "the model (N=10, d_m=10000" in line


def test_ten_million_neurons_are_refused_before_the_connectome(shd, tmp_path):
    out = tmp_path / "r"
    line = check_refused(["train", "--task", "shd-adding", "--data", str(shd), "--n", "10000000", "--out", str(out)],
                         "train", out, "--n ")
    assert "the model (N=10000000" in line and "--params " in line


def test_mid_size_is_refused_with_what_would_fit(shd, tmp_path):
    out = tmp_path / "r"
    line = check_refused(["train", "--task", "shd-adding", "--data", str(shd), "--n", "200000", "--out", str(out)],
                         "train", out)
    fit = int(line.split("N = ")[1].split(" ")[0])  # "it would fit with N = 25078 (--n 25078, ...)"
    assert 1000 < fit < 200000 and f"--n {fit}" in line


def test_a_batch_that_cannot_fit_names_the_batch(shd, tmp_path):
    out = tmp_path / "r"
    line = check_refused(["train", "--task", "shd-adding", "--data", str(shd), "--n", "2000", "--batch-size", "4096",
                          "--out", str(out)], "train", out)
    assert line.startswith("elm-neuro train: error: --batch-size 4096: one training step needs about")
    assert "it would fit with --batch-size " in line


def test_compare_refuses_a_cell_that_cannot_fit(shd, tmp_path):
    out = tmp_path / "cmp"
    line = check_refused(["compare", "--task", "shd-adding", "--data", str(shd), "--params", "240000000",
                          "--models", "lstm,elm", "--out", str(out)], "compare", out)
    assert "error: elm-s0 (model 'elm'): the model (N=" in line  # lstm fits; elm, checked before lstm trains, not


def test_sweep_refuses_a_cell_that_cannot_fit(shd, tmp_path):
    out = tmp_path / "sw"
    line = check_refused(["sweep", "--task", "shd-adding", "--data", str(shd), "--params", "20000,240000000",
                          "--d-m", "9", "--out", str(out)], "sweep", out)
    assert "cell p240000000-dm9-n" in line


def test_budget_stays_instant(capsys):
    t0 = time.perf_counter()
    assert main(["budget", "--preset", "shd-adding", "--d-m", "10000", "--n", "10"]) == 0
    assert main(["budget", "--preset", "shd-adding", "--n", "10000000"]) == 0
    assert time.perf_counter() - t0 < 1.0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("P=4006411104") and out[1].endswith("P=12010008094")
