"""tonic adapter: SHD files and SHD-Adding pairs as tonic-style datasets. Items equal
tonic.datasets.SHD's on the same file, events round-trip exactly (integer microseconds),
tonic's ToFrame on an item equals our binning (SHD) and SHDAdding's pair input (SHD-Adding),
clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from elm_neuro.data._h5io import write_shd_h5
from elm_neuro.data.binning import bin_events
from elm_neuro.data.shd import CLASS_NAMES, SHDEvents, read_shd
from elm_neuro.data.shd_adding import make_splits
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.data.tonic_adapter import (EVENT_DTYPE, SHDAddingEventDataset, SHDEventDataset,
                                          to_microseconds)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth_tonic")
    write_synthetic_shd(d, n_train=40, n_test=16, seed=5)
    return d


def _to_frame(tonic, bin_us: int, window_us: int):
    return tonic.transforms.ToFrame(sensor_size=(700, 1, 1), time_window=float(bin_us),
                                    start_time=0, end_time=float(window_us))


# ----------------------------------------------------------------------------- round trip

def test_hand_made_file_round_trips(tmp_path):
    # sample 0: unsorted spikes, float16-exact times; sample 1 empty; sample 2 one spike
    times = np.array([0.5, 0.25, 0.001, 1.25, 0.0], dtype=np.float64)
    units = np.array([3, 1, 699, 0, 42])
    offsets = np.array([0, 4, 4, 5])
    path = write_shd_h5(tmp_path / "tiny.h5", times, units, offsets, labels=np.array([7, 12, 0]),
                        speakers=np.array([2, 3, 4]), keys=CLASS_NAMES)
    ds = SHDEventDataset(path)
    assert len(ds) == 3 and ds.sensor_size == (700, 1, 1) and ds.ordering == "txp"
    assert ds.classes == CLASS_NAMES
    np.testing.assert_array_equal(ds.speaker, [2, 3, 4])
    ev, target = ds[0]
    assert ev.dtype == EVENT_DTYPE and ev.dtype.names == ("t", "x", "p")
    assert target == 7 and type(target) is int
    # float16(0.001) = 0.0010004043579101562 s -> 1000 us (truncated); sorted by time
    assert ev.tolist() == [(1000, 699, 1), (250000, 1, 1), (500000, 3, 1), (1250000, 0, 1)]
    ev, target = ds[1]
    assert ev.shape == (0,) and ev.dtype == EVENT_DTYPE and target == 12
    assert ds[2][0].tolist() == [(0, 42, 1)] and ds[-1][1] == 0


def test_synthetic_files_round_trip(synth_dir):
    for name in ("shd_train.h5", "shd_test.h5"):
        src = read_shd(synth_dir / name)
        ds = SHDEventDataset(synth_dir / name)
        assert len(ds) == len(src)
        for i in range(len(ds)):
            ev, target = ds[i]
            t, u = src.sample(i)
            np.testing.assert_array_equal(ev["t"], np.trunc(t * 1e6).astype(np.int64))
            np.testing.assert_array_equal(ev["x"], u)
            np.testing.assert_array_equal(ev["p"], np.ones(len(t), np.int64))
            assert target == src.labels[i]
        # iteration ends at the last item (IndexError protocol)
        assert [y for _, y in ds] == src.labels.tolist()


def test_items_equal_tonic_shd(synth_dir, tmp_path):
    tonic = pytest.importorskip("tonic")
    folder = tmp_path / "SHD"  # tonic's SHD looks for <save_to>/SHD/shd_test.h5(.zip)
    folder.mkdir()
    (folder / "shd_test.h5").symlink_to(synth_dir / "shd_test.h5")
    (folder / "shd_test.h5.zip").write_bytes(b"")
    theirs = tonic.datasets.SHD(save_to=str(tmp_path), train=False)
    ours = SHDEventDataset(synth_dir / "shd_test.h5")
    assert len(ours) == len(theirs) == 16
    assert ours.sensor_size == theirs.sensor_size
    assert ours.dtype == theirs.dtype and ours.ordering == "".join(theirs.ordering)
    for i in range(16):
        (ev_o, y_o), (ev_t, y_t) = ours[i], theirs[i]
        assert ev_o.dtype == ev_t.dtype
        np.testing.assert_array_equal(ev_o, ev_t)
        assert y_o == y_t


def test_to_microseconds_truncates_like_tonic():
    t = np.array([0.0, 1e-6, 0.0019999, 0.002, 0.9999999], dtype=np.float64)
    np.testing.assert_array_equal(to_microseconds(t), [0, 1, 1999, 2000, 999999])
    assert to_microseconds(t).dtype == np.int64


# ----------------------------------------------------------------------------- ToFrame = our binning

@pytest.mark.parametrize("bin_us", [1000, 2000, 10000])
def test_to_frame_equals_bin_events(synth_dir, bin_us):
    tonic = pytest.importorskip("tonic")
    src = read_shd(synth_dir / "shd_train.h5")
    ds = SHDEventDataset(synth_dir / "shd_train.h5", transform=_to_frame(tonic, bin_us, 10**6))
    ours = bin_events(src.times, src.units, src.offsets, np.arange(len(src)), bin_us / 1e6, 1.0,
                      700)
    for i in range(len(ds)):
        frames, target = ds[i]
        assert frames.shape == (10**6 // bin_us, 1, 700)
        np.testing.assert_array_equal(frames[:, 0, :], ours[i])
        assert target == src.labels[i]
    assert ours.sum() > 0


@pytest.mark.parametrize("bin_us", [2000, 10000])
def test_to_frame_equals_shd_adding_pairs(synth_dir, bin_us):
    tonic = pytest.importorskip("tonic")
    train, test = read_shd(synth_dir / "shd_train.h5"), read_shd(synth_dir / "shd_test.h5")
    kw = dict(batch_size=4, train_batches=3, valid_batches=2, test_batches=2, seed=3,
              bin_size=bin_us / 1e6)
    counts = make_splits(train, test, binary=False, **kw)
    binary = make_splits(train, test, **kw)
    to_frame = _to_frame(tonic, bin_us, 2 * 10**6)
    for name, split in counts.items():
        ds = SHDAddingEventDataset.from_split(split, epoch=1, transform=to_frame)
        pairs = split.pairs(1)
        assert len(ds) == len(pairs) == split.n_pairs
        x, y = split.bin_pairs(pairs)
        xb, yb = binary[name].bin_pairs(binary[name].pairs(1))
        # the batches the trainer sees, gathered from the uint8 digit caches
        xc = np.concatenate([xk.numpy() for xk, _ in split.batches(1)])
        xcb = np.concatenate([xk.numpy() for xk, _ in binary[name].batches(1)])
        assert split.binned().dtype == binary[name].binned().dtype == torch.uint8
        for i in range(len(ds)):
            frames, target = ds[i]
            assert frames.shape == (split.n_steps, 1, 700)
            np.testing.assert_array_equal(frames[:, 0, :], x[i])
            np.testing.assert_array_equal(frames[:, 0, :], xc[i])
            np.testing.assert_array_equal((frames[:, 0, :] > 0).astype(np.float32), xb[i])
            np.testing.assert_array_equal((frames[:, 0, :] > 0).astype(np.float32), xcb[i])
            assert target == y[i] == yb[i]
        assert x.sum() > 0 and x.max() > 1  # counts, not only binary values


def test_pair_events_hand_computed():
    # sample 0 (label 13 = German "drei"): 0.75 s, 1.5 s (beyond the window), 0.125 s;
    # sample 1 (label 8): 0.0 s, 1.0 s (exactly the window: dropped), 0.5 s
    ev = SHDEvents(times=np.array([0.75, 1.5, 0.125, 0.0, 1.0, 0.5]),
                   units=np.array([5, 6, 7, 8, 9, 10], np.int32),
                   offsets=np.array([0, 3, 6]), labels=np.array([13, 8]),
                   speakers=np.zeros(2, np.int64))
    ds = SHDAddingEventDataset(ev, [[0, 1], [1, 0], [1, 1]])
    events, target = ds[0]
    assert events.dtype == EVENT_DTYPE and target == 3 + 8
    assert events.tolist() == [(125000, 7, 1), (750000, 5, 1), (1000000, 8, 1), (1500000, 10, 1)]
    events, target = ds[1]
    assert events.tolist() == [(0, 8, 1), (500000, 10, 1), (1125000, 7, 1), (1750000, 5, 1)]
    assert target == 11 and ds[2][1] == 16
    # a half-second window: only spikes before 0.5 s, the second digit shifted by 500000 us
    half = SHDAddingEventDataset(ev, [[0, 1]], digit_window=0.5)
    assert half[0][0].tolist() == [(125000, 7, 1), (500000, 8, 1)]


def test_transforms_applied_like_tonic(synth_dir):
    ds = SHDEventDataset(synth_dir / "shd_test.h5", transform=lambda e: e["x"].sum(),
                         target_transform=lambda y: y + 100)
    src = read_shd(synth_dir / "shd_test.h5")
    for i in (0, 5):
        total, target = ds[i]
        assert total == src.sample(i)[1].sum() and target == src.labels[i] + 100
    # every item is a fresh array: a transform writing into it changes nothing stored
    plain = SHDEventDataset(synth_dir / "shd_test.h5")
    first, _ = plain[3]
    first["p"] = 0
    assert (plain[3][0]["p"] == 1).all()


# ----------------------------------------------------------------------------- errors

def test_index_errors(synth_dir):
    ds = SHDEventDataset(synth_dir / "shd_test.h5")
    np.testing.assert_array_equal(ds[-16][0], ds[0][0])
    assert ds[np.int64(2)][1] == ds[2][1]
    with pytest.raises(IndexError, match=r"shd_test\.h5: index 16 out of range for 16 items "
                                         r"\(valid: -16\.\.15\)"):
        ds[16]
    with pytest.raises(IndexError, match="index -17 out of range"):
        ds[-17]
    with pytest.raises(TypeError, match="index must be an integer, got float"):
        ds[1.0]
    ev = read_shd(synth_dir / "shd_test.h5")
    pairs = SHDAddingEventDataset(ev, [[0, 1], [2, 3]])
    with pytest.raises(IndexError, match=r"index 2 out of range for 2 items \(valid: -2\.\.1\)"):
        pairs[2]


def test_bad_arguments(synth_dir, tmp_path):
    ev = read_shd(synth_dir / "shd_test.h5")
    with pytest.raises(ValueError, match="source must be the path of an SHD-format HDF5 file "
                                         "or an SHDEvents, got int"):
        SHDEventDataset(3)
    with pytest.raises(ValueError, match="transform must be callable or None, got str"):
        SHDEventDataset(ev, transform="frames")
    with pytest.raises(ValueError, match="pairs must be an integer array of shape"):
        SHDAddingEventDataset(ev, [0, 1])
    with pytest.raises(ValueError, match=r"pairs: sample indices outside 0\.\.15"):
        SHDAddingEventDataset(ev, [[0, 16]])
    with pytest.raises(ValueError, match="digit_window must be a positive whole number of "
                                         "microseconds"):
        SHDAddingEventDataset(ev, [[0, 1]], digit_window=1e-7)
    with pytest.raises(ValueError, match="digit_window"):
        SHDAddingEventDataset(ev, [[0, 1]], digit_window=0.0)
    with pytest.raises(FileNotFoundError, match=r"missing\.h5: no such SHD file"):  # read_shd's
        SHDEventDataset(tmp_path / "missing.h5")
