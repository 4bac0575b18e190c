"""CUDA backend of the fused ELM sequence engine that spreads one layer over the whole GPU: each
program owns one neuron for a block of samples, and all programs step through time together.

The contract (layouts, saved tensors, gradients) is the one of
:mod:`elm_neuro.networks.engines.elm_contract`; :func:`forward` and :func:`backward` take the
arguments of ``forward_torch`` / ``backward_torch`` and return the same ``Saved`` / ``Grads``. The
input is a Drive or Rows (``TAKES``): a spiking input reaches the kernels as its rows, read through
the input synapses (a gather for every step before the time loop), not as a dense
``[B T, C] x [C, N D]`` product.

Work items
    A work item is ``(neuron n, block of BB samples)``: ``N * ceil(B / BB)`` items, each computed
    by one program of one warp with the samples across its lanes (:func:`_lanes`: 4 to 32 samples,
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
    ``y_t``. Only the synapses from neurons are read inside the time loop: each (neuron, branch)
    reads them from a padded table ``[N D, S_in]`` of source rows (-1 for padding) and weights, in
    one ``[S_in, BB]`` gather per branch. The synapses from input rows depend on no state, so
    their drive is gathered for every step at once before the loop (:func:`_input_drive_kernel`,
    into ``beta_all``), and the loop reads it as a Drive: the loop's gather shrinks to the
    recurrent share (SHD-Adding: at most 7 of 10 synapses per branch, padded to 8 instead of 16).

Readouts (PRE)
    A layer with a drive and no synapse from a neuron (a readout, Drive or Rows) needs no barrier
    and its branch drives depend on no state: the drives' share of the first MLP layer,
    ``b1 + W1[:, :D] beta_t``, is one batched product for every step on the host (``a0``), the
    loop keeps the memory's share, and the backward's ``g_beta = W1[:, :D]^T ga`` is one product
    after the loop. Without a barrier each program runs its items' whole sequences one after
    another (the item loop outside the time loop: what depends on the item alone is computed
    once per item). A readout without a hidden MLP layer (``z = a``; the presets' readouts, d_m 3)
    and few memory units and outputs (``READOUT_MAX_M`` / ``READOUT_MAX_O``) runs its own kernels
    (:func:`_readout_fwd_kernel` / :func:`_readout_bwd_kernel`): one lane per (neuron, sample),
    its memory, outputs, weights and gradient sums in the lane's registers for the whole
    sequence (SHD-Adding: 148 + 185 instructions per step against 325 + 372 in the item kernels).

Gradients
    The backward step reads ``g_beta`` of step ``t + 1`` (every item's, hence the barrier) through
    the transposed table ``[N, S_out]`` of the synapses from neurons (target column, weight) to
    form the recurrence's gradient into ``y_t``, a gather, without atomics; the per-neuron
    gradients of ``wy``, bias, gain and kappa accumulate per lane in ``[N, ., B]`` (the wrapper
    sums the lanes). Every synapse weight's gradient
    ``g_w[s] = sum_{t, b} g_beta[t, target(s), b] U[t, src(s), b]`` is reduced after the loop,
    when ``g_beta_all`` and the source rows of every step are known (:func:`_weight_grad_kernel`:
    partial sums per program over a chunk of steps and every sample, summed on the host; no
    ``[T, S, B]`` temporary): inside the loop it cost each step a second gather and a
    read-modify-write per synapse on the critical path (SHD-Adding: 540 of 2,995 instructions
    per step). The input rows' gradient (Rows, when the input needs one) and the gradient into
    the initial outputs are gathers of ``g_beta_all`` after the loop (:func:`_source_grad_kernel`).
    The MLP weights' gradients stay GEMMs over ``T * B`` in the autograd Function
    (``elm_sequence``).

Everything runs in the dtype of the inputs (float32 or float64); constants that must keep full
precision come in a small tensor. :func:`compile_key` gives a call's constexprs and ``num_warps``
for the first-use check (:func:`elm_neuro.networks.engines.backends.first_use`). The compile-only
estimate of this design for the paper's presets: ``benchmarks/gpu_estimate.py``.
"""
# No ``from __future__ import annotations``: Triton 3.0's interpreter needs evaluated constexpr annotations.

import functools
import os
from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl

from elm_neuro.networks.engines import triton_helpers as TH
from elm_neuro.networks.engines.elm_contract import TANH_GAIN, Grads, OutGrads, Recurrent, Saved, Spec, State, Weights
from elm_neuro.networks.engines.inputs import Drive, Rows

TAKES = (Drive, Rows)

MIN_ITEM_SAMPLES = 4  # a work item's samples: at least (small batches)
MAX_ITEM_SAMPLES = 32  # and at most (large ones: one sample per lane)
OUT_CHUNK = 32  # a source row's outgoing synapses are gathered in chunks of this many
SCHEDULERS = 132 * 4  # warp schedulers of an H100 SXM (132 SMs x 4): what the item size aims to fill
PROGRAMS_PER_SM = 4  # resident programs per SM the persistent grid counts on (small programs: 1-4 warps)
# a readout (PRE, no hidden MLP layer) with at most this many memory units and outputs runs one lane per
# (neuron, sample): its weights and state then sit in the lane's registers (_readout_fwd_kernel)
READOUT_MAX_M = 8
READOUT_MAX_O = 4
READOUT_LANES = 32
MAX_GRID_Z = 65535  # CUDA's limit on a grid's third dimension (the source gradients launch one program per step)
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
    (sums across lanes); ``SSTRIDE - BB`` (zero) keeps the offset unknown with one sample block too."""
    n = item // NSB
    b = (item % NSB) * SSTRIDE + tl.arange(0, BB) * (SSTRIDE - BB + 1)
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
              beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr, a0_ptr,
              w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
              SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
              WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
              S_IN: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr, BS: tl.constexpr,
              BB: tl.constexpr, MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr,
              HP: tl.constexpr, HAS_DRIVE: tl.constexpr, HAS_SYN: tl.constexpr, WRITE_U: tl.constexpr, PRE: tl.constexpr):
    """Step ``t`` of work item ``item`` (neuron ``item // NSB``, sample block ``item % NSB``)."""
    t64, n64, b, bok = _item(t, item, SSTRIDE, NSB, B, BB, WIDE)
    DM: tl.constexpr = D + M
    ar_h = tl.arange(0, BH1)
    hok = ar_h < H1
    ar_s = tl.arange(0, BS)
    ar_o = tl.arange(0, BO)
    ook = ar_o < O
    # ---- first MLP layer over the branch drives and the decayed memory, one input at a time
    if PRE:  # the branch drives' share (and the bias) came in precomputed: a0[t] = b1 + W1[:, :D] beta_t
        acc = tl.load(a0_ptr + ((t64 * N + n64) * H1 + ar_h[:, None]) * B + b[None, :],
                      mask=hok[:, None] & bok[None, :], other=0.0)
    else:
        acc = tl.load(b1_ptr + n64 * H1 + ar_h, mask=hok, other=0.0)[:, None] \
            + tl.zeros([BH1, BB], beta_ptr.dtype.element_ty)
    if not PRE:
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
                 beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr, a0_ptr,
                 w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
                 SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
                 WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                 S_IN: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr, BS: tl.constexpr,
                 BB: tl.constexpr, MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr,
                 HP: tl.constexpr, HAS_DRIVE: tl.constexpr, HAS_SYN: tl.constexpr, WRITE_U: tl.constexpr, PRE: tl.constexpr):
    """One time step ``t``, one program per work item."""
    _fwd_step(t, tl.program_id(0), drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
              beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr, a0_ptr,
              w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
              SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NS, NSB, WIDE, D, M, H1, H, O, S_IN, BH1, BH, BO, BS, BB, MLP_ACT, OUT_ACT, TWO, HP, HAS_DRIVE,
              HAS_SYN, WRITE_U, PRE)


