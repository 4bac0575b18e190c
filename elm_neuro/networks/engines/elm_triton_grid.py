"""CUDA backend of the fused ELM sequence engine that spreads one layer over the whole GPU: each
program owns one neuron for a block of samples, and all programs step through time together.

The contract (layouts, saved tensors, gradients) is the one of
:mod:`elm_neuro.networks.engines.elm_contract`; :func:`forward` and :func:`backward` take the
arguments of ``forward_torch`` / ``backward_torch`` and return the same ``Saved`` / ``Grads``. The
input is a Drive or Rows (``TAKES``): a spiking input reaches the kernels as its rows, read through
the input synapses inside the step (a gather), not as a dense ``[B T, C] x [C, N D]`` product.

Work items
    A work item is ``(neuron n, block of BB samples)``: ``N * ceil(B / BB)`` items, each computed
    by one program of one warp with the samples across its lanes (:func:`_lanes`: 8 to 32 samples,
    as few as keep the items at most the GPU's warp schedulers), the neuron's weights the same in
    every lane (broadcast loads, kept hot in L1). With fewer than 32 samples the lanes also split
    the hidden units, and the sums over them take a few shuffles.

Per-step body and the two ways to run it
    :func:`_fwd_step` and :func:`_bwd_step` compute one time step of one work item. The step of
    ``t`` reads, through the synapses, the outputs of *every* neuron at ``t - 1``, written by other
    programs, so all items must finish step ``t - 1`` first:

    * *persistent* (:func:`_fwd_persistent` / :func:`_bwd_persistent`, on a GPU): a grid of at most
      as many programs as can be resident at once (``SM count x PROGRAMS_PER_SM``), each looping
      over its items of a step and then over time, with a grid-wide barrier after each step (an
      arrival counter in global memory, :func:`_grid_barrier`: the release/acquire atomics make
      the step's stores visible to every program before it reads them);
    * *stepped* (:func:`_fwd_stepped` / :func:`_bwd_stepped`, one launch per time step): the
      launch boundary is the barrier. Triton's interpreter runs programs one after another, so a
      spin barrier would deadlock there: the tests run this form (``TRITON_INTERPRET=1``), which
      executes the very same step body.

    :data:`PERSISTENT` chooses (None: persistent on CUDA, stepped elsewhere). Off CUDA the
    persistent grid is one program, which passes each barrier on its own arrival: the
    interpreter runs the persistent kernels that way too (tests/test_engine_elm_triton_grid.py).

Loop bounds
    The loops over branches, memory units and chunks of outgoing synapses run to runtime values
    (``DLOOP``, ``MLOOP``, ``SLOOP``, equal to the constexprs ``D``, ``M``, ``S_OUT``, and not
    specialised on), so the compiler keeps them loops instead of unrolling them: smaller kernels
    that compile in seconds, no register spills at the Enwik8 sizes, and loops the compile-only
    estimate can weight by their trips (``triton_compile.step_instructions``). Integer sizes
    (``N``, ``B``, ...) are constexprs, so offsets are immediates; offsets are int32 unless a
    tensor reaches 2^31 elements (``WIDE``). Tables and weights are padded to their tiles (the
    in-table to a power of two, the out-table to whole chunks, ``W1`` / ``W2`` rows with zeros), so
    the kernels read them without masks.

Sources
    The synapses of a layer read *source rows*: rows ``0 .. N-1`` are the neurons' outputs at
    ``t - 1`` times the recurrent dropout mask, rows ``N .. N+C-1`` (Rows input) the input at ``t``
    times its dropout mask. They live in one buffer ``U [T + 1, N + C, B]``: the input rows are
    copied in once (one elementwise pass), the forward step writes ``U[t + 1, n]`` as it makes
    ``y_t``. Each (neuron, branch) reads its synapses from a padded table ``[N D, S_in]`` of source
    rows (-1 for padding) and weights, in one ``[S_in, BB]`` gather per branch.

Gradients inside the backward kernel
    The backward step reads ``g_beta`` of step ``t + 1`` (every item's, hence the barrier) through
    the transposed table ``[N + C, S_out]`` (target column, weight) to form the recurrence's
    gradient into ``y_t``, a gather, without atomics. The synapse weights' gradient
    ``g_w[s] = sum_{t, b} g_beta[t, target(s), b] U[t, src(s), b]`` is accumulated by the item that
    owns the target, per lane, in a buffer ``[N D S_in, B]`` (no ``[T, S, B]`` temporary), and
    likewise the per-neuron gradients of ``wy``, bias, gain and kappa ``[N, ., B]``; the wrapper
    sums the lanes. The input rows' gradient (Rows, when the input needs one) is a gather of
    ``g_beta_all`` by :func:`_source_grad_kernel` after the loop (which also gives the gradient into
    the initial outputs). The MLP weights' gradients stay
    GEMMs over ``T * B`` in the autograd Function (``elm_sequence``).

Everything runs in the dtype of the inputs (float32 or float64); constants that must keep full
precision come in a small tensor. :func:`compile_key` gives a call's constexprs and ``num_warps``
for the first-use check (:func:`elm_neuro.networks.engines.backends.first_use`). The compile-only
estimate of this design for the paper's presets: ``benchmarks/gpu_estimate.py``.
"""
# No ``from __future__ import annotations``: Triton 3.0's interpreter needs evaluated constexpr annotations.

import functools
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from elm_neuro.networks.engines import triton_helpers as TH
from elm_neuro.networks.engines.elm_contract import TANH_GAIN, Grads, OutGrads, Recurrent, Saved, Spec, State, Weights
from elm_neuro.networks.engines.inputs import Drive, Rows

TAKES = (Drive, Rows)

