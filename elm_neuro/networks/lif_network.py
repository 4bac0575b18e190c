"""Recurrent spiking networks of LIF / adaptive-LIF neurons on the ELM wiring (SPEC 2, 10).

The network mirrors :class:`elm_neuro.networks.elm_network.ELMNetwork` so that, in an
ELM-vs-LIF comparison, the neuron type is the only difference:

    x_t --embed--> hidden spiking layer (N LIF/adLIF neurons, K synapses each, recurrent
        fraction rho, the connectome of :func:`elm_neuro.wiring.connectome.make_connectome`)
        --s_t--> readout --> logits_t

Hidden layer. ``v = [x_t ; s_{t-1}]`` (length ``n_in + N``), connectome ``C`` ``[N, K]``; a neuron
sums its ``K`` weighted synapses into one current (current-based synapses, no dendritic
branches)::

    I_t[n] = sum_k w_eff[n, k] * v[C[n, k]]

and runs :func:`elm_neuro.neurons.lif.lif_step`. Synapse weights are signed (``dale=False``) or,
with Dale's law (``dale=True``), ``w_eff = relu(w) * sign(source)``: every neuron of the layer is
excitatory (+1) or inhibitory (-1), exactly ``round(frac_inhibitory * N)`` of them inhibitory;
external input channels are excitatory afferents (+1). Raw weights start from
``N(0, (weight_scale / sqrt(K))^2)`` (their absolute value under Dale's law, so no synapse starts
silent).

Readouts (``readout``):

- ``elm``: the readout ELM layer of the ELM Network, reused as is (C ELM neurons, d_m 3, affine
  MLP, identity output, reading the hidden spikes of the same step through K = d_tree * d_brch
  synapses), then ``Linear(C, C)``; the default, so that LIF and ELM networks share their readout.
- ``leaky``: C non-spiking leaky integrators, each with K synapses on the hidden spikes of the
  same step (rho 0) and a bias: ``o_t = kappa_o o_{t-1} + (1 - kappa_o) (sum_k w a_t[C] + b)``;
  ``logits_t = o_t``, ``kappa_o = exp(-dt / tau_out)``.
- ``spiking``: the ICLR 2024 SNN (SPEC 10): C spiking output neurons of the same type, K synapses
  each, a share ``readout_rho`` from the other output neurons (step t-1), the rest from the hidden
  neurons (same step), Dale's law as in the hidden layer; their spikes are low-pass filtered,
  ``o_t = kappa_o o_{t-1} + s_t`` (unnormalised, so that a neuron firing every step reaches a
  logit of ``1 / (1 - kappa_o)``), and ``logits_t = o_t``.

``forward(x, state=None, record=False)`` returns :class:`LIFNetworkOutput` with ``logits``
``[B, T, C]``, the final ``state`` (pass it back in to continue a sequence), ``regularizers``
``{"spike": mean spike rate over batch, time and all spiking neurons (hidden, and the output
neurons of the spiking readout)}`` (the trainer weighs it as the L1 spike penalty; spikes are
non-negative so the mean is the L1 norm per element) and, with ``record=True``, ``traces``
``{"hidden": {"membrane", "spikes", "current", "adaptation" (adLIF)}, "readout": {...}}``, each
``[B, T, N]``.

Synapse kernels (``synapse_impl``; identical results): ``dense`` scatters the K weights of every
neuron into ``[n_in, N]`` and ``[N, N]`` maps with ``index_add`` (duplicate synapses add up): one
matmul for the input part of all steps, one small matmul per step for the recurrent part;
``gather`` uses ``embedding_bag`` (bags of K synapses per neuron), memory ``O(N K)``; ``auto``
picks ``dense`` up to ``DENSE_MAX_ELEMENTS`` map entries. ``forward_reference`` is the plain
path (loops over time and neurons, explicit indexing, the equations written out again); tests
check the fast paths against it in outputs and gradients.

Units: ``dt`` is the duration of one time step and every timescale (``tau_mem_*``,
``tau_adapt_*``, ``tau_out``, ``readout_tau_*``) is in the same unit. The presets use
milliseconds with ``dt = 2`` (2 ms bins of SHD / SHD-Adding), so ``tau = 25`` means 25 ms =
12.5 steps, and the ELM readout's memory timescales 2..1000 ms equal the ELM Network's 1..500
steps.

Budget (SPEC 3 vocabulary): ``k_c = K``; ``k_e`` = learnable per-neuron parameters besides the
synapses: ``tau_m`` (LIF, ``learn_tau``), plus ``tau_w`` (adLIF, ``learn_tau``) and ``a, b``
(adLIF, ``learn_adapt``); ``P = N (k_c + k_e) + readout``, readout = ``C (K_r + 3 d_tree + 16) +
C (C + 1)`` for ``elm`` (as the ELM Network), ``C (K + 1)`` for ``leaky``, ``C (K + k_e)`` for
``spiking``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elm_neuro.networks.budget import Budget
from elm_neuro.networks.config_base import ConfigMixin
from elm_neuro.networks.config import (
    EMBEDDINGS,
    SYNAPSE_IMPLS,
    ELMLayerConfig,
    _check_choice,
    _check_int,
    _check_positive,
    _check_prob,
)
from elm_neuro.networks.elm_layer import ELMLayer, variational_mask
from elm_neuro.networks.elm_network import embed
from elm_neuro.networks.presets import preset_config, register_preset
from elm_neuro.neurons import lif as L
from elm_neuro.neurons.elm import decay, tau_bounds, tau_to_theta, theta_to_tau
from elm_neuro.neurons.surrogate import check_surrogate
from elm_neuro.wiring.connectome import WIRINGS, make_connectome

READOUTS = ("elm", "leaky", "spiking")
DENSE_MAX_ELEMENTS = 1 << 24


def _check_finite(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_range(lo_name: str, lo: Any, hi_name: str, hi: Any, positive: bool) -> None:
    check = _check_positive if positive else _check_finite
    check(lo_name, lo)
    check(hi_name, hi)
    if lo > hi:
        raise ValueError(f"{lo_name} must be <= {hi_name}, got {lo_name}={lo} > {hi_name}={hi}")


@dataclass
class LIFNetworkConfig(ConfigMixin):
    """A recurrent LIF / adLIF network on the ELM wiring; see the module docstring.

    ``neuron``: ``lif`` | ``adlif``. ``reset``: ``subtract`` (soft; subtracts ``reset_value``,
    default the threshold) | ``zero`` (hard). ``refractory``: steps after a spike during which the
    input is blocked and no spike is emitted (0 = none). ``current_gain``: ``unit`` (``v += I``) |
    ``leak`` (``v += (1 - kappa_m) I``). Initial timescales are log-uniform per neuron in
    ``[tau_*_min, tau_*_max]`` (equal ends = one value); adLIF couplings ``a``, ``b`` start
    uniform in their ranges (Bittar & Garner's: a in [-1, 1], b in [0, 2]) and are not clamped.
    ``dt`` and every tau share one unit (ms in the presets, ``dt = 2`` for 2 ms bins).
    """

    n_in: int = 700
    n: int = 227
    n_classes: int = 19
    embedding: str = "none"
    embed_scale: float = 1.0
    neuron: str = "lif"
    n_synapses: int = 300
    rho: float = 0.25
    wiring: str = "random"
    dt: float = 2.0
    threshold: float = 1.0
    reset: str = "subtract"
    reset_value: Optional[float] = None
    detach_reset: bool = True
    refractory: int = 0
    current_gain: str = "leak"
    tau_mem_min: float = 10.0
    tau_mem_max: float = 50.0
    tau_adapt_min: float = 60.0
    tau_adapt_max: float = 240.0
    adapt_a_min: float = -1.0
    adapt_a_max: float = 1.0
    adapt_b_min: float = 0.0
    adapt_b_max: float = 2.0
    learn_tau: bool = True
    learn_adapt: bool = True
    surrogate: str = "fast_sigmoid"
    surrogate_slope: float = 25.0
    surrogate_scale: float = 1.0
    weight_scale: float = 30.0
    dale: bool = False
    frac_inhibitory: float = 0.2
    readout: str = "elm"
    readout_rho: float = 0.0
    tau_out: float = 20.0
    readout_d_m: int = 3
    readout_d_tree: int = 30
    readout_d_brch: int = 10
    readout_input_scale: float = 10.0
    readout_tau_min: float = 2.0
    readout_tau_max: float = 1000.0
    dropout_in: float = 0.0
    dropout_rec: float = 0.0
    seed: int = 0
    synapse_impl: str = "auto"

    def __post_init__(self) -> None:
        _check_int("n_in", self.n_in, 1)
        _check_int("n", self.n, 1)
        _check_int("n_classes", self.n_classes, 1)
        _check_choice("embedding", self.embedding, EMBEDDINGS)
        _check_finite("embed_scale", self.embed_scale)
        _check_choice("neuron", self.neuron, L.NEURON_TYPES)
        _check_int("n_synapses", self.n_synapses, 1)
        _check_prob("rho", self.rho, hi_open=False)
        _check_choice("wiring", self.wiring, WIRINGS)
        _check_positive("dt", self.dt)
        _check_positive("threshold", self.threshold)
        _check_choice("reset", self.reset, L.RESETS)
        _check_positive("reset_value", self.reset_value, allow_none=True)
        _check_bool("detach_reset", self.detach_reset)
        _check_int("refractory", self.refractory, 0)
        _check_choice("current_gain", self.current_gain, L.CURRENT_GAINS)
        _check_range("tau_mem_min", self.tau_mem_min, "tau_mem_max", self.tau_mem_max, positive=True)
        _check_range("tau_adapt_min", self.tau_adapt_min, "tau_adapt_max", self.tau_adapt_max, positive=True)
        _check_range("adapt_a_min", self.adapt_a_min, "adapt_a_max", self.adapt_a_max, positive=False)
        _check_range("adapt_b_min", self.adapt_b_min, "adapt_b_max", self.adapt_b_max, positive=False)
        _check_bool("learn_tau", self.learn_tau)
        _check_bool("learn_adapt", self.learn_adapt)
        check_surrogate(self.surrogate, self.surrogate_slope, self.surrogate_scale)
        _check_positive("weight_scale", self.weight_scale)
        _check_bool("dale", self.dale)
        _check_prob("frac_inhibitory", self.frac_inhibitory, hi_open=False)
        _check_choice("readout", self.readout, READOUTS)
        _check_prob("readout_rho", self.readout_rho, hi_open=False)
        _check_positive("tau_out", self.tau_out)
        _check_int("readout_d_m", self.readout_d_m, 1)
        _check_int("readout_d_tree", self.readout_d_tree, 1)
        _check_int("readout_d_brch", self.readout_d_brch, 1)
        _check_finite("readout_input_scale", self.readout_input_scale)
        _check_range("readout_tau_min", self.readout_tau_min, "readout_tau_max", self.readout_tau_max, positive=True)
        _check_prob("dropout_in", self.dropout_in, hi_open=True)
        _check_prob("dropout_rec", self.dropout_rec, hi_open=True)
        _check_int("seed", self.seed, 0)
        _check_choice("synapse_impl", self.synapse_impl, SYNAPSE_IMPLS)
        self.readout_layer()

    # ----- registry / derived settings
    @property
    def family(self) -> str:
        """Registry family name: ``lif`` or ``adlif`` (the value of ``neuron``)."""
        return self.neuron

    @property
    def adaptive(self) -> bool:
        return self.neuron == "adlif"

    @property
    def k(self) -> int:
        """Synapses per hidden neuron ``K``."""
        return self.n_synapses

    @property
    def theta_reset(self) -> float:
        """Amount subtracted by the soft reset (``reset_value``, default the threshold)."""
        return float(self.threshold if self.reset_value is None else self.reset_value)

    def settings(self) -> L.LIFSettings:
        return L.LIFSettings(self.reset, self.surrogate, float(self.surrogate_slope), float(self.surrogate_scale),
                             self.detach_reset, self.refractory)

    def readout_layer(self) -> ELMLayerConfig:
        """The ELM readout layer of the ELM Network (used when ``readout == "elm"``)."""
        return ELMLayerConfig(
            d_m=self.readout_d_m, mlp_layers=0, d_tree=self.readout_d_tree, d_brch=self.readout_d_brch,
            input_scale=self.readout_input_scale, tau_min=self.readout_tau_min, tau_max=self.readout_tau_max,
            learn_tau=False, memory_mode="ratio", lambda_value=5.0, dt=self.dt, tau_r=None,
            output_act="identity", d_o=1, rho=0.0, wiring=self.wiring, dropout_in=self.dropout_in, dropout_rec=0.0,
        )

    def internal_params(self) -> int:
        """``k_e`` of one spiking neuron: learnable tau_m (+ tau_w) and a, b (adLIF)."""
        ke = 0
        if self.learn_tau:
            ke += 2 if self.adaptive else 1
        if self.adaptive and self.learn_adapt:
            ke += 2
        return ke

    def readout_params(self) -> int:
        c = self.n_classes
        if self.readout == "elm":
            return c * self.readout_layer().params_per_neuron() + c * (c + 1)
        if self.readout == "leaky":
            return c * (self.n_synapses + 1)
        return c * (self.n_synapses + self.internal_params())

    def budget(self) -> Budget:
        """Exact trainable-parameter count, from the configuration alone."""
        ke = self.internal_params()
        p = self.n * (self.n_synapses + ke) + self.readout_params()
        return Budget(n=self.n, k_e=ke, k_c=self.n_synapses, p=p)



# --------------------------------------------------------------------------- synapse kernels
def dense_synapse_map(connectome: torch.Tensor, w_eff: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``M [hi-lo, N]`` with ``M[j, n] = sum of w_eff[n, k] over the synapses with C[n, k] == lo + j``."""
    n = connectome.shape[0]
    sel = (connectome >= lo) & (connectome < hi)
    col = torch.arange(n, device=connectome.device)[:, None].expand_as(connectome)
    flat_idx = ((connectome - lo) * n + col)[sel]
    flat = torch.zeros((hi - lo) * n, device=w_eff.device, dtype=w_eff.dtype)
    return flat.index_add(0, flat_idx, w_eff[sel]).view(hi - lo, n)


def bag_synapses(connectome: torch.Tensor, w_eff: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``embedding_bag`` indices and weights ``[N, K]`` for the synapses with sources in lo..hi-1
    (the others point at row 0 with weight 0)."""
    sel = (connectome >= lo) & (connectome < hi)
    idx = torch.where(sel, connectome - lo, torch.zeros_like(connectome))
    return idx, torch.where(sel, w_eff, torch.zeros_like(w_eff))


def resolve_impl(impl: str, n_src: int, n: int) -> str:
    if impl != "auto":
        return impl
    return "dense" if n_src * n <= DENSE_MAX_ELEMENTS else "gather"


def _feedforward_currents(x: torch.Tensor, connectome: torch.Tensor, w_eff: torch.Tensor, n_in: int, impl: str):
    """``[B, T, N]`` currents from the ``n_in`` input sources, for all steps at once."""
    bsz, steps, _ = x.shape
    n = connectome.shape[0]
    if impl == "dense":
        return x @ dense_synapse_map(connectome, w_eff, 0, n_in)
    idx, w = bag_synapses(connectome, w_eff, 0, n_in)
    table = x.permute(2, 0, 1).reshape(n_in, bsz * steps)
    out = F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")  # [N, B*T]
    return out.view(n, bsz, steps).permute(1, 2, 0)


def _recurrent_fn(connectome: torch.Tensor, w_eff: torch.Tensor, n_in: int, impl: str):
    """``f(s_prev [B, N]) -> [B, N]`` currents from the layer's own previous spikes, or None."""
    n = connectome.shape[0]
    if not bool((connectome >= n_in).any()):
        return None
    if impl == "dense":
        m_rec = dense_synapse_map(connectome, w_eff, n_in, n_in + n)
        return lambda s_prev: s_prev @ m_rec
    idx, w = bag_synapses(connectome, w_eff, n_in, n_in + n)
    return lambda s_prev: F.embedding_bag(idx, s_prev.t().contiguous(), per_sample_weights=w, mode="sum").t()


def _loguniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u).to(torch.float32)


# --------------------------------------------------------------------------- the spiking layer
class LIFLayerOutput(NamedTuple):
    s: torch.Tensor  # [B, T, N] spikes
    state: L.LIFState
    traces: Optional[dict]  # membrane, spikes, current, adaptation: [B, T, N]


class LIFLayer(nn.Module):
    """``n`` LIF / adLIF neurons reading ``n_in`` sources of step t and their own spikes of t-1.

    Neuron settings come from ``cfg`` (an :class:`LIFNetworkConfig`); ``rho``, the seed, the
    dropout rates and the sign of the input sources (``input_sign`` ``[n_in]``, default +1: used
    under Dale's law) are per layer. Construction never touches the global RNG.
    """

    def __init__(self, cfg: LIFNetworkConfig, n_in: int, n: int, rho: float, seed: int = 0,
                 input_sign: Optional[torch.Tensor] = None, dropout_in: float = 0.0, dropout_rec: float = 0.0,
                 connectome: Optional[torch.Tensor] = None, synapse_impl: str = "auto") -> None:
        super().__init__()
        _check_choice("synapse_impl", synapse_impl, SYNAPSE_IMPLS)
        self.cfg = cfg
        self.n_in, self.n = int(n_in), int(n)
        self.dropout_in, self.dropout_rec = float(dropout_in), float(dropout_rec)
        self.synapse_impl = synapse_impl
        k = cfg.n_synapses
        if connectome is None:
            connectome = make_connectome(cfg.wiring, self.n_in, self.n, k, rho, seed=2 * seed)
        connectome = torch.as_tensor(connectome, dtype=torch.int64)
        if tuple(connectome.shape) != (self.n, k):
            raise ValueError(f"connectome must have shape [n, K] = [{self.n}, {k}], got {list(connectome.shape)}")
        if connectome.numel() and (connectome.min() < 0 or connectome.max() >= self.n_in + self.n):
            raise ValueError(f"connectome entries must lie in 0..{self.n_in + self.n - 1} (n_in + n - 1)")
        self.register_buffer("connectome", connectome.clone())

        g = torch.Generator().manual_seed(2 * seed + 1)
        std = cfg.weight_scale / math.sqrt(k)
        w0 = torch.randn(self.n, k, generator=g) * std
        self.w = nn.Parameter(w0.abs() if cfg.dale else w0)
        self._timescale("tau_m", _loguniform(self.n, cfg.tau_mem_min, cfg.tau_mem_max, g),
                        cfg.tau_mem_min, cfg.tau_mem_max)
        if cfg.adaptive:
            self._timescale("tau_w", _loguniform(self.n, cfg.tau_adapt_min, cfg.tau_adapt_max, g),
                            cfg.tau_adapt_min, cfg.tau_adapt_max)
            a0 = cfg.adapt_a_min + (cfg.adapt_a_max - cfg.adapt_a_min) * torch.rand(self.n, generator=g)
            b0 = cfg.adapt_b_min + (cfg.adapt_b_max - cfg.adapt_b_min) * torch.rand(self.n, generator=g)
            for name, val in (("a", a0), ("b", b0)):
                if cfg.learn_adapt:
                    setattr(self, name, nn.Parameter(val))
                else:
                    self.register_buffer(name, val)
        sign = L.ei_signs(self.n, cfg.frac_inhibitory, g) if cfg.dale else torch.ones(self.n)
        self.register_buffer("sign", sign)
        if input_sign is None:
            input_sign = torch.ones(self.n_in)
        input_sign = torch.as_tensor(input_sign, dtype=torch.float32).detach().clone()
        if tuple(input_sign.shape) != (self.n_in,):
            raise ValueError(f"input_sign must have shape [n_in] = [{self.n_in}], got {list(input_sign.shape)}")
        self.register_buffer("syn_sign", torch.cat([input_sign, sign])[self.connectome])

    def _timescale(self, name: str, tau0: torch.Tensor, lo_init: float, hi_init: float) -> None:
        lo, hi = tau_bounds(lo_init, hi_init)
        setattr(self, f"_{name}_bounds", (lo, hi))
        if self.cfg.learn_tau:
            setattr(self, f"{name}_theta", nn.Parameter(tau_to_theta(tau0, lo, hi)))
        else:
            self.register_buffer(f"{name}_fixed", tau0.clone())

    # ------------------------------------------------------------------ parameters
    def _tau(self, name: str) -> torch.Tensor:
        if self.cfg.learn_tau:
            lo, hi = getattr(self, f"_{name}_bounds")
            return theta_to_tau(getattr(self, f"{name}_theta"), lo, hi)
        return getattr(self, f"{name}_fixed")

    @property
    def tau_m(self) -> torch.Tensor:
        """Membrane timescales ``[N]`` (unit of dt)."""
        return self._tau("tau_m")

    @property
    def tau_w(self) -> torch.Tensor:
        """Adaptation timescales ``[N]`` (adLIF only)."""
        return self._tau("tau_w")

    def effective_weights(self) -> torch.Tensor:
        """``[N, K]`` weights as they multiply the sources: ``w`` or ``relu(w) * sign(source)``."""
        if self.cfg.dale:
            return L.dale_weights(self.w, self.syn_sign)
        return self.w

    def params(self) -> L.LIFParams:
        c = self.cfg
        kappa_m, gain = L.membrane_constants(self.tau_m, c.dt, c.current_gain)
        if c.adaptive:
            return L.LIFParams(kappa_m, gain, float(c.threshold), c.theta_reset, decay(self.tau_w, c.dt), self.a, self.b)
        return L.LIFParams(kappa_m, gain, float(c.threshold), c.theta_reset)

    def initial_state(self, batch: int, device=None) -> L.LIFState:
        device = device if device is not None else self.w.device
        return L.initial_state(batch, self.n, self.cfg.adaptive, self.cfg.refractory, device=device)

    def resolved_impl(self) -> str:
        return resolve_impl(self.synapse_impl, self.n_in + self.n, self.n)

    def draw_masks(self, x: torch.Tensor):
        """Variational dropout masks ``(mask_in [B, n_in], mask_rec [B, N])`` (None when off / eval)."""
        if not self.training:
            return None, None
        bsz = x.shape[0]
        return variational_mask(bsz, self.n_in, self.dropout_in, x), variational_mask(bsz, self.n, self.dropout_rec, x)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.n_in:
            raise ValueError(f"input must be [B, T, n_in={self.n_in}], got {list(x.shape)}")

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, state: Optional[L.LIFState] = None, record: bool = False) -> LIFLayerOutput:
        """Run the layer over ``x`` ``[B, T, n_in]`` from ``state`` (zeros when None)."""
        self._check_input(x)
        bsz = x.shape[0]
        if state is None:
            state = self.initial_state(bsz, x.device)
        mask_in, mask_rec = self.draw_masks(x)
        if mask_in is not None:
            x = x * mask_in[:, None, :]
        w_eff = self.effective_weights()
        params, settings = self.params(), self.cfg.settings()
        folded = None  # the gain g when it is folded into the weights (traces then divide it out)
        if self.cfg.current_gain == "unit":
            params = params._replace(gain=None)  # g = 1: skip the multiplication
        elif not self.cfg.adaptive:
            # LIF: g I_t = sum_k (g w_eff[n, k]) v[C[n, k]]; fold g into the weights once
            folded = params.gain
            w_eff = w_eff * folded[:, None]
            params = params._replace(gain=None)
        impl = self.resolved_impl()
        i_in = _feedforward_currents(x, self.connectome, w_eff, self.n_in, impl)
        rec_fn = _recurrent_fn(self.connectome, w_eff, self.n_in, impl)
        spikes = []
        rec = {"membrane": [], "spikes": [], "current": []} if record else None
        if record and self.cfg.adaptive:
            rec["adaptation"] = []
        # unbind once: indexing i_in[:, t] per step would make the backward pass O(T^2)
        for cur in i_in.unbind(1):
            if rec_fn is not None:
                s_prev = state.s if mask_rec is None else state.s * mask_rec
                cur = cur + rec_fn(s_prev)
            out = L.lif_step(cur, state, params, settings)
            state = out.state
            spikes.append(out.s)
            if record:
                rec["membrane"].append(out.v.detach())
                rec["spikes"].append(out.s.detach())
                rec["current"].append((cur if folded is None else cur / folded).detach())
                if self.cfg.adaptive:
                    rec["adaptation"].append(out.w.detach())
        traces = {key: torch.stack(val, dim=1) for key, val in rec.items()} if record else None
        return LIFLayerOutput(torch.stack(spikes, dim=1), state, traces)

    def forward_reference(self, x: torch.Tensor, state: Optional[L.LIFState] = None) -> LIFLayerOutput:
        """Plain path: loops over time and neurons, explicit indexing, equations written out."""
        self._check_input(x)
        c = self.cfg
        bsz = x.shape[0]
        if state is None:
            state = self.initial_state(bsz, x.device)
        mask_in, mask_rec = self.draw_masks(x)
        w_eff = self.effective_weights()
        tau_m = self.tau_m
        tau_w = self.tau_w if c.adaptive else None
        v, s, w, ref = state
        spikes = []
        for x_t in x.unbind(1):
            x_t = x_t if mask_in is None else x_t * mask_in
            r_t = s if mask_rec is None else s * mask_rec
            src = torch.cat([x_t, r_t], dim=1)
            new_v, new_s, new_w, new_ref = [], [], [], []
            for n in range(self.n):
                current = (src[:, self.connectome[n]] * w_eff[n]).sum(-1)  # [B]
                kappa = torch.exp(-c.dt / tau_m[n].clamp_min(1e-6))
                gain = 1.0 if c.current_gain == "unit" else 1.0 - kappa
                drive = current
                if c.adaptive:
                    kw = torch.exp(-c.dt / tau_w[n].clamp_min(1e-6))
                    w_n = kw * w[:, n] + self.a[n] * v[:, n] + self.b[n] * s[:, n]
                    new_w.append(w_n)
                    drive = drive - w_n
                refr = None
                if c.refractory > 0:
                    refr = (ref[:, n] > 0).float()
                    drive = drive * (1 - refr)
                reset_sig = s[:, n].detach() if c.detach_reset else s[:, n]
                if c.reset == "subtract":
                    v_n = kappa * v[:, n] + gain * drive - c.theta_reset * reset_sig
                else:
                    v_n = kappa * v[:, n] * (1 - reset_sig) + gain * drive
                s_n = L.fire(v_n, c.threshold, c.surrogate, c.surrogate_slope, c.surrogate_scale)
                if refr is not None:
                    s_n = s_n * (1 - refr)
                    new_ref.append(torch.where(s_n > 0, float(c.refractory), (ref[:, n] - 1).clamp_min(0)))
                new_v.append(v_n)
                new_s.append(s_n)
            v, s = torch.stack(new_v, 1), torch.stack(new_s, 1)
            w = torch.stack(new_w, 1) if c.adaptive else None
            ref = torch.stack(new_ref, 1) if c.refractory > 0 else None
            spikes.append(s)
        return LIFLayerOutput(torch.stack(spikes, dim=1), L.LIFState(v, s, w, ref), None)