@triton.jit(do_not_specialize=_NO_SPEC)
def _fwd_persistent(T, ITEMS, bar_ptr, drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
                    beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr, a0_ptr,
                    w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
                    SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NS: tl.constexpr, NSB: tl.constexpr,
                    WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                    S_IN: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr, BS: tl.constexpr,
                    BB: tl.constexpr, MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr,
                    HP: tl.constexpr, HAS_DRIVE: tl.constexpr, HAS_SYN: tl.constexpr, WRITE_U: tl.constexpr, PRE: tl.constexpr):
    """The whole sequence: every program takes the items ``pid, pid + P, ...`` of each step, then
    waits at the grid barrier (all ``P`` programs resident). Without synapses from neurons the items
    are independent through time: each program runs its items' whole sequences one after another,
    no barrier (and what depends on the item alone is computed once per item, not per step)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    if WRITE_U:
        for t in range(T):
            for item in range(pid, ITEMS, nprog):
                _fwd_step(t, item, drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
                          beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr, a0_ptr,
                          w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
                          SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NS, NSB, WIDE, D, M, H1, H, O, S_IN, BH1, BH, BO, BS, BB,
                          MLP_ACT, OUT_ACT, TWO, HP, HAS_DRIVE, HAS_SYN, WRITE_U, PRE)
            if t + 1 < T:
                _grid_barrier(bar_ptr, nprog * (t + 1))
    else:
        for item in range(pid, ITEMS, nprog):
            for t in range(T):
                _fwd_step(t, item, drive_ptr, sd_t, sd_n, sd_d, sd_b, u_ptr, src_tab_ptr, w_tab_ptr, rmask_ptr,
                          beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr, a0_ptr,
                          w1t_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
                          SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NS, NSB, WIDE, D, M, H1, H, O, S_IN, BH1, BH, BO, BS, BB,
                          MLP_ACT, OUT_ACT, TWO, HP, HAS_DRIVE, HAS_SYN, WRITE_U, PRE)


# --------------------------------------------------------------------------- backward step
@triton.jit
def _bwd_step(t, item, T, gy_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
              m_ptr, a1_ptr, z_ptr, pre_ptr,
              gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
              acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr,
              w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr,
              SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NSB: tl.constexpr,
              WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
              S_OUT: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr,
              BSO: tl.constexpr, BB: tl.constexpr, MLP_ACT: tl.constexpr,
              OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr,
              HAS_REC: tl.constexpr, PRE: tl.constexpr):
    """Reverse step ``t`` of work item ``item``: reads ``g_beta_all[t + 1]`` of every neuron."""
    t64, n64, b, bok = _item(t, item, SSTRIDE, NSB, B, BB, WIDE)
    DM: tl.constexpr = D + M
    ar_h = tl.arange(0, BH1)
    hok = ar_h < H1
    ar_o = tl.arange(0, BO)
    ook = ar_o < O
    ob = ook[:, None] & bok[None, :]
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
        tg = tl.load(cst_ptr + 2)
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
    # ---- first layer: the branch drives' gradient and the synapse weights' (per lane); with PRE the
    # drives' gradient is W1[:, :D]^T ga after the loop (the host)
    if not PRE:
        for k in range(DLOOP):  # DLOOP == D (module docstring: loop bounds)
            w1c = tl.load(w1t_ptr + (n64 * DM + k) * BH1 + ar_h)
            gbk = tl.sum(w1c[:, None] * ga, axis=0)
            tl.store(gbeta_ptr + ((t64 * N + n64) * D + k) * B + b, gbk, mask=bok)
    for j in range(MLOOP):  # MLOOP == M
        w1c = tl.load(w1t_ptr + (n64 * DM + D + j) * BH1 + ar_h)
        moff = (n64 * M + j) * B + b
        g_md = tl.load(gm_ptr + moff, mask=bok, other=0.0) + tl.sum(w1c[:, None] * ga, axis=0)
        m_prev = tl.load(m_ptr + ((t64 * N + n64) * M + j) * B + b, mask=bok, other=0.0)
        tl.store(acc_kappa_ptr + moff, tl.load(acc_kappa_ptr + moff, mask=bok, other=0.0) + g_md * m_prev, mask=bok)
        tl.store(gm_ptr + moff, tl.load(kappa_ptr + n64 * M + j) * g_md, mask=bok)


@triton.jit(do_not_specialize=_NO_SPEC)
def _bwd_stepped(t, T, gy_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
                 m_ptr, a1_ptr, z_ptr, pre_ptr,
                 gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                 acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr,
                 w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr,
                 SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NSB: tl.constexpr,
                 WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                 S_OUT: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr,
                 BSO: tl.constexpr, BB: tl.constexpr, MLP_ACT: tl.constexpr,
                 OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr,
                 HAS_REC: tl.constexpr, PRE: tl.constexpr):
    """One reverse step ``t``, one program per work item."""
    _bwd_step(t, tl.program_id(0), T, gy_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
              m_ptr, a1_ptr, z_ptr, pre_ptr, gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
              acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr,
              w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr, SSTRIDE, DLOOP, MLOOP, SLOOP, N, B, NSB, WIDE,
              D, M, H1, H, O, S_OUT, BH1, BH, BO, BSO, BB, MLP_ACT, OUT_ACT, TWO, HP, HAS_REC,
              PRE)


@triton.jit(do_not_specialize=_NO_SPEC)
def _bwd_persistent(T, ITEMS, bar_ptr, gy_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
                    m_ptr, a1_ptr, z_ptr, pre_ptr,
                    gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                    acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr,
                    w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr,
                    SSTRIDE, DLOOP, MLOOP, SLOOP, N: tl.constexpr, B: tl.constexpr, NSB: tl.constexpr,
                    WIDE: tl.constexpr, D: tl.constexpr, M: tl.constexpr, H1: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                    S_OUT: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr,
                    BO: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr,
                    MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr,
                    HAS_REC: tl.constexpr, PRE: tl.constexpr):
    """The whole reverse sequence with a grid barrier after each step; without synapses from neurons,
    each program's items one after another, no barrier (as :func:`_fwd_persistent`)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    if HAS_REC:
        for i in range(T):
            t = T - 1 - i
            for item in range(pid, ITEMS, nprog):
                _bwd_step(t, item, T, gy_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
                          m_ptr, a1_ptr, z_ptr, pre_ptr, gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                          acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr,
                          w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr, SSTRIDE, DLOOP, MLOOP, SLOOP, N, B,
                          NSB, WIDE, D, M, H1, H, O, S_OUT, BH1, BH, BO, BSO, BB, MLP_ACT, OUT_ACT, TWO, HP,
                          HAS_REC, PRE)
            if i + 1 < T:
                _grid_barrier(bar_ptr, nprog * (i + 1))
    else:
        for item in range(pid, ITEMS, nprog):
            for i in range(T):
                _bwd_step(T - 1 - i, item, T, gy_ptr, tgt_tab_ptr, wo_tab_ptr, rmask_ptr,
                          m_ptr, a1_ptr, z_ptr, pre_ptr, gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                          acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr,
                          w1t_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr, SSTRIDE, DLOOP, MLOOP, SLOOP, N, B,
                          NSB, WIDE, D, M, H1, H, O, S_OUT, BH1, BH, BO, BSO, BB, MLP_ACT, OUT_ACT, TWO, HP,
                          HAS_REC, PRE)


