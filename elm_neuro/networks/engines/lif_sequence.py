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
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from elm_neuro.networks.engines.backends import Backend, pick
from elm_neuro.networks.engines.lif_contract import REFERENCE, OutGrads, Saved, Spec, State, Weights, rec_map_grad


def backend(device: torch.device) -> Backend:
    """The backend for ``device``: Numba on the CPU, Triton on CUDA where it is installed, else the
    PyTorch reference (:func:`~elm_neuro.networks.engines.backends.pick`)."""
    return pick(device, "elm_neuro.networks.engines.lif_numba", "elm_neuro.networks.engines.lif_triton", REFERENCE)


class Call(NamedTuple):
    """The static part of one engine call: the backend, the options and the recurrent dropout mask."""

    fns: Backend
    spec: Spec
    mask: torch.Tensor


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
        saved = call.fns.forward(cur_in.contiguous(), mask, w, s, spec)
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
        g = ctx.call.fns.backward(saved, mask, w, g_out, spec)
        wants = Weights._make(ctx.needs_input_grad[2:2 + nw])
        g_M = rec_map_grad(saved.s_all, mask, g.g_cur) if spec.recurrent and wants.M else None
        g_w = Weights(g_M, g.g_kappa_m, g.g_gain, g.g_kappa_w, g.g_a, g.g_b)
        return (None, g.g_cur, *g_w, *State(g.g_v0, g.g_s0, g.g_w0, None))


def run(fns: Backend, spec: Spec, mask: torch.Tensor, cur_in: torch.Tensor, w: Weights, s: State):
    """One layer's sequence through the engine (:class:`LIFSequence`): ``(s [B, T, N], v_T, w_T,
    ref_T)``."""
    return LIFSequence.apply(Call(fns, spec, mask), cur_in, *w, *s)