# --------------------------------------------------------------------------- non-spiking readout
class LeakyReadout(nn.Module):
    """``C`` leaky integrators on ``n_in`` sources of the same step (K synapses each, rho 0)::

        o_t[c] = kappa_o o_{t-1}[c] + (1 - kappa_o) (sum_k w_eff[c, k] a_t[C[c, k]] + bias[c])

    ``kappa_o = exp(-dt / tau_out)``; weights start ``U(-1/sqrt(K), 1/sqrt(K))`` (nn.Linear
    default), under Dale's law ``w_eff = relu(w) * sign(source)`` with absolute initial values.
    """

    def __init__(self, cfg: LIFNetworkConfig, n_in: int, n_classes: int, seed: int = 0,
                 input_sign: Optional[torch.Tensor] = None, synapse_impl: str = "auto") -> None:
        super().__init__()
        self.cfg, self.n_in, self.n = cfg, int(n_in), int(n_classes)
        self.synapse_impl = synapse_impl
        k = cfg.n_synapses
        conn = make_connectome(cfg.wiring, self.n_in, self.n, k, 0.0, seed=2 * seed)
        self.register_buffer("connectome", conn)
        g = torch.Generator().manual_seed(2 * seed + 1)
        w0 = torch.empty(self.n, k).uniform_(-1 / math.sqrt(k), 1 / math.sqrt(k), generator=g)
        self.w = nn.Parameter(w0.abs() if cfg.dale else w0)
        self.bias = nn.Parameter(torch.zeros(self.n))
        if input_sign is None:
            input_sign = torch.ones(self.n_in)
        self.register_buffer("syn_sign", torch.as_tensor(input_sign, dtype=torch.float32).clone()[conn])

    def effective_weights(self) -> torch.Tensor:
        return L.dale_weights(self.w, self.syn_sign) if self.cfg.dale else self.w

    @property
    def kappa(self) -> float:
        return decay(self.cfg.tau_out, self.cfg.dt)

    def initial_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.n, device=device if device is not None else self.w.device)

    def forward(self, a: torch.Tensor, state: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
        """``a`` ``[B, T, n_in]`` -> ``(o [B, T, C], o_T [B, C])``; ``mask`` ``[B, n_in]`` dropout or None."""
        if state is None:
            state = self.initial_state(a.shape[0], a.device)
        if mask is not None:
            a = a * mask[:, None, :]
        impl = resolve_impl(self.synapse_impl, self.n_in, self.n)
        drive = _feedforward_currents(a, self.connectome, self.effective_weights(), self.n_in, impl) + self.bias
        kappa = self.kappa
        o, outs = state, []
        for d in drive.unbind(1):
            o = kappa * o + (1.0 - kappa) * d
            outs.append(o)
        return torch.stack(outs, dim=1), o

    def forward_reference(self, a: torch.Tensor, state: Optional[torch.Tensor] = None,
                          mask: Optional[torch.Tensor] = None):
        if state is None:
            state = self.initial_state(a.shape[0], a.device)
        w_eff = self.effective_weights()
        kappa = math.exp(-self.cfg.dt / self.cfg.tau_out)
        o, outs = state, []
        for a_t in a.unbind(1):
            a_t = a_t if mask is None else a_t * mask
            o = torch.stack([kappa * o[:, c] + (1 - kappa) * ((a_t[:, self.connectome[c]] * w_eff[c]).sum(-1)
                                                              + self.bias[c]) for c in range(self.n)], 1)
            outs.append(o)
        return torch.stack(outs, dim=1), o


def low_pass_spikes(s: torch.Tensor, o_prev: torch.Tensor, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``o_t = kappa o_{t-1} + s_t`` over ``s`` ``[B, T, C]``; returns ``(o [B, T, C], o_T)``."""
    o, outs = o_prev, []
    for s_t in s.unbind(1):
        o = kappa * o + s_t
        outs.append(o)
    return torch.stack(outs, dim=1), o


# --------------------------------------------------------------------------- the network
class SpikingReadoutState(NamedTuple):
    neurons: L.LIFState
    filtered: torch.Tensor  # [B, C] low-passed output spikes (= last logits)


class LIFNetworkState(NamedTuple):
    hidden: L.LIFState
    readout: Any  # ELMState ("elm"), [B, C] tensor ("leaky"), SpikingReadoutState ("spiking")


class LIFNetworkOutput(NamedTuple):
    logits: torch.Tensor  # [B, T, C]
    state: LIFNetworkState
    regularizers: dict  # {"spike": mean spike rate}
    traces: Optional[dict]  # {"hidden": {...}, "readout": {...}} when record=True


class LIFNetwork(nn.Module):
    """Recurrent LIF / adLIF network; see the module docstring. Build with a config or a preset."""

    def __init__(self, cfg: LIFNetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        impl = cfg.synapse_impl
        self.hidden = LIFLayer(cfg, cfg.n_in, cfg.n, cfg.rho, seed=2 * cfg.seed, dropout_in=cfg.dropout_in,
                               dropout_rec=cfg.dropout_rec, synapse_impl=impl)
        c = cfg.n_classes
        if cfg.readout == "elm":
            self.readout = ELMLayer(cfg.readout_layer(), cfg.n, c, seed=2 * cfg.seed + 1, synapse_impl=impl)
            self.out = nn.utils.skip_init(nn.Linear, c, c)  # initialised below from its own generator
            g = torch.Generator().manual_seed(2 * cfg.seed + 7919)
            bound = 1.0 / math.sqrt(c)
            with torch.no_grad():
                self.out.weight.uniform_(-bound, bound, generator=g)
                self.out.bias.uniform_(-bound, bound, generator=g)
        elif cfg.readout == "leaky":
            self.readout = LeakyReadout(cfg, cfg.n, c, seed=2 * cfg.seed + 1, input_sign=self.hidden.sign,
                                        synapse_impl=impl)
        else:
            self.readout = LIFLayer(cfg, cfg.n, c, cfg.readout_rho, seed=2 * cfg.seed + 1,
                                    input_sign=self.hidden.sign, dropout_in=cfg.dropout_in, dropout_rec=0.0,
                                    synapse_impl=impl)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "LIFNetwork":
        """E.g. ``LIFNetwork.from_preset("lif-shd-adding", n=200)``."""
        return cls(preset_config(name, **overrides))

    def budget(self) -> Budget:
        return self.cfg.budget()

    def initial_state(self, batch: int, device=None) -> LIFNetworkState:
        hs = self.hidden.initial_state(batch, device)
        if self.cfg.readout == "spiking":
            rs = SpikingReadoutState(self.readout.initial_state(batch, device), self.readout.initial_state(batch, device).v)
        else:
            rs = self.readout.initial_state(batch, device)
        return LIFNetworkState(hs, rs)

    def _readout_mask(self, s: torch.Tensor):
        if not self.training:
            return None
        return variational_mask(s.shape[0], self.cfg.n, self.cfg.dropout_in, s)

    def forward(self, x: torch.Tensor, state: Optional[LIFNetworkState] = None, record: bool = False,
                reference: bool = False) -> LIFNetworkOutput:
        """``x``: ``[B, T, n_in]`` (integer tokens ``[B, T]`` with the one_hot embedding).

        ``reference=True`` runs every part on its plain reference path (slow; for tests).
        """
        cfg = self.cfg
        x = embed(x, cfg.embedding, cfg.embed_scale, cfg.n_in)
        hs, rs = (None, None) if state is None else state
        hid = self.hidden.forward_reference(x, hs) if reference else self.hidden(x, hs, record)
        spike_sum, spike_count = hid.s.sum(), hid.s.numel()
        ro_traces = None
        if cfg.readout == "elm":
            ro = self.readout.forward_reference(hid.s, rs) if reference else self.readout(hid.s, rs, record)
            logits, r_state, ro_traces = self.out(ro.y), ro.state, ro.traces
        elif cfg.readout == "leaky":
            fn = self.readout.forward_reference if reference else self.readout
            logits, r_state = fn(hid.s, rs, self._readout_mask(hid.s))
            if record:
                ro_traces = {"output": logits.detach()}
        else:
            rn, rf = (None, None) if rs is None else rs
            ro = self.readout.forward_reference(hid.s, rn) if reference else self.readout(hid.s, rn, record)
            if rf is None:
                rf = torch.zeros(ro.s.shape[0], ro.s.shape[2], device=ro.s.device, dtype=ro.s.dtype)
            logits, filt = low_pass_spikes(ro.s, rf, decay(cfg.tau_out, cfg.dt))
            r_state = SpikingReadoutState(ro.state, filt)
            spike_sum, spike_count = spike_sum + ro.s.sum(), spike_count + ro.s.numel()
            if record:
                ro_traces = {**ro.traces, "output": logits.detach()}
        traces = {"hidden": hid.traces, "readout": ro_traces} if record else None
        regs = {"spike": spike_sum / spike_count}
        return LIFNetworkOutput(logits, LIFNetworkState(hid.state, r_state), regs, traces)


# --------------------------------------------------------------------------- presets
# SHD-Adding wiring of the ELM Network (SPEC 7): n_in 700, 19 classes, K 300, rho 0.25, dropout
# 0.2 / 0.2, the ELM readout; neurons LIF / adLIF in Bittar & Garner's form (input gain
# 1 - kappa_m, heterogeneous learnable tau_m 10..50 ms, adLIF tau_w 60..240 ms = 30..120 steps,
# a in [-1, 1], b in [0, 2]); dt = 2 ms bins. weight_scale 30 gives a synapse std of
# 30 / sqrt(300) = 1.73, close to the ELM neuron's effective s_in * U(+-1/sqrt(10)) std of 1.83.
# n is sized by closest_n to the ELM Network's budget at d_m 9 (P = 76551): 227 LIF / 225 adLIF.
_SHD_ADDING = dict(
    n_in=700, n_classes=19, embedding="none", embed_scale=1.0, n_synapses=300, rho=0.25, dt=2.0,
    threshold=1.0, reset="subtract", reset_value=None, refractory=0, current_gain="leak",
    tau_mem_min=10.0, tau_mem_max=50.0, tau_adapt_min=60.0, tau_adapt_max=240.0, learn_tau=True,
    learn_adapt=True, surrogate="fast_sigmoid", surrogate_slope=25.0, weight_scale=30.0, dale=False,
    readout="elm", readout_d_m=3, readout_d_tree=30, readout_d_brch=10, readout_input_scale=10.0,
    readout_tau_min=2.0, readout_tau_max=1000.0, dropout_in=0.2, dropout_rec=0.2,
)
register_preset("lif-shd-adding", LIFNetworkConfig, {**_SHD_ADDING, "neuron": "lif", "n": 227})
register_preset("adlif-shd-adding", LIFNetworkConfig, {**_SHD_ADDING, "neuron": "adlif", "n": 225})
# ICLR 2024 recurrent SNN baseline (SPEC 10): 500 LIF neurons = C spiking output neurons + 500 - C
# recurrent hidden neurons (n = 481 for the 19 SHD-Adding classes; use n = 480 with 20 SHD
# classes), 20 % inhibitory (Dale's law, relu-rectified weights signed by the source's type),
# threshold 1, soft reset subtracting 0.9, tau_m 25 ms learnable, 100 synapses (90 % from the
# previous layer, 10 % from the own layer, for hidden and output neurons alike), weight scale
# 0.3 / sqrt(100), v += I (snntorch convention), output spikes low-passed with 20 ms; dt = 2 ms.
# Train with lr 2e-3 and an L1 spike penalty 0.01 on regularizers["spike"].
register_preset("lif-iclr2024", LIFNetworkConfig, dict(
    n_in=700, n=481, n_classes=19, embedding="none", embed_scale=1.0, neuron="lif", n_synapses=100,
    rho=0.1, dt=2.0, threshold=1.0, reset="subtract", reset_value=0.9, refractory=0, current_gain="unit",
    tau_mem_min=25.0, tau_mem_max=25.0, learn_tau=True, surrogate="fast_sigmoid", surrogate_slope=25.0,
    weight_scale=0.3, dale=True, frac_inhibitory=0.2, readout="spiking", readout_rho=0.1, tau_out=20.0,
    dropout_in=0.0, dropout_rec=0.0,
))