# --------------------------------------------------------------------------- readouts: one lane per (neuron, sample)
@triton.jit
def _readout_lanes(blk, ONE, kappa_ptr, gain_ptr, w1t_ptr, N: tl.constexpr, B: tl.constexpr, D: tl.constexpr,
                   M: tl.constexpr, O: tl.constexpr, BM: tl.constexpr, BO: tl.constexpr, BH1: tl.constexpr,
                   WIDE: tl.constexpr, LANES: tl.constexpr):
    """Block ``blk`` of LANES (neuron, sample) pairs, one per lane: ``(pair index, in range, sample,
    masks [BM, LANES] / [BO, LANES], rows (neuron, memory unit) / (neuron, output), kappa, gain,
    the first layer's memory columns w1m[j, i] = W1[n, j, D + i], the readout weights' offsets
    [BO, BM, LANES] and mask)``. Offsets are multiplied by ONE (1, unknown to the compiler) so that
    none is vectorised across lanes: every pair's values stay in its own lane."""
    DM: tl.constexpr = D + M
    ar_m = tl.arange(0, BM)
    ar_o = tl.arange(0, BO)
    idx = blk * LANES + tl.arange(0, LANES) * ONE
    lok = idx < N * B
    n = idx // B
    b = idx % B
    if WIDE:
        n = tl.cast(n, tl.int64)
    am = ar_m * ONE
    ao = ar_o * ONE
    mk = (ar_m[:, None] < M) & lok[None, :]
    ok = (ar_o[:, None] < O) & lok[None, :]
    row_m = n[None, :] * M + am[:, None]
    row_o = n[None, :] * O + ao[:, None]
    kap = tl.load(kappa_ptr + row_m, mask=mk, other=0.0)
    gain = tl.load(gain_ptr + row_m, mask=mk, other=0.0)
    w1m = tl.load(w1t_ptr + (n[None, None, :] * DM + D + am[None, :, None]) * BH1 + am[:, None, None],
                  mask=(ar_m[:, None, None] < M) & mk[None, :, :], other=0.0)
    wyo = (n[None, None, :] * O + ao[:, None, None]) * M + am[None, :, None]
    wok = (ar_o[:, None, None] < O) & mk[None, :, :]
    return idx, lok, b, mk, ok, row_m, row_o, kap, gain, w1m, wyo, wok


