"""The sweep report: figures and fits from a sweep's ``results.csv`` (see
:mod:`elm_neuro.experiments.sweep_results` for how the table is made).

From ``results.csv`` alone: metric vs N at fixed P (the paper's points (docs/design.md §9) overlaid only when
the sweep matches them: same task and family, a budget within 10 % of the paper's, the real data,
the paper's metric; otherwise report.md says why they are left out, see :func:`reference_overlay`),
metric vs each axis, the (N, d_m) heatmap, the Pareto frontier across budgets,
the scaling law along the frontier (>= 3 budgets), the information model of docs/design.md §11 (>= free
parameters + 2 cells) with its predicted optimum for the next budget; ``report.md`` lists every
figure and number, ``report.json`` the numbers. Fits that lack data are skipped with a line
saying why.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from elm_neuro import defaults as D
from elm_neuro.analysis import information_model as im
from elm_neuro.analysis import scaling
from elm_neuro.analysis import sweep_table as st
from elm_neuro.analysis import tradeoff_plots as tp
from elm_neuro.atomic import save_json, save_text
from elm_neuro.data.provenance import data_provenance
from elm_neuro.networks.budget import closest_n
from elm_neuro.networks.registry import MODEL_FAMILIES


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def json_safe(obj):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def default_metric(rows: Sequence[dict]) -> str:
    """``test_acc`` when present, else ``test_bpc``, else ``test_loss``."""
    for m in ("test_acc", "test_bpc", "test_loss"):
        if any(_num(r.get(m)) for r in rows):
            return m
    raise ValueError("rows: no test_acc, test_bpc or test_loss values; give the metric explicitly")


def task_information(task: Optional[str], rows: Sequence[dict], h_y: Optional[float] = None,
                     chance: Optional[float] = None) -> tuple[float, Optional[float]]:
    """Label entropy ``H(Y)`` (bits) and chance accuracy for the information model.

    SHD-Adding: the triangular sum distribution of two digits (4.03 bits, chance 0.10); SHD:
    uniform over 20 classes; otherwise (Enwik8) ``log2(n_classes)``, an upper bound of the unigram
    entropy (give ``h_y`` for the real one). Explicit values win.
    """
    if task == "shd-adding":
        probs = im.adding_label_probs(10)
        h, c = im.label_entropy(probs), float(np.max(probs))
    else:
        classes = [r["n_classes"] for r in rows if _num(r.get("n_classes"))]
        k = int(classes[0]) if classes else (20 if task == "shd" else None)
        if k is None:
            if h_y is None:
                raise ValueError("h_y: the label entropy is unknown for this table (no n_classes column); give h_y")
            h, c = float(h_y), chance
        else:
            h, c = math.log2(k), 1.0 / k
    return (float(h_y) if h_y is not None else h), (float(chance) if chance is not None else c)


def _distinct(rows, key) -> list:
    return sorted({r[key] for r in rows if _num(r.get(key))})


def _budget_labels(rows) -> list[float]:
    p = [float(r["p"]) for r in rows if _num(r.get("p"))]
    return sorted(set(st.budget_buckets(p).tolist())) if p else []


def _grid_data_provenance(sweep_dir, task: Optional[str]) -> Optional[dict]:
    """The provenance of the data folder named by ``SWEEP_DIR/sweep.json`` (checked now), or None."""
    path = Path(sweep_dir) / "sweep.json"
    if task is None or not path.is_file():
        return None
    try:
        base = json.loads(path.read_text())["grid"]["base"]
    except (ValueError, KeyError, TypeError):
        return None
    return data_provenance(task, base.get("data_dir"))


def reference_overlay(rows: Sequence[dict], metric: str, task: Optional[str], sweep_dir=None) -> dict:
    """Whether the paper's points (docs/design.md §9) belong on this sweep's figures, and why (not).

    They do only when :func:`elm_neuro.analysis.tradeoff_plots.reference_mismatch` finds nothing:
    the same task and family (ELM Network), a budget of the sweep within 10 % of the paper's P,
    the paper's metric, and real data in every cell (the ``data_source`` column that sweeps
    record from each run's config.json; for tables without it, the data folder of
    ``sweep_dir/sweep.json`` is checked now). Returns ``{"reference": task or None, "label",
    "reason": None or the reasons, "data": [sources]}``.
    """
    sources = [r.get("data_source") for r in rows]
    if all(s is None for s in sources) and sweep_dir is not None:
        prov = _grid_data_provenance(sweep_dir, task)
        if prov is not None:
            sources = [prov["source"]]
    fams = sorted({r["family"] for r in rows if r.get("family")})
    reason = tp.reference_mismatch(task, metric, _budget_labels(rows), fams, sources)
    ref = task if reason is None else None
    return {"reference": ref, "label": tp.reference_label(ref) if ref else None, "reason": reason,
            "data": sorted({"not recorded" if s is None else str(s) for s in sources})}


def tradeoff_figures(rows: Sequence[dict], out_dir, metric: str, task: Optional[str] = None,
                     overlay: Optional[dict] = None) -> dict:
    """The trade-off figures of a sweep table in ``out_dir``: ``{"figures": [(caption, file)],
    "skipped": [line], "reference": overlay}`` (metric vs N, with the paper's points when
    ``overlay`` (default :func:`reference_overlay` of ``rows``) allows them, vs each varying axis,
    the (N, d_m) heatmap, the Pareto frontier across budgets)."""
    out_dir = Path(out_dir)
    rows = [r for r in rows if _num(r.get(metric))]
    if not rows:
        raise ValueError(f"metric: no row has a finite {metric!r} value")
    if overlay is None:
        overlay = reference_overlay(rows, metric, task)
    ref = overlay["reference"]
    figs, skipped = [], []
    label = metric.replace("_", " ")
    # curves per planned budget where the sweep has one (a solved network can miss it by > 10 %)
    p_key = "p_target" if all(_num(r.get("p_target")) for r in rows) else "p"
    if len(_distinct(rows, "n")) >= 1:
        tp.plot_metric_vs_n(rows, metric, out_dir / "metric_vs_n.png", reference=ref, p_key=p_key)
        figs.append((f"{label} vs N at fixed P"
                     + (f" (black stars: the paper's points, docs/design.md §9: {overlay['label']})" if ref else ""),
                     "metric_vs_n.png"))
    for axis in ("d_m", "k_c", "k_e"):
        vals = _distinct(rows, axis)
        if len(vals) >= 2:
            tp.plot_metric_vs_axis(rows, metric, axis, out_dir / f"metric_vs_{axis}.png",
                                   reference=ref if axis in ("d_m", "k_e") else None, p_key=p_key)
            figs.append((f"{label} vs {axis}", f"metric_vs_{axis}.png"))
        else:
            skipped.append(f"{label} vs {axis}: skipped, {axis} takes {len(vals)} value(s) in this sweep")
    tp.plot_single_axes(rows, metric, out_dir / "single_axes.png")
    figs.append((f"{label} against each axis", "single_axes.png"))
    if len(_distinct(rows, "d_m")) >= 2 and len(_distinct(rows, "n")) >= 2:
        tp.plot_heatmap(rows, metric, out_dir / "heatmap_n_dm.png")
        figs.append((f"{label} over (N, d_m)", "heatmap_n_dm.png"))
    else:
        skipped.append("(N, d_m) heatmap: skipped, needs at least 2 values of both N and d_m")
    n_budgets = len(_budget_labels(rows))
    if n_budgets >= 2:
        tp.plot_pareto(rows, metric, out_dir / "pareto.png")
        figs.append((f"{label}: Pareto frontier across budgets", "pareto.png"))
    else:
        skipped.append(f"Pareto frontier: skipped, needs at least 2 budgets, the sweep has {n_budgets}")
    return {"figures": figs, "skipped": skipped, "reference": overlay}


def scaling_analysis(rows: Sequence[dict], out_dir, metric: str, n_boot: int = D.REPORT_N_BOOT,
                     seed: int = D.REPORT_SEED) -> dict:
    """``L*(P) = L_inf + A P^-alpha`` along the frontier (>= 3 budgets), its plot and numbers;
    ``{"skipped": reason}`` when the sweep has fewer budgets."""
    rows = [r for r in rows if _num(r.get(metric))]
    n_budgets = len(_budget_labels(rows))
    if n_budgets < 3:
        return {"skipped": f"needs at least 3 budgets, the sweep has {n_budgets}"}
    fs = scaling.frontier_scaling(rows, metric, n_boot=n_boot, seed=seed)
    ylabel = f"1 - {metric}" if fs.transformed != "loss" else metric
    path = scaling.plot_scaling(fs.law, Path(out_dir) / "scaling.png", growth=fs.growth, ylabel=ylabel)
    law = fs.law
    return {
        "loss": ylabel, "l_inf": law.l_inf, "a": law.a, "alpha": law.alpha, "stderr": law.stderr, "ci": law.ci,
        "ci_level": law.ci_level, "r2": law.r2, "bootstrap": law.bootstrap_mode, "n_boot": int(law.bootstrap.shape[0]),
        "frontier": [{k: c.get(k) for k in ("p", "n", "d_m", "k_e", "k_c", f"{metric}_mean", f"{metric}_std",
                                             "n_seeds")} for c in fs.frontier],
        "growth": {k: {"a": g.a, "b": g.b, "b_stderr": g.b_stderr, "ci": g.ci, "r2": g.r2}
                   for k, g in fs.growth.items()},
        "figure": Path(path).name,
    }


def _config_from_row(row: dict):
    """The model configuration of a results row (every flat model field is a column), or None."""
    fam = row.get("family")
    if fam not in MODEL_FAMILIES:
        return None
    cls = MODEL_FAMILIES[fam][0]
    defaults = cls.make().flat()
    fields = {}
    for f in cls.flat_names():
        key = "model_seed" if f == "seed" else f
        if key in row:
            v = row[key]
            if isinstance(v, str) and v[:1] in "[{":
                v = json.loads(v)
            if isinstance(v, float) and v.is_integer() and isinstance(defaults.get(f), int):
                v = int(v)
            fields[f] = v
    try:
        return cls.from_dict(fields)
    except (TypeError, ValueError):
        return None


def _next_budget(budgets: list[float]) -> int:
    """The budget after the largest: the same ratio as between the two largest, else x4."""
    b = sorted(budgets)
    ratio = b[-1] / b[-2] if len(b) >= 2 else 4.0
    return int(round(b[-1] * ratio))


def information_analysis(rows: Sequence[dict], out_dir, metric: str, task: Optional[str] = None,
                         h_y: Optional[float] = None, chance: Optional[float] = None, n_boot: int = 0,
                         seed: int = 0) -> dict:
    """Fit the docs/design.md §11 information model to a sweep table; predicted optimum at each budget and
    at the next one; residual, surface and optimum-path figures. ``{"skipped": reason}`` when the
    table has fewer configuration cells than free parameters + 2.

    The optimum is searched over the ``k_e`` values reachable by the family (``d_m = 1..256`` for
    the ELM, from the model configuration in the table) with integer ``N`` under the affine budget
    ``P = N (k_c + k_e) + P_fixed`` (``P_fixed`` estimated from the table); without a
    reconstructible configuration ``k_e`` is continuous.
    """
    rows = [r for r in rows if all(_num(r.get(k)) for k in ("n", "k_e", "k_c", metric))]
    if not rows:
        return {"skipped": f"no row has finite n, k_e, k_c and {metric}"}
    kind = "accuracy" if st.higher_is_better(metric) else "loss"
    n_free = 6 + (1 if kind == "accuracy" else 0) - (2 if len(_distinct(rows, "k_c")) == 1 else 0)
    cells = st.aggregate(rows, metrics=[metric])
    if len(cells) < n_free + 2:
        return {"skipped": f"needs at least {n_free + 2} configuration cells ({n_free} free parameters + 2), "
                           f"the sweep has {len(cells)}"}
    h, ch = task_information(task, rows, h_y, chance)
    low = metric.lower()
    to_bits = 1.0 if ("bpc" in low or "bits" in low) else 1.0 / math.log(2)
    fit = im.fit_information_model_rows(rows, metric, h, kind=kind, chance=ch if kind == "accuracy" else None,
                                        to_bits=to_bits, n_boot=n_boot, seed=seed)
    pf = im.estimate_p_fixed(rows)
    kcs = _distinct(rows, "k_c")
    cfg = _config_from_row(rows[0])
    ke_to_dm = {}
    if cfg is not None and hasattr(cfg, "d_m"):
        for d in range(1, 257):
            try:
                ke_to_dm.setdefault(float(cfg.replace(d_m=d).budget().k_e), d)
            except ValueError:
                continue
    budgets = sorted({float(r["p_target"]) for r in rows if _num(r.get("p_target"))}) or _budget_labels(rows)
    nxt = _next_budget(budgets)
    best_cells = {round(c["p_bucket"]): c for c in st.best_per_budget(cells, metric)}
    path_rows, optima = [], []
    for b in budgets + [float(nxt)]:
        kw = dict(k_e_values=sorted(ke_to_dm), integer_n=True) if ke_to_dm else {}
        try:
            opt = im.optimal_allocation(fit.params, b, kcs, p_fixed=pf, h_y=h, **kw)
        except ValueError as exc:
            optima.append({"budget": b, "error": str(exc)})
            continue
        path_rows.append(opt)
        row = {"budget": b, "next": b == float(nxt) and b not in budgets, "n": opt["n"], "k_e": opt["k_e"],
               "k_c": opt["k_c"], "d_m": ke_to_dm.get(float(opt["k_e"])),
               "predicted": float(fit.predict(opt["n"], opt["k_e"], opt["k_c"])) / (to_bits if kind == "loss" else 1.0)}
        if row["d_m"] is not None and cfg is not None and getattr(cfg, "SIZE_FIELD", "n") == "n":
            sized = cfg.replace(d_m=row["d_m"])
            if hasattr(sized, "d_brch") and hasattr(sized, "d_tree") and opt["k_c"] % sized.d_tree == 0:
                sized = sized.replace(d_brch=int(opt["k_c"] // sized.d_tree))
            try:
                row["n_solver"] = closest_n(lambda k: sized.replace(n=k).budget().p, int(b))
            except ValueError:
                row["n_solver"] = None
        near = [c for k, c in best_cells.items() if abs(k - b) <= 0.1 * b]
        if near:
            c = near[0]
            row["observed_best"] = {"n": c.get("n"), "d_m": c.get("d_m"), "k_e": c.get("k_e"),
                                    "value": c.get(f"{metric}_mean")}
        optima.append(row)
    out_dir = Path(out_dir)
    figs = [("information model: observed vs predicted, residuals vs N",
             Path(im.plot_residuals(fit, out_dir / "info_residuals.png")).name)]
    top = max(budgets)
    members = [c for c in cells if _num(c.get("p")) and abs(c["p"] - top) <= 0.1 * top]
    scale = to_bits if kind == "loss" else 1.0
    pts = {"n": [c["n"] for c in members], "k_e": [c["k_e"] for c in members],
           "value": [c[f"{metric}_mean"] * scale for c in members]}
    figs.append((f"information model over (N, k_e) at P = {top:,.0f}, measured cells overlaid",
                 Path(im.plot_model_surface(fit, top, out_dir / "info_surface.png", k_c=float(np.median(fit.k_c)),
                                            p_fixed=pf, points=pts)).name))
    if path_rows:
        figs.append(("information model: optimal N*, k_e* vs budget",
                     Path(im.plot_optimum_path(path_rows, out_dir / "info_optimum.png")).name))
    return {"kind": kind, "h_y": h, "chance": ch if kind == "accuracy" else None, "to_bits": to_bits,
            "n_free": n_free, "n_cells": len(cells), "n_points": int(fit.target.size), "params": fit.summary(),
            "fixed": fit.fixed, "r2": fit.r2, "rmse": fit.rmse, "p_fixed": pf, "next_budget": nxt,
            "optima": optima, "figures": figs}


def read_results(sweep_dir) -> list[dict]:
    """The rows of ``SWEEP_DIR/results.csv``; ``FileNotFoundError`` naming the file when it is missing."""
    path = Path(sweep_dir) / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `elm-neuro sweep ... --out {sweep_dir}` first")
    return st.read_table(path)


def _table_task(rows: Sequence[dict]) -> Optional[str]:
    tasks = {r.get("task") for r in rows}
    return tasks.pop() if len(tasks) == 1 else None


def sweep_tradeoff(sweep_dir, out_dir=None, metric: Optional[str] = None) -> dict:
    """:func:`tradeoff_figures` of a sweep folder's ``results.csv``, into ``out_dir`` (default: the
    sweep folder); ``metric`` defaults to :func:`default_metric`."""
    rows = read_results(sweep_dir)
    metric = metric or default_metric(rows)
    task = _table_task(rows)
    overlay = reference_overlay([r for r in rows if _num(r.get(metric))], metric, task, sweep_dir)
    return tradeoff_figures(rows, out_dir or sweep_dir, metric, task, overlay)


def sweep_fits(sweep_dir, out_dir=None, metric: Optional[str] = None, n_boot: int = D.REPORT_N_BOOT,
               h_y: Optional[float] = None, chance: Optional[float] = None) -> dict:
    """The scaling law and the information model of a sweep folder's ``results.csv`` (figures into
    ``out_dir``, default the sweep folder), as one JSON-safe dict: ``metric``, ``scaling``,
    ``information_model``."""
    rows = read_results(sweep_dir)
    metric = metric or default_metric(rows)
    out = out_dir or sweep_dir
    res = {"metric": metric,
           "scaling": scaling_analysis(rows, out, metric, n_boot=n_boot),
           "information_model": information_analysis(rows, out, metric, _table_task(rows), h_y=h_y, chance=chance)}
    return json_safe(res)


def _cells_table(rows: Sequence[dict], metric: str) -> list[str]:
    cells = st.aggregate(rows, metrics=[metric])
    cols = [c for c in ("p_target", "p", "n", "d_m", "k_e", "k_c") if any(c in x and x[c] is not None for x in cells)]
    cells.sort(key=lambda c: tuple(float(c[k]) if _num(c.get(k)) else -1.0 for k in cols))
    lines = ["| " + " | ".join(cols + [metric, "seeds"]) + " |", "|" + "---|" * (len(cols) + 2)]
    for c in cells:
        val = f"{_fmt(c[metric + '_mean'])} ± {_fmt(c[metric + '_std'], 2)}"
        lines.append("| " + " | ".join([_fmt(c.get(k)) for k in cols] + [val, str(c["n_seeds"])]) + " |")
    return lines


def _run_fit(fit, label: str, lines: list, info: dict) -> dict:
    """Run one fit; a fit that fails or lacks data is recorded as skipped (report line + json)."""
    try:
        res = fit()
    except (ValueError, RuntimeError) as exc:
        res = {"skipped": f"the fit failed: {exc}"}
    if "skipped" in res:
        lines.append(f"Skipped: {res['skipped']}.")
        info["skipped"].append(f"{label}: {res['skipped']}")
    return res


def write_sweep_report(out, metric: Optional[str] = None, h_y: Optional[float] = None,
                       chance: Optional[float] = None, n_boot: int = D.REPORT_N_BOOT,
                       seed: int = D.REPORT_SEED) -> Path:
    """``out/report.md`` (and ``report.json``, figures) from ``out/results.csv`` (module docstring).

    ``metric`` defaults to :func:`default_metric`; ``h_y`` / ``chance`` override the task's label
    entropy and chance accuracy (:func:`task_information`); ``n_boot`` bootstrap replicates (seeded
    by ``seed``) give the scaling law's intervals. The information model's predictions are in the
    metric's units (a loss fitted in bits is converted back).
    """
    out = Path(out)
    table = out / "results.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table} not found: {out} is not a sweep folder with results")
    rows = st.read_table(table)
    if not rows:
        raise ValueError(f"out: {table} holds no finished cell yet; nothing to report")
    metric = metric or default_metric(rows)
    if not any(_num(r.get(metric)) for r in rows):
        raise ValueError(f"metric: no row of {table} has a finite {metric!r} value")
    tasks = sorted({r["task"] for r in rows if r.get("task")})
    task = tasks[0] if len(tasks) == 1 else None
    fams = sorted({r["family"] for r in rows if r.get("family")})
    t0 = time.perf_counter()
    lines = [f"# Sweep report: {', '.join(tasks) or '?'}, {', '.join(fams) or '?'}", ""]
    sweep = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").is_file() else None
    finished = {r["run_id"] for r in rows if r.get("run_id")}
    if sweep:
        g = sweep["grid"]
        planned = sweep.get("cells", [])
        lines += [f"Grid: axis `{g['axis']}` values {g['values']}, budgets {g['budgets']}, seeds {g['seeds']}, "
                  f"model `{g['base']['model']}`, fixed model fields {g['base']['model_overrides'] or '{}'}, "
                  f"{g['base']['epochs']} epochs x {g['base']['batches_per_epoch']} batches.",
                  f"Finished cells: {sum(c in finished for c in planned)} of {len(planned)} planned"
                  + (f" ({len(finished - set(planned))} more from an earlier grid)" if finished - set(planned) else "")
                  + "."]
    else:
        lines.append(f"Finished cells in results.csv: {len(rows)}.")
    better = "higher" if st.higher_is_better(metric) else "lower"
    lines += [f"Metric: `{metric}` ({better} is better); mean ± std over seeds.", "", "## Cells", ""]
    lines += _cells_table([r for r in rows if _num(r.get(metric))], metric)
    info: dict = {"metric": metric, "task": task, "rows": len(rows)}
    overlay = reference_overlay([r for r in rows if _num(r.get(metric))], metric, task, out)
    trade = tradeoff_figures(rows, out, metric, task, overlay)
    lines += ["", "## Trade-off figures", ""]
    if overlay["reference"]:
        setting = tp.REFERENCE_SETTINGS[overlay["reference"]]
        lines += [f"The paper's points (docs/design.md §9) are overlaid as black stars: {overlay['label']} "
                  f"(trained with {setting['recipe']}); this sweep matches their task, family, metric, "
                  f"budget (within 10 %) and data (real).", ""]
    else:
        lines += [f"The paper's points (docs/design.md §9) are not overlaid: {overlay['reason']}.", ""]
    info["reference"] = overlay
    for cap, f in trade["figures"]:
        lines += [f"- {cap}: `{f}`", "", f"![{cap}]({f})", ""]
    lines += [f"- {s}" for s in trade["skipped"]]
    info["figures"] = [f for _, f in trade["figures"]]
    info["skipped"] = list(trade["skipped"])

    lines += ["", "## Scaling law along the Pareto frontier", "",
              "L*(P) = L_inf + A P^-alpha fitted to the best cell of each budget (seeds as replicates)."]
    sc = info["scaling"] = _run_fit(lambda: scaling_analysis(rows, out, metric, n_boot=n_boot, seed=seed),
                                    "scaling law", lines, info)
    if "skipped" not in sc:
        ci = sc["ci"].get("alpha")
        se = sc["stderr"]
        no_se = not all(_num(se.get(k)) for k in ("alpha", "l_inf", "a"))
        lines += ["", f"- loss: `{sc['loss']}`",
                  f"- alpha = {_fmt(sc['alpha'])} ± {_fmt(se['alpha'], 2)} (Jacobian s.e."
                  + ("; undefined with as many budgets as the law's 3 parameters" if no_se else "") + ")"
                  + (f", {sc['ci_level']:.0%} bootstrap interval [{_fmt(ci[0])}, {_fmt(ci[1])}] "
                     f"({sc['n_boot']} replicates over {sc['bootstrap']})" if ci else ""),
                  f"- L_inf = {_fmt(sc['l_inf'])} ± {_fmt(sc['stderr']['l_inf'], 2)}, "
                  f"A = {_fmt(sc['a'])} ± {_fmt(sc['stderr']['a'], 2)}, R^2 = {_fmt(sc['r2'])}"]
        for k, g in sc["growth"].items():
            lines.append(f"- {k}*(P) = {_fmt(g['a'])} P^{_fmt(g['b'], 3)} (slope s.e. {_fmt(g['b_stderr'], 2)}, "
                         f"log-log R^2 {_fmt(g['r2'], 3)})")
        lines += ["", "| P | N | d_m | k_e | " + metric + " |", "|---|---|---|---|---|"]
        lines += [f"| {c['p']:,.0f} | {_fmt(c['n'])} | {_fmt(c['d_m'])} | {_fmt(c['k_e'])} | "
                  f"{_fmt(c[metric + '_mean'])} ± {_fmt(c[metric + '_std'], 2)} |" for c in sc["frontier"]]
        lines += ["", f"![scaling law]({sc['figure']})"]
        info["figures"].append(sc["figure"])

    lines += ["", "## Information model (docs/design.md §11)", ""]
    im_res = info["information_model"] = _run_fit(
        lambda: information_analysis(rows, out, metric, task, h_y=h_y, chance=chance, seed=seed),
        "information model", lines, info)
    if "skipped" not in im_res:
        ps = im_res["params"]
        lines += [f"Fitted to {im_res['n_points']} runs in {im_res['n_cells']} cells as {im_res['kind']} "
                  f"(H(Y) = {_fmt(im_res['h_y'])} bits" + (f", chance {_fmt(im_res['chance'])}" if im_res['chance']
                                                              is not None else "")
                  + f"); fixed: {im_res['fixed'] or 'none'}.", "",
                  "| parameter | value | s.e. |", "|---|---|---|"]
        for k in ("s", "a_e", "a_c", "g_e", "g_c", "c", "q"):
            if k in ps:
                lines.append(f"| {k} | {_fmt(ps[k])} | {_fmt(ps[k + '_se'], 2)} |")
        lines += ["", f"R^2 = {_fmt(im_res['r2'])}, RMSE = {_fmt(im_res['rmse'])}; "
                  f"P_fixed = {_fmt(im_res['p_fixed'])} (parameters outside the hidden neurons).", "",
                  "Predicted optimum (integer N, the family's k_e values) per budget:", "",
                  "| budget | N* | d_m* | k_e* | k_c | predicted | N (budget solver) | observed best (N, d_m: value) |",
                  "|---|---|---|---|---|---|---|---|"]
        for o in im_res["optima"]:
            if "error" in o:
                lines.append(f"| {o['budget']:,.0f} | {o['error']} | | | | | | |")
                continue
            ob = o.get("observed_best")
            obs = f"{_fmt(ob['n'])}, {_fmt(ob['d_m'])}: {_fmt(ob['value'])}" if ob else "-"
            tag = " (next)" if o["next"] else ""
            lines.append(f"| {o['budget']:,.0f}{tag} | {_fmt(o['n'])} | {_fmt(o['d_m'])} | {_fmt(o['k_e'])} | "
                         f"{_fmt(o['k_c'])} | {_fmt(o['predicted'])} | {_fmt(o.get('n_solver'))} | {obs} |")
        lines.append("")
        for cap, f in im_res["figures"]:
            lines += [f"- {cap}: `{f}`", "", f"![{cap}]({f})", ""]
            info["figures"].append(f)
    lines += ["", f"Report written in {time.perf_counter() - t0:.1f} s from `results.csv`; "
              "numbers also in `report.json`.", ""]
    save_json(json_safe(info), out / "report.json")
    path = out / "report.md"
    save_text("\n".join(lines), path)
    return path
