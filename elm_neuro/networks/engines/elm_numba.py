"""CPU backend of the fused ELM sequence engine: the forward and reverse-time backward loops
compiled with Numba (contract and reference: :mod:`elm_neuro.networks.engines.elm_contract`).

Loops: per time step the neurons are independent once the previous step's outputs are known, so
the neuron loop is a ``prange`` (parallel over the threads torch is given; one thread runs the
serial build, without threading overhead). Inside it the MLP's matrix products (forward, and
their transposes in backward) run over all samples of the step at once as explicit vector blocks
(:func:`elm_neuro.networks.engines.simd.matvec`: 8 samples per vector, rows held in registers;
3-4x the scalar dot products' rate); every per-step array is laid out with the samples innermost,
and the arrays saved for backward are one contiguous block per neuron and step ([N, T, features,
B]), from which the MLP weight gradients come as vector Gram blocks after the loop
(:func:`elm_neuro.networks.engines.simd.gram`). The synapses from source rows (the recurrent ones,
and those of a dense input read as rows, sources ``N + c``) are read per target neuron (CSR) in
forward; in backward their gradient is scattered to the sources after the neuron loop of each
step, with per-lane sums for their weights; each synapse is one vector multiply-add over the
samples (:func:`~elm_neuro.networks.engines.simd.axpy`, :func:`~elm_neuro.networks.engines.simd.mul_acc`).
The large per-sequence arrays come from :mod:`elm_neuro.networks.engines.workspace` (reused, so
their pages are not faulted in again every batch).

Inputs (``TAKES``, :mod:`elm_neuro.networks.engines.inputs`): a Drive; Events, whose input drive
is scattered from each step's events in the loop and whose input weights' gradient is gathered
from them, so neither the ``[T, N, D, B]`` drive nor its gradient exists; Rows.

What the loop does not do: the MLP weight gradients (Gram blocks per neuron after the loop,
:func:`_weight_grads_impl`); what it does instead of tensor code: the gradients of the small
per-neuron parameters (bias, readout, gain, kappa) are summed in the loop per batch lane in
float64.

Kernel arguments are named tuples of arrays (:class:`KInput`, :class:`KSynapses`,
:class:`KWeights`, :class:`KForward`, :class:`KSaved`, :class:`KBackward`, scratch and
:class:`KOptions`), filled by :func:`forward` / :func:`backward` field by field; absent arrays
(no second MLP layer, no events...) are small empty stand-ins of the right dimension.

Arithmetic stays in the arrays' dtype: constants come in as an array of that dtype, tanh of
float32 is a rational function evaluated in float64 (:func:`fast_tanh`, vectorised), and the
activations' derivatives are selects, not branches (the signs are data: a mispredicted branch per
unit costs more than the unit). No array is allocated inside the time loop.

Threading: :mod:`elm_neuro.networks.engines.numba_threads` (Numba's ``workqueue`` layer unless
``NUMBA_THREADING_LAYER`` is set; as many threads as torch is given).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload

from elm_neuro.networks.engines.elm_contract import TANH_GAIN, Grads, Recurrent, Saved, Spec, State, Weights, OutGrads
from elm_neuro.networks.engines.inputs import Drive, Events, Rows
from elm_neuro.networks.engines.numba_threads import build, engine_threads
from elm_neuro.networks.engines.simd import axpy, gram, matvec, mul_acc
from elm_neuro.networks.engines.workspace import WORKSPACE

TAKES = (Drive, Events, Rows)


# --------------------------------------------------------------------------- kernel arguments
class KInput(NamedTuple):
    """The layer's input in the kernels' form; the parts of the other forms are empty stand-ins."""

    drive: np.ndarray  # [B, T, N, D] (Drive)
    events: bool  # the drive is scattered from events (Events; Rows: an empty event list)
    ev_ptr: np.ndarray  # [T + 1]
    ev_b: np.ndarray  # [E]
    ev_c: np.ndarray  # [E]
    ev_v: np.ndarray  # [E]
    syn_ptr: np.ndarray  # [C + 1] input synapses by channel
    syn_flat: np.ndarray  # [S_in] their target columns
    w_in: np.ndarray  # [S_in] their weights
    x_rows: np.ndarray  # [T, C, B] (Rows; C = 0 otherwise)
    mask_x: np.ndarray  # [C, B]


class KSynapses(NamedTuple):
    """The synapses from source rows (CSR by target neuron) and the recurrent dropout mask."""

    ptr: np.ndarray  # [N + 1]
    branch: np.ndarray  # [S]
    src: np.ndarray  # [S]
    rec_w: np.ndarray  # [S]
    mask_rec: np.ndarray  # [N, B]


class KWeights(NamedTuple):
    """The forward's parameters (W2, b2: stand-ins when the MLP is one affine map)."""

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    wy: np.ndarray
    bias: np.ndarray
    kappa: np.ndarray
    gain: np.ndarray


