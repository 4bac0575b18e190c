"""A sweep's results table, rebuilt from its run directories, and the CSV writer of results tables.

``SWEEP_DIR/results.csv`` (:func:`write_results`) is rebuilt from the run directories (finished
cells only) after every cell and at the end, and written atomically; it never holds a cell twice
and never loses one. Columns: ``run_id`` (the cell name), ``task``, ``family``, ``seed``,
``p_target``, ``p``, ``n``, ``k_e``, ``k_c``, ``d_m``, the metrics of ``summary.json``
(``valid_acc``, ``test_acc``, ``*_loss``, ``*_bpc``), ``wall_s``, ``epochs``, ``steps``,
``p_hidden``, ``readout_k``, ``readout_reach``, ``readout_coverage`` and ``budget_scope`` (what the
sweep planned, from ``sweep_cell.json``: the hidden layer's parameters, the readout's synapses per
class neuron, how many hidden neurons it reads and their fraction of N), ``data_source`` (what the cell trained on, from config.json's ``data``: ``real``, ``spoken``, ``synthetic``,
``builtin-corpus``, ``unknown``; empty for runs that did not record it), ``data_dataset``,
``data_detail`` and ``data_sha256`` (a digest of the sha256 of every data file the run read, so
that two tables can be told to come from the same files), the training fields that shape a
result (:data:`TRAIN_FIELDS`: optimizer, ``lr``, batch size and count, warm-up, clipping, bin
width, window, channel pooling, evaluation batches), then every flat field of the resolved model
configuration (``d_tree``, ``d_brch``, ...; its ``seed`` field, the wiring seed, as
``model_seed``) and every field of the readout's configuration as ``readout.<field>`` (the
notation of a plan's fixed fields). Rows are in natural order of ``run_id``.

:func:`config_columns` lists, for any such rows, the configuration and provenance columns beyond
the leading ones, so that a table built from these rows (a plan's results.csv) can keep them.

:func:`write_csv` writes any results table, this one and a plan's
(:func:`elm_neuro.experiments.reproduce.write_results_csv`), in one format: a header of the
given columns, ``\\n`` line ends, an empty cell for a missing value or None, floats as ``repr``
(every digit, read back exactly by :func:`elm_neuro.analysis.sweep_table.read_table`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Sequence

from elm_neuro.analysis.sweep_table import is_metric
from elm_neuro.atomic import save_text
from elm_neuro.experiments.sweep_plan import CELL_FILE
from elm_neuro.networks.registry import config_from_dict
from elm_neuro.training.run import RunDir

_LEAD = ("run_id", "task", "family", "seed", "p_target", "p", "n", "k_e", "k_c", "d_m")
_TAIL = ("wall_s", "epochs", "steps")
#: Training fields of config.json recorded as columns (what, besides the model, shapes a result).
TRAIN_FIELDS = ("optimizer", "lr", "batch_size", "batches_per_epoch", "warmup", "clip", "bin_ms", "digit_window_s",
                "channel_factor", "valid_batches", "test_batches")
#: What the sweep planned for a cell (sweep_cell.json's ``planned``): the hidden layer's parameters
#: and how much of it the readout sees (:class:`~elm_neuro.experiments.sweep_plan.SweepCell`).
PLAN_FIELDS = ("p_hidden", "readout_k", "readout_reach", "readout_coverage")
#: Data provenance columns (from config.json's ``data``).
DATA_FIELDS = ("data_source", "data_dataset", "data_detail", "data_sha256")


# --------------------------------------------------------------------------- CSV
def cell_text(v) -> str:
    """A value as its CSV cell: empty for None, ``repr`` for a float, else ``str``."""
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_csv(rows: Sequence[dict], columns: Sequence[str], path) -> Path:
    """Write ``rows`` under the header ``columns`` to ``path`` atomically (module docstring); a
    column a row lacks is an empty cell. Returns the path."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(columns))
    for r in rows:
        w.writerow([cell_text(r.get(c)) for c in columns])
    path = Path(path)
    save_text(buf.getvalue(), path)
    return path


# --------------------------------------------------------------------------- the sweep's table
def _is_summary_metric(k: str) -> bool:
    return k.startswith(("valid_", "test_")) and is_metric(k)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _scalar(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, tuple, dict)) else v


