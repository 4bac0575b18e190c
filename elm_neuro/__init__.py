"""elm_neuro: recurrent networks of Expressive Leaky Memory (ELM) neurons beside spiking baselines.

Packages, in layers (each imports only from the ones before it; ``tests/test_layering.py``)::

    defaults, atomic -> neurons, wiring -> networks -> data -> training | analysis -> experiments -> cli

This module is the public façade on top; it imports lazily, so ``import elm_neuro`` stays light.

The public API (each name imported on first use)::

    from elm_neuro import ELMNetwork, ELMNeuron, LIFNetwork, LSTMNetwork, preset_config, closest_n, load_run

    net = ELMNetwork.from_preset("shd-adding", d_m=9, n=57)   # every network: .from_preset, .budget()
    cfg = preset_config("lif-shd-adding", n=100)               # a preset's configuration, overridden
    n = closest_n(lambda k: cfg.replace(n=k).budget().p, 50000)  # size any family to a budget
    run = load_run("models/demo-elm-shd-adding")                # a trained run: .model, .summary, ...

:func:`load_run` loads a trained run (or an exported model folder under ``models/``) in one call:
``run.model`` (best weights, eval mode), ``run.train_config``, ``run.model_config``, ``run.summary``.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "ELMNetwork": "elm_neuro.networks.elm_network",
    "ELMNeuron": "elm_neuro.networks.elm_neuron",
    "LIFNetwork": "elm_neuro.networks.lif_network",
    "LSTMNetwork": "elm_neuro.networks.lstm",
    "ELMNetworkConfig": "elm_neuro.networks.elm_config",
    "ELMLayerConfig": "elm_neuro.networks.elm_config",
    "ELMNeuronConfig": "elm_neuro.networks.elm_config",
    "LIFNetworkConfig": "elm_neuro.networks.lif_config",
    "LSTMConfig": "elm_neuro.networks.lstm",
    "preset_config": "elm_neuro.networks.registry",
    "resolve_model_config": "elm_neuro.networks.registry",
    "closest_n": "elm_neuro.networks.budget",
    "Budget": "elm_neuro.networks.budget",
    "load_run": "elm_neuro.training.run",
    "stack_models": "elm_neuro.networks.stacked",
    "StackedELMNetwork": "elm_neuro.networks.stacked",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    # PEP 562: import the defining module on first use, so `import elm_neuro` stays light
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'elm_neuro' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
