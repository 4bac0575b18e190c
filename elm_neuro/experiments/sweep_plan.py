"""Planning a budget sweep: its grid, its cells, and the sweep folder that records them.

The grid
    ``budgets x values x seeds``. ``axis`` names the configuration axis that ``values`` sweep:

    - ``d_m`` (default): memory units per neuron. With budgets (``--params``) every cell's ``N``
      is sized by the budget solver (:func:`elm_neuro.training.model_setup.train_model_config`,
      :func:`~elm_neuro.networks.budget.closest_n`), the paper's fixed-budget trade-off; without
      budgets ``N`` is fixed (``--n``). Several budgets give the cross product with ``d_m``.
      ``budget_values`` (``{budget: [values]}``) gives a budget its own values instead of
      ``values``: a range that brackets that budget's optimum, without cells that cannot exist
      there (at P 1,000 a d_m 32 ELM neuron alone costs 4,965 parameters).
    - ``n``: hidden-layer size, with ``d_m`` and ``k_c`` fixed (no budgets: ``P`` follows ``N``).
    - ``k_c``: synapses per hidden neuron. The values are ``k_c = K = d_tree * d_brch``; the sweep
      varies the hidden layer's ``d_brch = k_c / d_tree`` (the dotted path ``hidden.d_brch``: the
      flat name ``d_brch`` would set the readout's too) with ``d_tree`` fixed (so each value must be a
      multiple of ``d_tree``); families without dendritic branches (LIF) set ``hidden.n_synapses =
      k_c``. ``N`` is fixed (``--n``) or sized to each budget.

    Every axis changes its own field only: within a budget, the cells' resolved model
    configurations may differ in the axis's field and the budget-solved ``N`` (and, under readout
    ``cover``, the readout's ``d_brch``) and nothing else; :func:`plan_cells` checks this field by
    field (:func:`check_axis_isolation`).

The budget split and the readout
    ``budget_scope``: ``network`` (default) sizes ``N`` so that the whole network's ``P`` (hidden
    layer, readout layer and ``Linear(C, C)``, docs/design.md §3) is closest to the budget; with a
    fixed readout its cost is the same constant in every cell, as in the paper's records.
    ``hidden`` sizes ``N`` so that the hidden layer alone, ``N (k_c + k_e)``
    (:func:`hidden_params`), is closest to the budget: the readout's cost stays out of the
    compared split. ``readout``: ``fixed`` (default: the readout's fields as the model fields give
    them) or ``cover`` (needs ``budget_scope="hidden"``): the readout's ``d_brch`` is sized per cell
    so that its ``C`` neurons read every hidden neuron (:func:`cover_readout`), as the paper's
    readout (19 x 300 synapses, N <= 155) does. Each cell records how many hidden neurons its
    readout reaches (:func:`readout_reach`; ``readout_reach`` / ``readout_coverage`` in
    ``sweep_cell.json``): a 20 x 10-synapse readout reaches 12 % of N = 1541.

    Without values (e.g. ``--model lif --params 5000,20000``) the cells differ by budget only.
    Every cell is a normal run directory ``SWEEP_DIR/cells/<name>`` (:func:`cell_path`), the name
    built from its configuration: ``p<target>-dm<d_m>-kc<k_c>-n<N>-s<seed>`` (the ``p`` part only
    with budgets, ``dm`` when the family has ``d_m``, ``kc`` only on the ``k_c`` axis), e.g.
    ``p77000-dm9-n57-s0``. The solved ``N`` is written into the cell's model overrides (its
    ``TrainConfig.params`` is None), so the name and the trained network agree; the target budget
    is kept in ``sweep_cell.json`` (:data:`CELL_FILE`) next to the run files and in the
    ``p_target`` column. A cell's seed is its run seed and its model seed (initial weights and
    connectome), so cells that differ by seed are different networks.

The sweep folder
    ``SWEEP_DIR/sweep.json`` holds the grid (:func:`check_sweep_dir`). Re-running with the same
    grid continues; a different grid is refused unless ``force`` (e.g. to add seeds or budgets);
    the data folder, the device and the thread count (:data:`MUTABLE_FIELDS`) may change.
    Independently of ``force``, a cell directory whose stored training configuration differs from
    the planned one is refused, so a name always describes what was trained.

Planning resolves every cell's model exactly as its trainer will (:func:`planned_model_config`),
with the task's input and class counts (:func:`task_dims`); nothing here trains or writes a run.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from elm_neuro.atomic import foreign_entries, list_names, save_json
from elm_neuro.data.shd import N_CLASSES, N_UNITS
from elm_neuro.data.shd_adding import N_SUM_CLASSES
from elm_neuro.networks.budget import closest_n
from elm_neuro.networks.registry import MODEL_FAMILIES, preset_config, size_field
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.language import load_tokens
from elm_neuro.training.model_setup import train_model_config
from elm_neuro.training.run import RunDir

AXES = ("d_m", "n", "k_c")
SWEEP_FORMAT = 1
CELL_FILE = "sweep_cell.json"
# Training-config fields that may change between invocations of one sweep (paths, hardware).
MUTABLE_FIELDS = ("data_dir", "device", "threads")


# --------------------------------------------------------------------------- the grid
def _int_list(name: str, values, allow_empty: bool = False, minimum: int = 1) -> Optional[list[int]]:
    if values is None:
        return None
    vals = list(values)
    if not vals and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name} must hold integers >= {minimum}, got {v!r}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"{name} holds duplicate values: {vals}")
    return vals


def _same_field(cls, a: str, b: str) -> bool:
    try:
        return cls.same_field(a, b)
    except ValueError:  # an unknown name: refused when the model is resolved, naming it
        return False


@dataclass
class SweepGrid:
    """A sweep's definition (module docstring). ``base`` carries the task, model family, preset,
    fixed model fields (``model_overrides``) and every training setting; its ``seed`` and
    ``params`` are ignored (cells set them)."""

    base: TrainConfig
    axis: str = "d_m"
    values: Optional[list] = None
    budgets: Optional[list] = None
    seeds: list = field(default_factory=lambda: [0])
    budget_scope: str = "network"
    readout: str = "fixed"
    budget_values: Optional[dict] = None

    def __post_init__(self) -> None:
        if not isinstance(self.base, TrainConfig):
            raise ValueError(f"base must be a TrainConfig, got {type(self.base).__name__}")
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")
        self.values = _int_list("values", self.values)
        self.budgets = _int_list("budgets (params)", self.budgets)
        self.seeds = _int_list("seeds", self.seeds, minimum=0)
        self.budget_values = _budget_values(self.budget_values, self.budgets, self.axis)
        fixed = self.base.model_overrides
        axis_field = {"d_m": "d_m", "n": "n", "k_c": None}[self.axis]
        if axis_field is not None and axis_field in fixed and (self.values or self.budget_values):
            raise ValueError(f"{axis_field} is the swept axis (values); do not also fix it in the model fields")
        if self.axis == "k_c" and (self.values or self.budget_values):
            cls = MODEL_FAMILIES[self.base.model][0] if self.base.model in MODEL_FAMILIES else None
            own = _k_c_paths(cls) if cls is not None else ()
            if any(_same_field(cls, k, p) for k in fixed for p in own):
                raise ValueError(f"axis k_c varies {' / '.join(own)} (the hidden layer's synapses); do not also "
                                 f"fix it in the model fields (the readout's own fields, e.g. readout.d_brch, may be fixed)")
        if self.budget_scope not in BUDGET_SCOPES:
            raise ValueError(f"budget_scope must be one of {BUDGET_SCOPES}, got {self.budget_scope!r}")
        if self.readout not in READOUT_RULES:
            raise ValueError(f"readout must be one of {READOUT_RULES}, got {self.readout!r}")
        if self.readout == "cover":
            if self.budget_scope != "hidden":
                raise ValueError("readout 'cover' grows the readout with N: give budget_scope 'hidden' so that its "
                                 "cost stays out of the compared budget split")
            if any(k in fixed for k in ("readout.d_brch", "elm_readout.d_brch", "readout_d_brch")):
                raise ValueError("readout 'cover' sizes the readout's d_brch per cell; do not also fix it")
        if self.axis == "n":
            if self.values is None:
                raise ValueError("axis n needs values (the N of each cell)")
            if self.budgets is not None:
                raise ValueError("params (budgets) cannot be combined with axis n: N is the swept axis")
        elif self.budgets is not None and "n" in fixed:
            raise ValueError("give either a fixed n or params (budgets that size N), not both")
        if self.base.params is not None:
            raise ValueError("base.params must be None: budgets are given by SweepGrid.budgets")

    def to_dict(self) -> dict:
        d = {"axis": self.axis, "values": self.values, "budgets": self.budgets, "seeds": self.seeds,
             "base": self.base.to_dict()}
        # written only when not the default, so that the sweep.json of earlier sweeps still compares equal
        if self.budget_scope != "network":
            d["budget_scope"] = self.budget_scope
        if self.readout != "fixed":
            d["readout"] = self.readout
        if self.budget_values is not None:
            d["budget_values"] = {str(b): v for b, v in self.budget_values.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SweepGrid":
        return cls(base=TrainConfig.from_dict(d["base"]), axis=d["axis"], values=d["values"],
                   budgets=d["budgets"], seeds=d["seeds"], budget_scope=d.get("budget_scope", "network"),
                   readout=d.get("readout", "fixed"), budget_values=d.get("budget_values"))

    def values_at(self, budget: Optional[int]) -> Optional[list]:
        """The axis values swept at ``budget``: its own list in ``budget_values``, else ``values``."""
        if self.budget_values is not None and budget in self.budget_values:
            return self.budget_values[budget]
        return self.values


def _budget_values(given, budgets: Optional[list], axis: str) -> Optional[dict]:
    """``budget_values`` checked: ``{budget: [values]}`` (keys may be the budgets' decimal strings, as
    JSON writes them), each key one of ``budgets``, each list like ``values``; not on axis ``n``."""
    if given is None:
        return None
    if not isinstance(given, dict) or not given:
        raise ValueError(f"budget_values must be a non-empty mapping budget -> values, got {given!r}")
    if axis == "n" or budgets is None:
        raise ValueError("budget_values needs budgets (params) and an axis other than n")
    out = {}
    for key, vals in given.items():
        try:
            budget = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"budget_values: key {key!r} is not a budget (an integer)") from None
        if budget not in budgets or str(budget) != str(key).strip():
            raise ValueError(f"budget_values: key {key!r} is not one of the budgets {budgets}")
        out[budget] = _int_list(f"budget_values[{budget}]", vals)
    return dict(sorted(out.items()))


@dataclass
class SweepCell:
    name: str
    config: TrainConfig  # the cell's training configuration (seed set, N explicit)
    seed: int
    p_target: Optional[int]
    axis_value: Optional[int]
    n: int
    d_m: Optional[int]
    k_c: int
    k_e: int
    p: int  # planned parameter count (from the task's standard input / class counts)
    p_hidden: Optional[int] = None  # N (k_c + k_e): the hidden layer alone (hidden_params)
    readout_k: Optional[int] = None  # synapses per readout neuron (None: no ELM readout)
    readout_reach: Optional[int] = None  # hidden neurons the readout's connectome reads (readout_reach)
    budget_scope: str = "network"  # what p_target sized: the whole network or the hidden layer alone

    @property
    def readout_coverage(self) -> Optional[float]:
        """Fraction of the ``N`` hidden neurons the readout reaches (None without an ELM readout)."""
        return None if self.readout_reach is None else self.readout_reach / self.n

    def meta(self, axis: str) -> dict:
        return {"name": self.name, "p_target": self.p_target, "axis": axis, "axis_value": self.axis_value,
                "budget_scope": self.budget_scope,
                "planned": {"n": self.n, "d_m": self.d_m, "k_c": self.k_c, "k_e": self.k_e, "p": self.p,
                            "p_hidden": self.p_hidden, "readout_k": self.readout_k,
                            "readout_reach": self.readout_reach, "readout_coverage": self.readout_coverage}}


def task_dims(cfg: TrainConfig) -> tuple[int, int]:
    """``(n_in, n_classes)`` of a task as the trainer will see them (used to size N at planning).

    SHD tasks: ``ceil(700 / channel_factor)`` channels, 19 (SHD-Adding) or 20 (SHD) classes.
    Enwik8: the vocabulary of the data when ``data_dir`` is given, else the preset's (204).
    """
    if cfg.task in ("shd-adding", "shd"):
        return math.ceil(N_UNITS / cfg.channel_factor), (N_SUM_CLASSES if cfg.task == "shd-adding" else N_CLASSES)
    if cfg.data_dir is not None:
        v = load_tokens(cfg).vocab_size
        return v, v
    ref = preset_config("enwik8")
    return ref.n_in, ref.n_classes


def planned_model_config(base: TrainConfig, overrides: dict, params: Optional[int], dims: tuple[int, int]):
    """The model configuration exactly as the task's trainer resolves it (same ``bin_ms``: the
    data's bin width for SHD, none for Enwik8, see :attr:`TrainConfig.model_bin_ms`)."""
    return train_model_config(base.model, base.task, base.preset, overrides, params, dims[0], dims[1],
                              bin_ms=base.model_bin_ms)


