"""Entry point of the ``elm-neuro`` console script.

Each command group lives in its own module of this package and exposes
``register(subparsers)``, which adds its sub-parser(s) and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning an exit code) as the parser default.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Command-group modules, in the order they appear in ``elm-neuro --help``.
COMMAND_MODULES = (
    "elm_neuro.cli.data",
    "elm_neuro.cli.budget",
    "elm_neuro.cli.train",
    "elm_neuro.cli.compare",
    "elm_neuro.cli.sweep",
    "elm_neuro.cli.analyze",
    "elm_neuro.cli.demo",
    "elm_neuro.cli.sample",
    "elm_neuro.cli.export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elm-neuro",
        description="Recurrent networks of expressive (ELM) neurons and spiking baselines.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input: a one-line message naming what was wrong, no traceback.
        print(f"elm-neuro {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
