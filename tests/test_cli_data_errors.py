"""Empty, unreadable and damaged inputs are named, through the CLI: an SHD file without samples
(train, test, or too few for a validation split) is refused before a run folder is written and
names the file and what was expected; reading refused by permissions is called a reading problem
(not "choose a folder you can write to", not "corrupt"); a file that is not HDF5, an empty one and a
truncated one each say which; a damaged config.json on --resume names the file, what is wrong and
what to do. Each case: the exit code, one line without a traceback, and the file system afterwards.

Permissions: the test process may run as root, which reads whatever the permission bits say. The
real chmod 000 case skips then (with that reason); the same refusal is also simulated by making
``open`` raise ``PermissionError`` for the data folder, which runs everywhere."""
import builtins
import json
import os
import shutil
import stat

import numpy as np
import pytest

from elm_neuro.cli.main import EXIT_BAD_INPUT, _describe, main
from elm_neuro.data._h5io import write_shd_h5
from elm_neuro.data.shd import CLASS_NAMES, UnreadableFile
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.training.classification import train_classifier
from elm_neuro.training.config import make_train_config
from cli_helpers import error_line, shd, TINY  # noqa: F401 (fixture)

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _error(err: str, command: str) -> str:
    return error_line(err, command)


def _samples(path, n: int) -> None:
    write_shd_h5(path, np.full(n, 0.1), np.arange(n), np.arange(n + 1), np.arange(n) % 20, np.zeros(n, np.int64),
                 CLASS_NAMES)


def _data(tmp_path, shd, name="data", train=None, test=None):
    """A copy of ``shd`` with the training / test file replaced by one of ``train`` / ``test`` samples."""
    d = tmp_path / name
    d.mkdir()
    for split, n in (("train", train), ("test", test)):
        if n is None:
            shutil.copyfile(shd / f"shd_{split}.h5", d / f"shd_{split}.h5")
        else:
            _samples(d / f"shd_{split}.h5", n)
    return d