class KBackwardWeights(NamedTuple):
    """The backward's parameters: the MLP matrices transposed ([N, D+M, H1], [N, H, M])."""

    W1T: np.ndarray
    W2T: np.ndarray
    wy: np.ndarray
    kappa: np.ndarray
    gain: np.ndarray


class KOptions(NamedTuple):
    two: bool  # L = 1
    mlp_act: int
    out_act: int
    high_pass: bool
    want_g_beta: bool  # backward: write the drive's gradient
    cst: np.ndarray  # 0, 1, 2/3, 1 - kr, kr, 2 in the arrays' dtype


class KForward(NamedTuple):
    """What the forward writes (the saved arrays, in the backend's layouts)."""

    y_all: np.ndarray  # [T+1, N, O, B]
    m_all: np.ndarray  # [T+1, N, M, B]
    inp_buf: np.ndarray  # [N, T, D+M, B]
    a1_buf: np.ndarray  # [N, T, H1, B]
    act_buf: np.ndarray  # [N, T, H1, B]
    z_all: np.ndarray  # [T, N, M, B]
    th_all: np.ndarray  # [T, N, M, B]
    pre_all: np.ndarray  # [T, N, O, B]
    h: np.ndarray  # [N, O, B] (in: h0, out: h_T)
    zabs: np.ndarray  # [N, B]


class KForwardScratch(NamedTuple):
    dr: np.ndarray  # [N * D, B] the step's input drive from events
    ym: np.ndarray  # [N + C, B] the step's source rows
    rc: np.ndarray  # [N, D, B] the step's synapse sums
    zz: np.ndarray  # [N, M, B]
    acc: np.ndarray  # [N, B]


class KSaved(NamedTuple):
    """The forward's arrays the backward reads."""

    y_all: np.ndarray
    m_all: np.ndarray
    a1_buf: np.ndarray  # [N, T, H1, B]
    z_all: np.ndarray
    th_all: np.ndarray
    pre_all: np.ndarray


class KOutGrads(NamedTuple):
    gy: np.ndarray  # [T, N, O, B]
    g_zabs: np.ndarray  # [N, B]


class KBackward(NamedTuple):
    """What the backward writes (accumulators come in as zeros, g_m / g_h as g_mT / g_hT)."""

    g_beta_all: np.ndarray  # [B, T, N, D]
    ga_buf: np.ndarray  # [N, T, H1, B]
    gz_buf: np.ndarray  # [N, T, M, B]
    g_w_in: np.ndarray  # [S_in] float64
    g_x_rows: np.ndarray  # [T, C, B]
    acc_bias: np.ndarray  # [N, O, B] float64
    acc_wy: np.ndarray  # [N, O, M, B] float64
    acc_gain: np.ndarray  # [N, M, B] float64
    acc_kappa: np.ndarray  # [N, M, B] float64
    acc_rec: np.ndarray  # [S, B]
    g_m: np.ndarray  # [N, M, B]
    g_h: np.ndarray  # [N, O, B]
    g_y: np.ndarray  # [N, O, B]


class KBackwardScratch(NamedTuple):
    ym: np.ndarray  # [N + C, B]
    gyr: np.ndarray  # [N + C, B]
    gbs: np.ndarray  # [N * D, B] the step's branch gradients
    gm: np.ndarray  # [N, M, B]
    gmd: np.ndarray  # [N, M, B]
    grs: np.ndarray  # [N, B]
    zvec: np.ndarray  # zeros (the bias of the transposed products)


