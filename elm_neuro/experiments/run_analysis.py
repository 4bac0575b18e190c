"""Run-level analysis: timescales and activity of trained runs (ELM or spiking), from their run
directories. It joins the two sibling layers: :mod:`elm_neuro.training` loads the run and rebuilds
its held-out data, :mod:`elm_neuro.analysis` measures it.

:func:`held_out_inputs` takes the first test batches of the run's own task (same data folder,
binning and seeds as in training), so the activity analysed is the network's response to data it
was not trained on. :func:`run_timescales` dispatches on the model family:

- ELM Network: :func:`elm_neuro.analysis.timescales.elm_timescale_report` (memory taus, intrinsic
  autocorrelation timescales of the hidden outputs, impulse-response timescales, readout weight
  mass per memory timescale);
- LIF / adLIF networks: membrane (and adaptation) taus in steps (``tau / dt``), and the intrinsic
  timescales of the hidden spike trains.

:func:`compare_runs_timescales` draws the side-by-side comparison figure of several runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elm_neuro import defaults as D
from elm_neuro.analysis import activity as A
from elm_neuro.analysis import timescales as TS
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.run import load_run
from elm_neuro.training.tasks import build_classification_task


def held_out_inputs(train_config: dict, n_batches: int = D.ANALYSIS_BATCHES) -> torch.Tensor:
    """The first ``n_batches`` test batches of a run's task, concatenated: ``[B, T, n_in]``."""
    cfg = TrainConfig.from_dict(train_config)
    if cfg.task == "enwik8":
        raise ValueError("timescale analysis from a run needs a classification task (shd-adding or shd), "
                         f"got task {cfg.task!r}")
    split = build_classification_task(cfg)["test"]
    xs = []
    for k, (x, _) in enumerate(split.batches(0)):
        if k >= n_batches:
            break
        xs.append(x)
    return torch.cat(xs)


def _hidden_activity(model, x: torch.Tensor) -> tuple[dict, np.ndarray]:
    with torch.no_grad():
        out = model.eval()(x, record=True)
    hid = out.traces["hidden"]
    act = hid["spikes"] if "spikes" in hid else hid["y"][..., 0]
    return hid, act.numpy().astype(float)


def run_timescales(run_dir, n_batches: int = D.ANALYSIS_BATCHES) -> dict:
    """Timescale results of one run (keys as :func:`plot_timescale_comparison` expects)."""
    run = load_run(run_dir)
    x = held_out_inputs(run.train_config, n_batches)
    model = run.model
    family = run.train_config["model"]
    if hasattr(model.hidden, "tau_m") and hasattr(model.hidden, "w_y"):  # ELM layer
        return TS.elm_timescale_report(model, x)
    _, act = _hidden_activity(model, x)
    dt = float(model.cfg.dt)
    tau_w = model.hidden.tau_w.detach() if getattr(model.cfg, "adaptive", False) else None
    res = TS.spiking_timescales(model.hidden.tau_m.detach(), tau_w, dt=dt)
    res["intrinsic"] = TS.intrinsic_timescales(act)
    res["intrinsic_tau"] = res["intrinsic"].tau
    res["activity"] = act
    res["family"] = family
    return res


def compare_runs_timescales(runs: dict, path, n_batches: int = D.ANALYSIS_BATCHES) -> str:
    """One figure comparing the timescales of several runs: ``{label: run_dir}``."""
    results = {name: run_timescales(d, n_batches) for name, d in runs.items()}
    return TS.plot_timescale_comparison(results, path, title="timescales of the trained networks (steps)")


def finite_or_none(stats: dict) -> dict:
    """``stats`` with non-finite float values as None (for JSON output)."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in stats.items()}


def run_activity(run_dir, out_dir=None, n_batches: int = D.ANALYSIS_BATCHES) -> dict:
    """Activity statistics of a run's hidden layer on held-out data; optional raster plot."""
    run = load_run(run_dir)
    _, act = _hidden_activity(run.model, held_out_inputs(run.train_config, n_batches))
    stats = A.activity_summary(act)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stats["raster"] = A.plot_raster(act, out_dir / "raster.png")
    return stats
