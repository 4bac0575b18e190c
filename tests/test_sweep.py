"""Budget sweeps: the grid (budget solver, axes, names), the CSV format of results tables, a tiny real
sweep interrupted and resumed, results.csv rebuilt from the run directories, grid-mismatch refusal, the
CLI, the Ray executor."""
import dataclasses
import json
import math
import runpy
import sys
from pathlib import Path

import pytest

from elm_neuro.analysis.sweep_table import read_table
from elm_neuro.cli.main import main
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.networks.budget import closest_n
from elm_neuro.networks.registry import preset_config
from elm_neuro.experiments import reproduce as R
from elm_neuro.experiments import sweep as S
from elm_neuro.experiments import sweep_executors as SX
from elm_neuro.experiments import sweep_plan as SP
from elm_neuro.experiments import sweep_results as SR
from elm_neuro.training.classification import train_classifier
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.run import RunDir

# docs/design.md §4: the paper's (N, P) per d_m at the 77K SHD-Adding budget.
SPEC4 = {2: (155, 77069), 3: (130, 76864), 4: (111, 77025), 5: (96, 77310), 7: (73, 77079), 9: (57, 76551),
         11: (46, 76588), 15: (32, 77246), 20: (21, 74895), 25: (15, 74109)}
TINY_FIELDS = dict(d_tree=4, d_brch=3)
TINY_TRAIN = dict(task="shd", epochs=1, batches_per_epoch=2, batch_size=8, valid_batches=2, test_batches=2,
                  bin_ms=50.0, channel_factor=14, warmup=1, lr=1e-2, log_every=1)


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 120, 60, seed=1)
    return d


def run_script(name, argv, monkeypatch):
    """Run ``analysis/<name>`` as ``python analysis/<name> ARGV`` would, in this process; its exit code."""
    script = Path(__file__).resolve().parents[1] / "analysis" / name
    monkeypatch.setattr(sys, "argv", [str(script)] + [str(a) for a in argv])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts analysis/ first; undone afterwards
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(script), run_name="__main__")
    return exc.value.code


def tiny_base(shd_dir, **kw):
    fields = dict(TINY_TRAIN, data_dir=str(shd_dir), model_overrides=dict(TINY_FIELDS))
    fields.update(kw)
    return TrainConfig(**fields)


# --------------------------------------------------------------------------- the grid
def test_grid_sizes_n_with_the_budget_solver_shd_adding():
    base = TrainConfig(task="shd-adding", bin_ms=10.0, channel_factor=7)
    grid = SP.SweepGrid(base, values=list(SPEC4), budgets=[77000], seeds=[0, 1, 2])
    cells = SP.plan_cells(grid)
    assert len(cells) == 30
    by_dm = {c.d_m: c for c in cells if c.seed == 0}
    for d_m, cell in by_dm.items():
        ref = preset_config("shd-adding", d_m=d_m)
        n = closest_n(lambda k: ref.replace(n=k).budget().p, 77000)
        assert cell.n == n and cell.p == ref.replace(n=n).budget().p
        assert cell.config.model_overrides == {"d_m": d_m, "n": n} and cell.config.params is None
        assert cell.p_target == 77000 and cell.k_c == 300
        if d_m <= 15:  # the solver reproduces the paper's records (closest P; at 20, 25 it gives 22, 16)
            assert (cell.n, cell.p) == SPEC4[d_m]
    assert by_dm[9].n == 57 and by_dm[2].n == 155
    assert by_dm[9].name == "p77000-dm9-n57-s0"
    assert [c.name for c in cells[:3]] == ["p77000-dm2-n155-s0", "p77000-dm2-n155-s1", "p77000-dm2-n155-s2"]
    assert [c.seed for c in cells[:3]] == [0, 1, 2] and cells[1].config.seed == 1
    # several budgets: the cross product with d_m, budgets first
    two = SP.plan_cells(SP.SweepGrid(base, values=[4, 9], budgets=[20000, 77000], seeds=[0]))
    assert [c.name for c in two] == ["p20000-dm4-n19-s0", "p20000-dm9-n10-s0", "p77000-dm4-n111-s0",
                                     "p77000-dm9-n57-s0"]


