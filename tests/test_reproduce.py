"""`elm-neuro reproduce`: named plans run end to end at tiny sizes, resume, refuse another plan's
folder, and their reports are functions of results.csv alone."""
import copy
import json
import math

import pytest

from elm_neuro import defaults as D
from elm_neuro.cli.main import main
from elm_neuro.data.provenance import shd_provenance
from elm_neuro.experiments import reproduce as R
from elm_neuro.experiments.sweep_plan import plan_cells

SMALL_ELM = {"d_tree": 3, "d_brch": 3, "readout.d_tree": 3, "readout.d_brch": 2}
TINY_TRAIN = dict(bin_ms=50.0, channel_factor=7, batch_size=4, warmup=1, epochs=1, batches_per_epoch=2,
                  valid_batches=1, test_batches=1, log_every=1)


def _tiny_plans():
    return {
        "budget-tradeoff": dict(version=1, data="synthetic", n_train=40, n_test=24, seed=0, recipe="demo",
                                train=dict(TINY_TRAIN, task="shd-adding"), metric="test_acc",
                                stages=[dict(name="d_m", kind="sweep", model="elm", axis="d_m", values=[1, 2],
                                             budgets=[1500, 3000], seeds=[0], fixed=SMALL_ELM)]),
        "neuron-comparison": dict(version=1, data="synthetic", n_train=40, n_test=24, seed=0, recipe="demo",
                                  train=dict(TINY_TRAIN), metric="test_acc",
                                  stages=[dict(name="shd", kind="compare", task="shd", models=["elm", "lstm"],
                                               params=2500, seeds=[0], fixed=dict(elm=dict(SMALL_ELM, d_m=2)))]),
    }


@pytest.fixture
def tiny_plans(monkeypatch):
    plans = _tiny_plans()
    monkeypatch.setattr(D, "PLANS", plans)
    return plans