@triton.jit(do_not_specialize=["T", "ITEMS", "ONE"])
def _readout_fwd_kernel(T, ITEMS, ONE, a0_ptr, y_ptr, m_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr, w1t_ptr, wy_ptr, bias_ptr,
                        kappa_ptr, gain_ptr, cst_ptr, N: tl.constexpr, B: tl.constexpr, D: tl.constexpr,
                        M: tl.constexpr, O: tl.constexpr, BM: tl.constexpr, BO: tl.constexpr, BH1: tl.constexpr,
                        OUT_ACT: tl.constexpr, HP: tl.constexpr, WIDE: tl.constexpr, LANES: tl.constexpr):
    """The whole sequence of a readout (PRE, no hidden MLP layer: ``z = a``): each lane one
    (neuron, sample) pair with its memory units and outputs in its registers, the neuron's
    weights loaded once; blocks of LANES pairs ``pid, pid + P, ...`` one after another."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    tg = tl.load(cst_ptr + 2)
    c1 = tl.load(cst_ptr + 1)
    for blk in range(pid, ITEMS, nprog):
        idx, lok, b, mk, ok, row_m, row_o, kap, gain, w1m, wyo, wok = _readout_lanes(
            blk, ONE, kappa_ptr, gain_ptr, w1t_ptr, N, B, D, M, O, BM, BO, BH1, WIDE, LANES)
        wy = tl.load(wy_ptr + wyo, mask=wok, other=0.0)
        bias = tl.load(bias_ptr + row_o, mask=ok, other=0.0)
        m = tl.load(m_ptr + row_m * B + b[None, :], mask=mk, other=0.0)
        if HP:
            h = tl.load(h_ptr + row_o * B + b[None, :], mask=ok, other=0.0)
        zab = tl.zeros([LANES], m.dtype)
        for t in range(T):
            if WIDE:
                tt = tl.cast(t, tl.int64)
            else:
                tt = t
            md = kap * m
            zoff = (tt * N * M + row_m) * B + b[None, :]
            z = tl.load(a0_ptr + zoff, mask=mk, other=0.0) + tl.sum(w1m * md[None, :, :], axis=1)
            tl.store(z_ptr + zoff, z, mask=mk)
            zab += tl.sum(tl.abs(z), axis=0)
            m = md + gain * TH.tanh(tg * z)
            tl.store(m_ptr + zoff + N * M * B, m, mask=mk)
            p = tl.sum(wy * m[None, :, :], axis=1)
            if HP:
                h = h + c1 * (p - h)
                p = p - h
            pre = p + bias
            ooff = (tt * N * O + row_o) * B + b[None, :]
            tl.store(pre_ptr + ooff, pre, mask=ok)
            if OUT_ACT == 1:
                pre = tl.maximum(pre, 0.0)
            tl.store(y_ptr + ooff + N * O * B, pre, mask=ok)
        if HP:
            tl.store(h_ptr + row_o * B + b[None, :], h, mask=ok)
        tl.store(zabs_ptr + idx, zab, mask=lok)  # zabs [N, B]: pair idx is (idx // B, idx % B)


@triton.jit(do_not_specialize=["T", "ITEMS", "ONE"])
def _readout_bwd_kernel(T, ITEMS, ONE, gy_ptr, m_ptr, z_ptr, pre_ptr, ga_ptr, gm_ptr, gh_ptr, gzabs_ptr,
                        acc_wy_ptr, acc_bias_ptr, acc_gain_ptr, acc_kappa_ptr, w1t_ptr, wy_ptr, kappa_ptr, gain_ptr,
                        cst_ptr, N: tl.constexpr, B: tl.constexpr, D: tl.constexpr, M: tl.constexpr,
                        O: tl.constexpr, BM: tl.constexpr, BO: tl.constexpr, BH1: tl.constexpr,
                        OUT_ACT: tl.constexpr, HP: tl.constexpr, WIDE: tl.constexpr, LANES: tl.constexpr):
    """The whole reverse sequence of a readout (as :func:`_readout_fwd_kernel`); the per-neuron
    gradients accumulate in the lanes' registers and are stored once per pair."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    tg = tl.load(cst_ptr + 2)
    c0 = tl.load(cst_ptr)
    c1 = tl.load(cst_ptr + 1)
    for blk in range(pid, ITEMS, nprog):
        idx, lok, b, mk, ok, row_m, row_o, kap, gain, w1m, wyo, wok = _readout_lanes(
            blk, ONE, kappa_ptr, gain_ptr, w1t_ptr, N, B, D, M, O, BM, BO, BH1, WIDE, LANES)
        wy = tl.load(wy_ptr + wyo, mask=wok, other=0.0)
        g_m = tl.load(gm_ptr + row_m * B + b[None, :], mask=mk, other=0.0)
        if HP:
            g_h = tl.load(gh_ptr + row_o * B + b[None, :], mask=ok, other=0.0)
        g_zabs = tl.load(gzabs_ptr + idx, mask=lok, other=0.0)
        a_wy = tl.zeros([BO, BM, LANES], g_m.dtype)
        a_bias = tl.zeros([BO, LANES], g_m.dtype)
        a_gain = tl.zeros([BM, LANES], g_m.dtype)
        a_kap = tl.zeros([BM, LANES], g_m.dtype)
        for i in range(T):
            if WIDE:
                tt = tl.cast(T - 1 - i, tl.int64)
            else:
                tt = T - 1 - i
            ooff = (tt * N * O + row_o) * B + b[None, :]
            g_pre = tl.load(gy_ptr + ooff, mask=ok, other=0.0)
            if OUT_ACT == 1:
                g_pre = tl.where(tl.load(pre_ptr + ooff, mask=ok, other=0.0) > 0, g_pre, 0.0)
            a_bias += g_pre
            if HP:
                g_hh = g_h - g_pre
                g_rho = g_pre + c1 * g_hh
                g_h = c0 * g_hh
            else:
                g_rho = g_pre
            zoff = (tt * N * M + row_m) * B + b[None, :]
            m_t = tl.load(m_ptr + zoff + N * M * B, mask=mk, other=0.0)
            a_wy += g_rho[:, None, :] * m_t[None, :, :]
            g_m = g_m + tl.sum(wy * g_rho[:, None, :], axis=0)
            z = tl.load(z_ptr + zoff, mask=mk, other=0.0)
            th = TH.tanh(tg * z)
            a_gain += g_m * th
            sgn = tl.where(z > 0, 1.0, tl.where(z < 0, -1.0, 0.0)).to(z.dtype)
            ga = g_m * gain * tg * (1.0 - th * th) + g_zabs[None, :] * sgn
            tl.store(ga_ptr + zoff, ga, mask=mk)
            g_md = g_m + tl.sum(w1m * ga[:, None, :], axis=0)
            a_kap += g_md * tl.load(m_ptr + zoff, mask=mk, other=0.0)
            g_m = kap * g_md
        tl.store(gm_ptr + row_m * B + b[None, :], g_m, mask=mk)
        if HP:
            tl.store(gh_ptr + row_o * B + b[None, :], g_h, mask=ok)
        tl.store(acc_wy_ptr + wyo * B + b[None, None, :], a_wy, mask=wok)
        tl.store(acc_bias_ptr + row_o * B + b[None, :], a_bias, mask=ok)
        tl.store(acc_gain_ptr + row_m * B + b[None, :], a_gain, mask=mk)
        tl.store(acc_kappa_ptr + row_m * B + b[None, :], a_kap, mask=mk)


