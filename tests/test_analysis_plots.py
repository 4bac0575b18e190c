"""Trade-off plots: PNG files written atomically, heatmap grid values, reference points."""
import os

import numpy as np
import pytest

from elm_neuro.analysis import tradeoff_plots as tp
from elm_neuro.networks.elm_config import ELMNetworkConfig
from elm_neuro.networks.registry import preset_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table():
    rows = []
    for p_target in (20_000, 80_000):
        for d_m in (2, 4, 9):
            k_e = tp._k_e(d_m, 30)
            n = max(1, round((p_target - 8094) / (300 + k_e)))
            for seed in (0, 1):
                acc = 0.5 + 0.05 * np.log(n) - 0.002 * (d_m - 5) ** 2 + 0.01 * seed + (0.1 if p_target > 50_000 else 0)
                rows.append(dict(n=n, d_m=d_m, k_e=k_e, k_c=300, p=n * (300 + k_e) + 8094, seed=seed,
                                 test_acc=float(acc), test_loss=float(1 - acc)))
    return rows


def _leftover_temps(folder):
    """Temporary files of :func:`elm_neuro.atomic.atomic_output` (``<name>.partial-<pid>-<random>.tmp``),
    and the hidden ``.<name>.<random>.tmp`` of earlier versions."""
    return [f for f in os.listdir(folder) if f.endswith(".tmp")]


def _assert_png(path):
    assert os.path.isfile(path) and os.path.getsize(path) > 1000
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_MAGIC
    assert not _leftover_temps(os.path.dirname(path))


def test_leftover_check_sees_the_atomic_writers_temp_files(tmp_path):
    from elm_neuro.atomic import atomic_output

    with atomic_output(tmp_path / "fig.png") as tmp:
        tmp.write_bytes(b"partial")
        assert _leftover_temps(tmp_path) == [tmp.name]  # mid-write: seen
    assert _leftover_temps(tmp_path) == []  # after the rename: gone


def test_reference_points_match_budget_formula():
    shd = tp.reference_points("shd-adding")
    assert len(shd) == 10 and shd[5] == dict(d_m=9, n=57, k_e=901, k_c=300, p=76551, test_acc=0.823)
    for r in shd:
        assert ELMNetworkConfig.make(d_m=r["d_m"], n=r["n"]).budget() == (r["n"], r["k_e"], r["k_c"], r["p"])
    enw = tp.reference_points("enwik8")
    assert len(enw) == 14 and enw[0]["test_bpc"] == 1.679 and enw[-1]["test_bpc"] == 1.750
    for r in enw:
        assert preset_config("enwik8", d_m=r["d_m"], n=r["n"]).budget() == (r["n"], r["k_e"], r["k_c"], r["p"])
    shd[0]["test_acc"] = -1.0  # copies, the constant stays intact
    assert tp.REFERENCE_POINTS["shd-adding"][0]["test_acc"] == 0.146


def test_all_plots_written(tmp_path):
    rows = _table()
    out = [
        tp.plot_metric_vs_n(rows, "test_acc", tmp_path / "n.png", reference="shd-adding"),
        tp.plot_metric_vs_axis(rows, "test_loss", "d_m", tmp_path / "dm.png"),
        tp.plot_single_axes(rows, "test_acc", tmp_path / "axes.png"),
        tp.plot_heatmap(rows, "test_acc", tmp_path / "heat.png"),
        tp.plot_pareto(rows, "test_acc", tmp_path / "pareto.png"),
    ]
    for path in out:
        _assert_png(path)
    assert out[0] == os.fspath(tmp_path / "n.png")


def test_heatmap_grid_values():
    rows = _table()
    xs, ys, grid = tp.heatmap_grid(rows, "test_acc", x="n", y="d_m")
    assert ys.tolist() == [2, 4, 9]
    assert grid.shape == (3, xs.size)
    assert np.sum(np.isfinite(grid)) == 6  # six cells, each at its own (n, d_m)
    r0 = [r for r in rows if r["d_m"] == 2 and r["p"] < 50_000]
    j = int(np.searchsorted(xs, r0[0]["n"]))
    assert grid[0, j] == pytest.approx(np.mean([r["test_acc"] for r in r0]))