def _data_columns(data: dict) -> dict:
    """``data_source`` (None: not recorded), ``data_dataset``, ``data_detail``, ``data_sha256`` of a
    run's config.json ``data`` section."""
    files = data.get("files") or []
    sums = sorted(str(f.get("sha256")) for f in files if isinstance(f, dict) and f.get("sha256"))
    digest = hashlib.sha256("\n".join(sums).encode()).hexdigest()[:16] if sums else None
    return {"data_source": data.get("source"), "data_dataset": data.get("dataset"), "data_detail": data.get("detail"),
            "data_sha256": digest}


def _readout_fields(model_config: dict) -> dict:
    """The readout's own configuration fields (the ELM readout of every family that has one)."""
    for key in ("readout", "elm_readout"):
        sub = model_config.get(key)
        if isinstance(sub, dict):
            return dict(sub)
    return {}


def config_columns(rows: Sequence[dict]) -> list[str]:
    """The configuration and provenance columns of ``rows`` beyond :data:`_LEAD`, the metrics and
    :data:`_TAIL`, in first-seen order: the data provenance, :data:`TRAIN_FIELDS`, the model's
    flat fields and ``readout.*``."""
    skip = set(_LEAD) | set(_TAIL) | {"stage"}
    cols: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k not in skip and not _is_summary_metric(k):
                cols.setdefault(k, None)
    return list(cols)


def collect_results(out) -> list[dict]:
    """One row per finished cell under ``out/cells`` (module docstring), in natural name order."""
    root = Path(out) / "cells"
    rows = []
    if not root.is_dir():
        return rows
    for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name)):
        run = RunDir(d)
        summary = run.read_summary()
        if summary is None or summary.get("status") != "completed" or not run.config.is_file():
            continue
        conf = run.read_config()
        meta = json.loads((d / CELL_FILE).read_text()) if (d / CELL_FILE).is_file() else {}
        row = {"run_id": d.name, "task": conf["train"]["task"], "family": summary.get("family"),
               "seed": summary.get("seed", conf["train"]["seed"]), "p_target": meta.get("p_target")}
        for k in ("p", "n", "k_e", "k_c", "d_m"):
            row[k] = summary.get(k)
        for k in sorted(summary):
            if _is_summary_metric(k) and isinstance(summary[k], (int, float)) and not isinstance(summary[k], bool):
                row[k] = summary[k]
        for k in _TAIL:
            row[k] = summary.get(k)
        planned = meta.get("planned") or {}
        for k in PLAN_FIELDS:
            if k in planned:
                row[k] = planned[k]
        if "budget_scope" in meta:
            row["budget_scope"] = meta["budget_scope"]
        for k, v in run_config_columns(conf).items():
            row.setdefault(k, v)
        rows.append(row)
    return rows


def run_config_columns(conf: dict) -> dict:
    """The configuration columns of one run's config.json: the data provenance (:data:`DATA_FIELDS`),
    :data:`TRAIN_FIELDS`, every flat model field (the wiring seed as ``model_seed``) and the
    readout's fields as ``readout.<field>``."""
    cols = _data_columns(conf.get("data") or {})
    for k in TRAIN_FIELDS:
        if k in conf["train"]:
            cols[k] = _scalar(conf["train"][k])
    model_fields = config_from_dict(conf["model"]["family"], conf["model"]["config"]).flat()
    for k, v in sorted(model_fields.items()):
        cols.setdefault("model_seed" if k == "seed" else k, _scalar(v))
    for k, v in sorted(_readout_fields(conf["model"]["config"]).items()):
        cols.setdefault(f"readout.{k}", _scalar(v))
    return cols


def write_results(out) -> Path:
    """Rebuild ``out/results.csv`` from the finished cells (atomic write); returns its path."""
    rows = collect_results(out)
    cols: dict[str, None] = {c: None for c in _LEAD}
    for c in sorted({k for r in rows for k in r if _is_summary_metric(k)}):
        cols.setdefault(c, None)
    for c in _TAIL:
        cols.setdefault(c, None)
    for r in rows:
        for k in r:
            cols.setdefault(k, None)
    return write_csv(rows, list(cols), Path(out) / "results.csv")
