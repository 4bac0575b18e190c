"""Sweep tables: read / write, aggregate over seeds, Pareto frontier across budgets.

A sweep table is a list of row dicts, one row per trained network (one configuration and one
seed), e.g. read from a ``results.csv`` with columns such as

    n, d_m, k_e, k_c, p, seed, test_acc, valid_acc, test_loss, test_bpc, wall_s

Budget vocabulary (docs/design.md §3): ``n`` hidden neurons, ``k_c`` synapses per hidden neuron, ``k_e``
internal parameters per hidden neuron, ``p`` trainable parameters of the whole network.

Aggregation
    Rows with equal configuration keys (default: every column that is not a metric, not the
    seed and not a per-run bookkeeping column) form one *cell*. For each metric ``M`` the cell
    gets ``M_mean`` (mean over the finite values of its seeds), ``M_std`` (sample standard
    deviation, ``ddof = 1``; 0 for a single seed) and ``M_count`` (number of finite values), and
    ``n_seeds`` (number of rows in the cell).

Direction of a metric
    Accuracies are better when higher (names containing ``acc``), everything else (losses,
    bits per character, wall time) when lower; every function that needs the direction also
    takes an explicit ``maximize`` flag.

Pareto frontier
    A point ``(p_i, L_i)`` (parameters, loss; lower is better for both) is *dominated* when some
    other point has ``p_j <= p_i`` and ``L_j <= L_i`` with at least one inequality strict. The
    frontier is the set of non-dominated points; sorted by ``p`` its losses strictly decrease.
    Exact duplicates are represented once (the first occurrence).

Budget buckets
    Fixed-budget sweeps size ``N`` to a target ``P``, so the actual ``P`` of a bucket scatters by
    a few per cent (docs/design.md §4: 74109..77310 at the 77K target). Sorted budgets are cut into buckets
    whenever a value exceeds the smallest value of the current bucket by more than the relative
    tolerance ``rel_tol``; a bucket is labelled by the geometric mean of its budgets. A table
    column naming the target budget can be used instead (``bucket_key``).
"""
from __future__ import annotations

import csv
import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from elm_neuro.atomic import atomic_output

#: Columns that describe a run rather than a configuration (never grouping keys).
RUN_COLUMNS = ("seed", "model_seed", "wall_s", "epochs", "steps", "run_id", "path", "status", "timestamp")
#: Column names (or name fragments) that are metrics.
METRIC_HINTS = ("acc", "loss", "bpc", "bits", "error", "err")


# --------------------------------------------------------------------------- parsing / IO
def parse_cell(text: str):
    """A CSV cell as a Python value: ``int``, ``float`` (``nan``/``inf`` too), ``bool``, ``None``
    for an empty cell, otherwise the string itself."""
    if text is None:
        return None
    s = text.strip()
    if s == "":
        return None
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def read_table(path) -> list[dict]:
    """Rows of a sweep-table CSV (header line first) with numeric cells parsed (:func:`parse_cell`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ValueError(f"path {os.fspath(path)!r} is not an existing file")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise ValueError(f"path {os.fspath(path)!r} has no header line")
        return [{k: parse_cell(v) for k, v in row.items() if k is not None} for row in reader]


def table_columns(rows: Sequence[dict]) -> list[str]:
    """Union of the rows' keys in first-seen order."""
    cols: dict[str, None] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, None)
    return list(cols)


def _format_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # shortest exact round-trip representation
    return str(v)


def write_table(rows: Sequence[dict], path, columns: Optional[Sequence[str]] = None) -> str:
    """Write ``rows`` to a CSV at ``path`` atomically (temp file + ``os.replace``); return the path.

    ``columns`` fixes the column order (default: :func:`table_columns`); missing cells are empty.
    Floats are written exactly (``repr``) so that ``read_table(write_table(rows))`` gives ``rows``.
    """
    _check_rows(rows)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    cols = list(columns) if columns is not None else table_columns(rows)
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in rows:
                w.writerow([_format_cell(r.get(c)) for c in cols])
    return path


# --------------------------------------------------------------------------- helpers
def _check_rows(rows) -> None:
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("rows must be a list of dicts (one per run)")


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def is_metric(name: str) -> bool:
    """Whether a column name looks like a metric (contains acc / loss / bpc / bits / err)."""
    low = name.lower()
    return any(h in low for h in METRIC_HINTS)


