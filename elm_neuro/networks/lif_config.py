"""Configurations of the recurrent LIF / adLIF networks (docs/design.md §2, §10), composed
like the ELM ones.

- :class:`LIFLayerConfig`: a population of LIF / adLIF neurons and its wiring (neuron model,
  reset, refractory period, timescale ranges, surrogate, synapse count and initial scale, Dale's
  law, dropout). The spiking readout (``readout = "spiking"``) reuses it.
- :class:`LIFNetworkConfig`: sizes, embedding, the hidden layer's configuration ``hidden``, the
  readout kind and ``elm_readout``, the docs/design.md §3 ELM readout layer
  (:func:`~elm_neuro.networks.elm_config.elm_readout_config`, the same configuration the ELM
  Network uses), with its timescales in the unit of ``dt`` (ms: 2..1000 ms = the ELM Network's
  1..500 steps at 2 ms bins).

Stability of adLIF (docs/design.md §10, :mod:`elm_neuro.neurons.lif`). The layer clamps the
coupling ``a`` per neuron into ``[0, (1 - m)(1 + kappa_m)(1 + kappa_w) / g]`` (``m`` =
``LIFLayerConfig.ADAPT_A_MARGIN``) and ``b`` at ``>= 0`` where it uses them, so the linear
membrane / adaptation dynamics are stable whatever the optimiser does. The configuration checks
that every *initial* value is stable: for ``neuron = "adlif"``, ``adapt_a_min >= 0``,
``adapt_b_min >= 0`` and ``adapt_a_max`` at most the bound at the shortest initial timescales
(``tau_mem_min``, ``tau_adapt_min``: the smallest bound over the initial range), else a
``ValueError`` names the field and the bound. **Stored configurations** (``from_dict``: the
config.json of a run, an exported model, a results table) written before this check, with
Bittar & Garner's initial range ``a`` in [-1, 1], still load: ``from_dict`` moves a stored
initial range into the stable one (``[-1, 1]`` reads as ``[0, 1]``; ``b`` below 0 reads as 0)
instead of refusing it; the checkpoint's ``a`` and ``b`` load as saved and are clamped at use.
The constructor, ``replace``, ``make`` (presets) and ``--set`` refuse such ranges.

Flat names (:mod:`elm_neuro.networks.checks`): every ``LIFLayerConfig`` field addresses
``hidden``; ``dt``, ``wiring``, ``dropout_in`` and ``engine`` set the hidden layer and the ELM
readout together (one clock, one wiring rule, one input dropout, one engine choice);
``readout_d_m``, ``readout_d_tree``, ``readout_d_brch``, ``readout_input_scale``,
``readout_tau_min`` and ``readout_tau_max`` address ``elm_readout``.

Budget (docs/design.md §3 vocabulary): ``k_c = K``; ``k_e`` = learnable per-neuron parameters
besides the synapses: ``tau_m`` (``learn_tau``), plus ``tau_w`` (adLIF, ``learn_tau``) and
``a, b`` (adLIF, ``learn_adapt``); ``P = N (k_c + k_e) + readout``, readout =
``C (K_r + 3 d_tree + 16) + C (C + 1)`` for ``elm`` (as the ELM Network), ``C (K + 1)`` for
``leaky``, ``C (K + k_e)`` for ``spiking``.
"""
from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass, field
from typing import Optional

from elm_neuro import defaults as D
from elm_neuro.networks.budget import Budget
from elm_neuro.networks.checks import (ConfigMixin, check_bool, check_choice, check_int, check_io_fields,
                                       check_positive, check_prob, check_range)
from elm_neuro.networks.elm_config import ENGINES, SYNAPSE_IMPLS, ELMLayerConfig, check_readout, elm_readout_config
from elm_neuro.neurons import lif as L
from elm_neuro.neurons.surrogate import check_surrogate
from elm_neuro.wiring.connectome import WIRINGS

READOUTS = ("elm", "leaky", "spiking")

