"""The committed science results (analysis/results/<plan>/) agree with their tables: each README
starts with the report that elm_neuro.experiments.reproduce computes from results.csv alone, and
the plan it records is the package's current plan of that name."""
import json
import re
from pathlib import Path

import pytest

from elm_neuro.experiments import reproduce as R

RESULTS = Path(__file__).resolve().parents[1] / "analysis" / "results"
COMMITTED = sorted(p.name for p in RESULTS.iterdir() if (p / "results.csv").is_file()) if RESULTS.is_dir() else []


#: The line of a report that gives the range of each fitted parameter over the cross-validation folds, and
#: one ``name lo to hi`` of it. An ill-determined parameter's range ends where the optimiser stops in a
#: flat valley, which moves with the last bits of the linear algebra (another CPU's BLAS kernels, another
#: numpy / scipy): budget-tradeoff's q ends at 3.5e3, printed 4e+03 on one CPU and 3e+03 on another.
FOLD_RANGES = re.compile(r"^(Pooled out-of-sample RMSE .*? Fitted parameters over the folds "
                         r"\(one significant digit\): )(.*)\.$")
RANGE = re.compile(r"(\w+) ([^\s,]+) to ([^\s,]+)")


def _report_lines_agree(have: str, want: str) -> bool:
    """The same line, except that in the folds' parameter ranges each end may differ by up to a factor
    of 2 (they are printed to one significant digit)."""
    if have == want:
        return True
    mh, mw = FOLD_RANGES.match(have), FOLD_RANGES.match(want)
    if not (mh and mw and mh.group(1) == mw.group(1)):
        return False
    rh, rw = RANGE.findall(mh.group(2)), RANGE.findall(mw.group(2))
    return len(rh) == len(rw) and all(
        a[0] == b[0] and all(0.5 <= float(x) / float(y) <= 2.0 if float(y) else float(x) == 0.0
                             for x, y in ((a[1], b[1]), (a[2], b[2]))) for a, b in zip(rh, rw))


def test_report_lines_agree_within_the_printed_digit_of_the_fold_ranges_only():
    line = ("Pooled out-of-sample RMSE 0.0821 (accuracy) against 0.05 in sample. Fitted parameters over the folds "
            "(one significant digit): s 3 to 4e+02, q 0.3 to {}.")
    assert _report_lines_agree(line.format("4e+03"), line.format("3e+03"))
    assert not _report_lines_agree(line.format("4e+03"), line.format("1e+03"))
    assert not _report_lines_agree(line.format("4e+03").replace("0.0821", "0.0822"), line.format("4e+03"))
    assert not _report_lines_agree("| 10,000 | 0.887 |", "| 10,000 | 0.886 |")


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
    have, want = readme.split("\n")[:generated.count("\n") + 1], generated.split("\n")
    differ = [(a, b) for a, b in zip(have, want) if not _report_lines_agree(a, b)]
    assert len(have) == len(want) and not differ, \
        f"README.md's numbers differ from those computed from results.csv: {differ[:3]}"
