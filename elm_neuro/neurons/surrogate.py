"""Spike non-linearities with surrogate gradients.

Forward pass: Heaviside step ``H(x) = 1 if x > 0 else 0`` (strict: ``x == 0`` gives no spike, as
in snntorch). Backward pass replaces the derivative ``delta(x)`` by a smooth surrogate
``sigma'(x)``, multiplied by a gain ``scale`` (default 1; Zenke & Vogels 2021 show that this
scale, more than the shape, decides whether surrogate-gradient learning works):

- ``fast_sigmoid`` (unnormalised fast-sigmoid derivative, peak ``scale`` at ``x = 0``; the form
  used by snntorch, norse and SpyTorch; the ELM spike output uses ``slope = 100``, docs/design.md §1.10)::

      sigma'(x) = scale / (slope * |x| + 1)^2

- ``atan`` (Fang et al. 2021; identical to ``snntorch.surrogate.atan(alpha=slope)``), the
  derivative of ``1/2 + arctan(pi * slope * x / 2) / pi``, so it integrates to ``scale``::

      sigma'(x) = scale * (slope / 2) / (1 + (pi * slope * x / 2)^2)

- ``superspike`` (Zenke & Ganguli 2018, the fast-sigmoid shape of SuperSpike) **normalised to
  unit area**: the derivative of the smooth step ``1/2 * (1 + slope*x / (1 + slope*|x|))``, so that
  the slope sets the width of the surrogate and not the total gradient it passes::

      sigma'(x) = scale * (slope / 2) / (slope * |x| + 1)^2

  It differs from ``fast_sigmoid`` only by the factor ``slope / 2``; choose ``fast_sigmoid`` for
  the peak-1 convention of snntorch / SpyTorch, ``superspike`` for the unit-area one.

Every surrogate is a ``torch.autograd.Function``; :func:`spike` dispatches by name and
:func:`surrogate_grad` evaluates ``sigma'(x)`` directly (used by tests and analysis).
"""
from __future__ import annotations

import math

import torch

SURROGATES = ("fast_sigmoid", "atan", "superspike")


def _heaviside(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def surrogate_grad(x: torch.Tensor, surrogate: str = "fast_sigmoid", slope: float = 100.0,
                   scale: float = 1.0) -> torch.Tensor:
    """The surrogate derivative ``sigma'(x)`` of the named surrogate (see the module docstring)."""
    if surrogate == "fast_sigmoid":
        return scale / (slope * x.abs() + 1.0) ** 2
    if surrogate == "atan":
        return scale * (slope / 2.0) / (1.0 + (math.pi / 2.0 * slope * x) ** 2)
    if surrogate == "superspike":
        return scale * (slope / 2.0) / (slope * x.abs() + 1.0) ** 2
    raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")


class FastSigmoidSpike(torch.autograd.Function):
    """Heaviside forward, ``scale / (slope*|x| + 1)^2`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float = 100.0, scale: float = 1.0) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        ctx.scale = scale
        return _heaviside(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        grad = grad_out / (ctx.slope * x.abs() + 1.0).square()  # fewest ops: runs once per step
        return (grad if ctx.scale == 1.0 else grad * ctx.scale), None, None


class NamedSurrogateSpike(torch.autograd.Function):
    """Heaviside forward, :func:`surrogate_grad` of the named surrogate backward (atan, superspike)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: str, slope: float, scale: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.slope, ctx.scale = surrogate, slope, scale
        return _heaviside(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * surrogate_grad(x, ctx.surrogate, ctx.slope, ctx.scale), None, None, None


def fast_sigmoid_spike(x: torch.Tensor, slope: float = 100.0, scale: float = 1.0) -> torch.Tensor:
    return FastSigmoidSpike.apply(x, slope, scale)


def atan_spike(x: torch.Tensor, slope: float = 2.0, scale: float = 1.0) -> torch.Tensor:
    return NamedSurrogateSpike.apply(x, "atan", slope, scale)


def superspike_spike(x: torch.Tensor, slope: float = 100.0, scale: float = 1.0) -> torch.Tensor:
    return NamedSurrogateSpike.apply(x, "superspike", slope, scale)


_FUNCTIONS = {"fast_sigmoid": fast_sigmoid_spike, "atan": atan_spike, "superspike": superspike_spike}


def check_surrogate(surrogate: str, slope: float = 1.0, scale: float = 1.0) -> None:
    """Raise ``ValueError`` for an unknown surrogate name or a non-positive slope / scale."""
    if surrogate not in _FUNCTIONS:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    for name, val in (("surrogate_slope", slope), ("surrogate_scale", scale)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {val!r}")


def spike(x: torch.Tensor, surrogate: str = "fast_sigmoid", slope: float = 100.0,
          scale: float = 1.0) -> torch.Tensor:
    """Heaviside spike of ``x`` with the named surrogate gradient (``slope``, gain ``scale``)."""
    fn = _FUNCTIONS.get(surrogate)
    if fn is None:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    return fn(x, slope, scale)
