"""Network families by name: ``name -> (config class, model class)``.

Every family follows one interface so that the trainer, the budget CLI, sweeps and
``load_run`` treat them alike:

- the config is a dataclass with a field ``n`` (hidden size), ``budget() -> Budget``,
  ``replace(**fields)``, ``to_dict()`` and ``from_dict(d)``;
- the model is built as ``model_cls(cfg)``, keeps ``cfg`` as ``.cfg``, and its
  ``forward(x, state=None, record=False)`` returns an object with ``logits`` ``[B, T, C]``,
  ``state``, ``regularizers`` (dict of scalar tensors) and ``traces`` (dict or None).
"""
from __future__ import annotations

from elm_neuro.networks.config import ELMNetworkConfig
from elm_neuro.networks.elm_network import ELMNetwork

MODEL_FAMILIES: dict[str, tuple[type, type]] = {
    "elm": (ELMNetworkConfig, ELMNetwork),
}


def family_of(cfg) -> str:
    """The registry name of a config object's family."""
    for name, (cfg_cls, _) in MODEL_FAMILIES.items():
        if type(cfg) is cfg_cls:
            return name
    raise ValueError(f"no registered network family for config type {type(cfg).__name__}")


def build_model(cfg):
    return MODEL_FAMILIES[family_of(cfg)][1](cfg)


# Re-exported so that callers find every family's presets through the registry module.
from elm_neuro.networks.presets import PRESETS, preset_config  # noqa: E402,F401
