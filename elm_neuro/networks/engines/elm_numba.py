"""CPU backend of the fused ELM sequence engine: the forward and reverse-time backward loops
compiled with Numba (contract and reference: :mod:`elm_neuro.networks.engines.elm_sequence`).

Loops: per time step the neurons are independent once the previous step's outputs are known, so
the neuron loop is a ``prange`` (parallel over the threads torch is given; one thread runs the
serial build, without threading overhead). Inside it, per sample, the MLP's products are dot
products over contiguous rows (the measured fastest form for rows of 9-40 numbers; see
``benchmarks/bench_elm.py``). The recurrent synapses are read per target neuron (CSR) in
forward; in backward their gradient is scattered to the sources after the neuron loop of each
step, with per-lane sums for their weights. The synapse loops run over the batch in blocks of
``LANES`` samples, a constant trip count that compiles to vector code (and the rest after).

What the loop does not do: the MLP weight gradients (one GEMM each after the loop, in the
Function); what it does instead of tensor code: the gradients of the small per-neuron
parameters (bias, readout, gain, kappa) are summed in the loop per batch lane in float64. With
input events (:class:`~elm_neuro.networks.engines.elm_sequence.InputEvents`, spiking inputs) the
input drive of each step is scattered from that step's events, and the input synapses' weight
gradient gathered from them, so neither the ``[T, N, D, B]`` drive nor its gradient exists.

Arithmetic stays in the arrays' dtype: constants come in as an array of that dtype, tanh of
float32 goes through a float64 exp (:func:`fast_tanh`), and the activations' derivatives are
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

from elm_neuro.networks.engines.numba_threads import engine_threads
from elm_neuro.networks.engines.elm_sequence import TANH_GAIN, Grads, InputEvents, Recurrent, Saved, Spec



_INLINE = dict(inline="always", fastmath={"reassoc", "contract", "nsz"})


def fast_tanh(x):
    """tanh; compiled: float32 through float64 exp (correctly rounded to float32 in practice, and
    about 3x faster than the libm tanhf call, which does not vectorise), float64 as libm tanh."""
    return math.tanh(x)


@overload(fast_tanh, **_INLINE)
def _fast_tanh_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            v = np.float64(x)
            e = math.exp(-2.0 * abs(v))
            r = (1.0 - e) / (1.0 + e)  # abs error ~1e-16, far below float32 resolution
            return np.float32(r if v >= 0 else -r)
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


LANES = 8  # the synapse loops run over the batch in blocks of this many samples (one AVX register of float32)


@njit(**_INLINE)
def _rec_synapse_drive(rc, ym, n, k, j, w, b0, lanes):
    """One recurrent synapse's drive for samples ``b0 .. b0 + lanes - 1``:
    ``rc[n, k, b] += w * ym[j, b]``."""
    for b in range(b0, b0 + lanes):
        rc[n, k, b] += w * ym[j, b]


@njit(**_INLINE)
def _rec_synapse_grad(gyr, acc_rec, gbs, ym, f, j, s, w, b0, lanes):
    """One recurrent synapse's gradients for samples ``b0 .. b0 + lanes - 1``: into its source's
    output (``gyr``, the mask applied later) and, per batch lane, into its weight (``acc_rec``)."""
    for b in range(b0, b0 + lanes):
        gb = gbs[f, b]
        gyr[j, b] += w * gb
        acc_rec[s, b] += gb * ym[j, b]


def _fwd_impl(drive_in, events, ev_ptr, ev_b, ev_c, ev_v, syn_ptr, syn_flat, w_in, dr,
              ptr, branch, src, rec_w, mask_rec, W1, b1, W2, b2, wy, bias, kappa, gain,
              two, mlp_act, out_act, high_pass, y_all, m_all, inp_buf, a1_buf, act_buf, z_all, th_all, pre_all, h, zabs,
              ym, rc, hid, zz, cst):
    T = m_all.shape[0] - 1
    N, M, B = m_all.shape[1], m_all.shape[2], m_all.shape[3]
    O = wy.shape[1]
    H1 = W1.shape[1]
    K = W1.shape[2]
    D = K - M
    zero, one, tg, kr1 = cst[0], cst[1], cst[2], cst[3]  # constants in the arrays' dtype (float32 stays SIMD)
    full = B - B % LANES  # samples in whole LANES blocks
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
        for j in range(ym.shape[0]):  # the previous step's outputs through the recurrent dropout mask
            for b in range(B):
                ym[j, b] = y_all[t, j, 0, b] * mask_rec[j, b]
        for n in prange(N):
            # recurrent synapses of neuron n (CSR), summed per branch over the batch (contiguous)
            for k in range(D):
                for b in range(B):
                    rc[n, k, b] = zero
            for s in range(ptr[n], ptr[n + 1]):
                k, j, w = branch[s], src[s], rec_w[s]
                for b0 in range(0, full, LANES):  # blocks of a constant trip count: vector code
                    _rec_synapse_drive(rc, ym, n, k, j, w, b0, LANES)
                _rec_synapse_drive(rc, ym, n, k, j, w, full, B - full)
            for b in range(B):
                # MLP input [beta ; kappa m], saved as inp_buf [N, T, B, D+M]
                if events:
                    for k in range(D):
                        inp_buf[n, t, b, k] = dr[n * D + k, b] + rc[n, k, b]
                else:
                    for k in range(D):
                        inp_buf[n, t, b, k] = drive_in[b, t, n, k] + rc[n, k, b]
                for d in range(M):
                    inp_buf[n, t, b, D + d] = kappa[n, d] * m_all[t, n, d, b]
                # first MLP layer: one dot product per unit (contiguous, vectorised)
                for j in range(H1):
                    acc = b1[n, j]
                    for i in range(K):
                        acc += W1[n, j, i] * inp_buf[n, t, b, i]
                    hid[n, b, j] = acc
                if two:
                    for j in range(H1):
                        a = hid[n, b, j]
                        a1_buf[n, t, b, j] = a
                        r = _act(a, mlp_act, zero, one)
                        act_buf[n, t, b, j] = r
                        hid[n, b, j] = r
                    for d in range(M):
                        acc = b2[n, d]
                        for j in range(H1):
                            acc += W2[n, d, j] * hid[n, b, j]
                        zz[n, b, d] = acc
                else:
                    for d in range(M):
                        zz[n, b, d] = hid[n, b, d]
                # memory update, the |z| sum and the first output's readout (a short dot product
                # costs less in this loop than as its own vectorised reduction)
                za = zero
                p0 = zero
                for d in range(M):
                    z = zz[n, b, d]
                    z_all[t, n, d, b] = z
                    za += abs(z)
                    th = fast_tanh(tg * z)
                    th_all[t, n, d, b] = th
                    mv = inp_buf[n, t, b, D + d] + gain[n, d] * th
                    m_all[t + 1, n, d, b] = mv
                    zz[n, b, d] = mv  # zz now holds m_t
                    p0 += wy[n, 0, d] * mv
                zabs[n, b] += za
                # readout, high-pass, bias and output activation
                for o in range(O):
                    p = p0
                    if o > 0:
                        p = zero
                        for d in range(M):
                            p += wy[n, o, d] * zz[n, b, d]
                    if high_pass:
                        hv = h[n, o, b] + kr1 * (p - h[n, o, b])
                        h[n, o, b] = hv
                        p = p - hv
                    p = p + bias[n, o]
                    pre_all[t, n, o, b] = p
                    if out_act == 1:
                        p = p * _step(p, zero, one)
                    y_all[t + 1, n, o, b] = p


def _bwd_impl(y_all, m_all, a1_buf, z_all, th_all, pre_all, ptr, branch, src, rec_w, mask_rec, W1T, W2T, wy,
              kappa, gain, gy, g_zabs, two, mlp_act, out_act, high_pass,
              events, ev_ptr, ev_b, ev_c, ev_v, syn_ptr, syn_flat, g_w_in, want_g_beta,
              g_beta_all, ga_buf, gz_buf, acc_bias, acc_wy, acc_gain, acc_kappa, acc_rec, g_m, g_h, g_y,
              ym, gyr, gbs, gm, gz, ga, cst):
    T = z_all.shape[0]
    N, M, B = z_all.shape[1], z_all.shape[2], z_all.shape[3]
    O = wy.shape[1]
    H1 = W1T.shape[2]
    D = W1T.shape[1] - M
    S = src.shape[0]
    zero, one, tg, kr1, kr, two_c = cst[0], cst[1], cst[2], cst[3], cst[4], cst[5]
    full = B - B % LANES  # samples in whole LANES blocks
    for t in range(T - 1, -1, -1):
        for n in prange(N):
            for b in range(B):
                # output activation, high-pass and readout
                for d in range(M):
                    gm[n, b, d] = g_m[n, d, b]
                for o in range(O):
                    gp = gy[t, n, o, b] + g_y[n, o, b]
                    if out_act == 1:
                        gp = gp * _step(pre_all[t, n, o, b], zero, one)
                    acc_bias[n, o, b] += gp
                    if high_pass:
                        ghh = g_h[n, o, b] - gp
                        gr = gp + kr1 * ghh
                        g_h[n, o, b] = kr * ghh
                    else:
                        gr = gp
                    for d in range(M):
                        gm[n, b, d] += wy[n, o, d] * gr
                        acc_wy[n, o, d, b] += gr * m_all[t + 1, n, d, b]
                # memory update and the |z| regulariser: gradient of z
                for d in range(M):
                    z = z_all[t, n, d, b]
                    th = th_all[t, n, d, b]
                    g = gm[n, b, d]
                    acc_gain[n, d, b] += g * th
                    sz = _step(z, zero, one) - _step(-z, zero, one)  # sign(z)
                    gz[n, b, d] = g * gain[n, d] * tg * (one - th * th) + g_zabs[n, b] * sz
                # second MLP layer and the activation: gradient of the first layer's pre-activation
                if two:
                    for d in range(M):
                        gz_buf[n, t, b, d] = gz[n, b, d]
                    for j in range(H1):
                        acc = zero
                        for d in range(M):
                            acc += W2T[n, j, d] * gz[n, b, d]
                        ga[n, b, j] = acc * _act_grad(a1_buf[n, t, b, j], mlp_act, zero, one, two_c)
                else:
                    for d in range(M):
                        ga[n, b, d] = gz[n, b, d]
                for j in range(H1):
                    ga_buf[n, t, b, j] = ga[n, b, j]
                # first layer: gradient of its input [beta ; kappa m]
                for i in range(D):
                    acc = zero
                    for j in range(H1):
                        acc += W1T[n, i, j] * ga[n, b, j]
                    gbs[n * D + i, b] = acc
                if want_g_beta:
                    for i in range(D):
                        g_beta_all[b, t, n, i] = gbs[n * D + i, b]
                for d in range(M):
                    acc = gm[n, b, d]
                    for j in range(H1):
                        acc += W1T[n, D + d, j] * ga[n, b, j]
                    acc_kappa[n, d, b] += acc * m_all[t, n, d, b]
                    g_m[n, d, b] = kappa[n, d] * acc
        # recurrent synapses: their gradient into the previous step's outputs (scattered to the
        # sources) and into their weights; the step's branch gradients gbs are batch-innermost
        if S > 0:
            for j in range(N):
                for b in range(B):
                    ym[j, b] = y_all[t, j, 0, b] * mask_rec[j, b]
                    gyr[j, b] = zero
            # per-lane sums (no horizontal reduction per synapse); the mask applied once per source
            for n in range(N):
                for s in range(ptr[n], ptr[n + 1]):
                    f, j, w = n * D + branch[s], src[s], rec_w[s]
                    for b0 in range(0, full, LANES):  # blocks of a constant trip count: vector code
                        _rec_synapse_grad(gyr, acc_rec, gbs, ym, f, j, s, w, b0, LANES)
                    _rec_synapse_grad(gyr, acc_rec, gbs, ym, f, j, s, w, full, B - full)
            for j in range(N):
                for b in range(B):
                    g_y[j, 0, b] = gyr[j, b] * mask_rec[j, b]
        else:
            for j in range(N):
                for o in range(O):
                    for b in range(B):
                        g_y[j, o, b] = zero
        if events:  # the input synapses' weight gradient from this step's input events
            for e in range(ev_ptr[t], ev_ptr[t + 1]):
                b = ev_b[e]
                v = ev_v[e]
                c = ev_c[e]
                for s in range(syn_ptr[c], syn_ptr[c + 1]):
                    g_w_in[s] += gbs[syn_flat[s], b] * v


_KERNELS: dict = {}


def _kernels(parallel: bool):
    """The compiled (forward, backward) pair; the parallel build only when threads > 1."""
    if parallel not in _KERNELS:
        # reassociation and FMA contraction let the dot products vectorise; no 'nnan' / 'ninf':
        # a NaN or inf in the data must come out as NaN (divergence is detected downstream)
        opts = dict(cache=True, parallel=parallel, nogil=True, fastmath={"reassoc", "contract", "nsz"})
        _KERNELS[parallel] = (njit(**opts)(_fwd_impl), njit(**opts)(_bwd_impl))
    return _KERNELS[parallel]


def _np(t):
    return None if t is None else t.detach().numpy()


def _dummy(ref: torch.Tensor):
    return np.zeros((1, 1, 1, 1), dtype=ref.detach().numpy().dtype)


def _constants(dtype, kr: float) -> np.ndarray:
    """0, 1, the tanh gain, 1 - kr, kr and 2 in the arrays' dtype (a Python float in a float32
    loop would turn its arithmetic into float64)."""
    return np.array([0.0, 1.0, TANH_GAIN, 1.0 - kr, kr, 2.0], dtype)


def _event_args(events: Optional[InputEvents], w_in, dt):
    """The kernels' event arguments (empty arrays when the drive comes as a tensor)."""
    if events is None:
        i0 = np.zeros(1, np.int64)
        return (False, i0, i0, i0, np.zeros(1, dt), i0, i0, np.zeros(1, dt))
    return (True, _np(events.ptr), _np(events.batch), _np(events.chan), _np(events.value), _np(events.syn_ptr),
            _np(events.syn_flat), _np(w_in))


