"""Binning (docs/design.md §5): Numba fast path == numpy reference == torch version, edge cases, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from elm_neuro.data.binning import (CountOverflowError, bin_events, bin_events_numpy,
                                    bin_events_torch, n_bins)
from test_data_helpers import flatten, random_events

PATHS = [bin_events, bin_events_numpy,
         lambda *a, **k: bin_events_torch(*a, **k).numpy()]


def _all_equal(*args, **kw):
    outs = [f(*args, **kw) for f in PATHS]
    for o in outs[1:]:
        assert o.dtype == np.float32
        np.testing.assert_array_equal(outs[0], o)
    _uint8_and_out_equal(outs[0], *args, **kw)
    return outs[0]


def _uint8_and_out_equal(ref, *args, **kw):
    """uint8 (fresh and into a reused buffer full of garbage) and float32 into a reused
    buffer give exactly ``ref`` (the float32 result of every path)."""
    for dtype, garbage in ((np.uint8, 7), (np.float32, np.nan)):
        fresh = bin_events(*args, **kw, dtype=dtype)
        assert fresh.dtype == dtype
        np.testing.assert_array_equal(fresh, ref.astype(dtype))
        np.testing.assert_array_equal(bin_events_numpy(*args, **kw, dtype=dtype), fresh)
        buf = np.full(ref.shape, garbage, dtype=dtype)
        got = bin_events(*args, **kw, out=buf)          # dtype taken from the buffer
        assert got is buf
        np.testing.assert_array_equal(buf, ref.astype(dtype))


def test_n_bins():
    assert n_bins(1.0, 0.002) == 500
    assert n_bins(1.0, 0.01) == 100
    assert n_bins(1.0, 0.003) == 334
    assert n_bins(2.0, 0.002) == 1000
    assert n_bins(0.001, 0.002) == 1
    with pytest.raises(ValueError, match="bin_size"):
        n_bins(1.0, 0.0)
    with pytest.raises(ValueError, match="window"):
        n_bins(-1.0, 0.002)


def test_hand_computed_counts_and_binary():
    # bin 0.25 s and window 1 s: all values below are exact binary fractions
    times = [np.array([0.0, 0.25, 0.2, 0.999, 1.0, 1.5, 0.5, 0.5]),
             np.array([]),
             np.array([0.75])]
    units = [np.array([0, 1, 1, 2, 3, 3, 4, 4]), np.array([], int), np.array([6])]
    t, u, off = flatten(times, units)
    x = _all_equal(t, u, off, [0, 1, 2, 0], 0.25, 1.0, 7)
    assert x.shape == (4, 4, 7)
    exp0 = np.zeros((4, 7), np.float32)
    exp0[0, 0] = 1      # t=0 -> bin 0
    exp0[1, 1] = 1      # t=0.25 exactly at the edge -> bin 1
    exp0[0, 1] = 1      # t=0.2 -> bin 0
    exp0[3, 2] = 1      # t=0.999 -> last bin
    exp0[2, 4] = 2      # two spikes in one cell (counts)
    # t=1.0 (= window) and t=1.5 dropped
    np.testing.assert_array_equal(x[0], exp0)
    np.testing.assert_array_equal(x[3], exp0)       # repeated sample index
    assert x[1].sum() == 0                          # empty sample
    assert x[2, 3, 6] == 1 and x[2].sum() == 1
    xb = _all_equal(t, u, off, [0], 0.25, 1.0, 7, binary=True)
    np.testing.assert_array_equal(xb[0], (exp0 > 0).astype(np.float32))


def test_channel_factor_and_t_offset():
    t, u, off = flatten([np.array([0.1, 0.1, 0.1, 0.6])], [np.array([0, 2, 699, 5])])
    x = _all_equal(t, u, off, [0], 0.5, 1.0, 700, channel_factor=3)
    assert x.shape == (1, 2, 234)                   # ceil(700 / 3) channels
    assert x[0, 0, 0] == 2 and x[0, 0, 233] == 1 and x[0, 1, 1] == 1
    # t' = t - 0.5: spikes at 0.1 fall before 0 and are dropped, 0.6 -> 0.1 -> bin 0
    x = _all_equal(t, u, off, [0, 0], 0.5, 1.0, 700, channel_factor=3, t_offset=[0.5, 0.0])
    assert x[0].sum() == 1 and x[0, 0, 1] == 1
    assert x[1].sum() == 4


def test_float16_bin_edges_match_exact_arithmetic():
    # every non-negative float16 time below 1.3 s, binned at 2 ms: bin = floor(t / bin) in
    # exact rational arithmetic equals the float64 computation used by all paths
    from fractions import Fraction

    t16 = np.arange(0, 1 << 15, dtype=np.uint16).view(np.float16)
    t = np.unique(t16[np.isfinite(t16) & (t16 >= 0) & (t16 < 1.3)].astype(np.float64))
    units = np.zeros(len(t), np.int32)
    off = np.arange(len(t) + 1, dtype=np.int64)   # one spike per sample
    x = bin_events(t, units, off, np.arange(len(t)), 0.002, 1.3, 1)
    got = x[:, :, 0].argmax(axis=1)
    exact = np.array([int(Fraction(float(v)) / Fraction(1, 500)) for v in t])
    np.testing.assert_array_equal(got, exact)
    assert (x.sum(axis=(1, 2)) == 1).all()


@pytest.mark.parametrize("kw", [
    dict(bin_size=0.002, window=1.0, n_channels=700),
    dict(bin_size=0.01, window=1.0, n_channels=700, channel_factor=7, binary=True),
    dict(bin_size=0.003, window=0.8, n_channels=700, channel_factor=3),
    dict(bin_size=0.001, window=1.4, n_channels=700, binary=True),
])
def test_random_events_all_paths_agree(kw):
    rng = np.random.default_rng(1)
    t, u, off = flatten(*random_events(rng, 40))
    idx = rng.integers(0, 40, 25)
    x = _all_equal(t, u, off, idx, **kw)
    # total = spikes inside the window (counts mode)
    if not kw.get("binary"):
        inside = sum(int((t[off[i]:off[i + 1]] < kw["window"]).sum()) for i in idx)
        assert x.sum() == inside


def test_random_offsets_and_unit_dtypes_agree():
    rng = np.random.default_rng(2)
    t, u, off = flatten(*random_events(rng, 30))
    idx = rng.integers(0, 30, 16)
    toff = rng.uniform(-0.2, 0.3, 16)
    ref = bin_events_numpy(t, u, off, idx, 0.002, 1.0, 700, t_offset=toff)
    for dtype in (np.uint16, np.int64):
        np.testing.assert_array_equal(
            bin_events(t, u.astype(dtype), off, idx, 0.002, 1.0, 700, t_offset=toff), ref)
    np.testing.assert_array_equal(
        bin_events_torch(torch.from_numpy(t), torch.from_numpy(u.astype(np.int64)),
                         torch.from_numpy(off), torch.from_numpy(idx), 0.002, 1.0, 700,
                         t_offset=torch.from_numpy(toff)).numpy(), ref)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_property_paths_agree(data):
    n = data.draw(st.integers(1, 6))
    times, units = [], []
    for _ in range(n):
        k = data.draw(st.integers(0, 12))
        # times on a coarse grid so that many spikes sit exactly on bin edges / the window end
        grid = data.draw(st.lists(st.integers(0, 130), min_size=k, max_size=k))
        times.append(np.array(grid, np.float64) / 100.0)
        units.append(np.array(data.draw(st.lists(st.integers(0, 20), min_size=k, max_size=k)),
                              np.int64))
    t, u, off = flatten(times, units)
    idx = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=5)), np.int64)
    bin_size = data.draw(st.sampled_from([0.01, 0.02, 0.05, 0.1, 0.3]))
    window = data.draw(st.sampled_from([0.5, 1.0, 1.2]))
    factor = data.draw(st.integers(1, 5))
    binary = data.draw(st.booleans())
    x = _all_equal(t, u, off, idx, bin_size, window, 21, channel_factor=factor, binary=binary)
    assert x.shape == (len(idx), n_bins(window, bin_size), -(-21 // factor))


def test_errors_name_the_bad_entry():
    t, u, off = flatten([np.array([0.1, 0.2]), np.array([0.3])], [np.array([1, 2]),
                                                                  np.array([700])])
    for f in PATHS:
        with pytest.raises(ValueError, match=r"sample 1 \(entry 1 of sample_idx\) has a unit "
                                              r"outside 0\.\.699"):
            f(t, u, off, [0, 1], 0.002, 1.0, 700)
        with pytest.raises(ValueError, match=r"sample_idx\[1\] = 5 is outside 0\.\.1"):
            f(t, u, off, [0, 5], 0.002, 1.0, 700)
    t2 = t.copy()
    t2[0] = np.nan
    for f in PATHS:
        with pytest.raises(ValueError, match="sample 0 .*NaN"):
            f(t2, u, off, [0], 0.002, 1.0, 800)
    with pytest.raises(ValueError, match="offsets"):
        bin_events(t, u, np.array([0, 1]), [0], 0.002, 1.0, 800)
    with pytest.raises(ValueError, match="channel_factor"):
        bin_events(t, u, off, [0], 0.002, 1.0, 800, channel_factor=0)
    with pytest.raises(ValueError, match="bin_size"):
        bin_events(t, u, off, [0], -1.0, 1.0, 800)
    with pytest.raises(ValueError, match="units must be integers"):
        bin_events(t, u.astype(float), off, [0], 0.002, 1.0, 800)


def test_empty_selection():
    t, u, off = flatten([np.array([0.1])], [np.array([1])])
    x = _all_equal(t, u, off, np.zeros(0, np.int64), 0.002, 1.0, 700)
    assert x.shape == (0, 500, 700)


def test_matches_tonic_to_frame():
    tonic = pytest.importorskip("tonic")
    from elm_neuro.data.synth import generate_synthetic_events

    ev = generate_synthetic_events(6, seed=3)
    to_frame = tonic.transforms.ToFrame(sensor_size=(700, 1, 1), time_window=2000.0,
                                        start_time=0.0, end_time=1e6)
    dtype = np.dtype([("t", float), ("x", int), ("p", int)])
    ours = bin_events(ev.times, ev.units, ev.offsets, np.arange(6), 0.002, 1.0, 700)
    for i in range(6):
        t, u = ev.sample(i)
        s = np.zeros(len(t), dtype=dtype)
        s["t"], s["x"], s["p"] = t * 1e6, u, 0
        frames = to_frame(s)[:, 0, :]
        assert frames.shape == (500, 700)
        np.testing.assert_array_equal(frames, ours[i])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_torch_binning_on_cuda_matches_reference():
    rng = np.random.default_rng(4)
    t, u, off = flatten(*random_events(rng, 50, max_spikes=3000))
    idx = rng.integers(0, 50, 32)
    ref = bin_events_numpy(t, u, off, idx, 0.002, 1.0, 700)
    dev = torch.device("cuda")
    out = bin_events_torch(torch.from_numpy(t).to(dev), torch.from_numpy(u).to(dev),
                           torch.from_numpy(off).to(dev), torch.from_numpy(idx).to(dev),
                           0.002, 1.0, 700)
    assert out.device.type == "cuda"
    np.testing.assert_array_equal(out.cpu().numpy(), ref)
    outb = bin_events_torch(t, u, off, idx, 0.01, 1.0, 700, channel_factor=7, binary=True,
                            device=dev)
    np.testing.assert_array_equal(
        outb.cpu().numpy(), bin_events_numpy(t, u, off, idx, 0.01, 1.0, 700, 7, True))


def test_parallel_binning_uses_the_non_spinning_workqueue_layer():
    """OpenMP's busy-waiting workers would take the cores from training (see binning docstring)."""
    import os

    import numba

    bin_events(np.array([0.1]), np.array([3]), np.array([0, 1]), np.array([0]), 0.01, 1.0, 10)
    if "NUMBA_THREADING_LAYER" not in os.environ:
        assert numba.threading_layer() == "workqueue"


