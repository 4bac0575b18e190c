"""Learning-rate schedule of docs/design.md §7-8: linear warmup from 0, then cosine decay to 0.

    lr(s) = peak * s / warmup                                   for s < warmup
    lr(s) = peak * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))   for warmup <= s < total
    lr(s) = 0                                                   for s >= total

``s`` counts optimiser steps from 0 (the first update uses ``lr(0)``, which is 0 for a real
warmup, as in the paper's linear ramp from 0). ``total`` includes the warmup. A warmup longer
than the whole run (short test runs) is shortened to ``total``.
"""
from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step``."""
    if total <= 0:
        raise ValueError(f"total_steps must be > 0, got {total}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    warmup = min(warmup, total)
    if step < warmup:
        return step / warmup
    if step >= total:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup_cosine_factor(0, warmup, total)  # validate now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, warmup, total))