def test_plot_errors(tmp_path):
    rows = _table()
    with pytest.raises(ValueError, match="path"):
        tp.plot_metric_vs_n(rows, "test_acc", tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="metric"):
        tp.plot_metric_vs_n(rows, "nope", tmp_path / "x.png")
    with pytest.raises(ValueError, match="reference"):
        tp.plot_metric_vs_n(rows, "test_loss", tmp_path / "x.png", reference="shd-adding")
    with pytest.raises(ValueError, match="task"):
        tp.reference_points("mnist")
    with pytest.raises(ValueError, match="axis"):
        tp.plot_metric_vs_axis(rows, "test_acc", "d_tree", tmp_path / "x.png")


# --------------------------------------------------------------------------- study figures (issue 23)
from elm_neuro.analysis import study_figures as SF  # noqa: E402


@pytest.fixture
def kept_figures(monkeypatch):
    figs = []
    original = SF.save_figure
    monkeypatch.setattr(SF, "save_figure", lambda fig, path: figs.append(fig) or original(fig, path))
    return figs


def _study_rows():
    """Per-seed rows of a small plan: d_m stage at two budgets, n stage, k_c stage (accuracies chosen)."""
    rows = []
    for b, cells in ((2000, ((1, 6, 2014, (0.5, 0.6, 0.7)), (4, 3, 2023, (0.6, 0.65, 0.7)))),
                     (20000, ((1, 145, 19945, (0.7, 0.75, 0.8)), (4, 72, 20032, (0.8, 0.84, 0.88))))):
        for d_m, n, p, accs in cells:
            rows += [dict(stage="d_m", p_target=b, d_m=d_m, n=n, p=p, k_c=100, seed=s, test_acc=a)
                     for s, a in enumerate(accs)]
    for n, p, accs in ((4, 2284, (0.6, 0.7)), (64, 17944, (0.8, 0.84))):
        rows += [dict(stage="n", p_target=None, d_m=4, n=n, p=p, k_c=100, seed=s, test_acc=a) for s, a in enumerate(accs)]
    for k_c, n, accs in ((20, 104, (0.8, 0.8)), (400, 33, (0.85, 0.87))):
        rows += [dict(stage="k_c", p_target=20000, d_m=4, n=n, p=20000, k_c=k_c, seed=s, test_acc=a)
                 for s, a in enumerate(accs)]
    return rows


def test_group_stats_mean_and_sample_sd():
    st = SF.group_stats(_study_rows()[:6], ("p_target", "d_m"), "test_acc")
    assert [(s["p_target"], s["d_m"], s["seeds"], s["n"]) for s in st] == [(2000, 1, 3, 6.0), (2000, 4, 3, 3.0)]
    assert st[0]["mean"] == pytest.approx(0.6) and st[0]["sd"] == pytest.approx(0.1)  # ddof = 1
    assert st[1]["sd"] == pytest.approx(0.05)


def test_d_m_sweep_labels_n_chance_and_sd(tmp_path, kept_figures):
    SF.plot_d_m_sweep(_study_rows(), "test_acc", tmp_path / "d.png", chance=0.05)
    ax = kept_figures[-1].axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["N=145", "N=3", "N=6", "N=72"]
    assert "error bars: sd over seeds" in ax.get_title() and "mean over 3 seeds" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["chance (0.05)", "P ≈ 2k", "P ≈ 20k"]
    chance = [l for l in ax.lines if l.get_linestyle() == "--"]
    assert [float(chance[0].get_ydata()[0])] == [0.05]


