"""CPU backend of the fused ELM sequence engine: the forward and reverse-time backward loops
compiled with Numba (contract and reference: :mod:`elm_neuro.networks.engines.elm_sequence`).

Loops: per time step the neurons are independent once the previous step's outputs are known, so
the neuron loop is a ``prange`` (parallel over the threads torch is given; one thread runs the
serial build, without threading overhead). Inside it the MLP's matrix products (forward, and
their transposes in backward) run over all samples of the step at once as explicit vector blocks
(:func:`elm_neuro.networks.engines.simd.matvec`: 8 samples per vector, rows held in registers;
3-4x the scalar dot products' rate); every per-step array is laid out with the samples innermost,
and the arrays saved for backward are one contiguous block per neuron and step ([N, T, features,
B]), from which the MLP weight gradients come as vector Gram blocks after the loop
(:func:`elm_neuro.networks.engines.simd.gram`). The recurrent synapses (and those of a dense
input read as rows, sources ``N + c``) are read per target neuron (CSR) in forward; in backward
their gradient is scattered to the sources after the neuron loop of each step, with per-lane sums
for their weights; each synapse is one vector multiply-add over the samples
(:func:`~elm_neuro.networks.engines.simd.axpy`, :func:`~elm_neuro.networks.engines.simd.mul_acc`).
The large per-sequence arrays come from :mod:`elm_neuro.networks.engines.workspace` (reused, so
their pages are not faulted in again every batch).

What the loop does not do: the MLP weight gradients (Gram blocks per neuron after the loop,
:func:`_weight_grads_impl`); what it does instead of tensor code: the gradients of the small per-neuron
parameters (bias, readout, gain, kappa) are summed in the loop per batch lane in float64. With
input events (:class:`~elm_neuro.networks.engines.elm_sequence.InputEvents`, spiking inputs) the
input drive of each step is scattered from that step's events, and the input synapses' weight
gradient gathered from them, so neither the ``[T, N, D, B]`` drive nor its gradient exists.

Arithmetic stays in the arrays' dtype: constants come in as an array of that dtype, tanh of
float32 is a rational function evaluated in float64 (:func:`fast_tanh`, vectorised), and the activations' derivatives are
selects, not branches (the signs are data: a mispredicted branch per unit costs more than the
unit). No array is allocated inside the time loop.

Threading: :mod:`elm_neuro.networks.engines.numba_threads` (Numba's ``workqueue`` layer unless
``NUMBA_THREADING_LAYER`` is set; as many threads as torch is given).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload

from elm_neuro.networks.engines.numba_threads import build, engine_threads
from elm_neuro.networks.engines.simd import axpy, gram, matvec, mul_acc
from elm_neuro.networks.engines.workspace import WORKSPACE
from elm_neuro.networks.engines.elm_sequence import TANH_GAIN, Grads, InputEvents, Recurrent, Saved, Spec



_INLINE = dict(inline="always", fastmath={"reassoc", "contract", "nsz"})


# tanh(x) = x P(x^2) / Q(x^2) on |x| <= 9 (beyond, float32 tanh is within an ulp of +-1): our fit
# (iterated weighted least squares on the relative error, float64). Evaluated in float64 and
# rounded to float32 it is within 1 ulp of the correctly rounded tanh everywhere and equal to it
# for 91 % of float32 inputs (checked on 4.4 million points in [-12, 12] and down to 1e-38;
# tests/test_engine_fused.py checks it against torch.tanh).
_TANH_P = (0.9999999875928184, -0.1588735823170764, 0.0314223482327661, 0.007951065709565322,
           0.00022578980475504952, 1.3382526104161899e-06, 8.46773499059965e-10)
_TANH_Q = (1.0, 0.17445958428008318, -0.04375739659745152, 0.024071843490558027, 0.0016300942719629935,
           2.139075821784202e-05, 5.001647699670973e-08)
_TANH_CLAMP = 9.0


def fast_tanh(x):
    """tanh; compiled: float32 as a rational function evaluated in float64 (no libm call, so a
    loop over samples vectorises; within 1 ulp, see ``_TANH_P``), float64 as libm tanh."""
    return math.tanh(x)


@overload(fast_tanh, **_INLINE)
def _fast_tanh_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        p0, p1, p2, p3, p4, p5, p6 = _TANH_P
        q0, q1, q2, q3, q4, q5, q6 = _TANH_Q
        lim = _TANH_CLAMP

        def impl(x):
            v = np.float64(x)
            v = lim if v > lim else v  # selects: a NaN stays NaN
            v = -lim if v < -lim else v
            s = v * v
            num = ((((((p6 * s + p5) * s + p4) * s + p3) * s + p2) * s + p1) * s + p0)
            den = ((((((q6 * s + q5) * s + q4) * s + q3) * s + q2) * s + q1) * s + q0)
            return np.float32(v * num / den)
        return impl
    return lambda x: math.tanh(x)


@njit(**_INLINE)
def _step(a, zero, one):
    """1 where ``a > 0``, else 0 (a select, not a branch: the signs are data, and a mispredicted
    branch per unit costs more than the unit's arithmetic)."""
    return one if a > zero else zero


@njit(**_INLINE)
def _act(a, code, zero, one):
    """The MLP activation by code (relu^2, relu, silu); a NaN stays NaN, as in torch."""
    if code == 2:
        return a / (one + math.exp(-a))
    r = a * _step(a, zero, one)  # NaN * 0 = NaN
    return r * r if code == 0 else r


@njit(**_INLINE)
def _act_grad(a, code, zero, one, two):
    """d act / d a."""
    if code == 2:
        sg = one / (one + math.exp(-a))
        return sg * (one + a * (one - sg))
    r = _step(a, zero, one)
    return two * a * r if code == 0 else r




@njit(**_INLINE)
def _source_rows(ym, y_all, t, mask_rec, x_rows, mask_x):
    """The synapses' source rows of step ``t`` into ``ym`` [N + C, B]: the previous step's outputs
    through the recurrent dropout mask, then the dense input rows through the input dropout mask
    (source ``N + c``; C = 0 without input rows)."""
    N, B = mask_rec.shape
    for j in range(N):
        for b in range(B):
            ym[j, b] = y_all[t, j, 0, b] * mask_rec[j, b]
    for c in range(mask_x.shape[0]):
        for b in range(B):
            ym[N + c, b] = x_rows[t, c, b] * mask_x[c, b]


def _fwd_impl(drive_in, events, ev_ptr, ev_b, ev_c, ev_v, syn_ptr, syn_flat, w_in, dr,
              ptr, branch, src, rec_w, mask_rec, W1, b1, W2, b2, wy, bias, kappa, gain,
              two, mlp_act, out_act, high_pass, y_all, m_all, inp_buf, a1_buf, act_buf, z_all, th_all, pre_all, h, zabs,
              x_rows, mask_x, ym, rc, zz, acc, cst):
    T = m_all.shape[0] - 1
    N, M, B = m_all.shape[1], m_all.shape[2], m_all.shape[3]
    O = wy.shape[1]
    H1 = W1.shape[1]
    K = W1.shape[2]
    D = K - M
    zero, one, tg, kr1 = cst[0], cst[1], cst[2], cst[3]  # constants in the arrays' dtype (float32 stays SIMD)
    for t in range(T):
        if events:  # the input synapses' drive of this step from its input events (CSR by channel)
            for f in range(N * D):
                for b in range(B):
                    dr[f, b] = zero
            for e in range(ev_ptr[t], ev_ptr[t + 1]):
                b = ev_b[e]
                v = ev_v[e]
                c = ev_c[e]
                for s in range(syn_ptr[c], syn_ptr[c + 1]):
                    dr[syn_flat[s], b] += w_in[s] * v
        if src.shape[0] > 0:
            _source_rows(ym, y_all, t, mask_rec, x_rows, mask_x)
        for n in prange(N):
            # synapses of neuron n from source rows (CSR), summed per branch over the batch
            for k in range(D):
                for b in range(B):
                    rc[n, k, b] = zero
            for s in range(ptr[n], ptr[n + 1]):
                k, j, w = branch[s], src[s], rec_w[s]
                axpy(w, ym, j, rc[n], k, B)
            # the MLP input [beta ; kappa m] of this step, [D+M, B] with the samples contiguous
            # (for the vector blocks), built in place in inp_buf [N, T, D+M, B]: every saved
            # array is a contiguous block per neuron and step (strided stores, one page per
            # feature row, cost more than the arithmetic); the weight-gradient Gram reads them
            # as [T, features, B] per neuron
            x = inp_buf[n, t]
            for k in range(D):
                if events:
                    for b in range(B):
                        x[k, b] = dr[n * D + k, b] + rc[n, k, b]
                else:
                    for b in range(B):
                        x[k, b] = drive_in[b, t, n, k] + rc[n, k, b]
            for d in range(M):
                kd = kappa[n, d]
                for b in range(B):
                    x[D + d, b] = kd * m_all[t, n, d, b]
            # the MLP: matrix times the step's samples, in vector blocks (simd.matvec)
            z = zz[n]
            if two:
                a1 = a1_buf[n, t]
                act = act_buf[n, t]
                matvec(W1[n], 0, K, x, a1, b1[n], B)
                for j in range(H1):
                    for b in range(B):
                        act[j, b] = _act(a1[j, b], mlp_act, zero, one)
                matvec(W2[n], 0, H1, act, z, b2[n], B)
            else:
                matvec(W1[n], 0, K, x, z, b1[n], B)
            # memory update and the |z| sum (per sample, summed over units first as the reference)
            for b in range(B):
                acc[n, b] = zero
            for d in range(M):
                gd = gain[n, d]
                for b in range(B):
                    zv = z[d, b]
                    z_all[t, n, d, b] = zv
                    acc[n, b] += abs(zv)
                    th = fast_tanh(tg * zv)
                    th_all[t, n, d, b] = th
                    m_all[t + 1, n, d, b] = x[D + d, b] + gd * th
            for b in range(B):
                zabs[n, b] += acc[n, b]
            # readout, high-pass, bias and output activation
            for o in range(O):
                for b in range(B):
                    acc[n, b] = zero
                for d in range(M):
                    w = wy[n, o, d]
                    for b in range(B):
                        acc[n, b] += w * m_all[t + 1, n, d, b]
                bo = bias[n, o]
                for b in range(B):
                    p = acc[n, b]
                    if high_pass:
                        hv = h[n, o, b] + kr1 * (p - h[n, o, b])
                        h[n, o, b] = hv
                        p = p - hv
                    p = p + bo
                    pre_all[t, n, o, b] = p
                    if out_act == 1:
                        p = p * _step(p, zero, one)
                    y_all[t + 1, n, o, b] = p


def _bwd_impl(y_all, m_all, a1_buf, z_all, th_all, pre_all, ptr, branch, src, rec_w, mask_rec, W1T, W2T, wy,
              kappa, gain, gy, g_zabs, two, mlp_act, out_act, high_pass,
              events, ev_ptr, ev_b, ev_c, ev_v, syn_ptr, syn_flat, g_w_in, want_g_beta,
              g_beta_all, ga_buf, gz_buf, acc_bias, acc_wy, acc_gain, acc_kappa, acc_rec, g_m, g_h, g_y,
              x_rows, mask_x, g_x_rows, ym, gyr, gbs, gm, gmd, grs, zvec, cst):
    T = z_all.shape[0]
    N, M, B = z_all.shape[1], z_all.shape[2], z_all.shape[3]
    O = wy.shape[1]
    H1 = W1T.shape[2]
    D = W1T.shape[1] - M
    S = src.shape[0]
    zero, one, tg, kr1, kr, two_c = cst[0], cst[1], cst[2], cst[3], cst[4], cst[5]
    for t in range(T - 1, -1, -1):
        for n in prange(N):
            # output activation, high-pass and readout
            for d in range(M):
                for b in range(B):
                    gm[n, d, b] = g_m[n, d, b]
            for o in range(O):
                for b in range(B):
                    gp = gy[t, n, o, b] + g_y[n, o, b]
                    if out_act == 1:
                        gp = gp * _step(pre_all[t, n, o, b], zero, one)
                    acc_bias[n, o, b] += gp
                    if high_pass:
                        ghh = g_h[n, o, b] - gp
                        gp = gp + kr1 * ghh
                        g_h[n, o, b] = kr * ghh
                    grs[n, b] = gp
                for d in range(M):
                    w = wy[n, o, d]
                    for b in range(B):
                        gm[n, d, b] += w * grs[n, b]
                        acc_wy[n, o, d, b] += grs[n, b] * m_all[t + 1, n, d, b]
            # memory update and the |z| regulariser: gradient of z (into gz_buf [N, T, M, B], or
            # straight into ga_buf when the MLP is one affine map)
            gz = gz_buf[n, t] if two else ga_buf[n, t]
            for d in range(M):
                gd = gain[n, d] * tg
                for b in range(B):
                    zv = z_all[t, n, d, b]
                    th = th_all[t, n, d, b]
                    g = gm[n, d, b]
                    acc_gain[n, d, b] += g * th
                    sz = _step(zv, zero, one) - _step(-zv, zero, one)  # sign(z)
                    gz[d, b] = g * gd * (one - th * th) + g_zabs[n, b] * sz
            # second MLP layer and the activation: gradient of the first layer's pre-activation
            ga = ga_buf[n, t]
            if two:
                matvec(W2T[n], 0, M, gz, ga, zvec, B)
                for j in range(H1):
                    for b in range(B):
                        ga[j, b] = ga[j, b] * _act_grad(a1_buf[n, t, j, b], mlp_act, zero, one, two_c)
            # first layer: gradient of its input [beta ; kappa m]
            matvec(W1T[n, :D], 0, H1, ga, gbs[n * D:(n + 1) * D], zvec, B)
            matvec(W1T[n, D:], 0, H1, ga, gmd[n], zvec, B)
            if want_g_beta:
                for i in range(D):
                    for b in range(B):
                        g_beta_all[b, t, n, i] = gbs[n * D + i, b]
            for d in range(M):
                kd = kappa[n, d]
                for b in range(B):
                    gv = gm[n, d, b] + gmd[n, d, b]
                    acc_kappa[n, d, b] += gv * m_all[t, n, d, b]
                    g_m[n, d, b] = kd * gv
        # synapses from source rows: their gradient into the previous step's outputs and the
        # dense input rows (scattered to the sources) and into their weights; the step's branch
        # gradients gbs are batch-innermost
        C = mask_x.shape[0]
        if S > 0:
            _source_rows(ym, y_all, t, mask_rec, x_rows, mask_x)
            for j in range(N + C):
                for b in range(B):
                    gyr[j, b] = zero
            # per-lane sums (no horizontal reduction per synapse); the masks applied once per source
            for n in range(N):
                for s in range(ptr[n], ptr[n + 1]):
                    f, j, w = n * D + branch[s], src[s], rec_w[s]
                    axpy(w, gbs, f, gyr, j, B)  # into its source row (the mask applied later)
                    mul_acc(gbs, f, ym, j, acc_rec, s, B)  # into its weight, per batch lane
            for j in range(N):
                for b in range(B):
                    g_y[j, 0, b] = gyr[j, b] * mask_rec[j, b]
            for c in range(C):
                for b in range(B):
                    g_x_rows[t, c, b] = gyr[N + c, b] * mask_x[c, b]
        else:
            for j in range(N):
                for o in range(O):
                    for b in range(B):
                        g_y[j, o, b] = zero
            for c in range(C):
                for b in range(B):
                    g_x_rows[t, c, b] = zero
        if events:  # the input synapses' weight gradient from this step's input events
            for e in range(ev_ptr[t], ev_ptr[t + 1]):
                b = ev_b[e]
                v = ev_v[e]
                c = ev_c[e]
                for s in range(syn_ptr[c], syn_ptr[c + 1]):
                    g_w_in[s] += gbs[syn_flat[s], b] * v


@njit(**_INLINE)
def _row_sums(A, out):
    """``out[r] = sum_{t, b} A[t, r, b]`` (a bias gradient), summed per sample lane first."""
    T, R, B = A.shape
    for r in range(R):
        out[r] = 0
    for t in range(T):
        for r in range(R):
            acc = out[r]
            for b in range(B):
                acc += A[t, r, b]
            out[r] = acc


def _weight_grads_impl(ga, inp, gz, act, g_W1, g_b1, g_W2, g_b2, two):
    """The MLP weight and bias gradients from the loop's [N, T, features, B] arrays, one neuron
    at a time: ``g_W1[n] = sum_{t,b} ga[n, t, :, b] inp[n, t, :, b]^T`` and ``g_b1[n] = sum_{t,b}
    ga[n, t, :, b]``, likewise ``g_W2``, ``g_b2`` from ``gz`` and ``act``
    (:func:`~elm_neuro.networks.engines.simd.gram`)."""
    for n in prange(ga.shape[0]):
        gram(ga[n], inp[n], g_W1[n])
        _row_sums(ga[n], g_b1[n])
        if two:
            gram(gz[n], act[n], g_W2[n])
            _row_sums(gz[n], g_b2[n])


_KERNELS: dict = {}

# The parallel build (the neuron loop of every step spread over the threads) only pays when a
# step has this many MLP multiply-adds (N * H1 * (D + M) * B): measured with
# benchmarks/bench_elm.py --clock wall on the 2-core CPU, two threads against one serial thread:
# the SHD-Adding preset (0.32 M per step) 2.1x slower, the demo's ELM 3x slower, the Enwik8
# preset (17 M per step) 1.3x faster. Below it the kernels run serially whatever the threads.
PARALLEL_MIN_STEP_WORK = 4_000_000


def _parallel(n: int, h1: int, k: int, bsz: int) -> bool:
    """Whether a call runs the parallel build: more than one thread and enough work per step."""
    return n * h1 * k * bsz >= PARALLEL_MIN_STEP_WORK and engine_threads() > 1


def _kernels(parallel: bool):
    """The compiled (forward, backward, weight gradients) kernels; the parallel build only when
    threads > 1."""
    if parallel not in _KERNELS:
        # reassociation and FMA contraction let the dot products vectorise; no 'nnan' / 'ninf':
        # a NaN or inf in the data must come out as NaN (divergence is detected downstream)
        opts = dict(nogil=True, fastmath={"reassoc", "contract", "nsz"},
                    error_model="numpy")  # numpy: a division has no zero check (which keeps loops from vectorising)
        _KERNELS[parallel] = tuple(build(f, parallel, **opts) for f in (_fwd_impl, _bwd_impl, _weight_grads_impl))
    return _KERNELS[parallel]


def _np(t):
    return None if t is None else t.detach().numpy()


def _dummy(ref: torch.Tensor):
    return np.zeros((1, 1, 1, 1), dtype=ref.detach().numpy().dtype)


def _constants(dtype, kr: float) -> np.ndarray:
    """0, 1, the tanh gain, 1 - kr, kr and 2 in the arrays' dtype (a Python float in a float32
    loop would turn its arithmetic into float64)."""
    return np.array([0.0, 1.0, TANH_GAIN, 1.0 - kr, kr, 2.0], dtype)


def _event_args(events: Optional[InputEvents], w_in, dt, no_drive_steps: int = 0):
    """The kernels' event arguments (empty arrays when the drive comes as a tensor; an empty event
    list of ``no_drive_steps`` steps when there is no input drive besides the synapses from input
    rows)."""
    if events is None:
        i0 = np.zeros(1, np.int64)
        return (no_drive_steps > 0, np.zeros(no_drive_steps + 1, np.int64), i0, i0, np.zeros(1, dt), i0, i0,
                np.zeros(1, dt))
    return (True, _np(events.ptr), _np(events.batch), _np(events.chan), _np(events.value), _np(events.syn_ptr),
            _np(events.syn_flat), _np(w_in))


def _rows_args(x_rows, mask_x, dt, bsz):
    """The kernels' dense-input-row arguments ([T, C, B] rows and their [C, B] mask; C = 0 without)."""
    if x_rows is None:
        return np.zeros((1, 0, bsz), dt), np.zeros((0, bsz), dt)
    return _np(x_rows.contiguous()), _np(mask_x.contiguous())


def forward(drive_in, rec: Recurrent, rec_w, mask_rec, W1, b1, W2, b2, wy, bias, kappa, gain, m0, h0, y0,
            spec: Spec, events: Optional[InputEvents] = None, w_in=None, x_rows=None, mask_x=None) -> Saved:
    """The contract's forward (:func:`elm_neuro.networks.engines.elm_sequence.forward_torch`);
    with ``events`` (and their synapse weights ``w_in``) the input drive is built in the loop from
    the input events and ``drive_in`` is not read. With ``x_rows`` [T, C, B] (a dense input, with
    its dropout mask ``mask_x`` [C, B]) the synapses with source ``N + c`` in ``rec`` read input
    row ``c`` (``accepts_rows``); there is then no other input drive."""
    n, m_dim, bsz = m0.shape
    d, o_dim, h1 = W1.shape[2] - m_dim, wy.shape[1], W1.shape[1]
    steps = events.steps if events is not None else (x_rows.shape[0] if x_rows is not None else drive_in.shape[0])
    def new(*shape):  # the large arrays come from the engines' workspace (pages already mapped)
        return WORKSPACE.empty(shape, m0.dtype)

    y_all, m_all = new(steps + 1, n, o_dim, bsz), new(steps + 1, n, m_dim, bsz)
    y_all[0], m_all[0] = y0, m0
    z_all, th_all, pre_all = new(steps, n, m_dim, bsz), new(steps, n, m_dim, bsz), new(steps, n, o_dim, bsz)
    # stored neuron-major ([N, T, features, B]): one block per neuron and step, the samples
    # contiguous for the vector blocks; handed over as views with the contract's shapes
    inp_buf = new(n, steps, d + m_dim, bsz)
    a1_buf = new(n, steps, h1, bsz) if spec.two_layers else None
    act_buf = new(n, steps, h1, bsz) if spec.two_layers else None
    h = h0.clone() if spec.high_pass else m0.new_zeros(n, o_dim, bsz)
    zabs = m0.new_zeros(n, bsz)
    fwd = _kernels(_parallel(n, h1, d + m_dim, bsz))[0]
    dt = _np(m0).dtype
    drive_bt = _np(drive_in.permute(3, 0, 1, 2).contiguous()) if events is None and x_rows is None \
        else np.zeros((1, 1, 1, 1), dt)
    xr, mx = _rows_args(x_rows, mask_x, dt, bsz)
    fwd(drive_bt, *_event_args(events, w_in, dt, steps if x_rows is not None else 0), np.empty((n * d, bsz), dt),
        _np(rec.ptr), _np(rec.branch), _np(rec.src), _np(rec_w), _np(mask_rec), _np(W1), _np(b1),
        _np(W2) if spec.two_layers else np.zeros((1, 1, 1), dt), _np(b2) if spec.two_layers else np.zeros((1, 1), dt),
        _np(wy), _np(bias), _np(kappa), _np(gain), spec.two_layers, spec.mlp_act, spec.out_act, spec.high_pass,
        _np(y_all), _np(m_all), _np(inp_buf), _np(a1_buf) if spec.two_layers else _dummy(m0),
        _np(act_buf) if spec.two_layers else _dummy(m0), _np(z_all), _np(th_all), _np(pre_all), _np(h), _np(zabs),
        xr, mx, np.empty((n + mx.shape[0], bsz), dt), np.empty((n, d, bsz), dt), np.empty((n, m_dim, bsz), dt),
        np.empty((n, bsz), dt), _constants(dt, float(spec.kr)))
    inp_all = inp_buf.permute(1, 0, 2, 3)  # [T, N, D+M, B]
    return Saved(y_all, m_all, inp_all[:, :, :d], a1_buf.permute(1, 0, 2, 3) if spec.two_layers else None, z_all,
                 pre_all, h if spec.high_pass else None, zabs, inp_all, th_all,
                 act_buf.permute(1, 0, 2, 3) if spec.two_layers else None)


def backward(saved: Saved, rec: Recurrent, rec_w, mask_rec, W1, W2, wy, kappa, gain, gy, g_mT, g_hT, g_zabs,
             spec: Spec, events: Optional[InputEvents] = None, w_in=None, g_beta_wanted: bool = False,
             x_rows=None, mask_x=None) -> Grads:
    """The contract's backward (:func:`elm_neuro.networks.engines.elm_sequence.backward_torch`).

    The gradients of the per-neuron parameters that sum over ``T * B`` terms (bias, readout
    weights, gain, kappa) are accumulated in the loop per batch lane in float64, then summed
    over the lanes. With ``events`` the loop gives the input synapses' weight gradient
    (``g_w_in``), and the input drive's (``g_beta_all``) only when ``g_beta_wanted`` (the input
    itself needs a gradient), else None. With ``x_rows`` (as in :func:`forward`) it gives the
    input rows' gradient ``g_x_rows`` [T, C, B] instead of ``g_beta_all``."""
    steps, n, d, bsz = saved.beta_all.shape
    m_dim, o_dim, h1 = kappa.shape[1], wy.shape[1], W1.shape[1]
    ref = saved.z_all
    dt = _np(ref).dtype
    # physical [B, T, N, D], the input projection's layout
    want_g_beta = (events is None and x_rows is None) or g_beta_wanted
    g_beta_bt = WORKSPACE.empty((bsz, steps, n, d), ref.dtype) if want_g_beta else None
    # [N, T, H1, B] and [N, T, M, B]: the forward's neuron-major layout
    ga_buf = WORKSPACE.empty((n, steps, h1, bsz), ref.dtype)
    gz_buf = WORKSPACE.empty((n, steps, m_dim, bsz), ref.dtype) if spec.two_layers else None
    f64 = dict(dtype=torch.float64)
    acc_bias, acc_wy = torch.zeros(n, o_dim, bsz, **f64), torch.zeros(n, o_dim, m_dim, bsz, **f64)
    acc_gain, acc_kappa = torch.zeros(n, m_dim, bsz, **f64), torch.zeros(n, m_dim, bsz, **f64)
    acc_rec = ref.new_zeros(rec_w.shape[0], bsz)  # per-lane sums over T of the recurrent weights' gradient
    g_w_in = torch.zeros(w_in.shape if events is not None else (1,), **f64)
    g_m = g_mT.clone()
    g_h = g_hT.clone() if spec.high_pass else ref.new_zeros(n, o_dim, bsz)
    g_y = ref.new_zeros(n, o_dim, bsz)
    a1 = saved.a1_all.permute(1, 0, 2, 3).contiguous() if spec.two_layers else None  # [N, T, H, B] (free)
    _, bwd, weight_grads = _kernels(_parallel(n, h1, d + m_dim, bsz))
    th = saved.th_all if saved.th_all is not None else torch.tanh(TANH_GAIN * saved.z_all)
    th = th.contiguous()
    ev = _event_args(events, w_in, dt, steps if x_rows is not None else 0)
    xr, mx = _rows_args(x_rows, mask_x, dt, bsz)
    g_rows = WORKSPACE.empty((steps, mx.shape[0], bsz), ref.dtype) if x_rows is not None else None
    bwd(_np(saved.y_all), _np(saved.m_all), _np(a1) if spec.two_layers else _dummy(ref), _np(saved.z_all),
        _np(th), _np(saved.pre_all), _np(rec.ptr), _np(rec.branch), _np(rec.src), _np(rec_w), _np(mask_rec),
        _np(W1.transpose(1, 2).contiguous()),
        _np(W2.transpose(1, 2).contiguous()) if spec.two_layers else np.zeros((1, 1, 1), dt), _np(wy), _np(kappa),
        _np(gain), _np(gy), _np(g_zabs), spec.two_layers, spec.mlp_act, spec.out_act, spec.high_pass,
        *ev[:-1], _np(g_w_in), want_g_beta,
        _np(g_beta_bt) if want_g_beta else _dummy(ref), _np(ga_buf), _np(gz_buf) if spec.two_layers else _dummy(ref),
        _np(acc_bias), _np(acc_wy), _np(acc_gain), _np(acc_kappa), _np(acc_rec), _np(g_m), _np(g_h), _np(g_y),
        xr, mx, _np(g_rows) if x_rows is not None else np.zeros((1, 1, 1), dt),
        np.empty((n + mx.shape[0], bsz), dt), np.empty((n + mx.shape[0], bsz), dt), np.empty((n * d, bsz), dt),
        np.empty((n, m_dim, bsz), dt), np.empty((n, m_dim, bsz), dt), np.empty((n, bsz), dt),
        np.zeros(max(d, h1, m_dim), dt), _constants(dt, float(spec.kr)))
    dtype = ref.dtype
    g_W1 = g_b1 = g_W2 = g_b2 = None
    if saved.inp_all is not None:  # saved by this backend's forward ([N, T, features, B] underneath)
        g_W1, g_b1 = ref.new_empty(n, h1, d + m_dim), ref.new_empty(n, h1)
        g_W2 = ref.new_empty(n, m_dim, h1) if spec.two_layers else None
        g_b2 = ref.new_empty(n, m_dim) if spec.two_layers else None
        blocks = lambda a: _np(a.permute(1, 0, 2, 3).contiguous())  # noqa: E731  (free for this backend's views)
        weight_grads(_np(ga_buf), blocks(saved.inp_all), _np(gz_buf) if spec.two_layers else _dummy(ref),
                     blocks(saved.act_all) if spec.two_layers else _dummy(ref), _np(g_W1), _np(g_b1),
                     _np(g_W2) if spec.two_layers else _dummy(ref)[0],
                     _np(g_b2) if spec.two_layers else _dummy(ref)[0, 0], spec.two_layers)
    g_wy, g_bias, g_gain, g_kappa = (a.sum(-1).to(dtype) for a in (acc_wy, acc_bias, acc_gain, acc_kappa))
    return Grads(g_beta_bt.permute(1, 2, 3, 0) if want_g_beta else None, ga_buf.permute(1, 0, 2, 3),
                 gz_buf.permute(1, 0, 2, 3) if spec.two_layers else None, g_wy, g_bias, g_gain, g_kappa, g_m,
                 g_h if spec.high_pass else None, g_y, acc_rec.sum(-1, dtype=torch.float64).to(dtype),
                 g_w_in.to(dtype) if events is not None else None, g_W1, g_W2, g_b1, g_b2, g_rows)


@njit(cache=True, nogil=True)
def _count_events(x, mask, steps_counts, max_count):
    """Non-zero entries of ``x * mask`` ([B, T, C] times [B, C]) per step into
    ``steps_counts[1:]``; stops early (returning the count so far) once there are more than
    ``max_count``."""
    total = 0
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            k = 0
            for c in range(x.shape[2]):
                k += x[b, t, c] * mask[b, c] != 0  # a NaN counts, as in torch.nonzero
            steps_counts[t + 1] += k
            total += k
        if total > max_count:
            break
    return total


@njit(cache=True, nogil=True)
def _fill_events(x, mask, ptr, batch, chan, value):
    """The events of ``x * mask`` at their places: step by step, then sample, then channel."""
    pos = ptr[:-1].copy()
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            for c in range(x.shape[2]):
                v = x[b, t, c] * mask[b, c]
                if v != 0:
                    e = pos[t]
                    batch[e], chan[e], value[e] = b, c, v
                    pos[t] = e + 1


def list_events(x: torch.Tensor, max_density: float, mask: Optional[torch.Tensor] = None):
    """:func:`~elm_neuro.networks.engines.elm_sequence.list_events_torch` in two compiled passes
    over ``x`` (count per step, then place; the mask applied on the way), without sorting."""
    bsz, steps, chans = x.shape
    if x.numel() == 0:
        return None
    xn = _np(x.contiguous())
    mn = np.ones((bsz, chans), xn.dtype) if mask is None else _np(mask.to(x.dtype).contiguous())
    ptr = np.zeros(steps + 1, np.int64)
    total = _count_events(xn, mn, ptr, int(math.floor(max_density * x.numel())))
    if total > max_density * x.numel():
        return None
    np.cumsum(ptr, out=ptr)
    batch, chan, value = np.empty(total, np.int64), np.empty(total, np.int64), np.empty(total, xn.dtype)
    _fill_events(xn, mn, ptr, batch, chan, value)
    return tuple(torch.from_numpy(a) for a in (ptr, batch, chan, value))


forward.list_events = list_events  # the event lister the layer hands to make_events
forward.accepts_strided = True  # reads drive_in through .permute(3, 0, 1, 2), a no-op for the layer's view
forward.accepts_events = True  # builds the input drive from input events (see the contract)
forward.accepts_rows = True  # reads a dense input's rows through its synapses (x_rows, see forward)
