"""The fused sequence engine of a LIF / adLIF layer: the whole time loop as one forward and one
reverse-time backward (one ``torch.autograd.Function``), beside the per-step path of
:class:`~elm_neuro.networks.lif_layer.LIFLayer`, which stays the reference.

The kernel contract (types, layouts, the plain-PyTorch reference) is
:mod:`elm_neuro.networks.engines.lif_contract`; the backends are
:mod:`~elm_neuro.networks.engines.lif_numba` (CPU) and :mod:`~elm_neuro.networks.engines.lif_triton`
(CUDA). This module holds the dispatch (:func:`backend`) and the autograd Function
(:class:`LIFSequence`, called through :func:`run`); the layer's input currents come from
:func:`elm_neuro.networks.engines.projection.project`, its readout's filter from
:mod:`elm_neuro.networks.engines.leaky_scan`.

First use on a GPU
    As in :mod:`elm_neuro.networks.engines.elm_sequence`: a backend with a compile key (Triton)
    is checked once per configuration (:func:`check`), and a failed configuration raises
    :class:`~elm_neuro.networks.engines.backends.BackendUnusable` from :func:`run`. A spike is a
    threshold, so the check's problem (:func:`check_problem`) keeps every membrane potential
    away from it: the recurrent map holds small multiples of a power of two, so that its sums
    are exact in any order and dtype, and wherever the float64 reference puts a potential within
    ``1e-4 (1 + |theta|)`` of the threshold, that step's input current is raised until it is
    ``4e-4 (1 + |theta|)`` above (step by step, as later steps follow from earlier ones).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from elm_neuro.networks.engines.backends import (Backend, Guard, assert_matches, check_batches, first_use, guarded,
                                                 pick)
from elm_neuro.networks.engines.lif_contract import (REFERENCE, OutGrads, Saved, Spec, State, Weights, backward_torch,
                                                     forward_torch, rec_map_grad)

CHECK_STEPS = 2  # time steps of the first-use check's problem


def backend(device: torch.device) -> Backend:
    """The backend for ``device``: Numba on the CPU, Triton on CUDA (raises
    :class:`~elm_neuro.networks.engines.backends.BackendUnusable` where it cannot be imported), else
    the PyTorch reference (:func:`~elm_neuro.networks.engines.backends.pick`)."""
    return pick(device, "elm_neuro.networks.engines.lif_numba", "elm_neuro.networks.engines.lif_triton", REFERENCE,
                names=("forward", "backward", "compile_key"))


class Call(NamedTuple):
    """The static part of one engine call: the backend, the options, the recurrent dropout mask and,
    for a checked backend, its configuration's guard."""

    fns: Backend
    spec: Spec
    mask: torch.Tensor
    guard: Optional[Guard] = None


def _contiguous(nt):
    return type(nt)(*(None if t is None else t.contiguous() for t in nt))


class LIFSequence(torch.autograd.Function):
    """The whole sequence of one LIF / adLIF layer; see the module docstring.

    ``apply(call, cur_in, *weights, *state)``: the current ``[B, T, N]`` and the fields of a
    :class:`~elm_neuro.networks.engines.lif_contract.Weights` and a
    :class:`~elm_neuro.networks.engines.lif_contract.State` (absent ones None). Returns
    ``(s [B, T, N], v_T, w_T, ref_T)``; ``w_T`` / ``ref_T`` are empty tensors without adaptation /
    refractory period."""

    @staticmethod
    def forward(ctx, call: Call, cur_in, *tensors):
        nw = len(Weights._fields)
        w, s = _contiguous(Weights._make(tensors[:nw])), _contiguous(State._make(tensors[nw:]))
        spec = call.spec
        mask = call.mask.contiguous()
        saved = guarded(call.guard, call.fns.forward, cur_in.contiguous(), mask, w, s, spec)
        ctx.call = call
        ctx.save_for_backward(mask, *w, *saved[:5])
        empty = cur_in.new_empty(0)
        w_T = saved.w_all[:, -1] if spec.adaptive else empty
        ref_T = saved.ref_T if saved.ref_T is not None else empty
        ctx.mark_non_differentiable(ref_T)
        return saved.s_all[:, 1:], saved.v_all[:, -1], w_T, ref_T

    @staticmethod
    def backward(ctx, gs, g_vT, g_wT, _g_ref):
        nw = len(Weights._fields)
        mask, *rest = ctx.saved_tensors
        w, saved = Weights._make(rest[:nw]), Saved(*rest[nw:], None)
        spec = ctx.call.spec
        zeros = torch.zeros_like(saved.v_all[:, 0])
        g_out = OutGrads(torch.zeros_like(saved.s_all[:, 1:]) if gs is None else gs.contiguous(),
                         zeros if g_vT is None else g_vT.contiguous(),
                         (zeros if g_wT is None or g_wT.numel() == 0 else g_wT.contiguous()) if spec.adaptive else None)
        g = guarded(ctx.call.guard, ctx.call.fns.backward, saved, mask, w, g_out, spec, fallback=backward_torch)
        wants = Weights._make(ctx.needs_input_grad[2:2 + nw])
        g_M = rec_map_grad(saved.s_all, mask, g.g_cur) if spec.recurrent and wants.M else None
        g_w = Weights(g_M, g.g_kappa_m, g.g_gain, g.g_kappa_w, g.g_a, g.g_b)
        return (None, g.g_cur, *g_w, *State(g.g_v0, g.g_s0, g.g_w0, None))


