"""Timescales: autocorrelation fits recover a known OU/AR(1) tau, impulse responses of a leaky
unit give the exact tau, and a small ELMNetwork is analysed end to end."""
import math
import os

import numpy as np
import pytest
import torch

from elm_neuro.analysis import timescales as ts
from elm_neuro.networks.elm_network import ELMNetwork


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny per-step matmuls: one thread avoids OpenMP spin-wait contention on busy 2-core runners."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ar1(tau, shape, seed=0):
    rng = np.random.default_rng(seed)
    phi = math.exp(-1.0 / tau)
    b, t, n = shape
    e = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)  # stationary start
    for k in range(1, t):
        x[:, k] = phi * x[:, k - 1] + e[:, k]
    return x


def test_autocorrelation_exact_small_cases():
    x = np.tile(np.array([1.0, -1.0]), 5)[None, :, None]  # alternating, zero mean
    r = ts.autocorrelation(x, max_lag=3)
    assert r[:, 0] == pytest.approx([1.0, -1.0, 1.0, -1.0])
    const = np.ones((2, 10, 1))
    assert np.all(np.isnan(ts.autocorrelation(const, 4)))


def test_exponential_fit_exact():
    lags = np.arange(1, 60, dtype=float)
    acf = 0.8 * np.exp(-lags / 12.5) + 0.05
    amp, tau, off = ts.fit_exponential_decay(lags, acf)
    assert tau == pytest.approx(12.5, rel=1e-6) and amp == pytest.approx(0.8, rel=1e-6) and off == pytest.approx(0.05, abs=1e-8)


def test_intrinsic_timescale_of_ar1_within_15_percent():
    x = _ar1(20.0, (32, 2000, 4))
    x = np.concatenate([x, np.zeros((32, 2000, 1)), np.full((32, 2000, 1), 3.0)], axis=2)  # silent, constant
    res = ts.intrinsic_timescales(x, dt=1.0)
    assert res.tau.shape == (6,)
    assert np.all(np.abs(res.tau[:4] / 20.0 - 1) < 0.15)
    assert abs(np.mean(res.tau[:4]) / 20.0 - 1) < 0.07
    assert np.isnan(res.tau[4]) and np.isnan(res.tau[5])
    assert res.acf[0, :4] == pytest.approx(np.ones(4))
    assert res.acf[1, :4] == pytest.approx(np.full(4, math.exp(-1 / 20)), abs=0.01)
    # dt converts steps to time units
    res2 = ts.intrinsic_timescales(x[..., :1], dt=2.0)
    assert res2.tau[0] == pytest.approx(2 * res.tau[0])


def _leaky(kappa):
    """Linear leaky integrators y_t = kappa y_{t-1} + x_t on the first two input channels."""
    def model(x):
        x = np.asarray(x)[0]
        y = np.zeros((x.shape[0], 2))
        s = np.zeros(2)
        for t in range(x.shape[0]):
            s = kappa * s + x[t, :2]
            y[t] = s
        return y[None]
    return model


@pytest.mark.parametrize("method", ["threshold", "fit"])
def test_impulse_response_of_leaky_unit_is_exact(method):
    tau = 7.5
    res = ts.impulse_response_timescales(_leaky(math.exp(-1 / tau)), n_in=3, steps=120, t0=10, channels=[0],
                                         amplitude=0.5, method=method)
    assert res.tau[0] == pytest.approx(tau, rel=1e-6)
    assert res.peak_time[0] == 10 and res.peak[0] == pytest.approx(0.5)
    assert np.isnan(res.tau[1])  # channel 1 not stimulated: no response
    assert res.response.shape == (120, 2)
    # a constant background does not change a linear system's response
    base = np.ones((1, 120, 3), dtype=np.float32)
    res_b = ts.impulse_response_timescales(_leaky(math.exp(-1 / tau)), 3, 120, t0=10, baseline=base, method=method)
    assert res_b.tau == pytest.approx([tau, tau], rel=1e-5)


def test_decay_time_without_crossing_is_nan():
    tau, tp, pk = ts.decay_time(np.linspace(1.0, 0.9, 20))
    assert math.isnan(tau) and tp == 0 and pk == 1.0


