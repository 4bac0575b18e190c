"""Parameter budgets: the vocabulary shared by every network type, and the N solver.

Budget vocabulary (docs/design.md §3):

- ``n``: hidden-layer size (readout neurons not counted);
- ``k_c``: synapses (connections) per hidden neuron;
- ``k_e``: per-neuron internal parameters, everything a hidden neuron owns besides its synapses;
- ``p``: trainable parameters of the whole network.

For the ELM Network ``P = N (k_c + k_e) + C (K + 3 d_tree + 16) + C (C + 1)``. Every network
configuration class exposes ``budget() -> Budget`` (computed from the configuration alone,
without building the model) and ``replace(**fields)``; :func:`closest_n` then sizes any of them
to a target ``P``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple


class Budget(NamedTuple):
    n: int
    k_e: int
    k_c: int
    p: int


def closest_n(p_of_n: Callable[[int], int], target: int, n_max: int = 10_000_000) -> int:
    """The ``n >= 1`` whose parameter count ``p_of_n(n)`` is closest to ``target``.

    ``p_of_n`` must be non-decreasing in ``n``. Ties go to the smaller ``n``. Raises
    ``ValueError`` when even ``n = 1`` exceeds the target (no network of this shape fits).
    """
    if target < 1:
        raise ValueError(f"params (target budget) must be >= 1, got {target}")
    if p_of_n(1) > target:
        raise ValueError(
            f"params={target} is too small: the smallest network (n=1) already has {p_of_n(1)} parameters"
        )
    lo, hi = 1, 1
    while p_of_n(hi) < target:
        lo, hi = hi, hi * 2
        if hi > n_max:
            raise ValueError(f"params={target} needs more than n_max={n_max} neurons")
    # largest n in [lo, hi] with p(n) <= target (or lo when none)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if p_of_n(mid) <= target:
            lo = mid
        else:
            hi = mid
    return min((lo, lo + 1), key=lambda n: (abs(p_of_n(n) - target), n))


def count_trainable(module) -> int:
    """``sum(p.numel())`` over the trainable parameters of a built model."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
