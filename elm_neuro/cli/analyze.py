"""``elm-neuro analyze``: timescale and activity analysis of trained runs.

    elm-neuro analyze timescales RUN_DIR [RUN_DIR ...] --out FIG.png [--labels ELM,LIF]
    elm-neuro analyze activity RUN_DIR [--out DIR]

Activity is measured on the first test batches of each run's own task (held-out data); the
work is done by :mod:`elm_neuro.experiments.run_analysis`, imported when a command runs (it loads
the trainers' data code, scipy and matplotlib, which the CLI's start-up does not need).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from elm_neuro import defaults as D


def _timescales(args: argparse.Namespace) -> int:
    from elm_neuro.experiments.run_analysis import compare_runs_timescales

    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.runs]
    if len(labels) != len(args.runs):
        raise ValueError(f"--labels gives {len(labels)} names for {len(args.runs)} runs")
    path = compare_runs_timescales(dict(zip(labels, args.runs)), args.out, args.batches)
    print(f"timescale figure: {path}")
    return 0


def _activity(args: argparse.Namespace) -> int:
    from elm_neuro.experiments.run_analysis import finite_or_none, run_activity

    stats = run_activity(args.run, args.out, args.batches)
    print(json.dumps(finite_or_none(stats), indent=2, default=str))
    return 0


def register(sub) -> None:
    p = sub.add_parser("analyze", help="timescale / activity analysis of trained runs")
    s = p.add_subparsers(dest="analyze_command", metavar="SUBCOMMAND")
    s.required = True
    t = s.add_parser("timescales", help="compare the timescales of trained runs in one figure")
    t.add_argument("runs", nargs="+", metavar="RUN_DIR")
    t.add_argument("--out", required=True, help="output PNG")
    t.add_argument("--labels", default=None, help="comma-separated names, one per run")
    t.add_argument("--batches", type=int, default=D.ANALYSIS_BATCHES, help="held-out test batches to record")
    t.set_defaults(func=_timescales)
    a = s.add_parser("activity", help="activity statistics (and a raster plot) of a run's hidden layer")
    a.add_argument("run", metavar="RUN_DIR")
    a.add_argument("--out", default=None, help="folder for raster.png")
    a.add_argument("--batches", type=int, default=D.ANALYSIS_BATCHES)
    a.set_defaults(func=_activity)