# ----------------------------------------------------------------------------- out= and dtype=

def test_reused_buffer_holds_only_the_latest_batch():
    rng = np.random.default_rng(7)
    t, u, off = flatten(*random_events(rng, 30, max_spikes=800))
    buf = np.empty((8, 500, 700), np.uint8)
    for _ in range(4):   # batch after batch into one buffer: no spike of an earlier batch stays
        idx = rng.integers(0, 30, 8)
        ref = bin_events_numpy(t, u, off, idx, 0.002, 1.0, 700)
        assert bin_events(t, u, off, idx, 0.002, 1.0, 700, out=buf) is buf
        np.testing.assert_array_equal(buf, ref.astype(np.uint8))
        assert buf.sum() == ref.sum() > 0
    # binary into the same buffer, and a float32 buffer reused the same way
    idx = rng.integers(0, 30, 8)
    bin_events(t, u, off, idx, 0.002, 1.0, 700, binary=True, out=buf)
    np.testing.assert_array_equal(buf, bin_events_numpy(t, u, off, idx, 0.002, 1.0, 700,
                                                        binary=True, dtype=np.uint8))
    f32 = np.full((8, 100, 100), -1.0, np.float32)
    for idx in (rng.integers(0, 30, 8), rng.integers(0, 30, 8)):
        bin_events(t, u, off, idx, 0.01, 1.0, 700, channel_factor=7, out=f32)
        np.testing.assert_array_equal(f32, bin_events_numpy(t, u, off, idx, 0.01, 1.0, 700, 7))
    # a view along the batch axis of a bigger buffer is C-contiguous and works too
    big = np.full((20, 500, 700), 9, np.uint8)
    bin_events(t, u, off, idx, 0.002, 1.0, 700, out=big[4:12])
    np.testing.assert_array_equal(big[4:12], bin_events_numpy(t, u, off, idx, 0.002, 1.0, 700,
                                                              dtype=np.uint8))
    assert (big[:4] == 9).all() and (big[12:] == 9).all()


