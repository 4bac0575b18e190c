"""Shared plotting helpers of the analysis package (Agg backend, atomic PNG writes)."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)

from elm_neuro.atomic import atomic_output  # noqa: E402


def check_png_path(path) -> str:
    """``path`` as a string; ``ValueError`` unless it ends in ``.png``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike ending in .png, got {type(path).__name__}")
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path must end in .png, got {path!r}")
    return path


def save_figure(fig, path) -> str:
    """Write ``fig`` to ``path`` atomically and close it; return the path.

    The figure goes to a temporary file in the destination directory first, then
    ``os.replace`` moves it into place, so a reader never sees a half-written PNG.
    """
    path = check_png_path(path)
    try:
        with atomic_output(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.8):
    """``(fig, axes)`` with ``axes`` always a flat list."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, list(axes.ravel())


def compact_number(v: float) -> str:
    """Short tick label: 20 -> ``20``, 1500 -> ``1.5k``, 77000 -> ``77k``, 1.2e6 -> ``1.2M``."""
    a = abs(v)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def log_ticks(values, max_ticks: int = 5) -> list:
    """At most ``max_ticks`` ticks for a log axis over the positive ``values``: the values themselves
    when there are few, else the 1-2-5 sequence inside their range, thinned so that neighbours are at
    least ``1 / max_ticks`` of the range apart (in log) and their labels never overprint."""
    import math

    vals = sorted({float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0})
    if not vals:
        return []
    lo, hi = vals[0], vals[-1]
    if len(vals) <= max_ticks:
        cand = vals
    else:
        cand = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                for m in (1, 2, 5) if lo * (1 - 1e-9) <= m * 10.0 ** e <= hi * (1 + 1e-9)]
        if len(cand) < 2:
            cand = sorted({lo, *cand, hi})
    span = math.log10(hi / lo) if hi > lo else 1.0
    gap = span / max_ticks
    kept = [cand[0]]
    for t in cand[1:]:
        if math.log10(t / kept[-1]) >= gap * 0.999:
            kept.append(t)
    return kept


def set_log_axis(ax, values, which: str = "x", max_ticks: int = 5) -> None:
    """Log scale on ``ax``'s ``which`` axis with the ticks of :func:`log_ticks`, compact labels
    (:func:`compact_number`) and unlabelled minor ticks, so that no two labels overprint."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    ticks = log_ticks(values, max_ticks)
    if ticks:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: compact_number(v)))
    axis.set_minor_formatter(NullFormatter())
