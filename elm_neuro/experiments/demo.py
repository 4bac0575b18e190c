"""The end-to-end demo behind ``make demo``: data -> equal-budget ELM vs LIF -> report -> figures.

1. Synthetic SHD-format files (:func:`elm_neuro.data.synth.write_synthetic_shd`, 3000 training
   and 300 test digits) under ``OUT/data`` (kept between runs).
2. SHD-Adding at CPU scale (20 ms bins, 700 units pooled into 100 channels: 50 + 50 steps x 100
   channels, binary), an ELM Network (d_m 8) and a recurrent LIF network sized by the budget
   solver to the same ``P`` (25000 by default), no dropout, trained side by side in two processes
   (one torch thread each) by :func:`elm_neuro.experiments.compare.compare`, 60 epochs x 100
   batches of 16, both on their fused engines. Measured on the 2-core CPU over seeds 0, 1, 2
   (data and networks): ELM test accuracy 0.528, 0.342, 0.364 (0.41 +- 0.10), LIF 0.146, 0.146,
   0.141, against 0.10 for always guessing the most frequent sum; `make demo` took 6 min from a
   fresh clone with the venv (4.4-4.7 min without).
3. ``OUT/compare/report.md`` (table + learning curves, and links to the committed results of
   the experiment plans in ``analysis/results/``) and ``OUT/timescales.png`` (the trained
   networks' timescales side by side, in ms).

Every cell is a normal run directory, so an interrupted demo resumes where it stopped. Every
setting (training recipe ``demo``, models ``DEMO_MODELS``, budget, data size, workers) is in
:mod:`elm_neuro.defaults`.
"""
from __future__ import annotations

from pathlib import Path

from elm_neuro import defaults as D
from elm_neuro.atomic import save_text
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments.compare import compare
from elm_neuro.experiments.run_analysis import compare_runs_timescales
from elm_neuro.training.config import TrainConfig

_RECIPE = D.RECIPES["demo"]


def run_demo(out, params: int = D.DEMO_PARAMS, epochs: int = _RECIPE["epochs"],
             batches_per_epoch: int = _RECIPE["batches_per_epoch"], n_train: int = D.DEMO_DATA["n_train"],
             n_test: int = D.DEMO_DATA["n_test"], seed: int = D.SEED, workers: int = D.WORKERS,
             threads: int | None = D.THREADS, progress: bool = True, valid_batches: int = _RECIPE["valid_batches"],
             test_batches: int = _RECIPE["test_batches"]) -> dict:
    """Run the demo into ``out``; returns the paths it wrote. ``threads``: torch threads of each
    training process (None: one per worker, or one per physical core with ``workers=1``)."""
    out = Path(out)
    data = out / "data"
    if not ((data / "shd_train.h5").is_file() and (data / "shd_test.h5").is_file()):
        write_synthetic_shd(data, n_train, n_test, seed=seed)
    base = TrainConfig(**{**D.recipe("demo"), "data_dir": str(data.resolve()), "epochs": epochs,
                          "batches_per_epoch": batches_per_epoch, "params": params, "seed": seed,
                          "valid_batches": valid_batches, "test_batches": test_batches, "threads": threads})
    report = compare(out / "compare", base, list(D.DEMO_MODELS), [seed], D.DEMO_MODELS, progress=progress,
                     workers=workers)
    _link_committed_results(report)
    paths = {"data": data, "report": report, "learning_curves": out / "compare" / "learning_curves.png"}
    paths["timescales"] = _timescale_figure(out, seed)
    return paths


COMMITTED_RESULTS = """
## Larger runs in the repository

The demo is one seed at one budget. The committed results of the experiment plans (several
budgets and seeds, error bars, the scaling-law and information-model fits; regenerate each with
one command) are in the repository:

- `analysis/results/budget-tradeoff/README.md`: the fixed-budget d_m sweep at three budgets a
  decade apart, the N and k_c axes (`elm-neuro reproduce budget-tradeoff --out DIR`);
- `analysis/results/neuron-comparison/README.md`: ELM, LIF, adLIF and LSTM at equal P, with the
  trained networks' timescales (`elm-neuro reproduce neuron-comparison --out DIR`).
"""


def _link_committed_results(report: Path) -> None:
    """Append the links to the committed plan results to the demo's report (once)."""
    text = report.read_text()
    if COMMITTED_RESULTS.strip() not in text:
        save_text(text.rstrip("\n") + "\n" + COMMITTED_RESULTS, report)


def _timescale_figure(out: Path, seed: int):
    runs = {name.upper(): out / "compare" / f"{name}-s{seed}" for name in D.DEMO_MODELS}
    return compare_runs_timescales(runs, out / "timescales.png")
