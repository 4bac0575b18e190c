"""Signals and leftovers, through the CLI: SIGTERM during training ends the command as Ctrl-C does
(exit 143, one line; a new run without a checkpoint leaves nothing, one with a checkpoint is kept,
marked "interrupted" and resumable, no lock file left), with a real subprocess receiving the signal;
`data fetch` without a network leaves nothing it created and names the mirror and `data synth`;
`reproduce` of a real-data plan on synthetic data is refused before anything is written."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from elm_neuro.atomic import LOCK_NAME
from elm_neuro.cli.main import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED, main
from cli_helpers import error_line, shd  # noqa: F401 (fixture)

TINY = ["--task", "shd", "--batches-per-epoch", "2", "--batch-size", "4", "--device", "cpu",
        "--set", "d_m=2", "--set", "n=3", "--set", "d_tree=2", "--set", "d_brch=2", "--no-progress",
        "--train-set", "valid_batches=1", "--train-set", "test_batches=1", "--train-set", "bin_ms=100.0",
        "--train-set", "channel_factor=70", "--threads", "1"]
CLI = [sys.executable, "-m", "elm_neuro.cli.main"]


def _error(err: str, command: str) -> str:
    return error_line(err, command, only=False)


def _signal_when(proc: subprocess.Popen, path, sig, timeout: float = 300.0) -> None:
    """Send ``sig`` to ``proc`` as soon as ``path`` exists (the run reached that point)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)
    proc.send_signal(sig)


def _default_sigint() -> None:
    """In the child before it starts Python: Ctrl-C's default disposition. A suite started in the
    background by a non-interactive shell (``make test &``) runs with SIGINT ignored, which its
    children inherit, and Python then never raises KeyboardInterrupt; a terminal's Ctrl-C reaches a
    command in the foreground, which is what the test stands for."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train(shd, run, epochs: int) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "train", *TINY, "--epochs", str(epochs), "--data", str(shd), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def test_sigterm_in_the_first_epoch_leaves_nothing(shd, tmp_path):
    run = tmp_path / "runs" / "new"  # both folders made by the run
    proc = _train(shd, run, epochs=50)
    _signal_when(proc, run / "metrics.jsonl", signal.SIGTERM)  # written just before the first step
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_TERMINATED, err
    line = _error(err, "train")
    assert "terminated (SIGTERM)" in line and "a new run that had none is removed" in line
    assert not (tmp_path / "runs").exists()  # no lock, config.json or metrics.jsonl left


@pytest.mark.parametrize("sig, code, by", [(signal.SIGTERM, EXIT_TERMINATED, "SIGTERM"),
                                           (signal.SIGINT, EXIT_INTERRUPTED, "Ctrl-C (SIGINT)")])
def test_a_signal_after_a_checkpoint_keeps_marks_and_resumes(shd, tmp_path, sig, code, by):
    run = tmp_path / "run"
    proc = _train(shd, run, epochs=12)
    _signal_when(proc, run / "checkpoint.pt", sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    _error(err, "train")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["by"] == by
    assert f"--resume {run}" in summary["resume"]
    assert (run / "checkpoint.pt").is_file() and not (run / LOCK_NAME).exists()
    assert not [n for n in os.listdir(run) if ".partial-" in n]
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    done = json.loads((run / "summary.json").read_text())
    assert done["status"] == "completed" and done["epochs"] == 12


def test_fetch_without_a_network_leaves_nothing_and_names_the_ways_on(tmp_path, capsys):
    closed = "http://127.0.0.1:9/"  # nothing listens: as a machine without a network
    out = tmp_path / "datasets" / "shd"
    assert main(["data", "fetch", "--out", str(out), "--base-url", closed, "--quiet"]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "data")
    assert "shd_train.h5.zip: download failed" in line
    assert "--base-url https://compneuro.net/datasets/" in line and "elm-neuro data synth" in line
    assert os.listdir(tmp_path) == []  # neither --out nor the folder above it is left
    out.mkdir(parents=True)  # a folder that was there is kept, and left empty
    assert main(["data", "fetch", "--out", str(out), "--base-url", closed, "--quiet"]) == EXIT_BAD_INPUT
    capsys.readouterr()
    assert os.listdir(out) == []


def test_reproduce_of_a_real_data_plan_on_synthetic_data_writes_nothing(shd, tmp_path, capsys):
    out = tmp_path / "paper"
    assert main(["reproduce", "paper", "--data", str(shd), "--out", str(out), "--no-estimate"]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "reproduce")
    assert "holds synthetic SHD files" in line and "needs the real SHD" in line
    assert not out.exists()
    out.mkdir()
    assert main(["reproduce", "paper", "--out", str(out), "--no-estimate"]) == EXIT_BAD_INPUT
    assert "give --data DIR" in _error(capsys.readouterr().err, "reproduce")
    assert os.listdir(out) == []  # no plan.json, no lock file


def test_sigterm_to_a_comparison_ends_its_workers_like_ctrl_c(shd, tmp_path):
    """`kill PARENT` of `compare --workers 2`: the workers get the signal too, clean up their new
    runs (nothing left), the cells not yet started never start, and the parent exits 143 soon
    (it does not wait for the running cells to finish their 200 epochs)."""
    out = tmp_path / "cmp"
    proc = subprocess.Popen([*CLI, "compare", "--task", "shd", "--models", "elm", "--seeds", "3", "--workers", "2",
                             "--epochs", "200", "--batches-per-epoch", "2", "--batch-size", "4", "--device", "cpu",
                             "--params", "3000", "--set", "elm:d_m=2", "--set", "elm:d_tree=2",
                             "--set", "elm:d_brch=2", "--no-progress", "--train-set", "valid_batches=1",
                             "--train-set", "test_batches=1", "--train-set", "bin_ms=100.0",
                             "--train-set", "channel_factor=70", "--data", str(shd), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*-s*/metrics.jsonl"))) < 2:  # both workers train
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_TERMINATED, err
    assert time.monotonic() - t0 < 60
    line = _error(err, "compare")
    assert "terminated (SIGTERM)" in line
    # the two running cells were interrupted in their workers: a new run without a checkpoint left
    # nothing, one with a checkpoint is kept and marked; the third cell never started
    assert not (out / "elm-s2").exists()
    for cell in ("elm-s0", "elm-s1"):
        run = out / cell
        if (run / "checkpoint.pt").is_file():
            assert json.loads((run / "summary.json").read_text())["status"] == "interrupted", cell
        else:
            assert not run.exists() or not any(run.iterdir()), sorted(p.name for p in run.iterdir())
    assert not [p for p in out.rglob("*") if p.name == LOCK_NAME or p.name.endswith(".tmp")] if out.exists() else True
