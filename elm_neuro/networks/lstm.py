"""LSTM baseline (docs/design.md §10): one ``torch.nn.LSTM`` layer and a linear readout, sized to a budget.

    x_t --embed--> LSTM (hidden size n) --h_t--> Linear(n, C) --> logits_t

One step, gates in PyTorch's order (i, f, g, o), ``W_i* [4n, n_in]``, ``W_h* [4n, n]`` and two
bias vectors ``b_i*``, ``b_h*`` (PyTorch keeps both; together they act as one bias, but both are
trainable and counted)::

    [i, f, g, o] = W_i x_t + b_i + W_h h_{t-1} + b_h
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)
    logits_t = W_y h_t + b_y

Budget in the docs/design.md §3 vocabulary, a hidden unit being one "neuron": ``N = n``;
``k_c = 4 (n_in + n)`` (its input and recurrent weights, one per gate and source: the unit's
connections); ``k_e = 8`` (its four gates' two biases: everything else it owns);
``P = N (k_c + k_e) + C (n + 1)``. ``k_c`` grows with ``n`` (the LSTM is all-to-all), but ``P`` is
increasing in ``n``, so :func:`elm_neuro.networks.budget.closest_n` sizes it to any target.

The fast path is ``torch.nn.LSTM``; :meth:`LSTMNetwork.forward_reference` writes the equations
out with the same weights (tests check outputs and gradients agree). Dropout (``dropout_in``) is
variational on the embedded input, as in the ELM layer. Weights are drawn from a seeded generator
with PyTorch's default ``U(-1/sqrt(n), 1/sqrt(n))`` (LSTM) and ``U(-1/sqrt(n), 1/sqrt(n))``
(readout, nn.Linear's default), so construction never touches the global RNG.

Mixed precision: under CPU autocast to bfloat16 the LSTM runs in float32 (autocast off around it,
the readout still autocast) on CPUs whose oneDNN has no bfloat16 LSTM
(``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` false: no AVX-512 BF16, e.g. AVX2-only CPUs), where
PyTorch's bfloat16 LSTM fails with "could not create a primitive descriptor"; elsewhere autocast
applies as usual.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from elm_neuro.networks.budget import Budget
from elm_neuro.networks.checks import ConfigMixin, check_io_fields, check_prob
from elm_neuro.networks.common import NetworkOutput, PresetBuilt, check_input, embed, variational_mask


@dataclass
class LSTMConfig(ConfigMixin):
    """One-layer LSTM of hidden size ``n`` with a linear readout; see the module docstring."""

    n_in: int = 700
    n: int = 26
    n_classes: int = 19
    embedding: str = "none"
    embed_scale: float = 1.0
    dropout_in: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_io_fields(self)
        check_prob("dropout_in", self.dropout_in, hi_open=True)

    @property
    def family(self) -> str:
        return "lstm"

    def budget(self) -> Budget:
        """``k_c = 4 (n_in + n)``, ``k_e = 8``, ``P = n (k_c + k_e) + C (n + 1)``."""
        k_c = 4 * (self.n_in + self.n)
        k_e = 8
        p = self.n * (k_c + k_e) + self.n_classes * (self.n + 1)
        return Budget(n=self.n, k_e=k_e, k_c=k_c, p=p)



def _bf16_lstm_supported() -> bool:
    """Whether this CPU's oneDNN runs a bfloat16 LSTM (module docstring)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or a differently built torch: assume not
        return False


def _cpu_bf16_lstm_unsupported(x: torch.Tensor) -> bool:
    """True under CPU autocast to bfloat16 on a CPU without a bfloat16 LSTM."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not _bf16_lstm_supported())


class LSTMState(NamedTuple):
    h: torch.Tensor  # [B, n]
    c: torch.Tensor  # [B, n]


class LSTMNetwork(PresetBuilt, nn.Module):
    """One-layer LSTM and a linear readout; see the module docstring. Its regularizers are ``{}``
    and its traces ``{"hidden": {"h": [B, T, n]}}`` with ``record=True``."""

    CONFIG = LSTMConfig
    FAMILIES = ("lstm",)

    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # skip_init: no draw from the global RNG; every weight is drawn below from the seeded generator
        self.lstm = nn.LSTM(cfg.n_in, cfg.n, num_layers=1, batch_first=True, device="meta").to_empty(device="cpu")
        self.out = nn.utils.skip_init(nn.Linear, cfg.n, cfg.n_classes)
        g = torch.Generator().manual_seed(cfg.seed)
        bound = 1.0 / math.sqrt(cfg.n)
        with torch.no_grad():
            for p in list(self.lstm.parameters()) + list(self.out.parameters()):
                p.uniform_(-bound, bound, generator=g)

    def initial_state(self, batch: int, device=None) -> LSTMState:
        device = device if device is not None else self.out.weight.device
        z = torch.zeros(batch, self.cfg.n, device=device, dtype=self.out.weight.dtype)
        return LSTMState(z, z.clone())

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = embed(x, self.cfg.embedding, self.cfg.embed_scale, self.cfg.n_in, dtype=self.out.weight.dtype)
        check_input(x, self.cfg.n_in)
        if self.training:
            mask = variational_mask(x.shape[0], self.cfg.n_in, self.cfg.dropout_in, x)
            if mask is not None:
                x = x * mask[:, None, :]
        return x

    def forward(self, x: torch.Tensor, state: Optional[LSTMState] = None, record: bool = False) -> NetworkOutput:
        """``x``: ``[B, T, n_in]`` (integer tokens ``[B, T]`` with the one_hot embedding)."""
        x = self._prepare(x)
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        h0, c0 = state.h[None].contiguous(), state.c[None].contiguous()
        if _cpu_bf16_lstm_unsupported(x):
            with torch.autocast("cpu", enabled=False):
                hs, (h, c) = self.lstm(x.float(), (h0.float(), c0.float()))
        else:
            hs, (h, c) = self.lstm(x, (h0, c0))
        traces = {"hidden": {"h": hs.detach()}} if record else None
        return NetworkOutput(self.out(hs), LSTMState(h[0], c[0]), {}, traces)

    def forward_reference(self, x: torch.Tensor, state: Optional[LSTMState] = None) -> NetworkOutput:
        """The LSTM equations written out, step by step, with the same weights (slow; for tests)."""
        x = self._prepare(x)
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        n = self.cfg.n
        w_i, w_h = self.lstm.weight_ih_l0, self.lstm.weight_hh_l0
        b_i, b_h = self.lstm.bias_ih_l0, self.lstm.bias_hh_l0
        h, c = state
        hs = []
        for x_t in x.unbind(1):
            z = x_t @ w_i.t() + b_i + h @ w_h.t() + b_h
            i, f, gg, o = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        hs = torch.stack(hs, dim=1)
        return NetworkOutput(self.out(hs), LSTMState(h, c), {}, None)
