"""Failures through the CLI end in one line naming what is at fault, with a distinct exit code
(2 bad input, 130 interrupted, 1 other), and no traceback unless --debug."""
import subprocess
import sys

import pytest

from elm_neuro.cli import budget as budget_cli
from elm_neuro.cli.main import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, _describe, main
from elm_neuro.training.common import TrainingDiverged
from cli_helpers import error_line, shd, TINY  # noqa: F401 (fixture)



def _one_line_error(err: str, command: str) -> str:
    return error_line(err, command, only=False)


def test_truncated_checkpoint_on_resume(shd, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(shd), "--out", str(run)]) == 0
    (run / "summary.json").unlink()  # as if killed before the end
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:100])
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == EXIT_BAD_INPUT
    line = _one_line_error(capsys.readouterr().err, "train")
    assert str(run / "checkpoint.pt") in line and "not a readable checkpoint" in line
    (run / "checkpoint.pt").write_bytes(b"\x00random bytes")
    assert main(["train", "--resume", str(run)]) == EXIT_BAD_INPUT
    assert "not a readable checkpoint" in _one_line_error(capsys.readouterr().err, "train")


def test_diverged_run_exits_1(shd, tmp_path, capsys):
    code = main(["train", *TINY, "--data", str(shd), "--out", str(tmp_path / "r"), "--lr", "1e30",
                 "--train-set", "warmup=0"])
    assert code == EXIT_FAILURE
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "non-finite" in line and "lower --lr" in line


def test_out_naming_a_file(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep me")
    assert main(["data", "synth", "--out", str(target), "--train", "4", "--test", "2"]) == EXIT_BAD_INPUT
    assert str(target) in _one_line_error(capsys.readouterr().err, "data")
    assert target.read_text() == "keep me"


def _raise_in_budget(monkeypatch, exc):
    """``elm-neuro budget`` raises ``exc`` where it resolves the model."""
    def fails(*args, **kwargs):
        raise exc

    monkeypatch.setattr(budget_cli, "resolve_model_config", fails)


def test_interrupt_exits_130(monkeypatch, capsys):
    _raise_in_budget(monkeypatch, KeyboardInterrupt())
    assert main(["budget"]) == EXIT_INTERRUPTED
    assert "interrupted" in _one_line_error(capsys.readouterr().err, "budget")


@pytest.mark.parametrize("exc, message", [
    (TrainingDiverged("non-finite loss (nan) at epoch 1, step 3; stopped.\nThe last checkpoint is kept."),
     "non-finite loss (nan) at epoch 1, step 3; stopped. The last checkpoint is kept. (lower --lr or keep a warmup)"),
    (type("TrainingDiverged", (RuntimeError,), {})("non-finite loss (nan)"),  # another class of that name
     "unexpected TrainingDiverged: non-finite loss (nan) (run with --debug for the traceback)"),
])
def test_training_diverged_is_known_by_its_type(exc, message, monkeypatch, capsys):
    """The CLI recognises the trainers' TrainingDiverged itself, not any exception of that name."""
    _raise_in_budget(monkeypatch, exc)
    assert main(["budget"]) == EXIT_FAILURE
    assert _one_line_error(capsys.readouterr().err, "budget") == f"elm-neuro budget: error: {message}"


def test_messages_for_os_errors():
    code, msg = _describe(PermissionError(13, "Permission denied", "/ro/s/shd_train.h5"))
    assert code == EXIT_BAD_INPUT and "/ro/s/shd_train.h5" in msg and "permission denied" in msg
    code, msg = _describe(IsADirectoryError(21, "Is a directory", "/data/out"))
    assert code == EXIT_BAD_INPUT and "/data/out is a folder" in msg
    code, msg = _describe(RuntimeError("boom"))
    assert code == EXIT_FAILURE and "--debug" in msg


def test_debug_shows_the_traceback():
    args = [sys.executable, "-m", "elm_neuro.cli.main"]
    quiet = subprocess.run(args + ["budget", "--set", "bogus=1"], capture_output=True, text=True)
    assert quiet.returncode == EXIT_BAD_INPUT and "Traceback" not in quiet.stderr
    assert "unknown ELMNetworkConfig field(s) ['bogus']" in quiet.stderr
    loud = subprocess.run(args + ["--debug", "budget", "--set", "bogus=1"], capture_output=True, text=True)
    assert loud.returncode != 0 and "Traceback" in loud.stderr


def test_nonsense_inputs_are_refused_in_the_commands_words(shd, tmp_path, capsys):
    """Nonsense windows: a window of 0 s and 0 analysis batches."""
    out = tmp_path / "add.h5"
    code = main(["data", "shd-adding", "--shd", str(shd), "--split", "test", "--pairs", "4", "--window", "0",
                 "--out", str(out)])
    assert code == EXIT_BAD_INPUT and not out.exists()
    assert "--window" in _one_line_error(capsys.readouterr().err, "data")
    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(shd), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["analyze", "timescales", str(run), "--out", str(tmp_path / "ts.png"), "--batches", "0"]) == \
        EXIT_BAD_INPUT
    assert "--batches" in _one_line_error(capsys.readouterr().err, "analyze")
    assert not (tmp_path / "ts.png").exists()


def test_nonsense_language_and_inspect_inputs(shd, tmp_path, capsys):
    """Nonsense language and inspect inputs: the enwik8 size hint names a command that accepts it, a corpus larger
    than the built-in one is refused instead of capped, and --samples needs --raster."""
    small = tmp_path / "enwik8"
    small.write_bytes(b"x" * 5000)
    run = tmp_path / "lm"
    assert main(["train", "--task", "enwik8", "--data", str(small), "--device", "cpu", "--out", str(run)]) == \
        EXIT_BAD_INPUT
    line = _one_line_error(capsys.readouterr().err, "train")
    assert "5000 bytes, expected exactly 100000000" in line and "training needs enwik8 itself" in line
    assert "only `elm-neuro data enwik8 --allow-any-size`" in line and not run.exists()
    assert main(["train", "--task", "enwik8", "--corpus-bytes", str(10 ** 11), "--device", "cpu",
                 "--out", str(run)]) == EXIT_BAD_INPUT
    line = _one_line_error(capsys.readouterr().err, "train")
    assert f"corpus_bytes (--corpus-bytes) {10 ** 11}: the built-in text corpus has only" in line
    assert not run.exists()
    assert main(["data", "inspect", str(shd / "shd_test.h5"), "--samples", "0,1"]) == EXIT_BAD_INPUT
    assert "--samples chooses the samples of the raster plot: give --raster" in \
        _one_line_error(capsys.readouterr().err, "data")