def test_n_axis_states_that_p_grows_and_labels_points(tmp_path, kept_figures):
    SF.plot_n_axis(_study_rows(), "test_acc", tmp_path / "n.png")
    ax = kept_figures[-1].axes[0]
    assert "fixed P" not in ax.get_title()
    assert ax.get_title().startswith("N axis (d_m = 4, k_c = 100): P grows with N, 2.28k to 17.9k")
    assert [t.get_text() for t in ax.texts] == ["P=2.28k", "P=17.9k"]


def test_budget_heatmap_has_every_cell_filled_and_budgets_labelled(tmp_path, kept_figures):
    budgets, d_ms, mean, n = SF.budget_grid(_study_rows(), "test_acc")
    assert budgets.tolist() == [2000, 20000] and d_ms.tolist() == [1, 4]
    assert np.isfinite(mean).all() and n.tolist() == [[6, 145], [3, 72]]
    assert mean == pytest.approx(np.array([[0.6, 0.75], [0.65, 0.84]]))
    SF.plot_budget_heatmap(_study_rows(), "test_acc", tmp_path / "h.png")
    ax = kept_figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["P ≈ 2k", "P ≈ 20k"]
    assert sorted(t.get_text() for t in ax.texts) == ["0.600\nN=6", "0.650\nN=3", "0.750\nN=145", "0.840\nN=72"]
    frames = [(p.get_x() + 0.48, p.get_y() + 0.48) for p in ax.patches]
    assert frames == [pytest.approx((0, 1)), pytest.approx((1, 1))]  # d_m 4 best at both budgets


def test_k_c_axis_shows_n_falling(tmp_path, kept_figures):
    SF.plot_k_c_axis(_study_rows(), "test_acc", tmp_path / "k.png", chance=0.05)
    fig = kept_figures[-1]
    ax, ax2 = fig.axes
    assert ax.get_title().startswith("k_c axis at P ≈ 20k: N falls from 104 to 33 as k_c grows")
    assert ax2.lines[0].get_ydata().tolist() == [104, 33]
    assert [t.get_text() for t in ax2.texts] == ["104", "33"]
    assert ax2.get_ylabel().startswith("N (hidden neurons")


def test_learning_curves_in_steps_with_seed_spread(tmp_path, kept_figures):
    s = [50, 100, 150]
    curves = {"ELM": [(s, [0.2, 0.4, 0.6]), (s, [0.4, 0.6, 0.8])], "LIF": [(s, [0.1, 0.2, 0.3])]}
    SF.plot_learning_curves(curves, tmp_path / "l.png", chance=0.05)
    ax = kept_figures[-1].axes[0]
    assert ax.get_xlabel() == "training steps (optimizer updates)"
    bold = [l for l in ax.lines if l.get_linewidth() == 2]
    assert [l.get_label() for l in bold] == ["ELM (mean of 2 seeds)", "LIF (mean of 1 seed)"]
    assert bold[0].get_ydata() == pytest.approx([0.3, 0.5, 0.7])
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.2) and band[:, 1].max() == pytest.approx(0.8)  # the seeds' range
    assert len([l for l in ax.lines if l.get_linewidth() == 0.7]) == 3  # every seed drawn
    assert SF.curves_from_metrics([{"kind": "train", "step": 1, "acc": 0.0}, {"kind": "valid", "step": 50, "acc": 0.3},
                                   {"kind": "valid", "step": 100, "acc": 0.5}])[0].tolist() == [50, 100]


def test_study_figures_script_renders_the_committed_study(tmp_path):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "analysis" / "study_figures.py"
    results = Path(__file__).resolve().parents[1] / "analysis" / "results" / "budget-tradeoff"
    main = runpy.run_path(str(script))["main"]
    assert main([str(results), "--chance", "0.05", "--out", str(tmp_path)]) == 0
    made = sorted(f for f in os.listdir(tmp_path))
    assert made == ["d_m_sweep.png", "heatmap_n_dm.png", "k_c_axis.png", "n_axis.png"]
    for f in made:
        assert (tmp_path / f).read_bytes()[:8] == PNG_MAGIC
