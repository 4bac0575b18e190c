"""Summary and raster plots of SHD-format files (SHD, synthetic SHD, SHD-Adding).

Public API
----------
``summarize(events) -> dict``
    samples, classes present (and the number of class keys), speakers, spikes per sample
    (min / mean / max), duration = last spike time per sample (min / mean / max, seconds),
    total spikes, empty samples, units used (min / max), label counts.
``format_summary(summary) -> str``
    The human-readable text printed by ``elm-neuro data inspect FILE``.
``read_any_shd(path) -> SHDEvents``
    ``read_shd`` with the label range taken from the file's ``extra/keys`` when present (20
    for SHD, 19 for SHD-Adding files), else 20. A file this user may not read, one that is not
    HDF5 and a damaged one each fail with their own message (:mod:`elm_neuro.data.shd`).
``plot_raster(events, samples, out_path)``
    Raster plot (time vs unit, one panel per sample) written atomically as an image with the
    matplotlib Agg backend.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import h5py
import numpy as np

from ._h5io import atomic_output
from .shd import N_CLASSES, SHDEvents, file_attrs, read_shd

__all__ = ["summarize", "format_summary", "read_any_shd", "plot_raster"]


def read_any_shd(path: str | os.PathLike) -> SHDEvents:
    """Read an SHD-format file, label range = number of ``extra/keys`` (default 20)."""
    n_classes = N_CLASSES
    p = Path(path)
    file_attrs(p)  # exists, readable, HDF5: each with its own message
    with contextlib.suppress(OSError, KeyError, RuntimeError):  # damage: read_shd names it
        with h5py.File(p, "r") as f:
            if "extra/keys" in f and len(f["extra/keys"].shape) == 1:
                n_classes = max(1, int(f["extra/keys"].shape[0]))
    return read_shd(p, n_classes=n_classes)


def summarize(events: SHDEvents) -> dict:
    """Statistics of one file's samples (see module docstring)."""
    counts = events.counts
    dur = events.durations()
    n = len(events)

    def stats(x):
        return (float(x.min()), float(x.mean()), float(x.max())) if n else (0.0, 0.0, 0.0)

    speakers = events.speakers[events.speakers >= 0]
    return {
        "path": events.path,
        "samples": n,
        "classes": int(len(np.unique(events.labels))),
        "keys": len(events.keys),
        "label_counts": np.bincount(events.labels, minlength=max(len(events.keys), 1)).tolist()
        if n else [],
        "speakers": sorted(int(s) for s in np.unique(speakers)),
        "spikes_total": int(counts.sum()),
        "spikes_per_sample": stats(counts),
        "duration_s": stats(dur),
        "empty_samples": int((counts == 0).sum()),
        "units": (int(events.units.min()), int(events.units.max())) if len(events.units)
        else None,
        "extra": sorted(events.extra),
    }


def format_summary(s: dict) -> str:
    """Text block of :func:`summarize`'s result."""
    mn, me, mx = s["spikes_per_sample"]
    dmn, dme, dmx = s["duration_s"]
    lines = [
        f"file:              {s['path']}",
        f"samples:           {s['samples']}",
        f"classes:           {s['classes']} present, {s['keys']} keys",
        f"label counts:      {s['label_counts']}",
        f"speakers:          {len(s['speakers'])} {s['speakers']}",
        f"spikes total:      {s['spikes_total']}",
        f"spikes per sample: min {mn:.0f}  mean {me:.1f}  max {mx:.0f}",
        f"duration (s):      min {dmn:.3f}  mean {dme:.3f}  max {dmx:.3f}",
        f"empty samples:     {s['empty_samples']}",
        f"units used:        {s['units']}",
    ]
    if s["extra"]:
        lines.append(f"extra datasets:    {', '.join(s['extra'])}")
    return "\n".join(lines)


def plot_raster(events: SHDEvents, samples, out_path: str | os.PathLike,
                dpi: int = 100) -> Path:
    """Raster plot of ``samples`` (time in s vs unit), one panel each; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [int(i) for i in samples]
    if not samples:
        raise ValueError("no samples given for the raster plot")
    for i in samples:
        if not 0 <= i < len(events):
            raise ValueError(
                f"{events.path}: sample {i} does not exist (file has {len(events)} samples)"
            )
    out_path = Path(out_path)
    fig, axes = plt.subplots(len(samples), 1, figsize=(8, 2.4 * len(samples)), squeeze=False,
                             sharex=True)
    for ax, i in zip(axes[:, 0], samples):
        t, u = events.sample(i)
        ax.scatter(t, u, s=0.5, c="k", marker=".", linewidths=0)
        key = ""
        lab = int(events.labels[i])
        if 0 <= lab < len(events.keys):
            key = f" ({events.keys[lab]})"
        spk = int(events.speakers[i])
        ax.set_title(f"sample {i}: label {lab}{key}, speaker {spk}, {len(t)} spikes",
                     fontsize=9)
        ax.set_ylabel("unit")
        ax.set_ylim(-5, 705)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fmt = out_path.suffix.lstrip(".") or "png"
    try:
        with atomic_output(out_path, suffix="." + fmt) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        plt.close(fig)
    return out_path
