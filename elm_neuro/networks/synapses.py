"""Synapse kernels of every network family: a connectome ``C [N, K]`` into the sources
``[x ; y_prev]`` (``n_in`` external inputs, then the layer's own ``N`` previous outputs), effective
weights ``w_eff [N, K]``, and the drive of each *group* of synapses.

A neuron's ``K = d_tree * d_brch`` synapses form ``d_tree`` groups of ``d_brch`` consecutive
synapses (an ELM neuron's dendritic branches); a point neuron (LIF) is one group of ``K``
(``d_tree = 1``). Group ``j`` of neuron ``n`` is column ``n * d_tree + j``; its drive is

    drive[b, n * d_tree + j] = sum_{k in group j} w_eff[n, k] * v[b, C[n, k]]

Three representations of the same sums (results identical up to float rounding; the layers'
reference paths check them):

- :func:`dense_map`: the synapses with sources in ``lo..hi-1`` scattered into a dense matrix
  ``[hi - lo, N * d_tree]`` (duplicate synapses add up): one matmul for all steps
  (:func:`elm_neuro.networks.engines.projection.project` multiplies it, from events for sparse
  spike inputs on the CPU).
- :func:`synapse_list`: the synapses with sources ``>= lo`` as (source, target column, weight)
  triplets: per step one ``index_select`` and one ``index_add``. Recurrent synapses are few
  (``rho N K``), so this beats a dense ``[N, N * d_tree]`` map for ELM layers.
- :func:`bag_tables`: ``embedding_bag`` indices and weights ``[N * d_tree, d_brch]`` (memory
  ``O(N K)`` whatever the layer size), for large layers.

:func:`resolve_impl` turns ``auto`` into ``dense`` while the dense map holds at most
``DENSE_MAX_ELEMENTS`` entries, else ``gather``.
"""
from __future__ import annotations

import torch

DENSE_MAX_ELEMENTS = 1 << 24


def resolve_impl(impl: str, n_src: int, n_cols: int) -> str:
    """``dense`` / ``gather`` as given; ``auto``: dense when ``n_src * n_cols <= DENSE_MAX_ELEMENTS``."""
    if impl != "auto":
        return impl
    return "dense" if n_src * n_cols <= DENSE_MAX_ELEMENTS else "gather"


def group_columns(connectome: torch.Tensor, d_tree: int, d_brch: int) -> torch.Tensor:
    """``[N, K]``: the drive column ``n * d_tree + k // d_brch`` of every synapse."""
    n, k = connectome.shape
    group = torch.arange(k, device=connectome.device) // d_brch
    return torch.arange(n, device=connectome.device)[:, None] * d_tree + group[None, :]


def dense_map(connectome: torch.Tensor, w_eff: torch.Tensor, lo: int, hi: int, d_tree: int = 1,
              d_brch: int | None = None) -> torch.Tensor:
    """``M [hi-lo, N*d_tree]``: ``M[j, col]`` sums ``w_eff`` over the synapses from source ``lo + j``
    into drive column ``col``."""
    n, k = connectome.shape
    sel = (connectome >= lo) & (connectome < hi)
    cols = n * d_tree
    size = (hi - lo) * cols
    # synapses from other sources add into one spare entry past the map, dropped after: no boolean
    # selection, which would wait for the device (the fused engines' calls make no host synchronisation)
    flat_idx = torch.where(sel, (connectome - lo) * cols + group_columns(connectome, d_tree, d_brch or k), size)
    flat = torch.zeros(size + 1, device=w_eff.device, dtype=w_eff.dtype)
    return flat.index_add(0, flat_idx.reshape(-1), w_eff.reshape(-1))[:size].view(hi - lo, cols)


def synapse_list(connectome: torch.Tensor, w_eff: torch.Tensor, lo: int, d_tree: int = 1,
                 d_brch: int | None = None, hi: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The synapses with sources ``lo <= source < hi`` (no upper bound when ``hi`` is None):
    ``(source - lo, target column, weight)``."""
    sel = connectome >= lo
    if hi is not None:
        sel = sel & (connectome < hi)
    target = group_columns(connectome, d_tree, d_brch or connectome.shape[1])
    return (connectome - lo)[sel], target[sel], w_eff[sel]


def bag_tables(connectome: torch.Tensor, w_eff: torch.Tensor, lo: int, hi: int, d_tree: int = 1,
               d_brch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``embedding_bag`` indices and weights ``[N*d_tree, d_brch]`` for the sources ``lo..hi-1``
    (other synapses point at row 0 with weight 0)."""
    n, k = connectome.shape
    d_brch = d_brch or k
    sel = (connectome >= lo) & (connectome < hi)
    idx = torch.where(sel, connectome - lo, torch.zeros_like(connectome))
    w = torch.where(sel, w_eff, torch.zeros_like(w_eff))
    return idx.reshape(n * d_tree, d_brch), w.reshape(n * d_tree, d_brch)


#: torch < 2.6 fails an internal assert in ``embedding_bag`` when ``per_sample_weights`` needs a
#: gradient and the table does not (pytorch/pytorch#136457, fixed in 2.6): :func:`bag_sum` then
#: lets the table require one too (same values; the table's unused gradient costs one extra scatter).
BAG_NEEDS_TABLE_GRAD = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 6)


def bag_sum(idx: torch.Tensor, table: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``out[r] = sum_j w[r, j] * table[idx[r, j]]``: ``embedding_bag`` in mode sum, on every
    supported torch (:data:`BAG_NEEDS_TABLE_GRAD`)."""
    if BAG_NEEDS_TABLE_GRAD and w.requires_grad and not table.requires_grad and torch.is_grad_enabled():
        table = table.detach().requires_grad_(True)
    return torch.nn.functional.embedding_bag(idx, table, per_sample_weights=w, mode="sum")


def has_recurrent(connectome: torch.Tensor, n_in: int) -> bool:
    return bool((connectome >= n_in).any())


def gather_inputs(x: torch.Tensor, connectome: torch.Tensor, w_eff: torch.Tensor, n_in: int, d_tree: int = 1,
                  d_brch: int | None = None) -> torch.Tensor:
    """Drive ``[N*d_tree, B*T]`` of the input synapses for every step of ``x [B, T, n_in]`` (embedding_bag)."""
    bsz, steps, _ = x.shape
    idx, w = bag_tables(connectome, w_eff, 0, n_in, d_tree, d_brch)
    table = x.permute(2, 0, 1).reshape(n_in, bsz * steps)
    return bag_sum(idx, table, w)
