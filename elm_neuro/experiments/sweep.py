"""Budget sweeps: a grid of run directories, a results table rebuilt from them, and a report.

    elm-neuro sweep --task shd-adding --params 77000 --d-m 2,3,4,5,7,9,11,15,20,25 --seeds 3 \\
        --data DIR --out SWEEP_DIR
    elm-neuro sweep-report SWEEP_DIR

The grid
    ``budgets x values x seeds``. ``axis`` names the configuration axis that ``values`` sweep:

    - ``d_m`` (default): memory units per neuron. With budgets (``--params``) every cell's ``N``
      is sized by the budget solver (:func:`elm_neuro.training.model_setup.resolve_model_config`,
      :func:`~elm_neuro.networks.budget.closest_n`), the paper's fixed-budget trade-off; without
      budgets ``N`` is fixed (``--n``). Several budgets give the cross product with ``d_m``.
    - ``n``: hidden-layer size, with ``d_m`` and ``k_c`` fixed (no budgets: ``P`` follows ``N``).
    - ``k_c``: synapses per hidden neuron. The values are ``k_c = K = d_tree * d_brch``; the sweep
      varies ``d_brch = k_c / d_tree`` with ``d_tree`` fixed (so each value must be a multiple of
      ``d_tree``); families without dendritic branches (LIF) set ``n_synapses = k_c``. ``N`` is
      fixed (``--n``) or sized to each budget.

    Without values (e.g. ``--model lif --params 5000,20000``) the cells differ by budget only.
    Every cell is a normal run directory ``SWEEP_DIR/cells/<name>``, the name built from its
    configuration: ``p<target>-dm<d_m>-kc<k_c>-n<N>-s<seed>`` (the ``p`` part only with budgets,
    ``dm`` when the family has ``d_m``, ``kc`` only on the ``k_c`` axis), e.g.
    ``p77000-dm9-n57-s0``. The solved ``N`` is written into the cell's model overrides (its
    ``TrainConfig.params`` is None), so the name and the trained network agree; the target budget
    is kept in ``sweep_cell.json`` next to the run files and in the ``p_target`` column. A cell's
    seed is its run seed and its model seed (initial weights and connectome), so cells that differ
    by seed are different networks.

Resuming and safety
    ``SWEEP_DIR/sweep.json`` holds the grid. Re-running with the same grid continues: finished
    cells (``summary.json``) are skipped, cells with a ``checkpoint.pt`` are resumed
    (:func:`elm_neuro.experiments.compare.run_cell`), the rest start. A different grid is refused
    unless ``force`` (e.g. to add seeds or budgets); the data folder, the device and the thread
    count may change.
    Independently of ``force``, a cell directory whose stored training configuration differs from
    the planned one is refused, so a name always describes what was trained. One driver per sweep
    folder at a time: the folder is locked for the life of the call
    (:func:`elm_neuro.atomic.folder_lock`; a second driver is refused at once with the first's
    pid), each cell's run directory by its training.
    Before any cell trains, every cell that will start is checked
    (:func:`elm_neuro.training.preflight.preflight`: data files, device, model and budget, a
    batch's activation memory), and the Ray cluster at ``address`` must answer within
    ``ray_timeout`` seconds.

The results table
    ``SWEEP_DIR/results.csv`` is rebuilt from the run directories (finished cells only) after
    every cell and at the end, and written atomically; it never holds a cell twice and never
    loses one. Columns: ``run_id`` (the cell name), ``task``, ``family``, ``seed``, ``p_target``,
    ``p``, ``n``, ``k_e``, ``k_c``, ``d_m``, the metrics of ``summary.json`` (``valid_acc``,
    ``test_acc``, ``*_loss``, ``*_bpc``), ``wall_s``, ``epochs``, ``steps``, ``data_source`` (what the
    cell trained on, from config.json's ``data``: ``real``, ``synthetic``, ``builtin-corpus``,
    ``unknown``; empty for runs that did not record it), then every flat field of
    the resolved model configuration (its ``seed`` field, the wiring seed, as ``model_seed``).
    Rows are in natural order of ``run_id``.

Executors
    ``local`` runs cells one after another in this process (threads: ``base.threads``, else one
    per physical core), or in ``workers`` spawned processes (one torch thread each unless
    ``base.threads`` is set, as ``elm-neuro compare``; :mod:`elm_neuro.training.runtime`).
    ``ray`` runs each cell as a Ray task (``num_gpus=1`` when the cluster has GPUs and the device
    is not ``cpu``, else ``num_cpus=1`` with one torch thread unless ``base.threads``) on the cluster at ``address``, or on a local Ray instance with
    ``workers`` CPUs (shut down at the end). On a cluster the package must be installed on every
    node and SWEEP_DIR and the data must be on a shared file system. A cell that raises is
    reported and left unfinished; the others go on.

The report
    :func:`elm_neuro.experiments.sweep_report.write_sweep_report` (from ``results.csv`` alone).
"""
from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing as mp
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from elm_neuro.analysis.sweep_table import is_metric
from elm_neuro.atomic import folder_lock, save_json, save_text
from elm_neuro.data.shd import N_CLASSES, N_UNITS
from elm_neuro.data.shd_adding import N_SUM_CLASSES
from elm_neuro.experiments.compare import run_cell
from elm_neuro.networks.registry import MODEL_FAMILIES, config_from_dict, preset_config, size_field
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.language import load_tokens
from elm_neuro.training.model_setup import resolve_model_config
from elm_neuro.data.provenance import data_paths
from elm_neuro.training.preflight import check_device, check_memory
from elm_neuro.training.run import RunDir
from elm_neuro.training.trainer import is_complete
from elm_neuro.training.runtime import init_worker

