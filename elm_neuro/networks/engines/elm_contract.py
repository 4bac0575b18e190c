"""The kernel contract of the fused ELM sequence engine: its types and its plain-PyTorch reference.

Every backend (:mod:`~elm_neuro.networks.engines.elm_numba` on the CPU,
:mod:`~elm_neuro.networks.engines.elm_triton` on CUDA) implements :func:`forward_torch` /
:func:`backward_torch` with the same arguments and results; :mod:`elm_neuro.networks.engines.elm_sequence`
wraps whichever runs in one autograd Function. This module imports nothing from the backends.

The step (docs/design.md §1-2), for neuron ``n`` and sample ``b``, from the branch drive ``beta_t``
(input synapses plus recurrent ones reading ``y_{t-1}``)::

    x_t   = [beta_t ; kappa * m_{t-1}]                MLP input (D + M values)
    a_t   = W1 x_t + b1,  z_t = W2 act(a_t) + b2      (L = 1; L = 0: z_t = a_t)
    m_t   = kappa * m_{t-1} + gain * tanh(2 z_t / 3)  gain = 1.7159 (1 - kappa_lambda) (ratio mode)
    p_t   = wy m_t (- h_t, the high-pass state),  y_t = out_act(p_t + bias)

Layouts are neuron-major with the batch innermost, so that a compiled loop runs contiguously over
the batch. ``T`` steps, ``N`` neurons, ``D`` = d_tree branches, ``M`` = d_m memory units, ``H`` MLP
width (``H1 = H``, or ``M`` when the MLP is one affine map), ``O`` = d_o outputs, ``B`` samples::

    input      one of the types of :mod:`elm_neuro.networks.engines.inputs` that the backend
               takes (``TAKES``): Drive [T, N, D, B] (input dropout and s_in applied), Events
               (input synapses scattered from the events in the loop) or Rows (a dense input's
               rows read through synapses listed in ``rec`` with sources ``N + c``)
    rec        Recurrent: the synapses from source rows (the previous step's outputs ``N``, then
               input rows), CSR by target neuron; a synapse adds
               ``rec_w * y_{t-1}[src, 0] * mask_rec[src]`` to branch ``branch`` of its target
               (only layers with O = 1 have recurrent synapses)
    mask_rec   [N, B] recurrent dropout mask (ones when off)
    Weights    rec_w [S], W1 [N, H1, D+M], b1 [N, H1], W2 [N, M, H], b2 [N, M] (None when L = 0),
               wy [N, O, M], bias [N, O], kappa [N, M], gain [N, M]
    State      m [N, M, B], h [N, O, B] (high-pass; None without), y [N, O, B]

    forward gives   Saved: y_all [T+1, N, O, B] (y_all[0] = y0), m_all [T+1, N, M, B],
                    beta_all [T, N, D, B], a1_all [T, N, H, B] (L = 1), z_all [T, N, M, B],
                    pre_all [T, N, O, B] (p + bias), h_T [N, O, B], zabs [N, B] (sum over t and
                    memory units of |z|); optionally what the backend can hand the Function
                    cheaply (inp_all, th_all, act_all)
    backward takes  OutGrads: gy [T, N, O, B], g_mT [N, M, B], g_hT [N, O, B], g_zabs [N, B]
    and gives       Grads: g_beta_all [T, N, D, B] (the drive's gradient: always for Drive, for
                    Events only when the input needs a gradient), ga_all [T, N, H1, B] (gradient of
                    the first layer's pre-activation), gz_all [T, N, M, B] (L = 1), g_wy, g_bias,
                    g_gain, g_kappa, g_m0, g_h0, g_y0; optionally g_rec_w, the MLP weight and bias
                    gradients (else the Function forms them as GEMMs over T * B); g_w_in [S_in]
                    (Events), g_x_rows [T, C, B] (Rows)

Supported configurations (:func:`unsupported_reason`): an MLP of one affine map (L = 0) or one
hidden layer (L = 1) with relu^2 / relu / silu, ratio or legacy memory, high-pass on or off,
identity or relu output, any synapse rectification, fixed or learnable tau, any d_o (a layer with
d_o > 1 has no recurrent synapses), dropout masks, a carried state. The branch trace, spike
outputs and deeper MLPs run on the per-step path, and so do parameters other than float32 /
float64: float16 / bfloat16 layers are refused rather than computed in float32 inside the engine
(which would give results other than the per-step path's in the parameters' dtype, and hold every
saved tensor at twice the parameters' size); mixed precision keeps float32 parameters under
autocast, where the engine computes in float32.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from elm_neuro.networks.engines.backends import Backend
from elm_neuro.networks.engines.inputs import DTYPES, Drive, Rows, list_events_torch
from elm_neuro.neurons import elm as E

MLP_ACTS = {"relu2": 0, "relu": 1, "silu": 2}
OUT_ACTS = {"identity": 0, "relu": 1}
TANH_GAIN = 2.0 / 3.0  # dm = 1.7159 tanh(2 z / 3); 1.7159 sits in ``gain``


class Spec(NamedTuple):
    """Static options of one call (plain Python values)."""

    mlp_act: int  # MLP_ACTS code
    out_act: int  # OUT_ACTS code
    two_layers: bool  # L = 1 (else the MLP is one affine map, L = 0)
    high_pass: bool
    kr: float  # high-pass decay (unused without high-pass)


class Recurrent(NamedTuple):
    """Synapses from source rows sorted by target neuron (CSR); ``flat`` = target * D + branch.

    ``in_width`` / ``out_width``: the most synapses on one target column / from one source row
    (the widths of a backend's padded gather tables), and ``own``, how many synapses read the
    layer's own neurons (the rest read input rows), counted once where the CSR is built
    (:func:`make_recurrent`) so that a backend needs no host synchronisation per call to learn
    them; None when unknown (a backend then counts them itself)."""

    ptr: torch.Tensor  # [N + 1] int64
    branch: torch.Tensor  # [S] int64
    src: torch.Tensor  # [S] int64
    flat: torch.Tensor  # [S] int64
    in_width: Optional[int] = None
    out_width: Optional[int] = None
    own: Optional[int] = None  # how many synapses read the layer's own neurons (source < N)
    # the same widths of the two parts, the synapses from neurons (own) and those from input rows
    # (inp): a backend that reads them apart (the input rows' share before the time loop) sizes its
    # tables by them
    own_in_width: Optional[int] = None
    own_out_width: Optional[int] = None
    inp_in_width: Optional[int] = None
    inp_out_width: Optional[int] = None

    @property
    def count(self) -> int:
        return int(self.src.numel())


class Weights(NamedTuple):
    """The layer's parameters in the kernels' layout (module docstring)."""

    rec_w: torch.Tensor
    W1: torch.Tensor
    b1: torch.Tensor
    W2: Optional[torch.Tensor]
    b2: Optional[torch.Tensor]
    wy: torch.Tensor
    bias: torch.Tensor
    kappa: torch.Tensor
    gain: torch.Tensor


class State(NamedTuple):
    """A layer's state, neuron-major: memory, high-pass state (None without) and outputs."""

    m: torch.Tensor
    h: Optional[torch.Tensor]
    y: torch.Tensor


class OutGrads(NamedTuple):
    """The gradients reaching the engine's results."""

    gy: torch.Tensor
    g_mT: torch.Tensor
    g_hT: Optional[torch.Tensor]
    g_zabs: torch.Tensor


class Saved(NamedTuple):
    y_all: torch.Tensor
    m_all: torch.Tensor
    beta_all: torch.Tensor
    a1_all: Optional[torch.Tensor]
    z_all: torch.Tensor
    pre_all: torch.Tensor
    h_T: Optional[torch.Tensor]
    zabs: torch.Tensor
    # optional: the MLP input [beta ; kappa m] of every step [T, N, D+M, B] (a backend that has it
    # saves the Function a concatenation; any strides)
    inp_all: Optional[torch.Tensor] = None
    # optional: tanh(2 z / 3) of every step [T, N, M, B]
    th_all: Optional[torch.Tensor] = None
    # optional: the MLP activation's output act(a1) of every step [T, N, H, B] (L = 1)
    act_all: Optional[torch.Tensor] = None


class Grads(NamedTuple):
    g_beta_all: Optional[torch.Tensor]
    ga_all: torch.Tensor
    gz_all: Optional[torch.Tensor]
    g_wy: torch.Tensor
    g_bias: torch.Tensor
    g_gain: torch.Tensor
    g_kappa: torch.Tensor
    g_m0: torch.Tensor
    g_h0: Optional[torch.Tensor]
    g_y0: torch.Tensor
    # optional: gradient of the synapse weights rec_w [S] (else the Function computes it)
    g_rec_w: Optional[torch.Tensor] = None
    # the input synapses' weight gradient [S_in] (Events)
    g_w_in: Optional[torch.Tensor] = None
    # optional: the MLP weight gradients [N, H1, D+M] and [N, M, H] and bias gradients [N, H1]
    # and [N, M] (else the Function computes them from ga_all / gz_all and the saved inputs)
    g_W1: Optional[torch.Tensor] = None
    g_W2: Optional[torch.Tensor] = None
    g_b1: Optional[torch.Tensor] = None
    g_b2: Optional[torch.Tensor] = None
    # the dense input rows' gradient [T, C, B] (Rows)
    g_x_rows: Optional[torch.Tensor] = None


def unsupported_reason(cfg, dtype: Optional[torch.dtype] = None) -> Optional[str]:
    """Why the fused engine cannot run an ``ELMLayerConfig`` with parameters of ``dtype`` (None when
    it can; ``dtype`` None: the configuration alone)."""
    if dtype is not None and dtype not in DTYPES:
        return f"parameters in {dtype} run on the per-step path (fused: float32, float64)"
    if cfg.branch_trace:
        return "the branch trace runs on the per-step path"
    if cfg.output_act not in OUT_ACTS:
        return f"output_act {cfg.output_act!r} runs on the per-step path (fused: {sorted(OUT_ACTS)})"
    if cfg.mlp_layers > 1:
        return f"mlp_layers = {cfg.mlp_layers} runs on the per-step path (fused: 0 or 1)"
    if cfg.mlp_act not in MLP_ACTS:
        return f"mlp_act {cfg.mlp_act!r} runs on the per-step path"
    return None


def make_recurrent(src: torch.Tensor, target_flat: torch.Tensor, d_tree: int, n: int) -> tuple[Recurrent, torch.Tensor]:
    """CSR of the synapses from source rows given as ``(source row, target column n * D + branch)``
    pairs; returns it and the permutation that sorts the synapses (apply it to their weights).
    Counts the table widths (one host synchronisation: build it once per connectome)."""
    order = torch.argsort(target_flat, stable=True)
    flat = target_flat[order]
    target = torch.div(flat, d_tree, rounding_mode="floor")
    counts = torch.bincount(target, minlength=n)
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=src.device)
    ptr[1:] = torch.cumsum(counts, 0)
    src = src[order]

    def widths(sel):
        if not bool(sel.any()):
            return 0, 0
        return int(torch.bincount(flat[sel]).max()), int(torch.bincount(src[sel]).max())

    own = src < n
    return Recurrent(ptr, flat - target * d_tree, src, flat, *widths(torch.ones_like(own)), int(own.sum()),
                     *widths(own), *widths(~own)), order


