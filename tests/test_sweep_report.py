"""The sweep report on hand-written results tables: figures written, fits run (or are skipped
with a reason), numbers in report.md / report.json."""
import csv
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from elm_neuro.analysis import information_model as im
from elm_neuro.networks.budget import closest_n
from elm_neuro.networks.registry import preset_config
from elm_neuro.experiments import sweep_report as S

TRUTH = im.InfoModelParams(s=0.05, a_e=300.0, g_e=1.0, c=0.01)
H_ADD = im.label_entropy(im.adding_label_probs(10))


def write_table(path, budgets, d_ms, seeds=(0, 1), noise=0.005, model_fields=True, data_source="real",
                family="elm"):
    """A results.csv as a sweep writes it: accuracies from the information model plus noise
    (``data_source`` None: a table without that column, as sweeps wrote before recording it)."""
    rng = np.random.default_rng(0)
    rows = []
    for p_target in budgets:
        for d_m in d_ms:
            cfg = preset_config("shd-adding", d_m=d_m)
            cfg = cfg.replace(n=closest_n(lambda k: cfg.replace(n=k).budget().p, p_target))
            b = cfg.budget()
            acc = float(im.predicted_accuracy(b.n, b.k_e, b.k_c, TRUTH, H_ADD, 0.1))
            for seed in seeds:
                row = {"run_id": f"p{p_target}-dm{d_m}-n{b.n}-s{seed}", "task": "shd-adding", "family": family,
                       "seed": seed, "p_target": p_target, "p": b.p, "n": b.n, "k_e": b.k_e, "k_c": b.k_c,
                       "d_m": d_m, "test_acc": acc + rng.normal(0, noise), "test_loss": 1.0 - acc,
                       "valid_acc": acc, "wall_s": 1.5, "epochs": 3, "steps": 300}
                if data_source is not None:
                    row["data_source"] = data_source
                if model_fields:  # every flat field, as sweep_results.collect_results writes them
                    for k, v in cfg.flat().items():
                        row.setdefault("model_seed" if k == "seed" else k, v)
                rows.append(row)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n", path


def test_report_with_fits(tmp_path):
    out = tmp_path / "sweep"
    write_table(out, [20000, 77000, 300000, 1200000], [2, 4, 7, 11, 20])
    report = S.write_sweep_report(out, n_boot=10)
    text = report.read_text()
    info = json.loads((out / "report.json").read_text())
    for name in ("metric_vs_n.png", "metric_vs_d_m.png", "metric_vs_k_e.png", "single_axes.png", "heatmap_n_dm.png",
                 "pareto.png", "scaling.png", "info_residuals.png", "info_surface.png", "info_optimum.png"):
        assert_png(out / name)
        assert f"({name})" in text and name in info["figures"]
    # SHD-Adding test_acc of ELM Networks on real data with a 77K budget: docs/design.md §9 overlaid, labelled
    assert ("black stars: the paper's points, docs/design.md §9: ELM Network, real SHD-Adding, P ≈ 77K, one seed each"
            in text)
    assert "The paper's points (docs/design.md §9) are overlaid as black stars" in text
    assert info["reference"]["reference"] == "shd-adding" and info["reference"]["reason"] is None
    assert "test acc vs k_c: skipped, k_c takes 1 value(s)" in text
    # scaling law on 1 - acc along the 4-budget frontier
    sc = info["scaling"]
    assert sc["loss"] == "1 - test_acc" and len(sc["frontier"]) == 4 and sc["n_boot"] == 10
    assert sc["alpha"] > 0 and math.isfinite(sc["stderr"]["alpha"]) and sc["r2"] > 0.9
    lo, hi = sc["ci"]["alpha"]
    assert lo <= sc["alpha"] <= hi
    assert sc["identified"] and sc["n_falling"] == 4 and sc["grouping"] == "planned budget (p_target)"
    assert f"alpha = {sc['alpha']:.3g} ± " in text and "not identified" not in text
    # information model: recovers the generating model's fit quality and its correlation c
    m = info["information_model"]
    assert m["kind"] == "accuracy" and m["n_free"] == 5 and m["n_cells"] == 20 and m["n_points"] == 40
    assert m["h_y"] == pytest.approx(4.0306, abs=1e-3) and m["chance"] == pytest.approx(0.1)
    assert m["r2"] > 0.95 and m["params"]["c"] == pytest.approx(TRUTH.c, rel=0.5)
    assert m["fixed"] == {"a_c": 0.0, "g_c": 1.0}
    assert f"In sample: R^2 = {m['r2']:.3g}, RMSE = {m['rmse']:.3g}" in text
    # predicted optimum at every budget and at the next one (x4 after 1.2M), on the ELM's d_m grid
    optima = m["optima"]
    assert [o["budget"] for o in optima] == [20000, 77000, 300000, 1200000, 4800000] and optima[-1]["next"]
    for o in optima:
        cfg = preset_config("shd-adding", d_m=o["d_m"])
        assert o["k_e"] == cfg.budget().k_e and o["n_solver"] == closest_n(
            lambda k: cfg.replace(n=k).budget().p, int(o["budget"]))
    assert optima[-1]["d_m"] >= optima[0]["d_m"]  # more complex neurons as the budget grows
    assert "4,800,000 (next, a prediction)" in text
    # d_m* from the table's own d_tree column; RMSE in accuracy units; leave one budget out
    assert m["d_m_mapping"] == {"fields": {"d_tree": 30, "d_brch": 10}, "source": "results.csv"}
    assert m["rmse_unit"] == "accuracy"
    assert f"RMSE = {m['rmse']:.3g} (accuracy)" in text
    assert [f["budget"] for f in m["lobo"]["folds"]] == [20000, 77000, 300000, 1200000]
    assert all(f["rmse"] < 0.05 for f in m["lobo"]["folds"]) and m["lobo"]["rmse_pooled"] >= m["rmse"]
    assert "| held-out budget | runs | RMSE (accuracy) | mean bias |" in text
    assert f"| 1,200,000 | 10 | {m['lobo']['folds'][-1]['rmse']:.3g} |" in text


