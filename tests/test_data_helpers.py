"""Helpers for the data tests (no tests here): fake SHD files written with plain h5py.

The writer is deliberately independent of :mod:`elm_neuro.data._h5io`, so that the reader is
checked against the real layout (docs/design.md §5) and not against our own writer.
"""
from __future__ import annotations

import h5py
import numpy as np

KEYS = [b"zero", b"one", b"two", b"three", b"four", b"five", b"six", b"seven", b"eight",
        b"nine", b"null", b"eins", b"zwei", b"drei", b"vier", b"fuenf", b"sechs", b"sieben",
        b"acht", b"neun"]


def write_fake_shd(path, times, units, labels, speakers=None, *, times_dtype=np.float16,
                   units_dtype=np.uint16, skip=(), meta=True):
    """Write an SHD-layout file: ``times`` / ``units`` are lists of per-sample arrays.

    ``skip`` names datasets to leave out (e.g. "labels") to fake broken files.
    """
    n_t, n_u = len(times), len(units)
    with h5py.File(path, "w") as f:
        if "spikes/times" not in skip:
            ds = f.create_dataset("spikes/times", (n_t,), dtype=h5py.vlen_dtype(times_dtype))
            for i, t in enumerate(times):
                ds[i] = np.asarray(t, dtype=times_dtype)
        if "spikes/units" not in skip:
            ds = f.create_dataset("spikes/units", (n_u,), dtype=h5py.vlen_dtype(units_dtype))
            for i, u in enumerate(units):
                ds[i] = np.asarray(u, dtype=units_dtype)
        if "labels" not in skip:
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))
        if speakers is not None and "extra/speaker" not in skip:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.array(KEYS))
        if meta:
            f.create_dataset("extra/meta_info/gender", data=np.array([b"female", b"male"]))
            f.create_dataset("extra/meta_info/age", data=np.array([30, 41], dtype=np.uint8))
            f.create_dataset("extra/meta_info/body_height",
                             data=np.array([1.65, 1.80], dtype=np.float32))
    return path


def random_events(rng, n_samples, max_spikes=300, t_max=1.3, n_units=700):
    """Random per-sample spike lists (unsorted, some empty) as float16-exact float64 times."""
    times, units = [], []
    for _ in range(n_samples):
        k = int(rng.integers(0, max_spikes)) if rng.random() > 0.1 else 0
        times.append(rng.uniform(0, t_max, k).astype(np.float16).astype(np.float64))
        units.append(rng.integers(0, n_units, k))
    return times, units


def flatten(times, units):
    """Per-sample lists -> (times float64, units int32, offsets int64)."""
    offsets = np.zeros(len(times) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in times])
    t = np.concatenate([np.asarray(x, np.float64) for x in times]) if times else np.zeros(0)
    u = np.concatenate([np.asarray(x, np.int64) for x in units]).astype(np.int32) if units \
        else np.zeros(0, np.int32)
    return t, u, offsets
