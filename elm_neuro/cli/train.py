"""``elm-neuro train``: train one model on one task into a run directory.

    elm-neuro train --task shd-adding --model elm --d-m 9 --n 57 --data DIR --epochs 3 \\
        --batches-per-epoch 100 --out runs/elm
    elm-neuro train --task shd-adding --model lif --params 20000 --data DIR --out runs/lif
    elm-neuro train --resume runs/elm          # continue a killed run
    elm-neuro train --task shd-adding --paper --data DIR --out runs/paper   # docs/design.md §7 recipe

Defaults are small enough for a CPU (the ``small-<task>`` recipes of :mod:`elm_neuro.defaults`:
3 epochs x 100 batches, 10 ms bins, 100 channels); ``--paper`` switches to the paper's recipe
(70 x 2000 batches, 2 ms bins, 700 channels). Model fields are overridden with
``--set FIELD=VALUE``; training fields with ``--train-set``. The configuration is built by
:func:`elm_neuro.training.config.make_train_config`; this module only maps arguments to fields.

No option is ignored silently (``train``, ``compare`` and ``sweep`` share these checks): a field
given by a flag and by ``--set`` / ``--train-set`` as well (``--d-m 4 --set d_m=4``,
``--epochs 3 --train-set epochs=5``) is refused saying which to keep; ``--train-set`` of a field
that a command sets from its own option (``seed``, ``device``, ``model``...) is refused naming that
option; a value of the wrong type is refused naming the field, the value and the type; and a
model field the data decides (``n_in``, ``n_classes``) is refused saying what the data sets it to
(:func:`elm_neuro.training.model_setup.check_data_fields`). Nothing is written before these checks.
"""
from __future__ import annotations

import argparse
import json

from elm_neuro import defaults as D
from elm_neuro.cli.budget import merge_flags, parse_overrides, preset_class, shown
from elm_neuro.training.config import AMP_MODES, TASKS, TrainConfig, make_train_config
from elm_neuro.training.model_setup import DATA_FIELDS, check_data_fields


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=D.THREADS,
                   help="torch threads per training process (default: one per physical core for a single "
                        "run, one per worker when several processes train side by side)")


def add_common_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=D.TASK, choices=TASKS)
    p.add_argument("--data", default=None, help="data folder (SHD: shd_train.h5 + shd_test.h5; enwik8: the file)")
    p.add_argument("--epochs", type=int, default=None, help=f"default: the recipe's, else {D.EPOCHS}")
    p.add_argument("--batches-per-epoch", type=int, default=None,
                   help=f"default: the recipe's, else {D.BATCHES_PER_EPOCH}")
    p.add_argument("--batch-size", type=int, default=None, help=f"default: the recipe's, else {D.BATCH_SIZE}")
    p.add_argument("--lr", type=float, default=None, help=f"default: the recipe's, else {D.LR}")
    p.add_argument("--corpus-bytes", type=int, default=None, help="size of the built-in text corpus (enwik8 task "
                   "without --data)")
    p.add_argument("--device", default=D.DEVICE, help="auto | cpu | cuda[:i]")
    p.add_argument("--amp", default=D.AMP, choices=AMP_MODES)
    add_threads_arg(p)
    p.add_argument("--paper", action="store_true", help="the paper's training recipe (docs/design.md §7 / 8)")
    p.add_argument("--train-set", action="append", metavar="FIELD=VALUE", help="override a TrainConfig field")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


# TrainConfig fields with a flag that may be left out (the recipe's value then stands).
_OPTIONAL_FLAGS = {"epochs": "--epochs", "batches_per_epoch": "--batches-per-epoch", "batch_size": "--batch-size",
                   "lr": "--lr", "corpus_bytes": "--corpus-bytes", "threads": "--threads"}


def _owned_fields(args) -> dict:
    """TrainConfig fields each command sets from its own options (``--train-set`` of them would be
    overwritten), and the option that sets each."""
    return {"task": "--task", "model": "--models" if hasattr(args, "models") else "--model",
            "preset": "--preset", "model_overrides": "--set", "params": "--params", "data_dir": "--data",
            "seed": "--seeds" if hasattr(args, "seeds") else "--seed", "device": "--device", "amp": "--amp"}