MIN_ITEM_SAMPLES = 8  # a work item's samples: at least (small batches)
MAX_ITEM_SAMPLES = 32  # and at most (large ones: one sample per lane)
OUT_CHUNK = 32  # a source row's outgoing synapses are gathered in chunks of this many
SCHEDULERS = 132 * 4  # warp schedulers of an H100 SXM (132 SMs x 4): what the item size aims to fill
PROGRAMS_PER_SM = 4  # resident programs per SM the persistent grid counts on (small programs: 1-4 warps)
# integer arguments Triton must not specialise on (see _fwd_step)
_NO_SPEC = ["SSTRIDE", "DLOOP", "MLOOP", "SLOOP"]
# None: persistent kernels on CUDA, one launch per step elsewhere (the interpreter); True / False force
PERSISTENT: Optional[bool] = None


def _p2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


# --------------------------------------------------------------------------- device helpers
@triton.jit
def _grid_barrier(bar_ptr, target):
    """Wait until ``target`` arrivals have been counted at ``bar_ptr`` (this program's included):
    every program's stores before its arrival are then visible here."""
    tl.debug_barrier()  # the whole program has stored its step
    tl.atomic_add(bar_ptr, 1, sem="release", scope="gpu")
    seen = tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu")
    while seen < target:
        seen = tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu")
    tl.debug_barrier()


@triton.jit
def _item(t, item, SSTRIDE, NSB: tl.constexpr, B: tl.constexpr, BB: tl.constexpr, WIDE: tl.constexpr):
    """``(t, n, samples, in-batch mask)`` of work item ``item`` (neuron ``item // NSB``, sample block
    ``item % NSB``) at step ``t``; ``t`` and ``n`` in int64 only when ``WIDE`` (a tensor of 2^31
    elements or more). SSTRIDE (= BB) is a runtime value on purpose: an offset of known alignment
    would let Triton vectorise the sample axis, and the lanes would then split the hidden units
    (sums across lanes)."""
    n = item // NSB
    b = (item % NSB) * SSTRIDE + tl.arange(0, BB)
    if WIDE:
        tt = tl.cast(t, tl.int64)
        nn = tl.cast(n, tl.int64)
    else:
        tt = t
        nn = n
    return tt, nn, b, b < B


# --------------------------------------------------------------------------- forward step
@triton.jit
def _fwd_step(t, item, drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
              beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr,
              w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
              SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
              WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
              S_IN: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr, BS: tl.constexpr,
              BB: tl.constexpr, MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr,
              HP: tl.constexpr, HAS_DRIVE: tl.constexpr, HAS_SYN: tl.constexpr, WRITE_U: tl.constexpr):
    """Step ``t`` of work item ``item`` (neuron ``item // NSB``, sample block ``item % NSB``)."""
    t64, n64, b, bok = _item(t, item, SSTRIDE, NSB, B, BB, WIDE)
    DM: tl.constexpr = D + M
    ar_h = tl.arange(0, BH1)
    hok = ar_h < H1
    ar_s = tl.arange(0, BS)
    ar_o = tl.arange(0, BO)
    ook = ar_o < O
    # ---- first MLP layer over the branch drives and the decayed memory, one input at a time
    acc = tl.load(b1_ptr + n64 * H1 + ar_h, mask=hok, other=0.0)[:, None] + tl.zeros([BH1, BB], beta_ptr.dtype.element_ty)
    for k in range(DLOOP):  # DLOOP == D (module docstring: loop bounds)
        if HAS_DRIVE:
            xk = tl.load(drive_ptr + t64 * sd_t + n64 * sd_n + k * sd_d + b * sd_b, mask=bok, other=0.0)
        else:
            xk = tl.zeros([BB], beta_ptr.dtype.element_ty)
        if HAS_SYN:
            row = (n64 * D + k) * S_IN + ar_s  # the table is S_IN == BS wide (padded: src -1, weight 0)
            src = tl.load(src_tab_ptr + row)
            wv = tl.load(w_tab_ptr + row)
            uv = tl.load(u_ptr + (t64 * NS + src[:, None]) * B + b[None, :], mask=(src[:, None] >= 0) & bok[None, :],
                         other=0.0)
            xk += tl.sum(wv[:, None] * uv, axis=0)
        tl.store(beta_ptr + ((t64 * N + n64) * D + k) * B + b, xk, mask=bok)
        w1c = tl.load(w1t_ptr + (n64 * DM + k) * BH1 + ar_h)  # rows padded to BH1 with zeros
        acc += w1c[:, None] * xk[None, :]
    for j in range(MLOOP):  # MLOOP == M
        md = tl.load(kappa_ptr + n64 * M + j) * tl.load(m_ptr + ((t64 * N + n64) * M + j) * B + b, mask=bok, other=0.0)
        w1c = tl.load(w1t_ptr + (n64 * DM + D + j) * BH1 + ar_h)
        acc += w1c[:, None] * md[None, :]
    if TWO:
        tl.store(a1_ptr + ((t64 * N + n64) * H1 + ar_h[:, None]) * B + b[None, :], acc,
                 mask=hok[:, None] & bok[None, :])
        act = TH.mlp_act(acc, MLP_ACT)
    # ---- second layer, memory update and readout, one memory unit at a time
    p = tl.zeros([BO, BB], beta_ptr.dtype.element_ty)
    zab = tl.zeros([BB], beta_ptr.dtype.element_ty)
    tg = tl.load(cst_ptr + 2)
    for j in range(MLOOP):  # MLOOP == M
        if TWO:
            w2r = tl.load(w2_ptr + (n64 * M + j) * BH + tl.arange(0, BH))  # rows padded to BH with zeros
            z = tl.sum(w2r[:, None] * act, axis=0) + tl.load(b2_ptr + n64 * M + j)
        else:
            z = tl.sum(tl.where(ar_h[:, None] == j, acc, 0.0), axis=0)  # z = a (H1 == M)
        tl.store(z_ptr + ((t64 * N + n64) * M + j) * B + b, z, mask=bok)
        zab += tl.abs(z)
        md = tl.load(kappa_ptr + n64 * M + j) * tl.load(m_ptr + ((t64 * N + n64) * M + j) * B + b, mask=bok,
                                                         other=0.0)
        mn = md + tl.load(gain_ptr + n64 * M + j) * TH.tanh(tg * z)
        tl.store(m_ptr + (((t64 + 1) * N + n64) * M + j) * B + b, mn, mask=bok)
        wyc = tl.load(wy_ptr + (n64 * O + ar_o) * M + j, mask=ook, other=0.0)
        p += wyc[:, None] * mn[None, :]
    zoff = n64 * B + b
    tl.store(zabs_ptr + zoff, tl.load(zabs_ptr + zoff, mask=bok, other=0.0) + zab, mask=bok)
    ob = ook[:, None] & bok[None, :]
    if HP:
        hoff = (n64 * O + ar_o[:, None]) * B + b[None, :]
        hs = tl.load(h_ptr + hoff, mask=ob, other=0.0)
        hs = hs + tl.load(cst_ptr + 1) * (p - hs)
        tl.store(h_ptr + hoff, hs, mask=ob)
        p = p - hs
    pre = p + tl.load(bias_ptr + n64 * O + ar_o, mask=ook, other=0.0)[:, None]
    tl.store(pre_ptr + ((t64 * N + n64) * O + ar_o[:, None]) * B + b[None, :], pre, mask=ob)
    if OUT_ACT == 1:
        yo = tl.maximum(pre, 0.0)
    else:
        yo = pre
    tl.store(y_ptr + (((t64 + 1) * N + n64) * O + ar_o[:, None]) * B + b[None, :], yo, mask=ob)
    if WRITE_U:  # the next step's source row of this neuron: y_t[n, 0] times the recurrent mask
        y0 = tl.sum(tl.where(ar_o[:, None] == 0, yo, 0.0), axis=0)
        rm = tl.load(rmask_ptr + n64 * B + b, mask=bok, other=0.0)
        tl.store(u_ptr + ((t64 + 1) * NS + n64) * B + b, y0 * rm, mask=bok)


