"""SHD-format files and SHD-Adding pairs as tonic-style event datasets.

`tonic <https://tonic.readthedocs.io>`_ serves event data as indexable datasets whose item is
``(events, target)``, ``events`` a numpy structured array, and transforms such as
``tonic.transforms.ToFrame`` turn those arrays into frames. This module serves our data the
same way, so tonic's transforms (and anything else written for tonic's SHD) work on it:

``SHDEventDataset(source, *, n_classes=20, n_units=700, transform=None, target_transform=None)``
    Every sample of one SHD-format HDF5 file (``source`` a path, read with
    :func:`elm_neuro.data.shd.read_shd`, or an already read ``SHDEvents``). Item i =
    ``(events, label)``; ``classes`` (the file's ``extra/keys``) and ``speaker`` as in
    ``tonic.datasets.SHD``. SHD-Adding *files* (``write_shd_adding``) are read with
    ``n_classes=19``.
``SHDAddingEventDataset(source, pairs, *, digit_window=1.0, n_classes=20, n_units=700,
transform=None, target_transform=None)``
    SHD-Adding pairs of samples of ``source``: item i = ``(events, digit sum)`` of
    ``pairs[i]``. ``SHDAddingEventDataset.from_split(split, epoch=0)`` serves the pairs of an
    :class:`elm_neuro.data.shd_adding.SHDAdding` split (its events, ``pairs(epoch)``, window
    and unit count).
``to_microseconds(times)``, ``EVENT_DTYPE``, ``ORDERING``, ``sensor_size(n_units)``
    The conversion and layout below.

Layout (that of ``tonic.datasets.SHD``): ``EVENT_DTYPE`` = fields ``t``, ``x``, ``p``, all
int64 (``ORDERING = "txp"``); ``t`` in integer microseconds, ``x`` the unit 0..699, ``p`` = 1
(SHD has no polarity; tonic adds the same constant); ``sensor_size = (700, 1, 1)``.
``to_microseconds`` is ``trunc(float64(t) * 1e6)``, tonic's own conversion, which for the
non-negative times of SHD is ``floor``. Truncating rather than rounding keeps every spike in
the bin it has in :func:`elm_neuro.data.binning.bin_events` for any bin width that is a whole
number of microseconds, since ``floor(floor(x) / w) = floor(x / w)`` for integer ``w``: so
``ToFrame(sensor_size=(700, 1, 1), time_window=bin_us, start_time=0, end_time=window_us)``
on an item equals ``bin_events(..., bin_size=bin_us / 1e6, window=window_us / 1e6)`` on the
same sample (counts; ``ToFrame`` gives int16 [T, 1, 700], tested).

Choices where tonic is silent:

* Events of an item are sorted by time (stable sort, so spikes at the same microsecond keep
  their file order): tonic's time slicing (``searchsorted``) needs sorted times, and
  ``read_shd`` accepts unsorted samples. Real and synthetic SHD are already sorted, so their
  items are in file order (tested against ``tonic.datasets.SHD`` itself).
* A pair mirrors :class:`~elm_neuro.data.shd_adding.SHDAdding` exactly: of each digit only the
  spikes with ``t < digit_window`` are kept (the float64 test ``bin_events`` makes, plus
  ``t_us < window_us``), the first digit's at ``to_microseconds(t)``, the second digit's at
  ``to_microseconds(t) + window_us`` with ``window_us = digit_window * 1e6``, which must
  therefore be a whole number of microseconds (ValueError otherwise). The shift is added in
  integers after the conversion, so with a bin width ``bin_us`` dividing ``window_us``, the
  frames of ``ToFrame(time_window=bin_us, start_time=0, end_time=2 * window_us)`` equal
  ``SHDAdding(..., binary=False, channel_factor=1).bin_pairs`` and the batches the split
  gathers from its uint8 digit cache (and their ``> 0`` the binary default). This differs from ``write_shd_adding`` files, which store ``t + window`` as
  float32 seconds.
* Targets are Python ints (SHD label 0..19; digit sum 0..18 for pairs).
* Indices follow Python: ``-len(ds) <= i < len(ds)``; anything else raises ``IndexError``
  (which also ends ``for item in ds``), a non-integer index ``TypeError``.
* ``transform`` is applied to the events array and ``target_transform`` to the target, in that
  order, exactly like tonic's datasets do; every item is a fresh array, so transforms that
  write into it (``ToFrame`` zeroes ``p`` for a one-polarity sensor) change nothing stored.

This module imports nothing from tonic: the structured array is all it needs. Installing tonic
for its transforms: ``pip install elm_neuro[interop]``.
"""
from __future__ import annotations

import operator
import os
from collections.abc import Callable

import numpy as np

from elm_neuro.defaults import DIGIT_WINDOW_S

from .shd import N_CLASSES, N_UNITS, SHDEvents, read_shd
from .shd_adding import pair_labels

__all__ = ["SHDEventDataset", "SHDAddingEventDataset", "to_microseconds", "sensor_size",
           "EVENT_DTYPE", "ORDERING"]

#: Structured dtype of one event, as ``tonic.datasets.SHD.dtype`` (int64 fields t, x, p).
EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])
#: Field order of :data:`EVENT_DTYPE` (tonic's ``ordering``).
ORDERING = "txp"
_US_PER_S = 1e6


def sensor_size(n_units: int = N_UNITS) -> tuple[int, int, int]:
    """tonic's sensor size of SHD-like data with ``n_units`` channels: ``(n_units, 1, 1)``."""
    return (int(n_units), 1, 1)


