"""From a training configuration to a concrete model configuration.

A thin adapter over :func:`elm_neuro.networks.registry.resolve_model_config` (the one resolver):
the preset is ``TrainConfig.preset`` or ``<family>-<task>``, the data fixes ``n_in`` and
``n_classes`` (e.g. after channel pooling), and ``params`` sizes the network. The resolved
configuration is what config.json stores, so a run can be rebuilt without presets.
"""
from __future__ import annotations

from elm_neuro.networks.registry import resolve_model_config as _resolve


def resolve_model_config(family: str, task: str, preset: str | None, overrides: dict, params: int | None,
                         n_in: int, n_classes: int, bin_ms: float | None = None):
    """The model configuration of a run; spiking families take ``dt = bin_ms`` (ms) unless overridden."""
    return _resolve(family, preset, overrides, params, task=task, n_in=n_in, n_classes=n_classes, dt=bin_ms)


def run_model_config(cfg, n_in: int, n_classes: int):
    """The model configuration of the run ``cfg`` (a TrainConfig) for data of ``n_in`` channels
    and ``n_classes`` classes: its family, preset, overrides and budget, the bin width for
    spiking families, and the model seed (:attr:`TrainConfig.resolved_model_seed`)."""
    overrides = {**cfg.model_overrides, "seed": cfg.resolved_model_seed}
    return resolve_model_config(cfg.model, cfg.task, cfg.preset, overrides, cfg.params, n_in, n_classes,
                                bin_ms=cfg.model_bin_ms)
