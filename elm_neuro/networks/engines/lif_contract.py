"""The kernel contract of the fused LIF / adLIF sequence engine: its types and its plain-PyTorch
reference.

Every backend (:mod:`~elm_neuro.networks.engines.lif_numba` on the CPU,
:mod:`~elm_neuro.networks.engines.lif_triton` on CUDA) implements :func:`forward_torch` /
:func:`backward_torch` with the same arguments and results;
:mod:`elm_neuro.networks.engines.lif_sequence` wraps whichever runs in one autograd Function (the
same design as the ELM engine, :mod:`elm_neuro.networks.engines.elm_contract`). This module imports
nothing from the backends.

What runs where
    Outside the loop, as large tensor operations: the input synapses' currents for all ``T``
    steps (computed by the layer with ordinary autograd: one product of the inputs with the dense
    synapse map, so the input weights get their gradient from ``d current``), and in backward the
    recurrent weights' gradient as one GEMM over ``T * B`` (``S_prev^T @ g_current``). Inside the
    loop only the recurrent part: the recurrent synapses reading the previous step's spikes,
    adaptation, refractory block, membrane update, reset and threshold (forward), and their
    derivatives with the surrogate gradient in reverse order (backward).

The step (equations: :mod:`elm_neuro.neurons.lif`), for neuron ``n`` and sample ``b``::

    c_t  = cur_in_t + sum_j M[j, n] mask[j] s_{t-1}[j]              current
    w_t  = (kappa_w w_{t-1} + a v_{t-1}) + b s_{t-1}                 adaptation (adLIF)
    D_t  = (c_t - w_t) (1 - q_t),  q_t = 1[ref_{t-1} > 0]           drive (refractory block)
    E_t  = g D_t  (only when the gain is not folded into the weights)
    v_t  = (kappa_m v_{t-1} + E_t) - theta_r s_{t-1}                "subtract" reset
    v_t  = kappa_m v_{t-1} (1 - s_{t-1}) + E_t                        "zero" reset
    s_t  = H(v_t - theta) (1 - q_t),  ref_t = R if s_t else max(ref_{t-1} - 1, 0)

computed with the per-step path's operations in the same order (elementwise, no fused
multiply-add), so that only the recurrent sum (whose order a matrix product chooses) can differ
in rounding; :func:`forward_torch` is the per-step path's arithmetic exactly.

The kernel contract (every backend implements it; layouts are batch first, as the layer's
tensors, so that neither the currents nor the spikes are transposed)::

    cur_in  [B, T, N]   feed-forward current (input dropout applied; contiguous): the Drive
                        input form, the only one these backends take (``TAKES``); the layer
                        projects it (:func:`elm_neuro.networks.engines.projection.project`)
    mask    [B, N]      recurrent dropout mask (ones when off)
    Weights M [N, N]    the recurrent synapses as a dense source-major map: M[j, n] = the summed
                        weight of the synapses from neuron j onto neuron n (Spec.recurrent False:
                        the layer has none and M is not read); kappa_m, gain, kappa_w, a, b [N]
                        (gain only with ``Spec.has_gain``, else None; the last three adLIF)
    State   v, s, w, ref [B, N] (w adLIF, ref with a refractory period, else None)

    forward saves   v_all, s_all [B, T+1, N] (v_all[:, 0] = v0, s_all[:, 0] = s0),
                    w_all [B, T+1, N] (adLIF), q_all [B, T, N] (refractory flags, R > 0),
                    d_all [B, T, N] (the drive D_t before the gain, with has_gain), ref_T [B, N]
    backward takes  OutGrads: gs [B, T, N] (gradient of the spikes s_1..s_T), g_vT, g_wT [B, N]
    and gives       g_cur [B, T, N] (gradient of the current c_t), g_kappa_m, g_gain,
                    g_kappa_w, g_a, g_b [N], g_v0, g_s0, g_w0 [B, N]
    (the recurrent map's gradient the Function forms from s_all and g_cur: :func:`rec_map_grad`)

Coverage (:func:`unsupported_reason`): LIF and adLIF, soft ("subtract") and hard ("zero") reset,
any refractory period, unit or leak input gain, fixed or learnable timescales and couplings,
Dale's law (in the weights, before the engine), the three surrogates, detached or attached
reset, dropout masks, a carried state. Parameters other than float32 / float64, and layers so
large that the dense ``[N, N]`` recurrent map would exceed ``DENSE_REC_MAX`` entries, run on the
per-step path; under autocast the engine computes in the parameters' dtype.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from elm_neuro.networks.engines.backends import Backend
from elm_neuro.networks.engines.inputs import Drive
from elm_neuro.neurons import surrogate as N

SURROGATE_CODES = {"fast_sigmoid": 0, "atan": 1, "superspike": 2}
RESET_CODES = {"subtract": 0, "zero": 1}
DTYPES = (torch.float32, torch.float64)
DENSE_REC_MAX = 1 << 26  # entries of the dense recurrent map (N up to 8192)


class Spec(NamedTuple):
    """Static options of one call (plain Python values)."""

    adaptive: bool
    reset: int  # RESET_CODES
    detach_reset: bool
    refractory: int  # R, steps (0: none)
    has_gain: bool  # multiply the drive by ``gain`` (else the gain is 1 or folded into the weights)
    surrogate: int  # SURROGATE_CODES
    threshold: float
    reset_value: float
    slope: float
    scale: float
    recurrent: bool = True  # the layer has recurrent synapses (else M is not read)


class Weights(NamedTuple):
    """The layer's parameters in the kernels' form (module docstring); absent ones are None."""

    M: torch.Tensor
    kappa_m: torch.Tensor
    gain: Optional[torch.Tensor]
    kappa_w: Optional[torch.Tensor]
    a: Optional[torch.Tensor]
    b: Optional[torch.Tensor]


class State(NamedTuple):
    """Membrane, spikes, adaptation (adLIF) and refractory counter (R > 0), ``[B, N]`` each."""

    v: torch.Tensor
    s: torch.Tensor
    w: Optional[torch.Tensor]
    ref: Optional[torch.Tensor]


class OutGrads(NamedTuple):
    gs: torch.Tensor  # [B, T, N]
    g_vT: torch.Tensor
    g_wT: Optional[torch.Tensor]


class Saved(NamedTuple):
    v_all: torch.Tensor
    s_all: torch.Tensor
    w_all: Optional[torch.Tensor]
    q_all: Optional[torch.Tensor]
    d_all: Optional[torch.Tensor]
    ref_T: Optional[torch.Tensor]


class Grads(NamedTuple):
    g_cur: torch.Tensor
    g_kappa_m: torch.Tensor
    g_gain: Optional[torch.Tensor]
    g_kappa_w: Optional[torch.Tensor]
    g_a: Optional[torch.Tensor]
    g_b: Optional[torch.Tensor]
    g_v0: torch.Tensor
    g_s0: torch.Tensor
    g_w0: Optional[torch.Tensor]


def unsupported_reason(dtype: torch.dtype, n: int = 1) -> Optional[str]:
    """Why the fused engine cannot run a layer of ``n`` neurons whose parameters have ``dtype``
    (None when it can; every option of :class:`~elm_neuro.networks.lif_config.LIFLayerConfig` is
    covered)."""
    if dtype not in DTYPES:
        return f"parameters in {dtype} run on the per-step path (fused: float32, float64)"
    if n * n > DENSE_REC_MAX:
        return f"N = {n}: the dense [N, N] recurrent map would exceed {DENSE_REC_MAX} entries"
    return None


def make_spec(cfg, has_gain: bool, recurrent: bool = True) -> Spec:
    """The :class:`Spec` of a ``LIFLayerConfig``."""
    return Spec(cfg.adaptive, RESET_CODES[cfg.reset], bool(cfg.detach_reset), int(cfg.refractory), bool(has_gain),
                SURROGATE_CODES[cfg.surrogate], float(cfg.threshold), float(cfg.theta_reset),
                float(cfg.surrogate_slope), float(cfg.surrogate_scale), bool(recurrent))


_SURROGATE_NAMES = {code: name for name, code in SURROGATE_CODES.items()}


def surrogate_grad(x: torch.Tensor, spec: Spec) -> torch.Tensor:
    """``sigma'(x)`` of the spec's surrogate (:func:`elm_neuro.neurons.surrogate.surrogate_grad`)."""
    return N.surrogate_grad(x, _SURROGATE_NAMES[spec.surrogate], spec.slope, spec.scale)


def saved_buffers(cur_in, s: State, spec: Spec):
    """The arrays a compiled forward fills (the contract's saved tensors): ``v_all``, ``s_all``
    [B, T+1, N] with the initial state in step 0, ``w_all`` (adLIF), ``q_all`` (refractory),
    ``d_all`` (with a gain) and a contiguous copy of ``ref`` (refractory), else None."""
    bsz, steps, n = cur_in.shape
    new = cur_in.new_empty
    v_all, s_all = new(bsz, steps + 1, n), new(bsz, steps + 1, n)
    v_all[:, 0], s_all[:, 0] = s.v, s.s
    w_all = new(bsz, steps + 1, n) if spec.adaptive else None
    if w_all is not None:
        w_all[:, 0] = s.w
    refr = spec.refractory > 0
    q_all = new(bsz, steps, n) if refr else None
    d_all = new(bsz, steps, n) if spec.has_gain else None
    ref = s.ref.clone().contiguous() if refr else None
    return v_all, s_all, w_all, q_all, d_all, ref


def forward_torch(cur_in, mask, w: Weights, s: State, spec: Spec) -> Saved:
    """The kernel contract's forward in plain PyTorch (module docstring): the per-step path's
    operations (``lif_step`` with the dense synapse kernel), step by step."""
    steps = cur_in.shape[1]
    v_all, s_all, w_all, q_all, d_all, ref = saved_buffers(cur_in, s, spec)
    refr = ref is not None
    thr = float(spec.reset_value)
    for t in range(steps):
        vp, sp = v_all[:, t], s_all[:, t]
        drive = cur_in[:, t] + (sp * mask) @ w.M if spec.recurrent else cur_in[:, t]
        if spec.adaptive:
            wt = w.kappa_w * w_all[:, t] + w.a * vp + w.b * sp
            w_all[:, t + 1] = wt
            drive = drive - wt
        if refr:
            q = (ref > 0).to(cur_in.dtype)
            q_all[:, t] = q
            drive = drive * (1.0 - q)
        if spec.has_gain:
            d_all[:, t] = drive
            drive = w.gain * drive
        if spec.reset == 0:
            v = w.kappa_m * vp + drive - thr * sp
        else:
            v = w.kappa_m * vp * (1.0 - sp) + drive
        st = (v - spec.threshold > 0).to(cur_in.dtype)
        if refr:
            st = st * (1.0 - q)
            ref = torch.where(st > 0, torch.full_like(ref, float(spec.refractory)), (ref - 1.0).clamp_min(0.0))
        v_all[:, t + 1], s_all[:, t + 1] = v, st
    return Saved(v_all, s_all, w_all, q_all, d_all, ref if refr else None)


def backward_torch(saved: Saved, mask, w: Weights, g: OutGrads, spec: Spec) -> Grads:
    """The kernel contract's backward in plain PyTorch (module docstring)."""
    steps = g.gs.shape[1]
    g_cur = torch.empty_like(g.gs)
    acc = {k: torch.zeros_like(w.kappa_m) for k in ("km", "gain", "kw", "a", "b")}
    g_v = g.g_vT.clone()
    g_w = g.g_wT.clone() if spec.adaptive else None
    g_s = torch.zeros_like(g.g_vT)  # gradient into s_t from step t + 1
    thr = float(spec.reset_value)
    for t in range(steps - 1, -1, -1):
        v, vp, sp = saved.v_all[:, t + 1], saved.v_all[:, t], saved.s_all[:, t]
        sg = surrogate_grad(v - spec.threshold, spec)
        if spec.refractory > 0:
            sg = sg * (1.0 - saved.q_all[:, t])
        gv = g_v + (g.gs[:, t] + g_s) * sg
        if spec.reset == 0:
            acc["km"] += (gv * vp).sum(0)
            g_vp = gv * w.kappa_m
            g_r = -thr * gv
        else:
            acc["km"] += (gv * vp * (1.0 - sp)).sum(0)
            g_vp = gv * w.kappa_m * (1.0 - sp)
            g_r = -gv * w.kappa_m * vp
        g_sp = torch.zeros_like(gv) if spec.detach_reset else g_r
        gd = gv
        if spec.has_gain:
            acc["gain"] += (gd * saved.d_all[:, t]).sum(0)
            gd = gd * w.gain
        if spec.refractory > 0:
            gd = gd * (1.0 - saved.q_all[:, t])
        g_cur[:, t] = gd
        if spec.adaptive:
            gw = g_w - gd
            acc["kw"] += (gw * saved.w_all[:, t]).sum(0)
            acc["a"] += (gw * vp).sum(0)
            acc["b"] += (gw * sp).sum(0)
            g_w = gw * w.kappa_w
            g_vp = g_vp + gw * w.a
            g_sp = g_sp + gw * w.b
        g_v = g_vp
        g_s = g_sp + (gd @ w.M.t()) * mask if spec.recurrent else g_sp
    ad = spec.adaptive
    return Grads(g_cur, acc["km"], acc["gain"] if spec.has_gain else None, acc["kw"] if ad else None,
                 acc["a"] if ad else None, acc["b"] if ad else None, g_v, g_s, g_w)


def rec_map_grad(s_all: torch.Tensor, mask: torch.Tensor, g_cur: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` gradient of the recurrent map ``M``: ``sum_{b, t} mask[b, j] s_{t-1}[b, j]
    g_cur[b, t, n]``, one GEMM over ``B * T``."""
    bsz, steps, n = g_cur.shape
    sm = (s_all[:, :-1] * mask[:, None, :]).reshape(bsz * steps, n)
    return sm.t() @ g_cur.reshape(bsz * steps, n)


REFERENCE = Backend("torch", forward_torch, backward_torch, (Drive,))
