"""Timescales shown in milliseconds for every family: the plotting functions' unit / scale, and
run analysis converting each run's steps with its own bin width (ELM: steps x bin_ms; LIF: its
ms taus)."""
import numpy as np
import pytest
import torch

from elm_neuro.analysis import timescales as TS
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments import run_analysis as RA
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.run import load_run
from elm_neuro.training.trainer import run_training


@pytest.fixture
def figures(monkeypatch):
    """Every figure the timescale module saves (captured before it is written and closed)."""
    figs = []
    original = TS.save_figure

    def spy(fig, path):
        figs.append(fig)
        return original(fig, path)

    monkeypatch.setattr(TS, "save_figure", spy)
    return figs


def medians(ax):
    return [float(line.get_xdata()[0]) for line in ax.lines]


def test_comparison_plot_scales_each_network(tmp_path, figures):
    res = {"ELM": {"param_tau": np.array([1.0, 10.0, 500.0])}, "LIF": {"param_tau": np.array([1.0, 2.0, 5.0])}}
    TS.plot_timescale_comparison(res, tmp_path / "a.png", title="t", unit="ms", scale={"ELM": 10.0, "LIF": 20.0})
    (ax,) = figures[-1].axes  # one panel per kind of timescale, the networks overlaid
    assert medians(ax) == [100.0, 40.0]  # medians 10 and 2 steps, times each network's scale
    assert ax.get_xlabel() == "tau (ms)" and figures[-1]._suptitle.get_text() == "t"
    TS.plot_timescale_comparison(res, tmp_path / "b.png", unit="ms", scale=2.0)
    assert medians(figures[-1].axes[0]) == [20.0, 4.0]
    TS.plot_timescale_comparison(res, tmp_path / "c.png")  # default: steps, unscaled
    assert medians(figures[-1].axes[0]) == [10.0, 2.0] and figures[-1].axes[0].get_xlabel() == "tau (steps)"
    with pytest.raises(ValueError, match="one scale per network"):
        TS.plot_timescale_comparison(res, tmp_path / "d.png", unit="ms", scale={"ELM": 10.0})
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        TS.plot_timescale_comparison(res, tmp_path / "d.png", unit="ms", scale=0.0)
    with pytest.raises(ValueError, match="unit must be a non-empty string"):
        TS.plot_tau_distributions({"a": [1.0]}, tmp_path / "d.png", unit="")


def test_distribution_plot_scale_and_label(tmp_path, figures):
    TS.plot_tau_distributions({"ELM memory": [1.0, 3.0, 500.0]}, tmp_path / "a.png", unit="ms", scale=10.0)
    ax = figures[-1].axes[0]
    assert ax.get_xlabel() == "tau (ms)"
    assert "median 30" in ax.get_legend().get_texts()[0].get_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    write_synthetic_shd(root / "data", 60, 30, seed=4)
    common = dict(task="shd-adding", data_dir=str(root / "data"), epochs=1, batches_per_epoch=1, batch_size=2,
                  valid_batches=1, test_batches=1, channel_factor=14, warmup=1, device="cpu")
    out = {}
    for name, model, over, bin_ms in (
            ("elm10", "elm", dict(d_m=3, d_tree=4, d_brch=3, n=6), 10.0),
            ("lif10", "lif", dict(n_synapses=12, readout_d_tree=4, readout_d_brch=3, n=6), 10.0),
            ("elm50", "elm", dict(d_m=3, d_tree=4, d_brch=3, n=6), 50.0)):
        cfg = TrainConfig(model=model, model_overrides=over, bin_ms=bin_ms, **common)
        run_training(root / name, cfg, resume=False, progress=False)
        out[name] = root / name
    return out


def test_run_timescales_in_steps_with_the_bin_width(runs):
    elm = RA.run_timescales(runs["elm10"])
    assert elm["unit"] == "ms" and elm["ms_per_step"] == 10.0 and elm["dt"] == 1.0 and elm["family"] == "elm"
    # docs/design.md §7 memory taus log-spaced 1..500 steps (fixed): 10 ms .. 5 s at 10 ms bins
    assert elm["param_tau"].min() == pytest.approx(1.0) and elm["param_tau"].max() == pytest.approx(500.0)
    assert elm["param_tau"].max() * elm["ms_per_step"] == pytest.approx(5000.0)
    lif = RA.run_timescales(runs["lif10"])
    model = load_run(runs["lif10"]).model
    assert float(model.cfg.dt) == 10.0 and lif["dt"] == 10.0
    tau_ms = model.hidden.tau_m.detach().double().numpy().ravel()  # LIF taus are in ms already
    np.testing.assert_allclose(lif["param_tau"] * lif["ms_per_step"], tau_ms, rtol=1e-6)
    np.testing.assert_allclose(lif["param_tau"], tau_ms / 10.0, rtol=1e-6)
    assert lif["intrinsic_tau"].shape == (6,)


