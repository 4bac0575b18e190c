r"""Activity statistics of a population: activity levels, spike-train regularity, correlations.

Inputs are arrays ``x[b, t, n]`` (``B`` samples, ``T`` steps, ``N`` neurons), numpy or torch:
graded activity (e.g. ELM outputs, ``relu``) or spikes (0/1, or counts per bin; a bin with a
positive value counts as one spike for the interval statistics).

Definitions (per neuron ``n``, ``dt`` the bin width)

* active fraction: ``f_n = #{(b, t): x[b, t, n] > theta} / (B T)`` (``theta`` = ``threshold``, 0);
  a neuron is *silent* when ``f_n = 0``.
* inter-spike intervals: differences of successive spike times within a sample (never across
  samples), in units of ``dt``. Coefficient of variation ``CV = std(ISI) / mean(ISI)``
  (population std, ``ddof = 0``), NaN with fewer than 2 intervals; a regular train has
  ``CV = 0``, a Poisson train ``CV ~ 1``.
* Fano factor: spike counts ``N_w`` (sums of ``x``) in non-overlapping windows of ``window``
  steps (a remainder shorter than a window is dropped), pooled over samples;
  ``F = Var(N_w) / E(N_w)`` with the unbiased variance (``ddof = 1``); NaN when the mean count
  is 0 or fewer than 2 windows exist. Poisson: ``F = 1``; a perfectly regular count: ``F = 0``.
* pairwise correlations: Pearson correlation between neurons of the activity (optionally
  summed in windows of ``window`` steps), over all samples and windows pooled, after removing
  each sample's mean (``per_sample_mean``; removes stimulus-driven offsets between samples);
  NaN for a neuron with zero variance. The mean and the distribution are over the off-diagonal
  pairs with finite values.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from elm_neuro.analysis._plotting import check_png_path, new_figure, save_figure


def _arr3(x, name: str = "x") -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=float)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be [B, T, N] (or [T, N]), got shape {list(a.shape)}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {list(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def _check_window(window, steps: int) -> int:
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    if window > steps:
        raise ValueError(f"window must be <= T={steps}, got {window}")
    return int(window)


def active_fraction(x, threshold: float = 0.0) -> np.ndarray:
    """``[N]`` fraction of (sample, step) entries with ``x > threshold``."""
    a = _arr3(x)
    return (a > threshold).mean(axis=(0, 1))


def silent_neurons(x, threshold: float = 0.0) -> np.ndarray:
    """``[N]`` boolean: the neuron never exceeds ``threshold``."""
    return active_fraction(x, threshold) == 0.0


def firing_rate(x, dt: float = 1.0) -> np.ndarray:
    """``[N]`` mean of ``x`` per time unit: spikes per ``dt`` unit for spike arrays."""
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    return _arr3(x).mean(axis=(0, 1)) / dt


def inter_spike_intervals(spikes, dt: float = 1.0) -> list[np.ndarray]:
    """Per neuron, the ISIs (in units of ``dt``) of all samples concatenated (within samples)."""
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    s = _arr3(spikes, "spikes") > 0
    out = []
    for n in range(s.shape[2]):
        isis = [np.diff(np.nonzero(s[b, :, n])[0]) for b in range(s.shape[0])]
        out.append(np.concatenate(isis).astype(float) * dt if isis else np.zeros(0))
    return out


def isi_cv(spikes) -> np.ndarray:
    """``[N]`` coefficient of variation of the ISIs (``ddof = 0``); NaN with < 2 intervals."""
    out = []
    for isi in inter_spike_intervals(spikes):
        out.append(float(isi.std() / isi.mean()) if isi.size >= 2 else float("nan"))
    return np.array(out)


def window_counts(x, window: int) -> np.ndarray:
    """``[B, T // window, N]`` sums of ``x`` over non-overlapping windows (remainder dropped)."""
    a = _arr3(x)
    w = _check_window(window, a.shape[1])
    k = a.shape[1] // w
    return a[:, : k * w].reshape(a.shape[0], k, w, a.shape[2]).sum(axis=2)


def fano_factor(spikes, window: int) -> np.ndarray:
    """``[N]`` Fano factor ``Var / mean`` of window counts (``ddof = 1``); NaN when undefined."""
    c = window_counts(spikes, window).reshape(-1, _arr3(spikes).shape[2])
    if c.shape[0] < 2:
        return np.full(c.shape[1], np.nan)
    mean = c.mean(axis=0)
    var = c.var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, var / np.where(mean > 0, mean, 1.0), np.nan)


def correlation_matrix(x, window: int = 1, per_sample_mean: bool = True) -> np.ndarray:
    """``[N, N]`` Pearson correlations (module docstring); NaN rows/cols for constant neurons."""
    a = window_counts(x, window) if window > 1 else _arr3(x)
    if per_sample_mean:
        a = a - a.mean(axis=1, keepdims=True)
    flat = a.reshape(-1, a.shape[2])
    flat = flat - flat.mean(axis=0)
    sd = np.sqrt((flat**2).mean(axis=0))
    scale = max(float(sd.max()), 1e-300)
    ok = sd > 1e-12 * scale
    cov = flat.T @ flat / flat.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.outer(sd, sd)
    r[~ok, :] = np.nan
    r[:, ~ok] = np.nan
    return np.clip(r, -1.0, 1.0)


