"""Sequence-classification training (SHD-Adding, SHD) following docs/design.md §7 by default.

Loss on the last step (option: mean over the last ``k`` steps) with label smoothing, plus the
model's regularisers weighted by ``TrainConfig.regularizer_weights()`` (ELM: 0.002 L_mlp +
0.2 L_act; spiking: 0.01 x spike rate, the L1 spike penalty). Optimiser Adamax with linear
warmup and cosine decay, global-norm gradient clipping. After every epoch: validation, a real
copy of the weights when the validation accuracy is strictly better, and an atomic checkpoint.
At the end the best weights are reloaded and evaluated on validation and test.

Progress: the training bar shows the running loss and accuracy and the data time, i.e. the
loader wait per batch (getting the batch from the split and moving it to the device) and its
share of the whole step (:class:`DataTimer`); every evaluation pass has its own bar. One line
per epoch (train and validation loss / accuracy, data time and share, epoch seconds) and one
line for the final evaluation are printed whether or not the bars are shown (``progress=False``,
``--no-progress``), through ``tqdm.write`` on stdout. ``wall_s`` (metrics and summary.json)
counts training, every validation, and, in summary.json, the final reload of the best weights
and the final validation and test evaluation.

Reproducibility: the global torch / numpy / random RNGs are seeded from ``seed`` (dropout uses
torch's), training batches are a function of (seed, epoch), and a checkpoint stores every RNG
state, so ``resume`` from a checkpoint reaches the same final metrics as an uninterrupted run
(on CPU). A non-finite loss stops the run with :class:`TrainingDiverged`; the last good
checkpoint stays as it was.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from elm_neuro.atomic import save_torch
from elm_neuro.training.common import (autocast, build_session, open_run, optimizer_step, pick_device,
                                       record_engines, regularization, save_checkpoint, start_run)
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.model_setup import run_model_config
from elm_neuro.training.pace import Pace
from elm_neuro.training.run import load_checkpoint
from elm_neuro.training.tasks import build_classification_task


class DataTimer:
    """Loader wait of a training loop against the loop's whole time.

    ``data_s`` sums the time spent getting batches (inside :meth:`fetch`, or for every batch of
    :meth:`iterate`); ``share()`` is ``data_s`` over the seconds since the timer was made, i.e.
    the fraction of the training steps spent waiting for data; ``ms_per_batch()`` the mean wait.
    """

    def __init__(self):
        self.data_s = 0.0
        self.batches = 0
        self.start = time.perf_counter()

    @contextmanager
    def fetch(self):
        """Time one batch fetch (``with timer.fetch(): x, y = ...``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.data_s += time.perf_counter() - t0
            self.batches += 1

    def iterate(self, batches, device: torch.device):
        """Yield ``(x, y)`` of ``batches`` moved to ``device``, timing each fetch."""
        it = iter(batches)
        while True:
            with self.fetch():
                try:
                    x, y = next(it)
                except StopIteration:
                    self.batches -= 1  # no batch came
                    return
                x, y = x.to(device), y.to(device)
            yield x, y

    def share(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.data_s / elapsed if elapsed > 0 else 0.0

    def ms_per_batch(self) -> float:
        return 1e3 * self.data_s / self.batches if self.batches else 0.0

    def postfix(self) -> str:
        """Short form for a progress bar: mean wait per batch and share of the step."""
        return f"{self.ms_per_batch():.1f}ms {self.share():.0%}"

    def describe(self) -> str:
        """Long form for the epoch line."""
        return f"data {self.ms_per_batch():.2f} ms/batch ({self.share():.1%} of the step)"


class _WithProgress:
    """A split whose ``batches`` go through a tqdm bar (evaluation progress); every other
    attribute is the split's."""

    def __init__(self, split, desc: str, enabled: bool):
        self._split, self._desc, self._enabled = split, desc, enabled

    def __getattr__(self, name):
        return getattr(self._split, name)

    def batches(self, epoch: int = 0, start: int = 0):
        total = getattr(self._split, "n_batches", None)
        return tqdm(self._split.batches(epoch, start), total=None if total is None else total - start,
                    desc=self._desc, leave=False, disable=not self._enabled)


def classification_loss(logits: torch.Tensor, y: torch.Tensor, last_k: int, smoothing: float):
    """Mean cross-entropy over the last ``last_k`` steps; predictions from their mean logits."""
    tail = logits[:, -last_k:].float()
    ce = F.cross_entropy(tail.reshape(-1, tail.shape[-1]), y.repeat_interleave(tail.shape[1]),
                         label_smoothing=smoothing)
    pred = tail.mean(1).argmax(-1)
    return ce, pred


@torch.no_grad()
def evaluate(model, split, cfg: TrainConfig, device: torch.device) -> dict:
    """Mean loss (plain cross-entropy, no smoothing) and accuracy over a fixed split."""
    model.eval()
    n, correct, loss_sum = 0, 0, 0.0
    for x, y in split.batches(0):
        x, y = x.to(device), y.to(device)
        with autocast(cfg, device):
            out = model(x)
        ce, pred = classification_loss(out.logits, y, cfg.loss_last_k, 0.0)
        loss_sum += float(ce) * len(y)
        correct += int((pred == y).sum())
        n += len(y)
    if n == 0:  # the run's data checks refuse such files before training; this names it for direct callers
        source = getattr(getattr(split, "events", None), "path", "") or "its data"
        raise ValueError(f"the evaluation split of {source} has no samples; nothing to evaluate")
    return {"loss": loss_sum / n, "acc": correct / n, "n": n}


def _model_config(cfg: TrainConfig, splits):
    ref = splits["train"]
    return run_model_config(cfg, ref.n_channels, ref.n_classes)


def train_classifier(run_dir, cfg: TrainConfig | None = None, resume: bool = False, splits=None,
                     stop_after_epochs: int | None = None, progress: bool = True) -> dict | None:
    """Train (or resume) the run in ``run_dir``; returns the summary (None if stopped early).

    ``splits`` (optional) are prebuilt ``{"train","valid","test"}`` splits (else built from the
    config's task and data_dir). ``stop_after_epochs`` ends this call after that many epochs
    without finishing the run (as if killed after a checkpoint), for tests and time slicing.
    """
    run, cfg, conf = open_run(run_dir, cfg, resume)
    if splits is None:  # batches assembled where the model trains (the session uses the same device)
        splits = build_classification_task(cfg, device=pick_device(cfg.device))
    if conf is None:
        conf = start_run(run, cfg, _model_config(cfg, splits))
    ses = build_session(run, cfg, conf, resume)
    model, sched, device, mcfg = ses.model, ses.scheduler, ses.device, ses.model_config
    reg_w = cfg.regularizer_weights()
    epoch, step, wall = 0, 0, 0.0
    best = {"acc": -1.0, "epoch": -1}
    if ses.checkpoint is not None:
        ck = ses.checkpoint
        epoch, step, wall, best = ck["epoch"], ck["step"], ck["wall_s"], ck["best"]
    budget = mcfg.budget()

    epochs_this_call = 0
    pace = Pace(run.path.name, cfg.epochs * splits["train"].n_batches, done=step, progress=progress)
    while epoch < cfg.epochs:
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            return None
        t0 = time.perf_counter()
        model.train()
        timer = DataTimer()
        bar = tqdm(timer.iterate(splits["train"].batches(epoch), device), total=splits["train"].n_batches,
                   disable=not progress, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        run_loss, run_acc, seen = 0.0, 0.0, 0
        for x, y in bar:
            with autocast(cfg, device):
                out = model(x)
            ce, pred = classification_loss(out.logits, y, cfg.loss_last_k, cfg.smoothing())
            loss = ce + regularization(out, reg_w)
            gnorm = optimizer_step(ses, loss, f"epoch {epoch + 1}, step {step + 1}")
            step += 1
            acc = float((pred == y).float().mean())
            run_loss, run_acc, seen = run_loss + loss.item(), run_acc + acc, seen + 1
            bar.set_postfix(loss=f"{run_loss / seen:.3f}", acc=f"{run_acc / seen:.3f}", data=timer.postfix())
            pace.step(step, epoch + 1, cfg.epochs, run_loss / seen)
            record_engines(ses, pace)
            if step % cfg.log_every == 0:
                row = {"kind": "train", "epoch": epoch + 1, "step": step, "loss": run_loss / seen,
                       "acc": run_acc / seen, "ce": ce.item(), "grad_norm": float(gnorm),
                       "lr": sched.get_last_lr()[0]}
                row.update({f"reg_{k}": v.item() for k, v in out.regularizers.items()})
                run.append_metric(row)
        data = timer.describe()
        epoch += 1
        epochs_this_call += 1
        val = evaluate(model, _WithProgress(splits["valid"], f"valid {epoch}/{cfg.epochs}", progress), cfg, device)
        wall += time.perf_counter() - t0
        run.append_metric({"kind": "valid", "epoch": epoch, "step": step, "loss": val["loss"], "acc": val["acc"],
                           "train_loss": run_loss / max(seen, 1), "train_acc": run_acc / max(seen, 1),
                           "wall_s": wall})
        tqdm.write(f"{run.path.name}: epoch {epoch}/{cfg.epochs}: train loss {run_loss / max(seen, 1):.4f} "
                   f"acc {run_acc / max(seen, 1):.3f} | valid loss {val['loss']:.4f} acc {val['acc']:.3f} | "
                   f"{data} | {time.perf_counter() - t0:.1f} s")
        if val["acc"] > best["acc"]:
            best = {"acc": val["acc"], "epoch": epoch}
            save_torch({"model": copy.deepcopy(model.state_dict()), "epoch": epoch, "valid_acc": val["acc"]}, run.best)
        save_checkpoint(ses, epoch=epoch, step=step, wall_s=wall, best=best)

    t_final = time.perf_counter()
    best_state = load_checkpoint(run.best, device)
    model.load_state_dict(best_state["model"])
    final_val = evaluate(model, _WithProgress(splits["valid"], "final valid", progress), cfg, device)
    final_test = evaluate(model, _WithProgress(splits["test"], "final test", progress), cfg, device)
    final_s = time.perf_counter() - t_final
    wall += final_s  # summary.json's wall_s includes the final evaluation
    tqdm.write(f"{run.path.name}: final (best epoch {best['epoch']}): valid loss {final_val['loss']:.4f} "
               f"acc {final_val['acc']:.3f} | "
               f"test loss {final_test['loss']:.4f} acc {final_test['acc']:.3f} | evaluation {final_s:.1f} s, "
               f"wall {wall:.1f} s")
    summary = {
        "status": "completed", "task": cfg.task, "family": conf["model"]["family"], "seed": cfg.seed,
        "n": budget.n, "k_e": budget.k_e, "k_c": budget.k_c, "p": budget.p,
        "d_m": getattr(mcfg, "d_m", None), "epochs": epoch, "steps": step, "best_epoch": best["epoch"],
        "valid_acc": final_val["acc"], "valid_loss": final_val["loss"],
        "test_acc": final_test["acc"], "test_loss": final_test["loss"], "wall_s": wall,
        "device": str(device),
    }
    run.append_metric({"kind": "final", **{k: summary[k] for k in ("valid_acc", "valid_loss", "test_acc", "test_loss")}})
    run.write_summary(summary)
    return summary

