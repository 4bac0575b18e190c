"""CUDA backend of the fused LIF / adLIF sequence engine: persistent Triton kernels that keep the
time loop inside the kernel (the forward loops over ``t = 0 .. T-1``, the backward over
``t = T-1 .. 0``), and the leaky filter's scan.

The contract (layouts, saved tensors, gradients) is the one of
:mod:`elm_neuro.networks.engines.lif_contract`; :func:`forward` and :func:`backward` take the
arguments of ``forward_torch`` / ``backward_torch`` and return the same ``Saved`` / ``Grads``
(the filter: :mod:`elm_neuro.networks.engines.leaky_scan`). The launchers pass every kernel
argument by its name.

Design
    *Programs.* The samples of a batch are independent, so the grid is the batch in blocks of
    ``BB`` samples (``BATCH_BLOCK``). Each program runs the whole time loop for its samples and,
    inside each step, the neurons in blocks of ``BN``. The recurrent current of step ``t`` reads
    the spikes ``s_{t-1}`` of *all* neurons of the same samples, which the same program wrote in
    the previous step to ``s_all`` (a saved tensor), so each step ends with a CTA barrier
    (``tl.debug_barrier``) and no program ever waits for another.

    *Recurrent weights on chip.* When the whole layer is one neuron block and the dense map
    ``M [N, N]`` fits ``RESIDENT_BUDGET`` elements, the kernels load ``M`` once, before the time
    loop, and keep it in registers for the whole sequence; larger maps are read per step in
    ``[BK, BN]`` tiles, which stay hot in L1/L2. Per step the recurrent current is a broadcast
    multiply and reduction over the sources (``sum_j mask s_{t-1}[j] M[j, n]``), and in backward
    the recurrence's gradient ``sum_n M[j, n] g_c[n]`` the same over the targets.

    *State and gradients.* The running state (the refractory counter; in backward ``g_v``,
    ``g_w``, ``g_s``) lives in global buffers re-read each step (several neuron blocks per step).
    The per-neuron parameter gradients are summed by each program over its samples and time
    into a per-program partial buffer, which the wrapper sums; the recurrent map's gradient is
    formed by the autograd Function as one GEMM over ``B * T``.

    Everything runs in the dtype of the inputs (float32 or float64; another dtype is a clear
    error, and the contract sends other layers to the per-step path). Scalars that must keep full
    precision (threshold, reset amount, surrogate slope and scale) come in a small tensor, made
    once per value and device (a Python float argument would reach the kernel as float32; a new
    tensor per call would wait for the device).

    *Compile keys.* :func:`compile_key` / :func:`scan_compile_key` give a call's constexprs and
    ``num_warps``: with the dtype and the device, what a kernel is compiled for. The dispatch
    checks each such configuration once before its first use against the reference
    (:func:`elm_neuro.networks.engines.backends.first_use`).

The tests run these kernels on the CPU under ``TRITON_INTERPRET=1`` (tests/test_engine_lif_triton.py);
``TILE_BUDGET``, ``RESIDENT_BUDGET``, ``NUM_WARPS`` and ``BATCH_BLOCK`` are first guesses, to be tuned
on a GPU (``benchmarks/gpu_check.sh``).
"""
# No ``from __future__ import annotations`` here: Triton 3.0's interpreter recognises a constexpr
# parameter only by its evaluated annotation (a string "tl.constexpr" is taken for a tensor).


import functools
import math

import torch
import triton
import triton.language as tl

from elm_neuro.networks.engines.inputs import Drive
from elm_neuro.networks.engines.lif_contract import Grads, OutGrads, Saved, Spec, State, Weights, saved_buffers

TAKES = (Drive,)

TILE_BUDGET = {4: 8192, 8: 4096}  # elements of the largest per-step tile of one program
RESIDENT_BUDGET = {4: 16384, 8: 8192}  # the recurrent map stays in registers up to this many elements
NUM_WARPS = 4
BATCH_BLOCK = 1  # samples per program (BB)
SCAN_BLOCK = 128  # channels per program of the leaky filter


