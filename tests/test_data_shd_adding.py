"""SHD-Adding (docs/design.md §6): split counts, pairs, labels, fixed / fresh batches, torch loader, and
the SHD-format writer (byte-reproducible, readable by our reader and by tonic)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from elm_neuro.data.binning import bin_events
from elm_neuro.data.shd import SHDEvents, read_shd
from elm_neuro.data.shd_adding import (SHDAdding, SHDAddingBatches, draw_pairs, make_loader,
                                       make_splits, pair_labels, validation_split,
                                       write_shd_adding)
from elm_neuro.data.synth import generate_synthetic_events


@pytest.fixture(scope="module")
def events():
    return generate_synthetic_events(60, seed=11, split="train")


def _tiny_events(n, rng):
    """n samples with one spike each: cheap stand-in for a full-size file."""
    return SHDEvents(times=rng.random(n), units=rng.integers(0, 700, n).astype(np.int32),
                     offsets=np.arange(n + 1, dtype=np.int64),
                     labels=rng.integers(0, 20, n), speakers=np.zeros(n, np.int64))


def test_validation_split_counts():
    train_idx, valid_idx = validation_split(8156)
    assert len(train_idx) == 6579 and len(valid_idx) == 1577
    assert np.intersect1d(train_idx, valid_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, valid_idx), np.arange(8156))
    # the documented draw: Bernoulli(0.2) from default_rng(12345), 1 = validation
    mask = np.random.default_rng(12345).random(8156) >= 0.8
    np.testing.assert_array_equal(valid_idx, np.flatnonzero(mask))
    # depends only on the count: the same on a labels array of that length
    labels = np.random.default_rng(5).integers(0, 20, 8156)
    assert len(validation_split(len(labels))[1]) == 1577


def test_make_splits_sizes_and_fixed_pairs():
    rng = np.random.default_rng(0)
    train, test = _tiny_events(8156, rng), _tiny_events(2264, rng)
    splits = make_splits(train, test)
    assert len(splits["train"].pool) == 6579 and len(splits["valid"].pool) == 1577
    assert len(splits["test"].pool) == 2264
    assert (splits["train"].n_batches, splits["valid"].n_batches,
            splits["test"].n_batches) == (2000, 500, 2000)
    for s in splits.values():
        assert s.batch_size == 8 and s.n_steps == 1000 and s.n_channels == 700
        assert s.n_classes == 19
    test_pairs = splits["test"].pairs()
    assert test_pairs.shape == (16000, 2)
    assert splits["valid"].pairs().shape == (4000, 2)
    # fixed pairs: seed 0 generator, the same on every call and in a new object
    np.testing.assert_array_equal(test_pairs,
                                  draw_pairs(np.random.default_rng(0), np.arange(2264), 16000))
    np.testing.assert_array_equal(splits["test"].pairs(epoch=5), test_pairs)
    again = make_splits(train, test)
    np.testing.assert_array_equal(again["valid"].pairs(), splits["valid"].pairs())
    assert np.isin(splits["valid"].pairs(), splits["valid"].pool).all()
    assert np.isin(splits["train"].pairs(0), splits["train"].pool).all()
    # training pairs: fresh per epoch, a function of (seed, epoch)
    tr = splits["train"]
    assert not np.array_equal(tr.pairs(0), tr.pairs(1))
    np.testing.assert_array_equal(tr.pairs(3), again["train"].pairs(3))
    other_seed = make_splits(train, test, seed=1)["train"]
    assert not np.array_equal(tr.pairs(3), other_seed.pairs(3))


def test_pairs_with_replacement_and_triangular_labels():
    rng = np.random.default_rng(1)
    pairs = draw_pairs(rng, np.array([4, 9]), 1000)
    assert set(np.unique(pairs)) == {4, 9}
    assert (pairs[:, 0] == pairs[:, 1]).any()          # same sample twice is allowed
    labels = np.arange(20)                            # one sample per class, uniform pool
    big = draw_pairs(np.random.default_rng(2), np.arange(20), 400_000)
    y = pair_labels(labels, big)
    assert y.min() == 0 and y.max() == 18
    freq = np.bincount(y, minlength=19) / len(y)
    expected = (10 - np.abs(np.arange(19) - 9)) / 100.0   # triangular, 10 % at 9
    np.testing.assert_allclose(freq, expected, atol=0.003)
    assert freq.argmax() == 9
    # the sum uses label mod 10 (German digits 10..19 count as 0..9)
    np.testing.assert_array_equal(pair_labels(np.array([13, 7, 19]),
                                              np.array([[0, 1], [2, 2], [0, 0]])), [10, 18, 6])


def test_batches_are_binned_pairs(events):
    task = SHDAdding(events, np.arange(60), fixed=False, n_batches=3, batch_size=4, seed=5)
    assert (task.n_steps, task.n_channels, task.n_classes) == (1000, 700, 19)
    batches = list(task.batches(epoch=2))
    assert len(batches) == 3
    pairs = task.pairs(2)
    for k, (x, y) in enumerate(batches):
        assert x.dtype == torch.float32 and x.shape == (4, 1000, 700)
        assert y.dtype == torch.int64 and y.shape == (4,)
        assert set(np.unique(x.numpy())) <= {0.0, 1.0}
        p = pairs[k * 4:(k + 1) * 4]
        first = bin_events(events.times, events.units, events.offsets, p[:, 0], 0.002, 1.0,
                           700, binary=True)
        second = bin_events(events.times, events.units, events.offsets, p[:, 1], 0.002, 1.0,
                            700, binary=True)
        np.testing.assert_array_equal(x[:, :500].numpy(), first)
        np.testing.assert_array_equal(x[:, 500:].numpy(), second)
        np.testing.assert_array_equal(y.numpy(), events.labels[p[:, 0]] % 10
                                      + events.labels[p[:, 1]] % 10)
    # resumable: start mid-epoch gives the tail of the same epoch
    tail = list(task.batches(epoch=2, start=1))
    for (xa, ya), (xb, yb) in zip(batches[1:], tail):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_small_cpu_configuration_and_loader(events):
    task = SHDAdding(events, np.arange(60), fixed=True, n_batches=2, batch_size=3,
                     bin_size=0.01, channel_factor=7, binary=False)
    assert (task.n_steps, task.n_channels) == (200, 100)
    x, y = task.batch(0, 0)
    assert x.shape == (3, 200, 100) and x.max() > 1       # counts mode
    ds = SHDAddingBatches(task)
    assert len(ds) == 2
    got = list(make_loader(task))
    ref = list(task.batches())
    assert len(got) == 2
    for (xa, ya), (xb, yb) in zip(got, ref):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(IndexError, match="batch 2"):
        task.batch(0, 2)
    with pytest.raises(ValueError, match="pool"):
        SHDAdding(events, np.array([60]), fixed=True, n_batches=1)


def test_writer_file_matches_on_the_fly_task(events, tmp_path):
    task = SHDAdding(events, np.arange(60), fixed=True, n_batches=5, batch_size=4, seed=0)
    pairs = task.pairs()
    out = write_shd_adding(events, pairs, tmp_path / "add.h5")
    back = read_shd(out, n_classes=19)
    assert len(back) == 20
    np.testing.assert_array_equal(back.extra["pair_index"], pairs)
    np.testing.assert_array_equal(back.extra["digits"], events.labels[pairs] % 10)
    np.testing.assert_array_equal(back.labels, task.labels())
    assert back.keys == tuple(str(k) for k in range(19))
    # binning the file over 2 s gives exactly the on-the-fly inputs
    x_file = bin_events(back.times, back.units, back.offsets, np.arange(20), 0.002, 2.0, 700,
                        binary=True)
    x_task = np.concatenate([task.batch(0, k)[0].numpy() for k in range(5)])
    np.testing.assert_array_equal(x_file, x_task)
    # spike counts: each digit cut to 1 s
    for i, (a, b) in enumerate(pairs[:5]):
        ta, tb = events.sample(a)[0], events.sample(b)[0]
        assert back.counts[i] == (ta < 1).sum() + (tb < 1).sum()
    with h5py.File(out, "r") as f:
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float32
        assert f["labels"].dtype == np.uint8


def test_writer_byte_identical_and_atomic(events, tmp_path):
    pairs = draw_pairs(np.random.default_rng(0), np.arange(60), 12)
    a = write_shd_adding(events, pairs, tmp_path / "a.h5")
    b = write_shd_adding(events, pairs, tmp_path / "b.h5")
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="pair indices outside"):
        write_shd_adding(events, np.array([[0, 60]]), tmp_path / "c.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]  # no temp left


def test_tonic_reads_shd_adding_file(events, tmp_path):
    tonic = pytest.importorskip("tonic")
    folder = tmp_path / "SHD"
    folder.mkdir()
    pairs = draw_pairs(np.random.default_rng(0), np.arange(60), 6)
    write_shd_adding(events, pairs, folder / "shd_test.h5")
    (folder / "shd_test.h5.zip").write_bytes(b"")
    ds = tonic.datasets.SHD(save_to=str(tmp_path), train=False)
    assert len(ds) == 6
    ev, target = ds[3]
    assert target == events.labels[pairs[3, 0]] % 10 + events.labels[pairs[3, 1]] % 10
    assert ev["t"].max() < 2e6


# ----------------------------------------------------------------------------- the digit cache

def _old_batch(events, pairs, bin_size, window, channel_factor, binary):
    """The per-batch binning every batch went through before the digit cache (float32 frames
    of the first and second digits, concatenated in time)."""
    p = len(pairs)
    both = bin_events(events.times, events.units, events.offsets,
                      np.concatenate((pairs[:, 0], pairs[:, 1])), bin_size, window, 700,
                      channel_factor, binary)
    x = np.concatenate((both[:p], both[p:]), axis=1)
    return x, events.labels[pairs[:, 0]] % 10 + events.labels[pairs[:, 1]] % 10


@pytest.mark.parametrize("kw", [dict(), dict(bin_size=0.01, channel_factor=7, binary=False),
                                dict(bin_size=0.004, digit_window=0.6, channel_factor=3)])
def test_cached_batches_equal_the_per_batch_binning(events, kw, monkeypatch):
    import elm_neuro.data.shd_adding as A

    pool = np.arange(3, 57)
    train = SHDAdding(events, pool, fixed=False, n_batches=4, batch_size=5, seed=2, **kw)
    valid = SHDAdding(events, pool[::2], fixed=True, n_batches=3, batch_size=4, seed=0, **kw)
    calls = []
    real = A.bin_events
    monkeypatch.setattr(A, "bin_events", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    bs, win = kw.get("bin_size", 0.002), kw.get("digit_window", 1.0)
    cf, binary = kw.get("channel_factor", 1), kw.get("binary", True)
    for split in (train, valid):
        for epoch in (0, 1, 4):
            pairs = split.pairs(epoch)
            for k, (x, y) in enumerate(split.batches(epoch)):
                p = pairs[k * split.batch_size:(k + 1) * split.batch_size]
                x_old, y_old = _old_batch(events, p, bs, win, cf, binary)
                assert x.dtype == torch.float32 and y.dtype == torch.int64
                assert x.device.type == "cpu" and x.is_contiguous()
                np.testing.assert_array_equal(x.numpy(), x_old)
                np.testing.assert_array_equal(y.numpy(), y_old)
                xb, yb = split.bin_pairs(p)          # the reference path, still there
                np.testing.assert_array_equal(x.numpy(), xb)
                np.testing.assert_array_equal(y.numpy(), yb)
        # resuming mid-epoch gives the same tensors
        for (xa, ya), (xb, yb) in zip(list(split.batches(3))[2:], split.batches(3, start=2)):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # each split binned its distinct pool samples once (bin_pairs above called bin_events too:
    # only the calls over whole pools are the cache's)
    assert sorted(c for c in calls if c > 2 * 5) == sorted([len(pool), len(pool[::2])])
    t = train.binned()
    assert t.dtype == torch.uint8 and tuple(t.shape) == (len(pool), train.steps_per_digit,
                                                          train.n_channels)
    assert train.cache_nbytes == len(pool) * train.steps_per_digit * train.n_channels
    if not binary:
        assert t.max() > 1  # counts are kept as counts


def test_training_step_does_not_bin(events, monkeypatch):
    import elm_neuro.data.shd_adding as A

    task = SHDAdding(events, np.arange(60), fixed=False, n_batches=6, batch_size=4, seed=1)
    task.binned()
    monkeypatch.setattr(A, "bin_events", lambda *a, **k: pytest.fail("binned in a batch"))
    assert len(list(task.batches(0))) == 6 and len(list(task.batches(1))) == 6


def test_cache_keeps_counts_above_255_exactly(events):
    # one sample with 300 spikes in one cell: uint8 would overflow, the cache is float32
    t = np.concatenate((events.times, np.full(300, 0.25)))
    u = np.concatenate((events.units, np.full(300, 5))).astype(events.units.dtype)
    off = np.concatenate((events.offsets, [events.offsets[-1] + 300]))
    ev = SHDEvents(times=t, units=u, offsets=off, labels=np.append(events.labels, 3),
                   speakers=np.append(events.speakers, 0))
    counts = SHDAdding(ev, np.arange(61), fixed=True, n_batches=4, batch_size=8, binary=False)
    assert counts.binned().dtype == torch.float32 and counts.binned().max() == 300
    binary = SHDAdding(ev, np.arange(61), fixed=True, n_batches=4, batch_size=8)
    assert binary.binned().dtype == torch.uint8
    pairs = np.array([[60, 0], [1, 60], [60, 60]])
    for split in (counts, binary):
        np.testing.assert_array_equal(split.pair_inputs(pairs).numpy(), split.bin_pairs(pairs)[0])
    assert counts.pair_inputs(pairs)[0, 125, 5] == 300


def test_pairs_outside_the_pool_are_refused(events):
    task = SHDAdding(events, np.arange(10, 20), fixed=True, n_batches=1, batch_size=2)
    with pytest.raises(ValueError, match="sample 3 is not in the pool this split was binned from"):
        task.pair_inputs(np.array([[10, 11], [3, 12]]))
    with pytest.raises(ValueError, match="sample 60 is not in the pool"):
        task.pair_inputs(np.array([[10, 60]]))


def test_make_splits_passes_the_device(events):
    splits = make_splits(events, events, batch_size=2, train_batches=2, valid_batches=1,
                         test_batches=1, bin_size=0.01, channel_factor=7, device="cpu")
    for split in splits.values():
        assert split.device == torch.device("cpu")
        x, y = split.batch(0, 0)
        assert x.device == y.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cache_on_cuda_gives_the_cpu_batches(events, monkeypatch):
    import elm_neuro.data.shd_adding as A

    monkeypatch.setattr(A, "_CACHE_CHUNK", 7)  # several host chunks copied to the device
    cpu = SHDAdding(events, np.arange(60), fixed=False, n_batches=3, batch_size=4, seed=5)
    gpu = SHDAdding(events, np.arange(60), fixed=False, n_batches=3, batch_size=4, seed=5,
                    device="cuda")
    assert gpu.binned().device.type == "cuda" and gpu.binned().dtype == torch.uint8
    for (xc, yc), (xg, yg) in zip(cpu.batches(2), gpu.batches(2)):
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        assert torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())


def test_cache_built_in_chunks_equals_one_call(events, monkeypatch):
    import elm_neuro.data.shd_adding as A

    whole = SHDAdding(events, np.arange(60), fixed=True, n_batches=2, batch_size=4).binned()
    monkeypatch.setattr(A, "_CACHE_CHUNK", 7)  # 9 chunks, the last one of 4 samples
    chunked = SHDAdding(events, np.arange(60), fixed=True, n_batches=2, batch_size=4).binned()
    assert torch.equal(whole, chunked)
    ref = bin_events(events.times, events.units, events.offsets, np.arange(60), 0.002, 1.0,
                     700, binary=True)
    np.testing.assert_array_equal(chunked.numpy(), ref.astype(np.uint8))
