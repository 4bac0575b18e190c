"""The ELM Network (docs/design.md §3): a recurrent ELM layer, a readout ELM layer and a linear map.

    x_t --embed--> hidden ELM layer (N neurons, recurrent) --a_t--> readout ELM layer
        (C neurons, d_m 3, affine MLP, identity output, reads a_t of the same step)
        --r_t--> Linear(C, C) --> logits_t

``forward`` returns logits for every step, the final state (feed it back in to continue a
sequence: truncated BPTT), the two hidden-layer regularisers of docs/design.md §7 (``regularizers`` dict,
keys ``mlp`` and ``act``; the trainer weighs them) and, on request, the internal traces of both
layers:

- ``l_mlp``: per sample, the mean over hidden neurons of (mean over time and memory units of
  ``|z|``)^2, then the mean over the batch (docs/design.md §7; averaging over the batch inside the square
  would give a smaller number);
- ``l_act``: per sample, the mean over time and hidden neurons of ``relu(a)``, then the mean over
  the batch (every sample has the same T, so this is the mean over batch, time and neurons).

Classification uses ``logits[:, -1]``; language modelling uses every step.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elm_neuro.networks.common import NetworkOutput, PresetBuilt, embed
from elm_neuro.networks.elm_config import ELMNetworkConfig
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.neurons.elm import ELMState


class NetworkState(NamedTuple):
    hidden: ELMState
    readout: ELMState


class ELMNetwork(PresetBuilt, nn.Module):
    """Two ELM layers and a linear map; see the module docstring. Build with a config or a preset
    (``ELMNetwork.from_preset("shd-adding", d_m=9, n=57)``; any field can be overridden)."""

    CONFIG = ELMNetworkConfig
    FAMILIES = ("elm",)

    def __init__(self, cfg: ELMNetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        impl = cfg.synapse_impl
        self.hidden = ELMLayer(cfg.hidden, cfg.n_in, cfg.n, seed=2 * cfg.seed, synapse_impl=impl)
        self.readout = ELMLayer(cfg.readout, cfg.n, cfg.n_classes, seed=2 * cfg.seed + 1, synapse_impl=impl)
        self.out = nn.Linear(cfg.n_classes, cfg.n_classes)
        g = torch.Generator().manual_seed(2 * cfg.seed + 7919)
        bound = 1.0 / math.sqrt(cfg.n_classes)
        with torch.no_grad():
            self.out.weight.uniform_(-bound, bound, generator=g)
            self.out.bias.uniform_(-bound, bound, generator=g)

    def initial_state(self, batch: int, device=None) -> NetworkState:
        """All-zero state in the parameters' dtype and device (unless ``device`` is given)."""
        return NetworkState(self.hidden.initial_state(batch, device), self.readout.initial_state(batch, device))

    def forward(self, x: torch.Tensor, state: Optional[NetworkState] = None, record: bool = False) -> NetworkOutput:
        """``x``: ``[B, T, n_in]`` (or integer tokens ``[B, T]`` with the one_hot embedding)."""
        x = embed(x, self.cfg.embedding, self.cfg.embed_scale, self.cfg.n_in, dtype=self.out.weight.dtype)
        hs, rs = (None, None) if state is None else state
        hid = self.hidden(x, hs, record)
        ro = self.readout(hid.y, rs, record)
        logits = self.out(ro.y)
        l_mlp = hid.z_abs_mean.square().mean(dim=1).mean()  # z_abs_mean is [B, N]
        l_act = F.relu(hid.y).mean()
        traces = {"hidden": hid.traces, "readout": ro.traces} if record else None
        return NetworkOutput(logits, NetworkState(hid.state, ro.state), {"mlp": l_mlp, "act": l_act}, traces)
