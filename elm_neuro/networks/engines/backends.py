"""Which backend of a fused engine runs on a device: the one choice every engine makes the same way.

``pick(device, cpu, cuda, names, reference)``: on the CPU the functions ``names`` of the Numba
module ``cpu`` (imported, so compiled, on first use); on CUDA those of the Triton module ``cuda``
where Triton imports; on any other device, or CUDA without Triton, ``reference`` (the plain
PyTorch implementation of the same contract).
"""
from __future__ import annotations

import importlib

import torch


def pick(device: torch.device, cpu: str, cuda: str, names: tuple, reference: tuple) -> tuple:
    if device.type == "cpu":
        module = importlib.import_module(cpu)
    elif device.type == "cuda":
        try:
            module = importlib.import_module(cuda)
        except ImportError:
            return reference
    else:
        return reference
    return tuple(getattr(module, n) for n in names)
