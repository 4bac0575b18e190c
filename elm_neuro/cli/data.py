"""``elm-neuro data ...``: SHD data commands.

Sub-commands:

* ``data synth --out DIR [--train 1000] [--test 300] [--seed 0]``: synthetic SHD-format
  ``shd_train.h5`` / ``shd_test.h5`` (:mod:`elm_neuro.data.synth`). ``--train 8156 --test
  2264`` gives the real SHD sizes.
* ``data fetch --out DIR [--base-url URL] [--split train --split test] [--force]
  [--keep-zip]``: download the official zips, check their md5 (docs/design.md §5), unzip atomically
  (:mod:`elm_neuro.data.fetch`). ``--md5-train`` / ``--md5-test`` override the expected digests
  (for mirrors of other files; the defaults are the official ones).
* ``data shd-adding --shd DIR --split {train,valid,test} --pairs N --seed S --out FILE.h5``:
  an SHD-format file of SHD-Adding pairs (:func:`elm_neuro.data.shd_adding.write_shd_adding`).
  With ``--split test --pairs 16000 --seed 0`` the pairs are exactly the fixed test pairs of
  the on-the-fly task.
* ``data inspect FILE [--raster OUT.png --samples 0,1,2]``: summary of any SHD-format file and
  an optional raster plot (:mod:`elm_neuro.data.inspect`).

What these commands may replace (:mod:`elm_neuro.atomic`): ``synth --force`` replaces only files
that ``data synth`` wrote (their synthetic marker), never the real SHD or another file of those
names; ``fetch --force`` only HDF5 files of the SHD names (:mod:`elm_neuro.data.fetch`);
``shd-adding --out`` an existing file only when ``data shd-adding`` wrote it (its ``task``
attribute), so that it never overwrites its own source or another data file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from elm_neuro import defaults as D
from elm_neuro.cli.data_enwik8 import add_enwik8_parser

# The data modules are imported by the sub-command that uses them: they load numba and h5py, which
# the CLI's start-up (``elm-neuro --help``, the other commands) does not need.

# Samples of `data inspect --raster` by default.
_RASTER_SAMPLES = "0,1,2"
# Pairs of `data shd-adding` by default: the fixed test pairs of docs/design.md §6 (test batches x batch size).
_TEST_PAIRS = D.RECIPES["paper-shd-adding"]["test_batches"] * D.RECIPES["paper-shd-adding"]["batch_size"]


def _refuse(what: str, reason: str, rule: str) -> None:
    from elm_neuro.atomic import RefusedPath

    raise RefusedPath(f"{what} {reason}; {rule}: choose another path (nothing was changed)")


def _file_marks(path: Path) -> dict | None:
    """Root attributes of an existing HDF5 file, None when it cannot be read as one."""
    from elm_neuro.data.shd import file_attrs

    try:
        return file_attrs(path)
    except (OSError, ValueError):
        return None


def _check_adding_out(out: Path) -> None:
    """``shd-adding --out`` replaces only a file that ``data shd-adding`` wrote (module docstring)."""
    rule = "an existing --out is replaced only when `elm-neuro data shd-adding` wrote it"
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_symlink() or not out.is_file():
        _refuse(f"--out {out}", "is not a regular file", rule)
    marks = _file_marks(out)
    if marks is None or marks.get("task") != "SHD-Adding":
        _refuse(f"--out {out}", "was not written by `elm-neuro data shd-adding` (no SHD-Adding marker)", rule)


def _synth(args: argparse.Namespace) -> int:
    from elm_neuro.data.synth import write_synthetic_shd

    train, test = write_synthetic_shd(args.out, args.train, args.test, args.seed, force=args.force)
    print(f"wrote {train} ({args.train} samples) and {test} ({args.test} samples), "
          f"seed {args.seed}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from elm_neuro.data.fetch import DEFAULT_BASE_URL, fetch_shd

    md5 = {}
    if args.md5_train:
        md5["train"] = args.md5_train
    if args.md5_test:
        md5["test"] = args.md5_test
    paths = fetch_shd(args.out, base_url=args.base_url or DEFAULT_BASE_URL,
                      splits=tuple(args.split or ("train", "test")), md5=md5,
                      force=args.force, keep_zip=args.keep_zip, timeout=args.timeout,
                      progress=not args.quiet)
    for p in paths:
        print(f"ready: {p}")
    return 0


def _shd_adding(args: argparse.Namespace) -> int:
    from elm_neuro.data.shd import read_shd
    from elm_neuro.data.shd_adding import draw_pairs, empty_pool_message, validation_split, write_shd_adding

    _check_adding_out(Path(args.out))
    shd = Path(args.shd)
    if args.split == "test":
        events = read_shd(shd / "shd_test.h5")
        pool = np.arange(len(events))
    else:
        events = read_shd(shd / "shd_train.h5")
        train_idx, valid_idx = validation_split(len(events))
        pool = train_idx if args.split == "train" else valid_idx
    if args.pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {args.pairs}")
    if len(pool) == 0:
        raise ValueError(empty_pool_message(f"--split {args.split}", events, args.split))
    pairs = draw_pairs(np.random.default_rng(args.seed), pool, args.pairs)
    dtype = {"float16": np.float16, "float32": np.float32, "float64": np.float64}[
        args.time_dtype]
    out = write_shd_adding(
        events, pairs, args.out, digit_window=args.window, times_dtype=dtype,
        attrs={"task": "SHD-Adding", "split": args.split, "seed": int(args.seed),
               "source": Path(events.path).name, "digit_window": float(args.window)},
    )
    print(f"wrote {out}: {args.pairs} pairs of the {args.split} split (seed {args.seed})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from elm_neuro.data.inspect import format_summary, plot_raster, read_any_shd, summarize

    if args.samples is not None and not args.raster:
        raise ValueError("--samples chooses the samples of the raster plot: give --raster OUT.png with it")
    events = read_any_shd(args.file)
    print(format_summary(summarize(events)))
    if args.raster:
        try:
            samples = [int(s) for s in (args.samples or _RASTER_SAMPLES).split(",") if s.strip()]
        except ValueError as exc:
            raise ValueError(f"--samples must be comma-separated integers, got "
                             f"{args.samples!r}") from exc
        out = plot_raster(events, samples, args.raster)
        print(f"raster of samples {samples} saved to {out}")
    return 0


def register(subparsers) -> None:
    """Add the ``data`` command group to the top-level sub-parsers."""
    p = subparsers.add_parser("data", help="SHD data: synthetic data, download, SHD-Adding, "
                                           "inspection; Enwik8 token splits")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    s = sub.add_parser("synth", help="write synthetic SHD-format shd_train.h5 / shd_test.h5")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--train", type=int, default=D.SYNTH_N_TRAIN, help="training samples (SHD: 8156)")
    s.add_argument("--test", type=int, default=D.SYNTH_N_TEST, help="test samples (SHD: 2264)")
    s.add_argument("--seed", type=int, default=D.SEED)
    s.add_argument("--force", action="store_true",
                   help="replace shd_train.h5 / shd_test.h5 that data synth wrote earlier in --out (nothing else)")
    s.set_defaults(func=_synth)

    f = sub.add_parser("fetch", help="download the official SHD files (md5-checked)")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--base-url", default=None,
                   help="folder URL holding shd_train.h5.zip / shd_test.h5.zip "
                        "(default https://zenkelab.org/datasets/; mirror "
                        "https://compneuro.net/datasets/)")
    f.add_argument("--split", action="append", choices=("train", "test"),
                   help="split to fetch (repeatable; default both)")
    f.add_argument("--md5-train", default=None, help="override the expected md5 of the train zip")
    f.add_argument("--md5-test", default=None, help="override the expected md5 of the test zip")
    f.add_argument("--force", action="store_true",
                   help="download even if the .h5 exists, and replace it (only an HDF5 file of that name)")
    f.add_argument("--keep-zip", action="store_true", help="keep the downloaded zip files")
    f.add_argument("--timeout", type=float, default=D.FETCH_TIMEOUT_S, help="network timeout in seconds")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_fetch)

    a = sub.add_parser("shd-adding", help="write SHD-Adding pairs as an SHD-format file")
    a.add_argument("--shd", required=True, help="folder with shd_train.h5 / shd_test.h5")
    a.add_argument("--split", choices=("train", "valid", "test"), default="test")
    a.add_argument("--pairs", type=int, default=_TEST_PAIRS, help="number of pairs")
    a.add_argument("--seed", type=int, default=0, help="seed of the pair generator")
    a.add_argument("--window", type=float, default=D.DIGIT_WINDOW_S,
                   help="each digit is cut to this many seconds; the second is shifted by it")
    a.add_argument("--time-dtype", choices=("float16", "float32", "float64"),
                   default="float32",
                   help="stored spike-time dtype (float16 would move shifted spikes across "
                        "2 ms bin edges)")
    a.add_argument("--out", required=True, help="output .h5 file (an existing one only if data shd-adding wrote it)")
    a.set_defaults(func=_shd_adding)

    i = sub.add_parser("inspect", help="summary (and raster plot) of an SHD-format file")
    i.add_argument("file")
    i.add_argument("--raster", default=None, help="save a raster plot to this image file")
    i.add_argument("--samples", default=None,
                   help=f"comma-separated sample indices of the raster plot (default {_RASTER_SAMPLES})")
    i.set_defaults(func=_inspect)

    add_enwik8_parser(sub)

