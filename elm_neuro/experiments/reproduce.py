"""Named, versioned experiment plans run end to end: ``elm-neuro reproduce NAME --out DIR``.

A plan (:data:`elm_neuro.defaults.PLANS`) names its data, a training recipe and its stages;
:func:`run_plan` runs them in order into one folder and writes the plan's report::

    OUT/plan.json            the plan as run (name, version, stages); another plan or version is refused
    OUT/data/                synthetic SHD-format files (synthetic plans) or spoken digits (spoken plans
                             without --data: ``elm-neuro data spoken``'s files, n_train / n_test / seed of
                             the plan); made once (resumably), then reused
    OUT/<stage>/             one sweep folder (elm_neuro.experiments.sweep) or comparison folder
                             (elm_neuro.experiments.compare) per stage, each with its own report
    OUT/results/results.csv  every finished cell of every stage, with a ``stage`` column
    OUT/results/README.md    the plan's report, computed from results.csv alone (figures beside it)

Everything resumes: finished cells are skipped, interrupted ones continue from their checkpoint,
so running the same command again picks up where it stopped. Stages run on the local executor
(``workers`` processes) or on Ray (``executor="ray"``; sweeps only, comparisons run locally).

Reports (:func:`budget_tradeoff_report`, :func:`comparison_report`) are pure functions of the
results table, so the committed ``analysis/results/*/README.md`` can be checked against their
``results.csv`` (``tests/test_reproduce.py``).

Before it trains, :func:`estimate_plan` times ``PLAN_TIMING_STEPS`` training steps of every
distinct model of the plan on the device and prints the expected total (GPU- or CPU-) hours.

Before it writes anything, :func:`run_plan` checks what it can without writing: ``--out`` is a new
or empty folder, or a folder of this plan and version (``plan.json``; a folder holding only what a
plan writes, from a start that stopped early, is one too), never a file or a folder with other
files; a plan on the real data gets the real SHD (a synthetic or missing ``--data`` is refused); a
spoken plan given ``--data`` gets spoken digits with the plan's counts and seed (any other folder
is refused, naming the ``data spoken`` command that makes the right one).
``plan.json`` is written once the data is there and every model of the plan resolves; when the
command fails before that, a folder it created is removed again, so a refused or failed start
leaves nothing behind.
"""
from __future__ import annotations

import copy
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import h5py
import torch

from elm_neuro import defaults as D
from elm_neuro.analysis import study_figures as SF
from elm_neuro.analysis import sweep_table as st
from elm_neuro.analysis.welch import welch
from elm_neuro.atomic import (RefusedPath, folder_lock, foreign_entries, list_names, remove_created_folder, save_json,
                              save_text)
from elm_neuro.data.binning import n_bins
from elm_neuro.data.provenance import shd_provenance
from elm_neuro.data.spoken import SEED_ATTR as SPOKEN_SEED_ATTR
from elm_neuro.data.spoken import write_spoken_shd
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments.compare import CHANCE, CellsFailed, cell_dir, compare, stage_options
from elm_neuro.experiments.failures import StageFailed
from elm_neuro.experiments.sweep import run_sweep
from elm_neuro.experiments.sweep_plan import SweepGrid, plan_cells, task_dims
from elm_neuro.experiments.sweep_report import fit_sections, write_sweep_report
from elm_neuro.experiments.sweep_results import config_columns, run_config_columns, write_csv
from elm_neuro.networks.registry import PHYSICAL_TIME_FAMILIES, build_model
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.model_setup import run_model_config
from elm_neuro.training.run import RunDir, read_json_file
from elm_neuro.training.trainer import is_complete

PLAN_FILE = "plan.json"
STAGE_KINDS = ("sweep", "compare")
DATA_KINDS = ("synthetic", "spoken", "real")
TASK_NAMES = {"shd-adding": "SHD-Adding", "shd": "SHD (20 classes)"}
TITLE_DATA = {"synthetic": "synthetic", "spoken": "spoken-digit", "real": "the real"}
DATA_WORDS = {"synthetic": "synthetic data", "spoken": "spoken digits", "real": "the real SHD"}
OPTIMUM_N_BOOT = 1000  # bootstrap resamples of the seeds behind the reported share of each best d_m
RESULT_COLUMNS = ("stage", "run_id", "task", "family", "seed", "p_target", "p", "n", "k_e", "k_c", "d_m",
                  "valid_acc", "test_acc", "wall_s", "steps")


# --------------------------------------------------------------------------- plans
def plan_names() -> list[str]:
    return sorted(D.PLANS)


def get_plan(name: str) -> dict:
    """A copy of the named plan, checked (stage names unique, kinds known)."""
    if name not in D.PLANS:
        raise ValueError(f"plan must be one of {plan_names()}, got {name!r}")
    plan = copy.deepcopy(D.PLANS[name])
    check_plan(name, plan)
    return plan


