"""Information model (docs/design.md §11): formulas, both limits, fits recovering known parameters, optimum."""
import math
import os

import numpy as np
import pytest

from elm_neuro.analysis import information_model as im
from elm_neuro.analysis import scaling as sc
from elm_neuro.networks.elm_config import ELMLayerConfig

TRUE = im.InfoModelParams(s=3.0, a_e=200.0, g_e=1.0, c=0.02)
H = im.label_entropy(im.adding_label_probs())
P_FIXED = 8094  # SHD-Adding readout + linear map: 19 (300 + 90 + 16) + 19 * 20
DMS = (2, 3, 4, 5, 7, 9, 11, 15, 20, 25)


def _grid():
    """(N, k_e, budget) of a d_m sweep at five budgets (N from the affine budget)."""
    n, ke, b = [], [], []
    for p in (2e4, 5e4, 1e5, 2e5, 5e5):
        for d_m in DMS:
            k_e = ELMLayerConfig(d_m=d_m).internal_params()
            nn = round((p - P_FIXED) / (300 + k_e))
            if nn >= 1:
                n.append(nn)
                ke.append(k_e)
                b.append(p)
    return np.array(n, float), np.array(ke, float), np.array(b)


def _sweep(kind="loss", noise=0.01, seed=0, q=1.5):
    rng = np.random.default_rng(seed)
    n, ke, _ = _grid()
    kc = np.full_like(n, 300.0)
    if kind == "loss":
        y = im.predicted_loss(n, ke, kc, TRUE, H)
    else:
        y = im.predicted_accuracy(n, ke, kc, TRUE, H, chance=0.1, q=q)
    return n, ke, kc, y + rng.normal(0, noise, y.size)


def test_label_entropy_of_shd_adding():
    probs = im.adding_label_probs()
    assert probs.size == 19 and probs.sum() == pytest.approx(1.0) and probs.max() == pytest.approx(0.1)
    assert H == pytest.approx(4.0306, abs=1e-4)
    assert im.label_entropy([1, 1, 1, 1]) == pytest.approx(2.0)


def test_forward_formulas_exact():
    p = im.InfoModelParams(s=2.0, a_e=100.0, a_c=50.0, g_e=2.0, g_c=0.5, c=0.1)
    assert im.snr_single(100.0, 50.0, p) == pytest.approx(2.0 * 0.5**2 * 0.5**0.5)
    snr1 = im.snr_single(300.0, 200.0, p)
    assert im.snr_population(1, 300.0, 200.0, p) == pytest.approx(snr1)
    assert im.snr_population(10, 300.0, 200.0, p) == pytest.approx(10 * snr1 / (1 + 9 * 0.1))
    assert im.snr_population(10, 300.0, 200.0, p.replace(c=0.0)) == pytest.approx(10 * snr1)
    i = im.information(10, 300.0, 200.0, p)
    assert i == pytest.approx(0.5 * math.log2(1 + 10 * snr1 / 1.9))
    assert im.information(10, 300.0, 200.0, p, h_y=0.5) == 0.5  # capped
    assert im.predicted_loss(10, 300.0, 200.0, p, h_y=4.0) == pytest.approx(4.0 - i)
    assert im.accuracy_from_information(0.0, 4.0, 0.1, 2.0) == pytest.approx(0.1)
    assert im.accuracy_from_information(2.0, 4.0, 0.1, 2.0) == pytest.approx(0.1 + 0.9 * 0.25)
    assert im.accuracy_from_information(9.0, 4.0, 0.1, 2.0) == pytest.approx(1.0)


