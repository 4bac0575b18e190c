"""One entry point for training a run, whatever its task: :func:`run_training`.

Classification tasks (``shd-adding``, ``shd``) go to
:func:`elm_neuro.training.classification.train_classifier`, language modelling (``enwik8``) to
:func:`elm_neuro.training.language.train_language_model`. A resumed run reads its task from its
own ``config.json``. Used by ``elm-neuro train`` and by the experiments (compare, sweep, demo).
"""
from __future__ import annotations

from elm_neuro.training.classification import train_classifier
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.language import train_language_model
from elm_neuro.training.run import RunDir


def run_training(run_dir, cfg: TrainConfig | None, resume: bool, progress: bool) -> dict:
    """Train (or, with ``resume``, continue) the run in ``run_dir``; returns its summary."""
    task = cfg.task if cfg is not None else None
    if resume:
        task = RunDir(run_dir).read_config()["train"]["task"]
    if task == "enwik8":
        return train_language_model(run_dir, cfg, resume=resume, progress=progress)
    return train_classifier(run_dir, cfg, resume=resume, progress=progress)