def check_plan(name: str, plan: dict) -> None:
    names = [s["name"] for s in plan["stages"]]
    if len(set(names)) != len(names):
        raise ValueError(f"plan {name!r}: stage names must be unique, got {names}")
    for s in plan["stages"]:
        if s["kind"] not in STAGE_KINDS:
            raise ValueError(f"plan {name!r}: stage {s['name']!r} has kind {s['kind']!r}, expected one of {STAGE_KINDS}")
    if plan["data"] not in DATA_KINDS:
        raise ValueError(f"plan {name!r}: data must be one of {DATA_KINDS}, got {plan['data']!r}")


def stage_config(plan: dict, stage: dict, data_dir, device: str = D.DEVICE, threads: Optional[int] = None,
                 model: Optional[str] = None) -> TrainConfig:
    """The training configuration of a stage (the plan's recipe and fields, the stage's task and
    model); for a comparison, ``model`` picks the model and its fixed fields."""
    fields = {**D.recipe(plan["recipe"]), **plan.get("train", {})}
    if "task" in stage:
        fields["task"] = stage["task"]
    fields.update(data_dir=str(Path(data_dir).resolve()), device=device, threads=threads, seed=plan["seed"])
    if stage["kind"] == "sweep":
        return TrainConfig(**fields, model=stage["model"], model_overrides=dict(stage.get("fixed", {})))
    return TrainConfig(**fields, model=model, params=stage["params"],
                       model_overrides=dict(stage.get("fixed", {}).get(model, {})))


def stage_grid(plan: dict, stage: dict, data_dir, device: str = D.DEVICE, threads: Optional[int] = None) -> SweepGrid:
    """The sweep grid of a plan's sweep stage (``budget_scope`` and ``readout``: the stage's own, else
    :class:`~elm_neuro.experiments.sweep_plan.SweepGrid`'s defaults)."""
    return SweepGrid(base=stage_config(plan, stage, data_dir, device, threads), axis=stage["axis"],
                     values=stage.get("values"), budgets=stage.get("budgets"), seeds=list(stage["seeds"]),
                     **{k: stage[k] for k in ("budget_scope", "readout", "budget_values") if k in stage})


def plan_cells_of(plan: dict, data_dir, device: str = D.DEVICE) -> list:
    """The sweep cells of every sweep stage of the plan (:class:`~elm_neuro.experiments.sweep_plan.SweepCell`)."""
    return [c for stage in plan["stages"] if stage["kind"] == "sweep"
            for c in plan_cells(stage_grid(plan, stage, data_dir, device))]


def plan_jobs(plan: dict, data_dir, device: str = D.DEVICE) -> list[tuple[str, TrainConfig]]:
    """Every training run of the plan as ``(stage, config)``, for estimates and checks."""
    jobs = []
    for stage in plan["stages"]:
        if stage["kind"] == "sweep":
            jobs += [(stage["name"], c.config) for c in plan_cells(stage_grid(plan, stage, data_dir, device))]
        else:
            for model in stage["models"]:
                cfg = stage_config(plan, stage, data_dir, device, model=model)
                lrs = stage.get("lr_grid") or [cfg.lr]  # a learning-rate search trains one run per rate
                jobs += [(stage["name"], cfg.replace(seed=s, lr=float(lr))) for s in stage["seeds"] for lr in lrs]
    return jobs


def planned_rows(plan: dict, data_dir) -> int:
    """Rows ``results.csv`` holds when the plan is done: one per sweep cell, one per (model, seed)
    cell of a comparison (a learning-rate search trains several runs for one row)."""
    return sum(len(plan_cells(stage_grid(plan, s, data_dir))) if s["kind"] == "sweep"
               else len(s["models"]) * len(s["seeds"]) for s in plan["stages"])


# --------------------------------------------------------------------------- time estimate
def _time_steps(cfg: TrainConfig, device: torch.device, steps: int) -> float:
    """Seconds per training step of ``cfg``'s model on random inputs of the task's shape."""
    n_in, n_classes = task_dims(cfg)
    model = build_model(run_model_config(cfg, n_in, n_classes)).to(device).train()
    t_steps = n_bins(cfg.digit_window_s, cfg.bin_ms / 1000) * (2 if cfg.task == "shd-adding" else 1)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(cfg.batch_size, t_steps, n_in, generator=g) < 0.05).float().to(device)
    y = torch.randint(0, n_classes, (cfg.batch_size,), generator=g).to(device)
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4)

    def step():
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.logits[:, -1].float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (compiles the engines)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def _steps_of(cfg: TrainConfig) -> int:
    """Training steps of a run plus its evaluation batches (counted as training steps: an upper bound)."""
    train = cfg.total_steps or cfg.epochs * cfg.batches_per_epoch
    return train + cfg.epochs * cfg.valid_batches + cfg.test_batches


