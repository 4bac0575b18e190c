"""Shared by the command-line tests: a tiny SHD training setting, tiny synthetic SHD files, and the
check that a failure is one line in the CLI's words without a traceback."""
from __future__ import annotations

import pytest

from elm_neuro.data.synth import write_synthetic_shd

# one epoch of two batches of a 3-neuron ELM on 100 ms bins of 10 pooled channels: seconds
TINY = ["--task", "shd", "--epochs", "1", "--batches-per-epoch", "2", "--batch-size", "4", "--device", "cpu",
        "--set", "d_m=2", "--set", "n=3", "--set", "d_tree=2", "--set", "d_brch=2", "--no-progress",
        "--train-set", "valid_batches=1", "--train-set", "test_batches=1", "--train-set", "bin_ms=100.0",
        "--train-set", "channel_factor=70"]


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    """24 training and 12 test digits of synthetic SHD (a folder shared by a test module)."""
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 24, 12, seed=2)
    return d


def error_line(err: str, command: str | None = None, *, only: bool = True) -> str:
    """The error line of a failed command's stderr: the only line (``only``), else the last (a
    command may print progress or failed cells before it); starts with ``elm-neuro COMMAND:
    error:`` when ``command`` is given; no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and "Traceback" not in err, err
    if only:
        assert len(lines) == 1, err
    if command is not None:
        assert lines[-1].startswith(f"elm-neuro {command}: error: "), err
    return lines[-1]
