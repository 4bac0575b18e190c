"""The committed science results (analysis/results/<plan>/) agree with their tables: each README
starts with the report that elm_neuro.experiments.reproduce computes from results.csv alone, and
the plan it records is the package's current plan of that name."""
import json
from pathlib import Path

import pytest

from elm_neuro.experiments import reproduce as R

RESULTS = Path(__file__).resolve().parents[1] / "analysis" / "results"
COMMITTED = sorted(p.name for p in RESULTS.iterdir() if (p / "results.csv").is_file()) if RESULTS.is_dir() else []


def test_results_are_committed():
    assert {"neuron-comparison", "budget-tradeoff", "budget-tradeoff-spoken", "neuron-comparison-spoken"} <= set(COMMITTED)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_report_is_recomputed_from_its_table(name):
    folder = RESULTS / name
    record = json.loads((folder / "plan.json").read_text())
    assert record["name"] == name
    plan = R.get_plan(name)
    assert record["version"] == plan["version"] and record["plan"] == json.loads(json.dumps(plan)), \
        f"{folder} was made by another definition of plan {name!r}: run it again"
    rows = R.read_results_csv(folder / "results.csv")
    n_planned = R.planned_rows(plan, folder)
    assert len(rows) == n_planned, f"{len(rows)} finished runs of {n_planned} planned"
    readme = (folder / "README.md").read_text()
    generated = R.render_report(name, plan, rows)
    assert readme.startswith(generated), "README.md's numbers differ from those computed from results.csv"
