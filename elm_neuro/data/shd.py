"""Reader for Spiking Heidelberg Digits files (docs/design.md §5).

Public API
----------
``read_shd(path, n_classes=20, n_units=700) -> SHDEvents``
    Read every sample of one SHD-format HDF5 file at once (one open, one read per dataset)
    into flat arrays:

    * ``times``    float64 [E]   spike times in seconds (the file's float16 cast to float64
      *before* any arithmetic, as docs/design.md §5 requires),
    * ``units``    int32 [E]     input channel 0..n_units-1,
    * ``offsets``  int64 [n+1]   sample i owns events ``offsets[i]:offsets[i+1]``,
    * ``labels``   int64 [n]     class 0..n_classes-1 (SHD: 0-9 English, 10-19 German digits;
      digit value = label mod 10),
    * ``speakers`` int64 [n]     speaker id, -1 where the file has no ``extra/speaker``,
    * ``keys``     tuple of class names from ``extra/keys`` (empty if absent),
    * ``meta_info`` per-speaker arrays from ``extra/meta_info`` (gender, age, body_height),
    * ``extra``    any other per-sample arrays under ``extra/`` (e.g. SHD-Adding's
      ``pair_index`` and ``digits``),
    * ``path``     the file read.

Layout accepted: ``spikes/times`` and ``spikes/units`` ragged (variable-length) datasets of
equal length n, ``labels`` [n]; ``extra/speaker`` [n] optional. Spikes inside a sample need not
be sorted; empty samples are legal.

Validation (each failure raises :class:`SHDFormatError`, a ``ValueError``, naming the file and,
where it applies, the first bad sample): not an HDF5 file (an empty file, or one without the HDF5
signature), a truncated or corrupt HDF5 file, missing datasets, non-ragged spike datasets,
lengths that disagree (between datasets or between the times and units of one sample), units
outside ``0..n_units-1``, times that are NaN, infinite or negative, labels outside
``0..n_classes-1`` (SHD-Adding files need ``n_classes=19``).

Reading and damage are told apart: a file this user may not read (its permissions, or a folder
above it that cannot be entered) raises :class:`UnreadableFile` (a ``PermissionError`` whose
message says that reading was refused and what to do), never "corrupt"; a missing file raises
``FileNotFoundError``. :func:`check_shd_file` makes these first checks alone,
:func:`shd_sample_count` adds the layout and returns the number of samples without reading the
spikes (the checks a run makes before it writes anything), :func:`file_attrs` returns the root
attributes (provenance markers such as the synthetic one).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

__all__ = ["SHDEvents", "SHDFormatError", "UnreadableFile", "read_shd", "check_shd_file", "shd_sample_count",
           "file_attrs", "N_UNITS", "N_CLASSES", "CLASS_NAMES"]

#: Number of input channels (cochlea model outputs) in SHD.
N_UNITS = 700
#: Number of classes in SHD (10 English + 10 German digits).
N_CLASSES = 20
#: Class names in label order (0-9 English "zero".."nine", 10-19 German "null".."neun").
CLASS_NAMES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun",
)


#: The first bytes of an HDF5 file (without a user block, as every SHD file is written).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: The datasets every SHD-format file holds.
LAYOUT = ("spikes/times", "spikes/units", "labels")


class SHDFormatError(ValueError):
    """An SHD-format file is not HDF5, truncated or corrupt, or holds values outside the expected
    ranges."""


class UnreadableFile(PermissionError):
    """This user may not read a file (its permissions, or a folder above it that cannot be
    entered): a reading problem, not a damaged file. ``str()`` is the whole message."""

    def __init__(self, path, message: str):
        super().__init__(errno.EACCES, message, str(path))
        self.message = message

    def __str__(self) -> str:
        return self.message


def _closed_folder(path: Path) -> Path | None:
    """The first folder above ``path`` that this user cannot enter (None: all can be entered, as
    far as the permission bits tell)."""
    for folder in reversed(Path(os.path.abspath(path)).parents):  # from the root down, while they exist
        if not os.path.lexists(folder):
            return None
        if not os.access(folder, os.X_OK):
            return folder
    return None


def unreadable(path) -> UnreadableFile:
    """The error for a file whose reading the permissions refused (module docstring)."""
    path = Path(path)
    closed = _closed_folder(path)
    where = (f"the folder {closed} cannot be entered" if closed is not None
             else "the file's permissions do not allow this user to read it")
    return UnreadableFile(path, f"permission denied reading {path} ({where}); make it readable (chmod u+r on the "
                                f"file, u+rx on its folders) or use a copy you can read")


def check_shd_file(path: str | os.PathLike) -> Path:
    """The first checks of reading an SHD-format file, each with its own error: it exists
    (``FileNotFoundError``), this user may read it (:class:`UnreadableFile`), it is a file and not
    empty (:class:`SHDFormatError`). Returns the path; whether it is HDF5 is told by the reader."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(len(HDF5_SIGNATURE))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such SHD file") from None
    except IsADirectoryError:
        raise SHDFormatError(f"{p} is a folder; expected an SHD-format .h5 file") from None
    except PermissionError:
        raise unreadable(p) from None
    if not head:
        raise SHDFormatError(f"{p} is empty (0 bytes); expected an SHD-format HDF5 file: write it again "
                             f"(`elm-neuro data fetch` / `data synth`)")
    return p


