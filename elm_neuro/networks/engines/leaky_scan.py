"""The first-order filter ``o_t = kappa o_{t-1} + gain d_t`` over a whole sequence ``[B, T, C]`` as
one autograd Function (the leaky readout of the spiking networks, and the low-passed output spikes
of their spiking readout), with the backends of the LIF engine: ``scan_forward`` /
``scan_backward`` of :mod:`~elm_neuro.networks.engines.lif_numba` (CPU) and
:mod:`~elm_neuro.networks.engines.lif_triton` (CUDA). :func:`scan_torch` /
:func:`scan_backward_torch` are the reference (and the per-step path's
:func:`elm_neuro.networks.common.leaky_integrate` computes the same sums).
"""
from __future__ import annotations

from typing import Optional

import torch

from elm_neuro.networks.engines.backends import Backend, pick
from elm_neuro.networks.engines.inputs import DTYPES, Drive


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


REFERENCE = Backend("torch", scan_torch, scan_backward_torch, (Drive,))


def backend(device: torch.device) -> Backend:
    """The filter's backend for ``device`` (:func:`~elm_neuro.networks.engines.backends.pick`)."""
    return pick(device, "elm_neuro.networks.engines.lif_numba", "elm_neuro.networks.engines.lif_triton", REFERENCE,
                names=("scan_forward", "scan_backward"))


class LeakyScan(torch.autograd.Function):
    """``o_t = kappa o_{t-1} + gain d_t`` over a whole sequence ``[B, T, C]`` from ``o0`` ``[B, C]``
    (``kappa``, ``gain``: Python floats)."""

    @staticmethod
    def forward(ctx, fns: Backend, drive, o0, kappa: float, gain: float):
        ctx.fns, ctx.kappa, ctx.gain = fns, kappa, gain
        return fns.forward(drive.contiguous(), o0.contiguous(), kappa, gain)

    @staticmethod
    def backward(ctx, g_o):
        g_d, g_o0 = ctx.fns.backward(g_o.contiguous(), ctx.kappa, ctx.gain)
        return None, g_d, g_o0, None, None


def leaky_scan(drive: torch.Tensor, o0: torch.Tensor, kappa: float, gain: float = 1.0, fns: Optional[Backend] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`elm_neuro.networks.common.leaky_integrate` as one Function: ``(o [B, T, C], o_T)``.
    Computes in ``drive``'s dtype when it is float32 / float64 (else on the reference path)."""
    if drive.dtype not in DTYPES or drive.shape[1] == 0:
        o = scan_torch(drive, o0, kappa, gain)
        return o, (o[:, -1] if drive.shape[1] else o0)
    o0 = o0.to(drive.dtype)
    o = LeakyScan.apply(fns if fns is not None else backend(drive.device), drive, o0, float(kappa), float(gain))
    return o, o[:, -1]