class KGramInput(NamedTuple):
    ga: np.ndarray  # [N, T, H1, B]
    inp: np.ndarray  # [N, T, D+M, B]
    gz: np.ndarray  # [N, T, M, B]
    act: np.ndarray  # [N, T, H, B]


class KGramOutput(NamedTuple):
    g_W1: np.ndarray
    g_b1: np.ndarray
    g_W2: np.ndarray
    g_b2: np.ndarray


# --------------------------------------------------------------------------- compiled parts
_INLINE = dict(inline="always", fastmath={"reassoc", "contract", "nsz"})


# tanh(x) = x P(x^2) / Q(x^2) on |x| <= 9 (beyond, float32 tanh is within an ulp of +-1): our fit
# (iterated weighted least squares on the relative error, float64). Evaluated in float64 and
# rounded to float32 it is within 1 ulp of the correctly rounded tanh everywhere and equal to it
# for 91 % of float32 inputs (checked on 4.4 million points in [-12, 12] and down to 1e-38;
# tests/test_engine_elm.py checks it against torch.tanh).
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



def _fwd_impl(inp, syn, w, out, tmp, opt):
    """The forward loop (contract: :func:`~elm_neuro.networks.engines.elm_contract.forward_torch`)."""
    drive_in, events, ev_ptr, ev_b, ev_c, ev_v = inp.drive, inp.events, inp.ev_ptr, inp.ev_b, inp.ev_c, inp.ev_v
    syn_ptr, syn_flat, w_in, x_rows, mask_x = inp.syn_ptr, inp.syn_flat, inp.w_in, inp.x_rows, inp.mask_x
    ptr, branch, src, rec_w, mask_rec = syn.ptr, syn.branch, syn.src, syn.rec_w, syn.mask_rec
    W1, b1, W2, b2, wy, bias, kappa, gain = w.W1, w.b1, w.W2, w.b2, w.wy, w.bias, w.kappa, w.gain
    y_all, m_all, inp_buf, a1_buf, act_buf = out.y_all, out.m_all, out.inp_buf, out.a1_buf, out.act_buf
    z_all, th_all, pre_all, h, zabs = out.z_all, out.th_all, out.pre_all, out.h, out.zabs
    dr, ym, rc, zz, acc = tmp.dr, tmp.ym, tmp.rc, tmp.zz, tmp.acc
    two, mlp_act, out_act, high_pass, cst = opt.two, opt.mlp_act, opt.out_act, opt.high_pass, opt.cst
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



def _bwd_impl(sv, syn, w, gin, inp, out, tmp, opt):
    """The reverse-time loop (contract: :func:`~elm_neuro.networks.engines.elm_contract.backward_torch`)."""
    y_all, m_all, a1_buf, z_all, th_all, pre_all = sv.y_all, sv.m_all, sv.a1_buf, sv.z_all, sv.th_all, sv.pre_all
    ptr, branch, src, rec_w, mask_rec = syn.ptr, syn.branch, syn.src, syn.rec_w, syn.mask_rec
    W1T, W2T, wy, kappa, gain = w.W1T, w.W2T, w.wy, w.kappa, w.gain
    gy, g_zabs = gin.gy, gin.g_zabs
    events, ev_ptr, ev_b, ev_c, ev_v = inp.events, inp.ev_ptr, inp.ev_b, inp.ev_c, inp.ev_v
    syn_ptr, syn_flat, x_rows, mask_x = inp.syn_ptr, inp.syn_flat, inp.x_rows, inp.mask_x
    g_beta_all, ga_buf, gz_buf, g_w_in, g_x_rows = out.g_beta_all, out.ga_buf, out.gz_buf, out.g_w_in, out.g_x_rows
    acc_bias, acc_wy, acc_gain, acc_kappa, acc_rec = out.acc_bias, out.acc_wy, out.acc_gain, out.acc_kappa, out.acc_rec
    g_m, g_h, g_y = out.g_m, out.g_h, out.g_y
    ym, gyr, gbs, gm, gmd, grs, zvec = tmp.ym, tmp.gyr, tmp.gbs, tmp.gm, tmp.gmd, tmp.grs, tmp.zvec
    two, mlp_act, out_act, high_pass, want_g_beta, cst = (opt.two, opt.mlp_act, opt.out_act, opt.high_pass,
                                                          opt.want_g_beta, opt.cst)
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