def _train_set(args) -> dict:
    """``--train-set`` as TrainConfig fields, refusing what would be ignored or is ill-typed (module
    docstring)."""
    given = parse_overrides(args.train_set, "--train-set")
    owned = _owned_fields(args)
    for key, value in given.items():
        if key in owned:
            raise ValueError(f"--train-set {key}={shown(value)}: {key} is set by {owned[key]}, which would override "
                             f"it; use {owned[key]} instead")
        flag_value = getattr(args, key, None) if key in _OPTIONAL_FLAGS else None
        if flag_value is not None:
            flag, given = f"{_OPTIONAL_FLAGS[key]} {flag_value}", f"--train-set {key}={shown(value)}"
            raise ValueError(f"{key} is given twice: {flag} and {given}; keep one: drop {given} (or {flag})")
    TrainConfig.check_types(given)
    return given


def train_config_from_args(args, model: str, model_overrides: dict, params, seed: int) -> TrainConfig:
    """The parsed arguments as TrainConfig fields for :func:`make_train_config` (flags left out
    stay with the recipe; ``--train-set`` fields on top of them, refused where they would be
    ignored or clash with a flag given); model overrides that the data decides are refused."""
    fields = {name: getattr(args, name) for name in _OPTIONAL_FLAGS if getattr(args, name) is not None}
    fields.update(_train_set(args))
    fields.update(model=model, preset=getattr(args, "preset", None), model_overrides=model_overrides,
                  params=params, data_dir=args.data, seed=seed, device=args.device, amp=args.amp)
    cfg = make_train_config(args.task, args.paper, **fields)
    if set(model_overrides) & set(DATA_FIELDS):
        from elm_neuro.training.preflight import input_dims

        check_data_fields(cfg, *input_dims(cfg))
    return cfg


# Flags of `train` and the TrainConfig field each sets (compared with the run's on --resume).
_FIELD_FLAGS = {"task": "task", "data": "data_dir", "epochs": "epochs", "batches_per_epoch": "batches_per_epoch",
                "batch_size": "batch_size", "lr": "lr", "corpus_bytes": "corpus_bytes", "device": "device",
                "amp": "amp", "threads": "threads", "seed": "seed", "model": "model", "preset": "preset"}
# Flags that shape the model or the recipe: a resumed run keeps its own.
_FIXED_FLAGS = ("paper", "d_m", "n", "params", "set", "out")
_RUNTIME_FLAGS = ("resume", "no_progress", "debug", "command", "func", "parser")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resume_changes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """The settings given with ``--resume`` as TrainConfig fields (flags left at their defaults
    are not given); flags that shape the model or the recipe are refused here, naming them."""
    given = [k for k, v in vars(args).items() if k not in _RUNTIME_FLAGS and v != parser.get_default(k)]
    fixed = [_flag(k) for k in given if k in _FIXED_FLAGS]
    if fixed:
        raise ValueError(f"{', '.join(fixed)} cannot be given with --resume {args.resume}: a resumed run keeps its "
                         f"own model, recipe and directory (only --data, --device and --threads may change); "
                         f"start a new run with --out for other settings")
    changes = {_FIELD_FLAGS[k]: getattr(args, k) for k in given if k in _FIELD_FLAGS}
    changes.update(parse_overrides(args.train_set, "--train-set"))
    return changes


def _run(args: argparse.Namespace) -> int:
    # Imported when a run starts: the trainers load the data code (numba, h5py), which
    # `elm-neuro --help` and the other commands do not need.
    from elm_neuro.training.trainer import run_training

    if args.resume:
        summary = run_training(args.resume, None, resume=True, progress=not args.no_progress,
                               changes=resume_changes(args, args.parser))
        if summary.pop("already_complete", False):
            print(f"{args.resume} is already complete (summary.json); nothing to resume. Its summary:")
        print(json.dumps(summary, indent=2))
        return 0
    if not args.out:
        raise ValueError("--out RUN_DIR is required (or --resume RUN_DIR)")
    overrides = merge_flags(parse_overrides(args.set), {"d_m": ("--d-m", args.d_m), "n": ("--n", args.n)},
                            preset_class(args.preset, args.model))
    cfg = train_config_from_args(args, args.model, overrides, args.params, args.seed)
    summary = run_training(args.out, cfg, resume=False, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    print(f"run directory: {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (ELM, LIF, adLIF, LSTM, single ELM neuron) on a task")
    add_common_train_args(p)
    p.add_argument("--model", default=D.MODEL, help="elm | lif | adlif | lstm | elm-neuron")
    p.add_argument("--preset", default=None, help="model preset (default: <model>-<task>)")
    p.add_argument("--d-m", type=int, default=None)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--params", type=int, default=None, help="size the model to this many parameters")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a model config field")
    p.add_argument("--seed", type=int, default=D.SEED)
    p.add_argument("--out", default=None, help="run directory to create")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.set_defaults(func=_run, parser=p)