@triton.jit(do_not_specialize=_NO_SPEC)
def _fwd_stepped(t, drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
                 beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr,
                 w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
                 SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
                 WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                 S_IN: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr, BS: tl.constexpr,
                 BB: tl.constexpr, MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr,
                 HP: tl.constexpr, HAS_DRIVE: tl.constexpr, HAS_SYN: tl.constexpr, WRITE_U: tl.constexpr):
    """One time step ``t``, one program per work item."""
    _fwd_step(t, tl.program_id(0), drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
              beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr,
              w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
              SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NS, NSB, WIDE, D, M, H1, H, O, S_IN, BH1, BH, BO, BS, BB, MLP_ACT, OUT_ACT, TWO, HP, HAS_DRIVE,
              HAS_SYN, WRITE_U)


@triton.jit(do_not_specialize=_NO_SPEC)
def _fwd_persistent(T, ITEMS, bar_ptr, drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
                    beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr,
                    w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
                    SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
                    WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                    S_IN: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr, BS: tl.constexpr,
                    BB: tl.constexpr, MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr,
                    HP: tl.constexpr, HAS_DRIVE: tl.constexpr, HAS_SYN: tl.constexpr, WRITE_U: tl.constexpr):
    """The whole sequence: every program takes the items ``pid, pid + P, ...`` of each step, then
    waits at the grid barrier (all ``P`` programs resident)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    for t in range(T):
        for item in range(pid, ITEMS, nprog):
            _fwd_step(t, item, drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
                      beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr,
                      w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
                      SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NS, NSB, WIDE, D, M, H1, H, O, S_IN, BH1, BH, BO, BS, BB, MLP_ACT, OUT_ACT, TWO, HP,
                      HAS_DRIVE, HAS_SYN, WRITE_U)
        if WRITE_U:
            if t + 1 < T:
                _grid_barrier(bar_ptr, nprog * (t + 1))


# --------------------------------------------------------------------------- backward step
@triton.jit
def _bwd_step(t, item, T, gy_ptr, u_ptr, src_tab_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
              m_ptr, a1_ptr, z_ptr, pre_ptr,
              gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
              acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr, acc_w_ptr,
              w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr,
              SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
              WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
              S_IN: tl.constexpr, S_OUT: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr,
              BS: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr, MLP_ACT: tl.constexpr,
              OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr, HAS_SYN: tl.constexpr,
              HAS_REC: tl.constexpr):
    """Reverse step ``t`` of work item ``item``: reads ``g_beta_all[t + 1]`` of every neuron."""
    t64, n64, b, bok = _item(t, item, SSTRIDE, NSB, B, BB, WIDE)
    DM: tl.constexpr = D + M
    ar_h = tl.arange(0, BH1)
    hok = ar_h < H1
    ar_o = tl.arange(0, BO)
    ook = ar_o < O
    ob = ook[:, None] & bok[None, :]
    tg = tl.load(cst_ptr + 2)
    # ---- gradient into y_t: the loss's, plus the recurrence's (step t + 1 read y_t through the synapses)
    g_pre = tl.load(gy_ptr + ((t64 * N + n64) * O + ar_o[:, None]) * B + b[None, :], mask=ob, other=0.0)
    if HAS_REC:
        if t + 1 < T:
            g_rec = tl.zeros([BB], gbeta_ptr.dtype.element_ty)
            for s0 in range(0, SLOOP, BSO):  # the outgoing synapses in chunks of BSO (SLOOP == S_OUT)
                ar_so = s0 + tl.arange(0, BSO)  # the table is S_OUT wide, a multiple of BSO (padded)
                tgt = tl.load(tgt_tab_ptr + n64 * S_OUT + ar_so)
                wo = tl.load(wo_tab_ptr + n64 * S_OUT + ar_so)
                gb = tl.load(gbeta_ptr + ((t64 + 1) * N * D + tgt[:, None]) * B + b[None, :],
                             mask=(tgt[:, None] >= 0) & bok[None, :], other=0.0)
                g_rec += tl.sum(wo[:, None] * gb, axis=0)
            g_rec = g_rec * tl.load(rmask_ptr + n64 * B + b, mask=bok, other=0.0)
            g_pre += tl.where(ar_o[:, None] == 0, g_rec[None, :], 0.0)
    pre = tl.load(pre_ptr + ((t64 * N + n64) * O + ar_o[:, None]) * B + b[None, :], mask=ob, other=0.0)
    if OUT_ACT == 1:
        g_pre = tl.where(pre > 0, g_pre, 0.0)
    boff = (n64 * O + ar_o[:, None]) * B + b[None, :]
    tl.store(acc_bias_ptr + boff, tl.load(acc_bias_ptr + boff, mask=ob, other=0.0) + g_pre, mask=ob)
    if HP:
        g_hh = tl.load(gh_ptr + boff, mask=ob, other=0.0) - g_pre
        g_rho = g_pre + tl.load(cst_ptr + 1) * g_hh
        tl.store(gh_ptr + boff, tl.load(cst_ptr) * g_hh, mask=ob)
    else:
        g_rho = g_pre
    # ---- readout, memory update and second layer, one memory unit at a time
    ga = tl.zeros([BH1, BB], gbeta_ptr.dtype.element_ty)
    g_zabs = tl.load(gzabs_ptr + n64 * B + b, mask=bok, other=0.0)
    for j in range(MLOOP):  # MLOOP == M
        m_t = tl.load(m_ptr + (((t64 + 1) * N + n64) * M + j) * B + b, mask=bok, other=0.0)
        woff = ((n64 * O + ar_o[:, None]) * M + j) * B + b[None, :]
        tl.store(acc_wy_ptr + woff, tl.load(acc_wy_ptr + woff, mask=ob, other=0.0) + g_rho * m_t[None, :], mask=ob)
        wyc = tl.load(wy_ptr + (n64 * O + ar_o) * M + j, mask=ook, other=0.0)
        moff = (n64 * M + j) * B + b
        g_m = tl.load(gm_ptr + moff, mask=bok, other=0.0) + tl.sum(wyc[:, None] * g_rho, axis=0)
        tl.store(gm_ptr + moff, g_m, mask=bok)  # read again below, with the MLP's share
        z = tl.load(z_ptr + ((t64 * N + n64) * M + j) * B + b, mask=bok, other=0.0)
        th = TH.tanh(tg * z)
        tl.store(acc_gain_ptr + moff, tl.load(acc_gain_ptr + moff, mask=bok, other=0.0) + g_m * th, mask=bok)
        sgn = tl.where(z > 0, 1.0, tl.where(z < 0, -1.0, 0.0)).to(z.dtype)
        gz = g_m * tl.load(gain_ptr + n64 * M + j) * tg * (1.0 - th * th) + g_zabs * sgn
        if TWO:
            tl.store(gz_ptr + ((t64 * N + n64) * M + j) * B + b, gz, mask=bok)
            w2r = tl.load(w2_ptr + (n64 * M + j) * BH + ar_h)  # BH == BH1, rows padded
            ga += w2r[:, None] * gz[None, :]
        else:
            ga += tl.where(ar_h[:, None] == j, gz[None, :], 0.0)
    tl.debug_barrier()  # g_m stored above is read below, maybe by another lane of the program
    hb = hok[:, None] & bok[None, :]
    if TWO:
        a1 = tl.load(a1_ptr + ((t64 * N + n64) * H1 + ar_h[:, None]) * B + b[None, :], mask=hb, other=0.0)
        ga = ga * TH.mlp_act_grad(a1, MLP_ACT)
    tl.store(ga_ptr + ((t64 * N + n64) * H1 + ar_h[:, None]) * B + b[None, :], ga, mask=hb)
    # ---- first layer: the branch drives' gradient and the synapse weights' (per lane)
    for k in range(DLOOP):  # DLOOP == D (module docstring: loop bounds)
        w1c = tl.load(w1t_ptr + (n64 * DM + k) * BH1 + ar_h)
        gbk = tl.sum(w1c[:, None] * ga, axis=0)
        tl.store(gbeta_ptr + ((t64 * N + n64) * D + k) * B + b, gbk, mask=bok)
        if HAS_SYN:
            ar_s = tl.arange(0, BS)
            row = (n64 * D + k) * S_IN + ar_s
            src = tl.load(src_tab_ptr + row)
            ok = (src[:, None] >= 0) & bok[None, :]
            uv = tl.load(u_ptr + (t64 * NS + src[:, None]) * B + b[None, :], mask=ok, other=0.0)
            aoff = row[:, None] * B + b[None, :]
            tl.store(acc_w_ptr + aoff, tl.load(acc_w_ptr + aoff, mask=ok, other=0.0) + gbk[None, :] * uv, mask=ok)
    for j in range(MLOOP):  # MLOOP == M
        w1c = tl.load(w1t_ptr + (n64 * DM + D + j) * BH1 + ar_h)
        moff = (n64 * M + j) * B + b
        g_md = tl.load(gm_ptr + moff, mask=bok, other=0.0) + tl.sum(w1c[:, None] * ga, axis=0)
        m_prev = tl.load(m_ptr + ((t64 * N + n64) * M + j) * B + b, mask=bok, other=0.0)
        tl.store(acc_kappa_ptr + moff, tl.load(acc_kappa_ptr + moff, mask=bok, other=0.0) + g_md * m_prev, mask=bok)
        tl.store(gm_ptr + moff, tl.load(kappa_ptr + n64 * M + j) * g_md, mask=bok)


@triton.jit(do_not_specialize=_NO_SPEC)
def _bwd_stepped(t, T, gy_ptr, u_ptr, src_tab_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
                 m_ptr, a1_ptr, z_ptr, pre_ptr,
                 gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                 acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr, acc_w_ptr,
                 w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr,
                 SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
                 WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                 S_IN: tl.constexpr, S_OUT: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr,
                 BS: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr, MLP_ACT: tl.constexpr,
                 OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr, HAS_SYN: tl.constexpr,
                 HAS_REC: tl.constexpr):
    """One reverse step ``t``, one program per work item."""
    _bwd_step(t, tl.program_id(0), T, gy_ptr, u_ptr, src_tab_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
              m_ptr, a1_ptr, z_ptr, pre_ptr, gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
              acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr, acc_w_ptr,
              w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr, SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NS, NSB, WIDE,
              D, M, H1, H, O, S_IN, S_OUT, BH1, BH, BO, BS, BSO, BB, MLP_ACT, OUT_ACT, TWO, HP, HAS_SYN, HAS_REC)


@triton.jit(do_not_specialize=_NO_SPEC)
def _bwd_persistent(T, ITEMS, bar_ptr, gy_ptr, u_ptr, src_tab_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
                    m_ptr, a1_ptr, z_ptr, pre_ptr,
                    gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                    acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr, acc_w_ptr,
                    w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr,
                    SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
                    WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                    S_IN: tl.constexpr, S_OUT: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr,
                    BO: tl.constexpr, BS: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr,
                    MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr,
                    HAS_SYN: tl.constexpr, HAS_REC: tl.constexpr):
    """The whole reverse sequence with a grid barrier after each step (as :func:`_fwd_persistent`)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    for i in range(T):
        t = T - 1 - i
        for item in range(pid, ITEMS, nprog):
            _bwd_step(t, item, T, gy_ptr, u_ptr, src_tab_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
                      m_ptr, a1_ptr, z_ptr, pre_ptr, gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                      acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr, acc_w_ptr,
                      w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr, SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NS, NSB, WIDE,
                      D, M, H1, H, O, S_IN, S_OUT, BH1, BH, BO, BS, BSO, BB, MLP_ACT, OUT_ACT, TWO, HP, HAS_SYN,
                      HAS_REC)
        if HAS_REC:
            if i + 1 < T:
                _grid_barrier(bar_ptr, nprog * (i + 1))


