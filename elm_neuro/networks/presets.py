"""Named configurations (the paper's, docs/design.md §7-10) as plain data: ``name -> (family, fields)``.

``fields`` are flat names (:mod:`elm_neuro.networks.checks`) applied to the family's default
configuration, so a preset lists only what differs from those defaults (which hold the docs/design.md §7
values, :mod:`elm_neuro.defaults` and the config classes). Nothing here imports a network: the
registry (:func:`elm_neuro.networks.registry.preset_config`) and each network's ``from_preset``
read this table.
"""
from __future__ import annotations

import copy
from typing import Any

# docs/design.md §7: SHD-Adding. The ELMNetworkConfig defaults are the §7 network (d_tree 30 x d_brch 10,
# rho 0.25, tau 1..500 steps fixed, s_in 10, high-pass tau_r 5, relu output, relu^2 MLP, ratio
# mode lambda 5, dt 1, d_m 9, N 57, 700 inputs, 19 classes) but for the dropout 0.2 / 0.2.
_ELM_SHD_ADDING = dict(dropout_in=0.2, dropout_rec=0.2)
# docs/design.md §8: Enwik8, one-hot 204 tokens * 3, d_tree 50 x d_brch 15 (K 750), rho 0.8, tau 0.1..100,
# high-pass tau_r 2, no dropout, d_m 20, N 742. Output activation and input scale as docs/design.md §7.
_ENWIK8 = dict(n_in=204, n_classes=204, embedding="one_hot", embed_scale=3.0)
_ELM_ENWIK8 = dict(_ENWIK8, d_m=20, n=742, d_tree=50, d_brch=15, tau_min=0.1, tau_max=100.0, tau_r=2.0, rho=0.8)

# Spiking networks on the SHD-Adding wiring of the ELM Network: K 300, rho 0.25, dropout 0.2 /
# 0.2, the ELM readout; LIF / adLIF in Bittar & Garner's form (the LIFLayerConfig defaults: input
# gain 1 - kappa_m, learnable tau_m 10..50 ms, adLIF tau_w 60..240 ms, initial a in [0, 1] (the
# stable half of their [-1, 1]; a is clamped per neuron into its stable interval, docs/design.md
# §10), b in [0, 2], weight scale 30 / sqrt(300)), dt = 2 ms bins. N is sized by closest_n to the
# ELM Network's budget at d_m 9 (P = 76551): 227 LIF / 225 adLIF.
_SPIKING_SHD_ADDING = dict(dropout_in=0.2, dropout_rec=0.2)
# Enwik8 versions (docs/design.md §8 wiring: K = 750, rho 0.8, no dropout; ELM readout d_tree 50 x d_brch 15
# with memory taus 0.1..100 steps; dt = 1 step), each sized by closest_n to the ELM Network's
# P = 3,516,486 (d_m 20, N 742).
_SPIKING_ENWIK8 = dict(_ENWIK8, n_synapses=750, rho=0.8, dt=1.0, readout_d_tree=50, readout_d_brch=15,
                       readout_tau_min=0.1, readout_tau_max=100.0, dropout_in=0.0, dropout_rec=0.0)

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "shd-adding": ("elm", _ELM_SHD_ADDING),
    # Plain SHD (20 classes): the SHD-Adding network with a 20-way readout.
    "shd": ("elm", dict(_ELM_SHD_ADDING, n_classes=20)),
    "enwik8": ("elm", _ELM_ENWIK8),
    "lif-shd-adding": ("lif", dict(_SPIKING_SHD_ADDING, neuron="lif", n=227)),
    "adlif-shd-adding": ("adlif", dict(_SPIKING_SHD_ADDING, neuron="adlif", n=225)),
    # ICLR 2024 recurrent SNN baseline (docs/design.md §10): 500 LIF neurons = C spiking output neurons + 500 - C
    # recurrent hidden neurons (n = 481 for the 19 SHD-Adding classes; use n = 480 with 20 SHD
    # classes), 20 % inhibitory (Dale's law), threshold 1, soft reset subtracting 0.9, tau_m 25 ms
    # learnable, 100 synapses (90 % from the previous layer, 10 % from the own layer, for hidden and
    # output neurons alike), weight scale 0.3 / sqrt(100), v += I (snntorch convention), output
    # spikes low-passed with 20 ms; dt = 2 ms. Train with lr 2e-3 and an L1 spike penalty 0.01.
    "lif-iclr2024": ("lif", dict(
        n=481, neuron="lif", n_synapses=100, rho=0.1, reset_value=0.9, current_gain="unit", tau_mem_min=25.0,
        tau_mem_max=25.0, weight_scale=0.3, dale=True, frac_inhibitory=0.2, readout="spiking", readout_rho=0.1,
        tau_out=20.0)),
    "lif-enwik8": ("lif", dict(_SPIKING_ENWIK8, neuron="lif", n=4378)),
    "adlif-enwik8": ("adlif", dict(_SPIKING_ENWIK8, neuron="adlif", n=4360)),
    # SHD-Adding at the ELM Network's budget for d_m 9 (P = 76551; closest_n gives n = 26, P = 76225),
    # the ICLR 2024 LSTM baseline (hidden 250, docs/design.md §9), and Enwik8 at P = 3,516,486.
    "lstm-shd-adding": ("lstm", dict(n=26)),
    "lstm-iclr2024": ("lstm", dict(n=250)),
    "lstm-enwik8": ("lstm", dict(_ENWIK8, n=818)),
    # ICLR 2024 single ELM neuron on SHD-Adding (the ELMNeuronConfig defaults: d_m 100 as in
    # docs/design.md §9; K = 70 x 10 = 700 random synapses is our choice).
    "elm-neuron-shd-adding": ("elm-neuron", {}),
    "elm-neuron-shd": ("elm-neuron", dict(n_classes=20)),
}


def preset_fields(name: str) -> tuple[str, dict[str, Any]]:
    """``(family, fields)`` of preset ``name`` (a copy)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    family, fields = PRESETS[name]
    return family, copy.deepcopy(fields)