# --------------------------------------------------------------------------- the input rows' share, outside the loop
@triton.jit(do_not_specialize=["T", "TCHUNK"])
def _input_drive_kernel(u_ptr, src_tab_ptr, w_tab_ptr, out_ptr, T, TCHUNK, NS: tl.constexpr, ND: tl.constexpr,
                        B: tl.constexpr, S_X: tl.constexpr, BB: tl.constexpr, WIDE: tl.constexpr):
    """``out[t, r, b] = sum_j w[r, j] U[t, src(r, j), b]`` over the input synapses of column ``r``
    (neuron, branch): the drive the input rows give, for every step at once (program ``(r, sample
    block, chunk of TCHUNK steps)``; the table is S_X wide, padded with source -1 and weight 0)."""
    r = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    bok = b < B
    ar = tl.arange(0, S_X)
    src = tl.load(src_tab_ptr + r * S_X + ar)
    wv = tl.load(w_tab_ptr + r * S_X + ar)
    ok = (src[:, None] >= 0) & bok[None, :]
    t0 = tl.program_id(2) * TCHUNK
    for i in range(TCHUNK):
        t = t0 + i
        if WIDE:
            t = tl.cast(t, tl.int64)
        tok = bok & ((b * 0 + t) < T)  # (a tensor: the interpreter takes no scalar in a mask)
        uv = tl.load(u_ptr + (t * NS + src[:, None]) * B + b[None, :], mask=ok & tok[None, :], other=0.0)
        tl.store(out_ptr + (t * ND + r) * B + b, tl.sum(wv[:, None] * uv, axis=0), mask=tok)


@triton.jit(do_not_specialize=["T", "TCHUNK"])
def _weight_grad_kernel(gbeta_ptr, u_ptr, src_tab_ptr, out_ptr, T, TCHUNK, NS: tl.constexpr, ND: tl.constexpr,
                        B: tl.constexpr, S_X: tl.constexpr, BB: tl.constexpr, WIDE: tl.constexpr):
    """``out[c, r, j] = sum_{t in chunk c, b} g_beta_all[t, r, b] U[t, src(r, j), b]``: the synapse
    weights' gradient, a partial sum per program ``(column r, chunk c of TCHUNK steps)`` over the
    steps of its chunk and every sample (the host sums the chunks). After the backward loop, when
    ``g_beta_all`` and the source rows of every step are known: the reduction over time and samples
    runs at the GPU's throughput instead of on the loop's critical path, and no ``[T, S, B]``
    product is formed."""
    r = tl.program_id(0)
    c = tl.program_id(1)
    ar = tl.arange(0, S_X)
    src = tl.load(src_tab_ptr + r * S_X + ar)
    acc = tl.zeros([S_X, BB], gbeta_ptr.dtype.element_ty)
    for i in range(TCHUNK):
        t = c * TCHUNK + i
        if WIDE:
            t = tl.cast(t, tl.int64)
        for b0 in range(0, B, BB):
            b = b0 + tl.arange(0, BB)
            ok = (b < B) & ((b * 0 + t) < T)
            gb = tl.load(gbeta_ptr + (t * ND + r) * B + b, mask=ok, other=0.0)
            uv = tl.load(u_ptr + (t * NS + src[:, None]) * B + b[None, :], mask=(src[:, None] >= 0) & ok[None, :],
                         other=0.0)
            acc += gb[None, :] * uv
    tl.store(out_ptr + (tl.cast(c, tl.int64) * ND + r) * S_X + ar, tl.sum(acc, axis=1))


@triton.jit(do_not_specialize=["t0"])
def _source_grad_kernel(gbeta_ptr, tgt_tab_ptr, wo_tab_ptr, mask_ptr, out_ptr, t0, B, ND, ROWS,
                        S_OUT: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr):
    """``out[t, r, b] = mask[r, b] * sum_j w[r, j] g_beta_all[t0 + t, target(r, j), b]``: the gradient
    into source row ``r`` of a table of ROWS rows at step ``t0 + t`` (program ``(r, sample block, t)``)."""
    r = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    t = tl.cast(tl.program_id(2), tl.int64)
    bok = b < B
    r64 = tl.cast(r, tl.int64)
    g = tl.zeros([BB], gbeta_ptr.dtype.element_ty)
    for s0 in range(0, S_OUT, BSO):
        ar = s0 + tl.arange(0, BSO)
        tgt = tl.load(tgt_tab_ptr + r64 * S_OUT + ar)
        wo = tl.load(wo_tab_ptr + r64 * S_OUT + ar)
        gb = tl.load(gbeta_ptr + ((t0 + t) * ND + tgt[:, None]) * B + b[None, :],
                     mask=(tgt[:, None] >= 0) & bok[None, :], other=0.0)
        g += tl.sum(wo[:, None] * gb, axis=0)
    g = g * tl.load(mask_ptr + r64 * B + b, mask=bok, other=0.0)
    tl.store(out_ptr + (t * ROWS + r64) * B + b, g, mask=bok)


# --------------------------------------------------------------------------- host side
def _elem_ok(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"elm_triton_grid computes in float32 or float64, not {dtype} "
                        "(elm_contract.unsupported_reason sends such layers to the per-step path)")


def _lanes(n: int, bsz: int) -> tuple[int, int]:
    """``(BB, num_warps)``: a work item's samples and warps. One warp per item; as few samples per
    item as keep the items fewer than the GPU's schedulers (``SCHEDULERS``: 4 per SM on an H100), at
    least MIN_ITEM_SAMPLES (a warp's 32 lanes then split 8 ways over the hidden units), at most
    MAX_ITEM_SAMPLES: small batches spread over more warps, large ones amortise each warp's work
    (uniform weight loads and address arithmetic) over more samples."""
    want = triton.cdiv(n * bsz, SCHEDULERS)
    bb = min(max(_p2(want), MIN_ITEM_SAMPLES), MAX_ITEM_SAMPLES, _p2(bsz))
    return bb, 1


class _Part(NamedTuple):
    """The synapses of one part (from the layer's neurons, or from input rows): their positions in
    the CSR's order, target columns, source rows (input rows counted from 0), weights and table
    widths (the most on one target column, from one source row)."""

    pos: Optional[torch.Tensor]  # None: every synapse, in order
    flat: torch.Tensor
    src: torch.Tensor
    w: Optional[torch.Tensor]
    in_width: int
    out_width: int

    @property
    def count(self) -> int:
        return int(self.flat.numel())


