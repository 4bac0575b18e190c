"""Figures a reader can use: tick labels that never overprint on log axes, the
timescale figure's axes, dashed line and notes explained, learning curves in whole epochs with
the validation size. Each figure is drawn and its text boxes measured."""
import json

import numpy as np
import pytest

from elm_neuro.analysis import _plotting as P
from elm_neuro.analysis import timescales as TS
from elm_neuro.analysis import tradeoff_plots as tp
from elm_neuro.experiments import compare as C


@pytest.fixture
def figures(monkeypatch):
    """Figures handed to save_figure, drawn but not closed."""
    figs = []

    def keep(fig, path):
        fig.canvas.draw()
        figs.append(fig)
        return str(path)

    for mod in (tp, TS):
        monkeypatch.setattr(mod, "save_figure", keep)
    return figs


def _labels(axis):
    return [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


def _assert_apart(ax):
    """No two visible x tick labels of ``ax`` overlap."""
    boxes = sorted((t.get_window_extent() for t in _labels(ax.xaxis)), key=lambda b: b.x0)
    for a, b in zip(boxes, boxes[1:]):
        assert a.x1 <= b.x0, (ax.get_xlabel(), [t.get_text() for t in _labels(ax.xaxis)])


def _sweep_rows():
    rows = []
    for d_m, n in ((2, 155), (3, 130), (4, 111), (5, 96), (7, 73), (9, 57), (11, 46), (15, 32), (20, 21), (25, 15)):
        k_e = 4 * d_m * d_m + 2 * d_m * 32 + 1
        for seed in (0, 1, 2):
            rows.append(dict(n=n, d_m=d_m, k_e=k_e, k_c=300, p=n * (300 + k_e) + 8094, seed=seed,
                             test_acc=0.5 + 0.01 * seed - 0.001 * (d_m - 9) ** 2))
    return rows


def test_log_ticks_are_few_and_compact():
    assert P.log_ticks([155, 230, 330, 420, 640, 900, 1200, 1900, 2900, 4000]) == [200, 500, 1000, 2000]
    assert P.log_ticks([2, 3, 4, 5, 7, 9, 11, 15, 20, 25]) == [2, 5, 10, 20]
    assert P.log_ticks([20000, 77000, 300000]) == [20000, 77000, 300000]  # few values: the values
    assert [P.compact_number(v) for v in (20, 1500, 77000, 1.2e6)] == ["20", "1.5k", "77k", "1.2M"]


def test_sweep_figures_tick_labels_never_overprint(figures, tmp_path):
    rows = _sweep_rows()
    tp.plot_metric_vs_axis(rows, "test_acc", "k_e", tmp_path / "k_e.png", reference="shd-adding")
    tp.plot_single_axes(rows, "test_acc", tmp_path / "axes.png")
    tp.plot_metric_vs_n(rows, "test_acc", tmp_path / "n.png")
    k_e_fig, axes_fig, n_fig = figures
    for fig in figures:
        for ax in fig.axes:
            _assert_apart(ax)
    assert [t.get_text() for t in _labels(k_e_fig.axes[0].xaxis)] == ["200", "500", "1k", "2k"]
    # k_c has one value: no panel of points on a vertical line, named in the title instead
    assert [ax.get_xlabel() for ax in axes_fig.axes] == ["n", "d_m", "k_e", "p"]
    assert "fixed: k_c = 300" in axes_fig._suptitle.get_text()
    # the legend sits below the axes, not over the points
    legend = k_e_fig.axes[0].get_legend().get_window_extent()
    assert legend.y1 < k_e_fig.axes[0].get_window_extent().y0


def test_timescale_figure_explains_itself(figures, tmp_path):
    elm = {"family": "elm", "param_tau": np.geomspace(1, 500, 40), "intrinsic_tau": np.geomspace(3, 60, 12),
           "impulse_tau": np.geomspace(2, 40, 9)}
    lif = {"family": "lif", "param_tau": np.linspace(5, 30, 20), "intrinsic_tau": np.geomspace(2, 80, 20)}
    TS.plot_timescale_comparison({"ELM": elm, "LIF": lif}, tmp_path / "ts.png", title="t", unit="ms", scale=20.0)
    fig = figures[-1]
    # one panel per kind of timescale, the networks overlaid: no empty panel
    assert [ax.get_title() for ax in fig.axes] == ["intrinsic (autocorrelation)", "impulse response",
                                                   "parameter tau (memory / membrane)"]
    assert all(len(ax.patches) >= 1 for ax in fig.axes)
    assert fig.texts[0].get_text().startswith("dashed line: a network's median")
    impulse = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert impulse[1] == "LIF: not measured (spiking: its pulse response is tau_mem)"
    param = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert param[0] == "ELM: 40 taus, median 449 ms"  # the count in the legend, beside the axes, not over the bars
    legend = fig.axes[2].get_legend().get_window_extent()
    assert legend.x0 >= fig.axes[2].get_window_extent().x1
    for ax in fig.axes:
        _assert_apart(ax)


def test_learning_curves_in_whole_epochs_with_the_validation_size(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    cell = tmp_path / "elm-s0"
    cell.mkdir()
    conf = {"train": {"task": "shd-adding", "valid_batches": 25, "batch_size": 16}}
    (cell / "config.json").write_text(json.dumps(conf))
    (cell / "summary.json").write_text(json.dumps({"status": "completed", "n": 3, "k_e": 33, "k_c": 4, "p": 900,
                                                   "valid_acc": 0.2, "test_acc": 0.2, "wall_s": 1.0}))
    (cell / "metrics.jsonl").write_text("".join(json.dumps({"kind": "valid", "epoch": e, "acc": 0.1 * e}) + "\n"
                                                for e in (1, 2, 3)))
    C.write_report(tmp_path, ["elm"], [0], "t", 0.1)
    ax = kept[-1].axes[0]
    kept[-1].canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_ylabel() == "validation accuracy\n(on 400 pairs)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elm-s0", "learning_curves.png", "report.md"]
