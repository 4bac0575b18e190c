"""What the ELM engine's two Triton backends (``elm_triton``, ``elm_triton_grid``) share: the step's
elementwise functions as Triton device functions, constants on the device, and the
host-side rank used to build padded synapse tables.

``tanh`` is made from ``exp`` (Triton's libdevice has no interpreter version); the MLP activations
by code are those of :data:`elm_neuro.networks.engines.elm_contract.MLP_ACTS` (0 relu^2, 1 relu,
2 silu), as are their derivatives.
"""
# No ``from __future__ import annotations`` here: Triton 3.0's interpreter recognises a constexpr
# parameter only by its evaluated annotation (a string "tl.constexpr" is taken for a tensor).

import functools

import torch
import triton
import triton.language as tl


@triton.jit
def tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    th = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -th, th)


@triton.jit
def mlp_act(x, ACT: tl.constexpr):
    if ACT == 0:
        r = tl.maximum(x, 0.0)
        out = r * r
    elif ACT == 1:
        out = tl.maximum(x, 0.0)
    else:
        out = x * tl.sigmoid(x)
    return out


@triton.jit
def mlp_act_grad(x, ACT: tl.constexpr):
    if ACT == 0:
        out = 2.0 * tl.maximum(x, 0.0)
    elif ACT == 1:
        out = tl.where(x > 0, 1.0, 0.0).to(x.dtype)
    else:
        s = tl.sigmoid(x)
        out = s * (1.0 + x * (1.0 - s))
    return out


def slots(keys: torch.Tensor, rows: int) -> torch.Tensor:
    """Each entry's rank among the entries with the same key, in their order: its column in a padded
    table of ``rows`` rows. Device operations only (no host synchronisation)."""
    order = torch.argsort(keys, stable=True)
    counts = torch.zeros(rows, dtype=torch.int64, device=keys.device).index_add_(0, keys, torch.ones_like(keys))
    start = torch.cumsum(counts, 0) - counts
    pos = torch.empty_like(keys)
    pos[order] = torch.arange(keys.numel(), device=keys.device) - start[keys[order]]
    return pos


@functools.lru_cache(maxsize=64)
def device_constants(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` (floats) as a tensor in the kernels' dtype on ``device``, made once per value (a
    Python float argument would reach a kernel as float32; a new tensor from host values per call
    would synchronise with the device)."""
    return torch.tensor(values, dtype=dtype, device=device)