def estimate_plan(plan: dict, data_dir, device: str = "cpu", steps: int = D.PLAN_TIMING_STEPS,
                  jobs: Optional[list] = None) -> dict:
    """Measured seconds per step of each distinct model of the plan and the expected total hours
    (``jobs``: the plan's :func:`plan_jobs` when the caller has them)."""
    dev = torch.device(device)
    jobs = jobs if jobs is not None else plan_jobs(plan, data_dir, device)
    per_model, total = {}, 0.0
    for _, cfg in jobs:
        key = json.dumps({"task": cfg.task, "model": cfg.model, "params": cfg.params,
                          "overrides": cfg.model_overrides}, sort_keys=True)
        if key not in per_model:
            per_model[key] = _time_steps(cfg, dev, steps)
        total += per_model[key] * _steps_of(cfg)
    return {"device": str(dev), "runs": len(jobs), "models_timed": len(per_model),
            "hours": total / 3600.0}


# --------------------------------------------------------------------------- running
def _plan_record(name: str, plan: dict) -> dict:
    return {"name": name, "version": plan["version"], "plan": plan}


def _check_plan_dir(out: Path, name: str, plan: dict) -> None:
    """Refuse an ``--out`` that is not a new or empty folder or this plan's (module docstring);
    writes nothing."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(17, "File exists", str(out))
    path = out / PLAN_FILE
    if path.is_file():
        old = read_json_file(path, "plan record", "use another --out (or restore it from a copy)")
        old = old if isinstance(old, dict) else {}
        if (old.get("name"), old.get("version")) != (name, plan["version"]):
            raise ValueError(f"out: {out} holds plan {old.get('name')!r} version {old.get('version')}, not "
                             f"{name!r} version {plan['version']}; use another folder")
        if old.get("plan") != json.loads(json.dumps(plan)):
            raise ValueError(f"out: {out} was made by a different definition of plan {name!r} version "
                             f"{plan['version']}; use another folder (or bump the plan's version)")
        return
    if out.is_dir():
        foreign = foreign_entries(out, (PLAN_FILE, "data", "results", *(s["name"] for s in plan["stages"])))
        if foreign:
            raise RefusedPath(f"--out {out} holds files that are not a plan folder's ({list_names(foreign)}); reproduce "
                              f"writes its data, stages and results there: choose a new or empty folder (nothing was "
                              f"changed)")


def _check_spoken_data(plan: dict, data_dir) -> None:
    """A spoken plan given ``--data`` gets the spoken digits it names: files of ``elm-neuro data
    spoken`` with the plan's training / test counts and seed (module docstring); writes nothing."""
    data = Path(data_dir)
    prov = shd_provenance(data)
    if prov["source"] != "spoken":
        raise ValueError(f"data: {data} holds {prov['source']} SHD files ({prov['detail']}); this plan trains on "
                         f"spoken digits (elm-neuro data spoken, or leave out --data to make them under --out)")
    want = {"train": plan["n_train"], "test": plan["n_test"]}
    for split, n in want.items():
        with h5py.File(data / f"shd_{split}.h5", "r") as f:
            got, seed = int(f["labels"].shape[0]), f.attrs.get(SPOKEN_SEED_ATTR)
        if got != n or seed is None or int(seed) != plan["seed"]:
            raise ValueError(f"data: {data / f'shd_{split}.h5'} holds {got} spoken digits of seed {seed}; this plan "
                             f"needs {n} of seed {plan['seed']} (elm-neuro data spoken --train {want['train']} "
                             f"--test {want['test']} --seed {plan['seed']})")


def _check_real_data(plan: dict, data_dir) -> None:
    """A plan on the real data gets the real SHD, a spoken plan given ``--data`` its spoken digits
    (module docstring); writes nothing."""
    if plan["data"] == "spoken" and data_dir is not None:
        _check_spoken_data(plan, data_dir)
    if plan["data"] != "real":
        return
    if data_dir is None:
        raise ValueError("data: this plan trains on the real SHD; give --data DIR with shd_train.h5 and shd_test.h5 "
                         "(elm-neuro data fetch --out DIR)")
    data = Path(data_dir)
    prov = shd_provenance(data)
    if prov["source"] != "real":
        raise ValueError(f"data: {data} holds {prov['source']} SHD files ({prov['detail']}); this plan needs the "
                         f"real SHD (elm-neuro data fetch --out DIR)")


