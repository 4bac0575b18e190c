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
