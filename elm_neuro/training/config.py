"""Training configuration: every setting of a run, seeds included, serialised to config.json.

Every default value comes from :mod:`elm_neuro.defaults`: the field defaults are small enough
for a CPU, and the named recipes there (``paper-<task>``: docs/design.md §7 SHD-Adding / docs/design.md §8 Enwik8;
``small-<task>``: what the CLI uses without ``--paper``; ``demo``) are sets of fields.
:func:`make_train_config` builds a configuration from a task, a recipe and explicit fields (the
CLI's ``train`` / ``compare`` / ``sweep`` go through it). The model is described by its family
(``elm``, ``lif``, ``adlif``, ``lstm``...), a preset name (default: ``<family>-<task>`` when
registered, the task name for ELM) and field overrides; ``params`` sizes the hidden layer to a
budget with the N solver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from elm_neuro import defaults as D
from elm_neuro.networks.checks import ConfigMixin

TASKS = ("shd-adding", "shd", "enwik8")
TOKENIZATIONS = ("paper", "bytes")
OPTIMIZERS = ("adamax", "adam", "adamw", "sgd")
AMP_MODES = ("none", "bf16")

# Regulariser weights by model family (docs/design.md §7 for ELM; L1 spike penalty for spiking nets).
DEFAULT_REG_WEIGHTS = D.REG_WEIGHTS
ENWIK8_REG_WEIGHTS = D.LM_REG_WEIGHTS


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


@dataclass
class TrainConfig(ConfigMixin):
    task: str = D.TASK
    model: str = D.MODEL
    preset: Optional[str] = None
    model_overrides: dict = field(default_factory=dict)
    params: Optional[int] = None
    data_dir: Optional[str] = None
    # schedule
    epochs: int = D.EPOCHS
    batches_per_epoch: int = D.BATCHES_PER_EPOCH
    batch_size: int = D.BATCH_SIZE
    valid_batches: int = D.VALID_BATCHES
    test_batches: int = D.TEST_BATCHES
    # SHD binning (docs/design.md §6 uses 2 ms, 1 s per digit, 700 channels)
    bin_ms: float = D.BIN_MS
    digit_window_s: float = D.DIGIT_WINDOW_S
    channel_factor: int = D.CHANNEL_FACTOR
    # optimisation
    optimizer: str = D.OPTIMIZER
    lr: float = D.LR
    warmup: int = D.WARMUP
    total_steps: Optional[int] = None  # None: epochs * batches_per_epoch
    clip: float = D.CLIP
    label_smoothing: Optional[float] = None  # None: the task's (docs/design.md §7: 0.01, docs/design.md §8: 1e-4)
    reg_weights: Optional[dict] = None  # None: DEFAULT_REG_WEIGHTS[model]
    loss_last_k: int = D.LOSS_LAST_K
    # language modelling (docs/design.md §8)
    chunk_len: int = D.CHUNK_LEN
    reset_start: float = D.RESET_START
    reset_end: float = D.RESET_END
    reset_steps: int = D.RESET_STEPS
    eval_tokens: int = D.EVAL_TOKENS  # validation prefix length during training
    tokenization: str = D.TOKENIZATION
    corpus_bytes: Optional[int] = None  # size of the built-in text corpus (data_dir None); None: 3 MB
    # bookkeeping
    seed: int = D.SEED
    # seed of the model's initial weights and connectome; None: the run seed (unless the model
    # overrides give `seed`), so that the seeds of a comparison or sweep are independent networks
    model_seed: Optional[int] = None
    device: str = D.DEVICE
    amp: str = D.AMP
    log_every: int = D.LOG_EVERY
    # torch threads of this training process; None: automatic (one per physical core alone, one per
    # worker side by side; see elm_neuro.training.runtime). A runtime setting: the run's config.json
    # records the count actually used under "runtime".
    threads: Optional[int] = D.THREADS

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.tokenization not in TOKENIZATIONS:
            raise ValueError(f"tokenization must be one of {TOKENIZATIONS}, got {self.tokenization!r}")
        for name in ("epochs", "batches_per_epoch", "batch_size", "valid_batches", "test_batches",
                     "channel_factor", "loss_last_k", "chunk_len", "log_every", "eval_tokens", "reset_steps"):
            _int_at_least(name, getattr(self, name), 1)
        _int_at_least("warmup", self.warmup, 0)
        for name, lo in (("total_steps", 1), ("params", 1), ("corpus_bytes", 1000)):
            if getattr(self, name) is not None:
                _int_at_least(name, getattr(self, name), lo)
        for name in ("lr", "bin_ms", "digit_window_s", "clip"):
            v = getattr(self, name)
            if not _is_number(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if self.label_smoothing is not None and not (_is_number(self.label_smoothing) and 0.0 <= self.label_smoothing < 1.0):
            raise ValueError(f"label_smoothing must lie in [0, 1) or be None, got {self.label_smoothing!r}")
        for name in ("reset_start", "reset_end"):
            v = getattr(self, name)
            if not (_is_number(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
        if self.device not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.threads is not None:
            _int_at_least("threads", self.threads, 1)
        if self.model_seed is not None and (isinstance(self.model_seed, bool) or not isinstance(self.model_seed, int)
                                            or self.model_seed < 0):
            raise ValueError(f"model_seed must be an integer >= 0 or None, got {self.model_seed!r}")

    def smoothing(self) -> float:
        """Label smoothing: the configured value, else the task's (docs/design.md §7: 0.01; §8: 1e-4)."""
        if self.label_smoothing is not None:
            return float(self.label_smoothing)
        return D.LM_LABEL_SMOOTHING if self.task == "enwik8" else D.SHD_LABEL_SMOOTHING

    @property
    def model_bin_ms(self) -> Optional[float]:
        """The bin width the model's time step stands for, as the trainers pass it to
        :func:`elm_neuro.training.model_setup.train_model_config`: ``bin_ms`` for the SHD
        tasks; None for Enwik8 (a step is a token, so spiking families keep ``dt = 1``)."""
        return None if self.task == "enwik8" else self.bin_ms

    @property
    def resolved_model_seed(self) -> int:
        """The seed of the model's initial weights and connectome: ``model_seed`` when given,
        else a ``seed`` in ``model_overrides``, else the run seed (docs/design.md §7: a run's seed fixes the
        initial weights and the connectome as well as data order and dropout)."""
        if self.model_seed is not None:
            return self.model_seed
        return int(self.model_overrides.get("seed", self.seed))

    @property
    def steps_total(self) -> int:
        return self.total_steps if self.total_steps is not None else self.epochs * self.batches_per_epoch

    def regularizer_weights(self) -> dict:
        if self.reg_weights is not None:
            return dict(self.reg_weights)
        if self.task == "enwik8" and self.model in ENWIK8_REG_WEIGHTS:
            return dict(ENWIK8_REG_WEIGHTS[self.model])
        return dict(DEFAULT_REG_WEIGHTS.get(self.model, {}))


