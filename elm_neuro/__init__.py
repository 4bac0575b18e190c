"""elm_neuro: recurrent networks of Expressive Leaky Memory (ELM) neurons beside spiking baselines.

Packages, in layers (each imports only from the ones before it; ``tests/test_layering.py``)::

    defaults, atomic -> neurons, wiring -> networks -> data -> training | analysis -> experiments -> cli

This module is the public façade on top; it imports lazily, so ``import elm_neuro`` stays light.

Top-level conveniences:

- :func:`load_run` loads a trained run (or an exported model folder under ``models/``) in one
  call: ``run = elm_neuro.load_run(path)`` gives ``run.model`` (best weights, eval mode),
  ``run.train_config``, ``run.model_config`` and ``run.summary``.
"""
__version__ = "0.1.0"


def load_run(path, which: str = "best", map_location="cpu"):
    """See :func:`elm_neuro.training.run.load_run`."""
    from elm_neuro.training.run import load_run as _load_run

    return _load_run(path, which=which, map_location=map_location)
