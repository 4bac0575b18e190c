"""The standalone ELM neuron of the ICLR 2024 paper, and the single-neuron classifier.

- :class:`RoutedELMNeuron`: one ELM neuron reading ``n_in`` raw channels through its routing
  (``random``: ``K`` channel indices drawn with replacement, seeded; ``none``: identity, needs
  ``n_in == K``), with ``d_o`` outputs ``[B, T, d_o]``. A single neuron has no recurrent
  synapses (its memory is its recurrence), so the layer configuration's ``rho`` is ignored.
  Parameters: ``K + MLP + d_o (d_m + 1)`` (``+ d_m`` with learnable tau).
- :class:`ELMNeuron`: the model users build (``ELMNeuron.from_preset("elm-neuron-shd-adding")``):
  the routed neuron with ``d_o = C``, its outputs the logits of
  every step (configuration :class:`~elm_neuro.networks.elm_config.ELMNeuronConfig`; a branch
  trace gives the Branch-ELM variant). Budget vocabulary: ``n = 1``, ``k_c = K``, ``k_e``
  everything else; a budget is met through ``d_m``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from elm_neuro.networks.common import NetworkOutput, PresetBuilt, embed
from elm_neuro.networks.elm_config import ROUTINGS, ELMLayerConfig, ELMNeuronConfig
from elm_neuro.networks.elm_layer import ELMLayer, LayerOutput
from elm_neuro.neurons.elm import ELMState


class RoutedELMNeuron(nn.Module):
    """A standalone ELM neuron with ``d_o`` outputs (see the module docstring)."""

    ROUTINGS = ROUTINGS

    def __init__(self, cfg: ELMLayerConfig, n_in: int, routing: str = "random", seed: int = 0) -> None:
        super().__init__()
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
        k = cfg.k
        if routing == "none":
            if n_in != k:
                raise ValueError(f"routing 'none' needs n_in == K = {k}, got n_in={n_in}")
            conn = torch.arange(k)[None, :]
        else:
            conn = torch.randint(0, n_in, (1, k), generator=torch.Generator().manual_seed(2 * seed))
        self.routing = routing
        self.layer = ELMLayer(cfg.replace(rho=0.0, dropout_rec=0.0), n_in, 1, seed=seed, connectome=conn,
                              synapse_impl="dense")

    def forward(self, x: torch.Tensor, state: Optional[ELMState] = None, record: bool = False) -> LayerOutput:
        return self.layer(x, state, record)


class ELMNeuron(PresetBuilt, nn.Module):
    """One ELM neuron whose ``C`` outputs are the logits (see the module docstring)."""

    CONFIG = ELMNeuronConfig
    FAMILIES = ("elm-neuron",)

    def __init__(self, cfg: ELMNeuronConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.neuron = RoutedELMNeuron(cfg.layer(), cfg.n_in, routing=cfg.routing, seed=cfg.seed)

    def forward(self, x: torch.Tensor, state: Optional[ELMState] = None, record: bool = False) -> NetworkOutput:
        x = embed(x, self.cfg.embedding, self.cfg.embed_scale, self.cfg.n_in, dtype=self.neuron.layer.w_s.dtype)
        out = self.neuron(x, state, record)
        # L_mlp per sample (docs/design.md §7), then the mean over the batch
        return NetworkOutput(out.y, out.state, {"mlp": out.z_abs_mean.square().mean(dim=1).mean()}, out.traces)
