"""Activity statistics of a trained run's hidden layer on held-out data (active fraction, silent
neurons, ISI CV, Fano factor, pairwise correlations) and a raster plot.

    python analysis/activity.py RUN_DIR [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from elm_neuro import defaults as D


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", default=None, help="folder for raster.png (default: RUN_DIR/analysis)")
    p.add_argument("--batches", type=int, default=D.ANALYSIS_BATCHES, help="held-out test batches to record")
    args = p.parse_args(argv)
    from elm_neuro.experiments.run_analysis import finite_or_none, run_activity

    stats = run_activity(args.run, args.out or Path(args.run) / "analysis", args.batches)
    print(json.dumps(finite_or_none(stats), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
