"""Expressive Leaky Memory (ELM) neuron dynamics as small pure functions (docs/design.md §1).

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
TAU_SIGMOID_SPREAD = 10.0  # S in docs/design.md §1


class StepWeights(NamedTuple):
    """Per-forward-pass view of ``N`` neurons' parameters in the layout the step uses.

    Activity inside a step is *neuron-major*, ``[N, B, ...]``, so that every per-neuron matrix
    product is one batched matmul over the neuron axis (``baddbmm`` / ``bmm``).
    ``mlp_wT[i]`` is ``[N, in_i, out_i]`` (transposed nn.Linear weights), ``mlp_b[i]``
    ``[N, 1, out_i]``; the first layer reads ``[beta ; m~]`` (``in = d_tree + d_m``), the last
    writes ``z`` (``out = d_m``).
    """

    mlp_wT: Sequence[torch.Tensor]
    mlp_b: Sequence[torch.Tensor]
    w_yT: torch.Tensor  # [N, d_m, d_o] readout weights, transposed
    bias: torch.Tensor  # [N, 1, d_o] output bias
    kappa_m: torch.Tensor  # [N or 1, 1, d_m] memory decay
    gain: torch.Tensor  # [N or 1, 1, d_m] 1.7159 * (1 - kappa_lambda)  or  1.7159 * lambda (1 - kappa_m)
    kappa_b: Optional[float]  # branch-trace decay, None when off
    kappa_r: Optional[float]  # high-pass decay, None when off


class ELMState(NamedTuple):
    """Recurrent state of ``N`` neurons for ``B`` sequences (public layout: batch first).

    Inside :func:`elm_step` the same fields are neuron-major (``[N, B, ...]``).
    """

    m: torch.Tensor  # [B, N, d_m] memory
    b: Optional[torch.Tensor]  # [B, N, d_tree] branch trace, None when off
    h: Optional[torch.Tensor]  # [B, N, d_o] high-pass state, None when off
    y: torch.Tensor  # [B, N, d_o] last output (feeds the recurrent synapses)


class ELMStepOut(NamedTuple):
    y: torch.Tensor  # [N, B, d_o] output
    z: torch.Tensor  # [N, B, d_m] MLP output
    rho: torch.Tensor  # [N, B, d_o] readout before high-pass / bias / activation
    beta: torch.Tensor  # [N, B, d_tree] branch drive entering the MLP (after the trace)
    state: ELMState  # neuron-major


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


def memory_constants(tau_m: torch.Tensor, dt: float, memory_mode: str, lambda_value: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kappa_m, gain)`` with ``gain = 1 - exp(-lambda dt / tau)`` (ratio) or ``lambda (1 - kappa_m)``."""
    kappa_m = decay(tau_m, dt)
    if memory_mode == "ratio":
        gain = 1.0 - decay(tau_m / lambda_value, dt)  # exp(-lambda dt / tau)
    elif memory_mode == "legacy":
        gain = lambda_value * (1.0 - kappa_m)
    else:
        raise ValueError(f"memory_mode must be one of {MEMORY_MODES}, got {memory_mode!r}")
    return kappa_m, gain


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


def branch_trace(beta: torch.Tensor, b_prev: torch.Tensor, kappa_b: float) -> torch.Tensor:
    """``b_t = kappa_b * b_{t-1} + beta_t``."""
    return torch.add(beta, b_prev, alpha=kappa_b)


def mlp_activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu2":
        return F.relu(x).square()
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return F.silu(x)
    raise ValueError(f"mlp_act must be one of {MLP_ACTIVATIONS}, got {name!r}")


def neuron_mlp(x: torch.Tensor, weights_t: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], act: str
               ) -> torch.Tensor:
    """Per-neuron MLP on neuron-major ``x`` ``[N, B, in]``: layer ``i`` is
    ``h <- h @ W_i^T + b_i`` with neuron ``n``'s own weights (one ``baddbmm`` over neurons).

    The activation follows every layer but the last (whose output ``z`` is linear).
    """
    h = x
    last = len(weights_t) - 1
    for i, (w_t, b) in enumerate(zip(weights_t, biases)):
        h = torch.baddbmm(b, h, w_t)
        if i < last:
            h = mlp_activation(h, act)
    return h


def memory_update(m_decayed: torch.Tensor, z: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``m_t = m~ + gain * tanh(2 z / 3)`` (``gain`` already holds the factor 1.7159)."""
    return torch.addcmul(m_decayed, gain, torch.tanh(z * (2.0 / 3.0)))


def readout(m: torch.Tensor, w_y_t: torch.Tensor) -> torch.Tensor:
    """``rho[n, b, o] = sum_d m[n, b, d] * w_y[n, o, d]`` (``w_y_t`` is ``[N, d_m, d_o]``)."""
    return torch.bmm(m, w_y_t)


def high_pass(rho: torch.Tensor, h_prev: torch.Tensor, kappa_r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = kappa_r h_{t-1} + (1 - kappa_r) rho_t``; returns ``(rho_t - h_t, h_t)``."""
    h = torch.add(h_prev, rho - h_prev, alpha=1.0 - kappa_r)  # dtype-promoting (bf16 autocast safe)
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


def elm_step(beta: torch.Tensor, state: ELMState, w: StepWeights, mlp_act: str, output_act: str) -> ELMStepOut:
    """One time step of ``N`` neurons from the branch drive ``beta`` ``[N, B, d_tree]``.

    ``state`` fields and all outputs are neuron-major (``[N, B, ...]``).
    """
    b = None
    if w.kappa_b is not None:
        beta = b = branch_trace(beta, state.b, w.kappa_b)
    m_decayed = w.kappa_m * state.m
    z = neuron_mlp(torch.cat([beta, m_decayed], dim=-1), w.mlp_wT, w.mlp_b, mlp_act)
    m = memory_update(m_decayed, z, w.gain)
    rho = readout(m, w.w_yT)
    h = None
    p = rho
    if w.kappa_r is not None:
        p, h = high_pass(rho, state.h, w.kappa_r)
    y = output_activation(p + w.bias, output_act)
    return ELMStepOut(y=y, z=z, rho=rho, beta=beta, state=ELMState(m=m, b=b, h=h, y=y))
