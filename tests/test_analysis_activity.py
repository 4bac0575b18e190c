"""Activity statistics on hand-made activity and spike arrays (exact values)."""

import numpy as np
import pytest
import torch

from elm_neuro.analysis import activity as ac


def test_regular_train_cv_zero_and_fano_zero():
    s = np.zeros((2, 100, 1))
    s[:, ::5, 0] = 1  # one spike every 5 steps
    assert ac.isi_cv(s)[0] == 0.0
    isi = ac.inter_spike_intervals(s, dt=2.0)[0]
    assert isi.size == 2 * 19 and np.all(isi == 10.0)
    assert ac.firing_rate(s)[0] == pytest.approx(0.2)
    assert ac.fano_factor(s, window=5)[0] == 0.0
    assert ac.fano_factor(s, window=10)[0] == 0.0


def test_known_isis_and_counts():
    s = np.zeros((1, 8, 2))
    s[0, [0, 1, 3, 6], 0] = 1  # ISIs 1, 2, 3
    assert ac.inter_spike_intervals(s)[0].tolist() == [1.0, 2.0, 3.0]
    assert ac.isi_cv(s)[0] == pytest.approx(np.std([1, 2, 3]) / 2.0)
    assert np.isnan(ac.isi_cv(s)[1])  # silent neuron
    # window counts with window 2: [1+1, 0+1, 0+0, 1+0] = [2, 1, 0, 1]
    assert ac.window_counts(s, 2)[0, :, 0].tolist() == [2.0, 1.0, 0.0, 1.0]
    assert ac.fano_factor(s, 2)[0] == pytest.approx(np.var([2, 1, 0, 1], ddof=1) / 1.0)
    assert np.isnan(ac.fano_factor(s, 2)[1])
    # counts per bin (not just 0/1) are summed in windows; ISIs treat a bin as one spike
    c = np.array([[[3], [0], [1], [2]]], dtype=float)
    assert ac.fano_factor(c, 1)[0] == pytest.approx(np.var([3, 0, 1, 2], ddof=1) / 1.5)
    assert ac.inter_spike_intervals(c)[0].tolist() == [2.0, 1.0]


def test_isis_do_not_cross_samples():
    s = np.zeros((2, 10, 1))
    s[0, 9, 0] = 1
    s[1, 0, 0] = 1
    assert ac.inter_spike_intervals(s)[0].size == 0
    assert np.isnan(ac.isi_cv(s)[0])


def test_active_fraction_and_silent():
    x = np.zeros((2, 4, 3))
    x[0, :2, 0] = 0.5
    x[:, :, 1] = 1.0
    assert ac.active_fraction(x).tolist() == [0.25, 1.0, 0.0]
    assert ac.silent_neurons(x).tolist() == [False, False, True]
    assert ac.active_fraction(x, threshold=0.6).tolist() == [0.0, 1.0, 0.0]
    assert ac.active_fraction(torch.tensor(x)).tolist() == [0.25, 1.0, 0.0]


def test_pairwise_correlations_exact():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 50))
    x = np.stack([base, 2 * base + 1, -base, np.ones_like(base)], axis=-1)
    res = ac.pairwise_correlations(x)
    r = res["matrix"]
    assert r[0, 1] == pytest.approx(1.0) and r[0, 2] == pytest.approx(-1.0) and r[1, 2] == pytest.approx(-1.0)
    assert np.all(np.isnan(r[3])) and np.all(np.isnan(r[:, 3]))
    assert res["n_pairs"] == 3 and res["mean"] == pytest.approx(-1 / 3)
    # per-sample offsets do not create correlation when removed
    y = np.zeros((2, 20, 2))
    y[0] = rng.normal(size=(20, 2))
    y[1] = rng.normal(size=(20, 2))
    y[1] += 100.0
    with_mean = ac.pairwise_correlations(y, per_sample_mean=False)["mean"]
    without = ac.pairwise_correlations(y)["mean"]
    assert with_mean > 0.99 and abs(without) < 0.5


