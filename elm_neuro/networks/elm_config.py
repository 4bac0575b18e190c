"""Configurations of ELM layers, the ELM Network and the single-neuron classifier
(docs/design.md §1-3).

Three dataclasses, composed rather than copied (:mod:`elm_neuro.networks.checks`):

- :class:`ELMLayerConfig`: one population of ELM neurons and its wiring (docs/design.md §1-2).
- :class:`ELMNetworkConfig`: the two-layer ELM Network of docs/design.md §3. It *holds* two
  layer configurations, ``hidden`` and ``readout`` (the docs/design.md §3 readout,
  :func:`elm_readout_config`, which the spiking networks use too), plus the network's own fields
  (sizes, embedding, seed, kernel). Flat names (``d_m``, ``d_tree``, ``readout_d_m``...) address
  the layers: the settings the readout shares with the hidden layer in docs/design.md §3
  (synapse tree, input scale, tau range and learnability, memory mode, dt, wiring, input
  dropout) set both layers.
- :class:`ELMNeuronConfig`: one ELM neuron whose ``C`` outputs are the logits (ICLR 2024); it
  holds the neuron's layer configuration ``neuron``.

Every default value comes from :mod:`elm_neuro.defaults` or is written here once. Every invalid
field raises ``ValueError`` naming the field and what was expected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from elm_neuro import defaults as D
from elm_neuro.networks.budget import Budget
from elm_neuro.networks.checks import (ConfigMixin, check_choice, check_int, check_io_fields, check_positive,
                                       check_prob)
from elm_neuro.neurons.elm import MEMORY_MODES, MLP_ACTIVATIONS, OUTPUT_ACTIVATIONS, SYNAPSE_RECTIFICATIONS
from elm_neuro.wiring.connectome import WIRINGS

SYNAPSE_IMPLS = ("auto", "dense", "gather")
ENGINES = ("auto", "step", "fused")  # the time loop: per-step reference path or the fused sequence engine
ROUTINGS = ("none", "random")


@dataclass
class ELMLayerConfig(ConfigMixin):
    """A population of ELM neurons (docs/design.md §1) with a random connectome
    (docs/design.md §2).

    One configuration describes every neuron of the layer (all neurons share it; each has its own
    parameters). The defaults are the hidden layer of the SHD-Adding ELM Network of
    docs/design.md §7 without its dropout (the ``shd-adding`` preset sets 0.2 / 0.2).

    **Units.** ``dt`` and every timescale (``tau_b``, ``tau_min``, ``tau_max``, ``tau_r``) share one
    unit: in the ELM Network and the single neuron ``dt = 1``, so every tau is in **time steps**,
    whatever the bin width of the data. The ELM readout of the spiking networks
    (:mod:`elm_neuro.networks.lif_config`) is the exception: there ``dt`` is the bin width in
    **ms** and its taus are in ms. Every decay is ``kappa = exp(-dt / tau)``. Counts (``d_m``,
    ``d_tree``...) and factors (``input_scale``, ``lambda_value``) are dimensionless.

    Attributes:
        d_m (int): memory units per neuron, ``d_m``; each has its own timescale. Default
            ``defaults.ELM_D_M`` = 9.
        d_mlp (int or None): width of each hidden layer of the neuron's MLP, ``d_mlp``. Default
            None, meaning ``2 * d_m`` (see :attr:`mlp_width`).
        mlp_layers (int): hidden layers of the MLP, ``L`` (>= 0). Default 1; 0 makes the MLP a
            single affine map ``(d_tree + d_m) -> d_m``.
        mlp_act (str): activation of the MLP's hidden layers: ``relu2`` (``relu(x)^2``, default),
            ``relu`` or ``silu``. The MLP output ``z`` has no activation.
        d_tree (int): dendritic branches per neuron, ``d_tree``: the MLP reads one summed drive
            per branch. Default 30.
        d_brch (int): synapses per branch, ``d_brch``; consecutive blocks of ``d_brch`` synapses
            form a branch. Default 10.
        n_synapses (int or None): synapses per neuron, ``K = d_tree * d_brch`` (the budget's
            ``k_c``). Derived, not free: None (default) or exactly ``d_tree * d_brch`` (a check);
            read ``K`` from :attr:`k`.
        input_scale (float): synaptic input scale ``s_in``, multiplying every branch drive
            (dimensionless). Default 10.0 (every paper configuration).
        synapse_rect (str): how synapse weights ``w_s`` are used: ``none`` (signed, default) or
            rectified by ``relu``, ``abs`` or ``exp``. Initial ``w_s ~ U(+-1/sqrt(d_brch))``.
        branch_trace (bool): low-pass each branch drive, ``b_t = kappa_b b_{t-1} + beta_t``, and
            feed ``b_t`` to the MLP (the ICLR 2024 Branch-ELM). Default False (off in the
            network configurations); the fused engine does not cover it.
        tau_b (float): branch-trace timescale ``tau_b``, in the unit of ``dt`` (time steps in
            the network configurations). Default 5.0; used only when ``branch_trace`` is on.
        tau_min (float): shortest memory timescale ``tau_min`` (> 0), unit of ``dt`` (time steps
            in the network configurations). The ``d_m`` timescales ``tau_m`` are log-spaced from
            ``tau_min`` to ``tau_max``, both ends included. Default 1.0.
        tau_max (float): longest memory timescale ``tau_max`` (>= ``tau_min``), unit of ``dt``.
            Default 500.0 (SHD-Adding; Enwik8 uses 0.1..100).
        learn_tau (bool): make ``tau_m`` trainable, per neuron, through
            ``tau = lo + (hi - lo) * sigmoid(theta)`` with ``lo = tau_min / 10`` and
            ``hi = tau_max * sqrt(10)``; adds ``d_m`` parameters per neuron to ``k_e``. Default
            False: fixed and shared by all neurons.
        memory_mode (str): memory update: ``ratio`` (default, "ELM v2":
            ``m_t = m~ + (1 - exp(-lambda dt / tau_m)) dm_t``) or ``legacy`` ("ELM v1", ICLR 2024:
            ``m_t = m~ + lambda (1 - kappa_m) dm_t``).
        lambda_value (float): the update-gain factor ``lambda`` of either memory mode
            (dimensionless, > 0). Default 5.0.
        dt (float): duration of one time step, in the unit of the taus. Default 1.0 (taus in
            steps); in a network, the readout layer must have the hidden layer's ``dt``.
        tau_r (float or None): timescale ``tau_r`` of the output high-pass filter
            ``h_t = kappa_r h_{t-1} + (1 - kappa_r) rho_t``, ``p_t = rho_t - h_t``, in the unit of
            ``dt`` (time steps in the network configurations). Default 5.0 (SHD-Adding; Enwik8
            uses 2); None turns the filter off (``p_t = rho_t``).
        output_act (str): output non-linearity ``act`` of ``y_t = act(p_t + b)``: ``relu``
            (default), ``identity`` or ``spike`` (Heaviside forward, fast-sigmoid surrogate
            ``1 / (100 |x| + 1)^2`` backward).
        d_o (int): outputs per neuron ``d_o`` (rows of the readout ``w_y``). Default 1; must be 1
            in any recurrent layer and in both layers of the ELM Network; the single-neuron
            classifier uses ``d_o = C``.
        rho (float): recurrent fraction ``rho`` in [0, 1]: each synapse independently reads a
            neuron of the layer (previous step) with probability ``rho``, else an input channel
            (current step). Default 0.25 (SHD-Adding; Enwik8 0.8; the readout layer 0).
        wiring (str): connectome rule; ``random`` (default, the only one: sources drawn
            uniformly with replacement, docs/design.md §2).
        dropout_in (float): variational dropout rate on the layer's external input, in [0, 1):
            one keep-mask per sample per ``forward`` call, the same at every step, training only.
            Default 0.0 (the ``shd-adding`` preset: 0.2; for the readout layer this is the
            dropout on the hidden activity).
        dropout_rec (float): variational dropout rate on the recurrent input (the layer's own
            previous outputs), in [0, 1). Default 0.0 (``shd-adding`` preset: 0.2).
        engine (str): the time loop: ``step`` runs it step by step (the reference path),
            ``fused`` the whole sequence in one autograd Function
            (:mod:`elm_neuro.networks.engines.elm_sequence`; an error for a configuration it does
            not cover), ``auto`` (default) the fused engine wherever it covers the
            configuration, else the per-step path (``ELMLayer.engine_reason`` says why).
    """

    d_m: int = D.ELM_D_M
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
    engine: str = "auto"

    def __post_init__(self) -> None:
        check_int("d_m", self.d_m, 1)
        if self.d_mlp is not None:
            check_int("d_mlp", self.d_mlp, 1)
        check_int("mlp_layers", self.mlp_layers, 0)
        check_choice("mlp_act", self.mlp_act, MLP_ACTIVATIONS)
        check_int("d_tree", self.d_tree, 1)
        check_int("d_brch", self.d_brch, 1)
        if self.n_synapses is not None and self.n_synapses != self.d_tree * self.d_brch:
            raise ValueError(
                f"n_synapses (K) must equal d_tree * d_brch = {self.d_tree} * {self.d_brch} = "
                f"{self.d_tree * self.d_brch}, got {self.n_synapses}"
            )
        if not isinstance(self.input_scale, (int, float)) or not math.isfinite(self.input_scale):
            raise ValueError(f"input_scale must be a finite number, got {self.input_scale!r}")
        check_choice("synapse_rect", self.synapse_rect, SYNAPSE_RECTIFICATIONS)
        check_positive("tau_b", self.tau_b)
        check_positive("tau_min", self.tau_min)
        check_positive("tau_max", self.tau_max)
        if self.tau_min > self.tau_max:
            raise ValueError(f"tau_min must be <= tau_max, got tau_min={self.tau_min} > tau_max={self.tau_max}")
        check_choice("memory_mode", self.memory_mode, MEMORY_MODES)
        check_positive("lambda_value", self.lambda_value)
        check_positive("dt", self.dt)
        check_positive("tau_r", self.tau_r, allow_none=True)
        check_choice("output_act", self.output_act, OUTPUT_ACTIVATIONS)
        check_int("d_o", self.d_o, 1)
        check_prob("rho", self.rho, hi_open=False)
        check_choice("wiring", self.wiring, WIRINGS)
        check_prob("dropout_in", self.dropout_in, hi_open=True)
        check_prob("dropout_rec", self.dropout_rec, hi_open=True)
        check_choice("engine", self.engine, ENGINES)

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


def elm_readout_config(**fields) -> ELMLayerConfig:
    """The readout layer of docs/design.md §3: ``d_m = 3``, an affine MLP (``L = 0``), identity
    output, no high-pass filter, ``rho = 0`` (every synapse reads a hidden output of the same
    step), no recurrent dropout; ``fields`` override (e.g. ``d_tree``, ``tau_min`` in ms for
    spiking nets)."""
    base = dict(d_m=D.READOUT_D_M, mlp_layers=0, tau_r=None, output_act="identity", rho=0.0, dropout_rec=0.0)
    return ELMLayerConfig(**{**base, **fields})


def check_readout(readout: Any, where: str, dt: float) -> None:
    """The ELM readout must give one output per class neuron and run at the network's ``dt``."""
    if not isinstance(readout, ELMLayerConfig):
        raise ValueError(f"{where} must be an ELMLayerConfig, got {type(readout).__name__}")
    if readout.d_o != 1:
        raise ValueError(f"{where}.d_o must be 1 (one output per class neuron), got {readout.d_o}")
    if readout.dt != dt:
        raise ValueError(f"{where}.dt must equal the network's dt = {dt} (timescales share one unit), "
                         f"got {readout.dt}")


