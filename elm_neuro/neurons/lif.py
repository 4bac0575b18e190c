"""Leaky integrate-and-fire (LIF) and adaptive LIF (adLIF) dynamics as small pure functions.

Every function works on a *population* of ``N`` neurons at once: per-neuron constants have shape
``[N]``, activity tensors are batch first, ``[B, N]``. Time is discrete with step ``dt``; every
timescale is in the unit of ``dt`` (milliseconds in the LIF network presets, where ``dt = 2`` ms
is the SHD-Adding bin).

One time step of neuron ``n`` with synaptic input current ``I_t`` (current-based synapses: the
weighted sum of the presynaptic activity is injected as a current, see
:mod:`elm_neuro.networks.lif_network`)::

    r_t   = sg(s_{t-1})                                   reset signal (sg: stop-gradient, optional)
    q_t   = 1[ref_{t-1} > 0]                              refractory flag (refractory period R > 0)
    w_t   = kappa_w w_{t-1} + a v_{t-1} + b s_{t-1}        adaptation (adLIF only; w = 0 for LIF)
    D_t   = (1 - q_t) (I_t - w_t)                         drive, blocked while refractory
    v_t   = kappa_m v_{t-1}       + g D_t - theta_r r_t   "subtract" (soft) reset
    v_t   = kappa_m v_{t-1} (1-r_t) + g D_t               "zero" (hard) reset
    s_t   = H(v_t - theta) (1 - q_t)                      spike; surrogate gradient in backward
    ref_t = R s_t + (1 - s_t) max(ref_{t-1} - 1, 0)        refractory counter

with ``kappa_m = exp(-dt / tau_m)``, ``kappa_w = exp(-dt / tau_w)`` (tau clamped at 1e-6), input gain
``g = 1`` ("unit", the snntorch convention) or ``g = 1 - kappa_m`` ("leak", the membrane is a
low-pass filter of the current, the convention of Bittar & Garner 2022), threshold ``theta``
and soft-reset amount ``theta_r`` (= ``theta`` unless set; 0.9 in the ICLR 2024 SNN).

Conventions (chosen to coincide with ``snntorch.Leaky`` / ``snntorch.RLeaky`` 1.0, which the
tests check to the last bit):

- ``v_t`` is the membrane **before** the reset caused by its own spike ``s_t``: the reset is
  applied one step later, together with the new input ("reset_delay" in snntorch). The
  subtracted amount is not decayed: after a spike at ``t`` the membrane at ``t+1`` is
  ``kappa_m v_t - theta_r + g D_{t+1}``. (Bittar & Garner's code subtracts before the leak,
  ``kappa_m (v_{t-1} - s_{t-1})``; the two differ by a factor ``kappa_m`` on the reset.)
- snntorch's reset signal is detached from the graph; ``detach_reset=True`` (default) does the
  same, ``False`` lets the gradient flow through the reset as well.
- Hard reset: ``snntorch.Leaky(reset_mechanism="zero")`` equals ``reset="zero"`` with
  ``R = 0`` (the membrane restarts from 0 and takes the new input at once);
  ``snntorch.RLeaky(reset_mechanism="zero")`` multiplies the whole update, input included, by
  ``1 - r_t``, which equals ``reset="zero"`` with a refractory period ``R = 1``.
- A spike needs ``v_t - theta > 0`` strictly.

Adaptation (adLIF, Bittar & Garner 2022, "A surrogate gradient spiking baseline for speech
command recognition", in the form of their public code): ``w`` follows the membrane with
coupling ``a`` (sub-threshold adaptation) and jumps by ``b`` after each spike (spike-frequency
adaptation); ``v_{t-1}`` is the pre-reset membrane, as there.

Stability of the adaptation (:func:`adaptation_bounds`, :func:`constrain_adaptation`). Without
input, spikes and refractoriness the step is linear, ``[v_t; w_t] = A [v_{t-1}; w_{t-1}]`` with::

    A = [[kappa_m - g a, -g kappa_w],
         [a,              kappa_w  ]],   trace = kappa_m + kappa_w - g a,   det = kappa_m kappa_w

(``w_t = kappa_w w_{t-1} + a v_{t-1}``, ``v_t = kappa_m v_{t-1} - g w_t``). By the Jury criterion
both eigenvalues lie inside the unit circle iff ``det < 1`` (always: both decays are < 1) and
``|trace| < 1 + det``, that is iff::

    L = -(1 - kappa_m)(1 - kappa_w) / g  <  a  <  U = (1 + kappa_m)(1 + kappa_w) / g

Outside, the membrane grows geometrically even without input (``a`` = -0.9, inside Bittar &
Garner's initial range [-1, 1], with ``tau_m`` = 10 ms, ``tau_w`` = 60 ms, ``dt`` = 2 ms and
``g = 1 - kappa_m``: a factor 1.37 per step, beyond float32 after about 280 steps, so the first
loss or gradient is NaN). ``g a`` inside
``((sqrt(kappa_m) - sqrt(kappa_w))^2, (sqrt(kappa_m) + sqrt(kappa_w))^2)`` gives complex
eigenvalues: damped sub-threshold resonance, which needs ``a > 0``; ``a < 0`` amplifies the
membrane. **(package choice)** The coupling used is ``a`` clamped into ``[0, (1 - m) U]`` per
neuron, ``m`` the margin (``LIFLayerConfig.ADAPT_A_MARGIN`` = 0.05), from that neuron's current
``kappa_m``, ``kappa_w`` and ``g``:

- the lower end 0 keeps the margin ``|L|`` from the lower bound, and on ``[0, 2 (kappa_m +
  kappa_w) / g]`` (``= [0, U + L]``) the spectral radius is at most ``max(kappa_m, kappa_w)``: the
  coupling never slows the decay of the neuron beyond that of its slower variable. (The
  negative sliver ``(L, 0)`` only adds a near-integrating mode, ``L`` being -0.008 .. -0.03 at the
  SHD-Adding defaults.) ``a >= 0`` is also the range of Baronig et al. 2024 ("Advancing
  spatio-temporal processing in spiking neural networks through adaptation", public code: ``a``
  in [0, 1] times ``q (1 - kappa_w)``, ``q`` = 120, ``b`` in [0, 2], both clamped after each step);
- the upper end keeps ``1 + trace + det >= m (1 + kappa_m)(1 + kappa_w)``, so the spectral
  radius is at most ``1 - m (1 + kappa_m)(1 + kappa_w) / 2`` (<= 0.975) on the alternating mode.
  ``U >= 1 / g >= 1``: the bound matters only for coarse steps (``dt`` near the timescales).

``b`` is clamped at ``b >= 0`` (a spike raises ``w``, as in both papers; it does not enter
``A``). The clamp acts where the parameters are used, so both engines see it, learnable
timescales move the bound with them, and a stored value outside (an old checkpoint, or an
optimiser step past the bound) is used at the bound; there its gradient is zero, as with the
forward clamp of Bittar & Garner's code.

Learnable timescales use the sigmoid map of the ELM neuron, ``tau = lo + (hi - lo) sigmoid(theta)``
with ``lo = tau_min / 10`` and ``hi = tau_max * sqrt(10)`` around the initial range
``[tau_min, tau_max]`` (:func:`elm_neuro.neurons.elm.tau_bounds`): no clamp, so the gradient
never stops abruptly at a bound, and the initial values sit far from the saturated ends.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from elm_neuro.neurons.elm import decay
from elm_neuro.neurons.surrogate import spike

NEURON_TYPES = ("lif", "adlif")
RESETS = ("subtract", "zero")
CURRENT_GAINS = ("unit", "leak")


class LIFParams(NamedTuple):
    """Per-neuron constants of one forward pass (derived from the trainable parameters)."""

    kappa_m: torch.Tensor  # [N] membrane decay exp(-dt / tau_m)
    gain: Optional[torch.Tensor]  # [N] input gain g: ones ("unit") or 1 - kappa_m ("leak"); None = 1
    threshold: float  # theta
    reset_value: float  # theta_r, amount subtracted by the soft reset
    kappa_w: Optional[torch.Tensor] = None  # [N] adaptation decay (adLIF), None for LIF
    a: Optional[torch.Tensor] = None  # [N] membrane -> adaptation coupling (adLIF)
    b: Optional[torch.Tensor] = None  # [N] spike-triggered adaptation jump (adLIF)


class LIFSettings(NamedTuple):
    """Static (non-tensor) choices of the step."""

    reset: str = "subtract"  # "subtract" | "zero"
    surrogate: str = "fast_sigmoid"
    slope: float = 25.0
    scale: float = 1.0
    detach_reset: bool = True
    refractory: int = 0  # R, steps


class LIFState(NamedTuple):
    """Recurrent state of ``N`` neurons for a batch of ``B`` sequences (all ``[B, N]``)."""

    v: torch.Tensor  # membrane before the reset of its own spike
    s: torch.Tensor  # spikes of the last step
    w: Optional[torch.Tensor] = None  # adaptation (adLIF), None for LIF
    ref: Optional[torch.Tensor] = None  # refractory steps left (float), None when R = 0


class LIFStepOut(NamedTuple):
    s: torch.Tensor  # [B, N] spikes
    v: torch.Tensor  # [B, N] membrane (pre-reset)
    w: Optional[torch.Tensor]  # [B, N] adaptation or None
    state: LIFState


# --------------------------------------------------------------------------- constants
def membrane_constants(tau_m: torch.Tensor, dt: float, current_gain: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kappa_m, g)``: ``kappa_m = exp(-dt / tau_m)``; ``g = 1`` ("unit") or ``1 - kappa_m`` ("leak")."""
    kappa = decay(tau_m, dt)
    if current_gain == "unit":
        return kappa, torch.ones_like(kappa)
    if current_gain == "leak":
        return kappa, 1.0 - kappa
    raise ValueError(f"current_gain must be one of {CURRENT_GAINS}, got {current_gain!r}")


