"""The ELM Network (SPEC 3): a recurrent ELM layer, a readout ELM layer and a linear map.

    x_t --embed--> hidden ELM layer (N neurons, recurrent) --a_t--> readout ELM layer
        (C neurons, d_m 3, affine MLP, identity output, reads a_t of the same step)
        --r_t--> Linear(C, C) --> logits_t

``forward`` returns logits for every step, the final state (feed it back in to continue a
sequence: truncated BPTT), the two hidden-layer regularisers of SPEC 7 (``regularizers`` dict,
keys ``mlp`` and ``act``; the trainer weighs them) and, on request, the internal traces of both
layers:

- ``l_mlp`` = mean over hidden neurons of (mean over batch, time and memory units of ``|z|``)^2;
- ``l_act`` = mean over batch, time and hidden neurons of ``relu(a)``.

Classification uses ``logits[:, -1]``; language modelling uses every step.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elm_neuro.networks.config import ELMNetworkConfig
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.networks.presets import preset_config
from elm_neuro.neurons.elm import ELMState


class NetworkState(NamedTuple):
    hidden: ELMState
    readout: ELMState


class NetworkOutput(NamedTuple):
    logits: torch.Tensor  # [B, T, C]
    state: NetworkState
    regularizers: dict  # name -> scalar tensor: {"mlp": l_mlp, "act": l_act}
    traces: Optional[dict]  # {"hidden": {...}, "readout": {...}} when record=True


def embed(x: torch.Tensor, kind: str, scale: float, n_in: int) -> torch.Tensor:
    """Input embedding: ``none`` (float cast), ``scaled`` (x*scale), ``one_hot`` (tokens -> one-hot*scale)."""
    if kind == "one_hot":
        if x.dim() != 2:
            raise ValueError(f"one_hot embedding takes integer tokens [B, T], got shape {list(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= n_in):
            raise ValueError(f"tokens must lie in 0..{n_in - 1} (n_in - 1), got range {int(x.min())}..{int(x.max())}")
        return F.one_hot(x.long(), n_in).float() * scale
    if kind == "scaled":
        return x.float() * scale
    if kind == "none":
        return x.float()
    raise ValueError(f"embedding must be one of ('none', 'scaled', 'one_hot'), got {kind!r}")


def detach_state(state):
    """A copy of a (nested) state with every tensor detached: carry it across BPTT chunks."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple):
        vals = [detach_state(s) for s in state]
        return type(state)(*vals) if hasattr(state, "_fields") else tuple(vals)
    return state


class ELMNetwork(nn.Module):
    """Two ELM layers and a linear map; see the module docstring. Build with a config or a preset."""

    def __init__(self, cfg: ELMNetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        impl = cfg.synapse_impl
        self.hidden = ELMLayer(cfg.hidden_layer(), cfg.n_in, cfg.n, seed=2 * cfg.seed, synapse_impl=impl)
        self.readout = ELMLayer(cfg.readout_layer(), cfg.n, cfg.n_classes, seed=2 * cfg.seed + 1, synapse_impl=impl)
        self.out = nn.Linear(cfg.n_classes, cfg.n_classes)
        g = torch.Generator().manual_seed(2 * cfg.seed + 7919)
        bound = 1.0 / math.sqrt(cfg.n_classes)
        with torch.no_grad():
            self.out.weight.uniform_(-bound, bound, generator=g)
            self.out.bias.uniform_(-bound, bound, generator=g)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ELMNetwork":
        """E.g. ``ELMNetwork.from_preset("shd-adding", d_m=9, n=57)``; any field can be overridden."""
        return cls(preset_config(name, **overrides))

    def budget(self):
        return self.cfg.budget()

    def initial_state(self, batch: int, device=None) -> NetworkState:
        return NetworkState(self.hidden.initial_state(batch, device), self.readout.initial_state(batch, device))

    def forward(self, x: torch.Tensor, state: Optional[NetworkState] = None, record: bool = False) -> NetworkOutput:
        """``x``: ``[B, T, n_in]`` (or integer tokens ``[B, T]`` with the one_hot embedding)."""
        x = embed(x, self.cfg.embedding, self.cfg.embed_scale, self.cfg.n_in)
        hs, rs = (None, None) if state is None else state
        hid = self.hidden(x, hs, record)
        ro = self.readout(hid.y, rs, record)
        logits = self.out(ro.y)
        l_mlp = hid.z_abs_mean.square().mean()
        l_act = F.relu(hid.y).mean()
        traces = {"hidden": hid.traces, "readout": ro.traces} if record else None
        return NetworkOutput(logits, NetworkState(hid.state, ro.state), {"mlp": l_mlp, "act": l_act}, traces)
