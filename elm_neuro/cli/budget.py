"""``elm-neuro budget``: exact parameter budgets without building a model.

    elm-neuro budget --preset shd-adding --d-m 9 --n 57          # N, d_m, k_e, k_c, P
    elm-neuro budget --preset shd-adding --d-m 9 --params 77000  # solve the N closest to P
    elm-neuro budget --preset enwik8 --d-m 20 --n 742 --set learn_tau=true

Any configuration field can be overridden with ``--set FIELD=VALUE`` (VALUE parsed as JSON
when it can be: numbers, true/false, null; else taken as a string). No setting is dropped
silently: the same field given twice (``--set d_m=3 --set d_m=4``, or ``--d-m 4 --set d_m=4``,
also through a flat name and its dotted path) is refused saying which to keep
(:func:`parse_overrides`, :func:`merge_flags`), and a value of the wrong type for its field is
refused naming both (:func:`elm_neuro.networks.registry.resolve_model_config`). ``train``,
``compare`` and ``sweep`` parse their ``--set`` and ``--train-set`` here too.
"""
from __future__ import annotations

import argparse
import json

from elm_neuro.networks.presets import PRESETS
from elm_neuro.networks.registry import MODEL_FAMILIES, preset_family, resolve_model_config


def shown(value) -> str:
    """A parsed ``--set`` value as it would be typed (strings bare, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def parse_overrides(items: list[str] | None, option: str = "--set") -> dict:
    """``["a=1", "b=relu"]`` -> ``{"a": 1, "b": "relu"}``; a field named twice is refused."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{option} expects FIELD=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in out:
            given = option if option.endswith(":") else option + " "  # "--set d_m=..." / "--set elm:d_m=..."
            raise ValueError(f"{key} is given twice: {given}{key}={shown(out[key])} and {given}"
                             f"{key}={shown(value)}; keep one")
        out[key] = value
    return out


def _same_field(cfg_cls, a: str, b: str) -> bool:
    if a == b:
        return True
    if cfg_cls is None:
        return False
    try:
        return cfg_cls.same_field(a, b)
    except ValueError:  # an unknown name: refused later, where the configuration is resolved
        return False


def merge_flags(overrides: dict, flags: dict, cfg_cls=None, option: str = "--set") -> dict:
    """``overrides`` with the fields of the flags given added: ``flags`` maps a field to
    ``(flag, value)`` (None: the flag was not given). A flag and an override of the same field
    (its name, or a name addressing the same field of ``cfg_cls``) are refused, even with equal
    values, saying which to keep."""
    out = dict(overrides)
    for name, (flag, value) in flags.items():
        if value is None:
            continue
        for key in overrides:
            if _same_field(cfg_cls, key, name):
                given = f"{option} {key}={shown(overrides[key])}"
                raise ValueError(f"{name} is given twice: {flag} {value} and {given}; keep one: drop {given} "
                                 f"(or {flag} {value})")
        out[name] = value
    return out


def preset_class(preset: str | None, family: str | None = None):
    """The configuration class of ``preset`` (or of ``family``); None when neither names one."""
    try:
        return MODEL_FAMILIES[preset_family(preset) if preset else family][0]
    except (ValueError, KeyError):
        return None


def config_from_args(preset: str, d_m: int | None, n: int | None, params: int | None, overrides: dict):
    """The preset's config with overrides, ``d_m`` and ``n`` (or the size solved for ``params``)."""
    if n is not None and params is not None:
        raise ValueError("give either --n or --params, not both")
    fields = merge_flags(overrides, {"d_m": ("--d-m", d_m), "n": ("--n", n)}, preset_class(preset))
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