def _k_c_paths(cls) -> tuple[str, ...]:
    """The field(s) the ``k_c`` axis varies: the hidden layer's ``d_brch`` (``n_synapses`` for
    families without branches), as a dotted path. The flat name ``d_brch`` of the ELM Network also
    sets the readout's ``d_brch`` (docs/design.md §3: the readout inherits it), which would make the
    readout grow along the axis and override a fixed ``readout.d_brch``; the dotted path does not."""
    for name in ("d_brch", "n_synapses"):
        try:
            return (cls._paths(name)[0],)
        except (ValueError, AttributeError):
            continue
    return ()


def _axis_overrides(grid: SweepGrid, value: Optional[int], dims) -> dict:
    """The model fields that put ``value`` on the grid's axis (each the hidden layer's own field only)."""
    if value is None:
        return {}
    if grid.axis in ("d_m", "n"):
        return {grid.axis: value}
    ref = planned_model_config(grid.base, grid.base.model_overrides, None, dims)
    paths = _k_c_paths(type(ref))
    if not paths:
        raise ValueError(f"axis k_c: model {grid.base.model!r} has neither d_brch nor n_synapses to vary")
    if paths[0].endswith("d_brch"):
        if value % ref.d_tree:
            raise ValueError(f"values: k_c = {value} is not a multiple of d_tree = {ref.d_tree} "
                             f"(axis k_c varies d_brch = k_c / d_tree)")
        return {paths[0]: value // ref.d_tree}
    return {paths[0]: value}


def axis_paths(grid: SweepGrid, mcfg) -> set[str]:
    """Dotted paths of the model fields a cell of ``grid`` may differ in from the other cells of its
    budget: the axis's own field, the size field when N is solved or swept, and the readout's
    ``d_brch`` under ``readout="cover"`` (sized per cell)."""
    cls = type(mcfg)
    swept = bool(grid.values or grid.budget_values)
    own = {"d_m": tuple(cls._paths("d_m")) if swept and grid.axis == "d_m" else (),
           "n": ("n",) if grid.axis == "n" else (),
           "k_c": _k_c_paths(cls) if swept and grid.axis == "k_c" else ()}[grid.axis]
    paths = set(own)
    if grid.budgets is not None:
        paths |= set(cls._paths(size_field(mcfg)))
    if grid.readout == "cover":
        paths.add(_readout_name(mcfg) + ".d_brch")
        paths |= set(cls._paths(size_field(mcfg)))  # the readout follows N
    return paths


def _flat_fields(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_fields(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def config_differences(configs: Sequence) -> dict[str, list]:
    """``{dotted path: [value per config]}`` for every model field whose value is not the same in all
    ``configs`` (resolved model configurations; ``to_dict`` compared field by field)."""
    flats = [_flat_fields(c.to_dict()) for c in configs]
    keys = sorted(set().union(*flats)) if flats else []
    return {k: [f.get(k) for f in flats] for k in keys if len({json.dumps(f.get(k)) for f in flats}) > 1}


def check_axis_isolation(grid: SweepGrid, configs_by_budget: dict) -> None:
    """Raise unless, within each budget, the resolved model configurations of the grid's cells
    differ only in :func:`axis_paths` (a value along an axis changes its own field and nothing else)."""
    for budget, configs in configs_by_budget.items():
        if len(configs) < 2:
            continue
        diff = config_differences(configs)
        extra = sorted(set(diff) - axis_paths(grid, configs[0]))
        if extra:
            raise ValueError(f"axis {grid.axis}: cells of budget {budget} differ in {extra} besides the axis's own "
                             f"field ({ {k: diff[k] for k in extra} })")


# --------------------------------------------------------------------------- readout and budget split
BUDGET_SCOPES = ("network", "hidden")
READOUT_RULES = ("fixed", "cover")
# readout "cover": draws per hidden neuron start at ln(COVER_MISS_FACTOR * N) (expected unreached
# neurons N exp(-draws / N) = 1 / COVER_MISS_FACTOR), then grow until the drawn connectome reaches every one.
COVER_MISS_FACTOR = 20


def hidden_params(mcfg) -> int:
    """Parameters of the hidden layer alone, ``N (k_c + k_e)`` (docs/design.md §3): the budget split
    compared along a sweep; the readout and the final ``Linear(C, C)`` are left out."""
    b = mcfg.budget()
    return b.n * (b.k_c + b.k_e)


def _readout_name(mcfg) -> Optional[str]:
    """The field holding the ELM readout layer of a network configuration (None: no ELM readout)."""
    from elm_neuro.networks.elm_config import ELMLayerConfig
    if isinstance(getattr(mcfg, "readout", None), ELMLayerConfig):
        return "readout"
    if getattr(mcfg, "readout", None) == "elm" and isinstance(getattr(mcfg, "elm_readout", None), ELMLayerConfig):
        return "elm_readout"
    return None


def readout_reach(mcfg, model_seed: int) -> Optional[int]:
    """How many of the ``N`` hidden neurons the ELM readout's connectome reads (at least one synapse),
    for the network built with ``model_seed``; None when the network has no ELM readout. Draws the
    connectome exactly as :class:`~elm_neuro.networks.elm_network.ELMNetwork` and the spiking
    networks do: readout layer seed ``2 * model_seed + 1``, connectome seed twice that."""
    import torch
    from elm_neuro.wiring.connectome import make_connectome
    name = _readout_name(mcfg)
    if name is None or getattr(mcfg, "n", None) is None:
        return None
    lay = getattr(mcfg, name)
    conn = make_connectome(lay.wiring, mcfg.n, mcfg.n_classes, lay.k, lay.rho, seed=2 * (2 * int(model_seed) + 1))
    return int(torch.unique(conn[conn < mcfg.n]).numel())


def cover_readout(mcfg, model_seeds: Sequence[int]):
    """``mcfg`` with its ELM readout's ``d_brch`` the smallest, from ``ceil(N ln(20 N) / (C d_tree))``
    up, whose connectome reaches every hidden neuron for every seed in ``model_seeds``."""
    name = _readout_name(mcfg)
    if name is None:
        raise ValueError(f"readout 'cover' needs an ELM readout; {type(mcfg).__name__} has none")
    lay, n, c = getattr(mcfg, name), mcfg.n, mcfg.n_classes
    d_brch = max(1, math.ceil(n * math.log(COVER_MISS_FACTOR * n) / (c * lay.d_tree)))
    while True:
        cand = mcfg.replace(**{f"{name}.d_brch": d_brch})
        if all(readout_reach(cand, s) == n for s in model_seeds):
            return cand
        d_brch += 1


def _solve(base: TrainConfig, overrides: dict, budget: Optional[int], dims, scope: str):
    """The cell's model configuration, ``N`` sized to ``budget`` over the whole network (``network``:
    the budget solver of :func:`planned_model_config`) or over the hidden layer alone (``hidden``:
    :func:`hidden_params`, the readout's cost kept out of the compared split)."""
    if budget is None or scope == "network":
        return planned_model_config(base, overrides, budget, dims)
    ref = planned_model_config(base, overrides, None, dims)
    size = size_field(ref)
    return ref.replace(**{size: closest_n(lambda k: hidden_params(ref.replace(**{size: k})), budget)})


def plan_cells(grid: SweepGrid, dims: Optional[tuple[int, int]] = None) -> list[SweepCell]:
    """Every cell of the grid, in order budgets x values x seeds (module docstring). Checks that the
    cells of a budget differ only in the axis's own field (:func:`check_axis_isolation`)."""
    base = grid.base
    if base.model not in MODEL_FAMILIES:
        raise ValueError(f"model must be one of {sorted(MODEL_FAMILIES)}, got {base.model!r}")
    size = size_field(MODEL_FAMILIES[base.model][0])
    if grid.budgets is None and size not in base.model_overrides and not (grid.axis == size and grid.values):
        raise ValueError(f"give params (budgets that size {size}) or a fixed {size}")
    dims = dims or task_dims(base)
    cells, names, by_budget = [], set(), {}
    for budget in grid.budgets or [None]:
        for value in grid.values_at(budget) or [None]:
            overrides = {**base.model_overrides, **_axis_overrides(grid, value, dims)}
            mcfg = _solve(base, overrides, budget, dims, grid.budget_scope)
            overrides[size] = getattr(mcfg, size)
            seeds = [base.replace(seed=s).resolved_model_seed for s in grid.seeds]
            if grid.readout == "cover":
                mcfg = cover_readout(mcfg, seeds)
                name = _readout_name(mcfg)
                overrides[f"{name}.d_brch"] = getattr(mcfg, name).d_brch
            by_budget.setdefault(budget, []).append(mcfg)
            b = mcfg.budget()
            d_m = getattr(mcfg, "d_m", None)
            rname = _readout_name(mcfg)
            readout_k = getattr(mcfg, rname).k if rname else None
            parts = ([f"p{budget}"] if budget is not None else []) + ([f"dm{d_m}"] if d_m is not None else [])
            parts += ([f"kc{b.k_c}"] if grid.axis == "k_c" else []) + [f"n{b.n}"]
            for seed, model_seed in zip(grid.seeds, seeds):
                name = "-".join(parts + [f"s{seed}"])
                if name in names:
                    raise ValueError(f"two cells of the grid would share the name {name!r}; check the values")
                names.add(name)
                cfg = base.replace(seed=seed, params=None, model_overrides=dict(overrides))
                cells.append(SweepCell(name, cfg, seed, budget, value, b.n, d_m, b.k_c, b.k_e, b.p,
                                       p_hidden=hidden_params(mcfg), readout_k=readout_k,
                                       readout_reach=readout_reach(mcfg, model_seed),
                                       budget_scope=grid.budget_scope))
    check_axis_isolation(grid, by_budget)
    return cells


# --------------------------------------------------------------------------- sweep folder
def cell_path(out, name: str) -> Path:
    return Path(out) / "cells" / name


def _comparable(train: dict) -> dict:
    d = json.loads(json.dumps(train))
    for k in MUTABLE_FIELDS:
        d.pop(k, None)
    return d


def _grid_comparable(grid: dict) -> dict:
    g = json.loads(json.dumps(grid))
    g["base"] = _comparable(g["base"])
    return g


def _diff_keys(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_sweep_dir(out, grid: SweepGrid, cells: Sequence[SweepCell], force: bool = False) -> None:
    """Write ``sweep.json`` for a new sweep; refuse a different grid unless ``force``."""
    out = Path(out)
    path = out / "sweep.json"
    new = {"format": SWEEP_FORMAT, "grid": grid.to_dict(), "cells": [c.name for c in cells]}
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a folder for the sweep")
    if not path.is_file() and out.is_dir():
        # a new sweep: the folder must hold nothing else (its report and figures would be written over a
        # user's files of the same names, and its results.csv would mix with them)
        foreign = foreign_entries(out)
        if foreign:
            raise ValueError(f"--out {out} holds {list_names(foreign)} but no sweep.json: it is not a sweep "
                             f"folder; use a new or empty folder (nothing there is touched)")
    if path.is_file():
        old = json.loads(path.read_text())
        a, b = _grid_comparable(old.get("grid", {})), _grid_comparable(new["grid"])
        if a != b and not force:
            diff = _diff_keys(a, b) + [f"base.{k}" for k in _diff_keys(a.get("base", {}), b.get("base", {}))]
            raise ValueError(f"out: {out} holds a sweep with a different grid (differs in "
                             f"{[k for k in diff if k != 'base']}); re-run with the same arguments to continue, "
                             f"use another --out, or --force to continue with the new grid")
    for c in cells:
        run = RunDir(cell_path(out, c.name))
        if run.config.is_file():
            stored = _comparable(run.read_config()["train"])
            planned = _comparable(c.config.to_dict())
            if stored != planned:
                raise ValueError(f"cell {c.name}: {run.config} was trained with a different configuration "
                                 f"(fields {_diff_keys(stored, planned)}); remove {run.path} or use another --out")
    save_json(new, path)