def test_uint8_counts_raise_instead_of_wrapping():
    # 255 spikes in one cell fit uint8; 256 would wrap to 0: refused with the sample named
    t, u, off = flatten([np.full(255, 0.5), np.full(256, 0.5), np.full(300, 0.5)],
                        [np.full(255, 3), np.full(256, 3), np.arange(300) % 2])
    for f in (bin_events, bin_events_numpy):
        x = f(t, u, off, [0, 2], 0.002, 1.0, 700, dtype=np.uint8)
        assert x[0, 250, 3] == 255 and x[0].sum() == 255
        assert x[1, 250, 0] == 150 and x[1, 250, 1] == 150
        with pytest.raises(CountOverflowError,
                           match=r"sample 1 \(entry 2 of sample_idx\) has more than 255 spikes in "
                                 r"one \(time bin, channel\) cell, which dtype=uint8 cannot count"):
            f(t, u, off, [0, 2, 1], 0.002, 1.0, 700, dtype=np.uint8)
        # binary uint8 and float32 counts are unaffected
        xb = f(t, u, off, [1], 0.002, 1.0, 700, dtype=np.uint8, binary=True)
        assert xb[0, 250, 3] == 1 and xb.sum() == 1
        xf = f(t, u, off, [1], 0.002, 1.0, 700)
        assert xf[0, 250, 3] == 256.0 and xf.dtype == np.float32
    assert issubclass(CountOverflowError, ValueError)
    # pooling channels can overflow a cell that no single unit does
    t2, u2, off2 = flatten([np.full(260, 0.5)], [np.arange(260) % 7])
    with pytest.raises(CountOverflowError, match="sample 0"):
        bin_events(t2, u2, off2, [0], 0.002, 1.0, 700, channel_factor=7, dtype=np.uint8)
    assert bin_events(t2, u2, off2, [0], 0.002, 1.0, 700, dtype=np.uint8).max() == 38