def test_budget_plan_runs_resumes_and_its_report_comes_from_the_table(tmp_path, tiny_plans, capsys):
    out = tmp_path / "bt"
    assert main(["reproduce", "budget-tradeoff", "--out", str(out), "--workers", "1", "--no-progress",
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "expected" in printed and "CPU-hours" in printed
    rows = R.read_results_csv(out / "results" / "results.csv")
    assert sorted(r["run_id"] for r in rows) == sorted(
        c.name for c in R.plan_cells_of(tiny_plans["budget-tradeoff"], out / "data"))
    assert len(rows) == 4 and {r["stage"] for r in rows} == {"d_m"}
    # every configuration field the analysis needs is a column: the plan's fixed fields, lr, data
    for r in rows:
        assert (r["d_tree"], r["d_brch"], r["readout.d_tree"], r["readout.d_brch"]) == (3, 3, 3, 2)
        assert r["lr"] == D.LR
        assert r["data_source"] == "synthetic" and r["bin_ms"] == 50.0 and r["budget_scope"] == "network"
        assert 0 < r["readout_coverage"] <= 1
    for p in ("d_m_sweep.png", "heatmap_n_dm.png"):
        assert (out / "results" / p).is_file()
    readme = (out / "results" / "README.md").read_text()
    # the report is recomputed from the table alone
    assert readme == R.render_report("budget-tradeoff", tiny_plans["budget-tradeoff"], rows)
    for b in (1500, 3000):
        assert f"### P ≈ {b:,}" in readme
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("d_m/cells/*/summary.json")}
    assert len(mtimes) == 4
    # a second call resumes: nothing is trained again
    assert main(["reproduce", "budget-tradeoff", "--out", str(out), "--workers", "1", "--no-progress",
                 "--no-estimate", "--threads", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("d_m/cells/*/summary.json")} == mtimes
    # another version of the plan (or another plan) is refused in this folder
    tiny_plans["budget-tradeoff"]["version"] = 2
    assert main(["reproduce", "budget-tradeoff", "--out", str(out), "--no-estimate"]) == 2
    assert "version 1, not 'budget-tradeoff' version 2" in capsys.readouterr().err
    assert main(["reproduce", "neuron-comparison", "--out", str(out), "--no-estimate"]) == 2


def test_comparison_plan_table_and_report(tmp_path, tiny_plans):
    out = tmp_path / "nc"
    report = R.run_plan("neuron-comparison", out, workers=1, threads=1, progress=False, estimate=False)
    rows = R.read_results_csv(out / "results" / "results.csv")
    assert [(r["stage"], r["family"], r["seed"]) for r in rows] == [("shd", "elm", 0), ("shd", "lstm", 0)]
    assert all(abs(r["p"] - 2500) <= 0.1 * 2500 for r in rows)
    elm = rows[0]
    assert (elm["d_m"], elm["d_tree"], elm["d_brch"], elm["readout.d_brch"]) == (2, 3, 3, 2)
    assert all(r["data_source"] == "synthetic" and r["lr"] > 0 for r in rows)
    text = report.read_text()
    assert text == R.render_report("neuron-comparison", tiny_plans["neuron-comparison"], rows)
    for r in rows:
        assert f"| {r['family']} | {r['n']} | {r['p']:,} | {r['test_acc']:.3f} ± 0.000 (n=1) |" in text
    assert (out / "results" / "timescales.png").is_file()


def test_real_data_plan_refuses_synthetic_or_missing_data(tmp_path):
    with pytest.raises(ValueError, match="give --data DIR"):
        R.run_plan("paper", tmp_path / "p", estimate=False)
    from elm_neuro.data.synth import write_synthetic_shd

    write_synthetic_shd(tmp_path / "syn", 20, 10, seed=0)
    with pytest.raises(ValueError, match="synthetic SHD files"):
        R.run_plan("paper", tmp_path / "p2", data_dir=tmp_path / "syn", estimate=False)


def _rows(values):
    """A d_m-stage table: {(budget, d_m): [metric per seed]}."""
    rows = []
    for (b, dm), accs in values.items():
        for s, a in enumerate(accs):
            rows.append({"stage": "d_m", "run_id": f"p{b}-dm{dm}-s{s}", "p_target": b, "p": b, "n": b // (10 * dm),
                         "d_m": dm, "seed": s, "test_acc": a})
    return rows


def test_tradeoff_numbers_by_hand():
    rows = _rows({(1000, 1): [0.2, 0.3], (1000, 2): [0.5, 0.6], (1000, 4): [0.4, 0.4],
                  (10000, 1): [0.3, 0.3], (10000, 2): [0.4, 0.5], (10000, 4): [0.7, 0.6]})
    num = R.tradeoff_numbers(rows, "test_acc")
    small, large = num["budgets"]
    assert (small["budget"], small["best_d_m"], small["interior"]) == (1000, 2, True)
    assert (large["budget"], large["best_d_m"], large["interior"]) == (10000, 4, False)
    assert small["cells"][0]["mean"] == pytest.approx(0.25) and small["cells"][0]["sd"] == pytest.approx(
        math.sqrt(0.005))
    # margin over the better end point (d_m 4: 0.4 +- 0), in the pooled sd of the two cells
    assert small["margin_sd"] == pytest.approx((0.55 - 0.4) / math.sqrt((0.005 + 0.0) / 2))
    assert large["margin_sd"] == 0.0
    text = R.budget_tradeoff_report(rows, dict(version=1, metric="test_acc", data="synthetic",
                                                train=dict(task="shd-adding")))
    assert text.startswith("# Budget trade-off: ELM networks on synthetic SHD-Adding")
    assert "Best: d_m = 2 (N = 50), test_acc 0.550: an interior optimum" in text
    assert "P 1,000: d_m* 2, N* 50, P 10,000: d_m* 4, N* 250." in text


def test_plans_are_well_formed_and_resolve(tmp_path):
    for name in R.plan_names():
        plan = R.get_plan(name)
        jobs = R.plan_jobs(plan, tmp_path)  # resolves every model and budget (no data needed to plan)
        seeds = {s for stage in plan["stages"] for s in stage["seeds"]}
        assert jobs and {cfg.seed for _, cfg in jobs} == seeds and len(seeds) >= 3
        assert json.loads(json.dumps(plan)) == plan  # plans are plain JSON (stored in plan.json)
    bt = R.get_plan("budget-tradeoff")
    budgets = bt["stages"][0]["budgets"]
    assert [b / budgets[0] for b in budgets] == [1, 10, 100]  # three budgets a decade apart
    assert len(R.plan_jobs(bt, tmp_path)) == (4 * 3 + 5 + 5) * 3
    with pytest.raises(ValueError, match="plan must be one of"):
        R.get_plan("nope")
    bad = copy.deepcopy(bt)
    bad["stages"].append(dict(bad["stages"][0]))
    with pytest.raises(ValueError, match="stage names must be unique"):
        R.check_plan("x", bad)


def test_a_second_reproduce_into_a_busy_folder_is_refused(tmp_path, tiny_plans):
    import multiprocessing as mp

    from elm_neuro.atomic import FolderLocked

    out = tmp_path / "busy"  # held by another process (this one would re-enter its own lock)

    ready, release = mp.get_context("spawn").Event(), mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=_hold_lock, args=(str(out), ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        with pytest.raises(FolderLocked, match="in use by another elm-neuro process"):
            R.run_plan("neuron-comparison", out, estimate=False, progress=False)
    finally:
        release.set()
        proc.join(60)
    assert not (out / "results").exists()


def _hold_lock(folder, ready, release):
    from elm_neuro.atomic import folder_lock

    with folder_lock(folder):
        ready.set()
        release.wait(60)


def test_a_comparison_stage_with_a_failed_cell_stops_the_plan_with_one_line(tmp_path, tiny_plans, monkeypatch,
                                                                            capsys):
    """A failed cell of a comparison stage is reported like a sweep stage's (the stage, the cell,
    where the report lists it, what to do), exit 1, no traceback; the other model finished."""
    from elm_neuro.experiments import compare as C

    real = C.run_training

    def lstm_fails(run_dir, cfg, **kw):
        if cfg.model == "lstm":
            raise RuntimeError("simulated crash")
        return real(run_dir, cfg, **kw)

    monkeypatch.setattr(C, "run_training", lstm_fails)
    out = tmp_path / "nc"
    code = main(["reproduce", "neuron-comparison", "--out", str(out), "--workers", "1", "--no-progress",
                 "--no-estimate", "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "Traceback" not in "".join(err)
    assert err[0] == "compare: cell lstm-s0 failed: RuntimeError: simulated crash"  # as it happened
    assert "stage shd: 1 cell(s) failed: ['lstm-s0']" in err[-1] and "run the same command again" in err[-1]
    assert err[-1].startswith("elm-neuro reproduce: error:") and "unexpected" not in err[-1]
    assert (out / "shd" / "elm-s0" / "summary.json").is_file()


def test_a_comparison_stage_searches_its_learning_rates(tmp_path, monkeypatch):
    """A compare stage with ``lr_grid`` and ``bin_width_taus``: reproduce passes them to compare (one
    run per rate, the cell keeps the best on the validation split), counts one job per rate, and
    the table records the chosen rate and the spiking family's bin-width time constants."""
    plan = dict(_tiny_plans()["neuron-comparison"])
    small_lif = {"n_synapses": 3, "readout_d_tree": 3, "readout_d_brch": 2}
    fixed = dict(plan["stages"][0]["fixed"], lif=small_lif)
    plan["stages"] = [dict(plan["stages"][0], models=["elm", "lif"], fixed=fixed, lr_grid=[1e-3, 1e-2],
                           bin_width_taus=True)]
    monkeypatch.setattr(D, "PLANS", {"fair": plan})
    out = tmp_path / "fair"
    assert len(R.plan_jobs(plan, out / "data")) == 2 * 1 * 2  # models x seeds x rates
    R.run_plan("fair", out, workers=1, threads=1, progress=False, estimate=False)
    rows = R.read_results_csv(out / "results" / "results.csv")
    assert [(r["family"], r["seed"]) for r in rows] == [("elm", 0), ("lif", 0)]
    for r in rows:
        search = json.loads((out / "shd" / f"{r['family']}-s0" / "lr_search.json").read_text())
        scores = {x["lr"]: x["valid_acc"] for x in search["runs"]}
        assert sorted(scores) == [1e-3, 1e-2] and search["metric"] == "valid_acc"
        best = max(sorted(scores), key=lambda lr: scores[lr])  # ties: the smaller rate
        assert r["lr"] == search["lr"] == best and r["valid_acc"] == scores[best]
    lif = rows[1]
    from elm_neuro.networks.lif_config import LIFNetworkConfig

    want = LIFNetworkConfig.bin_width_taus(TINY_TRAIN["bin_ms"])
    assert lif["tau_mem_min"] == want["tau_mem_min"] and lif["tau_mem_max"] == want["tau_mem_max"]


def test_spoken_plans_answer_the_design_questions(tmp_path):
    """budget-tradeoff-spoken: at least 5 budgets over at least two decades, every cell a network of
    N >= 2 with its hidden layer within 10 % of its budget and a readout reading every hidden neuron,
    d_m up to 32 at the top budgets; neuron-comparison-spoken: 5 seeds, the learning-rate grid and
    bin-width timescales; both on 2,000 spoken test digits."""
    bt = R.get_plan("budget-tradeoff-spoken")
    budgets = bt["stages"][0]["budgets"]
    assert len(budgets) >= 5 and budgets[-1] / budgets[0] >= 100
    cells = plan_cells(R.stage_grid(bt, bt["stages"][0], tmp_path))
    assert len(cells) == (4 + 5 + 5 + 6 + 5) * 3
    assert all(c.n >= 2 and abs(c.p_hidden - c.p_target) <= 0.1 * c.p_target for c in cells)
    assert all(c.readout_coverage == 1.0 and c.budget_scope == "hidden" for c in cells)
    top = {b: max(c.d_m for c in cells if c.p_target == b) for b in budgets}
    assert top == {1000: 8, 3000: 16, 10000: 16, 30000: 32, 100000: 32}
    nc = R.get_plan("neuron-comparison-spoken")
    stage = nc["stages"][0]
    assert stage["seeds"] == [0, 1, 2, 3, 4] and stage["bin_width_taus"]
    assert stage["lr_grid"] == [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]  # at least 1e-3..3e-2, extended past 3e-2
    assert len(R.plan_jobs(nc, tmp_path)) == 4 * 5 * 6
    for plan in (bt, nc):
        assert (plan["data"], plan["n_test"], plan["train"]["task"]) == ("spoken", 2000, "shd")


TINY_SPOKEN = dict(version=1, data="spoken", n_train=40, n_test=12, seed=0, recipe="demo",
                   train=dict(TINY_TRAIN, task="shd"), metric="test_acc",
                   stages=[dict(name="d_m", kind="sweep", model="elm", axis="d_m", values=[1], budgets=[1500],
                                seeds=[0], fixed=SMALL_ELM)])


def test_a_spoken_plan_makes_its_digits_or_takes_matching_ones(tmp_path, monkeypatch, capsys):
    """data "spoken": without --data the digits are made under OUT/data (n_train / n_test / seed of the
    plan; the runs record source "spoken"); --data must hold spoken digits of the plan's counts and
    seed, anything else is refused before anything is written, naming the command that makes them."""
    pytest.importorskip("espeakng_loader", reason="espeakng-loader (espeak-ng) is not installed: "
                        "pip install espeakng-loader")
    from elm_neuro.data.synth import write_synthetic_shd

    monkeypatch.setattr(D, "PLANS", {"tiny-spoken": copy.deepcopy(TINY_SPOKEN),
                                     "tiny-spoken-s1": dict(copy.deepcopy(TINY_SPOKEN), seed=1)})
    out = tmp_path / "made"
    R.run_plan("tiny-spoken", out, workers=1, threads=1, progress=False, estimate=False)
    rows = R.read_results_csv(out / "results" / "results.csv")
    assert len(rows) == 1 and rows[0]["data_source"] == "spoken"
    assert shd_provenance(out / "data")["source"] == "spoken"
    # the same digits given with --data are taken; a plan of another seed refuses them
    taken = tmp_path / "taken"
    R.run_plan("tiny-spoken", taken, data_dir=out / "data", workers=1, threads=1, progress=False, estimate=False)
    assert not (taken / "data").exists() and len(R.read_results_csv(taken / "results" / "results.csv")) == 1
    with pytest.raises(ValueError, match=r"holds 40 spoken digits of seed 0; this plan needs 40 of seed 1 "
                                         r"\(elm-neuro data spoken --train 40 --test 12 --seed 1\)"):
        R.run_plan("tiny-spoken-s1", tmp_path / "s1", data_dir=out / "data", estimate=False)
    write_synthetic_shd(tmp_path / "syn", 20, 10, seed=0)
    with pytest.raises(ValueError, match="synthetic SHD files .*this plan trains on spoken digits"):
        R.run_plan("tiny-spoken", tmp_path / "s2", data_dir=tmp_path / "syn", estimate=False)
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()


def test_optimum_shares_resample_the_seeds():
    """A cell whose every seed beats every seed of the others wins every replicate; two cells of equal
    seed values split by the tie rule (the smaller d_m); shares sum to 1 and are reproducible."""
    cells = [{"d_m": 1, "values": [0.1, 0.2]}, {"d_m": 2, "values": [0.5, 0.6]}, {"d_m": 4, "values": [0.3, 0.4]}]
    assert R.optimum_shares(cells, n_boot=200) == {2: 1.0}
    tie = [{"d_m": 2, "values": [0.5]}, {"d_m": 8, "values": [0.5]}, {"d_m": 16, "values": []}]
    assert R.optimum_shares(tie, n_boot=50) == {2: 1.0}
    mixed = [{"d_m": 1, "values": [0.2, 0.6]}, {"d_m": 2, "values": [0.4, 0.4]}]
    shares = R.optimum_shares(mixed, n_boot=400, seed=3)
    # d_m 1 wins when its resample has mean 0.6 (both 0.6: 1/4) and ties at 0.4 (1/2) go to d_m 1
    assert set(shares) == {1, 2} and abs(sum(shares.values()) - 1) < 1e-12
    assert abs(shares[1] - 0.75) < 0.08 and shares == R.optimum_shares(mixed, n_boot=400, seed=3)
    assert R._shares_text({4: 0.3, 8: 0.62, 16: 0.076, 1: 0.004}) == "8 (62 %), 4 (30 %), 16 (8 %), 1 (<1 %)"


def test_comparison_report_says_what_each_family_got():
    rows = [{"stage": "shd", "task": "shd", "family": f, "seed": s, "n": 10, "p": 1000, "test_acc": a, "lr": lr}
            for f, s, a, lr in (("elm", 0, 0.5, 3e-3), ("elm", 1, 0.6, 3e-3), ("elm", 2, 0.55, 1e-2),
                                ("lif", 0, 0.3, 1e-2), ("lif", 1, 0.2, 3e-2), ("lif", 2, 0.25, 1e-2))]
    plan = dict(version=1, data="spoken", metric="test_acc", train=dict(lr=5e-3),
                stages=[dict(name="shd", kind="compare", lr_grid=[1e-3, 3e-3, 1e-2, 3e-2], bin_width_taus=True)])
    text = R.comparison_report(rows, plan)
    assert text.startswith("# Neuron comparison at equal parameter budget (spoken digits)")
    assert ("Learning rate chosen per (model, seed) on the validation split from {0.001, 0.003, 0.01, 0.03}: "
            "elm 0.003 x2, 0.01; lif 0.01 x2, 0.03.") in text
    assert "Spiking timescales (lif) initialised for the time bin and learnable: membrane 5-25 steps" in text
    plain = dict(plan, data="synthetic", stages=[dict(name="shd", kind="compare")])
    text = R.comparison_report([{k: v for k, v in r.items() if k != "lr"} for r in rows], plain)
    assert "(synthetic data)" in text and "not adapted to the time bin" in text
    assert "Learning rate (one for every family, not tuned): 0.005 for every family (the plan's recipe" in text


def test_hidden_budget_report_names_the_plan_and_both_parameter_counts():
    rows = _rows({(1000, 1): [0.2, 0.3], (1000, 2): [0.5, 0.6], (1000, 4): [0.4, 0.4]})
    for r in rows:
        r.update(budget_scope="hidden", p_hidden=r["p"] - 10 * r["d_m"], p=r["p"] + 1200, readout_coverage=1.0)
    plan = dict(version=3, metric="test_acc", data="spoken", train=dict(task="shd"),
                stages=[dict(name="d_m", kind="sweep")])
    text = R.render_report("my-plan", plan, rows)
    assert text.startswith("# Budget trade-off: ELM networks on spoken-digit SHD (20 classes)")
    assert "Plan `my-plan` version 3" in text
    assert "the readout outside the compared budget; the readout reads every hidden neuron in every run." in text
    assert "| d_m | N | P hidden | P | test_acc |" in text and "| 2 | 50 | 980 | 2,200 | 0.550 ± 0.071 (n=2) |" in text
    rows[0]["readout_coverage"] = 0.5
    assert "the readout reaches at least 50% of the hidden neurons in every run" in R.render_report("p", plan, rows)