def pairwise_correlations(x, window: int = 1, per_sample_mean: bool = True) -> dict:
    """``matrix`` ``[N, N]``, ``values`` (finite upper-triangle pairs), ``mean``, ``std``, ``n_pairs``."""
    r = correlation_matrix(x, window, per_sample_mean)
    iu = np.triu_indices(r.shape[0], k=1)
    v = r[iu]
    v = v[np.isfinite(v)]
    return {"matrix": r, "values": v, "mean": float(v.mean()) if v.size else float("nan"),
            "std": float(v.std()) if v.size else float("nan"), "n_pairs": int(v.size)}


def is_spike_array(x) -> bool:
    """Whether every entry is a non-negative integer (0/1 spikes or spike counts)."""
    a = _arr3(x)
    return bool(np.all(a >= 0) and np.all(a == np.round(a)))


def activity_summary(x, window: int = 10, threshold: float = 0.0, bin_ms: Optional[float] = None) -> dict:
    """Scalar summary over neurons (each statistic averaged over the neurons with finite values).

    Every array: ``n_neurons``, ``n_silent`` and ``silent_fraction`` (neurons that never exceed
    ``threshold``), ``mean_correlation`` (pairwise, per bin), ``spikes`` (whether it is a spike
    array, :func:`is_spike_array`).

    Graded activity (e.g. ELM outputs): ``active_fraction`` (bins above ``threshold``) and
    ``mean_activity`` (mean of ``x``, in the activity's own unit).

    Spike arrays: ``spikes_per_bin`` (spikes per neuron and bin; for 0/1 trains this is also the
    fraction of active bins and the mean activity, so those are not repeated),
    ``rate_hz`` (spikes per neuron and second, with the bin width ``bin_ms``; None without one,
    e.g. a character-level task whose steps have no duration), ``isi_cv_median`` and ``fano_mean``
    (counts in windows of ``window`` bins); ``active_fraction`` only when a bin can hold more than
    one spike (counts), where it differs."""
    a = _arr3(x)
    window = min(window, a.shape[1])
    f = active_fraction(a, threshold)
    corr = pairwise_correlations(a, window=1)
    out = {"n_neurons": int(a.shape[2]), "n_silent": int((f == 0).sum()), "silent_fraction": float((f == 0).mean()),
           "mean_correlation": corr["mean"], "spikes": is_spike_array(a)}
    if not out["spikes"]:
        out.update(active_fraction=float(f.mean()), mean_activity=float(a.mean()))
        return out
    if bin_ms is not None and not (isinstance(bin_ms, (int, float)) and bin_ms > 0):
        raise ValueError(f"bin_ms must be a number > 0 or None, got {bin_ms!r}")
    cv, ff = isi_cv(a), fano_factor(a, window)
    per_bin = float(firing_rate(a).mean())
    out.update(spikes_per_bin=per_bin, bin_ms=bin_ms,
               rate_hz=None if bin_ms is None else per_bin * 1000.0 / float(bin_ms),
               isi_cv_median=float(np.nanmedian(cv)) if np.isfinite(cv).any() else float("nan"),
               fano_mean=float(np.nanmean(ff)) if np.isfinite(ff).any() else float("nan"))
    if float(a.max()) > 1.0:
        out["active_fraction"] = float(f.mean())
    return out


def plot_raster(
    x,
    path,
    sample: int = 0,
    neurons: Optional[Sequence[int]] = None,
    dt: float = 1.0,
    mode: str = "auto",
    title: Optional[str] = None,
    unit: str = "steps",
) -> str:
    """Raster of one sample: spike ticks (``mode="spikes"``) or an activity image
    (``mode="image"``); ``auto`` picks ticks for 0/1 / count arrays. A population-rate trace
    (mean over the shown neurons) is drawn underneath. The time axis is step ``t`` times ``dt``,
    labelled in ``unit`` (e.g. ``dt`` = the bin width and ``unit="ms"``)."""
    path = check_png_path(path)
    a = _arr3(x)
    if not isinstance(sample, (int, np.integer)) or not 0 <= sample < a.shape[0]:
        raise ValueError(f"sample must be an integer in 0..{a.shape[0] - 1}, got {sample!r}")
    if mode not in ("auto", "spikes", "image"):
        raise ValueError(f"mode must be 'auto', 'spikes' or 'image', got {mode!r}")
    idx = np.arange(a.shape[2]) if neurons is None else np.asarray(neurons, dtype=int)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= a.shape[2]:
        raise ValueError(f"neurons must be a non-empty list of indices in 0..{a.shape[2] - 1}")
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    data = a[sample][:, idx]  # [T, n]
    if mode == "auto":
        mode = "spikes" if is_spike_array(a) else "image"
    t = np.arange(data.shape[0]) * dt
    fig, axs = new_figure(nrows=2, width=7.0, height=2.6)
    ax = axs[0]
    if mode == "spikes":
        events = [t[data[:, i] > 0] for i in range(idx.size)]
        ax.eventplot(events, lineoffsets=np.arange(idx.size), linelengths=0.8, linewidths=0.8, colors="k")
        ax.set_ylim(-0.5, idx.size - 0.5)
        ax.set_xlim(t[0], t[-1] + dt)
    else:
        im = ax.imshow(data.T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                       extent=(t[0], t[-1] + dt, -0.5, idx.size - 0.5))
        fig.colorbar(im, ax=ax, label="activity")
    ax.set_ylabel("neuron")
    ax.set_title(title or f"sample {sample}: {idx.size} neurons")
    axs[1].plot(t, data.mean(axis=1), "C0-", lw=1)
    axs[1].set_xlabel(f"time ({unit})")
    axs[1].set_ylabel("population mean")
    axs[1].set_xlim(t[0], t[-1] + dt)
    return save_figure(fig, path)