AXES = ("d_m", "n", "k_c")
EXECUTORS = ("local", "ray")
SWEEP_FORMAT = 1
CELL_FILE = "sweep_cell.json"
# Training-config fields that may change between invocations of one sweep (paths, hardware).
MUTABLE_FIELDS = ("data_dir", "device", "threads")
RAY_HINT = "the ray executor needs Ray: pip install elm_neuro[distributed]"
#: Seconds a Ray cluster given by ``address`` has to answer before the sweep gives up.
RAY_TIMEOUT_S = 60.0


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


def _resolve(base: TrainConfig, overrides: dict, params: Optional[int], dims: tuple[int, int]):
    """The model configuration exactly as the task's trainer resolves it (same ``bin_ms``: the
    data's bin width for SHD, none for Enwik8, see :attr:`TrainConfig.model_bin_ms`)."""
    return resolve_model_config(base.model, base.task, base.preset, overrides, params, dims[0], dims[1],
                                bin_ms=base.model_bin_ms)


def _axis_overrides(grid: SweepGrid, value: Optional[int], dims) -> dict:
    """The model fields that put ``value`` on the grid's axis."""
    if value is None:
        return {}
    if grid.axis in ("d_m", "n"):
        return {grid.axis: value}
    ref = _resolve(grid.base, grid.base.model_overrides, None, dims)
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
            mcfg = _resolve(base, overrides, budget, dims)
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


def _is_summary_metric(k: str) -> bool:
    return k.startswith(("valid_", "test_")) and is_metric(k)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


_LEAD = ("run_id", "task", "family", "seed", "p_target", "p", "n", "k_e", "k_c", "d_m")
_TAIL = ("wall_s", "epochs", "steps")


def _scalar(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, tuple, dict)) else v


def collect_results(out) -> list[dict]:
    """One row per finished cell under ``out/cells`` (module docstring), in natural name order."""
    root = Path(out) / "cells"
    rows = []
    if not root.is_dir():
        return rows
    for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name)):
        run = RunDir(d)
        summary = run.read_summary()
        if summary is None or summary.get("status") != "completed" or not run.config.is_file():
            continue
        conf = run.read_config()
        meta = json.loads((d / CELL_FILE).read_text()) if (d / CELL_FILE).is_file() else {}
        row = {"run_id": d.name, "task": conf["train"]["task"], "family": summary.get("family"),
               "seed": summary.get("seed", conf["train"]["seed"]), "p_target": meta.get("p_target")}
        for k in ("p", "n", "k_e", "k_c", "d_m"):
            row[k] = summary.get(k)
        for k in sorted(summary):
            if _is_summary_metric(k) and isinstance(summary[k], (int, float)) and not isinstance(summary[k], bool):
                row[k] = summary[k]
        for k in _TAIL:
            row[k] = summary.get(k)
        row["data_source"] = conf.get("data", {}).get("source")  # real / synthetic / ... (None: not recorded)
        model_fields = config_from_dict(conf["model"]["family"], conf["model"]["config"]).flat()
        for k, v in sorted(model_fields.items()):
            key = "model_seed" if k == "seed" else k
            if key not in row:
                row[key] = _scalar(v)
        rows.append(row)
    return rows


def _cell_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_results(out) -> Path:
    """Rebuild ``out/results.csv`` from the finished cells (atomic write); returns its path."""
    rows = collect_results(out)
    cols: dict[str, None] = {c: None for c in _LEAD}
    for c in sorted({k for r in rows for k in r if _is_summary_metric(k)}):
        cols.setdefault(c, None)
    for c in _TAIL:
        cols.setdefault(c, None)
    for r in rows:
        for k in r:
            cols.setdefault(k, None)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(cols))
    for r in rows:
        w.writerow([_cell_text(r.get(c)) for c in cols])
    path = Path(out) / "results.csv"
    save_text(buf.getvalue(), path)
    return path