def test_poisson_like_spikes():
    rng = np.random.default_rng(1)
    p = 0.02
    s = (rng.random((20, 5000, 3)) < p).astype(float)
    assert np.allclose(ac.isi_cv(s), np.sqrt(1 - p), atol=0.05)  # geometric ISIs
    assert np.allclose(ac.fano_factor(s, 50), 1 - p, atol=0.08)  # binomial counts
    summ = ac.activity_summary(s, window=50, bin_ms=2.0)
    assert summ["spikes"] and summ["n_silent"] == 0
    assert summ["spikes_per_bin"] == pytest.approx(p, rel=0.05)
    assert summ["rate_hz"] == pytest.approx(p * 500.0, rel=0.05)  # 2 ms bins: 500 bins per second
    assert abs(summ["mean_correlation"]) < 0.02
    # 0/1 spikes: the active fraction and mean activity would repeat spikes_per_bin; not reported
    assert "active_fraction" not in summ and "mean_activity" not in summ
    assert ac.activity_summary(s, window=50)["rate_hz"] is None  # no bin width: no rate in Hz


def test_summary_of_counts_and_of_graded_activity():
    counts = np.zeros((1, 10, 2))
    counts[0, :5, 0] = 2.0  # neuron 0: 2 spikes in half the bins; neuron 1 silent
    summ = ac.activity_summary(counts, window=5, bin_ms=10.0)
    assert summ["spikes_per_bin"] == pytest.approx(0.5)  # (2 * 5 / 10 + 0) / 2
    assert summ["rate_hz"] == pytest.approx(50.0)
    assert summ["active_fraction"] == pytest.approx(0.25)  # counts: differs from spikes per bin
    assert summ["n_silent"] == 1 and summ["silent_fraction"] == 0.5
    graded = np.full((1, 10, 2), 0.3)
    graded[0, ::2, 1] = 0.0
    summ = ac.activity_summary(graded)
    assert not summ["spikes"] and "rate_hz" not in summ
    assert summ["active_fraction"] == pytest.approx(0.75) and summ["mean_activity"] == pytest.approx(0.225)
    with pytest.raises(ValueError, match="bin_ms"):
        ac.activity_summary(counts, bin_ms=0.0)


def test_raster_plots(tmp_path):
    s = np.zeros((2, 60, 5))
    s[0, ::7, :3] = 1
    p1 = ac.plot_raster(s, tmp_path / "raster.png", neurons=[0, 1, 2, 4])
    p2 = ac.plot_raster(np.random.default_rng(0).random((1, 60, 5)), tmp_path / "image.png")
    blank = ac.plot_raster(np.zeros((2, 60, 5)), tmp_path / "blank.png", neurons=[0, 1, 2, 4])
    import matplotlib.image as mpimg

    def inked(path):  # share of pixels that are not white
        img = mpimg.imread(path)[..., :3]
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        return float((img.mean(axis=-1) < 0.9).mean())

    # the spikes (every 7th step of 3 neurons) add ink beyond the axes of an empty raster
    assert inked(p1) > inked(blank) + 0.001
    assert inked(p2) > inked(blank) + 0.001


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="x must be"):
        ac.active_fraction(np.zeros(5))
    with pytest.raises(ValueError, match="window"):
        ac.fano_factor(np.zeros((1, 5, 1)), 0)
    with pytest.raises(ValueError, match="window"):
        ac.fano_factor(np.zeros((1, 5, 1)), 6)
    with pytest.raises(ValueError, match="sample"):
        ac.plot_raster(np.zeros((1, 5, 1)), tmp_path / "r.png", sample=3)
    with pytest.raises(ValueError, match="neurons"):
        ac.plot_raster(np.zeros((1, 5, 1)), tmp_path / "r.png", neurons=[2])
    with pytest.raises(ValueError, match="spikes"):
        ac.isi_cv(np.zeros((1, 2, 3, 4)))