# --------------------------------------------------------------------------- gathers after the loop
@triton.jit(do_not_specialize=["row0", "t_src"])
def _source_grad_kernel(gbeta_ptr, tgt_tab_ptr, wo_tab_ptr, mask_ptr, out_ptr, row0, t_src, B, ND,
                        S_OUT: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr):
    """``out[r, b] = mask[r, b] * sum_j w[row0 + r, j] g_beta_all[t_src, target(row0 + r, j), b]`` for
    source rows ``row0 .. row0 + rows - 1``: the gradient into a source row (program ``(r, block)``)."""
    r = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    bok = b < B
    r64 = tl.cast(row0 + r, tl.int64)
    g = tl.zeros([BB], gbeta_ptr.dtype.element_ty)
    for s0 in range(0, S_OUT, BSO):
        ar = s0 + tl.arange(0, BSO)
        tgt = tl.load(tgt_tab_ptr + r64 * S_OUT + ar)
        wo = tl.load(wo_tab_ptr + r64 * S_OUT + ar)
        gb = tl.load(gbeta_ptr + (tl.cast(t_src, tl.int64) * ND + tgt[:, None]) * B + b[None, :],
                     mask=(tgt[:, None] >= 0) & bok[None, :], other=0.0)
        g += tl.sum(wo[:, None] * gb, axis=0)
    g = g * tl.load(mask_ptr + tl.cast(r, tl.int64) * B + b, mask=bok, other=0.0)
    tl.store(out_ptr + tl.cast(r, tl.int64) * B + b, g, mask=bok)


