"""Classification tasks as the trainer sees them: splits that yield batches.

A split has ``n_steps``, ``n_channels``, ``n_classes``, ``n_batches`` and
``batches(epoch, start=0)`` yielding ``(x [B, T, C] float32, y [B] int64)``. Training splits
give fresh, seeded batches per epoch (a function of (seed, epoch), so a resumed run sees the
same data); validation and test splits give the same batches every time. Each split bins its
samples once (uint8, on the ``device`` given to :func:`build_classification_task`) and builds
batches by indexing, so binning is not part of a training step.

- ``shd-adding``: :mod:`elm_neuro.data.shd_adding` (docs/design.md §6).
- ``shd``: plain SHD, 20 classes: :mod:`elm_neuro.data.shd_classification`.
"""
from __future__ import annotations

from pathlib import Path

from elm_neuro.data.shd import read_shd
from elm_neuro.data.shd_adding import make_splits, split_pool
from elm_neuro.data.shd_classification import SHDClassification
from elm_neuro.training.config import TrainConfig


def _shd_files(data_dir) -> tuple[Path, Path]:
    if data_dir is None:
        raise ValueError("data_dir is required: a folder with shd_train.h5 and shd_test.h5 "
                         "(`elm-neuro data synth --out DIR` writes synthetic ones)")
    d = Path(data_dir)
    files = d / "shd_train.h5", d / "shd_test.h5"
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found (data_dir must hold shd_train.h5 and shd_test.h5)")
    return files


def build_classification_task(cfg: TrainConfig, device=None) -> dict:
    """``{"train", "valid", "test"}`` splits for ``cfg.task`` from ``cfg.data_dir``, yielding
    batches on ``device`` (None: the CPU; the trainer passes its training device, so that each
    split's binned digits live there and a batch is assembled there)."""
    train_path, test_path = _shd_files(cfg.data_dir)
    train_ev, test_ev = read_shd(train_path), read_shd(test_path)
    bin_size = cfg.bin_ms / 1000.0
    if cfg.task == "shd-adding":
        return make_splits(train_ev, test_ev, batch_size=cfg.batch_size, train_batches=cfg.batches_per_epoch,
                           valid_batches=cfg.valid_batches, test_batches=cfg.test_batches, seed=cfg.seed,
                           bin_size=bin_size, digit_window=cfg.digit_window_s, channel_factor=cfg.channel_factor,
                           device=device)
    if cfg.task == "shd":
        n_tr, n_te = len(train_ev), len(test_ev)
        common = dict(batch_size=cfg.batch_size, seed=cfg.seed, bin_size=bin_size, window=cfg.digit_window_s,
                      channel_factor=cfg.channel_factor, device=device)
        return {
            "train": SHDClassification(train_ev, split_pool("train", n_tr, n_te), fixed=False,
                                       n_batches=cfg.batches_per_epoch, **common),
            "valid": SHDClassification(train_ev, split_pool("valid", n_tr, n_te), fixed=True, n_batches=None,
                                       **common),
            "test": SHDClassification(test_ev, split_pool("test", n_tr, n_te), fixed=True, n_batches=None,
                                      **common),
        }
    raise ValueError(f"task {cfg.task!r} is not a classification task")
