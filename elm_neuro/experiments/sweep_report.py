"""The sweep report: figures and fits from a sweep's ``results.csv`` (see
:mod:`elm_neuro.experiments.sweep_results` for how the table is made).

From ``results.csv`` alone: metric vs N at fixed P (the paper's points (docs/design.md §9) overlaid only when
the sweep matches them: same task and family, a budget within 10 % of the paper's, the real data,
the paper's metric; otherwise report.md says why they are left out, see :func:`reference_overlay`),
metric vs each axis, the (N, d_m) heatmap, the Pareto frontier across budgets,
the frontier per planned budget with the scaling law along it (fitted only with >= 4 budgets whose
error still falls, else "not identified" without numbers), the information model of docs/design.md
§11 (>= free parameters + 2 cells) with its leave-one-budget-out validation and its predicted optimum
for the next budget (k_e* mapped to d_m* with the table's own d_tree); ``report.md`` lists every
figure and number, ``report.json`` the numbers. Fits that lack data are skipped with a line
saying why. :func:`scaling_lines`, :func:`information_lines` and :func:`fit_sections` write the
same results as Markdown for a study's README.
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
    """The sweep's budgets: the planned ones (``p_target``) when every row has one, else buckets of
    the achieved ``p`` (a cell far below its planned budget never becomes a budget of its own)."""
    if rows and all(_num(r.get("p_target")) for r in rows):
        return sorted({float(r["p_target"]) for r in rows})
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
    """The frontier (best cell per planned budget), ``L*(P) = L_inf + A P^-alpha`` along it when
    the law is identified, the growth of ``N*``, ``k_e*``, ``d_m*`` with ``P``, and ``scaling.png``
    (:func:`elm_neuro.analysis.scaling.frontier_scaling` states the grouping and the rule: at least
    4 budgets whose frontier error still falls).

    Returns ``{"skipped": reason}`` for fewer than 2 budgets. Otherwise the frontier, the growth
    fits and the figure, with ``identified``; when the law is not identified ``skipped`` holds
    the reason ("not identified: ...") and no law parameter is given, else the law's
    parameters, standard errors and bootstrap intervals.
    """
    rows = [r for r in rows if _num(r.get(metric))]
    n_budgets = len(_budget_labels(rows))
    if n_budgets < 2:
        return {"skipped": f"needs at least 2 budgets for a frontier, the sweep has {n_budgets}"}
    fs = scaling.frontier_scaling(rows, metric, n_boot=n_boot, seed=seed)
    ylabel = f"1 - {metric}" if fs.transformed != "loss" else metric
    path = scaling.plot_scaling(fs, Path(out_dir) / "scaling.png", ylabel=ylabel)
    out = {
        "identified": fs.identified, "loss": ylabel, "grouping": fs.grouping, "n_falling": fs.n_falling,
        "min_budgets": scaling.MIN_FALLING_BUDGETS,
        "frontier": [{"budget": float(b), **{k: c.get(k) for k in ("p", "n", "d_m", "k_e", "k_c", f"{metric}_mean",
                                                                   f"{metric}_std", "n_seeds")}, "loss": float(v)}
                     for b, c, v in zip(fs.budgets, fs.frontier, fs.loss)],
        "growth": {k: {"a": g.a, "b": g.b, "b_stderr": g.b_stderr, "ci": g.ci, "r2": g.r2}
                   for k, g in fs.growth.items()},
        "figure": Path(path).name,
    }
    if not fs.identified:
        out["skipped"] = fs.reason
        return out
    law = fs.law
    out.update({"l_inf": law.l_inf, "a": law.a, "alpha": law.alpha, "stderr": law.stderr, "ci": law.ci,
                "ci_level": law.ci_level, "r2": law.r2, "bootstrap": law.bootstrap_mode,
                "n_boot": int(law.bootstrap.shape[0])})
    return out



def _cell_value(v, like):
    """A CSV cell as a configuration value: JSON lists / dicts parsed, a whole float made an int
    where the field (``like``, its current value) is one."""
    if isinstance(v, str) and v[:1] in "[{":
        v = json.loads(v)
    if isinstance(v, float) and v.is_integer() and isinstance(like, int):
        v = int(v)
    return v


def _config_from_row(row: dict, extra: Optional[dict] = None):
    """The model configuration of a results row (every flat model field is a column, the
    readout's own fields ``readout.<field>``), or None.

    ``extra`` (e.g. a plan's fixed fields) gives the fields the row has no value for; a field
    neither gives keeps the family's default.
    """
    fam = row.get("family")
    if fam not in MODEL_FAMILIES:
        return None
    cls = MODEL_FAMILIES[fam][0]
    defaults = cls.make().flat()
    fields = {}
    for f in cls.flat_names():
        key = "model_seed" if f == "seed" else f
        v = row.get(key)
        if v is None and extra and key in extra:
            v = extra[key]
        if v is not None:
            fields[f] = _cell_value(v, defaults.get(f))
    # dotted fields (the readout's): the row's own column wins over ``extra``
    dotted = {k: v for src in (extra or {}, row) for k, v in src.items()
              if "." in k and v is not None and k.split(".", 1)[1] != "seed"}
    try:
        cfg = cls.from_dict(fields)
        for k, v in dotted.items():
            cur = cfg
            for part in k.split("."):
                cur = getattr(cur, part, None)
            if cur is not None:  # else a field this family does not have
                cfg = cfg.replace(**{k: _cell_value(v, cur)})
        return cfg
    except (TypeError, ValueError):
        return None


#: Configuration fields that decide an ELM neuron's k_e and k_c (docs/design.md §3).
SHAPE_FIELDS = ("d_tree", "d_brch")


def config_fields_of(folder, stage: Optional[str] = None) -> dict:
    """The fixed model fields a results folder was made with, for tables that lack their columns:
    the stage's ``fixed`` fields of ``plan.json`` (``stage`` names it; default the ``d_m`` stage,
    else the first sweep stage), or the grid's ``model_overrides`` of ``sweep.json``; ``{}`` when
    neither file is there."""
    folder = Path(folder)
    if (folder / "plan.json").is_file():
        plan = json.loads((folder / "plan.json").read_text())
        plan = plan.get("plan", plan)
        stages = [s for s in plan.get("stages", []) if s.get("kind") == "sweep"]
        pick = [s for s in stages if s.get("name") == (stage or "d_m")] or ([] if stage else stages[:1])
        if stage and not pick:
            raise ValueError(f"stage: plan.json of {folder} has no sweep stage {stage!r}")
        return dict(pick[0].get("fixed", {})) if pick else {}
    if (folder / "sweep.json").is_file():
        base = json.loads((folder / "sweep.json").read_text())["grid"]["base"]
        return dict(base.get("model_overrides") or {})
    return {}


def d_m_mapping(rows: Sequence[dict], config_fields: Optional[dict] = None) -> dict:
    """``k_e -> d_m`` of the table's family (``d_m`` 1..256), from the configuration the table
    records (its d_tree, d_brch ... columns; ``config_fields`` fills the columns it lacks, e.g.
    :func:`config_fields_of` a plan folder).

    The configuration is checked against the table: rebuilt for each row's ``d_m``, it must give
    that row's ``k_e`` and ``k_c``; otherwise (a table without its d_tree column, read with the
    default d_tree) the mapping is refused. Returns ``{"map": {k_e: d_m}, "fields": {name: value},
    "source"}`` or ``{"map": {}, "refused": reason}``.
    """
    config_fields = dict(config_fields or {})
    fams = sorted({str(r.get("family")) for r in rows})
    if len(fams) != 1 or fams[0] not in MODEL_FAMILIES:
        return {"map": {}, "refused": f"the table's family ({', '.join(fams)}) is not one known model family"}
    cls = MODEL_FAMILIES[fams[0]][0]
    if "d_m" not in cls.flat_names() or not all(_num(r.get("d_m")) for r in rows):
        return {"map": {}, "refused": f"family {fams[0]} has no d_m column to map k_e to"}
    shape = [f for f in SHAPE_FIELDS if f in cls.flat_names()]
    lacking = [f for f in shape if any(r.get(f) is None for r in rows)]
    unknown = [f for f in lacking if f not in config_fields]
    if unknown:
        return {"map": {}, "refused": f"results.csv has no {', '.join(unknown)} column (and no plan field gives "
                                      f"it): the family's default would be a guess; give the plan's fixed fields "
                                      f"(plan.json) or re-run with a writer that records them"}
    cfg = _config_from_row(rows[0], config_fields)
    if cfg is None:
        return {"map": {}, "refused": "the model configuration cannot be rebuilt from results.csv"}
    for r in rows:
        try:
            b = cfg.replace(d_m=int(r["d_m"])).budget()
        except ValueError as exc:
            return {"map": {}, "refused": f"d_m {r['d_m']}: {exc}"}
        if b.k_e != r["k_e"] or b.k_c != r["k_c"]:
            got = ", ".join(f"{f} {getattr(cfg, f)}" for f in shape)
            return {"map": {}, "refused": f"the configuration ({got}) gives k_e {b.k_e}, k_c {b.k_c} at d_m "
                                          f"{r['d_m']}, the table has k_e {r['k_e']}, k_c {r['k_c']}"}
    ke_to_dm = {}
    for d in range(1, 257):
        try:
            ke_to_dm.setdefault(float(cfg.replace(d_m=d).budget().k_e), d)
        except ValueError:
            continue
    return {"map": ke_to_dm, "fields": {f: getattr(cfg, f) for f in shape},
            "source": "plan fields" if lacking else "results.csv", "config": cfg}


def _next_budget(budgets: list[float]) -> int:
    """The budget after the largest: the same ratio as between the two largest, else x4."""
    b = sorted(budgets)
    ratio = b[-1] / b[-2] if len(b) >= 2 else 4.0
    return int(round(b[-1] * ratio))


def _row_budgets(rows: Sequence[dict]) -> np.ndarray:
    """Each row's budget: its planned ``p_target`` when every row has one, else its bucket of ``p``."""
    if all(_num(r.get("p_target")) for r in rows):
        return np.array([float(r["p_target"]) for r in rows])
    return st.budget_buckets(np.array([float(r["p"]) for r in rows]))


