"""Classification tasks as the trainer sees them: splits that yield batches.

A split has ``n_steps``, ``n_channels``, ``n_classes``, ``n_batches`` and
``batches(epoch, start=0)`` yielding ``(x [B, T, C] float32, y [B] int64)``. Training splits
give fresh, seeded batches per epoch (a function of (seed, epoch), so a resumed run sees the
same data); validation and test splits give the same batches every time.

- ``shd-adding``: :mod:`elm_neuro.data.shd_adding` (SPEC 6).
- ``shd``: plain SHD, 20 classes. Same validation split of the train file (SPEC 6), test =
  test file. Each sample binned over ``digit_window_s`` (1 s default: SHD digits are shorter
  than ~1.4 s and mostly within the first second) at ``bin_ms``. Training batches are a fresh
  seeded permutation of the training pool per epoch (``batches_per_epoch`` batches, cycling
  through the permutation); evaluation covers every sample of the split once (last batch
  smaller), so ``valid_batches`` / ``test_batches`` do not apply.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elm_neuro.data.binning import bin_events, n_bins
from elm_neuro.data.shd import N_UNITS, SHDEvents, read_shd
from elm_neuro.data.shd_adding import make_splits, split_pool, training_rng
from elm_neuro.training.config import TrainConfig


class SHDClassification:
    """Plain SHD digit classification over one split (see module docstring)."""

    def __init__(self, events: SHDEvents, pool: np.ndarray, *, fixed: bool, n_batches: int | None,
                 batch_size: int, seed: int, bin_size: float, window: float, channel_factor: int):
        self.events, self.pool, self.fixed = events, np.asarray(pool, np.int64), fixed
        self.batch_size, self.seed = batch_size, seed
        self.bin_size, self.window, self.channel_factor = bin_size, window, channel_factor
        self.n_steps = n_bins(window, bin_size)
        self.n_channels = -(-N_UNITS // channel_factor)
        self.n_classes = 20
        self.n_batches = -(-len(self.pool) // batch_size) if fixed else int(n_batches)

    def order(self, epoch: int) -> np.ndarray:
        if self.fixed:
            return self.pool
        rng = training_rng(self.seed, epoch)
        reps = -(-self.n_batches * self.batch_size // len(self.pool))
        return np.concatenate([rng.permutation(self.pool) for _ in range(reps)])

    def batches(self, epoch: int = 0, start: int = 0):
        order = self.order(epoch)
        ev = self.events
        for k in range(start, self.n_batches):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            x = bin_events(ev.times, ev.units, ev.offsets, idx, self.bin_size, self.window, N_UNITS,
                           self.channel_factor, binary=True)
            yield torch.from_numpy(x), torch.from_numpy(ev.labels[idx].astype(np.int64))


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


def build_classification_task(cfg: TrainConfig) -> dict:
    """``{"train", "valid", "test"}`` splits for ``cfg.task`` from ``cfg.data_dir``."""
    train_path, test_path = _shd_files(cfg.data_dir)
    train_ev, test_ev = read_shd(train_path), read_shd(test_path)
    bin_size = cfg.bin_ms / 1000.0
    if cfg.task == "shd-adding":
        return make_splits(train_ev, test_ev, batch_size=cfg.batch_size, train_batches=cfg.batches_per_epoch,
                           valid_batches=cfg.valid_batches, test_batches=cfg.test_batches, seed=cfg.seed,
                           bin_size=bin_size, digit_window=cfg.digit_window_s, channel_factor=cfg.channel_factor)
    if cfg.task == "shd":
        n_tr, n_te = len(train_ev), len(test_ev)
        common = dict(batch_size=cfg.batch_size, seed=cfg.seed, bin_size=bin_size, window=cfg.digit_window_s,
                      channel_factor=cfg.channel_factor)
        return {
            "train": SHDClassification(train_ev, split_pool("train", n_tr, n_te), fixed=False,
                                       n_batches=cfg.batches_per_epoch, **common),
            "valid": SHDClassification(train_ev, split_pool("valid", n_tr, n_te), fixed=True, n_batches=None,
                                       **common),
            "test": SHDClassification(test_ev, split_pool("test", n_tr, n_te), fixed=True, n_batches=None,
                                      **common),
        }
    raise ValueError(f"task {cfg.task!r} is not a classification task")