def _plan_data(out: Path, plan: dict, data_dir, workers: int = D.SPOKEN_WORKERS, progress: bool = True) -> Path:
    if plan["data"] in ("synthetic", "spoken") and not (plan["data"] == "spoken" and data_dir is not None):
        data = out / "data"
        if not ((data / "shd_train.h5").is_file() and (data / "shd_test.h5").is_file()):
            if plan["data"] == "synthetic":
                write_synthetic_shd(data, plan["n_train"], plan["n_test"], seed=plan["seed"])
            else:  # resumable: a stopped start keeps its finished chunks
                write_spoken_shd(data, plan["n_train"], plan["n_test"], seed=plan["seed"], workers=workers,
                                 progress=progress, log=print)
        return data
    _check_real_data(plan, data_dir)
    return Path(data_dir)


def run_plan(name: str, out, data_dir=None, executor: str = "local", workers: int = D.WORKERS,
             address: Optional[str] = None, device: str = D.DEVICE, threads: Optional[int] = None,
             progress: bool = True, estimate: bool = True) -> Path:
    """Run plan ``name`` into ``out`` (module docstring); returns the report's path. The folder is
    locked for the run (:func:`elm_neuro.atomic.folder_lock`): a second ``reproduce`` into it is
    refused at once. Nothing is written before the checks of the module docstring pass."""
    plan = get_plan(name)
    out = Path(out)
    _check_plan_dir(out, name, plan)
    _check_real_data(plan, data_dir)
    created = not out.exists()
    started = []
    try:
        with folder_lock(out, what="plan folder (--out)"):
            _check_plan_dir(out, name, plan)  # again, now that no other process can start it
            return _run_plan_locked(name, plan, out, data_dir, executor, workers, address, device, threads, progress,
                                    estimate, started)
    except BaseException:
        if created and not started:
            remove_created_folder(out)
        raise


def _run_plan_locked(name, plan, out: Path, data_dir, executor, workers, address, device, threads, progress,
                     estimate, started: list) -> Path:
    data = _plan_data(out, plan, data_dir, workers, progress)
    jobs = plan_jobs(plan, data, device)  # resolves every model and budget before anything trains
    if not (out / PLAN_FILE).is_file():
        save_json(_plan_record(name, plan), out / PLAN_FILE)
    started.append(True)  # from here on the folder is the plan's: kept, and resumable
    if estimate:
        dev = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else (
            "cpu" if device == "auto" else device)
        est = estimate_plan(plan, data, dev, jobs=jobs)
        kind = "GPU" if dev.startswith("cuda") else "CPU"
        print(f"plan {name}: {est['runs']} runs; expected {est['hours']:.2f} {kind}-hours on {est['device']} "
              f"(from {D.PLAN_TIMING_STEPS} timed steps of each of {est['models_timed']} models)", flush=True)
    for stage in plan["stages"]:
        folder = out / stage["name"]
        if progress:
            print(f"plan {name}: stage {stage['name']} ({stage['kind']})", flush=True)
        if stage["kind"] == "sweep":
            res = run_sweep(folder, stage_grid(plan, stage, data, device, threads), executor=executor,
                            workers=workers, address=address, progress=progress)
            if getattr(res, "failed", None):
                raise StageFailed(f"stage {stage['name']}: {len(res.failed)} cell(s) failed: "
                                   f"{sorted(res.failed)[:3]}; fix and run the same command again to continue")
            write_sweep_report(folder)
        else:
            base = stage_config(plan, stage, data, device, threads, model=stage["models"][0])
            overrides = {m: dict(stage.get("fixed", {}).get(m, {})) for m in stage["models"]}
            try:
                compare(folder, base, list(stage["models"]), list(stage["seeds"]), overrides, progress=progress,
                        workers=workers, **stage_options(stage))
            except CellsFailed as exc:  # reported like a sweep stage's failed cells
                raise StageFailed(f"stage {stage['name']}: {len(exc.failed)} cell(s) failed: "
                                   f"{sorted(exc.failed)[:3]} (see {exc.report}); fix and run the same command "
                                   "again to continue") from exc
    rows = collect_plan_results(out, plan)
    results = out / "results"
    write_results_csv(rows, results / "results.csv")
    text = render_report(name, plan, rows, results)
    if plan["stages"] and plan["stages"][0]["kind"] == "compare":
        _comparison_timescales(out, plan, results)
    save_text(text, results / "README.md")
    return results / "README.md"


# --------------------------------------------------------------------------- results table
def _summary_row(stage: str, run_dir: Path, extra: dict) -> Optional[dict]:
    summary = RunDir(run_dir).read_summary()
    if not is_complete(summary):  # unfinished, failed or interrupted: not a result
        return None
    row = {"stage": stage, "run_id": run_dir.name, **extra}
    for k in RESULT_COLUMNS:
        if k not in row and k in summary:
            row[k] = summary[k]
    run = RunDir(run_dir)
    if run.config.is_file():
        for k, v in run_config_columns(run.read_config()).items():
            row.setdefault(k, v)
    return row


