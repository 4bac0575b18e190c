"""Recurrent spiking networks of LIF / adaptive-LIF neurons on the ELM wiring (docs/design.md §2, 10).

The network mirrors :class:`elm_neuro.networks.elm_network.ELMNetwork` so that, in an
ELM-vs-LIF comparison, the neuron type is the only difference:

    x_t --embed--> hidden spiking layer (N LIF/adLIF neurons, K synapses each, recurrent
        fraction rho, the connectome of :func:`elm_neuro.wiring.connectome.make_connectome`)
        --s_t--> readout --> logits_t

The hidden layer is a :class:`~elm_neuro.networks.lif_layer.LIFLayer`; configuration in
:mod:`elm_neuro.networks.lif_config`. Readouts (``readout``):

- ``elm``: the readout ELM layer of the ELM Network (``elm_readout``: C ELM neurons, d_m 3,
  affine MLP, identity output, reading the hidden spikes of the same step through
  K = d_tree * d_brch synapses), then ``Linear(C, C)``; the default, so that LIF and ELM
  networks share their readout.
- ``leaky``: C non-spiking leaky integrators, each with K synapses on the hidden spikes of the
  same step (rho 0) and a bias: ``o_t = kappa_o o_{t-1} + (1 - kappa_o) (sum_k w a_t[C] + b)``;
  ``logits_t = o_t``, ``kappa_o = exp(-dt / tau_out)``.
- ``spiking``: the ICLR 2024 SNN (docs/design.md §10): C spiking output neurons of the same type, K synapses
  each, a share ``readout_rho`` from the other output neurons (step t-1), the rest from the hidden
  neurons (same step), Dale's law as in the hidden layer; their spikes are low-pass filtered,
  ``o_t = kappa_o o_{t-1} + s_t`` (unnormalised, so that a neuron firing every step reaches a
  logit of ``1 / (1 - kappa_o)``), and ``logits_t = o_t``.

``forward(x, state=None, record=False)`` returns :class:`~elm_neuro.networks.common.NetworkOutput`
with ``logits`` ``[B, T, C]``, the final ``state`` (pass it back in to continue a sequence),
``regularizers`` ``{"spike": mean spike rate over batch, time and all spiking neurons (hidden, and
the output neurons of the spiking readout)}`` (the trainer weighs it as the L1 spike penalty;
spikes are non-negative so the mean is the L1 norm per element) and, with ``record=True``,
``traces`` ``{"hidden": {"membrane", "spikes", "current", "adaptation" (adLIF)}, "readout": {...}}``,
each ``[B, T, N]``.

Engines: the spiking layers (hidden, spiking readout) run their whole time loop in the fused LIF
engine and the ELM readout in the fused ELM engine (``engine = "auto"``, the default;
``layer.engine_reason`` says when a layer steps instead); the leaky readout and the low-pass of
the output spikes run as one filter Function. ``engine = "step"`` (a flat name: hidden layer and
ELM readout) runs every part step by step, the reference the engines are tested against.

Units: ``dt`` is the duration of one time step and every timescale (``tau_mem_*``,
``tau_adapt_*``, ``tau_out``, ``readout_tau_*``) is in the same unit. The presets use
milliseconds with ``dt = 2`` (2 ms bins of SHD / SHD-Adding), so ``tau = 25`` means 25 ms =
12.5 steps, and the ELM readout's memory timescales 2..1000 ms equal the ELM Network's 1..500
steps.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn

from elm_neuro.networks.common import NetworkOutput, PresetBuilt, embed, leaky_integrate, variational_mask
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.networks.engines.leaky_scan import leaky_scan
from elm_neuro.networks.lif_config import LIFNetworkConfig
from elm_neuro.networks.lif_layer import LeakyReadout, LIFLayer
from elm_neuro.neurons import lif as L
from elm_neuro.neurons.elm import decay


class SpikingReadoutState(NamedTuple):
    neurons: L.LIFState
    filtered: torch.Tensor  # [B, C] low-passed output spikes (= last logits)


class LIFNetworkState(NamedTuple):
    hidden: L.LIFState
    readout: Any  # ELMState ("elm"), [B, C] tensor ("leaky"), SpikingReadoutState ("spiking")


class LIFNetwork(PresetBuilt, nn.Module):
    """Recurrent LIF / adLIF network; see the module docstring. Build with a config or a preset."""

    CONFIG = LIFNetworkConfig
    FAMILIES = ("lif", "adlif")

    def __init__(self, cfg: LIFNetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        impl = cfg.synapse_impl
        hc = cfg.hidden
        self.hidden = LIFLayer(hc, cfg.n_in, cfg.n, hc.rho, seed=2 * cfg.seed, dropout_in=hc.dropout_in,
                               dropout_rec=hc.dropout_rec, synapse_impl=impl)
        c = cfg.n_classes
        if cfg.readout == "elm":
            self.readout = ELMLayer(cfg.elm_readout, cfg.n, c, seed=2 * cfg.seed + 1, synapse_impl=impl)
            self.out = nn.utils.skip_init(nn.Linear, c, c)  # initialised below from its own generator
            g = torch.Generator().manual_seed(2 * cfg.seed + 7919)
            bound = 1.0 / math.sqrt(c)
            with torch.no_grad():
                self.out.weight.uniform_(-bound, bound, generator=g)
                self.out.bias.uniform_(-bound, bound, generator=g)
        elif cfg.readout == "leaky":
            self.readout = LeakyReadout(hc, cfg.n, c, cfg.tau_out, seed=2 * cfg.seed + 1, input_sign=self.hidden.sign,
                                        synapse_impl=impl)
        else:
            self.readout = LIFLayer(hc, cfg.n, c, cfg.readout_rho, seed=2 * cfg.seed + 1,
                                    input_sign=self.hidden.sign, dropout_in=hc.dropout_in, dropout_rec=0.0,
                                    synapse_impl=impl)

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
        return variational_mask(s.shape[0], self.cfg.n, self.cfg.hidden.dropout_in, s)

    def forward(self, x: torch.Tensor, state: Optional[LIFNetworkState] = None, record: bool = False,
                reference: bool = False) -> NetworkOutput:
        """``x``: ``[B, T, n_in]`` (integer tokens ``[B, T]`` with the one_hot embedding).

        ``reference=True`` runs every part on its plain reference path (slow; for tests).
        """
        cfg = self.cfg
        x = embed(x, cfg.embedding, cfg.embed_scale, cfg.n_in, dtype=self.hidden.w.dtype)
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
            low_pass = leaky_integrate if reference or cfg.hidden.engine == "step" else leaky_scan
            logits, filt = low_pass(ro.s, rf, decay(cfg.tau_out, cfg.hidden.dt))
            r_state = SpikingReadoutState(ro.state, filt)
            spike_sum, spike_count = spike_sum + ro.s.sum(), spike_count + ro.s.numel()
            if record:
                ro_traces = {**ro.traces, "output": logits.detach()}
        traces = {"hidden": hid.traces, "readout": ro_traces} if record else None
        regs = {"spike": spike_sum / spike_count}
        return NetworkOutput(logits, LIFNetworkState(hid.state, r_state), regs, traces)


