"""SHD-Adding: add the digits of two spoken SHD samples (docs/design.md §6).

Public API
----------
``validation_split(n_samples, seed=12345, fraction=0.2) -> (train_idx, valid_idx)``
    Per-sample Bernoulli(0.2) mask from ``numpy.random.default_rng(12345)``, drawn as
    ``rng.binomial(1, 0.2, n_samples)`` (1 = validation; the same mask as
    ``rng.random(n) >= 0.8``). On SHD's 8156 training samples: 6579 train / 1577 validation.
    The split depends only on the number of samples.
``draw_pairs(rng, pool, n_pairs) -> int64 [n_pairs, 2]``
    Two sample indices per pair, drawn uniformly **with replacement** from ``pool``:
    ``pool[rng.integers(0, len(pool), size=(n_pairs, 2))]``.
``pair_labels(labels, pairs) -> int64 [n_pairs]``
    ``(label1 mod 10) + (label2 mod 10)``: 19 classes 0..18 with a triangular distribution.
``SHDAdding(events, pool, *, fixed, n_batches, batch_size=8, seed=0, bin_size=0.002,
digit_window=1.0, channel_factor=1, n_units=700, binary=True, name="", device=None)``
    (the defaults of ``batch_size``, ``bin_size``, ``digit_window`` and ``channel_factor``,
    here and in ``make_splits`` / ``write_shd_adding``, are read from
    :mod:`elm_neuro.defaults`: ``BATCH_SIZE``, ``BIN_MS / 1000``, ``DIGIT_WINDOW_S``,
    ``CHANNEL_FACTOR``; ``make_splits``' batch counts from its ``paper-shd-adding`` recipe)
    One split of the task over the samples ``pool`` of ``events`` (an ``SHDEvents``).
    Attributes ``n_steps`` (2 x 500 by default), ``n_channels`` (700), ``n_classes`` (19),
    ``n_batches``, ``batch_size``. ``pairs(epoch)`` gives the pairs of an epoch;
    ``batches(epoch, start=0)`` yields ``(x, y)`` torch tensors on ``device`` (None: the CPU),
    x float32 [batch_size, n_steps, n_channels], y int64 [batch_size]; ``batch(epoch, k)``
    gives batch k. ``bin_pairs(pairs)`` bins given pairs straight from the flat events (numpy,
    float32; the per-batch path the batches used before the digit cache, kept as their
    reference).
    Training splits (``fixed=False``) draw fresh pairs every epoch from
    ``default_rng(SeedSequence([seed, epoch]))``: epoch e's pairs are a function of
    (seed, e) only, so training is reproducible and resumable at any (epoch, batch).
    Fixed splits (validation, test) draw their pairs once from ``default_rng(seed)`` (seed 0)
    and return the same pairs for every epoch.
``check_split_files(data_dir) -> {"train": n, "test": n}``
    The checks a run makes before it writes anything (for SHD-Adding and plain SHD): both files
    of the folder readable SHD-format files (:func:`elm_neuro.data.shd.shd_sample_count`), the
    training file giving a non-empty train and validation split, the test file holding samples;
    each failure names the file and what was expected.
``make_splits(train_events, test_events, ...) -> {"train", "valid", "test"}``
    The three splits of docs/design.md §6: train (6579-sample pool, fresh 2000 batches of 8 per epoch),
    valid (1577-sample pool, fixed 500 batches of 8 = 4000 pairs), test (whole test file,
    fixed 2000 batches of 8 = 16000 pairs). ``load_shd_adding(shd_dir, ...)`` reads
    ``shd_train.h5`` / ``shd_test.h5`` from a folder and calls it.
``SHDAddingBatches(task, epoch=0)``
    ``torch.utils.data.Dataset`` of whole batches (item k = batch k of the current epoch,
    ``set_epoch(e)`` to move on); use ``make_loader(task, epoch, num_workers)``, a
    ``DataLoader`` with ``batch_size=None``.
``write_shd_adding(events, pairs, out_path, ...)``
    Writes pairs as an SHD-format file (CLI: ``elm-neuro data shd-adding``).

Digit cache (binning drops out of the training step): on the first batch a split bins every
distinct sample of its pool ONCE, with the Numba binner, into one uint8 tensor
[n_samples, digit steps, n_channels] on ``device`` (``binned()`` gives it, ``cache_nbytes`` its
size; it is built in chunks of ``_CACHE_CHUNK`` samples through a reused ``out=`` buffer, so the
host never holds a float32 copy). A batch is then a copy of two cache rows per pair into the
two halves of a float32 x (``DigitCache.frames``). Values are exact: binary frames are 0/1 and
counts are integers in both dtypes, so every batch equals the per-batch binning of
:meth:`bin_pairs` bit for bit (tested). Counts (``binary=False``) above 255 in a cell do not fit uint8: the cache is
then float32 (4x the memory) rather than wrapped. Memory per split = distinct pool samples x
``steps_per_digit`` x ``n_channels`` bytes: on the real SHD at 2 ms and 700 channels
(350 KB per sample) the train pool takes 6579 x 500 x 700 = 2.30 GB, validation 1577 samples
0.55 GB, test 2264 samples 0.79 GB (3.65 GB in all, on the GPU when ``device`` is CUDA); the
small CPU recipe (10 ms, 100 channels: 10 KB per sample) needs 82 MB for the whole train file.
A ``DataLoader`` with worker processes (``make_loader(num_workers > 0)``) gives each worker its
own cache unless it was built before the workers start (``binned()``).

Input of a pair: each sample cut to ``digit_window`` = 1 s and binned at ``bin_size`` = 2 ms
(500 steps, bin = floor(t / bin)), the two concatenated in time (1000 steps x 700 channels),
no marker at the boundary, binary (spike present in the bin) by default. Window, bin size and
channel down-sampling (``channel_factor``: channel c pools units c*f..c*f+f-1) are parameters
for small CPU demos, e.g. ``bin_size=0.01, channel_factor=7`` gives 200 steps x 100 channels.

SHD-Adding files (``write_shd_adding``): sample i holds the spikes of the first digit with
t < 1 s and those of the second digit with t < 1 s shifted to t + 1 s; label = digit sum
(0..18); ``extra/pair_index`` [n, 2] the two source sample indices, ``extra/digits`` [n, 2]
their digits, ``extra/speaker`` the first digit's speaker (0 where the source has none) and
``extra/pair_speakers`` [n, 2] both (-1 where unknown); ``extra/keys`` "0".."18"; the source's
``extra/meta_info`` is copied. Root attributes record the provenance when given (the CLI
stores task, split, seed, source file name and window). About 47 KB per pair on synthetic
data (16000 pairs: ~750 MB), since HDF5 cannot compress ragged data. Times are stored as float32 by default: SHD's float16 has a
resolution of ~1 ms in [1, 2) s, which would move shifted spikes across 2 ms bin edges, while
float32 keeps every spike in the bin it has in the on-the-fly task (tested). Read them back
with ``read_shd(path, n_classes=19)``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from elm_neuro.defaults import BATCH_SIZE, BIN_MS, CHANNEL_FACTOR, DIGIT_WINDOW_S, RECIPES

from ._h5io import write_shd_h5
from .binning import CountOverflowError, bin_events, n_bins
from .shd import N_UNITS, SHDEvents, SHDFormatError, read_shd, shd_sample_count

__all__ = [
    "SHDAdding", "SHDAddingBatches", "make_loader", "make_splits", "load_shd_adding",
    "validation_split", "draw_pairs", "pair_labels", "training_rng", "write_shd_adding",
    "split_pool", "DigitCache", "N_SUM_CLASSES", "VALID_SEED", "VALID_FRACTION", "EVAL_SEED",
    "check_split_files", "empty_pool_message",
]

#: Number of SHD-Adding classes (digit sums 0..18).
N_SUM_CLASSES = 19
#: Seed and fraction of the validation split (docs/design.md §6).
VALID_SEED = 12345
VALID_FRACTION = 0.2
#: Seed of the fixed validation / test pairs (docs/design.md §6).
EVAL_SEED = 0
#: docs/design.md §6/7 split sizes in batches (train per epoch, valid, test), from the paper recipe.
_PAPER = RECIPES["paper-shd-adding"]
#: Samples binned per call when a split's digit cache is built (bounds the host buffer).
_CACHE_CHUNK = 1024


class DigitCache:
    """Samples of one pool binned once, as a uint8 tensor on a device (see module docstrings of
    :mod:`elm_neuro.data.shd_adding` and :mod:`elm_neuro.data.shd_classification`).

    ``tensor``: [n distinct samples, T, C], uint8 (float32 for counts above 255); ``rows(s)``
    maps sample indices of the events to its rows; ``frames(*parts)`` builds float32 inputs.
    """

    def __init__(self, events: SHDEvents, pool: np.ndarray, *, bin_size: float, window: float,
                 n_units: int, channel_factor: int, binary: bool, device=None):
        samples = np.unique(np.asarray(pool, dtype=np.int64))
        self.device = torch.device("cpu") if device is None else torch.device(device)
        n_t = n_bins(window, bin_size)
        n_c = -(-int(n_units) // int(channel_factor))
        args = (events.times, events.units, events.offsets)
        kw = dict(bin_size=bin_size, window=window, n_channels=n_units,
                  channel_factor=channel_factor, binary=binary)
        try:
            self.tensor = self._build(args, kw, samples, (n_t, n_c), np.uint8)
        except CountOverflowError:  # counts above 255 in a cell: exact float32 instead
            self.tensor = self._build(args, kw, samples, (n_t, n_c), np.float32)
        self._row = np.full(len(events), -1, dtype=np.int64)
        self._row[samples] = np.arange(len(samples), dtype=np.int64)

    def _build(self, args, kw, samples, frame, dtype):
        tdtype = torch.uint8 if dtype == np.uint8 else torch.float32
        cache = torch.empty((len(samples), *frame), dtype=tdtype, device=self.device)
        host = None
        for a in range(0, len(samples), _CACHE_CHUNK):
            idx = samples[a:a + _CACHE_CHUNK]
            if self.device.type == "cpu":  # straight into the cache
                bin_events(*args, idx, **kw, out=cache[a:a + len(idx)].numpy())
                continue
            if host is None:
                host = torch.empty((min(_CACHE_CHUNK, len(samples)), *frame), dtype=tdtype,
                                   pin_memory=torch.cuda.is_available())
            part = host[:len(idx)]
            bin_events(*args, idx, **kw, out=part.numpy())
            cache[a:a + len(idx)].copy_(part)
        return cache

    @property
    def nbytes(self) -> int:
        return self.tensor.numel() * self.tensor.element_size()

    def rows(self, samples) -> np.ndarray:
        """Rows of ``tensor`` holding ``samples`` (sample indices of the events), int64."""
        samples = np.asarray(samples, dtype=np.int64)
        inside = (samples >= 0) & (samples < len(self._row))
        rows = np.where(inside, self._row[np.where(inside, samples, 0)], -1)
        if (rows < 0).any():
            bad = int(samples[np.argmax(rows < 0)])
            raise ValueError(f"sample {bad} is not in the pool this split was binned from")
        return rows

    def frames(self, *parts) -> torch.Tensor:
        """float32 [P, len(parts) * T, C] on the cache's device: item j holds the binned samples
        ``parts[0][j]``, ``parts[1][j]``, ... one after the other in time.

        On the CPU the output is allocated by numpy (measured on a 22 MB batch: filling a fresh
        ``torch.empty`` takes twice as long as a fresh ``np.empty``, the difference being page
        faults) and each frame is copied straight from its cache row, cast to float32, without
        an intermediate gather; on a GPU each part is one ``index_select``.
        """
        rows = [self.rows(p) for p in parts]
        n = len(rows[0])
        _, n_t, n_c = self.tensor.shape
        if self.device.type == "cpu":
            x = torch.from_numpy(np.empty((n, len(parts) * n_t, n_c), dtype=np.float32))
            for h, r in enumerate(rows):
                for j, i in enumerate(r.tolist()):
                    x[j, h * n_t:(h + 1) * n_t].copy_(self.tensor[i])
            return x
        x = torch.empty((n, len(parts) * n_t, n_c), dtype=torch.float32, device=self.device)
        for h, r in enumerate(rows):
            x[:, h * n_t:(h + 1) * n_t] = self.tensor.index_select(
                0, torch.from_numpy(r).to(self.device))
        return x


def validation_split(n_samples: int, seed: int = VALID_SEED,
                     fraction: float = VALID_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, valid_idx) of a file with ``n_samples`` samples (see module docstring)."""
    if int(n_samples) != n_samples or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, got {n_samples}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    valid = np.random.default_rng(seed).binomial(1, fraction, int(n_samples)).astype(bool)
    return np.flatnonzero(~valid), np.flatnonzero(valid)


