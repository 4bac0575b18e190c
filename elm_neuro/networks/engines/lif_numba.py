"""CPU backend of the fused LIF / adLIF sequence engine: the forward and reverse-time backward
loops compiled with Numba (contract and reference: :mod:`elm_neuro.networks.engines.lif_sequence`).

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

No array is allocated inside the time loop (scratch rows are allocated once per call).

Also here: the event-driven input projection of sparse spike inputs (:func:`project_forward` /
:func:`project_backward`, a row of the input map added per input event, the input dropout mask
applied per event; :func:`~elm_neuro.networks.engines.lif_sequence.project_spikes` chooses it) and
the leaky filter's scan (:func:`scan_forward` / :func:`scan_backward`).

Threading: :mod:`elm_neuro.networks.engines.numba_threads` (Numba's ``workqueue`` layer unless
``NUMBA_THREADING_LAYER`` is set; as many threads as torch is given).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from elm_neuro.networks.engines.numba_threads import build, engine_threads
from elm_neuro.networks.engines.lif_sequence import Grads, Saved, Spec, saved_buffers


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


def _fwd_impl(cur, M, mask, km, gn, kw, aa, bb, cst, recurrent, adaptive, zero_reset, refr, has_gain,
              v_all, s_all, w_all, q_all, d_all, ref, rc):
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


def _bwd_impl(gs, v_all, s_all, w_all, q_all, d_all, M, mask, km, gn, kw, aa, bb, cst,
              recurrent, adaptive, zero_reset, refr, has_gain, detach, surrogate,
              g_cur, g_v, g_w, g_s, g_own, a_km, a_gn, a_kw, a_a, a_b):
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


def _proj_fwd_impl(x, mask, steps, has_mask, M, cst, out, rows, cols, vals):
    """``out[r] = sum_i (x[r, i] mask[r // steps, i]) M[i]`` over the non-zero inputs, in increasing
    ``i`` (a row add per input event); the events are listed for backward. Returns their count."""
    R, I = x.shape
    N = M.shape[1]
    zero = cst[0]  # 0 in the arrays' dtype
    k = 0
    for r in range(R):
        b = r // steps
        for n in range(N):
            out[r, n] = zero
        for i in range(I):
            xv = x[r, i]
            if xv != zero:
                if has_mask:
                    xv = xv * mask[b, i]
                if xv != zero:
                    rows[k] = r
                    cols[k] = i
                    vals[k] = xv
                    k += 1
                    for n in range(N):
                        out[r, n] += xv * M[i, n]
    return k


def _proj_bwd_impl(g, rows, cols, vals, count, g_M):
    """``g_M[i] += value * g[r]`` for every input event ``(r, i, value)``."""
    N = g.shape[1]
    for q in range(count):
        r = rows[q]
        i = cols[q]
        v = vals[q]
        for n in range(N):
            g_M[i, n] += v * g[r, n]


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
_PROJ: list = []


def _proj_kernels():
    if not _PROJ:
        opts = dict(cache=True, nogil=True, error_model="numpy")
        _PROJ.extend([njit(**opts)(_proj_fwd_impl), njit(**opts)(_proj_bwd_impl)])
    return _PROJ


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


def forward(cur_in, M, mask, kappa_m, gain, kappa_w, a, b, v0, s0, w0, ref0, spec: Spec) -> Saved:
    """The contract's forward (:func:`elm_neuro.networks.engines.lif_sequence.forward_torch`)."""
    bsz, steps, n = cur_in.shape
    v_all, s_all, w_all, q_all, d_all, ref = saved_buffers(cur_in, v0, s0, w0, ref0, spec)
    refr = ref is not None
    dt = _np(cur_in).dtype
    fwd, _ = _kernels(engine_threads() > 1)
    fwd(_np(cur_in), _np(M) if spec.recurrent else np.zeros((1, 1), dt), _np(mask), _np(kappa_m), _vec(gain, dt),
        _vec(kappa_w, dt), _vec(a, dt), _vec(b, dt), _consts(spec, dt), spec.recurrent, spec.adaptive,
        spec.reset == 1, refr, spec.has_gain, _np(v_all), _np(s_all), _cube(w_all, dt), _cube(q_all, dt),
        _cube(d_all, dt), _plane(ref, dt), np.empty((bsz, n), dt))
    return Saved(v_all, s_all, w_all, q_all, d_all, ref)


def backward(saved: Saved, M, mask, kappa_m, gain, kappa_w, a, b, gs, g_vT, g_wT, spec: Spec) -> Grads:
    """The contract's backward (:func:`elm_neuro.networks.engines.lif_sequence.backward_torch`)."""
    bsz, steps, n = gs.shape
    dtype = saved.v_all.dtype
    dt = _np(saved.v_all).dtype
    g_cur = torch.empty_like(gs)
    g_v = g_vT.clone()
    g_w = g_wT.clone() if spec.adaptive else None
    g_s = torch.zeros_like(g_vT)
    # per-sample sums over time in float64 (samples run in parallel), summed over the batch below
    sums = {k: torch.zeros(bsz, n, dtype=torch.float64) for k in ("km", "gn", "kw", "a", "b")}
    _, bwd = _kernels(engine_threads() > 1)
    bwd(_np(gs), _np(saved.v_all), _np(saved.s_all), _cube(saved.w_all, dt), _cube(saved.q_all, dt),
        _cube(saved.d_all, dt), _np(M) if spec.recurrent else np.zeros((1, 1), dt), _np(mask), _np(kappa_m),
        _vec(gain, dt), _vec(kappa_w, dt), _vec(a, dt), _vec(b, dt), _consts(spec, dt), spec.recurrent,
        spec.adaptive, spec.reset == 1, spec.refractory > 0, spec.has_gain, spec.detach_reset, spec.surrogate,
        _np(g_cur), _np(g_v), _plane(g_w, dt), _np(g_s), np.empty((bsz, n), dt),
        *[_np(sums[k]) for k in ("km", "gn", "kw", "a", "b")])
    tot = {k: v.sum(0).to(dtype) for k, v in sums.items()}
    ad = spec.adaptive
    return Grads(g_cur, tot["km"], tot["gn"] if spec.has_gain else None, tot["kw"] if ad else None,
                 tot["a"] if ad else None, tot["b"] if ad else None, g_v, g_s, g_w)


# --------------------------------------------------------------------------- leaky filter
def scan_forward(drive, o0, kappa: float, gain: float):
    """``o_t = kappa o_{t-1} + gain d_t`` (:func:`~elm_neuro.networks.engines.lif_sequence.scan_torch`)."""
    dt = _np(drive).dtype
    out = torch.empty_like(drive)
    fwd, _ = _scan_kernels()
    fwd(_np(drive), np.array([kappa], dt), np.array([gain], dt), gain == 1.0, _np(o0).copy(), _np(out))
    return out


def scan_backward(g_o, kappa: float, gain: float):
    """``(g_drive, g_o0)`` (:func:`~elm_neuro.networks.engines.lif_sequence.scan_backward_torch`)."""
    dt = _np(g_o).dtype
    g_d = torch.empty_like(g_o)
    acc = g_o.new_zeros(g_o.shape[0], g_o.shape[2])
    _, bwd = _scan_kernels()
    bwd(_np(g_o), np.array([kappa], dt), np.array([gain], dt), gain == 1.0, _np(g_d), _np(acc))
    return g_d, acc


# --------------------------------------------------------------------------- input projection
def project_forward(x, mask, M, nnz: int):
    """``(x * mask[:, None, :]) @ M`` for sparse inputs ``x`` ``[B, T, I]`` with ``nnz`` non-zeros
    (``mask`` ``[B, I]`` or None), event-driven; returns ``(out [B, T, N], events)`` (``events``:
    what backward needs)."""
    bsz, steps, n_in = x.shape
    n = M.shape[1]
    dt = _np(x).dtype
    flat = x.reshape(-1, n_in)
    rows = torch.empty(nnz, dtype=torch.int64)
    cols = torch.empty(nnz, dtype=torch.int64)
    vals = x.new_empty(nnz)
    out = x.new_empty(bsz * steps, n)
    fwd, _ = _proj_kernels()
    count = fwd(_np(flat), _np(mask) if mask is not None else np.zeros((1, 1), dt), max(steps, 1), mask is not None,
                _np(M), np.zeros(1, dt), _np(out), _np(rows), _np(cols), _np(vals))
    return out.view(bsz, steps, n), (rows, cols, vals, int(count))


def project_backward(g, events, n_in: int):
    """The gradient of ``M`` ``[I, N]`` from the output gradient ``g`` ``[B, T, N]``."""
    rows, cols, vals, count = events
    g = g.reshape(-1, g.shape[-1]).contiguous()
    g_M = g.new_zeros(n_in, g.shape[1])
    _, bwd = _proj_kernels()
    bwd(_np(g), _np(rows), _np(cols), _np(vals), count, _np(g_M))
    return g_M
