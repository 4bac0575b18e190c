"""Atomic, reproducible writing of SHD-format HDF5 files (docs/design.md §5).

One writer serves every producer in the package (synthetic SHD, SHD-Adding pairs), so that all
files share the layout of the real Spiking Heidelberg Digits:

    spikes/times          ragged (HDF5 variable-length) floats, seconds
    spikes/units          ragged uint16, channel 0..699
    labels                uint8 [n]
    extra/speaker         uint16 [n]
    extra/keys            fixed-length byte strings, one class name per label value
    extra/meta_info/...   per-speaker metadata (gender, age, body_height)
    extra/<name>          any further per-sample arrays (e.g. SHD-Adding's pair_index)

Choices:

* Files are written under a temporary name in the destination folder and moved into place
  with ``os.replace`` only once complete, so a crash never leaves a half-written file behind.
* Every dataset is created with ``track_times=False``: HDF5 otherwise stores creation and
  modification times, and two runs with the same seed would not give byte-identical files.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from elm_neuro.atomic import RefusedPath, atomic_output  # atomic_output: re-exported for the data modules



def check_generated(paths, attr: str, writer: str) -> None:
    """Refuse to replace any existing file of ``paths`` that the package's ``writer`` did not write
    (:class:`~elm_neuro.atomic.RefusedPath`): a link, a folder, a file that is not HDF5, or one
    without the writer's root attribute ``attr`` (the real SHD, or data from elsewhere). The rule
    of every ``--force`` that replaces generated SHD-format files."""
    rule = f"--force replaces only files that `{writer}` wrote: choose another folder (nothing was changed)"
    for path in map(Path, paths):
        if not (path.exists() or path.is_symlink()):
            continue
        if path.is_symlink() or not path.is_file():
            raise RefusedPath(f"{path} is not a regular file; {rule}")
        try:
            with h5py.File(path, "r") as f:
                marked = attr in f.attrs
        except (OSError, ValueError):
            raise RefusedPath(f"{path} cannot be read as an HDF5 file, so elm-neuro cannot tell that it wrote it; "
                              f"{rule}") from None
        if not marked:
            raise RefusedPath(f"{path} has no {attr} marker (the real SHD, or data from elsewhere); {rule}")


def ragged(flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Cut ``flat`` at ``offsets`` ([n+1], offsets[0] = 0) into an object array of n views."""
    n = len(offsets) - 1
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = flat[offsets[i] : offsets[i + 1]]
    return out


def write_shd_h5(
    path: str | os.PathLike,
    times: np.ndarray,
    units: np.ndarray,
    offsets: np.ndarray,
    labels: np.ndarray,
    speakers: np.ndarray,
    keys: list[str] | tuple[str, ...],
    meta_info: Mapping[str, np.ndarray] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    times_dtype: np.dtype | type = np.float16,
    attrs: Mapping[str, object] | None = None,
) -> Path:
    """Write flat events (sample i = ``times[offsets[i]:offsets[i+1]]``) as an SHD-format file.

    ``times`` are cast to ``times_dtype`` (float16 in the real SHD), ``units`` to uint16,
    ``labels`` to uint8, ``speakers`` to uint16. ``meta_info`` arrays go to
    ``extra/meta_info/<name>`` (per speaker), ``extra`` arrays to ``extra/<name>`` (per sample).
    ``attrs`` become attributes of the root group (provenance). The write is atomic
    (temporary file + ``os.replace``) and byte-reproducible.
    """
    path = Path(path)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    labels = np.asarray(labels)
    speakers = np.asarray(speakers)
    if len(labels) != n or len(speakers) != n:
        raise ValueError(
            f"{path}: {n} samples by offsets but {len(labels)} labels and {len(speakers)} speakers"
        )
    if len(times) != offsets[-1] or len(units) != offsets[-1]:
        raise ValueError(
            f"{path}: offsets end at {offsets[-1]} events but times has {len(times)} and units "
            f"{len(units)}"
        )
    times_dtype = np.dtype(times_dtype)
    t_cast = np.asarray(times).astype(times_dtype)
    u_cast = np.asarray(units).astype(np.uint16)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            spikes = f.create_group("spikes")
            spikes.create_dataset(
                "times", data=ragged(t_cast, offsets), dtype=h5py.vlen_dtype(times_dtype),
                track_times=False,
            )
            spikes.create_dataset(
                "units", data=ragged(u_cast, offsets), dtype=h5py.vlen_dtype(np.uint16),
                track_times=False,
            )
            f.create_dataset("labels", data=labels.astype(np.uint8), track_times=False)
            ex = f.create_group("extra")
            ex.create_dataset("speaker", data=speakers.astype(np.uint16), track_times=False)
            ex.create_dataset(
                "keys", data=np.array([k.encode("ascii") for k in keys]), track_times=False
            )
            if meta_info:
                meta = ex.create_group("meta_info")
                for name, arr in meta_info.items():
                    meta.create_dataset(name, data=np.asarray(arr), track_times=False)
            for name, arr in (extra or {}).items():
                ex.create_dataset(name, data=np.asarray(arr), track_times=False)
            for name, value in (attrs or {}).items():
                f.attrs[name] = value
    return path
