"""The fused sequence engine of an ELM layer: the whole time loop as one forward and one
reverse-time backward (one ``torch.autograd.Function``), beside the per-step path of
:class:`~elm_neuro.networks.elm_layer.ELMLayer`, which stays the reference.

What runs where
    Outside the loop, as large tensor operations: the input synapses' drive for all ``T`` steps
    (computed by the layer with ordinary autograd, so the input weights get their gradient from
    ``d drive``; spiking inputs instead reach a backend that takes them as events), and in
    backward every MLP weight gradient as one batched GEMM over ``T * B`` (or from the backend,
    which may compute them in its own layout: ``Grads.g_W1`` / ``g_W2``).
    Inside the loop only the recurrent part: the recurrent synapses reading the previous step's
    outputs, the MLP on ``[beta ; kappa m]``, the memory update, readout, high-pass and output
    activation (forward), and their derivatives in reverse order (backward).

The kernel contract (every backend implements it; layouts are neuron-major with the batch
innermost, so that a compiled loop runs contiguously over the batch)::

    T steps, N neurons, D = d_tree branches, M = d_m memory units, H = MLP width, O = d_o outputs
    drive_in [T, N, D, B]   input-synapse drive (s_in and dropout already applied; contiguous
                             unless the backend's forward has ``accepts_strided = True``)
    rec      (ptr [N+1], branch [S], src [S]) the recurrent synapses sorted by target neuron
             (CSR), weights rec_w [S]; a synapse adds rec_w * y_{t-1}[src, 0] * mask_rec[src]
             to branch ``branch`` of its target neuron (only layers with O = 1 have them)
    mask_rec [N, B]          recurrent dropout mask (ones when off)
    W1 [N, H1, D+M], b1 [N, H1]   first MLP layer (H1 = H, or M when the MLP is one affine map)
    W2 [N, M, H], b2 [N, M]       second MLP layer (absent when L = 0)
    wy [N, O, M], bias [N, O], kappa [N, M], gain [N, M] (1.7159 (1 - kappa_lambda) or the legacy gain)
    state m0 [N, M, B], h0 [N, O, B] (high-pass), y0 [N, O, B]

    forward saves   y_all [T+1, N, O, B] (y_all[0] = y0), m_all [T+1, N, M, B] (m_all[0] = m0),
                    beta_all [T, N, D, B], a1_all [T, N, H, B] (L = 1), z_all [T, N, M, B],
                    pre_all [T, N, O, B] (p + bias), and returns h_T [N, O, B],
                    zabs [N, B] = sum over t and memory units of |z|
    backward takes  gy [T, N, O, B], g_mT [N, M, B], g_hT [N, O, B], g_zabs [N, B]
    and gives       g_beta_all [T, N, D, B], ga_all [T, N, H1, B] (gradient of the first layer's
                    pre-activation), gz_all [T, N, M, B] (L = 1), g_wy, g_bias, g_gain, g_kappa,
                    g_m0, g_h0, g_y0 (the recurrence's gradient into y0)

    input events    a backend whose forward has ``accepts_events = True`` also takes
                    ``events`` (:class:`InputEvents`) and the input synapse weights ``w_in``
                    instead of ``drive_in`` (keywords of forward and backward); its backward then
                    gives ``g_w_in`` [S_in] instead of ``g_beta_all``. The layer uses them for
                    sparse inputs that need no gradient (spikes), so the drive is never a tensor.

:func:`forward_torch` / :func:`backward_torch` implement the contract in plain PyTorch (the
reference every compiled backend is tested against); :mod:`elm_neuro.networks.engines.elm_numba`
is the CPU backend and :mod:`elm_neuro.networks.engines.elm_triton` the CUDA one.

Supported configurations (:func:`unsupported_reason`): an MLP of one affine map (L = 0) or one
hidden layer (L = 1) with relu^2 / relu / silu, ratio or legacy memory, high-pass on or off,
identity or relu output, any synapse rectification, fixed or learnable tau, any d_o (a layer with
d_o > 1 has no recurrent synapses), dropout masks, a carried state. The branch trace, spike
outputs and deeper MLPs run on the per-step path. Under autocast the engine computes in float32.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from elm_neuro.networks.engines.backends import pick
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
    """Recurrent synapses sorted by target neuron (CSR); ``flat`` = target * D + branch."""

    ptr: torch.Tensor  # [N + 1] int64
    branch: torch.Tensor  # [S] int64
    src: torch.Tensor  # [S] int64
    flat: torch.Tensor  # [S] int64

    @property
    def count(self) -> int:
        return int(self.src.numel())


class InputEvents(NamedTuple):
    """The non-zero inputs of a sequence, step by step, and the input synapses by source channel:
    the input drive of a spiking input (about 1 % non-zero for SHD) built from its events.

    Event ``e`` of step ``t`` (``ptr[t] <= e < ptr[t + 1]``) is input channel ``chan[e]`` of
    sample ``batch[e]`` with value ``value[e]`` (dropout already applied); input synapse ``s``
    of channel ``c`` (``syn_ptr[c] <= s < syn_ptr[c + 1]``) adds ``w_in[s] * value`` to branch
    column ``syn_flat[s]`` (= target neuron * D + branch)."""

    ptr: torch.Tensor  # [T + 1] int64
    batch: torch.Tensor  # [E] int64
    chan: torch.Tensor  # [E] int64
    value: torch.Tensor  # [E]
    syn_ptr: torch.Tensor  # [n_in + 1] int64
    syn_flat: torch.Tensor  # [S_in] int64

    @property
    def steps(self) -> int:
        return int(self.ptr.numel()) - 1


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
    # optional: tanh(2 z / 3) of every step [T, N, M, B] (a backend that saves it need not
    # recompute it in backward)
    th_all: Optional[torch.Tensor] = None
    # optional: the MLP activation's output act(a1) of every step [T, N, H, B] (L = 1; a backend
    # that saves it spares the Function recomputing it for the second layer's weight gradient)
    act_all: Optional[torch.Tensor] = None


class Grads(NamedTuple):
    g_beta_all: torch.Tensor
    ga_all: torch.Tensor
    gz_all: Optional[torch.Tensor]
    g_wy: torch.Tensor
    g_bias: torch.Tensor
    g_gain: torch.Tensor
    g_kappa: torch.Tensor
    g_m0: torch.Tensor
    g_h0: Optional[torch.Tensor]
    g_y0: torch.Tensor
    # optional: gradient of the recurrent weights [S] (else the Function computes it)
    g_rec_w: Optional[torch.Tensor] = None
    # the input synapses' weight gradient [S_in] (backends that take input events; g_beta_all is
    # then None)
    g_w_in: Optional[torch.Tensor] = None
    # optional: the MLP weight gradients [N, H1, D+M] and [N, M, H] and bias gradients [N, H1]
    # and [N, M] (else the Function computes them from ga_all / gz_all and the saved inputs)
    g_W1: Optional[torch.Tensor] = None
    g_W2: Optional[torch.Tensor] = None
    g_b1: Optional[torch.Tensor] = None
    g_b2: Optional[torch.Tensor] = None
    # the dense input rows' gradient [T, C, B] (backends that read input rows through synapses)
    g_x_rows: Optional[torch.Tensor] = None


def unsupported_reason(cfg) -> Optional[str]:
    """Why the fused engine cannot run an ``ELMLayerConfig`` (None when it can)."""
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
    """CSR of the recurrent synapses from ``(source neuron, target column n * D + branch)`` pairs;
    returns it and the permutation that sorts the synapses (apply it to their weights)."""
    order = torch.argsort(target_flat, stable=True)
    flat = target_flat[order]
    target = torch.div(flat, d_tree, rounding_mode="floor")
    counts = torch.bincount(target, minlength=n)
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=src.device)
    ptr[1:] = torch.cumsum(counts, 0)
    return Recurrent(ptr, flat - target * d_tree, src[order], flat), order


def list_events_torch(x: torch.Tensor, max_density: float, mask: Optional[torch.Tensor] = None):
    """``(ptr [T+1], batch [E], chan [E], value [E])`` of the non-zero entries of ``x``
    ``[B, T, n_in]`` (times the dropout mask ``[B, n_in]`` when given), ordered by step, then
    sample, then channel; None when more than ``max_density`` of them is non-zero (the reference
    of a backend's ``list_events``)."""
    bsz, steps, _ = x.shape
    if mask is not None:
        x = x * mask[:, None, :]
    if x.numel() == 0 or int(torch.count_nonzero(x)) > max_density * x.numel():
        return None
    b, t, c = x.nonzero(as_tuple=True)  # ordered by sample, then step
    value = x[b, t, c]
    by_step = torch.argsort(t * bsz + b, stable=True)
    b, t, c, value = b[by_step], t[by_step], c[by_step], value[by_step]
    ptr = torch.zeros(steps + 1, dtype=torch.int64, device=x.device)
    ptr[1:] = torch.cumsum(torch.bincount(t, minlength=steps), 0)
    return ptr, b, c, value.contiguous()


def make_events(x: torch.Tensor, src: torch.Tensor, target_flat: torch.Tensor, n_in: int,
                max_density: float, lister=None, mask: Optional[torch.Tensor] = None
                ) -> Optional[tuple[InputEvents, torch.Tensor]]:
    """:class:`InputEvents` of ``x`` ``[B, T, n_in]`` (dropout applied) for the input synapses
    ``(source channel, target column)``, and the permutation that sorts the synapses by channel
    (apply it to their weights); None when more than ``max_density`` of ``x`` is non-zero (a
    dense input is cheaper as a matrix product). ``lister`` lists the events of ``x`` times the
    dropout mask ``mask`` [B, n_in] (a backend's ``list_events``; default
    :func:`list_events_torch`)."""
    listed = (lister or list_events_torch)(x, max_density, mask)
    if listed is None:
        return None
    ptr, b, c, value = listed
    order = torch.argsort(src, stable=True)
    syn_ptr = torch.zeros(n_in + 1, dtype=torch.int64, device=x.device)
    syn_ptr[1:] = torch.cumsum(torch.bincount(src, minlength=n_in), 0)
    return InputEvents(ptr, b, c, value, syn_ptr, target_flat[order].contiguous()), order


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


# --------------------------------------------------------------------------- reference backend
def forward_torch(drive_in, rec: Recurrent, rec_w, mask_rec, W1, b1, W2, b2, wy, bias, kappa, gain, m0, h0, y0,
                  spec: Spec) -> Saved:
    """The kernel contract's forward in plain PyTorch (module docstring)."""
    steps, n, d, bsz = drive_in.shape
    y_all = drive_in.new_empty((steps + 1,) + tuple(y0.shape))
    m_all = drive_in.new_empty((steps + 1,) + tuple(m0.shape))
    y_all[0], m_all[0] = y0, m0
    beta_all = drive_in.clone()
    a1_all = drive_in.new_empty(steps, n, W1.shape[1], bsz) if spec.two_layers else None
    z_all = drive_in.new_empty((steps,) + tuple(m0.shape))
    pre_all = drive_in.new_empty((steps,) + tuple(y0.shape))
    zabs = drive_in.new_zeros(n, bsz)
    h = h0
    kap, gn = kappa[..., None], gain[..., None]
    for t in range(steps):
        beta = beta_all[t]
        if rec.count:
            contrib = rec_w[:, None] * (y_all[t][rec.src, 0] * mask_rec[rec.src])
            beta.view(n * d, bsz).index_add_(0, rec.flat, contrib)
        md = kap * m_all[t]
        a = torch.baddbmm(b1[..., None], W1, torch.cat([beta, md], dim=1))
        if spec.two_layers:
            a1_all[t] = a
            z = torch.baddbmm(b2[..., None], W2, mlp_act(a, spec.mlp_act))
        else:
            z = a
        z_all[t] = z
        m_all[t + 1] = md + gn * torch.tanh(TANH_GAIN * z)
        p = torch.bmm(wy, m_all[t + 1])
        if spec.high_pass:
            h = h + (1.0 - spec.kr) * (p - h)
            p = p - h
        pre_all[t] = p + bias[..., None]
        y_all[t + 1] = out_act(pre_all[t], spec.out_act)
        zabs += z.abs().sum(dim=1)
    return Saved(y_all, m_all, beta_all, a1_all, z_all, pre_all, h if spec.high_pass else None, zabs)


def backward_torch(saved: Saved, rec: Recurrent, rec_w, mask_rec, W1, W2, wy, kappa, gain, gy, g_mT, g_hT, g_zabs,
                   spec: Spec) -> Grads:
    """The kernel contract's backward in plain PyTorch (module docstring)."""
    steps, n, d, bsz = saved.beta_all.shape
    g_beta_all = torch.empty_like(saved.beta_all)
    ga_all = torch.empty(steps, n, W1.shape[1], bsz, dtype=gy.dtype, device=gy.device)
    gz_all = torch.empty_like(saved.z_all) if spec.two_layers else None
    g_wy, g_bias = torch.zeros_like(wy), torch.zeros(wy.shape[:2], dtype=gy.dtype, device=gy.device)
    g_gain, g_kappa = torch.zeros_like(gain), torch.zeros_like(kappa)
    g_m = g_mT.clone()
    g_h = g_hT.clone() if spec.high_pass else None
    g_yrec = torch.zeros_like(saved.y_all[0])  # recurrence's gradient into y_t, from step t + 1
    kap, gn = kappa[..., None], gain[..., None]
    w1_mem = W1[:, :, d:]
    for t in range(steps - 1, -1, -1):
        pre = saved.pre_all[t]
        g_pre = gy[t] + g_yrec
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
        g_m = g_m + torch.bmm(wy.transpose(1, 2), g_rho)
        z = saved.z_all[t]
        th = torch.tanh(TANH_GAIN * z)
        g_gain += (g_m * th).sum(-1)
        gz = g_m * gn * TANH_GAIN * (1.0 - th * th) + g_zabs[:, None, :] * torch.sign(z)
        if spec.two_layers:
            gz_all[t] = gz
            a = saved.a1_all[t]
            ga = torch.bmm(W2.transpose(1, 2), gz) * mlp_act_grad(a, spec.mlp_act)
        else:
            ga = gz
        ga_all[t] = ga
        g_beta = torch.bmm(W1[:, :, :d].transpose(1, 2), ga)
        g_beta_all[t] = g_beta
        g_md = g_m + torch.bmm(w1_mem.transpose(1, 2), ga)
        g_kappa += (g_md * m_prev).sum(-1)
        g_m = kap * g_md
        g_yrec = torch.zeros_like(g_yrec)
        if rec.count:
            vals = (g_beta.reshape(n * d, bsz)[rec.flat] * rec_w[:, None]) * mask_rec[rec.src]
            g_yrec[:, 0].index_add_(0, rec.src, vals)
    return Grads(g_beta_all, ga_all, gz_all, g_wy, g_bias, g_gain, g_kappa, g_m, g_h, g_yrec)


# --------------------------------------------------------------------------- backends
def backend(device: torch.device):
    """``(forward, backward)`` of the fastest backend for ``device``: Numba on the CPU, Triton on
    CUDA where it is installed, else the PyTorch reference (:func:`~elm_neuro.networks.engines.backends.pick`)."""
    return pick(device, "elm_neuro.networks.engines.elm_numba", "elm_neuro.networks.engines.elm_triton",
                ("forward", "backward"), (forward_torch, backward_torch))


# --------------------------------------------------------------------------- autograd
class ELMSequence(torch.autograd.Function):
    """The whole sequence of one ELM layer; see the module docstring.

    ``forward(ctx, backend, spec, rec, mask_rec, drive_in, rec_w, W1, b1, W2, b2, wy, bias, kappa,
    gain, m0, h0, y0, events, w_in)`` returns ``(y [T, N, O, B], m_T, h_T, zabs [N, B])`` (``h_T``
    is an empty tensor without high-pass; ``W2``, ``b2`` are empty tensors when L = 0). With
    ``events`` (:class:`InputEvents`, for a backend whose forward has ``accepts_events = True``)
    the input drive comes from the events and the input synapse weights ``w_in``, which get the
    gradient; ``drive_in`` is then an empty tensor. When the input needs a gradient too (spikes of
    a layer below), ``x_in`` is that input [B, T, n_in] (dropout applied) and ``m_in`` the dense
    input map [n_in, N * D] (detached): its gradient is ``g_beta @ m_in^T``, from the drive
    gradient the backend then also gives. Without events, ``events`` is None and ``w_in``,
    ``x_in``, ``m_in`` are empty.

    ``x_rows`` [T, C, B] and ``mask_x`` [C, B] (for a backend whose forward has ``accepts_rows =
    True``): a dense input read through its synapses, listed in ``rec`` with sources ``N + c``
    beside the recurrent ones (their weights in ``rec_w``), instead of a drive; ``x_rows`` gets
    its gradient. Else both are empty.
    """

    @staticmethod
    def forward(ctx, fns, spec: Spec, rec: Recurrent, mask_rec, drive_in, rec_w, W1, b1, W2, b2, wy, bias, kappa,
                gain, m0, h0, y0, events, w_in, x_in, m_in, x_rows, mask_x):
        fwd, _ = fns
        rows = {} if x_rows.numel() == 0 else {"x_rows": x_rows, "mask_x": mask_x}
        # a backend that reads any strides says so (the layer hands drive_in as a permuted view)
        drive = drive_in if getattr(fwd, "accepts_strided", False) or events is not None else drive_in.contiguous()
        ev = {} if events is None else {"events": events, "w_in": w_in.contiguous()}
        saved = fwd(drive, rec, rec_w.contiguous(), mask_rec.contiguous(), W1.contiguous(),
                    b1.contiguous(), W2.contiguous() if spec.two_layers else None,
                    b2.contiguous() if spec.two_layers else None, wy.contiguous(), bias.contiguous(),
                    kappa.contiguous(), gain.contiguous(), m0.contiguous(), h0.contiguous() if spec.high_pass else None,
                    y0.contiguous(), spec, **ev, **rows)
        ctx.fns, ctx.spec, ctx.rec, ctx.events = fns, spec, rec, events
        ctx.rows = bool(rows)
        ctx.save_for_backward(mask_rec, rec_w, W1, W2, wy, kappa, gain, w_in, m_in, x_rows, mask_x, *[
            t if t is not None else torch.empty(0) for t in saved])
        ctx.saved_none = [t is None for t in saved]
        h_T = saved.h_T if saved.h_T is not None else drive_in.new_empty(0)
        return saved.y_all[1:], saved.m_all[-1], h_T, saved.zabs

    @staticmethod
    def backward(ctx, gy, g_mT, g_hT, g_zabs):
        mask_rec, rec_w, W1, W2, wy, kappa, gain, w_in, m_in, x_rows, mask_x, *rest = ctx.saved_tensors
        saved = Saved(*[None if none else t for t, none in zip(rest, ctx.saved_none)])
        spec, rec = ctx.spec, ctx.rec
        steps, n, d, bsz = saved.beta_all.shape
        dtype, dev = saved.z_all.dtype, saved.z_all.device
        gy = torch.zeros_like(saved.y_all[1:]) if gy is None else gy.contiguous()
        g_mT = torch.zeros_like(saved.m_all[-1]) if g_mT is None else g_mT.contiguous()
        g_hT = (torch.zeros_like(saved.h_T) if (g_hT is None or g_hT.numel() == 0) else g_hT.contiguous()) \
            if spec.high_pass else None
        g_zabs = torch.zeros(n, bsz, dtype=dtype, device=dev) if g_zabs is None else g_zabs.contiguous()
        _, bwd = ctx.fns
        g = bwd(saved, rec, rec_w.contiguous(), mask_rec, W1.contiguous(), W2.contiguous() if spec.two_layers else None,
                wy.contiguous(), kappa.contiguous(), gain.contiguous(), gy, g_mT, g_hT, g_zabs, spec,
                **({} if ctx.events is None else {"events": ctx.events, "w_in": w_in,
                                                  "g_beta_wanted": ctx.needs_input_grad[19]}),
                **({"x_rows": x_rows, "mask_x": mask_x} if ctx.rows else {}))
        # weight gradients: one batched GEMM over T * B each (a backend may hand its arrays in
        # layouts that make these reshapes free: only strides differ)
        g_W1 = g.g_W1
        if g_W1 is None:
            inp = saved.inp_all
            if inp is None:
                inp = torch.cat([saved.beta_all, kappa[None, :, :, None] * saved.m_all[:-1]], dim=2)  # [T, N, D+M, B]
            ga = g.ga_all.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1)  # [N, T*B, H1]
            g_W1 = torch.bmm(ga.transpose(1, 2), inp.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1))
        g_b1 = g.g_b1 if g.g_b1 is not None else g.ga_all.sum(dim=(0, 3))
        g_W2 = g_b2 = None
        if spec.two_layers:
            g_W2 = g.g_W2
            if g_W2 is None:
                gz = g.gz_all.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1)  # [N, T*B, M]
                act = saved.act_all if saved.act_all is not None else mlp_act(saved.a1_all, spec.mlp_act)
                h1 = act.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1)
                g_W2 = torch.bmm(gz.transpose(1, 2), h1)
            g_b2 = g.g_b2 if g.g_b2 is not None else g.gz_all.sum(dim=(0, 3))
        g_rec_w = g.g_rec_w
        if g_rec_w is None and rec.count and ctx.needs_input_grad[5]:
            gb = g.g_beta_all.reshape(steps, n * d, bsz)[:, rec.flat]  # [T, S, B]
            ysrc = saved.y_all[:-1, :, 0][:, rec.src] * mask_rec[rec.src]  # [T, S, B]
            g_rec_w = (gb * ysrc).sum(dim=(0, 2))
        g_x = None
        if ctx.events is not None and ctx.needs_input_grad[19]:  # the input's gradient: g_beta @ M^T
            g_x = torch.matmul(g.g_beta_all.permute(3, 0, 1, 2).reshape(bsz, steps, n * d), m_in.t())
        g_drive = g.g_beta_all if ctx.events is None and not ctx.rows else None
        return (None, None, None, None, g_drive, g_rec_w, g_W1, g_b1, g_W2, g_b2, g.g_wy, g.g_bias, g.g_kappa,
                g.g_gain, g.g_m0, g.g_h0, g.g_y0, None, g.g_w_in, g_x, None, g.g_x_rows, None)
