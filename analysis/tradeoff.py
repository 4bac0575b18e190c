"""Trade-off figures of a sweep: metric vs N at fixed P (with the paper's SPEC 9 points), vs each
varying axis, the (N, d_m) heatmap and the Pareto frontier across budgets.

    python analysis/tradeoff.py SWEEP_DIR [--metric test_acc] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import results_rows  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir")
    p.add_argument("--metric", default=None, help="default: test_acc, else test_bpc")
    p.add_argument("--out", default=None, help="figure folder (default: SWEEP_DIR)")
    args = p.parse_args(argv)
    from elm_neuro.analysis.sweep_report import default_metric, tradeoff_figures

    rows = results_rows(args.sweep_dir)
    tasks = {r.get("task") for r in rows}
    res = tradeoff_figures(rows, args.out or args.sweep_dir, args.metric or default_metric(rows),
                           tasks.pop() if len(tasks) == 1 else None)
    for caption, name in res["figures"]:
        print(f"{name}: {caption}")
    for line in res["skipped"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
