"""The paper's docs/design.md §9 points go on a sweep's figures only when the sweep matches them (task,
family, budget within 10 %, real data, metric); otherwise report.md says why."""
import csv
import json
import shutil

import pytest

from elm_neuro.analysis import tradeoff_plots as tp
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments import sweep_report as S
from elm_neuro.experiments.sweep import collect_results, write_results
from elm_neuro.networks.budget import closest_n
from elm_neuro.networks.registry import preset_config
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.trainer import run_training

D_MS = (2, 4, 9)


def write_table(out, budget=77000, task="shd-adding", family="elm", data_source="real", with_source=True):
    rows = []
    for d_m in D_MS:
        cfg = preset_config("shd-adding", d_m=d_m)
        cfg = cfg.replace(n=closest_n(lambda k: cfg.replace(n=k).budget().p, budget))
        b = cfg.budget()
        for seed in (0, 1):
            row = {"run_id": f"p{budget}-dm{d_m}-n{b.n}-s{seed}", "task": task, "family": family, "seed": seed,
                   "p_target": budget, "p": b.p, "n": b.n, "k_e": b.k_e, "k_c": b.k_c, "d_m": d_m,
                   "test_acc": 0.3 + 0.01 * d_m + 0.001 * seed, "valid_acc": 0.3}
            if with_source:
                row["data_source"] = data_source
            rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def overlay_calls(monkeypatch):
    """The ``reference`` argument of every metric-vs-N plot the report draws."""
    calls = []
    original = tp.plot_metric_vs_n

    def spy(rows, metric, path, reference=None, **kw):
        calls.append(reference)
        return original(rows, metric, path, reference=reference, **kw)

    monkeypatch.setattr(S.tp, "plot_metric_vs_n", spy)
    return calls


def report(out):
    text = S.write_sweep_report(out, n_boot=0).read_text()
    return text, json.loads((out / "report.json").read_text())["reference"]


def test_overlay_when_task_budget_family_and_data_match(tmp_path, overlay_calls):
    write_table(tmp_path, budget=72000)  # within 10 % of 77K
    text, ref = report(tmp_path)
    assert overlay_calls == ["shd-adding"]
    assert ref == {"reference": "shd-adding", "label": "ELM Network, real SHD-Adding, P ≈ 77K, one seed each",
                   "reason": None, "data": ["real"]}
    assert ("test acc vs N at fixed P (black stars: the paper's points, docs/design.md §9: ELM Network, real SHD-Adding, "
            "P ≈ 77K, one seed each)") in text
    assert "The paper's points (docs/design.md §9) are overlaid as black stars: ELM Network, real SHD-Adding" in text
    assert "2 ms bins, 700 channels, 70 epochs x 2000 batches of 8" in text


@pytest.mark.parametrize("kw, reason", [
    (dict(budget=20000), "no budget of this sweep is within 10% of the paper's P ≈ 77,000 (budgets: "),
    (dict(budget=86000), "no budget of this sweep is within 10% of the paper's P ≈ 77,000"),
    (dict(data_source="synthetic"), "the paper trained on real SHD-Adding, this sweep on synthetic data "
                                    "(`elm-neuro data synth`)"),
    (dict(data_source="unknown"), "this sweep on data not known to be the real data"),
    (dict(with_source=False), "this sweep on data of unrecorded origin"),
    (dict(task="shd"), "the paper has reference points for ['enwik8', 'shd-adding'] only, this sweep's task is 'shd'"),
    (dict(family="lif"), "the paper's points are ELM Networks (elm), this sweep trains lif"),
])
def test_no_overlay_with_the_reason(tmp_path, overlay_calls, kw, reason):
    write_table(tmp_path, **kw)
    text, ref = report(tmp_path)
    assert overlay_calls == [None]
    assert ref["reference"] is None and reason in ref["reason"]
    assert f"The paper's points (docs/design.md §9) are not overlaid: {ref['reason']}." in text
    assert "black stars" not in text


def test_reference_mismatch_lists_every_reason():
    assert tp.reference_mismatch("shd-adding", "test_acc", [76551.0], ["elm"], ["real"]) is None
    assert tp.reference_mismatch("enwik8", "test_bpc", [3.6e6], ["elm"], ["real"]) is None
    why = tp.reference_mismatch("enwik8", "test_loss", [1e5], ["elm", "lstm"], ["builtin-corpus"])
    assert why.split("; ") == [
        "the paper reports test_bpc, the metric shown is test_loss",
        "the paper's points are ELM Networks (elm), this sweep trains elm, lstm",
        "no budget of this sweep is within 10% of the paper's P ≈ 3,500,000 (budgets: 100,000)",
        "the paper trained on real enwik8, this sweep on the built-in text corpus"]
    # one real cell among synthetic ones is not enough
    assert "synthetic data" in tp.reference_mismatch("shd-adding", "test_acc", [77000], ["elm"], ["real", "synthetic"])
    assert tp.reference_mismatch(None, "test_acc", [77000], ["elm"], ["real"]) == "the sweep mixes several tasks"
    # the 10 % window: 69,300 .. 84,700
    assert tp.reference_mismatch("shd-adding", "test_acc", [69300.0], ["elm"], ["real"]) is None
    assert tp.reference_mismatch("shd-adding", "test_acc", [69299.0], ["elm"], ["real"]) is not None
    with pytest.raises(ValueError, match="rel_tol must lie in"):
        tp.reference_mismatch("shd-adding", "test_acc", [77000], ["elm"], ["real"], rel_tol=1.5)


def test_sweep_records_data_source_and_old_tables_use_sweep_json(tmp_path, overlay_calls):
    data = tmp_path / "data"
    write_synthetic_shd(data, 40, 20, seed=3)
    cfg = TrainConfig(task="shd-adding", model="elm", model_overrides=dict(d_m=2, d_tree=4, d_brch=3, n=6),
                      data_dir=str(data), epochs=1, batches_per_epoch=1, batch_size=2, valid_batches=1,
                      test_batches=1, bin_ms=100.0, channel_factor=14, warmup=1, device="cpu")
    run_training(tmp_path / "run", cfg, resume=False, progress=False)
    sweep = tmp_path / "sweep"
    shutil.copytree(tmp_path / "run", sweep / "cells" / "dm2-n6-s0")
    rows = collect_results(sweep)
    assert [r["data_source"] for r in rows] == ["synthetic"]
    write_results(sweep)
    text, ref = report(sweep)
    assert ref["reference"] is None and "synthetic data" in ref["reason"]
    # a table written before data_source existed: the grid's data folder is checked now
    old = tmp_path / "old"
    write_table(old, with_source=False)
    (old / "sweep.json").write_text(json.dumps({"format": 1, "grid": {
        "axis": "d_m", "values": list(D_MS), "budgets": [77000], "seeds": [0, 1], "base": cfg.to_dict()},
        "cells": []}))
    text, ref = report(old)
    assert ref["data"] == ["synthetic"] and "this sweep on synthetic data" in ref["reason"]
    assert overlay_calls == [None, None]