# --------------------------------------------------------------------------- executors
def _init_worker(threads: Optional[int] = None) -> None:
    """Initialiser of each worker process: ``threads`` torch threads (None: one per worker)."""
    init_worker(threads)


def _cell_job(run_dir: str, cfg_dict: dict) -> dict:
    return run_cell(Path(run_dir), TrainConfig.from_dict(cfg_dict), progress=False)


def _ray_cell_job(run_dir: str, cfg_dict: dict, single_thread: bool) -> dict:
    """Body of a Ray task: on CPU a worker's threads (the cell's ``threads``, else one), then
    train / resume the cell."""
    if single_thread or not torch.cuda.is_available():
        init_worker(cfg_dict.get("threads"))
    return run_cell(Path(run_dir), TrainConfig.from_dict(cfg_dict), progress=False)


def import_ray():
    """``ray``, imported on demand; ``ImportError`` with the install hint when it is missing."""
    try:
        import ray  # optional dependency (the "distributed" extra)
    except ImportError as exc:
        raise ImportError(RAY_HINT) from exc
    return ray


def _run_local(out, jobs, workers, progress, on_done) -> None:
    bar = tqdm(total=len(jobs), desc="sweep", unit="cell", disable=not progress)
    try:
        if workers <= 1:
            for cell in jobs:
                bar.set_postfix_str(cell.name)
                try:
                    s = run_cell(cell_path(out, cell.name), cell.config, progress)
                    on_done(cell, s, None)
                except Exception as exc:  # one failing cell must not stop the others
                    on_done(cell, None, exc)
                bar.update()
            return
        threads = jobs[0].config.threads if jobs else None
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads,)) as ex:
            futures = {ex.submit(_cell_job, str(cell_path(out, c.name)), c.config.to_dict()): c for c in jobs}
            for fut in as_completed(futures):
                try:
                    on_done(futures[fut], fut.result(), None)
                except Exception as exc:
                    on_done(futures[fut], None, exc)
                bar.update()
    finally:
        bar.close()


def ray_task_resources(cluster_resources: dict, device: str) -> dict:
    """Resources of one cell's Ray task: one GPU when the cluster has GPUs and the training
    device is not ``cpu``, else one CPU."""
    if cluster_resources.get("GPU", 0) >= 1 and not str(device).startswith("cpu"):
        return {"num_gpus": 1}
    return {"num_cpus": 1}


def _ray_endpoint(address: str) -> Optional[tuple[str, int]]:
    """``(host, port)`` of a Ray address (``ray://HOST:PORT`` or ``HOST:PORT``); None for ``auto``."""
    text = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        return None if text in ("auto", "local") else (text, 10001 if "://" in address else 6379)
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"--address {address!r}: expected ray://HOST:PORT or HOST:PORT") from None


def _timeout_message(address: str, timeout: float) -> str:
    return (f"--address {address}: the Ray cluster did not answer within {timeout:g} s; check the address "
            f"(ray://HOST:10001 for a Ray Client server, HOST:6379 for the head node) and that the cluster is up")