# True while ``from_dict`` reads a stored configuration: an adLIF initial range outside the
# stable interval is then moved into it instead of refused (module docstring).
_READING_STORED = contextvars.ContextVar("lif_config_reading_stored", default=False)


def _stored(read):
    """``read()`` (a ``from_dict``) with the semantics of a stored configuration."""
    token = _READING_STORED.set(True)
    try:
        return read()
    finally:
        _READING_STORED.reset(token)


@dataclass
class LIFLayerConfig(ConfigMixin):
    """LIF / adLIF neurons on the ELM wiring (docs/design.md §2, §10); defaults: SHD-Adding
    with Bittar & Garner's neurons.

    The equations are those of :mod:`elm_neuro.neurons.lif` (docs/design.md §10). The hidden
    layer of :class:`LIFNetworkConfig` is built from this configuration, and so are its leaky
    and spiking readouts (``n_synapses``, ``dt``, ``dale``, ``engine``... and, for the spiking
    readout, the whole neuron model).

    **Units.** ``dt`` and every timescale (``tau_mem_*``, ``tau_adapt_*``, and the network's
    ``tau_out``) share one unit: **ms** by default (``dt = 2`` ms, the SHD bin), so ``tau = 25``
    means 25 ms = 12.5 steps. For the SHD tasks the trainer sets ``dt`` to the data's bin width
    in ms unless ``dt`` is overridden; the Enwik8 presets use ``dt = 1`` (taus in steps).
    ``refractory`` is the exception: an integer number of **time steps**. Every decay is
    ``kappa = exp(-dt / tau)``. The membrane ``v``, the threshold and the input current share an
    arbitrary unit ("membrane units"); weights and the other factors are dimensionless.

    Attributes:
        neuron (str): neuron model: ``lif`` (default) or ``adlif`` (adaptive LIF, Bittar &
            Garner 2022: an adaptation variable ``w`` with couplings ``a``, ``b``).
        n_synapses (int): synapses per neuron ``K`` (the budget's ``k_c``), for the hidden
            neurons and for each neuron of a leaky or spiking readout. Current-based, no
            branches. Default 300.
        rho (float): recurrent fraction ``rho`` of the hidden layer in [0, 1]: each synapse
            independently reads a hidden neuron's spike of the previous step with probability
            ``rho``, else an input channel of the current step. Default 0.25. (The readouts use
            ``LIFNetworkConfig.readout_rho`` or 0.)
        wiring (str): connectome rule; ``random`` (default, the only one, docs/design.md §2).
        dt (float): duration of one time step, in the unit of the timescales (ms by default).
            Default ``defaults.BIN_MS`` = 2.0 (ms).
        threshold (float): firing threshold ``theta`` (> 0, membrane units): a spike needs
            ``v_t - theta > 0``. Default 1.0.
        reset (str): ``subtract`` (soft, default: ``v_t = kappa_m v_{t-1} + g D_t - theta_r
            s_{t-1}``) or ``zero`` (hard: ``v_t = kappa_m v_{t-1} (1 - s_{t-1}) + g D_t``). The
            reset of a spike at ``t`` is applied at ``t + 1`` (snntorch's convention).
        reset_value (float or None): amount ``theta_r`` subtracted by the soft reset (> 0,
            membrane units). Default None, meaning ``threshold`` (see :attr:`theta_reset`);
            0.9 in the ICLR 2024 SNN. Not used by the ``zero`` reset.
        detach_reset (bool): take the reset signal ``s_{t-1}`` out of the autograd graph (as
            snntorch does). Default True; False lets the gradient flow through the reset.
        refractory (int): refractory period ``R`` in **time steps** (>= 0): after a spike, the
            input drive is blocked and no spike is emitted for ``R`` steps. Default 0 (none).
        current_gain (str): input gain ``g`` of the membrane update: ``leak`` (default,
            ``g = 1 - kappa_m``: the membrane low-pass filters the current, Bittar & Garner) or
            ``unit`` (``g = 1``, ``v += I``: the snntorch convention, the ICLR 2024 SNN).
        tau_mem_min (float): lower end of the initial membrane timescales ``tau_m`` (> 0, unit of
            ``dt``: ms by default). Each neuron's initial ``tau_m`` is drawn log-uniformly in
            ``[tau_mem_min, tau_mem_max]``; equal ends give one value. Default 10.0.
        tau_mem_max (float): upper end of that range (>= ``tau_mem_min``). Default 50.0.
        tau_adapt_min (float): lower end of the initial adaptation timescales ``tau_w`` (adLIF
            only; > 0, unit of ``dt``), drawn log-uniformly per neuron. Default 60.0.
        tau_adapt_max (float): upper end of that range (>= ``tau_adapt_min``). Default 240.0.
        adapt_a_min (float): lower end of the initial subthreshold coupling ``a`` (adLIF:
            ``w_t = kappa_w w_{t-1} + a v_{t-1} + b s_{t-1}``; dimensionless; ``a > 0`` can give
            damped resonance), drawn uniformly per neuron. Must be >= 0 for adLIF (the lower end
            of the stable interval, module docstring). Default 0.0.
        adapt_a_max (float): upper end of the initial ``a``. Default 1.0 ([0, 1] is the stable
            half of Bittar & Garner's [-1, 1], and the range of Baronig et al. 2024). For adLIF
            at most ``(1 - ADAPT_A_MARGIN)(1 + kappa_m)(1 + kappa_w) / g`` at ``tau_mem_min``,
            ``tau_adapt_min`` (:meth:`adapt_a_bound`: 18.75 at the SHD-Adding defaults, 3.40 with
            ``current_gain = "unit"``).
        adapt_b_min (float): lower end of the initial spike-triggered jump ``b`` of ``w`` (adLIF;
            membrane units per spike), drawn uniformly per neuron; >= 0 for adLIF. Default 0.0.
        adapt_b_max (float): upper end of the initial ``b``. Default 2.0 (the range [0, 2] is
            Bittar & Garner's). During training ``a`` and ``b`` are not held to their initial
            ranges, only to the stability constraint: where the layer uses them, ``a`` is
            clamped per neuron into ``[0, (1 - m)(1 + kappa_m)(1 + kappa_w) / g]`` of its current
            timescales and ``b`` at ``>= 0`` (``LIFLayer.adaptation``).
        learn_tau (bool): make ``tau_m`` (and, for adLIF, ``tau_w``) trainable per neuron,
            through ``tau = lo + (hi - lo) * sigmoid(theta)`` with ``lo = min / 10`` and
            ``hi = max * sqrt(10)`` of the initial range; each adds 1 to ``k_e``. Default True.
        learn_adapt (bool): make ``a`` and ``b`` trainable (adLIF; adds 2 to ``k_e``).
            Default True.
        surrogate (str): surrogate gradient of the spike: ``fast_sigmoid`` (default,
            ``scale / (slope |x| + 1)^2``), ``atan`` or ``superspike`` (unit area); see
            :mod:`elm_neuro.neurons.surrogate`.
        surrogate_slope (float): width parameter ``slope`` of the surrogate (> 0; per membrane
            unit, its argument being ``v - theta``). Default 25.0.
        surrogate_scale (float): gain ``scale`` of the surrogate gradient (> 0, dimensionless).
            Default 1.0.
        weight_scale (float): initial synapse scale: raw weights start
            ``N(0, (weight_scale / sqrt(K))^2)`` (their absolute value under Dale's law).
            Default 30.0 (30 / sqrt(300) = 1.73, close to the ELM neuron's effective synapse std
            of 1.83); 0.3 in the ICLR 2024 SNN.
        dale (bool): Dale's law: every neuron of the layer is excitatory or inhibitory and its
            outgoing synapses carry its sign, ``w_eff = relu(w) * sign(source)`` (input channels
            count as excitatory). Default False (signed weights).
        frac_inhibitory (float): share of inhibitory neurons under Dale's law, in [0, 1]:
            exactly ``round(frac_inhibitory * N)`` per layer, at seeded positions. Default 0.2.
            Not used without ``dale``.
        dropout_in (float): variational dropout rate in [0, 1) on the hidden layer's external
            input (one keep-mask per sample per ``forward`` call, training only); the leaky and
            spiking readouts apply it to the hidden spikes they read, and the flat name
            ``dropout_in`` of :class:`LIFNetworkConfig` sets the ELM readout's too. Default 0.0
            (the SHD-Adding presets: 0.2).
        dropout_rec (float): variational dropout rate in [0, 1) on the hidden layer's recurrent
            input (its own previous spikes). Default 0.0 (SHD-Adding presets: 0.2).
        engine (str): the time loop: ``step`` runs it step by step (the reference path),
            ``fused`` the whole sequence in one autograd Function
            (:mod:`elm_neuro.networks.engines.lif_sequence`; an error for a configuration it does
            not cover), ``auto`` (the default; configuration files without the field load as
            ``auto``) the fused engine wherever it covers the layer, else the per-step path
            (``LIFLayer.engine_reason`` says why). The leaky and the spiking readout follow the
            field of the configuration they are built from.

    ``ADAPT_A_MARGIN`` (a class constant, not a field): the relative margin ``m`` = 0.05 of the
    upper end of the stable interval of ``a`` (there the alternating mode of the linear step still
    shrinks by a factor of at least ``1 - m / 2`` per step; :mod:`elm_neuro.neurons.lif`).
    """

    ADAPT_A_MARGIN = 0.05  # a class attribute, not a field (no annotation)

    neuron: str = "lif"
    n_synapses: int = 300
    rho: float = 0.25
    wiring: str = "random"
    dt: float = D.BIN_MS
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
    adapt_a_min: float = 0.0
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
    dropout_in: float = 0.0
    dropout_rec: float = 0.0
    engine: str = "auto"

    def __post_init__(self) -> None:
        check_choice("neuron", self.neuron, L.NEURON_TYPES)
        check_int("n_synapses", self.n_synapses, 1)
        check_prob("rho", self.rho, hi_open=False)
        check_choice("wiring", self.wiring, WIRINGS)
        check_positive("dt", self.dt)
        check_positive("threshold", self.threshold)
        check_choice("reset", self.reset, L.RESETS)
        check_positive("reset_value", self.reset_value, allow_none=True)
        check_bool("detach_reset", self.detach_reset)
        check_int("refractory", self.refractory, 0)
        check_choice("current_gain", self.current_gain, L.CURRENT_GAINS)
        check_range("tau_mem_min", self.tau_mem_min, "tau_mem_max", self.tau_mem_max, positive=True)
        check_range("tau_adapt_min", self.tau_adapt_min, "tau_adapt_max", self.tau_adapt_max, positive=True)
        check_range("adapt_a_min", self.adapt_a_min, "adapt_a_max", self.adapt_a_max, positive=False)
        check_range("adapt_b_min", self.adapt_b_min, "adapt_b_max", self.adapt_b_max, positive=False)
        if self.adaptive:
            if _READING_STORED.get():
                self._move_adaptation_into_stable_range()
            else:
                self._check_adaptation_stable()
        check_bool("learn_tau", self.learn_tau)
        check_bool("learn_adapt", self.learn_adapt)
        check_surrogate(self.surrogate, self.surrogate_slope, self.surrogate_scale)
        check_positive("weight_scale", self.weight_scale)
        check_bool("dale", self.dale)
        check_prob("frac_inhibitory", self.frac_inhibitory, hi_open=False)
        check_prob("dropout_in", self.dropout_in, hi_open=True)
        check_prob("dropout_rec", self.dropout_rec, hi_open=True)
        check_choice("engine", self.engine, ENGINES)

    @classmethod
    def from_dict(cls, d: dict):
        """A stored configuration (``to_dict`` output, flat names or a mix); an adLIF initial
        range of ``a`` / ``b`` outside the stable interval is moved into it (module docstring)."""
        return _stored(lambda: super(LIFLayerConfig, cls).from_dict(d))

    @classmethod
    def make(cls, **fields):
        """The default configuration with ``fields`` applied, checked as the constructor does."""
        return super().from_dict(fields)

    @staticmethod
    def bin_width_taus(dt: float) -> dict:
        """Initial timescale fields for time steps of ``dt`` ms (the data's bin width): ``dt`` and
        the ranges ``tau_mem_*``, ``tau_adapt_*`` in ms, with ``learn_tau`` on.

        **(package choice)** Bittar & Garner 2022 give their initial ranges per time step (their
        public code draws the membrane decay in ``[exp(-1/5), exp(-1/25)]`` and the adaptation
        decay in ``[exp(-1/30), exp(-1/120)]``: ``tau_u`` 5..25 steps, ``tau_w`` 30..120 steps).
        This keeps those step counts at any bin width, ``tau = steps * max(dt,
        defaults.BIN_TAU_MIN_DT_MS)``: at 2 ms bins the class defaults (10..50 ms, 60..240 ms), at
        20 ms bins 100..500 ms and 600..2400 ms, so that coarse bins keep a memory of several
        steps to seconds instead of decaying within a step or two (25 ms at 20 ms bins is 1.25
        steps). Bins finer than 1 ms keep the 1 ms ranges in ms (a membrane of a fraction of a
        millisecond is not a neuron's). Every initial decay ``kappa = exp(-dt / tau)`` then lies
        in Bittar & Garner's interval for ``dt >= 1`` ms (closer to 1 below). Taus stay
        log-uniform per neuron (:mod:`elm_neuro.networks.lif_layer`; Bittar & Garner draw the
        decay uniformly) and learnable. The adLIF stability bound on ``a`` (:meth:`adapt_a_bound`)
        depends on the decays only, so it is the same at every ``dt >= 1`` ms (18.75 with the
        ``leak`` gain, 3.40 with ``unit``) and only grows below: the default ``a`` range [0, 1]
        stays stable.
        """
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt (the bin width in ms) must be a finite number > 0, got {dt!r}")
        step = max(float(dt), D.BIN_TAU_MIN_DT_MS)
        (m_lo, m_hi), (w_lo, w_hi) = D.BIN_TAU_MEM_STEPS, D.BIN_TAU_ADAPT_STEPS
        return dict(dt=float(dt), tau_mem_min=m_lo * step, tau_mem_max=m_hi * step, tau_adapt_min=w_lo * step,
                    tau_adapt_max=w_hi * step, learn_tau=True)

    @classmethod
    def for_bin_width(cls, dt: float, **fields):
        """The configuration with :meth:`bin_width_taus` of ``dt`` ms, then ``fields`` applied
        (checked as :meth:`make` checks them)."""
        return cls.make(**{**cls.bin_width_taus(dt), **fields})

    def adapt_a_bound(self) -> float:
        """Upper end of the stable initial ``a``: ``(1 - m)(1 + kappa_m)(1 + kappa_w) / g`` at the
        shortest initial timescales ``tau_mem_min``, ``tau_adapt_min`` (the bound grows with both
        decays, so this is its smallest value over the initial range)."""
        kappa_m = math.exp(-self.dt / self.tau_mem_min)
        kappa_w = math.exp(-self.dt / self.tau_adapt_min)
        gain = 1.0 if self.current_gain == "unit" else 1.0 - kappa_m
        return L.adaptation_bounds(kappa_m, kappa_w, gain, self.ADAPT_A_MARGIN)[1]

    def _check_adaptation_stable(self) -> None:
        where = "docs/design.md §10"
        if self.adapt_a_min < 0:
            raise ValueError(f"adapt_a_min must be >= 0 for adLIF, the lower end of the stable interval of the "
                             f"coupling a (a < 0 amplifies the membrane, and below -(1 - kappa_m)(1 - kappa_w) / g "
                             f"the neuron diverges without input; {where}), got {self.adapt_a_min}")
        bound = self.adapt_a_bound()
        if self.adapt_a_max > bound:
            raise ValueError(f"adapt_a_max must be <= {bound:.4g} for adLIF, the stable bound "
                             f"(1 - {self.ADAPT_A_MARGIN})(1 + kappa_m)(1 + kappa_w) / g of the coupling a at the "
                             f"shortest initial timescales (tau_mem_min={self.tau_mem_min:g}, "
                             f"tau_adapt_min={self.tau_adapt_min:g}, dt={self.dt:g}, "
                             f"current_gain={self.current_gain!r}; {where}), got {self.adapt_a_max}")
        if self.adapt_b_min < 0:
            raise ValueError(f"adapt_b_min must be >= 0 for adLIF (a spike raises the adaptation w; {where}), "
                             f"got {self.adapt_b_min}")

    def _move_adaptation_into_stable_range(self) -> None:
        """A stored configuration: its initial ranges clipped into the stable ones."""
        bound = self.adapt_a_bound()
        self.adapt_a_min = min(max(self.adapt_a_min, 0.0), bound)
        self.adapt_a_max = min(max(self.adapt_a_max, self.adapt_a_min), bound)
        self.adapt_b_min = max(self.adapt_b_min, 0.0)
        self.adapt_b_max = max(self.adapt_b_max, self.adapt_b_min)

    @property
    def adaptive(self) -> bool:
        return self.neuron == "adlif"

    @property
    def k(self) -> int:
        """Synapses per neuron ``K``."""
        return self.n_synapses

    @property
    def theta_reset(self) -> float:
        """Amount subtracted by the soft reset (``reset_value``, default the threshold)."""
        return float(self.threshold if self.reset_value is None else self.reset_value)

    def settings(self) -> L.LIFSettings:
        return L.LIFSettings(self.reset, self.surrogate, float(self.surrogate_slope), float(self.surrogate_scale),
                             self.detach_reset, self.refractory)

    def internal_params(self) -> int:
        """``k_e`` of one neuron: learnable tau_m (+ tau_w) and a, b (adLIF)."""
        ke = 0
        if self.learn_tau:
            ke += 2 if self.adaptive else 1
        if self.adaptive and self.learn_adapt:
            ke += 2
        return ke