def draw_pairs(rng: np.random.Generator, pool: np.ndarray, n_pairs: int) -> np.ndarray:
    """``n_pairs`` pairs of sample indices drawn uniformly with replacement from ``pool``."""
    pool = np.asarray(pool, dtype=np.int64)
    if pool.ndim != 1 or len(pool) == 0:
        raise ValueError(f"the pool of samples to pair must be a non-empty 1-D array, got "
                         f"shape {pool.shape}")
    if int(n_pairs) != n_pairs or n_pairs < 0:
        raise ValueError(f"n_pairs must be a non-negative integer, got {n_pairs}")
    return pool[rng.integers(0, len(pool), size=(int(n_pairs), 2))]


def pair_labels(labels: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Digit sum (label1 mod 10) + (label2 mod 10) of every pair, int64."""
    labels = np.asarray(labels, dtype=np.int64)
    return labels[pairs[:, 0]] % 10 + labels[pairs[:, 1]] % 10


def training_rng(seed: int, epoch: int) -> np.random.Generator:
    """Generator of the training pairs of ``epoch``: ``default_rng(SeedSequence([seed, epoch]))``."""
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer, got {epoch}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


class SHDAdding:
    """One split of SHD-Adding, binned on the fly (see module docstring)."""

    def __init__(self, events: SHDEvents, pool, *, fixed: bool, n_batches: int,
                 batch_size: int = BATCH_SIZE, seed: int = 0, bin_size: float = BIN_MS / 1000,
                 digit_window: float = DIGIT_WINDOW_S, channel_factor: int = CHANNEL_FACTOR,
                 n_units: int = N_UNITS,
                 binary: bool = True, name: str = "", device=None):
        pool = np.asarray(pool, dtype=np.int64)
        if pool.ndim != 1 or len(pool) == 0:
            raise ValueError(empty_pool_message(f"SHD-Adding split {name!r}", events, name))
        if pool.min() < 0 or pool.max() >= len(events):
            raise ValueError(f"SHD-Adding split {name!r}: pool indices outside "
                             f"0..{len(events) - 1} of {events.path or 'the events'}")
        for arg, v in (("n_batches", n_batches), ("batch_size", batch_size),
                       ("channel_factor", channel_factor)):
            if int(v) != v or v < 1:
                raise ValueError(f"{arg} must be a positive integer, got {v}")
        self.events = events
        self.pool = pool
        self.fixed = bool(fixed)
        self.n_batches = int(n_batches)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.bin_size = float(bin_size)
        self.digit_window = float(digit_window)
        self.channel_factor = int(channel_factor)
        self.n_units = int(n_units)
        self.binary = bool(binary)
        self.name = name
        self.steps_per_digit = n_bins(self.digit_window, self.bin_size)
        self.n_steps = 2 * self.steps_per_digit
        self.n_channels = -(-self.n_units // self.channel_factor)
        self.n_classes = N_SUM_CLASSES
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self._fixed_pairs: np.ndarray | None = None
        self._cache: DigitCache | None = None

    def __len__(self) -> int:
        return self.n_batches

    @property
    def n_pairs(self) -> int:
        return self.n_batches * self.batch_size

    def __repr__(self) -> str:
        kind = "fixed" if self.fixed else "fresh per epoch"
        return (f"SHDAdding({self.name!r}: pool {len(self.pool)} samples, {self.n_batches} "
                f"batches of {self.batch_size} ({kind}), x [{self.batch_size}, {self.n_steps}, "
                f"{self.n_channels}], {self.n_classes} classes)")

    def pairs(self, epoch: int = 0) -> np.ndarray:
        """All pairs of ``epoch`` (int64 [n_batches * batch_size, 2]); batch k is rows
        k*batch_size..(k+1)*batch_size-1. Fixed splits ignore ``epoch``."""
        if self.fixed:
            if self._fixed_pairs is None:
                self._fixed_pairs = draw_pairs(np.random.default_rng(self.seed), self.pool,
                                               self.n_pairs)
            return self._fixed_pairs
        return draw_pairs(training_rng(self.seed, epoch), self.pool, self.n_pairs)

    def labels(self, epoch: int = 0) -> np.ndarray:
        """Digit-sum labels of the pairs of ``epoch``."""
        return pair_labels(self.events.labels, self.pairs(epoch))

    def bin_pairs(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Numpy (x float32 [P, n_steps, n_channels], y int64 [P]) of the given pairs, binned
        from the flat events now (the reference of the cached :meth:`pair_inputs`)."""
        pairs = np.asarray(pairs, dtype=np.int64)
        p = len(pairs)
        ev = self.events
        both = bin_events(ev.times, ev.units, ev.offsets,
                          np.concatenate((pairs[:, 0], pairs[:, 1])), self.bin_size,
                          self.digit_window, self.n_units, self.channel_factor, self.binary)
        x = np.concatenate((both[:p], both[p:]), axis=1)
        return x, pair_labels(ev.labels, pairs)

    def binned(self) -> torch.Tensor:
        """The digit cache: every distinct pool sample binned once (uint8, or float32 for counts
        above 255), [n_samples, steps_per_digit, n_channels] on ``device``; built on first use."""
        return self._digit_cache().tensor

    @property
    def cache_nbytes(self) -> int:
        """Bytes the digit cache takes (it is built if it was not yet)."""
        return self._digit_cache().nbytes

    def _digit_cache(self) -> DigitCache:
        if self._cache is None:
            self._cache = DigitCache(self.events, self.pool, bin_size=self.bin_size,
                                     window=self.digit_window, n_units=self.n_units,
                                     channel_factor=self.channel_factor, binary=self.binary,
                                     device=self.device)
        return self._cache

    def pair_inputs(self, pairs: np.ndarray) -> torch.Tensor:
        """x float32 [P, n_steps, n_channels] of the given pairs, gathered from the digit cache
        (equal to ``bin_pairs(pairs)[0]``); on ``device``."""
        pairs = np.asarray(pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must have shape [n, 2], got {pairs.shape}")
        return self._digit_cache().frames(pairs[:, 0], pairs[:, 1])

    def batch(self, epoch: int, k: int, pairs: np.ndarray | None = None):
        """Batch ``k`` of ``epoch`` as torch tensors (x float32, y int64) on ``device``."""
        if not 0 <= k < self.n_batches:
            raise IndexError(f"batch {k} outside 0..{self.n_batches - 1}")
        pairs = self.pairs(epoch) if pairs is None else pairs
        part = np.asarray(pairs[k * self.batch_size:(k + 1) * self.batch_size], dtype=np.int64)
        y = torch.from_numpy(pair_labels(self.events.labels, part)).to(self.device)
        return self.pair_inputs(part), y

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor,
                                                                         torch.Tensor]]:
        """Yield the batches of ``epoch`` from batch ``start`` on (resume mid-epoch)."""
        pairs = self.pairs(epoch)
        for k in range(int(start), self.n_batches):
            yield self.batch(epoch, k, pairs)


