"""A linear baseline of an SHD-format data set: logistic regression on binned spike counts.

How hard a set of spiking digits is, in one number that needs no network: a multinomial logistic
regression (softmax regression) on coarse spike counts, trained on ``shd_train.h5`` and scored on
``shd_test.h5``. A data set on which this reaches ~100 % tests nothing a recurrent network adds
(timing, memory); one on which it stays near chance may be unlearnable. ``elm-neuro data inspect
DIR --baseline`` prints it, ``benchmarks/bench_spoken_baseline.py`` compares spoken and synthetic
sets of one size.

Public API
----------
``binned_features(events, n_bins=20, window=1.0, channel_factor=7) -> float32 [n, n_bins * C]``
    Spike counts of each sample's first ``window`` seconds in ``n_bins`` equal time bins
    (50 ms by default) and 700 channels pooled by ``channel_factor`` (100 by default), flattened.
``linear_baseline(train, test, ...) -> dict``
    Train and test accuracy, chance level (share of the test split's most frequent label), the
    feature count, the fit's iterations and seconds.
``format_baseline(result) -> str``
    The line ``data inspect --baseline`` prints.

Choices (fixed, so that numbers of different sets compare): features are ``log1p(count)``,
standardised with the training split's mean and standard deviation (channels that never fire
stay 0); the loss is the mean cross-entropy plus ``l2 / 2 * |W|^2`` (``L2`` = 1e-2, the bias
unpenalised), minimised by scipy's L-BFGS from zero weights (deterministic: the same files give
the same numbers) for at most ``MAX_ITER`` iterations. No validation split and no tuning: it is
a yardstick, not a model.
"""
from __future__ import annotations

import time

import numpy as np

from .binning import bin_events_numpy
from .shd import N_UNITS, SHDEvents

__all__ = ["binned_features", "linear_baseline", "format_baseline", "N_BINS", "WINDOW_S", "CHANNEL_FACTOR",
           "L2", "MAX_ITER"]

N_BINS = 20
WINDOW_S = 1.0
CHANNEL_FACTOR = 7
L2 = 1e-2
MAX_ITER = 300


def binned_features(events: SHDEvents, n_bins: int = N_BINS, window: float = WINDOW_S,
                    channel_factor: int = CHANNEL_FACTOR) -> np.ndarray:
    """Counts of every sample in ``n_bins`` time bins x pooled channels, flattened (float32)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    parts = [bin_events_numpy(events.times, events.units, events.offsets, np.arange(i, min(i + 512, len(events))),
                              window / n_bins, window, N_UNITS, channel_factor=channel_factor, dtype=np.float32)
             for i in range(0, len(events), 512)]  # blocks: bounded memory for SHD-sized sets
    return np.concatenate(parts).reshape(len(events), -1)


def _fit(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int):
    from scipy.optimize import minimize

    n, d = x.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    x64 = x.astype(np.float64)

    def loss_grad(theta):
        w = theta[: d * n_classes].reshape(d, n_classes)
        b = theta[d * n_classes:]
        z = x64 @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -(onehot * logp).sum() / n + 0.5 * l2 * (w * w).sum()
        g = (np.exp(logp) - onehot) / n
        gw = x64.T @ g + l2 * w
        return loss, np.concatenate([gw.ravel(), g.sum(axis=0)])

    res = minimize(loss_grad, np.zeros(d * n_classes + n_classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})
    return res.x[: d * n_classes].reshape(d, n_classes), res.x[d * n_classes:], int(res.nit)


def linear_baseline(train: SHDEvents, test: SHDEvents, n_bins: int = N_BINS, window: float = WINDOW_S,
                    channel_factor: int = CHANNEL_FACTOR, l2: float = L2, max_iter: int = MAX_ITER) -> dict:
    """Logistic regression on :func:`binned_features` of ``train``, scored on both splits."""
    if len(train) == 0 or len(test) == 0:
        raise ValueError("the linear baseline needs training and test samples; a split is empty")
    t0 = time.perf_counter()
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    xtr = np.log1p(binned_features(train, n_bins, window, channel_factor))
    xte = np.log1p(binned_features(test, n_bins, window, channel_factor))
    mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    std[std == 0] = 1.0
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    w, b, iters = _fit(xtr, train.labels, n_classes, l2, max_iter)
    acc_tr = float(np.mean(np.argmax(xtr @ w + b, axis=1) == train.labels))
    acc_te = float(np.mean(np.argmax(xte @ w + b, axis=1) == test.labels))
    chance = float(np.bincount(test.labels).max() / len(test))
    return {"train_acc": acc_tr, "test_acc": acc_te, "chance": chance, "features": int(xtr.shape[1]),
            "n_train": len(train), "n_test": len(test), "iterations": iters,
            "seconds": time.perf_counter() - t0,
            "setting": f"{n_bins} bins x {window / n_bins * 1e3:g} ms, {N_UNITS} channels pooled by {channel_factor}"}


def format_baseline(r: dict) -> str:
    """One line: the setting and the accuracies."""
    return (f"linear baseline:   logistic regression on log spike counts ({r['setting']}): test acc "
            f"{r['test_acc']:.3f}, train acc {r['train_acc']:.3f} (chance {r['chance']:.3f}; {r['n_train']} train / "
            f"{r['n_test']} test samples, {r['seconds']:.1f} s)")
