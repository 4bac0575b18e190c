"""Equal-budget comparison, the demo pipeline, export and the analyze CLI on tiny runs."""
import json
from pathlib import Path

import pytest
import torch

import elm_neuro
from elm_neuro.cli.main import main
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments.compare import cell_dir, compare
from elm_neuro.training.config import TrainConfig
from elm_neuro.experiments.demo import run_demo
from elm_neuro.experiments.export import export_run
from elm_neuro.training.run import RunDir


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 100, 40, seed=2)
    return d


def base_cfg(shd_dir, **kw):
    return TrainConfig(task="shd-adding", data_dir=str(shd_dir), epochs=2, batches_per_epoch=2, batch_size=4,
                       valid_batches=2, test_batches=2, bin_ms=100.0, channel_factor=14, warmup=1,
                       params=3000, **kw)


OVERRIDES = {"elm": dict(d_m=2, d_tree=4, d_brch=3), "lif": dict(n_synapses=12, readout_d_tree=4, readout_d_brch=3),
             "lstm": dict()}


def test_compare_equal_budget_report_and_resume(shd_dir, tmp_path):
    report = compare(tmp_path, base_cfg(shd_dir), ["elm", "lif", "lstm"], [0, 1], OVERRIDES, progress=False)
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [r.split("|")[1].strip() for r in rows] == ["elm", "lif", "lstm"]
    ps = []
    for model in ("elm", "lif", "lstm"):
        for seed in (0, 1):
            s = RunDir(cell_dir(tmp_path, model, seed)).read_summary()
            assert s["status"] == "completed" and s["seed"] == seed
        ps.append(s["p"])
        assert abs(s["p"] - 3000) < 400  # every family sized to the same budget
        assert s["family"] == model
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    # the spiking network's dt follows the 100 ms bins
    assert RunDir(cell_dir(tmp_path, "lif", 0)).read_config()["model"]["config"]["hidden"]["dt"] == 100.0
    # re-running skips finished cells (summaries untouched)
    mtime = (cell_dir(tmp_path, "elm", 0) / "summary.json").stat().st_mtime_ns
    compare(tmp_path, base_cfg(shd_dir), ["elm", "lif", "lstm"], [0, 1], OVERRIDES, progress=False)
    assert (cell_dir(tmp_path, "elm", 0) / "summary.json").stat().st_mtime_ns == mtime


def test_compare_cli_errors(shd_dir, tmp_path, capsys):
    assert main(["compare", "--params", "3000", "--models", "", "--data", str(shd_dir), "--out", str(tmp_path)]) == 2
    assert "--models must name at least one" in capsys.readouterr().err
    assert main(["compare", "--params", "3000", "--seeds", "x", "--data", str(shd_dir), "--out", str(tmp_path)]) == 2
    assert "--seeds expects" in capsys.readouterr().err
    assert main(["compare", "--params", "3000", "--set", "d_m=3", "--data", str(shd_dir), "--out", str(tmp_path)]) == 2
    assert "MODEL:FIELD=VALUE" in capsys.readouterr().err


def test_demo_pipeline_export_and_analyze(tmp_path, capsys, monkeypatch):
    paths = run_demo(tmp_path / "demo", params=6000, epochs=1, batches_per_epoch=2, n_train=80, n_test=30,
                     workers=1, progress=False, valid_batches=1, test_batches=2)
    text = paths["report"].read_text()
    assert "| elm |" in text and text.count("analysis/results/budget-tradeoff/README.md") == 1
    root = Path(__file__).resolve().parents[1]
    for plan in ("budget-tradeoff", "neuron-comparison"):  # the links lead to committed reports
        assert f"analysis/results/{plan}/README.md" in text and (root / "analysis" / "results" / plan / "README.md").is_file()
    assert paths["learning_curves"].stat().st_size > 1000
    assert paths["timescales"] and (tmp_path / "demo" / "timescales.png").stat().st_size > 1000
    elm_run = tmp_path / "demo" / "compare" / "elm-s0"
    out = export_run(elm_run, tmp_path / "models" / "demo-elm")
    card = (out / "MODEL_CARD.md").read_text()
    assert "`elm` network" in card and "elm_neuro.load_run" in card
    # the load line names the export's folder, not its name alone
    assert f'elm_neuro.load_run("{out.resolve().as_posix()}")' in card or 'load_run("models/demo-elm")' in card
    # one seed per model: no "mean ± std" claim
    assert "one seed per model" in text and "mean ± std" not in text
    run = elm_neuro.load_run(out)
    orig = elm_neuro.load_run(elm_run)
    x = (torch.rand(2, 10, run.model.cfg.n_in) < 0.2).float()
    assert torch.equal(run.model(x).logits, orig.model(x).logits)
    with pytest.raises(ValueError, match="only finished runs"):
        (tmp_path / "unfinished").mkdir()
        export_run(tmp_path / "unfinished", tmp_path / "x")
    lif_run = tmp_path / "demo" / "compare" / "lif-s0"
    assert main(["analyze", "timescales", str(elm_run), str(lif_run), "--labels", "ELM,LIF",
                 "--out", str(tmp_path / "ts.png")]) == 0
    assert (tmp_path / "ts.png").stat().st_size > 1000
    from elm_neuro.analysis import activity as A

    rasters, real_raster = [], A.plot_raster
    monkeypatch.setattr(A, "plot_raster", lambda *a, **kw: rasters.append(kw) or real_raster(*a, **kw))
    capsys.readouterr()
    assert main(["analyze", "activity", str(lif_run), "--out", str(tmp_path / "act")]) == 0
    assert rasters == [{"dt": 20.0, "unit": "ms"}]  # the raster's time axis in ms (the demo: 20 ms bins)
    stats = json.loads(capsys.readouterr().out)
    # spikes: spikes per bin and in Hz, not three copies of one number
    assert stats["spikes"] and stats["bin_ms"] == 20.0
    assert stats["rate_hz"] == pytest.approx(stats["spikes_per_bin"] * 50.0)
    assert "mean_activity" not in stats and "active_fraction" not in stats
    assert (tmp_path / "act" / "raster.png").stat().st_size > 1000
    assert main(["analyze", "timescales", str(elm_run), "--labels", "A,B", "--out", str(tmp_path / "t.png")]) == 2


def test_compare_cli_passes_the_learning_rate_search(shd_dir, tmp_path, capsys, monkeypatch):
    from elm_neuro import defaults as D
    from elm_neuro.experiments import compare as C

    seen = {}

    def fake(out, base, models, seeds, overrides, **kw):
        seen.update(kw, models=models, seeds=seeds)
        (tmp_path / "report.md").write_text("report")
        return tmp_path / "report.md"

    monkeypatch.setattr(C, "compare", fake)
    args = ["compare", "--params", "3000", "--models", "elm,lif", "--seeds", "2", "--data", str(shd_dir),
            "--out", str(tmp_path / "o")]
    assert main(args + ["--lr-grid", "0.01,1e-3", "--bin-width-taus"]) == 0
    assert seen["lr_grid"] == [0.01, 1e-3] and seen["bin_width_taus"] is True and seen["seeds"] == [0, 1]
    assert main(args + ["--lr-grid", "default"]) == 0
    assert seen["lr_grid"] == [float(v) for v in D.LR_GRID] and seen["bin_width_taus"] is False
    assert main(args) == 0 and seen["lr_grid"] is None
    assert main(args + ["--lr-grid", "fast"]) == 2
    assert "--lr-grid expects" in capsys.readouterr().err
