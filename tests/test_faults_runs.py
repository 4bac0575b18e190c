"""Runs under faults, through the CLI: safe checkpoints, one writer per run, no silent
overwrites, runs that move, checks before the first step, leftovers and a Ray
address that does not answer. Each case asserts the exit code, a one-line message without a
traceback, and the file system afterwards (no partial output, no temp files, the existing run
intact)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import elm_neuro
from elm_neuro.atomic import LOCK_NAME, folder_lock, temp_files
from elm_neuro.cli.main import EXIT_BAD_INPUT, EXIT_FAILURE, main
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.training.classification import train_classifier
from elm_neuro.training.config import make_train_config
from elm_neuro.training.run import load_checkpoint, load_run
from cli_helpers import error_line, shd  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--task", "shd", "--batches-per-epoch", "2", "--batch-size", "4", "--device", "cpu", "--no-progress",
          "--train-set", "valid_batches=1", "--train-set", "test_batches=1", "--train-set", "bin_ms=100.0",
          "--train-set", "channel_factor=70"]
TINY = COMMON + ["--set", "d_m=2", "--set", "n=3", "--set", "d_tree=2", "--set", "d_brch=2"]
SWEEP = COMMON + ["--epochs", "1", "--d-m", "2", "--seeds", "1", "--set", "n=3", "--set", "d_tree=2", "--set", "d_brch=2"]


@pytest.fixture(scope="module")
def done_run(shd, tmp_path_factory):
    """A finished tiny run (1 epoch)."""
    run = tmp_path_factory.mktemp("runs") / "done"
    assert main(["train", *TINY, "--epochs", "1", "--data", str(shd), "--out", str(run)]) == 0
    return run


def _error(err: str, command: str) -> str:
    return error_line(err, command)


def _no_temps(folder) -> None:
    left = [f for f in os.listdir(folder) if f.endswith(".tmp") or ".partial-" in f]
    assert not left, left


def _half_run(shd, run, epochs=2):
    """A run killed after its first epoch (checkpoint, no summary)."""
    cfg = make_train_config("shd", epochs=epochs, batches_per_epoch=2, batch_size=4, device="cpu", valid_batches=1,
                            test_batches=1, bin_ms=100.0, channel_factor=70, data_dir=str(shd),
                            model_overrides=dict(d_m=2, n=3, d_tree=2, d_brch=2))
    assert train_classifier(run, cfg, progress=False, stop_after_epochs=1) is None
    return run


# ----------------------------------------------------------------------------- 11: checkpoints
def test_checkpoints_hold_only_tensors_and_plain_data(done_run):
    for name in ("checkpoint.pt", "best.pt"):  # torch's own safe loader, no allow-list
        blob = torch.load(done_run / name, weights_only=True)
        assert "model" in blob
    rng = torch.load(done_run / "checkpoint.pt", weights_only=True)["rng"]
    assert rng["numpy"]["key"].dtype == torch.int64 and rng["numpy"]["key"].shape == (624,)
    assert rng["python"]["state"].shape == (625,) and rng["torch"].dtype == torch.uint8


class _Evil:
    """Unpickling this runs os.mkdir(path): the code a shared .pt could carry."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_pickled_callable_is_refused_without_running(done_run, tmp_path, capsys):
    run = tmp_path / "shared"
    shutil.copytree(done_run, run)
    marker = tmp_path / "was-run"
    weights = torch.load(run / "best.pt", weights_only=True)
    torch.save({**weights, "hook": _Evil(str(marker))}, run / "best.pt")
    with pytest.raises(ValueError, match=r"best\.pt carries pickled Python objects \(posix\.mkdir\)"):
        load_run(run)
    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "export")
    assert "best.pt carries pickled Python objects" in line and "refused without loading it" in line
    assert not marker.exists() and not (tmp_path / "exported").exists()


