"""One entry point for training a run, whatever its task: :func:`run_training`.

Classification tasks (``shd-adding``, ``shd``) go to
:func:`elm_neuro.training.classification.train_classifier`, language modelling (``enwik8``) to
:func:`elm_neuro.training.language.train_language_model`. A resumed run reads its task from its
own ``config.json``. Used by ``elm-neuro train`` and by the experiments (compare, sweep, demo).

Around the trainer, :func:`run_training`

- checks everything it can before the first step and before it writes anything: the data files
  of every split (:func:`elm_neuro.data.shd_adding.check_split_files`: readable, SHD-format, with
  samples for the training, validation and test splits, each failure naming the file and what was
  expected), then :func:`elm_neuro.training.preflight.preflight` (device, data files, model
  configuration and budget, activation memory of a batch);
- writes a new run only into a folder that holds no files of a run's names or the files of an
  earlier elm-neuro run (a killed one's leftovers, a ``config.json`` it can read as a run's): a
  ``config.json`` or ``metrics.jsonl`` of the user's is refused, never overwritten or removed;
- holds the run directory's lock (:func:`elm_neuro.atomic.folder_lock`) for the life of the run,
  so that a second writer of the same directory is refused at once with the holder's pid;
- records the data as absolute paths with each file's size and sha256
  (config.json ``"data"."files"``, written by :func:`elm_neuro.training.common.start_run`);
- on resume, accepts a new data location (``changes={"data_dir": ...}``) when its files are
  the recorded ones, a new ``device`` and ``threads`` (runtime settings), refuses any other
  change naming the settings, and returns a complete run's summary without training
  (``summary["already_complete"]`` is then True);
- when the run fails: a new run without a checkpoint leaves nothing behind (the run directory is
  removed when this call created it, with the empty folders it made above it, else the files the
  run wrote in it); a run with a
  checkpoint gets ``summary.json`` ``{"status": "failed", "error": ...}`` (``--resume`` continues
  it from the last checkpoint). An interrupt (Ctrl-C, or ``SIGTERM``: a
  :class:`~elm_neuro.training.runtime.Terminated`) is handled the same way, except that a run with
  a checkpoint is marked ``{"status": "interrupted", "by": ...}`` instead: it is not a failure,
  and ``--resume`` continues it from that checkpoint.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from elm_neuro.atomic import (LOCK_NAME, RefusedPath, folder_lock, list_names, make_folders, remove_created_folder,
                              remove_empty_folders, save_json)
from elm_neuro.data.provenance import check_data_files
from elm_neuro.data.shd_adding import check_split_files
from elm_neuro.training.classification import train_classifier
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.language import train_language_model
from elm_neuro.training.preflight import check_device, preflight
from elm_neuro.training.run import RunDir

#: Settings a resumed run may change: where the data is, and how this session runs.
RESUME_CHANGEABLE = ("data_dir", "device", "threads")
# Files a run writes into its directory (removed when a new run fails before its first checkpoint).
RUN_FILES = ("config.json", "metrics.jsonl", "vocab.json", "best.pt", "checkpoint.pt", "summary.json")


def _dispatch(run_dir, cfg: Optional[TrainConfig], resume: bool, progress: bool) -> dict:
    task = RunDir(run_dir).read_config(complete=True)["train"]["task"] if resume else cfg.task
    if task == "enwik8":
        return train_language_model(run_dir, cfg, resume=resume, progress=progress)
    return train_classifier(run_dir, cfg, resume=resume, progress=progress)


def is_complete(summary: Optional[dict]) -> bool:
    return summary is not None and summary.get("status") == "completed"


def _forget_new_run(run: RunDir, created: list) -> None:
    """Remove what a new run that failed before its first checkpoint wrote: the run directory
    when this call created it (never a protected folder) with the empty folders it made above it,
    else the run's files in it. ``created``: the folders this call made, outermost first."""
    if created and remove_created_folder(run.path):
        remove_empty_folders(created[:-1])
        return
    for name in RUN_FILES:
        (run.path / name).unlink(missing_ok=True)