def _p2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


# --------------------------------------------------------------------------- forward kernel
@triton.jit
def _lif_fwd_kernel(
        cur_ptr, m_ptr, mask_ptr, km_ptr, gn_ptr, kw_ptr, a_ptr, b_ptr, cst_ptr,
        v_ptr, s_ptr, w_ptr, q_ptr, d_ptr, ref_ptr,
        B, T, N, NBLK,
        BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
        REC: tl.constexpr, RESIDENT: tl.constexpr, ADAPT: tl.constexpr, ZERO: tl.constexpr, REFR: tl.constexpr,
        GAIN: tl.constexpr):
    pid = tl.program_id(0)
    th = tl.load(cst_ptr)
    thr = tl.load(cst_ptr + 1)
    rv = tl.load(cst_ptr + 2)
    bb = pid * BB + tl.arange(0, BB)
    b_ok = bb < B
    b2 = bb[:, None]  # [BB, 1]
    bm2 = b_ok[:, None]
    b64 = b2.to(tl.int64)
    ar_n = tl.arange(0, BN)
    ar_k = tl.arange(0, BK)
    if RESIDENT:  # the whole map, loaded once: [BN (sources), BN (targets)]
        m_res = tl.load(m_ptr + ar_n[:, None] * N + ar_n[None, :], mask=(ar_n[:, None] < N) & (ar_n[None, :] < N),
                        other=0.0)
    for t in range(T):
        t64 = tl.cast(t, tl.int64)
        for blk in range(NBLK):
            n1 = blk * BN + ar_n
            n_ok = n1 < N
            n2 = n1[None, :]
            msk = bm2 & n_ok[None, :]  # [BB, BN]
            row = (b64 * (T + 1) + t64) * N  # [BB, 1] offset of step t in the [B, T+1, N] buffers
            c = tl.load(cur_ptr + (b64 * T + t64) * N + n2, mask=msk, other=0.0)
            if REC:
                if RESIDENT:
                    sm = tl.load(s_ptr + row + n2, mask=msk, other=0.0) \
                        * tl.load(mask_ptr + b64 * N + n2, mask=msk, other=0.0)
                    rc = tl.sum(sm[:, :, None] * m_res[None, :, :], axis=1)  # [BB, BN]
                else:
                    rc = tl.zeros([BB, BN], dtype=c.dtype)
                    for j0 in range(0, N, BK):
                        j1 = j0 + ar_k
                        jm = bm2 & (j1[None, :] < N)
                        sm = tl.load(s_ptr + row + j1[None, :], mask=jm, other=0.0) \
                            * tl.load(mask_ptr + b64 * N + j1[None, :], mask=jm, other=0.0)  # [BB, BK]
                        mt = tl.load(m_ptr + j1[:, None].to(tl.int64) * N + n2,
                                     mask=(j1[:, None] < N) & n_ok[None, :], other=0.0)  # [BK, BN]
                        rc += tl.sum(sm[:, :, None] * mt[None, :, :], axis=1)
                drive = c + rc
            else:
                drive = c
            vp = tl.load(v_ptr + row + n2, mask=msk, other=0.0)
            sp = tl.load(s_ptr + row + n2, mask=msk, other=0.0)
            km = tl.load(km_ptr + n2, mask=n_ok[None, :], other=0.0)
            if ADAPT:
                kw = tl.load(kw_ptr + n2, mask=n_ok[None, :], other=0.0)
                aa = tl.load(a_ptr + n2, mask=n_ok[None, :], other=0.0)
                ab = tl.load(b_ptr + n2, mask=n_ok[None, :], other=0.0)
                wv = kw * tl.load(w_ptr + row + n2, mask=msk, other=0.0) + aa * vp + ab * sp
                tl.store(w_ptr + row + N + n2, wv, mask=msk)
                drive = drive - wv
            if REFR:
                rf = tl.load(ref_ptr + b64 * N + n2, mask=msk, other=0.0)
                q = tl.where(rf > 0, 1.0, 0.0).to(c.dtype)
                tl.store(q_ptr + (b64 * T + t64) * N + n2, q, mask=msk)
                drive = drive * (1.0 - q)
            if GAIN:
                tl.store(d_ptr + (b64 * T + t64) * N + n2, drive, mask=msk)
                drive = tl.load(gn_ptr + n2, mask=n_ok[None, :], other=0.0) * drive
            if ZERO:
                v = km * vp * (1.0 - sp) + drive
            else:
                v = km * vp + drive - thr * sp
            s = tl.where(v - th > 0, 1.0, 0.0).to(c.dtype)
            if REFR:
                s = s * (1.0 - q)
                rm = rf - 1.0
                tl.store(ref_ptr + b64 * N + n2, tl.where(s > 0, rv, tl.where(rm > 0, rm, 0.0)), mask=msk)
            tl.store(v_ptr + row + N + n2, v, mask=msk)
            tl.store(s_ptr + row + N + n2, s, mask=msk)
        # s_all[:, t + 1] of every neuron must be visible to the next step's recurrent current
        tl.debug_barrier()


