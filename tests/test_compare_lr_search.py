"""A fair comparison (issue 23 §2): each (model, seed) cell picks its learning rate on the
validation split from a grid (``compare(..., lr_grid=...)``), and the LIF / adLIF timescales
start at the bin width's ranges (``LIFNetworkConfig.bin_width_taus``)."""
import copy
import json
import math

import pytest
import torch

from elm_neuro import defaults as D
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments import compare as C
from elm_neuro.networks.lif_config import LIFLayerConfig, LIFNetworkConfig
from elm_neuro.networks.lif_network import LIFNetwork
from elm_neuro.training.common import TrainingDiverged
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.run import RunDir


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 100, 40, seed=2)
    return d


def base_cfg(shd, **kw):
    return TrainConfig(**{**dict(task="shd-adding", data_dir=str(shd), epochs=1, batches_per_epoch=2, batch_size=4,
                                 valid_batches=2, test_batches=2, bin_ms=100.0, channel_factor=14, warmup=1,
                                 params=3000, device="cpu"), **kw})


ELM = dict(d_m=2, d_tree=4, d_brch=3)
LIF = dict(n_synapses=12, readout_d_tree=4, readout_d_brch=3)


# --------------------------------------------------------------------------- selection rule
def test_select_lr_best_score_ties_to_the_smaller_lr():
    assert C.select_lr([(1e-2, 0.5), (1e-3, 0.5), (3e-3, 0.4)]) == 1e-3  # tie: the smaller lr, in any order
    assert C.select_lr([(1e-3, 0.2), (3e-3, None), (1e-2, 0.3), (3e-2, float("nan"))]) == 1e-2
    assert C.select_lr([(1e-3, 1.9), (3e-3, 1.7), (1e-2, 1.7)], higher_is_better=False) == 3e-3  # bits per character
    assert C.select_lr([(1e-3, None)]) is None
    assert C.search_metric("shd-adding") == ("valid_acc", True) and C.search_metric("enwik8") == ("valid_bpc", False)


def test_the_grid_is_checked_and_sorted():
    assert C.check_lr_grid([3e-2, 1e-3, 1e-2, 3e-3]) == [1e-3, 3e-3, 1e-2, 3e-2]
    assert C.lr_dir(C.Path("c"), 3e-3).name == "lr-0.003" and C.lr_dir(C.Path("c"), 1e-5).name == "lr-1e-05"
    for bad, match in (([], "at least one"), ([1e-3, -1.0], "finite numbers > 0"), ([1e-3, float("inf")], "finite"),
                       ([True], "finite"), ("1e-3", "list"), ([1e-3, 1.0000001e-3], "differ")):
        with pytest.raises(ValueError, match=match):
            C.check_lr_grid(bad)
    assert {1e-3, 3e-3, 1e-2, 3e-2} <= set(D.LR_GRID)


# --------------------------------------------------------------------------- hand-made scores
# valid_acc of each (cell, lr); "div" diverges after some updates (a result of the search)
SCORES = {"elm-s0": {1e-3: 0.4, 3e-3: 0.6, 1e-2: 0.6, 3e-2: "div"},
          "elm-s1": {1e-3: 0.7, 3e-3: 0.5, 1e-2: 0.2, 3e-2: "div"}}
GRID = [1e-3, 3e-3, 1e-2, 3e-2]


def _fake_trainer(calls, fail=()):
    """A trainer writing a finished run with the valid_acc of SCORES (test_acc = valid_acc / 2)."""
    def run_training(run_dir, cfg, resume, progress, changes=None):
        cell = run_dir.parent.name
        calls.append((cell, cfg.lr))
        assert run_dir.name == f"lr-{cfg.lr:g}" and not resume
        if (cell, cfg.lr) in fail:
            raise RuntimeError("disk on fire")
        score = SCORES[cell][cfg.lr]
        if score == "div":
            raise TrainingDiverged("non-finite loss (nan) at epoch 1, step 2 after 1 update", updates=1)
        run = RunDir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps({"train": cfg.to_dict(), "model": {"family": "elm"}}))
        (run_dir / "metrics.jsonl").write_text(json.dumps({"kind": "valid", "epoch": 1, "acc": score}) + "\n")
        (run_dir / "best.pt").write_bytes(b"weights of lr %g" % cfg.lr)
        summary = {"status": "completed", "task": cfg.task, "family": cfg.model, "seed": cfg.seed, "n": 5, "k_e": 3,
                   "k_c": 12, "p": 3000, "d_m": 2, "best_epoch": 1, "valid_acc": score, "test_acc": score / 2,
                   "wall_s": 2.0}
        run.write_summary(summary)
        return summary
    return run_training


