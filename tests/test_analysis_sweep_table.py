"""Sweep tables: CSV round trip, aggregation over seeds, budget buckets, Pareto frontier."""
import math
import os

import numpy as np
import pytest

from elm_neuro.analysis import sweep_table as st


def _rows():
    rows = []
    # budget ~1000: (n=10, d_m=2) seeds acc .5/.7, (n=5, d_m=4) acc .8/.8; budget ~4000: (n=20, d_m=4) acc .9
    for seed, acc in ((0, 0.5), (1, 0.7)):
        rows.append(dict(n=10, d_m=2, k_e=50, k_c=50, p=1000, seed=seed, test_acc=acc, test_loss=1.0 - acc, wall_s=3.0))
    for seed in (0, 1):
        rows.append(dict(n=5, d_m=4, k_e=150, k_c=50, p=1020, seed=seed, test_acc=0.8, test_loss=0.2, wall_s=4.0))
    rows.append(dict(n=20, d_m=4, k_e=150, k_c=50, p=4000, seed=0, test_acc=0.9, test_loss=0.1, wall_s=9.0))
    return rows


def test_csv_roundtrip_parses_numbers(tmp_path):
    rows = _rows()
    rows[0]["note"] = "first"
    rows[1]["test_bpc"] = float("nan")
    path = st.write_table(rows, tmp_path / "sub" / "results.csv")
    back = st.read_table(path)
    assert len(back) == 5
    assert back[0]["n"] == 10 and isinstance(back[0]["n"], int)
    assert back[0]["test_acc"] == 0.5 and isinstance(back[0]["test_acc"], float)
    assert back[0]["note"] == "first" and back[1]["note"] is None
    assert math.isnan(back[1]["test_bpc"]) and back[0]["test_bpc"] is None
    assert back[4]["test_loss"] == pytest.approx(0.1, abs=0)  # exact float round trip
    assert sorted(os.listdir(tmp_path / "sub")) == ["results.csv"]  # no temporary file left


def test_parse_cell():
    assert st.parse_cell("12") == 12
    assert st.parse_cell("1e3") == 1000.0
    assert st.parse_cell(" true ") is True
    assert st.parse_cell("") is None
    assert st.parse_cell("relu2") == "relu2"


def test_aggregate_mean_std_over_seeds():
    agg = st.aggregate(_rows())
    assert [(r["n"], r["d_m"]) for r in agg] == [(10, 2), (5, 4), (20, 4)]
    a = agg[0]
    assert "seed" not in a and a["n_seeds"] == 2
    assert a["test_acc_mean"] == pytest.approx(0.6)
    assert a["test_acc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert a["test_acc_count"] == 2
    assert a["wall_s_mean"] == 3.0
    assert agg[1]["test_acc_std"] == 0.0
    assert agg[2]["test_acc_std"] == 0.0 and agg[2]["n_seeds"] == 1


def test_the_model_seed_of_a_run_is_not_a_configuration_key():
    rows = [dict(r, model_seed=r["seed"]) for r in _rows()]  # the trainer records both per run
    agg = st.aggregate(rows)
    assert [(r["n"], r["d_m"], r["n_seeds"]) for r in agg] == [(10, 2, 2), (5, 4, 2), (20, 4, 1)]
    assert "model_seed" not in agg[0]


def test_pareto_frontier_hand_made():
    p = [1, 2, 2, 3, 4, 5, 5, 6]
    loss = [5.0, 4.0, 4.5, 4.0, 2.0, 2.0, 1.0, 1.5]
    # (1,5) yes; (2,4) yes; (2,4.5) dominated; (3,4) dominated by (2,4); (4,2) yes;
    # (5,2) dominated; (5,1) yes; (6,1.5) dominated.
    assert st.pareto_frontier(p, loss).tolist() == [0, 1, 4, 6]
    # order independence and duplicates
    assert st.pareto_frontier([3, 1, 1], [1.0, 2.0, 2.0]).tolist() == [1, 0]
    assert st.pareto_frontier([1, 2], [np.nan, 3.0]).tolist() == [1]


def test_budget_buckets_and_best_per_budget():
    labels = st.budget_buckets([77069, 74109, 77310, 3.5e6, 3.51e6], rel_tol=0.1)
    assert labels[0] == labels[1] == labels[2]
    assert labels[0] == pytest.approx(np.exp(np.mean(np.log([77069, 74109, 77310]))))
    assert labels[3] == labels[4] != labels[0]
    agg = st.aggregate(_rows())
    best = st.best_per_budget(agg, "test_acc")
    assert [(r["n"], r["test_acc_mean"]) for r in best] == [(5, 0.8), (20, 0.9)]
    best_loss = st.best_per_budget(agg, "test_loss")  # minimised
    assert [r["n"] for r in best_loss] == [5, 20]
    worst = st.best_per_budget(agg, "test_acc", maximize=False)
    assert worst[0]["n"] == 10
    front = st.pareto_rows(agg, "test_acc")
    assert [r["n"] for r in front] == [10, 5, 20]


def test_bad_inputs_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="p and loss"):
        st.pareto_frontier([1, 2], [1.0])
    with pytest.raises(ValueError, match="rows"):
        st.aggregate("not rows")
    with pytest.raises(ValueError, match="metrics"):
        st.aggregate(_rows(), metrics=["nope"])
    with pytest.raises(ValueError, match="path"):
        st.read_table(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="rel_tol"):
        st.budget_buckets([1.0, 2.0], rel_tol=-1)
    with pytest.raises(ValueError, match="metric"):
        st.best_per_budget(st.aggregate(_rows()), "valid_acc")