def split_pool(split: str, n_train_file: int, n_test_file: int) -> np.ndarray:
    """Sample indices of ``split`` ('train', 'valid' or 'test') within its source file."""
    if split == "test":
        return np.arange(n_test_file, dtype=np.int64)
    train_idx, valid_idx = validation_split(n_train_file)
    if split == "train":
        return train_idx
    if split == "valid":
        return valid_idx
    raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")


def empty_pool_message(what: str, events: SHDEvents, split: str = "") -> str:
    """The message for a split without samples, naming the file it draws from and what it needs."""
    source = events.path or "the events given"
    need = {"test": "at least one sample", "valid": "samples for the validation split (about 20 % of its samples, "
                                                    "drawn per sample)",
            "train": "samples for the training split (about 80 % of its samples)"}.get(split, "samples")
    return f"{what}: no samples of {source} fall in it ({len(events)} samples in the file); the file must hold {need}"


def check_split_files(data_dir: str | os.PathLike) -> dict[str, int]:
    """Sample counts of ``shd_train.h5`` and ``shd_test.h5`` in ``data_dir`` after the checks of
    the module docstring (``FileNotFoundError`` / :class:`~elm_neuro.data.shd.UnreadableFile` /
    :class:`~elm_neuro.data.shd.SHDFormatError` naming the file and what was expected)."""
    folder = Path(data_dir)
    train, test = folder / "shd_train.h5", folder / "shd_test.h5"
    n_train, n_test = shd_sample_count(train), shd_sample_count(test)
    remedy = "write or fetch the data again (`elm-neuro data synth --out DIR`, `elm-neuro data fetch --out DIR`)"
    if n_train == 0:
        raise SHDFormatError(f"{train} holds no samples; expected the training file's samples, split into "
                             f"training (about 80 %) and validation (about 20 %) samples: {remedy}")
    train_idx, valid_idx = validation_split(n_train)
    for name, idx in (("validation", valid_idx), ("training", train_idx)):
        if len(idx) == 0:
            raise SHDFormatError(f"{train} holds {n_train} samples and none of them falls into the {name} split "
                                 f"(each sample goes to validation with probability {VALID_FRACTION}, seed "
                                 f"{VALID_SEED}); expected a training file with more samples (a few dozen at "
                                 f"least): {remedy}")
    if n_test == 0:
        raise SHDFormatError(f"{test} holds no samples; expected at least one test sample for the final "
                             f"evaluation: {remedy}")
    return {"train": n_train, "test": n_test}