# --------------------------------------------------------------------------- host side
def _elem_ok(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"elm_triton_grid computes in float32 or float64, not {dtype} "
                        "(elm_contract.unsupported_reason sends such layers to the per-step path)")


def _lanes(n: int, bsz: int) -> tuple[int, int]:
    """``(BB, num_warps)``: a work item's samples and warps. One warp per item; as few samples per
    item as keep the items fewer than the GPU's schedulers (``SCHEDULERS``: 4 per SM on an H100), at
    least MIN_ITEM_SAMPLES (a warp's 32 lanes then split 4 ways over the hidden units), at most
    MAX_ITEM_SAMPLES: small batches spread over more warps, large ones amortise each warp's work
    (uniform weight loads and address arithmetic) over more samples."""
    want = triton.cdiv(n * bsz, SCHEDULERS)
    bb = min(max(_p2(want), MIN_ITEM_SAMPLES), MAX_ITEM_SAMPLES, _p2(bsz))
    return bb, 1


def _widths(rec: Recurrent, n_src: int, n: int, d: int) -> tuple[int, int]:
    """``(S_in, S_out)``: the most synapses on one (neuron, branch) and from one source row; from the
    CSR when it counted them, else counted here (a host synchronisation); at least 1."""
    if not rec.count:
        return 1, 1
    s_in = rec.in_width if rec.in_width is not None else int(torch.bincount(rec.flat, minlength=n * d).max())
    s_out = rec.out_width if rec.out_width is not None else int(torch.bincount(rec.src, minlength=n_src).max())
    return max(s_in, 1), max(s_out, 1)


