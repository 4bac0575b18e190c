"""``elm-neuro demo``: the end-to-end job behind ``make demo`` (see elm_neuro.training.demo)."""
from __future__ import annotations

import argparse

from elm_neuro.training.demo import run_demo


def _run(args: argparse.Namespace) -> int:
    paths = run_demo(args.out, params=args.params, epochs=args.epochs, batches_per_epoch=args.batches_per_epoch,
                     seed=args.seed, workers=args.workers, progress=not args.no_progress)
    print(paths["report"].read_text())
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthetic SHD -> ELM vs LIF at equal budget -> report and figures")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--params", type=int, default=25000, help="parameter budget of both networks")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batches-per-epoch", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes training side by side")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
