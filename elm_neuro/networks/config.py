"""Configurations of ELM layers and the ELM Network, with sanity checks on construction.

Two dataclasses:

- :class:`ELMLayerConfig`: one population of ELM neurons and its wiring (SPEC 1-2).
- :class:`ELMNetworkConfig`: the two-layer ELM Network of SPEC 3, flat (every field a plain
  value, so it serialises to JSON and to one row of a sweep table). The hidden and readout
  layer configurations are derived from it by :meth:`ELMNetworkConfig.hidden_layer` and
  :meth:`ELMNetworkConfig.readout_layer`.

Every invalid field raises ``ValueError`` naming the field and what was expected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from elm_neuro.networks.budget import Budget
from elm_neuro.networks.config_base import ConfigMixin
from elm_neuro.neurons.elm import (
    MEMORY_MODES,
    MLP_ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
    SYNAPSE_RECTIFICATIONS,
)
from elm_neuro.wiring.connectome import WIRINGS

EMBEDDINGS = ("none", "scaled", "one_hot")
SYNAPSE_IMPLS = ("auto", "dense", "gather")


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0{' or None' if allow_none else ''}, got {value!r}")


def _check_prob(name: str, value: Any, hi_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value and (
        value < 1.0 if hi_open else value <= 1.0
    )
    if not ok:
        rng = "[0, 1)" if hi_open else "[0, 1]"
        raise ValueError(f"{name} must lie in {rng}, got {value!r}")


@dataclass
class ELMLayerConfig:
    """A population of ELM neurons (SPEC 1) with a random connectome (SPEC 2).

    ``tau_r = None`` turns the high-pass filter off; ``branch_trace = False`` turns the branch
    trace off. ``d_mlp = None`` means ``2 * d_m``. ``mlp_layers = 0`` makes the MLP one affine map.
    """

    d_m: int = 9
    d_mlp: Optional[int] = None
    mlp_layers: int = 1
    mlp_act: str = "relu2"
    d_tree: int = 30
    d_brch: int = 10
    n_synapses: Optional[int] = None  # K; None means d_tree * d_brch (checked when given)
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
    tau_r: Optional[float] = 5.0
    output_act: str = "relu"
    d_o: int = 1
    rho: float = 0.25
    wiring: str = "random"
    dropout_in: float = 0.0
    dropout_rec: float = 0.0

    def __post_init__(self) -> None:
        _check_int("d_m", self.d_m, 1)
        if self.d_mlp is not None:
            _check_int("d_mlp", self.d_mlp, 1)
        _check_int("mlp_layers", self.mlp_layers, 0)
        _check_choice("mlp_act", self.mlp_act, MLP_ACTIVATIONS)
        _check_int("d_tree", self.d_tree, 1)
        _check_int("d_brch", self.d_brch, 1)
        if self.n_synapses is not None and self.n_synapses != self.d_tree * self.d_brch:
            raise ValueError(
                f"n_synapses (K) must equal d_tree * d_brch = {self.d_tree} * {self.d_brch} = "
                f"{self.d_tree * self.d_brch}, got {self.n_synapses}"
            )
        if not isinstance(self.input_scale, (int, float)) or not math.isfinite(self.input_scale):
            raise ValueError(f"input_scale must be a finite number, got {self.input_scale!r}")
        _check_choice("synapse_rect", self.synapse_rect, SYNAPSE_RECTIFICATIONS)
        _check_positive("tau_b", self.tau_b)
        _check_positive("tau_min", self.tau_min)
        _check_positive("tau_max", self.tau_max)
        if self.tau_min > self.tau_max:
            raise ValueError(f"tau_min must be <= tau_max, got tau_min={self.tau_min} > tau_max={self.tau_max}")
        _check_choice("memory_mode", self.memory_mode, MEMORY_MODES)
        _check_positive("lambda_value", self.lambda_value)
        _check_positive("dt", self.dt)
        _check_positive("tau_r", self.tau_r, allow_none=True)
        _check_choice("output_act", self.output_act, OUTPUT_ACTIVATIONS)
        _check_int("d_o", self.d_o, 1)
        _check_prob("rho", self.rho, hi_open=False)
        _check_choice("wiring", self.wiring, WIRINGS)
        _check_prob("dropout_in", self.dropout_in, hi_open=True)
        _check_prob("dropout_rec", self.dropout_rec, hi_open=True)

    # ----- derived sizes
    @property
    def k(self) -> int:
        """Synapses per neuron, ``K = d_tree * d_brch``."""
        return self.d_tree * self.d_brch

    @property
    def mlp_width(self) -> int:
        return 2 * self.d_m if self.d_mlp is None else self.d_mlp

    def mlp_shapes(self) -> list[tuple[int, int]]:
        """``(out, in)`` of each MLP layer of one neuron."""
        dims = [self.d_tree + self.d_m] + [self.mlp_width] * self.mlp_layers + [self.d_m]
        return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]

    def mlp_params(self) -> int:
        return sum(o * i + o for o, i in self.mlp_shapes())

    def internal_params(self) -> int:
        """``k_e``: everything a neuron owns besides its synapses (MLP, readout, bias, taus)."""
        return self.mlp_params() + self.d_o * (self.d_m + 1) + (self.d_m if self.learn_tau else 0)

    def params_per_neuron(self) -> int:
        return self.k + self.internal_params()


@dataclass
class ELMNetworkConfig(ConfigMixin):
    """The ELM Network of SPEC 3: hidden recurrent ELM layer, readout ELM layer, Linear(C, C).

    Hidden-layer fields mirror :class:`ELMLayerConfig`. The readout layer has ``C`` neurons,
    ``d_m = readout_d_m`` (3), an affine MLP (``L = 0``), identity output, no high-pass, ``rho = 0``
    (every synapse reads a hidden output of the same step), and inherits ``d_tree``, ``d_brch``,
    ``input_scale``, ``synapse_rect``, ``branch_trace``, the tau range and its learnability, the
    memory mode, and the hidden layer's ``dropout_in`` (applied to the hidden activity it reads).

    ``embedding``: ``none`` casts inputs to float; ``scaled`` multiplies by ``embed_scale``;
    ``one_hot`` takes integer tokens ``[B, T]`` and gives ``one_hot(token, n_in) * embed_scale``.
    ``seed`` fixes the connectomes and the initial weights. ``synapse_impl`` picks the synapse
    kernel (results are identical; see :mod:`elm_neuro.networks.elm_layer`).
    """

    n_in: int = 700
    n: int = 57
    n_classes: int = 19
    embedding: str = "none"
    embed_scale: float = 1.0
    d_m: int = 9
    d_mlp: Optional[int] = None
    mlp_layers: int = 1
    mlp_act: str = "relu2"
    d_tree: int = 30
    d_brch: int = 10
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
    tau_r: Optional[float] = 5.0
    output_act: str = "relu"
    rho: float = 0.25
    wiring: str = "random"
    dropout_in: float = 0.2
    dropout_rec: float = 0.2
    readout_d_m: int = 3
    seed: int = 0
    synapse_impl: str = "auto"

    def __post_init__(self) -> None:
        _check_int("n_in", self.n_in, 1)
        _check_int("n", self.n, 1)
        _check_int("n_classes", self.n_classes, 1)
        _check_choice("embedding", self.embedding, EMBEDDINGS)
        if not isinstance(self.embed_scale, (int, float)) or not math.isfinite(self.embed_scale):
            raise ValueError(f"embed_scale must be a finite number, got {self.embed_scale!r}")
        _check_int("readout_d_m", self.readout_d_m, 1)
        _check_int("seed", self.seed, 0)
        _check_choice("synapse_impl", self.synapse_impl, SYNAPSE_IMPLS)
        # Building both layer configs runs every per-layer check.
        self.hidden_layer()
        self.readout_layer()

    def hidden_layer(self) -> ELMLayerConfig:
        return ELMLayerConfig(
            d_m=self.d_m, d_mlp=self.d_mlp, mlp_layers=self.mlp_layers, mlp_act=self.mlp_act,
            d_tree=self.d_tree, d_brch=self.d_brch, input_scale=self.input_scale,
            synapse_rect=self.synapse_rect, branch_trace=self.branch_trace, tau_b=self.tau_b,
            tau_min=self.tau_min, tau_max=self.tau_max, learn_tau=self.learn_tau,
            memory_mode=self.memory_mode, lambda_value=self.lambda_value, dt=self.dt,
            tau_r=self.tau_r, output_act=self.output_act, d_o=1, rho=self.rho, wiring=self.wiring,
            dropout_in=self.dropout_in, dropout_rec=self.dropout_rec,
        )

    def readout_layer(self) -> ELMLayerConfig:
        return ELMLayerConfig(
            d_m=self.readout_d_m, mlp_layers=0, mlp_act=self.mlp_act, d_tree=self.d_tree,
            d_brch=self.d_brch, input_scale=self.input_scale, synapse_rect=self.synapse_rect,
            branch_trace=self.branch_trace, tau_b=self.tau_b, tau_min=self.tau_min,
            tau_max=self.tau_max, learn_tau=self.learn_tau, memory_mode=self.memory_mode,
            lambda_value=self.lambda_value, dt=self.dt, tau_r=None, output_act="identity", d_o=1,
            rho=0.0, wiring=self.wiring, dropout_in=self.dropout_in, dropout_rec=0.0,
        )

    def budget(self) -> Budget:
        """Exact trainable-parameter count, from the configuration alone."""
        hid, out = self.hidden_layer(), self.readout_layer()
        c = self.n_classes
        p = self.n * hid.params_per_neuron() + c * out.params_per_neuron() + c * (c + 1)
        return Budget(n=self.n, k_e=hid.internal_params(), k_c=hid.k, p=p)


