"""Networks: ELM layers and networks, spiking and LSTM baselines, budgets, presets.

Importing the package loads the registry, so every family's presets are registered.
"""
from elm_neuro.networks import registry  # noqa: F401
