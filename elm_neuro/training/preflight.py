"""Checks made before the first training step: a run that cannot work fails at once, before it
writes anything, with a message naming the setting at fault.

:func:`preflight` (used by :func:`elm_neuro.training.trainer.run_training`, and by ``compare`` and
``sweep`` for every cell before the first cell trains) checks, for a :class:`TrainConfig`:

- the device: ``cuda`` on a machine without a usable GPU is refused (:func:`check_device`);
- the data: the files the task reads exist (:func:`elm_neuro.data.provenance.data_paths`); for
  Enwik8 the tokens load (size rules of :mod:`elm_neuro.data.enwik8`, the built-in corpus's size);
- the model: its family, preset, overrides and budget resolve to a configuration
  (:func:`elm_neuro.training.model_setup.run_model_config`, with the data's input and class counts);
- memory: :func:`activation_bytes` estimates the activations one training step keeps for the
  backward pass, and a batch whose estimate exceeds the memory available on the device is refused
  with both figures (:func:`check_memory`).

The activation estimate comes from the configuration: the model is built on the CPU and run
forward (no backward) on a batch of 2 sequences of at most :data:`PROBE_STEPS` steps under
``torch.autograd.graph.saved_tensors_hooks``, which sees every tensor saved for the backward pass
(custom autograd Functions included). Storages are counted once, parameters not at all; the bytes
per sequence-step are then scaled to ``batch_size x steps``. Activations grow linearly in batch
and steps for every family, so this is the training step's activation memory up to the
constant part (weights, optimiser state, workspace), which it leaves out: the check refuses only
batches that certainly cannot fit.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from elm_neuro.data.binning import n_bins
from elm_neuro.data.provenance import data_paths
from elm_neuro.data.shd import N_CLASSES, N_UNITS
from elm_neuro.data.shd_adding import N_SUM_CLASSES
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.model_setup import run_model_config
from elm_neuro.training.run import build_from_config

#: Steps of the probe sequences (fewer when the run's sequences are shorter).
PROBE_STEPS = 16
PROBE_BATCH = 2
MEMINFO = Path("/proc/meminfo")


class Preflight(NamedTuple):
    device: torch.device
    model_config: object
    steps: int  # time steps of one training sequence
    activation_bytes: int  # estimated activations of one training step
    available_bytes: Optional[int]  # memory available on the device (None: unknown)


def check_device(name: str) -> torch.device:
    """``torch.device`` for ``auto`` / ``cpu`` / ``cuda[:i]``; ``ValueError`` naming ``--device``
    when CUDA is asked for and not usable here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"--device {name}: CUDA is not available on this machine ({why}, torch "
                             f"{torch.__version__}); use --device cpu or --device auto")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return dev
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu or cuda[:i], got {name!r}") from None


def sequence_steps(cfg: TrainConfig) -> int:
    """Time steps of one training sequence: SHD-Adding two digit windows, SHD one, Enwik8 a chunk."""
    if cfg.task == "enwik8":
        return cfg.chunk_len
    per_digit = n_bins(cfg.digit_window_s, cfg.bin_ms / 1000.0)
    return 2 * per_digit if cfg.task == "shd-adding" else per_digit


def input_dims(cfg: TrainConfig, tokens=None) -> tuple[int, int]:
    """``(n_in, n_classes)`` as the trainer will see them: SHD tasks from the channel pooling and the
    task's classes; Enwik8 from the vocabulary of the tokens (loaded when not given)."""
    if cfg.task in ("shd-adding", "shd"):
        return -(-N_UNITS // cfg.channel_factor), (N_SUM_CLASSES if cfg.task == "shd-adding" else N_CLASSES)
    if tokens is None:
        from elm_neuro.training.language import load_tokens  # the tokenizer: only for Enwik8

        tokens = load_tokens(cfg)
    return tokens.vocab_size, tokens.vocab_size


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes free on ``device``: CUDA's free memory, or the CPU's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _saved_bytes(model, x: torch.Tensor) -> int:
    """Bytes of the distinct storages (parameters left out) that a forward pass on ``x`` saves for
    backward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict = {}

    def count(t):
        if t.layout != torch.strided:  # sparse: its index and value tensors
            for part in (t._indices(), t._values()) if t.layout == torch.sparse_coo else ():
                count(part)
            return
        if t.device.type == "meta":
            return
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()

    def pack(t):
        if isinstance(t, torch.Tensor):
            count(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


def activation_bytes(model_config, cfg: TrainConfig, steps: Optional[int] = None) -> int:
    """Estimated bytes of the activations one training step of ``cfg.batch_size`` sequences of
    ``steps`` steps keeps for backward (module docstring).

    Two probes of ``PROBE_BATCH`` and ``2 * PROBE_BATCH`` sequences give the bytes per sequence-step
    as their difference, so that what is saved once per forward whatever the batch (maps derived
    from the weights) is not scaled up with the batch."""
    steps = sequence_steps(cfg) if steps is None else steps
    model, _ = build_from_config({"family": _family(model_config), "config": model_config.to_dict()})
    model.train()
    t_probe = max(1, min(steps, PROBE_STEPS))

    def probe(b: int) -> torch.Tensor:
        if cfg.task == "enwik8":
            return torch.zeros(b, t_probe, dtype=torch.long)
        x = torch.zeros(b, t_probe, model_config.n_in)
        x[:, ::3, ::5] = 1.0
        return x

    small, large = _saved_bytes(model, probe(PROBE_BATCH)), _saved_bytes(model, probe(2 * PROBE_BATCH))
    per_step = max(large - small, 0) / (PROBE_BATCH * t_probe)
    return int(math.ceil(per_step * cfg.batch_size * steps))


def _family(model_config) -> str:
    from elm_neuro.networks.registry import family_of

    return family_of(model_config)


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.0f} MiB"


def check_memory(model_config, cfg: TrainConfig, device: torch.device) -> tuple[int, Optional[int]]:
    """``(estimate, available)``; ``ValueError`` naming ``--batch-size`` with both figures when the
    activations of one training step cannot fit in the memory available on ``device``."""
    steps = sequence_steps(cfg)
    need = activation_bytes(model_config, cfg, steps)
    free = available_memory(device)
    if free is not None and need > free:
        per_seq = need / cfg.batch_size
        fits = int(free // per_seq) if per_seq > 0 else 0
        raise ValueError(f"--batch-size {cfg.batch_size}: one training step needs about {_gib(need)} of activations "
                         f"({cfg.batch_size} sequences x {steps} steps, estimated from the model configuration), "
                         f"more than the {_gib(free)} available on {device}; use --batch-size {max(fits, 1)} or "
                         f"less, a smaller model or shorter sequences")
    return need, free


def preflight(cfg: TrainConfig, tokens=None, memory: bool = True) -> Preflight:
    """Every check of the module docstring for one run; returns what it found."""
    device = check_device(cfg.device)
    if cfg.task != "enwik8" or cfg.data_dir is not None:
        data_paths(cfg.task, cfg.data_dir)
    n_in, n_classes = input_dims(cfg, tokens)
    mcfg = run_model_config(cfg, n_in, n_classes)
    need, free = check_memory(mcfg, cfg, device) if memory else (0, None)
    return Preflight(device, mcfg, sequence_steps(cfg), need, free)