# --------------------------------------------------------------------------- activations
_MLP_ACT_NAMES = {code: name for name, code in MLP_ACTS.items()}
_OUT_ACT_NAMES = {code: name for name, code in OUT_ACTS.items()}


def mlp_act(x: torch.Tensor, code: int) -> torch.Tensor:
    """The neuron's MLP activation (:func:`elm_neuro.neurons.elm.mlp_activation`) by code."""
    return E.mlp_activation(x, _MLP_ACT_NAMES[code])


def mlp_act_grad(x: torch.Tensor, code: int) -> torch.Tensor:
    """d act / d x at ``x``."""
    if code == 0:
        return 2.0 * F.relu(x)
    if code == 1:
        return (x > 0).to(x.dtype)
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def out_act(x: torch.Tensor, code: int) -> torch.Tensor:
    """The output activation (:func:`elm_neuro.neurons.elm.output_activation`) by code."""
    return E.output_activation(x, _OUT_ACT_NAMES[code])


# --------------------------------------------------------------------------- reference
def forward_torch(inp: Drive, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> Saved:
    """The contract's forward in plain PyTorch (module docstring); takes a :class:`Drive`."""
    drive_in = inp.drive
    steps, n, d, bsz = drive_in.shape
    y_all = drive_in.new_empty((steps + 1,) + tuple(s.y.shape))
    m_all = drive_in.new_empty((steps + 1,) + tuple(s.m.shape))
    y_all[0], m_all[0] = s.y, s.m
    beta_all = drive_in.clone()
    a1_all = drive_in.new_empty(steps, n, w.W1.shape[1], bsz) if spec.two_layers else None
    z_all = drive_in.new_empty((steps,) + tuple(s.m.shape))
    pre_all = drive_in.new_empty((steps,) + tuple(s.y.shape))
    zabs = drive_in.new_zeros(n, bsz)
    h = s.h
    kap, gn = w.kappa[..., None], w.gain[..., None]
    for t in range(steps):
        beta = beta_all[t]
        if rec.count:
            contrib = w.rec_w[:, None] * (y_all[t][rec.src, 0] * mask_rec[rec.src])
            beta.view(n * d, bsz).index_add_(0, rec.flat, contrib)
        md = kap * m_all[t]
        a = torch.baddbmm(w.b1[..., None], w.W1, torch.cat([beta, md], dim=1))
        if spec.two_layers:
            a1_all[t] = a
            z = torch.baddbmm(w.b2[..., None], w.W2, mlp_act(a, spec.mlp_act))
        else:
            z = a
        z_all[t] = z
        m_all[t + 1] = md + gn * torch.tanh(TANH_GAIN * z)
        p = torch.bmm(w.wy, m_all[t + 1])
        if spec.high_pass:
            h = h + (1.0 - spec.kr) * (p - h)
            p = p - h
        pre_all[t] = p + w.bias[..., None]
        y_all[t + 1] = out_act(pre_all[t], spec.out_act)
        zabs += z.abs().sum(dim=1)
    return Saved(y_all, m_all, beta_all, a1_all, z_all, pre_all, h if spec.high_pass else None, zabs)


def backward_torch(saved: Saved, inp: Drive, rec: Recurrent, mask_rec, w: Weights, g: OutGrads, spec: Spec,
                   want_input_grad: bool = True) -> Grads:
    """The contract's backward in plain PyTorch (module docstring)."""
    steps, n, d, bsz = saved.beta_all.shape
    g_beta_all = torch.empty_like(saved.beta_all)
    ga_all = torch.empty(steps, n, w.W1.shape[1], bsz, dtype=g.gy.dtype, device=g.gy.device)
    gz_all = torch.empty_like(saved.z_all) if spec.two_layers else None
    g_wy, g_bias = torch.zeros_like(w.wy), torch.zeros(w.wy.shape[:2], dtype=g.gy.dtype, device=g.gy.device)
    g_gain, g_kappa = torch.zeros_like(w.gain), torch.zeros_like(w.kappa)
    g_m = g.g_mT.clone()
    g_h = g.g_hT.clone() if spec.high_pass else None
    g_yrec = torch.zeros_like(saved.y_all[0])  # recurrence's gradient into y_t, from step t + 1
    kap, gn = w.kappa[..., None], w.gain[..., None]
    w1_mem = w.W1[:, :, d:]
    for t in range(steps - 1, -1, -1):
        pre = saved.pre_all[t]
        g_pre = g.gy[t] + g_yrec
        if spec.out_act == 1:
            g_pre = g_pre * (pre > 0).to(pre.dtype)
        g_bias += g_pre.sum(-1)
        if spec.high_pass:
            g_hh = g_h - g_pre
            g_rho = g_pre + (1.0 - spec.kr) * g_hh
            g_h = spec.kr * g_hh
        else:
            g_rho = g_pre
        m_t, m_prev = saved.m_all[t + 1], saved.m_all[t]
        g_wy += torch.bmm(g_rho, m_t.transpose(1, 2))
        g_m = g_m + torch.bmm(w.wy.transpose(1, 2), g_rho)
        z = saved.z_all[t]
        th = torch.tanh(TANH_GAIN * z)
        g_gain += (g_m * th).sum(-1)
        gz = g_m * gn * TANH_GAIN * (1.0 - th * th) + g.g_zabs[:, None, :] * torch.sign(z)
        if spec.two_layers:
            gz_all[t] = gz
            ga = torch.bmm(w.W2.transpose(1, 2), gz) * mlp_act_grad(saved.a1_all[t], spec.mlp_act)
        else:
            ga = gz
        ga_all[t] = ga
        g_beta = torch.bmm(w.W1[:, :, :d].transpose(1, 2), ga)
        g_beta_all[t] = g_beta
        g_md = g_m + torch.bmm(w1_mem.transpose(1, 2), ga)
        g_kappa += (g_md * m_prev).sum(-1)
        g_m = kap * g_md
        g_yrec = torch.zeros_like(g_yrec)
        if rec.count:
            vals = (g_beta.reshape(n * d, bsz)[rec.flat] * w.rec_w[:, None]) * mask_rec[rec.src]
            g_yrec[:, 0].index_add_(0, rec.src, vals)
    return Grads(g_beta_all, ga_all, gz_all, g_wy, g_bias, g_gain, g_kappa, g_m, g_h, g_yrec)


# --------------------------------------------------------------------------- Rows, by way of a Drive
def rows_as_drive(inp: Rows, rec: Recurrent, rec_w: torch.Tensor, n: int, d: int):
    """A :class:`~elm_neuro.networks.engines.inputs.Rows` input as the reference takes it:
    ``(Drive, recurrent CSR, its weights)``. The synapses from source rows ``N + c`` (input
    channels) become the drive ``sum w x[t, c] mask[c]`` of their target columns; the synapses from
    neurons stay synapses."""
    steps, _, bsz = inp.x.shape
    is_in = rec.src >= n
    xm = inp.x * inp.mask
    drive = xm.new_zeros(steps, n * d, bsz)
    drive.index_add_(1, rec.flat[is_in], rec_w[is_in, None] * xm[:, rec.src[is_in] - n])
    keep = ~is_in
    flat = rec.flat[keep]
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=flat.device)
    ptr[1:] = torch.cumsum(torch.bincount(torch.div(flat, d, rounding_mode="floor"), minlength=n), 0)
    own = Recurrent(ptr, rec.branch[keep], rec.src[keep], flat)
    return Drive(drive.view(steps, n, d, bsz)), own, rec_w[keep]


