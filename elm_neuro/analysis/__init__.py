"""Analysis of budget sweeps and trained networks (arrays and row dicts in, numbers and PNGs out).

Modules (import them directly; nothing heavy is imported here):

- :mod:`~elm_neuro.analysis.sweep_table`: read / write sweep-table CSVs, aggregate over seeds,
  budget buckets, Pareto frontier.
- :mod:`~elm_neuro.analysis.tradeoff_plots`: metric vs N at fixed P, vs each axis, heatmaps,
  Pareto plots, the paper's reference points (docs/design.md §9).
- :mod:`~elm_neuro.analysis.scaling`: ``L*(P) = L_inf + A P^-alpha`` along the frontier, growth
  laws ``N* = a P^b``, with bootstrap uncertainty.
- :mod:`~elm_neuro.analysis.information_model`: the closed-form SNR / information model of
  docs/design.md §11, its fit, optimum allocation and plots (derivation in ``docs/information_model.md``).
- :mod:`~elm_neuro.analysis.timescales`: intrinsic (autocorrelation) and impulse-response
  timescales, ELM memory / readout timescales, spiking-network tau distributions, comparisons.
- :mod:`~elm_neuro.analysis.activity`: active fraction, silent neurons, ISI CV, Fano factor,
  pairwise correlations, raster plots.

Analysis imports networks, neurons and the base modules, never training (its sibling),
experiments or cli. What needs both, loading a trained run and analysing it, or turning a sweep
table into a report, lives in :mod:`elm_neuro.experiments` (``run_analysis``, ``sweep_report``).
"""
