"""``elm-neuro train``: train one model on one task into a run directory.

    elm-neuro train --task shd-adding --model elm --d-m 9 --n 57 --data DIR --epochs 3 \\
        --batches-per-epoch 100 --out runs/elm
    elm-neuro train --task shd-adding --model lif --params 20000 --data DIR --out runs/lif
    elm-neuro train --resume runs/elm          # continue a killed run
    elm-neuro train --task shd-adding --paper --data DIR --out runs/paper   # SPEC 7 recipe

Defaults are small enough for a CPU (3 epochs x 100 batches, 10 ms bins, 100 channels);
``--paper`` switches to the paper's recipe (70 x 2000 batches, 2 ms bins, 700 channels). Model
fields are overridden with ``--set FIELD=VALUE``; training fields with ``--train-set``.
"""
from __future__ import annotations

import argparse
import json

from elm_neuro.cli.budget import parse_overrides
from elm_neuro.training.config import TASKS, TrainConfig, paper_defaults

# CPU-friendly settings when --paper is not given. For language modelling the annealed state
# reset (40000 steps in the paper) is shortened to a quarter of the run, so that a short run
# also trains with carried state, as it is evaluated.
SMALL_DEFAULTS = {"shd-adding": dict(bin_ms=10.0, channel_factor=7), "shd": dict(bin_ms=10.0, channel_factor=7),
                  "enwik8": dict(optimizer="adam", lr=2e-3, warmup=50, label_smoothing=1e-4, batch_size=32,
                                 eval_tokens=20000)}


def add_common_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="shd-adding", choices=TASKS)
    p.add_argument("--data", default=None, help="data folder (SHD: shd_train.h5 + shd_test.h5; enwik8: the file)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batches-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--corpus-bytes", type=int, default=None, help="size of the built-in text corpus (enwik8 task "
                   "without --data)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--paper", action="store_true", help="the paper's training recipe (SPEC 7 / 8)")
    p.add_argument("--train-set", action="append", metavar="FIELD=VALUE", help="override a TrainConfig field")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def train_config_from_args(args, model: str, model_overrides: dict, params, seed: int) -> TrainConfig:
    fields: dict = {}
    if args.paper:
        fields.update(paper_defaults(args.task))
    else:
        fields.update(SMALL_DEFAULTS[args.task])
    for name, val in (("epochs", args.epochs), ("batches_per_epoch", args.batches_per_epoch),
                      ("batch_size", args.batch_size), ("lr", args.lr), ("corpus_bytes", args.corpus_bytes)):
        if val is not None:
            fields[name] = val
    fields.update(parse_overrides(args.train_set))
    if args.task == "enwik8" and not args.paper and "reset_steps" not in fields:
        steps = fields.get("epochs", TrainConfig.epochs) * fields.get("batches_per_epoch", TrainConfig.batches_per_epoch)
        fields["reset_steps"] = max(1, steps // 4)
    fields.update(task=args.task, model=model, preset=getattr(args, "preset", None), model_overrides=model_overrides,
                  params=params, data_dir=args.data, seed=seed, device=args.device, amp=args.amp)
    return TrainConfig.from_dict(fields)


def run_training(run_dir, cfg: TrainConfig | None, resume: bool, progress: bool) -> dict:
    """Dispatch on the task: classification or language modelling."""
    task = cfg.task if cfg is not None else None
    if resume:
        from elm_neuro.training.run import RunDir

        task = RunDir(run_dir).read_config()["train"]["task"]
    if task == "enwik8":
        from elm_neuro.training.language import train_language_model

        return train_language_model(run_dir, cfg, resume=resume, progress=progress)
    from elm_neuro.training.classification import train_classifier

    return train_classifier(run_dir, cfg, resume=resume, progress=progress)


def _run(args: argparse.Namespace) -> int:
    if args.resume:
        summary = run_training(args.resume, None, resume=True, progress=not args.no_progress)
        print(json.dumps(summary, indent=2))
        return 0
    if not args.out:
        raise ValueError("--out RUN_DIR is required (or --resume RUN_DIR)")
    overrides = parse_overrides(args.set)
    for name in ("d_m", "n"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    cfg = train_config_from_args(args, args.model, overrides, args.params, args.seed)
    summary = run_training(args.out, cfg, resume=False, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    print(f"run directory: {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (ELM, LIF, adLIF, LSTM, single ELM neuron) on a task")
    add_common_train_args(p)
    p.add_argument("--model", default="elm", help="elm | lif | adlif | lstm | elm-neuron")
    p.add_argument("--preset", default=None, help="model preset (default: <model>-<task>)")
    p.add_argument("--d-m", type=int, default=None)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--params", type=int, default=None, help="size the model to this many parameters")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a model config field")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory to create")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.set_defaults(func=_run)
