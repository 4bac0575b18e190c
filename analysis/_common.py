"""Shared argument handling of the analysis scripts (not a package: run the scripts directly)."""
from __future__ import annotations

import sys
from pathlib import Path


def results_rows(sweep_dir: str) -> list[dict]:
    """The rows of ``SWEEP_DIR/results.csv`` (exit with a one-line message when it is missing)."""
    from elm_neuro.analysis.sweep_table import read_table

    path = Path(sweep_dir) / "results.csv"
    if not path.is_file():
        sys.exit(f"{path} not found: run `elm-neuro sweep ... --out {sweep_dir}` first")
    return read_table(path)