# Settings the docs/design.md §3 readout inherits from the hidden layer: a flat name sets both
# layers.
_SHARED_WITH_READOUT = ("mlp_act", "d_tree", "d_brch", "input_scale", "synapse_rect", "branch_trace", "tau_b",
                        "tau_min", "tau_max", "learn_tau", "memory_mode", "lambda_value", "dt", "wiring",
                        "dropout_in", "engine")
_HIDDEN_ONLY = ("d_m", "d_mlp", "mlp_layers", "tau_r", "output_act", "rho", "dropout_rec")


@dataclass
class ELMNetworkConfig(ConfigMixin):
    """The ELM Network of docs/design.md §3: hidden recurrent ELM layer, readout ELM layer,
    Linear(C, C).

    ``hidden`` must have ``d_o = 1``; ``readout`` is the docs/design.md §3 readout layer
    (:func:`elm_readout_config`) with ``d_o = 1`` and the hidden layer's ``dt``.
    ``embedding``: ``none`` casts inputs to float; ``scaled`` multiplies by ``embed_scale``;
    ``one_hot`` takes integer tokens ``[B, T]`` and gives ``one_hot(token, n_in) * embed_scale``.
    ``seed`` fixes the connectomes and the initial weights. ``synapse_impl`` picks the synapse
    kernel (results are identical; see :mod:`elm_neuro.networks.synapses`).
    """

    n_in: int = 700
    n: int = D.ELM_N
    n_classes: int = 19
    embedding: str = "none"
    embed_scale: float = 1.0
    hidden: ELMLayerConfig = field(default_factory=ELMLayerConfig)
    readout: ELMLayerConfig = field(default_factory=elm_readout_config)
    seed: int = 0
    synapse_impl: str = "auto"

    FLAT = {**{k: ("hidden." + k,) for k in _HIDDEN_ONLY},
            **{k: ("hidden." + k, "readout." + k) for k in _SHARED_WITH_READOUT},
            "readout_d_m": ("readout.d_m",)}

    def __post_init__(self) -> None:
        check_io_fields(self)
        check_choice("synapse_impl", self.synapse_impl, SYNAPSE_IMPLS)
        if not isinstance(self.hidden, ELMLayerConfig):
            raise ValueError(f"hidden must be an ELMLayerConfig, got {type(self.hidden).__name__}")
        if self.hidden.d_o != 1:
            raise ValueError(f"hidden.d_o must be 1 (a recurrent layer), got {self.hidden.d_o}")
        check_readout(self.readout, "readout", self.hidden.dt)

    def budget(self) -> Budget:
        """Exact trainable-parameter count, from the configuration alone."""
        hid, out, c = self.hidden, self.readout, self.n_classes
        p = self.n * hid.params_per_neuron() + c * out.params_per_neuron() + c * (c + 1)
        return Budget(n=self.n, k_e=hid.internal_params(), k_c=hid.k, p=p)