# --------------------------------------------------------------------------- backward kernel
@triton.jit
def _lif_bwd_kernel(
        gs_ptr, v_ptr, s_ptr, w_ptr, q_ptr, d_ptr, m_ptr, mask_ptr, km_ptr, gn_ptr, kw_ptr, a_ptr, b_ptr, cst_ptr,
        gcur_ptr, gv_ptr, gw_ptr, gsn_ptr, own_ptr, pkm_ptr, pgn_ptr, pkw_ptr, pa_ptr, pb_ptr,
        B, T, N, NBLK,
        BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
        REC: tl.constexpr, RESIDENT: tl.constexpr, ADAPT: tl.constexpr, ZERO: tl.constexpr, REFR: tl.constexpr,
        GAIN: tl.constexpr, DETACH: tl.constexpr, SUR: tl.constexpr):
    pid = tl.program_id(0)
    th = tl.load(cst_ptr)
    thr = tl.load(cst_ptr + 1)
    slope = tl.load(cst_ptr + 5)
    scale = tl.load(cst_ptr + 6)
    half_slope = tl.load(cst_ptr + 7)
    pi_half_slope = tl.load(cst_ptr + 8)
    bb = pid * BB + tl.arange(0, BB)
    b_ok = bb < B
    b2 = bb[:, None]
    bm2 = b_ok[:, None]
    b64 = b2.to(tl.int64)
    p64 = tl.cast(pid, tl.int64)
    ar_n = tl.arange(0, BN)
    ar_k = tl.arange(0, BK)
    if RESIDENT:  # the whole map, loaded once: [BN (sources j), BN (targets n)]
        m_res = tl.load(m_ptr + ar_n[:, None] * N + ar_n[None, :], mask=(ar_n[:, None] < N) & (ar_n[None, :] < N),
                        other=0.0)
    for i in range(T):
        t = T - 1 - i
        t64 = tl.cast(t, tl.int64)
        for blk in range(NBLK):
            n1 = blk * BN + ar_n
            n_ok = n1 < N
            n2 = n1[None, :]
            nm = n_ok[None, :]
            msk = bm2 & nm
            row = (b64 * (T + 1) + t64) * N  # step t (v_{t-1}, s_{t-1}) in the [B, T+1, N] buffers
            cell = (b64 * T + t64) * N + n2  # step t in the [B, T, N] buffers
            st = b64 * N + n2  # the [B, N] state buffers
            x = tl.load(v_ptr + row + N + n2, mask=msk, other=0.0) - th
            if SUR == 0:
                den = slope * tl.abs(x) + 1.0
                sg = scale / (den * den)
            elif SUR == 1:
                u = pi_half_slope * x
                sg = scale * half_slope / (1.0 + u * u)
            else:
                den = slope * tl.abs(x) + 1.0
                sg = scale * half_slope / (den * den)
            if REFR:
                q = tl.load(q_ptr + cell, mask=msk, other=0.0)
                sg = sg * (1.0 - q)
            gv = tl.load(gv_ptr + st, mask=msk, other=0.0) \
                + (tl.load(gs_ptr + cell, mask=msk, other=0.0) + tl.load(gsn_ptr + st, mask=msk, other=0.0)) * sg
            vp = tl.load(v_ptr + row + n2, mask=msk, other=0.0)
            sp = tl.load(s_ptr + row + n2, mask=msk, other=0.0)
            km = tl.load(km_ptr + n2, mask=nm, other=0.0)
            pofs = p64 * N + n1
            if ZERO:
                om = 1.0 - sp
                tl.store(pkm_ptr + pofs, tl.load(pkm_ptr + pofs, mask=n_ok, other=0.0) + tl.sum(gv * vp * om, axis=0),
                         mask=n_ok)
                g_vp = gv * km * om
                g_r = -(gv * km * vp)
            else:
                tl.store(pkm_ptr + pofs, tl.load(pkm_ptr + pofs, mask=n_ok, other=0.0) + tl.sum(gv * vp, axis=0),
                         mask=n_ok)
                g_vp = gv * km
                g_r = -(thr * gv)
            if DETACH:
                g_sp = tl.zeros([BB, BN], dtype=gv.dtype)
            else:
                g_sp = g_r
            gd = gv
            if GAIN:
                tl.store(pgn_ptr + pofs, tl.load(pgn_ptr + pofs, mask=n_ok, other=0.0)
                         + tl.sum(gd * tl.load(d_ptr + cell, mask=msk, other=0.0), axis=0), mask=n_ok)
                gd = gd * tl.load(gn_ptr + n2, mask=nm, other=0.0)
            if REFR:
                gd = gd * (1.0 - q)
            tl.store(gcur_ptr + cell, gd, mask=msk)
            if ADAPT:
                gw = tl.load(gw_ptr + st, mask=msk, other=0.0) - gd
                tl.store(pkw_ptr + pofs, tl.load(pkw_ptr + pofs, mask=n_ok, other=0.0)
                         + tl.sum(gw * tl.load(w_ptr + row + n2, mask=msk, other=0.0), axis=0), mask=n_ok)
                tl.store(pa_ptr + pofs, tl.load(pa_ptr + pofs, mask=n_ok, other=0.0) + tl.sum(gw * vp, axis=0),
                         mask=n_ok)
                tl.store(pb_ptr + pofs, tl.load(pb_ptr + pofs, mask=n_ok, other=0.0) + tl.sum(gw * sp, axis=0),
                         mask=n_ok)
                tl.store(gw_ptr + st, gw * tl.load(kw_ptr + n2, mask=nm, other=0.0), mask=msk)
                g_vp = g_vp + gw * tl.load(a_ptr + n2, mask=nm, other=0.0)
                g_sp = g_sp + gw * tl.load(b_ptr + n2, mask=nm, other=0.0)
            tl.store(gv_ptr + st, g_vp, mask=msk)
            tl.store(own_ptr + st, g_sp, mask=msk)
        # g_cur[:, t] of every neuron must be visible to the recurrence's gradient below
        tl.debug_barrier()
        for blk in range(NBLK):  # g_s[j] = own[j] + mask[j] sum_n M[j, n] g_cur[t, n]  (j: this block)
            j1 = blk * BN + ar_n
            j_ok = j1 < N
            msk = bm2 & j_ok[None, :]
            st = b64 * N + j1[None, :]
            own = tl.load(own_ptr + st, mask=msk, other=0.0)
            if REC:
                crow = (b64 * T + t64) * N  # [BB, 1]
                if RESIDENT:
                    gc = tl.load(gcur_ptr + crow + ar_n[None, :], mask=bm2 & (ar_n[None, :] < N), other=0.0)
                    acc = tl.sum(m_res[None, :, :] * gc[:, None, :], axis=2)  # [BB, BN (j)]
                else:
                    acc = tl.zeros([BB, BN], dtype=own.dtype)
                    for k0 in range(0, N, BK):
                        k1 = k0 + ar_k
                        gc = tl.load(gcur_ptr + crow + k1[None, :], mask=bm2 & (k1[None, :] < N), other=0.0)  # [BB, BK]
                        mt = tl.load(m_ptr + j1[:, None].to(tl.int64) * N + k1[None, :],
                                     mask=j_ok[:, None] & (k1[None, :] < N), other=0.0)  # [BN (j), BK (n)]
                        acc += tl.sum(mt[None, :, :] * gc[:, None, :], axis=2)
                mk = tl.load(mask_ptr + st, mask=msk, other=0.0)
                tl.store(gsn_ptr + st, own + acc * mk, mask=msk)
            else:
                tl.store(gsn_ptr + st, own, mask=msk)
        # g_s of every neuron must be visible to the next (earlier) step
        tl.debug_barrier()