def _resume_hint(run: RunDir) -> str:
    return f"elm-neuro train --resume {run.path} continues from the last checkpoint"


def _mark_failed(run: RunDir, exc: BaseException) -> None:
    message = str(exc).splitlines()[0] if str(exc) else ""
    save_json({"status": "failed", "error": f"{type(exc).__name__}: {message}",
               "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resume": _resume_hint(run)}, run.summary)


def _mark_interrupted(run: RunDir, exc: BaseException) -> None:
    save_json({"status": "interrupted", "by": getattr(exc, "signal_name", "Ctrl-C (SIGINT)"),
               "interrupted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resume": _resume_hint(run)}, run.summary)


def _mark_stopped(run: RunDir, exc: BaseException) -> None:
    """Mark a run with a checkpoint that stopped: interrupted (Ctrl-C, SIGTERM) or failed."""
    if isinstance(exc, KeyboardInterrupt):
        _mark_interrupted(run, exc)
    else:
        _mark_failed(run, exc)


def check_run_data(task: str, data_dir) -> None:
    """The data checks of the module docstring, for the SHD tasks with a data folder that exists
    (a missing folder or file is named by the preflight's own check)."""
    if task in ("shd-adding", "shd") and data_dir is not None and Path(data_dir).is_dir():
        check_split_files(data_dir)


def _note_stale(run: RunDir, stale: Optional[int], progress: bool) -> None:
    if stale is not None and progress:
        print(f"note: took over the lock of {run.path} left by process {stale}, which no longer runs",
              file=sys.stderr, flush=True)


def _check_new(run: RunDir) -> None:
    if run.path.exists() and not run.path.is_dir():
        raise FileExistsError(17, "File exists", str(run.path))
    present = [n for n in RUN_FILES if (run.path / n).exists()] if run.path.is_dir() else []
    if present:
        try:
            run.read_config(complete=True)
        except (OSError, ValueError):
            raise RefusedPath(f"--out {run.path} holds {list_names(present)}, not the files of an elm-neuro run (no "
                              f"readable run config.json); a run writes files of these names there, so it would "
                              f"replace them: choose another folder (nothing was changed)") from None
    if is_complete(run.read_summary()):
        raise ValueError(f"{run.path} already holds a complete run; use another --out (--resume {run.path} shows "
                         f"its summary)")
    if run.checkpoint.exists() or run.summary.exists():
        raise ValueError(f"{run.path} already holds a run; continue it with --resume {run.path} or use another --out")


def _train_new(run: RunDir, cfg: TrainConfig, progress: bool) -> dict:
    _check_new(run)
    if cfg.data_dir is not None:
        cfg = cfg.replace(data_dir=str(Path(cfg.data_dir).expanduser().resolve()))
    check_run_data(cfg.task, cfg.data_dir)
    preflight(cfg)
    created = make_folders(run.path)
    with folder_lock(run.path) as stale:
        _check_new(run)  # again, now that no other process can start it
        _note_stale(run, stale, progress)
        try:
            return _dispatch(run.path, cfg, False, progress)
        except BaseException as exc:
            if run.checkpoint.is_file():
                _mark_stopped(run, exc)
            else:
                _forget_new_run(run, created)
            raise
    # (the lock file goes with the context; a removed run directory takes it along)


