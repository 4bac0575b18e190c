"""The input projection ``(x * mask) @ M`` of a layer's input synapses, in the form the input rule
chooses (:func:`elm_neuro.networks.engines.inputs.input_form`): from the input's events where the
device has an event backend and the input is sparse, else one dense product.

``x`` ``[B, T, C]`` is the input, ``mask`` ``[B, C]`` its dropout mask (or None) and ``M`` ``[C, N]``
the dense input map (a column per target: a LIF neuron, or an ELM neuron's branch). With events
(:class:`EventProjection`, the CPU backend of :mod:`elm_neuro.networks.engines.inputs_numba`) the
mask is applied per event and never materialised; ``M``'s gradient is a row added per event, and
``x``'s (when it needs one, e.g. spikes of a layer below) the dense ``(g @ M^T) * mask``. Within a
sample and step the events add their rows in increasing channel order, so the result does not
depend on the batch's other samples. The dense form is the reference (:func:`project_dense`).
"""
from __future__ import annotations

from typing import Optional

import torch

from elm_neuro.networks.engines.backends import Backend, pick
from elm_neuro.networks.engines.inputs import Drive, Events, input_form, list_events_torch


def project_dense(x: torch.Tensor, mask: Optional[torch.Tensor], M: torch.Tensor) -> torch.Tensor:
    """``(x * mask[:, None, :]) @ M`` as one product (the reference and the dense form)."""
    if mask is not None:
        x = x * mask[:, None, :]
    return x @ M


def _no_events(*_args):
    raise NotImplementedError("the reference projection takes no events")


REFERENCE = Backend("torch", _no_events, _no_events, (Drive,), list_events_torch)


def backend(device: torch.device) -> Backend:
    """The event projection of ``device`` (the CPU's), else the reference (dense products only)."""
    return pick(device, "elm_neuro.networks.engines.inputs_numba", None, REFERENCE,
                names=("project_forward", "project_backward"))


class EventProjection(torch.autograd.Function):
    """``(x * mask) @ M`` from the events of ``x * mask`` (module docstring):
    ``apply(fns, events, x, mask, M)``; ``x`` (the unmasked input) is read only for its gradient."""

    @staticmethod
    def forward(ctx, fns: Backend, events, x, mask, M):
        ctx.fns, ctx.events = fns, events
        ctx.save_for_backward(mask, M)
        return fns.forward(events, M, x.shape[0])

    @staticmethod
    def backward(ctx, g):
        mask, M = ctx.saved_tensors
        _, _, wants_x, _, wants_M = ctx.needs_input_grad
        g_M = ctx.fns.backward(ctx.events, g, M.shape[0]) if wants_M else None
        g_x = None
        if wants_x:
            g_x = g @ M.t()
            if mask is not None:
                g_x = g_x * mask[:, None, :]
        return None, None, g_x, None, g_M


def project(x: torch.Tensor, mask: Optional[torch.Tensor], M: torch.Tensor, fns: Optional[Backend] = None
            ) -> torch.Tensor:
    """``(x * mask[:, None, :]) @ M`` ``[B, T, N]`` in the chosen form (module docstring); ``fns``
    overrides the device's backend."""
    fns = fns if fns is not None else backend(x.device)
    if x.dtype == M.dtype:
        form, listed = input_form(x, mask, fns.takes, lister=fns.list_events)
        if form is Events:
            return EventProjection.apply(fns, listed, x, mask, M)
    return project_dense(x, mask, M)
