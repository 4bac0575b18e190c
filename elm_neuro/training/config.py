"""Training configuration: every setting of a run, seeds included, serialised to config.json.

Defaults are small enough for a CPU; :func:`paper_defaults` gives the SPEC 7 (SHD-Adding) and
SPEC 8 (Enwik8) recipes. The model is described by its family (``elm``, ``lif``, ``adlif``,
``lstm``...), a preset name (default: ``<family>-<task>`` when registered, the task name for
ELM) and field overrides; ``params`` sizes the hidden layer to a budget with the N solver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from elm_neuro.networks.config_base import ConfigMixin

TASKS = ("shd-adding", "shd", "enwik8")
TOKENIZATIONS = ("paper", "bytes")
OPTIMIZERS = ("adamax", "adam", "adamw", "sgd")
AMP_MODES = ("none", "bf16")

# Regulariser weights by model family (SPEC 7 for ELM; L1 spike penalty 0.01 for spiking nets).
DEFAULT_REG_WEIGHTS = {
    "elm": {"mlp": 0.002, "act": 0.2},
    "lif": {"spike": 0.01},
    "adlif": {"spike": 0.01},
    "lstm": {},
}
ENWIK8_REG_WEIGHTS = {"elm": {"mlp": 0.01, "act": 1.0}}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


@dataclass
class TrainConfig(ConfigMixin):
    task: str = "shd-adding"
    model: str = "elm"
    preset: Optional[str] = None
    model_overrides: dict = field(default_factory=dict)
    params: Optional[int] = None
    data_dir: Optional[str] = None
    # schedule
    epochs: int = 3
    batches_per_epoch: int = 100
    batch_size: int = 8
    valid_batches: int = 25
    test_batches: int = 100
    # SHD binning (SPEC 6 uses 2 ms, 1 s per digit, 700 channels)
    bin_ms: float = 2.0
    digit_window_s: float = 1.0
    channel_factor: int = 1
    # optimisation
    optimizer: str = "adamax"
    lr: float = 5e-3
    warmup: int = 400
    total_steps: Optional[int] = None  # None: epochs * batches_per_epoch
    clip: float = 1.0
    label_smoothing: Optional[float] = None  # None: the task's (SPEC 7: 0.01, SPEC 8: 1e-4)
    reg_weights: Optional[dict] = None  # None: DEFAULT_REG_WEIGHTS[model]
    loss_last_k: int = 1
    # language modelling (SPEC 8)
    chunk_len: int = 100
    reset_start: float = 1.0
    reset_end: float = 0.01
    reset_steps: int = 40000
    eval_tokens: int = 20000  # validation prefix length during training
    tokenization: str = "paper"
    corpus_bytes: Optional[int] = None  # size of the built-in text corpus (data_dir None); None: 3 MB
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    log_every: int = 20

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

    def smoothing(self) -> float:
        """Label smoothing: the configured value, else the task's (SPEC 7: 0.01; SPEC 8: 1e-4)."""
        if self.label_smoothing is not None:
            return float(self.label_smoothing)
        return 1e-4 if self.task == "enwik8" else 0.01

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
    """The paper's training recipe (SPEC 7 / 8) as TrainConfig fields."""
    if task in ("shd-adding", "shd"):
        return dict(epochs=70, batches_per_epoch=2000, batch_size=8, valid_batches=500, test_batches=2000,
                    bin_ms=2.0, digit_window_s=1.0, channel_factor=1, optimizer="adamax", lr=5e-3,
                    warmup=400, total_steps=140000, clip=1.0, label_smoothing=0.01, loss_last_k=1)
    if task == "enwik8":
        return dict(epochs=300, batches_per_epoch=1000, optimizer="adam", lr=5e-4, warmup=100, total_steps=300000, clip=1.0,
                    label_smoothing=1e-4, chunk_len=100, reset_start=1.0, reset_end=0.01, reset_steps=40000)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
