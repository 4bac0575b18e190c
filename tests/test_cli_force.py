"""`--force` and every other overwrite replace or delete only what the package wrote itself: an
earlier export, synthetic data files, SHD-Adding files of `data shd-adding`, HDF5 files of the SHD
names for `data fetch`, a run's own files, a plan's folder; never a user's files, the current
directory, a folder above it or a git repository. Each case through the CLI: the exit code, one
line without a traceback, and the file system afterwards (the user's files as they were, no
temporary or old folder left beside them)."""
import os
from pathlib import Path

import numpy as np
import pytest

from elm_neuro import defaults as D
from elm_neuro.atomic import LOCK_NAME, RefusedPath, protected_reason, replace_folder
from elm_neuro.cli.main import EXIT_BAD_INPUT, main
from elm_neuro.data._h5io import write_shd_h5
from elm_neuro.data.shd import CLASS_NAMES
from cli_helpers import error_line, shd, TINY  # noqa: F401 (fixture)



@pytest.fixture(scope="module")
def done_run(shd, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "done"
    assert main(["train", *TINY, "--data", str(shd), "--out", str(run)]) == 0
    return run


def _error(err: str, command: str) -> str:
    return error_line(err, command)


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes (folders as None)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _no_leftovers(folder: Path) -> None:
    left = [n for n in os.listdir(folder) if ".partial-" in n or n.endswith(".tmp")]
    assert not left, left


def _real_like_shd(folder: Path) -> Path:
    """An SHD-format pair without the synthetic marker (as the real SHD, or data from elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 5), ("test", 3)):
        write_shd_h5(folder / f"shd_{split}.h5", np.full(n, 0.1), np.arange(n), np.arange(n + 1),
                     np.arange(n), np.zeros(n, np.int64), CLASS_NAMES)
    return folder


# ----------------------------------------------------------------------------- export --force
def test_export_force_keeps_a_users_folder_with_subfolders(done_run, tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "figures").mkdir(parents=True)
    (out / "thesis.tex").write_text("\\chapter{Results}")
    (out / "figures" / "fig1.pdf").write_bytes(b"%PDF")
    before = _tree(out)
    assert main(["export", str(done_run), "--out", str(out), "--force"]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "export")
    assert "did not write (figures/, thesis.tex)" in line and "replaces only an earlier export" in line
    assert _tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["thesis"]  # nothing made beside it


def test_export_force_refuses_a_plain_file_and_a_link(done_run, tmp_path, capsys):
    target = tmp_path / "notes"
    target.write_text("keep me")
    assert main(["export", str(done_run), "--out", str(target), "--force"]) == EXIT_BAD_INPUT
    assert "is a file, not an earlier export" in _error(capsys.readouterr().err, "export")
    assert target.read_text() == "keep me"
    elsewhere = tmp_path / "elsewhere"
    assert main(["export", str(done_run), "--out", str(elsewhere)]) == 0  # an export, behind a link
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    assert main(["export", str(done_run), "--out", str(link), "--force"]) == EXIT_BAD_INPUT
    assert "is a symbolic link" in _error(capsys.readouterr().err, "export")
    assert link.is_symlink() and (elsewhere / "MODEL_CARD.md").is_file()
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "link", "notes"]


def test_export_force_never_takes_the_current_directory_or_one_above(done_run, tmp_path, capsys, monkeypatch):
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    (tmp_path / "work" / "keep.txt").write_text("x")
    monkeypatch.chdir(here)
    for out in (".", "..", str(here)):
        assert main(["export", str(done_run), "--out", out, "--force"]) == EXIT_BAD_INPUT
        line = _error(capsys.readouterr().err, "export")
        assert "the current directory" in line, line
    assert os.listdir(here) == [] and sorted(os.listdir(tmp_path / "work")) == ["here", "keep.txt"]
    assert Path.cwd() == here.resolve()  # still there: no "Device or resource busy", no .partial-* folder


def test_export_force_replaces_an_earlier_export_but_not_one_with_a_users_file(done_run, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["export", str(done_run), "--out", str(out), "--name", "first"]) == 0
    assert main(["export", str(done_run), "--out", str(out), "--force", "--name", "second"]) == 0
    assert "# second" in (out / "MODEL_CARD.md").read_text()
    (out / "my-notes.md").write_text("notes")
    before = _tree(out)
    assert main(["export", str(done_run), "--out", str(out), "--force"]) == EXIT_BAD_INPUT
    assert "did not write (my-notes.md)" in _error(capsys.readouterr().err, "export")
    assert _tree(out) == before
    _no_leftovers(tmp_path)


def test_export_force_refuses_a_git_repository(done_run, tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert main(["export", str(done_run), "--out", str(repo), "--force"]) == EXIT_BAD_INPUT
    assert "a git repository" in _error(capsys.readouterr().err, "export")
    assert os.listdir(repo) == [".git"]


def test_protected_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert protected_reason(".") == "the current directory"
    assert protected_reason(tmp_path.parent).startswith("a folder above the current directory")
    assert protected_reason("/") == "the file-system root"
    assert protected_reason(Path.home()) in ("your home folder", "a folder above the current directory "
                                             f"{tmp_path.resolve()}", "the file-system root")
    import elm_neuro
    code = Path(elm_neuro.__file__).resolve().parent
    assert protected_reason(code) is not None and protected_reason(code.parent) is not None
    assert protected_reason(tmp_path / "new") is None
    with pytest.raises(RefusedPath, match="current directory"):
        with replace_folder(tmp_path, replace=True):
            pass
    assert os.listdir(tmp_path) == []  # refused before any temporary folder was made


def test_replace_folder_leaves_nothing_when_the_old_folder_cannot_move(tmp_path, monkeypatch):
    out = tmp_path / "m"
    out.mkdir()
    (out / "a").write_text("old")
    real_replace = os.replace

    def busy(src, dst):
        if Path(src) == out:
            raise OSError(16, "Device or resource busy", str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    with pytest.raises(OSError, match="busy"):
        with replace_folder(out, replace=True) as tmp:
            (tmp / "b").write_text("new")
    assert sorted(os.listdir(tmp_path)) == ["m"] and (out / "a").read_text() == "old"


# ----------------------------------------------------------------------------- data synth / fetch / shd-adding
def test_synth_force_replaces_only_synthetic_files(tmp_path, capsys):
    real = _real_like_shd(tmp_path / "real")
    before = _tree(real)
    assert main(["data", "synth", "--out", str(real), "--train", "4", "--test", "2", "--force"]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "data")
    assert "shd_train.h5 has no elm_neuro_synthetic marker" in line
    assert "--force replaces only files that `elm-neuro data synth` wrote" in line
    assert _tree(real) == before
    syn = tmp_path / "syn"
    assert main(["data", "synth", "--out", str(syn), "--train", "4", "--test", "2", "--seed", "1"]) == 0
    old = (syn / "shd_train.h5").read_bytes()
    assert main(["data", "synth", "--out", str(syn), "--train", "5", "--test", "2", "--force"]) == 0
    assert (syn / "shd_train.h5").read_bytes() != old
    (syn / "shd_test.h5").write_text("a user's notes")  # not HDF5: cannot be told to be synthetic
    assert main(["data", "synth", "--out", str(syn), "--train", "4", "--test", "2", "--force"]) == EXIT_BAD_INPUT
    assert "shd_test.h5 cannot be read as an HDF5 file" in _error(capsys.readouterr().err, "data")
    assert (syn / "shd_test.h5").read_text() == "a user's notes"
    capsys.readouterr()
    _no_leftovers(syn)


def test_fetch_force_refuses_what_is_not_an_hdf5_file(tmp_path, capsys):
    out = tmp_path / "d"
    (out / "shd_train.h5").mkdir(parents=True)  # a folder of that name
    (out / "shd_train.h5" / "mine.txt").write_text("x")
    closed = "http://127.0.0.1:9/"  # refused before any download is tried
    assert main(["data", "fetch", "--out", str(out), "--split", "train", "--force", "--base-url", closed,
                 "--quiet"]) == EXIT_BAD_INPUT
    assert "shd_train.h5 is not a regular file; --force replaces only an HDF5 file" in _error(
        capsys.readouterr().err, "data")
    assert (out / "shd_train.h5" / "mine.txt").read_text() == "x"
    (out / "shd_test.h5").write_text("not data")
    assert main(["data", "fetch", "--out", str(out), "--split", "test", "--force", "--base-url", closed,
                 "--quiet"]) == EXIT_BAD_INPUT
    assert "shd_test.h5 is not an HDF5 file" in _error(capsys.readouterr().err, "data")
    assert (out / "shd_test.h5").read_text() == "not data"


def test_fetch_never_replaces_or_deletes_a_zip_it_did_not_download(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "shd_test.h5.zip").write_bytes(b"half a download")
    assert main(["data", "fetch", "--out", str(out), "--split", "test", "--base-url", "http://127.0.0.1:9/",
                 "--quiet"]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "data")
    assert "shd_test.h5.zip is already there but its md5" in line and "neither uses nor replaces it" in line
    assert os.listdir(out) == ["shd_test.h5.zip"] and (out / "shd_test.h5.zip").read_bytes() == b"half a download"


def test_fetch_uses_a_zip_put_there_by_hand_and_keeps_it(shd, tmp_path, capsys):
    import hashlib
    import zipfile

    out = tmp_path / "d"
    out.mkdir()
    with zipfile.ZipFile(out / "shd_test.h5.zip", "w") as z:
        z.write(shd / "shd_test.h5", arcname="shd_test.h5")
    digest = hashlib.md5((out / "shd_test.h5.zip").read_bytes()).hexdigest()
    zipped = (out / "shd_test.h5.zip").read_bytes()
    assert main(["data", "fetch", "--out", str(out), "--split", "test", "--md5-test", digest,
                 "--base-url", "http://127.0.0.1:9/", "--quiet"]) == 0  # no download needed
    assert "ready:" in capsys.readouterr().out
    assert (out / "shd_test.h5").read_bytes() == (shd / "shd_test.h5").read_bytes()
    assert (out / "shd_test.h5.zip").read_bytes() == zipped  # the user's zip: kept as it was
    assert sorted(os.listdir(out)) == ["shd_test.h5", "shd_test.h5.zip"]


def test_shd_adding_never_overwrites_its_source_or_another_file(shd, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("shd_train.h5", "shd_test.h5"):
        (data / name).write_bytes((shd / name).read_bytes())
    source = (data / "shd_test.h5").read_bytes()
    args = ["data", "shd-adding", "--shd", str(data), "--split", "test", "--pairs", "4", "--seed", "0"]
    assert main([*args, "--out", str(data / "shd_test.h5")]) == EXIT_BAD_INPUT
    assert "was not written by `elm-neuro data shd-adding`" in _error(capsys.readouterr().err, "data")
    assert (data / "shd_test.h5").read_bytes() == source
    out = tmp_path / "add.h5"
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--seed", "1", "--out", str(out)]) == 0  # its own file: written again
    _no_leftovers(tmp_path)


# ----------------------------------------------------------------------------- train --out, reproduce --out
def test_train_never_overwrites_or_removes_a_users_run_file_names(shd, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}')
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    assert main(["train", *TINY, "--data", str(shd), "--out", str(out)]) == EXIT_BAD_INPUT
    line = _error(capsys.readouterr().err, "train")
    assert "holds config.json, not the files of an elm-neuro run" in line
    assert _tree(out) == before
    # a new run that fails in a folder of the user's removes only its own files
    (out / "config.json").unlink()
    before = _tree(out)
    assert main(["train", *TINY, "--data", str(shd), "--out", str(out), "--lr", "1e30",
                 "--train-set", "warmup=0"]) != 0
    capsys.readouterr()
    assert _tree(out) == before


def test_reproduce_refuses_a_folder_that_is_not_a_plan_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(D, "PLANS", {"neuron-comparison": D.PLANS["neuron-comparison"]})
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    assert main(["reproduce", "neuron-comparison", "--out", str(out), "--no-estimate"]) == EXIT_BAD_INPUT
    assert "not a plan folder's (thesis.tex)" in _error(capsys.readouterr().err, "reproduce")
    assert os.listdir(out) == ["thesis.tex"]
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("command", ["sweep", "compare"])
def test_sweep_and_compare_refuse_a_folder_they_did_not_write(shd, tmp_path, capsys, command):
    """A new sweep or comparison into a folder holding a user's files is refused before anything
    is written, and the files are left as they were."""
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "report.md").write_text("my report")
    args = ["--task", "shd-adding", "--params", "30000", "--data", str(shd), "--out", str(out),
            "--epochs", "1", "--batches-per-epoch", "1", "--no-progress"]
    args = (["sweep", "--d-m", "2,3"] if command == "sweep" else ["compare", "--models", "elm"]) + args
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "did not write" in err or "not a sweep folder" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes", "report.md"]
    assert (out / "report.md").read_text() == "my report"
