"""Trainer progress reporting: the data time (loader wait per batch and its share of the step) on
the training bar and in the epoch line, epoch and final lines printed even with progress off, bars
over the final evaluation, and summary.json's wall_s covering the final evaluation; the
classification splits are built on the training device."""
import re
import time

import pytest
import torch

from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.data.enwik8 import load_enwik8_tokens
from elm_neuro.training import classification as C
from elm_neuro.training import language as L
from elm_neuro.training.classification import DataTimer, train_classifier
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.language import train_language_model
from elm_neuro.training.run import RunDir

TINY_MODEL = dict(d_m=2, n=6, d_tree=3, d_brch=2)
EPOCH_LINE = re.compile(r"^run: epoch (\d+)/(\d+): train loss \d+\.\d{4} acc \d\.\d{3} \| valid loss \d+\.\d{4} "
                        r"acc \d\.\d{3} \| data \d+\.\d{2} ms/batch \((\d+\.\d)% of the step\) \| \d+\.\d s$")


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd_progress")
    write_synthetic_shd(d, 60, 30, seed=2)
    return d


def cls_cfg(shd_dir, **kw):
    base = dict(task="shd-adding", data_dir=str(shd_dir), device="cpu", epochs=2, batches_per_epoch=3,
                batch_size=4, valid_batches=2, test_batches=3, bin_ms=50.0, channel_factor=14, warmup=1,
                log_every=2, model_overrides=dict(TINY_MODEL))
    base.update(kw)
    return TrainConfig(**base)


class RecordingBar:
    """Stands in for tqdm in a trainer module: records every bar's arguments, the number of items
    that went through it and its postfixes; draws nothing."""

    bars: list = []

    def __init__(self, iterable=None, **kw):
        self.iterable, self.kw, self.items, self.postfixes = iterable, kw, 0, []
        RecordingBar.bars.append(self)

    def __iter__(self):
        for item in self.iterable:
            self.items += 1
            yield item

    def set_postfix(self, **kw):
        self.postfixes.append(kw)

    @staticmethod
    def write(line):
        print(line)


@pytest.fixture
def recording_bar(monkeypatch):
    RecordingBar.bars = []
    monkeypatch.setattr(C, "tqdm", RecordingBar)
    monkeypatch.setattr(L, "tqdm", RecordingBar)
    return RecordingBar


def test_epoch_and_final_lines_are_printed_with_progress_off(shd_dir, tmp_path, capsys):
    summary = train_classifier(tmp_path / "run", cls_cfg(shd_dir), progress=False)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # every line names its run (several runs print side by side in compare, sweep and the demo)
    epochs = [EPOCH_LINE.match(line) for line in lines if line.startswith("run: epoch ")]
    assert len(epochs) == 2 and all(epochs), lines
    assert [(m.group(1), m.group(2)) for m in epochs] == [("1", "2"), ("2", "2")]
    assert all(0.0 <= float(m.group(3)) <= 100.0 for m in epochs)
    final = [line for line in lines if line.startswith("run: final (best epoch")]
    assert len(final) == 1
    # how long the run takes, said once after a few steps (elm_neuro.training.pace)
    assert len([line for line in lines if " s per training step; the remaining " in line]) == 1
    assert f"test loss {summary['test_loss']:.4f} acc {summary['test_acc']:.3f}" in final[0]
    assert f"wall {summary['wall_s']:.1f} s" in final[0]
    assert "it/s" not in err and "%|" not in err  # no bars drawn


def test_bars_show_data_time_and_cover_the_final_evaluation(shd_dir, tmp_path, recording_bar):
    cfg = cls_cfg(shd_dir)
    train_classifier(tmp_path / "run", cfg, progress=True)
    bars = {b.kw.get("desc"): b for b in recording_bar.bars}
    assert set(bars) == {"epoch 1/2", "epoch 2/2", "valid 1/2", "valid 2/2", "final valid", "final test"}
    for name in ("epoch 1/2", "epoch 2/2"):
        bar = bars[name]
        assert bar.items == 3 and bar.kw["total"] == 3 and bar.kw["disable"] is False
        assert len(bar.postfixes) == 3
        for post in bar.postfixes:
            assert re.fullmatch(r"\d+\.\dms \d+%", post["data"]), post
            assert set(post) == {"loss", "acc", "data"}
    # the final evaluation goes through its bars, batch by batch
    assert bars["final valid"].items == bars["final valid"].kw["total"] == 2
    assert bars["final test"].items == bars["final test"].kw["total"] == 3
    assert bars["final test"].kw["disable"] is False


