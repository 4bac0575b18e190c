"""Trade-off figures of a sweep: metric vs N at fixed P (with the paper's points (docs/design.md §9)), vs each
varying axis, the (N, d_m) heatmap and the Pareto frontier across budgets.

    python analysis/tradeoff.py SWEEP_DIR [--metric test_acc] [--out DIR]
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir")
    p.add_argument("--metric", default=None, help="default: test_acc, else test_bpc")
    p.add_argument("--out", default=None, help="figure folder (default: SWEEP_DIR)")
    args = p.parse_args(argv)
    from elm_neuro.experiments.sweep_report import sweep_tradeoff

    try:
        res = sweep_tradeoff(args.sweep_dir, args.out, args.metric)
    except FileNotFoundError as exc:
        sys.exit(str(exc))
    for caption, name in res["figures"]:
        print(f"{name}: {caption}")
    for line in res["skipped"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