def _table(keys: torch.Tensor, values: torch.Tensor, rec_w: torch.Tensor, rows: int, width: int):
    """A padded table ``[rows, width]`` of ``values`` (-1 padding) and ``rec_w`` (0 padding) by
    ``keys``, and each synapse's slot in it (flat index)."""
    slot = keys * width + TH.slots(keys, rows)
    idx = torch.full((rows * width,), -1, dtype=torch.int32, device=keys.device)
    w = torch.zeros(rows * width, dtype=rec_w.dtype, device=keys.device)
    idx[slot] = values.to(torch.int32)
    w[slot] = rec_w
    return idx, w, slot


class _Layout:
    """A call's sizes and constexprs."""

    def __init__(self, rec: Recurrent, w: Weights, n: int, m: int, o: int, bsz: int, n_rows: int, spec: Spec,
                 has_drive: bool, steps: int):
        d = w.W1.shape[2] - m
        self.n, self.d, self.m, self.o, self.bsz, self.n_rows = n, d, m, o, bsz, n_rows
        self.h1 = w.W1.shape[1]
        self.h = w.W2.shape[2] if spec.two_layers else 1
        self.ns = n + n_rows
        s_in, s_out = _widths(rec, self.ns, n, d)
        # padded table widths: the in-table to a power of two (one tile per branch), the out-table to a
        # multiple of its chunk; the kernels read them without masks
        self.s_in = _p2(s_in)
        self.bso = min(_p2(s_out), OUT_CHUNK)
        self.s_out = triton.cdiv(s_out, self.bso) * self.bso
        self.bb, self.num_warps = _lanes(n, bsz)
        self.nsb = triton.cdiv(bsz, self.bb)
        self.items = n * self.nsb
        # int64 offsets only when some tensor the kernels index reaches 2^31 elements (else int32: half the
        # address arithmetic); a drive's strides may reach further than its elements (any view): its
        # extent counts
        largest = max((steps + 1) * self.ns * bsz, (steps + 1) * n * max(d, self.h1, m, o) * bsz,
                      n * d * self.s_in * bsz)
        self.wide = largest >= 2 ** 31 - 1
        has_syn = rec.count > 0
        if not has_drive and has_syn:  # Rows: which synapses read neurons (the CSR counted it; else a host sync)
            self.own = rec.own if rec.own is not None else int((rec.src < n).sum())
        else:
            self.own = rec.count
        common = dict(D=d, M=m, H1=self.h1, H=self.h, O=o, S_IN=self.s_in, BH1=_p2(self.h1),
                      BH=_p2(self.h1) if spec.two_layers else 1, BO=_p2(o), BS=_p2(self.s_in), BB=self.bb,
                      MLP_ACT=spec.mlp_act, OUT_ACT=spec.out_act, TWO=bool(spec.two_layers), HP=bool(spec.high_pass),
                      HAS_SYN=has_syn)
        # WRITE_U / HAS_REC: some synapse reads a neuron, so the step writes its neuron's source row,
        # the backward gathers the recurrence's gradient, and the persistent kernel waits for every
        # program after each step (without, the items are independent through time: no barrier)
        rec_ = self.own > 0
        self.fwd = dict(common, HAS_DRIVE=has_drive, WRITE_U=rec_)
        self.bwd = dict(common, S_OUT=self.s_out, BSO=self.bso, HAS_REC=rec_)


def _persistent(device: torch.device) -> bool:
    if PERSISTENT is not None:
        return PERSISTENT
    return device.type == "cuda" and os.environ.get("TRITON_INTERPRET") != "1"


@functools.lru_cache(maxsize=8)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _programs(items: int, device: torch.device) -> int:
    """The persistent grid: every item's program resident at once (at most ``SM count x PROGRAMS_PER_SM``).
    Off CUDA (Triton's interpreter, which runs programs one after another) one program, which takes
    every item of a step and passes each grid barrier on its own arrival."""
    if device.type != "cuda":
        return 1
    return max(1, min(items, _sm_count(device.index or 0) * PROGRAMS_PER_SM))


def _sources(inp, rec: Recurrent, mask_rec: torch.Tensor, y_all: Optional[torch.Tensor], steps: int, n: int,
             bsz: int, dtype) -> torch.Tensor:
    """The source rows ``U [T + 1, N + C, B]`` (module docstring): the input rows times their mask
    (Rows), and, given ``y_all``, the neurons' rows of every step (the backward rebuilds them)."""
    n_rows = inp.x.shape[1] if isinstance(inp, Rows) else 0
    u = torch.empty(steps + 1, n + n_rows, bsz, dtype=dtype, device=mask_rec.device)
    if n_rows:
        torch.mul(inp.x, inp.mask, out=u[:steps, n:])
        u[steps, n:] = 0
    if y_all is not None:
        torch.mul(y_all[:, :, 0], mask_rec, out=u[:, :n])
    return u


