"""What data a run was trained on: real SHD / enwik8, synthetic data, or the built-in corpus.

:func:`data_provenance` answers for a task and a data location with a small dict that training
stores in a run's ``config.json`` (``"data"``) and that reports read before they put a run next to
published results:

- ``source``: ``real`` (the real SHD, or enwik8), ``synthetic`` (files written by
  ``elm-neuro data synth``), ``builtin-corpus`` (the standard-library text corpus used for
  ``enwik8`` without ``--data``) or ``unknown`` (with the reason in ``detail``);
- ``dataset``: ``SHD`` or ``enwik8``;
- ``detail``: one line saying how the answer was reached.

SHD (tasks ``shd-adding`` and ``shd``: the folder holds ``shd_train.h5`` and ``shd_test.h5``):
files carrying the root attribute ``elm_neuro_synthetic`` (:data:`elm_neuro.data.synth.SYNTHETIC_ATTR`)
are synthetic; files without it are the real SHD only when they hold the real SHD's sample
counts (8156 training and 2264 test samples); anything else (missing or unreadable files, other
counts, e.g. synthetic files written before the marker existed) is ``unknown``.

Enwik8: no data location means the built-in corpus; a file or folder is enwik8 when its content
is exactly 10**8 bytes (the loader refuses any other size for training, see
:mod:`elm_neuro.data.enwik8`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import h5py

from elm_neuro.data.enwik8 import ENWIK8_SIZE, _content_size, _resolve_source
from elm_neuro.data.synth import SYNTHETIC_ATTR

#: Samples of the real SHD files (Cramer et al. 2020).
SHD_SAMPLES = {"train": 8156, "test": 2264}
SOURCES = ("real", "synthetic", "builtin-corpus", "unknown")


def _result(source: str, dataset: str, detail: str) -> dict:
    return {"source": source, "dataset": dataset, "detail": detail}


def shd_provenance(data_dir) -> dict:
    """Provenance of an SHD folder (``shd_train.h5`` + ``shd_test.h5``; module docstring)."""
    if data_dir is None:
        return _result("unknown", "SHD", "no data folder recorded (data given in memory)")
    counts, marks = {}, {}
    for split in ("train", "test"):
        path = Path(data_dir) / f"shd_{split}.h5"
        try:
            with h5py.File(path, "r") as f:
                counts[split] = int(f["labels"].shape[0])
                if SYNTHETIC_ATTR in f.attrs:
                    marks[split] = int(f.attrs["synthetic_seed"]) if "synthetic_seed" in f.attrs else None
        except (OSError, KeyError, ValueError) as exc:
            return _result("unknown", "SHD", f"{path} could not be read ({type(exc).__name__}: {exc})")
    sizes = f"{counts['train']} train / {counts['test']} test samples"
    if marks:
        seeds = sorted({s for s in marks.values() if s is not None})
        seed = f", seed {seeds[0]}" if len(seeds) == 1 else ""
        return _result("synthetic", "SHD", f"synthetic SHD-format files from `elm-neuro data synth` ({sizes}{seed})")
    if counts == SHD_SAMPLES:
        return _result("real", "SHD", f"SHD files without the synthetic marker, with the real SHD's {sizes}")
    return _result("unknown", "SHD", f"SHD-format files without the synthetic marker but with {sizes}, not the "
                                     f"real SHD's {SHD_SAMPLES['train']} / {SHD_SAMPLES['test']}")


def enwik8_provenance(src) -> dict:
    """Provenance of an Enwik8 source (None: the built-in corpus; module docstring)."""
    if src is None:
        return _result("builtin-corpus", "enwik8", "the built-in standard-library text corpus (no enwik8 file)")
    try:
        path = _resolve_source(src)
        size = _content_size(path)
    except (OSError, ValueError) as exc:
        return _result("unknown", "enwik8", f"{src} could not be read ({type(exc).__name__}: {exc})")
    if size == ENWIK8_SIZE:
        return _result("real", "enwik8", f"{path.name}: {size} bytes, the size of enwik8")
    return _result("unknown", "enwik8", f"{path.name}: {size} bytes, not the {ENWIK8_SIZE} of enwik8")


def data_provenance(task: str, data_dir: Optional[str]) -> dict:
    """Provenance of the data of a run of ``task`` at ``data_dir`` (module docstring)."""
    if task in ("shd-adding", "shd"):
        return shd_provenance(data_dir)
    if task == "enwik8":
        return enwik8_provenance(data_dir)
    raise ValueError(f"task must be one of ('shd-adding', 'shd', 'enwik8'), got {task!r}")