def collect_plan_results(out, plan: dict) -> list[dict]:
    """Every finished cell of every stage of the plan in ``out`` (stage order, then cell name)."""
    out = Path(out)
    rows = []
    for stage in plan["stages"]:
        folder = out / stage["name"]
        if stage["kind"] == "sweep":
            if (folder / "results.csv").is_file():
                for r in st.read_table(folder / "results.csv"):  # the leading columns, then the configuration
                    lead = {k: r.get(k) for k in RESULT_COLUMNS if k != "stage"}
                    rows.append({"stage": stage["name"], **lead,
                                 **{k: r[k] for k in config_columns([r]) if k not in lead and r.get(k) is not None}})
        else:
            for model in stage["models"]:
                for seed in stage["seeds"]:
                    row = _summary_row(stage["name"], cell_dir(folder, model, seed),
                                       {"task": stage["task"], "family": model, "seed": seed,
                                        "p_target": stage["params"]})
                    if row is not None:
                        rows.append(row)
    return rows


def write_results_csv(rows: Sequence[dict], path) -> None:
    """The plan's ``results.csv``: :data:`RESULT_COLUMNS`, then every configuration and provenance
    column the rows have (:func:`~elm_neuro.experiments.sweep_results.config_columns`: data,
    training fields such as ``lr``, the model's flat fields such as ``d_tree`` and ``d_brch``,
    ``readout.*``, the readout's coverage), in the sweeps' format
    (:func:`elm_neuro.experiments.sweep_results.write_csv`)."""
    write_csv(rows, list(RESULT_COLUMNS) + [c for c in config_columns(rows) if c not in RESULT_COLUMNS], path)


