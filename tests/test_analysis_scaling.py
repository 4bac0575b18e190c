"""Scaling law L*(P) = L_inf + A P^-alpha and growth laws N* = a P^b: recovery from synthetic data."""
import math
import os
from pathlib import Path

import numpy as np
import pytest

from elm_neuro.analysis import scaling as sc
from elm_neuro.analysis import sweep_table as st


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


# --------------------------------------------------------------------------- frontier by planned budget
COMMITTED = Path(__file__).resolve().parents[1] / "analysis" / "results" / "budget-tradeoff" / "results.csv"


def _d_m_rows():
    return [r for r in st.read_table(COMMITTED) if r["stage"] == "d_m"]


def test_committed_budget_tradeoff_is_not_identified():
    """Three planned budgets (2,000, 20,000, 200,000): the d_m 8 cell at P 1,789 belongs to 2,000
    and is no budget of its own, and three budgets do not identify the law: no parameter."""
    fs = sc.frontier_scaling(_d_m_rows(), "test_acc", n_boot=0)
    assert fs.grouping == "planned budget (p_target)"
    assert fs.budgets.tolist() == [2000.0, 20000.0, 200000.0]
    assert [(c["n"], c["d_m"], c["p"]) for c in fs.frontier] == [(3, 4, 2023), (72, 4, 20032), (362, 8, 199978)]
    assert fs.loss == pytest.approx([1 - 0.65333333, 1 - 0.83888889, 1 - 0.88111111], abs=1e-6)
    assert fs.n_falling == 3 and not fs.identified and fs.law is None
    assert fs.reason.startswith("not identified: 3 budget(s), 3 of them")
    assert set(fs.growth) == {"n", "k_e", "d_m"}
    assert fs.growth["n"].ci == {}  # no bootstrap over 3 frontier points
    assert fs.growth["n"].b == pytest.approx(math.log(362 / 3) / math.log(100), abs=0.05)  # through 3, 72, 362


def _law_rows(budgets, l_inf=0.1, a=10.0, alpha=0.5, seeds=4, noise=0.004, flat_from=None, seed=0):
    """Per-seed rows of a sweep: three d_m cells per planned budget, the best one on the law; a
    fourth cell (d_m 8) far below its planned budget (its solver's N = 1), with a poor accuracy."""
    rng = np.random.default_rng(seed)
    rows = []
    for j, b in enumerate(budgets):
        err = sc.power_law(b if flat_from is None or j < flat_from else budgets[flat_from - 1], l_inf, a, alpha)
        for d_m, extra, p in ((1, 0.06, b * 1.01), (2, 0.0, b * 0.99), (4, 0.03, b * 1.02), (8, 0.3, b * 0.85)):
            for s in range(seeds):
                rows.append(dict(p_target=b, p=int(p), n=int(b / (40 * d_m)), d_m=d_m, k_e=40 * d_m, k_c=100,
                                 seed=s, test_acc=1 - err - extra + rng.normal(0, noise)))
    return rows


def test_five_falling_budgets_recover_the_law_within_its_interval():
    budgets = [1000.0, 4000.0, 16000.0, 64000.0, 256000.0]
    fs = sc.frontier_scaling(_law_rows(budgets), "test_acc", n_boot=300, seed=1)
    assert fs.budgets.tolist() == budgets  # the P = 0.85 budget cells joined their planned budget
    assert [c["d_m"] for c in fs.frontier] == [2] * 5
    assert fs.n_falling == 5 and fs.identified and fs.reason == ""
    law = fs.law
    assert law.bootstrap_mode == "seeds" and law.bootstrap.shape[0] >= 290
    assert law.ci["alpha"][0] <= 0.5 <= law.ci["alpha"][1]
    assert law.ci["l_inf"][0] <= 0.1 <= law.ci["l_inf"][1]
    assert law.alpha == pytest.approx(0.5, abs=0.1) and law.l_inf == pytest.approx(0.1, abs=0.02)
    assert law.ci["alpha"][1] - law.ci["alpha"][0] < 0.5


def test_a_flat_top_does_not_identify_the_law():
    """Five budgets whose error stops falling after the third: 3 falling budgets, no fit."""
    budgets = [1000.0, 4000.0, 16000.0, 64000.0, 256000.0]
    rows = _law_rows(budgets, flat_from=3, noise=0.0)
    for r in rows:  # the top budgets a little worse than the third: the error no longer falls
        if r["p_target"] > 16000:
            r["test_acc"] -= 0.001 * budgets.index(r["p_target"])
    fs = sc.frontier_scaling(rows, "test_acc", n_boot=0)
    assert sc.falling_budgets(fs.loss) == fs.n_falling == 3
    assert fs.law is None and "3 of them" in fs.reason
    with pytest.raises(ValueError, match="min_budgets"):
        sc.frontier_scaling(rows, "test_acc", min_budgets=3)


def test_falling_budgets_and_bounded_error_axis(tmp_path):
    assert sc.falling_budgets([0.5, 0.4, 0.45, 0.3, 0.3]) == 3
    assert sc.falling_budgets([0.2, 0.3]) == 1
    assert sc._loss_axis_limits([0.12, 0.35], bounded=True) == (0.0, pytest.approx(0.42))
    assert sc._loss_axis_limits([0.5, 0.95], bounded=True) == (0.0, 1.0)  # never past an error of 1
    fs = sc.frontier_scaling(_d_m_rows(), "test_acc", n_boot=0)
    assert os.path.getsize(sc.plot_scaling(fs, tmp_path / "s.png", ylabel="1 - test_acc")) > 1000
