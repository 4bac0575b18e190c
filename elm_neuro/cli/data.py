"""``elm-neuro data ...``: SHD data commands.

Sub-commands:

* ``data synth --out DIR [--train 1000] [--test 300] [--seed 0]``: synthetic SHD-format
  ``shd_train.h5`` / ``shd_test.h5`` (:mod:`elm_neuro.data.synth`). ``--train 8156 --test
  2264`` gives the real SHD sizes.
* ``data spoken --out DIR [--train 8156] [--test 2264] [--seed 0] [--workers 2] [--speakers 12]
  [--voices m1,f4,...] [--force]``: SHD-format files of the twenty digit words spoken by espeak-ng
  and turned into spikes by the package's cochlea (:mod:`elm_neuro.data.spoken`); prints the
  projected time of a large set, the silent utterances replaced and the time taken. Resumable: a
  rerun with the same settings skips the chunks already made.
* ``data fetch --out DIR [--base-url URL] [--split train --split test] [--force]
  [--keep-zip]``: download the official zips, check their md5 (docs/design.md §5), unzip atomically
  (:mod:`elm_neuro.data.fetch`). ``--md5-train`` / ``--md5-test`` override the expected digests
  (for mirrors of other files; the defaults are the official ones).
* ``data shd-adding --shd DIR --split {train,valid,test} --pairs N --seed S --out FILE.h5``:
  an SHD-format file of SHD-Adding pairs (:func:`elm_neuro.data.shd_adding.write_shd_adding`).
  With ``--split test --pairs 16000 --seed 0`` the pairs are exactly the fixed test pairs of
  the on-the-fly task.
* ``data inspect PATH [--raster OUT.png --samples 0,1,2] [--per-class OUT.png [--compare OTHER]]
  [--baseline]``: summary and statistics of an SHD-format file, or of both files of an SHD folder
  (:mod:`elm_neuro.data.inspect`); a raster plot of chosen samples; one figure with a sample of
  every class from two speakers, beside one of another set (``--compare``); a linear baseline on
  binned counts for a folder (:mod:`elm_neuro.data.baseline`).

What these commands may replace (:mod:`elm_neuro.atomic`): ``synth --force`` replaces only files
that ``data synth`` wrote (their synthetic marker), ``spoken --force`` only files that ``data
spoken`` wrote (their spoken marker), never the real SHD or another file of those names;
``fetch --force`` only HDF5 files of the SHD names (:mod:`elm_neuro.data.fetch`);
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


def _spoken(args: argparse.Namespace) -> int:
    from elm_neuro.data.speech import EspeakUnavailable
    from elm_neuro.data.spoken import write_spoken_shd

    try:
        r = write_spoken_shd(args.out, args.train, args.test, args.seed, workers=args.workers,
                             n_speakers=args.speakers, voices=args.voices, force=args.force,
                             progress=None if not args.quiet else False, log=print)
    except EspeakUnavailable as exc:
        raise OSError(str(exc)) from None  # a missing library: exit 1, one line
    print(f"wrote {r.train} ({args.train} digits) and {r.test} ({args.test} digits), seed {args.seed}, "
          f"{args.speakers} speakers")
    print(f"silent utterances replaced: {len(r.silent)}"
          + (f" ({', '.join(f'{s} sample {i}' for s, i, *_ in r.silent[:5])}"
             f"{' ...' if len(r.silent) > 5 else ''})" if r.silent else ""))
    made = (f"made {r.digits_made} digits in {r.wall_s / 60:.1f} min"
            + (f" ({r.cpu_s_per_digit:.3f} CPU-s per digit, {args.workers} worker(s))" if r.cpu_s_per_digit else ""))
    print(made + (f"; {r.chunks_reused} chunks reused from an earlier run" if r.chunks_reused else ""))
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
    from elm_neuro.data.inspect import format_summary, plot_per_class, plot_raster, read_any_shd, shd_files, summarize

    if args.samples is not None and not args.raster:
        raise ValueError("--samples chooses the samples of the raster plot: give --raster OUT.png with it")
    if args.compare is not None and not args.per_class:
        raise ValueError("--compare adds another set to the per-class figure: give --per-class OUT.png with it")
    path = Path(args.file)
    files = shd_files(path)
    if args.baseline and not path.is_dir():
        raise ValueError(f"--baseline trains on shd_train.h5 and tests on shd_test.h5: give their folder, not the "
                         f"file {path}")
    if args.compare is not None:
        other = read_any_shd(_first_file(Path(args.compare), "--compare"))  # checked before anything is drawn
    if path.is_dir():
        from elm_neuro.data.provenance import shd_provenance

        prov = shd_provenance(path)
        print(f"folder:            {path} ({prov['source']}: {prov['detail']})")
    events = {}
    for i, f in enumerate(files):
        events[f.name] = read_any_shd(f)
        if i:
            print()
        print(format_summary(summarize(events[f.name])))
    first = events[files[0].name]
    if args.raster:
        try:
            samples = [int(s) for s in (args.samples or _RASTER_SAMPLES).split(",") if s.strip()]
        except ValueError as exc:
            raise ValueError(f"--samples must be comma-separated integers, got "
                             f"{args.samples!r}") from exc
        out = plot_raster(first, samples, args.raster)
        print(f"raster of samples {samples} of {files[0].name} saved to {out}")
    if args.per_class:
        out = plot_per_class(first, args.per_class, other if args.compare is not None else None,
                             name=_set_name(path), other_name=_set_name(Path(args.compare)) if args.compare else "")
        print(f"one sample per class of {files[0].name} saved to {out}")
    if args.baseline:
        from elm_neuro.data.baseline import format_baseline, linear_baseline

        if len(files) < 2:
            raise ValueError(f"--baseline needs both shd_train.h5 and shd_test.h5 in {path}")
        print(format_baseline(linear_baseline(events["shd_train.h5"], events["shd_test.h5"])))
    return 0


def _first_file(path: Path, flag: str) -> Path:
    """The file an option names: itself, or the first of shd_train.h5 / shd_test.h5 of a folder."""
    try:
        from elm_neuro.data.inspect import shd_files

        return shd_files(path)[0]
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{flag}: {exc}") from None


def _set_name(path: Path) -> str:
    """What a set is, for the per-class figure's titles: its provenance's source, else its name."""
    folder = path if path.is_dir() else path.parent
    try:
        from elm_neuro.data.provenance import shd_provenance

        source = shd_provenance(folder)["source"]
    except Exception:  # a figure's title is not worth a failure
        source = "unknown"
    return source if source != "unknown" else path.name


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

    w = sub.add_parser("spoken", help="write SHD-format files of digits spoken by espeak-ng, through the "
                                      "package's cochlea")
    w.add_argument("--out", required=True, help="output folder")
    w.add_argument("--train", type=int, default=D.SPOKEN_N_TRAIN, help="training digits (default: SHD's 8156)")
    w.add_argument("--test", type=int, default=D.SPOKEN_N_TEST, help="test digits (default: SHD's 2264)")
    w.add_argument("--seed", type=int, default=D.SEED, help="seed of speakers, utterances and spikes")
    w.add_argument("--workers", type=int, default=D.SPOKEN_WORKERS, help="processes (one thread each)")
    w.add_argument("--speakers", type=int, default=D.SPOKEN_SPEAKERS,
                   help="speakers (at least 6: speakers 4 and 5 are test-only, as in SHD)")
    w.add_argument("--voices", default=None,
                   help="comma-separated espeak-ng voice variants to draw speakers from (default: all)")
    w.add_argument("--force", action="store_true",
                   help="replace shd_train.h5 / shd_test.h5 that data spoken wrote earlier in --out (nothing else)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_spoken)

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

    i = sub.add_parser("inspect", help="summary, statistics and figures of an SHD-format file or folder")
    i.add_argument("file", help="an SHD-format .h5 file, or a folder with shd_train.h5 and shd_test.h5")
    i.add_argument("--raster", default=None, help="save a raster plot to this image file")
    i.add_argument("--samples", default=None,
                   help=f"comma-separated sample indices of the raster plot (default {_RASTER_SAMPLES})")
    i.add_argument("--per-class", default=None, metavar="OUT.png",
                   help="save one figure with a sample of every class from two speakers (of the training file of "
                        "a folder)")
    i.add_argument("--compare", default=None, metavar="OTHER",
                   help="with --per-class: another SHD-format file or folder, drawn beside (first sample per class)")
    i.add_argument("--baseline", action="store_true",
                   help="a folder: print a linear baseline (logistic regression on binned spike counts, trained "
                        "on shd_train.h5, tested on shd_test.h5)")
    i.set_defaults(func=_inspect)

    add_enwik8_parser(sub)

