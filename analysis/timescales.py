"""Timescales of trained networks side by side (ELM memory / intrinsic / impulse-response
timescales; LIF membrane and adaptation taus), measured on held-out test batches of each run's task.

    python analysis/timescales.py RUN_DIR [RUN_DIR ...] [--labels ELM,LIF] [--out timescales.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from elm_neuro import defaults as D


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--labels", default=None, help="comma-separated names, one per run (default: folder names)")
    p.add_argument("--out", default="timescales.png", help="output PNG")
    p.add_argument("--batches", type=int, default=D.ANALYSIS_BATCHES, help="held-out test batches to record")
    args = p.parse_args(argv)
    from elm_neuro.experiments.run_analysis import compare_runs_timescales

    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.runs]
    if len(labels) != len(args.runs):
        p.error(f"--labels gives {len(labels)} names for {len(args.runs)} runs")
    print(compare_runs_timescales(dict(zip(labels, args.runs)), args.out, args.batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
