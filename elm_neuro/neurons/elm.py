"""Expressive Leaky Memory (ELM) neuron dynamics as small pure functions (SPEC section 1).

Every function works on a *population* of ``N`` neurons at once: parameters carry a leading
neuron axis, activity tensors are batch first, ``[B, N, ...]``. A single neuron is ``N = 1``.

One time step of neuron ``n`` (all symbols per neuron; ``u_t`` in R^K is its synaptic input):

    beta_t[k] = s_in * sum_j w_s[k*d_brch + j] * u_t[k*d_brch + j]       branch integration
    b_t       = kappa_b * b_{t-1} + beta_t   (optional branch trace; replaces beta_t)
    m~        = kappa_m * m_{t-1}                                           decayed memory
    z_t       = MLP([beta_t ; m~])               L hidden layers, act relu^2 | relu | silu
    dm_t      = 1.7159 * tanh(2 z_t / 3)                                    bounded update
    m_t       = m~ + (1 - kappa_lambda) * dm_t,  kappa_lambda = exp(-lambda dt / tau_m)  (ratio)
    m_t       = m~ + lambda (1 - kappa_m) * dm_t                                      (legacy)
    rho_t     = w_y . m_t                                                   readout, no bias
    h_t       = kappa_r h_{t-1} + (1 - kappa_r) rho_t,  p_t = rho_t - h_t   (optional high-pass)
    y_t       = act(p_t + b)                     act identity | relu | spike

with ``kappa_x = exp(-dt / tau_x)`` and every tau clamped at 1e-6 before dividing.

Timescales ``tau_m`` are log-spaced from ``tau_min`` to ``tau_max`` (ends included), equal for
all neurons, fixed by default. Learnable timescales are ``tau = lo + (hi - lo) * sigmoid(theta)``
with ``lo = tau_min / S`` and ``hi = tau_max * sqrt(S)`` (S = 10), so that the end units start
away from the saturated part of the sigmoid.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from elm_neuro.neurons.surrogate import spike

# Option lists (validated by the layer configuration).
MEMORY_MODES = ("ratio", "legacy")
MLP_ACTIVATIONS = ("relu2", "relu", "silu")
OUTPUT_ACTIVATIONS = ("identity", "relu", "spike")
SYNAPSE_RECTIFICATIONS = ("none", "relu", "abs", "exp")

UPDATE_SCALE = 1.7159  # LeCun's scaled tanh: 1.7159 * tanh(2x/3)
TAU_CLAMP = 1e-6
TAU_SIGMOID_SPREAD = 10.0  # S in SPEC 1


class ELMParams(NamedTuple):
    """Trainable parameters of ``N`` neurons, stacked on a leading neuron axis.

    ``mlp_w[i]`` is ``[N, out_i, in_i]`` and ``mlp_b[i]`` is ``[N, out_i]`` (nn.Linear layout).
    The last MLP layer has ``out = d_m``; the first has ``in = d_tree + d_m``.
    """

    w_s: torch.Tensor  # [N, K] synapse weights (before rectification)
    mlp_w: Sequence[torch.Tensor]
    mlp_b: Sequence[torch.Tensor]
    w_y: torch.Tensor  # [N, d_o, d_m] readout weights
    bias: torch.Tensor  # [N, d_o] output bias


class ELMConstants(NamedTuple):
    """Per-step decay factors derived from the timescales (recomputed each forward pass)."""

    kappa_m: torch.Tensor  # [N, d_m] or [1, d_m]
    gain: torch.Tensor  # [N, d_m] or [1, d_m]: (1 - kappa_lambda) or lambda * (1 - kappa_m)
    kappa_b: Optional[float]  # branch-trace decay, None when off
    kappa_r: Optional[float]  # high-pass decay, None when off


class ELMState(NamedTuple):
    """Recurrent state of ``N`` neurons for a batch of ``B`` sequences."""

    m: torch.Tensor  # [B, N, d_m] memory
    b: Optional[torch.Tensor]  # [B, N, d_tree] branch trace, None when off
    h: Optional[torch.Tensor]  # [B, N, d_o] high-pass state, None when off
    y: torch.Tensor  # [B, N, d_o] last output (feeds the recurrent synapses)


class ELMStepOut(NamedTuple):
    y: torch.Tensor  # [B, N, d_o] output
    z: torch.Tensor  # [B, N, d_m] MLP output
    rho: torch.Tensor  # [B, N, d_o] readout before high-pass / bias / activation
    beta: torch.Tensor  # [B, N, d_tree] branch drive entering the MLP (after the trace)
    state: ELMState


# --------------------------------------------------------------------------- timescales
def decay(tau: torch.Tensor | float, dt: float) -> torch.Tensor | float:
    """``exp(-dt / max(tau, 1e-6))``."""
    if isinstance(tau, torch.Tensor):
        return torch.exp(-dt / tau.clamp_min(TAU_CLAMP))
    return math.exp(-dt / max(float(tau), TAU_CLAMP))


def log_spaced_taus(tau_min: float, tau_max: float, d_m: int) -> torch.Tensor:
    """``d_m`` timescales log-spaced from ``tau_min`` to ``tau_max`` inclusive (float32)."""
    if d_m == 1:
        return torch.tensor([float(tau_min)])
    exps = torch.linspace(math.log(tau_min), math.log(tau_max), d_m, dtype=torch.float64)
    return torch.exp(exps).to(torch.float32)


def tau_bounds(tau_min: float, tau_max: float, spread: float = TAU_SIGMOID_SPREAD) -> tuple[float, float]:
    """``(lo, hi) = (tau_min / S, tau_max * sqrt(S))`` of the learnable-tau sigmoid."""
    return tau_min / spread, tau_max * math.sqrt(spread)


def tau_to_theta(tau: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Inverse of :func:`theta_to_tau`."""
    frac = ((tau.double() - lo) / (hi - lo)).clamp(1e-12, 1 - 1e-12)
    return torch.log(frac / (1 - frac)).to(torch.float32)


