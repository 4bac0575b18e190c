"""Summary, statistics and raster plots of SHD-format files (SHD, spoken and synthetic SHD, SHD-Adding).

Public API
----------
``summarize(events) -> dict``
    samples, classes present (and the number of class keys), speakers, spikes per sample
    (min / mean / max), duration = last spike time per sample (min / mean / max, seconds),
    total spikes, empty samples, units used (min / max), label counts, and the statistics that
    describe a spiking digit set (:func:`spike_statistics`).
``spike_statistics(events) -> dict``
    Per sample (min / mean / max over the samples with spikes): first spike time, active
    channels (units with at least one spike), firing rate of the sample (spikes / duration, Hz:
    the rate of all 700 channels together over the word) and per active channel (spikes /
    (active channels x duration), Hz), with duration the last spike time; computed in blocks of
    samples (bounded memory for SHD-sized files).
``format_summary(summary) -> str``
    The human-readable text printed by ``elm-neuro data inspect FILE`` (and for each file of a
    folder).
``plot_per_class(events, out_path, other=None, ...)``
    One figure with a sample of every class from each of two speakers of ``events`` and, with
    ``other``, the first sample of that class in another file beside them (e.g. a spoken set
    beside a synthetic one): ``elm-neuro data inspect DIR --per-class OUT.png --compare OTHER``;
    ``per_class_choice(events)`` says which speakers and samples it draws.
``shd_files(path) -> [Path]``
    The file itself, or ``shd_train.h5`` / ``shd_test.h5`` of a folder (``data inspect DIR``).
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

__all__ = ["summarize", "spike_statistics", "format_summary", "read_any_shd", "plot_raster", "plot_per_class",
           "shd_files", "per_class_choice"]

# Samples per block of spike_statistics (the (sample, unit) count table of a block: 1024 x 700).
_STATS_BLOCK = 1024


def shd_files(path: str | os.PathLike) -> list[Path]:
    """The files ``data inspect`` reads at ``path``: the file itself, or ``shd_train.h5`` and
    ``shd_test.h5`` of a folder (a folder without them is an error naming what is missing)."""
    p = Path(path)
    if not p.is_dir():
        return [p]
    files = [p / "shd_train.h5", p / "shd_test.h5"]
    missing = [f.name for f in files if not f.exists()]
    if len(missing) == 2:
        raise FileNotFoundError(f"{p} is a folder without shd_train.h5 or shd_test.h5; give an SHD-format file or "
                                f"a folder with those files")
    return [f for f in files if f.exists()]


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


def spike_statistics(events: SHDEvents) -> dict:
    """Per-sample statistics of the samples with spikes (module docstring): ``(min, mean, max)`` of
    ``first_spike_s``, ``active_channels``, ``rate_hz`` and ``channel_rate_hz``."""
    counts = events.counts
    n = len(events)
    first = np.zeros(n)
    active = np.zeros(n, dtype=np.int64)
    n_units = int(events.units.max()) + 1 if len(events.units) else 1
    for a in range(0, n, _STATS_BLOCK):
        b = min(n, a + _STATS_BLOCK)
        lo, hi = events.offsets[a], events.offsets[b]
        row = np.repeat(np.arange(b - a), counts[a:b])
        table = np.bincount(row * n_units + events.units[lo:hi], minlength=(b - a) * n_units)
        active[a:b] = (table.reshape(b - a, n_units) > 0).sum(axis=1)
        nonempty = counts[a:b] > 0
        if nonempty.any():
            starts = events.offsets[a:b][nonempty] - lo
            first[a:b][nonempty] = np.minimum.reduceat(events.times[lo:hi], starts)
    dur = events.durations()
    ok = (counts > 0) & (dur > 0)

    def stats(x):
        x = x[ok]
        return (float(x.min()), float(x.mean()), float(x.max())) if x.size else (0.0, 0.0, 0.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        rate = counts / dur
        ch_rate = counts / (np.maximum(active, 1) * dur)
    return {"first_spike_s": stats(first), "active_channels": stats(active.astype(float)),
            "rate_hz": stats(rate), "channel_rate_hz": stats(ch_rate)}


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
        **spike_statistics(events),
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
    if "active_channels" in s:
        for name, key, fmt in (("first spike (s):", "first_spike_s", ".3f"),
                               ("active channels:", "active_channels", ".1f"),
                               ("rate (Hz):", "rate_hz", ".0f"),
                               ("rate/channel (Hz):", "channel_rate_hz", ".1f")):
            lo, mean, hi = s[key]
            lines.append(f"{name:<19}min {lo:{fmt}}  mean {mean:{fmt}}  max {hi:{fmt}}")
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


def per_class_choice(events: SHDEvents, n_speakers: int = 2) -> tuple[list[int], dict]:
    """The speakers of :func:`plot_per_class` and their samples: the ``n_speakers`` speakers who
    cover the most classes (ties: the lower id), and for each (speaker, class) the first sample of
    that speaker and class (None when they have none)."""
    labels, spk = events.labels, events.speakers
    ids = sorted(int(s) for s in np.unique(spk))
    cover = {s: len(np.unique(labels[spk == s])) for s in ids}
    chosen = sorted(ids, key=lambda s: (-cover[s], s))[:n_speakers]
    first = {}
    for s in chosen:
        for c in range(max(len(events.keys), int(labels.max()) + 1 if len(labels) else 0)):
            hit = np.flatnonzero((spk == s) & (labels == c))
            first[(s, c)] = int(hit[0]) if hit.size else None
    return chosen, first


def _first_of_class(events: SHDEvents, c: int) -> int | None:
    hit = np.flatnonzero(events.labels == c)
    return int(hit[0]) if hit.size else None


def plot_per_class(events: SHDEvents, out_path: str | os.PathLike, other: SHDEvents | None = None,
                   name: str = "", other_name: str = "other", dpi: int = 100) -> Path:
    """One figure: for every class a raster of one sample of each of two speakers of ``events``
    (:func:`per_class_choice`) and, with ``other``, the first sample of that class in ``other``
    beside them. Twenty classes (SHD) are drawn as two blocks, the English digits (0-9) left and
    the German ones (10-19) right, one row per digit. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(events) == 0:
        raise ValueError(f"{events.path}: no samples to draw")
    n_classes = max(len(events.keys), int(events.labels.max()) + 1)
    speakers, first = per_class_choice(events)
    sources = [(f"{name + ', ' if name else ''}speaker {s}", events, {c: first[(s, c)] for c in range(n_classes)})
               for s in speakers]
    if other is not None:
        sources.append((other_name, other, {c: _first_of_class(other, c) for c in range(n_classes)}))
    blocks = 2 if n_classes == 20 else 1
    rows = -(-n_classes // blocks)
    cols = len(sources) * blocks
    shown = [ev.sample(i)[0] for _, ev, pick in sources for i in pick.values() if i is not None]
    t_max = max(1.0, max((float(t.max()) for t in shown if len(t)), default=1.0))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 1.05 * rows + 0.9), squeeze=False,
                             sharex=True, sharey=True)
    for b in range(blocks):
        for r in range(rows):
            c = b * rows + r
            for j, (title, ev, pick) in enumerate(sources):
                ax = axes[r, b * len(sources) + j]
                i = pick.get(c) if c < n_classes else None
                if i is None:
                    ax.text(0.5, 0.5, "no sample" if c < n_classes else "", ha="center", va="center",
                            transform=ax.transAxes, fontsize=7, color="0.5")
                else:
                    t, u = ev.sample(i)
                    ax.scatter(t, u, s=0.3, c="k", marker=".", linewidths=0, rasterized=True)
                    ax.text(0.98, 0.95, f"#{i}, {len(t)} sp.", ha="right", va="top", transform=ax.transAxes,
                            fontsize=6, color="0.3")
                if r == 0:
                    ax.set_title(title, fontsize=8)
                if j == 0 and c < n_classes:
                    key = events.keys[c] if c < len(events.keys) else str(c)
                    ax.set_ylabel(f"{c}: {key}", fontsize=8)
                ax.tick_params(labelsize=6, length=2)
    for ax in axes.ravel():
        ax.set_xlim(0, t_max)
        ax.set_ylim(-5, 705)
        ax.set_yticks([0, 350, 700])
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=7)
    def called(label: str, ev: SHDEvents) -> str:
        where = f"{Path(ev.path).parent.name}/{Path(ev.path).name}" if ev.path else "in memory"
        return f"{label} ({where})" if label else where

    what = called(name, events) + (f" beside {called(other_name, other)}" if other is not None else "")
    fig.suptitle(f"one sample per class (rows; y: channel 0-699): {what}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98), h_pad=0.3, w_pad=0.3)
    out_path = Path(out_path)
    fmt = out_path.suffix.lstrip(".") or "png"
    try:
        with atomic_output(out_path, suffix="." + fmt) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        plt.close(fig)
    return out_path