def test_out_and_dtype_errors_name_the_argument():
    t, u, off = flatten([np.array([0.1])], [np.array([1])])
    args = (t, u, off, [0, 0], 0.002, 1.0, 700)
    with pytest.raises(ValueError, match=r"out must have shape \(len\(sample_idx\), T, C\) = "
                                         r"\(2, 500, 700\) for these arguments, got \(2, 500, 7\)"):
        bin_events(*args, out=np.empty((2, 500, 7), np.uint8))
    with pytest.raises(ValueError, match=r"out has dtype uint8 but dtype=float32 was requested"):
        bin_events(*args, out=np.empty((2, 500, 700), np.uint8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"out must have dtype float32 or uint8, got float64"):
        bin_events(*args, out=np.empty((2, 500, 700), np.float64))
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        bin_events(*args, out=np.empty((2, 700, 500), np.uint8).transpose(0, 2, 1))
    ro = np.empty((2, 500, 700), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out must be writeable"):
        bin_events(*args, out=ro)
    with pytest.raises(ValueError, match=r"out must be a numpy array of shape \(2, 500, 700\) "
                                         r"and dtype uint8, got Tensor"):
        bin_events(*args, out=torch.zeros(2, 500, 700, dtype=torch.uint8), dtype=np.uint8)
    for f in (bin_events, bin_events_numpy):
        with pytest.raises(ValueError, match=r"dtype must be one of \('float32', 'uint8'\), got int16"):
            f(*args, dtype=np.int16)
        with pytest.raises(ValueError, match=r"dtype must be a numpy dtype"):
            f(*args, dtype=torch.uint8)


def test_uint8_into_reused_buffer_matches_tonic_to_frame():
    tonic = pytest.importorskip("tonic")
    from elm_neuro.data.synth import generate_synthetic_events

    ev = generate_synthetic_events(8, seed=4)
    to_frame = tonic.transforms.ToFrame(sensor_size=(700, 1, 1), time_window=2000.0,
                                        start_time=0, end_time=1e6)
    dtype = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])
    buf = np.full((4, 500, 700), 200, np.uint8)
    for idx in (np.arange(4), np.arange(4, 8)):
        bin_events(ev.times, ev.units, ev.offsets, idx, 0.002, 1.0, 700, out=buf)
        for j, i in enumerate(idx):
            t, u = ev.sample(i)
            s = np.zeros(len(t), dtype=dtype)
            s["t"], s["x"] = (t * 1e6).astype(np.int64), u   # tonic's SHD: integer microseconds
            np.testing.assert_array_equal(to_frame(s)[:, 0, :], buf[j])


