"""Checks made before the first training step: a run that cannot work fails at once, before it
writes anything, with a message naming the setting at fault.

:func:`preflight` (used by :func:`elm_neuro.training.trainer.run_training`, and by ``compare`` and
``sweep`` for every cell before the first cell trains) checks, for a :class:`TrainConfig`:

- the device: ``cuda`` on a machine without a usable GPU is refused (:func:`check_device`);
- the data: the files the task reads exist (:func:`elm_neuro.data.provenance.data_paths`); for
  the SHD tasks both files are readable and hold samples for every split
  (:func:`elm_neuro.data.shd_adding.check_split_files`: an empty file is named, so ``compare``
  and ``sweep`` refuse it before they write their folders); for Enwik8 the tokens load (size rules of :mod:`elm_neuro.data.enwik8`, the built-in corpus's size);
- the model: its family, preset, overrides and budget resolve to a configuration
  (:func:`elm_neuro.training.model_setup.run_model_config`, with the data's input and class
  counts), and its overrides set nothing the data decides
  (:func:`elm_neuro.training.model_setup.check_data_fields`);
- memory: :func:`estimate_memory` sizes one training step from the configuration and
  :func:`check_memory` refuses a run whose estimate exceeds the memory available on the device,
  with every part and a setting that would fit.

The estimate is arithmetic on the configuration, made before anything is built: the connectome
is not drawn, no weight is allocated, and the data is read no further than the sample counts in
its files' headers, so a configuration far beyond the machine (``--d-m 10000``, ``--n 10000000``)
is refused in milliseconds. Its parts (:class:`MemoryEstimate`, bytes):

- ``parameters``, ``gradients``: ``P`` values each (the budget's exact count);
- ``optimizer``: the optimiser's state, :data:`OPTIMIZER_STATES` copies of the parameters
  (Adam, Adamax, AdamW: two; plain SGD: none);
- ``structure``, ``activations``, ``workspace``: the network's, from
  :func:`elm_neuro.networks.memory.model_memory` (connectome and synapse maps; what a batch of
  ``batch_size x steps`` keeps for backward in the per-step path or the fused engines; the CPU
  engines' reusable arrays);
- ``data``: the input batch (``batch_size x steps x n_in`` float32) and, for the SHD tasks, the
  digit caches the splits bin the files into (one uint8 frame of ``digit steps x n_in`` per sample
  of either file, counted from the files' headers). Enwik8's token arrays are not counted.

On CUDA the model trains in the GPU's memory (``torch.cuda.mem_get_info``) and is built in the
CPU's first, so the GPU is checked against the whole estimate and the CPU against parameters and
structure. The estimate is held within a factor (:data:`elm_neuro.networks.memory.ESTIMATE_FACTOR`)
of a measured training step by ``tests/test_memory.py``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch

from elm_neuro.data.binning import n_bins
from elm_neuro.data.provenance import data_paths
from elm_neuro.data.shd import N_CLASSES, N_UNITS
from elm_neuro.data.shd_adding import N_SUM_CLASSES, check_split_files
from elm_neuro.networks.memory import model_memory
from elm_neuro.networks.registry import size_field
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.model_setup import check_data_fields, run_model_config

MEMINFO = Path("/proc/meminfo")
#: Copies of the parameters an optimiser keeps as state (``TrainConfig.optimizer``).
OPTIMIZER_STATES = {"adamax": 2, "adam": 2, "adamw": 2, "sgd": 0}
_GIB = 2 ** 30


class Preflight(NamedTuple):
    device: torch.device
    model_config: object
    steps: int  # time steps of one training sequence
    memory: Optional["MemoryEstimate"]  # estimated memory of one training step (None: not checked)
    available_bytes: Optional[int]  # memory available on the device (None: unknown)


class MemoryEstimate(NamedTuple):
    """Bytes of one training step, by part (module docstring)."""

    parameters: int
    gradients: int
    optimizer: int
    structure: int
    activations: int
    workspace: int
    data: int

    @property
    def total(self) -> int:
        return sum(self)

    @property
    def built(self) -> int:
        """What exists once the model is built, before any step: parameters and structure."""
        return self.parameters + self.structure

    def describe(self) -> str:
        """``parameters 0.1, gradients 0.1, ... GiB`` (each part in GiB)."""
        names = ("parameters", "gradients", "optimizer state", "connectome and synapse maps", "activations",
                 "engine workspace", "data")
        return ", ".join(f"{name} {_gib(v)}" for name, v in zip(names, self)) + " GiB"


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


def digit_steps(cfg: TrainConfig) -> int:
    """Time steps of one binned digit (SHD tasks)."""
    return n_bins(cfg.digit_window_s, cfg.bin_ms / 1000.0)


def sequence_steps(cfg: TrainConfig) -> int:
    """Time steps of one training sequence: SHD-Adding two digit windows, SHD one, Enwik8 a chunk."""
    if cfg.task == "enwik8":
        return cfg.chunk_len
    return 2 * digit_steps(cfg) if cfg.task == "shd-adding" else digit_steps(cfg)


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


def _samples_in(path: Path) -> int:
    """Samples of an SHD file, from its header (the shape of ``labels``); 0 when unreadable."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return int(f["labels"].shape[0])
    except (OSError, KeyError, ValueError, TypeError):
        return 0