def initial_state(batch: int, n: int, adaptive: bool, refractory: int, device=None,
                  dtype=torch.float32) -> LIFState:
    """All-zero state: membrane, last spikes, adaptation (adLIF) and refractory counter (R > 0)."""

    def z():
        return torch.zeros(batch, n, device=device, dtype=dtype)

    return LIFState(v=z(), s=z(), w=z() if adaptive else None, ref=z() if refractory > 0 else None)


def adaptation_bounds(kappa_m, kappa_w, gain, margin: float):
    """``(0, a_max)``: the interval the coupling ``a`` is clamped into (module docstring),
    ``a_max = (1 - margin)(1 + kappa_m)(1 + kappa_w) / g`` (``gain=None`` means ``g = 1``).

    Works on tensors (per neuron) and on floats (configuration checks); ``a_max`` is ``inf`` where
    ``g = 0`` (a float ``g <= 0``; a tensor divides by zero).
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must lie in [0, 1), got {margin!r}")
    num = (1.0 - margin) * (1.0 + kappa_m) * (1.0 + kappa_w)
    if gain is None:
        return 0.0, num
    if isinstance(gain, torch.Tensor):
        return 0.0, num / gain
    return 0.0, (num / gain if gain > 0 else float("inf"))


def constrain_adaptation(a: torch.Tensor, b: torch.Tensor, kappa_m: torch.Tensor, kappa_w: torch.Tensor,
                         gain: Optional[torch.Tensor], margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` as the step uses them: ``a`` clamped into ``[0, a_max]`` of
    :func:`adaptation_bounds` per neuron, ``b`` at ``>= 0``. Inside, both are the parameters
    themselves (gradient 1); at a bound, the bound (``a_max`` carries the gradient of the
    timescales)."""
    _, a_max = adaptation_bounds(kappa_m, kappa_w, gain, margin)
    return torch.minimum(a.clamp_min(0.0), a_max.to(a.dtype)), b.clamp_min(0.0)