def connect_ray(address: Optional[str], workers: int, timeout: float = RAY_TIMEOUT_S):
    """Start Ray (local instance with ``workers`` CPUs) or connect to the cluster at ``address``;
    returns ``(ray, started)``. A cluster that refuses or does not answer within ``timeout`` seconds
    raises ``TimeoutError`` / ``ConnectionError`` naming ``--address`` (Ray's own connect would
    wait much longer)."""
    import socket
    import threading

    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if not address:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        return ray, True
    endpoint = _ray_endpoint(address)
    if endpoint is not None:
        try:
            socket.create_connection(endpoint, timeout=timeout).close()
        except socket.timeout:
            raise TimeoutError(_timeout_message(address, timeout)) from None
        except OSError as exc:
            raise ConnectionError(f"--address {address}: cannot reach {endpoint[0]}:{endpoint[1]} "
                                  f"({exc.strerror or exc}); check the address and that the Ray cluster is up") from None
    outcome: dict = {}

    def init() -> None:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    import logging

    # Ray logs its connection attempt and warns that a non-main thread cannot set its SIGTERM handler:
    # quiet while connecting, so that a failure ends in one line.
    ray_logs = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                if name == "ray" or name.startswith("ray.")]
    levels = [log.level for log in ray_logs]
    for log in ray_logs:
        log.setLevel(logging.ERROR)

    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    for log, lvl in zip(ray_logs, levels):
        log.setLevel(lvl)
    if thread.is_alive():
        raise TimeoutError(_timeout_message(address, timeout))
    if "error" in outcome:
        exc = outcome["error"]
        raise ConnectionError(f"--address {address}: Ray could not connect ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return ray, True


def _run_ray(out, jobs, ray, progress, on_done) -> None:
    res = ray_task_resources(ray.cluster_resources(), jobs[0].config.device)
    gpus = "num_gpus" in res
    task = ray.remote(**res)(_ray_cell_job)
    refs = {task.remote(str(cell_path(out, c.name)), c.config.to_dict(), not gpus): c for c in jobs}
    bar = tqdm(total=len(jobs), desc="sweep (ray)", unit="cell", disable=not progress)
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                cell = refs.pop(ref)
                try:
                    on_done(cell, ray.get(ref), None)
                except Exception as exc:
                    on_done(cell, None, exc)
                bar.update()
    finally:
        bar.close()
        for ref in refs:
            ray.cancel(ref)


@dataclass
class SweepResult:
    results: Path
    cells: list  # every planned cell name
    ran: list  # names finished in this call
    skipped: list  # names already finished before this call
    failed: dict  # name -> error message
    pending: list  # names still unfinished (failed, or left by stop_after)


def run_sweep(out, grid: SweepGrid, executor: str = "local", workers: int = 1, address: Optional[str] = None,
              progress: bool = True, stop_after: Optional[int] = None, force: bool = False,
              ray_timeout: float = RAY_TIMEOUT_S) -> SweepResult:
    """Plan, check and run the unfinished cells of ``grid`` under ``out``; rebuild ``results.csv``.

    ``stop_after`` runs at most that many unfinished cells in this call (time slicing; the next
    call continues). ``ray_timeout``: seconds the Ray cluster at ``address`` has to answer.
    Returns what ran, what was skipped, what failed and what is still pending.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 0):
        raise ValueError(f"stop_after must be an integer >= 0, got {stop_after!r}")
    if address is not None and executor != "ray":
        raise ValueError("address is only used by the ray executor (--executor ray)")
    if executor == "ray":
        import_ray()  # fail before any training starts
    out = Path(out).resolve()  # workers (Ray tasks) may start in another working directory
    if grid.base.data_dir is not None:
        grid = SweepGrid(base=grid.base.replace(data_dir=str(Path(grid.base.data_dir).resolve())), axis=grid.axis,
                         values=grid.values, budgets=grid.budgets, seeds=grid.seeds)
    dims = task_dims(grid.base)
    cells = plan_cells(grid, dims)
    device = check_device(grid.base.device)
    if grid.base.task != "enwik8" or grid.base.data_dir is not None:
        data_paths(grid.base.task, grid.base.data_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(17, "File exists", str(out))
    todo = [c for c in cells if not is_complete(RunDir(cell_path(out, c.name)).read_summary())]
    jobs = todo if stop_after is None else todo[:stop_after]
    _check_memory([c for c in jobs if not RunDir(cell_path(out, c.name)).checkpoint.is_file()], device, dims)
    ray, started = (None, False)
    if executor == "ray" and jobs:  # before anything is written: a cluster that does not answer stops here
        ray, started = connect_ray(address, workers if workers > 1 else (os.cpu_count() or 1), ray_timeout)
    try:
        with folder_lock(out, "--out folder"):
            return _run_locked(out, grid, cells, jobs, ray, workers, progress, force)
    finally:
        if started:
            ray.shutdown()


def _check_memory(cells: Sequence[SweepCell], device, dims) -> None:
    """The activation-memory check of every cell that will start (one probe per configuration)."""
    done: set = set()
    for c in cells:
        key = json.dumps(c.config.model_overrides, sort_keys=True)
        if key in done:
            continue
        done.add(key)
        mcfg = _resolve(c.config, c.config.model_overrides, None, dims)
        try:
            check_memory(mcfg, c.config, device)
        except ValueError as exc:
            raise ValueError(f"cell {c.name}: {exc}") from None


def _run_locked(out: Path, grid: SweepGrid, cells, jobs, ray, workers, progress, force) -> "SweepResult":
    check_sweep_dir(out, grid, cells, force=force)
    done = [c for c in cells if is_complete(RunDir(cell_path(out, c.name)).read_summary())]
    for c in jobs:
        meta = cell_path(out, c.name) / CELL_FILE
        if not meta.is_file():
            save_json(c.meta(grid.axis), meta)
    ran, failed = [], {}

    def on_done(cell, summary, exc):
        if exc is not None:
            failed[cell.name] = f"{type(exc).__name__}: {exc}"
            print(f"sweep: cell {cell.name} failed: {failed[cell.name]}", file=sys.stderr, flush=True)
        else:
            ran.append(cell.name)
        write_results(out)

    if jobs:
        if ray is not None:
            _run_ray(out, jobs, ray, progress, on_done)
        else:
            _run_local(out, jobs, workers, progress, on_done)
    path = write_results(out)
    finished = {r["run_id"] for r in collect_results(out)}
    return SweepResult(path, [c.name for c in cells], ran, [c.name for c in done], failed,
                       [c.name for c in cells if c.name not in finished])
