"""The single-neuron classifier of the ICLR 2024 ELM paper: one ELM neuron with ``d_o = C``.

The neuron reads the ``n_in`` input channels through its routing (``random``: ``K`` channel
indices drawn with replacement, seeded; ``none``: identity, needs ``n_in == K``) and its ``C``
outputs are the logits of every step. Optional branch trace gives the Branch-ELM variant.
Parameters: ``K + MLP + C (d_m + 1)`` (``+ d_m`` with learnable tau).

Budget vocabulary: ``n = 1`` (one neuron), ``k_c = K``, ``k_e`` everything else. A budget is
met by the memory size ``d_m`` (``SIZE_FIELD``), not by ``n``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from elm_neuro.networks.budget import Budget
from elm_neuro.networks.config import ELMLayerConfig
from elm_neuro.networks.config_base import ConfigMixin
from elm_neuro.networks.elm_layer import ELMNeuron
from elm_neuro.networks.elm_network import embed
from elm_neuro.neurons.elm import ELMState


class NeuronOutput(NamedTuple):
    logits: torch.Tensor
    state: ELMState
    regularizers: dict
    traces: Optional[dict]


@dataclass
class ELMNeuronConfig(ConfigMixin):
    n_in: int = 700
    n_classes: int = 19
    d_m: int = 100
    d_mlp: Optional[int] = None
    mlp_layers: int = 1
    mlp_act: str = "relu2"
    d_tree: int = 70
    d_brch: int = 10
    routing: str = "random"
    input_scale: float = 10.0
    synapse_rect: str = "none"
    branch_trace: bool = False
    tau_b: float = 5.0
    tau_min: float = 1.0
    tau_max: float = 500.0
    learn_tau: bool = False
    memory_mode: str = "ratio"
    lambda_value: float = 5.0
    dt: float = 1.0
    embedding: str = "none"
    embed_scale: float = 1.0
    seed: int = 0

    SIZE_FIELD = "d_m"

    def __post_init__(self) -> None:
        if self.routing not in ELMNeuron.ROUTINGS:
            raise ValueError(f"routing must be one of {ELMNeuron.ROUTINGS}, got {self.routing!r}")
        if self.routing == "none" and self.n_in != self.d_tree * self.d_brch:
            raise ValueError(f"routing 'none' needs n_in == K = {self.d_tree * self.d_brch}, got n_in={self.n_in}")
        self.layer()

    @property
    def n(self) -> int:
        return 1

    def layer(self) -> ELMLayerConfig:
        return ELMLayerConfig(
            d_m=self.d_m, d_mlp=self.d_mlp, mlp_layers=self.mlp_layers, mlp_act=self.mlp_act, d_tree=self.d_tree,
            d_brch=self.d_brch, input_scale=self.input_scale, synapse_rect=self.synapse_rect,
            branch_trace=self.branch_trace, tau_b=self.tau_b, tau_min=self.tau_min, tau_max=self.tau_max,
            learn_tau=self.learn_tau, memory_mode=self.memory_mode, lambda_value=self.lambda_value, dt=self.dt,
            tau_r=None, output_act="identity", d_o=self.n_classes, rho=0.0,
        )

    def budget(self) -> Budget:
        lay = self.layer()
        return Budget(n=1, k_e=lay.internal_params(), k_c=lay.k, p=lay.params_per_neuron())



class ELMNeuronClassifier(torch.nn.Module):
    """One ELM neuron whose ``C`` outputs are the logits (see module docstring)."""

    def __init__(self, cfg: ELMNeuronConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.neuron = ELMNeuron(cfg.layer(), cfg.n_in, routing=cfg.routing, seed=cfg.seed)

    def forward(self, x: torch.Tensor, state: Optional[ELMState] = None, record: bool = False) -> NeuronOutput:
        x = embed(x, self.cfg.embedding, self.cfg.embed_scale, self.cfg.n_in)
        out = self.neuron(x, state, record)
        return NeuronOutput(out.y, out.state, {"mlp": out.z_abs_mean.square().mean()}, out.traces)