def read_results_csv(path) -> list[dict]:
    """The rows of a plan's ``results.csv`` (numbers parsed, empty cells None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `elm-neuro reproduce` first")
    return st.read_table(path)


# --------------------------------------------------------------------------- reports
def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mean_sd(vals: Sequence[float]) -> tuple[float, float, int]:
    vals = [float(v) for v in vals if _finite(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def _pm(mean: float, sd: float, n: int, digits: int = 3) -> str:
    if n == 0:
        return "n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" + (f" (n={n})" if n != 3 else "")


def optimum_shares(cells: Sequence[dict], n_boot: int = OPTIMUM_N_BOOT, seed: int = D.REPORT_SEED) -> dict:
    """How certain the best d_m of one budget is: ``{d_m: share}`` of ``n_boot`` bootstrap replicates
    in which that d_m has the highest mean, each replicate resampling every cell's seed values with
    replacement (cells without values never win; ties go to the smaller d_m, as ``max`` does)."""
    rng = random.Random(seed)
    wins: dict[int, int] = {}
    for _ in range(n_boot):
        means = [(statistics.fmean(rng.choices(c["values"], k=len(c["values"]))), c["d_m"])
                 for c in cells if c["values"]]
        best = max(means, key=lambda m: m[0])[1]
        wins[best] = wins.get(best, 0) + 1
    return {d: wins[d] / n_boot for d in sorted(wins)}


def tradeoff_numbers(rows: Sequence[dict], metric: str) -> dict:
    """Per budget of the d_m stage: mean ± sd over seeds for each d_m, the best d_m and N, whether
    the best is interior (neither the smallest nor the largest d_m swept), its margin over the
    better end point in units of the pooled seed spread, and the bootstrap share of each d_m
    being the best (:func:`optimum_shares`)."""
    dm_rows = [r for r in rows if r.get("stage") == "d_m" and _finite(r.get(metric))]
    budgets = sorted({int(r["p_target"]) for r in dm_rows if _finite(r.get("p_target"))})
    out = []
    for b in budgets:
        at = [r for r in dm_rows if int(r["p_target"]) == b]
        dms = sorted({int(r["d_m"]) for r in at})
        cells = []
        for dm in dms:
            sel = [r for r in at if int(r["d_m"]) == dm]
            m, sd, k = _mean_sd([r[metric] for r in sel])
            cells.append({"d_m": dm, "n": int(sel[0]["n"]), "p": int(sel[0]["p"]), "mean": m, "sd": sd, "seeds": k,
                          "values": [float(r[metric]) for r in sel],
                          "p_hidden": int(sel[0]["p_hidden"]) if _finite(sel[0].get("p_hidden")) else None})
        best = max(cells, key=lambda c: c["mean"])
        ends = [cells[0], cells[-1]]
        end = max(ends, key=lambda c: c["mean"])
        spread = math.sqrt((best["sd"] ** 2 + end["sd"] ** 2) / 2) or math.nan
        out.append({"budget": b, "cells": cells, "best_d_m": best["d_m"], "best_n": best["n"], "best": best["mean"],
                    "interior": best is not cells[0] and best is not cells[-1] and len(cells) >= 3,
                    "margin_sd": (best["mean"] - end["mean"]) / spread if best is not end else 0.0,
                    "end_d_m": end["d_m"], "vs_end": welch(best["values"], end["values"]) if best is not end else None,
                    "shares": optimum_shares(cells)})
    return {"metric": metric, "budgets": out}


def axis_numbers(rows: Sequence[dict], stage: str, key: str, metric: str) -> list[dict]:
    """Mean ± sd over seeds along one axis of a stage (``n`` or ``k_c``)."""
    sel = [r for r in rows if r.get("stage") == stage and _finite(r.get(metric))]
    out = []
    for v in sorted({int(r[key]) for r in sel}):
        at = [r for r in sel if int(r[key]) == v]
        m, sd, k = _mean_sd([r[metric] for r in at])
        out.append({key: v, "p": int(statistics.median(int(r["p"]) for r in at)), "mean": m, "sd": sd, "seeds": k})
    return out


def _time_line(rows: Sequence[dict]) -> str:
    """How long the runs took: the sum of their ``wall_s``, in total and per stage."""
    per = {}
    for r in rows:
        if _finite(r.get("wall_s")):
            per[r["stage"]] = per.get(r["stage"], 0.0) + float(r["wall_s"])
    parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in per.items())
    return f"training time (sum of the runs' wall_s) {sum(per.values()) / 60:.1f} min ({parts} min by stage)"


def budget_tradeoff_report(rows: Sequence[dict], plan: dict, fig_dir=None) -> str:
    """The budget-tradeoff plan's README from its results rows (figures into ``fig_dir`` if given)."""
    metric = plan["metric"]
    task = plan.get("train", {}).get("task", D.TASK)
    num = tradeoff_numbers(rows, metric)
    dm_rows = [dict(r) for r in rows if r.get("stage") == "d_m"]
    fixed = next((dict(s.get("fixed", {})) for s in plan.get("stages", []) if s.get("name") == "d_m"), {})
    lines = [f"# Budget trade-off: ELM networks on {TITLE_DATA.get(plan['data'], plan['data'])} "
             f"{TASK_NAMES.get(task, task)}", "",
             f"Plan `{plan.get('name', 'budget-tradeoff')}` version {plan['version']}; metric `{metric}` (mean ± sd "
             f"over seeds; chance {CHANCE.get(task, math.nan):.2f}). {len(rows)} finished runs; {_time_line(rows)}.",
             "", "## Fixed-budget d_m sweep (N from the budget solver)", ""]
    hidden = bool(dm_rows) and all(r.get("budget_scope") == "hidden" for r in dm_rows)
    if hidden:
        cover = [float(r["readout_coverage"]) for r in dm_rows if _finite(r.get("readout_coverage"))]
        reach = ("" if not cover else "; the readout reads every hidden neuron in every run" if min(cover) == 1.0
                 else f"; the readout reaches at least {min(cover):.0%} of the hidden neurons in every run")
        lines += [f"Budgets size the hidden layer alone, P hidden = N (k_c + k_e); P is the whole network, with "
                  f"the readout outside the compared budget{reach}.", ""]
    for b in num["budgets"]:
        ph = hidden and all(c["p_hidden"] is not None for c in b["cells"])
        lines += [f"### P ≈ {b['budget']:,}", "", "| d_m | N | " + ("P hidden | " if ph else "") + "P | " + metric
                  + " |", "|---|---|---|---|" + ("---|" if ph else "")]
        lines += [f"| {c['d_m']} | {c['n']} | " + (f"{c['p_hidden']:,} | " if ph else "")
                  + f"{c['p']:,} | {_pm(c['mean'], c['sd'], c['seeds'])} |" for c in b["cells"]]
        where = "an interior optimum" if b["interior"] else "its best at an end of the swept range"
        test = (f"; against the better end point d_m {b['end_d_m']}: {b['vs_end'].text()}" if b["vs_end"] is not None
                else "")
        lines += ["", f"Best: d_m = {b['best_d_m']} (N = {b['best_n']}), {metric} {b['best']:.3f}: {where}; "
                  f"margin over the better end point {b['margin_sd']:.1f} seed-sd{test}. Best d_m in "
                  f"{OPTIMUM_N_BOOT:,} bootstrap resamples of the seeds (a resampling share over few seeds, not a "
                  f"probability): {_shares_text(b['shares'])}.", ""]
    moves = ", ".join(f"P {b['budget']:,}: d_m* {b['best_d_m']}, N* {b['best_n']}" for b in num["budgets"])
    lines += ["## How the optimum moves with P", "", moves + ".", ""]
    for stage, key, title in (("n", "n", "N axis (d_m fixed; P grows with N)"),
                              ("k_c", "k_c", "k_c axis (d_m fixed, N from the budget solver)")):
        ax = axis_numbers(rows, stage, key, metric)
        if ax:
            lines += [f"## {title}", "", f"| {key} | P | {metric} |", "|---|---|---|"]
            lines += [f"| {a[key]} | {a['p']:,} | {_pm(a['mean'], a['sd'], a['seeds'])} |" for a in ax] + [""]
    if fig_dir is None:  # the fits draw their figures: into a scratch folder that is then removed
        with tempfile.TemporaryDirectory(prefix="elm-neuro-report-") as work:
            return "\n".join(lines + _fit_lines(dm_rows, Path(work), metric, task, fixed))
    Path(fig_dir).mkdir(parents=True, exist_ok=True)
    _study_figures(rows, Path(fig_dir), metric, CHANCE.get(task))
    return "\n".join(lines + _fit_lines(dm_rows, Path(fig_dir), metric, task, fixed))