def _damaged(p: Path, exc: Exception) -> SHDFormatError:
    """The error for a file that h5py cannot open: not HDF5 at all, or HDF5 that is damaged."""
    try:
        with open(p, "rb") as fh:
            is_hdf5 = fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        is_hdf5 = False
    if is_hdf5:
        return SHDFormatError(f"{p}: a truncated or corrupt HDF5 file ({exc}); fetch or write it again")
    return SHDFormatError(f"{p}: not an HDF5 file (it does not start with the HDF5 signature); expected an "
                          f"SHD-format .h5 file")


def shd_sample_count(path: str | os.PathLike) -> int:
    """Number of samples of an SHD-format file, after :func:`check_shd_file`, the layout
    (``spikes/times``, ``spikes/units``, ``labels``) and their lengths; the spikes are not read."""
    p = check_shd_file(path)
    try:
        with h5py.File(p, "r") as f:
            missing = [k for k in LAYOUT if k not in f]
            if missing:
                raise SHDFormatError(f"{p}: missing dataset(s) {', '.join(missing)}; expected the SHD layout "
                                     f"spikes/times, spikes/units, labels[, extra/speaker]")
            lengths = {k: (f[k].shape[0] if isinstance(f[k], h5py.Dataset) and f[k].ndim >= 1 else None)
                       for k in LAYOUT}
    except SHDFormatError:
        raise
    except (OSError, KeyError, RuntimeError) as exc:
        raise _damaged(p, exc) from exc
    if len(set(lengths.values())) != 1 or None in lengths.values():
        shown = ", ".join(f"{k} {v if v is not None else 'not a 1-D dataset'}" for k, v in lengths.items())
        raise SHDFormatError(f"{p}: lengths disagree ({shown}); expected one entry per sample in each")
    return int(lengths["labels"])


def file_attrs(path: str | os.PathLike) -> dict:
    """Root attributes of an HDF5 file (after :func:`check_shd_file`); ``SHDFormatError`` when it
    cannot be opened as HDF5."""
    p = check_shd_file(path)
    try:
        with h5py.File(p, "r") as f:
            return dict(f.attrs)
    except (OSError, KeyError, RuntimeError) as exc:
        raise _damaged(p, exc) from exc