def _weight_grads_impl(src, dst, two):
    """The MLP weight and bias gradients from the loop's [N, T, features, B] arrays, one neuron
    at a time: ``g_W1[n] = sum_{t,b} ga[n, t, :, b] inp[n, t, :, b]^T`` and ``g_b1[n] = sum_{t,b}
    ga[n, t, :, b]``, likewise ``g_W2``, ``g_b2`` from ``gz`` and ``act``
    (:func:`~elm_neuro.networks.engines.simd.gram`)."""
    ga, inp, gz, act = src.ga, src.inp, src.gz, src.act
    g_W1, g_b1, g_W2, g_b2 = dst.g_W1, dst.g_b1, dst.g_W2, dst.g_b2
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


# --------------------------------------------------------------------------- host side
def _np(t):
    return t.detach().numpy()


def _absent(ndim: int, dt) -> np.ndarray:
    """A stand-in for an absent array of ``ndim`` dimensions (never read)."""
    return np.zeros((1,) * ndim, dt)


def _constants(dtype, kr: float) -> np.ndarray:
    """0, 1, the tanh gain, 1 - kr, kr and 2 in the arrays' dtype (a Python float in a float32
    loop would turn its arithmetic into float64)."""
    return np.array([0.0, 1.0, TANH_GAIN, 1.0 - kr, kr, 2.0], dtype)


def _options(spec: Spec, dt, want_g_beta: bool = False) -> KOptions:
    return KOptions(bool(spec.two_layers), int(spec.mlp_act), int(spec.out_act), bool(spec.high_pass),
                    bool(want_g_beta), _constants(dt, float(spec.kr)))


def _kinput(inp, steps: int, bsz: int, dt) -> KInput:
    """The kernels' form of a Drive, Events or Rows input."""
    i0 = np.zeros(1, np.int64)
    drive = _absent(4, dt)
    events, ev = False, (i0, i0, i0, np.zeros(1, dt), i0, i0, np.zeros(1, dt))
    x_rows, mask_x = np.zeros((1, 0, bsz), dt), np.zeros((0, bsz), dt)
    if isinstance(inp, Drive):
        if inp.drive is not None:  # (backward does not read it)
            drive = _np(inp.drive.permute(3, 0, 1, 2).contiguous())  # [B, T, N, D]: free for the layer's view
    elif isinstance(inp, Events):
        events = True
        ev = tuple(_np(a) for a in (inp.ptr, inp.batch, inp.chan, inp.value, inp.syn_ptr, inp.syn_flat,
                                    inp.w_in.contiguous()))
    else:  # Rows: no input drive besides the synapses from the rows (an empty event list)
        events, ev = True, (np.zeros(steps + 1, np.int64),) + ev[1:]
        x_rows, mask_x = _np(inp.x.contiguous()), _np(inp.mask.contiguous())
    return KInput(drive, events, *ev, x_rows, mask_x)


def _ksynapses(rec: Recurrent, rec_w, mask_rec) -> KSynapses:
    return KSynapses(_np(rec.ptr), _np(rec.branch), _np(rec.src), _np(rec_w.contiguous()),
                     _np(mask_rec.contiguous()))


def _steps(inp) -> int:
    if isinstance(inp, Drive):
        return inp.drive.shape[0]
    return inp.steps if isinstance(inp, Events) else inp.x.shape[0]


