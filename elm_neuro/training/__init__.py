"""Training: one run of one model on one task, into a run directory.

Modules (import them directly; this package imports nothing eagerly):

- :mod:`~elm_neuro.training.config`: ``TrainConfig`` (every setting of a run; defaults and named
  recipes from :mod:`elm_neuro.defaults`) and ``make_train_config(task, paper, **fields)``.
- :mod:`~elm_neuro.training.model_setup`: ``train_model_config``, from (family, task, preset,
  overrides, budget, bin width) to a model configuration, and ``run_model_config`` (the same from
  a ``TrainConfig``).
- :mod:`~elm_neuro.training.tasks`: the classification tasks' data splits (SHD-Adding, SHD).
- :mod:`~elm_neuro.training.preflight`: the checks before the first step (device, data files,
  every model and budget, an activation-memory estimate) for train, compare and sweep.
- :mod:`~elm_neuro.training.trainer`: ``run_training``, dispatch on the task to
  :mod:`~elm_neuro.training.classification` (SHD-Adding, SHD) or
  :mod:`~elm_neuro.training.language` (Enwik8, truncated BPTT with carried state).
- :mod:`~elm_neuro.training.common`, :mod:`~elm_neuro.training.schedule`: what both trainers share
  (sessions, checkpoints, optimiser step, regularisers, warm-up + cosine schedule).
- :mod:`~elm_neuro.training.runtime`: thread choice (physical cores, workers) and config.json's
  ``runtime`` and ``timescales`` (steps and ms) sections.
- :mod:`~elm_neuro.training.run`: run directories (config, metrics, checkpoints, summary) and
  ``load_run``.
- :mod:`~elm_neuro.training.sampling`: text generation from a language-model run
  (``elm-neuro sample``).

Training code imports networks, data and the base modules, never analysis, experiments or cli.
"""
