"""The fused sequence engine of an ELM layer: the whole time loop as one forward and one
reverse-time backward (one ``torch.autograd.Function``), beside the per-step path of
:class:`~elm_neuro.networks.elm_layer.ELMLayer`, which stays the reference.

The kernel contract (types, layouts, the plain-PyTorch reference) is
:mod:`elm_neuro.networks.engines.elm_contract`; the backends are
:mod:`~elm_neuro.networks.engines.elm_numba` (CPU) and :mod:`~elm_neuro.networks.engines.elm_triton`
(CUDA). This module holds what sits above them: the dispatch (:func:`backend`) and the autograd
Function (:class:`ELMSequence`, called through :func:`run`).

What runs where
    Outside the loop: the input, in the form the input rule chose
    (:mod:`elm_neuro.networks.engines.inputs`: a drive computed with ordinary autograd, events, or
    dense rows), and in backward the MLP weight gradients as one batched GEMM over ``T * B`` each
    when the backend does not give them in its own layout (``Grads.g_W1`` ...), the synapse
    weights' gradient likewise (``Grads.g_rec_w``), and the gradient of an event input that needs
    one (``g_drive @ m_in^T``). Inside the loop everything recurrent: the synapses reading the
    previous step's outputs, the MLP on ``[beta ; kappa m]``, the memory update, readout,
    high-pass and output activation (forward), and their derivatives in reverse order (backward).

Under autocast the engine computes in float32 (the layer turns autocast off around it).

First use on a GPU
    A backend with a compile key (Triton) is checked once per configuration before it runs
    (:func:`elm_neuro.networks.engines.backends.first_use`; :func:`check` is this engine's
    check); a configuration that fails raises
    :class:`~elm_neuro.networks.engines.backends.BackendUnusable` from :func:`run`, and the layer
    steps. The check's problem (:func:`check_problem`) has the call's shapes and synapses (so the
    kernels get the call's constexprs) but two time steps and a small batch, and values drawn so
    that no rounding can flip a branch of the step: weights small against biases of magnitude 1
    to 1.5 keep every ReLU input, the sign of every ``z`` and every output pre-activation at
    least 0.15 from zero (bounds in :func:`check_problem`), so the float64 reference and the
    backend agree to rounding everywhere. A real call's kernel failure is caught too
    (:func:`~elm_neuro.networks.engines.backends.guarded`): in forward the layer steps, in
    backward the contract's reference computes the gradients of that call.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from elm_neuro.networks.engines import projection
from elm_neuro.networks.engines.backends import Backend, Guard, assert_matches, check_batches, first_use, guarded, pick
from elm_neuro.networks.engines.elm_contract import (REFERENCE, OutGrads, Recurrent, Saved, Spec, State, Weights,
                                                     backward_rows_torch, backward_torch, forward_rows_torch,
                                                     forward_torch, mlp_act)
from elm_neuro.networks.engines.inputs import Drive, Events, Rows

CHECK_STEPS = 2  # time steps of the first-use check's problem
# the CUDA backend: the whole-GPU kernels (elm_triton_grid); "elm_neuro.networks.engines.elm_triton" is the
# earlier one-program-per-sample design, kept for comparison (benchmarks/gpu_check.py times both)
CUDA_BACKEND = "elm_neuro.networks.engines.elm_triton_grid"


def backend(device: torch.device) -> Backend:
    """The backend for ``device``: Numba on the CPU, Triton on CUDA (raises
    :class:`~elm_neuro.networks.engines.backends.BackendUnusable` where it cannot be imported), else
    the PyTorch reference (:func:`~elm_neuro.networks.engines.backends.pick`), with the device's
    event lister (the input forms' backend, :func:`elm_neuro.networks.engines.projection.backend`)."""
    fns = pick(device, "elm_neuro.networks.engines.elm_numba", CUDA_BACKEND, REFERENCE,
               names=("forward", "backward", "compile_key"))
    return fns._replace(list_events=projection.backend(device).list_events)


class Call(NamedTuple):
    """The static part of one engine call: the backend, the options, the synapses from source rows,
    the recurrent dropout mask, the input's type (Drive, Events or Rows) and, for a checked
    backend, its configuration's guard."""

    fns: Backend
    spec: Spec
    rec: Recurrent
    mask_rec: torch.Tensor
    kind: type
    guard: Optional[Guard] = None


def _contiguous(nt):
    return type(nt)(*(None if t is None else t.contiguous() for t in nt))


class ELMSequence(torch.autograd.Function):
    """The whole sequence of one ELM layer; see the module docstring.

    ``apply(call, *input, *weights, *state)``: the fields of the input (of type ``call.kind``), of a
    :class:`~elm_neuro.networks.engines.elm_contract.Weights` and of a
    :class:`~elm_neuro.networks.engines.elm_contract.State`, flattened so that autograd sees each
    tensor (absent ones are None). Returns ``(y [T, N, O, B], m_T, h_T, zabs [N, B])``; ``h_T`` is
    an empty tensor without high-pass."""

    @staticmethod
    def forward(ctx, call: Call, *tensors):
        k, nw = len(call.kind._fields), len(Weights._fields)
        inp = call.kind._make(tensors[:k])
        w, s = _contiguous(Weights._make(tensors[k:k + nw])), _contiguous(State._make(tensors[k + nw:]))
        saved = guarded(call.guard, call.fns.forward, inp, call.rec, call.mask_rec.contiguous(), w, s, call.spec)
        ctx.call, ctx.n_inp = call, k
        ctx.saved_none = [t is None for t in saved]
        # the drive itself is not needed in backward (beta_all holds it)
        keep = inp._replace(drive=None) if isinstance(inp, Drive) else inp
        ctx.save_for_backward(*keep, *w, *[t for t in saved if t is not None])
        h_T = saved.h_T if saved.h_T is not None else s.m.new_empty(0)
        return saved.y_all[1:], saved.m_all[-1], h_T, saved.zabs

    @staticmethod
    def backward(ctx, gy, g_mT, g_hT, g_zabs):
        call, k = ctx.call, ctx.n_inp
        spec, rec, kind = call.spec, call.rec, call.kind
        tensors = ctx.saved_tensors
        nw = len(Weights._fields)
        inp, w = kind._make(tensors[:k]), Weights._make(tensors[k:k + nw])
        present = iter(tensors[k + nw:])
        saved = Saved(*[None if none else next(present) for none in ctx.saved_none])
        wants = kind._make(ctx.needs_input_grad[1:1 + k])
        wants_w = Weights._make(ctx.needs_input_grad[1 + k:1 + k + nw])
        steps, n, d, bsz = saved.beta_all.shape
        dtype, dev = saved.z_all.dtype, saved.z_all.device
        g_out = OutGrads(
            torch.zeros_like(saved.y_all[1:]) if gy is None else gy.contiguous(),
            torch.zeros_like(saved.m_all[-1]) if g_mT is None else g_mT.contiguous(),
            ((torch.zeros_like(saved.h_T) if (g_hT is None or g_hT.numel() == 0) else g_hT.contiguous())
             if spec.high_pass else None),
            torch.zeros(n, bsz, dtype=dtype, device=dev) if g_zabs is None else g_zabs.contiguous())
        want_input_grad = wants.drive if kind is Drive else wants.x
        g = guarded(call.guard, call.fns.backward, saved, inp, rec, call.mask_rec, w, g_out, spec,
                    bool(want_input_grad), fallback=backward_torch)
        # MLP weight gradients: one batched GEMM over T * B each, unless the backend gave them (a
        # backend may hand its arrays in layouts that make these reshapes free: only strides differ)
        g_W1 = g.g_W1
        if g_W1 is None:
            inp_all = saved.inp_all
            if inp_all is None:
                inp_all = torch.cat([saved.beta_all, w.kappa[None, :, :, None] * saved.m_all[:-1]], dim=2)
            ga = g.ga_all.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1)  # [N, T*B, H1]
            g_W1 = torch.bmm(ga.transpose(1, 2), inp_all.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1))
        g_b1 = g.g_b1 if g.g_b1 is not None else g.ga_all.sum(dim=(0, 3))
        g_W2 = g_b2 = None
        if spec.two_layers:
            g_W2 = g.g_W2
            if g_W2 is None:
                gz = g.gz_all.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1)  # [N, T*B, M]
                act = saved.act_all if saved.act_all is not None else mlp_act(saved.a1_all, spec.mlp_act)
                g_W2 = torch.bmm(gz.transpose(1, 2), act.permute(1, 0, 3, 2).reshape(n, steps * bsz, -1))
            g_b2 = g.g_b2 if g.g_b2 is not None else g.gz_all.sum(dim=(0, 3))
        g_rec_w = g.g_rec_w
        if g_rec_w is None and rec.count and wants_w.rec_w:
            gb = g.g_beta_all.reshape(steps, n * d, bsz)[:, rec.flat]  # [T, S, B]
            ysrc = saved.y_all[:-1, :, 0][:, rec.src] * call.mask_rec[rec.src]  # [T, S, B]
            g_rec_w = (gb * ysrc).sum(dim=(0, 2))
        if kind is Drive:
            g_inp = Drive(g.g_beta_all)
        elif kind is Events:
            g_x = None
            if wants.x:  # the input's gradient: g_drive @ M^T
                g_x = torch.matmul(g.g_beta_all.permute(3, 0, 1, 2).reshape(bsz, steps, n * d), inp.m_in.t())
            g_inp = Events(*(None,) * 6, g.g_w_in, g_x, None)
        else:
            g_inp = Rows(g.g_x_rows, None)
        g_w = Weights(g_rec_w, g_W1, g_b1, g_W2, g_b2, g.g_wy, g.g_bias, g.g_kappa, g.g_gain)
        return (None, *g_inp, *g_w, *State(g.g_m0, g.g_h0, g.g_y0))


