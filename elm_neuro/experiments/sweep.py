"""Budget sweeps: a grid of run directories, a results table rebuilt from them, and a report.

    elm-neuro sweep --task shd-adding --params 77000 --d-m 2,3,4,5,7,9,11,15,20,25 --seeds 3 \\
        --data DIR --out SWEEP_DIR
    elm-neuro sweep-report SWEEP_DIR

This module runs a sweep (:func:`run_sweep`): it plans the grid, checks it, trains the unfinished
cells and keeps the results table up to date. The parts live in one module each:

- :mod:`~elm_neuro.experiments.sweep_plan`: the grid (``budgets x values x seeds`` over the
  ``d_m``, ``n`` or ``k_c`` axis), its cells and their names, the sweep folder's ``sweep.json``;
- :mod:`~elm_neuro.experiments.sweep_results`: ``results.csv``, rebuilt from the run directories;
- :mod:`~elm_neuro.experiments.sweep_executors`: the local and the Ray executors;
- :mod:`~elm_neuro.experiments.sweep_report`: the report, from ``results.csv`` alone.

(``SweepGrid``, ``plan_cells``, ``collect_results`` and ``write_results`` can also be imported
from here, where :func:`run_sweep` uses them.)

Resuming and safety
    ``SWEEP_DIR/sweep.json`` holds the grid. Re-running with the same grid continues: finished
    cells (``summary.json``) are skipped, cells with a ``checkpoint.pt`` are resumed
    (:func:`elm_neuro.experiments.compare.run_cell`), the rest start. A different grid is refused
    unless ``force`` (e.g. to add seeds or budgets); the data folder, the device and the thread
    count may change (:func:`~elm_neuro.experiments.sweep_plan.check_sweep_dir`).
    One driver per sweep folder at a time: the folder is locked for the life of the call
    (:func:`elm_neuro.atomic.folder_lock`; a second driver is refused at once with the first's
    pid), each cell's run directory by its training.
    Before any cell trains, every cell that will start is checked
    (:func:`elm_neuro.training.preflight.preflight`: data files, device, model and budget, a
    batch's activation memory), and the Ray cluster at ``address`` must answer within
    ``ray_timeout`` seconds. ``results.csv`` is rebuilt after every cell and at the end; a cell
    that raises is reported and left unfinished, the others go on.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from elm_neuro.atomic import folder_lock, save_json
from elm_neuro.data.provenance import data_paths
from elm_neuro.data.shd_adding import check_split_files
from elm_neuro.experiments.sweep_executors import (RAY_TIMEOUT_S, ClusterLost, connect_ray, import_ray, run_local,
                                                   run_ray)
from elm_neuro.experiments.sweep_plan import (CELL_FILE, SweepCell, SweepGrid, cell_path, check_sweep_dir,
                                              plan_cells, planned_model_config, task_dims)
from elm_neuro.experiments.sweep_results import collect_results, write_results
from elm_neuro.training.preflight import check_device, check_memory
from elm_neuro.training.run import RunDir
from elm_neuro.training.trainer import is_complete

EXECUTORS = ("local", "ray")


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
        grid = dataclasses.replace(grid, base=grid.base.replace(data_dir=str(Path(grid.base.data_dir).resolve())))
    dims = task_dims(grid.base)
    cells = plan_cells(grid, dims)
    device = check_device(grid.base.device)
    if grid.base.task != "enwik8" or grid.base.data_dir is not None:
        data_paths(grid.base.task, grid.base.data_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(17, "File exists", str(out))
    todo = [c for c in cells if not is_complete(RunDir(cell_path(out, c.name)).read_summary())]
    jobs = todo if stop_after is None else todo[:stop_after]
    starting = [c for c in jobs if not RunDir(cell_path(out, c.name)).checkpoint.is_file()]
    if starting and grid.base.task != "enwik8":  # the data's splits, named, before anything is written
        check_split_files(grid.base.data_dir)
    _check_memory(starting, device, dims)
    ray, started = (None, False)
    if executor == "ray" and jobs:  # before anything is written: a cluster that does not answer stops here
        ray, started = connect_ray(address, workers if workers > 1 else (os.cpu_count() or 1), ray_timeout)
    lost = False
    try:
        with folder_lock(out, "--out folder"):
            return _run_locked(out, grid, cells, jobs, ray, workers, progress, force, address)
    except ClusterLost:
        lost = True  # shutting down would wait for the lost cluster
        raise
    finally:
        if started and not lost:
            ray.shutdown()


def _check_memory(cells: Sequence[SweepCell], device, dims) -> None:
    """The activation-memory check of every cell that will start (one probe per configuration)."""
    done: set = set()
    for c in cells:
        key = json.dumps(c.config.model_overrides, sort_keys=True)
        if key in done:
            continue
        done.add(key)
        mcfg = planned_model_config(c.config, c.config.model_overrides, None, dims)
        try:
            check_memory(mcfg, c.config, device)
        except ValueError as exc:
            raise ValueError(f"cell {c.name}: {exc}") from None


def _run_locked(out: Path, grid: SweepGrid, cells, jobs, ray, workers, progress, force,
                address: Optional[str] = None) -> "SweepResult":
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
            run_ray(out, jobs, ray, progress, on_done, address)
        else:
            run_local(out, jobs, workers, progress, on_done)
    path = write_results(out)
    finished = {r["run_id"] for r in collect_results(out)}
    return SweepResult(path, [c.name for c in cells], ran, [c.name for c in done], failed,
                       [c.name for c in cells if c.name not in finished])