def test_limits_redundancy_and_saturation():
    # more neurons stop helping: SNR_pop -> SNR_1 / c
    snr1 = im.snr_single(500.0, 300.0, TRUE)
    big = im.snr_population(1e9, 500.0, 300.0, TRUE)
    assert big == pytest.approx(im.redundancy_limit(500.0, 300.0, TRUE), rel=1e-6)
    assert big == pytest.approx(snr1 / TRUE.c, rel=1e-6)
    gains = np.diff(im.information(np.array([1e2, 1e3, 1e4, 1e5, 1e6]), 500.0, 300.0, TRUE))
    assert np.all(gains > 0) and gains[-1] < 1e-2 * gains[0]
    # more complex neurons stop helping: SNR_1 -> s
    assert im.snr_single(1e12, 300.0, TRUE) == pytest.approx(im.saturation_limit(300.0, TRUE), rel=1e-8)
    assert im.saturation_limit(300.0, TRUE) == pytest.approx(3.0)
    gains = np.diff(im.snr_single(np.array([1e2, 1e3, 1e4, 1e5, 1e6]), 300.0, TRUE))
    assert np.all(gains > 0) and gains[-1] < 1e-2 * gains[0]
    # so at a fixed budget the loss has an interior minimum over N
    k_e = np.geomspace(10, 70_000, 200)
    n = (77_000 - P_FIXED) / (300 + k_e)
    ok = n >= 1
    loss = im.predicted_loss(n[ok], k_e[ok], 300.0, TRUE, H)
    j = int(np.argmin(loss))
    assert 0 < j < ok.sum() - 1


def test_fit_recovers_parameters_and_optimum(tmp_path):
    n, ke, kc, y = _sweep()
    fit = im.fit_information_model(n, ke, kc, y, H, n_boot=20, seed=0)
    assert fit.fixed == {"a_c": 0.0, "g_c": 1.0}  # k_c does not vary
    assert fit.params.c == pytest.approx(0.02, rel=0.1)
    assert fit.params.s == pytest.approx(3.0, rel=0.1)
    assert fit.r2 > 0.99 and fit.rmse < 0.015
    assert np.all(np.isfinite([fit.stderr[k] for k in fit.free]))
    lo, hi = fit.ci["c"]
    assert lo <= fit.params.c <= hi
    true_opt = im.optimal_allocation(TRUE, 77_000, 300.0, p_fixed=P_FIXED, h_y=H)
    fit_opt = im.optimal_allocation(fit.params, 77_000, 300.0, p_fixed=P_FIXED, h_y=H)
    assert fit_opt["n"] == pytest.approx(true_opt["n"], rel=0.2)
    assert fit_opt["k_e"] == pytest.approx(true_opt["k_e"], rel=0.2)
    summary = fit.summary()
    assert summary["c"] == fit.params.c and "c_se" in summary and summary["n_points"] == n.size
    for path in (im.plot_residuals(fit, tmp_path / "res.png"),
                 im.plot_model_surface(fit, 77_000, tmp_path / "surf.png", p_fixed=P_FIXED,
                                       points={"n": n, "k_e": ke, "value": y})):
        assert os.path.getsize(path) > 1000


def test_fit_accuracy_kind():
    n, ke, kc, y = _sweep(kind="accuracy", noise=0.003, q=1.5)
    fit = im.fit_information_model(n, ke, kc, np.clip(y, 0, 1), H, kind="accuracy", chance=0.1)
    assert fit.r2 > 0.99
    assert fit.q == pytest.approx(1.5, rel=0.25)
    assert fit.params.c == pytest.approx(0.02, rel=0.3)
    assert fit.predict(57, 901, 300) == pytest.approx(im.predicted_accuracy(57, 901, 300, TRUE, H, 0.1, 1.5), abs=0.02)


def test_fit_from_rows_with_fixed_parameter():
    n, ke, kc, y = _sweep(noise=0.0)
    rows = [dict(n=int(a), k_e=int(b), k_c=int(c), p=int(a * (b + c) + P_FIXED), seed=0, test_loss=float(d * math.log(2)))
            for a, b, c, d in zip(n, ke, kc, y)]
    assert im.estimate_p_fixed(rows) == P_FIXED
    fit = im.fit_information_model_rows(rows, "test_loss", H, to_bits=1 / math.log(2), fix={"g_e": 1.0})
    assert fit.kind == "loss" and "g_e" not in fit.free
    assert fit.params.c == pytest.approx(0.02, rel=1e-3)
    assert fit.params.a_e == pytest.approx(200.0, rel=1e-3)
    assert fit.r2 == pytest.approx(1.0, abs=1e-8)


