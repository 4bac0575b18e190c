"""Experiments: whole studies built from training runs and their analysis.

This layer sits above :mod:`elm_neuro.training` and :mod:`elm_neuro.analysis` (siblings that never
import each other) and joins them; the CLI (:mod:`elm_neuro.cli`) only parses arguments and calls
into it. Modules (import them directly; this package imports nothing eagerly):

- :mod:`~elm_neuro.experiments.compare`: model families at one parameter budget on one task, one
  run directory per (model, seed), ``report.md`` and learning curves (``elm-neuro compare``).
- :mod:`~elm_neuro.experiments.sweep`: budget sweeps run end to end (``elm-neuro sweep``), from
  one module each: :mod:`~elm_neuro.experiments.sweep_plan` (the grid of run directories over
  budgets and one axis, d_m, N or k_c, and the sweep folder),
  :mod:`~elm_neuro.experiments.sweep_results` (``results.csv`` rebuilt from the run directories;
  the CSV writer of sweep and plan results tables) and :mod:`~elm_neuro.experiments.sweep_executors`
  (local processes or Ray).
- :mod:`~elm_neuro.experiments.sweep_report`: the sweep report from ``results.csv``: trade-off
  figures, scaling law, information model (``elm-neuro sweep-report``).
- :mod:`~elm_neuro.experiments.run_analysis`: timescales and activity of trained runs on their
  own held-out data (``elm-neuro analyze``).
- :mod:`~elm_neuro.experiments.reproduce`: named, versioned experiment plans (sweeps and
  comparisons) run end to end into one folder, with a report computed from their results table
  (``elm-neuro reproduce``).
- :mod:`~elm_neuro.experiments.demo`: the end-to-end demo behind ``make demo`` (``elm-neuro demo``).
- :mod:`~elm_neuro.experiments.export`: a finished run as a small folder with a model card
  (``elm-neuro export``).
"""
