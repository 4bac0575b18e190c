"""``elm-neuro data ...`` commands, called in-process through ``elm_neuro.cli.main.main``."""
from __future__ import annotations

import numpy as np
import pytest

from elm_neuro.cli import main as cli_main
from elm_neuro.cli.main import main
from elm_neuro.data.binning import bin_events
from elm_neuro.data.shd import read_shd
from elm_neuro.data.shd_adding import make_splits


def test_data_group_registered():
    assert "elm_neuro.cli.data" in cli_main.COMMAND_MODULES


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_synth")
    assert main(["data", "synth", "--out", str(d), "--train", "120", "--test", "40",
                 "--seed", "2"]) == 0
    return d


def test_synth_command(shd_dir, tmp_path, capsys):
    assert len(read_shd(shd_dir / "shd_train.h5")) == 120
    assert len(read_shd(shd_dir / "shd_test.h5")) == 40
    assert main(["data", "synth", "--out", str(tmp_path), "--train", "120", "--test", "40",
                 "--seed", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in ("shd_train.h5", "shd_test.h5"):
        assert (tmp_path / name).read_bytes() == (shd_dir / name).read_bytes()
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--train", "0"]) == 2
    assert "n_train (--train) must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_inspect_command(shd_dir, tmp_path, capsys):
    ev = read_shd(shd_dir / "shd_train.h5")
    png = tmp_path / "raster.png"
    assert main(["data", "inspect", str(shd_dir / "shd_train.h5"), "--raster", str(png),
                 "--samples", "0,5,7"]) == 0
    out = capsys.readouterr().out
    assert "samples:           120" in out
    assert "classes:           20 present, 20 keys" in out
    c = ev.counts
    assert f"spikes per sample: min {c.min()}  mean {c.mean():.1f}  max {c.max()}" in out
    assert f"max {ev.durations().max():.3f}" in out
    assert "speakers:          10 " in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "inspect", str(shd_dir / "shd_train.h5"), "--raster",
                 str(tmp_path / "r2.png"), "--samples", "0,500"]) == 2
    assert "sample 500 does not exist (file has 120 samples)" in capsys.readouterr().err
    assert not (tmp_path / "r2.png").exists()
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage")
    assert main(["data", "inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.h5" in err and "not an HDF5 file" in err


def test_shd_adding_command(shd_dir, tmp_path, capsys):
    out = tmp_path / "add.h5"
    assert main(["data", "shd-adding", "--shd", str(shd_dir), "--split", "test", "--pairs",
                 "24", "--seed", "0", "--out", str(out)]) == 0
    assert "24 pairs" in capsys.readouterr().out
    back = read_shd(out, n_classes=19)
    assert len(back) == 24
    # seed 0 on the test split = the first pairs of the fixed test pairs of the task
    tr, te = read_shd(shd_dir / "shd_train.h5"), read_shd(shd_dir / "shd_test.h5")
    task = make_splits(tr, te, test_batches=3)["test"]
    np.testing.assert_array_equal(back.extra["pair_index"], task.pairs())
    x_file = bin_events(back.times, back.units, back.offsets, np.arange(24), 0.002, 2.0, 700,
                        binary=True)
    x_task = np.concatenate([x.numpy() for x, _ in task.batches()])
    np.testing.assert_array_equal(x_file, x_task)
    # same seed -> byte-identical file; the inspect command understands the 19 classes
    out2 = tmp_path / "add2.h5"
    assert main(["data", "shd-adding", "--shd", str(shd_dir), "--split", "test", "--pairs",
                 "24", "--seed", "0", "--out", str(out2)]) == 0
    assert out.read_bytes() == out2.read_bytes()
    assert main(["data", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "19 keys" in text and "pair_index" in text
    # validation split pairs come from the validation pool of the train file
    outv = tmp_path / "valid.h5"
    assert main(["data", "shd-adding", "--shd", str(shd_dir), "--split", "valid", "--pairs",
                 "10", "--out", str(outv)]) == 0
    valid_pool = make_splits(tr, te)["valid"].pool
    assert np.isin(read_shd(outv, 19).extra["pair_index"], valid_pool).all()
    # a missing source file is a clear error
    assert main(["data", "shd-adding", "--shd", str(tmp_path / "none"), "--out",
                 str(tmp_path / "z.h5")]) == 2
    assert "shd_test.h5: no such SHD file" in capsys.readouterr().err


def test_spike_statistics_by_hand():
    from elm_neuro.data.inspect import spike_statistics
    from elm_neuro.data.shd import SHDEvents

    ev = SHDEvents(times=np.array([0.1, 0.2, 0.5, 0.25, 0.25]), units=np.array([3, 3, 7, 1, 2]),
                   offsets=np.array([0, 3, 3, 5]), labels=np.array([0, 1, 2]), speakers=np.array([0, 0, 0]))
    s = spike_statistics(ev)  # the empty sample 1 is left out
    assert s["first_spike_s"] == pytest.approx((0.1, 0.175, 0.25))
    assert s["active_channels"] == (2.0, 2.0, 2.0)
    assert s["rate_hz"] == pytest.approx((6.0, 7.0, 8.0))
    assert s["channel_rate_hz"] == pytest.approx((3.0, 3.5, 4.0))


def test_inspect_folder_statistics_figure_and_baseline(shd_dir, tmp_path, capsys):
    assert main(["data", "inspect", str(shd_dir), "--baseline"]) == 0
    out = capsys.readouterr().out
    assert "(synthetic: synthetic SHD-format files" in out and out.count("file:") == 2
    assert "active channels:" in out and "rate/channel (Hz):" in out
    assert "linear baseline:" in out and "chance 0.050" in out
    png = tmp_path / "per_class.png"
    assert main(["data", "inspect", str(shd_dir), "--per-class", str(png), "--compare",
                 str(shd_dir / "shd_test.h5")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for args, word in ((["--baseline"], "give their folder"), (["--compare", str(shd_dir)], "--per-class"),
                       (["--per-class", str(tmp_path / "x.png"), "--compare", str(tmp_path / "none")],
                        "none: no such SHD file")):
        target = shd_dir / "shd_train.h5" if args == ["--baseline"] else shd_dir
        assert main(["data", "inspect", str(target), *args]) == 2
        err = capsys.readouterr().err
        assert word in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()
    assert main(["data", "inspect", str(tmp_path)]) == 2
    assert "without shd_train.h5 or shd_test.h5" in capsys.readouterr().err