def _spiking_elm_readout() -> ELMLayerConfig:
    # docs/design.md §3 readout with its memory timescales in ms at 2 ms bins (2..1000 ms = 1..500 steps).
    return elm_readout_config(tau_min=2.0, tau_max=1000.0, dt=D.BIN_MS)


_LAYER_FIELDS = tuple(f for f in LIFLayerConfig.__dataclass_fields__)
_SHARED = ("dt", "wiring", "dropout_in", "engine")
_READOUT_ALIASES = {"readout_d_m": "d_m", "readout_d_tree": "d_tree", "readout_d_brch": "d_brch",
                    "readout_input_scale": "input_scale", "readout_tau_min": "tau_min", "readout_tau_max": "tau_max"}


@dataclass
class LIFNetworkConfig(ConfigMixin):
    """A recurrent LIF / adLIF network on the ELM wiring; see :mod:`elm_neuro.networks.lif_network`.

    ``readout``: ``elm`` (``elm_readout`` then ``Linear(C, C)``, as the ELM Network), ``leaky``
    (C leaky integrators with time constant ``tau_out``) or ``spiking`` (C spiking neurons of the
    hidden layer's type, ``readout_rho`` of their synapses from each other, output spikes
    low-passed with ``tau_out``).
    """

    n_in: int = 700
    n: int = 227
    n_classes: int = 19
    embedding: str = "none"
    embed_scale: float = 1.0
    hidden: LIFLayerConfig = field(default_factory=LIFLayerConfig)
    readout: str = "elm"
    readout_rho: float = 0.0
    tau_out: float = 20.0
    elm_readout: ELMLayerConfig = field(default_factory=_spiking_elm_readout)
    seed: int = 0
    synapse_impl: str = "auto"

    FLAT = {**{k: ("hidden." + k,) for k in _LAYER_FIELDS if k not in _SHARED},
            **{k: ("hidden." + k, "elm_readout." + k) for k in _SHARED},
            **{k: ("elm_readout." + v,) for k, v in _READOUT_ALIASES.items()}}

    @classmethod
    def from_dict(cls, d: dict):
        """A stored configuration (nested or flat names); the hidden layer's adLIF initial ranges
        are read as :meth:`LIFLayerConfig.from_dict` reads them (moved into the stable ones)."""
        return _stored(lambda: super(LIFNetworkConfig, cls).from_dict(d))

    @classmethod
    def make(cls, **fields):
        """The default configuration with ``fields`` applied (own, dotted or flat names), checked
        as the constructor does (presets and ``--set`` come this way)."""
        return super().from_dict(fields)

    @staticmethod
    def bin_width_taus(dt: float) -> dict:
        """Flat fields that initialise every timescale of the network for bins of ``dt`` ms: the
        hidden layer's :meth:`LIFLayerConfig.bin_width_taus` (``dt``, ``tau_mem_*``,
        ``tau_adapt_*``, ``learn_tau``) and the ELM readout's memory range
        ``readout_tau_min`` / ``readout_tau_max`` = ``defaults.BIN_TAU_READOUT_STEPS`` (1..500,
        the ELM Network's range in steps, docs/design.md §7) times ``dt``, so that the readout of a
        spiking network remembers as long as the ELM Network's own readout at that bin width (the
        default 2..1000 ms is 1..500 steps only at 2 ms bins). ``tau_out`` (leaky and spiking
        readouts) is left as it is. Used by ``compare(..., bin_width_taus=True)``."""
        fields = LIFLayerConfig.bin_width_taus(dt)
        lo, hi = D.BIN_TAU_READOUT_STEPS
        return dict(fields, readout_tau_min=lo * fields["dt"], readout_tau_max=hi * fields["dt"])

    @classmethod
    def for_bin_width(cls, dt: float, **fields):
        """The configuration with :meth:`bin_width_taus` of ``dt`` ms, then ``fields`` (own,
        dotted or flat names) applied, checked as :meth:`make` checks them."""
        return cls.make(**{**cls.bin_width_taus(dt), **fields})

    def __post_init__(self) -> None:
        check_io_fields(self)
        if not isinstance(self.hidden, LIFLayerConfig):
            raise ValueError(f"hidden must be a LIFLayerConfig, got {type(self.hidden).__name__}")
        check_choice("readout", self.readout, READOUTS)
        check_prob("readout_rho", self.readout_rho, hi_open=False)
        check_positive("tau_out", self.tau_out)
        check_readout(self.elm_readout, "elm_readout", self.hidden.dt)
        check_choice("synapse_impl", self.synapse_impl, SYNAPSE_IMPLS)

    @property
    def family(self) -> str:
        """Registry family name: ``lif`` or ``adlif`` (the hidden neuron model)."""
        return self.hidden.neuron

    @property
    def adaptive(self) -> bool:
        return self.hidden.adaptive

    def internal_params(self) -> int:
        return self.hidden.internal_params()

    def readout_params(self) -> int:
        c, k = self.n_classes, self.hidden.n_synapses
        if self.readout == "elm":
            return c * self.elm_readout.params_per_neuron() + c * (c + 1)
        if self.readout == "leaky":
            return c * (k + 1)
        return c * (k + self.internal_params())

    def budget(self) -> Budget:
        """Exact trainable-parameter count, from the configuration alone."""
        ke = self.internal_params()
        p = self.n * (self.hidden.n_synapses + ke) + self.readout_params()
        return Budget(n=self.n, k_e=ke, k_c=self.hidden.n_synapses, p=p)
