"""Pieces shared by the classification and language-modelling trainers: device choice,
seeding and RNG state capture (for exact resume), optimiser construction, autocast, the
weighted sum of a model's regularisers, and divergence detection.
"""
from __future__ import annotations

import random
from contextlib import nullcontext

import numpy as np
import torch

from elm_neuro.training.config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_states() -> dict:
    out = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


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
