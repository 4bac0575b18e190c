"""Training: schedule values, a tiny end-to-end run, resume equivalence, NaN handling, the best
copy, load_run, the CLI (docs/design.md §7)."""
import json
import math

import pytest
import torch

from elm_neuro.cli.main import main
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.training import classification as C
from elm_neuro.training.classification import train_classifier
from elm_neuro.training.common import TrainingDiverged
from elm_neuro.training.config import TrainConfig, paper_defaults
from elm_neuro.training.run import RunDir, load_run
from elm_neuro.training.schedule import warmup_cosine, warmup_cosine_factor

TINY_MODEL = dict(d_m=2, n=8, d_tree=4, d_brch=3)


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 120, 60, seed=1)
    return d


def tiny_cfg(shd_dir, **kw):
    base = dict(task="shd", data_dir=str(shd_dir), device="cpu", epochs=3, batches_per_epoch=6, batch_size=8,
                valid_batches=2, test_batches=2, bin_ms=50.0, channel_factor=14, warmup=2, lr=1e-2,
                log_every=2, model_overrides=dict(TINY_MODEL))
    base.update(kw)
    return TrainConfig(**base)


def test_warmup_cosine_values():
    assert warmup_cosine_factor(0, 400, 140000) == 0.0
    assert warmup_cosine_factor(200, 400, 140000) == 0.5
    assert warmup_cosine_factor(400, 400, 140000) == 1.0
    mid = 400 + (140000 - 400) // 2
    assert warmup_cosine_factor(mid, 400, 140000) == pytest.approx(0.5)
    q = 400 + (140000 - 400) // 4
    assert warmup_cosine_factor(q, 400, 140000) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine_factor(140000, 400, 140000) == 0.0
    assert warmup_cosine_factor(10 ** 6, 400, 140000) == 0.0
    opt = torch.optim.Adamax([torch.nn.Parameter(torch.zeros(1))], lr=5e-3)
    sched = warmup_cosine(opt, 4, 10)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 1.25e-3, 2.5e-3, 3.75e-3, 5e-3])
    assert warmup_cosine_factor(5, 20, 10) == 0.5  # warmup longer than the run: shortened
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        warmup_cosine_factor(0, -1, 10)


def test_paper_defaults_follow_spec():
    cfg = TrainConfig(task="shd-adding", **paper_defaults("shd-adding"))
    assert (cfg.epochs, cfg.batches_per_epoch, cfg.batch_size) == (70, 2000, 8)
    assert (cfg.optimizer, cfg.lr, cfg.warmup, cfg.steps_total, cfg.clip) == ("adamax", 5e-3, 400, 140000, 1.0)
    assert cfg.smoothing() == 0.01 and cfg.regularizer_weights() == {"mlp": 0.002, "act": 0.2}
    lm = TrainConfig(task="enwik8", **paper_defaults("enwik8"))
    assert (lm.optimizer, lm.lr, lm.warmup, lm.steps_total, lm.smoothing()) == ("adam", 5e-4, 100, 300000, 1e-4)
    assert lm.epochs * lm.batches_per_epoch == 300000  # the loop runs the whole schedule
    # task-aware default smoothing without --paper too
    assert TrainConfig(task="enwik8").smoothing() == 1e-4 and TrainConfig(task="shd").smoothing() == 0.01
    assert lm.regularizer_weights() == {"mlp": 0.01, "act": 1.0}