def compile_key(inp, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> tuple:
    """A call's constexprs (forward, the backward's where they differ, ``bwd_``), ``num_warps`` and
    the launch form (the first-use check's cache key)."""
    n, m, bsz = s.m.shape
    lay = _Layout(rec, w, n, m, s.y.shape[1], bsz, inp.x.shape[1] if isinstance(inp, Rows) else 0, spec,
                  isinstance(inp, Drive), _steps(inp))
    return tuple(sorted(lay.fwd.items())) + tuple((f"bwd_{k}", v) for k, v in sorted(lay.bwd.items())
                                                  if lay.fwd.get(k) != v) \
        + (("num_warps", lay.num_warps), ("persistent", _persistent(mask_rec.device)))


def _constants(spec: Spec, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``kr, 1 - kr, 2/3`` of the step on ``device`` (full precision, made once per value)."""
    kr = float(spec.kr)
    return TH.device_constants((kr, 1.0 - kr, TANH_GAIN), dtype, device)


def _steps(inp) -> int:
    return inp.drive.shape[0] if isinstance(inp, Drive) else inp.x.shape[0]


def _w1t(w: Weights) -> torch.Tensor:
    """``W1`` as ``[N, D + M, BH1]``: a column of W1 contiguous, padded with zeros to the tile (aligned
    vector loads, no masks)."""
    n, h1, dm = w.W1.shape
    out = w.W1.new_zeros(n, dm, _p2(h1))
    out[:, :, :h1] = w.W1.transpose(1, 2)
    return out


def _w2p(w: Weights) -> torch.Tensor:
    """``W2`` ``[N, M, H]`` padded with zeros to ``[N, M, BH]``."""
    n, m, h = w.W2.shape
    out = w.W2.new_zeros(n, m, _p2(h))
    out[:, :, :h] = w.W2
    return out


def forward(inp, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> Saved:
    """The kernel contract's forward (``elm_contract.forward_torch``) over the whole GPU."""
    n, m, bsz = s.m.shape
    o = s.y.shape[1]
    dtype, dev = s.m.dtype, s.m.device
    _elem_ok(dtype)
    is_drive = isinstance(inp, Drive)
    steps = _steps(inp)
    lay = _Layout(rec, w, n, m, o, bsz, 0 if is_drive else inp.x.shape[1], spec, is_drive, steps)
    if is_drive and inp.drive.numel():
        lay.wide = lay.wide or sum((k - 1) * st for k, st in zip(inp.drive.shape, inp.drive.stride())) >= 2 ** 31 - 1
    d = lay.d
    y_all = s.y.new_empty((steps + 1, n, o, bsz))
    m_all = s.m.new_empty((steps + 1, n, m, bsz))
    y_all[0], m_all[0] = s.y, s.m
    beta_all = s.m.new_empty(steps, n, d, bsz)
    a1_all = s.m.new_empty(steps, n, lay.h1, bsz) if spec.two_layers else None
    z_all = s.m.new_empty(steps, n, m, bsz)
    pre_all = s.m.new_empty(steps, n, o, bsz)
    zabs = s.m.new_zeros(n, bsz)
    h_T = s.h.clone().contiguous() if spec.high_pass else None
    mask_rec = mask_rec.to(dtype).contiguous()
    u = _sources(inp, rec, mask_rec, None, steps, n, bsz, dtype)
    u[0, :n] = s.y[:, 0] * mask_rec
    dummy = s.m.new_zeros(1)
    if rec.count:
        src_tab, w_tab, _ = _table(rec.flat, rec.src, w.rec_w.to(dtype), n * d, lay.s_in)
    else:
        src_tab, w_tab = torch.full((1,), -1, dtype=torch.int32, device=dev), dummy
    drive = inp.drive if is_drive else dummy
    sd = drive.stride() if is_drive else (0, 0, 0, 0)
    two = spec.two_layers
    args = dict(drive_ptr=drive, sd_t=sd[0], sd_n=sd[1], sd_d=sd[2], sd_b=sd[3], u_ptr=u, src_tab_ptr=src_tab,
                w_tab_ptr=w_tab, rmask_ptr=mask_rec, beta_ptr=beta_all, y_ptr=y_all, m_ptr=m_all,
                a1_ptr=a1_all if two else dummy, z_ptr=z_all, pre_ptr=pre_all, h_ptr=h_T if h_T is not None else dummy,
                zabs_ptr=zabs, w1t_ptr=_w1t(w), b1_ptr=w.b1, w2_ptr=_w2p(w) if two else dummy,
                b2_ptr=w.b2 if two else dummy, wy_ptr=w.wy, bias_ptr=w.bias, kappa_ptr=w.kappa, gain_ptr=w.gain,
                cst_ptr=_constants(spec, dtype, dev), SSTRIDE=lay.bb, DLOOP=lay.d, MLOOP=lay.m, SLOOP=lay.s_out, N=n, B=bsz, NS=lay.ns, NSB=lay.nsb, WIDE=lay.wide,
                num_warps=lay.num_warps, **lay.fwd)
    if steps:
        if _persistent(dev):
            grid = _programs(lay.items, dev)
            bar = torch.zeros(1, dtype=torch.int32, device=dev)
            _fwd_persistent[(grid,)](T=steps, ITEMS=lay.items, bar_ptr=bar, **args)
        else:
            for t in range(steps):
                _fwd_stepped[(lay.items,)](t=t, **args)
    return Saved(y_all, m_all, beta_all, a1_all, z_all, pre_all, h_T, zabs)


def backward(saved: Saved, inp, rec: Recurrent, mask_rec, w: Weights, g: OutGrads, spec: Spec,
             want_input_grad: bool = True) -> Grads:
    """The kernel contract's backward (``elm_contract.backward_torch``) over the whole GPU, with the
    synapse weights' gradient ``g_rec_w`` (input synapses included, Rows) and, for Rows when
    ``want_input_grad``, the input rows' gradient ``g_x_rows``."""
    steps, n, d, bsz = saved.beta_all.shape
    m, o = saved.m_all.shape[2], saved.y_all.shape[2]
    dtype, dev = saved.z_all.dtype, saved.z_all.device
    is_drive = isinstance(inp, Drive)
    n_rows = 0 if is_drive else inp.x.shape[1]
    lay = _Layout(rec, w, n, m, o, bsz, n_rows, spec, is_drive, steps)
    two = spec.two_layers
    mask_rec = mask_rec.to(dtype).contiguous()
    g_beta_all = torch.empty_like(saved.beta_all)
    ga_all = torch.empty(steps, n, lay.h1, bsz, dtype=dtype, device=dev)
    gz_all = torch.empty_like(saved.z_all) if two else None
    g_m = g.g_mT.to(dtype).clone().contiguous()
    g_h = g.g_hT.to(dtype).clone().contiguous() if spec.high_pass else None
    acc_wy = torch.zeros(n, o, m, bsz, dtype=dtype, device=dev)
    acc_bias = torch.zeros(n, o, bsz, dtype=dtype, device=dev)
    acc_gain = torch.zeros(n, m, bsz, dtype=dtype, device=dev)
    acc_kappa = torch.zeros(n, m, bsz, dtype=dtype, device=dev)
    dummy = torch.zeros(1, dtype=dtype, device=dev)
    none_i = torch.full((1,), -1, dtype=torch.int32, device=dev)
    if rec.count:
        rec_w = w.rec_w.to(dtype)
        src_tab, _, in_slot = _table(rec.flat, rec.src, rec_w, n * d, lay.s_in)
        tgt_tab, wo_tab, _ = _table(rec.src, rec.flat, rec_w, lay.ns, lay.s_out)
        u = _sources(inp, rec, mask_rec, saved.y_all, steps, n, bsz, dtype)
        acc_w = torch.zeros(n * d * lay.s_in, bsz, dtype=dtype, device=dev)
    else:
        src_tab = tgt_tab = none_i
        wo_tab = u = acc_w = dummy
    args = dict(gy_ptr=g.gy.to(dtype).contiguous(), u_ptr=u, src_tab_ptr=src_tab, tgt_tab_ptr=tgt_tab,
                wo_tab_ptr=wo_tab, rmask_ptr=mask_rec, m_ptr=saved.m_all, a1_ptr=saved.a1_all if two else dummy,
                z_ptr=saved.z_all, pre_ptr=saved.pre_all, gbeta_ptr=g_beta_all, ga_ptr=ga_all,
                gz_ptr=gz_all if two else dummy, gm_ptr=g_m, gh_ptr=g_h if g_h is not None else dummy,
                gzabs_ptr=g.g_zabs.to(dtype).contiguous(), acc_wy_ptr=acc_wy, acc_bias_ptr=acc_bias,
                acc_gain_ptr=acc_gain, acc_kappa_ptr=acc_kappa, acc_w_ptr=acc_w, w1t_ptr=_w1t(w),
                w2_ptr=_w2p(w) if two else dummy, wy_ptr=w.wy, kappa_ptr=w.kappa, gain_ptr=w.gain,
                cst_ptr=_constants(spec, dtype, dev), SSTRIDE=lay.bb, DLOOP=lay.d, MLOOP=lay.m, SLOOP=lay.s_out, N=n, B=bsz, NS=lay.ns, NSB=lay.nsb, WIDE=lay.wide,
                num_warps=lay.num_warps, **lay.bwd)
    if steps:
        if _persistent(dev):
            grid = _programs(lay.items, dev)
            bar = torch.zeros(1, dtype=torch.int32, device=dev)
            _bwd_persistent[(grid,)](T=steps, ITEMS=lay.items, bar_ptr=bar, **args)
        else:
            for i in range(steps):
                _bwd_stepped[(lay.items,)](t=steps - 1 - i, T=steps, **args)
    g_y0 = torch.zeros_like(saved.y_all[0])
    g_rec_w = g_x_rows = None
    if rec.count:
        srcg = dict(gbeta_ptr=g_beta_all, tgt_tab_ptr=tgt_tab, wo_tab_ptr=wo_tab, B=bsz, ND=n * d, S_OUT=lay.s_out,
                    BSO=lay.bso, BB=lay.bb, num_warps=lay.num_warps)
        if steps and lay.own:  # the recurrence's gradient into y0: step 0 read it
            g_y0_rec = torch.empty(n, bsz, dtype=dtype, device=dev)
            _source_grad_kernel[(n, lay.nsb)](mask_ptr=mask_rec, out_ptr=g_y0_rec, row0=0, t_src=0, **srcg)
            g_y0[:, 0] = g_y0_rec
        g_rec_w = acc_w.sum(-1)[in_slot]
        if n_rows and want_input_grad:
            g_x_rows = torch.empty(steps, n_rows, bsz, dtype=dtype, device=dev)
            mask_x = inp.mask.to(dtype).contiguous()
            for t in range(steps):
                _source_grad_kernel[(n_rows, lay.nsb)](mask_ptr=mask_x, out_ptr=g_x_rows[t], row0=n, t_src=t, **srcg)
    elif n_rows and want_input_grad:
        g_x_rows = torch.zeros(steps, n_rows, bsz, dtype=dtype, device=dev)
    return Grads(g_beta_all, ga_all, gz_all, acc_wy.sum(-1), acc_bias.sum(-1), acc_gain.sum(-1), acc_kappa.sum(-1),
                 g_m, g_h, g_y0, g_rec_w, None, g_x_rows=g_x_rows)
