"""CPU backend of the fused LIF / adLIF sequence engine: the forward and reverse-time backward
loops compiled with Numba (contract and reference: :mod:`elm_neuro.networks.engines.lif_contract`).

Layout and loops: batch first (``[B, T, N]``, the layer's own layout: nothing is transposed), the
samples independent, so the outer loop is a ``prange`` over the batch (parallel over the threads
torch is given; one thread runs the serial build) and each sample runs its whole time loop with
the neurons innermost, where every elementwise stage compiles to SIMD code over ``N``.

- Forward, recurrent current: event-driven. Spikes are sparse and binary, so a step adds the rows
  ``M[j, :]`` of the sources ``j`` that spiked (times their dropout mask), in increasing ``j``:
  a contiguous vector add per spike instead of a product with every source.
- Backward, the recurrence's gradient into the previous spikes, ``g_s[j] = sum_n M[j, n] g_c[n]``
  (dense: the surrogate gradient reaches every neuron): dot products of four rows of ``M`` at a
  time with the step's current gradient (register blocking; the only code compiled with
  reassociation and fused multiply-add, which a matrix product's order is anyway).
- Everything else is compiled without fast-math, so every elementwise operation rounds as the
  per-step path's torch operation does; the per-neuron parameter gradients are summed in float64.

No array is allocated inside the time loop (scratch rows are allocated once per call). Kernel
arguments are named tuples of arrays (:class:`KSynapses`, :class:`KWeights`, :class:`KForward`,
:class:`KSaved`, :class:`KBackward`, :class:`KOptions`), absent arrays small stand-ins.

Also here: the leaky filter's scan (:func:`scan_forward` / :func:`scan_backward`, the backend of
:mod:`elm_neuro.networks.engines.leaky_scan`).

Threading: :mod:`elm_neuro.networks.engines.numba_threads` (Numba's ``workqueue`` layer unless
``NUMBA_THREADING_LAYER`` is set; as many threads as torch is given).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numba import njit, prange

from elm_neuro.networks.engines.inputs import Drive
from elm_neuro.networks.engines.lif_contract import Grads, OutGrads, Saved, Spec, State, Weights, saved_buffers
from elm_neuro.networks.engines.numba_threads import build, engine_threads

TAKES = (Drive,)  # the input current, projected by the layer


class KSynapses(NamedTuple):
    M: np.ndarray  # [N, N] dense recurrent map (a stand-in without recurrent synapses)
    mask: np.ndarray  # [B, N] recurrent dropout mask


class KWeights(NamedTuple):
    km: np.ndarray  # [N] kappa_m
    gn: np.ndarray  # [N] gain (stand-in without)
    kw: np.ndarray  # [N] kappa_w (adLIF)
    aa: np.ndarray  # [N] a (adLIF)
    bb: np.ndarray  # [N] b (adLIF)


class KOptions(NamedTuple):
    recurrent: bool
    adaptive: bool
    zero_reset: bool
    refr: bool
    has_gain: bool
    detach: bool
    surrogate: int
    cst: np.ndarray  # threshold, reset amount, R, 1, 0, slope, scale, slope / 2, pi / 2 slope


class KForward(NamedTuple):
    """What the forward writes: the saved arrays ([B, T(+1), N]) and the refractory counter."""

    v_all: np.ndarray
    s_all: np.ndarray
    w_all: np.ndarray
    q_all: np.ndarray
    d_all: np.ndarray
    ref: np.ndarray  # [B, N]


class KSaved(NamedTuple):
    gs: np.ndarray  # [B, T, N] the spikes' gradient
    v_all: np.ndarray
    s_all: np.ndarray
    w_all: np.ndarray
    q_all: np.ndarray
    d_all: np.ndarray


class KBackward(NamedTuple):
    """What the backward writes (g_v, g_w come in as g_vT, g_wT; the sums as zeros)."""

    g_cur: np.ndarray  # [B, T, N]
    g_v: np.ndarray  # [B, N]
    g_w: np.ndarray
    g_s: np.ndarray
    g_own: np.ndarray  # scratch [B, N]
    a_km: np.ndarray  # [B, N] float64 per-sample sums
    a_gn: np.ndarray
    a_kw: np.ndarray
    a_a: np.ndarray
    a_b: np.ndarray


_ROWS_OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})


def _rows_dot_impl(M, g, mask, own, out, zero):
    """``out[j] = own[j] + mask[j] * sum_n M[j, n] g[n]`` for every row ``j`` (four at a time)."""
    N = M.shape[0]
    j0 = 0
    while j0 + 4 <= N:
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        for n in range(M.shape[1]):
            gv = g[n]
            a0 += M[j0, n] * gv
            a1 += M[j0 + 1, n] * gv
            a2 += M[j0 + 2, n] * gv
            a3 += M[j0 + 3, n] * gv
        out[j0] = own[j0] + a0 * mask[j0]
        out[j0 + 1] = own[j0 + 1] + a1 * mask[j0 + 1]
        out[j0 + 2] = own[j0 + 2] + a2 * mask[j0 + 2]
        out[j0 + 3] = own[j0 + 3] + a3 * mask[j0 + 3]
        j0 += 4
    for j in range(j0, N):
        acc = zero
        for n in range(M.shape[1]):
            acc += M[j, n] * g[n]
        out[j] = own[j] + acc * mask[j]


_rows_dot = njit(**_ROWS_OPTS)(_rows_dot_impl)


def _fwd_impl(cur, syn, w, out, rc, opt):
    M, mask = syn.M, syn.mask
    km, gn, kw, aa, bb = w.km, w.gn, w.kw, w.aa, w.bb
    v_all, s_all, w_all, q_all, d_all, ref = out.v_all, out.s_all, out.w_all, out.q_all, out.d_all, out.ref
    recurrent, adaptive, zero_reset, refr, has_gain = opt.recurrent, opt.adaptive, opt.zero_reset, opt.refr, opt.has_gain
    cst = opt.cst
    B, T, N = cur.shape
    th = cst[0]  # constants in the arrays' dtype: a Python float would turn float32 code into float64
    thr = cst[1]
    rv = cst[2]
    one = cst[3]
    zero = cst[4]
    for b in prange(B):
        for t in range(T):
            if recurrent:
                for n in range(N):
                    rc[b, n] = zero
                for j in range(N):  # event-driven: the rows of the sources that spiked
                    sv = s_all[b, t, j] * mask[b, j]
                    if sv != zero:
                        for n in range(N):
                            rc[b, n] += sv * M[j, n]
            for n in range(N):
                drive = cur[b, t, n] + rc[b, n] if recurrent else cur[b, t, n]
                vp = v_all[b, t, n]
                sp = s_all[b, t, n]
                if adaptive:
                    wv = kw[n] * w_all[b, t, n] + aa[n] * vp + bb[n] * sp
                    w_all[b, t + 1, n] = wv
                    drive = drive - wv
                q = zero
                if refr:
                    q = one if ref[b, n] > zero else zero
                    q_all[b, t, n] = q
                    drive = drive * (one - q)
                if has_gain:
                    d_all[b, t, n] = drive
                    drive = gn[n] * drive
                if zero_reset:
                    v = km[n] * vp * (one - sp) + drive
                else:
                    v = km[n] * vp + drive - thr * sp
                s = one if v - th > zero else zero
                if refr:
                    s = s * (one - q)
                    r = ref[b, n] - one
                    ref[b, n] = rv if s > zero else (r if r > zero else zero)
                v_all[b, t + 1, n] = v
                s_all[b, t + 1, n] = s


def _bwd_impl(sv, syn, w, out, opt):
    gs, v_all, s_all, w_all, q_all, d_all = sv.gs, sv.v_all, sv.s_all, sv.w_all, sv.q_all, sv.d_all
    M, mask = syn.M, syn.mask
    km, gn, kw, aa, bb = w.km, w.gn, w.kw, w.aa, w.bb
    g_cur, g_v, g_w, g_s, g_own = out.g_cur, out.g_v, out.g_w, out.g_s, out.g_own
    a_km, a_gn, a_kw, a_a, a_b = out.a_km, out.a_gn, out.a_kw, out.a_a, out.a_b
    recurrent, adaptive, zero_reset, refr, has_gain = opt.recurrent, opt.adaptive, opt.zero_reset, opt.refr, opt.has_gain
    detach, surrogate, cst = opt.detach, opt.surrogate, opt.cst
    B, T, N = gs.shape
    th = cst[0]
    thr = cst[1]
    one = cst[3]
    zero = cst[4]
    slope = cst[5]
    scale = cst[6]
    half_slope = cst[7]  # slope / 2
    pi_half_slope = cst[8]  # pi / 2 * slope
    for b in prange(B):
        for t in range(T - 1, -1, -1):
            for n in range(N):
                x = v_all[b, t + 1, n] - th
                if surrogate == 0:
                    den = slope * abs(x) + one
                    sg = scale / (den * den)
                elif surrogate == 1:
                    u = pi_half_slope * x
                    sg = scale * half_slope / (one + u * u)
                else:
                    den = slope * abs(x) + one
                    sg = scale * half_slope / (den * den)
                if refr:
                    sg = sg * (one - q_all[b, t, n])
                gv = g_v[b, n] + (gs[b, t, n] + g_s[b, n]) * sg
                vp = v_all[b, t, n]
                sp = s_all[b, t, n]
                if zero_reset:
                    om = one - sp
                    a_km[b, n] += gv * vp * om
                    g_vp = gv * km[n] * om
                    g_r = -(gv * km[n] * vp)
                else:
                    a_km[b, n] += gv * vp
                    g_vp = gv * km[n]
                    g_r = -(thr * gv)
                g_sp = zero if detach else g_r
                gd = gv
                if has_gain:
                    a_gn[b, n] += gd * d_all[b, t, n]
                    gd = gd * gn[n]
                if refr:
                    gd = gd * (one - q_all[b, t, n])
                g_cur[b, t, n] = gd
                if adaptive:
                    gw = g_w[b, n] - gd
                    a_kw[b, n] += gw * w_all[b, t, n]
                    a_a[b, n] += gw * vp
                    a_b[b, n] += gw * sp
                    g_w[b, n] = gw * kw[n]
                    g_vp = g_vp + gw * aa[n]
                    g_sp = g_sp + gw * bb[n]
                g_v[b, n] = g_vp
                g_own[b, n] = g_sp
            # gradient into s_{t-1}: its own terms plus the recurrent synapses' (dense rows of M)
            if recurrent:
                _rows_dot(M, g_cur[b, t], mask[b], g_own[b], g_s[b], zero)
            else:
                for n in range(N):
                    g_s[b, n] = g_own[b, n]


def _scan_fwd_impl(d, kap, gain, unit, acc, o):
    B, T, C = d.shape
    k = kap[0]
    g = gain[0]
    for b in range(B):  # acc [B, C] comes in as o0
        for t in range(T):
            for c in range(C):
                val = k * acc[b, c] + (d[b, t, c] if unit else g * d[b, t, c])
                o[b, t, c] = val
                acc[b, c] = val


def _scan_bwd_impl(go, kap, gain, unit, gd, acc):
    B, T, C = go.shape
    k = kap[0]
    g = gain[0]
    for b in range(B):  # acc [B, C] comes in as zeros and leaves as the gradient of o0
        for t in range(T - 1, -1, -1):
            for c in range(C):
                a = go[b, t, c] + acc[b, c]
                gd[b, t, c] = a if unit else g * a
                acc[b, c] = k * a


_KERNELS: dict = {}


def _kernels(parallel: bool):
    """The compiled (forward, backward) pair; the parallel build only when threads > 1."""
    if parallel not in _KERNELS:
        # no fast-math: the elementwise parts round exactly as the per-step path's torch operations
        opts = dict(nogil=True, error_model="numpy")
        _KERNELS[parallel] = (build(_fwd_impl, parallel, **opts), build(_bwd_impl, parallel, **opts))
    return _KERNELS[parallel]


_SCAN: list = []


def _scan_kernels():
    if not _SCAN:
        opts = dict(cache=True, nogil=True, error_model="numpy")
        _SCAN.extend([njit(**opts)(_scan_fwd_impl), njit(**opts)(_scan_bwd_impl)])
    return _SCAN


def _np(t):
    return t.detach().numpy()


def _consts(spec: Spec, dt) -> np.ndarray:
    return np.array([spec.threshold, spec.reset_value, float(spec.refractory), 1.0, 0.0, spec.slope, spec.scale,
                     spec.slope / 2.0, math.pi / 2.0 * spec.slope], dtype=dt)


def _vec(t, dt):
    return np.zeros(1, dt) if t is None else _np(t)


def _plane(t, dt):
    return np.zeros((1, 1), dt) if t is None else _np(t)


def _cube(t, dt):
    return np.zeros((1, 1, 1), dt) if t is None else _np(t)


def _options(spec: Spec, dt) -> KOptions:
    return KOptions(bool(spec.recurrent), bool(spec.adaptive), spec.reset == 1, spec.refractory > 0,
                    bool(spec.has_gain), bool(spec.detach_reset), int(spec.surrogate), _consts(spec, dt))


def _kweights(w: Weights, dt) -> KWeights:
    return KWeights(_np(w.kappa_m), _vec(w.gain, dt), _vec(w.kappa_w, dt), _vec(w.a, dt), _vec(w.b, dt))


def _ksynapses(w: Weights, mask, spec: Spec, dt) -> KSynapses:
    return KSynapses(_np(w.M) if spec.recurrent else np.zeros((1, 1), dt), _np(mask))


def forward(cur_in, mask, w: Weights, s: State, spec: Spec) -> Saved:
    """The contract's forward (:func:`elm_neuro.networks.engines.lif_contract.forward_torch`)."""
    bsz, steps, n = cur_in.shape
    v_all, s_all, w_all, q_all, d_all, ref = saved_buffers(cur_in, s, spec)
    dt = _np(cur_in).dtype
    fwd, _ = _kernels(engine_threads() > 1)
    out = KForward(_np(v_all), _np(s_all), _cube(w_all, dt), _cube(q_all, dt), _cube(d_all, dt), _plane(ref, dt))
    fwd(_np(cur_in), _ksynapses(w, mask, spec, dt), _kweights(w, dt), out, np.empty((bsz, n), dt), _options(spec, dt))
    return Saved(v_all, s_all, w_all, q_all, d_all, ref)