def to_microseconds(times) -> np.ndarray:
    """Spike times in seconds -> int64 microseconds, ``trunc(float64(t) * 1e6)`` (as tonic)."""
    return (np.asarray(times, dtype=np.float64) * _US_PER_S).astype(np.int64)


def _structured(t_us: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Events sorted by time (stable) in :data:`EVENT_DTYPE`, polarity 1."""
    order = np.argsort(t_us, kind="stable")
    out = np.empty(len(t_us), dtype=EVENT_DTYPE)
    out["t"] = t_us[order]
    out["x"] = units[order]
    out["p"] = 1
    return out


def _load(source, n_classes: int, n_units: int) -> SHDEvents:
    if isinstance(source, SHDEvents):
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_shd(source, n_classes=n_classes, n_units=n_units)
    raise ValueError(f"source must be the path of an SHD-format HDF5 file or an SHDEvents, "
                     f"got {type(source).__name__}")


def _check_callable(name: str, f) -> None:
    if f is not None and not callable(f):
        raise ValueError(f"{name} must be callable or None, got {type(f).__name__}")


class _EventDataset:
    """Shared indexing and transforms (see module docstring)."""

    dtype = EVENT_DTYPE
    ordering = ORDERING

    def __init__(self, events: SHDEvents, n_units: int, transform: Callable | None,
                 target_transform: Callable | None):
        _check_callable("transform", transform)
        _check_callable("target_transform", target_transform)
        self.events = events
        self.sensor_size = sensor_size(n_units)
        self.transform = transform
        self.target_transform = target_transform

    def _where(self) -> str:
        return self.events.path or "the events"

    def _index(self, index) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"{type(self).__name__} of {self._where()}: index must be an "
                            f"integer, got {type(index).__name__}") from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{type(self).__name__} of {self._where()}: index {i} out of range "
                             f"for {n} items (valid: -{n}..{n - 1})")
        return i % n

    def _item(self, i: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def __getitem__(self, index) -> tuple:
        events, target = self._item(self._index(index))
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return events, target


class SHDEventDataset(_EventDataset):
    """Every sample of an SHD-format file as tonic-style ``(events, label)`` items."""

    def __init__(self, source, *, n_classes: int = N_CLASSES, n_units: int = N_UNITS,
                 transform: Callable | None = None, target_transform: Callable | None = None):
        super().__init__(_load(source, n_classes, n_units), n_units, transform, target_transform)
        self.classes = self.events.keys
        self.speaker = self.events.speakers

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        return f"SHDEventDataset({self._where()}: {len(self)} samples)"

    def _item(self, i: int) -> tuple[np.ndarray, int]:
        t, u = self.events.sample(i)
        return _structured(to_microseconds(t), u), int(self.events.labels[i])


class SHDAddingEventDataset(_EventDataset):
    """SHD-Adding pairs of samples as tonic-style ``(events, digit sum)`` items."""

    def __init__(self, source, pairs, *, digit_window: float = DIGIT_WINDOW_S,
                 n_classes: int = N_CLASSES, n_units: int = N_UNITS,
                 transform: Callable | None = None, target_transform: Callable | None = None):
        super().__init__(_load(source, n_classes, n_units), n_units, transform, target_transform)
        pairs = np.asarray(pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or not (
                pairs.size == 0 or np.issubdtype(pairs.dtype, np.integer)):
            raise ValueError(f"pairs must be an integer array of shape [n, 2], got "
                             f"{pairs.dtype} {pairs.shape}")
        n = len(self.events)
        if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
            raise ValueError(f"pairs: sample indices outside 0..{n - 1} of {self._where()}")
        w = float(digit_window)
        w_us = round(w * _US_PER_S) if np.isfinite(w) else 0
        if not (w > 0 and w_us >= 1 and abs(w * _US_PER_S - w_us) <= 1e-9 * w_us):
            raise ValueError(f"digit_window must be a positive whole number of microseconds "
                             f"(in seconds), got {digit_window}")
        self.pairs = pairs.astype(np.int64)
        self.digit_window = w
        self.window_us = int(w_us)
        self.labels = pair_labels(self.events.labels, self.pairs)

    @classmethod
    def from_split(cls, split, epoch: int = 0, *, transform: Callable | None = None,
                   target_transform: Callable | None = None) -> "SHDAddingEventDataset":
        """The pairs of ``split`` (an ``SHDAdding``) in ``epoch``, in batch order."""
        return cls(split.events, split.pairs(epoch), digit_window=split.digit_window,
                   n_units=split.n_units, transform=transform,
                   target_transform=target_transform)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return (f"SHDAddingEventDataset({self._where()}: {len(self)} pairs, digit window "
                f"{self.digit_window} s)")

    def _digit(self, s: int, shift_us: int) -> tuple[np.ndarray, np.ndarray]:
        t, u = self.events.sample(s)
        t_us = to_microseconds(t)
        keep = (t < self.digit_window) & (t_us < self.window_us)
        return t_us[keep] + shift_us, u[keep]

    def _item(self, i: int) -> tuple[np.ndarray, int]:
        a, b = self.pairs[i]
        t1, u1 = self._digit(int(a), 0)
        t2, u2 = self._digit(int(b), self.window_us)
        events = _structured(np.concatenate((t1, t2)), np.concatenate((u1, u2)))
        return events, int(self.labels[i])