def test_summary_wall_s_includes_the_final_evaluation(shd_dir, tmp_path, monkeypatch):
    real = C.evaluate
    pause = 0.3

    def slow_evaluate(model, split, cfg, device):
        time.sleep(pause)
        return real(model, split, cfg, device)

    monkeypatch.setattr(C, "evaluate", slow_evaluate)
    summary = train_classifier(tmp_path / "run", cls_cfg(shd_dir, epochs=1), progress=False)
    valid = [r for r in RunDir(tmp_path / "run").read_metrics() if r["kind"] == "valid"]
    assert len(valid) == 1 and valid[0]["wall_s"] >= pause          # the epoch's validation
    # after the last checkpoint: the final validation and test evaluations (two pauses)
    assert summary["wall_s"] >= valid[0]["wall_s"] + 2 * pause
    assert RunDir(tmp_path / "run").read_summary()["wall_s"] == summary["wall_s"]


def test_splits_are_built_on_the_training_device(shd_dir, tmp_path, monkeypatch):
    seen = []
    real = C.build_classification_task

    def record(cfg, device=None):
        seen.append(device)
        return real(cfg, device=device)

    monkeypatch.setattr(C, "build_classification_task", record)
    train_classifier(tmp_path / "run", cls_cfg(shd_dir, epochs=1), progress=False)
    assert seen == [torch.device("cpu")]


def test_data_timer_counts_the_wait_for_batches():
    def slow_batches(n, wait):
        for k in range(n):
            time.sleep(wait)
            yield torch.full((2, 3), float(k)), torch.tensor([k, k])

    timer = DataTimer()
    got = []
    for x, y in timer.iterate(slow_batches(4, 0.05), torch.device("cpu")):
        time.sleep(0.05)  # the "step"
        got.append(int(y[0]))
    assert got == [0, 1, 2, 3] and timer.batches == 4
    assert timer.data_s >= 4 * 0.05 and timer.ms_per_batch() >= 50.0
    assert 0.0 < timer.share() < 1.0
    assert re.fullmatch(r"data \d+\.\d{2} ms/batch \(\d+\.\d% of the step\)", timer.describe())
    empty = DataTimer()
    assert list(empty.iterate(iter(()), torch.device("cpu"))) == [] and empty.batches == 0
    assert empty.ms_per_batch() == 0.0
    with empty.fetch():
        time.sleep(0.01)
    assert empty.batches == 1 and empty.data_s >= 0.01


# ----------------------------------------------------------------------------- language modelling

@pytest.fixture(scope="module")
def tokens():
    return load_enwik8_tokens(None, corpus_bytes=60_000)


def lm_cfg(**kw):
    base = dict(task="enwik8", epochs=2, batches_per_epoch=3, batch_size=8, chunk_len=20, optimizer="adam",
                lr=1e-2, warmup=1, log_every=2, eval_tokens=400, reset_steps=10, device="cpu",
                model_overrides=dict(TINY_MODEL))
    base.update(kw)
    return TrainConfig(**base)


def test_language_lines_bars_and_wall_s(tokens, tmp_path, capsys, monkeypatch, recording_bar):
    real = L.stream_bpc
    pause = 0.3

    def slow_bpc(*args, **kw):
        time.sleep(pause)
        return real(*args, **kw)

    monkeypatch.setattr(L, "stream_bpc", slow_bpc)
    summary = train_language_model(tmp_path / "lm", lm_cfg(), tokens=tokens, progress=False)
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("lm: epoch ")]
    assert len(epochs) == 2
    for line in epochs:
        assert re.fullmatch(r"lm: epoch \d/2: train bpc \d+\.\d{4} \| valid-prefix bpc \d+\.\d{4} \| data \d+\.\d{2} "
                            r"ms/batch \(\d+\.\d% of the step\) \| \d+\.\d s", line), line
    final = [line for line in lines if line.startswith("lm: final (best epoch")]
    assert len(final) == 1 and f"test bpc {summary['test_bpc']:.4f}" in final[0]
    valid = [r for r in RunDir(tmp_path / "lm").read_metrics() if r["kind"] == "valid"]
    assert summary["wall_s"] >= valid[-1]["wall_s"] + 2 * pause
    bars = {b.kw.get("desc"): b for b in recording_bar.bars}
    assert {"final valid", "final test"} <= set(bars)
    for name in ("final valid", "final test"):  # every chunk of the stream went through the bar
        assert bars[name].items == bars[name].kw["total"] > 0 and bars[name].kw["disable"] is True
    train_bars = [b for d, b in bars.items() if d.startswith("epoch ")]
    assert len(train_bars) == 2
    assert all(re.fullmatch(r"\d+\.\dms \d+%", p["data"]) for b in train_bars for p in b.postfixes)
