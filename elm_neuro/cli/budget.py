"""``elm-neuro budget``: exact parameter budgets without building a model.

    elm-neuro budget --preset shd-adding --d-m 9 --n 57          # N, d_m, k_e, k_c, P
    elm-neuro budget --preset shd-adding --d-m 9 --params 77000  # solve the N closest to P
    elm-neuro budget --preset enwik8 --d-m 20 --n 742 --set learn_tau=true

Any configuration field can be overridden with ``--set FIELD=VALUE`` (VALUE parsed as JSON
when it can be: numbers, true/false, null; else taken as a string).
"""
from __future__ import annotations

import argparse
import json

from elm_neuro.networks.presets import PRESETS
from elm_neuro.networks.registry import resolve_model_config


def parse_overrides(items: list[str] | None) -> dict:
    """``["a=1", "b=relu"]`` -> ``{"a": 1, "b": "relu"}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def config_from_args(preset: str, d_m: int | None, n: int | None, params: int | None, overrides: dict):
    """The preset's config with overrides, ``d_m`` and ``n`` (or the size solved for ``params``)."""
    if n is not None and params is not None:
        raise ValueError("give either --n or --params, not both")
    fields = dict(overrides)
    if d_m is not None:
        fields["d_m"] = d_m
    if n is not None:
        fields["n"] = n
    return resolve_model_config(preset=preset, overrides=fields, params=params)


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args.preset, args.d_m, args.n, args.params, parse_overrides(args.set))
    b = cfg.budget()
    row = {"N": b.n, "d_m": getattr(cfg, "d_m", None), "k_e": b.k_e, "k_c": b.k_c, "P": b.p}
    if args.params is not None:
        row["target_P"] = args.params
        row["P_minus_target"] = b.p - args.params
    if args.json:
        print(json.dumps(row))
    else:
        print("  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    return 0


def register(sub) -> None:
    p = sub.add_parser("budget", help="exact parameter count P(N, k_e, k_c) or the N for a budget")
    p.add_argument("--preset", default="shd-adding", help=f"one of {sorted(PRESETS)}")
    p.add_argument("--d-m", type=int, default=None, help="memory units per neuron (ELM)")
    p.add_argument("--n", type=int, default=None, help="hidden neurons N")
    p.add_argument("--params", type=int, default=None,
                   help="target budget P: solve for N (for the single neuron, elm-neuron-*: for d_m)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a config field")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)
