"""Run-level analysis: timescales and activity of trained runs (ELM or spiking), from their run
directories. It joins the two sibling layers: :mod:`elm_neuro.training` loads the run and rebuilds
its held-out data, :mod:`elm_neuro.analysis` measures it.

:func:`held_out_inputs` takes the first test batches of the run's own task (same data folder,
binning and seeds as in training), so the activity analysed is the network's response to data it
was not trained on. :func:`run_timescales` dispatches on the model family:

- ELM Network: :func:`elm_neuro.analysis.timescales.elm_timescale_report` (memory taus, intrinsic
  autocorrelation timescales of the hidden outputs, impulse-response timescales, readout weight
  mass per memory timescale);
- LIF / adLIF networks: membrane (and adaptation) taus, and the intrinsic timescales of the
  hidden spike trains.

Units: :func:`run_timescales` returns every timescale array in steps (a model tau is
``tau / dt`` steps: ELM taus are in steps with ``dt = 1``, LIF taus in ms with ``dt`` = the bin
width) together with ``ms_per_step``, the run's bin width (:func:`time_unit`). Everything shown
is in milliseconds: :func:`compare_runs_timescales` (``elm-neuro analyze timescales``, the demo's
``timescales.png``) converts each run with its own bin width and names the bin widths in the
title. Enwik8 runs have no bin width (a step is one character): their timescales are shown in
"steps (characters)", from the model's parameters alone (no held-out activity), and they cannot
share a figure with runs in ms.

:func:`compare_runs_timescales` draws the side-by-side comparison figure of several runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

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
    if isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 1:
        raise ValueError(f"batches (--batches) must be an integer >= 1 (held-out test batches to record), "
                         f"got {n_batches!r}")
    cfg = TrainConfig.from_dict(train_config)
    if cfg.task == "enwik8":
        raise ValueError("timescale analysis from a run needs a classification task (shd-adding or shd), "
                         f"got task {cfg.task!r}")
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        old = "" if Path(cfg.data_dir).is_absolute() else (" (a path relative to the folder the run was started "
                                                           "from, as earlier versions stored it)")
        raise FileNotFoundError(f"data folder {cfg.data_dir!r} recorded in the run's config.json not found{old}; "
                                f"record its new location with: elm-neuro train --resume RUN_DIR --data NEW_DIR")
    split = build_classification_task(cfg)["test"]
    xs = []
    for k, (x, _) in enumerate(split.batches(0)):
        if k >= n_batches:
            break
        xs.append(x)
    return torch.cat(xs)


def time_unit(train_config: dict) -> tuple[Optional[float], str]:
    """``(ms_per_step, unit)`` of a run: its bin width and ``"ms"`` for SHD tasks, ``(None,
    "steps (characters)")`` for Enwik8."""
    cfg = TrainConfig.from_dict(train_config)
    ms = cfg.model_bin_ms
    return (None, "steps (characters)") if ms is None else (float(ms), "ms")


def _hidden_activity(model, x: torch.Tensor) -> tuple[dict, np.ndarray]:
    with torch.no_grad():
        out = model.eval()(x, record=True)
    hid = out.traces["hidden"]
    act = hid["spikes"] if "spikes" in hid else hid["y"][..., 0]
    return hid, act.numpy().astype(float)


# Arrays of an ELM report in units of the model dt (converted to steps by run_timescales).
_DT_KEYS = ("intrinsic_tau", "impulse_tau", "param_tau", "effective_tau")


def run_timescales(run_dir, n_batches: int = D.ANALYSIS_BATCHES) -> dict:
    """Timescale results of one run (keys as :func:`plot_timescale_comparison` expects).

    The arrays ``intrinsic_tau``, ``impulse_tau``, ``param_tau``, ``adapt_tau`` and
    ``effective_tau`` are in steps; ``ms_per_step`` (the bin width, None for Enwik8), ``unit``
    (:func:`time_unit`), ``family`` and ``dt`` (the model's) say how to read them. SHD runs are
    measured on held-out test batches; Enwik8 runs give their parameter taus only.
    """
    run = load_run(run_dir)
    model = run.model
    ms_per_step, unit = time_unit(run.train_config)
    hidden = getattr(model, "hidden", None)
    if hidden is None or not hasattr(hidden, "tau_m"):
        raise ValueError(f"run_dir: {run_dir} holds a {run.train_config['model']!r} network, which has no "
                         f"timescale parameters to analyse (ELM, LIF and adLIF networks have)")
    dt = float(model.cfg.dt)
    if hasattr(hidden, "w_y"):  # ELM layer: the report's taus are in units of dt
        res = ({"param_tau": TS.elm_memory_timescales(model)["tau"].ravel()} if ms_per_step is None  # Enwik8
               else TS.elm_timescale_report(model, held_out_inputs(run.train_config, n_batches)))
        for key in _DT_KEYS:
            if key in res:
                res[key] = np.asarray(res[key], dtype=float) / dt
    else:  # LIF / adLIF: parameter taus / dt, and the spike trains' intrinsic timescales, in steps
        tau_w = hidden.tau_w.detach() if getattr(model.cfg, "adaptive", False) else None
        res = TS.spiking_timescales(hidden.tau_m.detach(), tau_w, dt=dt)
        if ms_per_step is not None:  # SHD: activity on held-out data (Enwik8: parameter taus only)
            _, act = _hidden_activity(model, held_out_inputs(run.train_config, n_batches))
            res["intrinsic"] = TS.intrinsic_timescales(act)
            res["intrinsic_tau"] = res["intrinsic"].tau
            res["activity"] = act
    res.update(family=run.train_config["model"], dt=dt, ms_per_step=ms_per_step, unit=unit)
    return res


def _bin_note(results: dict) -> str:
    widths = {name: r["ms_per_step"] for name, r in results.items()}
    if len(set(widths.values())) == 1:
        return f"{next(iter(widths.values())):g} ms time bins"
    return "time bins: " + ", ".join(f"{name} {w:g} ms" for name, w in widths.items())


def compare_runs_timescales(runs: dict, path, n_batches: int = D.ANALYSIS_BATCHES) -> str:
    """One figure comparing the timescales of several runs: ``{label: run_dir}``.

    Timescales are shown in ms (each run's steps times its own bin width, the bin widths in the
    title), or in steps (characters) for Enwik8 runs; runs of the two kinds cannot share a figure.
    """
    results = {name: run_timescales(d, n_batches) for name, d in runs.items()}
    units = {r["unit"] for r in results.values()}
    if len(units) > 1:
        raise ValueError("runs: timescales of SHD runs (ms) and Enwik8 runs (steps, one character each) cannot "
                         "share one figure; analyse them separately")
    unit = units.pop()
    if unit == "ms":
        scale = {name: r["ms_per_step"] for name, r in results.items()}
        title = f"timescales of the trained networks (ms; {_bin_note(results)})"
    else:
        scale = 1.0
        title = "timescales of the trained networks (steps: one character each, no bin width)"
    return TS.plot_timescale_comparison(results, path, title=title, unit=unit, scale=scale)


def finite_or_none(stats: dict) -> dict:
    """``stats`` with non-finite float values as None (for JSON output)."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in stats.items()}


def run_activity(run_dir, out_dir=None, n_batches: int = D.ANALYSIS_BATCHES) -> dict:
    """Activity statistics of a run's hidden layer on held-out data
    (:func:`elm_neuro.analysis.activity.activity_summary`: spike rates per bin and in Hz with the
    run's bin width); optional raster plot with its time axis in ms (steps for Enwik8)."""
    run = load_run(run_dir)
    _, act = _hidden_activity(run.model, held_out_inputs(run.train_config, n_batches))
    ms_per_step, unit = time_unit(run.train_config)
    stats = A.activity_summary(act, bin_ms=ms_per_step)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stats["raster"] = A.plot_raster(act, out_dir / "raster.png", dt=ms_per_step or 1.0, unit=unit)
    return stats