def test_axis_n_and_k_c_grids():
    base = TrainConfig(task="shd-adding", model_overrides={"d_m": 4})
    cells = SP.plan_cells(SP.SweepGrid(base, axis="n", values=[8, 16, 32], seeds=[0]))
    assert [c.name for c in cells] == ["dm4-n8-s0", "dm4-n16-s0", "dm4-n32-s0"]
    assert [c.p for c in cells] == [preset_config("shd-adding", d_m=4, n=n).budget().p for n in (8, 16, 32)]
    kc = SP.plan_cells(SP.SweepGrid(base.replace(model_overrides={"d_m": 4, "n": 32}), axis="k_c",
                                  values=[60, 300], seeds=[0]))
    assert [c.name for c in kc] == ["dm4-kc60-n32-s0", "dm4-kc300-n32-s0"]
    assert [c.config.model_overrides["hidden.d_brch"] for c in kc] == [2, 10] and [c.k_c for c in kc] == [60, 300]
    # k_c axis at a budget: N re-sized for each k_c
    kcp = SP.plan_cells(SP.SweepGrid(base, axis="k_c", values=[60, 300], budgets=[20000], seeds=[0]))
    assert kcp[0].n > kcp[1].n and {c.p_target for c in kcp} == {20000}
    # a family without d_m: the cells differ by budget only
    lif = SP.plan_cells(SP.SweepGrid(TrainConfig(task="shd-adding", model="lif"), budgets=[20000, 77000], seeds=[0]))
    assert [c.name for c in lif] == [f"p20000-n{lif[0].n}-s0", f"p77000-n{lif[1].n}-s0"]


COMMITTED_PLAN = Path(__file__).resolve().parents[1] / "analysis" / "results" / "budget-tradeoff" / "plan.json"


def _plan_stage_cells(name):
    plan = json.loads(COMMITTED_PLAN.read_text())["plan"]
    stage = next(s for s in plan["stages"] if s["name"] == name)
    return SP.plan_cells(R.stage_grid(plan, stage, "."))


def _resolved(cell):
    """The model configuration the trainer builds for a cell (model seed included)."""
    from elm_neuro.training.model_setup import run_model_config
    n_in, n_classes = SP.task_dims(cell.config)
    return run_model_config(cell.config, n_in, n_classes)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, prefix + k + ".") if isinstance(v, dict) else {prefix + k: v})
    return out


@pytest.mark.parametrize("stage, own", [("d_m", {"hidden.d_m", "n"}), ("n", {"n"}), ("k_c", {"hidden.d_brch", "n"})])
def test_every_axis_changes_only_its_own_field(stage, own):
    """issue 23: the committed plan's cells, resolved as the trainer resolves them, compared field by
    field within a budget and seed: only the axis's field and the budget-solved N differ (the k_c axis
    used to set the readout's d_brch too, overriding the plan's readout.d_brch 2)."""
    cells = [c for c in _plan_stage_cells(stage) if c.seed == 0]
    for budget in {c.p_target for c in cells}:
        flats = [_flat(_resolved(c).to_dict()) for c in cells if c.p_target == budget]
        assert len(flats) == 5 if stage != "d_m" else len(flats) == 4
        differ = {k for k in flats[0] if len({json.dumps(f[k]) for f in flats}) > 1}
        assert differ == own
        assert {(f["readout.d_tree"], f["readout.d_brch"], f["readout.d_m"]) for f in flats} == {(5, 2, 3)}
    if stage == "k_c":
        assert [_resolved(c).hidden.d_brch for c in cells] == [2, 5, 10, 20, 40]
        assert [c.k_c for c in cells] == [20, 50, 100, 200, 400]
        assert [c.n for c in cells] == [104, 89, 72, 52, 33]  # N falls as k_c grows at P 20,000
        assert {c.readout_k for c in cells} == {10}  # 5 x 2 synapses per class neuron along the whole axis


