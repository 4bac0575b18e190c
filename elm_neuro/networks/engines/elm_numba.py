"""CPU backend of the fused ELM sequence engine: the forward and reverse-time backward loops
compiled with Numba (contract and reference: :mod:`elm_neuro.networks.engines.elm_sequence`).

Layout and loops: every array is neuron-major with the batch innermost (``[T, N, F, B]``), so
the innermost loop of every product runs contiguously over the batch and compiles to SIMD code.
Per time step the neurons are independent once the previous step's outputs are known, so the
neuron loop is a ``prange`` (parallel over the threads torch is given; one thread runs the
serial build, without any threading overhead). The recurrent synapses are read per target
neuron (CSR) in forward; in backward their gradient into the sources is scattered after the
neuron loop of each step. No array is allocated inside the time loop: per-neuron scratch space
is allocated once per call.

Threading: Numba's ``workqueue`` layer unless ``NUMBA_THREADING_LAYER`` is set (OpenMP's
spinning workers take the cores from torch; see :mod:`elm_neuro.data.binning`).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from elm_neuro.networks.engines.elm_sequence import TANH_GAIN, Grads, Recurrent, Saved, Spec

if numba.config.THREADING_LAYER == "default":  # the user did not choose one (see module docstring)
    numba.config.THREADING_LAYER = "workqueue"


def _fwd_impl(drive_in, ptr, branch, src, rec_w, mask_rec, W1, b1, W2, b2, wy, bias, kappa, gain,
              two, mlp_act, out_act, high_pass, kr, y_all, m_all, inp_buf, a1_buf, z_all, th_all, pre_all, h, zabs,
              hid, zz, cst):
    B, T, N, D = drive_in.shape
    M = kappa.shape[1]
    O = wy.shape[1]
    H1 = W1.shape[1]
    K = D + M
    zero = W1[0, 0, 0] - W1[0, 0, 0]  # 0 in the arrays' dtype: float32 sums stay float32 (SIMD)
    one = zero + 1
    tg = cst[0]  # TANH_GAIN in the arrays' dtype (a Python float would turn float32 code into float64)
    for t in range(T):
        for n in prange(N):
            # MLP input [beta ; kappa m] of each sample, saved as inp_buf [N, T, B, D+M]
            for b in range(B):
                for k in range(D):
                    inp_buf[n, t, b, k] = drive_in[b, t, n, k]
            for s in range(ptr[n], ptr[n + 1]):  # recurrent synapses of neuron n (CSR)
                k = branch[s]
                j = src[s]
                w = rec_w[s]
                for b in range(B):
                    inp_buf[n, t, b, k] += w * (y_all[t, j, 0, b] * mask_rec[j, b])
            for b in range(B):
                for d in range(M):
                    inp_buf[n, t, b, D + d] = kappa[n, d] * m_all[t, n, d, b]
            for b in range(B):
                # first MLP layer: one dot product per unit (contiguous, vectorised)
                x = inp_buf[n, t, b]
                for j in range(H1):
                    acc = b1[n, j]
                    for i in range(K):
                        acc += W1[n, j, i] * x[i]
                    hid[n, b, j] = acc
                if two:
                    for j in range(H1):
                        a = hid[n, b, j]
                        a1_buf[n, t, b, j] = a
                        if mlp_act == 0:  # relu^2 (a NaN stays NaN, as in torch)
                            r = zero if a <= 0 else a
                            hid[n, b, j] = r * r
                        elif mlp_act == 1:
                            hid[n, b, j] = zero if a <= 0 else a
                        else:
                            hid[n, b, j] = a / (one + math.exp(-a))
                    for d in range(M):
                        acc = b2[n, d]
                        for j in range(H1):
                            acc += W2[n, d, j] * hid[n, b, j]
                        zz[n, b, d] = acc
                else:
                    for d in range(M):
                        zz[n, b, d] = hid[n, b, d]
                # memory update, |z| sums, readout, high-pass, output
                za = 0.0
                for d in range(M):
                    z = zz[n, b, d]
                    z_all[t, n, d, b] = z
                    za += abs(z)
                    th = math.tanh(tg * z)
                    th_all[t, n, d, b] = th
                    mv = x[D + d] + gain[n, d] * th
                    m_all[t + 1, n, d, b] = mv
                    zz[n, b, d] = mv  # zz now holds m_t
                zabs[n, b] += za
                for o in range(O):
                    p = zero
                    for d in range(M):
                        p += wy[n, o, d] * zz[n, b, d]
                    if high_pass:
                        hv = h[n, o, b] + (1.0 - kr) * (p - h[n, o, b])
                        h[n, o, b] = hv
                        p = p - hv
                    p = p + bias[n, o]
                    pre_all[t, n, o, b] = p
                    if out_act == 1 and p < 0:
                        p = 0.0
                    y_all[t + 1, n, o, b] = p


def _bwd_impl(y_all, m_all, a1_buf, z_all, th_all, pre_all, ptr, branch, src, rec_w, mask_rec, W1T, W2T, wy,
              kappa, gain, gy, g_zabs, two, mlp_act, out_act, high_pass, kr,
              g_beta_all, ga_buf, gz_buf, g_wy, g_bias, g_gain, g_kappa, g_rec_w, g_m, g_h, g_ynext, g_ycur, gm, gz, ga):
    B, T, N, D = g_beta_all.shape
    M = kappa.shape[1]
    O = wy.shape[1]
    H1 = W1T.shape[2]
    zero = W1T[0, 0, 0] - W1T[0, 0, 0]  # 0 in the arrays' dtype (SIMD dot products)
    for t in range(T - 1, -1, -1):
        for n in prange(N):
            for b in range(B):
                # output activation, high-pass and readout
                for d in range(M):
                    gm[n, b, d] = g_m[n, d, b]
                for o in range(O):
                    gp = gy[t, n, o, b] + g_ynext[n, o, b]
                    if out_act == 1 and pre_all[t, n, o, b] <= 0:
                        gp = 0.0
                    g_bias[n, o] += gp
                    if high_pass:
                        ghh = g_h[n, o, b] - gp
                        gr = gp + (1.0 - kr) * ghh
                        g_h[n, o, b] = kr * ghh
                    else:
                        gr = gp
                    for d in range(M):
                        g_wy[n, o, d] += gr * m_all[t + 1, n, d, b]
                        gm[n, b, d] += wy[n, o, d] * gr
                # memory update and the |z| regulariser: gradient of z
                for d in range(M):
                    z = z_all[t, n, d, b]
                    th = th_all[t, n, d, b]
                    g_gain[n, d] += gm[n, b, d] * th
                    sz = 1.0 if z > 0 else (-1.0 if z < 0 else 0.0)
                    gz[n, b, d] = gm[n, b, d] * gain[n, d] * TANH_GAIN * (1.0 - th * th) + g_zabs[n, b] * sz
                # second MLP layer and the activation: gradient of the first layer's pre-activation
                if two:
                    for d in range(M):
                        gz_buf[n, d, t, b] = gz[n, b, d]
                    for j in range(H1):
                        acc = zero
                        for d in range(M):
                            acc += W2T[n, j, d] * gz[n, b, d]
                        a = a1_buf[n, t, b, j]
                        if mlp_act == 0:
                            da = 2.0 * a if a > 0 else 0.0
                        elif mlp_act == 1:
                            da = 1.0 if a > 0 else 0.0
                        else:
                            sg = 1.0 / (1.0 + math.exp(-a))
                            da = sg * (1.0 + a * (1.0 - sg))
                        ga[n, b, j] = acc * da
                else:
                    for d in range(M):
                        ga[n, b, d] = gz[n, b, d]
                for j in range(H1):
                    ga_buf[n, j, t, b] = ga[n, b, j]
                # first layer: gradient of its input [beta ; kappa m]
                for i in range(D):
                    acc = zero
                    for j in range(H1):
                        acc += W1T[n, i, j] * ga[n, b, j]
                    g_beta_all[b, t, n, i] = acc
                for d in range(M):
                    acc = gm[n, b, d]
                    for j in range(H1):
                        acc += W1T[n, D + d, j] * ga[n, b, j]
                    g_kappa[n, d] += acc * m_all[t, n, d, b]
                    g_m[n, d, b] = kappa[n, d] * acc
        # recurrent synapses: their gradient into the previous step's outputs (scatter to sources)
        for j in range(N):
            for o in range(O):
                for b in range(B):
                    g_ycur[j, o, b] = 0.0
        for n in range(N):
            for s in range(ptr[n], ptr[n + 1]):
                k = branch[s]
                j = src[s]
                w = rec_w[s]
                acc = 0.0
                for b in range(B):
                    gb = g_beta_all[b, t, n, k]
                    g_ycur[j, 0, b] += w * gb * mask_rec[j, b]
                    acc += gb * y_all[t, j, 0, b] * mask_rec[j, b]
                g_rec_w[s] += acc
        for j in range(N):
            for o in range(O):
                for b in range(B):
                    g_ynext[j, o, b] = g_ycur[j, o, b]


_KERNELS: dict = {}


def _kernels(parallel: bool):
    """The compiled (forward, backward) pair; the parallel build only when threads > 1."""
    if parallel not in _KERNELS:
        # reassociation and FMA contraction let the dot products vectorise; no 'nnan' / 'ninf':
        # a NaN or inf in the data must come out as NaN (divergence is detected downstream)
        opts = dict(cache=True, parallel=parallel, nogil=True, fastmath={"reassoc", "contract", "nsz"})
        _KERNELS[parallel] = (njit(**opts)(_fwd_impl), njit(**opts)(_bwd_impl))
    return _KERNELS[parallel]


def _threads() -> int:
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if n > 1:
        numba.set_num_threads(n)
    return n


def _np(t):
    return None if t is None else t.detach().numpy()


def _dummy(ref: torch.Tensor):
    return np.zeros((1, 1, 1, 1), dtype=ref.detach().numpy().dtype)


def forward(drive_in, rec: Recurrent, rec_w, mask_rec, W1, b1, W2, b2, wy, bias, kappa, gain, m0, h0, y0,
            spec: Spec) -> Saved:
    """The contract's forward (:func:`elm_neuro.networks.engines.elm_sequence.forward_torch`)."""
    steps, n, d, bsz = drive_in.shape
    m_dim, o_dim, h1 = kappa.shape[1], wy.shape[1], W1.shape[1]
    drive_bt = drive_in.permute(3, 0, 1, 2).contiguous()  # physical [B, T, N, D]: free for the layer's view
    new = drive_in.new_empty
    y_all, m_all = new(steps + 1, n, o_dim, bsz), new(steps + 1, n, m_dim, bsz)
    y_all[0], m_all[0] = y0, m0
    z_all, th_all, pre_all = new(steps, n, m_dim, bsz), new(steps, n, m_dim, bsz), new(steps, n, o_dim, bsz)
    # stored in the layouts the weight-gradient GEMMs read ([N, T*B, features]); handed over as
    # views with the contract's shapes
    inp_buf = new(n, steps, bsz, d + m_dim)
    a1_buf = new(n, steps, bsz, h1) if spec.two_layers else None
    h = h0.clone() if spec.high_pass else drive_in.new_zeros(n, o_dim, bsz)
    zabs = drive_in.new_zeros(n, bsz)
    fwd, _ = _kernels(_threads() > 1)
    dt = _np(drive_in).dtype
    fwd(_np(drive_bt), _np(rec.ptr), _np(rec.branch), _np(rec.src), _np(rec_w), _np(mask_rec), _np(W1), _np(b1),
        _np(W2) if spec.two_layers else np.zeros((1, 1, 1), dt), _np(b2) if spec.two_layers else np.zeros((1, 1), dt),
        _np(wy), _np(bias), _np(kappa), _np(gain), spec.two_layers, spec.mlp_act, spec.out_act, spec.high_pass,
        float(spec.kr), _np(y_all), _np(m_all), _np(inp_buf), _np(a1_buf) if spec.two_layers else _dummy(drive_in),
        _np(z_all), _np(th_all), _np(pre_all), _np(h), _np(zabs), np.empty((n, bsz, h1), dt),
        np.empty((n, bsz, m_dim), dt), np.array([TANH_GAIN], dt))
    inp_all = inp_buf.permute(1, 0, 3, 2)  # [T, N, D+M, B]
    return Saved(y_all, m_all, inp_all[:, :, :d], a1_buf.permute(1, 0, 3, 2) if spec.two_layers else None, z_all,
                 pre_all, h if spec.high_pass else None, zabs, inp_all, th_all)


