"""Which backend of a fused engine runs on a device: the one choice every engine makes the same way.

A backend is a module implementing an engine's contract (the contract module's plain-PyTorch
``forward_torch`` / ``backward_torch`` are the reference): a ``forward`` and a ``backward`` function
(or other names, for engines with several kernels), ``TAKES``, the input types of
:mod:`elm_neuro.networks.engines.inputs` its forward accepts, and optionally ``list_events``, its
event lister. :func:`pick` returns it as a :class:`Backend`:

- on the CPU the Numba module ``cpu`` (imported, so compiled, on first use);
- on CUDA the Triton module ``cuda`` where Triton imports;
- on any other device, on CUDA without Triton, or where an engine has no module for the device
  (``None``), ``reference``.
"""
from __future__ import annotations

import importlib
from typing import Callable, NamedTuple, Optional

import torch


class Backend(NamedTuple):
    """One backend of an engine: its name, kernels, the input types it takes and its event lister."""

    name: str
    forward: Callable
    backward: Callable
    takes: tuple
    list_events: Optional[Callable] = None


def _load(module_name: str, names: tuple) -> Backend:
    module = importlib.import_module(module_name)
    return Backend(module_name.rpartition(".")[2], *(getattr(module, n) for n in names), tuple(module.TAKES),
                   getattr(module, "list_events", None))


def pick(device: torch.device, cpu: Optional[str], cuda: Optional[str], reference: Backend,
         names: tuple = ("forward", "backward")) -> Backend:
    """The backend of an engine for ``device`` (module docstring); ``names`` are the module's
    forward and backward functions."""
    if device.type == "cpu" and cpu is not None:
        return _load(cpu, names)
    if device.type == "cuda" and cuda is not None:
        try:
            return _load(cuda, names)
        except ImportError:
            return reference
    return reference
