"""Plain SHD classification splits (elm_neuro.data.shd_classification): shapes, evaluation
batches covering the pool once in order, seeded training permutations, binary binning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from elm_neuro.data.binning import bin_events
from elm_neuro.data.shd_adding import training_rng
from elm_neuro.data.shd_classification import SHDClassification
from elm_neuro.data.synth import generate_synthetic_events


@pytest.fixture(scope="module")
def events():
    return generate_synthetic_events(30, seed=2)


def _split(events, pool, fixed, n_batches=None):
    return SHDClassification(events, pool, fixed=fixed, n_batches=n_batches, batch_size=4,
                             seed=9, bin_size=0.01, window=1.0, channel_factor=7)


def test_evaluation_split_covers_pool_once(events):
    pool = np.array([3, 0, 7, 11, 5, 29, 8, 2, 14, 20])
    split = _split(events, pool, fixed=True, n_batches=123)  # n_batches ignored when fixed
    assert (split.n_steps, split.n_channels, split.n_classes, split.n_batches) == (100, 100, 20, 3)
    batches = list(split.batches(epoch=5))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    for k, (x, y) in enumerate(batches):
        idx = pool[4 * k:4 * k + 4]
        ref = bin_events(events.times, events.units, events.offsets, idx, 0.01, 1.0, 700, 7,
                         binary=True)
        np.testing.assert_array_equal(x.numpy(), ref)
        np.testing.assert_array_equal(y.numpy(), events.labels[idx])
        assert x.dtype == torch.float32 and y.dtype == torch.int64
    # the same batches every epoch, and resuming from batch 2
    np.testing.assert_array_equal(list(split.batches(0, start=2))[0][1], batches[2][1])


def test_training_split_permutes_per_epoch(events):
    pool = np.arange(10)
    split = _split(events, pool, fixed=False, n_batches=4)  # 16 samples: two permutations
    for epoch in (0, 1):
        rng = training_rng(9, epoch)
        expected = np.concatenate([rng.permutation(pool), rng.permutation(pool)])
        np.testing.assert_array_equal(split.order(epoch), expected)
        ys = np.concatenate([y.numpy() for _, y in split.batches(epoch)])
        np.testing.assert_array_equal(ys, events.labels[expected[:16]])
    assert not np.array_equal(split.order(0), split.order(1))


def test_training_batches_equal_per_batch_binning_and_bin_once(events, monkeypatch):
    import elm_neuro.data.shd_adding as A

    pool = np.array([1, 4, 4, 9, 17, 22, 25])  # a repeated sample is binned once
    split = _split(events, pool, fixed=False, n_batches=5)
    for epoch in (0, 3):
        order = split.order(epoch)
        for k, (x, y) in enumerate(split.batches(epoch)):
            idx = order[4 * k:4 * k + 4]
            ref = bin_events(events.times, events.units, events.offsets, idx, 0.01, 1.0, 700, 7,
                             binary=True)
            assert x.dtype == torch.float32 and x.device == torch.device("cpu")
            np.testing.assert_array_equal(x.numpy(), ref)
            np.testing.assert_array_equal(y.numpy(), events.labels[idx])
    cache = split.binned()
    assert cache.dtype == torch.uint8 and tuple(cache.shape) == (6, 100, 100)
    monkeypatch.setattr(A, "bin_events", lambda *a, **k: pytest.fail("binned in a batch"))
    assert len(list(split.batches(7))) == 5