# ----------------------------------------------------------------------------- empty files
@pytest.mark.parametrize("task", ["shd", "shd-adding"])
def test_an_empty_training_file_is_named_before_a_run_folder_exists(shd, tmp_path, capsys, task):
    data = _data(tmp_path, shd, train=0)
    run = tmp_path / "runs" / "r"
    assert main(["train", *TINY, "--task", task, "--data", str(data), "--out", str(run)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert f"{data.resolve() / 'shd_train.h5'} holds no samples" in line and "validation" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("task", ["shd", "shd-adding"])
def test_an_empty_test_file_is_named_before_training(shd, tmp_path, capsys, task):
    data = _data(tmp_path, shd, test=0)
    run = tmp_path / "r"
    assert main(["train", *TINY, "--task", task, "--data", str(data), "--out", str(run)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert "shd_test.h5 holds no samples; expected at least one test sample for the final evaluation" in line
    assert not run.exists()


def test_too_few_training_samples_for_a_validation_split(shd, tmp_path, capsys):
    data = _data(tmp_path, shd, train=3)
    assert main(["train", *TINY, "--data", str(data), "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert "shd_train.h5 holds 3 samples and none of them falls into the validation split" in line
    assert not (tmp_path / "r").exists()


def test_resume_names_a_test_file_emptied_since(shd, tmp_path, capsys):
    data = _data(tmp_path, shd)
    run = tmp_path / "r"
    cfg = make_train_config("shd", epochs=2, batches_per_epoch=2, batch_size=4, device="cpu", valid_batches=1,
                            test_batches=1, bin_ms=100.0, channel_factor=70, data_dir=str(data),
                            model_overrides=dict(d_m=2, n=3, d_tree=2, d_brch=2))
    assert train_classifier(run, cfg, progress=False, stop_after_epochs=1) is None
    _samples(data / "shd_test.h5", 0)
    files = sorted(os.listdir(run))
    assert main(["train", "--resume", str(run)]) == EXIT_BAD_INPUT
    assert "shd_test.h5 holds no samples" in _error(capsys.readouterr().err, "train")
    assert sorted(os.listdir(run)) == files  # not marked, nothing written: fix the data and resume


def test_shd_adding_command_names_the_empty_file(shd, tmp_path, capsys):
    data = _data(tmp_path, shd, test=0)
    out = tmp_path / "add.h5"
    assert main(["data", "shd-adding", "--shd", str(data), "--split", "test", "--pairs", "4",
                 "--out", str(out)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "data")
    assert f"no samples of {data / 'shd_test.h5'} fall in it (0 samples in the file)" in line
    assert not out.exists()


# ----------------------------------------------------------------------------- unreadable: reading, not writing
def _deny_reading(monkeypatch, folder):
    """``open`` of anything under ``folder`` fails as a chmod 000 folder does for a normal user."""
    real_open = builtins.open
    real_access = os.access
    inside = str(folder.resolve())

    def denied(path):
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(inside)

    def fake_open(file, *args, **kwargs):
        if denied(file):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    def fake_access(path, mode, *args, **kwargs):
        if denied(path) and os.path.abspath(os.fspath(path)) == inside:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "access", fake_access)


def test_an_unreadable_data_folder_is_a_reading_problem_simulated(shd, tmp_path, capsys, monkeypatch):
    data = _data(tmp_path, shd)
    _deny_reading(monkeypatch, data)
    run = tmp_path / "r"
    assert main(["train", *TINY, "--data", str(data), "--out", str(run)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert f"permission denied reading {data.resolve() / 'shd_train.h5'}" in line
    assert f"the folder {data.resolve()} cannot be entered" in line
    assert "write to" not in line and "corrupt" not in line
    assert not run.exists()
    assert main(["data", "inspect", str(data / "shd_test.h5")]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "data")
    assert "permission denied reading" in line and "corrupt" not in line


@pytest.mark.skipif(ROOT, reason="runs as root: permission bits do not stop root from reading, so chmod 000 "
                                 "cannot be observed here (the simulated test covers the message)")
def test_an_unreadable_data_folder_is_a_reading_problem_chmod(shd, tmp_path, capsys):
    data = _data(tmp_path, shd)
    os.chmod(data, 0)
    try:
        assert main(["train", *TINY, "--data", str(data), "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
        line = _error(capsys.readouterr().err, "train")
        assert "permission denied reading" in line and "write to" not in line
        assert not (tmp_path / "r").exists()
    finally:
        os.chmod(data, stat.S_IRWXU)
    os.chmod(data / "shd_test.h5", 0)
    try:
        assert main(["data", "inspect", str(data / "shd_test.h5")]) == EXIT_BAD_INPUT
        line = _error(capsys.readouterr().err, "data")
        assert "permission denied reading" in line and "corrupt" not in line
    finally:
        os.chmod(data / "shd_test.h5", stat.S_IRUSR | stat.S_IWUSR)


def test_permission_messages_say_reading_or_writing(tmp_path, monkeypatch):
    existing = tmp_path / "f.h5"
    existing.write_bytes(b"x")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if os.fspath(p) == str(existing)
                        else real_access(p, m, *a, **k))
    _, msg = _describe(PermissionError(13, "Permission denied", str(existing)))
    assert msg.startswith(f"permission denied reading {existing}")
    _, msg = _describe(PermissionError(13, "Permission denied", str(tmp_path / "new" / "out.json")))
    assert msg.startswith(f"permission denied writing {tmp_path / 'new' / 'out.json'}") and "write to" in msg
    _, msg = _describe(UnreadableFile(existing, "permission denied reading it (because)"))
    assert msg == "permission denied reading it (because)"


# ----------------------------------------------------------------------------- not HDF5 / empty / damaged
def test_not_hdf5_empty_and_truncated_files_are_told_apart(shd, tmp_path, capsys):
    cases = {"text.h5": (b"a text file\n", "not an HDF5 file"), "empty.h5": (b"", "is empty (0 bytes)"),
             "cut.h5": ((shd / "shd_train.h5").read_bytes()[:3000], "a truncated or corrupt HDF5 file")}
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert main(["data", "inspect", str(tmp_path / name)]) == EXIT_BAD_INPUT
        line = _error(capsys.readouterr().err, "data")
        assert name in line and expected in line and "permission" not in line, line


# ----------------------------------------------------------------------------- damaged config.json on --resume
@pytest.fixture
def half_run(shd, tmp_path):
    run = tmp_path / "r"
    cfg = make_train_config("shd", epochs=2, batches_per_epoch=2, batch_size=4, device="cpu", valid_batches=1,
                            test_batches=1, bin_ms=100.0, channel_factor=70, data_dir=str(shd),
                            model_overrides=dict(d_m=2, n=3, d_tree=2, d_brch=2))
    assert train_classifier(run, cfg, progress=False, stop_after_epochs=1) is None
    return run


@pytest.mark.parametrize("content, expected", [
    ('{ train: 1 }', "is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 3)"),
    ('{"model": {"family": "elm", "config": {}}}', "has no 'train'"),
    ('[1, 2]', "holds a JSON list, not the run's configuration"),
    ("", "is not valid JSON (Expecting value at line 1, column 1)"),
])
def test_a_damaged_config_json_on_resume_is_named_with_what_to_do(half_run, capsys, content, expected):
    config = half_run / "config.json"
    config.write_text(content)
    files = sorted(os.listdir(half_run))
    assert main(["train", "--resume", str(half_run)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert str(config) in line and expected in line, line
    assert "restore it from a copy" in line and "start a new run" in line
    assert config.read_text() == content and sorted(os.listdir(half_run)) == files


def test_a_train_section_with_unknown_fields_is_named(half_run, capsys):
    conf = json.loads((half_run / "config.json").read_text())
    conf["train"]["bogus"] = 1
    (half_run / "config.json").write_text(json.dumps(conf))
    assert main(["train", "--resume", str(half_run)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert "config.json: its 'train' section is not a valid training configuration" in line
    assert "bogus" in line and "start a new run" in line


def test_a_damaged_summary_is_named(half_run, capsys):
    (half_run / "summary.json").write_text("{not json")
    assert main(["export", str(half_run), "--out", str(half_run.parent / "m")]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "export")
    assert "summary.json is not valid JSON" in line and "remove it" in line
    assert not (half_run.parent / "m").exists()


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_compare_and_sweep_refuse_an_empty_test_file_before_writing(tmp_path, capsys, command):
    """The preflight of every cell checks the data's splits: compare and sweep name the empty file
    and write nothing."""
    data = tmp_path / "data"
    write_synthetic_shd(data, 20, 6, seed=0)
    write_shd_h5(data / "shd_test.h5", np.zeros(0), np.zeros(0, np.uint16), np.zeros(1, np.int64),
                 np.zeros(0, np.uint8), np.zeros(0, np.uint16), CLASS_NAMES)
    out = tmp_path / "out"
    args = ["--task", "shd-adding", "--params", "30000", "--data", str(data), "--out", str(out), "--no-progress"]
    code = main((["sweep", "--d-m", "2,3"] if command == "sweep" else ["compare", "--models", "elm"]) + args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "shd_test.h5 holds no samples" in err
    assert not out.exists()