def test_tiny_run_learns_and_writes_run_dir(shd_dir, tmp_path):
    summary = train_classifier(tmp_path / "run", tiny_cfg(shd_dir, epochs=4, lr=3e-2), progress=False)
    run = RunDir(tmp_path / "run")
    rows = run.read_metrics()
    train = [r for r in rows if r["kind"] == "train"]
    valid = [r for r in rows if r["kind"] == "valid"]
    assert len(train) == 4 * 6 // 2 and len(valid) == 4
    assert valid[-1]["train_loss"] < valid[0]["train_loss"] - 0.05  # the epoch-mean loss decreases
    assert summary["status"] == "completed" and summary["steps"] == 24
    assert summary == json.loads(run.summary.read_text())
    conf = run.read_config()
    assert conf["model"]["family"] == "elm" and conf["model"]["config"]["n_in"] == 50
    assert conf["train"]["seed"] == 0
    for name in ("checkpoint.pt", "best.pt", "metrics.jsonl", "config.json", "summary.json"):
        assert (tmp_path / "run" / name).is_file()
    assert not list((tmp_path / "run").glob("*.tmp"))
    # load_run gives the best weights in eval mode
    loaded = load_run(tmp_path / "run")
    assert not loaded.model.training and loaded.summary["test_acc"] == summary["test_acc"]
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, best[k])


def test_resume_reaches_same_final_metrics(shd_dir, tmp_path):
    cfg = tiny_cfg(shd_dir, model_overrides=dict(TINY_MODEL, dropout_in=0.3, dropout_rec=0.3))
    full = train_classifier(tmp_path / "full", cfg, progress=False)
    assert train_classifier(tmp_path / "part", cfg, progress=False, stop_after_epochs=1) is None
    part = RunDir(tmp_path / "part")
    assert part.read_summary() is None and torch.load(part.checkpoint, weights_only=True)["epoch"] == 1
    # a partial epoch's metric lines written after the checkpoint are dropped on resume
    part.append_metric({"kind": "train", "epoch": 2, "step": 999, "loss": 0.0})
    resumed = train_classifier(tmp_path / "part", resume=True, progress=False)
    for key in ("valid_acc", "valid_loss", "test_acc", "test_loss", "steps", "best_epoch"):
        assert resumed[key] == full[key], key
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in RunDir(tmp_path / "full").read_metrics()]
    strip_b = [{k: v for k, v in r.items() if k != "wall_s"} for r in part.read_metrics()]
    assert strip == strip_b


def test_existing_run_refused_without_resume(shd_dir, tmp_path):
    cfg = tiny_cfg(shd_dir, epochs=1)
    train_classifier(tmp_path / "r", cfg, progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        train_classifier(tmp_path / "r", cfg, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text(json.dumps({"train": cfg.to_dict(), "model": {}}))
        train_classifier(tmp_path / "empty", resume=True, progress=False)


class PoisonedSplit:
    """Wraps a training split; puts NaN into the input from ``bad_epoch`` on."""

    def __init__(self, split, bad_epoch):
        self.split, self.bad_epoch = split, bad_epoch
        self.n_batches, self.n_channels, self.n_classes = split.n_batches, split.n_channels, split.n_classes

    def batches(self, epoch, start=0):
        for x, y in self.split.batches(epoch, start):
            if epoch >= self.bad_epoch:
                x = x.clone()
                x[0, 0, 0] = float("nan")
            yield x, y


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU path is tested above)")
def test_resume_on_cuda(shd_dir, tmp_path):
    """Checkpoints loaded onto the GPU carry CUDA copies of the RNG states; resume must restore them."""
    cfg = tiny_cfg(shd_dir, device="cuda")
    full = train_classifier(tmp_path / "full", cfg, progress=False)
    train_classifier(tmp_path / "part", cfg, progress=False, stop_after_epochs=1)
    resumed = train_classifier(tmp_path / "part", resume=True, progress=False)
    assert resumed["steps"] == full["steps"] and resumed["device"].startswith("cuda")
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], rel=1e-4)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(shd_dir, tmp_path):
    from elm_neuro.training.tasks import build_classification_task

    cfg = tiny_cfg(shd_dir)
    splits = build_classification_task(cfg)
    splits["train"] = PoisonedSplit(splits["train"], bad_epoch=1)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss .* epoch 2, step 7"):
        train_classifier(tmp_path / "r", cfg, splits=splits, progress=False)
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["step"] == 6
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (tmp_path / "r" / "summary.json").exists()


