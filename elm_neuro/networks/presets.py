"""Named configurations (the paper's, SPEC 7-8), overridable field by field.

``PRESETS`` maps a name to ``(config class, fields)``. Other network families register their
own presets with :func:`register_preset`, so ``elm-neuro budget --preset NAME`` and the trainer
find every family's presets in one place.
"""
from __future__ import annotations

from typing import Any

from elm_neuro.networks.config import ELMNetworkConfig

PRESETS: dict[str, tuple[type, dict[str, Any]]] = {}


def register_preset(name: str, config_cls: type, fields: dict[str, Any]) -> None:
    PRESETS[name] = (config_cls, dict(fields))


def preset_config(name: str, **overrides):
    """The configuration object of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    cls, fields = PRESETS[name]
    names = set(cls.__dataclass_fields__)
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown} for preset {name!r}; allowed: {sorted(names)}")
    return cls(**{**fields, **overrides})


# SPEC 7: SHD-Adding, hidden d_tree 30 x d_brch 10 (K 300), rho 0.25, tau 1..500 fixed, s_in 10,
# high-pass tau_r 5, relu output, relu^2 MLP, ratio mode lambda 5, dt 1, dropout 0.2 / 0.2.
register_preset("shd-adding", ELMNetworkConfig, dict(
    n_in=700, n_classes=19, embedding="none", embed_scale=1.0, d_m=9, n=57, mlp_layers=1,
    mlp_act="relu2", d_tree=30, d_brch=10, input_scale=10.0, tau_min=1.0, tau_max=500.0,
    learn_tau=False, memory_mode="ratio", lambda_value=5.0, dt=1.0, tau_r=5.0, output_act="relu",
    rho=0.25, dropout_in=0.2, dropout_rec=0.2,
))
# Plain SHD (20 classes): the SHD-Adding network with a 20-way readout.
register_preset("shd", ELMNetworkConfig, {**PRESETS["shd-adding"][1], "n_classes": 20})
# SPEC 8: Enwik8, one-hot 204 tokens * 3, d_tree 50 x d_brch 15 (K 750), rho 0.8, tau 0.1..100,
# high-pass tau_r 2, no dropout. The output activation and input scale follow the SHD-Adding
# configuration (relu, 10), which SPEC 8 does not change.
register_preset("enwik8", ELMNetworkConfig, dict(
    n_in=204, n_classes=204, embedding="one_hot", embed_scale=3.0, d_m=20, n=742, mlp_layers=1,
    mlp_act="relu2", d_tree=50, d_brch=15, input_scale=10.0, tau_min=0.1, tau_max=100.0,
    learn_tau=False, memory_mode="ratio", lambda_value=5.0, dt=1.0, tau_r=2.0, output_act="relu",
    rho=0.8, dropout_in=0.0, dropout_rec=0.0,
))
