"""Trade-off plots of budget sweeps: metric vs N at fixed P, vs each axis, heatmaps, Pareto.

Every function takes a sweep table (a list of row dicts: per-seed rows as read by
:func:`elm_neuro.analysis.sweep_table.read_table`, or rows already aggregated by
:func:`~elm_neuro.analysis.sweep_table.aggregate`, recognised by a ``<metric>_mean`` column),
writes one PNG atomically (temporary file in the same directory, then ``os.replace``) and
returns its path. Mean +- standard deviation over seeds are shown as error bars.

Budgets are grouped into buckets of relative width ``rel_tol`` (see
:func:`~elm_neuro.analysis.sweep_table.budget_buckets`); one curve per bucket.

The paper's reference results (docs/design.md §9, one seed each, real data) are in
:data:`REFERENCE_POINTS`; they are overlaid when ``reference`` names a task, labelled with the
network, data and budget they come from (:func:`reference_label`). The budgets
``k_e`` are computed from docs/design.md §3 (``k_e = 4 d_m^2 + 2 d_m (d_tree + 2) + 1``), ``N`` and ``P``
are the run records of docs/design.md §4.

Whether a sweep may be shown next to them at all is :func:`reference_mismatch`'s answer: only
when it trains the same family (ELM Network) on the same task with the real data, at a budget
within ``rel_tol`` (10 %) of the paper's, and reports the paper's metric; otherwise it returns
the reason, which the sweep report prints instead of the overlay.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from elm_neuro.analysis import sweep_table as st
from elm_neuro.analysis._plotting import check_png_path, new_figure, save_figure, set_log_axis


def _k_e(d_m: int, d_tree: int) -> int:
    return 4 * d_m * d_m + 2 * d_m * (d_tree + 2) + 1


_SHD_ADDING = [  # (d_m, N, P, test_acc) at P ~ 77K; d_tree 30, K 300
    (2, 155, 77069, 0.146), (3, 130, 76864, 0.646), (4, 111, 77025, 0.741), (5, 96, 77310, 0.739),
    (7, 73, 77079, 0.784), (9, 57, 76551, 0.823), (11, 46, 76588, 0.793), (15, 32, 77246, 0.702),
    (20, 21, 74895, 0.742), (25, 15, 74109, 0.674),
]
_ENWIK8 = [  # (d_m, N, P, test_bpc) at P ~ 3.5M; d_tree 50, K 750
    (5, 2398, 3516342, 1.679), (10, 1500, 3515184, 1.658), (15, 1024, 3516748, 1.656),
    (20, 742, 3516486, 1.651), (25, 561, 3511095, 1.651), (30, 440, 3515924, 1.650),
    (35, 353, 3508407, 1.651), (40, 290, 3508874, 1.656), (45, 243, 3516717, 1.664),
    (50, 206, 3514590, 1.679), (60, 153, 3501507, 1.691), (70, 118, 3489142, 1.694),
    (85, 85, 3500419, 1.711), (100, 64, 3502348, 1.750),
]

#: The paper's reference results (docs/design.md §4 and 9), one row per network, one seed each.
REFERENCE_POINTS: dict[str, list[dict]] = {
    "shd-adding": [
        dict(d_m=d, n=n, k_e=_k_e(d, 30), k_c=300, p=p, test_acc=a) for d, n, p, a in _SHD_ADDING
    ],
    "enwik8": [
        dict(d_m=d, n=n, k_e=_k_e(d, 50), k_c=750, p=p, test_bpc=b) for d, n, p, b in _ENWIK8
    ],
}


#: The setting of the reference points (docs/design.md §4, 7-9): what a sweep must match to be shown next to them.
REFERENCE_SETTINGS: dict[str, dict] = {
    "shd-adding": dict(p=77000, family="elm", metric="test_acc", data="real SHD-Adding",
                       recipe="2 ms bins, 700 channels, 70 epochs x 2000 batches of 8"),
    "enwik8": dict(p=3_500_000, family="elm", metric="test_bpc", data="real enwik8",
                   recipe="300K steps of Adam, chunks of 100"),
}
#: Plain words for the ``data_source`` values of a sweep's results (elm_neuro.data.provenance).
DATA_WORDS = {"real": "the real data", "synthetic": "synthetic data (`elm-neuro data synth`)",
              "spoken": "spoken digits made by elm-neuro (`elm-neuro data spoken`: espeak-ng and the package's "
                        "cochlea, not the SHD recordings)",
              "builtin-corpus": "the built-in text corpus", "unknown": "data not known to be the real data"}


def _p_text(p: float) -> str:
    return f"{p / 1e6:.3g}M" if p >= 1e6 else f"{p / 1e3:.3g}K"


def reference_label(task: str) -> str:
    """What the reference points of ``task`` are: family, data, budget, one seed (legend, captions)."""
    if task not in REFERENCE_SETTINGS:
        raise ValueError(f"task must be one of {sorted(REFERENCE_SETTINGS)}, got {task!r}")
    r = REFERENCE_SETTINGS[task]
    return f"ELM Network, {r['data']}, P ≈ {_p_text(r['p'])}, one seed each"


def reference_mismatch(task: Optional[str], metric: str, budgets: Sequence[float], families: Sequence[str],
                       data_sources: Sequence[Optional[str]], rel_tol: float = 0.1) -> Optional[str]:
    """None when a sweep may be overlaid with the paper's points of ``task``; else the reasons.

    Args:
        task: the sweep's task (None: several tasks).
        metric: the metric shown (must be the one the paper reports for the task).
        budgets: the sweep's budgets (parameter counts); one of them must lie within ``rel_tol``
            of the paper's ``P``.
        families: model families of the sweep (the paper's points are ELM Networks).
        data_sources: the cells' data (``real``, ``spoken``, ``synthetic``, ``builtin-corpus``, ``unknown``,
            None: not recorded); every one must be ``real``.
    """
    if not (isinstance(rel_tol, (int, float)) and 0 < rel_tol < 1):
        raise ValueError(f"rel_tol must lie in (0, 1), got {rel_tol!r}")
    if task is None:
        return "the sweep mixes several tasks"
    if task not in REFERENCE_SETTINGS:
        return f"the paper has reference points for {sorted(REFERENCE_SETTINGS)} only, this sweep's task is {task!r}"
    ref = REFERENCE_SETTINGS[task]
    reasons = []
    if metric != ref["metric"]:
        reasons.append(f"the paper reports {ref['metric']}, the metric shown is {metric}")
    fams = sorted({str(f) for f in families})
    if fams != [ref["family"]]:
        reasons.append(f"the paper's points are ELM Networks ({ref['family']}), "
                       f"this sweep trains {', '.join(fams) or '?'}")
    bs = sorted({float(b) for b in budgets if b is not None and np.isfinite(float(b))})
    if not any(abs(b - ref["p"]) <= rel_tol * ref["p"] for b in bs):
        have = ", ".join(f"{b:,.0f}" for b in bs) or "none"
        reasons.append(f"no budget of this sweep is within {rel_tol:.0%} of the paper's P ≈ {ref['p']:,} "
                       f"(budgets: {have})")
    srcs = sorted({"not recorded" if s is None else str(s) for s in data_sources})
    if srcs != ["real"]:
        words = ", ".join(DATA_WORDS.get(s, "data of unrecorded origin") for s in srcs)
        reasons.append(f"the paper trained on {ref['data']}, this sweep on {words or 'unknown data'}")
    return "; ".join(reasons) or None


def reference_points(task: str) -> list[dict]:
    """Copies of the reference rows of ``task`` (``shd-adding`` or ``enwik8``)."""
    if task not in REFERENCE_POINTS:
        raise ValueError(f"task must be one of {sorted(REFERENCE_POINTS)}, got {task!r}")
    return [dict(r) for r in REFERENCE_POINTS[task]]


# --------------------------------------------------------------------------- helpers
def _cells(rows: Sequence[dict], metric: str, keys: Optional[Sequence[str]]) -> list[dict]:
    st._check_rows(rows)
    if not rows:
        raise ValueError("rows must not be empty")
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a column name (str), got {metric!r}")
    cols = st.table_columns(rows)
    if metric + "_mean" in cols:
        return [dict(r) for r in rows]
    if metric not in cols:
        raise ValueError(f"metric {metric!r} is not a column of rows; columns: {cols}")
    return st.aggregate(rows, keys=keys, metrics=[metric])


def _std(cells: Sequence[dict], metric: str) -> np.ndarray:
    if any(metric + "_std" in c for c in cells):
        s = st.column(cells, metric + "_std")
        return np.where(np.isfinite(s), s, 0.0)
    return np.zeros(len(cells))


def _reference_rows(reference, metric: str) -> Optional[list[dict]]:
    if reference is None:
        return None
    refs = reference_points(reference) if isinstance(reference, str) else list(reference)
    st._check_rows(refs)
    if not refs or not all(metric in r for r in refs):
        raise ValueError(f"reference rows have no {metric!r} value (reference {reference!r})")
    return refs


def _label(metric: str) -> str:
    return metric.replace("_", " ")


def _bucket_labels(cells: Sequence[dict], p_key: str, rel_tol: float) -> np.ndarray:
    p = st.column(cells, p_key)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"p_key column {p_key!r} must be numeric in every row")
    return st.budget_buckets(p, rel_tol)


# --------------------------------------------------------------------------- plots
def plot_metric_vs_axis(
    rows: Sequence[dict],
    metric: str,
    axis: str,
    path,
    p_key: str = "p",
    rel_tol: float = 0.1,
    by_budget: bool = True,
    logx: Optional[bool] = None,
    reference: Union[str, Sequence[dict], None] = None,
    keys: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> str:
    """Metric (mean +- std over seeds) against one configuration axis; one curve per budget.

    Args:
        rows: sweep table (per-seed or aggregated).
        metric: metric column, e.g. ``test_acc``.
        axis: x column, e.g. ``n``, ``d_m``, ``k_e``, ``k_c``, ``p``.
        path: output ``.png``.
        by_budget: one curve per budget bucket (else all cells on one curve).
        logx: log x axis (default: when the axis spans more than a factor 5).
        reference: ``"shd-adding"`` / ``"enwik8"`` or reference rows, overlaid as black stars.
    """
    path = check_png_path(path)
    cells = _cells(rows, metric, keys)
    if not any(axis in c for c in cells):
        raise ValueError(f"axis {axis!r} is not a column of rows; columns: {st.table_columns(cells)}")
    refs = _reference_rows(reference, metric)
    x = st.column(cells, axis)
    y = st.column(cells, metric + "_mean")
    s = _std(cells, metric)
    buckets = _bucket_labels(cells, p_key, rel_tol) if by_budget and p_key != axis else np.zeros(len(cells))
    fig, (ax,) = new_figure()
    for b in sorted(set(buckets.tolist())):
        m = (buckets == b) & np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[m])
        lab = f"P ~ {b:,.0f}" if b > 0 else None
        ax.errorbar(x[m][order], y[m][order], yerr=s[m][order], marker="o", capsize=3, label=lab)
    if refs is not None:
        rx = np.array([float(r.get(axis, np.nan)) for r in refs])
        ry = np.array([float(r[metric]) for r in refs])
        lab = (f"paper (docs/design.md §9): {reference_label(reference)}" if isinstance(reference, str)
               else "reference points")
        ax.plot(rx, ry, "k*", ms=9, label=lab)
    finite_x = x[np.isfinite(x) & (x > 0)]
    if logx is None:
        logx = finite_x.size > 0 and finite_x.max() / finite_x.min() > 5
    if logx:
        ref_x = [] if refs is None else [float(r.get(axis, np.nan)) for r in refs]
        set_log_axis(ax, list(finite_x) + ref_x)
    ax.set_xlabel(axis)
    ax.set_ylabel(_label(metric))
    ax.set_title(title or f"{_label(metric)} vs {axis}")
    handles = ax.get_legend_handles_labels()[0]
    if handles:  # below the axes: never over the points
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1 if len(handles) < 3 else 2,
                  frameon=False)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_metric_vs_n(
    rows: Sequence[dict],
    metric: str,
    path,
    p_key: str = "p",
    rel_tol: float = 0.1,
    reference: Union[str, Sequence[dict], None] = None,
    keys: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> str:
    """Metric vs hidden-layer size ``N`` at fixed ``P`` (log x, one curve per budget bucket)."""
    return plot_metric_vs_axis(rows, metric, "n", path, p_key=p_key, rel_tol=rel_tol, logx=True,
                               reference=reference, keys=keys, title=title or f"{_label(metric)} vs N at fixed P")


def plot_single_axes(
    rows: Sequence[dict],
    metric: str,
    path,
    axes: Sequence[str] = ("n", "d_m", "k_e", "k_c", "p"),
    p_key: str = "p",
    rel_tol: float = 0.1,
    keys: Optional[Sequence[str]] = None,
) -> str:
    """One panel per axis present in the table: metric (mean +- std) against that axis alone,
    coloured by budget bucket (the ``p`` panel pools all budgets)."""
    path = check_png_path(path)
    cells = _cells(rows, metric, keys)
    cols = st.table_columns(cells)
    present = [a for a in axes if a in cols]
    if not present:
        raise ValueError(f"axes {list(axes)} name no column of rows; columns: {cols}")
    varied = [a for a in present if len({v for v in st.column(cells, a).tolist() if np.isfinite(v)}) > 1]
    constant = [a for a in present if a not in varied]
    present = varied or present  # an axis with one value says nothing: noted in the title instead
    y = st.column(cells, metric + "_mean")
    s = _std(cells, metric)
    buckets = _bucket_labels(cells, p_key, rel_tol) if p_key in cols else np.zeros(len(cells))
    fig, axs = new_figure(ncols=len(present), width=4.0)
    for ax, a in zip(axs, present):
        x = st.column(cells, a)
        groups = [0.0] if a == p_key else sorted(set(buckets.tolist()))
        for b in groups:
            m = np.isfinite(x) & np.isfinite(y) & ((buckets == b) if a != p_key else True)
            order = np.argsort(x[m])
            lab = f"P ~ {b:,.0f}" if (a != p_key and b > 0) else None
            ax.errorbar(x[m][order], y[m][order], yerr=s[m][order], marker="o", capsize=2, ls="-", label=lab)
        fx = x[np.isfinite(x) & (x > 0)]
        if fx.size and fx.max() / fx.min() > 5:
            set_log_axis(ax, fx, max_ticks=4)
        else:
            ax.xaxis.get_major_locator().set_params(nbins=4)  # linear: few enough labels to stay apart
        ax.set_xlabel(a)
        ax.grid(alpha=0.3)
    axs[0].set_ylabel(_label(metric))
    if axs[0].get_legend_handles_labels()[0]:
        axs[0].legend(fontsize=7)
    fixed = "; fixed: " + ", ".join(f"{a} = {st.column(cells, a)[0]:g}" for a in constant) if varied and constant else ""
    fig.suptitle(f"{_label(metric)} against each axis{fixed}")
    return save_figure(fig, path)


def heatmap_grid(
    rows: Sequence[dict], metric: str, x: str = "n", y: str = "d_m",
    maximize: Optional[bool] = None, keys: Optional[Sequence[str]] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xs, ys, grid)``: the best mean metric of the cells at each ``(x, y)`` pair,
    ``grid[i, j]`` for ``ys[i]``, ``xs[j]``; NaN where no cell exists."""
    cells = _cells(rows, metric, keys)
    maximize = st.higher_is_better(metric) if maximize is None else bool(maximize)
    for a, name in ((x, "x"), (y, "y")):
        if not any(a in c for c in cells):
            raise ValueError(f"{name} column {a!r} is not in rows; columns: {st.table_columns(cells)}")
    xv, yv, mv = st.column(cells, x), st.column(cells, y), st.column(cells, metric + "_mean")
    ok = np.isfinite(xv) & np.isfinite(yv) & np.isfinite(mv)
    xs, ys = np.unique(xv[ok]), np.unique(yv[ok])
    grid = np.full((ys.size, xs.size), np.nan)
    for xi, yi, v in zip(xv[ok], yv[ok], mv[ok]):
        i, j = np.searchsorted(ys, yi), np.searchsorted(xs, xi)
        cur = grid[i, j]
        if np.isnan(cur) or (v > cur if maximize else v < cur):
            grid[i, j] = v
    return xs, ys, grid