def run(fns: Backend, spec: Spec, rec: Recurrent, mask_rec: torch.Tensor, inp, w: Weights, s: State):
    """One layer's sequence through the engine (:class:`ELMSequence`): ``(y [T, N, O, B], m_T, h_T,
    zabs [N, B])``. ``inp`` is a Drive, Events or Rows that ``fns`` takes. A checked backend is
    checked first (module docstring); raises
    :class:`~elm_neuro.networks.engines.backends.BackendUnusable` where it failed."""
    if not isinstance(inp, fns.takes):
        raise TypeError(f"the {fns.name} backend takes {[t.__name__ for t in fns.takes]}, got {type(inp).__name__}")
    guard = first_use(fns, w.W1.device, w.W1.dtype, lambda: fns.compile_key(inp, rec, mask_rec, w, s, spec),
                      lambda: check(fns, inp, rec, mask_rec, w, s, spec))
    return ELMSequence.apply(Call(fns, spec, rec, mask_rec, type(inp), guard), *inp, *w, *s)


# --------------------------------------------------------------------------- first-use check
class Problem(NamedTuple):
    """A problem of the contract: the forward's arguments (but the synapses and the spec) and the
    gradients reaching its results."""

    inp: object  # a Drive, or Rows (check of a Rows call)
    mask_rec: torch.Tensor
    w: Weights
    s: State
    g: OutGrads

    def to(self, **kw) -> "Problem":
        """Every tensor ``.to(**kw)`` (dtype, device)."""
        def cast(nt):
            return type(nt)(*(None if t is None else t.to(**kw) for t in nt))

        return Problem(cast(self.inp), self.mask_rec.to(**kw), cast(self.w), cast(self.s), cast(self.g))