def test_best_weights_are_a_real_copy(shd_dir, tmp_path, monkeypatch):
    accs = iter([0.9, 0.5, 0.4, 0.0, 0.0])
    real = C.evaluate

    def fake_evaluate(model, split, cfg, device):
        out = real(model, split, cfg, device)
        return {**out, "acc": next(accs, out["acc"])}

    cfg = tiny_cfg(shd_dir)
    train_classifier(tmp_path / "one", cfg, progress=False, stop_after_epochs=1)
    monkeypatch.setattr(C, "evaluate", fake_evaluate)
    train_classifier(tmp_path / "full", cfg, progress=False)
    best = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    after_one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    last = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    assert best["epoch"] == 1
    assert all(torch.equal(best["model"][k], after_one[k]) for k in after_one)
    assert any(not torch.equal(best["model"][k], last[k]) for k in last)


def test_train_cli_end_to_end_and_errors(shd_dir, tmp_path, capsys):
    args = ["train", "--task", "shd", "--data", str(shd_dir), "--epochs", "1", "--batches-per-epoch", "3",
            "--d-m", "2", "--n", "6", "--set", "d_tree=4", "--set", "d_brch=3", "--train-set", "bin_ms=50",
            "--train-set", "valid_batches=1", "--no-progress", "--out", str(tmp_path / "cli")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"status": "completed"' in out
    conf = RunDir(tmp_path / "cli").read_config()
    assert conf["model"]["config"]["n"] == 6 and conf["train"]["bin_ms"] == 50
    assert main(["train", "--resume", str(tmp_path / "cli"), "--no-progress"]) == 0  # finished: summary again
    capsys.readouterr()
    assert main(["train", "--data", str(shd_dir)]) == 2
    assert "--out RUN_DIR is required" in capsys.readouterr().err
    assert main(["train", "--model", "nope", "--data", str(shd_dir), "--out", str(tmp_path / "x")]) == 2
    assert "model must be one of" in capsys.readouterr().err
    assert main(["train", "--train-set", "bogus=1", "--out", str(tmp_path / "y")]) == 2
    assert "unknown TrainConfig field(s) ['bogus']" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "z")]) == 2
    assert "nowhere not found (--data must be a folder with shd_train.h5" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
    assert main(["train", "--n", "5", "--params", "9000", "--data", str(shd_dir), "--out", str(tmp_path / "w")]) == 2
    assert "either n (model override) or params" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--task", "mnist"])


@pytest.mark.parametrize("field,value,msg", [("epochs", 0, "epochs must be an integer >= 1"),
                                              ("optimizer", "lbfgs", "optimizer must be one of"),
                                              ("label_smoothing", 1.0, "label_smoothing must lie in"),
                                              ("device", "tpu", "device must be"),
                                              ("task", "mnist", "task must be one of"),
                                              ("lr", float("nan"), "lr must be a finite number > 0"),
                                              ("lr", True, "lr must be a finite number > 0"),
                                              ("clip", float("inf"), "clip must be a finite number > 0"),
                                              ("total_steps", 1.5, "total_steps must be an integer"),
                                              ("warmup", True, "warmup must be an integer >= 0"),
                                              ("params", 2.5, "params must be an integer"),
                                              ("reset_end", 2.0, "reset_end must be a probability"),
                                              ("reset_start", -1.0, "reset_start must be a probability"),
                                              ("tokenization", "foo", "tokenization must be one of")])
def test_train_config_errors(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("model,over", [("elm", TINY_MODEL), ("lif", dict(n=8, n_synapses=12, readout_d_tree=4,
                                                                            readout_d_brch=3)), ("lstm", dict(n=8))])
def test_bf16_autocast_runs_every_family(shd_dir, tmp_path, model, over):
    cfg = tiny_cfg(shd_dir, model=model, model_overrides=over, epochs=1, batches_per_epoch=3, amp="bf16")
    s = train_classifier(tmp_path / "r", cfg, progress=False)
    assert s["status"] == "completed" and math.isfinite(s["test_loss"]) and s["family"] == model