def test_the_chosen_lr_and_every_score_are_recorded(shd, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(C, "run_training", _fake_trainer(calls))
    report = C.compare(tmp_path, base_cfg(shd), ["elm"], [0, 1], {"elm": ELM}, progress=False, lr_grid=GRID[::-1])
    assert sorted(calls) == sorted((c, lr) for c in SCORES for lr in GRID)  # one run per (cell, lr)
    for cell, chosen, scores in (("elm-s0", 3e-3, [0.4, 0.6, 0.6, None]),  # tie 0.6: the smaller lr
                                 ("elm-s1", 1e-3, [0.7, 0.5, 0.2, None])):
        d = tmp_path / cell
        record = json.loads((d / "lr_search.json").read_text())
        assert record["grid"] == GRID and record["metric"] == "valid_acc" and record["lr"] == chosen
        assert record["run"] == f"lr-{chosen:g}"
        assert [(e["lr"], e["status"], e["valid_acc"]) for e in record["runs"]] == [
            (lr, "diverged" if s is None else "completed", s) for lr, s in zip(GRID, scores)]
        assert "non-finite loss" in record["runs"][3]["reason"]
        s = RunDir(d).read_summary()
        # the cell is the chosen run: its summary (plus the search), config, metrics and weights
        assert s["status"] == "completed" and s["lr"] == chosen
        assert s["valid_acc"] == SCORES[cell][chosen] and s["test_acc"] == SCORES[cell][chosen] / 2
        assert s["lr_search"]["grid"] == GRID and s["lr_search"]["scores"] == scores and s["lr_search"]["lr"] == chosen
        assert s["lr_search"]["wall_s"] == 6.0  # three finished runs of 2 s
        assert RunDir(d).read_config()["train"]["lr"] == chosen
        assert (d / "best.pt").read_bytes() == b"weights of lr %g" % chosen
        assert RunDir(d).read_metrics() == [{"kind": "valid", "epoch": 1, "acc": SCORES[cell][chosen]}]
    text = report.read_text()
    assert "| model | N | k_e | k_c | P | lr | valid | test | wall (s) | seeds |" in text
    assert "| elm | 5 | 3 | 12 | 3000 | 0.003, 0.001 | 0.650 ± 0.071 | 0.325 ± 0.035 | 2 | 2 |" in text
    assert "## Learning rates" in text and "highest `valid_acc` (ties: the smaller learning rate)" in text
    assert ("| elm | 0.003 (s0), 0.001 (s1) | 0.550 ± 0.212 | 0.550 ± 0.071 | 0.400 ± 0.283 | diverged | 6 |"
            in text)

    # resume: a second call trains nothing and changes nothing
    calls.clear()
    mtime = (tmp_path / "elm-s0" / "summary.json").stat().st_mtime_ns
    C.compare(tmp_path, base_cfg(shd), ["elm"], [0, 1], {"elm": ELM}, progress=False, lr_grid=GRID)
    assert calls == [] and (tmp_path / "elm-s0" / "summary.json").stat().st_mtime_ns == mtime

    # one folder, one protocol
    with pytest.raises(ValueError, match=r"elm-s0 was trained by a learning-rate search over .*same lr_grid"):
        C.compare(tmp_path, base_cfg(shd), ["elm"], [0, 1], {"elm": ELM}, progress=False)
    with pytest.raises(ValueError, match=r"searched over the learning rates .*, not \[0.001, 0.01\]"):
        C.compare(tmp_path, base_cfg(shd), ["elm"], [0, 1], {"elm": ELM}, progress=False, lr_grid=[1e-3, 1e-2])
    assert calls == []


def test_a_failed_run_is_retried_and_a_diverged_one_is_not(shd, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(C, "run_training", _fake_trainer(calls, fail={("elm-s1", 1e-2)}))
    with pytest.raises(C.CellsFailed) as info:
        C.compare(tmp_path, base_cfg(shd), ["elm"], [0, 1], {"elm": ELM}, progress=False, lr_grid=GRID)
    assert info.value.failed == {"elm-s1": "lr 0.01: RuntimeError: disk on fire"}
    assert RunDir(tmp_path / "elm-s0").read_summary()["lr"] == 3e-3
    assert RunDir(tmp_path / "elm-s1").read_summary() is None
    assert "- `elm-s1` (model elm, seed 1): lr 0.01: RuntimeError: disk on fire" in info.value.report.read_text()
    # again: only the failed run trains (finished runs are kept, the diverged lr is a result)
    calls.clear()
    monkeypatch.setattr(C, "run_training", _fake_trainer(calls))
    C.compare(tmp_path, base_cfg(shd), ["elm"], [0, 1], {"elm": ELM}, progress=False, lr_grid=GRID)
    assert calls == [("elm-s1", 1e-2)]
    assert RunDir(tmp_path / "elm-s1").read_summary()["lr"] == 1e-3


@pytest.mark.filterwarnings("ignore:No artists with labels")  # no finished cell: an empty figure
def test_a_cell_where_every_lr_diverged_fails(shd, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(C, "run_training", _fake_trainer(calls))
    with pytest.raises(C.CellsFailed) as info:
        C.compare(tmp_path, base_cfg(shd), ["elm"], [0], {"elm": ELM}, progress=False, lr_grid=[3e-2])
    assert info.value.failed == {"elm-s0": "ValueError: every learning rate of the grid [0.03] diverged; try "
                                           "smaller ones"}


def test_a_folder_trained_at_one_lr_is_refused_for_a_search(shd, tmp_path, monkeypatch):
    (tmp_path / "elm-s0").mkdir()
    (tmp_path / "elm-s0" / "config.json").write_text(json.dumps({"train": {"lr": 5e-3}}))
    with pytest.raises(ValueError, match=r"elm-s0 was trained at one learning rate \(lr 0.005\) without a search"):
        C.compare(tmp_path, base_cfg(shd), ["elm"], [0], {"elm": ELM}, progress=False, lr_grid=GRID)


# --------------------------------------------------------------------------- real training, tiny
def test_lr_search_on_a_tiny_problem_with_bin_width_taus(shd, tmp_path, monkeypatch):
    grid = [1e-3, 3e-2]
    report = C.compare(tmp_path, base_cfg(shd), ["elm", "lif"], [0], {"elm": ELM, "lif": LIF}, progress=False,
                       lr_grid=grid, bin_width_taus=True)
    for model in ("elm", "lif"):
        cell = C.cell_dir(tmp_path, model, 0)
        runs = {lr: RunDir(C.lr_dir(cell, lr)) for lr in grid}
        subs = {lr: r.read_summary() for lr, r in runs.items()}
        assert all(r.read_config()["train"]["lr"] == lr for lr, r in runs.items())
        valid = {lr: s["valid_acc"] for lr, s in subs.items()}
        chosen = max(grid, key=lambda lr: (valid[lr], -lr))  # the best; a tie goes to the smaller lr
        s = RunDir(cell).read_summary()
        assert s["lr"] == chosen and s["lr_search"]["scores"] == [valid[lr] for lr in grid]
        assert (s["valid_acc"], s["test_acc"], s["p"]) == (subs[chosen]["valid_acc"], subs[chosen]["test_acc"],
                                                           subs[chosen]["p"])
        assert json.loads((cell / "lr_search.json").read_text())["lr"] == chosen
        assert (cell / "best.pt").read_bytes() == runs[chosen].best.read_bytes()
    # the LIF started at the 100 ms bins' timescales: 5..25 steps, readout 1..500 steps
    hidden = RunDir(C.cell_dir(tmp_path, "lif", 0)).read_config()["model"]["config"]
    assert (hidden["hidden"]["dt"], hidden["hidden"]["tau_mem_min"], hidden["hidden"]["tau_mem_max"]) == (100.0, 500.0,
                                                                                                         2500.0)
    assert hidden["hidden"]["learn_tau"] is True
    assert (hidden["elm_readout"]["tau_min"], hidden["elm_readout"]["tau_max"]) == (100.0, 50000.0)
    text = report.read_text()
    assert "| elm | " in text and "| lif | " in text and "## Learning rates" in text
    assert "lif: timescales initialised for the 100 ms bins (membrane 500..2500 ms" in text
    # the plan's results table reads the chosen run, with its learning rate
    from elm_neuro.experiments.reproduce import _summary_row

    row = _summary_row("shd-adding", C.cell_dir(tmp_path, "elm", 0), {"family": "elm", "seed": 0})
    assert row["run_id"] == "elm-s0" and row["lr"] == RunDir(C.cell_dir(tmp_path, "elm", 0)).read_summary()["lr"]
    # resume: nothing trains
    monkeypatch.setattr(C, "run_training", lambda *a, **k: pytest.fail("a finished comparison trained again"))
    C.compare(tmp_path, base_cfg(shd), ["elm", "lif"], [0], {"elm": ELM, "lif": LIF}, progress=False, lr_grid=grid,
              bin_width_taus=True)


# --------------------------------------------------------------------------- timescales for the bin width
@pytest.mark.parametrize("dt, mem, adapt", [(1.0, (5.0, 25.0), (30.0, 120.0)), (2.0, (10.0, 50.0), (60.0, 240.0)),
                                            (20.0, (100.0, 500.0), (600.0, 2400.0)),
                                            (0.5, (5.0, 25.0), (30.0, 120.0))])  # finer bins keep the 1 ms ranges
def test_bin_width_tau_ranges(dt, mem, adapt):
    f = LIFLayerConfig.bin_width_taus(dt)
    assert f == dict(dt=dt, tau_mem_min=mem[0], tau_mem_max=mem[1], tau_adapt_min=adapt[0], tau_adapt_max=adapt[1],
                     learn_tau=True)
    net = LIFNetworkConfig.bin_width_taus(dt)
    assert (net["readout_tau_min"], net["readout_tau_max"]) == (dt, 500.0 * dt)  # the ELM's 1..500 steps
    if dt == 2.0:  # the SHD bin: the class defaults
        d = LIFLayerConfig()
        assert (d.tau_mem_min, d.tau_mem_max, d.tau_adapt_min, d.tau_adapt_max) == (*mem, *adapt)
    for gain, bound in (("leak", 18.75), ("unit", 3.40)):  # the adLIF stability bound of a still holds
        cfg = LIFLayerConfig.for_bin_width(dt, neuron="adlif", current_gain=gain)
        assert cfg.adapt_a_max == 1.0 <= cfg.adapt_a_bound()
        if dt >= 1.0:
            assert cfg.adapt_a_bound() == pytest.approx(bound, abs=0.01)
    with pytest.raises(ValueError, match="bin width"):
        LIFLayerConfig.bin_width_taus(0.0)


def test_the_layer_decays_span_several_steps_at_20_ms():
    cfg = LIFNetworkConfig.for_bin_width(20.0, neuron="adlif", n_in=10, n=64, n_classes=3, n_synapses=8)
    assert cfg.hidden.learn_tau and cfg.hidden.dt == 20.0 and cfg.elm_readout.dt == 20.0
    net = LIFNetwork(cfg)
    assert isinstance(net.hidden.tau_m_theta, torch.nn.Parameter)  # learnable
    p = net.hidden.params()
    lo_m, hi_m = math.exp(-1 / 5), math.exp(-1 / 25)  # Bittar & Garner's membrane decays (5..25 steps)
    lo_w, hi_w = math.exp(-1 / 30), math.exp(-1 / 120)  # and adaptation decays (30..120 steps)
    assert lo_m - 1e-6 <= p.kappa_m.min().item() and p.kappa_m.max().item() <= hi_m + 1e-6
    assert lo_w - 1e-6 <= p.kappa_w.min().item() and p.kappa_w.max().item() <= hi_w + 1e-6
    assert p.kappa_m.max().item() - p.kappa_m.min().item() > 0.05  # spread over the range, not one value
    # without it, the 20 ms bins leave the membrane 0.4..2.5 steps: decays of 0.14..0.67
    old = LIFNetwork(LIFNetworkConfig.make(neuron="adlif", n_in=10, n=64, n_classes=3, n_synapses=8, dt=20.0))
    assert old.hidden.params().kappa_m.max().item() < math.exp(-20 / 50) + 1e-6
    a_max = (1 - LIFLayerConfig.ADAPT_A_MARGIN) * (1 + p.kappa_m) * (1 + p.kappa_w) / p.gain
    assert torch.all(p.a <= a_max + 1e-6) and torch.all(p.a >= 0)


def test_bin_width_overrides_leave_the_callers_fields(shd):
    out = C.bin_width_overrides(base_cfg(shd, bin_ms=20.0), ["elm", "lif", "adlif"],
                                {"lif": {"tau_mem_min": 30.0}, "elm": {"d_m": 2}})
    assert out["elm"] == {"d_m": 2} and "dt" not in out["lif"]
    assert out["lif"]["tau_mem_min"] == 30.0 and out["lif"]["tau_mem_max"] == 500.0
    assert out["adlif"]["tau_adapt_max"] == 2400.0 and out["adlif"]["readout_tau_max"] == 10000.0
    with pytest.raises(ValueError, match="SHD tasks"):
        C.bin_width_overrides(base_cfg(shd, task="enwik8"), ["lif"], {})


# --------------------------------------------------------------------------- plans
def test_the_fair_plan_is_the_comparison_plus_its_options():
    fair, plain = D.PLANS["neuron-comparison-fair"], D.PLANS["neuron-comparison"]
    assert all("lr_grid" not in s and "bin_width_taus" not in s for s in plain["stages"])
    stripped = copy.deepcopy(fair)
    for stage in stripped["stages"]:
        assert C.stage_options(stage) == {"lr_grid": D.LR_GRID, "bin_width_taus": True}
        del stage["lr_grid"], stage["bin_width_taus"]
    assert stripped == plain and json.loads(json.dumps(fair)) == fair
    assert C.stage_options(plain["stages"][0]) == {}