def test_optimum_stationarity_asymptotics_and_scaling(tmp_path):
    p = TRUE
    # stationarity condition of the module docstring at a moderate budget
    b = 1e6
    opt = im.optimal_allocation(p, b, 300.0)
    k, nn = opt["k_e"], opt["n"]
    lhs = p.g_e * p.a_e / (k * (k + p.a_e))
    rhs = (1 - p.c) / ((300 + k) * (1 - p.c) + b * p.c)
    assert lhs == pytest.approx(rhs, rel=1e-4)
    assert nn * (300 + k) == pytest.approx(b)
    # large budgets: k_e* ~ sqrt(g_e a_e c B / (1 - c)), both N* and k_e* ~ P^(1/2)
    big = im.optimal_allocation(p, 1e12, 300.0)
    asym = im.asymptotic_optimum(p, 1e12, 300.0)
    assert big["k_e"] == pytest.approx(asym["k_e"], rel=0.01)
    assert big["n"] == pytest.approx(asym["n"], rel=0.01)
    budgets = np.geomspace(1e9, 1e13, 6)
    path = im.optimum_path(p, budgets, 300.0, h_y=10.0)
    g_n = sc.fit_power_law(budgets, [r["n"] for r in path], n_boot=0)
    g_k = sc.fit_power_law(budgets, [r["k_e"] for r in path], n_boot=0)
    assert g_n.b == pytest.approx(0.5, abs=0.01) and g_k.b == pytest.approx(0.5, abs=0.01)
    # frontier loss: L* = L_inf + A P^-1/2 with L_inf = H - 0.5 log2(1 + s/c)
    law = sc.fit_scaling_law(budgets, [r["loss"] for r in path], n_boot=0)
    assert law.alpha == pytest.approx(0.5, abs=0.03)
    assert law.l_inf == pytest.approx(im.frontier_loss_limit(p, 300.0, 10.0), abs=1e-3)
    assert os.path.getsize(im.plot_optimum_path(path, tmp_path / "path.png")) > 1000


