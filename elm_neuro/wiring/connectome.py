"""Fixed random connectomes (docs/design.md §2).

A layer of ``N`` neurons with ``K`` synapses each reads from a vector of length ``n_in + N``:
index ``i < n_in`` is input channel ``i`` at step ``t``; index ``n_in + j`` is neuron ``j`` of the
same layer at step ``t - 1``. The connectome is an integer array ``C`` of shape ``[N, K]``.

"random" wiring: every entry independently picks its source; with probability ``1 - rho`` an
input channel (uniform over ``n_in``), with probability ``rho`` a neuron of the layer (uniform
over ``N``). Sources are drawn with replacement, so duplicates and self-connections are allowed
and the fan-in is exactly ``K``. With ``n_in == 0`` every synapse is recurrent; with ``N`` given but
``rho == 0`` every synapse is an input synapse.

The draw uses its own ``torch.Generator`` seeded by ``seed`` so it never disturbs the global RNG,
and the same seed gives the same connectome on every platform.
"""
from __future__ import annotations

import torch

WIRINGS = ("random",)


def random_connectome(n_in: int, n: int, k: int, rho: float, seed: int) -> torch.Tensor:
    """Draw a ``[n, k]`` int64 connectome over ``n_in`` inputs and ``n`` recurrent sources.

    Args:
        n_in: number of external input channels (>= 0).
        n: number of neurons in the layer (>= 1).
        k: synapses per neuron (>= 1).
        rho: probability that a synapse is recurrent, in ``[0, 1]``.
        seed: seed of the dedicated generator.
    """
    if n < 1:
        raise ValueError(f"n (neurons) must be >= 1, got {n}")
    if k < 1:
        raise ValueError(f"k (synapses per neuron) must be >= 1, got {k}")
    if n_in < 0:
        raise ValueError(f"n_in must be >= 0, got {n_in}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho (recurrent fraction) must lie in [0, 1], got {rho}")
    if n_in == 0 and rho < 1.0:
        raise ValueError("rho must be 1 when the layer has no input channels (n_in == 0)")
    g = torch.Generator().manual_seed(int(seed))
    recurrent = torch.rand((n, k), generator=g) < rho
    src_in = torch.randint(0, max(n_in, 1), (n, k), generator=g)
    src_rec = torch.randint(0, n, (n, k), generator=g) + n_in
    return torch.where(recurrent, src_rec, src_in).to(torch.int64)


def make_connectome(wiring: str, n_in: int, n: int, k: int, rho: float, seed: int) -> torch.Tensor:
    """Dispatch on the wiring name (one of ``WIRINGS``)."""
    if wiring == "random":
        return random_connectome(n_in, n, k, rho, seed)
    raise ValueError(f"wiring must be one of {WIRINGS}, got {wiring!r}")


def recurrent_fraction(connectome: torch.Tensor, n_in: int) -> float:
    """Share of synapses whose source is a neuron of the layer."""
    return float((connectome >= n_in).double().mean())
