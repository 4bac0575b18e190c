"""Network families by name, and the one resolver from a request to a model configuration.

Every family follows one interface so that the trainer, the budget command, comparisons, sweeps
and ``load_run`` treat them alike:

- the config is a dataclass with a field ``n`` (hidden size), ``budget() -> Budget``,
  ``replace(**fields)`` (flat names included), ``to_dict()`` and ``from_dict(d)``;
- the model is built as ``model_cls(cfg)``, keeps ``cfg`` as ``.cfg``, and its
  ``forward(x, state=None, record=False)`` returns a
  :class:`~elm_neuro.networks.common.NetworkOutput`.

:func:`resolve_model_config` turns (family or preset, overrides, data dimensions, target budget)
into a configuration; the ``budget`` command, training, comparisons and sweeps all call it.
"""
from __future__ import annotations

from typing import Optional

from elm_neuro.networks.budget import closest_n
from elm_neuro.networks.common import make_config
from elm_neuro.networks.elm_config import ELMNetworkConfig, ELMNeuronConfig
from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.networks.elm_neuron import ELMNeuron
from elm_neuro.networks.lif_config import LIFNetworkConfig
from elm_neuro.networks.lif_network import LIFNetwork
from elm_neuro.networks.lstm import LSTMConfig, LSTMNetwork
from elm_neuro.networks.presets import PRESETS, preset_fields

MODEL_FAMILIES: dict[str, tuple[type, type]] = {
    "elm": (ELMNetworkConfig, ELMNetwork),
    # "lif" and "adlif" share one config class; its `family` property (the hidden neuron) names it
    "lif": (LIFNetworkConfig, LIFNetwork),
    "adlif": (LIFNetworkConfig, LIFNetwork),
    "lstm": (LSTMConfig, LSTMNetwork),
    "elm-neuron": (ELMNeuronConfig, ELMNeuron),
}

# Families whose timescales are physical (ms): their dt follows the data's bin width.
PHYSICAL_TIME_FAMILIES = ("lif", "adlif")


def check_family(family: str) -> None:
    if family not in MODEL_FAMILIES:
        raise ValueError(f"model must be one of {sorted(MODEL_FAMILIES)}, got {family!r}")


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


def config_from_dict(family: str, d: dict):
    """A family's configuration from a stored dict (nested, or flat as in older run folders)."""
    check_family(family)
    return MODEL_FAMILIES[family][0].from_dict(d)


def preset_config(name: str, **overrides):
    """The configuration object of preset ``name`` with ``overrides`` (flat names) applied."""
    family, fields = preset_fields(name)
    return make_config(MODEL_FAMILIES[family][0], name, fields, overrides)


def preset_family(name: str) -> str:
    return preset_fields(name)[0]


def default_preset(family: str, task: str) -> str:
    """``<family>-<task>``; for plain SHD a family's SHD-Adding preset (the data fixes n_in and
    the 20 classes); for ELM the task name itself."""
    check_family(family)
    candidates = [f"{family}-{task}"]
    if task == "shd":
        candidates.append(f"{family}-shd-adding")
    if family == "elm":
        candidates.append(task)
    for name in candidates:
        if name in PRESETS and PRESETS[name][0] == family:
            return name
    raise ValueError(f"no preset for model {family!r} on task {task!r}; give one with --preset "
                     f"(known presets: {sorted(PRESETS)})")


def resolve_model_config(family: Optional[str] = None, preset: Optional[str] = None, overrides: Optional[dict] = None,
                         params: Optional[int] = None, *, task: Optional[str] = None, n_in: Optional[int] = None,
                         n_classes: Optional[int] = None, dt: Optional[float] = None):
    """The one resolver: a model configuration from a request.

    - ``preset`` names the starting configuration; without it, ``family`` and ``task`` give
      :func:`default_preset`; with both, the preset must belong to the family.
    - ``overrides``: flat field names (``d_m``, ``n``, ``readout_d_tree``...) or dotted paths;
      each value must have its field's declared type (``ConfigMixin.check_types``: ``d_m="abc"``
      is refused naming the field, the value and the type).
    - ``n_in`` / ``n_classes``: the data's dimensions (e.g. after channel pooling), when known.
    - ``dt``: the data's time-bin width in ms; applied to families whose timescales are in ms
      (LIF / adLIF) unless ``overrides`` sets ``dt``. ELM timescales are in steps and stay so.
    - ``params``: size the family's size field (``n``; ``d_m`` for the single neuron) with
      :func:`~elm_neuro.networks.budget.closest_n` to this budget; giving the size field in
      ``overrides`` as well is an error.
    """
    overrides = dict(overrides or {})
    if preset is None:
        if family is None or task is None:
            raise ValueError("give a preset, or a model family and a task")
        preset = default_preset(family, task)
    pfam = preset_family(preset)
    if family is not None:
        check_family(family)
        if pfam != family:
            raise ValueError(f"preset {preset!r} is a {pfam!r} preset, not {family!r}")
    MODEL_FAMILIES[pfam][0].check_types(overrides)
    fields = dict(overrides)
    if n_in is not None:
        fields["n_in"] = n_in
    if n_classes is not None:
        fields["n_classes"] = n_classes
    if pfam in PHYSICAL_TIME_FAMILIES and dt is not None and "dt" not in overrides:
        fields["dt"] = float(dt)
    cfg = preset_config(preset, **fields)
    if params is not None:
        field = size_field(cfg)
        if field in overrides:
            raise ValueError(f"give either {field} (model override) or params, not both")
        cfg = cfg.replace(**{field: closest_n(lambda k: cfg.replace(**{field: k}).budget().p, params)})
    return cfg