def check_problem(rec: Recurrent, n: int, d: int, m: int, o: int, h1: int, h: int, spec: Spec, bsz: int,
                  dtype: torch.dtype, device, steps: int = CHECK_STEPS, seed: int = 0) -> Problem:
    """A random problem for the synapses ``rec`` of ``n`` neurons (``d`` branches, ``m`` memory
    units, ``o`` outputs, MLP widths ``h1`` / ``h``) whose step never comes near a branch point.

    Bounds (two steps): drive, m0, y0 in [-1, 1], h0 in [-0.2, 0.2], mask 0 or 1.25, synapse
    weights |w| <= 0.5 / (most synapses on a branch), kappa in [0.5, 0.95], gain in [0.5, 1.7].
    Then |m_t| <= 4.22, |wy m| <= 0.1 max |m| <= 0.43, |p - h| <= 0.85; with |bias| in [1, 1.5] the
    output pre-activation lies in 0.15 <= |pre| <= 2.35, so |y| <= 2.35, |beta| <= 1 + 0.625 * 2.35
    = 2.47 and the MLP input |x| <= 2.52; rows of W1 sum to at most 0.1 in absolute value, so with
    |b1| in [1, 1.5] the first layer's output satisfies |a| >= 0.74 (also z when L = 0), and
    act(a) <= 3.07 with rows of W2 of absolute sum 0.1 and |b2| in [1, 1.5] gives |z| >= 0.69."""
    g = torch.Generator().manual_seed(seed)

    def u(*shape, lo=-1.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    def away(*shape):  # magnitude in [1, 1.5], random sign
        return u(*shape, lo=1.0, hi=1.5) * (2.0 * torch.randint(0, 2, shape, generator=g) - 1.0)

    width = max(1, rec.in_width if rec.in_width is not None
                else (int(torch.bincount(rec.flat).max()) if rec.count else 1))
    two = spec.two_layers
    w = Weights(u(rec.count) * 0.5 / width, u(n, h1, d + m) * 0.1 / (d + m), away(n, h1),
                u(n, m, h) * 0.1 / h if two else None, away(n, m) if two else None, u(n, o, m) * 0.1 / m,
                away(n, o), u(n, m, lo=0.5, hi=0.95), u(n, m, lo=0.5, hi=1.7))
    s = State(u(n, m, bsz), u(n, o, bsz) * 0.2 if spec.high_pass else None, u(n, o, bsz))
    gr = OutGrads(u(steps, n, o, bsz), u(n, m, bsz), u(n, o, bsz) if spec.high_pass else None, u(n, bsz))
    mask = 1.25 * torch.randint(0, 2, (n, bsz), generator=g, dtype=torch.float64)
    return Problem(Drive(u(steps, n, d, bsz)), mask, w, s, gr).to(device=device, dtype=dtype)


def check(fns: Backend, inp, rec: Recurrent, mask_rec, w: Weights, s: State, spec: Spec) -> None:
    """The first-use check of ``fns`` for the configuration of this call: forward and backward on
    :func:`check_problem` (the call's shapes and synapses, :data:`CHECK_STEPS` steps, the smallest
    batch that keeps the call's compile key; for a Rows input, random rows of the call's channels
    read through the call's synapses) against the contract's reference in float64; raises on any
    failure (:func:`~elm_neuro.networks.engines.backends.assert_matches`)."""
    n, m, bsz = s.m.shape
    o, h1 = s.y.shape[1], w.W1.shape[1]
    d = w.W1.shape[2] - m
    h = w.W2.shape[2] if spec.two_layers else 1
    key = fns.compile_key(inp, rec, mask_rec, w, s, spec)
    for b in check_batches(bsz):
        p = check_problem(rec, n, d, m, o, h1, h, spec, b, w.W1.dtype, w.W1.device)
        if isinstance(inp, Rows):
            g = torch.Generator().manual_seed(1)
            x = 2.0 * torch.rand(CHECK_STEPS, inp.x.shape[1], b, generator=g, dtype=torch.float64) - 1.0
            mask_x = 1.25 * torch.randint(0, 2, (inp.x.shape[1], b), generator=g, dtype=torch.float64)
            p = p._replace(inp=Rows(x.to(w.W1), mask_x.to(w.W1)))
        if fns.compile_key(p.inp, rec, p.mask_rec, p.w, p.s, spec) == key:
            break
    got = fns.forward(p.inp, rec, p.mask_rec, p.w, p.s, spec)
    got_g = fns.backward(got, p.inp, rec, p.mask_rec, p.w, p.g, spec, True)
    r = p.to(dtype=torch.float64)
    if isinstance(inp, Rows):
        want = forward_rows_torch(r.inp, rec, r.mask_rec, r.w, r.s, spec)
        want_g = backward_rows_torch(want, r.inp, rec, r.mask_rec, r.w, r.g, spec, True)
    else:
        want = forward_torch(r.inp, rec, r.mask_rec, r.w, r.s, spec)
        want_g = backward_torch(want, r.inp, rec, r.mask_rec, r.w, r.g, spec, True)
    assert_matches(got, want, "forward")
    assert_matches(got_g, want_g, "backward")
