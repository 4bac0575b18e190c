"""What data a run was trained on: real SHD / enwik8, spoken or synthetic data, or the built-in corpus.

:func:`data_provenance` answers for a task and a data location with a small dict that training
stores in a run's ``config.json`` (``"data"``) and that reports read before they put a run next to
published results:

- ``source``: ``real`` (the real SHD, or enwik8), ``spoken`` (files written by
  ``elm-neuro data spoken``: espeak-ng's digits through the package's cochlea, made like SHD but
  not SHD), ``synthetic`` (files written by ``elm-neuro data synth``), ``builtin-corpus`` (the
  standard-library text corpus used for ``enwik8`` without ``--data``) or ``unknown`` (with the
  reason in ``detail``); only ``real`` may be put beside published results;
- ``dataset``: ``SHD`` or ``enwik8``;
- ``detail``: one line saying how the answer was reached.

SHD (tasks ``shd-adding`` and ``shd``: the folder holds ``shd_train.h5`` and ``shd_test.h5``):
files carrying the root attribute ``elm_neuro_spoken`` (:data:`elm_neuro.data.spoken.SPOKEN_ATTR`)
are spoken, files carrying ``elm_neuro_synthetic`` (:data:`elm_neuro.data.synth.SYNTHETIC_ATTR`)
synthetic (one marked file is enough; a folder mixing the two markers is ``unknown``); files
without either are the real SHD only when they hold the real SHD's sample counts (8156 training
and 2264 test samples; a spoken set of that size carries its marker); anything else (missing or
unreadable files, other counts, e.g. synthetic files written before the marker existed) is
``unknown``.

Enwik8: no data location means the built-in corpus; a file or folder is enwik8 when its content
is exactly 10**8 bytes (the loader refuses any other size for training, see
:mod:`elm_neuro.data.enwik8`).

:func:`data_files` lists the files a run reads (absolute path, size, sha256), so that a resumed
run or an analysis detects a dataset that was replaced, and :func:`check_data_files` compares a
data location with such a list (a moved dataset is accepted when its files are the same).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import h5py

from elm_neuro.data.enwik8 import ENWIK8_SIZE, _content_size, _resolve_source
from elm_neuro.data.spoken import SEED_ATTR as SPOKEN_SEED_ATTR
from elm_neuro.data.spoken import SPOKEN_ATTR
from elm_neuro.data.synth import SYNTHETIC_ATTR

#: Samples of the real SHD files (Cramer et al. 2020).
SHD_SAMPLES = {"train": 8156, "test": 2264}
SOURCES = ("real", "spoken", "synthetic", "builtin-corpus", "unknown")
#: The generator of each marked source: (root attribute, seed attribute, command).
_MARKERS = {"spoken": (SPOKEN_ATTR, SPOKEN_SEED_ATTR, "elm-neuro data spoken"),
            "synthetic": (SYNTHETIC_ATTR, "synthetic_seed", "elm-neuro data synth")}
_WORDS = {"spoken": "spoken-digit SHD-format files (espeak-ng through the package's cochlea)",
          "synthetic": "synthetic SHD-format files"}


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
                for source, (attr, seed_attr, _) in _MARKERS.items():
                    if attr in f.attrs:
                        seed = int(f.attrs[seed_attr]) if seed_attr in f.attrs else None
                        marks[split] = (source, seed)
        except (OSError, KeyError, ValueError) as exc:
            return _result("unknown", "SHD", f"{path} could not be read ({type(exc).__name__}: {exc})")
    sizes = f"{counts['train']} train / {counts['test']} test samples"
    kinds = sorted({source for source, _ in marks.values()})
    if len(kinds) > 1:
        shown = ", ".join(f"shd_{s}.h5: {marks[s][0] if s in marks else 'no marker'}" for s in ("train", "test"))
        return _result("unknown", "SHD", f"SHD-format files of different origins ({shown}; {sizes})")
    if marks:
        source = kinds[0]
        seeds = sorted({s for _, s in marks.values() if s is not None})
        seed = f", seed {seeds[0]}" if len(seeds) == 1 else ""
        return _result(source, "SHD", f"{_WORDS[source]} from `{_MARKERS[source][2]}` ({sizes}{seed})")
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


def data_paths(task: str, data_dir: Optional[str]) -> list[Path]:
    """The files a run of ``task`` reads at ``data_dir`` (absolute; none for the built-in corpus).

    Raises ``FileNotFoundError`` naming what is missing."""
    if task in ("shd-adding", "shd"):
        if data_dir is None:
            raise ValueError("data_dir (--data) is required for the SHD tasks: a folder with shd_train.h5 and "
                             "shd_test.h5 (`elm-neuro data synth --out DIR` writes synthetic ones)")
        folder = Path(data_dir).expanduser().resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder {folder} not found (--data must be a folder with shd_train.h5 "
                                    f"and shd_test.h5)")
        paths = [folder / "shd_train.h5", folder / "shd_test.h5"]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found (--data must be a folder with shd_train.h5 and shd_test.h5)")
        return paths
    if task == "enwik8":
        return [] if data_dir is None else [_resolve_source(data_dir).resolve()]
    raise ValueError(f"task must be one of ('shd-adding', 'shd', 'enwik8'), got {task!r}")


def data_files(task: str, data_dir: Optional[str]) -> list[dict]:
    """``[{"name", "path", "bytes", "sha256"}]`` of the files a run reads (:func:`data_paths`)."""
    return [{"name": p.name, "path": str(p), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in data_paths(task, data_dir)]


def check_data_files(task: str, data_dir: Optional[str], recorded: list[dict], where: str) -> list[dict]:
    """The files at ``data_dir`` (:func:`data_files`), checked against ``recorded`` (a run's):
    same names, sizes and sha256. ``ValueError`` naming the first file that differs (``where``
    says whose record it is). Returns the files found."""
    found = data_files(task, data_dir)
    by_name = {f["name"]: f for f in found}
    for rec in recorded:
        now = by_name.get(rec["name"])
        if now is None:
            raise FileNotFoundError(f"{rec['name']} not found in {data_dir} (recorded in {where})")
        if now["bytes"] != rec["bytes"] or now["sha256"] != rec["sha256"]:
            raise ValueError(f"{now['path']} is not the file the run was trained on ({now['bytes']} bytes, sha256 "
                             f"{now['sha256'][:12]}..., but {where} records {rec['bytes']} bytes, sha256 "
                             f"{rec['sha256'][:12]}... for {rec['path']}); restore that data or start a new run")
    return found