def backward(saved: Saved, rec: Recurrent, rec_w, mask_rec, W1, W2, wy, kappa, gain, gy, g_mT, g_hT, g_zabs,
             spec: Spec) -> Grads:
    """The contract's backward (:func:`elm_neuro.networks.engines.elm_sequence.backward_torch`)."""
    steps, n, d, bsz = saved.beta_all.shape
    m_dim, o_dim, h1 = kappa.shape[1], wy.shape[1], W1.shape[1]
    ref = saved.z_all
    dt = _np(ref).dtype
    g_beta_bt = ref.new_empty(bsz, steps, n, d)  # physical [B, T, N, D], the input projection's layout
    ga_buf = ref.new_empty(n, h1, steps, bsz)  # [N, H1, T, B]: the GEMM layout (see forward)
    gz_buf = ref.new_empty(n, m_dim, steps, bsz) if spec.two_layers else None
    # sums over T * B terms: accumulated in float64 whatever the dtype, then cast back
    f64 = dict(dtype=torch.float64)
    g_wy, g_bias = torch.zeros(wy.shape, **f64), torch.zeros(n, o_dim, **f64)
    g_gain, g_kappa = torch.zeros(gain.shape, **f64), torch.zeros(kappa.shape, **f64)
    g_rec_w = torch.zeros(rec_w.shape, **f64)
    g_m = g_mT.clone()
    g_h = g_hT.clone() if spec.high_pass else ref.new_zeros(n, o_dim, bsz)
    g_ynext = ref.new_zeros(n, o_dim, bsz)
    a1 = saved.a1_all.permute(1, 0, 3, 2).contiguous() if spec.two_layers else None  # [N, T, B, H] (free)
    _, bwd = _kernels(_threads() > 1)
    th = saved.th_all if saved.th_all is not None else torch.tanh(TANH_GAIN * saved.z_all)
    bwd(_np(saved.y_all), _np(saved.m_all), _np(a1) if spec.two_layers else _dummy(ref), _np(saved.z_all),
        _np(th.contiguous()), _np(saved.pre_all), _np(rec.ptr), _np(rec.branch), _np(rec.src), _np(rec_w), _np(mask_rec),
        _np(W1.transpose(1, 2).contiguous()),
        _np(W2.transpose(1, 2).contiguous()) if spec.two_layers else np.zeros((1, 1, 1), dt), _np(wy), _np(kappa),
        _np(gain), _np(gy), _np(g_zabs), spec.two_layers, spec.mlp_act, spec.out_act, spec.high_pass, float(spec.kr),
        _np(g_beta_bt), _np(ga_buf), _np(gz_buf) if spec.two_layers else _dummy(ref), _np(g_wy), _np(g_bias),
        _np(g_gain), _np(g_kappa), _np(g_rec_w), _np(g_m), _np(g_h), _np(g_ynext), np.empty((n, o_dim, bsz), dt),
        np.empty((n, bsz, m_dim), dt), np.empty((n, bsz, m_dim), dt), np.empty((n, bsz, h1), dt))
    dtype = ref.dtype
    return Grads(g_beta_bt.permute(1, 2, 3, 0), ga_buf.permute(2, 0, 1, 3), gz_buf.permute(2, 0, 1, 3) if spec.two_layers else None,
                 g_wy.to(dtype), g_bias.to(dtype), g_gain.to(dtype), g_kappa.to(dtype), g_m,
                 g_h if spec.high_pass else None, g_ynext, g_rec_w.to(dtype))


forward.accepts_strided = True  # reads drive_in through .permute(3, 0, 1, 2), a no-op for the layer's view