def _shares_text(shares: dict) -> str:
    """``8 (62 %), 4 (30 %), 16 (8 %)``: each d_m with its bootstrap share, most frequent first."""
    def pct(v: float) -> str:
        return "<1 %" if 0 < v < 0.005 else f"{100 * v:.0f} %"

    return ", ".join(f"{d} ({pct(v)})" for d, v in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])))


def _study_figures(rows: Sequence[dict], fig_dir: Path, metric: str, chance: Optional[float]) -> list[str]:
    """The study's own figures (:mod:`elm_neuro.analysis.study_figures`) for the stages it has:
    ``d_m_sweep.png`` and ``heatmap_n_dm.png`` (d_m stage), ``n_axis.png``, ``k_c_axis.png``."""
    stages = {r.get("stage") for r in rows}
    made = []
    if "d_m" in stages:
        made += [SF.plot_d_m_sweep(rows, metric, fig_dir / "d_m_sweep.png", chance),
                 SF.plot_budget_heatmap(rows, metric, fig_dir / "heatmap_n_dm.png")]
    if "n" in stages:
        made.append(SF.plot_n_axis(rows, metric, fig_dir / "n_axis.png", chance))
    if "k_c" in stages:
        made.append(SF.plot_k_c_axis(rows, metric, fig_dir / "k_c_axis.png", chance))
    return made


def _fit_lines(dm_rows: list, work: Path, metric: str, task: str, config_fields: Optional[dict] = None) -> list[str]:
    """The scaling-law and information-model sections (figures into ``work``):
    :func:`~elm_neuro.experiments.sweep_report.fit_sections`, the d_m stage's fixed fields
    completing a table without d_tree / d_brch columns."""
    return fit_sections(dm_rows, work, metric, task=task, config_fields=config_fields,
                        n_boot=D.REPORT_N_BOOT, seed=D.REPORT_SEED)


def comparison_numbers(rows: Sequence[dict], metric: str) -> list[dict]:
    """Per (stage, model): mean ± sd over seeds of ``metric``, N, P and the mean wall time."""
    out = []
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    for stage in stages:
        models = list(dict.fromkeys(r["family"] for r in rows if r["stage"] == stage))
        for model in models:
            sel = [r for r in rows if r["stage"] == stage and r["family"] == model]
            m, sd, k = _mean_sd([r.get(metric) for r in sel])
            out.append({"stage": stage, "model": model, "n": int(sel[0]["n"]) if _finite(sel[0].get("n")) else None,
                        "p": int(sel[0]["p"]) if _finite(sel[0].get("p")) else None, "mean": m, "sd": sd, "seeds": k,
                        "wall_s": _mean_sd([r.get("wall_s") for r in sel])[0],
                        "values": [float(r[metric]) for r in sel if _finite(r.get(metric))]})
    return out


