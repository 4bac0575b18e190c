"""Figures of a committed study (a plan's ``results.csv``): the fixed-budget ``d_m`` sweep, the
``N`` and ``k_c`` axes, the budget x ``d_m`` heatmap, and learning curves over seeds.

Every function takes per-seed result rows (dicts with the columns of a plan's ``results.csv``:
``p_target``, ``p``, ``n``, ``d_m``, ``k_c``, ``seed`` and the metric), writes one PNG atomically
and returns its path. Points are the mean over seeds; error bars are the sample standard
deviation over seeds (``ddof = 1``; none for a single seed), and every figure says so with the
number of seeds. What the reviewer of issue 23 asked of each figure:

- :func:`plot_d_m_sweep`: one curve per budget, each point labelled with its ``N``, the chance
  line, "error bars: sd over k seeds".
- :func:`plot_n_axis`: ``P`` grows with ``N`` along this axis, so the title gives the ``P`` range
  and each point is labelled with its ``P`` (never "at fixed P").
- :func:`plot_budget_heatmap`: budgets (columns, labelled ``P ≈ ...``) by ``d_m`` (rows), every
  planned cell filled, each annotated with its mean and ``N``; no mostly-empty ``(N, d_m)`` grid.
- :func:`plot_k_c_axis`: the metric against ``k_c`` and, on a second axis, the budget-solved ``N``
  that falls as ``k_c`` grows.
- :func:`plot_learning_curves`: validation metric against training steps, each seed a thin line,
  the mean over seeds bold with the seeds' range shaded.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from elm_neuro.analysis._plotting import check_png_path, compact_number, new_figure, save_figure, set_log_axis


# --------------------------------------------------------------------------- grouping
def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def group_stats(rows: Sequence[dict], keys: Sequence[str], metric: str) -> list[dict]:
    """One dict per distinct ``keys`` tuple (sorted): the keys, ``mean`` and ``sd`` of ``metric``
    over its rows (``sd`` with ``ddof = 1``, NaN for one row), ``seeds`` (rows counted) and the mean
    ``n`` and ``p`` of the group (the planned sizes, equal across seeds)."""
    if not rows:
        raise ValueError("rows must not be empty")
    groups: dict = {}
    for r in rows:
        if metric not in r:
            raise ValueError(f"metric {metric!r} is not a column of rows; columns: {sorted(r)}")
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for key in sorted(groups, key=lambda t: tuple(_num(v) for v in t)):
        vals = np.array([_num(r[metric]) for r in groups[key]], float)
        vals = vals[np.isfinite(vals)]
        sd = float(np.std(vals, ddof=1)) if vals.size > 1 else math.nan
        d = dict(zip(keys, key))
        d.update(mean=float(vals.mean()) if vals.size else math.nan, sd=sd, seeds=int(vals.size))
        for col in ("n", "p"):
            v = [_num(r.get(col)) for r in groups[key]]
            d[col] = float(np.nanmean(v)) if any(np.isfinite(v)) else math.nan
        out.append(d)
    return out


def _sd_note(stats: Sequence[dict]) -> str:
    seeds = sorted({s["seeds"] for s in stats})
    k = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return f"mean over {k} seeds; error bars: sd over seeds" if seeds[-1] > 1 else "one seed: no error bars"


def _errorbar(ax, x, stats, **kw):
    y = np.array([s["mean"] for s in stats])
    e = np.array([s["sd"] for s in stats])
    return ax.errorbar(x, y, yerr=np.where(np.isfinite(e), e, 0.0), capsize=3, **kw)


def _chance(ax, chance: Optional[float]) -> None:
    if chance is not None:
        ax.axhline(chance, color="0.5", ls="--", lw=1, label=f"chance ({chance:.2f})")


def _label(metric: str) -> str:
    return metric.replace("_", " ")


def _stage(rows: Sequence[dict], stage: Optional[str]) -> list[dict]:
    sel = [dict(r) for r in rows if stage is None or r.get("stage") == stage]
    if not sel:
        raise ValueError(f"no rows of stage {stage!r}")
    return sel


# --------------------------------------------------------------------------- figures
def plot_d_m_sweep(rows: Sequence[dict], metric: str, path, chance: Optional[float] = None,
                   stage: Optional[str] = "d_m") -> str:
    """The metric against ``d_m``, one curve per planned budget (``p_target``), each point labelled
    with its budget-solved ``N``; mean ± sd over seeds; the chance line when given."""
    path = check_png_path(path)
    stats = group_stats(_stage(rows, stage), ("p_target", "d_m"), metric)
    budgets = sorted({s["p_target"] for s in stats})
    fig, (ax,) = new_figure(width=6.4, height=4.4)
    for i, b in enumerate(budgets):
        cur = [s for s in stats if s["p_target"] == b]
        x = np.array([s["d_m"] for s in cur], float)
        _errorbar(ax, x, cur, fmt="o-", color=f"C{i}", ms=5, label=f"P ≈ {compact_number(b)}")
        for xi, s in zip(x, cur):
            ax.annotate(f"N={s['n']:.0f}", (xi, s["mean"]), xytext=(4, -11 if i % 2 else 5),
                        textcoords="offset points", fontsize=7, color=f"C{i}")
    _chance(ax, chance)
    set_log_axis(ax, [s["d_m"] for s in stats])
    ax.margins(x=0.1, y=0.1)  # room for the N labels of the end points
    ax.set_xlabel("d_m (memory units per neuron; log scale)")
    ax.set_ylabel(_label(metric))
    ax.set_title(f"{_label(metric)} against d_m at fixed budgets (N from the budget solver)\n"
                 f"{_sd_note(stats)}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_n_axis(rows: Sequence[dict], metric: str, path, chance: Optional[float] = None,
                stage: Optional[str] = "n") -> str:
    """The metric against ``N`` with ``d_m`` and ``k_c`` fixed, so ``P`` grows with ``N``: each point
    labelled with its ``P``, the title stating the ``P`` range."""
    path = check_png_path(path)
    sel = _stage(rows, stage)
    stats = group_stats(sel, ("n",), metric)
    x = np.array([s["n"] for s in stats], float)
    fig, (ax,) = new_figure(width=6.0, height=4.2)
    _errorbar(ax, x, stats, fmt="o-", color="C0", ms=5, label=_label(metric))
    for xi, s in zip(x, stats):
        ax.annotate(f"P={compact_number(s['p'])}", (xi, s["mean"]), xytext=(4, -12), textcoords="offset points",
                    fontsize=7)
    _chance(ax, chance)
    set_log_axis(ax, x)
    fixed = ", ".join(f"{k} = {v:g}" for k in ("d_m", "k_c")
                      if len({_num(r.get(k)) for r in sel}) == 1 and math.isfinite(_num(sel[0].get(k)))
                      for v in [_num(sel[0][k])])
    ps = [s["p"] for s in stats]
    ax.set_xlabel("N (hidden neurons; log scale)")
    ax.set_ylabel(_label(metric))
    ax.set_title(f"N axis ({fixed}): P grows with N, {compact_number(min(ps))} to {compact_number(max(ps))}\n"
                 f"{_sd_note(stats)}", fontsize=9)
    if chance is not None:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def budget_grid(rows: Sequence[dict], metric: str, stage: Optional[str] = "d_m"):
    """``(budgets, d_ms, mean, n)``: ``mean[i, j]`` and ``n[i, j]`` of ``d_ms[i]`` at ``budgets[j]``
    (NaN where the plan has no such cell)."""
    stats = group_stats(_stage(rows, stage), ("p_target", "d_m"), metric)
    budgets = np.array(sorted({s["p_target"] for s in stats}), float)
    d_ms = np.array(sorted({s["d_m"] for s in stats}), float)
    mean = np.full((d_ms.size, budgets.size), np.nan)
    n = np.full_like(mean, np.nan)
    for s in stats:
        i, j = np.searchsorted(d_ms, s["d_m"]), np.searchsorted(budgets, s["p_target"])
        mean[i, j], n[i, j] = s["mean"], s["n"]
    return budgets, d_ms, mean, n


def plot_budget_heatmap(rows: Sequence[dict], metric: str, path, stage: Optional[str] = "d_m") -> str:
    """Heatmap of the mean metric with the planned budgets as columns (``P ≈ ...``) and ``d_m`` as
    rows: every planned cell is filled; each is annotated with its mean and its ``N``; the best
    ``d_m`` of each budget is framed."""
    path = check_png_path(path)
    budgets, d_ms, mean, n = budget_grid(rows, metric, stage)
    fig, (ax,) = new_figure(width=max(5.0, 1.3 * budgets.size + 2.2), height=max(3.6, 0.55 * d_ms.size + 1.8))
    im = ax.imshow(np.ma.masked_invalid(mean), origin="lower", aspect="auto", cmap="viridis")
    lo, hi = np.nanmin(mean), np.nanmax(mean)
    for i in range(d_ms.size):
        for j in range(budgets.size):
            if np.isfinite(mean[i, j]):
                light = hi > lo and (mean[i, j] - lo) / (hi - lo) > 0.6
                ax.text(j, i, f"{mean[i, j]:.3f}\nN={n[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="k" if light else "w")
    for j in range(budgets.size):
        col = mean[:, j]
        if np.isfinite(col).any():
            i = int(np.nanargmax(col))
            ax.add_patch(_frame(j, i))
    ax.set_xticks(range(budgets.size), [f"P ≈ {compact_number(b)}" for b in budgets])
    ax.set_yticks(range(d_ms.size), [f"{v:g}" for v in d_ms])
    ax.set_xlabel("planned budget (trainable parameters)")
    ax.set_ylabel("d_m")
    fig.colorbar(im, ax=ax, label=f"{_label(metric)} (mean over seeds)")
    ax.set_title(f"{_label(metric)} by budget and d_m (cell: mean, N from the budget solver;\n"
                 f"frame: best d_m of the budget)", fontsize=9)
    return save_figure(fig, path)


def _frame(j: int, i: int):
    from matplotlib.patches import Rectangle
    return Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False, ec="red", lw=2)


def plot_k_c_axis(rows: Sequence[dict], metric: str, path, chance: Optional[float] = None,
                  stage: Optional[str] = "k_c") -> str:
    """The metric against ``k_c`` (left axis, mean ± sd) and the budget-solved ``N`` (right axis,
    grey squares): at a fixed budget ``N`` falls as ``k_c`` grows, and the title says by how much."""
    path = check_png_path(path)
    sel = _stage(rows, stage)
    stats = group_stats(sel, ("k_c",), metric)
    x = np.array([s["k_c"] for s in stats], float)
    ns = np.array([s["n"] for s in stats], float)
    fig, (ax,) = new_figure(width=6.2, height=4.2)
    _errorbar(ax, x, stats, fmt="o-", color="C0", ms=5, label=f"{_label(metric)} (left)")
    _chance(ax, chance)
    ax2 = ax.twinx()
    ax2.plot(x, ns, "s--", color="0.45", ms=5, label="N (right)")
    for xi, ni in zip(x, ns):
        ax2.annotate(f"{ni:.0f}", (xi, ni), xytext=(4, 3), textcoords="offset points", fontsize=7, color="0.3")
    ax2.set_ylabel("N (hidden neurons, from the budget solver)", color="0.3")
    ax2.set_ylim(0, max(ns) * 1.15)
    set_log_axis(ax, x)
    budgets = sorted({_num(r.get("p_target")) for r in sel if math.isfinite(_num(r.get("p_target")))})
    at = f" at P ≈ {', '.join(compact_number(b) for b in budgets)}" if budgets else ""
    ax.set_xlabel("k_c (synapses per hidden neuron; log scale)")
    ax.set_ylabel(_label(metric))
    ax.set_title(f"k_c axis{at}: N falls from {ns[0]:.0f} to {ns[-1]:.0f} as k_c grows\n{_sd_note(stats)}",
                 fontsize=9)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def curves_from_metrics(metric_rows: Sequence[dict], key: str = "acc") -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of the validation rows (``kind == "valid"``) of one run's metrics."""
    val = [r for r in metric_rows if r.get("kind") == "valid" and key in r and "step" in r]
    return np.array([r["step"] for r in val], float), np.array([r[key] for r in val], float)