def forward(drive_in, rec: Recurrent, rec_w, mask_rec, W1, b1, W2, b2, wy, bias, kappa, gain, m0, h0, y0,
            spec: Spec, events: Optional[InputEvents] = None, w_in=None) -> Saved:
    """The contract's forward (:func:`elm_neuro.networks.engines.elm_sequence.forward_torch`);
    with ``events`` (and their synapse weights ``w_in``) the input drive is built in the loop from
    the input events and ``drive_in`` is not read."""
    n, m_dim, bsz = m0.shape
    d, o_dim, h1 = W1.shape[2] - m_dim, wy.shape[1], W1.shape[1]
    steps = events.steps if events is not None else drive_in.shape[0]
    new = m0.new_empty
    y_all, m_all = new(steps + 1, n, o_dim, bsz), new(steps + 1, n, m_dim, bsz)
    y_all[0], m_all[0] = y0, m0
    z_all, th_all, pre_all = new(steps, n, m_dim, bsz), new(steps, n, m_dim, bsz), new(steps, n, o_dim, bsz)
    # stored in the layouts the weight-gradient GEMMs read ([N, T*B, features]); handed over as
    # views with the contract's shapes
    inp_buf = new(n, steps, bsz, d + m_dim)
    a1_buf = new(n, steps, bsz, h1) if spec.two_layers else None
    act_buf = new(n, steps, bsz, h1) if spec.two_layers else None
    h = h0.clone() if spec.high_pass else m0.new_zeros(n, o_dim, bsz)
    zabs = m0.new_zeros(n, bsz)
    fwd, _ = _kernels(engine_threads() > 1)
    dt = _np(m0).dtype
    drive_bt = _np(drive_in.permute(3, 0, 1, 2).contiguous()) if events is None else np.zeros((1, 1, 1, 1), dt)
    fwd(drive_bt, *_event_args(events, w_in, dt), np.empty((n * d, bsz), dt),
        _np(rec.ptr), _np(rec.branch), _np(rec.src), _np(rec_w), _np(mask_rec), _np(W1), _np(b1),
        _np(W2) if spec.two_layers else np.zeros((1, 1, 1), dt), _np(b2) if spec.two_layers else np.zeros((1, 1), dt),
        _np(wy), _np(bias), _np(kappa), _np(gain), spec.two_layers, spec.mlp_act, spec.out_act, spec.high_pass,
        _np(y_all), _np(m_all), _np(inp_buf), _np(a1_buf) if spec.two_layers else _dummy(m0),
        _np(act_buf) if spec.two_layers else _dummy(m0), _np(z_all), _np(th_all), _np(pre_all), _np(h), _np(zabs),
        np.empty((n, bsz), dt), np.empty((n, d, bsz), dt), np.empty((n, bsz, h1), dt), np.empty((n, bsz, m_dim), dt),
        _constants(dt, float(spec.kr)))
    inp_all = inp_buf.permute(1, 0, 3, 2)  # [T, N, D+M, B]
    return Saved(y_all, m_all, inp_all[:, :, :d], a1_buf.permute(1, 0, 3, 2) if spec.two_layers else None, z_all,
                 pre_all, h if spec.high_pass else None, zabs, inp_all, th_all,
                 act_buf.permute(1, 0, 3, 2) if spec.two_layers else None)


