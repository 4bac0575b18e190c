"""``elm-neuro demo``: the end-to-end job behind ``make demo`` (see :mod:`elm_neuro.experiments.demo`)."""
from __future__ import annotations

import argparse

from elm_neuro import defaults as D
from elm_neuro.cli.train import add_threads_arg


def _run(args: argparse.Namespace) -> int:
    # Imported when the demo runs: it loads the data code (numba, h5py), scipy and matplotlib.
    from elm_neuro.experiments.demo import run_demo

    paths = run_demo(args.out, params=args.params, epochs=args.epochs, batches_per_epoch=args.batches_per_epoch,
                     seed=args.seed, workers=args.workers, threads=args.threads, progress=not args.no_progress)
    print(paths["report"].read_text())
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def register(sub) -> None:
    recipe = D.RECIPES["demo"]
    p = sub.add_parser("demo", help="synthetic SHD -> ELM vs LIF at equal budget -> report and figures")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--params", type=int, default=D.DEMO_PARAMS, help="parameter budget of both networks")
    p.add_argument("--epochs", type=int, default=recipe["epochs"])
    p.add_argument("--batches-per-epoch", type=int, default=recipe["batches_per_epoch"])
    p.add_argument("--seed", type=int, default=D.SEED)
    p.add_argument("--workers", type=int, default=D.WORKERS, help="processes training side by side")
    add_threads_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
