"""Is one configuration better than another over seeds? Welch's two-sample t test.

For seed results ``a`` (n_a runs) and ``b`` (n_b runs) with sample variances ``s_a^2``, ``s_b^2``:

    diff = mean(a) - mean(b),   se = sqrt(s_a^2 / n_a + s_b^2 / n_b),   t = diff / se,
    df = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1))   (Welch-Satterthwaite),

the two-sided p value ``2 P(T_df > |t|)`` and the ``level`` interval ``diff ± t_{df, (1+level)/2} se``.
It does not assume equal variances (seed spreads differ between model families).

Choices where the textbook is silent: with fewer than two runs on a side, or both sides without
spread (``se = 0``), nothing is estimated (``p`` and the interval are NaN, ``reason`` says why), so a
report never shows a p value computed from nothing. The per-run binomial error of a test
accuracy is not added: the seed spread already contains it for the runs compared.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats


class Welch(NamedTuple):
    diff: float  # mean(a) - mean(b)
    low: float  # the interval's ends (NaN when not estimated)
    high: float
    p: float  # two-sided p value (NaN when not estimated)
    t: float
    df: float
    n_a: int
    n_b: int
    level: float
    reason: str = ""  # why nothing was estimated ("" when it was)

    def text(self, digits: int = 3) -> str:
        """``diff +0.123 (95% CI 0.050 to 0.196; Welch p = 0.012, n 3 vs 3)`` (``p < 0.001`` below that) or the reason."""
        head = f"diff {self.diff:+.{digits}f}"
        if self.reason:
            return f"{head} (no test: {self.reason})"
        p = f"= {self.p:.2g}" if self.p >= 0.001 else "< 0.001"
        return (f"{head} ({self.level:.0%} CI {self.low:.{digits}f} to {self.high:.{digits}f}; "
                f"Welch p {p}, n {self.n_a} vs {self.n_b})")


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Welch:
    """Welch's t test of ``mean(a) > / < mean(b)`` (module docstring); NaNs are dropped."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    x = np.asarray([v for v in a if v is not None and math.isfinite(v)], float)
    y = np.asarray([v for v in b if v is not None and math.isfinite(v)], float)
    na, nb = x.size, y.size
    diff = float(x.mean() - y.mean()) if na and nb else math.nan
    nan = math.nan
    if na < 2 or nb < 2:
        return Welch(diff, nan, nan, nan, nan, nan, na, nb, level, "needs at least 2 runs on each side")
    va, vb = x.var(ddof=1) / na, y.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Welch(diff, nan, nan, nan, nan, nan, na, nb, level, "no spread on either side")
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    t = diff / se
    p = float(2.0 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + level / 2.0, df)) * se
    return Welch(diff, diff - half, diff + half, p, float(t), float(df), na, nb, level)


__all__ = ["Welch", "welch"]
