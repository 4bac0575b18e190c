"""Scaling law L*(P) = L_inf + A P^-alpha and growth laws N* = a P^b: recovery from synthetic data."""
import os

import numpy as np
import pytest

from elm_neuro.analysis import scaling as sc


def test_exact_recovery_without_noise():
    p = np.geomspace(1e4, 1e7, 8)
    loss = sc.power_law(p, 1.2, 40.0, 0.35)
    fit = sc.fit_scaling_law(p, loss, n_boot=0)
    assert fit.l_inf == pytest.approx(1.2, rel=1e-5)
    assert fit.a == pytest.approx(40.0, rel=1e-4)
    assert fit.alpha == pytest.approx(0.35, rel=1e-5)
    assert fit.r2 == pytest.approx(1.0, abs=1e-10)
    assert np.max(np.abs(fit.residuals)) < 1e-8
    assert fit.bootstrap_mode == "none" and fit.ci == {}


def test_recovery_with_seed_noise_and_bootstrap_over_seeds():
    rng = np.random.default_rng(1)
    budgets = np.geomspace(2e4, 5e6, 7)
    true = (0.6, 25.0, 0.4)
    p, loss, cell = [], [], []
    for k, b in enumerate(budgets):
        for _ in range(4):  # four seeds per frontier cell
            p.append(b)
            loss.append(sc.power_law(b, *true) + rng.normal(0, 0.004))
            cell.append(k)
    fit = sc.fit_scaling_law(p, loss, cell=cell, n_boot=60, seed=3)
    assert fit.bootstrap_mode == "seeds"
    assert fit.p.size == 7 and fit.loss_std.min() > 0
    assert fit.alpha == pytest.approx(0.4, rel=0.15)
    assert fit.l_inf == pytest.approx(0.6, abs=0.03)
    lo, hi = fit.ci["alpha"]
    assert lo < fit.alpha < hi and hi - lo < 0.1
    assert 0 < fit.stderr["alpha"] < 0.05
    assert abs(fit.alpha - 0.4) < 3 * fit.stderr["alpha"]
    assert fit.r2 > 0.99
    again = sc.fit_scaling_law(p, loss, cell=cell, n_boot=60, seed=3)
    assert np.array_equal(again.bootstrap, fit.bootstrap)  # seeded


def test_bootstrap_over_cells_when_single_seed():
    p = np.geomspace(1e4, 1e6, 6)
    loss = sc.power_law(p, 0.3, 5.0, 0.5) * (1 + 0.01 * np.sin(np.arange(6)))
    fit = sc.fit_scaling_law(p, loss, n_boot=30, seed=0)
    assert fit.bootstrap_mode == "cells" and fit.bootstrap.shape[1] == 3


def test_power_law_growth_fit():
    p = np.geomspace(1e4, 1e8, 9)
    n_star = 0.7 * p**0.5 * np.exp(0.02 * np.cos(np.arange(9)))
    g = sc.fit_power_law(p, n_star, n_boot=100, seed=0)
    assert g.b == pytest.approx(0.5, abs=0.01)
    assert g.a == pytest.approx(0.7, rel=0.1)
    assert g.ci["b"][0] < 0.5 < g.ci["b"][1]
    assert g.r2 > 0.999
    assert g.predict(1e6) == pytest.approx(g.a * 1e6**g.b)


def test_frontier_scaling_from_rows_and_plot(tmp_path):
    rows = []
    rng = np.random.default_rng(0)
    for b in (1e4, 4e4, 1.6e5, 6.4e5, 2.56e6):
        best_n = 0.5 * b**0.5
        for n in (best_n / 4, best_n, best_n * 4):
            n = int(round(n))
            k_e = int(round(b / n))
            for seed in range(3):
                err = sc.power_law(b, 0.1, 3.0, 0.3) + 0.05 * np.log(n / best_n) ** 2 + rng.normal(0, 0.002)
                rows.append(dict(n=n, k_e=k_e, k_c=100, p=float(b), seed=seed, test_acc=1 - err))
    res = sc.frontier_scaling(rows, "test_acc", n_boot=40)
    assert res.transformed == "1 - metric"
    assert [r["n"] for r in res.frontier] == [int(round(0.5 * b**0.5)) for b in (1e4, 4e4, 1.6e5, 6.4e5, 2.56e6)]
    assert res.law.alpha == pytest.approx(0.3, rel=0.2)
    assert res.growth["n"].b == pytest.approx(0.5, abs=0.02)
    assert res.growth["k_e"].b == pytest.approx(0.5, abs=0.02)
    path = sc.plot_scaling(res.law, tmp_path / "scaling.png", growth=res.growth, ylabel="1 - test acc")
    assert os.path.getsize(path) > 1000


def test_errors():
    with pytest.raises(ValueError, match="p"):
        sc.fit_scaling_law([1, 2, -3], [1, 2, 3])
    with pytest.raises(ValueError, match="distinct budgets"):
        sc.fit_scaling_law([1, 1, 2, 2], [1, 1, 0.5, 0.5])
    with pytest.raises(ValueError, match="y must be > 0"):
        sc.fit_power_law([1, 2, 3], [1, 0, 2])
    with pytest.raises(ValueError, match="cell"):
        sc.fit_scaling_law([1, 2, 3], [1, 2, 3], cell=[0, 1])
    with pytest.raises(ValueError, match="fit"):
        sc.plot_scaling("nope", "x.png")