def _width(given: Optional[int], keys: torch.Tensor, rows: int = 0) -> int:
    """A table width, the most entries with one key: from the CSR when it counted it, else counted
    here (a host synchronisation)."""
    if not keys.numel():
        return 0
    return given if given is not None else int(torch.bincount(keys, minlength=rows).max())


def _parts(rec: Recurrent, rec_w: Optional[torch.Tensor], n: int, d: int, rows: bool) -> tuple[_Part, _Part]:
    """The synapses from the layer's neurons (read inside the time loop) and those from input rows
    (Rows: read before / after it, every step at once), without a host synchronisation when the
    CSR counted ``own`` and the widths."""
    if not rows or not rec.count:
        none = rec.flat[:0]
        own = _Part(None, rec.flat, rec.src, rec_w, _width(rec.in_width, rec.flat, n * d),
                    _width(rec.out_width, rec.src, n))
        return own, _Part(none, none, none, None if rec_w is None else rec_w[:0], 0, 0)
    n_own = rec.own if rec.own is not None else int((rec.src < n).sum())
    order = torch.argsort((rec.src >= n).to(torch.int8), stable=True)  # the neurons' synapses first
    pos_own, pos_in = order[:n_own], order[n_own:]
    f_own, s_own = rec.flat[pos_own], rec.src[pos_own]
    f_in, s_in = rec.flat[pos_in], rec.src[pos_in] - n

    def take(pos):
        return None if rec_w is None else rec_w[pos]
    return (_Part(pos_own, f_own, s_own, take(pos_own), _width(rec.own_in_width, f_own, n * d),
                  _width(rec.own_out_width, s_own, n)),
            _Part(pos_in, f_in, s_in, take(pos_in), _width(rec.inp_in_width, f_in, n * d),
                  _width(rec.inp_out_width, s_in)))


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
    """A call's sizes and constexprs. The synapses from input rows (a Rows input) are not read
    inside the time loop: their drive is gathered for every step at once before it
    (:func:`_input_drive_kernel`), and the loop reads it as a Drive; their weights' gradient is
    reduced after the backward loop (:func:`_weight_grad_kernel`). ``own`` / ``inp``: the two parts
    (:func:`_parts`), with ``rec_w`` as their weights (default ``w.rec_w``)."""

    def __init__(self, rec: Recurrent, w: Weights, n: int, m: int, o: int, bsz: int, n_rows: int, spec: Spec,
                 is_drive: bool, steps: int, rec_w: Optional[torch.Tensor] = None):
        d = w.W1.shape[2] - m
        self.n, self.d, self.m, self.o, self.bsz, self.n_rows = n, d, m, o, bsz, n_rows
        self.h1 = w.W1.shape[1]
        self.h = w.W2.shape[2] if spec.two_layers else 1
        self.ns = n + n_rows
        self.own, self.inp = _parts(rec, w.rec_w if rec_w is None else rec_w, n, d, not is_drive)
        # padded table widths: the in-tables to a power of two (one tile per branch), the out-table to a
        # multiple of its chunk; the kernels read them without masks
        self.s_in = _p2(self.own.in_width)
        self.bso = min(_p2(self.own.out_width), OUT_CHUNK)
        self.s_out = triton.cdiv(max(self.own.out_width, 1), self.bso) * self.bso
        self.s_x = _p2(self.inp.in_width)
        self.bso_x = min(_p2(self.inp.out_width), OUT_CHUNK)
        self.s_out_x = triton.cdiv(max(self.inp.out_width, 1), self.bso_x) * self.bso_x
        self.bb, self.num_warps = _lanes(n, bsz)
        self.nsb = triton.cdiv(bsz, self.bb)
        self.items = n * self.nsb
        # int64 offsets only when some tensor the kernels index reaches 2^31 elements (else int32: half the
        # address arithmetic); a drive's strides may reach further than its elements (any view): its
        # extent counts
        largest = max((steps + 1) * self.ns * bsz, (steps + 1) * n * max(d, self.h1, m, o) * bsz,
                      n * d * self.s_in * bsz)
        self.wide = largest >= 2 ** 31 - 1
        has_syn = self.own.count > 0
        # HAS_DRIVE: a Drive, or the input rows' drive (gathered before the loop)
        has_drive = is_drive or self.inp.count > 0
        common = dict(D=d, M=m, H1=self.h1, H=self.h, O=o, BH1=_p2(self.h1),
                      BH=_p2(self.h1) if spec.two_layers else 1, BO=_p2(o), BB=self.bb,
                      MLP_ACT=spec.mlp_act, OUT_ACT=spec.out_act, TWO=bool(spec.two_layers), HP=bool(spec.high_pass))
        # WRITE_U / HAS_REC: some synapse reads a neuron, so the step writes its neuron's source row,
        # the backward gathers the recurrence's gradient, and the persistent kernel waits for every
        # program after each step (without, the items are independent through time: no barrier).
        # PRE: a drive and no synapse from a neuron (a readout): the drives' share of the first layer,
        # b1 + W1[:, :D] beta_t, depends on no state, so the host computes it for every step at once
        # (one batched GEMM) and the loop keeps the memory's share only; the backward gives
        # g_beta = W1[:, :D]^T ga likewise
        self.pre = has_drive and not has_syn
        self.readout = self.pre and not spec.two_layers and m <= READOUT_MAX_M and o <= READOUT_MAX_O
        self.readout_items = triton.cdiv(n * bsz, READOUT_LANES)
        self.readout_cx = dict(N=n, B=bsz, D=d, M=m, O=o, BM=_p2(m), BO=_p2(o), BH1=_p2(self.h1),
                               OUT_ACT=spec.out_act, HP=bool(spec.high_pass), WIDE=self.wide, LANES=READOUT_LANES)
        self.fwd = dict(common, S_IN=self.s_in, BS=self.s_in, HAS_SYN=has_syn, HAS_DRIVE=has_drive, WRITE_U=has_syn,
                        PRE=self.pre)
        self.bwd = dict(common, S_OUT=self.s_out, BSO=self.bso, HAS_REC=has_syn, PRE=self.pre)


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