def make_splits(train_events: SHDEvents, test_events: SHDEvents, *, batch_size: int = BATCH_SIZE,
                train_batches: int = _PAPER["batches_per_epoch"],
                valid_batches: int = _PAPER["valid_batches"],
                test_batches: int = _PAPER["test_batches"],
                seed: int = 0, eval_seed: int = EVAL_SEED, bin_size: float = BIN_MS / 1000,
                digit_window: float = DIGIT_WINDOW_S, channel_factor: int = CHANNEL_FACTOR,
                n_units: int = N_UNITS,
                binary: bool = True, device=None) -> dict[str, SHDAdding]:
    """The train / valid / test splits of docs/design.md §6 (defaults) as :class:`SHDAdding` objects,
    yielding batches on ``device`` (None: the CPU)."""
    common = dict(batch_size=batch_size, bin_size=bin_size, digit_window=digit_window,
                  channel_factor=channel_factor, n_units=n_units, binary=binary, device=device)
    n_tr, n_te = len(train_events), len(test_events)
    return {
        "train": SHDAdding(train_events, split_pool("train", n_tr, n_te), fixed=False,
                           n_batches=train_batches, seed=seed, name="train", **common),
        "valid": SHDAdding(train_events, split_pool("valid", n_tr, n_te), fixed=True,
                           n_batches=valid_batches, seed=eval_seed, name="valid", **common),
        "test": SHDAdding(test_events, split_pool("test", n_tr, n_te), fixed=True,
                          n_batches=test_batches, seed=eval_seed, name="test", **common),
    }


