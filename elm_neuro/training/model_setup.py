"""From a training configuration to a concrete model configuration.

A thin adapter over :func:`elm_neuro.networks.registry.resolve_model_config` (the one resolver),
in a training run's terms: the preset is ``TrainConfig.preset`` or ``<family>-<task>``, the data
fixes ``n_in`` and ``n_classes`` (e.g. after channel pooling), its bin width is the spiking
families' time step, and ``params`` sizes the network. :func:`train_model_config` takes these
pieces one by one (sweeps plan cells with other overrides and budgets than the base run's);
:func:`run_model_config` takes them from a whole ``TrainConfig``. The resolved configuration is
what config.json stores, so a run can be rebuilt without presets.
"""
from __future__ import annotations

from elm_neuro.networks import registry


def train_model_config(family: str, task: str, preset: str | None, overrides: dict, params: int | None,
                       n_in: int, n_classes: int, bin_ms: float | None = None):
    """The model configuration of a training run of ``family`` on ``task``; spiking families take
    ``dt = bin_ms`` (ms) unless overridden."""
    return registry.resolve_model_config(family, preset, overrides, params, task=task, n_in=n_in,
                                         n_classes=n_classes, dt=bin_ms)


def run_model_config(cfg, n_in: int, n_classes: int):
    """The model configuration of the run ``cfg`` (a TrainConfig) for data of ``n_in`` channels
    and ``n_classes`` classes: its family, preset, overrides and budget, the bin width for
    spiking families, and the model seed (:attr:`TrainConfig.resolved_model_seed`)."""
    overrides = {**cfg.model_overrides, "seed": cfg.resolved_model_seed}
    return train_model_config(cfg.model, cfg.task, cfg.preset, overrides, cfg.params, n_in, n_classes,
                              bin_ms=cfg.model_bin_ms)