# --------------------------------------------------------------------------- leaky filter
@triton.jit
def _scan_fwd_kernel(d_ptr, o0_ptr, o_ptr, cst_ptr, T, C, BC: tl.constexpr, UNIT: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c1 = tl.program_id(1) * BC + tl.arange(0, BC)
    ok = c1 < C
    k = tl.load(cst_ptr)
    g = tl.load(cst_ptr + 1)
    o = tl.load(o0_ptr + b * C + c1, mask=ok, other=0.0)
    for t in range(T):
        off = (b * T + t) * C + c1
        dv = tl.load(d_ptr + off, mask=ok, other=0.0)
        if UNIT:
            o = k * o + dv
        else:
            o = k * o + g * dv
        tl.store(o_ptr + off, o, mask=ok)


@triton.jit
def _scan_bwd_kernel(go_ptr, gd_ptr, go0_ptr, cst_ptr, T, C, BC: tl.constexpr, UNIT: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c1 = tl.program_id(1) * BC + tl.arange(0, BC)
    ok = c1 < C
    k = tl.load(cst_ptr)
    g = tl.load(cst_ptr + 1)
    acc = tl.zeros([BC], dtype=go_ptr.dtype.element_ty)
    for i in range(T):
        off = (b * T + (T - 1 - i)) * C + c1
        a = tl.load(go_ptr + off, mask=ok, other=0.0) + acc
        if UNIT:
            tl.store(gd_ptr + off, a, mask=ok)
        else:
            tl.store(gd_ptr + off, g * a, mask=ok)
        acc = k * a
    tl.store(go0_ptr + b * C + c1, acc, mask=ok)


# --------------------------------------------------------------------------- host side
def _elem(dtype: torch.dtype) -> int:
    """The element size of ``dtype`` (the kernels compute in float32 or float64; another dtype is an
    error here, and the contract sends those layers to the per-step path before they get here)."""
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"lif_triton computes in float32 or float64, not {dtype} "
                        "(lif_contract.unsupported_reason sends such layers to the per-step path)")
    return torch.finfo(dtype).bits // 8


def _layout(n: int, bsz: int, elem: int):
    """``(BB, BN, BK, NBLK, RESIDENT)``: the neuron block, the source chunk of the recurrent tiles,
    and whether the map stays in registers."""
    bb = min(_p2(BATCH_BLOCK), _p2(bsz))
    bn = min(_p2(n), max(16, TILE_BUDGET[elem] // (16 * bb)))
    bk = max(1, min(_p2(n), TILE_BUDGET[elem] // (bn * bb)))
    resident = bn >= n and bn * bn * bb <= RESIDENT_BUDGET[elem]
    return bb, bn, bk, triton.cdiv(n, bn), resident


def _options(n: int, bsz: int, dtype: torch.dtype, spec: Spec) -> tuple[dict, dict]:
    """The constexprs of the forward and of the backward kernel."""
    bb, bn, bk, _, resident = _layout(max(n, 1), max(bsz, 1), _elem(dtype))
    fwd = dict(BB=bb, BN=bn, BK=bk, REC=bool(spec.recurrent), RESIDENT=bool(resident and spec.recurrent),
               ADAPT=bool(spec.adaptive), ZERO=spec.reset == 1, REFR=spec.refractory > 0, GAIN=bool(spec.has_gain))
    return fwd, dict(fwd, DETACH=bool(spec.detach_reset), SUR=int(spec.surrogate))


def compile_key(cur_in, mask, w: Weights, s: State, spec: Spec) -> tuple:
    """What the kernels of a forward call (and its backward) are compiled for, besides the dtype
    and the device: ``(name, value)`` pairs of the backward kernel's constexprs (the forward's
    and two more) and ``num_warps``; the first-use check's cache key
    (:func:`elm_neuro.networks.engines.backends.first_use`)."""
    bsz, _, n = cur_in.shape
    _, bwd = _options(n, bsz, cur_in.dtype, spec)
    return tuple(sorted(bwd.items())) + (("num_warps", NUM_WARPS),)


@functools.lru_cache(maxsize=64)
def _consts_on(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def _consts(spec: Spec, like: torch.Tensor) -> torch.Tensor:
    """The spec's scalars on ``like``'s device, made once per value (a new tensor from host values
    per call would synchronise with the device)."""
    return _consts_on((spec.threshold, spec.reset_value, float(spec.refractory), 1.0, 0.0, spec.slope, spec.scale,
                       spec.slope / 2.0, math.pi / 2.0 * spec.slope), like.dtype, like.device)


def forward(cur_in, mask, w: Weights, s: State, spec: Spec) -> Saved:
    """The kernel contract's forward (``lif_contract.forward_torch``) as one persistent kernel."""
    bsz, steps, n = cur_in.shape
    v_all, s_all, w_all, q_all, d_all, ref = saved_buffers(cur_in, s, spec)
    if bsz and steps and n:
        opts, _ = _options(n, bsz, cur_in.dtype, spec)
        nblk = triton.cdiv(n, opts["BN"])
        dummy = cur_in.new_zeros(1)

        def opt(t):
            return t if t is not None else dummy

        _lif_fwd_kernel[(triton.cdiv(bsz, opts["BB"]),)](
            cur_ptr=cur_in, m_ptr=w.M if spec.recurrent else dummy, mask_ptr=mask.to(cur_in.dtype).contiguous(),
            km_ptr=w.kappa_m, gn_ptr=opt(w.gain), kw_ptr=opt(w.kappa_w), a_ptr=opt(w.a), b_ptr=opt(w.b),
            cst_ptr=_consts(spec, cur_in), v_ptr=v_all, s_ptr=s_all, w_ptr=opt(w_all), q_ptr=opt(q_all),
            d_ptr=opt(d_all), ref_ptr=opt(ref), B=bsz, T=steps, N=n, NBLK=nblk, num_warps=NUM_WARPS, **opts)
    return Saved(v_all, s_all, w_all, q_all, d_all, ref)


def backward(saved: Saved, mask, w: Weights, g: OutGrads, spec: Spec) -> Grads:
    """The kernel contract's backward (``lif_contract.backward_torch``) as one persistent kernel."""
    bsz, steps, n = g.gs.shape
    dtype, dev = saved.v_all.dtype, saved.v_all.device
    g_cur = torch.empty_like(g.gs)
    g_v = g.g_vT.to(dtype).clone().contiguous()
    g_w = g.g_wT.to(dtype).clone().contiguous() if spec.adaptive else None
    g_s = torch.zeros_like(g_v)
    _, opts = _options(n, bsz, dtype, spec)
    nblk = triton.cdiv(max(n, 1), opts["BN"])
    parts = triton.cdiv(bsz, opts["BB"]) if bsz else 1
    sums = {k: torch.zeros(parts, n, dtype=dtype, device=dev) for k in ("km", "gn", "kw", "a", "b")}
    if bsz and steps and n:
        own = torch.empty_like(g_v)
        dummy = torch.zeros(1, dtype=dtype, device=dev)

        def opt(t):
            return t if t is not None else dummy

        _lif_bwd_kernel[(parts,)](
            gs_ptr=g.gs, v_ptr=saved.v_all, s_ptr=saved.s_all, w_ptr=opt(saved.w_all), q_ptr=opt(saved.q_all),
            d_ptr=opt(saved.d_all), m_ptr=w.M if spec.recurrent else dummy, mask_ptr=mask.to(dtype).contiguous(),
            km_ptr=w.kappa_m, gn_ptr=opt(w.gain), kw_ptr=opt(w.kappa_w), a_ptr=opt(w.a), b_ptr=opt(w.b),
            cst_ptr=_consts(spec, saved.v_all), gcur_ptr=g_cur, gv_ptr=g_v, gw_ptr=opt(g_w), gsn_ptr=g_s,
            own_ptr=own, pkm_ptr=sums["km"], pgn_ptr=sums["gn"], pkw_ptr=sums["kw"], pa_ptr=sums["a"],
            pb_ptr=sums["b"], B=bsz, T=steps, N=n, NBLK=nblk, num_warps=NUM_WARPS, **opts)
    tot = {k: v.sum(0) for k, v in sums.items()}
    ad = spec.adaptive
    return Grads(g_cur, tot["km"], tot["gn"] if spec.has_gain else None, tot["kw"] if ad else None,
                 tot["a"] if ad else None, tot["b"] if ad else None, g_v, g_s, g_w)


@functools.lru_cache(maxsize=64)
def _scan_consts_on(kappa: float, gain: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor([kappa, gain], dtype=dtype, device=device)


def _scan_consts(kappa: float, gain: float, like: torch.Tensor) -> torch.Tensor:
    return _scan_consts_on(float(kappa), float(gain), like.dtype, like.device)


def _scan_options(c: int, dtype: torch.dtype, gain: float) -> dict:
    _elem(dtype)
    return dict(BC=min(SCAN_BLOCK, _p2(c)), UNIT=gain == 1.0)


def scan_compile_key(drive, o0, kappa: float, gain: float) -> tuple:
    """The scan kernels' constexprs for a call (the first-use check's cache key, with the dtype and
    the device; :func:`compile_key`)."""
    return tuple(sorted(_scan_options(drive.shape[2], drive.dtype, gain).items()))


def scan_forward(drive, o0, kappa: float, gain: float):
    """``o_t = kappa o_{t-1} + gain d_t`` (``leaky_scan.scan_torch``), one program per sample and
    channel block."""
    bsz, steps, c = drive.shape
    out = torch.empty_like(drive)
    if out.numel():
        opts = _scan_options(c, drive.dtype, gain)
        _scan_fwd_kernel[(bsz, triton.cdiv(c, opts["BC"]))](d_ptr=drive, o0_ptr=o0.contiguous(), o_ptr=out,
                                                           cst_ptr=_scan_consts(kappa, gain, drive), T=steps, C=c,
                                                           **opts)
    return out


def scan_backward(g_o, kappa: float, gain: float):
    """``(g_drive, g_o0)`` (``leaky_scan.scan_backward_torch``)."""
    bsz, steps, c = g_o.shape
    g_d = torch.empty_like(g_o)
    g_o0 = g_o.new_zeros(bsz, c)
    if g_o.numel():
        opts = _scan_options(c, g_o.dtype, gain)
        _scan_bwd_kernel[(bsz, triton.cdiv(c, opts["BC"]))](go_ptr=g_o, gd_ptr=g_d, go0_ptr=g_o0,
                                                           cst_ptr=_scan_consts(kappa, gain, g_o), T=steps, C=c,
                                                           **opts)
    return g_d, g_o0