@dataclass(frozen=True, eq=False)
class SHDEvents:
    """All samples of one SHD-format file as flat arrays (see module docstring)."""

    times: np.ndarray
    units: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray
    keys: tuple[str, ...] = ()
    path: str = ""
    meta_info: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def counts(self) -> np.ndarray:
        """Spikes per sample, int64 [n]."""
        return np.diff(self.offsets)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(times, units) of sample ``i`` (views into the flat arrays)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: sample index {i} out of range for {n} samples")
        i %= n
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.times[a:b], self.units[a:b]

    def durations(self) -> np.ndarray:
        """Last spike time of each sample (0 for empty samples), float64 [n]."""
        out = np.zeros(len(self), dtype=np.float64)
        nonempty = self.counts > 0
        if nonempty.any():
            # maximum.reduceat over the start of every non-empty sample
            starts = self.offsets[:-1][nonempty]
            out[nonempty] = np.maximum.reduceat(self.times, starts)
        return out

    def subset(self, indices: np.ndarray) -> "SHDEvents":
        """A new ``SHDEvents`` holding samples ``indices`` (in that order), flat arrays copied."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.path}: subset indices outside 0..{len(self) - 1}")
        counts = self.counts[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = self.offsets[idx]
        # event gather index: for every selected sample, its contiguous event range
        ev = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
        extra = {k: v[idx] for k, v in self.extra.items()}
        return SHDEvents(
            times=self.times[ev], units=self.units[ev], offsets=offsets,
            labels=self.labels[idx], speakers=self.speakers[idx], keys=self.keys,
            path=self.path, meta_info=dict(self.meta_info), extra=extra,
        )


def _first_bad_sample(bad_events: np.ndarray, offsets: np.ndarray) -> int:
    """Sample index owning the first True in the per-event mask ``bad_events``."""
    first = int(np.argmax(bad_events))
    return int(np.searchsorted(offsets, first, side="right") - 1)


def _decode(x) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, (bytes, np.bytes_)) else str(x)


def _ragged(f: h5py.File, name: str, path: str) -> np.ndarray:
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise SHDFormatError(f"{path}: '{name}' is a group, expected a ragged dataset")
    if h5py.check_vlen_dtype(ds.dtype) is None:
        raise SHDFormatError(
            f"{path}: '{name}' has dtype {ds.dtype}, expected a ragged (variable-length) dataset"
        )
    if ds.ndim != 1:
        raise SHDFormatError(f"{path}: '{name}' has shape {ds.shape}, expected one dimension")
    return ds[()]


def read_shd(path: str | os.PathLike, n_classes: int = N_CLASSES,
             n_units: int = N_UNITS) -> SHDEvents:
    """Read and validate one SHD-format file; see the module docstring for layout and checks."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    path = check_shd_file(path)
    p = str(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in f]
            if missing:
                raise SHDFormatError(
                    f"{p}: missing dataset(s) {', '.join(missing)}; expected the SHD layout "
                    "spikes/times, spikes/units, labels[, extra/speaker]"
                )
            t_obj = _ragged(f, "spikes/times", p)
            u_obj = _ragged(f, "spikes/units", p)
            labels = np.asarray(f["labels"][()])
            speakers = np.asarray(f["extra/speaker"][()]) if "extra/speaker" in f else None
            keys = tuple(_decode(k) for k in f["extra/keys"][()]) if "extra/keys" in f else ()
            meta_info: dict[str, np.ndarray] = {}
            if "extra/meta_info" in f and isinstance(f["extra/meta_info"], h5py.Group):
                for name, ds in f["extra/meta_info"].items():
                    if isinstance(ds, h5py.Dataset):
                        meta_info[name] = np.asarray(ds[()])
            extra: dict[str, np.ndarray] = {}
            if "extra" in f:
                for name, ds in f["extra"].items():
                    if name in ("speaker", "keys") or not isinstance(ds, h5py.Dataset):
                        continue
                    if ds.ndim >= 1 and ds.shape[0] == len(labels):
                        extra[name] = np.asarray(ds[()])
    except SHDFormatError:
        raise
    except (OSError, KeyError, RuntimeError) as exc:
        raise _damaged(path, exc) from exc

    n = len(t_obj)
    if labels.ndim != 1:
        raise SHDFormatError(f"{p}: 'labels' has shape {labels.shape}, expected [n]")
    if len(u_obj) != n or len(labels) != n:
        raise SHDFormatError(
            f"{p}: lengths disagree: spikes/times {n}, spikes/units {len(u_obj)}, "
            f"labels {len(labels)} samples"
        )
    if speakers is None:
        speakers = np.full(n, -1, dtype=np.int64)
    elif speakers.shape != (n,):
        raise SHDFormatError(
            f"{p}: extra/speaker has shape {speakers.shape}, expected ({n},) like labels"
        )
    lt = np.fromiter((len(a) for a in t_obj), dtype=np.int64, count=n)
    lu = np.fromiter((len(a) for a in u_obj), dtype=np.int64, count=n)
    if (lt != lu).any():
        i = int(np.argmax(lt != lu))
        raise SHDFormatError(
            f"{p}: sample {i} has {lt[i]} spike times but {lu[i]} spike units (ragged lengths "
            "must agree)"
        )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lt, out=offsets[1:])
    if n and offsets[-1]:
        times = np.concatenate(t_obj).astype(np.float64)
        units_raw = np.concatenate(u_obj)
    else:
        times = np.zeros(0, dtype=np.float64)
        units_raw = np.zeros(0, dtype=np.int64)
    if not np.issubdtype(units_raw.dtype, np.integer):
        raise SHDFormatError(f"{p}: spikes/units has dtype {units_raw.dtype}, expected integers")
    bad_t = ~np.isfinite(times) | (times < 0)
    if bad_t.any():
        i = _first_bad_sample(bad_t, offsets)
        bad = times[offsets[i]:offsets[i + 1]][bad_t[offsets[i]:offsets[i + 1]]][0]
        raise SHDFormatError(
            f"{p}: sample {i} has spike time {bad}; expected finite times >= 0 seconds"
        )
    units64 = units_raw.astype(np.int64)
    bad_u = (units64 < 0) | (units64 >= n_units)
    if bad_u.any():
        i = _first_bad_sample(bad_u, offsets)
        bad = units64[offsets[i]:offsets[i + 1]][bad_u[offsets[i]:offsets[i + 1]]][0]
        raise SHDFormatError(
            f"{p}: sample {i} has spike unit {bad}; expected units 0..{n_units - 1}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise SHDFormatError(f"{p}: labels have dtype {labels.dtype}, expected integers")
    labels64 = labels.astype(np.int64)
    bad_l = (labels64 < 0) | (labels64 >= n_classes)
    if bad_l.any():
        i = int(np.argmax(bad_l))
        raise SHDFormatError(
            f"{p}: sample {i} has label {labels64[i]}; expected labels 0..{n_classes - 1}"
        )
    return SHDEvents(
        times=times, units=units64.astype(np.int32), offsets=offsets, labels=labels64,
        speakers=speakers.astype(np.int64), keys=keys, path=p, meta_info=meta_info, extra=extra,
    )
