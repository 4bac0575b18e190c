"""``elm-neuro sweep`` and ``elm-neuro sweep-report``: budget sweeps and their report.

    # fixed-budget trade-off (N sized to P for every d_m), 3 seeds
    elm-neuro sweep --task shd-adding --params 77000 --d-m 2,3,4,5,7,9,11,15,20,25 --seeds 3 \\
        --data DIR --out SWEEP_DIR [--epochs 3 --batches-per-epoch 100 | --paper] [--workers 2]
    # several budgets: the cross product with d_m
    elm-neuro sweep --params 5000,20000,77000 --d-m 2,4,9 --data DIR --out SWEEP_DIR
    # one axis, the others fixed
    elm-neuro sweep --axis n --values 8,16,32 --d-m 4 --data DIR --out SWEEP_DIR
    elm-neuro sweep --axis k_c --values 60,150,300 --d-m 4 --n 32 --data DIR --out SWEEP_DIR
    # on a Ray cluster (or a local Ray instance without --address)
    elm-neuro sweep ... --executor ray [--address ray://HOST:10001]
    # the report alone
    elm-neuro sweep-report SWEEP_DIR            # (same as: elm-neuro sweep --out SWEEP_DIR --report-only)

``--axis k_c`` takes k_c = d_tree * d_brch values and varies d_brch (d_tree fixed). Re-running
the same command continues an interrupted sweep (finished cells are kept, checkpointed cells
resume); a different grid in the same folder is refused unless ``--force``. ``--max-cells K``
runs at most K unfinished cells per call. ``results.csv`` is rebuilt from the run directories
after every cell; when the sweep has no unfinished cell left, ``report.md`` is written (see
:mod:`elm_neuro.experiments.sweep` and :mod:`elm_neuro.experiments.sweep_report`).

The experiment modules are imported when a command runs, not when this module is: they load
numba and h5py (the trainers' data code), scipy and matplotlib (the report), which the CLI's
start-up does not need.
"""
from __future__ import annotations

import argparse
import sys

from elm_neuro import defaults as D
from elm_neuro.cli.budget import merge_flags, parse_overrides, preset_class
from elm_neuro.cli.compare import parse_seeds
from elm_neuro.cli.train import add_common_train_args, train_config_from_args


def parse_int_list(text: str | None, name: str) -> list[int] | None:
    """``"2,3,4"`` -> [2, 3, 4]; ``None`` stays None."""
    if text is None:
        return None
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} expects comma-separated integers, got {text!r}") from None
    if not vals:
        raise ValueError(f"{name} expects at least one integer, got {text!r}")
    return vals


def grid_from_args(args: argparse.Namespace):
    from elm_neuro.experiments.sweep_plan import SweepGrid

    overrides = parse_overrides(args.set)
    d_m = parse_int_list(args.d_m, "--d-m")
    values = parse_int_list(args.values, "--values")
    fixed_d_m = None
    if args.axis == "d_m":
        if values is not None and d_m is not None:
            raise ValueError("--axis d_m: give the d_m values with --d-m or --values, not both")
        values = values if values is not None else d_m
    else:
        if values is None:
            raise ValueError(f"--axis {args.axis} needs --values")
        if d_m is not None:
            if len(d_m) != 1:
                raise ValueError(f"--d-m must be a single value (fixed) when --axis is {args.axis}, got {args.d_m!r}")
            fixed_d_m = d_m[0]
    overrides = merge_flags(overrides, {"d_m": ("--d-m", fixed_d_m), "n": ("--n", args.n)},
                            preset_class(args.preset, args.model))
    base = train_config_from_args(args, args.model, overrides, None, D.SEED)
    return SweepGrid(base=base, axis=args.axis, values=values, budgets=parse_int_list(args.params, "--params"),
                     seeds=parse_seeds(args.seeds))