def data_samples(cfg: TrainConfig) -> int:
    """Samples of both SHD files of ``cfg.data_dir`` (headers only; 0 for Enwik8 or no data)."""
    if cfg.task == "enwik8" or cfg.data_dir is None:
        return 0
    try:
        paths = data_paths(cfg.task, cfg.data_dir)
    except (ValueError, FileNotFoundError):
        return 0
    return sum(_samples_in(p) for p in paths)


def data_bytes(cfg: TrainConfig, n_in: int, steps: int, samples: int) -> int:
    """The input batch and, for the SHD tasks, the digit caches of ``samples`` samples (module
    docstring)."""
    if cfg.task == "enwik8":
        return cfg.batch_size * steps * 8  # int64 tokens (the model embeds them)
    return cfg.batch_size * steps * n_in * 4 + samples * digit_steps(cfg) * n_in


def estimate_memory(model_config, cfg: TrainConfig, device: torch.device = torch.device("cpu"),
                    steps: Optional[int] = None, samples: Optional[int] = None) -> MemoryEstimate:
    """The memory of one training step of ``model_config`` under ``cfg`` on ``device`` (module
    docstring), from the configurations alone: nothing is built or allocated. ``samples``: the
    data's sample count (default: read from the files' headers)."""
    steps = sequence_steps(cfg) if steps is None else steps
    samples = data_samples(cfg) if samples is None else samples
    mm = model_memory(model_config, cfg.batch_size, steps, cuda=device.type == "cuda")
    states = OPTIMIZER_STATES.get(cfg.optimizer, 2)
    return MemoryEstimate(mm.parameters, mm.parameters, states * mm.parameters, mm.structure, mm.activations,
                          mm.workspace, data_bytes(cfg, model_config.n_in, steps, samples))


def _gib(n: int) -> str:
    return f"{n / _GIB:.1f}" if n >= _GIB // 10 or n == 0 else f"{n / _GIB:.3f}"


