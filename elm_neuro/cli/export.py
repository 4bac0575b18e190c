"""``elm-neuro export RUN_DIR --out models/NAME``: keep a finished run with a model card
(:mod:`elm_neuro.experiments.export`)."""
from __future__ import annotations

import argparse

from elm_neuro.experiments.export import export_run


def _run(args: argparse.Namespace) -> int:
    out = export_run(args.run, args.out, args.name)
    print(f"exported {args.run} -> {out} (MODEL_CARD.md)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="copy a finished run (config, metrics, best weights) with a model card")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="destination folder, e.g. models/demo-elm")
    p.add_argument("--name", default=None, help="title of the model card (default: folder name)")
    p.set_defaults(func=_run)