def linear_spectral_radius(kappa_m: torch.Tensor, kappa_w: torch.Tensor, gain: Optional[torch.Tensor],
                           a: torch.Tensor) -> torch.Tensor:
    """``[N]`` spectral radius of the linear adLIF step ``A`` (module docstring), in float64."""
    km, kw, a = kappa_m.double(), kappa_w.double(), a.double()
    g = torch.ones_like(km) if gain is None else gain.double()
    top = torch.stack([km - g * a, -g * kw], -1)
    bottom = torch.stack([a, kw], -1)
    return torch.linalg.eigvals(torch.stack([top, bottom], -2)).abs().amax(-1)


# --------------------------------------------------------------------------- step pieces
def adaptation_update(w_prev: torch.Tensor, v_prev: torch.Tensor, s_prev: torch.Tensor,
                      kappa_w: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``w_t = kappa_w w_{t-1} + a v_{t-1} + b s_{t-1}``."""
    return kappa_w * w_prev + a * v_prev + b * s_prev


def membrane_update(v_prev: torch.Tensor, drive: torch.Tensor, reset_sig: torch.Tensor,
                    kappa_m: torch.Tensor, gain: torch.Tensor, reset: str, reset_value: float) -> torch.Tensor:
    """Leak, input and (delayed) reset.

    ``subtract``: ``v_t = kappa_m v_{t-1} + g D_t - theta_r r_t``;
    ``zero``: ``v_t = kappa_m v_{t-1} (1 - r_t) + g D_t``. ``gain=None`` means ``g = 1`` (a layer
    may fold ``g`` into its synaptic weights beforehand).
    """
    if gain is not None:
        drive = gain * drive
    if reset == "subtract":
        return kappa_m * v_prev + drive - reset_value * reset_sig
    if reset == "zero":
        return kappa_m * v_prev * (1.0 - reset_sig) + drive
    raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


def fire(v: torch.Tensor, threshold: float, surrogate: str, slope: float, scale: float) -> torch.Tensor:
    """``s_t = H(v_t - theta)`` with the named surrogate gradient."""
    return spike(v - threshold, surrogate, slope, scale)


def refractory_update(ref_prev: torch.Tensor, s: torch.Tensor, refractory: int) -> torch.Tensor:
    """``ref_t = R`` after a spike, else ``max(ref_{t-1} - 1, 0)`` (no gradient: a counter)."""
    return torch.where(s.detach() > 0, torch.full_like(ref_prev, float(refractory)), (ref_prev - 1.0).clamp_min(0.0))


def lif_step(current: torch.Tensor, state: LIFState, params: LIFParams, settings: LIFSettings) -> LIFStepOut:
    """One step of ``N`` LIF (``params.kappa_w is None``) or adLIF neurons; see the module docstring.

    ``current``: ``[B, N]`` synaptic input current ``I_t``.
    """
    r = state.s.detach() if settings.detach_reset else state.s
    drive = current
    w = None
    if params.kappa_w is not None:
        w = adaptation_update(state.w, state.v, state.s, params.kappa_w, params.a, params.b)
        drive = drive - w
    q = None
    if settings.refractory > 0:
        q = (state.ref > 0).to(current.dtype)
        drive = drive * (1.0 - q)
    v = membrane_update(state.v, drive, r, params.kappa_m, params.gain, settings.reset, params.reset_value)
    s = fire(v, params.threshold, settings.surrogate, settings.slope, settings.scale)
    ref = None
    if q is not None:
        s = s * (1.0 - q)
        ref = refractory_update(state.ref, s, settings.refractory)
    return LIFStepOut(s=s, v=v, w=w, state=LIFState(v=v, s=s, w=w, ref=ref))


# --------------------------------------------------------------------------- Dale's law
def ei_signs(n: int, frac_inhibitory: float, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` float signs: exactly ``round(frac_inhibitory * n)`` neurons are inhibitory (-1), at
    positions drawn from ``generator``; the others are excitatory (+1)."""
    if not 0.0 <= frac_inhibitory <= 1.0:
        raise ValueError(f"frac_inhibitory must lie in [0, 1], got {frac_inhibitory!r}")
    n_inh = int(round(frac_inhibitory * n))
    signs = torch.ones(n)
    signs[torch.randperm(n, generator=generator)[:n_inh]] = -1.0
    return signs


def dale_weights(w_raw: torch.Tensor, presyn_sign: torch.Tensor) -> torch.Tensor:
    """``relu(w_raw) * sign(presynaptic neuron)``: the sign of every synapse is that of its source,
    whatever value the optimiser gives the raw weight (Dale's law)."""
    return F.relu(w_raw) * presyn_sign