def _largest(fits: Callable[[int], bool], below: int) -> Optional[int]:
    """The largest ``v`` in ``1..below-1`` with ``fits(v)`` (``fits`` non-increasing in v), or None."""
    if below <= 1 or not fits(1):
        return None
    lo, hi = 1, below  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def fitting_settings(model_config, cfg: TrainConfig, device: torch.device, free: int) -> list[str]:
    """What would fit in ``free`` bytes with everything else unchanged: a smaller batch, a smaller
    hidden size (and its budget P), a smaller d_m; each the largest that fits, found by bisection on
    :func:`estimate_memory` (instant: nothing is built)."""
    steps, samples = sequence_steps(cfg), data_samples(cfg)

    def fits(mcfg, c=cfg) -> bool:
        return estimate_memory(mcfg, c, device, steps, samples).total <= free

    out = []
    b = _largest(lambda v: fits(model_config, cfg.replace(batch_size=v)), cfg.batch_size)
    if b is not None:
        out.append(f"--batch-size {b}")
    size = size_field(model_config)
    for field in dict.fromkeys((size, "d_m")):
        current = getattr(model_config, field, None)
        if isinstance(current, bool) or not isinstance(current, int):
            continue
        v = _largest(lambda k: fits(model_config.replace(**{field: k})), current)
        if v is None:
            continue
        flag = f"--{field.replace('_', '-')} {v}"
        if field == size:
            p = model_config.replace(**{field: v}).budget().p
            out.append(f"{'N' if field == 'n' else field} = {v} ({flag}, or --params {p})")
        else:
            out.append(f"{field} = {v} ({flag})")
    return out


def check_memory(model_config, cfg: TrainConfig, device: torch.device) -> tuple[MemoryEstimate, Optional[int]]:
    """``(estimate, available)``; ``ValueError`` with every part of the estimate, the memory
    available and settings that would fit, when one training step cannot fit on ``device`` (on
    CUDA also when the model cannot be built in the CPU's memory)."""
    est = estimate_memory(model_config, cfg, device)
    free = available_memory(device)
    if free is not None and est.total > free:
        _refuse(model_config, cfg, device, est, free)
    if device.type == "cuda":  # built on the CPU, then moved
        host = available_memory(torch.device("cpu"))
        if host is not None and est.built > host:
            raise ValueError(f"{_model_words(model_config)}: building the model needs about {_gib(est.built)} GiB "
                             f"(parameters and connectome, made on the CPU before they move to {device}), more than "
                             f"the {_gib(host)} GiB available on the CPU; use a smaller --n or --d-m")
    return est, free


def _model_words(model_config) -> str:
    b = model_config.budget()
    d_m = getattr(model_config, "d_m", None)
    return f"the model (N={b.n}" + (f", d_m={d_m}" if d_m is not None else "") + f", P={b.p:,})"


def _refuse(model_config, cfg: TrainConfig, device: torch.device, est: MemoryEstimate, free: int) -> None:
    fits = fitting_settings(model_config, cfg, device, free)
    batch_bound = est.activations + est.workspace >= est.total / 2 and any(f.startswith("--batch-size") for f in fits)
    lead = f"--batch-size {cfg.batch_size}" if batch_bound else _model_words(model_config)
    hint = ("it would fit with " + ", or ".join(fits)) if fits else \
        "even the smallest setting of --batch-size, --n or --d-m does not fit; use a machine with more memory"
    raise ValueError(f"{lead}: one training step needs about {_gib(est.total)} GiB ({est.describe()}; "
                     f"{cfg.batch_size} sequences x {sequence_steps(cfg)} steps, estimated from the configuration), "
                     f"more than the {_gib(free)} GiB available on {device}; {hint}")


def preflight(cfg: TrainConfig, tokens=None, memory: bool = True) -> Preflight:
    """Every check of the module docstring for one run; returns what it found."""
    device = check_device(cfg.device)
    if cfg.task != "enwik8" or cfg.data_dir is not None:
        data_paths(cfg.task, cfg.data_dir)
    if cfg.task != "enwik8":  # every split non-empty and readable, named (before any folder is written)
        check_split_files(cfg.data_dir)
    n_in, n_classes = input_dims(cfg, tokens)
    check_data_fields(cfg, n_in, n_classes)
    mcfg = run_model_config(cfg, n_in, n_classes)
    est, free = check_memory(mcfg, cfg, device) if memory else (None, None)
    return Preflight(device, mcfg, sequence_steps(cfg), est, free)
