"""Pieces shared by the classification and language-modelling trainers: device choice,
seeding and RNG state capture (for exact resume), optimiser construction, autocast, the
weighted sum of a model's regularisers, divergence, gradient clipping to the exact global norm,
and opening / resuming a run directory with its checkpoints.

config.json holds, next to ``train`` (the TrainConfig) and ``model`` (the resolved model
configuration), ``data`` (what the data is: real, synthetic, built-in corpus;
:func:`elm_neuro.data.provenance.data_provenance`), ``timescales`` (every configured timescale
range in steps and in ms, :func:`elm_neuro.training.runtime.timescale_section`) and ``runtime``
(the torch thread count actually used, the rule that chose it, torch's version; rewritten by every
session, so after a resume it describes the latest one; :mod:`elm_neuro.training.runtime`).
"""
from __future__ import annotations

import math
import random
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch

from elm_neuro.networks.registry import family_of
from elm_neuro.atomic import save_json, save_torch
from elm_neuro.data.provenance import data_files, data_provenance
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.run import RunDir, build_from_config, load_checkpoint, to_plain
from elm_neuro.training.runtime import engine_section, engine_text, runtime_section, timescale_section
from elm_neuro.training.schedule import warmup_cosine


#: What to do about a run that diverged after updates (the CLI appends it to the message).
LR_HINT = "lower --lr or keep a warmup"


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; the last good checkpoint was kept.

    ``updates``: optimiser updates with a non-zero learning rate made before the failure (0: the
    model is still at its initialisation, so the model or the data is at fault and the
    learning rate is not; None: unknown). ``hint``: advice for the user, or None; by default
    :data:`LR_HINT` unless ``updates == 0`` (the CLI appends it in parentheses).
    """

    def __init__(self, message: str, updates: Optional[int] = None, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.updates = updates
        self.hint = hint if hint is not None else (None if updates == 0 else LR_HINT)

    def __reduce__(self):  # keep updates and hint across processes (compare / sweep workers)
        return type(self), (self.args[0] if self.args else "", self.updates, self.hint)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_states() -> dict:
    """Every global RNG state as tensors and plain numbers (a checkpoint holds nothing else):
    torch's byte tensor, numpy's MT19937 key as an int64 tensor with its position and cached
    Gaussian, Python's ``random`` state as an int64 tensor, and the CUDA generators' byte tensors."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": {"bit_generator": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
                     "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
           "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                      "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _numpy_state(st):
    if isinstance(st, dict):  # this version: tensors and numbers
        return (st["bit_generator"], st["key"].cpu().numpy().astype(np.uint32), st["pos"], st["has_gauss"],
                st["cached_gaussian"])
    return st  # earlier versions: numpy's own tuple


def _python_state(st):
    if isinstance(st, dict):
        return st["version"], tuple(int(v) for v in st["state"].tolist()), st["gauss_next"]
    return st


def set_rng_states(st: dict) -> None:
    """Restore :func:`rng_states` (or the tuples of earlier checkpoints); RNG states are CPU
    tensors even when the checkpoint was loaded with ``map_location`` on a GPU."""
    torch.set_rng_state(st["torch"].cpu())
    np.random.set_state(_numpy_state(st["numpy"]))
    random.setstate(_python_state(st["python"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    opt = {"adamax": torch.optim.Adamax, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "sgd": torch.optim.SGD}[cfg.optimizer]
    return opt(params, lr=cfg.lr)


def autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def regularization(out, weights: dict) -> torch.Tensor:
    total = 0.0
    for name, w in weights.items():
        if name not in out.regularizers:
            raise ValueError(f"regularizer {name!r} is not produced by this model "
                             f"(it gives {sorted(out.regularizers)})")
        total = total + w * out.regularizers[name]
    return total


# --------------------------------------------------------------------------- run set-up and checkpoints
class Session(NamedTuple):
    """Everything a trainer needs once a run is open; ``checkpoint`` is the loaded dict on resume."""

    run: RunDir
    cfg: TrainConfig
    conf: dict
    device: torch.device
    model: torch.nn.Module
    model_config: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    checkpoint: Optional[dict]


def open_run(run_dir, cfg: Optional[TrainConfig], resume: bool) -> tuple[RunDir, TrainConfig, Optional[dict]]:
    """Check that ``run_dir`` can be started (new) or resumed; returns ``(run, cfg, conf)``.

    On resume the configuration comes from the run's config.json (``conf``); for a new run
    ``conf`` is None until :func:`start_run` writes it.
    """
    run = RunDir(run_dir)
    if resume:
        conf = run.read_config()
        if not run.checkpoint.is_file():
            raise FileNotFoundError(f"{run.checkpoint} not found: nothing to resume in {run.path}")
        return run, TrainConfig.from_dict(conf["train"]), conf
    if cfg is None:
        raise ValueError("cfg is required for a new run")
    if run.checkpoint.exists() or run.summary.exists():
        raise ValueError(f"{run.path} already holds a run; use resume=True (--resume) or another --out")
    return run, cfg, None


def start_run(run: RunDir, cfg: TrainConfig, model_config, extra_json: Optional[dict] = None) -> dict:
    """Write config.json (train fields with the data location as an absolute path, the resolved
    model configuration, the data's provenance with its files' absolute paths, sizes and sha256,
    and the model's timescales in steps and ms) and any extra JSON files."""
    train = cfg.to_dict()
    if cfg.data_dir is not None:
        train["data_dir"] = str(Path(cfg.data_dir).expanduser().resolve())
    try:
        files = data_files(cfg.task, cfg.data_dir)
    except (OSError, ValueError):  # data given in memory (tests): nothing to record
        files = None
    conf = {"train": train, "model": {"family": family_of(model_config), "config": model_config.to_dict()},
            "data": {**data_provenance(cfg.task, cfg.data_dir), "files": files},
            "timescales": timescale_section(model_config, cfg.model_bin_ms)}
    run.path.mkdir(parents=True, exist_ok=True)
    save_json(conf, run.config)
    for name, obj in (extra_json or {}).items():
        save_json(obj, run.path / name)
    run.truncate_metrics(0)
    return conf


def build_session(run: RunDir, cfg: TrainConfig, conf: dict, resume: bool) -> Session:
    """Threads, device (TF32 off on CUDA), seeds, model, optimiser and schedule; on resume the
    checkpoint's weights, optimiser / scheduler / RNG states are loaded and metric lines written
    after it dropped. The thread count used is recorded in config.json's ``runtime``."""
    device = pick_device(cfg.device)
    conf["runtime"] = runtime_section(cfg.threads, device)
    save_json(conf, run.config)
    if device.type == "cuda":  # full fp32 matmuls, for reproducible runs and resumes
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    seed_everything(cfg.seed)
    model, mcfg = build_from_config(conf["model"])
    model.to(device)
    opt = make_optimizer(cfg, model.parameters())
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps_total)
    ck = None
    if resume:
        ck = load_checkpoint(run.checkpoint, device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        set_rng_states(ck["rng"])
        run.truncate_metrics(ck["metric_lines"])
    return Session(run, cfg, conf, device, model, mcfg, opt, sched, ck)


def record_engines(s: Session, pace) -> None:
    """After a training step: the engine and backend each layer ran
    (:func:`~elm_neuro.training.runtime.engine_section`) into config.json's ``runtime`` and onto
    the pace's engines line (:meth:`~elm_neuro.training.pace.Pace.engines`), when it changed."""
    section = engine_section(s.model)
    runtime = s.conf.setdefault("runtime", {})
    if all(runtime.get(k) == v for k, v in section.items()):
        return
    runtime.update(section)
    save_json(s.conf, s.run.config)
    pace.engines(engine_text(section))


def save_checkpoint(s: Session, **fields) -> None:
    """Atomic checkpoint: weights, optimiser, scheduler, RNG states, metric-line count and ``fields``,
    as tensors and plain data (named-tuple states through :func:`~elm_neuro.training.run.to_plain`)."""
    save_torch({"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict(), "rng": rng_states(),
                "metric_lines": len(s.run.read_metrics()), **to_plain(fields)}, s.run.checkpoint)


def _grouped_grads(parameters) -> dict:
    """The gradients of ``parameters`` (those that have one) grouped by (device, dtype)."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    groups: dict = {}
    for p in parameters:
        if p.grad is not None:
            g = p.grad
            if g.is_sparse:
                raise ValueError("parameters: sparse gradients are not supported by clip_grad_norm_exact")
            groups.setdefault((g.device, g.dtype), []).append(g)
    return groups


def clip_grad_norm_exact(parameters, max_norm: float) -> torch.Tensor:
    """Clip to the exact global norm (docs/design.md §7): when the L2 norm ``g`` of all gradients together
    exceeds ``max_norm``, multiply every gradient by ``max_norm / g``, so that the global norm is
    then ``max_norm`` up to rounding (``torch.nn.utils.clip_grad_norm_`` divides by ``g + 1e-6``
    instead); otherwise the gradients stay as they are, bit for bit.

    Parameters without a gradient are skipped (no gradient at all: norm 0). The norms are taken
    per (device, dtype) group with ``torch._foreach_norm`` where available, combined in the
    widest floating dtype present, and the scaling is done in place on each gradient's own device
    (``torch._foreach_mul_`` where available). A non-finite norm (NaN / inf gradients) leaves the
    gradients untouched and is returned as it is, for the caller to stop on. Returns the global
    norm before clipping (a 0-d tensor).
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not math.isfinite(max_norm) \
            or max_norm <= 0:
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm!r}")
    groups = _grouped_grads(parameters)
    if not groups:
        return torch.tensor(0.0)
    dtypes = [dt for _, dt in groups]
    total_dtype = torch.float64 if torch.float64 in dtypes else torch.float32
    first_device = next(iter(groups))[0]
    norms = []
    for (device, _), grads in groups.items():
        if hasattr(torch, "_foreach_norm"):
            group_norms = torch._foreach_norm(grads, 2.0)
        else:  # pragma: no cover - older torch
            group_norms = [torch.linalg.vector_norm(g) for g in grads]
        norms += [n.to(device=first_device, dtype=total_dtype) for n in group_norms]
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    g = float(total)
    if not math.isfinite(g) or g <= max_norm:
        return total
    coef = max_norm / g
    for (device, dtype), grads in groups.items():
        if hasattr(torch, "_foreach_mul_"):
            torch._foreach_mul_(grads, coef)
        else:  # pragma: no cover - older torch
            for gr in grads:
                gr.mul_(coef)
    return total


def updates_made(s: Session) -> int:
    """Optimiser updates made so far with a non-zero learning rate (in this session and, after a
    resume, before it): the scheduler's step count, less the steps its factor was 0 at (the
    first step of a warmup from 0) for a ``LambdaLR``."""
    done = int(getattr(s.scheduler, "last_epoch", 0))
    lambdas = getattr(s.scheduler, "lr_lambdas", None)
    if not lambdas:
        return done
    bases = getattr(s.scheduler, "base_lrs", [1.0] * len(lambdas))
    return sum(1 for k in range(done) if any(f(k) * base > 0 for f, base in zip(lambdas, bases)))


def _family(s: Session) -> str:
    conf = getattr(s, "conf", None) or {}
    return str(conf.get("model", {}).get("family", type(s.model).__name__))


def _non_finite_grads(model: torch.nn.Module, limit: int = 3) -> str:
    """``"hidden.a, hidden.b (+2 more)"``: parameters whose gradient has a NaN / inf entry."""
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    return ", ".join(bad[:limit]) + (f" (+{len(bad) - limit} more)" if len(bad) > limit else "")


def diverged(s: Session, what: str, where: str) -> TrainingDiverged:
    """The :class:`TrainingDiverged` for a non-finite ``what`` (``"loss (nan)"``, ``"gradient norm
    (inf)"``) at ``where``: before any update it names the model family and says that its
    initialisation or the data is at fault (and which parameters' gradients are non-finite); after
    updates it counts them and carries :data:`LR_HINT`."""
    kept = (f"The last good checkpoint is kept at {s.run.checkpoint}"
            + ("" if s.run.checkpoint.exists() else " (none written yet: a new run leaves nothing behind)"))
    n = updates_made(s)
    grads = what.startswith("gradient")
    bad = _non_finite_grads(s.model) if grads else ""
    on = f" of {bad}" if bad else ""
    if n == 0:
        gives = f"a finite loss but non-finite gradients{on}" if grads else "a non-finite training loss"
        return TrainingDiverged(f"non-finite {what} at {where} before any update; stopped: the {_family(s)} model "
                                f"at its initialisation gives {gives} on this batch, so its initial dynamics (or the "
                                f"data) are at fault, not the learning rate. {kept}", updates=0)
    after = f"after {n} update{'s' if n != 1 else ''} of the {_family(s)} model"
    detail = f" (the loss was finite; non-finite gradients{on})" if grads else ""
    return TrainingDiverged(f"non-finite {what} at {where} {after}{detail}; stopped before the update. {kept}",
                            updates=n)


def optimizer_step(s: Session, loss: torch.Tensor, where: str) -> float:
    """Check the loss, back-propagate, clip the global gradient norm to exactly ``cfg.clip``
    (:func:`clip_grad_norm_exact`), step optimiser and schedule.

    A NaN / infinite loss, or finite loss with NaN / infinite gradients, raises
    :class:`TrainingDiverged` before any update (``where`` says at which epoch / step; the
    message says what is unstable, :func:`diverged`); the last good checkpoint stays as it is.
    Returns the gradient norm before clipping.
    """
    if not torch.isfinite(loss):
        raise diverged(s, f"loss ({loss.item()})", where)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = float(clip_grad_norm_exact(s.model.parameters(), s.cfg.clip))
    if not math.isfinite(gnorm):
        raise diverged(s, f"gradient norm ({gnorm})", where)
    s.optimizer.step()
    s.scheduler.step()
    return gnorm