def _sources(inp, mask_rec: torch.Tensor, y_all: Optional[torch.Tensor], steps: int, n: int, bsz: int,
             dtype) -> torch.Tensor:
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
    """A call's constexprs (forward, the backward's where they differ, ``bwd_``), ``num_warps``, the
    input gathers' widths and the launch form (the first-use check's cache key)."""
    n, m, bsz = s.m.shape
    lay = _Layout(rec, w, n, m, s.y.shape[1], bsz, inp.x.shape[1] if isinstance(inp, Rows) else 0, spec,
                  isinstance(inp, Drive), _steps(inp))
    return tuple(sorted(lay.fwd.items())) + tuple((f"bwd_{k}", v) for k, v in sorted(lay.bwd.items())
                                                  if lay.fwd.get(k) != v) \
        + (("num_warps", lay.num_warps), ("S_X", lay.s_x), ("S_OUT_X", lay.s_out_x), ("readout", lay.readout),
           ("persistent", _persistent(mask_rec.device)))


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


def _chunks(steps: int, rows: int) -> tuple[int, int]:
    """``(steps per program, programs along time)`` of the gathers over every step: enough programs
    to fill the GPU (``rows`` programs per chunk), no more steps per program than needed."""
    per = max(1, min(steps, triton.cdiv(steps * rows, SCHEDULERS * 16)))
    return per, triton.cdiv(steps, per)


def _input_drive(u: torch.Tensor, lay: _Layout, inp_w: torch.Tensor, out: torch.Tensor) -> None:
    """``out [T, N, D, B]`` = the drive of the input synapses (:func:`_input_drive_kernel`)."""
    steps, nd, bsz = out.shape[0], lay.n * lay.d, lay.bsz
    src_tab, w_tab, _ = _table(lay.inp.flat, lay.inp.src + lay.n, inp_w, nd, lay.s_x)
    bb = min(_p2(bsz), MAX_ITEM_SAMPLES)
    per, chunks = _chunks(steps, nd)
    _input_drive_kernel[(nd, triton.cdiv(bsz, bb), chunks)](
        u, src_tab, w_tab, out, steps, per, NS=lay.ns, ND=nd, B=bsz, S_X=lay.s_x, BB=bb, WIDE=lay.wide)