def run(fns: Backend, spec: Spec, mask: torch.Tensor, cur_in: torch.Tensor, w: Weights, s: State):
    """One layer's sequence through the engine (:class:`LIFSequence`): ``(s [B, T, N], v_T, w_T,
    ref_T)``. A checked backend is checked first (module docstring); raises
    :class:`~elm_neuro.networks.engines.backends.BackendUnusable` where it failed."""
    guard = None
    if cur_in.shape[0] and cur_in.shape[2]:  # else no kernel runs
        guard = first_use(fns, cur_in.device, cur_in.dtype, lambda: fns.compile_key(cur_in, mask, w, s, spec),
                          lambda: check(fns, cur_in, mask, w, s, spec))
    return LIFSequence.apply(Call(fns, spec, mask, guard), cur_in, *w, *s)


# --------------------------------------------------------------------------- first-use check
class Problem(NamedTuple):
    """A problem of the contract: the forward's arguments (but the spec) and the gradients reaching
    its results."""

    cur_in: torch.Tensor
    mask: torch.Tensor
    w: Weights
    s: State
    g: OutGrads

    def to(self, **kw) -> "Problem":
        def cast(nt):
            return type(nt)(*(None if t is None else t.to(**kw) for t in nt))

        return Problem(self.cur_in.to(**kw), self.mask.to(**kw), cast(self.w), cast(self.s), cast(self.g))


def check_problem(n: int, spec: Spec, bsz: int, dtype: torch.dtype, device, steps: int = CHECK_STEPS,
                  seed: int = 0) -> Problem:
    """A random problem of ``n`` neurons whose membrane potentials stay away from the threshold
    (module docstring)."""
    g = torch.Generator().manual_seed(seed)

    def u(*shape, lo=-1.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    def ints(lo, hi, *shape):
        return torch.randint(lo, hi + 1, shape, generator=g).to(torch.float64)

    unit = 2.0 ** -(int(n ** 0.5).bit_length() + 2)  # entries k * unit, |k| <= 2: exact sums
    ad = spec.adaptive
    w = Weights(ints(-2, 2, n, n) * unit, u(n, lo=0.5, hi=0.95), u(n, lo=0.5, hi=1.0) if spec.has_gain else None,
                u(n, lo=0.5, hi=0.95) if ad else None, u(n, lo=-0.3, hi=0.3) if ad else None,
                u(n, lo=0.0, hi=0.5) if ad else None)
    s = State(u(bsz, n), ints(0, 1, bsz, n), u(bsz, n, lo=-0.5, hi=0.5) if ad else None,
              ints(0, spec.refractory, bsz, n) if spec.refractory > 0 else None)
    gr = OutGrads(u(bsz, steps, n), u(bsz, n), u(bsz, n) if ad else None)
    p = Problem(u(bsz, steps, n), ints(0, 2, bsz, n), w, s, gr).to(dtype=dtype)  # rounded as the backend sees it
    margin = 1e-4 * (1.0 + abs(spec.threshold))
    for t in range(steps):
        r = p.to(dtype=torch.float64)
        ref = forward_torch(r.cur_in, r.mask, r.w, r.s, spec)
        near = (ref.v_all[:, t + 1] - spec.threshold).abs() < margin
        if spec.refractory > 0:
            near &= ref.q_all[:, t] == 0  # a refractory neuron cannot spike: no threshold there
        coef = r.w.gain if spec.has_gain else 1.0  # d v_t / d cur_in[:, t] outside the refractory period
        cur = r.cur_in.clone()
        cur[:, t] += near * (4.0 * margin / coef)
        p = p._replace(cur_in=cur.to(dtype))
    return p.to(device=device)


def check(fns: Backend, cur_in, mask, w: Weights, s: State, spec: Spec) -> None:
    """The first-use check of ``fns`` for the configuration of this call: forward and backward on
    :func:`check_problem` (the call's neurons, :data:`CHECK_STEPS` steps, the smallest batch that
    keeps the call's compile key) against the contract's reference in float64; raises on any
    failure (:func:`~elm_neuro.networks.engines.backends.assert_matches`)."""
    bsz, _, n = cur_in.shape
    key = fns.compile_key(cur_in, mask, w, s, spec)
    for b in check_batches(bsz):
        p = check_problem(n, spec, b, cur_in.dtype, cur_in.device)
        if fns.compile_key(p.cur_in, p.mask, p.w, p.s, spec) == key:
            break
    got = fns.forward(p.cur_in, p.mask, p.w, p.s, spec)
    got_g = fns.backward(got, p.mask, p.w, p.g, spec)
    r = p.to(dtype=torch.float64)
    want = forward_torch(r.cur_in, r.mask, r.w, r.s, spec)
    want_g = backward_torch(want, r.mask, r.w, r.g, spec)
    assert_matches(got, want, "forward")
    assert_matches(got_g, want_g, "backward")
