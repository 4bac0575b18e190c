"""Spike non-linearities with surrogate gradients.

Forward pass: Heaviside step ``H(x) = 1 if x > 0 else 0``. Backward pass replaces the
derivative ``delta(x)`` by a smooth surrogate ``sigma'(x)``:

- ``fast_sigmoid`` (SuperSpike-style fast sigmoid, Zenke & Ganguli 2018):
  ``sigma'(x) = 1 / (slope * |x| + 1)^2``; the ELM spike output uses ``slope = 100`` (SPEC 1.10).

Every surrogate is a ``torch.autograd.Function``; :func:`spike` dispatches by name.
"""
from __future__ import annotations

import torch

SURROGATES = ("fast_sigmoid",)


class FastSigmoidSpike(torch.autograd.Function):
    """Heaviside forward, ``1 / (slope*|x| + 1)^2`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float = 100.0) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out / (ctx.slope * x.abs() + 1.0) ** 2, None


def fast_sigmoid_spike(x: torch.Tensor, slope: float = 100.0) -> torch.Tensor:
    return FastSigmoidSpike.apply(x, slope)


def spike(x: torch.Tensor, surrogate: str = "fast_sigmoid", slope: float = 100.0) -> torch.Tensor:
    """Heaviside spike of ``x`` with the named surrogate gradient."""
    if surrogate == "fast_sigmoid":
        return fast_sigmoid_spike(x, slope)
    raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