def theta_to_tau(theta: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``tau = lo + (hi - lo) * sigmoid(theta)``."""
    return lo + (hi - lo) * torch.sigmoid(theta)


def memory_constants(
    tau_m: torch.Tensor,
    dt: float,
    memory_mode: str,
    lambda_value: float,
    tau_b: Optional[float],
    tau_r: Optional[float],
) -> ELMConstants:
    """Decay factors and update gain for the given timescales (tau_b / tau_r None = off)."""
    kappa_m = decay(tau_m, dt)
    if memory_mode == "ratio":
        gain = 1.0 - decay(tau_m / lambda_value, dt)  # exp(-lambda dt / tau)
    elif memory_mode == "legacy":
        gain = lambda_value * (1.0 - kappa_m)
    else:
        raise ValueError(f"memory_mode must be one of {MEMORY_MODES}, got {memory_mode!r}")
    kappa_b = None if tau_b is None else decay(tau_b, dt)
    kappa_r = None if tau_r is None else decay(tau_r, dt)
    return ELMConstants(kappa_m, gain, kappa_b, kappa_r)


# --------------------------------------------------------------------------- step pieces
def rectify_synapses(w_s: torch.Tensor, mode: str) -> torch.Tensor:
    """Synapse weights as used: signed (``none``) or rectified by relu / abs / exp."""
    if mode == "none":
        return w_s
    if mode == "relu":
        return F.relu(w_s)
    if mode == "abs":
        return w_s.abs()
    if mode == "exp":
        return torch.exp(w_s)
    raise ValueError(f"synapse_rect must be one of {SYNAPSE_RECTIFICATIONS}, got {mode!r}")


def integrate_branches(u: torch.Tensor, w_s: torch.Tensor, d_tree: int, input_scale: float) -> torch.Tensor:
    """``beta[b, n, k] = s_in * sum_j w_s[n, k*d_brch + j] * u[b, n, k*d_brch + j]``.

    ``u`` is ``[B, N, K]`` (one value per synapse), ``w_s`` the (rectified) ``[N, K]`` weights.
    """
    bsz, n, k = u.shape
    return input_scale * (u * w_s).view(bsz, n, d_tree, k // d_tree).sum(-1)


def branch_trace(beta: torch.Tensor, b_prev: torch.Tensor, kappa_b: float) -> torch.Tensor:
    """``b_t = kappa_b * b_{t-1} + beta_t``."""
    return kappa_b * b_prev + beta


def mlp_activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu2":
        return F.relu(x).square()
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return F.silu(x)
    raise ValueError(f"mlp_act must be one of {MLP_ACTIVATIONS}, got {name!r}")


def neuron_mlp(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], act: str
) -> torch.Tensor:
    """Per-neuron MLP: ``x`` ``[B, N, in]``, layer ``i`` maps with its own ``[N, out, in]`` weights.

    The activation follows every layer but the last (whose output ``z`` is linear).
    """
    h = x
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = torch.einsum("bni,noi->bno", h, w) + b
        if i < last:
            h = mlp_activation(h, act)
    return h


def memory_update(m_decayed: torch.Tensor, z: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``m_t = m~ + gain * 1.7159 * tanh(2 z / 3)``."""
    return m_decayed + gain * (UPDATE_SCALE * torch.tanh(z * (2.0 / 3.0)))


def readout(m: torch.Tensor, w_y: torch.Tensor) -> torch.Tensor:
    """``rho[b, n, o] = sum_d w_y[n, o, d] * m[b, n, d]``."""
    return torch.einsum("bnd,nod->bno", m, w_y)


def high_pass(rho: torch.Tensor, h_prev: torch.Tensor, kappa_r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = kappa_r h_{t-1} + (1 - kappa_r) rho_t``; returns ``(rho_t - h_t, h_t)``."""
    h = kappa_r * h_prev + (1.0 - kappa_r) * rho
    return rho - h, h


def output_activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "identity":
        return x
    if name == "relu":
        return F.relu(x)
    if name == "spike":
        return spike(x, "fast_sigmoid", 100.0)
    raise ValueError(f"output_act must be one of {OUTPUT_ACTIVATIONS}, got {name!r}")


def initial_state(
    batch: int, n: int, d_m: int, d_o: int, d_tree: int, branch_trace_on: bool, high_pass_on: bool,
    device=None, dtype=torch.float32,
) -> ELMState:
    """All-zero state (memory, traces and last output)."""

    def z(*shape):
        return torch.zeros(*shape, device=device, dtype=dtype)

    return ELMState(
        m=z(batch, n, d_m),
        b=z(batch, n, d_tree) if branch_trace_on else None,
        h=z(batch, n, d_o) if high_pass_on else None,
        y=z(batch, n, d_o),
    )


def elm_step(
    beta: torch.Tensor,
    state: ELMState,
    params: ELMParams,
    consts: ELMConstants,
    mlp_act: str,
    output_act: str,
) -> ELMStepOut:
    """One time step from the branch drive ``beta`` ``[B, N, d_tree]`` (already integrated)."""
    b = None
    if consts.kappa_b is not None:
        beta = branch_trace(beta, state.b, consts.kappa_b)
        b = beta
    m_decayed = consts.kappa_m * state.m
    z = neuron_mlp(torch.cat([beta, m_decayed], dim=-1), params.mlp_w, params.mlp_b, mlp_act)
    m = memory_update(m_decayed, z, consts.gain)
    rho = readout(m, params.w_y)
    h = None
    p = rho
    if consts.kappa_r is not None:
        p, h = high_pass(rho, state.h, consts.kappa_r)
    y = output_activation(p + params.bias, output_act)
    return ELMStepOut(y=y, z=z, rho=rho, beta=beta, state=ELMState(m=m, b=b, h=h, y=y))
