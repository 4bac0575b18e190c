"""From a training configuration to a concrete model configuration.

A thin adapter over :func:`elm_neuro.networks.registry.resolve_model_config` (the one resolver),
in a training run's terms: the preset is ``TrainConfig.preset`` or ``<family>-<task>``, the data
fixes ``n_in`` and ``n_classes`` (e.g. after channel pooling), its bin width is the spiking
families' time step, and ``params`` sizes the network. :func:`train_model_config` takes these
pieces one by one (sweeps plan cells with other overrides and budgets than the base run's);
:func:`run_model_config` takes them from a whole ``TrainConfig``. The resolved configuration is
what config.json stores, so a run can be rebuilt without presets.

Because the data fixes ``n_in`` and ``n_classes`` (:data:`DATA_FIELDS`), a model override of
either would be replaced by the data's value, and config.json would record an override that
never took effect; :func:`check_data_fields` refuses such overrides, saying what the data sets.
"""
from __future__ import annotations

from elm_neuro.networks import registry

#: Model fields the data sets (input channels or vocabulary; classes): never model overrides.
DATA_FIELDS = ("n_in", "n_classes")


def _data_says(cfg, field: str, n_in: int, n_classes: int) -> str:
    """What the data of the run ``cfg`` gives ``field``, in words."""
    if cfg.task == "enwik8":
        return f"{n_in} symbols, the vocabulary of the tokens ({cfg.tokenization} tokenization)"
    if field == "n_in":
        return (f"{n_in} input channels: the 700 SHD units pooled by channel_factor {cfg.channel_factor} "
                f"(set channel_factor with --train-set to change it)")
    what = "the digit sums 0..18 of SHD-Adding" if cfg.task == "shd-adding" else "the 20 SHD digits"
    return f"{n_classes} classes, {what}"


def check_data_fields(cfg, n_in: int, n_classes: int) -> None:
    """``ValueError`` when the model overrides of the run ``cfg`` (a TrainConfig) set a field the
    data decides (:data:`DATA_FIELDS`), naming it, the value given and what the data sets it to
    (even the data's own value: the override does nothing)."""
    for key, value in cfg.model_overrides.items():
        if key in DATA_FIELDS:
            shown = value if isinstance(value, str) else repr(value)
            raise ValueError(f"{key}={shown} (a model override, --set): {key} is set by the data, so the override "
                             f"would be ignored; the data gives {_data_says(cfg, key, n_in, n_classes)}; remove "
                             f"the --set of {key}")


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