def higher_is_better(metric: str) -> bool:
    """``True`` for accuracies (name contains ``acc``), ``False`` for losses and the rest."""
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a column name (str), got {metric!r}")
    return "acc" in metric.lower()


def column(rows: Sequence[dict], key: str, dtype=float) -> np.ndarray:
    """The values of ``key`` over ``rows`` as an array (missing / None cells become NaN)."""
    _check_rows(rows)
    if not any(key in r for r in rows):
        raise ValueError(f"key {key!r} is not a column of the table; columns: {table_columns(rows)}")
    vals = [r.get(key) for r in rows]
    if dtype is float:
        return np.array([float(v) if _is_number(v) else np.nan for v in vals], dtype=float)
    return np.array(vals, dtype=dtype)


def config_keys(rows: Sequence[dict], exclude: Iterable[str] = ()) -> list[str]:
    """Default grouping keys: every column that is neither a metric nor a run column."""
    ex = set(exclude) | set(RUN_COLUMNS)
    return [c for c in table_columns(rows) if c not in ex and not is_metric(c)]


def metric_columns(rows: Sequence[dict], keys: Iterable[str] = ()) -> list[str]:
    """Numeric columns that are metrics (plus ``wall_s``) and not grouping keys."""
    keys = set(keys)
    out = []
    for c in table_columns(rows):
        if c in keys or c == "seed":
            continue
        if (is_metric(c) or c == "wall_s") and any(_is_number(r.get(c)) for r in rows):
            out.append(c)
    return out


def _key_of(row: dict, keys: Sequence[str]) -> tuple:
    return tuple(row.get(k) for k in keys)


