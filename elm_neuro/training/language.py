"""Character-level language modelling (Enwik8, docs/design.md §8) with truncated BPTT.

The token stream is cut into ``batch_size`` contiguous rows and read in chunks of
``chunk_len`` (100) steps (:mod:`elm_neuro.data.streams`). The network state is carried from
chunk to chunk without gradient; before each training step every row's carried state is reset
with a probability annealed by a cosine from 1.0 to 0.01 over 40000 steps (all rows at the start
of the stream). Loss: cross-entropy at every step with label smoothing 1e-4 plus the model's
regularisers (ELM: 0.01 L_mlp + 1.0 L_act). Adam 5e-4 with warmup and cosine decay, clipping 1.0
(``--paper``); the small defaults are for CPU.

Training runs ``TrainConfig.steps_total`` optimiser steps (``total_steps`` when given, else
``epochs x batches_per_epoch``). One "epoch" here is ``batches_per_epoch`` steps: a reporting
period (the last one may be shorter) after which the
model is validated on a fixed prefix of the validation stream (``eval_tokens``), a checkpoint is
written atomically (with the carried state, so a resumed run continues exactly on the CPU; on
a GPU up to the non-determinism of atomic adds) and the weights
are copied when the validation bits per character are strictly lower. At the end the best
weights are evaluated on the full validation and test streams with carried state, no resets.

``data_dir`` is the enwik8 file, its zip, or a folder holding either; None uses the embedded
standard-library text corpus (:mod:`elm_neuro.data.text_corpus`) of ``TrainConfig.corpus_bytes``
bytes (None: the corpus default, 3 MB). The vocabulary (token id
-> byte) and the tokenisation of the tokens trained on are stored as ``vocab.json`` in the run
directory for ``elm-neuro sample`` (:mod:`elm_neuro.training.sampling`); a resumed run must be
given tokens with the same vocabulary.

Progress, as for classification (:mod:`elm_neuro.training.classification`): the training bar
shows the data time (getting the next chunk and moving it to the device, per step and as a share
of the step), the validation and final evaluations have their own bars, one line per epoch and
one for the final evaluation are printed even with ``progress=False``, and summary.json's
``wall_s`` includes the final evaluation.

Before the first step the three splits are checked to fill ``batch_size`` rows (training: one
chunk of ``chunk_len`` per row; validation prefix, validation and test: two tokens per row), so
a split too short for the batch size fails at once rather than after training.
"""
from __future__ import annotations

import copy
import json
import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from elm_neuro.data.enwik8 import load_enwik8_tokens
from elm_neuro.data.streams import (TrainStream, bits_per_character, iter_eval_chunks, reset_mask, stream_rows)
from elm_neuro.data.text_corpus import DEFAULT_CORPUS_BYTES
from elm_neuro.atomic import save_torch
from elm_neuro.training.classification import DataTimer
from elm_neuro.training.common import (autocast, build_session, open_run, optimizer_step, regularization,
                                       record_engines, save_checkpoint, start_run)
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.model_setup import run_model_config
from elm_neuro.training.pace import Pace
from elm_neuro.training.run import RunDir, load_checkpoint