def backward(saved: Saved, rec: Recurrent, rec_w, mask_rec, W1, W2, wy, kappa, gain, gy, g_mT, g_hT, g_zabs,
             spec: Spec, events: Optional[InputEvents] = None, w_in=None, g_beta_wanted: bool = False) -> Grads:
    """The contract's backward (:func:`elm_neuro.networks.engines.elm_sequence.backward_torch`).

    The gradients of the per-neuron parameters that sum over ``T * B`` terms (bias, readout
    weights, gain, kappa) are accumulated in the loop per batch lane in float64, then summed
    over the lanes. With ``events`` the loop gives the input synapses' weight gradient
    (``g_w_in``), and the input drive's (``g_beta_all``) only when ``g_beta_wanted`` (the input
    itself needs a gradient), else None."""
    steps, n, d, bsz = saved.beta_all.shape
    m_dim, o_dim, h1 = kappa.shape[1], wy.shape[1], W1.shape[1]
    ref = saved.z_all
    dt = _np(ref).dtype
    # physical [B, T, N, D], the input projection's layout
    want_g_beta = events is None or g_beta_wanted
    g_beta_bt = ref.new_empty(bsz, steps, n, d) if want_g_beta else None
    # [N, T, B, H1] and [N, T, B, M]: the layouts the weight-gradient GEMMs read (as [N, T*B, .])
    ga_buf = ref.new_empty(n, steps, bsz, h1)
    gz_buf = ref.new_empty(n, steps, bsz, m_dim) if spec.two_layers else None
    f64 = dict(dtype=torch.float64)
    acc_bias, acc_wy = torch.zeros(n, o_dim, bsz, **f64), torch.zeros(n, o_dim, m_dim, bsz, **f64)
    acc_gain, acc_kappa = torch.zeros(n, m_dim, bsz, **f64), torch.zeros(n, m_dim, bsz, **f64)
    acc_rec = ref.new_zeros(rec_w.shape[0], bsz)  # per-lane sums over T of the recurrent weights' gradient
    g_w_in = torch.zeros(w_in.shape if events is not None else (1,), **f64)
    g_m = g_mT.clone()
    g_h = g_hT.clone() if spec.high_pass else ref.new_zeros(n, o_dim, bsz)
    g_y = ref.new_zeros(n, o_dim, bsz)
    a1 = saved.a1_all.permute(1, 0, 3, 2).contiguous() if spec.two_layers else None  # [N, T, B, H] (free)
    _, bwd = _kernels(engine_threads() > 1)
    th = saved.th_all if saved.th_all is not None else torch.tanh(TANH_GAIN * saved.z_all)
    th = th.contiguous()
    ev = _event_args(events, w_in, dt)
    bwd(_np(saved.y_all), _np(saved.m_all), _np(a1) if spec.two_layers else _dummy(ref), _np(saved.z_all),
        _np(th), _np(saved.pre_all), _np(rec.ptr), _np(rec.branch), _np(rec.src), _np(rec_w), _np(mask_rec),
        _np(W1.transpose(1, 2).contiguous()),
        _np(W2.transpose(1, 2).contiguous()) if spec.two_layers else np.zeros((1, 1, 1), dt), _np(wy), _np(kappa),
        _np(gain), _np(gy), _np(g_zabs), spec.two_layers, spec.mlp_act, spec.out_act, spec.high_pass,
        *ev[:-1], _np(g_w_in), want_g_beta,
        _np(g_beta_bt) if want_g_beta else _dummy(ref), _np(ga_buf), _np(gz_buf) if spec.two_layers else _dummy(ref),
        _np(acc_bias), _np(acc_wy), _np(acc_gain), _np(acc_kappa), _np(acc_rec), _np(g_m), _np(g_h), _np(g_y),
        np.empty((n, bsz), dt), np.empty((n, bsz), dt), np.empty((n * d, bsz), dt), np.empty((n, bsz, m_dim), dt), np.empty((n, bsz, m_dim), dt),
        np.empty((n, bsz, h1), dt), _constants(dt, float(spec.kr)))
    dtype = ref.dtype
    g_wy, g_bias, g_gain, g_kappa = (a.sum(-1).to(dtype) for a in (acc_wy, acc_bias, acc_gain, acc_kappa))
    return Grads(g_beta_bt.permute(1, 2, 3, 0) if want_g_beta else None, ga_buf.permute(1, 0, 3, 2),
                 gz_buf.permute(1, 0, 3, 2) if spec.two_layers else None, g_wy, g_bias, g_gain, g_kappa, g_m,
                 g_h if spec.high_pass else None, g_y, acc_rec.sum(-1, dtype=torch.float64).to(dtype),
                 g_w_in.to(dtype) if events is not None else None)


forward.accepts_strided = True  # reads drive_in through .permute(3, 0, 1, 2), a no-op for the layer's view
forward.accepts_events = True  # builds the input drive from input events (see the contract)
