"""CPU backend of the input forms (:mod:`elm_neuro.networks.engines.inputs`): the event lister and the
event-driven input projection, compiled with Numba.

- :func:`list_events`: :func:`~elm_neuro.networks.engines.inputs.list_events_torch` in two passes
  over ``x`` (count per step with an early stop once the input is too dense, then place), the
  dropout mask applied on the way, without sorting.
- :func:`project_forward` / :func:`project_backward`: ``(x * mask) @ M`` from an
  :class:`~elm_neuro.networks.engines.inputs.EventList` (a row of ``M`` added per event, in
  increasing channel order within a sample and step) and the gradient of ``M`` (a row added per
  event); the reference is the dense product in
  :mod:`elm_neuro.networks.engines.projection`.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from numba import njit

from elm_neuro.networks.engines.inputs import Drive, EventList, Events

TAKES = (Drive, Events)  # the projection: events, or the dense product for a dense input
_OPTS = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_OPTS)
def _count_events(x, mask, steps_counts, max_count):
    """Non-zero entries of ``x * mask`` ([B, T, C] times [B, C]) per step into
    ``steps_counts[1:]``; stops early (returning the count so far) once there are more than
    ``max_count``."""
    total = 0
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            k = 0
            for c in range(x.shape[2]):
                k += x[b, t, c] * mask[b, c] != 0  # a NaN counts, as in torch.nonzero
            steps_counts[t + 1] += k
            total += k
        if total > max_count:
            break
    return total


@njit(**_OPTS)
def _fill_events(x, mask, ptr, batch, chan, value):
    """The events of ``x * mask`` at their places: step by step, then sample, then channel."""
    pos = ptr[:-1].copy()
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            for c in range(x.shape[2]):
                v = x[b, t, c] * mask[b, c]
                if v != 0:
                    e = pos[t]
                    batch[e], chan[e], value[e] = b, c, v
                    pos[t] = e + 1


def list_events(x: torch.Tensor, max_density: float, mask: Optional[torch.Tensor] = None) -> Optional[EventList]:
    """:func:`~elm_neuro.networks.engines.inputs.list_events_torch`, compiled (module docstring)."""
    bsz, steps, chans = x.shape
    if x.numel() == 0:
        return None
    xn = x.detach().contiguous().numpy()
    mn = np.ones((bsz, chans), xn.dtype) if mask is None else mask.detach().to(x.dtype).contiguous().numpy()
    ptr = np.zeros(steps + 1, np.int64)
    total = _count_events(xn, mn, ptr, int(math.floor(max_density * x.numel())))
    if total > max_density * x.numel():
        return None
    np.cumsum(ptr, out=ptr)
    batch, chan, value = np.empty(total, np.int64), np.empty(total, np.int64), np.empty(total, xn.dtype)
    _fill_events(xn, mn, ptr, batch, chan, value)
    return EventList(*(torch.from_numpy(a) for a in (ptr, batch, chan, value)))


@njit(**_OPTS)
def _project_fwd(ptr, batch, chan, value, M, out):
    """``out[b, t] += value * M[chan]`` for every event ``(t, b, chan, value)``; ``out`` [B, T, N]
    comes in as zeros."""
    for t in range(ptr.shape[0] - 1):
        for e in range(ptr[t], ptr[t + 1]):
            b, i, v = batch[e], chan[e], value[e]
            for n in range(M.shape[1]):
                out[b, t, n] += v * M[i, n]


@njit(**_OPTS)
def _project_bwd(ptr, batch, chan, value, g, g_M):
    """``g_M[chan] += value * g[b, t]`` for every event; ``g_M`` comes in as zeros."""
    for t in range(ptr.shape[0] - 1):
        for e in range(ptr[t], ptr[t + 1]):
            b, i, v = batch[e], chan[e], value[e]
            for n in range(g.shape[2]):
                g_M[i, n] += v * g[b, t, n]


def project_forward(events: EventList, M: torch.Tensor, bsz: int) -> torch.Tensor:
    """``[B, T, N]``: the events' rows of ``M`` ``[C, N]`` summed per sample and step."""
    out = M.new_zeros(bsz, events.steps, M.shape[1])
    _project_fwd(*(a.numpy() for a in events), M.detach().contiguous().numpy(), out.numpy())
    return out


def project_backward(events: EventList, g: torch.Tensor, n_channels: int) -> torch.Tensor:
    """The gradient of ``M`` ``[C, N]`` from the output gradient ``g`` ``[B, T, N]``."""
    g = g.contiguous()
    g_M = g.new_zeros(n_channels, g.shape[2])
    _project_bwd(*(a.numpy() for a in events), g.numpy(), g_M.numpy())
    return g_M
