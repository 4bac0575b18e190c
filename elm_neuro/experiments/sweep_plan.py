"""Planning a budget sweep: its grid, its cells, and the sweep folder that records them.

The grid
    ``budgets x values x seeds``. ``axis`` names the configuration axis that ``values`` sweep:

    - ``d_m`` (default): memory units per neuron. With budgets (``--params``) every cell's ``N``
      is sized by the budget solver (:func:`elm_neuro.training.model_setup.train_model_config`,
      :func:`~elm_neuro.networks.budget.closest_n`), the paper's fixed-budget trade-off; without
      budgets ``N`` is fixed (``--n``). Several budgets give the cross product with ``d_m``.
    - ``n``: hidden-layer size, with ``d_m`` and ``k_c`` fixed (no budgets: ``P`` follows ``N``).
    - ``k_c``: synapses per hidden neuron. The values are ``k_c = K = d_tree * d_brch``; the sweep
      varies ``d_brch = k_c / d_tree`` with ``d_tree`` fixed (so each value must be a multiple of
      ``d_tree``); families without dendritic branches (LIF) set ``n_synapses = k_c``. ``N`` is
      fixed (``--n``) or sized to each budget.

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

    def __post_init__(self) -> None:
        if not isinstance(self.base, TrainConfig):
            raise ValueError(f"base must be a TrainConfig, got {type(self.base).__name__}")
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")
        self.values = _int_list("values", self.values)
        self.budgets = _int_list("budgets (params)", self.budgets)
        self.seeds = _int_list("seeds", self.seeds, minimum=0)
        fixed = self.base.model_overrides
        axis_field = {"d_m": "d_m", "n": "n", "k_c": None}[self.axis]
        if axis_field is not None and axis_field in fixed and self.values is not None:
            raise ValueError(f"{axis_field} is the swept axis (values); do not also fix it in the model fields")
        if self.axis == "k_c" and self.values is not None and ({"d_brch", "n_synapses"} & set(fixed)):
            raise ValueError("axis k_c varies d_brch (or n_synapses); do not also fix it in the model fields")
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
        return {"axis": self.axis, "values": self.values, "budgets": self.budgets, "seeds": self.seeds,
                "base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepGrid":
        return cls(base=TrainConfig.from_dict(d["base"]), axis=d["axis"], values=d["values"],
                   budgets=d["budgets"], seeds=d["seeds"])


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

    def meta(self, axis: str) -> dict:
        return {"name": self.name, "p_target": self.p_target, "axis": axis, "axis_value": self.axis_value,
                "planned": {"n": self.n, "d_m": self.d_m, "k_c": self.k_c, "k_e": self.k_e, "p": self.p}}


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


def _axis_overrides(grid: SweepGrid, value: Optional[int], dims) -> dict:
    """The model fields that put ``value`` on the grid's axis."""
    if value is None:
        return {}
    if grid.axis in ("d_m", "n"):
        return {grid.axis: value}
    ref = planned_model_config(grid.base, grid.base.model_overrides, None, dims)
    if hasattr(ref, "d_tree") and hasattr(ref, "d_brch"):
        if value % ref.d_tree:
            raise ValueError(f"values: k_c = {value} is not a multiple of d_tree = {ref.d_tree} "
                             f"(axis k_c varies d_brch = k_c / d_tree)")
        return {"d_brch": value // ref.d_tree}
    if hasattr(ref, "n_synapses"):
        return {"n_synapses": value}
    raise ValueError(f"axis k_c: model {grid.base.model!r} has neither d_brch nor n_synapses to vary")


def plan_cells(grid: SweepGrid, dims: Optional[tuple[int, int]] = None) -> list[SweepCell]:
    """Every cell of the grid, in order budgets x values x seeds (module docstring)."""
    base = grid.base
    if base.model not in MODEL_FAMILIES:
        raise ValueError(f"model must be one of {sorted(MODEL_FAMILIES)}, got {base.model!r}")
    size = size_field(MODEL_FAMILIES[base.model][0])
    if grid.budgets is None and size not in base.model_overrides and not (grid.axis == size and grid.values):
        raise ValueError(f"give params (budgets that size {size}) or a fixed {size}")
    dims = dims or task_dims(base)
    cells, names = [], set()
    for budget in grid.budgets or [None]:
        for value in grid.values or [None]:
            overrides = {**base.model_overrides, **_axis_overrides(grid, value, dims)}
            mcfg = planned_model_config(base, overrides, budget, dims)
            overrides[size] = getattr(mcfg, size)
            b = mcfg.budget()
            d_m = getattr(mcfg, "d_m", None)
            parts = ([f"p{budget}"] if budget is not None else []) + ([f"dm{d_m}"] if d_m is not None else [])
            parts += ([f"kc{b.k_c}"] if grid.axis == "k_c" else []) + [f"n{b.n}"]
            for seed in grid.seeds:
                name = "-".join(parts + [f"s{seed}"])
                if name in names:
                    raise ValueError(f"two cells of the grid would share the name {name!r}; check the values")
                names.add(name)
                cfg = base.replace(seed=seed, params=None, model_overrides=dict(overrides))
                cells.append(SweepCell(name, cfg, seed, budget, value, b.n, d_m, b.k_c, b.k_e, b.p))
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