def test_report_skips_fits_that_lack_data(tmp_path):
    out = tmp_path / "small"
    write_table(out, [77000], [4, 9, 15], seeds=(0,), model_fields=False)
    text = S.write_sweep_report(out, n_boot=10).read_text()
    assert "Skipped: needs at least 2 budgets for a frontier, the sweep has 1." in text
    assert "Skipped: needs at least 7 configuration cells (5 free parameters + 2), the sweep has 3." in text
    assert "Pareto frontier: skipped, needs at least 2 budgets, the sweep has 1" in text
    assert not (out / "scaling.png").exists() and not (out / "pareto.png").exists()
    for name in ("metric_vs_n.png", "metric_vs_d_m.png", "heatmap_n_dm.png", "single_axes.png"):
        assert_png(out / name)
    info = json.loads((out / "report.json").read_text())
    assert "skipped" in info["scaling"] and "skipped" in info["information_model"]
    assert "| 77000 | 77025 | 111 | 4 | 321 | 300 |" in text  # the cells table


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.csv not found"):
        S.write_sweep_report(tmp_path)
    write_table(tmp_path, [77000], [4], seeds=(0,))
    with pytest.raises(ValueError, match="metric: no row .* 'test_bpc'"):
        S.write_sweep_report(tmp_path, metric="test_bpc")


def test_task_information():
    assert S.task_information("shd-adding", []) == (pytest.approx(H_ADD), pytest.approx(0.1))
    assert S.task_information("shd", []) == (pytest.approx(math.log2(20)), pytest.approx(0.05))
    assert S.task_information("enwik8", [{"n_classes": 204}]) == (pytest.approx(math.log2(204)), pytest.approx(1 / 204))
    assert S.task_information("shd", [], h_y=3.0, chance=0.2) == (3.0, 0.2)
    with pytest.raises(ValueError, match="h_y"):
        S.task_information("enwik8", [])


def run_script(name, argv, monkeypatch):
    script = Path(__file__).resolve().parents[1] / "analysis" / name
    monkeypatch.setattr(sys, "argv", [str(script)] + [str(a) for a in argv])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts analysis/ first; undone afterwards
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(script), run_name="__main__")
    return exc.value.code


