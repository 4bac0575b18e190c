"""How an input reaches a fused engine: one of three forms, chosen by one rule.

A layer's input synapses turn an input ``x`` ``[B, T, C]`` (C channels, the input dropout mask
``mask`` ``[B, C]`` applied) into a drive per target column. That work can happen in three places,
so an engine's input is one value of three types:

:class:`Drive`
    The drive of every step, computed outside the engine as one matrix product with the dense
    input map (ordinary autograd gives the input weights their gradient from the drive's).
:class:`Events`
    The non-zero entries of ``x * mask``, step by step (:class:`EventList`), with the input
    synapses listed by source channel: the engine scatters each event over its channel's synapses
    and gathers the input weights' gradient from the same events, so neither the drive nor its
    gradient ever exists as a tensor. For spikes (SHD: about 1 % non-zero) and one-hot tokens.
:class:`Rows`
    The dense input itself, ``[T, C, B]``, read through its synapses inside the engine's loop
    (one vector multiply-add over the batch per synapse and step): cheaper than the dense map's
    products when the synapses fill only a small part of that map (the Enwik8 readout: 3 %).

The rule (:func:`input_form`, the only place that chooses; each backend declares the types it
takes in ``TAKES``):

1. **Events** when the backend takes them, the input is float32 / float64 outside autocast, and at
   most :data:`EVENTS_MAX_DENSITY` of ``x * mask`` is non-zero;
2. else **Rows** when the backend takes them and the input synapses fill at most
   :data:`ROWS_MAX_FILL` of the dense input map;
3. else **Drive**.

The same rule projects the spiking layers' input currents
(:func:`elm_neuro.networks.engines.projection.project`: events or one dense product), and the
ELM layer's per-step path takes its input drive from that projection, so every sparse input in
the package follows one threshold.

Why these numbers: an event costs a scatter over its channel's synapses in forward and a gather
in backward; the dense form costs two products of the input map (drive and map gradient), which
run at several times the scalar rate. Measured with ``benchmarks/bench_elm.py``: break-even near
40 % non-zero for a readout of 19 neurons on 227 spiking channels, higher for wide layers; the
LIF input projection (a row of the map added per event) breaks even near 25 % for N 100 on
700 channels (``benchmarks/bench_lif.py``). A dense input read as rows pays off well below 10 %
fill (Enwik8 readout, 3 %: much faster; SHD-Adding readout, 18 %: equal).

:func:`list_events_torch` is the reference of the compiled lister
(:func:`elm_neuro.networks.engines.inputs_numba.list_events`).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

EVENTS_MAX_DENSITY = 0.25  # an input at most this fraction non-zero reaches an engine as events
ROWS_MAX_FILL = 0.1  # a dense input is read as rows when its synapses fill at most this of the dense map
DTYPES = (torch.float32, torch.float64)


class EventList(NamedTuple):
    """The non-zero entries of ``x * mask`` ordered by step, then sample, then channel: event ``e``
    of step ``t`` (``ptr[t] <= e < ptr[t + 1]``) is channel ``chan[e]`` of sample ``batch[e]`` with
    value ``value[e]`` (the dropout mask already applied)."""

    ptr: torch.Tensor  # [T + 1] int64
    batch: torch.Tensor  # [E] int64
    chan: torch.Tensor  # [E] int64
    value: torch.Tensor  # [E], the input's dtype

    @property
    def steps(self) -> int:
        return int(self.ptr.numel()) - 1


class Drive(NamedTuple):
    """The input synapses' drive of every step, computed outside the engine (any strides)."""

    drive: torch.Tensor


class Events(NamedTuple):
    """A sparse input as events and the input synapses that read it.

    Input synapse ``s`` of channel ``c`` (``syn_ptr[c] <= s < syn_ptr[c + 1]``) adds
    ``w_in[s] * value`` to target column ``syn_flat[s]`` (= neuron * D + branch). ``w_in`` gets a
    gradient. When the input itself needs one (spikes of a layer below), ``x`` is the masked
    input ``[B, T, C]`` and ``m_in`` the detached dense input map ``[C, N * D]``: its gradient is
    ``g_drive @ m_in^T``; else both are None."""

    ptr: torch.Tensor
    batch: torch.Tensor
    chan: torch.Tensor
    value: torch.Tensor
    syn_ptr: torch.Tensor  # [C + 1] int64
    syn_flat: torch.Tensor  # [S_in] int64
    w_in: torch.Tensor  # [S_in]
    x: Optional[torch.Tensor] = None
    m_in: Optional[torch.Tensor] = None

    @property
    def steps(self) -> int:
        return int(self.ptr.numel()) - 1

    @property
    def event_list(self) -> EventList:
        return EventList(self.ptr, self.batch, self.chan, self.value)


class Rows(NamedTuple):
    """A dense input read through its synapses inside the engine: ``x`` ``[T, C, B]`` (gets a
    gradient) and its dropout mask ``[C, B]``; the synapses themselves are listed with the
    engine's other synapses (sources after the layer's own neurons)."""

    x: torch.Tensor
    mask: torch.Tensor


INPUT_TYPES = (Drive, Events, Rows)


def list_events_torch(x: torch.Tensor, max_density: float, mask: Optional[torch.Tensor] = None
                      ) -> Optional[EventList]:
    """The :class:`EventList` of ``x`` ``[B, T, C]`` times the dropout mask ``[B, C]`` (when given);
    None when more than ``max_density`` of its entries are non-zero (a NaN counts as non-zero, as
    in ``torch.nonzero``)."""
    bsz, steps, _ = x.shape
    if mask is not None:
        x = x * mask[:, None, :]
    if x.numel() == 0 or int(torch.count_nonzero(x)) > max_density * x.numel():
        return None
    b, t, c = x.nonzero(as_tuple=True)  # ordered by sample, then step
    value = x[b, t, c]
    by_step = torch.argsort(t * bsz + b, stable=True)
    b, t, c, value = b[by_step], t[by_step], c[by_step], value[by_step]
    ptr = torch.zeros(steps + 1, dtype=torch.int64, device=x.device)
    ptr[1:] = torch.cumsum(torch.bincount(t, minlength=steps), 0)
    return EventList(ptr, b, c, value.contiguous())


def input_form(x: torch.Tensor, mask: Optional[torch.Tensor], takes, synapse_fill: float = 1.0, lister=None):
    """The form an input takes (module docstring): ``(Events, EventList)``, ``(Rows, None)`` or
    ``(Drive, None)``.

    ``takes``: the input types the backend takes; ``synapse_fill``: the fraction of the dense input
    map that the input synapses fill (for rows); ``lister``: the backend's event lister (default
    :func:`list_events_torch`), which applies ``mask`` to the events it lists."""
    if Events in takes and x.dtype in DTYPES and x.numel() > 0 and not torch.is_autocast_enabled(x.device.type):
        listed = (lister or list_events_torch)(x.detach(), EVENTS_MAX_DENSITY, mask)
        if listed is not None:
            return Events, listed
    if Rows in takes and synapse_fill <= ROWS_MAX_FILL:
        return Rows, None
    return Drive, None


def synapses_by_channel(src: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, n_channels: int):
    """``(syn_ptr [C + 1], syn_flat [S], w [S])``: input synapses ``(source channel, target column,
    weight)`` sorted by channel (CSR), as :class:`Events` lists them."""
    order = torch.argsort(src, stable=True)
    ptr = torch.zeros(n_channels + 1, dtype=torch.int64, device=src.device)
    ptr[1:] = torch.cumsum(torch.bincount(src, minlength=n_channels), 0)
    return ptr, target[order].contiguous(), weight[order]
