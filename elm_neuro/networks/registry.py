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
from elm_neuro.networks.lif_network import LIFNetwork, LIFNetworkConfig
from elm_neuro.networks.lstm import LSTMConfig, LSTMNetwork
from elm_neuro.networks.elm_neuron_net import ELMNeuronClassifier, ELMNeuronConfig
from elm_neuro.networks.presets import register_preset

MODEL_FAMILIES: dict[str, tuple[type, type]] = {
    "elm": (ELMNetworkConfig, ELMNetwork),
    # "lif" and "adlif" share one config class; its `family` property (= its `neuron` field) names it
    "lif": (LIFNetworkConfig, LIFNetwork),
    "adlif": (LIFNetworkConfig, LIFNetwork),
    "lstm": (LSTMConfig, LSTMNetwork),
    "elm-neuron": (ELMNeuronConfig, ELMNeuronClassifier),
}

# ICLR 2024 single ELM neuron on SHD-Adding (d_m 100 as in SPEC 9; K = 700 random synapses is
# our choice). Its budget is sized through d_m (ELMNeuronConfig.SIZE_FIELD).
register_preset("elm-neuron-shd-adding", ELMNeuronConfig, dict(n_in=700, n_classes=19, d_m=100, d_tree=70,
                                                                d_brch=10, routing="random"))
register_preset("elm-neuron-shd", ELMNeuronConfig, dict(n_in=700, n_classes=20, d_m=100, d_tree=70, d_brch=10,
                                                         routing="random"))


def size_field(cfg_or_cls) -> str:
    """The configuration field that a budget solver varies (``n``, or ``d_m`` for one neuron)."""
    return getattr(cfg_or_cls, "SIZE_FIELD", "n")


def family_of(cfg) -> str:
    """The registry name of a config object's family.

    A config class shared by several families names its family with a ``family`` property.
    """
    fam = getattr(cfg, "family", None)
    if isinstance(fam, str) and fam in MODEL_FAMILIES and type(cfg) is MODEL_FAMILIES[fam][0]:
        return fam
    for name, (cfg_cls, _) in MODEL_FAMILIES.items():
        if type(cfg) is cfg_cls:
            return name
    raise ValueError(f"no registered network family for config type {type(cfg).__name__}")


def build_model(cfg):
    return MODEL_FAMILIES[family_of(cfg)][1](cfg)


# Re-exported so that callers find every family's presets through the registry module.
from elm_neuro.networks.presets import PRESETS, preset_config  # noqa: E402,F401


# Enwik8 versions of the baselines (SPEC 8 wiring: one-hot 204 tokens x 3, K = 750, rho 0.8, no
# dropout; ELM readout d_tree 50 x d_brch 15 with memory taus 0.1..100 steps; dt = 1 step), each
# sized by closest_n to the ELM Network's P = 3,516,486 (d_m 20, N 742).
_ENWIK8 = dict(n_in=204, n_classes=204, embedding="one_hot", embed_scale=3.0)
_SPIKING_ENWIK8 = dict(_ENWIK8, n_synapses=750, rho=0.8, dt=1.0, readout_d_tree=50, readout_d_brch=15,
                       readout_tau_min=0.1, readout_tau_max=100.0, dropout_in=0.0, dropout_rec=0.0)
register_preset("lif-enwik8", LIFNetworkConfig, {**PRESETS["lif-shd-adding"][1], **_SPIKING_ENWIK8, "n": 4378})
register_preset("adlif-enwik8", LIFNetworkConfig, {**PRESETS["adlif-shd-adding"][1], **_SPIKING_ENWIK8, "n": 4360})
register_preset("lstm-enwik8", LSTMConfig, {**PRESETS["lstm-shd-adding"][1], **_ENWIK8, "n": 818})