def plot_heatmap(
    rows: Sequence[dict], metric: str, path, x: str = "n", y: str = "d_m",
    maximize: Optional[bool] = None, keys: Optional[Sequence[str]] = None, title: Optional[str] = None,
) -> str:
    """Heatmap of the mean metric over the ``(x, y)`` grid (default ``(N, d_m)``), values annotated."""
    path = check_png_path(path)
    xs, ys, grid = heatmap_grid(rows, metric, x, y, maximize, keys)
    fig, (ax,) = new_figure(width=max(5.0, 0.6 * xs.size + 2), height=max(3.8, 0.45 * ys.size + 1.5))
    im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(xs.size), [f"{v:g}" for v in xs], rotation=45)
    ax.set_yticks(range(ys.size), [f"{v:g}" for v in ys])
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    for i in range(ys.size):
        for j in range(xs.size):
            if np.isfinite(grid[i, j]):
                light = hi > lo and (grid[i, j] - lo) / (hi - lo) > 0.6  # viridis is light at the top
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7, color="k" if light else "w")
    fig.colorbar(im, ax=ax, label=_label(metric))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{_label(metric)} over ({x}, {y})")
    return save_figure(fig, path)


def plot_pareto(
    rows: Sequence[dict],
    metric: str,
    path,
    maximize: Optional[bool] = None,
    p_key: str = "p",
    rel_tol: float = 0.1,
    keys: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> str:
    """All cells (grey, mean +- std), the best cell of each budget bucket (red, annotated with
    ``N``/``d_m`` when present) and the Pareto frontier (step line) against ``P`` (log x)."""
    path = check_png_path(path)
    cells = _cells(rows, metric, keys)
    maximize = st.higher_is_better(metric) if maximize is None else bool(maximize)
    p = st.column(cells, p_key)
    y = st.column(cells, metric + "_mean")
    s = _std(cells, metric)
    best = st.best_per_budget(cells, metric, maximize=maximize, p_key=p_key, rel_tol=rel_tol)
    front = st.pareto_rows(cells, metric, maximize=maximize, p_key=p_key)
    fig, (ax,) = new_figure(width=5.5)
    ax.errorbar(p, y, yerr=s, fmt="o", color="0.6", ms=4, capsize=2, label="cells")
    bp = np.array([r[p_key] for r in best], float)
    by = np.array([r[metric + "_mean"] for r in best], float)
    ax.plot(bp, by, "o-", color="C3", label="best per budget")
    for r in best:
        if "n" in r:
            txt = f"N={r['n']}" + (f", d_m={r['d_m']}" if "d_m" in r else "")
            ax.annotate(txt, (r[p_key], r[metric + "_mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    fp = np.array([r[p_key] for r in front], float)
    fy = np.array([r[metric + "_mean"] for r in front], float)
    ax.step(fp, fy, where="post", color="k", lw=1, label="Pareto frontier")
    set_log_axis(ax, p[np.isfinite(p)])
    ax.set_xlabel("P (trainable parameters)")
    ax.set_ylabel(_label(metric))
    ax.set_title(title or f"{_label(metric)}: Pareto frontier across budgets")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