def test_elm_network_end_to_end(tmp_path):
    torch.manual_seed(0)
    net = ELMNetwork.from_preset("shd-adding", d_m=3, n=8, n_in=20)
    assert net.cfg.n_in == 20 and net.training
    x = (torch.rand(4, 300, 20, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    rep = ts.elm_timescale_report(net, x, max_lag=60)
    assert net.training  # mode restored
    assert rep["activity"].shape == (4, 300, 8)
    assert rep["intrinsic_tau"].shape == (8,) and rep["impulse_tau"].shape == (8,)
    active = rep["activity"].std(axis=(0, 1)) > 0
    assert np.all(np.isnan(rep["intrinsic_tau"][~active]))
    finite = np.isfinite(rep["intrinsic_tau"])
    assert finite.sum() >= 4 and np.all(rep["intrinsic_tau"][finite] > 0)
    mem = rep["memory"]
    assert mem["tau_init"] == pytest.approx([1.0, math.sqrt(500.0), 500.0], rel=1e-6)
    assert mem["tau"].shape == (8, 3) and np.allclose(mem["log_ratio"], 0.0, atol=1e-6)
    assert mem["learnable"] is False
    w = rep["readout"]["weights"]
    assert w.shape == (8, 3) and np.allclose(w.sum(axis=1), 1.0)
    assert np.all((rep["effective_tau"] >= 1.0 - 1e-9) & (rep["effective_tau"] <= 500.0 + 1e-6))
    plain = ts.readout_timescale_weights(net)["weights"]
    wy = net.hidden.w_y.detach().abs().sum(1).double().numpy()
    assert plain == pytest.approx(wy / wy.sum(1, keepdims=True))
    # the impulse response through the real network equals the direct difference of two runs
    fn = ts.elm_activity_fn(net)
    probe = np.zeros((1, 300, 20), np.float32)
    y0 = fn(probe)
    probe[0, 0] = 1.0
    assert rep["impulse"].response == pytest.approx((fn(probe) - y0)[0], abs=1e-6)
    # plots: ELM parameters, and an ELM vs LIF comparison with spiking taus given as arrays
    lif = ts.spiking_timescales(torch.full((8,), 25.0), tau_adapt=np.array([100.0, 200.0]))
    lif["intrinsic_tau"] = ts.intrinsic_timescales(np.random.default_rng(0).random((2, 100, 8))).tau
    paths = [ts.plot_elm_timescales(rep, tmp_path / "elm.png"),
             ts.plot_timescale_comparison({"ELM": rep, "LIF": lif}, tmp_path / "cmp.png"),
             ts.plot_tau_distributions({"ELM memory": rep["param_tau"], "LIF membrane": lif["param_tau"]},
                                       tmp_path / "dist.png")]
    for p in paths:
        assert os.path.getsize(p) > 1000


def test_learnable_taus_moved_from_init():
    net = ELMNetwork.from_preset("shd-adding", d_m=3, n=4, n_in=10, learn_tau=True)
    init = ts.elm_memory_timescales(net)
    assert init["learnable"] and np.allclose(init["log_ratio"], 0.0, atol=1e-5)
    from elm_neuro.neurons.elm import tau_to_theta
    with torch.no_grad():
        lo, hi = net.hidden.tau_lo, net.hidden.tau_hi
        net.hidden.tau_theta[0, 1] = tau_to_theta(torch.tensor(2 * math.sqrt(500.0)), lo, hi)
    moved = ts.elm_memory_timescales(net)
    assert moved["log_ratio"][0, 1] == pytest.approx(math.log(2.0), abs=1e-4)
    assert np.allclose(np.delete(moved["log_ratio"].ravel(), 1), 0.0, atol=1e-5)


def test_spiking_stats_and_errors(tmp_path):
    res = ts.spiking_timescales([10.0, 20.0, 30.0, 40.0], dt=2.0)
    st = res["param_stats"]
    assert st["count"] == 4 and st["median"] == 12.5 and st["min"] == 5.0 and st["max"] == 20.0
    assert "adapt_tau" not in res
    with pytest.raises(ValueError, match="tau_mem"):
        ts.spiking_timescales([1.0, -2.0])
    with pytest.raises(ValueError, match="activity"):
        ts.intrinsic_timescales(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="max_lag"):
        ts.autocorrelation(np.zeros((1, 10, 1)), max_lag=10)
    with pytest.raises(ValueError, match="t0"):
        ts.impulse_response_timescales(_leaky(0.5), 3, 10, t0=10)
    with pytest.raises(ValueError, match="channels"):
        ts.impulse_response_timescales(_leaky(0.5), 3, 10, channels=[5])
    with pytest.raises(ValueError, match="model"):
        ts.impulse_response_timescales("not callable", 3, 10)
    with pytest.raises(ValueError, match="layer"):
        ts.elm_memory_timescales(object())
    with pytest.raises(ValueError, match="results"):
        ts.plot_timescale_comparison({}, tmp_path / "x.png")


def _ar1_phi(phi, b, t, seed):
    rng = np.random.default_rng(seed)
    x, e = np.zeros((b, t)), rng.standard_normal((b, t))
    for i in range(1, t):
        x[:, i] = phi * x[:, i - 1] + e[:, i]
    return x


def test_intrinsic_fits_outside_one_bin_to_the_sample_are_unresolved():
    """issue 23: a tau below the bin width or beyond the sample's duration is a fit artefact: NaN in
    ``tau`` (kept in ``tau_fit``), counted as unresolved. Hand-built traces at 20 ms bins, T = 100:
    AR(1) with tau 5 bins (resolved), tau 0.4 bins (below one bin), a ramp over the whole sample and
    AR(1) with tau 1000 bins (beyond the 2 s sample), and a silent neuron (NaN, not counted)."""
    b, t = 60, 100
    cols = [_ar1_phi(math.exp(-1 / 5), b, t, 0), _ar1_phi(math.exp(-1 / 0.4), b, t, 1),
            np.tile(np.arange(t, dtype=float), (b, 1)), _ar1_phi(math.exp(-1 / 1000), b, t, 2), np.zeros((b, t))]
    res = ts.intrinsic_timescales(np.stack(cols, -1), dt=20.0)
    assert res.bounds == (20.0, 2000.0)
    assert res.resolved.tolist() == [True, False, False, False, False]
    assert res.tau[0] == res.tau_fit[0] and abs(res.tau[0] - 100.0) < 20.0  # 5 bins of 20 ms
    assert res.tau_fit[1] < 20.0 and res.tau_fit[2] > 2000.0 and res.tau_fit[3] > 2000.0
    assert np.isnan(res.tau[1:]).all() and np.isnan(res.tau_fit[4])
    assert (res.n_unresolved, res.n_below, res.n_above) == (3, 1, 2)
    # the bounds are inclusive, NaN stays NaN
    got = ts.resolvable([0.5, 1.0, 20.0, 100.0, 101.0, float("nan")], 1.0, 100.0)
    assert np.array_equal(got, [np.nan, 1.0, 20.0, 100.0, np.nan, np.nan], equal_nan=True)


def test_timescale_figure_has_no_empty_panel_and_counts_unresolved(tmp_path, monkeypatch):
    """One panel per kind of timescale that some network has, networks overlaid: no empty panel
    (the committed figure had 5 of 12); a network without a kind is named in that panel's legend;
    the intrinsic panel counts each network's unresolved fits and draws only resolved ones."""
    figs = []
    original = ts.save_figure
    monkeypatch.setattr(ts, "save_figure", lambda fig, path: figs.append(fig) or original(fig, path))
    fit = np.array([0.5, 2.0, 10.0, 40.0, 80.0])  # steps; T = 50: 0.5 and 80 unresolved
    intr = ts.IntrinsicTimescales(ts.resolvable(fit, 1.0, 50.0), fit, fit, np.zeros((2, 5)), np.arange(2.0), 1.0,
                                  tau_fit=fit, bounds=(1.0, 50.0))
    elm = {"family": "elm", "intrinsic": intr, "intrinsic_tau": intr.tau, "impulse_tau": np.array([1.0, 3.0]),
           "param_tau": np.geomspace(1, 500, 8)}
    adlif = {"family": "adlif", "param_tau": np.array([1.0, 2.0]), "adapt_tau": np.array([5.0, 7.0, 9.0])}
    ts.plot_timescale_comparison({"ELM": elm, "ADLIF": adlif}, tmp_path / "t.png", unit="ms", scale=20.0)
    fig = figs[-1]
    assert [ax.get_title() for ax in fig.axes] == ["intrinsic (autocorrelation)", "impulse response",
                                                   "parameter tau (memory / membrane)", "adaptation tau"]
    for ax in fig.axes:
        assert sum(p.get_height() if hasattr(p, "get_height") else 0 for p in ax.patches) >= 0
        assert len(ax.patches) >= 1  # a histogram in every panel
    legend = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legend[0][0] == "ELM: 3 neurons, median 200 ms; 2 unresolved"
    assert legend[0][1] == "ADLIF: not measured (no activity recorded)"
    assert legend[0][2].startswith("resolvable: one bin to the sample (20 to 1k ms)")
    assert legend[1][1] == "ADLIF: not measured (spiking: its pulse response is tau_mem)"
    assert legend[3] == ["ELM: none (no adaptation current)", "ADLIF: 3 neurons, median 140 ms"]
    # the drawn intrinsic histogram holds the 3 resolved neurons only, the range marked at 20 and 1000 ms
    counts, _ = np.histogram(intr.tau[np.isfinite(intr.tau)] * 20.0, bins=10)
    assert counts.sum() == 3
    dotted = sorted(float(l.get_xdata()[0]) for l in fig.axes[0].lines if l.get_linestyle() == ":")
    assert dotted == [20.0, 1000.0]