def test_plan_refuses_an_axis_that_changes_another_field(monkeypatch):
    """The planner's own check: an axis value that also changes the readout is refused, naming the field."""
    def confounded(grid, value, dims):
        return {} if value is None else {"d_brch": value // 10}  # the flat name: hidden and readout
    monkeypatch.setattr(SP, "_axis_overrides", confounded)
    base = TrainConfig(task="shd", model_overrides={"d_m": 4, "d_tree": 10, "readout.d_brch": 2})
    with pytest.raises(ValueError, match=r"differ in \['readout.d_brch'\]"):
        SP.plan_cells(SP.SweepGrid(base, axis="k_c", values=[20, 50], budgets=[20000], seeds=[0]), dims=(100, 20))
    diff = SP.config_differences([preset_config("shd", d_brch=2), preset_config("shd", d_brch=5)])
    assert diff == {"hidden.d_brch": [2, 5], "readout.d_brch": [2, 5]}


def test_readout_reach_counts_the_connectome_the_network_builds():
    """readout_reach: distinct hidden neurons among the readout's synapses, the built network's own
    connectome; at the committed plan's P 200,000 the 20 x 10-synapse readout reaches 12-42 %."""
    from elm_neuro.networks.registry import build_model
    for n, seed in ((7, 0), (40, 3)):
        cfg = preset_config("shd", n_in=30, n_classes=4, n=n, d_tree=2, d_brch=3, seed=seed, d_m=2)
        conn = build_model(cfg).readout.connectome
        assert conn.shape == (4, 6) and int(conn.max()) < n
        assert SP.readout_reach(cfg.replace(seed=0), seed) == len(set(conn.flatten().tolist()))
    one = preset_config("shd", n_in=30, n_classes=4, n=1, d_tree=2, d_brch=3)
    assert SP.readout_reach(one, 0) == 1  # every synapse reads the one hidden neuron
    cells = {c.name: c for c in _plan_stage_cells("d_m")}
    got = {k: (cells[k].readout_reach, cells[k].n) for k in
           ("p200000-dm1-n1541-s0", "p200000-dm8-n362-s0", "p20000-dm1-n145-s0", "p2000-dm4-n3-s0")}
    assert got == {"p200000-dm1-n1541-s0": (185, 1541), "p200000-dm8-n362-s0": (153, 362),
                   "p20000-dm1-n145-s0": (108, 145), "p2000-dm4-n3-s0": (3, 3)}
    assert round(cells["p200000-dm1-n1541-s0"].readout_coverage, 3) == 0.12
    meta = cells["p200000-dm8-n362-s0"].meta("d_m")
    assert meta["planned"]["readout_reach"] == 153 and meta["planned"]["readout_k"] == 10
    assert meta["planned"]["readout_coverage"] == 153 / 362 and meta["budget_scope"] == "network"


def test_cover_readout_reaches_every_hidden_neuron_outside_the_hidden_budget():
    """readout 'cover' with budget_scope 'hidden': N sized to N (k_c + k_e) alone, the readout's d_brch
    the smallest from ceil(N ln(20 N) / (C d_tree)) up that reaches every hidden neuron for every seed;
    the readout's cost C (K + 3 d_tree + 16) + C (C + 1) lies outside the compared split."""
    base = TrainConfig(task="shd", bin_ms=20.0, channel_factor=7,
                       model_overrides={"d_tree": 10, "d_brch": 10, "readout.d_tree": 5})
    grid = SP.SweepGrid(base, values=[1, 4, 8], budgets=[2000, 20000], seeds=[0, 1, 2], budget_scope="hidden",
                        readout="cover")
    cells = SP.plan_cells(grid)
    assert len(cells) == 18 and all(c.readout_reach == c.n and c.readout_coverage == 1.0 for c in cells)
    by = {(c.p_target, c.d_m): c for c in cells if c.seed == 0}
    assert {k: c.n for k, c in by.items()} == {(2000, 1): 16, (2000, 4): 8, (2000, 8): 4,
                                               (20000, 1): 155, (20000, 4): 77, (20000, 8): 36}
    for (budget, d_m), c in by.items():
        assert c.p_hidden == c.n * (c.k_c + c.k_e)
        k_e = preset_config("shd", d_m=d_m, d_tree=10, d_brch=10).budget().k_e
        per = 100 + k_e
        assert abs(c.p_hidden - budget) <= min(abs((c.n - 1) * per - budget), abs((c.n + 1) * per - budget))
        assert c.p - c.p_hidden == 20 * (c.readout_k + 3 * 5 + 16) + 20 * 21
        d_brch = c.config.model_overrides["readout.d_brch"]
        assert c.readout_k == 5 * d_brch
        start = max(1, math.ceil(c.n * math.log(20 * c.n) / (20 * 5)))
        assert d_brch >= start
        if d_brch > start:  # one synapse per branch fewer misses a hidden neuron for some seed
            cfg = _resolved(c).replace(**{"readout.d_brch": d_brch - 1})
            assert min(SP.readout_reach(cfg, s) for s in (0, 1, 2)) < c.n
    assert by[(20000, 4)].readout_k == 30 and by[(20000, 1)].readout_k == 70
    assert SP.SweepGrid.from_dict(grid.to_dict()) == grid and grid.to_dict()["readout"] == "cover"
    plain = SP.SweepGrid(base, values=[1], budgets=[2000])
    assert "readout" not in plain.to_dict() and "budget_scope" not in plain.to_dict()


@pytest.mark.parametrize("kw, match", [
    (dict(readout="cover"), "budget_scope 'hidden'"),
    (dict(budget_scope="all"), "budget_scope must be one of"),
    (dict(readout="all", budget_scope="hidden"), "readout must be one of"),
    (dict(readout="cover", budget_scope="hidden", fixed={"readout.d_brch": 2}), "do not also fix it"),
    (dict(axis="k_c", fixed={"d_brch": 2}), "axis k_c varies hidden.d_brch"),
])
def test_readout_and_budget_scope_errors(kw, match):
    fixed = kw.pop("fixed", {})
    values = [20] if kw.get("axis") == "k_c" else [2]
    with pytest.raises(ValueError, match=match):
        SP.SweepGrid(TrainConfig(task="shd", model_overrides=fixed), values=values, budgets=[20000], **kw)
    # the readout's own d_brch may be fixed along the k_c axis
    SP.SweepGrid(TrainConfig(task="shd", model_overrides={"readout.d_brch": 2}), axis="k_c", values=[20],
                 budgets=[20000])


@pytest.mark.parametrize("kw, match", [
    (dict(axis="k_c", values=[50], model_overrides={"d_m": 4, "n": 8}), "multiple of d_tree"),
    (dict(axis="n", values=[8], budgets=[20000]), "cannot be combined with axis n"),
    (dict(values=[2], budgets=[20000], model_overrides={"n": 8}), "either a fixed n or params"),
    (dict(values=[2]), "give params"),
    (dict(values=[2, 2], budgets=[20000]), "duplicate"),
    (dict(axis="tau", values=[2], budgets=[20000]), "axis must be one of"),
    (dict(values=[0], budgets=[20000]), "values must hold integers >= 1"),
    (dict(values=[2], budgets=[20000], seeds=[]), "seeds must not be empty"),
    (dict(values=[4], budgets=[20000], model_overrides={"d_m": 4}), "d_m is the swept axis"),
])
def test_grid_errors_name_the_argument(kw, match):
    overrides = kw.pop("model_overrides", {})
    with pytest.raises(ValueError, match=match):
        SP.plan_cells(SP.SweepGrid(TrainConfig(task="shd-adding", model_overrides=overrides), **kw))


# --------------------------------------------------------------------------- the CSV format
def test_one_csv_writer_for_sweep_and_plan_tables(tmp_path):
    """Sweep and plan results tables share one writer: a header of the given columns, "\\n" line ends,
    None and missing keys as empty cells, floats as repr (every digit), ints, bools and strings as
    str, quoted only where CSV needs it; keys outside the columns are left out."""
    rows = [{"run_id": "p1500-dm2-n5-s0", "n": 5, "test_acc": 0.1, "wall_s": 12.5, "note": None},
            {"run_id": "a,b", "n": 0, "test_acc": 1e-20, "wall_s": float("nan"), "note": 'say "hi"', "other": 1},
            {"n": -3, "test_acc": 2 / 3, "note": True}]
    text = ('run_id,n,test_acc,wall_s,note\n'
            'p1500-dm2-n5-s0,5,0.1,12.5,\n'
            '"a,b",0,1e-20,nan,"say ""hi"""\n'
            ',-3,0.6666666666666666,,True\n')
    path = SR.write_csv(rows, ["run_id", "n", "test_acc", "wall_s", "note"], tmp_path / "sub" / "results.csv")
    assert path == tmp_path / "sub" / "results.csv"
    assert path.read_bytes() == text.encode()
    assert [r["test_acc"] for r in read_table(path)] == [0.1, 1e-20, 2 / 3]  # floats read back exactly
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left
    # a plan's table: its fixed columns, then the rows' configuration columns in first-seen order
    R.write_results_csv(rows, tmp_path / "plan.csv")
    lines = (tmp_path / "plan.csv").read_bytes().decode().split("\n")
    assert lines[0] == ",".join(R.RESULT_COLUMNS) + ",note,other"
    assert lines[3] == ",,,,,,,-3,,,,,0.6666666666666666,,,True,"
    assert lines[4:] == [""]


# --------------------------------------------------------------------------- a real sweep
def _mtimes(out, names):
    return {n: (SP.cell_path(out, n) / "summary.json").stat().st_mtime_ns for n in names}


def test_local_sweep_interrupted_and_resumed(shd_dir, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    grid = SP.SweepGrid(tiny_base(shd_dir, epochs=2), values=[2, 3, 4], budgets=[1500], seeds=[0])
    cells = SP.plan_cells(grid)
    names = [c.name for c in cells]
    assert names == ["p1500-dm2-n5-s0", "p1500-dm3-n3-s0", "p1500-dm4-n2-s0"]

    # 1. stop after one cell
    r1 = S.run_sweep(out, grid, progress=False, stop_after=1)
    assert r1.ran == [names[0]] and r1.pending == names[1:] and not r1.failed
    assert [r["run_id"] for r in read_table(out / "results.csv")] == [names[0]]
    t0 = _mtimes(out, names[:1])

    # 2. the second cell was killed after its first epoch (checkpoint, no summary)
    assert train_classifier(SP.cell_path(out, names[1]), cells[1].config, progress=False, stop_after_epochs=1) is None
    first_valid = [r for r in RunDir(SP.cell_path(out, names[1])).read_metrics() if r["kind"] == "valid"]
    assert len(first_valid) == 1

    # 3. the third cell's training raises: the others still finish, results keep them
    real_run_cell = SX.run_cell

    def flaky(run_dir, cfg, progress):
        if run_dir.name == names[2]:
            raise RuntimeError("simulated crash")
        return real_run_cell(run_dir, cfg, progress)

    monkeypatch.setattr(SX, "run_cell", flaky)
    r2 = S.run_sweep(out, grid, progress=False)
    assert r2.skipped == [names[0]] and r2.ran == [names[1]]
    assert r2.failed == {names[2]: "RuntimeError: simulated crash"} and r2.pending == [names[2]]
    resumed = RunDir(SP.cell_path(out, names[1]))
    valid = [r for r in resumed.read_metrics() if r["kind"] == "valid"]
    assert len(valid) == 2 and valid[0] == first_valid[0]  # continued from the checkpoint, not restarted
    assert resumed.read_summary()["epochs"] == 2
    assert [r["run_id"] for r in read_table(out / "results.csv")] == names[:2]
    t1 = _mtimes(out, names[:2])
    assert t1[names[0]] == t0[names[0]]

    # 4. re-run: only the failed cell trains; each cell appears exactly once
    monkeypatch.setattr(SX, "run_cell", real_run_cell)
    r3 = S.run_sweep(out, grid, progress=False)
    assert r3.ran == [names[2]] and r3.skipped == names[:2] and not r3.pending and not r3.failed
    assert _mtimes(out, names[:2]) == t1  # finished cells were not retrained
    rows = read_table(out / "results.csv")
    assert [r["run_id"] for r in rows] == names
    for row, cell in zip(rows, cells):
        s = RunDir(SP.cell_path(out, cell.name)).read_summary()
        assert (row["p_target"], row["n"], row["d_m"], row["seed"]) == (1500, cell.n, cell.d_m, 0)
        assert (row["p"], row["k_e"], row["k_c"]) == (s["p"], s["k_e"], s["k_c"]) == (cell.p, cell.k_e, cell.k_c)
        assert row["test_acc"] == s["test_acc"] and row["valid_loss"] == s["valid_loss"]
        assert row["wall_s"] == s["wall_s"] and row["epochs"] == 2 and row["steps"] == 4
        assert (row["d_tree"], row["d_brch"], row["n_in"], row["n_classes"], row["model_seed"]) == (4, 3, 50, 20, 0)
        assert row["task"] == "shd" and row["family"] == "elm"

    # 5. results.csv is rebuilt identically from the run directories
    before = (out / "results.csv").read_bytes()
    (out / "results.csv").unlink()
    SR.write_results(out)
    assert (out / "results.csv").read_bytes() == before
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))

    # 6. a different grid is refused; --force continues; a cell trained differently is refused
    other = SP.SweepGrid(grid.base, values=[2, 3, 4], budgets=[1500], seeds=[0, 1])
    with pytest.raises(ValueError, match="different grid .*seeds"):
        S.run_sweep(out, other, progress=False)
    r4 = S.run_sweep(out, other, progress=False, force=True, stop_after=0)
    assert r4.ran == [] and len(r4.pending) == 3
    assert json.loads((out / "sweep.json").read_text())["grid"]["seeds"] == [0, 1]
    changed = SP.SweepGrid(grid.base.replace(lr=2e-2), values=[2, 3, 4], budgets=[1500], seeds=[0])
    with pytest.raises(ValueError, match=r"different configuration \(fields \['lr'\]\)"):
        S.run_sweep(out, changed, progress=False, force=True)
    # moving the data folder is not a different grid
    S.run_sweep(out, other, progress=False, stop_after=0)


