"""Everything of a sweep at once: SWEEP_DIR/report.md, report.json and every figure
(the same as `elm-neuro sweep-report SWEEP_DIR`).

    python analysis/sweep_report.py SWEEP_DIR [--metric test_acc] [--n-boot 100]
"""
from __future__ import annotations

import argparse
import sys

from elm_neuro import defaults as D


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir")
    p.add_argument("--metric", default=None)
    p.add_argument("--n-boot", type=int, default=D.REPORT_N_BOOT)
    args = p.parse_args(argv)
    from elm_neuro.experiments.sweep_report import write_sweep_report

    print(write_sweep_report(args.sweep_dir, metric=args.metric, n_boot=args.n_boot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
