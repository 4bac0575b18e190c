"""Fits of a sweep: the scaling law L*(P) = L_inf + A P^-alpha along the Pareto frontier and the
information model of SPEC 11 (parameters, R^2, predicted optimum), with their figures; the
numbers are printed as JSON.

    python analysis/scaling.py SWEEP_DIR [--metric test_acc] [--out DIR] [--n-boot 100] [--h-y BITS]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import results_rows  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir")
    p.add_argument("--metric", default=None, help="default: test_acc, else test_bpc")
    p.add_argument("--out", default=None, help="figure folder (default: SWEEP_DIR)")
    p.add_argument("--n-boot", type=int, default=100, help="bootstrap replicates of the scaling law")
    p.add_argument("--h-y", type=float, default=None, help="label entropy in bits (default: from the task)")
    p.add_argument("--chance", type=float, default=None, help="chance accuracy (default: from the task)")
    args = p.parse_args(argv)
    from elm_neuro.analysis.sweep_report import default_metric, information_analysis, json_safe, scaling_analysis

    rows = results_rows(args.sweep_dir)
    metric = args.metric or default_metric(rows)
    tasks = {r.get("task") for r in rows}
    out = args.out or args.sweep_dir
    res = {"metric": metric,
           "scaling": scaling_analysis(rows, out, metric, n_boot=args.n_boot),
           "information_model": information_analysis(rows, out, metric, tasks.pop() if len(tasks) == 1 else None,
                                                     h_y=args.h_y, chance=args.chance)}
    print(json.dumps(json_safe(res), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
