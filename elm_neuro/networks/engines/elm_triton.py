"""The earlier CUDA backend of the fused ELM sequence engine: one program per sample, the time loop
and every neuron inside it (the forward loops over ``t = 0 .. T-1``, the backward over ``t = T-1 .. 0``).
The engine's CUDA backend is now :mod:`elm_neuro.networks.engines.elm_triton_grid` (the whole GPU,
``elm_sequence.CUDA_BACKEND``); this one stays for comparison (tests/test_cuda.py runs both; its
compile-only figures are in benchmarks/README.md).

The contract (layouts, saved tensors, gradients) is the one of
:mod:`elm_neuro.networks.engines.elm_contract`; :func:`forward` and :func:`backward` take the
arguments of ``forward_torch`` / ``backward_torch`` and return the same ``Saved`` / ``Grads``. The
input is a Drive (``TAKES``). The launchers pass every kernel argument by its name.

Design
    *Programs.* The samples of a batch are independent, so the grid's first axis is the batch in
    blocks of ``BB`` samples (``BB = 1`` by default: one program per sample). Each program runs the
    whole time loop for its samples and, inside each step, loops over the neurons in blocks of
    ``BN``. The recurrent synapses of step ``t`` read the outputs ``y_{t-1}`` of *all* neurons of the
    same samples, which the same program wrote in the previous step to the global buffer
    ``y_all`` (the shared copy; it is also a saved tensor), so the step ends with a CTA barrier
    (``tl.debug_barrier``) and no program ever waits for another. A layer without recurrent
    synapses (every d_o > 1 layer, ``rho = 0``) has independent neurons too: its grid gets a second
    axis over the neuron blocks, so that even a small batch fills the GPU.

    *State.* The running state (``m``, the high-pass ``h``, in backward ``g_m``, ``g_h``) lives in
    the global output tensors (``m_all[t]``, ``h_T``, ``g_m0``, ``g_h0``) and is re-read each step
    from L1/L2: with several neuron blocks per step it cannot stay in registers. Weights
    (``W1``, ``W2``, ``wy``, ``b1``, ``b2``, ``bias``, ``kappa``, ``gain``) are read from global
    memory each step and stay hot in L1/L2.

    *Recurrent synapses as gather tables* (built outside the kernel from ``rec`` and ``rec_w``):
    forward, a padded per-(neuron, branch) table ``[N, D, S_in]`` of source neurons and weights
    (``S_in`` = the largest number of recurrent synapses on one branch, at most d_brch; padding has
    weight 0), so step ``t`` adds ``sum_s w * y_{t-1}[src, 0] * mask_rec[src]`` to each branch;
    backward, the transposed table ``[N, S_out]`` of each source neuron's outgoing synapses
    (target column ``n * D + branch`` and weight), so the recurrence's gradient into ``y_t`` is a
    gather of ``g_beta_all[t + 1]`` (already written, the step before in reverse time) instead
    of a scatter with atomics: deterministic, and again only a CTA barrier per step. The tables'
    widths depend on the connectome only, so the CSR carries them (``Recurrent.in_width`` /
    ``out_width``, counted once where the layer builds it, per connectome); the tables themselves
    are built per call with device operations only (the weights change every step of training),
    so a call never waits for the device (neither do the constants, made once per value).

    *Per step* everything is a masked tile of power-of-2 block sizes (``BD``, ``BM``, ``BH``,
    ``BO``, padded with zeros, which every stage maps to zeros): the MLP per neuron as a broadcast
    multiply and a reduction (the per-neuron matrices are tiny: ``[H, D + M]``, ``[M, H]``), the
    activation, ``tanh`` (from ``exp``; Triton's libdevice has no interpreter version), the memory
    update, readout, high-pass and output activation; the backward runs their derivatives.

    *Weight gradients* are not made here: the autograd Function forms them as GEMMs over ``T * B``
    from ``ga_all`` / ``gz_all``. The small per-neuron gradients of the contract (``g_wy``,
    ``g_bias``, ``g_gain``, ``g_kappa``) are summed by each program over its samples and time into
    a per-program partial buffer, which the wrapper sums over programs.

    Everything runs in the dtype of the inputs (float32 or float64; another dtype is a clear
    error, and the contract sends float16 / bfloat16 layers to the per-step path). Scalars that
    must keep full precision (``kr``, ``1 - kr``, ``2/3``) come in a small tensor: a Python float
    argument would reach the kernel as float32.

    *Compile key.* :func:`compile_key` gives a call's constexprs (forward and backward) and
    ``num_warps``: with the dtype and the device, what a kernel is compiled for. The dispatch
    checks each such configuration once before its first use against the reference
    (:func:`elm_neuro.networks.engines.backends.first_use`).

Limits and tuning
    A recurrent layer runs on ``ceil(B / BB)`` programs, so at small batches most of a large GPU
    idles and each program re-reads the weights every step (for the Enwik8 layer some 10 MB per
    step and sample, from L2). Spreading a sample's neurons over several programs would need a
    grid-wide barrier per step (all programs resident, an atomic counter), which Triton's
    interpreter cannot run (it runs programs one after another), so it is not done here.
    ``TILE_BUDGET``, ``NUM_WARPS`` and ``BATCH_BLOCK`` are first guesses, to be tuned on a GPU.

The tests run these kernels on the CPU under ``TRITON_INTERPRET=1`` (tests/test_engine_elm_triton.py; tests/conftest.py sets it up).
"""
# No ``from __future__ import annotations`` here: Triton 3.0's interpreter recognises a constexpr
# parameter only by its evaluated annotation (a string "tl.constexpr" is taken for a tensor).