def test_compare_figure_in_ms_with_bin_widths(runs, tmp_path, figures):
    RA.compare_runs_timescales({"ELM": runs["elm10"], "LIF": runs["lif10"]}, tmp_path / "ts.png")
    fig = figures[-1]
    assert fig._suptitle.get_text() == "timescales of the trained networks (ms; 10 ms time bins)"
    ax = next(ax for ax in fig.axes if ax.get_title() == "parameter tau (memory / membrane)")
    elm = RA.run_timescales(runs["elm10"])
    tau_ms = load_run(runs["lif10"]).model.hidden.tau_m.detach().double().numpy()
    assert medians(ax) == pytest.approx([float(np.median(elm["param_tau"])) * 10.0, float(np.median(tau_ms))],
                                        rel=1e-6)  # ELM first, then LIF, in one panel
    assert fig.axes[-1].get_xlabel() == "tau (ms)"
    # runs at different bin widths: each converted with its own, both named
    RA.compare_runs_timescales({"ELM10": runs["elm10"], "ELM50": runs["elm50"]}, tmp_path / "ts2.png")
    fig = figures[-1]
    assert fig._suptitle.get_text() == "timescales of the trained networks (ms; time bins: ELM10 10 ms, ELM50 50 ms)"
    ax = next(ax for ax in fig.axes if ax.get_title() == "parameter tau (memory / membrane)")
    m10, m50 = medians(ax)
    assert m50 == pytest.approx(5 * m10)  # the same taus in steps, 5x longer bins


def test_time_unit_of_runs():
    assert RA.time_unit(TrainConfig(task="shd-adding", bin_ms=10.0).to_dict()) == (10.0, "ms")
    assert RA.time_unit(TrainConfig(task="enwik8").to_dict()) == (None, "steps (characters)")


def test_elm_timescale_figure_unit(tmp_path, figures):
    from elm_neuro.networks.elm_network import ELMNetwork

    torch.manual_seed(0)
    net = ELMNetwork.from_preset("shd-adding", d_m=3, n=4, n_in=10, d_tree=2, d_brch=2)
    TS.plot_elm_timescales(net, tmp_path / "e.png", unit="ms", scale=2.0)
    ax0, ax1 = [ax for ax in figures[-1].axes if ax.get_label() != "<colorbar>"][:2]
    assert ax0.get_xlabel() == "memory unit (initial tau, ms)"
    assert [t.get_text() for t in ax0.get_xticklabels()] == ["2", "44.7", "1e+03"]  # 1, 22.4, 500 steps x 2 ms
    assert ax1.get_xlabel() == "initial tau (ms)" and ax1.get_ylabel() == "tau (ms) (fixed)"


def test_enwik8_runs_in_steps_of_characters(runs, tmp_path, figures):
    cfg = TrainConfig(task="enwik8", model="elm", model_overrides=dict(d_m=2, d_tree=4, d_brch=3, n=6),
                      corpus_bytes=20000, batch_size=2, chunk_len=10, epochs=1, batches_per_epoch=1,
                      eval_tokens=50, warmup=1, device="cpu")
    run_training(tmp_path / "lm", cfg, resume=False, progress=False)
    res = RA.run_timescales(tmp_path / "lm")
    mcfg = load_run(tmp_path / "lm").model_config
    assert res["unit"] == "steps (characters)" and res["ms_per_step"] is None
    assert res["param_tau"].min() == pytest.approx(mcfg.tau_min)
    assert res["param_tau"].max() == pytest.approx(mcfg.tau_max)
    RA.compare_runs_timescales({"LM": tmp_path / "lm"}, tmp_path / "lm.png")
    fig = figures[-1]
    assert fig._suptitle.get_text() == "timescales of the trained networks (steps: one character each, no bin width)"
    assert fig.axes[-1].get_xlabel() == "tau (steps (characters))"
    with pytest.raises(ValueError, match="cannot share one figure"):
        RA.compare_runs_timescales({"LM": tmp_path / "lm", "ELM": runs["elm10"]}, tmp_path / "x.png")