def comparison_report(rows: Sequence[dict], plan: dict) -> str:
    """The neuron-comparison plan's README from its results rows."""
    metric = plan["metric"]
    lines = [f"# Neuron comparison at equal parameter budget ({DATA_WORDS.get(plan.get('data'), plan.get('data'))})",
             "",
             f"Plan `{plan.get('name', 'neuron-comparison')}` version {plan['version']}; metric `{metric}` "
             f"(mean ± sd over seeds). {len(rows)} finished runs; {_time_line(rows)}.", ""]
    nums = comparison_numbers(rows, metric)
    for stage in dict.fromkeys(c["stage"] for c in nums):
        task = next(r["task"] for r in rows if r["stage"] == stage)
        lines += [f"## {stage} (chance {CHANCE.get(task, math.nan):.2f})", "",
                  f"| model | N | P | {metric} | wall s |", "|---|---|---|---|---|"]
        for c in (c for c in nums if c["stage"] == stage):
            lines.append(f"| {c['model']} | {c['n']} | {c['p']:,} | {_pm(c['mean'], c['sd'], c['seeds'])} | "
                         f"{c['wall_s']:.0f} |")
        at = [c for c in nums if c["stage"] == stage]
        lines += ["", *_training_lines(rows, plan, stage)]
        best = max(at, key=lambda c: c["mean"])
        if len(at) > 1:
            lines += ["", f"Highest mean: {best['model']}. Against each other model ({best['model']} minus it):", ""]
            lines += [f"- {c['model']}: {welch(best['values'], c['values']).text()}" for c in at if c is not best]
        lines.append("")
    lines += ["The timescales of the trained ELM, LIF and adLIF networks of the first stage (seed 0, in ms): "
              "`timescales.png`.", ""]
    return "\n".join(lines)


def _lr_text(lrs: Sequence) -> str:
    counts: dict[float, int] = {}
    for v in lrs:
        if _finite(v):
            counts[float(v)] = counts.get(float(v), 0) + 1
    return ", ".join(f"{lr:g}" + (f" x{k}" if k > 1 else "") for lr, k in sorted(counts.items())) or "n/a"


def _training_lines(rows: Sequence[dict], plan: dict, stage: str) -> list[str]:
    """What each family of a comparison stage got: its learning rate(s) (per seed, chosen on the
    validation split when the stage searched a grid) and the spiking families' initial timescales."""
    spec = next((s for s in plan.get("stages", []) if s.get("name") == stage), {})
    sel = [r for r in rows if r["stage"] == stage]
    models = list(dict.fromkeys(r["family"] for r in sel))
    per = "; ".join(f"{m} {_lr_text([r.get('lr') for r in sel if r['family'] == m])}" for m in models)
    recipe_lr = plan.get("train", {}).get("lr")
    if not any(_finite(r.get("lr")) for r in sel) and _finite(recipe_lr):  # a table from before the lr column
        per = f"{recipe_lr:g} for every family (the plan's recipe; results.csv has no lr column)"
    if spec.get("lr_grid"):
        grid = ", ".join(f"{v:g}" for v in spec["lr_grid"])
        lines = [f"Learning rate chosen per (model, seed) on the validation split from {{{grid}}}: {per}."]
    else:
        lines = [f"Learning rate (one for every family, not tuned): {per}."]
    spiking = [m for m in models if m in PHYSICAL_TIME_FAMILIES]
    if spiking:
        if spec.get("bin_width_taus"):
            lines.append(f"Spiking timescales ({', '.join(spiking)}) initialised for the time bin and learnable: "
                         f"membrane {D.BIN_TAU_MEM_STEPS[0]:g}-{D.BIN_TAU_MEM_STEPS[1]:g} steps, adaptation "
                         f"{D.BIN_TAU_ADAPT_STEPS[0]:g}-{D.BIN_TAU_ADAPT_STEPS[1]:g} steps (Bittar & Garner 2022), "
                         f"ELM readout {D.BIN_TAU_READOUT_STEPS[0]:g}-{D.BIN_TAU_READOUT_STEPS[1]:g} steps.")
        else:
            lines.append(f"Spiking timescales ({', '.join(spiking)}) at the presets' values in ms, not adapted to "
                         f"the time bin (a lower bound for the spiking families).")
    return lines


def render_report(name: str, plan: dict, rows: Sequence[dict], fig_dir=None) -> str:
    """The plan's README text from its results rows (a comparison plan, or a sweep plan)."""
    if {s["kind"] for s in plan["stages"]} == {"compare"}:
        return comparison_report(rows, {**plan, "name": name})
    return budget_tradeoff_report(rows, {**plan, "name": name}, fig_dir)


def _comparison_timescales(out: Path, plan: dict, results: Path) -> Optional[Path]:
    from elm_neuro.experiments.run_analysis import compare_runs_timescales

    stage = plan["stages"][0]
    with_taus = ("elm", "lif", "adlif")  # families with timescale parameters (an LSTM has none)
    runs = {m.upper(): cell_dir(out / stage["name"], m, stage["seeds"][0]) for m in stage["models"] if m in with_taus}
    runs = {k: v for k, v in runs.items() if is_complete(RunDir(v).read_summary())}
    return compare_runs_timescales(runs, results / "timescales.png") if runs else None


__all__ = ["PLAN_FILE", "budget_tradeoff_report", "collect_plan_results", "comparison_report", "estimate_plan",
           "get_plan", "plan_jobs", "plan_names", "planned_rows", "read_results_csv", "render_report", "run_plan", "stage_config",
           "tradeoff_numbers", "write_results_csv"]
