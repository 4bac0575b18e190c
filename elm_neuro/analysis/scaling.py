"""Scaling laws along the Pareto frontier, and growth of the optimal allocation with budget.

Frontier law (docs/design.md §11)
    L*(P) = L_inf + A * P^(-alpha),   A > 0, alpha > 0,

where L*(P) is the best loss reachable with P parameters (use an error such as ``1 - acc``
for accuracies). The fit minimises the squared residuals ``sum_i (L*(P_i) - L_i)^2`` over the
frontier cells with :func:`scipy.optimize.least_squares`. For conditioning, budgets are
rescaled by their geometric mean ``P_0`` and the positive parameters are log-parameterised:

    L = L_inf + exp(u) * (P / P_0)^(-exp(v)),   A = exp(u) * P_0^alpha,  alpha = exp(v),

so ``A`` and ``alpha`` stay positive without bounds. A few starting values of ``alpha`` are
tried and the lowest cost kept. Standard errors come from the Jacobian at the optimum,
``Cov(theta) = s^2 (J^T J)^-1`` with ``s^2 = RSS / (n - 3)``, propagated to ``(L_inf, A, alpha)``
by the delta method (d A = A (du + ln P_0 dv), d alpha = alpha dv).

Bootstrap ("over seeds / cells", seeded)
    Measurements come as points ``(P_i, L_i)`` with an optional cell label (which points are
    seed replicates of the same configuration). The fit uses the cell means. When every cell
    has at least two replicates, a bootstrap replicate resamples the seeds *within* each cell
    (the configuration set is fixed, the seed noise is resampled); otherwise it resamples whole
    cells with replacement. Percentile intervals of the replicate fits are reported.

Frontier of a sweep table (:func:`frontier_scaling`)
    The frontier point of a budget is its best cell, the budgets being the *planned* ones
    (``p_target``): a cell whose achieved P fell far below its budget stays in that budget. The
    law is fitted only with at least :data:`MIN_FALLING_BUDGETS` (4) budgets whose frontier error
    still falls (:func:`falling_budgets`); with fewer it is "not identified" and no parameter is
    given.

Optimal allocation growth
    N*(P) = a P^b (and k_e*(P) likewise) is a straight line in log-log coordinates,
    ``log N* = log a + b log P``; it is fitted by ordinary least squares
    (:func:`scipy.stats.linregress`), with the slope's standard error from the regression and
    bootstrap percentile intervals over the frontier points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy import optimize, stats

from elm_neuro import defaults as D
from elm_neuro.analysis import sweep_table as st
from elm_neuro.analysis._plotting import check_png_path, new_figure, save_figure, set_log_axis


def power_law(p, l_inf: float, a: float, alpha: float) -> np.ndarray:
    """``L = l_inf + a * p^(-alpha)``."""
    return l_inf + a * np.asarray(p, dtype=float) ** (-alpha)


@dataclass
class ScalingFit:
    """Result of :func:`fit_scaling_law`; ``predict(p)`` evaluates the fitted law."""

    l_inf: float
    a: float
    alpha: float
    stderr: dict  # name -> Jacobian-based standard error
    ci: dict  # name -> (lo, hi) bootstrap percentile interval (empty without bootstrap)
    r2: float
    residuals: np.ndarray  # fit - data at the cell means
    p: np.ndarray  # cell budgets
    loss: np.ndarray  # cell mean losses
    loss_std: np.ndarray  # std over seeds of each cell (0 for one seed)
    bootstrap: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [n_boot, 3]
    bootstrap_mode: str = "none"  # "seeds", "cells" or "none"
    ci_level: float = D.CI_LEVEL

    @property
    def params(self) -> dict:
        return {"l_inf": self.l_inf, "a": self.a, "alpha": self.alpha}

    def predict(self, p) -> np.ndarray:
        return power_law(p, self.l_inf, self.a, self.alpha)


def _check_xy(x, y, xname: str, yname: str, positive_x: bool = True) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.ndim != 1 or x.size != y.size:
        raise ValueError(f"{xname} and {yname} must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError(f"{xname} and {yname} must be finite")
    if positive_x and np.any(x <= 0):
        raise ValueError(f"{xname} must be > 0")
    return x, y


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - yhat) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


def _fit_law_once(p: np.ndarray, loss: np.ndarray, p0: float):
    """Least-squares fit on cells; returns ``(theta, result)`` with theta = (l_inf, u, v)."""
    x = p / p0
    span = max(float(loss.max() - loss.min()), 1e-12)

    def resid(th):
        u, v = np.clip(th[1:], -50.0, 50.0)
        with np.errstate(over="ignore", invalid="ignore"):
            r = th[0] + np.exp(u) * x ** (-np.exp(v)) - loss
        return np.nan_to_num(r, nan=1e12, posinf=1e12, neginf=-1e12)

    best = None
    for alpha0 in (0.1, 0.3, 1.0):
        # Start L_inf below the smallest loss; A so that the law passes the mean loss at P_0.
        l0 = float(loss.min()) - 0.5 * span
        a0 = max(float(loss.mean()) - l0, 1e-12)
        th0 = np.array([l0, math.log(a0), math.log(alpha0)])
        try:
            res = optimize.least_squares(resid, th0, method="lm", x_scale="jac", max_nfev=2000)
        except (ValueError, FloatingPointError):
            continue
        if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
            best = res
    if best is None:
        raise RuntimeError("scaling-law fit failed from every starting point")
    return best.x, best


def _to_natural(th: np.ndarray, p0: float) -> np.ndarray:
    alpha = math.exp(th[2])
    return np.array([th[0], math.exp(th[1]) * p0 ** alpha, alpha])


def _cells_from_points(p, loss, cell) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    if cell is None:
        groups = [np.array([i]) for i in range(p.size)]
    else:
        cell = np.asarray(cell)
        if cell.shape != p.shape:
            raise ValueError(f"cell must have one label per point ({p.size}), got shape {cell.shape}")
        _, inv = np.unique(cell, return_inverse=True)
        groups = [np.nonzero(inv == k)[0] for k in range(inv.max() + 1)]
    cp = np.array([p[g].mean() for g in groups])
    if any(np.ptp(p[g]) > 0 for g in groups):
        raise ValueError("cell: every point of a cell must have the same budget p")
    cl = np.array([loss[g].mean() for g in groups])
    cs = np.array([loss[g].std(ddof=1) if g.size > 1 else 0.0 for g in groups])
    return cp, cl, cs, groups


def fit_scaling_law(
    p,
    loss,
    cell=None,
    n_boot: int = D.FIT_N_BOOT,
    seed: int = 0,
    ci_level: float = D.CI_LEVEL,
) -> ScalingFit:
    """Fit ``L(P) = L_inf + A P^-alpha`` (module docstring) with Jacobian and bootstrap errors.

    Args:
        p: budgets of the points (> 0).
        loss: losses of the points (lower is better).
        cell: optional label per point; points sharing a label are seed replicates of one cell.
        n_boot: bootstrap replicates (0: none).
        seed: seeds the bootstrap generator.
        ci_level: coverage of the percentile intervals.
    """
    p, loss = _check_xy(p, loss, "p", "loss")
    if not (isinstance(n_boot, int) and n_boot >= 0):
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not (0 < ci_level < 1):
        raise ValueError(f"ci_level must lie in (0, 1), got {ci_level!r}")
    cp, cl, cs, groups = _cells_from_points(p, loss, cell)
    if np.unique(cp).size < 3:
        raise ValueError(f"p: need at least 3 distinct budgets to fit 3 parameters, got {np.unique(cp).size}")
    p0 = float(np.exp(np.mean(np.log(cp))))
    th, res = _fit_law_once(cp, cl, p0)
    nat = _to_natural(th, p0)
    fitted = power_law(cp, *nat)
    # Jacobian-based standard errors, delta method to natural parameters.
    dof = cp.size - 3
    stderr = {"l_inf": float("nan"), "a": float("nan"), "alpha": float("nan")}
    if dof > 0:
        s2 = 2.0 * res.cost / dof
        try:
            cov = np.linalg.inv(res.jac.T @ res.jac) * s2
            g = np.array([[1.0, 0.0, 0.0],
                          [0.0, nat[1], nat[1] * math.log(p0)],
                          [0.0, 0.0, nat[2]]])
            cov_nat = g @ cov @ g.T
            se = np.sqrt(np.clip(np.diag(cov_nat), 0, None))
            stderr = dict(zip(("l_inf", "a", "alpha"), map(float, se)))
        except np.linalg.LinAlgError:
            pass
    boots, mode = [], "none"
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        mode = "seeds" if all(g.size >= 2 for g in groups) else "cells"
        for _ in range(n_boot):
            if mode == "seeds":
                bl = np.array([loss[rng.choice(g, g.size)].mean() for g in groups])
                bp = cp
            else:
                pick = rng.integers(0, cp.size, cp.size)
                bp, bl = cp[pick], cl[pick]
                if np.unique(bp).size < 3:
                    continue
            try:
                bth, _ = _fit_law_once(bp, bl, p0)
            except RuntimeError:
                continue
            boots.append(_to_natural(bth, p0))
    boots = np.array(boots).reshape(-1, 3)
    ci = {}
    if boots.shape[0]:
        q = (100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2)
        for k, name in enumerate(("l_inf", "a", "alpha")):
            lo, hi = np.percentile(boots[:, k], q)
            ci[name] = (float(lo), float(hi))
    return ScalingFit(
        l_inf=float(nat[0]), a=float(nat[1]), alpha=float(nat[2]), stderr=stderr, ci=ci,
        r2=_r2(cl, fitted), residuals=fitted - cl, p=cp, loss=cl, loss_std=cs,
        bootstrap=boots, bootstrap_mode=mode, ci_level=ci_level,
    )


# --------------------------------------------------------------------------- power laws N* = a P^b
@dataclass
class PowerLawFit:
    """``y = a * x^b`` fitted in log-log coordinates; ``predict(x)`` evaluates it."""

    a: float
    b: float
    b_stderr: float
    ci: dict  # "a" / "b" -> bootstrap percentile interval
    r2: float  # in log-log coordinates
    x: np.ndarray
    y: np.ndarray

    def predict(self, x) -> np.ndarray:
        return self.a * np.asarray(x, dtype=float) ** self.b


def fit_power_law(x, y, n_boot: int = D.FIT_N_BOOT, seed: int = 0, ci_level: float = D.CI_LEVEL) -> PowerLawFit:
    """Fit ``y = a x^b`` by linear regression of ``log y`` on ``log x`` (module docstring)."""
    x, y = _check_xy(x, y, "x", "y")
    if np.any(y <= 0):
        raise ValueError("y must be > 0 for a log-log fit")
    if np.unique(x).size < 2:
        raise ValueError("x: need at least 2 distinct values")
    if not (isinstance(n_boot, int) and n_boot >= 0):
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    lx, ly = np.log(x), np.log(y)
    reg = stats.linregress(lx, ly)
    r2 = _r2(ly, reg.intercept + reg.slope * lx)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, x.size, x.size)
        if np.unique(lx[pick]).size < 2:
            continue
        b = stats.linregress(lx[pick], ly[pick])
        boots.append((math.exp(b.intercept), b.slope))
    ci = {}
    if boots:
        boots = np.array(boots)
        q = (100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2)
        ci = {"a": tuple(map(float, np.percentile(boots[:, 0], q))), "b": tuple(map(float, np.percentile(boots[:, 1], q)))}
    stderr = float(reg.stderr) if x.size > 2 else float("nan")
    return PowerLawFit(a=math.exp(reg.intercept), b=float(reg.slope), b_stderr=stderr, ci=ci, r2=r2, x=x, y=y)


# --------------------------------------------------------------------------- from sweep tables
#: A scaling law is fitted only with at least this many budgets whose frontier error still falls.
MIN_FALLING_BUDGETS = 4


def falling_budgets(loss) -> int:
    """How many budgets, taken in increasing order, have a frontier loss below that of every
    smaller budget (the first budget counts): the budgets over which the error still falls."""
    best, count = math.inf, 0
    for v in np.asarray(loss, dtype=float):
        if math.isfinite(v) and v < best:
            best, count = v, count + 1
    return count


@dataclass
class FrontierScaling:
    """Scaling analysis of a sweep table (:func:`frontier_scaling`).

    ``law`` is None when the law is not identified (``reason`` says why); the frontier, its
    per-budget losses and the growth fits are there either way.
    """

    frontier: list  # best cell per budget (aggregated rows, with "p_bucket": its budget)
    budgets: np.ndarray  # the budget of each frontier cell (the planned budget when the table has it)
    loss: np.ndarray  # mean loss of each frontier cell (1 - metric for accuracies)
    loss_std: np.ndarray  # its sd over seeds
    law: Optional[ScalingFit]
    growth: dict  # "n" / "k_e" / "d_m" -> PowerLawFit of the optimum against the budget
    metric: str
    transformed: str  # how the metric became a loss: "loss", or "1 - metric"
    grouping: str  # "planned budget (p_target)" or "achieved P within 10 %"
    n_falling: int  # budgets whose frontier loss still falls (falling_budgets)
    reason: str = ""  # why the law is not identified ("" when it is)

    @property
    def identified(self) -> bool:
        return self.law is not None


def frontier_scaling(
    rows: Sequence[dict],
    metric: str,
    maximize: Optional[bool] = None,
    p_key: str = "p",
    budget_key: str = "p_target",
    rel_tol: float = 0.1,
    keys: Optional[Sequence[str]] = None,
    growth_axes: Sequence[str] = ("n", "k_e", "d_m"),
    n_boot: int = D.FIT_N_BOOT,
    seed: int = 0,
    min_budgets: int = MIN_FALLING_BUDGETS,
) -> FrontierScaling:
    """Best cell per budget, the law ``L*(P)`` fitted to its seeds when it is identified, and
    ``N*``, ``k_e*``, ``d_m*`` against ``P``.

    Budgets: the cells are grouped by their *planned* budget, the ``budget_key`` column
    (``p_target``) that sweeps record, and the frontier point of a budget sits at that budget: a
    cell the budget solver could not bring close to its budget (d_m 8 at P 1,789 for a planned
    2,000) competes within its planned budget and never becomes a budget of its own. Only a
    table without that column falls back on buckets of the achieved ``p_key`` (relative width
    ``rel_tol``, :func:`~elm_neuro.analysis.sweep_table.budget_buckets`).

    Identification rule: the law ``L_inf + A P^-alpha`` has 3 parameters, so it is fitted only
    when the frontier has at least ``min_budgets`` (4) budgets *whose frontier loss still falls*
    (:func:`falling_budgets`: each one's mean loss below that of every smaller budget), which
    leaves at least one degree of freedom on the falling part of the curve. Otherwise ``law`` is
    None and ``reason`` says "not identified" and why; no parameter is estimated. When it is
    fitted, its uncertainty is the Jacobian standard error and the bootstrap interval of
    :func:`fit_scaling_law` (seeds resampled within each frontier cell).

    An accuracy-like metric (``maximize``) becomes the error ``1 - metric``. ``rows`` are per-seed
    rows. Growth laws ``y = a P^b`` are fitted for each axis of ``growth_axes`` with positive
    values at every frontier cell, when there are at least 3 budgets (bootstrap intervals from 5).
    """
    st._check_rows(rows)
    if not rows:
        raise ValueError("rows must not be empty")
    if not (isinstance(min_budgets, int) and min_budgets >= 4):
        raise ValueError(f"min_budgets must be an integer >= 4 (3 parameters + 1), got {min_budgets!r}")
    maximize = st.higher_is_better(metric) if maximize is None else bool(maximize)
    keys = list(st.config_keys(rows) if keys is None else keys)
    cells = st.aggregate(rows, keys=keys, metrics=[metric])
    planned = all(st._is_number(r.get(budget_key)) and r[budget_key] > 0 for r in rows)
    if planned:
        if budget_key not in keys:
            raise ValueError(f"keys must include the budget column {budget_key!r}")
        front = st.best_per_budget(cells, metric, maximize=maximize, bucket_key=budget_key)
        grouping = f"planned budget ({budget_key})"
    else:
        front = st.best_per_budget(cells, metric, maximize=maximize, p_key=p_key, rel_tol=rel_tol)
        grouping = f"achieved {p_key} within {rel_tol:.0%} (the table has no {budget_key} column)"
    budgets = np.array([float(c["p_bucket"]) for c in front])
    ps, ls, labels, means, sds = [], [], [], [], []
    for k, cell in enumerate(front):
        v = st.cell_values(rows, cell, keys, metric)
        v = 1.0 - v if maximize else v
        ps += [budgets[k]] * v.size
        ls += v.tolist()
        labels += [k] * v.size
        means.append(float(v.mean()) if v.size else math.nan)
        sds.append(float(v.std(ddof=1)) if v.size > 1 else 0.0)
    means = np.array(means)
    n_falling = falling_budgets(means)
    law, reason = None, ""
    if n_falling >= min_budgets:
        law = fit_scaling_law(ps, ls, cell=labels, n_boot=n_boot, seed=seed)
    else:
        reason = (f"not identified: {len(front)} budget(s), {n_falling} of them with a frontier error that still "
                  f"falls; a scaling law L_inf + A P^-alpha is fitted only with at least {min_budgets}")
    growth = {}
    if budgets.size >= 3:
        # resampling fewer than 5 frontier points gives degenerate replicates: the slope's s.e. only
        g_boot = n_boot if budgets.size >= 5 else 0
        for ax in growth_axes:
            if all(st._is_number(c.get(ax)) and c.get(ax) > 0 for c in front):
                growth[ax] = fit_power_law(budgets, [float(c[ax]) for c in front], n_boot=g_boot, seed=seed)
    return FrontierScaling(front, budgets, means, np.array(sds), law, growth, metric,
                           "1 - metric" if maximize else "loss", grouping, n_falling, reason)


def _loss_axis_limits(values, bounded: bool) -> tuple[float, float]:
    """Linear y range covering ``values``: ``[0, <= 1]`` for an error of an accuracy (``bounded``)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    hi = float(v.max()) if v.size else 1.0
    lo = float(v.min()) if v.size else 0.0
    if bounded:
        return 0.0, min(1.0, max(1.2 * hi, 0.05))
    pad = 0.1 * max(hi - lo, abs(hi) * 0.05, 1e-12)
    return lo - pad, hi + pad


def plot_scaling(
    fit,
    path,
    growth: Optional[dict] = None,
    ylabel: str = "loss",
    title: Optional[str] = None,
    bounded: Optional[bool] = None,
) -> str:
    """The frontier and its scaling law.

    ``fit`` is a :class:`FrontierScaling` (the frontier cells, labelled with their ``N`` and
    ``d_m``, and the law only when it is identified; ``growth`` defaults to its growth fits) or a
    bare :class:`ScalingFit`. Left: loss (mean ± sd over seeds) against ``P``, the fitted law and
    its bootstrap band; the y axis is linear and, for an error ``1 - accuracy`` (``bounded``,
    default for a :class:`FrontierScaling` of an accuracy), never leaves ``[0, 1]``. With a law:
    the excess ``L - L_inf`` on log axes. With ``growth``: ``N*``, ``k_e*``, ``d_m*`` and their
    fits ``a P^b`` against ``P``.
    """
    path = check_png_path(path)
    if isinstance(fit, FrontierScaling):
        fs, law = fit, fit.law
        p, loss, sd = fs.budgets, fs.loss, fs.loss_std
        growth = fs.growth if growth is None else growth
        bounded = (fs.transformed != "loss") if bounded is None else bool(bounded)
    elif isinstance(fit, ScalingFit):
        fs, law = None, fit
        p, loss, sd = fit.p, fit.loss, fit.loss_std
        bounded = bool(bounded)
    else:
        raise ValueError(f"fit must be a FrontierScaling or a ScalingFit, got {type(fit).__name__}")
    panels = 1 + (law is not None) + bool(growth)
    fig, axs = new_figure(ncols=panels, width=4.6)
    ax = axs[0]
    label = "frontier (mean ± sd over seeds)"
    ax.errorbar(p, loss, yerr=sd, fmt="o", color="C0", capsize=3, label=label, zorder=3)
    lo, hi = _loss_axis_limits(np.concatenate([loss + sd, loss - sd]), bounded)
    if fs is not None:
        for c, x, y in zip(fs.frontier, p, loss):
            txt = ", ".join(f"{k} {c[k]:g}" for k in ("n", "d_m") if st._is_number(c.get(k)))
            if txt:
                ax.annotate(txt.replace("n ", "N "), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    pg = np.geomspace(p.min() / 1.5, p.max() * 1.5, 200)
    if law is not None:
        ax.plot(pg, law.predict(pg), "C3-",
                label=f"{law.l_inf:.3g} + {law.a:.3g} P^-{law.alpha:.3g} (R² {law.r2:.3f})")
        if law.bootstrap.shape[0] >= 10:
            curves = np.array([power_law(pg, *b) for b in law.bootstrap])
            q = (100 * (1 - law.ci_level) / 2, 100 * (1 + law.ci_level) / 2)
            blo, bhi = np.percentile(curves, q, axis=0)
            ax.fill_between(pg, blo, bhi, color="C3", alpha=0.2, lw=0,
                            label=f"{law.ci_level:.0%} bootstrap band ({law.bootstrap_mode})")
        ax.axhline(law.l_inf, color="0.5", ls=":", lw=1, label=f"L_inf = {law.l_inf:.3g}")
        if not bounded:
            lo, hi = _loss_axis_limits(np.concatenate([loss + sd, loss - sd, [law.l_inf]]), False)
        else:
            lo = 0.0
    ax.set_ylim(lo, hi)
    ax.set_xscale("log")
    ax.set_xlabel("P (budget)" if fs is None or fs.grouping.startswith("planned") else "P")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    elif law is None and fs is not None:
        ax.set_title(f"scaling law not identified: {fs.n_falling} budget(s) with a falling error, "
                     f"needs {MIN_FALLING_BUDGETS}", fontsize=8)
    else:
        ax.set_title("scaling along the frontier", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    k = 1
    if law is not None:
        ax = axs[k]
        k += 1
        excess = loss - law.l_inf
        ok = excess > 0
        ax.loglog(p[ok], excess[ok], "o", label="frontier - L_inf")
        ax.loglog(pg, law.a * pg ** (-law.alpha), "C3-", label=f"A P^-alpha, alpha = {law.alpha:.3g}")
        ax.set_xlabel("P")
        ax.set_ylabel(f"{ylabel} - L_inf")
        ax.legend(fontsize=7)
        if ok.any():
            set_log_axis(ax, np.concatenate([excess[ok], law.a * p[ok] ** (-law.alpha)]), which="y")
    if growth:
        ax = axs[k]
        for j, (name, g) in enumerate(growth.items()):
            ax.loglog(g.x, g.y, "o", color=f"C{j}", label=f"{'N' if name == 'n' else name}*")
            xg = np.geomspace(g.x.min(), g.x.max(), 50)
            ax.loglog(xg, g.predict(xg), "-", color=f"C{j}", label=f"{g.a:.3g} P^{g.b:.3g}")
        ax.set_xlabel("P")
        ax.set_ylabel("optimum (best frontier cell)")
        ax.legend(fontsize=7)
        set_log_axis(ax, np.concatenate([np.concatenate([g.y, g.predict(g.x)]) for g in growth.values()]),
                     which="y")
        ax.set_title("N*, k_e*, d_m* against P", fontsize=9)
    for a in axs:  # ticks at the budgets, labels that never overprint
        set_log_axis(a, p)
        a.set_xlim(p.min() / 1.8, p.max() * 1.8)  # room for the point labels
        a.grid(alpha=0.3, which="major")
    fig.tight_layout()
    return save_figure(fig, path)
