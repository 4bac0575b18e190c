"""The fused sequence engine of a LIF / adLIF layer: the whole time loop as one forward and one
reverse-time backward (one ``torch.autograd.Function``), beside the per-step path of
:class:`~elm_neuro.networks.lif_layer.LIFLayer`, which stays the reference. The same design as the
ELM layer's engine (:mod:`elm_neuro.networks.engines.elm_sequence`).

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

    cur_in  [B, T, N]   feed-forward current (input dropout applied; contiguous)
    M       [N, N]      the recurrent synapses as a dense source-major map: M[j, n] = the summed
                        weight of the synapses from neuron j onto neuron n (Spec.recurrent False:
                        the layer has none and M is not read)
    mask    [B, N]      recurrent dropout mask (ones when off)
    kappa_m, gain, kappa_w, a, b   [N] (gain only with ``Spec.has_gain``; the last three adLIF)
    state   v0, s0, w0, ref0 [B, N] (w0 adLIF, ref0 with a refractory period)

    forward saves   v_all, s_all [B, T+1, N] (v_all[:, 0] = v0, s_all[:, 0] = s0),
                    w_all [B, T+1, N] (adLIF), q_all [B, T, N] (refractory flags, R > 0),
                    d_all [B, T, N] (the drive D_t before the gain, with has_gain), ref_T [B, N]
    backward takes  gs [B, T, N] (gradient of the spikes s_1..s_T), g_vT, g_wT [B, N]
    and gives       g_cur [B, T, N] (gradient of the current c_t), g_kappa_m, g_gain,
                    g_kappa_w, g_a, g_b [N], g_v0, g_s0, g_w0 [B, N]
    (the recurrent map's gradient the Function forms from s_all and g_cur: :func:`rec_map_grad`)

:func:`forward_torch` / :func:`backward_torch` implement it in plain PyTorch (the reference every
compiled backend is tested against); :mod:`elm_neuro.networks.engines.lif_numba` is the CPU
backend and :mod:`elm_neuro.networks.engines.lif_triton` the CUDA one.

Coverage (:func:`unsupported_reason`): LIF and adLIF, soft ("subtract") and hard ("zero") reset,
any refractory period, unit or leak input gain, fixed or learnable timescales and couplings,
Dale's law (in the weights, before the engine), the three surrogates, detached or attached
reset, dropout masks, a carried state. Parameters other than float32 / float64, and layers so
large that the dense ``[N, N]`` recurrent map would exceed ``DENSE_REC_MAX`` entries, run on the
per-step path; under autocast the engine computes in the parameters' dtype.

:class:`LeakyScan` is the first-order filter ``o_t = kappa o_{t-1} + gain d_t`` over a whole
sequence (the leaky readout, the low-passed output spikes of the spiking readout) as one
Function, with the same backends.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from elm_neuro.networks.engines.backends import pick
from elm_neuro.neurons import surrogate as N

_NUMBA, _TRITON = "elm_neuro.networks.engines.lif_numba", "elm_neuro.networks.engines.lif_triton"

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


# --------------------------------------------------------------------------- surrogates
_SURROGATE_NAMES = {code: name for name, code in SURROGATE_CODES.items()}


def surrogate_grad(x: torch.Tensor, spec: Spec) -> torch.Tensor:
    """``sigma'(x)`` of the spec's surrogate (:func:`elm_neuro.neurons.surrogate.surrogate_grad`)."""
    return N.surrogate_grad(x, _SURROGATE_NAMES[spec.surrogate], spec.slope, spec.scale)


# --------------------------------------------------------------------------- reference backend
def saved_buffers(cur_in, v0, s0, w0, ref0, spec: Spec):
    """The arrays a compiled forward fills (the contract's saved tensors): ``v_all``, ``s_all``
    [B, T+1, N] with the initial state in step 0, ``w_all`` (adLIF), ``q_all`` (refractory),
    ``d_all`` (with a gain) and a contiguous copy of ``ref0`` (refractory), else None."""
    bsz, steps, n = cur_in.shape
    new = cur_in.new_empty
    v_all, s_all = new(bsz, steps + 1, n), new(bsz, steps + 1, n)
    v_all[:, 0], s_all[:, 0] = v0, s0
    w_all = new(bsz, steps + 1, n) if spec.adaptive else None
    if w_all is not None:
        w_all[:, 0] = w0
    refr = spec.refractory > 0
    q_all = new(bsz, steps, n) if refr else None
    d_all = new(bsz, steps, n) if spec.has_gain else None
    ref = ref0.clone().contiguous() if refr else None
    return v_all, s_all, w_all, q_all, d_all, ref


def forward_torch(cur_in, M, mask, kappa_m, gain, kappa_w, a, b, v0, s0, w0, ref0, spec: Spec) -> Saved:
    """The kernel contract's forward in plain PyTorch (module docstring): the per-step path's
    operations (``lif_step`` with the dense synapse kernel), step by step."""
    bsz, steps, n = cur_in.shape
    new = cur_in.new_empty
    v_all, s_all = new(bsz, steps + 1, n), new(bsz, steps + 1, n)
    v_all[:, 0], s_all[:, 0] = v0, s0
    w_all = q_all = d_all = None
    if spec.adaptive:
        w_all = new(bsz, steps + 1, n)
        w_all[:, 0] = w0
    refr = spec.refractory > 0
    if refr:
        q_all = new(cur_in.shape)
        ref = ref0.clone()
    if spec.has_gain:
        d_all = new(cur_in.shape)
    thr = float(spec.reset_value)
    for t in range(steps):
        vp, sp = v_all[:, t], s_all[:, t]
        drive = cur_in[:, t] + (sp * mask) @ M if spec.recurrent else cur_in[:, t]
        if spec.adaptive:
            w = kappa_w * w_all[:, t] + a * vp + b * sp
            w_all[:, t + 1] = w
            drive = drive - w
        if refr:
            q = (ref > 0).to(cur_in.dtype)
            q_all[:, t] = q
            drive = drive * (1.0 - q)
        if spec.has_gain:
            d_all[:, t] = drive
            drive = gain * drive
        if spec.reset == 0:
            v = kappa_m * vp + drive - thr * sp
        else:
            v = kappa_m * vp * (1.0 - sp) + drive
        s = (v - spec.threshold > 0).to(cur_in.dtype)
        if refr:
            s = s * (1.0 - q)
            ref = torch.where(s > 0, torch.full_like(ref, float(spec.refractory)), (ref - 1.0).clamp_min(0.0))
        v_all[:, t + 1], s_all[:, t + 1] = v, s
    return Saved(v_all, s_all, w_all, q_all, d_all, ref if refr else None)


def backward_torch(saved: Saved, M, mask, kappa_m, gain, kappa_w, a, b, gs, g_vT, g_wT, spec: Spec) -> Grads:
    """The kernel contract's backward in plain PyTorch (module docstring)."""
    steps = gs.shape[1]
    g_cur = torch.empty_like(gs)
    acc = {k: torch.zeros_like(kappa_m) for k in ("km", "gain", "kw", "a", "b")}
    g_v = g_vT.clone()
    g_w = g_wT.clone() if spec.adaptive else None
    g_s = torch.zeros_like(g_vT)  # gradient into s_t from step t + 1
    thr = float(spec.reset_value)
    for t in range(steps - 1, -1, -1):
        v, vp, sp = saved.v_all[:, t + 1], saved.v_all[:, t], saved.s_all[:, t]
        sg = surrogate_grad(v - spec.threshold, spec)
        if spec.refractory > 0:
            sg = sg * (1.0 - saved.q_all[:, t])
        gv = g_v + (gs[:, t] + g_s) * sg
        if spec.reset == 0:
            acc["km"] += (gv * vp).sum(0)
            g_vp = gv * kappa_m
            g_r = -thr * gv
        else:
            acc["km"] += (gv * vp * (1.0 - sp)).sum(0)
            g_vp = gv * kappa_m * (1.0 - sp)
            g_r = -gv * kappa_m * vp
        g_sp = torch.zeros_like(gv) if spec.detach_reset else g_r
        gd = gv
        if spec.has_gain:
            acc["gain"] += (gd * saved.d_all[:, t]).sum(0)
            gd = gd * gain
        if spec.refractory > 0:
            gd = gd * (1.0 - saved.q_all[:, t])
        g_cur[:, t] = gd
        if spec.adaptive:
            gw = g_w - gd
            acc["kw"] += (gw * saved.w_all[:, t]).sum(0)
            acc["a"] += (gw * vp).sum(0)
            acc["b"] += (gw * sp).sum(0)
            g_w = gw * kappa_w
            g_vp = g_vp + gw * a
            g_sp = g_sp + gw * b
        g_v = g_vp
        g_s = g_sp + (gd @ M.t()) * mask if spec.recurrent else g_sp
    ad = spec.adaptive
    return Grads(g_cur, acc["km"], acc["gain"] if spec.has_gain else None, acc["kw"] if ad else None,
                 acc["a"] if ad else None, acc["b"] if ad else None, g_v, g_s, g_w)


def rec_map_grad(s_all: torch.Tensor, mask: torch.Tensor, g_cur: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` gradient of the recurrent map ``M``: ``sum_{b, t} mask[b, j] s_{t-1}[b, j]
    g_cur[b, t, n]``, one GEMM over ``B * T``."""
    bsz, steps, n = g_cur.shape
    sm = (s_all[:, :-1] * mask[:, None, :]).reshape(bsz * steps, n)
    return sm.t() @ g_cur.reshape(bsz * steps, n)


# --------------------------------------------------------------------------- backends
def backend(device: torch.device):
    """``(forward, backward)`` of the fastest backend for ``device``: Numba on the CPU, Triton on
    CUDA where it is installed, else the PyTorch reference (:func:`~elm_neuro.networks.engines.backends.pick`)."""
    return pick(device, _NUMBA, _TRITON, ("forward", "backward"), (forward_torch, backward_torch))


def _opt(t):
    return None if t is None else t.contiguous()


# --------------------------------------------------------------------------- autograd
class LIFSequence(torch.autograd.Function):
    """The whole sequence of one LIF / adLIF layer; see the module docstring.

    ``forward(ctx, fns, spec, mask, cur_in, M, kappa_m, gain, kappa_w, a, b, v0, s0, w0, ref0)``
    returns ``(s [B, T, N], v_T, w_T, ref_T)`` (``w_T`` / ``ref_T`` are empty tensors without
    adaptation / refractory period; absent inputs are None).
    """

    @staticmethod
    def forward(ctx, fns, spec: Spec, mask, cur_in, M, kappa_m, gain, kappa_w, a, b, v0, s0, w0, ref0):
        fwd, _ = fns
        saved = fwd(cur_in.contiguous(), M.contiguous(), mask.contiguous(), kappa_m.contiguous(), _opt(gain),
                    _opt(kappa_w), _opt(a), _opt(b), v0.contiguous(), s0.contiguous(), _opt(w0), _opt(ref0), spec)
        ctx.fns, ctx.spec = fns, spec
        ctx.save_for_backward(mask, M, kappa_m, gain, kappa_w, a, b, *saved[:5])
        empty = cur_in.new_empty(0)
        w_T = saved.w_all[:, -1] if spec.adaptive else empty
        ref_T = saved.ref_T if saved.ref_T is not None else empty
        ctx.mark_non_differentiable(ref_T)
        return saved.s_all[:, 1:], saved.v_all[:, -1], w_T, ref_T

    @staticmethod
    def backward(ctx, gs, g_vT, g_wT, _g_ref):
        mask, M, kappa_m, gain, kappa_w, a, b, *rest = ctx.saved_tensors
        saved = Saved(*rest, None)
        spec = ctx.spec
        zeros = torch.zeros_like(saved.v_all[:, 0])
        gs = torch.zeros_like(saved.s_all[:, 1:]) if gs is None else gs.contiguous()
        g_vT = zeros if g_vT is None else g_vT.contiguous()
        g_wT = (zeros if g_wT is None or g_wT.numel() == 0 else g_wT.contiguous()) if spec.adaptive else None
        _, bwd = ctx.fns
        g = bwd(saved, M.contiguous(), mask, kappa_m.contiguous(), _opt(gain), _opt(kappa_w), _opt(a), _opt(b), gs,
                g_vT, g_wT, spec)
        g_M = rec_map_grad(saved.s_all, mask, g.g_cur) if spec.recurrent and ctx.needs_input_grad[4] else None
        ad = spec.adaptive
        return (None, None, None, g.g_cur, g_M, g.g_kappa_m, g.g_gain if spec.has_gain else None,
                g.g_kappa_w if ad else None, g.g_a if ad else None, g.g_b if ad else None, g.g_v0, g.g_s0,
                g.g_w0 if ad else None, None)


# --------------------------------------------------------------------------- input projection
SPARSE_MAX_DENSITY = 0.05  # the event-driven projection up to this fraction of non-zero inputs


class SpikeProjection(torch.autograd.Function):
    """``(x * mask) @ M`` for sparse (spike) inputs as input events: a row of ``M`` added per
    non-zero input (Numba), the input dropout mask applied per event (never materialised), and
    ``M``'s gradient a row add per event. ``x`` and ``mask`` get no gradient."""

    @staticmethod
    def forward(ctx, x, mask, M, nnz: int):
        from elm_neuro.networks.engines import lif_numba

        out, events = lif_numba.project_forward(x.contiguous(), None if mask is None else mask.contiguous(),
                                                M.contiguous(), nnz)
        ctx.events, ctx.n_in = events, M.shape[0]
        return out

    @staticmethod
    def backward(ctx, g):
        from elm_neuro.networks.engines import lif_numba

        return None, None, lif_numba.project_backward(g, ctx.events, ctx.n_in), None


def project_spikes(x: torch.Tensor, mask: Optional[torch.Tensor], M: torch.Tensor) -> torch.Tensor:
    """``(x * mask[:, None, :]) @ M`` (``x`` ``[B, T, I]``, ``mask`` ``[B, I]`` or None, ``M`` ``[I, N]``):
    event-driven (:class:`SpikeProjection`) for sparse CPU inputs that need no gradient, else the
    input is masked and projected by :func:`elm_neuro.networks.synapses.project_inputs`. The choice
    depends on the input alone, so every caller with the same input gets the same sums."""
    from elm_neuro.networks import synapses as S

    event_ok = (x.device.type == "cpu" and x.dtype in DTYPES and M.dtype == x.dtype and x.numel() > 0
                and not x.requires_grad and not torch.is_autocast_enabled("cpu"))
    nnz = int(torch.count_nonzero(x)) if event_ok else 0
    if event_ok and nnz <= SPARSE_MAX_DENSITY * x.numel():
        return SpikeProjection.apply(x, mask, M, nnz)
    if mask is not None:
        x = x * mask[:, None, :]
    return S.project_inputs(x, M)


# --------------------------------------------------------------------------- leaky filter
def scan_torch(drive: torch.Tensor, o0: torch.Tensor, kappa: float, gain: float) -> torch.Tensor:
    """``o_t = kappa o_{t-1} + gain d_t`` over ``drive`` ``[B, T, C]`` (the reference)."""
    o, outs = o0, []
    for d in drive.unbind(1):
        o = kappa * o + (d if gain == 1.0 else gain * d)
        outs.append(o)
    return torch.stack(outs, dim=1)


def scan_backward_torch(g_o: torch.Tensor, kappa: float, gain: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g_drive [B, T, C], g_o0 [B, C])`` of :func:`scan_torch` for ``g_o`` ``[B, T, C]``."""
    steps = g_o.shape[1]
    g_d = torch.empty_like(g_o)
    acc = torch.zeros_like(g_o[:, 0])
    for t in range(steps - 1, -1, -1):
        acc = g_o[:, t] + acc
        g_d[:, t] = acc if gain == 1.0 else gain * acc
        acc = kappa * acc
    return g_d, acc


def scan_backend(device: torch.device):
    """``(forward, backward)`` of the leaky filter for ``device`` (as :func:`backend`)."""
    return pick(device, _NUMBA, _TRITON, ("scan_forward", "scan_backward"), (scan_torch, scan_backward_torch))


class LeakyScan(torch.autograd.Function):
    """``o_t = kappa o_{t-1} + gain d_t`` over a whole sequence ``[B, T, C]`` from ``o0`` ``[B, C]``
    (``kappa``, ``gain``: Python floats)."""

    @staticmethod
    def forward(ctx, fns, drive, o0, kappa: float, gain: float):
        ctx.fns, ctx.kappa, ctx.gain = fns, kappa, gain
        return fns[0](drive.contiguous(), o0.contiguous(), kappa, gain)

    @staticmethod
    def backward(ctx, g_o):
        g_d, g_o0 = ctx.fns[1](g_o.contiguous(), ctx.kappa, ctx.gain)
        return None, g_d, g_o0, None, None


def leaky_scan(drive: torch.Tensor, o0: torch.Tensor, kappa: float, gain: float = 1.0, fns=None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`elm_neuro.networks.common.leaky_integrate` as one Function: ``(o [B, T, C], o_T)``.
    Computes in ``drive``'s dtype when it is float32 / float64 (else on the reference path)."""
    if drive.dtype not in DTYPES or drive.shape[1] == 0:
        o = scan_torch(drive, o0, kappa, gain)
        return o, (o[:, -1] if drive.shape[1] else o0)
    o0 = o0.to(drive.dtype)
    o = LeakyScan.apply(fns if fns is not None else scan_backend(drive.device), drive, o0, float(kappa), float(gain))
    return o, o[:, -1]
