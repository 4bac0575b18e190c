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
