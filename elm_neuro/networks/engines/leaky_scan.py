"""The first-order filter ``o_t = kappa o_{t-1} + gain d_t`` over a whole sequence ``[B, T, C]`` as
one autograd Function (the leaky readout of the spiking networks, and the low-passed output spikes
of their spiking readout), with the backends of the LIF engine: ``scan_forward`` /
``scan_backward`` of :mod:`~elm_neuro.networks.engines.lif_numba` (CPU) and
:mod:`~elm_neuro.networks.engines.lif_triton` (CUDA). :func:`scan_torch` /
:func:`scan_backward_torch` are the reference (and the per-step path's
:func:`elm_neuro.networks.common.leaky_integrate` computes the same sums).

On CUDA the Triton kernels are checked once per configuration before their first use, and a
failed import, check or call is caught, as for the engines
(:mod:`elm_neuro.networks.engines.backends`): the filter then runs on the reference (the same
sums, step by step in PyTorch) and :class:`~elm_neuro.networks.engines.backends.EngineFallbackWarning`
says so once; in backward a failed kernel call gives way to :func:`scan_backward_torch`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from elm_neuro.networks.engines.backends import (Backend, BackendUnusable, Guard, assert_matches, first_use, guarded,
                                                 pick)
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
CHECK_STEPS = 3  # time steps of the first-use check's problem


def backend(device: torch.device) -> Backend:
    """The filter's backend for ``device`` (:func:`~elm_neuro.networks.engines.backends.pick`; raises
    :class:`~elm_neuro.networks.engines.backends.BackendUnusable` where Triton cannot be imported)."""
    return pick(device, "elm_neuro.networks.engines.lif_numba", "elm_neuro.networks.engines.lif_triton", REFERENCE,
                names=("scan_forward", "scan_backward", "scan_compile_key"))


class LeakyScan(torch.autograd.Function):
    """``o_t = kappa o_{t-1} + gain d_t`` over a whole sequence ``[B, T, C]`` from ``o0`` ``[B, C]``
    (``kappa``, ``gain``: Python floats; ``guard``: the checked configuration, or None)."""

    @staticmethod
    def forward(ctx, fns: Backend, drive, o0, kappa: float, gain: float, guard: Optional[Guard] = None):
        ctx.fns, ctx.kappa, ctx.gain, ctx.guard = fns, kappa, gain, guard
        return guarded(guard, fns.forward, drive.contiguous(), o0.contiguous(), kappa, gain)

    @staticmethod
    def backward(ctx, g_o):
        g_d, g_o0 = guarded(ctx.guard, ctx.fns.backward, g_o.contiguous(), ctx.kappa, ctx.gain,
                            fallback=scan_backward_torch)
        return None, g_d, g_o0, None, None, None


class ScanOut(NamedTuple):
    o: torch.Tensor


class ScanGrads(NamedTuple):
    g_drive: torch.Tensor
    g_o0: torch.Tensor


def check(fns: Backend, drive: torch.Tensor, kappa: float, gain: float) -> None:
    """The first-use check of ``fns`` for a call's configuration (its channels, dtype, device and
    gain): forward and backward on random values in [-1, 1] (two samples, :data:`CHECK_STEPS`
    steps) against the reference in float64; raises on any failure."""
    g = torch.Generator().manual_seed(0)
    c = drive.shape[2]
    d, o0, g_o = (2 * torch.rand(*shape, generator=g, dtype=torch.float64) - 1
                  for shape in ((2, CHECK_STEPS, c), (2, c), (2, CHECK_STEPS, c)))
    d, o0, g_o = (t.to(dtype=drive.dtype, device=drive.device) for t in (d, o0, g_o))
    got, got_g = fns.forward(d, o0, kappa, gain), fns.backward(g_o, kappa, gain)
    d, o0, g_o = (t.double() for t in (d, o0, g_o))
    assert_matches(ScanOut(got), ScanOut(scan_torch(d, o0, kappa, gain)), "scan forward")
    assert_matches(ScanGrads(*got_g), ScanGrads(*scan_backward_torch(g_o, kappa, gain)), "scan backward")


def leaky_scan(drive: torch.Tensor, o0: torch.Tensor, kappa: float, gain: float = 1.0, fns: Optional[Backend] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`elm_neuro.networks.common.leaky_integrate` as one Function: ``(o [B, T, C], o_T)``.
    Computes in ``drive``'s dtype when it is float32 / float64 (else on the reference path); where
    the device's compiled backend cannot run (module docstring), on the reference."""
    if drive.dtype not in DTYPES or drive.shape[1] == 0:
        o = scan_torch(drive, o0, kappa, gain)
        return o, (o[:, -1] if drive.shape[1] else o0)
    o0 = o0.to(drive.dtype)
    kappa, gain = float(kappa), float(gain)
    try:
        fns = fns if fns is not None else backend(drive.device)
        guard = None
        if drive.numel():
            guard = first_use(fns, drive.device, drive.dtype, lambda: fns.compile_key(drive, o0, kappa, gain),
                              lambda: check(fns, drive, kappa, gain))
        o = LeakyScan.apply(fns, drive, o0, kappa, gain, guard)
    except BackendUnusable:  # warned once where it was found
        o = LeakyScan.apply(REFERENCE, drive, o0, kappa, gain, None)
    return o, o[:, -1]