@pytest.mark.parametrize("bin_size", [0.001, 0.002, 0.003, 0.007, 0.01, 1 / 3, 0.0025, 0.05])
def test_spikes_on_and_next_to_bin_edges(bin_size):
    # the kernel finds the bin with a multiplication by 1/bin and falls back to the division
    # near an edge: every time j*bin and its neighbours within 3 ulp lands where
    # floor(t / bin) in float64 puts it (the numpy reference), and exact edges j*bin in
    # exact rational arithmetic land in bin j or j-1 exactly as that division says
    window = 1.0
    n_t = n_bins(window, bin_size)
    edges = np.arange(n_t + 1) * bin_size
    t = edges.copy()
    for direction in (-np.inf, np.inf):
        step = edges.copy()
        for _ in range(3):
            step = np.nextafter(step, direction)
            t = np.concatenate((t, step))
    t = t[(t >= 0) & (t < window)]
    off = np.arange(len(t) + 1, dtype=np.int64)  # one spike per sample
    units = np.zeros(len(t), np.int32)
    idx = np.arange(len(t))
    x = bin_events(t, units, off, idx, bin_size, window, 1, dtype=np.uint8)[:, :, 0]
    np.testing.assert_array_equal(x, bin_events_numpy(t, units, off, idx, bin_size, window, 1,
                                                      dtype=np.uint8)[:, :, 0])
    k = np.floor(t / bin_size).astype(np.int64)
    kept = x.sum(1) == 1
    np.testing.assert_array_equal(kept, k < n_t)   # e.g. t = 1 - 1 ulp at bin 1/3: k = 3 = T
    np.testing.assert_array_equal(x[kept].argmax(1), k[kept])
    assert kept.sum() > 3 * n_t
