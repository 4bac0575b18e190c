"""Fits of a sweep: the scaling law L*(P) = L_inf + A P^-alpha along the Pareto frontier and the
information model of docs/design.md §11 (parameters, R^2, predicted optimum), with their figures; the
numbers are printed as JSON.

    python analysis/scaling.py SWEEP_DIR [--metric test_acc] [--out DIR] [--n-boot 100] [--h-y BITS]
"""
from __future__ import annotations

import argparse
import json
import sys

from elm_neuro import defaults as D


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir")
    p.add_argument("--metric", default=None, help="default: test_acc, else test_bpc")
    p.add_argument("--out", default=None, help="figure folder (default: SWEEP_DIR)")
    p.add_argument("--n-boot", type=int, default=D.REPORT_N_BOOT, help="bootstrap replicates of the scaling law")
    p.add_argument("--h-y", type=float, default=None, help="label entropy in bits (default: from the task)")
    p.add_argument("--chance", type=float, default=None, help="chance accuracy (default: from the task)")
    args = p.parse_args(argv)
    from elm_neuro.experiments.sweep_report import sweep_fits

    try:
        res = sweep_fits(args.sweep_dir, args.out, args.metric, n_boot=args.n_boot, h_y=args.h_y, chance=args.chance)
    except FileNotFoundError as exc:
        sys.exit(str(exc))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