def _report(out, args) -> int:
    from elm_neuro.experiments.sweep_report import write_sweep_report

    path = write_sweep_report(out, metric=args.metric, h_y=args.h_y, chance=args.chance, n_boot=args.n_boot,
                              seed=args.fit_seed)
    print(path.read_text())
    print(f"report: {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.ray_timeout is not None and not args.ray_timeout > 0:
        raise ValueError(f"--ray-timeout must be a number of seconds > 0, got {args.ray_timeout}")
    if args.report_only:
        return _report(args.out, args)
    from elm_neuro.experiments.sweep import run_sweep

    grid = grid_from_args(args)
    try:
        res = run_sweep(args.out, grid, executor=args.executor, workers=args.workers, address=args.address,
                        progress=not args.no_progress, stop_after=args.max_cells, force=args.force,
                        **({} if args.ray_timeout is None else {"ray_timeout": args.ray_timeout}))
    except ImportError as exc:
        print(f"elm-neuro sweep: error: {exc}", file=sys.stderr)
        return 2
    print(f"sweep: {len(res.cells)} cells; {len(res.skipped)} already finished, {len(res.ran)} trained now, "
          f"{len(res.failed)} failed, {len(res.pending)} unfinished")
    print(f"results: {res.results}")
    for name, err in res.failed.items():
        print(f"failed: {name}: {err}", file=sys.stderr)
    if res.failed:
        return 1
    if not res.pending and not args.no_report:
        return _report(args.out, args)
    return 0


def _run_report(args: argparse.Namespace) -> int:
    return _report(args.sweep_dir, args)


def _add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", default=None, help="metric column (default: test_acc, else test_bpc)")
    p.add_argument("--h-y", type=float, default=None,
                   help="label entropy in bits for the information model (default: from the task)")
    p.add_argument("--chance", type=float, default=None, help="chance accuracy (default: from the task)")
    p.add_argument("--n-boot", type=int, default=D.REPORT_N_BOOT, help="bootstrap replicates of the scaling-law fit")
    p.add_argument("--fit-seed", type=int, default=D.REPORT_SEED, help="seed of the bootstrap")


def register(sub) -> None:
    p = sub.add_parser("sweep", help="a grid of training runs over budgets and one axis (d_m, n or k_c)")
    add_common_train_args(p)
    p.add_argument("--model", default=D.MODEL, help="elm | lif | adlif | lstm | elm-neuron")
    p.add_argument("--preset", default=None, help="model preset (default: <model>-<task>)")
    p.add_argument("--params", default=None, help="budget(s) P, comma-separated: N is sized to each")
    p.add_argument("--axis", default="d_m", choices=["d_m", "n", "k_c"], help="the swept axis (default d_m)")
    p.add_argument("--values", default=None, help="values of the swept axis, comma-separated "
                                                  "(k_c axis: k_c = d_tree * d_brch values)")
    p.add_argument("--d-m", default=None, help="d_m values (axis d_m) or the fixed d_m (other axes)")
    p.add_argument("--n", type=int, default=None, help="fixed N (when no --params)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="fix a model config field")
    p.add_argument("--seeds", default=str(D.N_SEEDS), help="number of seeds, or a comma-separated list")
    p.add_argument("--out", required=True, help="sweep folder (SWEEP_DIR)")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--workers", type=int, default=1,
                   help="local: parallel processes; ray without --address: CPUs of the local Ray instance "
                        "(default there: all)")
    p.add_argument("--address", default=None, help="Ray cluster address (ray executor)")
    p.add_argument("--ray-timeout", type=float, default=None,
                   help="seconds the Ray cluster at --address has to answer (default 60)")
    p.add_argument("--max-cells", type=int, default=None, help="run at most this many unfinished cells now")
    p.add_argument("--force", action="store_true", help="continue a sweep folder with a different grid")
    p.add_argument("--report-only", action="store_true", help="only (re)write report.md from results.csv")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    _add_report_args(p)
    p.set_defaults(func=_run)
    r = sub.add_parser("sweep-report", help="report.md and figures of a sweep folder (from results.csv)")
    r.add_argument("sweep_dir", metavar="SWEEP_DIR")
    _add_report_args(r)
    r.set_defaults(func=_run_report)