def _resume_settings(run: RunDir, conf: dict, changes: dict) -> dict:
    """Check ``changes`` against the run's configuration; returns the new ``train`` section."""
    bad = sorted(k for k in changes if k not in RESUME_CHANGEABLE and conf["train"].get(k) != changes[k])
    if bad:
        shown = ", ".join(f"{k} (run: {conf['train'].get(k)!r}, given: {changes[k]!r})" for k in bad)
        raise ValueError(f"--resume {run.path}: the run's settings cannot change on resume: {shown}; "
                         f"only the data location (--data), --device and --threads may; start a new run with --out "
                         f"for other settings")
    train = dict(conf["train"])
    for k in RESUME_CHANGEABLE:
        if changes.get(k) is not None:
            train[k] = changes[k]
    task, recorded = train["task"], conf.get("data", {}).get("files")
    if changes.get("data_dir") is not None:
        train["data_dir"] = str(Path(changes["data_dir"]).expanduser().resolve())
    elif train.get("data_dir") is not None and not Path(train["data_dir"]).exists():
        hint = (" (a path relative to the folder the run was started from, as earlier versions stored it)"
                if not Path(train["data_dir"]).is_absolute() else "")
        raise FileNotFoundError(f"data {train['data_dir']!r} recorded in {run.config} not found{hint}; pass --data "
                                f"with its new location to resume")
    check_run_data(task, train.get("data_dir"))
    if recorded is not None:
        check_data_files(task, train.get("data_dir"), recorded, str(run.config))
    elif train.get("data_dir") is not None:
        train["data_dir"] = str(Path(train["data_dir"]).expanduser().resolve())
    check_device(train["device"])
    return train


def _checked_config(run: RunDir) -> dict:
    """The run's config.json, complete and with a ``train`` section that is a valid TrainConfig;
    ``ValueError`` naming the file, what is wrong and what to do otherwise."""
    conf = run.read_config(complete=True)
    try:
        TrainConfig.from_dict(conf["train"])
    except (TypeError, ValueError, KeyError) as exc:
        message = " ".join(str(exc).split())
        raise ValueError(f"{run.config}: its 'train' section is not a valid training configuration "
                         f"({message[:200]}{'...' if len(message) > 200 else ''}); it is damaged or was edited by "
                         f"hand: restore it from a copy, or start a new run with --out and another folder") from None
    return conf


def _resume(run: RunDir, progress: bool, changes: dict) -> dict:
    conf = _checked_config(run)
    summary = run.read_summary()
    if is_complete(summary):
        bad = sorted(k for k in changes if k not in RESUME_CHANGEABLE and conf["train"].get(k) != changes[k])
        if bad:
            raise ValueError(f"--resume {run.path}: the run is already complete; settings {bad} cannot change it")
        if changes.get("data_dir") is not None:  # record where the data moved (for analyze)
            with folder_lock(run.path):
                conf["train"] = {**_resume_settings(run, conf, {"data_dir": changes["data_dir"]}),
                                 "device": conf["train"]["device"]}
                save_json(conf, run.config)
        return {**summary, "already_complete": True}
    if not run.checkpoint.is_file():
        raise FileNotFoundError(f"{run.checkpoint} not found: nothing to resume in {run.path} (the run stopped "
                                f"before its first checkpoint; start it again with --out)")
    with folder_lock(run.path) as stale:
        _note_stale(run, stale, progress)
        train = _resume_settings(run, conf, changes)
        if train != conf["train"]:
            conf["train"] = train
            save_json(conf, run.config)
        if summary is not None:  # a failed run, tried again
            run.summary.unlink(missing_ok=True)
        try:
            return _dispatch(run.path, None, True, progress)
        except BaseException as exc:
            _mark_stopped(run, exc)
            raise


def run_training(run_dir, cfg: TrainConfig | None, resume: bool, progress: bool,
                 changes: Optional[dict] = None) -> dict:
    """Train (or, with ``resume``, continue) the run in ``run_dir``; returns its summary.

    ``changes`` (resume only): settings given again, ``{field: value}`` of TrainConfig; the data
    location, device and thread count may change, any other field that differs from the run's is
    refused (module docstring).
    """
    run = RunDir(run_dir)
    if resume:
        return _resume(run, progress, dict(changes or {}))
    if cfg is None:
        raise ValueError("cfg is required for a new run")
    if changes:
        raise ValueError("changes are only for resume=True")
    return _train_new(run, cfg, progress)


__all__ = ["run_training", "is_complete", "RESUME_CHANGEABLE", "LOCK_NAME"]