def test_cli_sweep_workers_and_report(shd_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cli"
    args = ["sweep", "--task", "shd", "--data", str(shd_dir), "--params", "1500", "--d-m", "2,3",
            "--set", "d_tree=4", "--set", "d_brch=3", "--seeds", "1", "--epochs", "1", "--batches-per-epoch", "2",
            "--train-set", "bin_ms=50", "--train-set", "channel_factor=14", "--train-set", "valid_batches=2",
            "--train-set", "test_batches=2", "--train-set", "warmup=1", "--out", str(out), "--no-progress"]
    assert main(args + ["--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 trained now" in text and "# Sweep report: shd, elm" in text
    table = read_table(out / "results.csv")
    assert [r["run_id"] for r in table] == ["p1500-dm2-n5-s0", "p1500-dm3-n3-s0"]
    # what the plan sized and how much of the hidden layer the readout sees, per cell
    for r in table:
        assert r["budget_scope"] == "network" and r["d_tree"] == 4 and r["d_brch"] == 3
        assert r["readout_k"] > 0 and 1 <= r["readout_reach"] <= r["n"]
        assert r["readout_coverage"] == pytest.approx(r["readout_reach"] / r["n"])
        assert r["p_hidden"] == r["n"] * (r["k_c"] + r["k_e"])
    report = (out / "report.md").read_text()
    assert "Finished cells: 2 of 2 planned" in report and "Skipped: needs at least 2 budgets for a frontier, the sweep has 1" in report
    assert main(args) == 0  # nothing left to do
    assert "2 already finished, 0 trained now" in capsys.readouterr().out
    assert main(["sweep-report", str(out), "--metric", "valid_acc"]) == 0
    assert "Metric: `valid_acc`" in (out / "report.md").read_text()
    # the analysis scripts on the sweep's run directories
    capsys.readouterr()
    cells = [out / "cells" / "p1500-dm2-n5-s0", out / "cells" / "p1500-dm3-n3-s0"]
    assert run_script("timescales.py", cells + ["--labels", "a,b", "--out", tmp_path / "ts.png"], monkeypatch) == 0
    assert (tmp_path / "ts.png").stat().st_size > 5000 and capsys.readouterr().out.strip() == str(tmp_path / "ts.png")
    assert run_script("activity.py", [cells[1], "--out", tmp_path / "act"], monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["n_neurons"] == 3
    assert (tmp_path / "act" / "raster.png").stat().st_size > 1000
    # bad input: one line naming the argument, exit code 2
    assert main(args + ["--seeds", "2"]) == 2
    assert "different grid" in capsys.readouterr().err
    assert main(args + ["--axis", "n", "--values", "4,8"]) == 2
    assert "--d-m must be a single value" in capsys.readouterr().err
    assert main(["sweep-report", str(tmp_path / "none")]) == 2
    assert "results.csv not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- Ray
def test_ray_missing_gives_install_hint(monkeypatch, tmp_path, shd_dir, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install elm_neuro\[distributed\]"):
        SX.import_ray()
    grid = SP.SweepGrid(tiny_base(shd_dir), values=[2], budgets=[1500], seeds=[0])
    with pytest.raises(ImportError, match="distributed"):
        S.run_sweep(tmp_path / "r", grid, executor="ray", progress=False)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_ray_task_resources():
    assert SX.ray_task_resources({"CPU": 16.0, "GPU": 1.0}, "auto") == {"num_gpus": 1}
    assert SX.ray_task_resources({"CPU": 16.0, "GPU": 2.0}, "cuda:0") == {"num_gpus": 1}
    assert SX.ray_task_resources({"CPU": 16.0, "GPU": 1.0}, "cpu") == {"num_cpus": 1}
    assert SX.ray_task_resources({"CPU": 2.0}, "auto") == {"num_cpus": 1}


def test_ray_executor_runs_cells(shd_dir, tmp_path):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    out = tmp_path / "ray"
    grid = SP.SweepGrid(tiny_base(shd_dir), values=[2, 3], budgets=[1500], seeds=[0])
    res = S.run_sweep(out, grid, executor="ray", workers=2, progress=False)
    assert sorted(res.ran) == ["p1500-dm2-n5-s0", "p1500-dm3-n3-s0"] and not res.failed and not res.pending
    assert not ray.is_initialized()  # the local instance it started is shut down
    rows = read_table(out / "results.csv")
    assert [r["run_id"] for r in rows] == ["p1500-dm2-n5-s0", "p1500-dm3-n3-s0"]
    for r in rows:
        s = RunDir(SP.cell_path(out, r["run_id"])).read_summary()
        assert s["status"] == "completed" and r["test_acc"] == s["test_acc"] and s["device"] == "cpu"


def test_budget_values_give_each_budget_its_own_range():
    """budget_values: a budget listed there sweeps its own values (here no d_m 16 at P 1,000, where a
    d_m 16 neuron alone costs 1,509 parameters), the others ``values``; JSON round trip with the
    budgets as string keys; the cells of a budget still differ in the axis and N only."""
    base = TrainConfig(task="shd", bin_ms=20.0, channel_factor=7,
                       model_overrides={"d_tree": 10, "d_brch": 10, "readout.d_tree": 5})
    grid = SP.SweepGrid(base, values=[2, 8, 16], budgets=[1000, 30000], seeds=[0], budget_scope="hidden",
                        readout="cover", budget_values={"1000": [1, 2, 4]})
    assert grid.budget_values == {1000: [1, 2, 4]}
    assert grid.values_at(1000) == [1, 2, 4] and grid.values_at(30000) == [2, 8, 16]
    cells = SP.plan_cells(grid)
    assert [(c.p_target, c.d_m, c.n) for c in cells] == [(1000, 1, 8), (1000, 2, 6), (1000, 4, 4),
                                                         (30000, 2, 182), (30000, 8, 55), (30000, 16, 20)]
    d = json.loads(json.dumps(grid.to_dict()))
    assert d["budget_values"] == {"1000": [1, 2, 4]} and SP.SweepGrid.from_dict(d) == grid
    assert "budget_values" not in SP.SweepGrid(base, values=[2], budgets=[1000]).to_dict()
    # only values: a budget-values-only grid is a d_m sweep too (the axis field may not also be fixed)
    only = SP.SweepGrid(base, budgets=[1000], budget_values={1000: [1, 2]}, budget_scope="hidden")
    assert [c.d_m for c in SP.plan_cells(only)] == [1, 2]
    with pytest.raises(ValueError, match="d_m is the swept axis"):
        SP.SweepGrid(base.replace(model_overrides={"d_m": 2}), budgets=[1000], budget_values={1000: [1]})


@pytest.mark.parametrize("kw, match", [
    (dict(budget_values={3000: [1]}), r"key 3000 is not one of the budgets \[1000\]"),
    (dict(budget_values={"1e3": [1]}), "key '1e3' is not a budget"),
    (dict(budget_values={1000: []}), r"budget_values\[1000\] must not be empty"),
    (dict(budget_values={1000: [2, 2]}), "duplicate"),
    (dict(budget_values={}), "non-empty mapping"),
    (dict(budget_values=[1, 2]), "non-empty mapping"),
    (dict(budget_values={1000: [1]}, budgets=None, model_overrides={"n": 4}), "needs budgets"),
])
def test_budget_values_errors_name_the_argument(kw, match):
    overrides = kw.pop("model_overrides", {})
    kw.setdefault("budgets", [1000])
    with pytest.raises(ValueError, match=match):
        SP.SweepGrid(TrainConfig(task="shd", model_overrides=overrides), values=[2], **kw)


def test_run_sweep_keeps_every_grid_field_when_it_resolves_the_data_folder(shd_dir, tmp_path, monkeypatch):
    """run_sweep makes the data folder absolute; the grid it plans and records keeps its budget split,
    readout rule and per-budget values (a relative --data once dropped them, sweeping another grid)."""
    monkeypatch.chdir(shd_dir.parent)
    base = tiny_base(shd_dir.name)
    grid = SP.SweepGrid(base, values=[2], budgets=[1500], seeds=[0], budget_scope="hidden", readout="cover",
                        budget_values={1500: [1, 2]})
    res = S.run_sweep(tmp_path / "sw", grid, progress=False, stop_after=0)
    recorded = json.loads((tmp_path / "sw" / "sweep.json").read_text())["grid"]
    assert (recorded["budget_scope"], recorded["readout"], recorded["budget_values"]) == ("hidden", "cover",
                                                                                        {"1500": [1, 2]})
    assert recorded["base"]["data_dir"] == str(shd_dir.resolve())
    assert res.pending == [c.name for c in SP.plan_cells(dataclasses.replace(grid, base=base.replace(
        data_dir=str(shd_dir.resolve()))))] and len(res.pending) == 2