def forward(inp, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> Saved:
    """The contract's forward (:func:`elm_neuro.networks.engines.elm_contract.forward_torch`) for a
    Drive, Events or Rows input."""
    n, m_dim, bsz = s.m.shape
    d, o_dim, h1 = w.W1.shape[2] - m_dim, w.wy.shape[1], w.W1.shape[1]
    steps = _steps(inp)
    dtype = s.m.dtype
    dt = _np(s.m).dtype

    def new(*shape):  # the large arrays come from the engines' workspace (pages already mapped)
        return WORKSPACE.empty(shape, dtype)

    y_all, m_all = new(steps + 1, n, o_dim, bsz), new(steps + 1, n, m_dim, bsz)
    y_all[0], m_all[0] = s.y, s.m
    z_all, th_all, pre_all = new(steps, n, m_dim, bsz), new(steps, n, m_dim, bsz), new(steps, n, o_dim, bsz)
    # stored neuron-major ([N, T, features, B]): one block per neuron and step, the samples
    # contiguous for the vector blocks; handed over as views with the contract's shapes
    inp_buf = new(n, steps, d + m_dim, bsz)
    two = spec.two_layers
    a1_buf = new(n, steps, h1, bsz) if two else None
    act_buf = new(n, steps, h1, bsz) if two else None
    h = s.h.clone().contiguous() if spec.high_pass else s.m.new_zeros(n, o_dim, bsz)
    zabs = s.m.new_zeros(n, bsz)
    kin = _kinput(inp, steps, bsz, dt)
    kw = KWeights(_np(w.W1.contiguous()), _np(w.b1.contiguous()),
                  _np(w.W2.contiguous()) if two else _absent(3, dt), _np(w.b2.contiguous()) if two else _absent(2, dt),
                  _np(w.wy.contiguous()), _np(w.bias.contiguous()), _np(w.kappa.contiguous()), _np(w.gain.contiguous()))
    out = KForward(_np(y_all), _np(m_all), _np(inp_buf), _np(a1_buf) if two else _absent(4, dt),
                   _np(act_buf) if two else _absent(4, dt), _np(z_all), _np(th_all), _np(pre_all), _np(h), _np(zabs))
    n_src = n + kin.mask_x.shape[0]
    tmp = KForwardScratch(np.empty((n * d, bsz), dt), np.empty((n_src, bsz), dt), np.empty((n, d, bsz), dt),
                          np.empty((n, m_dim, bsz), dt), np.empty((n, bsz), dt))
    fwd = _kernels(_parallel(n, h1, d + m_dim, bsz))[0]
    fwd(kin, _ksynapses(rec, w.rec_w, mask_rec), kw, out, tmp, _options(spec, dt))
    inp_all = inp_buf.permute(1, 0, 2, 3)  # [T, N, D+M, B]
    return Saved(y_all, m_all, inp_all[:, :, :d], a1_buf.permute(1, 0, 2, 3) if two else None, z_all,
                 pre_all, h if spec.high_pass else None, zabs, inp_all, th_all,
                 act_buf.permute(1, 0, 2, 3) if two else None)


def backward(saved: Saved, inp, rec: Recurrent, mask_rec, w: Weights, g: OutGrads, spec: Spec,
             want_input_grad: bool = True) -> Grads:
    """The contract's backward (:func:`elm_neuro.networks.engines.elm_contract.backward_torch`).

    The gradients of the per-neuron parameters that sum over ``T * B`` terms (bias, readout
    weights, gain, kappa) are accumulated in the loop per batch lane in float64, then summed
    over the lanes. With Events the loop gives the input synapses' weight gradient (``g_w_in``),
    and the input drive's (``g_beta_all``) only when ``want_input_grad`` (the input itself needs a
    gradient), else None. With Rows it gives the input rows' gradient ``g_x_rows`` [T, C, B]
    instead of ``g_beta_all``."""
    steps, n, d, bsz = saved.beta_all.shape
    m_dim, o_dim, h1 = w.kappa.shape[1], w.wy.shape[1], w.W1.shape[1]
    ref = saved.z_all
    dtype, dt = ref.dtype, _np(ref).dtype
    two = spec.two_layers
    is_events, is_rows = isinstance(inp, Events), isinstance(inp, Rows)
    want_g_beta = isinstance(inp, Drive) or (is_events and want_input_grad)
    # physical [B, T, N, D], the input projection's layout
    g_beta_bt = WORKSPACE.empty((bsz, steps, n, d), dtype) if want_g_beta else None
    # [N, T, H1, B] and [N, T, M, B]: the forward's neuron-major layout
    ga_buf = WORKSPACE.empty((n, steps, h1, bsz), dtype)
    gz_buf = WORKSPACE.empty((n, steps, m_dim, bsz), dtype) if two else None
    f64 = dict(dtype=torch.float64)
    acc_bias, acc_wy = torch.zeros(n, o_dim, bsz, **f64), torch.zeros(n, o_dim, m_dim, bsz, **f64)
    acc_gain, acc_kappa = torch.zeros(n, m_dim, bsz, **f64), torch.zeros(n, m_dim, bsz, **f64)
    acc_rec = ref.new_zeros(w.rec_w.shape[0], bsz)  # per-lane sums over T of the synapse weights' gradient
    g_w_in = torch.zeros(inp.w_in.shape if is_events else (1,), **f64)
    g_m = g.g_mT.clone()
    g_h = g.g_hT.clone() if spec.high_pass else ref.new_zeros(n, o_dim, bsz)
    g_y = ref.new_zeros(n, o_dim, bsz)
    kin = _kinput(inp, steps, bsz, dt)
    n_rows = kin.mask_x.shape[0]
    g_rows = WORKSPACE.empty((steps, n_rows, bsz), dtype) if is_rows else None
    a1 = saved.a1_all.permute(1, 0, 2, 3).contiguous() if two else None  # [N, T, H, B] (free)
    th = saved.th_all if saved.th_all is not None else torch.tanh(TANH_GAIN * saved.z_all)
    ksaved = KSaved(_np(saved.y_all), _np(saved.m_all), _np(a1) if two else _absent(4, dt), _np(saved.z_all),
                    _np(th.contiguous()), _np(saved.pre_all))
    kw = KBackwardWeights(_np(w.W1.transpose(1, 2).contiguous()),
                          _np(w.W2.transpose(1, 2).contiguous()) if two else _absent(3, dt), _np(w.wy.contiguous()),
                          _np(w.kappa.contiguous()), _np(w.gain.contiguous()))
    out = KBackward(_np(g_beta_bt) if want_g_beta else _absent(4, dt), _np(ga_buf), _np(gz_buf) if two else _absent(4, dt),
                    _np(g_w_in), _np(g_rows) if is_rows else _absent(3, dt), _np(acc_bias), _np(acc_wy),
                    _np(acc_gain), _np(acc_kappa), _np(acc_rec), _np(g_m), _np(g_h), _np(g_y))
    tmp = KBackwardScratch(np.empty((n + n_rows, bsz), dt), np.empty((n + n_rows, bsz), dt),
                           np.empty((n * d, bsz), dt), np.empty((n, m_dim, bsz), dt), np.empty((n, m_dim, bsz), dt),
                           np.empty((n, bsz), dt), np.zeros(max(d, h1, m_dim), dt))
    _, bwd, weight_grads = _kernels(_parallel(n, h1, d + m_dim, bsz))
    bwd(ksaved, _ksynapses(rec, w.rec_w, mask_rec), kw, KOutGrads(_np(g.gy.contiguous()), _np(g.g_zabs.contiguous())),
        kin, out, tmp, _options(spec, dt, want_g_beta))
    g_W1 = g_b1 = g_W2 = g_b2 = None
    if saved.inp_all is not None:  # saved by this backend's forward ([N, T, features, B] underneath)
        g_W1, g_b1 = ref.new_empty(n, h1, d + m_dim), ref.new_empty(n, h1)
        g_W2 = ref.new_empty(n, m_dim, h1) if two else None
        g_b2 = ref.new_empty(n, m_dim) if two else None
        blocks = lambda a: _np(a.permute(1, 0, 2, 3).contiguous())  # noqa: E731  (free for this backend's views)
        weight_grads(KGramInput(_np(ga_buf), blocks(saved.inp_all), _np(gz_buf) if two else _absent(4, dt),
                                blocks(saved.act_all) if two else _absent(4, dt)),
                     KGramOutput(_np(g_W1), _np(g_b1), _np(g_W2) if two else _absent(3, dt),
                                 _np(g_b2) if two else _absent(2, dt)), two)
    g_wy, g_bias, g_gain, g_kappa = (a.sum(-1).to(dtype) for a in (acc_wy, acc_bias, acc_gain, acc_kappa))
    return Grads(g_beta_bt.permute(1, 2, 3, 0) if want_g_beta else None, ga_buf.permute(1, 0, 2, 3),
                 gz_buf.permute(1, 0, 2, 3) if two else None, g_wy, g_bias, g_gain, g_kappa, g_m,
                 g_h if spec.high_pass else None, g_y, acc_rec.sum(-1, dtype=torch.float64).to(dtype),
                 g_w_in.to(dtype) if is_events else None, g_W1, g_W2, g_b1, g_b2, g_rows)
