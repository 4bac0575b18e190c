"""``elm-neuro compare``: several model families at one parameter budget, same data and seeds.

    elm-neuro compare --task shd-adding --params 20000 --models elm,lif,adlif,lstm --seeds 2 \\
        --data DIR --out runs/cmp [--epochs 3 --batches-per-epoch 100] [--set elm:d_m=4] \\
        [--workers 2] [--threads N]

Writes one run directory per (model, seed) under OUT, then OUT/report.md and
OUT/learning_curves.png. Re-running the same command resumes unfinished cells
(:mod:`elm_neuro.experiments.compare`).

A cell that fails while it trains (e.g. a run that diverges) does not stop the others: every
cell is tried, the report is written and printed with a "Failed cells" section (model, seed,
one-line reason), each failure is also printed on standard error as it happens, and the command
ends with one error line and exit code 3 (``EXIT_CELLS_FAILED``). The code differs from 1 (the
command itself failed: nothing reliable was written) because here the comparison is complete
apart from the failed cells and its report is usable; 2 (bad input, found before anything
trains), 130 and 1 keep the meaning of :mod:`elm_neuro.cli.main`.
"""
from __future__ import annotations

import argparse
import sys

from elm_neuro import defaults as D
from elm_neuro.cli.budget import parse_overrides
from elm_neuro.cli.train import add_common_train_args, train_config_from_args

#: Exit code of a comparison that finished with failed cells (module docstring).
EXIT_CELLS_FAILED = 3


def parse_model_overrides(items: list[str] | None) -> dict:
    """``["elm:d_m=4", "lif:tau_mem=20"]`` -> ``{"elm": {"d_m": 4}, "lif": {"tau_mem": 20}}``."""
    per_model: dict = {}
    for item in items or []:
        if ":" not in item.split("=", 1)[0]:
            raise ValueError(f"--set expects MODEL:FIELD=VALUE, got {item!r}")
        model, rest = item.split(":", 1)
        per_model.setdefault(model, []).append(rest)
    # one parse per model: a field given twice for one model is refused (not the last one kept)
    return {model: parse_overrides(rest, option=f"--set {model}:") for model, rest in per_model.items()}


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"0,5,7"`` -> [0, 5, 7]."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--seeds expects a count or a comma-separated list of integers, got {text!r}") from None
    if not vals or min(vals) < 0:
        raise ValueError(f"--seeds expects a count >= 1 or seeds >= 0, got {text!r}")
    return list(range(vals[0])) if len(vals) == 1 and "," not in text else vals


def _run(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise ValueError("--models must name at least one model family")
    # Imported when the command runs: the trainers load numba and h5py (data code), the report matplotlib.
    from elm_neuro.experiments.compare import CellsFailed, compare

    base = train_config_from_args(args, models[0], {}, args.params, D.SEED)
    grid = None
    if args.lr_grid is not None:
        text = D.LR_GRID if args.lr_grid == "default" else args.lr_grid.split(",")
        try:
            grid = [float(v) for v in text if str(v).strip()]
        except ValueError:
            raise ValueError(f"--lr-grid expects comma-separated learning rates or 'default', got {args.lr_grid!r}") \
                from None
    try:
        report = compare(args.out, base, models, parse_seeds(args.seeds), parse_model_overrides(args.set),
                         progress=not args.no_progress, workers=args.workers, lr_grid=grid,
                         bin_width_taus=args.bin_width_taus)
    except CellsFailed as exc:
        print(exc.report.read_text())
        print(f"report: {exc.report}")
        sys.stdout.flush()
        print(f"elm-neuro compare: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_CELLS_FAILED
    print(report.read_text())
    print(f"report: {report}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("compare", help="train several model families at the same parameter budget")
    add_common_train_args(p)
    p.add_argument("--params", type=int, required=True, help="parameter budget P for every model")
    p.add_argument("--models", default="elm,lif", help="comma-separated families, e.g. elm,lif,adlif,lstm")
    p.add_argument("--seeds", default=str(D.N_SEEDS), help="number of seeds, or a comma-separated list")
    p.add_argument("--set", action="append", metavar="MODEL:FIELD=VALUE", help="override a model field")
    p.add_argument("--workers", type=int, default=1, help="processes training cells side by side "
                                                          "(each with one torch thread unless --threads)")
    p.add_argument("--lr-grid", metavar="LR,LR,...|default",
                   help="choose each cell's learning rate on the validation split from these (one run per rate; "
                        f"'default': {','.join(f'{v:g}' for v in D.LR_GRID)})")
    p.add_argument("--bin-width-taus", action="store_true",
                   help="initialise the LIF / adLIF time constants for the bin width (several steps to seconds)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_run)