def paper_defaults(task: str) -> dict:
    """The paper's training recipe (docs/design.md §7 / §8) as TrainConfig fields: ``defaults.recipe("paper-<task>")``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return D.recipe(f"paper-{task}")


def make_train_config(task: str, paper: bool = False, **fields) -> TrainConfig:
    """A TrainConfig for ``task``: the recipe (``paper-<task>`` when ``paper``, else
    ``small-<task>``), then ``fields`` on top, as given (None included: e.g.
    ``total_steps=None`` undoes the paper recipe's fixed step count).

    Without ``paper``, Enwik8 anneals the state reset over ``1 / SMALL_RESET_SHARE`` of the run
    (``epochs * batches_per_epoch`` steps) unless ``reset_steps`` is given, so that a short run
    also trains with carried state, as it is evaluated (the paper's 40000 steps are for 300K).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    merged = D.recipe(f"{'paper' if paper else 'small'}-{task}")
    merged.update(fields)
    if task == "enwik8" and not paper and "reset_steps" not in merged:
        steps = merged.get("epochs", D.EPOCHS) * merged.get("batches_per_epoch", D.BATCHES_PER_EPOCH)
        merged["reset_steps"] = max(1, steps // D.SMALL_RESET_SHARE)
    merged["task"] = task
    return TrainConfig.from_dict(merged)