def group_rows(rows: Sequence[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Rows grouped by the tuple of their ``keys`` values (insertion ordered)."""
    _check_rows(rows)
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"keys must be a sequence of column names, got {keys!r}")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(_key_of(r, keys), []).append(r)
    return groups


def aggregate(
    rows: Sequence[dict],
    keys: Optional[Sequence[str]] = None,
    metrics: Optional[Sequence[str]] = None,
) -> list[dict]:
    """One row per configuration cell with mean / std / count of every metric over seeds.

    For metric ``M`` and the finite values ``x_1..x_k`` of a cell:
    ``M_mean = sum x_i / k``, ``M_std = sqrt(sum (x_i - mean)^2 / (k - 1))`` (0 when ``k = 1``,
    NaN when ``k = 0``), ``M_count = k``. ``n_seeds`` is the number of rows in the cell.

    Args:
        rows: per-run rows.
        keys: grouping columns (default :func:`config_keys`).
        metrics: metric columns (default :func:`metric_columns`).
    """
    _check_rows(rows)
    if not rows:
        raise ValueError("rows must not be empty")
    keys = list(config_keys(rows) if keys is None else keys)
    metrics = list(metric_columns(rows, keys) if metrics is None else metrics)
    cols = table_columns(rows)
    for m in metrics:
        if m not in cols:
            raise ValueError(f"metrics: {m!r} is not a column of the table; columns: {cols}")
    out = []
    for key, grp in group_rows(rows, keys).items():
        agg = dict(zip(keys, key))
        agg["n_seeds"] = len(grp)
        for m in metrics:
            v = np.array([float(r[m]) for r in grp if _is_number(r.get(m)) and math.isfinite(float(r[m]))])
            agg[f"{m}_count"] = int(v.size)
            agg[f"{m}_mean"] = float(v.mean()) if v.size else float("nan")
            agg[f"{m}_std"] = float(v.std(ddof=1)) if v.size > 1 else (0.0 if v.size == 1 else float("nan"))
        out.append(agg)
    return out


# --------------------------------------------------------------------------- Pareto / budgets
def pareto_frontier(p, loss) -> np.ndarray:
    """Indices of the non-dominated points of ``(p, loss)``, sorted by increasing ``p``.

    Lower is better in both coordinates. Sorting by ``(p, loss)`` and sweeping, a point is on
    the frontier iff its loss is strictly below the minimum loss of every point before it (every
    point with fewer or equal parameters). Points with a NaN coordinate are ignored.
    """
    p = np.asarray(p, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if p.ndim != 1 or loss.ndim != 1:
        raise ValueError(f"p and loss must be 1-D, got shapes {p.shape} and {loss.shape}")
    if p.shape != loss.shape:
        raise ValueError(f"p and loss must have the same length, got {p.size} and {loss.size}")
    ok = np.isfinite(p) & np.isfinite(loss)
    idx = np.nonzero(ok)[0]
    order = idx[np.lexsort((idx, loss[idx], p[idx]))]  # by p, then loss, then position
    front, best = [], math.inf
    for i in order:
        if loss[i] < best:
            front.append(i)
            best = loss[i]
    return np.array(front, dtype=int)


def budget_buckets(p, rel_tol: float = 0.1) -> np.ndarray:
    """Bucket label (geometric mean budget of the bucket) of each budget in ``p``.

    Sorted budgets open a new bucket whenever ``p > (1 + rel_tol) * p_first`` where ``p_first``
    is the smallest budget of the current bucket.
    """
    p = np.asarray(p, dtype=float)
    if p.ndim != 1 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("p must be a 1-D array of finite budgets > 0")
    if not (isinstance(rel_tol, (int, float)) and rel_tol >= 0):
        raise ValueError(f"rel_tol must be a number >= 0, got {rel_tol!r}")
    order = np.argsort(p, kind="stable")
    labels = np.empty_like(p)
    start, members = None, []

    def close():
        labels[members] = float(np.exp(np.mean(np.log(p[members]))))

    for i in order:
        if start is None or p[i] > (1 + rel_tol) * start:
            if members:
                close()
            start, members = p[i], []
        members.append(i)
    if members:
        close()
    return labels


def _directed(values: np.ndarray, maximize: bool) -> np.ndarray:
    return -values if maximize else values


def best_per_budget(
    cells: Sequence[dict],
    metric: str,
    maximize: Optional[bool] = None,
    p_key: str = "p",
    rel_tol: float = 0.1,
    bucket_key: Optional[str] = None,
) -> list[dict]:
    """For each budget bucket the cell with the best mean metric, sorted by budget.

    ``cells`` are aggregated rows (:func:`aggregate`); ``metric`` is the raw metric name (its
    ``metric + '_mean'`` column is used; a plain ``metric`` column works too). Returned rows are
    copies with ``p_bucket`` added (the bucket label, or the ``bucket_key`` value).
    """
    _check_rows(cells)
    if not cells:
        raise ValueError("cells must not be empty")
    maximize = higher_is_better(metric) if maximize is None else bool(maximize)
    col = _mean_col(cells, metric)
    vals = column(cells, col)
    if bucket_key is not None:
        buckets = column(cells, bucket_key)
    else:
        buckets = budget_buckets(column(cells, p_key), rel_tol)
    out = []
    for b in sorted(set(buckets[np.isfinite(buckets)].tolist())):
        members = np.nonzero((buckets == b) & np.isfinite(vals))[0]
        if members.size == 0:
            continue
        best = members[np.argmin(_directed(vals[members], maximize))]
        row = dict(cells[best])
        row["p_bucket"] = float(b)
        out.append(row)
    return out


def pareto_rows(
    cells: Sequence[dict], metric: str, maximize: Optional[bool] = None, p_key: str = "p"
) -> list[dict]:
    """The cells on the Pareto frontier of (``p_key``, metric), sorted by budget."""
    _check_rows(cells)
    maximize = higher_is_better(metric) if maximize is None else bool(maximize)
    vals = column(cells, _mean_col(cells, metric))
    idx = pareto_frontier(column(cells, p_key), _directed(vals, maximize))
    return [dict(cells[i]) for i in idx]


def _mean_col(cells: Sequence[dict], metric: str) -> str:
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a column name (str), got {metric!r}")
    cols = table_columns(cells)
    if metric + "_mean" in cols:
        return metric + "_mean"
    if metric in cols:
        return metric
    raise ValueError(f"metric {metric!r}: neither {metric + '_mean'!r} nor {metric!r} is a column; columns: {cols}")


def cell_values(rows: Sequence[dict], cell: dict, keys: Sequence[str], metric: str) -> np.ndarray:
    """The finite per-seed values of ``metric`` of the runs in ``rows`` matching ``cell`` on ``keys``."""
    target = _key_of(cell, keys)
    v = [float(r[metric]) for r in rows if _key_of(r, keys) == target and _is_number(r.get(metric))]
    v = np.array(v, dtype=float)
    return v[np.isfinite(v)]