def forward_rows_torch(inp: Rows, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> Saved:
    """The contract's forward for a Rows input, in plain PyTorch (:func:`rows_as_drive`, then
    :func:`forward_torch`)."""
    n, d = s.m.shape[0], w.W1.shape[2] - s.m.shape[1]
    drive, own, own_w = rows_as_drive(inp, rec, w.rec_w, n, d)
    return forward_torch(drive, own, mask_rec, w._replace(rec_w=own_w), s, spec)


def backward_rows_torch(saved: Saved, inp: Rows, rec: Recurrent, mask_rec, w: Weights, g: OutGrads,
                        spec: Spec, want_input_grad: bool = True) -> Grads:
    """The contract's backward for a Rows input, in plain PyTorch: :func:`backward_torch` on the
    drive of :func:`rows_as_drive`, plus the synapse weights' gradient ``g_rec_w`` (every synapse
    of ``rec``) and the input rows' gradient ``g_x_rows [T, C, B]`` (when ``want_input_grad``)."""
    steps, n, d, bsz = saved.beta_all.shape
    drive, own, own_w = rows_as_drive(inp, rec, w.rec_w, n, d)
    grads = backward_torch(saved, drive, own, mask_rec, w._replace(rec_w=own_w), g, spec, want_input_grad)
    gb = grads.g_beta_all.reshape(steps, n * d, bsz)[:, rec.flat]  # [T, S, B]
    is_in = rec.src >= n
    src_rows = torch.cat([saved.y_all[:-1, :, 0] * mask_rec, inp.x * inp.mask], dim=1)  # [T, N + C, B]
    g_rec_w = (gb * src_rows[:, rec.src]).sum(dim=(0, 2))
    g_x_rows = None
    if want_input_grad:
        g_x_rows = inp.x.new_zeros(inp.x.shape)
        g_x_rows.index_add_(1, rec.src[is_in] - n, gb[:, is_in] * w.rec_w[is_in, None])
        g_x_rows = g_x_rows * inp.mask
    return grads._replace(g_rec_w=g_rec_w, g_x_rows=g_x_rows)


REFERENCE = Backend("torch", forward_torch, backward_torch, (Drive,), list_events_torch)
