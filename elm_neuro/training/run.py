"""Run directories: everything a training run leaves behind, and loading it back.

A run directory holds

- ``config.json``: ``{"train": TrainConfig fields, "model": {"family", "config"}}`` (the
  resolved model configuration, so the model rebuilds without presets), plus ``"data"`` (real,
  synthetic, ...), ``"timescales"`` (steps and ms) and ``"runtime"`` (threads actually used,
  torch version; see :mod:`elm_neuro.training.common`);
- ``metrics.jsonl``: one JSON line per evaluation and per ``log_every`` training steps;
- ``checkpoint.pt``: model, optimiser, scheduler, RNG states, epoch, step, best-so-far and the
  number of metric lines at that moment; written atomically after every epoch;
- ``best.pt``: the weights with the best validation accuracy so far;
- ``summary.json``: final metrics of the best weights (written once the run completes).

Every file is written atomically (:mod:`elm_neuro.atomic`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from elm_neuro.networks.registry import MODEL_FAMILIES
from elm_neuro.atomic import save_json, save_text


class LoadedRun(NamedTuple):
    model: torch.nn.Module
    train_config: dict
    model_config: object
    summary: dict | None
    path: Path


class RunDir:
    def __init__(self, path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    best = property(lambda self: self.path / "best.pt")
    summary = property(lambda self: self.path / "summary.json")

    def read_config(self) -> dict:
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.config} not found: {self.path} is not a run directory")
        return json.loads(self.config.read_text())

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, n_lines: int) -> None:
        """Keep the first ``n_lines`` metric lines (drop those written after the checkpoint)."""
        lines = self.read_metrics()[:n_lines]
        save_text("".join(json.dumps(r) + "\n" for r in lines), self.metrics)

    def append_metric(self, row: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def read_summary(self) -> dict | None:
        return json.loads(self.summary.read_text()) if self.summary.is_file() else None

    def write_summary(self, summary: dict) -> None:
        save_json(summary, self.summary)


def load_checkpoint(path, map_location="cpu") -> dict:
    """``torch.load`` of a run's ``.pt`` file; a truncated or foreign file raises ``ValueError``
    naming it (instead of a pickle or zip-reader error)."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zip, random bytes, wrong format: all one message
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}); it may be "
                         f"truncated or foreign: restore it or start a new run") from None
    if not isinstance(blob, dict) or "model" not in blob:
        raise ValueError(f"{path} is not a checkpoint of this package (expected a dict with 'model' weights)")
    return blob


def build_from_config(model_section: dict):
    """Model and model config from config.json's ``model`` section."""
    family = model_section["family"]
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r} in config.json (known: {sorted(MODEL_FAMILIES)})")
    cfg_cls, model_cls = MODEL_FAMILIES[family]
    cfg = cfg_cls.from_dict(model_section["config"])
    return model_cls(cfg), cfg


def load_run(path, which: str = "best", map_location="cpu") -> LoadedRun:
    """Load a trained run in one call: ``model, train_config, model_config, summary, path``.

    ``which`` is ``best`` (best validation weights, the default) or ``last`` (the last
    checkpoint). The model is returned in eval mode.
    """
    run = RunDir(path)
    conf = run.read_config()
    model, mcfg = build_from_config(conf["model"])
    if which == "best":
        src = run.best
    elif which == "last":
        src = run.checkpoint
    else:
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found in run directory {run.path}")
    blob = load_checkpoint(src, map_location)
    model.load_state_dict(blob["model"])
    model.eval()
    return LoadedRun(model, conf["train"], mcfg, run.read_summary(), run.path)