def map_state(state, fn):
    """Apply ``fn`` to every tensor of a nested (named) tuple state; None stays None."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple):
        vals = [map_state(s, fn) for s in state]
        return type(state)(*vals) if hasattr(state, "_fields") else tuple(vals)
    return state


def reset_rows(state, mask: torch.Tensor):
    """Zero the carried state of the rows where ``mask`` is True (batch-first tensors)."""
    if state is None:
        return None

    def fn(t):
        m = mask.to(t.device).view(-1, *([1] * (t.dim() - 1)))
        return torch.where(m, torch.zeros_like(t), t)

    return map_state(state, fn)


def load_tokens(cfg: TrainConfig):
    """The token splits of ``cfg``: enwik8 at ``data_dir``, or the built-in corpus when it is None."""
    corpus_bytes = cfg.corpus_bytes or DEFAULT_CORPUS_BYTES
    return load_enwik8_tokens(cfg.data_dir, tokenization=cfg.tokenization, corpus_bytes=corpus_bytes)


@torch.no_grad()
def stream_bpc(model, tokens, batch_size: int, chunk_len: int, device=None, cfg: TrainConfig | None = None,
               progress: bool = False, desc: str = "eval") -> dict:
    """Bits per character over a whole stream with carried state (no resets).

    ``tokens`` is cut into ``batch_size`` contiguous rows read in chunks of ``chunk_len``
    (:func:`elm_neuro.data.streams.iter_eval_chunks`); every token of a row but its first is
    predicted once. Returns ``{"bpc", "loss" (mean nats), "n" (predictions)}``. ``device``
    defaults to the model's; ``cfg`` only selects autocast (None: full precision); ``progress``
    shows a tqdm bar (``desc``) over the chunks.
    """
    if device is None:
        device = next(iter(model.parameters())).device
    if cfg is None:
        cfg = TrainConfig(task="enwik8")
    model.eval()
    state, nats, count = None, 0.0, 0
    n_chunks = None  # the bar's total; bad sizes are reported by iter_eval_chunks itself
    if isinstance(batch_size, int) and isinstance(chunk_len, int) and batch_size > 0 and chunk_len > 0:
        n_chunks = max(-(-(len(tokens) // batch_size - 1) // chunk_len), 0)
    for ch in tqdm(iter_eval_chunks(tokens, batch_size, chunk_len), total=n_chunks, desc=desc, leave=False,
                   disable=not progress):
        x, y = ch.x.to(device), ch.y.to(device)
        with autocast(cfg, device):
            out = model(x, state)
        state = out.state
        nats += float(F.cross_entropy(out.logits.float().reshape(-1, out.logits.shape[-1]), y.reshape(-1),
                                      reduction="sum"))
        count += y.numel()
    return {"bpc": bits_per_character(nats, count), "loss": nats / count, "n": count}


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _check_splits(tokens, cfg: TrainConfig) -> None:
    """Fail before training when a split cannot fill ``batch_size`` rows (see module docstring)."""
    b = cfg.batch_size
    row = len(tokens.train) // b
    if row - 1 < cfg.chunk_len:
        raise ValueError(f"batch_size: the training split ({len(tokens.train)} tokens) cut into {b} rows gives rows of "
                         f"{row} tokens, too short for one chunk of chunk_len={cfg.chunk_len}; lower batch_size "
                         f"or chunk_len, or use more data")
    for name, arr in (("validation prefix (eval_tokens + 1)", tokens.valid[: cfg.eval_tokens + 1]),
                      ("validation split", tokens.valid), ("test split", tokens.test)):
        try:
            stream_rows(arr, b)
        except ValueError:
            raise ValueError(f"batch_size: the {name} has {len(arr)} tokens, fewer than 2 per row for "
                             f"batch_size={b}; lower batch_size or use more data") from None


def _check_vocab(run: RunDir, tokens) -> None:
    """A resumed run must see the vocabulary it was started with."""
    path = run.path / "vocab.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run.path} is not a language-model run")
    stored = json.loads(path.read_text())["vocab"]
    if [int(b) for b in tokens.vocab] != [int(b) for b in stored]:
        raise ValueError(f"tokens: vocabulary of {tokens.vocab_size} symbols differs from the run's vocab.json "
                         f"({len(stored)} symbols); resume with the data the run was started on")


def train_language_model(run_dir, cfg: TrainConfig | None = None, resume: bool = False, tokens=None,
                         stop_after_epochs: int | None = None, progress: bool = True) -> dict | None:
    """Train (or resume) a language model in ``run_dir``; returns the summary."""
    run, cfg, conf = open_run(run_dir, cfg, resume)
    if tokens is None:
        tokens = load_tokens(cfg)
    _check_splits(tokens, cfg)
    if resume:
        _check_vocab(run, tokens)
    if conf is None:
        v = tokens.vocab_size
        mcfg = run_model_config(cfg, v, v)
        vocab = {"vocab": [int(b) for b in tokens.vocab],
                 "tokenization": getattr(tokens, "tokenization", cfg.tokenization)}
        conf = start_run(run, cfg, mcfg, {"vocab.json": vocab})
    ses = build_session(run, cfg, conf, resume)
    model, sched, device, mcfg = ses.model, ses.scheduler, ses.device, ses.model_config
    reg_w = cfg.regularizer_weights()
    step, wall, state = 0, 0.0, None
    best = {"bpc": math.inf, "epoch": -1}
    if ses.checkpoint is not None:
        ck = ses.checkpoint
        step, wall, best, state = ck["step"], ck["wall_s"], ck["best"], ck["carried_state"]
    stream = TrainStream(tokens.train, cfg.batch_size, cfg.chunk_len, start_step=step)
    valid_prefix = tokens.valid[: cfg.eval_tokens + 1]
    total = cfg.steps_total  # total_steps when given, else epochs x batches_per_epoch
    periods = -(-total // cfg.batches_per_epoch)
    epochs_this_call = 0
    pace = Pace(run.path.name, total, done=step, progress=progress)
    while step < total:
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            return None
        t0 = time.perf_counter()
        model.train()
        epoch = step // cfg.batches_per_epoch
        bar = tqdm(range(min(cfg.batches_per_epoch, total - step)), disable=not progress, leave=False,
                   desc=f"epoch {epoch + 1}/{periods}")
        run_loss, seen = 0.0, 0
        timer = DataTimer()
        for _ in bar:
            with timer.fetch():
                ch = next(stream)
                x, y = ch.x.to(device), ch.y.to(device)
            if ch.start_of_stream or state is None:
                state = None
            else:
                p_mask = reset_mask(x.shape[0], step, _step_generator(cfg.seed, step), cfg.reset_start,
                                    cfg.reset_end, cfg.reset_steps)
                state = reset_rows(state, p_mask)
            with autocast(cfg, device):
                out = model(x, state)
            ce = F.cross_entropy(out.logits.float().reshape(-1, out.logits.shape[-1]), y.reshape(-1),
                                 label_smoothing=cfg.smoothing())
            loss = ce + regularization(out, reg_w)
            gnorm = optimizer_step(ses, loss, f"step {step + 1}")
            state = map_state(out.state, torch.Tensor.detach)
            step += 1
            run_loss, seen = run_loss + ce.item(), seen + 1
            bar.set_postfix(bpc=f"{run_loss / seen / math.log(2):.3f}", data=timer.postfix())
            pace.step(step, epoch + 1, periods, run_loss / seen / math.log(2), unit="bpc")
            record_engines(ses, pace)
            if step % cfg.log_every == 0:
                run.append_metric({"kind": "train", "epoch": epoch + 1, "step": step, "loss": run_loss / seen,
                                   "bpc": run_loss / seen / math.log(2), "grad_norm": float(gnorm),
                                   "lr": sched.get_last_lr()[0]})
        data = timer.describe()
        epochs_this_call += 1
        val = stream_bpc(model, valid_prefix, cfg.batch_size, cfg.chunk_len, device, cfg, progress=progress,
                         desc=f"valid {epoch + 1}/{periods}")
        wall += time.perf_counter() - t0
        run.append_metric({"kind": "valid", "epoch": epoch + 1, "step": step, "bpc": val["bpc"], "loss": val["loss"],
                           "train_bpc": run_loss / max(seen, 1) / math.log(2), "wall_s": wall})
        tqdm.write(f"{run.path.name}: epoch {epoch + 1}/{periods}: "
                   f"train bpc {run_loss / max(seen, 1) / math.log(2):.4f} | "
                   f"valid-prefix bpc {val['bpc']:.4f} | {data} | {time.perf_counter() - t0:.1f} s")
        if val["bpc"] < best["bpc"]:
            best = {"bpc": val["bpc"], "epoch": epoch + 1}
            save_torch({"model": copy.deepcopy(model.state_dict()), "epoch": epoch + 1, "valid_bpc": val["bpc"]},
                       run.best)
        save_checkpoint(ses, step=step, wall_s=wall, best=best, carried_state=state)

    t_final = time.perf_counter()
    model.load_state_dict(load_checkpoint(run.best, device)["model"])
    final_val = stream_bpc(model, tokens.valid, cfg.batch_size, cfg.chunk_len, device, cfg, progress=progress,
                           desc="final valid")
    final_test = stream_bpc(model, tokens.test, cfg.batch_size, cfg.chunk_len, device, cfg, progress=progress,
                            desc="final test")
    final_s = time.perf_counter() - t_final
    wall += final_s  # summary.json's wall_s includes the final evaluation
    tqdm.write(f"{run.path.name}: final (best epoch {best['epoch']}): valid bpc {final_val['bpc']:.4f} | test bpc "
               f"{final_test['bpc']:.4f} | evaluation {final_s:.1f} s, wall {wall:.1f} s")
    budget = mcfg.budget()
    summary = {
        "status": "completed", "task": cfg.task, "family": conf["model"]["family"], "seed": cfg.seed,
        "n": budget.n, "k_e": budget.k_e, "k_c": budget.k_c, "p": budget.p, "d_m": getattr(mcfg, "d_m", None),
        "epochs": periods, "steps": step, "best_epoch": best["epoch"],
        "valid_bpc": final_val["bpc"], "test_bpc": final_test["bpc"], "valid_loss": final_val["loss"],
        "test_loss": final_test["loss"], "valid_tokens": final_val["n"], "test_tokens": final_test["n"],
        "wall_s": wall, "device": str(device),
    }
    run.append_metric({"kind": "final", "valid_bpc": final_val["bpc"], "test_bpc": final_test["bpc"]})
    run.write_summary(summary)
    return summary