def load_shd_adding(shd_dir: str | os.PathLike, **kwargs) -> dict[str, SHDAdding]:
    """Read ``shd_train.h5`` and ``shd_test.h5`` from ``shd_dir``; :func:`make_splits`."""
    shd_dir = Path(shd_dir)
    train = read_shd(shd_dir / "shd_train.h5")
    test = read_shd(shd_dir / "shd_test.h5")
    return make_splits(train, test, **kwargs)


class SHDAddingBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item k is batch k (x, y) of ``task`` in the current epoch."""

    def __init__(self, task: SHDAdding, epoch: int = 0):
        self.task = task
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._pairs = self.task.pairs(self.epoch)

    def __len__(self) -> int:
        return self.task.n_batches

    def __getitem__(self, k: int):
        return self.task.batch(self.epoch, int(k), self._pairs)


def make_loader(task: SHDAdding, epoch: int = 0, num_workers: int = 0,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over the batches of ``task`` in ``epoch`` (in order, no re-batching)."""
    return torch.utils.data.DataLoader(SHDAddingBatches(task, epoch), batch_size=None,
                                       shuffle=False, num_workers=num_workers,
                                       pin_memory=pin_memory)


def _gather(offsets: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, event index) of all events of samples ``idx``, row = position in ``idx``."""
    counts = offsets[1:][idx] - offsets[:-1][idx]
    row = np.repeat(np.arange(len(idx), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    ev = np.repeat(offsets[:-1][idx] - first, counts) + np.arange(counts.sum(), dtype=np.int64)
    return row, ev


def write_shd_adding(events: SHDEvents, pairs: np.ndarray, out_path: str | os.PathLike, *,
                     digit_window: float = DIGIT_WINDOW_S, times_dtype=np.float32,
                     attrs: dict | None = None) -> Path:
    """Write the given pairs of ``events`` as an SHD-format file (see module docstring).

    Sample i = first digit's spikes with t < digit_window, then the second digit's spikes with
    t < digit_window at t + digit_window (float64 sum, then cast to ``times_dtype``).
    Written atomically and byte-reproducibly.
    """
    if not (isinstance(digit_window, (int, float)) and np.isfinite(digit_window) and digit_window > 0):
        raise ValueError(f"digit_window (--window) must be a number of seconds > 0, got {digit_window!r}: "
                         f"with it every pair would be empty")
    pairs = np.asarray(pairs, dtype=np.int64)
    n = len(events)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape [n, 2], got {pairs.shape}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"pair indices outside 0..{n - 1} of {events.path or 'the events'}")
    w = float(digit_window)
    p = len(pairs)
    # part 0 (first digit) and part 1 (second digit) of every pair; row r = 2*pair + part
    idx = pairs.reshape(-1)
    row, ev = _gather(events.offsets, idx)
    t = events.times[ev]
    keep = t < w
    row, ev, t = row[keep], ev[keep], t[keep]
    t = t + w * (row % 2)
    # rows are already in order 0,1,2,... (pair-major, first digit before second)
    counts = np.bincount(row // 2, minlength=p)
    offsets = np.zeros(p + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    labels = pair_labels(events.labels, pairs)
    digits = (events.labels[pairs] % 10).astype(np.uint8)
    extra = {
        "pair_index": pairs,
        "digits": digits,
        "pair_speakers": events.speakers[pairs].astype(np.int64),
    }
    keys = [str(k) for k in range(N_SUM_CLASSES)]
    return write_shd_h5(out_path, t, events.units[ev], offsets, labels,
                        np.maximum(events.speakers[pairs[:, 0]], 0), keys,
                        meta_info=events.meta_info or None, extra=extra,
                        times_dtype=times_dtype, attrs=attrs)