def forward(inp, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> Saved:
    """The kernel contract's forward (``elm_contract.forward_torch``) over the whole GPU."""
    n, m, bsz = s.m.shape
    o = s.y.shape[1]
    dtype, dev = s.m.dtype, s.m.device
    _elem_ok(dtype)
    is_drive = isinstance(inp, Drive)
    steps = _steps(inp)
    rec_w = w.rec_w.to(dtype)
    lay = _Layout(rec, w, n, m, o, bsz, 0 if is_drive else inp.x.shape[1], spec, is_drive, steps, rec_w)
    own, inp_part = lay.own, lay.inp
    if is_drive and inp.drive.numel():
        lay.wide = lay.wide or sum((k - 1) * st for k, st in zip(inp.drive.shape, inp.drive.stride())) >= 2 ** 31 - 1
    d = lay.d
    y_all = s.y.new_empty((steps + 1, n, o, bsz))
    m_all = s.m.new_empty((steps + 1, n, m, bsz))
    y_all[0], m_all[0] = s.y, s.m
    mask_rec = mask_rec.to(dtype).contiguous()
    u = _sources(inp, mask_rec, None, steps, n, bsz, dtype)
    u[0, :n] = s.y[:, 0] * mask_rec
    # the branch drives: the Drive, or the input rows' share gathered for every step at once (the loop
    # adds the synapses from neurons in place)
    if is_drive:
        beta_all = inp.drive.to(dtype).contiguous() if lay.pre else s.m.new_empty(steps, n, d, bsz)
        drive = inp.drive
    else:
        beta_all = s.m.new_zeros(steps, n, d, bsz) if not inp_part.count else s.m.new_empty(steps, n, d, bsz)
        if inp_part.count and steps:
            _input_drive(u, lay, inp_part.w, beta_all.view(steps, n * d, bsz))
        drive = beta_all
    a0 = None
    if lay.pre:  # the drives' share of the first layer for all steps at once
        a0 = torch.matmul(w.W1[None, :, :, :d].to(dtype), beta_all).add_(w.b1.to(dtype)[None, :, :, None])
    a1_all = s.m.new_empty(steps, n, lay.h1, bsz) if spec.two_layers else None
    z_all = s.m.new_empty(steps, n, m, bsz)
    pre_all = s.m.new_empty(steps, n, o, bsz)
    zabs = s.m.new_zeros(n, bsz)
    h_T = s.h.clone().contiguous() if spec.high_pass else None
    dummy = s.m.new_zeros(1)
    if own.count:
        src_tab, w_tab, _ = _table(own.flat, own.src, own.w, n * d, lay.s_in)
    else:
        src_tab, w_tab = torch.full((1,), -1, dtype=torch.int32, device=dev), dummy
    sd = drive.stride()
    two = spec.two_layers
    args = dict(drive_ptr=drive, sd_t=sd[0], sd_n=sd[1], sd_d=sd[2], sd_b=sd[3], u_ptr=u, src_tab_ptr=src_tab,
                w_tab_ptr=w_tab, rmask_ptr=mask_rec, beta_ptr=beta_all, y_ptr=y_all, m_ptr=m_all,
                a1_ptr=a1_all if two else dummy, z_ptr=z_all, pre_ptr=pre_all, h_ptr=h_T if h_T is not None else dummy,
                zabs_ptr=zabs, a0_ptr=a0 if a0 is not None else dummy, w1t_ptr=_w1t(w), b1_ptr=w.b1,
                w2_ptr=_w2p(w) if two else dummy, b2_ptr=w.b2 if two else dummy, wy_ptr=w.wy, bias_ptr=w.bias,
                kappa_ptr=w.kappa, gain_ptr=w.gain, cst_ptr=_constants(spec, dtype, dev), SSTRIDE=lay.bb,
                DLOOP=lay.d, MLOOP=lay.m, SLOOP=lay.s_out, N=n, B=bsz, NS=lay.ns, NSB=lay.nsb, WIDE=lay.wide,
                num_warps=lay.num_warps, **lay.fwd)
    if steps and lay.readout:  # no barrier: the same kernel under the interpreter
        _readout_fwd_kernel[(_programs(lay.readout_items, dev),)](
            steps, lay.readout_items, 1, a0, y_all, m_all, z_all, pre_all, h_T if h_T is not None else dummy, zabs,
            args["w1t_ptr"], w.wy, w.bias, w.kappa, w.gain, args["cst_ptr"], num_warps=1, **lay.readout_cx)
    elif steps:
        if _persistent(dev):
            grid = _programs(lay.items, dev)
            bar = torch.zeros(1, dtype=torch.int32, device=dev)
            _fwd_persistent[(grid,)](T=steps, ITEMS=lay.items, bar_ptr=bar, **args)
        else:
            for t in range(steps):
                _fwd_stepped[(lay.items,)](t=t, **args)
    return Saved(y_all, m_all, beta_all, a1_all, z_all, pre_all, h_T, zabs)


def _source_grads(g_beta_all: torch.Tensor, keys: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                  mask: torch.Tensor, rows: int, width: int, steps: int, lay: _Layout) -> torch.Tensor:
    """``[steps, rows, B]``: the gradient into ``rows`` source rows at steps ``0 .. steps - 1``
    (:func:`_source_grad_kernel`) through the synapses ``key (source row) -> target column``."""
    tgt_tab, wo_tab, _ = _table(keys, targets, weights, rows, width)
    out = torch.empty(steps, rows, lay.bsz, dtype=g_beta_all.dtype, device=g_beta_all.device)
    for t0 in range(0, steps, MAX_GRID_Z):  # a grid's third dimension holds at most 65,535 programs
        part = min(MAX_GRID_Z, steps - t0)
        _source_grad_kernel[(rows, lay.nsb, part)](g_beta_all, tgt_tab, wo_tab, mask, out[t0:], t0, lay.bsz,
                                                   lay.n * lay.d, rows, S_OUT=width, BSO=min(width, OUT_CHUNK),
                                                   BB=lay.bb, num_warps=lay.num_warps)
    return out


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
    rec_w = w.rec_w.to(dtype)
    lay = _Layout(rec, w, n, m, o, bsz, n_rows, spec, is_drive, steps, rec_w)
    own, inp_part = lay.own, lay.inp
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
    if own.count:
        tgt_tab, wo_tab, _ = _table(own.src, own.flat, own.w, n, lay.s_out)
    else:
        tgt_tab, wo_tab = none_i, dummy
    args = dict(gy_ptr=g.gy.to(dtype).contiguous(), tgt_tab_ptr=tgt_tab, wo_tab_ptr=wo_tab, rmask_ptr=mask_rec,
                m_ptr=saved.m_all, a1_ptr=saved.a1_all if two else dummy, z_ptr=saved.z_all, pre_ptr=saved.pre_all,
                gbeta_ptr=g_beta_all, ga_ptr=ga_all, gz_ptr=gz_all if two else dummy, gm_ptr=g_m,
                gh_ptr=g_h if g_h is not None else dummy, gzabs_ptr=g.g_zabs.to(dtype).contiguous(), acc_wy_ptr=acc_wy,
                acc_bias_ptr=acc_bias, acc_gain_ptr=acc_gain, acc_kappa_ptr=acc_kappa, w1t_ptr=_w1t(w),
                w2_ptr=_w2p(w) if two else dummy, wy_ptr=w.wy, kappa_ptr=w.kappa, gain_ptr=w.gain,
                cst_ptr=_constants(spec, dtype, dev), SSTRIDE=lay.bb, DLOOP=lay.d, MLOOP=lay.m, SLOOP=lay.s_out, N=n,
                B=bsz, NSB=lay.nsb, WIDE=lay.wide, num_warps=lay.num_warps, **lay.bwd)
    if steps and lay.readout:
        _readout_bwd_kernel[(_programs(lay.readout_items, dev),)](
            steps, lay.readout_items, 1, args["gy_ptr"], saved.m_all, saved.z_all, saved.pre_all, ga_all, g_m,
            g_h if g_h is not None else dummy, args["gzabs_ptr"], acc_wy, acc_bias, acc_gain, acc_kappa,
            args["w1t_ptr"], w.wy, w.kappa, w.gain, args["cst_ptr"], num_warps=1, **lay.readout_cx)
    elif steps:
        if _persistent(dev):
            grid = _programs(lay.items, dev)
            bar = torch.zeros(1, dtype=torch.int32, device=dev)
            _bwd_persistent[(grid,)](T=steps, ITEMS=lay.items, bar_ptr=bar, **args)
        else:
            for i in range(steps):
                _bwd_stepped[(lay.items,)](t=steps - 1 - i, T=steps, **args)
    if lay.pre:  # the drives' gradient through the first layer, all steps at once (forward: PRE)
        torch.matmul(w.W1[None, :, :, :d].to(dtype).transpose(2, 3), ga_all, out=g_beta_all)
    g_y0 = torch.zeros_like(saved.y_all[0])
    g_rec_w = g_x_rows = None
    if rec.count:
        if own.count and steps:  # the recurrence's gradient into y0: step 0 read it
            g_y0[:, 0] = _source_grads(g_beta_all, own.src, own.flat, own.w, mask_rec, n, lay.s_out, 1, lay)[0]
        # every synapse's weight gradient (from neurons and from input rows alike), all steps at once
        nd, width = n * d, _p2(_width(rec.in_width, rec.flat, n * d))
        u = _sources(inp, mask_rec, saved.y_all, steps, n, bsz, dtype)
        src_tab, _, slot = _table(rec.flat, rec.src, rec_w, nd, width)
        per, chunks = _chunks(steps, nd)
        part = torch.zeros(max(chunks, 1), nd * width, dtype=dtype, device=dev)
        if steps:
            _weight_grad_kernel[(nd, chunks)](g_beta_all, u, src_tab, part, steps, per, NS=lay.ns, ND=nd, B=bsz,
                                              S_X=width, BB=min(_p2(bsz), MAX_ITEM_SAMPLES), WIDE=lay.wide)
        g_rec_w = part.sum(0)[slot]
    if n_rows and want_input_grad:
        if inp_part.count and steps:
            g_x_rows = _source_grads(g_beta_all, inp_part.src, inp_part.flat, inp_part.w,
                                     inp.mask.to(dtype).contiguous(), n_rows, lay.s_out_x, steps, lay)
        else:
            g_x_rows = torch.zeros(steps, n_rows, bsz, dtype=dtype, device=dev)
    return Grads(g_beta_all, ga_all, gz_all, acc_wy.sum(-1), acc_bias.sum(-1), acc_gain.sum(-1), acc_kappa.sum(-1),
                 g_m, g_h, g_y0, g_rec_w, None, g_x_rows=g_x_rows)