def test_optimum_with_callable_budget_and_discrete_k_e():
    affine = im.optimal_allocation(TRUE, 77_000, 300.0, p_fixed=P_FIXED)
    same = im.optimal_allocation(TRUE, 77_000, 300.0, p_of=lambda n, k_e, k_c: n * (k_c + k_e) + P_FIXED)
    assert same["n"] == pytest.approx(affine["n"], rel=1e-5)
    assert same["k_e"] == pytest.approx(affine["k_e"], rel=1e-4)
    # an extra quadratic cost per neuron (e.g. all-to-all recurrence) pushes towards fewer neurons
    quad = im.optimal_allocation(TRUE, 77_000, 300.0, p_of=lambda n, k_e, k_c: n * (k_c + k_e) + 5 * n**2 + P_FIXED)
    assert quad["n"] < affine["n"]
    assert quad["p"] == pytest.approx(77_000, rel=1e-6)
    k_e_values = [ELMLayerConfig(d_m=d).internal_params() for d in DMS]
    disc = im.optimal_allocation(TRUE, 77_000, 300.0, p_fixed=P_FIXED, k_e_values=k_e_values, integer_n=True, h_y=H)
    assert disc["k_e"] in k_e_values and disc["n"] == math.floor(disc["n"])
    scores = [im.information(math.floor((77_000 - P_FIXED) / (300 + k)), k, 300.0, TRUE) for k in k_e_values]
    assert disc["k_e"] == k_e_values[int(np.argmax(scores))]
    # several candidate k_c: more synapses help when a_c > 0
    pc = TRUE.replace(a_c=300.0)
    multi = im.optimal_allocation(pc, 1e6, [100.0, 300.0, 1000.0])
    assert multi["k_c"] in (100.0, 300.0, 1000.0)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="c must lie"):
        im.InfoModelParams(s=1.0, a_e=1.0, c=1.5)
    with pytest.raises(ValueError, match="s must be"):
        im.InfoModelParams(s=0.0, a_e=1.0)
    with pytest.raises(ValueError, match="k_e"):
        im.snr_single(-1.0, 10.0, TRUE)
    with pytest.raises(ValueError, match="n must"):
        im.snr_population(0.5, 10.0, 10.0, TRUE)
    with pytest.raises(ValueError, match="h_y"):
        im.predicted_loss(1, 1, 1, TRUE, h_y=None)
    with pytest.raises(ValueError, match="kind"):
        im.fit_information_model([1], [1], [1], [1], H, kind="bpc")
    with pytest.raises(ValueError, match="chance"):
        im.fit_information_model([1, 2], [1, 2], [1, 1], [0.5, 0.6], H, kind="accuracy")
    with pytest.raises(ValueError, match="fix"):
        im.fit_information_model([1, 2], [1, 2], [1, 1], [0.5, 0.6], H, fix={"zeta": 1})
    with pytest.raises(ValueError, match="budget"):
        im.optimal_allocation(TRUE, 10.0, 300.0, p_fixed=100.0)
    with pytest.raises(ValueError, match="k_c"):
        im.plot_model_surface(TRUE, 1e5, tmp_path / "s.png")


def _sweep_with_budgets(noise, seed=0):
    rng = np.random.default_rng(seed)
    n, ke, b = _grid()
    kc = np.full_like(n, 300.0)
    y = im.predicted_loss(n, ke, kc, TRUE, H)
    return n, ke, kc, y + rng.normal(0, noise, y.size), b


def test_leave_one_budget_out_on_a_known_model():
    """Noise-free data of a known model: every held-out budget is predicted exactly and every
    fold finds the true parameters; with noise the held-out RMSE is of the noise's size."""
    n, ke, kc, y, b = _sweep_with_budgets(noise=0.0)
    lobo = im.leave_one_budget_out(n, ke, kc, y, b, H, fix={"g_e": 1.0})
    assert lobo.budgets.tolist() == [2e4, 5e4, 1e5, 2e5, 5e5]
    assert lobo.n_points.sum() == y.size and lobo.free == ("s", "a_e", "c")
    assert np.all(lobo.rmse < 1e-4) and lobo.rmse_pooled < 1e-4
    rng_ = lobo.param_range()
    assert rng_["c"][0] == pytest.approx(0.02, rel=1e-3) and rng_["c"][1] == pytest.approx(0.02, rel=1e-3)
    assert rng_["a_e"][0] == pytest.approx(200.0, rel=1e-3) and rng_["a_e"][1] == pytest.approx(200.0, rel=1e-3)
    n, ke, kc, y, b = _sweep_with_budgets(noise=0.01, seed=2)
    lobo = im.leave_one_budget_out(n, ke, kc, y, b, H)
    assert np.all(lobo.rmse < 0.03) and 0.005 < lobo.rmse_pooled < 0.02
    lo, hi = lobo.param_range()["c"]
    assert 0.01 < lo <= hi < 0.04
    s = lobo.summary()
    assert [f["budget"] for f in s["folds"]] == lobo.budgets.tolist() and s["kind"] == "loss"
    assert s["folds"][0]["rmse"] == lobo.rmse[0] and "c" in s["param_range"]
    with pytest.raises(ValueError, match="at least 3 budgets"):
        im.leave_one_budget_out(n[b < 1e5], ke[b < 1e5], kc[b < 1e5], y[b < 1e5], b[b < 1e5], H)