def test_checkpoints_of_earlier_versions_still_resume(shd, tmp_path, capsys):
    run = _half_run(shd, tmp_path / "old")
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    blob["rng"]["numpy"] = np.random.get_state()  # as earlier versions pickled it: numpy arrays, tuples
    blob["rng"]["python"] = __import__("random").getstate()
    torch.save(blob, run / "checkpoint.pt")
    assert isinstance(load_checkpoint(run / "checkpoint.pt")["rng"]["numpy"][1], np.ndarray)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_carried_state_round_trips_as_plain_data(tmp_path):
    from elm_neuro.networks.lstm import LSTMState
    from elm_neuro.training.run import from_plain, to_plain

    state = LSTMState(torch.ones(2, 3), torch.zeros(2, 3))
    plain = to_plain({"carried_state": state})
    torch.save({"model": {}, **plain}, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")["carried_state"]
    assert isinstance(back, LSTMState) and torch.equal(back.h, state.h)
    with pytest.raises(ValueError, match="not a network-state type"):
        from_plain({"__namedtuple__": "os:system", "values": ["true"]})


def test_export_writes_safetensors_and_shipped_models_load(done_run, tmp_path):
    out = tmp_path / "m"
    assert main(["export", str(done_run), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["MODEL_CARD.md", "config.json", "metrics.jsonl", "model.safetensors",
                                       "summary.json"]
    a, b = load_run(out).model.state_dict(), load_run(done_run).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _no_temps(tmp_path)
    for name in ("demo-elm-shd-adding", "demo-lif-shd-adding"):  # exported by earlier versions (best.pt)
        loaded = elm_neuro.load_run(os.path.join(ROOT, "models", name))
        assert loaded.summary["status"] == "completed" and not loaded.model.training


# ----------------------------------------------------------------------------- 2: one writer
def _holder(folder):
    """A process that holds ``folder``'s lock until killed."""
    code = ("import sys, time; from elm_neuro.atomic import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_with_the_holders_pid(shd, tmp_path, capsys):
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        t0 = time.monotonic()
        assert main(["train", *TINY, "--epochs", "1", "--data", str(shd), "--out", str(run)]) == EXIT_BAD_INPUT
        assert time.monotonic() - t0 < 10  # at once, not after training
        line = _error(capsys.readouterr().err, "train")
        assert f"in use by another elm-neuro process (pid {holder.pid}" in line
        assert os.listdir(run) == [LOCK_NAME]  # the second writer wrote nothing
        sweep = tmp_path / "sweep"
        holder2 = _holder(sweep)
        try:
            assert main(["sweep", *SWEEP, "--data", str(shd), "--out", str(sweep)]) == EXIT_BAD_INPUT
            assert f"pid {holder2.pid}" in _error(capsys.readouterr().err, "sweep")
            assert os.listdir(sweep) == [LOCK_NAME]
        finally:
            holder2.kill()
            holder2.wait()
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock is stale: taken over, and gone after the run
    assert (run / LOCK_NAME).read_text().strip() == str(holder.pid)
    assert main(["train", *TINY, "--epochs", "1", "--data", str(shd), "--out", str(run)]) == 0
    assert "took over the lock" not in capsys.readouterr().err  # --no-progress: quiet
    assert not (run / LOCK_NAME).exists() and (run / "summary.json").is_file()


def test_the_lock_is_reentrant_and_released(tmp_path):
    with folder_lock(tmp_path) as stale:
        assert stale is None and (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        with folder_lock(tmp_path):
            pass
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


# ----------------------------------------------------------------------------- 5: overwrites
def test_export_refuses_an_existing_folder_and_force_replaces_it_whole(done_run, tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "other-model.bin").write_text("another model")
    assert main(["export", str(done_run), "--out", str(out)]) == EXIT_BAD_INPUT
    assert "--force" in _error(capsys.readouterr().err, "export")
    assert os.listdir(out) == ["other-model.bin"]
    # --force replaces only an earlier export: a folder with another file is refused, untouched
    assert main(["export", str(done_run), "--out", str(out), "--force"]) == EXIT_BAD_INPUT
    assert "did not write (other-model.bin)" in _error(capsys.readouterr().err, "export")
    assert os.listdir(out) == ["other-model.bin"]
    (out / "other-model.bin").unlink()
    assert main(["export", str(done_run), "--out", str(out)]) == 0  # an empty folder is filled
    before = (out / "MODEL_CARD.md").read_text()
    assert main(["export", str(done_run), "--out", str(out), "--force", "--name", "again"]) == 0
    assert (out / "MODEL_CARD.md").read_text() != before and (out / "model.safetensors").is_file()
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary or old folder left beside it


def test_export_verifies_best_pt_first(done_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:200])
    assert main(["export", str(run), "--out", str(tmp_path / "m")]) == EXIT_BAD_INPUT
    assert "best.pt is not a readable checkpoint" in _error(capsys.readouterr().err, "export")
    assert not (tmp_path / "m").exists()


def test_synth_refuses_an_existing_dataset_unless_forced(tmp_path, capsys):
    data = tmp_path / "d"
    assert main(["data", "synth", "--out", str(data), "--train", "4", "--test", "2", "--seed", "1"]) == 0
    before = (data / "shd_train.h5").read_bytes()
    assert main(["data", "synth", "--out", str(data), "--train", "5", "--test", "2"]) == EXIT_BAD_INPUT
    assert "already holds shd_train.h5 and shd_test.h5" in _error(capsys.readouterr().err, "data")
    assert (data / "shd_train.h5").read_bytes() == before
    assert main(["data", "synth", "--out", str(data), "--train", "5", "--test", "2", "--force"]) == 0
    assert (data / "shd_train.h5").read_bytes() != before
    _no_temps(data)
    # 7: a bad seed is refused before anything is created
    assert main(["data", "synth", "--out", str(tmp_path / "neg"), "--seed", "-1"]) == EXIT_BAD_INPUT
    assert "--seed" in _error(capsys.readouterr().err, "data") and not (tmp_path / "neg").exists()


# ----------------------------------------------------------------------------- 4: runs that move
def test_runs_record_absolute_data_paths_and_checksums(done_run, shd):
    conf = json.loads((done_run / "config.json").read_text())
    assert conf["train"]["data_dir"] == str(shd.resolve())
    files = {f["name"]: f for f in conf["data"]["files"]}
    assert files["shd_train.h5"]["bytes"] == (shd / "shd_train.h5").stat().st_size
    assert len(files["shd_test.h5"]["sha256"]) == 64


def test_resume_relocates_data_and_refuses_changes(shd, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(shd, data)
    run = _half_run(data, tmp_path / "run")
    moved = tmp_path / "moved"
    data.rename(moved)
    monkeypatch.chdir(tmp_path / "run")  # from anywhere else
    assert main(["train", "--resume", str(run)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert f"data '{data}' recorded in {run / 'config.json'} not found" in line and "pass --data" in line
    assert main(["train", "--resume", str(run), "--epochs", "5", "--lr", "0.1"]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert "epochs (run: 2, given: 5)" in line and "lr (run: " in line
    assert main(["train", "--resume", str(run), "--out", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    assert "--out cannot be given with --resume" in _error(capsys.readouterr().err, "train")
    other = tmp_path / "other"
    write_synthetic_shd(other, 24, 12, seed=9)  # a different dataset under the same names
    assert main(["train", "--resume", str(run), "--data", str(other)]) == EXIT_BAD_INPUT
    assert "is not the file the run was trained on" in _error(capsys.readouterr().err, "train")
    assert json.loads((run / "config.json").read_text())["train"]["data_dir"] == str(data)  # unchanged so far
    assert main(["train", "--resume", str(run), "--data", str(moved), "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["data_dir"] == str(moved)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "is already complete (summary.json); nothing to resume" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 3: check first
def test_compare_checks_every_model_before_training(shd, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", *COMMON, "--epochs", "1", "--seeds", "1", "--params", "3000", "--data", str(shd),
            "--out", str(out)]
    assert main(args + ["--models", "lstm,foo"]) == EXIT_BAD_INPUT  # lstm would train first
    assert "foo-s0 (model 'foo'): model must be one of" in _error(capsys.readouterr().err, "compare")
    assert not out.exists()
    assert main(args + ["--models", "lstm,elm"]) == EXIT_BAD_INPUT  # the budget is too small for elm only
    assert "elm-s0 (model 'elm'): params=3000 is too small" in _error(capsys.readouterr().err, "compare")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_before_anything(shd, tmp_path, capsys):
    args = ["train", *TINY, "--epochs", "1", "--data", str(shd), "--out", str(tmp_path / "r")]
    assert main([a if a != "cpu" else "cuda" for a in args]) == EXIT_BAD_INPUT
    assert "--device cuda: CUDA is not available" in _error(capsys.readouterr().err, "train")
    assert not (tmp_path / "r").exists()


def test_a_batch_that_cannot_fit_is_refused_with_the_figure(shd, tmp_path, capsys):
    args = ["train", *TINY, "--epochs", "1", "--data", str(shd), "--out", str(tmp_path / "r")]
    args[args.index("--batch-size") + 1] = "2000000000"
    assert main(args) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert "--batch-size 2000000000: one training step needs about" in line and "GiB" in line
    assert not (tmp_path / "r").exists()


def test_failed_runs_leave_nothing_half_made(shd, tmp_path, capsys):
    diverge = ["--lr", "1e30", "--train-set", "warmup=0"]
    new = tmp_path / "new"
    assert main(["train", *TINY, "--epochs", "2", *diverge, "--data", str(shd), "--out", str(new)]) == EXIT_FAILURE
    assert "non-finite" in _error(capsys.readouterr().err, "train") and not new.exists()
    later = tmp_path / "later"  # diverges in epoch 2, after a checkpoint: marked failed
    assert main(["train", *TINY, "--epochs", "2", "--lr", "1e30", "--train-set", "warmup=2", "--data", str(shd),
                 "--out", str(later)]) == EXIT_FAILURE
    _error(capsys.readouterr().err, "train")
    summary = json.loads((later / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("TrainingDiverged: non-finite")
    assert (later / "checkpoint.pt").is_file() and not (later / LOCK_NAME).exists()
    with pytest.raises(ValueError, match="only finished runs"):
        from elm_neuro.experiments.export import export_run
        export_run(later, tmp_path / "m")


# ----------------------------------------------------------------------------- 7: leftovers
def test_temp_files_of_dead_writers_are_removed_at_the_next_write(tmp_path):
    from elm_neuro.atomic import save_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f"x.json.partial-{dead}-abc123.tmp"
    live = tmp_path / f"x.json.partial-{os.getppid()}-def456.tmp"  # a live process's: kept
    stale.write_text("half")
    live.write_text("half")
    assert temp_files(tmp_path / "x.json") == sorted([stale, live])
    save_text("{}", tmp_path / "x.json")
    assert not stale.exists() and live.exists() and (tmp_path / "x.json").read_text() == "{}"


def test_kill_during_synth_leaves_a_recognisable_temp_that_the_next_write_removes(tmp_path):
    data = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "elm_neuro.cli.main", "data", "synth", "--out", str(data),
                             "--train", "20000", "--test", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not temp_files(data / "shd_train.h5") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = temp_files(data / "shd_train.h5")
    assert left and all(f.name.startswith(f"shd_train.h5.partial-{proc.pid}-") for f in left)
    assert not (data / "shd_train.h5").exists()
    assert main(["data", "synth", "--out", str(data), "--train", "4", "--test", "2"]) == 0
    assert sorted(os.listdir(data)) == ["shd_test.h5", "shd_train.h5"]


# ----------------------------------------------------------------------------- 8: Ray address
def test_a_ray_address_that_does_not_answer_times_out(shd, tmp_path):
    pytest.importorskip("ray")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    port = silent.getsockname()[1]
    out = tmp_path / "sweep"
    base = [sys.executable, "-m", "elm_neuro.cli.main", "sweep", *SWEEP, "--data", str(shd), "--out", str(out),
            "--executor", "ray"]
    try:
        t0 = time.monotonic()
        res = subprocess.run(base + ["--address", f"127.0.0.1:{port}", "--ray-timeout", "2"],
                             capture_output=True, text=True, timeout=120)
        assert time.monotonic() - t0 < 60
    finally:
        silent.close()
    assert res.returncode == EXIT_FAILURE
    line = _error(res.stderr, "sweep")
    assert f"--address 127.0.0.1:{port}: the Ray cluster did not answer within 2 s" in line
    assert not out.exists()



def test_a_ray_address_that_refuses_fails_at_once(shd, tmp_path, capsys):
    pytest.importorskip("ray")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, not listening: connections are refused
    out = tmp_path / "sweep"
    try:
        assert main(["sweep", *SWEEP, "--data", str(shd), "--out", str(out), "--executor", "ray",
                     "--address", f"127.0.0.1:{port}"]) == EXIT_FAILURE
    finally:
        closed.close()
    assert f"cannot reach 127.0.0.1:{port}" in _error(capsys.readouterr().err, "sweep")
    assert not out.exists()
