"""A failed model does not cancel a comparison: ``elm-neuro compare`` trains the other models and
seeds, lists every failed cell (model, seed, one-line reason) in report.md, and exits with 3
(``EXIT_CELLS_FAILED``) after one error line; running the command again retries the failed cells."""
import json
import pickle

import pytest
import torch

from elm_neuro.cli.compare import EXIT_CELLS_FAILED
from elm_neuro.cli.main import main
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments import compare as C
from elm_neuro.networks.lif_network import LIFNetwork
from elm_neuro.training.common import LR_HINT, TrainingDiverged
from elm_neuro.training.run import RunDir


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 100, 40, seed=2)
    return d


def _compare_args(shd, out):
    return ["compare", "--task", "shd-adding", "--params", "3000", "--models", "elm,lif,lstm", "--seeds", "2",
            "--data", str(shd), "--out", str(out), "--epochs", "1", "--batches-per-epoch", "2", "--batch-size", "4",
            "--device", "cpu", "--no-progress", "--train-set", "valid_batches=1", "--train-set", "test_batches=1",
            "--train-set", "bin_ms=100.0", "--train-set", "channel_factor=14", "--train-set", "warmup=1",
            "--set", "elm:d_m=2", "--set", "elm:d_tree=4", "--set", "elm:d_brch=3", "--set", "lif:n_synapses=12",
            "--set", "lif:readout_d_tree=4", "--set", "lif:readout_d_brch=3"]


def _nan_lif(monkeypatch):
    """Every LIF network gives NaN logits: its cells diverge at their first step, for real."""
    real = LIFNetwork.forward

    def forward(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        return out._replace(logits=out.logits * float("nan"))

    monkeypatch.setattr(LIFNetwork, "forward", forward)


def test_failed_model_is_reported_and_the_others_finish(shd, tmp_path, monkeypatch, capsys):
    _nan_lif(monkeypatch)
    out = tmp_path / "cmp"
    assert main(_compare_args(shd, out)) == EXIT_CELLS_FAILED
    captured = capsys.readouterr()
    err_lines = [ln for ln in captured.err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in captured.err
    assert err_lines[-1] == (f"elm-neuro compare: error: 2 of 6 cell(s) failed (lif-s0, lif-s1); the others finished; "
                             f"{out / 'report.md'} lists the failures; run the same command again to retry them")
    # each failure was also printed as it happened
    assert [ln.split(": TrainingDiverged")[0] for ln in err_lines[:-1] if ln.startswith("compare: cell")] == \
        ["compare: cell lif-s0 failed", "compare: cell lif-s1 failed"]
    # the other models' cells finished
    for model in ("elm", "lstm"):
        for seed in (0, 1):
            s = RunDir(C.cell_dir(out, model, seed)).read_summary()
            assert s["status"] == "completed" and s["family"] == model and s["seed"] == seed
    assert not C.cell_dir(out, "lif", 0).exists()  # a new run that diverged leaves nothing behind
    report = (out / "report.md").read_text()
    assert report in captured.out  # printed as on success
    rows = [ln.split("|")[1].strip() for ln in report.splitlines() if ln.startswith("| ") and not ln.startswith("| model")]
    assert rows == ["elm", "lstm"]
    section = report.split("## Failed cells", 1)[1]
    assert "2 of 6 cells failed; the table above averages the finished ones only." in section
    bullets = [ln for ln in section.splitlines() if ln.startswith("- ")]
    assert len(bullets) == 2
    for seed, line in enumerate(bullets):
        assert line.startswith(f"- `lif-s{seed}` (model lif, seed {seed}): TrainingDiverged: non-finite loss (nan) at "
                               f"epoch 1, step 1 before any update; stopped: the lif model at its initialisation "
                               f"gives a non-finite training loss")
        assert "\n" not in line and LR_HINT not in line
    assert (out / "learning_curves.png").stat().st_size > 1000

    # the same command again, the fault gone: the failed cells train, the finished ones are kept
    monkeypatch.undo()
    mtime = (C.cell_dir(out, "elm", 0) / "summary.json").stat().st_mtime_ns
    assert main(_compare_args(shd, out)) == 0
    assert (C.cell_dir(out, "elm", 0) / "summary.json").stat().st_mtime_ns == mtime
    assert RunDir(C.cell_dir(out, "lif", 1)).read_summary()["status"] == "completed"
    report = (out / "report.md").read_text()
    assert "Failed cells" not in report and "| lif |" in report


def test_the_python_api_raises_after_writing_the_report(shd, tmp_path, monkeypatch):
    """``compare()`` (used by the demo and ``reproduce``) raises CellsFailed, which carries the
    report and the reasons, once every cell was tried."""
    from elm_neuro.training.config import TrainConfig

    def fails(run_dir, cfg, **kw):
        raise RuntimeError("disk on fire\nsecond line")

    real = C.run_training
    monkeypatch.setattr(C, "run_training", lambda run_dir, cfg, **kw: fails(run_dir, cfg, **kw)
                        if run_dir.name == "lstm-s0" else real(run_dir, cfg, **kw))
    base = TrainConfig(task="shd-adding", data_dir=str(shd), epochs=1, batches_per_epoch=2, batch_size=4,
                       valid_batches=1, test_batches=1, bin_ms=100.0, channel_factor=14, warmup=1, params=3000,
                       device="cpu")
    with pytest.raises(C.CellsFailed) as info:
        C.compare(tmp_path, base, ["elm", "lstm"], [0], {"elm": dict(d_m=2, d_tree=4, d_brch=3)}, progress=False)
    exc = info.value
    assert exc.failed == {"lstm-s0": "RuntimeError: disk on fire second line"} and exc.total == 2
    assert exc.report == tmp_path / "report.md"
    assert "- `lstm-s0` (model lstm, seed 0): RuntimeError: disk on fire second line" in exc.report.read_text()
    assert RunDir(C.cell_dir(tmp_path, "elm", 0)).read_summary()["status"] == "completed"
    again = pickle.loads(pickle.dumps(exc))  # crosses process boundaries intact
    assert (again.report, again.failed, again.total, str(again)) == (exc.report, exc.failed, exc.total, str(exc))


def test_failure_reasons_are_one_line_with_the_advice():
    after = TrainingDiverged("non-finite loss (nan) at step 9 after 8 updates;\nstopped.", updates=8)
    assert C.failure_reason(after) == f"TrainingDiverged: non-finite loss (nan) at step 9 after 8 updates; stopped. " \
                                      f"({LR_HINT})"
    first = TrainingDiverged("non-finite loss (nan) at step 1 before any update", updates=0)
    assert C.failure_reason(first) == "TrainingDiverged: non-finite loss (nan) at step 1 before any update"
    for exc in (after, first):  # workers > 1: the exception comes back pickled, advice included
        back = pickle.loads(pickle.dumps(exc))
        assert (type(back), str(back), back.updates, back.hint) == (TrainingDiverged, str(exc), exc.updates, exc.hint)
    assert C.failure_reason(ValueError("bad")) == "ValueError: bad"
    assert json.dumps(C.failure_reason(torch.cuda.OutOfMemoryError("CUDA out of memory")))  # any exception
