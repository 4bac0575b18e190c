"""Synthetic SHD-format data: exact layout and dtypes, SHD-like statistics, reproducibility,
tonic compatibility and learnability."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from elm_neuro.data.binning import bin_events
from elm_neuro.data.shd import CLASS_NAMES, read_shd
from elm_neuro.data.synth import (TEST_ONLY_SPEAKERS, generate_synthetic_events,
                                  write_synthetic_shd)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_synthetic_shd(d, n_train=400, n_test=200, seed=7)
    return d


def test_layout_and_dtypes(synth_dir):
    with h5py.File(synth_dir / "shd_train.h5", "r") as f:
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float16
        assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
        assert f["spikes/times"].shape == (400,) and f["spikes/units"].shape == (400,)
        assert f["labels"].dtype == np.uint8 and f["labels"].shape == (400,)
        assert f["extra/speaker"].shape == (400,)
        assert [k.decode() for k in f["extra/keys"][()]] == list(CLASS_NAMES)
        assert len(CLASS_NAMES) == 20
        assert CLASS_NAMES[:3] == ("zero", "one", "two") and CLASS_NAMES[10] == "null"
        meta = f["extra/meta_info"]
        assert set(meta) == {"gender", "age", "body_height"}
        assert meta["gender"].shape == (12,)
        assert set(meta["gender"][()]) == {b"female", b"male"}
        assert 140 < meta["body_height"][()].min() and meta["body_height"][()].max() < 210


def test_statistics_look_like_shd(synth_dir):
    tr = read_shd(synth_dir / "shd_train.h5")
    te = read_shd(synth_dir / "shd_test.h5")
    assert len(tr) == 400 and len(te) == 200
    np.testing.assert_array_equal(np.bincount(tr.labels), np.full(20, 20))  # balanced
    counts = tr.counts
    assert 1000 < counts.mean() < 8000 and counts.min() > 300 and counts.max() < 20000
    dur = tr.durations()
    assert 0.3 < dur.min() and dur.max() < 1.5 and 0.5 < dur.mean() < 1.0
    assert tr.units.min() == 0 and tr.units.max() == 699
    # spikes sorted within samples (as tonic's time slicing needs)
    for i in range(0, 400, 37):
        t, _ = tr.sample(i)
        assert (np.diff(t) >= 0).all()
    # 12 speakers, two only in the test split
    assert set(np.unique(tr.speakers)) == set(range(12)) - set(TEST_ONLY_SPEAKERS)
    assert set(TEST_ONLY_SPEAKERS) <= set(np.unique(te.speakers))
    assert len(set(np.unique(te.speakers))) == 12
    # tonotopic bands: most spikes concentrate in a few channels per time slice
    x = bin_events(tr.times, tr.units, tr.offsets, np.arange(20), 0.05, 1.0, 700, 10)
    occupied = (x > 3).mean()
    assert occupied < 0.3


def test_in_memory_equals_file(synth_dir):
    ev = generate_synthetic_events(200, seed=7, split="test")
    te = read_shd(synth_dir / "shd_test.h5")
    np.testing.assert_array_equal(ev.times, te.times)
    np.testing.assert_array_equal(ev.units, te.units)
    np.testing.assert_array_equal(ev.offsets, te.offsets)
    np.testing.assert_array_equal(ev.labels, te.labels)
    np.testing.assert_array_equal(ev.speakers, te.speakers)


def test_byte_identical_for_same_seed(tmp_path):
    a = write_synthetic_shd(tmp_path / "a", 30, 10, seed=3)
    b = write_synthetic_shd(tmp_path / "b", 30, 10, seed=3)
    c = write_synthetic_shd(tmp_path / "c", 30, 10, seed=4)
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["shd_test.h5", "shd_train.h5"]


def test_full_shd_test_size_works():
    ev = generate_synthetic_events(2264, seed=0, split="test")
    assert len(ev) == 2264
    assert np.bincount(ev.labels).min() == 2264 // 20
    assert 1000 < ev.counts.mean() < 8000


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        write_synthetic_shd(tmp_path, 0, 10)
    with pytest.raises(ValueError, match="seed"):
        write_synthetic_shd(tmp_path, 10, 10, seed=-1)
    with pytest.raises(ValueError, match="split"):
        generate_synthetic_events(5, split="valid")


def test_tonic_reads_our_files(synth_dir, tmp_path):
    tonic = pytest.importorskip("tonic")
    # tonic's SHD looks for <save_to>/SHD/shd_train.h5.zip (existence only, no hash) and any
    # .h5 in that folder before it would download; place our file (and an empty zip marker)
    folder = tmp_path / "SHD"
    folder.mkdir()
    (folder / "shd_train.h5").symlink_to(synth_dir / "shd_train.h5")
    (folder / "shd_train.h5.zip").write_bytes(b"")
    ds = tonic.datasets.SHD(save_to=str(tmp_path), train=True)
    ours = read_shd(synth_dir / "shd_train.h5")
    assert len(ds) == 400
    assert [c.decode() for c in ds.classes] == list(CLASS_NAMES)
    for i in (0, 17, 399):
        events, target = ds[i]
        t, u = ours.sample(i)
        assert target == ours.labels[i]
        np.testing.assert_array_equal(events["x"], u)
        # tonic stores integer microseconds (truncated)
        np.testing.assert_array_equal(events["t"], (t * 1e6).astype(np.int64))


def test_learnable_but_not_trivial(synth_dir):
    tr = read_shd(synth_dir / "shd_train.h5")
    te = read_shd(synth_dir / "shd_test.h5")

    def feats(ev):
        x = bin_events(ev.times, ev.units, ev.offsets, np.arange(len(ev)), 0.05, 1.2, 700, 10)
        return np.log1p(x).reshape(len(ev), -1)

    xtr, xte = feats(tr), feats(te)
    centroids = np.stack([xtr[tr.labels == k].mean(0) for k in range(20)])
    d = ((xte[:, None, :] - centroids[None]) ** 2).sum(-1)
    acc = (d.argmin(1) == te.labels).mean()
    assert 0.3 < acc < 0.95, acc  # chance is 0.05


def test_force_from_python_replaces_only_synthetic_files(tmp_path):
    """write_synthetic_shd(force=True) itself (not only the CLI) refuses to replace a file that
    data synth did not write, and leaves it as it was."""
    import h5py
    import pytest

    from elm_neuro.atomic import RefusedPath
    from elm_neuro.data.synth import write_synthetic_shd

    write_synthetic_shd(tmp_path, 4, 4, seed=0)
    write_synthetic_shd(tmp_path, 5, 4, seed=1, force=True)  # its own files: replaced
    with h5py.File(tmp_path / "shd_train.h5", "r") as f:
        assert f["labels"].shape == (5,)
    foreign = tmp_path / "other"
    foreign.mkdir()
    with h5py.File(foreign / "shd_train.h5", "w") as f:  # e.g. the real SHD
        f["labels"] = [1, 2]
    before = (foreign / "shd_train.h5").read_bytes()
    with pytest.raises(RefusedPath, match="no elm_neuro_synthetic marker"):
        write_synthetic_shd(foreign, 4, 4, force=True)
    assert (foreign / "shd_train.h5").read_bytes() == before and not (foreign / "shd_test.h5").exists()
