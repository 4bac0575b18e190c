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
                if model_fields:
                    for k, v in cfg.to_dict().items():
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
    assert f"alpha = {sc['alpha']:.4g} ± " in text
    # information model: recovers the generating model's fit quality and its correlation c
    m = info["information_model"]
    assert m["kind"] == "accuracy" and m["n_free"] == 5 and m["n_cells"] == 20 and m["n_points"] == 40
    assert m["h_y"] == pytest.approx(4.0306, abs=1e-3) and m["chance"] == pytest.approx(0.1)
    assert m["r2"] > 0.95 and m["params"]["c"] == pytest.approx(TRUTH.c, rel=0.5)
    assert m["fixed"] == {"a_c": 0.0, "g_c": 1.0}
    assert f"R^2 = {m['r2']:.4g}" in text
    # predicted optimum at every budget and at the next one (x4 after 1.2M), on the ELM's d_m grid
    optima = m["optima"]
    assert [o["budget"] for o in optima] == [20000, 77000, 300000, 1200000, 4800000] and optima[-1]["next"]
    for o in optima:
        cfg = preset_config("shd-adding", d_m=o["d_m"])
        assert o["k_e"] == cfg.budget().k_e and o["n_solver"] == closest_n(
            lambda k: cfg.replace(n=k).budget().p, int(o["budget"]))
    assert optima[-1]["d_m"] >= optima[0]["d_m"]  # more complex neurons as the budget grows
    assert "4,800,000 (next)" in text


def test_report_skips_fits_that_lack_data(tmp_path):
    out = tmp_path / "small"
    write_table(out, [77000], [4, 9, 15], seeds=(0,), model_fields=False)
    text = S.write_sweep_report(out, n_boot=10).read_text()
    assert "Skipped: needs at least 3 budgets, the sweep has 1." in text
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
    assert res["metric"] == "test_acc" and res["scaling"]["n_boot"] == 5 and res["scaling"]["alpha"] > 0
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