def plot_learning_curves(curves: dict, path, ylabel: str = "validation accuracy", chance: Optional[float] = None,
                         title: Optional[str] = None) -> str:
    """Learning curves over seeds: ``curves`` is ``{label: [(steps, values), ...]}`` (one pair per
    seed). Each seed is a thin line; the mean over seeds (on the steps all seeds share) is bold,
    the seeds' min-max range shaded; the x axis counts training steps (optimizer updates)."""
    path = check_png_path(path)
    if not isinstance(curves, dict) or not curves:
        raise ValueError("curves must be a non-empty dict {label: [(steps, values) per seed]}")
    fig, (ax,) = new_figure(width=6.4, height=4.4)
    seeds_shown = set()
    for i, (label, runs) in enumerate(curves.items()):
        runs = [(np.asarray(s, float), np.asarray(v, float)) for s, v in runs if len(s)]
        if not runs:
            continue
        for s, v in runs:
            ax.plot(s, v, color=f"C{i}", lw=0.7, alpha=0.45)
        common = sorted(set.intersection(*[set(s.tolist()) for s, _ in runs]))
        if common:
            m = np.array([[v[np.searchsorted(s, c)] for c in common] for s, v in runs])
            ax.fill_between(common, m.min(0), m.max(0), color=f"C{i}", alpha=0.15, lw=0)
            ax.plot(common, m.mean(0), color=f"C{i}", lw=2, label=f"{label} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''})")
        seeds_shown.add(len(runs))
    _chance(ax, chance)
    ax.set_xlabel("training steps (optimizer updates)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(_compact_formatter())
    ax.set_title(title or "learning curves: thin lines are seeds, band their range, bold the mean", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _compact_formatter():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _pos: compact_number(v) if v else "0")
