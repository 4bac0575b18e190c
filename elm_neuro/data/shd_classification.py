"""Plain SHD digit classification (20 classes) as a split that yields batches.

``SHDClassification(events, pool, *, fixed, n_batches, batch_size, seed, bin_size, window,
channel_factor, device=None)``
    One split of plain SHD over the samples ``pool`` of ``events`` (an ``SHDEvents``), with the
    interface the trainer expects of every classification split: attributes ``n_steps``,
    ``n_channels``, ``n_classes`` (20), ``n_batches``, and ``batches(epoch, start=0)`` yielding
    ``(x [B, T, C] float32, y [B] int64)`` torch tensors on ``device`` (None: the CPU).

Splits (built by ``elm_neuro.training.tasks.build_classification_task`` for task ``shd``): the
same validation split of the train file as SHD-Adding (docs/design.md §6,
:func:`elm_neuro.data.shd_adding.split_pool`), test = test file. Each sample is binned over
``window`` seconds (the task's ``digit_window_s``, 1 s by default: SHD digits are shorter than
~1.4 s and mostly within the first second) at ``bin_size`` seconds, binary (spike present in
the bin), units pooled by ``channel_factor``.

Training splits (``fixed=False``) give a fresh seeded permutation of the training pool per
epoch, drawn from :func:`elm_neuro.data.shd_adding.training_rng` (``seed``, ``epoch``), so a
resumed run sees the same data; ``n_batches`` batches per epoch, cycling through as many
permutations as needed. Evaluation splits (``fixed=True``) cover every sample of the split once
in pool order (the last batch smaller); ``n_batches`` is then ignored, so a recipe's
``valid_batches`` / ``test_batches`` do not apply.

Like SHD-Adding, each split bins every distinct sample of its pool once, on the first batch,
into a uint8 tensor on ``device`` (:class:`elm_neuro.data.shd_adding.DigitCache`, ``binned()``)
and a batch is its rows copied into a float32 tensor, equal bit for bit to binning the batch's samples
with :func:`elm_neuro.data.binning.bin_events` (tested). Memory: distinct pool samples x
``n_steps`` x ``n_channels`` bytes (real SHD at 2 ms, 700 channels: 350 KB per sample, 2.85 GB
for the train file's two splits, 0.79 GB for the test file).
"""
from __future__ import annotations

import numpy as np
import torch

from .binning import n_bins
from .shd import N_CLASSES, N_UNITS, SHDEvents
from .shd_adding import DigitCache, empty_pool_message, training_rng

__all__ = ["SHDClassification"]


class SHDClassification:
    """Plain SHD digit classification over one split (see module docstring)."""

    def __init__(self, events: SHDEvents, pool: np.ndarray, *, fixed: bool, n_batches: int | None,
                 batch_size: int, seed: int, bin_size: float, window: float, channel_factor: int,
                 device=None):
        self.events, self.pool, self.fixed = events, np.asarray(pool, np.int64), fixed
        if self.pool.ndim != 1 or len(self.pool) == 0:
            raise ValueError(empty_pool_message("SHD split", events))
        self.batch_size, self.seed = batch_size, seed
        self.bin_size, self.window, self.channel_factor = bin_size, window, channel_factor
        self.n_steps = n_bins(window, bin_size)
        self.n_channels = -(-N_UNITS // channel_factor)
        self.n_classes = N_CLASSES
        self.n_batches = -(-len(self.pool) // batch_size) if fixed else int(n_batches)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self._cache: DigitCache | None = None

    def binned(self) -> torch.Tensor:
        """Every distinct pool sample binned once: uint8 [n_samples, n_steps, n_channels] on
        ``device``, built on first use."""
        return self._digit_cache().tensor

    def _digit_cache(self) -> DigitCache:
        if self._cache is None:
            self._cache = DigitCache(self.events, self.pool, bin_size=self.bin_size,
                                     window=self.window, n_units=N_UNITS,
                                     channel_factor=self.channel_factor, binary=True,
                                     device=self.device)
        return self._cache

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices of ``epoch`` in batch order (fixed splits: the pool itself)."""
        if self.fixed:
            return self.pool
        rng = training_rng(self.seed, epoch)
        reps = -(-self.n_batches * self.batch_size // len(self.pool))
        return np.concatenate([rng.permutation(self.pool) for _ in range(reps)])

    def batches(self, epoch: int = 0, start: int = 0):
        """Yield the batches of ``epoch`` from batch ``start`` on (resume mid-epoch)."""
        order = self.order(epoch)
        cache = self._digit_cache()
        labels = self.events.labels
        for k in range(start, self.n_batches):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            x = cache.frames(idx)
            yield x, torch.from_numpy(labels[idx].astype(np.int64)).to(self.device)
