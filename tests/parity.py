"""Bounds for comparing two computations of the same float32 result (a fused engine and the per-step
path, a compiled kernel and its PyTorch reference) that hold on every CPU.

Two correct float32 computations of a sum differ by the rounding of the order they add in, and
that order depends on the machine: Numba compiles for the host CPU, so the vector width and
whether a multiply-add is fused change from one CPU to the next. For a result built from ``ops``
rounded operations in a chain (the terms of its longest sum times the steps of the recurrence
that feeds it), each rounding contributes at most one unit of ``eps`` relative to the magnitudes
involved, so

    |a - b| <= ops * eps * ||b||_2

where the norm of the whole tensor stands for the magnitudes of the terms (a gradient entry
that cancels to almost nothing is still bounded by the size of its tensor). The bound is a
property of float32 arithmetic and of the computation's length, not of one machine's rounding;
float64 checks keep their tight fixed tolerances (there the same argument gives bounds far below
them).
"""
from __future__ import annotations

import torch


def rounding_bound(want: torch.Tensor, ops: int, dtype: torch.dtype = torch.float32) -> float:
    """``ops * eps(dtype) * ||want||_2`` (module docstring)."""
    return ops * torch.finfo(dtype).eps * float(torch.linalg.vector_norm(want.double()))


def assert_rounding_close(got: torch.Tensor, want: torch.Tensor, ops: int, name: str = "") -> None:
    """``max |got - want| <= rounding_bound(want, ops)`` (float32 results, module docstring)."""
    diff = float((got.detach().double() - want.detach().double()).abs().max()) if want.numel() else 0.0
    bound = rounding_bound(want.detach(), ops)
    assert diff <= bound, f"{name}: max |difference| {diff:.3g} > float32 bound {bound:.3g} ({ops} operations)"


def assert_all_close(got, want, names, dtype: torch.dtype, ops: int, rtol64: float = 1e-10, atol64: float = 0.0):
    """Every pair of ``got`` / ``want``: the float32 bound of ``ops`` operations, or for float64
    ``max |got - want| <= rtol64 * max |want| + atol64``."""
    for name, a, b in zip(names, got, want):
        if dtype == torch.float32:
            assert_rounding_close(a, b, ops, name)
        else:
            a, b = a.detach(), b.detach()
            diff = float((a - b).abs().max()) if b.numel() else 0.0
            assert diff <= rtol64 * float(b.abs().max() if b.numel() else 0) + atol64, f"{name}: {diff:.3g}"