import torch
import triton
import triton.language as tl

from elm_neuro.networks.engines import triton_helpers as TH
from elm_neuro.networks.engines.elm_contract import TANH_GAIN, Grads, OutGrads, Recurrent, Saved, Spec, State, Weights
from elm_neuro.networks.engines.inputs import Drive

TAKES = (Drive,)

# Register budget: the largest per-step tile (elements) of one program, by element size.
TILE_BUDGET = {4: 8192, 8: 4096}
NUM_WARPS = 4
BATCH_BLOCK = 1  # samples per program (BB); 1 = one program per sample
MAX_SYN_BLOCK = 32  # the gather tables are read in chunks of at most this many synapses


def _p2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


# --------------------------------------------------------------------------- device helpers
# --------------------------------------------------------------------------- forward kernel
@triton.jit
def _elm_fwd_kernel(
        drive_ptr, beta_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr, h_ptr, zabs_ptr,
        src_tab_ptr, w_tab_ptr, mask_ptr,
        w1_ptr, b1_ptr, w2_ptr, b2_ptr, wy_ptr, bias_ptr, kappa_ptr, gain_ptr, cst_ptr,
        T, N, D, M, H1, H, O, B, S_IN, NBLK,
        BN: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr,
        BO: tl.constexpr, BS: tl.constexpr, BB: tl.constexpr,
        MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr,
        HAS_REC: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_g = tl.program_id(1)
    n_g = tl.num_programs(1)
    DM = D + M
    omk = tl.load(cst_ptr + 1)
    tg = tl.load(cst_ptr + 2)

    bb = pid_b * BB + tl.arange(0, BB)
    b_ok = bb < B
    b3 = bb[None, None, :]  # [1, 1, BB]
    b4 = bb[None, None, None, :]
    bm3 = b_ok[None, None, :]
    bm4 = b_ok[None, None, None, :]
    b2 = bb[None, :]
    bm2 = b_ok[None, :]

    ar_n = tl.arange(0, BN)
    ar_d = tl.arange(0, BD)
    ar_m = tl.arange(0, BM)
    ar_h1 = tl.arange(0, BH1)
    ar_h = tl.arange(0, BH)
    ar_o = tl.arange(0, BO)
    ar_s = tl.arange(0, BS)

    for t in range(T):
        t64 = tl.cast(t, tl.int64)
        for blk in range(pid_g, NBLK, n_g):
            n1 = blk * BN + ar_n
            n_ok = n1 < N
            n2 = n1[:, None]
            nm2 = n_ok[:, None]
            n3 = n1[:, None, None]
            nm3 = n_ok[:, None, None]
            # ---- branch drive: input drive + recurrent synapses reading y_{t-1} (y_all[t])
            d3 = ar_d[None, :, None]
            msk_nd = nm3 & (d3 < D) & bm3
            off_nd = ((t64 * N + n3) * D + d3) * B + b3
            beta = tl.load(drive_ptr + off_nd, mask=msk_nd, other=0.0)  # [BN, BD, BB]
            if HAS_REC:
                n4 = n1[:, None, None, None]
                d4 = ar_d[None, :, None, None]
                for s0 in range(0, S_IN, BS):
                    s4 = s0 + ar_s[None, None, :, None]
                    tmsk = (n4 < N) & (d4 < D) & (s4 < S_IN)
                    toff = (n4 * D + d4) * S_IN + s4
                    src = tl.load(src_tab_ptr + toff, mask=tmsk, other=0)  # [BN, BD, BS, 1]
                    w = tl.load(w_tab_ptr + toff, mask=tmsk, other=0.0)
                    vmsk = tmsk & bm4
                    yv = tl.load(y_ptr + ((t64 * N + src) * O) * B + b4, mask=vmsk, other=0.0)
                    mk = tl.load(mask_ptr + src * B + b4, mask=vmsk, other=0.0)
                    beta += tl.sum(w * (yv * mk), axis=2)
            tl.store(beta_ptr + off_nd, beta, mask=msk_nd)
            # ---- decayed memory
            m3 = ar_m[None, :, None]
            msk_nm = nm3 & (m3 < M) & bm3
            m_prev = tl.load(m_ptr + ((t64 * N + n3) * M + m3) * B + b3, mask=msk_nm, other=0.0)
            mm2 = nm2 & (ar_m[None, :] < M)
            kap = tl.load(kappa_ptr + n2 * M + ar_m[None, :], mask=mm2, other=0.0)
            gn = tl.load(gain_ptr + n2 * M + ar_m[None, :], mask=mm2, other=0.0)
            md = kap[:, :, None] * m_prev  # [BN, BM, BB]
            # ---- first MLP layer: a = b1 + W1 [beta ; md]
            h3 = ar_h1[None, :, None]
            w1b = tl.load(w1_ptr + (n3 * H1 + h3) * DM + ar_d[None, None, :],
                          mask=nm3 & (h3 < H1) & (ar_d[None, None, :] < D), other=0.0)  # [BN, BH1, BD]
            w1m = tl.load(w1_ptr + (n3 * H1 + h3) * DM + D + ar_m[None, None, :],
                          mask=nm3 & (h3 < H1) & (ar_m[None, None, :] < M), other=0.0)  # [BN, BH1, BM]
            a = tl.sum(w1b[:, :, :, None] * beta[:, None, :, :], axis=2) \
                + tl.sum(w1m[:, :, :, None] * md[:, None, :, :], axis=2)  # [BN, BH1, BB]
            b1 = tl.load(b1_ptr + n2 * H1 + ar_h1[None, :], mask=nm2 & (ar_h1[None, :] < H1), other=0.0)
            a = a + b1[:, :, None]
            if TWO:
                msk_nh = nm3 & (h3 < H1) & bm3
                tl.store(a1_ptr + ((t64 * N + n3) * H1 + h3) * B + b3, a, mask=msk_nh)
                act = TH.mlp_act(a, MLP_ACT)
                hh3 = ar_h[None, None, :]
                w2 = tl.load(w2_ptr + (n3 * M + m3) * H + hh3, mask=nm3 & (m3 < M) & (hh3 < H), other=0.0)
                z = tl.sum(w2[:, :, :, None] * act[:, None, :, :], axis=2)  # [BN, BM, BB]
                b2v = tl.load(b2_ptr + n2 * M + ar_m[None, :], mask=mm2, other=0.0)
                z = z + b2v[:, :, None]
            else:
                z = a  # H1 == M, BH1 == BM
            tl.store(z_ptr + ((t64 * N + n3) * M + m3) * B + b3, z, mask=msk_nm)
            zoff = n2 * B + b2
            zmsk = nm2 & bm2
            zabs = tl.load(zabs_ptr + zoff, mask=zmsk, other=0.0)
            tl.store(zabs_ptr + zoff, zabs + tl.sum(tl.abs(z), axis=1), mask=zmsk)
            # ---- memory update, readout, high-pass, output
            m_new = md + gn[:, :, None] * TH.tanh(tg * z)
            tl.store(m_ptr + (((t64 + 1) * N + n3) * M + m3) * B + b3, m_new, mask=msk_nm)
            o3 = ar_o[None, :, None]
            wy = tl.load(wy_ptr + (n3 * O + o3) * M + ar_m[None, None, :],
                         mask=nm3 & (o3 < O) & (ar_m[None, None, :] < M), other=0.0)  # [BN, BO, BM]
            p = tl.sum(wy[:, :, :, None] * m_new[:, None, :, :], axis=2)  # [BN, BO, BB]
            msk_no = nm3 & (o3 < O) & bm3
            if HP:
                hoff = (n3 * O + o3) * B + b3
                hs = tl.load(h_ptr + hoff, mask=msk_no, other=0.0)
                hs = hs + omk * (p - hs)
                tl.store(h_ptr + hoff, hs, mask=msk_no)
                p = p - hs
            bias = tl.load(bias_ptr + n2 * O + ar_o[None, :], mask=nm2 & (ar_o[None, :] < O), other=0.0)
            pre = p + bias[:, :, None]
            tl.store(pre_ptr + ((t64 * N + n3) * O + o3) * B + b3, pre, mask=msk_no)
            if OUT_ACT == 1:
                yo = tl.maximum(pre, 0.0)
            else:
                yo = pre
            tl.store(y_ptr + (((t64 + 1) * N + n3) * O + o3) * B + b3, yo, mask=msk_no)
        # y_all[t + 1] (and the state) of every neuron must be visible to the next step's gather
        tl.debug_barrier()


# --------------------------------------------------------------------------- backward kernel
@triton.jit
def _elm_bwd_kernel(
        gy_ptr, y_ptr, m_ptr, a1_ptr, z_ptr, pre_ptr,
        gbeta_ptr, ga_ptr, gz_ptr, gm_ptr, gh_ptr, gy0_ptr,
        gwy_ptr, gbias_ptr, ggain_ptr, gkappa_ptr, gzabs_ptr,
        tgt_tab_ptr, wo_tab_ptr, mask_ptr,
        w1_ptr, w2_ptr, wy_ptr, kappa_ptr, gain_ptr, cst_ptr,
        T, N, D, M, H1, H, O, B, S_OUT, NBLK,
        BN: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr, BH1: tl.constexpr, BH: tl.constexpr,
        BO: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr,
        MLP_ACT: tl.constexpr, OUT_ACT: tl.constexpr, TWO: tl.constexpr, HP: tl.constexpr,
        HAS_REC: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_g = tl.program_id(1)
    n_g = tl.num_programs(1)
    DM = D + M
    kr = tl.load(cst_ptr)
    omk = tl.load(cst_ptr + 1)
    tg = tl.load(cst_ptr + 2)

    bb = pid_b * BB + tl.arange(0, BB)
    b_ok = bb < B
    b3 = bb[None, None, :]
    bm3 = b_ok[None, None, :]
    b2 = bb[None, :]
    bm2 = b_ok[None, :]

    ar_n = tl.arange(0, BN)
    ar_d = tl.arange(0, BD)
    ar_m = tl.arange(0, BM)
    ar_h1 = tl.arange(0, BH1)
    ar_h = tl.arange(0, BH)
    ar_o = tl.arange(0, BO)
    ar_so = tl.arange(0, BSO)
    # per-program partial sums of the small per-neuron gradients: [n_programs_b, N, ...]
    p64 = tl.cast(pid_b, tl.int64)

    for i in range(T):
        t = T - 1 - i
        t64 = tl.cast(t, tl.int64)
        for blk in range(pid_g, NBLK, n_g):
            n1 = blk * BN + ar_n
            n_ok = n1 < N
            n2 = n1[:, None]
            nm2 = n_ok[:, None]
            n3 = n1[:, None, None]
            nm3 = n_ok[:, None, None]
            o3 = ar_o[None, :, None]
            m3 = ar_m[None, :, None]
            msk_no = nm3 & (o3 < O) & bm3
            msk_nm = nm3 & (m3 < M) & bm3
            mm2 = nm2 & (ar_m[None, :] < M)
            om2 = nm2 & (ar_o[None, :] < O)
            # ---- gradient into y_{t+1}: the loss's plus the recurrence's (step t + 1 read y_{t+1})
            g_pre = tl.load(gy_ptr + ((t64 * N + n3) * O + o3) * B + b3, mask=msk_no, other=0.0)  # [BN, BO, BB]
            if HAS_REC:
                g_rec = _out_gather(gbeta_ptr, tgt_tab_ptr, wo_tab_ptr, mask_ptr, t64 + 1, T, n1, n_ok,
                                    bb, b_ok, N, D, B, S_OUT, BN, BSO, BB, ar_so)
                g_pre = g_pre + tl.where(o3 == 0, g_rec[:, None, :], 0.0)
            pre = tl.load(pre_ptr + ((t64 * N + n3) * O + o3) * B + b3, mask=msk_no, other=0.0)
            if OUT_ACT == 1:
                g_pre = tl.where(pre > 0, g_pre, 0.0)
            pofs = (p64 * N + n2) * O + ar_o[None, :]
            tl.store(gbias_ptr + pofs, tl.load(gbias_ptr + pofs, mask=om2, other=0.0) + tl.sum(g_pre, axis=2),
                     mask=om2)
            if HP:
                hoff = (n3 * O + o3) * B + b3
                g_hh = tl.load(gh_ptr + hoff, mask=msk_no, other=0.0) - g_pre
                g_rho = g_pre + omk * g_hh
                tl.store(gh_ptr + hoff, kr * g_hh, mask=msk_no)
            else:
                g_rho = g_pre
            # ---- readout
            m_t = tl.load(m_ptr + (((t64 + 1) * N + n3) * M + m3) * B + b3, mask=msk_nm, other=0.0)  # [BN, BM, BB]
            wmask = nm3 & (o3 < O) & (ar_m[None, None, :] < M)
            wofs = (p64 * N + n3) * O * M + o3 * M + ar_m[None, None, :]
            tl.store(gwy_ptr + wofs, tl.load(gwy_ptr + wofs, mask=wmask, other=0.0)
                     + tl.sum(g_rho[:, :, None, :] * m_t[:, None, :, :], axis=3), mask=wmask)
            wy = tl.load(wy_ptr + (n3 * O + o3) * M + ar_m[None, None, :], mask=wmask, other=0.0)  # [BN, BO, BM]
            gm_off = (n3 * M + m3) * B + b3
            g_m = tl.load(gm_ptr + gm_off, mask=msk_nm, other=0.0) \
                + tl.sum(wy[:, :, :, None] * g_rho[:, :, None, :], axis=1)  # [BN, BM, BB]
            # ---- memory update m' = md + gain tanh(2/3 z)
            z = tl.load(z_ptr + ((t64 * N + n3) * M + m3) * B + b3, mask=msk_nm, other=0.0)
            th = TH.tanh(tg * z)
            gn = tl.load(gain_ptr + n2 * M + ar_m[None, :], mask=mm2, other=0.0)
            kap = tl.load(kappa_ptr + n2 * M + ar_m[None, :], mask=mm2, other=0.0)
            gofs = (p64 * N + n2) * M + ar_m[None, :]
            tl.store(ggain_ptr + gofs, tl.load(ggain_ptr + gofs, mask=mm2, other=0.0) + tl.sum(g_m * th, axis=2),
                     mask=mm2)
            g_zabs = tl.load(gzabs_ptr + n2 * B + b2, mask=nm2 & bm2, other=0.0)  # [BN, BB]
            sgn = tl.where(z > 0, 1.0, tl.where(z < 0, -1.0, 0.0)).to(z.dtype)
            gz = g_m * gn[:, :, None] * tg * (1.0 - th * th) + g_zabs[:, None, :] * sgn
            # ---- MLP
            h3 = ar_h1[None, :, None]
            if TWO:
                tl.store(gz_ptr + ((t64 * N + n3) * M + m3) * B + b3, gz, mask=msk_nm)
                hh3 = ar_h[None, None, :]
                w2 = tl.load(w2_ptr + (n3 * M + m3) * H + hh3, mask=nm3 & (m3 < M) & (hh3 < H), other=0.0)  # [BN,BM,BH]
                a = tl.load(a1_ptr + ((t64 * N + n3) * H1 + h3) * B + b3, mask=nm3 & (h3 < H1) & bm3, other=0.0)
                ga = tl.sum(w2[:, :, :, None] * gz[:, :, None, :], axis=1) * TH.mlp_act_grad(a, MLP_ACT)  # [BN,BH,BB]
            else:
                ga = gz
            tl.store(ga_ptr + ((t64 * N + n3) * H1 + h3) * B + b3, ga, mask=nm3 & (h3 < H1) & bm3)
            w1b = tl.load(w1_ptr + (n3 * H1 + h3) * DM + ar_d[None, None, :],
                          mask=nm3 & (h3 < H1) & (ar_d[None, None, :] < D), other=0.0)  # [BN, BH1, BD]
            g_beta = tl.sum(w1b[:, :, :, None] * ga[:, :, None, :], axis=1)  # [BN, BD, BB]
            d3 = ar_d[None, :, None]
            tl.store(gbeta_ptr + ((t64 * N + n3) * D + d3) * B + b3, g_beta, mask=nm3 & (d3 < D) & bm3)
            w1m = tl.load(w1_ptr + (n3 * H1 + h3) * DM + D + ar_m[None, None, :],
                          mask=nm3 & (h3 < H1) & (ar_m[None, None, :] < M), other=0.0)  # [BN, BH1, BM]
            g_md = g_m + tl.sum(w1m[:, :, :, None] * ga[:, :, None, :], axis=1)  # [BN, BM, BB]
            m_prev = tl.load(m_ptr + ((t64 * N + n3) * M + m3) * B + b3, mask=msk_nm, other=0.0)
            tl.store(gkappa_ptr + gofs, tl.load(gkappa_ptr + gofs, mask=mm2, other=0.0)
                     + tl.sum(g_md * m_prev, axis=2), mask=mm2)
            tl.store(gm_ptr + gm_off, kap[:, :, None] * g_md, mask=msk_nm)
        # g_beta_all[t] of every neuron must be visible to the next (earlier) step's gather
        tl.debug_barrier()
    if HAS_REC:
        # the recurrence's gradient into y0: gather of g_beta_all[0]
        for blk in range(pid_g, NBLK, n_g):
            n1 = blk * BN + ar_n
            n_ok = n1 < N
            g_rec = _out_gather(gbeta_ptr, tgt_tab_ptr, wo_tab_ptr, mask_ptr, p64 * 0, T, n1, n_ok, bb, b_ok, N, D,
                                B, S_OUT, BN, BSO, BB, ar_so)
            tl.store(gy0_ptr + (n1[:, None] * O) * B + b2, g_rec, mask=n_ok[:, None] & bm2)


@triton.jit
def _out_gather(gbeta_ptr, tgt_tab_ptr, wo_tab_ptr, mask_ptr, t_src, T, n1, n_ok, bb, b_ok, N, D, B, S_OUT,
                BN: tl.constexpr, BSO: tl.constexpr, BB: tl.constexpr, ar_so):
    """``mask_rec[n] * sum_j w[n, j] * g_beta_all[t_src, target(n, j)]`` over the outgoing synapses
    of neurons ``n1`` (zeros when ``t_src >= T``): [BN, BB]."""
    acc = tl.zeros([BN, BB], dtype=gbeta_ptr.dtype.element_ty)
    n3 = n1[:, None, None]
    b3 = bb[None, None, :]
    base = t_src * N * D  # t_src is int64
    for s0 in range(0, S_OUT, BSO):
        s3 = s0 + ar_so[None, :, None]
        tmsk = n_ok[:, None, None] & (s3 < S_OUT) & ((s3 * 0 + t_src) < T)  # block-shaped: the
        # interpreter turns '&' with a scalar bool into int32
        toff = n3 * S_OUT + s3
        tgt = tl.load(tgt_tab_ptr + toff, mask=tmsk, other=0)  # [BN, BSO, 1]
        w = tl.load(wo_tab_ptr + toff, mask=tmsk, other=0.0)
        gb = tl.load(gbeta_ptr + (base + tgt) * B + b3, mask=tmsk & b_ok[None, None, :], other=0.0)
        acc += tl.sum(w * gb, axis=1)
    mk = tl.load(mask_ptr + n1[:, None] * B + bb[None, :], mask=n_ok[:, None] & b_ok[None, :], other=0.0)
    return acc * mk


# --------------------------------------------------------------------------- host side
def _elem(dtype: torch.dtype) -> int:
    """The element size of ``dtype`` (the kernels compute in float32 or float64; another dtype is an
    error here, and the contract sends those layers to the per-step path before they get here)."""
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"elm_triton computes in float32 or float64, not {dtype} "
                        "(elm_contract.unsupported_reason sends such layers to the per-step path)")
    return torch.finfo(dtype).bits // 8


def _layout(n: int, d: int, m: int, h1: int, h: int, o: int, s_in: int, s_out: int, bsz: int, elem: int,
            two: bool, batch_block: int):
    bd, bm, bh1, bo = _p2(d), _p2(m), _p2(h1), _p2(o)
    bh = _p2(h) if two else 1
    bs = min(_p2(s_in), MAX_SYN_BLOCK)
    bso = min(_p2(s_out), MAX_SYN_BLOCK)
    bb = min(_p2(batch_block), _p2(bsz))
    per_neuron = max(bh1 * bd, bh1 * bm, bm * bh, bo * bm, bd * bs, bso) * bb
    bn = 1
    while bn * 2 * per_neuron <= TILE_BUDGET[elem] and bn < _p2(n):
        bn *= 2
    return dict(BN=bn, BD=bd, BM=bm, BH1=bh1, BH=bh, BO=bo, BB=bb), bs, bso


def _widths(rec: Recurrent, n: int, d: int) -> tuple[int, int]:
    """``(S_in, S_out)``, the gather tables' widths: the CSR's own (counted once per connectome,
    :func:`~elm_neuro.networks.engines.elm_contract.make_recurrent`), else counted here, which
    synchronises with the device (hand-built CSRs only); at least 1."""
    if not rec.count:
        return 1, 1
    s_in = rec.in_width if rec.in_width is not None else int(torch.bincount(rec.flat, minlength=n * d).max())
    s_out = rec.out_width if rec.out_width is not None else int(torch.bincount(rec.src, minlength=n).max())
    return max(s_in, 1), max(s_out, 1)


def _in_table(rec: Recurrent, rec_w: torch.Tensor, n: int, d: int, s_in: int):
    """Padded per-(neuron, branch) table of source neurons and weights ``[N * D, S_in]``."""
    pos = TH.slots(rec.flat, n * d)
    src = torch.zeros(n * d, s_in, dtype=torch.int32, device=rec.flat.device)
    w = torch.zeros(n * d, s_in, dtype=rec_w.dtype, device=rec.flat.device)
    src[rec.flat, pos] = rec.src.to(torch.int32)
    w[rec.flat, pos] = rec_w
    return src, w


def _out_table(rec: Recurrent, rec_w: torch.Tensor, n: int, s_out: int):
    """Padded per-source-neuron table of target columns (``n * D + branch``) and weights ``[N, S_out]``."""
    pos = TH.slots(rec.src, n)
    tgt = torch.zeros(n, s_out, dtype=torch.int32, device=rec.src.device)
    w = torch.zeros(n, s_out, dtype=rec_w.dtype, device=rec.src.device)
    tgt[rec.src, pos] = rec.flat.to(torch.int32)
    w[rec.src, pos] = rec_w
    return tgt, w


def _consts(spec: Spec, like: torch.Tensor) -> torch.Tensor:
    """``kr, 1 - kr, 2/3`` on ``like``'s device, made once per value (a new tensor from host values
    per call would synchronise with the device)."""
    kr = float(spec.kr)
    return TH.device_constants((kr, 1.0 - kr, TANH_GAIN), like.dtype, like.device)


def _grid(bsz: int, bb: int, nblk: int, has_rec: bool):
    return (triton.cdiv(bsz, bb), 1 if has_rec else nblk)


def _flags(spec: Spec, has_rec: bool) -> dict:
    return dict(MLP_ACT=spec.mlp_act, OUT_ACT=spec.out_act, TWO=bool(spec.two_layers), HP=bool(spec.high_pass),
                HAS_REC=has_rec)


def _options(n, d, m, h1, h, o, s_in, s_out, bsz, elem, spec: Spec, has_rec: bool) -> tuple[dict, dict]:
    """The constexprs of the forward and of the backward kernel (block sizes and options)."""
    fwd, bs, _ = _layout(n, d, m, h1, h, o, s_in, 1, bsz, elem, spec.two_layers, BATCH_BLOCK)
    bwd, _, bso = _layout(n, d, m, h1, h, o, 1, s_out, bsz, elem, spec.two_layers, BATCH_BLOCK)
    flags = _flags(spec, has_rec)
    return dict(fwd, BS=bs, **flags), dict(bwd, BSO=bso, **flags)


def _sizes(rec: Recurrent, w: Weights, m: int, o: int, n: int, d: int, spec: Spec):
    h1 = w.W1.shape[1]
    h = w.W2.shape[2] if spec.two_layers else 1
    s_in, s_out = _widths(rec, n, d)
    return m, h1, h, o, s_in, s_out


def compile_key(inp: Drive, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> tuple:
    """What the kernels of a forward call (and its backward) are compiled for, besides the dtype
    and the device: ``(name, value)`` pairs of the forward kernel's constexprs, the backward's where
    they differ (``bwd_``), and ``num_warps``. The first-use check's cache key
    (:func:`elm_neuro.networks.engines.backends.first_use`)."""
    _, n, d, bsz = inp.drive.shape
    m, h1, h, o, s_in, s_out = _sizes(rec, w, s.m.shape[1], s.y.shape[1], n, d, spec)
    fwd, bwd = _options(n, d, m, h1, h, o, s_in, s_out, bsz, _elem(w.W1.dtype), spec, rec.count > 0)
    return tuple(sorted(fwd.items())) + tuple((f"bwd_{k}", v) for k, v in sorted(bwd.items()) if fwd.get(k) != v) \
        + (("num_warps", NUM_WARPS),)


def forward(inp: Drive, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> Saved:
    """The kernel contract's forward (``elm_contract.forward_torch``) as one persistent kernel."""
    drive_in = inp.drive.contiguous()
    steps, n, d, bsz = drive_in.shape
    dev, dtype = drive_in.device, drive_in.dtype
    m, h1, h, o, s_in, s_out = _sizes(rec, w, s.m.shape[1], s.y.shape[1], n, d, spec)
    two = spec.two_layers
    y_all = drive_in.new_empty((steps + 1, n, o, bsz))
    m_all = drive_in.new_empty((steps + 1, n, m, bsz))
    y_all[0], m_all[0] = s.y, s.m
    beta_all = torch.empty_like(drive_in)
    a1_all = drive_in.new_empty(steps, n, h1, bsz) if two else None
    z_all = drive_in.new_empty(steps, n, m, bsz)
    pre_all = drive_in.new_empty(steps, n, o, bsz)
    zabs = drive_in.new_zeros(n, bsz)
    h_T = s.h.clone().contiguous() if spec.high_pass else None
    has_rec = rec.count > 0
    if has_rec:
        src_tab, w_tab = _in_table(rec, w.rec_w.to(dtype), n, d, s_in)
    else:
        src_tab = torch.zeros(1, dtype=torch.int32, device=dev)
        w_tab = drive_in.new_zeros(1)
    opts, _ = _options(n, d, m, h1, h, o, s_in, s_out, bsz, _elem(dtype), spec, has_rec)
    nblk = triton.cdiv(n, opts["BN"])
    dummy = drive_in.new_zeros(1)
    _elm_fwd_kernel[_grid(bsz, opts["BB"], nblk, has_rec)](
        drive_ptr=drive_in, beta_ptr=beta_all, y_ptr=y_all, m_ptr=m_all,
        a1_ptr=a1_all if two else dummy, z_ptr=z_all, pre_ptr=pre_all,
        h_ptr=h_T if h_T is not None else dummy, zabs_ptr=zabs, src_tab_ptr=src_tab, w_tab_ptr=w_tab,
        mask_ptr=mask_rec.to(dtype).contiguous(), w1_ptr=w.W1, b1_ptr=w.b1, w2_ptr=w.W2 if two else dummy,
        b2_ptr=w.b2 if two else dummy, wy_ptr=w.wy, bias_ptr=w.bias, kappa_ptr=w.kappa, gain_ptr=w.gain,
        cst_ptr=_consts(spec, drive_in),
        T=steps, N=n, D=d, M=m, H1=h1, H=h, O=o, B=bsz, S_IN=s_in, NBLK=nblk, num_warps=NUM_WARPS, **opts)
    return Saved(y_all, m_all, beta_all, a1_all, z_all, pre_all, h_T, zabs)


def backward(saved: Saved, inp: Drive, rec: Recurrent, mask_rec, w: Weights, g: OutGrads, spec: Spec,
             want_input_grad: bool = True) -> Grads:
    """The kernel contract's backward (``elm_contract.backward_torch``) as one persistent kernel."""
    steps, n, d, bsz = saved.beta_all.shape
    dtype, dev = saved.z_all.dtype, saved.z_all.device
    m, h1, h, o, s_in, s_out = _sizes(rec, w, saved.m_all.shape[2], saved.y_all.shape[2], n, d, spec)
    two = spec.two_layers
    g_beta_all = torch.empty_like(saved.beta_all)
    ga_all = torch.empty(steps, n, h1, bsz, dtype=dtype, device=dev)
    gz_all = torch.empty_like(saved.z_all) if two else None
    g_m = g.g_mT.to(dtype).clone().contiguous()
    g_h = g.g_hT.to(dtype).clone().contiguous() if spec.high_pass else None
    g_y0 = torch.zeros_like(saved.y_all[0])
    has_rec = rec.count > 0
    if has_rec:
        tgt_tab, wo_tab = _out_table(rec, w.rec_w.to(dtype), n, s_out)
    else:
        tgt_tab = torch.zeros(1, dtype=torch.int32, device=dev)
        wo_tab = torch.zeros(1, dtype=dtype, device=dev)
    _, opts = _options(n, d, m, h1, h, o, s_in, s_out, bsz, _elem(dtype), spec, has_rec)
    nblk = triton.cdiv(n, opts["BN"])
    grid = _grid(bsz, opts["BB"], nblk, has_rec)
    parts = grid[0]
    g_wy = torch.zeros(parts, n, o, m, dtype=dtype, device=dev)
    g_bias = torch.zeros(parts, n, o, dtype=dtype, device=dev)
    g_gain = torch.zeros(parts, n, m, dtype=dtype, device=dev)
    g_kappa = torch.zeros(parts, n, m, dtype=dtype, device=dev)
    dummy = torch.zeros(1, dtype=dtype, device=dev)
    _elm_bwd_kernel[grid](
        gy_ptr=g.gy.to(dtype).contiguous(), y_ptr=saved.y_all, m_ptr=saved.m_all,
        a1_ptr=saved.a1_all if two else dummy, z_ptr=saved.z_all, pre_ptr=saved.pre_all,
        gbeta_ptr=g_beta_all, ga_ptr=ga_all, gz_ptr=gz_all if two else dummy, gm_ptr=g_m,
        gh_ptr=g_h if g_h is not None else dummy, gy0_ptr=g_y0,
        gwy_ptr=g_wy, gbias_ptr=g_bias, ggain_ptr=g_gain, gkappa_ptr=g_kappa, gzabs_ptr=g.g_zabs.to(dtype).contiguous(),
        tgt_tab_ptr=tgt_tab, wo_tab_ptr=wo_tab, mask_ptr=mask_rec.to(dtype).contiguous(),
        w1_ptr=w.W1, w2_ptr=w.W2 if two else dummy, wy_ptr=w.wy, kappa_ptr=w.kappa, gain_ptr=w.gain,
        cst_ptr=_consts(spec, saved.z_all),
        T=steps, N=n, D=d, M=m, H1=h1, H=h, O=o, B=bsz, S_OUT=s_out, NBLK=nblk, num_warps=NUM_WARPS, **opts)
    return Grads(g_beta_all, ga_all, gz_all, g_wy.sum(0), g_bias.sum(0), g_gain.sum(0), g_kappa.sum(0), g_m,
                 g_h, g_y0)
