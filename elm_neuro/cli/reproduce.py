"""``elm-neuro reproduce NAME --out DIR``: run a named experiment plan end to end
(:mod:`elm_neuro.experiments.reproduce`; the plans are in :data:`elm_neuro.defaults.PLANS`)."""
from __future__ import annotations

import argparse

from elm_neuro import defaults as D
from elm_neuro.cli.train import add_threads_arg


def _run(args: argparse.Namespace) -> int:
    from elm_neuro.experiments.reproduce import run_plan

    report = run_plan(args.name, args.out, data_dir=args.data, executor=args.executor, workers=args.workers,
                      address=args.address, device=args.device, threads=args.threads,
                      progress=not args.no_progress, estimate=not args.no_estimate)
    print(report.read_text())
    print(f"report: {report}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="run a named experiment plan (sweeps, comparisons) and write its report",
                       description="Plans: " + "; ".join(
                           f"{name} (v{plan['version']}, {plan['data']} data, stages "
                           f"{', '.join(s['name'] for s in plan['stages'])})" for name, plan in D.PLANS.items())
                       + ". Resumable: run the same command again to continue.")
    p.add_argument("name", choices=sorted(D.PLANS), help="the plan")
    p.add_argument("--out", required=True, help="folder of the plan's runs and report")
    p.add_argument("--data", default=None, help="SHD folder (plans on the real data; synthetic plans make their own)")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="where sweep cells run")
    p.add_argument("--address", default=None, help="Ray cluster address (executor ray)")
    p.add_argument("--workers", type=int, default=D.WORKERS, help="processes (or Ray CPUs) training side by side")
    p.add_argument("--device", default=D.DEVICE, help="auto | cpu | cuda[:i]")
    add_threads_arg(p)
    p.add_argument("--no-estimate", action="store_true", help="skip timing the models before the plan starts")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