def test_analysis_scripts_on_a_sweep_table(tmp_path, monkeypatch, capsys):
    write_table(tmp_path / "sw", [20000, 77000, 300000], [2, 4, 9, 15])
    assert run_script("tradeoff.py", [tmp_path / "sw", "--out", tmp_path / "figs"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "pareto.png: test acc: Pareto frontier across budgets" in out
    for name in ("metric_vs_n.png", "heatmap_n_dm.png", "pareto.png", "single_axes.png"):
        assert_png(tmp_path / "figs" / name)
    assert run_script("scaling.py", [tmp_path / "sw", "--out", tmp_path / "figs", "--n-boot", "5"], monkeypatch) == 0
    res = json.loads(capsys.readouterr().out)
    # three budgets: the frontier and its figure, but no scaling law (not identified)
    assert res["metric"] == "test_acc" and res["scaling"]["identified"] is False and "alpha" not in res["scaling"]
    assert len(res["scaling"]["frontier"]) == 3 and res["scaling"]["skipped"].startswith("not identified")
    assert res["information_model"]["r2"] > 0.9
    assert_png(tmp_path / "figs" / "scaling.png")
    assert_png(tmp_path / "figs" / "info_surface.png")
    assert run_script("sweep_report.py", [tmp_path / "sw", "--n-boot", "5"], monkeypatch) == 0
    assert (tmp_path / "sw" / "report.md").is_file()
    assert "results.csv not found" in run_script("tradeoff.py", [tmp_path / "none"], monkeypatch)


def test_tradeoff_curves_group_by_the_planned_budget(tmp_path, monkeypatch):
    """With a p_target column the curves are per planned budget: a network the solver could not
    bring within 10 % of it (a d_m 8 network of P 1,789 for 2,000) stays on its budget's curve."""
    write_table(tmp_path / "sweep", [20000, 77000], [2, 4])
    rows = S.tp.st.read_table(tmp_path / "sweep" / "results.csv")
    rows[0]["p"] = rows[1]["p"] = int(0.8 * rows[0]["p_target"])  # one cell far below its budget
    seen = {}
    for name in ("plot_metric_vs_n", "plot_metric_vs_axis"):
        real = getattr(S.tp, name)

        def spy(*args, _real=real, _name=name, **kw):
            seen.setdefault(_name, set()).add(kw.get("p_key"))
            return _real(*args, **kw)
        monkeypatch.setattr(S.tp, name, spy)
    S.tradeoff_figures(rows, tmp_path / "figs", "test_acc")
    assert seen == {"plot_metric_vs_n": {"p_target"}, "plot_metric_vs_axis": {"p_target"}}
    buckets = S.tp.st.budget_buckets(np.array([r["p_target"] for r in rows], float), 0.1)
    assert len(set(buckets.tolist())) == 2


# --------------------------------------------------------------------------- the committed budget-tradeoff study
STUDY = Path(__file__).resolve().parents[1] / "analysis" / "results" / "budget-tradeoff"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    rows = [r for r in S.st.read_table(STUDY / "results.csv") if r["stage"] == "d_m"]
    out = tmp_path_factory.mktemp("study")
    fields = S.config_fields_of(STUDY)
    return {"rows": rows, "out": out, "fields": fields,
            "info": S.information_analysis(rows, out, "test_acc", task="shd", config_fields=fields),
            "scaling": S.scaling_analysis(rows, out, "test_acc", n_boot=0)}


def test_study_d_m_star_uses_the_plans_d_tree(study):
    """The committed CSV has no d_tree column; plan.json's d_tree 10 maps k_e* to d_m* 2, 8, 17,
    32 (the default d_tree 30 gave 1, 5, 13, 28); without it the mapping is refused."""
    assert study["fields"]["d_tree"] == 10 and study["fields"]["d_brch"] == 10
    info = study["info"]
    assert info["d_m_mapping"] == {"fields": {"d_tree": 10, "d_brch": 10}, "source": "plan fields"}
    assert [o["budget"] for o in info["optima"]] == [2000, 20000, 200000, 2000000]
    assert [o["d_m"] for o in info["optima"]] == [2, 8, 17, 32]
    assert [o["k_e"] for o in info["optima"]] == [65, 449, 1565, 4865]  # 4 d_m^2 + 2 d_m (10 + 2) + 1
    mapping = S.d_m_mapping(study["rows"], study["fields"])
    assert mapping["map"][29.0] == 1 and mapping["map"][65.0] == 2 and mapping["map"][161.0] == 4
    refused = S.d_m_mapping(study["rows"])
    assert refused["map"] == {} and "results.csv has no d_tree, d_brch column" in refused["refused"]
    # a wrong d_tree is caught by the table's own k_e
    wrong = S.d_m_mapping(study["rows"], {"d_tree": 30, "d_brch": 10})
    assert wrong["map"] == {} and "gives k_e 69, k_c 300 at d_m 1, the table has k_e 29, k_c 100" in wrong["refused"]


def test_study_rmse_units_and_leave_one_budget_out(study):
    info = study["info"]
    assert info["kind"] == "accuracy" and info["rmse"] == pytest.approx(0.050, abs=0.002)
    lines = "\n".join(S.information_lines(info, "test_acc"))
    assert f"RMSE = {info['rmse']:.3g} (accuracy)" in lines and "bits of information" not in lines
    lobo = info["lobo"]
    assert [f["budget"] for f in lobo["folds"]] == [2000, 20000, 200000]
    assert [f["n_points"] for f in lobo["folds"]] == [12, 12, 12]
    assert lobo["rmse_pooled"] > info["rmse"]
    c_lo, c_hi = lobo["param_range"]["c"]
    q_lo, q_hi = lobo["param_range"]["q"]
    assert c_lo < 0.05 and c_hi > 0.95 and q_hi / q_lo > 1000  # the parameters are not identified
    assert "| held-out budget | runs | RMSE (accuracy) | mean bias |" in lines
    for f in lobo["folds"]:
        assert f"| {f['budget']:,.0f} | 12 | {f['rmse']:.3g} |" in lines
    assert "k_e* maps to d_m* with d_tree 10, d_brch 10 (from plan fields)." in lines


def test_study_scaling_law_not_identified_without_numbers(study):
    sc = study["scaling"]
    assert sc["identified"] is False and sc["skipped"].startswith("not identified: 3 budget(s)")
    assert not {"alpha", "l_inf", "a", "ci", "r2"} & set(sc)
    assert [f["budget"] for f in sc["frontier"]] == [2000, 20000, 200000]
    assert [(f["n"], f["d_m"]) for f in sc["frontier"]] == [(3, 4), (72, 4), (362, 8)]
    text = "\n".join(S.scaling_lines(sc, "test_acc"))
    assert "Scaling law not identified: 3 budget(s), 3 of them" in text
    assert "alpha =" not in text and "L_inf =" not in text and "bootstrap interval" not in text
    assert "- N*(P) = 0.00143 P^1.04: slope s.e. 0.2, log-log R^2 0.966" in text
    assert S.rmse_unit("accuracy") == "accuracy" and S.rmse_unit("loss") == "bits"
    assert "| 200,000 | 362 | 8 | 449 | 199,978 | 0.881 ± 0.01 | 3 |" in text, text
    assert_png(study["out"] / "scaling.png")


def test_fit_sections_for_a_readme(tmp_path):
    """The README's two fit sections of a 3-budget table: not identified; LOBO reported."""
    write_table(tmp_path / "sw", [20000, 77000, 300000], [2, 4, 9, 15])
    rows = S.st.read_table(tmp_path / "sw" / "results.csv")
    text = "\n".join(S.fit_sections(rows, tmp_path / "figs", "test_acc", task="shd-adding", n_boot=0))
    assert text.startswith("## Scaling law along the frontier\n")
    assert "Scaling law not identified: 3 budget(s), 3 of them" in text
    assert "## Information model (docs/design.md §11)" in text
    assert "Out of sample (leave one budget out" in text and "| 300,000 | 8 |" in text
    assert "k_e* maps to d_m* with d_tree 30, d_brch 10 (from results.csv)." in text


def test_results_csv_records_the_configuration(tmp_path):
    """A sweep's results.csv carries d_tree, d_brch, the readout's fields, lr and the data's provenance."""
    from elm_neuro.data.synth import write_synthetic_shd
    from elm_neuro.experiments.sweep_results import collect_results, config_columns, write_results
    from elm_neuro.training.config import TrainConfig
    from elm_neuro.training.trainer import run_training

    data = tmp_path / "data"
    write_synthetic_shd(data, 40, 20, seed=3)
    cfg = TrainConfig(task="shd-adding", model="elm", model_overrides={"d_m": 2, "d_tree": 4, "d_brch": 3, "n": 6,
                                                                       "readout.d_brch": 2},
                      data_dir=str(data), epochs=1, batches_per_epoch=1, batch_size=2, valid_batches=1,
                      test_batches=1, bin_ms=100.0, channel_factor=14, warmup=1, lr=0.003, device="cpu")
    run_training(tmp_path / "sweep" / "cells" / "dm2-n6-s0", cfg, resume=False, progress=False)
    (row,) = collect_results(tmp_path / "sweep")
    assert (row["d_m"], row["d_tree"], row["d_brch"], row["k_c"]) == (2, 4, 3, 12)
    assert row["readout.d_brch"] == 2 and "readout.d_tree" in row and "readout.d_m" in row
    assert row["lr"] == 0.003 and row["optimizer"] == "adamax" and row["bin_ms"] == 100.0
    assert row["data_source"] == "synthetic" and row["data_dataset"] == "SHD" and len(row["data_sha256"]) == 16
    cols = config_columns([row])
    for c in ("d_tree", "d_brch", "readout.d_brch", "lr", "data_source", "data_sha256"):
        assert c in cols
    assert not {"run_id", "p", "test_acc", "wall_s"} & set(cols)
    back = S.st.read_table(write_results(tmp_path / "sweep"))
    assert back[0]["d_tree"] == 4 and back[0]["readout.d_brch"] == 2 and back[0]["lr"] == 0.003
    # the table's own columns map k_e back to d_m
    assert S.d_m_mapping(back)["map"][float(row["k_e"])] == 2


def test_a_rows_configuration_keeps_the_readouts_own_fields():
    """A results row (or a plan's fixed fields) with ``readout.*`` columns rebuilds a configuration
    whose readout has those fields, and resizing the hidden layer's d_brch leaves the readout alone
    (the flat name would set both)."""
    from elm_neuro.experiments import sweep_report as SR

    row = {"family": "elm", "d_m": 4, "n": 7, "d_tree": 10, "d_brch": 10}
    cfg = SR._config_from_row(row, {"readout.d_brch": 2, "readout.d_tree": 5.0})
    assert (cfg.hidden.d_tree, cfg.hidden.d_brch, cfg.readout.d_tree, cfg.readout.d_brch) == (10, 10, 5, 2)
    cfg = SR._config_from_row({**row, "readout.d_brch": 3}, {"readout.d_brch": 2})
    assert cfg.readout.d_brch == 3  # the row's own column wins over the plan's field
    path = type(cfg)._paths("d_brch")[0]
    assert path == "hidden.d_brch" and cfg.replace(**{path: 20}).readout.d_brch == 3


def test_information_model_on_hidden_layer_budgets(tmp_path):
    """Rows of a budget_scope "hidden" sweep (p_target sizes N (k_c + k_e), the readout outside it):
    nothing is fixed beside the hidden neurons, so the optimum at a budget of 1,000 exists (the
    whole network's median P_fixed of a covering readout would exceed it) and the solver's N sizes
    N (k_c + k_e) to the budget."""
    rng = np.random.default_rng(1)
    rows = []
    for budget in (1000, 3000, 10000, 30000):
        for d_m in (1, 2, 4, 8):
            cfg = preset_config("shd", d_m=d_m, d_tree=10, d_brch=10, n=1)
            per = cfg.budget().k_e + 100
            n = max(1, round(budget / per))
            acc = float(im.predicted_accuracy(n, per - 100, 100, TRUTH, math.log2(20), 0.05))
            for seed in (0, 1):
                rows.append({"run_id": f"p{budget}-dm{d_m}-s{seed}", "task": "shd", "family": "elm", "seed": seed,
                             "p_target": budget, "p": n * per + 1500, "p_hidden": n * per, "n": n,
                             "k_e": per - 100, "k_c": 100, "d_m": d_m, "d_tree": 10, "d_brch": 10,
                             "budget_scope": "hidden", "test_acc": acc + rng.normal(0, 0.005)})
    res = S.information_analysis(rows, tmp_path, "test_acc", task="shd")
    assert res["p_fixed"] == 0.0 and res["hidden_budget"]
    first = res["optima"][0]
    assert first["budget"] == 1000 and "error" not in first
    assert first["n_solver"] == closest_n(lambda k: k * (first["k_c"] + first["k_e"]), 1000)
    text = "\n".join(S.information_lines(res, "test_acc"))
    assert "budgets are the hidden layer's N (k_c + k_e) (budget_scope hidden): P_fixed = 0." in text
    whole = [dict(r, budget_scope="network") for r in rows]  # the same table read as whole-network budgets
    assert S.information_analysis(whole, tmp_path, "test_acc", task="shd")["p_fixed"] == 1500.0
