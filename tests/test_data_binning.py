"""Binning (SPEC 5): Numba fast path == numpy reference == torch version, edge cases, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from elm_neuro.data.binning import bin_events, bin_events_numpy, bin_events_torch, n_bins
from test_data_helpers import flatten, random_events

PATHS = [bin_events, bin_events_numpy,
         lambda *a, **k: bin_events_torch(*a, **k).numpy()]


def _all_equal(*args, **kw):
    outs = [f(*args, **kw) for f in PATHS]
    for o in outs[1:]:
        assert o.dtype == np.float32
        np.testing.assert_array_equal(outs[0], o)
    return outs[0]


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