def _neuron_default() -> ELMLayerConfig:
    return ELMLayerConfig(d_m=D.NEURON_D_M, d_tree=70, tau_r=None, output_act="identity", rho=0.0)


@dataclass
class ELMNeuronConfig(ConfigMixin):
    """One ELM neuron whose ``C = n_classes`` outputs are the logits of every step (ICLR 2024).

    ``neuron`` is the neuron's layer configuration; the classifier gives it ``d_o = C`` outputs
    and no recurrent synapses (``rho``, ``dropout_rec`` and ``d_o`` of ``neuron`` are not used:
    see :meth:`layer`). ``routing`` maps the ``n_in`` channels to the ``K`` synapses: ``random``
    (``K`` indices drawn with replacement, seeded) or ``none`` (identity, needs ``n_in == K``).
    Budget vocabulary: ``n = 1``, ``k_c = K``; a budget is met through ``d_m`` (``SIZE_FIELD``).
    """

    n_in: int = 700
    n_classes: int = 19
    routing: str = "random"
    embedding: str = "none"
    embed_scale: float = 1.0
    neuron: ELMLayerConfig = field(default_factory=_neuron_default)
    seed: int = 0

    SIZE_FIELD = "d_m"
    FLAT = {k: ("neuron." + k,) for k in ("d_m", "d_mlp", "mlp_layers", "mlp_act", "d_tree", "d_brch",
                                          "input_scale", "synapse_rect", "branch_trace", "tau_b", "tau_min",
                                          "tau_max", "learn_tau", "memory_mode", "lambda_value", "dt", "tau_r",
                                          "output_act", "engine")}

    def __post_init__(self) -> None:
        check_io_fields(self)
        check_choice("routing", self.routing, ROUTINGS)
        if not isinstance(self.neuron, ELMLayerConfig):
            raise ValueError(f"neuron must be an ELMLayerConfig, got {type(self.neuron).__name__}")
        if self.routing == "none" and self.n_in != self.neuron.k:
            raise ValueError(f"routing 'none' needs n_in == K = {self.neuron.k}, got n_in={self.n_in}")
        self.layer()

    @property
    def n(self) -> int:
        return 1

    def layer(self) -> ELMLayerConfig:
        """The layer the classifier builds: ``neuron`` with ``d_o = C``, no recurrence."""
        return self.neuron.replace(d_o=self.n_classes, rho=0.0, dropout_rec=0.0)

    def budget(self) -> Budget:
        lay = self.layer()
        return Budget(n=1, k_e=lay.internal_params(), k_c=lay.k, p=lay.params_per_neuron())