def rmse_unit(kind: str) -> str:
    """The unit of the information model's residuals: ``accuracy`` (a fraction of the test samples)
    for an accuracy fit, ``bits`` for a loss fit (the loss converted to bits)."""
    return "accuracy" if kind == "accuracy" else "bits"


def information_analysis(rows: Sequence[dict], out_dir, metric: str, task: Optional[str] = None,
                         h_y: Optional[float] = None, chance: Optional[float] = None, n_boot: int = 0,
                         seed: int = 0, config_fields: Optional[dict] = None) -> dict:
    """Fit the docs/design.md §11 information model to a sweep table; its leave-one-budget-out
    validation; predicted optimum at each budget and at the next one; residual, surface and
    optimum-path figures. ``{"skipped": reason}`` when the table has fewer configuration cells
    than free parameters + 2.

    Budgets are the planned ones (``p_target``) when the table has them. Out of sample: each
    budget in turn is held out, the model fitted on the others predicts its runs
    (:func:`elm_neuro.analysis.information_model.leave_one_budget_out`; needs 3 budgets): RMSE per
    held-out budget and the range of each parameter over the folds. RMSEs are in the fitted
    quantity's unit (:func:`rmse_unit`: accuracy, or bits for a loss).

    The optimum is searched over the ``k_e`` values reachable by the family (``d_m = 1..256``)
    with integer ``N`` under the affine budget ``P = N (k_c + k_e) + P_fixed`` (``P_fixed``
    estimated from the table; 0 when every row's budget is the hidden layer's, ``budget_scope``
    "hidden", and the solver's N then sizes ``N (k_c + k_e)``); ``k_e*`` maps back to ``d_m*`` with the table's own d_tree
    (:func:`d_m_mapping`; ``config_fields`` for tables without the column). When the mapping
    is refused, ``k_e`` is continuous, ``d_m*`` is None and ``d_m_refused`` says why.
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
    scale = to_bits if kind == "loss" else 1.0
    fit = im.fit_information_model_rows(rows, metric, h, kind=kind, chance=ch if kind == "accuracy" else None,
                                        to_bits=to_bits, n_boot=n_boot, seed=seed)
    row_b = _row_budgets(rows)
    budgets = sorted(set(row_b.tolist()))
    try:
        cols = {k: st.column(rows, k) for k in ("n", "k_e", "k_c", metric)}
        lobo = im.leave_one_budget_out(cols["n"], cols["k_e"], cols["k_c"], cols[metric] * scale, row_b, h,
                                       kind=kind, chance=ch if kind == "accuracy" else None,
                                       fix=fit.fixed).summary()
    except (ValueError, RuntimeError) as exc:
        lobo = {"skipped": str(exc)}
    # budgets of the hidden layer alone (budget_scope "hidden": N (k_c + k_e) sized to p_target, the
    # readout outside it) have nothing fixed beside the hidden neurons
    hidden = all(r.get("budget_scope") == "hidden" for r in rows)
    pf = 0.0 if hidden else im.estimate_p_fixed(rows)
    kcs = _distinct(rows, "k_c")
    mapping = d_m_mapping(rows, config_fields)
    ke_to_dm, cfg = mapping["map"], mapping.get("config")
    nxt = _next_budget(budgets)
    planned = all(_num(r.get("p_target")) for r in rows)
    best = st.best_per_budget(cells, metric, bucket_key="p_target") if planned else st.best_per_budget(cells, metric)
    path_rows, optima = [], []
    for b in budgets + [float(nxt)]:
        kw = dict(k_e_values=sorted(ke_to_dm), integer_n=True) if ke_to_dm else {}
        try:
            opt = im.optimal_allocation(fit.params, b, kcs, p_fixed=pf, h_y=h, **kw)
        except ValueError as exc:
            optima.append({"budget": b, "error": str(exc)})
            continue
        pred = float(fit.predict(opt["n"], opt["k_e"], opt["k_c"])) / scale
        path_rows.append({**opt, "predicted": pred})
        row = {"budget": b, "next": b == float(nxt) and b not in budgets, "n": opt["n"], "k_e": opt["k_e"],
               "k_c": opt["k_c"], "d_m": ke_to_dm.get(float(opt["k_e"])), "predicted": pred}
        if row["d_m"] is not None and cfg is not None and getattr(cfg, "SIZE_FIELD", "n") == "n":
            sized = cfg.replace(d_m=row["d_m"])
            if hasattr(sized, "d_brch") and hasattr(sized, "d_tree") and opt["k_c"] % sized.d_tree == 0:
                # the hidden layer's own d_brch (the flat name would resize the readout too)
                path = type(sized)._paths("d_brch")[0] if hasattr(type(sized), "_paths") else "d_brch"
                sized = sized.replace(**{path: int(opt["k_c"] // sized.d_tree)})
            b_of = (lambda k: k * (opt["k_c"] + opt["k_e"])) if hidden else (lambda k: sized.replace(n=k).budget().p)
            try:
                row["n_solver"] = closest_n(b_of, int(b))
            except ValueError:
                row["n_solver"] = None
        near = [c for c in best if abs(c["p_bucket"] - b) <= 0.1 * b]
        if near:
            c = near[0]
            row["observed_best"] = {"n": c.get("n"), "d_m": c.get("d_m"), "k_e": c.get("k_e"),
                                    "value": c.get(f"{metric}_mean")}
        optima.append(row)
    out_dir = Path(out_dir)
    figs = [("information model: observed vs predicted, residuals vs N",
             Path(im.plot_residuals(fit, out_dir / "info_residuals.png")).name)]
    top = max(budgets)
    cell_b = _row_budgets(cells)
    members = [c for c, cb in zip(cells, cell_b) if cb == cell_b.max()]
    pts = {"n": [c["n"] for c in members], "k_e": [c["k_e"] for c in members],
           "value": [c[f"{metric}_mean"] * scale for c in members]}
    figs.append((f"information model over (N, k_e) at P = {top:,.0f}, measured cells overlaid",
                 Path(im.plot_model_surface(fit, top, out_dir / "info_surface.png", k_c=float(np.median(fit.k_c)),
                                            p_fixed=pf, points=pts)).name))
    if path_rows:
        ylab = metric.replace("_", " ")
        figs.append(("information model: optimal N*, k_e* vs budget",
                     Path(im.plot_optimum_path(path_rows, out_dir / "info_optimum.png",
                                               value_key="predicted", value_label=f"predicted {ylab}")).name))
    out = {"kind": kind, "h_y": h, "chance": ch if kind == "accuracy" else None, "to_bits": to_bits,
           "n_free": n_free, "n_cells": len(cells), "n_points": int(fit.target.size), "params": fit.summary(),
           "fixed": fit.fixed, "r2": fit.r2, "rmse": fit.rmse, "rmse_unit": rmse_unit(kind), "lobo": lobo,
           "p_fixed": pf, "hidden_budget": hidden, "next_budget": nxt, "optima": optima, "figures": figs}
    if ke_to_dm:
        out["d_m_mapping"] = {"fields": mapping["fields"], "source": mapping["source"]}
    else:
        out["d_m_refused"] = mapping["refused"]
    return out


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
           "information_model": information_analysis(rows, out, metric, _table_task(rows), h_y=h_y, chance=chance,
                                                     config_fields=config_fields_of(sweep_dir))}
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


def _grouped(v) -> str:
    """A count with thousands separators (``199,978``), ``-`` when missing."""
    return f"{v:,.0f}" if _num(v) else "-"


def _fmt_se(v, se) -> str:
    """A fitted value to the precision its standard error supports (two significant digits of the
    s.e.: 0.03834 ± 0.083 -> 0.038), so that digits below the uncertainty, which differ from one
    CPU and library version to another, are not shown; :func:`_fmt` where the s.e. is 0 or unknown."""
    if not (_num(v) and _num(se)) or se <= 0 or not math.isfinite(se):
        return _fmt(v)
    decimals = 1 - math.floor(math.log10(se))
    return f"{round(v, decimals):.{max(decimals, 0)}f}"


def _rng(lo: float, hi: float) -> str:
    return f"{_fmt(lo, 3)} to {_fmt(hi, 3)}"


def scaling_lines(sc: dict, metric: str) -> list[str]:
    """Markdown lines of a :func:`scaling_analysis` result: how the frontier is picked and the
    rule for a fit, the frontier table, then the law with its uncertainty, or "not identified"
    without any parameter; the growth of the optimum with ``P``; the figure."""
    if "frontier" not in sc:
        return [f"Skipped: {sc['skipped']}."]
    lines = [f"Frontier: the best cell of each {sc['grouping']}; its error `{sc['loss']}` is plotted at that "
             f"budget. A scaling law L_inf + A P^-alpha (3 parameters) is fitted only with at least "
             f"{sc['min_budgets']} budgets whose frontier error still falls (each below that of every smaller "
             f"budget); here {sc['n_falling']} of {len(sc['frontier'])} do.", "",
             f"| budget | N | d_m | k_e | P | {metric} (mean ± sd) | seeds |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {c['budget']:,.0f} | {_fmt(c['n'])} | {_fmt(c['d_m'])} | {_fmt(c['k_e'])} | "
              f"{_grouped(c['p'])} | "
              f"{_fmt(c[metric + '_mean'], 3)} ± {_fmt(c[metric + '_std'], 2)} | {_fmt(c['n_seeds'])} |"
              for c in sc["frontier"]]
    lines.append("")
    if not sc["identified"]:
        lines.append(f"Scaling law {sc['skipped']}: no exponent or limit is estimated.")
    else:
        se, ci = sc["stderr"], sc["ci"]
        level = f"{sc['ci_level']:.0%}"

        def term(k):
            txt = f"{k} = {_fmt(sc[k], 3)} ± {_fmt(se[k], 2)} (s.e.)"
            return txt + (f", {level} bootstrap interval {_rng(*ci[k])}" if k in ci else "")
        lines.append(f"Scaling law {sc['loss']}*(P) = L_inf + A P^-alpha over {len(sc['frontier'])} budgets: "
                     + "; ".join(term(k) for k in ("alpha", "l_inf", "a"))
                     + f"; R^2 = {_fmt(sc['r2'], 3)}; bootstrap: {sc['n_boot']} replicates over {sc['bootstrap']}.")
    for k, g in sc["growth"].items():
        ci = g["ci"].get("b")
        lines.append(f"- {'N' if k == 'n' else k}*(P) = {_fmt(g['a'], 3)} P^{_fmt(g['b'], 3)}: "
                     f"slope s.e. {_fmt(g['b_stderr'], 2)}"
                     + (f", bootstrap interval over the frontier points {_rng(*ci)}" if ci else "")
                     + f", log-log R^2 {_fmt(g['r2'], 3)}")
    lines += ["", f"![frontier and scaling law]({sc['figure']})"]
    return lines


def information_lines(res: dict, metric: str) -> list[str]:
    """Markdown lines of an :func:`information_analysis` result: the parameters, the in-sample
    fit (RMSE in its unit), the leave-one-budget-out validation (RMSE per held-out budget, the
    range of every parameter over the folds), how k_e* maps to d_m*, and the predicted optimum."""
    ps, unit = res["params"], res["rmse_unit"]
    lines = [f"Fitted to {res['n_points']} runs in {res['n_cells']} cells as {res['kind']} "
             f"(H(Y) = {_fmt(res['h_y'])} bits" + (f", chance {_fmt(res['chance'])}" if res["chance"] is not None
                                                    else "")
             + f"); fixed: {res['fixed'] or 'none'}.", "",
             "| parameter | value | s.e. |", "|---|---|---|"]
    for k in ("s", "a_e", "a_c", "g_e", "g_c", "c", "q"):
        if k in ps:
            lines.append(f"| {k} | {_fmt_se(ps[k], ps[k + '_se'])} | {_fmt(ps[k + '_se'], 2)} |")
    lines += ["", f"In sample: R^2 = {_fmt(res['r2'], 3)}, RMSE = {_fmt(res['rmse'], 3)} ({unit}); "
              + (f"P_fixed = {_fmt(res['p_fixed'])} (parameters outside the hidden neurons)." if not res.get("hidden_budget")
                 else "budgets are the hidden layer's N (k_c + k_e) (budget_scope hidden): P_fixed = 0."), ""]
    lobo = res["lobo"]
    if "skipped" in lobo:
        lines += [f"Out of sample (leave one budget out): not run, {lobo['skipped']}.", ""]
    else:
        lines += ["Out of sample (leave one budget out: fitted on the other budgets, predicting the held-out "
                  "one's runs):", "", f"| held-out budget | runs | RMSE ({unit}) | mean bias |", "|---|---|---|---|"]
        lines += [f"| {f['budget']:,.0f} | {f['n_points']} | {_fmt(f['rmse'], 3)} | {_fmt(f['bias'], 2)} |"
                  for f in lobo["folds"]]
        # one significant digit: the message is the orders of magnitude the parameters span over the
        # folds, and the ends of an ill-determined fit's range differ in their second digit from one
        # numpy / scipy version to another
        spread = ", ".join(f"{k} {lo:.1g} to {hi:.1g}" for k, (lo, hi) in lobo["param_range"].items())
        lines += ["", f"Pooled out-of-sample RMSE {_fmt(lobo['rmse_pooled'], 3)} ({unit}) against "
                  f"{_fmt(res['rmse'], 3)} in sample. Fitted parameters over the folds (one significant digit): "
                  f"{spread}.", ""]
    if "d_m_mapping" in res:
        m = res["d_m_mapping"]
        lines.append("k_e* maps to d_m* with " + ", ".join(f"{k} {v}" for k, v in m["fields"].items())
                     + f" (from {m['source']}).")
    else:
        lines.append(f"k_e* is not mapped to d_m*: {res['d_m_refused']}.")
    lines += ["", "Predicted optimum (integer N, the family's k_e values) per budget:", "",
              f"| budget | N* | d_m* | k_e* | k_c | predicted {metric} | N (budget solver) | "
              "observed best (N, d_m: value) |", "|---|---|---|---|---|---|---|---|"]
    for o in res["optima"]:
        if "error" in o:
            lines.append(f"| {o['budget']:,.0f} | {o['error']} | | | | | | |")
            continue
        ob = o.get("observed_best")
        obs = f"{_fmt(ob['n'])}, {_fmt(ob['d_m'])}: {_fmt(ob['value'], 3)}" if ob else "-"
        tag = " (next, a prediction)" if o["next"] else ""
        lines.append(f"| {o['budget']:,.0f}{tag} | {_fmt(o['n'])} | {_fmt(o['d_m'])} | {_fmt(o['k_e'])} | "
                     f"{_fmt(o['k_c'])} | {_fmt(o['predicted'], 3)} | {_fmt(o.get('n_solver'))} | {obs} |")
    return lines


def fit_sections(rows: Sequence[dict], out_dir, metric: str, task: Optional[str] = None,
                 config_fields: Optional[dict] = None, n_boot: int = D.REPORT_N_BOOT,
                 seed: int = D.REPORT_SEED) -> list[str]:
    """The README sections "Scaling law along the frontier" and "Information model" of a study's
    d_m rows (figures into ``out_dir``): :func:`scaling_lines` and :func:`information_lines`.
    ``config_fields`` completes tables without d_tree / d_brch columns (:func:`config_fields_of`
    the study's folder)."""
    out_dir = Path(out_dir)
    lines = ["## Scaling law along the frontier", ""]
    sc = scaling_analysis(rows, out_dir, metric, n_boot=n_boot, seed=seed) if rows else {"skipped": "no rows"}
    lines += scaling_lines(sc, metric) + ["", "## Information model (docs/design.md §11)", ""]
    info = information_analysis(rows, out_dir, metric, task=task, config_fields=config_fields) if rows else \
        {"skipped": "no rows"}
    if "skipped" in info:
        lines += [f"Not fitted: {info['skipped']}.", ""]
    else:
        lines += information_lines(info, metric) + [""]
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

    lines += ["", "## Scaling law along the Pareto frontier", ""]
    try:
        sc = scaling_analysis(rows, out, metric, n_boot=n_boot, seed=seed)
    except (ValueError, RuntimeError) as exc:
        sc = {"skipped": f"the fit failed: {exc}"}
    info["scaling"] = sc
    lines += scaling_lines(sc, metric)
    if "skipped" in sc:
        info["skipped"].append(f"scaling law: {sc['skipped']}")
    if "figure" in sc:
        info["figures"].append(sc["figure"])

    lines += ["", "## Information model (docs/design.md §11)", ""]
    fields = config_fields_of(out)
    im_res = info["information_model"] = _run_fit(
        lambda: information_analysis(rows, out, metric, task, h_y=h_y, chance=chance, seed=seed,
                                     config_fields=fields), "information model", lines, info)
    if "skipped" not in im_res:
        lines += information_lines(im_res, metric)
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
