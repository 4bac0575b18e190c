"""Figures of a committed study from its results.csv: d_m_sweep.png, n_axis.png, heatmap_n_dm.png and
k_c_axis.png (budget-tradeoff stages present in the table), and learning curves over seeds from run folders.

    python analysis/study_figures.py RESULTS_DIR [--chance 0.05] [--out DIR]
    python analysis/study_figures.py RESULTS_DIR --curves ELM=RUN_DIR,RUN_DIR --curves LIF=RUN_DIR [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", help="folder holding results.csv")
    p.add_argument("--metric", default="test_acc")
    p.add_argument("--chance", type=float, default=None, help="chance level drawn as a dashed line")
    p.add_argument("--out", default=None, help="figure folder (default: RESULTS_DIR)")
    p.add_argument("--curves", action="append", default=[], metavar="LABEL=RUN_DIR[,RUN_DIR...]",
                   help="learning curves of one model over its seeds' run folders (repeatable)")
    args = p.parse_args(argv)
    from elm_neuro.analysis import study_figures as SF
    from elm_neuro.analysis.sweep_table import read_table
    from elm_neuro.training.run import RunDir

    folder = Path(args.results_dir)
    out = Path(args.out) if args.out else folder
    out.mkdir(parents=True, exist_ok=True)
    table = folder / "results.csv"
    if not table.is_file():
        sys.exit(f"{table} not found")
    rows = read_table(table)
    stages = {r.get("stage") for r in rows}
    made = []
    if "d_m" in stages:
        made += [SF.plot_d_m_sweep(rows, args.metric, out / "d_m_sweep.png", args.chance),
                 SF.plot_budget_heatmap(rows, args.metric, out / "heatmap_n_dm.png")]
    if "n" in stages:
        made.append(SF.plot_n_axis(rows, args.metric, out / "n_axis.png", args.chance))
    if "k_c" in stages:
        made.append(SF.plot_k_c_axis(rows, args.metric, out / "k_c_axis.png", args.chance))
    if args.curves:
        curves = {}
        for spec in args.curves:
            label, _, dirs = spec.partition("=")
            if not dirs:
                p.error(f"--curves {spec!r}: give LABEL=RUN_DIR[,RUN_DIR...]")
            curves[label] = [SF.curves_from_metrics(RunDir(d).read_metrics()) for d in dirs.split(",")]
        made.append(SF.plot_learning_curves(curves, out / "learning_curves.png", chance=args.chance))
    for path in made:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
