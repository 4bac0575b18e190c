"""Welch's t test (elm_neuro.analysis.welch) against hand-computed values and scipy."""
import math

import pytest
from scipy import stats

from elm_neuro.analysis.welch import welch


def test_by_hand():
    a, b = [0.80, 0.82, 0.84], [0.70, 0.74]
    w = welch(a, b)
    va, vb = 0.0004 / 3, 0.0008 / 2  # sample variances 0.0004 and 0.0008
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 1)
    assert w.diff == pytest.approx(0.10) and w.t == pytest.approx(0.10 / se) and w.df == pytest.approx(df)
    assert w.p == pytest.approx(2 * stats.t.sf(0.10 / se, df))
    half = stats.t.ppf(0.975, df) * se
    assert (w.low, w.high) == (pytest.approx(0.10 - half), pytest.approx(0.10 + half))
    assert (w.n_a, w.n_b, w.reason) == (3, 2, "")


def test_equals_scipys_welch():
    a, b = [0.61, 0.55, 0.70, 0.66, 0.58], [0.51, 0.49, 0.60]
    ref = stats.ttest_ind(a, b, equal_var=False)
    w = welch(a, b)
    assert w.t == pytest.approx(ref.statistic, rel=1e-12) and w.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert welch(b, a).p == pytest.approx(w.p) and welch(b, a).diff == pytest.approx(-w.diff)


def test_nothing_is_estimated_from_too_little():
    assert welch([0.5], [0.4, 0.3]).reason == "needs at least 2 runs on each side"
    w = welch([0.5, 0.5], [0.4, 0.4, float("nan")])
    assert w.reason == "no spread on either side" and math.isnan(w.p) and w.diff == pytest.approx(0.1)
    assert "no test" in w.text()
    assert welch([0.8, 0.82, 0.84], [0.7, 0.74]).text() == "diff +0.100 (95% CI -0.020 to 0.220; Welch p = 0.066, n 3 vs 2)"
    assert "Welch p < 0.001," in welch([0.80, 0.81, 0.82], [0.10, 0.11, 0.12]).text()
    with pytest.raises(ValueError, match="level"):
        welch([1, 2], [3, 4], level=1.5)
