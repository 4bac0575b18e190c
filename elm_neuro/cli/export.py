"""``elm-neuro export RUN_DIR --out models/NAME [--force]``: keep a finished run with a model
card and its best weights as ``model.safetensors`` (:mod:`elm_neuro.experiments.export`); an
existing ``--out`` is refused unless ``--force``, which replaces an earlier export whole (and only
an earlier export: a folder with other files, a plain file or the current directory is refused)."""
from __future__ import annotations

import argparse

from elm_neuro.experiments.export import export_run


def _run(args: argparse.Namespace) -> int:
    out = export_run(args.run, args.out, args.name, force=args.force, nir=args.nir)
    print(f"exported {args.run} -> {out} (MODEL_CARD.md{', model.nir' if args.nir else ''})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="copy a finished run (config, metrics, best weights) with a model card")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="destination folder, e.g. models/demo-elm")
    p.add_argument("--name", default=None, help="title of the model card (default: folder name)")
    p.add_argument("--force", action="store_true", help="replace an earlier export at --out (atomically); anything else there is refused")
    p.add_argument("--nir", action="store_true", help="also write model.nir, the NIR graph of the best weights (LIF "
                   "networks with the leaky readout and reset=zero; needs pip install nir)")
    p.set_defaults(func=_run)
