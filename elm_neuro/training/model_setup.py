"""From a training configuration to a concrete model configuration.

The preset is ``TrainConfig.preset`` or, by default, ``<family>-<task>`` when that preset is
registered, else the task name itself (the ELM presets are named after their task). The data
fixes ``n_in`` and ``n_classes`` (e.g. after channel down-sampling); ``params`` then sizes N
with the budget solver. The resolved configuration is what config.json stores, so a run can be
rebuilt without presets. Single-neuron models are sized through their ``SIZE_FIELD``
(``d_m``) instead of ``n``.
"""
from __future__ import annotations

from elm_neuro.networks.budget import closest_n
from elm_neuro.networks.registry import MODEL_FAMILIES, PRESETS, preset_config, size_field


def default_preset(family: str, task: str) -> str:
    """``<family>-<task>``; for plain SHD a family's SHD-Adding preset (the data fixes n_in and
    the 20 classes); for ELM the task name itself."""
    candidates = [f"{family}-{task}"]
    if task == "shd":
        candidates.append(f"{family}-shd-adding")
    if family == "elm":
        candidates.append(task)
    for name in candidates:
        if name in PRESETS and PRESETS[name][0] is MODEL_FAMILIES[family][0]:
            return name
    raise ValueError(f"no preset for model {family!r} on task {task!r}; give one with --preset "
                     f"(known presets: {sorted(PRESETS)})")


# Families whose timescales are physical (ms): their dt follows the data's bin width.
PHYSICAL_TIME_FAMILIES = ("lif", "adlif")


def resolve_model_config(family: str, task: str, preset: str | None, overrides: dict, params: int | None,
                         n_in: int, n_classes: int, bin_ms: float | None = None):
    """The model configuration for a run (see the module docstring).

    For spiking families (timescales in ms) ``dt`` is set to the data's bin width ``bin_ms``
    unless overridden, so that e.g. a 25 ms membrane keeps its meaning at 10 ms bins. ELM
    timescales are in steps (``dt = 1``, as in the paper) and are left alone.
    """
    if family not in MODEL_FAMILIES:
        raise ValueError(f"model must be one of {sorted(MODEL_FAMILIES)}, got {family!r}")
    name = preset or default_preset(family, task)
    fields = {**overrides, "n_in": n_in, "n_classes": n_classes}
    if family in PHYSICAL_TIME_FAMILIES and bin_ms is not None and "dt" not in overrides:
        fields["dt"] = float(bin_ms)
    cfg = preset_config(name, **fields)
    if params is not None:
        field = size_field(cfg)
        if field in overrides:
            raise ValueError(f"give either {field} (model override) or params, not both")
        cfg = cfg.replace(**{field: closest_n(lambda k: cfg.replace(**{field: k}).budget().p, params)})
    return cfg