def backward(saved: Saved, mask, w: Weights, g: OutGrads, spec: Spec) -> Grads:
    """The contract's backward (:func:`elm_neuro.networks.engines.lif_contract.backward_torch`)."""
    bsz, steps, n = g.gs.shape
    dtype = saved.v_all.dtype
    dt = _np(saved.v_all).dtype
    g_cur = torch.empty_like(g.gs)
    g_v = g.g_vT.clone()
    g_w = g.g_wT.clone() if spec.adaptive else None
    g_s = torch.zeros_like(g.g_vT)
    # per-sample sums over time in float64 (samples run in parallel), summed over the batch below
    sums = {k: torch.zeros(bsz, n, dtype=torch.float64) for k in ("km", "gn", "kw", "a", "b")}
    _, bwd = _kernels(engine_threads() > 1)
    sv = KSaved(_np(g.gs), _np(saved.v_all), _np(saved.s_all), _cube(saved.w_all, dt), _cube(saved.q_all, dt),
                _cube(saved.d_all, dt))
    out = KBackward(_np(g_cur), _np(g_v), _plane(g_w, dt), _np(g_s), np.empty((bsz, n), dt),
                    *[_np(sums[k]) for k in ("km", "gn", "kw", "a", "b")])
    bwd(sv, _ksynapses(w, mask, spec, dt), _kweights(w, dt), out, _options(spec, dt))
    tot = {k: v.sum(0).to(dtype) for k, v in sums.items()}
    ad = spec.adaptive
    return Grads(g_cur, tot["km"], tot["gn"] if spec.has_gain else None, tot["kw"] if ad else None,
                 tot["a"] if ad else None, tot["b"] if ad else None, g_v, g_s, g_w)


# --------------------------------------------------------------------------- leaky filter
def scan_forward(drive, o0, kappa: float, gain: float):
    """``o_t = kappa o_{t-1} + gain d_t`` (:func:`~elm_neuro.networks.engines.leaky_scan.scan_torch`)."""
    dt = _np(drive).dtype
    out = torch.empty_like(drive)
    fwd, _ = _scan_kernels()
    fwd(_np(drive), np.array([kappa], dt), np.array([gain], dt), gain == 1.0, _np(o0).copy(), _np(out))
    return out


def scan_backward(g_o, kappa: float, gain: float):
    """``(g_drive, g_o0)`` (:func:`~elm_neuro.networks.engines.leaky_scan.scan_backward_torch`)."""
    dt = _np(g_o).dtype
    g_d = torch.empty_like(g_o)
    acc = g_o.new_zeros(g_o.shape[0], g_o.shape[2])
    _, bwd = _scan_kernels()
    bwd(_np(g_o), np.array([kappa], dt), np.array([gain], dt), gain == 1.0, _np(g_d), _np(acc))
    return g_d, acc
