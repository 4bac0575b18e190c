r"""Timescales of network activity and of model parameters (ELM and spiking networks).

Intrinsic timescale (autocorrelation)
    For activity ``x[b, t, n]`` (``B`` samples, ``T`` steps, ``N`` neurons) each sample's time
    mean is removed per neuron, ``x~ = x - <x>_t``, and the autocovariance at lag ``k`` is
    averaged over samples with the unbiased normalisation::

        C_n(k) = sum_b sum_{t < T-k} x~[b, t, n] x~[b, t+k, n] / (B (T - k)),
        R_n(k) = C_n(k) / C_n(0)

    (computed with FFTs, zero padded to avoid wrap-around). As in intrinsic-timescale studies of
    cortex (Murray et al., Nat. Neurosci. 2014) an exponential with offset,
    ``R(k) ~ A exp(-k / tau) + c``, is fitted (:func:`scipy.optimize.curve_fit`) from the first
    lag on (lag 0 carries the white-noise part of the variance and is skipped) up to
    ``max_lag``. For an AR(1) / discretised Ornstein-Uhlenbeck process
    ``x_t = phi x_{t-1} + eps_t`` the autocorrelation is ``phi^k = exp(-k / tau)`` with
    ``tau = -1 / ln(phi)``. Neurons with zero variance (silent or constant) get ``NaN``. A fit
    below one time bin (``dt``) or beyond the sample's duration (``T dt``) cannot be measured
    from these samples (e.g. 0.02 ms at 20 ms bins, 500 s for 1 s samples): it is *unresolved*,
    NaN in ``tau``, kept in ``tau_fit`` and counted (``n_unresolved``); figures count it, never
    draw it.

Impulse-response timescale
    A model callable maps an input ``[1, T, n_in]`` to activity ``[1, T, N]``. The response to
    an impulse of size ``amplitude`` at ``t0`` on the chosen channels is
    ``r_n(t) = |act_n(x + impulse) - act_n(x)|``. From its peak ``t_p`` (searched from ``t0``) the
    ``threshold`` method finds the first step where ``r`` falls below ``r(t_p) / e`` and
    interpolates the crossing log-linearly between the two bracketing steps, so a pure
    exponential ``r(t) = r(t_p) exp(-(t - t_p) / tau)`` gives exactly ``tau``. The ``fit``
    method fits ``A exp(-(t - t_p)/tau)`` to the decaying part instead. No crossing within the
    window, or no response at all, gives ``NaN``. For a linear leaky integrator
    ``y_t = kappa y_{t-1} + x_t`` the impulse response is ``kappa^k`` and both methods return
    ``tau = -1 / ln(kappa)``.

ELM parameter timescales
    Every memory unit has a timescale ``tau_m`` (fixed, log-spaced ``tau_min..tau_max``, or
    learnable). The initial values are recomputed from the layer configuration
    (``log_spaced_taus(tau_min, tau_max, d_m)``) to show how learnable timescales moved
    (``log(tau / tau_init)``). The readout ``rho = w_y . m`` weights memory unit ``j`` by
    ``w_y[j]``; the weight mass of neuron ``n`` on timescale ``j`` is
    ``W[n, j] = sum_o |w_y[n, o, j]| / sum_{o, j'} |w_y[n, o, j']|``; with a recorded memory trace
    the contribution ``|w_y[n, j]| std(m[n, j])`` is normalised the same way (a weight on a unit
    that never moves contributes nothing). A neuron's effective timescale is the weighted
    geometric mean ``exp(sum_j W[n, j] log tau[n, j])``.

Units
    Every function here works in the units of its input: steps (``dt = 1``), or ``dt`` units
    when ``dt`` is given. The plotting functions take the unit to show (``unit``, e.g. ``"ms"``)
    and a ``scale`` that converts the given values into it (e.g. the bin width in ms for taus
    in steps), so a figure states its timescales in physical time while this module knows
    nothing about runs or data; :mod:`elm_neuro.experiments.run_analysis` passes the bin width.

Spiking networks
    Membrane and adaptation timescales come as plain arrays (any shape); they are summarised and
    plotted as distributions. The comparison figure takes one result dict per network (e.g.
    ``{"ELM": elm_report, "LIF": lif_report}``) with any of the keys ``intrinsic_tau``,
    ``impulse_tau``, ``param_tau`` (and ``adapt_tau``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from matplotlib.lines import Line2D
from scipy import optimize

from elm_neuro.analysis._plotting import check_png_path, compact_number, new_figure, save_figure, set_log_axis


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def _activity3(activity, name: str = "activity") -> np.ndarray:
    a = _to_numpy(activity)
    if a.ndim != 3:
        raise ValueError(f"{name} must be [B, T, N], got shape {list(a.shape)}")
    if a.shape[1] < 3:
        raise ValueError(f"{name} needs at least 3 time steps, got T={a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


# --------------------------------------------------------------------------- (a) autocorrelation
def autocorrelation(activity, max_lag: Optional[int] = None) -> np.ndarray:
    """Per-neuron autocorrelation ``R[k, n]`` for ``k = 0..max_lag`` (module docstring).

    ``max_lag`` defaults to ``T - 1``; rows of zero-variance neurons are NaN.
    """
    a = _activity3(activity)
    _, steps, n = a.shape
    max_lag = steps - 1 if max_lag is None else max_lag
    if not isinstance(max_lag, (int, np.integer)) or not 1 <= max_lag < steps:
        raise ValueError(f"max_lag must be an integer in 1..T-1={steps - 1}, got {max_lag!r}")
    x = a - a.mean(axis=1, keepdims=True)
    nfft = 1 << int(math.ceil(math.log2(2 * steps)))
    f = np.fft.rfft(x, n=nfft, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=nfft, axis=1)[:, : max_lag + 1].sum(axis=0)  # [L+1, N]
    acov /= a.shape[0] * (steps - np.arange(max_lag + 1))[:, None]
    var = acov[0]
    scale = max(float(np.max(np.abs(var))), 1e-300)
    silent = var <= 1e-12 * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        r = acov / var[None, :]
    r[:, silent] = np.nan
    return r


def _exp_offset(k, amp, tau, off):
    return amp * np.exp(-k / tau) + off


def _exp_no_offset(k, amp, tau):
    return amp * np.exp(-k / tau)


def fit_exponential_decay(lags, acf, offset: bool = True) -> tuple[float, float, float]:
    """Fit ``acf ~ A exp(-lag / tau) (+ c)``; returns ``(A, tau, c)`` (NaNs when it fails).

    Start values: ``A`` = first value, ``tau`` from the first fall below ``1/e`` of it,
    ``c = 0``. ``A >= 0`` and ``tau > 0`` are bounded.
    """
    lags = np.asarray(lags, dtype=float)
    y = np.asarray(acf, dtype=float)
    if lags.shape != y.shape or lags.ndim != 1:
        raise ValueError(f"lags and acf must be 1-D of equal length, got {lags.shape} and {y.shape}")
    nanres = (float("nan"),) * 3
    if lags.size < (4 if offset else 3) or not np.all(np.isfinite(y)):
        return nanres
    k0 = lags - lags[0]
    amp0 = max(float(y[0]), 1e-6)
    below = np.nonzero(y < amp0 / math.e)[0]
    tau0 = float(k0[below[0]]) if below.size and k0[below[0]] > 0 else max(float(k0[-1]) / 2, 1.0)
    try:
        if offset:
            p, _ = optimize.curve_fit(_exp_offset, k0, y, p0=(amp0, tau0, 0.0),
                                      bounds=([0.0, 1e-6, -np.inf], [np.inf, 1e6 * max(k0[-1], 1), np.inf]),
                                      maxfev=5000)
            amp, tau, off = p
        else:
            p, _ = optimize.curve_fit(_exp_no_offset, k0, y, p0=(amp0, tau0),
                                      bounds=([0.0, 1e-6], [np.inf, 1e6 * max(k0[-1], 1)]), maxfev=5000)
            (amp, tau), off = p, 0.0
    except (RuntimeError, ValueError):
        return nanres
    # A at lag lags[0] -> A at lag 0 so that acf(lag) = A exp(-lag / tau) + c (NaN if it overflows:
    # a tau far below the first fitted lag means no measurable correlation at those lags)
    ratio = lags[0] / tau
    amp0 = float(amp * math.exp(ratio)) if ratio < 700 else float("nan")
    return amp0, float(tau), float(off)


@dataclass
class IntrinsicTimescales:
    """Result of :func:`intrinsic_timescales`; ``tau``, ``amplitude``, ``offset`` are ``[N]``.

    ``tau`` holds the resolved timescales only: a fit outside ``bounds`` = ``[dt, T dt]`` (one
    time bin to the sample's duration) is a fit artefact, not a measurement, and is NaN in ``tau``;
    ``tau_fit`` keeps every fitted value and ``resolved`` marks the ones inside ``bounds``.
    """

    tau: np.ndarray  # in units of dt (NaN: silent neuron, failed fit, or unresolved)
    amplitude: np.ndarray
    offset: np.ndarray
    acf: np.ndarray  # [max_lag + 1, N]
    lags: np.ndarray  # [max_lag + 1] in units of dt
    dt: float
    tau_fit: Optional[np.ndarray] = None  # every fitted tau (NaN: silent neuron or failed fit)
    bounds: tuple = (float("nan"), float("nan"))  # (one bin, sample duration) in units of dt

    @property
    def resolved(self) -> np.ndarray:
        """``[N]`` bool: a fit inside ``bounds`` (inclusive)."""
        return np.isfinite(self.tau)

    @property
    def n_unresolved(self) -> int:
        """Neurons whose fit lies outside ``bounds`` (below one bin or beyond the sample)."""
        fit = self.tau if self.tau_fit is None else self.tau_fit
        return int(np.sum(np.isfinite(fit) & ~np.isfinite(self.tau)))

    @property
    def n_below(self) -> int:
        fit = self.tau if self.tau_fit is None else self.tau_fit
        return int(np.sum(np.isfinite(fit) & (fit < self.bounds[0])))

    @property
    def n_above(self) -> int:
        fit = self.tau if self.tau_fit is None else self.tau_fit
        return int(np.sum(np.isfinite(fit) & (fit > self.bounds[1])))


def resolvable(tau, lo: float, hi: float) -> np.ndarray:
    """``tau`` with the values outside ``[lo, hi]`` (e.g. one time bin to the sample's duration) as NaN."""
    t = _to_numpy(tau).astype(float).copy()
    with np.errstate(invalid="ignore"):
        t[~((t >= lo) & (t <= hi))] = np.nan
    return t


def intrinsic_timescales(
    activity,
    max_lag: Optional[int] = None,
    start_lag: int = 1,
    offset: bool = True,
    dt: float = 1.0,
) -> IntrinsicTimescales:
    """Intrinsic timescale of each neuron from the autocorrelation of ``activity`` ``[B, T, N]``.

    Args:
        max_lag: last lag of the fit (default ``min(T - 1, max(10, T // 4))``).
        start_lag: first lag of the fit (1 = skip lag 0, as in Murray et al. 2014).
        offset: fit a constant offset ``c`` as well.
        dt: time step; taus and lags are returned in these units.

    A fitted tau below one step (``dt``: the bin width) or beyond the sample (``T dt``) cannot be
    measured from these samples; it is kept in ``tau_fit`` and NaN in ``tau`` (unresolved).
    """
    a = _activity3(activity)
    steps = a.shape[1]
    if max_lag is None:
        max_lag = min(steps - 1, max(10, steps // 4))
    if not isinstance(start_lag, (int, np.integer)) or not 0 <= start_lag < max_lag:
        raise ValueError(f"start_lag must be an integer in 0..max_lag-1, got {start_lag!r}")
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    r = autocorrelation(a, max_lag)
    lags = np.arange(max_lag + 1, dtype=float)
    n = a.shape[2]
    tau, amp, off = (np.full(n, np.nan) for _ in range(3))
    for i in range(n):
        if np.all(np.isfinite(r[:, i])):
            amp[i], tau[i], off[i] = fit_exponential_decay(lags[start_lag:], r[start_lag:, i], offset)
    bounds = (float(dt), float(steps * dt))
    return IntrinsicTimescales(resolvable(tau * dt, *bounds), amp, off, r, lags * dt, float(dt), tau_fit=tau * dt,
                               bounds=bounds)


# --------------------------------------------------------------------------- (b) impulse response
@dataclass
class ImpulseResponse:
    """Result of :func:`impulse_response_timescales`."""

    tau: np.ndarray  # [N] decay timescale in units of dt (NaN: no response / no decay in window)
    peak_time: np.ndarray  # [N] step of the peak of |response| (NaN without response)
    peak: np.ndarray  # [N] peak |response|
    response: np.ndarray  # [T, N] signed response (perturbed - baseline)
    t0: int
    dt: float


def decay_time(r, start: int = 0, method: str = "threshold") -> tuple[float, float, float]:
    """``(tau, t_peak, peak)`` of a non-negative response trace ``r`` (module docstring).

    ``threshold``: time from the peak to the log-linearly interpolated ``1/e`` crossing.
    ``fit``: ``A exp(-(t - t_peak) / tau)`` fitted from the peak to the point where the
    response has fallen below 1e-3 of its peak (or the end).
    """
    r = np.abs(np.asarray(r, dtype=float))
    if r.ndim != 1:
        raise ValueError(f"r must be 1-D, got shape {r.shape}")
    if method not in ("threshold", "fit"):
        raise ValueError(f"method must be 'threshold' or 'fit', got {method!r}")
    seg = r[start:]
    nan = float("nan")
    if seg.size == 0 or not np.all(np.isfinite(seg)):
        return nan, nan, nan
    p = int(np.argmax(seg))
    peak = float(seg[p])
    if peak <= 0:
        return nan, nan, 0.0
    thr = peak / math.e
    after = np.nonzero(seg[p + 1:] < thr)[0]
    if after.size == 0:
        return nan, float(start + p), peak
    k = p + 1 + int(after[0])
    hi_v, lo_v = seg[k - 1], seg[k]
    if lo_v > 0:
        frac = (math.log(hi_v) - math.log(thr)) / (math.log(hi_v) - math.log(lo_v))
    else:
        frac = (hi_v - thr) / (hi_v - lo_v)
    tau = (k - 1 + frac) - p
    if method == "fit":
        tail = seg[p:]
        small = np.nonzero(tail < 1e-3 * peak)[0]
        end = int(small[0]) if small.size else tail.size
        if end >= 3:
            t = np.arange(end, dtype=float)
            try:
                popt, _ = optimize.curve_fit(_exp_no_offset, t, tail[:end], p0=(peak, max(tau, 1e-3)),
                                             bounds=([0.0, 1e-6], [np.inf, 1e9]), maxfev=5000)
                tau = float(popt[1])
            except (RuntimeError, ValueError):
                pass
    return float(tau), float(start + p), peak


def impulse_response_timescales(
    model: Callable,
    n_in: int,
    steps: int,
    t0: int = 0,
    channels: Optional[Sequence[int]] = None,
    amplitude: float = 1.0,
    baseline=None,
    method: str = "threshold",
    dt: float = 1.0,
) -> ImpulseResponse:
    """Decay timescale of each neuron's response to an input impulse (module docstring).

    Args:
        model: callable mapping a float32 array ``[1, steps, n_in]`` to activity ``[1, steps, N]``
            (numpy or torch; see :func:`elm_activity_fn`).
        n_in: input channels; ``steps``: length of the probe.
        t0: step of the impulse; ``channels``: channels that receive it (default: all).
        amplitude: impulse size (small values probe the linear regime).
        baseline: background input ``[1, steps, n_in]`` (default zeros).
        method: ``threshold`` or ``fit`` (:func:`decay_time`).
    """
    if not callable(model):
        raise ValueError("model must be callable: input [1, T, n_in] -> activity [1, T, N]")
    for name, v, lo in (("n_in", n_in, 1), ("steps", steps, 2)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not isinstance(t0, (int, np.integer)) or not 0 <= t0 < steps - 1:
        raise ValueError(f"t0 must be an integer in 0..steps-2, got {t0!r}")
    if not (isinstance(amplitude, (int, float)) and math.isfinite(amplitude) and amplitude != 0):
        raise ValueError(f"amplitude must be a finite non-zero number, got {amplitude!r}")
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    if baseline is None:
        base = np.zeros((1, steps, n_in), dtype=np.float32)
    else:
        base = _to_numpy(baseline).astype(np.float32)
        if base.shape != (1, steps, n_in):
            raise ValueError(f"baseline must have shape [1, {steps}, {n_in}], got {list(base.shape)}")
    ch = np.arange(n_in) if channels is None else np.asarray(channels, dtype=int)
    if ch.ndim != 1 or ch.size == 0 or ch.min() < 0 or ch.max() >= n_in:
        raise ValueError(f"channels must be a non-empty list of indices in 0..{n_in - 1}")
    pert = base.copy()
    pert[0, t0, ch] += amplitude
    y0 = _to_numpy(model(base))
    y1 = _to_numpy(model(pert))
    if y0.shape != y1.shape or y0.ndim not in (2, 3) or (y0.ndim == 3 and y0.shape[0] != 1) or y0.shape[-2] != steps:
        raise ValueError(f"model must return activity [1, {steps}, N], got shape {list(y0.shape)}")
    resp = (y1 - y0).reshape(steps, -1)
    n = resp.shape[1]
    tau, tp, pk = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    tol = 1e-7 * max(1.0, float(np.max(np.abs(y0))) if y0.size else 1.0)
    for i in range(n):
        if np.max(np.abs(resp[t0:, i])) <= tol:
            continue
        tau[i], tp[i], pk[i] = decay_time(resp[:, i], start=t0, method=method)
    return ImpulseResponse(tau * dt, tp, pk, resp, int(t0), float(dt))


def elm_activity_fn(net, layer: str = "hidden", trace: str = "y") -> Callable:
    """A model callable for :func:`impulse_response_timescales` from an ``ELMNetwork``.

    Runs the network in eval mode without gradients and returns ``traces[layer][trace]`` as
    ``[1, T, N]`` (trace ``y``/``rho``: the output; ``m``: memory, flattened to ``N * d_m``).
    The network's training flag is restored afterwards.
    """
    import torch  # torch only when a model is analysed (see _elm_layer)

    if layer not in ("hidden", "readout"):
        raise ValueError(f"layer must be 'hidden' or 'readout', got {layer!r}")
    if trace not in ("y", "rho", "m", "z", "beta"):
        raise ValueError(f"trace must be one of ('y', 'rho', 'm', 'z', 'beta'), got {trace!r}")

    def fn(x):
        was = net.training
        net.eval()
        try:
            with torch.no_grad():
                out = net(torch.as_tensor(np.asarray(x), dtype=torch.float32), record=True)
        finally:
            net.train(was)
        t = out.traces[layer][trace]
        return t.reshape(t.shape[0], t.shape[1], -1).numpy()

    return fn


# --------------------------------------------------------------------------- (c) ELM parameters
def _elm_layer(obj):
    # torch and the network code are imported only when a model is analysed: the array-only
    # analyses of this module work without them.
    from elm_neuro.networks.elm_layer import ELMLayer

    layer = getattr(obj, "hidden", obj)
    if not isinstance(layer, ELMLayer):
        raise ValueError(f"layer must be an ELMLayer or a network with a .hidden ELMLayer, got {type(obj).__name__}")
    return layer


def elm_memory_timescales(layer) -> dict:
    """Memory timescales of an ELM layer (or an ``ELMNetwork``'s hidden layer).

    Returns ``tau`` ``[N, d_m]`` (expanded for fixed taus), ``tau_init`` ``[d_m]`` (log-spaced
    from the configuration), ``log_ratio = log(tau / tau_init)`` ``[N, d_m]``, ``learnable`` and
    ``dt`` (taus are in units of ``dt``: steps for the network configs).
    """
    from elm_neuro.neurons.elm import log_spaced_taus  # torch only when a model is analysed

    layer = _elm_layer(layer)
    cfg = layer.cfg
    tau = layer.tau_m.detach().cpu().double().expand(layer.n, cfg.d_m).numpy().copy()
    init = log_spaced_taus(cfg.tau_min, cfg.tau_max, cfg.d_m).double().numpy()
    return {"tau": tau, "tau_init": init, "log_ratio": np.log(tau / init[None, :]),
            "learnable": bool(cfg.learn_tau), "dt": float(cfg.dt)}


def readout_timescale_weights(layer, memory=None) -> dict:
    """Weight mass each neuron's readout puts on each memory timescale (module docstring).

    Args:
        layer: ELM layer or network.
        memory: optional memory trace ``[B, T, N, d_m]`` (``traces["hidden"]["m"]``); when given
            the contribution ``|w_y| * std(m)`` is normalised instead of ``|w_y|`` alone.

    Returns ``weights`` ``[N, d_m]`` (rows sum to 1; NaN rows for all-zero readouts),
    ``tau`` ``[N, d_m]`` and ``effective_tau`` ``[N]`` (weighted geometric mean).
    """
    layer = _elm_layer(layer)
    w = layer.w_y.detach().cpu().double().abs().sum(dim=1).numpy()  # [N, d_m]
    if memory is not None:
        m = _to_numpy(memory)
        if m.ndim != 4 or m.shape[2:] != w.shape:
            raise ValueError(f"memory must be [B, T, N={w.shape[0]}, d_m={w.shape[1]}], got {list(m.shape)}")
        w = w * m.reshape(-1, *w.shape).std(axis=0)
    tot = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        wn = np.where(tot > 0, w / tot, np.nan)
    tau = elm_memory_timescales(layer)["tau"]
    eff = np.exp(np.sum(wn * np.log(tau), axis=1))
    return {"weights": wn, "tau": tau, "effective_tau": eff}


def elm_timescale_report(
    net,
    x,
    max_lag: Optional[int] = None,
    impulse_steps: Optional[int] = None,
    impulse_amplitude: float = 1.0,
    impulse_channels: Optional[Sequence[int]] = None,
) -> dict:
    """All timescale analyses of an ``ELMNetwork`` on input ``x`` ``[B, T, n_in]``.

    Returns a dict with ``intrinsic`` (:class:`IntrinsicTimescales` of the hidden outputs),
    ``intrinsic_tau`` ``[N]`` (resolved fits only: NaN outside one step .. ``T`` steps), ``impulse`` (:class:`ImpulseResponse`, probe of ``impulse_steps``
    steps, default ``T``), ``impulse_tau`` ``[N]``, ``memory`` (:func:`elm_memory_timescales`),
    ``readout`` (:func:`readout_timescale_weights` with the recorded memory), ``param_tau`` (the
    memory taus, flattened), ``effective_tau`` ``[N]`` and ``activity`` ``[B, T, N]``.
    """
    import torch  # torch only when a model is analysed (see _elm_layer)

    fn = elm_activity_fn(net)
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.as_tensor(_to_numpy(x), dtype=torch.float32), record=True)
    finally:
        net.train(was)
    y = out.traces["hidden"]["y"][..., 0].numpy().astype(float)
    steps = y.shape[1]
    intr = intrinsic_timescales(y, max_lag=max_lag, dt=net.cfg.dt)
    imp = impulse_response_timescales(fn, net.cfg.n_in, impulse_steps or steps, t0=0, channels=impulse_channels,
                                      amplitude=impulse_amplitude, dt=net.cfg.dt)
    mem = elm_memory_timescales(net)
    ro = readout_timescale_weights(net, out.traces["hidden"]["m"])
    return {"intrinsic": intr, "intrinsic_tau": intr.tau, "impulse": imp, "impulse_tau": imp.tau,
            "memory": mem, "readout": ro, "param_tau": mem["tau"].ravel(), "effective_tau": ro["effective_tau"],
            "activity": y}


def _check_scale(scale, unit) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0 (units of {unit!r} per given unit), got {scale!r}")
    if not isinstance(unit, str) or not unit:
        raise ValueError(f"unit must be a non-empty string (e.g. 'ms', 'steps'), got {unit!r}")
    return float(scale)


def plot_elm_timescales(report_or_layer, path, title: Optional[str] = None, unit: str = "steps",
                        scale: float = 1.0) -> str:
    """Readout weight mass per neuron over memory timescales (neurons sorted by effective tau)
    and learned vs initial memory timescales; taus (in the layer's ``dt`` units) are shown
    times ``scale`` in ``unit`` (e.g. ``unit="ms", scale=bin_ms`` for an ELM with ``dt = 1``)."""
    path = check_png_path(path)
    scale = _check_scale(scale, unit)
    if isinstance(report_or_layer, dict):
        if "readout" not in report_or_layer or "memory" not in report_or_layer:
            raise ValueError("report_or_layer: a dict must be an elm_timescale_report (keys 'readout', 'memory')")
        ro, mem = report_or_layer["readout"], report_or_layer["memory"]
    else:
        ro, mem = readout_timescale_weights(report_or_layer), elm_memory_timescales(report_or_layer)
    w, eff = ro["weights"], ro["effective_tau"]
    order = np.argsort(np.where(np.isfinite(eff), eff, np.inf))
    fig, axs = new_figure(ncols=2, width=4.8)
    im = axs[0].imshow(w[order], aspect="auto", cmap="magma", vmin=0, interpolation="nearest")
    axs[0].set_xticks(range(mem["tau_init"].size), [f"{t * scale:.3g}" for t in mem["tau_init"]], rotation=60,
                      fontsize=7)
    axs[0].set_xlabel(f"memory unit (initial tau, {unit})")
    axs[0].set_ylabel("neuron (sorted by effective tau)")
    fig.colorbar(im, ax=axs[0], label="readout weight mass")
    axs[0].set_title(title or "readout weight on memory timescales")
    init = np.broadcast_to(mem["tau_init"][None, :], mem["tau"].shape) * scale
    tau = mem["tau"] * scale
    axs[1].loglog(init.ravel(), tau.ravel(), "o", ms=3, alpha=0.6)
    lim = [min(init.min(), tau.min()), max(init.max(), tau.max())]
    axs[1].loglog(lim, lim, "k--", lw=1)
    axs[1].set_xlabel(f"initial tau ({unit})")
    axs[1].set_ylabel(f"tau ({unit})" + (" (learned)" if mem["learnable"] else " (fixed)"))
    axs[1].grid(alpha=0.3, which="both")
    fig.subplots_adjust(wspace=0.5)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- (d) spiking
def tau_stats(tau) -> dict:
    """Count, mean, median, quartiles, min and max of the finite entries of ``tau``."""
    t = _to_numpy(tau).ravel()
    t = t[np.isfinite(t)]
    if t.size == 0:
        return {"count": 0, **{k: float("nan") for k in ("mean", "median", "q25", "q75", "min", "max")}}
    q25, med, q75 = np.percentile(t, [25, 50, 75])
    return {"count": int(t.size), "mean": float(t.mean()), "median": float(med), "q25": float(q25),
            "q75": float(q75), "min": float(t.min()), "max": float(t.max())}


def spiking_timescales(tau_mem, tau_adapt=None, dt: float = 1.0) -> dict:
    """Timescales of a spiking network from its parameter arrays (any shape, e.g. ``[N]``).

    Returns ``param_tau`` (membrane taus, flattened, in units of ``dt``), ``adapt_tau`` (when
    given) and their :func:`tau_stats` under ``param_stats`` / ``adapt_stats``. Non-positive
    taus raise ``ValueError``.
    """
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    out = {}
    for key, arr, name in (("param", tau_mem, "tau_mem"), ("adapt", tau_adapt, "tau_adapt")):
        if arr is None:
            continue
        t = _to_numpy(arr).ravel()
        if t.size == 0 or np.any(t[np.isfinite(t)] <= 0):
            raise ValueError(f"{name} must be a non-empty array of taus > 0")
        out[f"{key}_tau"] = t / dt
        out[f"{key}_stats"] = tau_stats(t / dt)
    return out


def _log_bins(arrays, nbins: int = 30) -> np.ndarray:
    vals = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays]) if arrays else np.array([])
    if vals.size == 0:
        return np.geomspace(0.1, 10, nbins + 1)
    lo, hi = vals.min(), vals.max()
    if hi <= lo * 1.0001:
        lo, hi = lo / 1.5, hi * 1.5
    return np.geomspace(lo, hi, nbins + 1)


def plot_tau_distributions(taus: dict, path, title: Optional[str] = None, xlabel: Optional[str] = None,
                           unit: str = "steps", scale: float = 1.0) -> str:
    """Histograms (shared log-spaced bins) of several tau arrays, ``{label: array}``, shown
    times ``scale`` in ``unit`` (x label ``tau (<unit>)`` unless ``xlabel`` is given)."""
    path = check_png_path(path)
    scale = _check_scale(scale, unit)
    if not isinstance(taus, dict) or not taus:
        raise ValueError("taus must be a non-empty dict {label: array of taus}")
    arrs = {k: _to_numpy(v).ravel() * scale for k, v in taus.items()}
    xlabel = xlabel or f"tau ({unit})"
    bins = _log_bins(list(arrs.values()))
    fig, (ax,) = new_figure(width=5.5)
    for k, a in arrs.items():
        a = a[np.isfinite(a) & (a > 0)]
        med = f", median {np.median(a):.3g}" if a.size else ""
        ax.hist(a, bins=bins, alpha=0.5, label=f"{k} (n={a.size}{med})")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    ax.set_title(title or "timescale distributions")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- (e) comparison
COMPARISON_KEYS = (("intrinsic_tau", "intrinsic (autocorrelation)"), ("impulse_tau", "impulse response"),
                   ("param_tau", "parameter tau (memory / membrane)"), ("adapt_tau", "adaptation tau"))
# What each row counts (the y axis).
_COUNTED = {"intrinsic_tau": "neurons", "impulse_tau": "neurons", "param_tau": "taus", "adapt_tau": "neurons"}


def missing_note(key: str, result: dict) -> str:
    """Why a network has no ``key`` timescales (the text of its empty panel)."""
    spiking = str(result.get("family", "")) in ("lif", "adlif") or "adapt_tau" in result \
        or ("param_tau" in result and "impulse_tau" not in result and "effective_tau" not in result)
    if key == "impulse_tau" and spiking:
        return ("not measured for spiking neurons:\na LIF neuron's response to one input\npulse is its membrane "
                "decay, tau_mem\n(parameter-tau row)")
    if key == "adapt_tau":
        return "no adaptation current\n(ELM neurons and plain LIF have none)"
    if key == "intrinsic_tau":
        return "not measured:\nno held-out activity recorded\n(e.g. an Enwik8 run: parameters only)"
    if key == "param_tau":
        return "no timescale parameters"
    return "not measured for this network"


_ABSENT = {"impulse_tau": "not measured (spiking: its pulse response is tau_mem)",
           "adapt_tau": "none (no adaptation current)", "intrinsic_tau": "not measured (no activity recorded)",
           "param_tau": "no timescale parameters"}


def _absent_note(key: str, result: dict) -> str:
    """One line: why a network has no ``key`` timescales (its legend entry in that panel)."""
    if key == "impulse_tau" and "spiking" not in missing_note(key, result):
        return "not measured"
    return _ABSENT.get(key, "not measured")


def _unresolved(result: dict) -> tuple[int, Optional[tuple]]:
    """``(count, (lo, hi))`` of a network's intrinsic fits outside one bin .. the sample's duration
    (from its :class:`IntrinsicTimescales` under ``intrinsic``; ``(0, None)`` without one)."""
    intr = result.get("intrinsic")
    if isinstance(intr, IntrinsicTimescales):
        return intr.n_unresolved, tuple(float(b) / intr.dt for b in intr.bounds)  # in steps (the arrays' unit)
    return 0, None


def plot_timescale_comparison(results: dict, path, title: Optional[str] = None, unit: str = "steps",
                              scale=1.0) -> str:
    """Timescale distributions of several networks, e.g. ``{"ELM": r1, "LIF": r2}``: one panel per
    kind of timescale that some network has, the networks overlaid in it (step histograms on shared
    log bins, each network's median a dashed line of its colour), so no panel is empty; a network
    without that kind is named in the panel's legend with the reason.

    Each result is a dict with any of ``intrinsic_tau``, ``impulse_tau``, ``param_tau``,
    ``adapt_tau`` (arrays; e.g. from :func:`elm_timescale_report`, :func:`spiking_timescales`
    merged with :func:`intrinsic_timescales`). Intrinsic timescales outside one time bin .. the
    sample's duration are unresolved (:class:`IntrinsicTimescales`): not drawn, counted in the
    legend, the range marked by dotted lines. Values are shown times ``scale`` in ``unit``;
    ``scale`` is one number, or one per network (``{name: scale}``, e.g. each run's bin width in
    ms when the runs' taus are in steps).
    """
    path = check_png_path(path)
    if not isinstance(results, dict) or not results or not all(isinstance(v, dict) for v in results.values()):
        raise ValueError("results must be a non-empty dict {network name: result dict}")
    if isinstance(scale, dict):
        if set(scale) != set(results):
            raise ValueError(f"scale: a dict must give one scale per network {sorted(results)}, got {sorted(scale)}")
        scales = {nm: _check_scale(v, unit) for nm, v in scale.items()}
    else:
        scales = dict.fromkeys(results, _check_scale(scale, unit))
    kinds = [(k, lab) for k, lab in COMPARISON_KEYS if any(k in r for r in results.values())]
    if not kinds:
        raise ValueError(f"results: no result has any of {[k for k, _ in COMPARISON_KEYS]}")
    names = list(results)
    fig, axs = new_figure(nrows=len(kinds), width=9.5, height=2.5)
    for ax, (key, lab) in zip(axs, kinds):
        arrs = {nm: _to_numpy(results[nm][key]).ravel() * scales[nm] for nm in names if key in results[nm]}
        ranges = set()
        if key == "intrinsic_tau":
            for nm in arrs:
                rng = _unresolved(results[nm])[1]
                if rng is not None:
                    ranges.add((rng[0] * scales[nm], rng[1] * scales[nm]))
        bins = _log_bins(list(arrs.values()) + [np.array(r) for r in ranges])
        handles, labels = [], []
        for j, nm in enumerate(names):
            if nm not in arrs:
                handles.append(Line2D([], [], color="none"))
                labels.append(f"{nm}: {_absent_note(key, results[nm])}")
                continue
            a = arrs[nm][np.isfinite(arrs[nm]) & (arrs[nm] > 0)]
            ax.hist(a, bins=bins, histtype="step", lw=1.6, color=f"C{j}")
            text = f"{nm}: {a.size} {_COUNTED[key]}"
            if a.size:
                ax.axvline(np.median(a), color=f"C{j}", ls="--", lw=1)
                text += f", median {np.median(a):.3g} {unit}"
            if key == "intrinsic_tau":
                n_out, rng = _unresolved(results[nm])
                if rng is not None:
                    text += f"; {n_out} unresolved"
            handles.append(Line2D([], [], color=f"C{j}", lw=1.6))
            labels.append(text)
        for lo, hi in sorted(ranges):
            for b in (lo, hi):
                ax.axvline(b, color="0.4", ls=":", lw=1)
        if ranges:
            span = "; ".join(f"{compact_number(lo)} to {compact_number(hi)} {unit}" for lo, hi in sorted(ranges))
            handles.append(Line2D([], [], color="0.4", ls=":", lw=1))
            labels.append(f"resolvable: one bin to the sample ({span});\nfits outside are unresolved, not drawn")
        set_log_axis(ax, np.geomspace(bins[0], bins[-1], 25))
        ax.set_xlim(bins[0] / 1.2, bins[-1] * 1.2)  # the range's dotted lines inside the frame
        ax.set_title(lab, fontsize=9)
        ax.set_ylabel(f"{_COUNTED[key]} per bin", fontsize=8)
        ax.set_xlabel(f"tau ({unit})")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.text(0.01, 0.005, "dashed line: a network's median; one panel per kind of timescale, networks overlaid",
             fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96 if title else 1))
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
