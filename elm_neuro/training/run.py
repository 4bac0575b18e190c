"""Run directories: everything a training run leaves behind, and loading it back.

A run directory holds

- ``config.json``: ``{"train": TrainConfig fields, "model": {"family", "config"}}`` (the
  resolved model configuration, so the model rebuilds without presets), plus ``"data"`` (real,
  synthetic, ...), ``"timescales"`` (steps and ms) and ``"runtime"`` (threads actually used,
  torch version; see :mod:`elm_neuro.training.common`);
- ``metrics.jsonl``: one JSON line per evaluation and per ``log_every`` training steps;
- ``checkpoint.pt``: model, optimiser, scheduler, RNG states, epoch, step, best-so-far and the
  number of metric lines at that moment; written atomically after every epoch;
- ``best.pt``: the weights with the best validation accuracy so far;
- ``summary.json``: final metrics of the best weights (written once the run completes), or
  ``{"status": "failed", ...}`` when a run that had written a checkpoint stopped with an error
  (:func:`elm_neuro.training.trainer.run_training`);
- ``model.safetensors``: in an exported folder (``elm-neuro export``), the best weights instead of
  ``best.pt``.

Every file is written atomically (:mod:`elm_neuro.atomic`). A JSON file that cannot be read back
(edited by hand, damaged, a copy cut short) is refused with a ``ValueError`` naming the file, what
is wrong with it (the JSON error and its place, or the missing section) and what the user can do
(restore it, or start a new run), instead of a bare decoder message.

Checkpoints hold tensors and plain data only (dicts, lists, tuples, numbers, strings, None): RNG
states are tensors (:func:`elm_neuro.training.common.rng_states`), a carried network state (a
named tuple of the package) is stored as ``{"__namedtuple__": "module:Name", "values": [...]}``
(:func:`to_plain` / :func:`from_plain`), and the configurations are JSON files beside them.
Every ``.pt`` file is read with ``torch.load(..., weights_only=True)``, which unpickles nothing
but tensors and plain data, so opening a run or a shared model folder never runs code carried by
its files: a file that needs anything else is refused with a message naming it. Checkpoints of
earlier versions (numpy RNG arrays, named-tuple states) are read under ``weights_only=True`` with
exactly those extra types allowed (:data:`LEGACY_SAFE_GLOBALS`).
"""
from __future__ import annotations

import codecs
import contextlib
import importlib
import json
import pickle
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from elm_neuro.atomic import save_json, save_text
from elm_neuro.networks.elm_network import NetworkState
from elm_neuro.networks.lif_network import LIFNetworkState, SpikingReadoutState
from elm_neuro.networks.lstm import LSTMState
from elm_neuro.networks.registry import MODEL_FAMILIES
from elm_neuro.neurons.elm import ELMState
from elm_neuro.neurons.lif import LIFState

#: Exported weights (``elm-neuro export``): a safetensors file of the model's state dict.
SAFETENSORS_NAME = "model.safetensors"
#: Key under which :func:`to_plain` stores a named tuple's ``module:qualname``.
NAMEDTUPLE_KEY = "__namedtuple__"
# The only package modules whose named tuples from_plain rebuilds (network states).
_STATE_MODULES = ("elm_neuro.networks.", "elm_neuro.neurons.")
_STATE_TYPES = (NetworkState, LIFNetworkState, SpikingReadoutState, LSTMState, ELMState, LIFState)


def _numpy_globals() -> list:
    """What a pickled numpy array needs (numpy 1 and 2 name the module differently)."""
    try:  # numpy 2 (numpy 1.26 has a numpy._core without multiarray)
        from numpy._core.multiarray import _reconstruct
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    out = [_reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [dtypes.UInt32DType, dtypes.Float64DType, dtypes.Int64DType]
    # an array's bytes pickle as _codecs.encode(text, "latin1"); torch 2.5+ allows it by default
    out.append(codecs.encode)
    return out


#: Extra types allowed under ``weights_only=True`` for checkpoints of earlier versions only: numpy
#: arrays (their numpy RNG state) and the package's network-state named tuples (a language
#: model's carried state). Constructing them runs no code from the file.
LEGACY_SAFE_GLOBALS = _numpy_globals() + list(_STATE_TYPES)


def _safe_globals(extra: list):
    """``torch.serialization.safe_globals(extra)`` (torch 2.5+); on torch 2.4, which has only the
    process-wide ``add_safe_globals``, the same list is added for the block and the previous list
    restored after it."""
    ser = torch.serialization
    if hasattr(ser, "safe_globals"):
        return ser.safe_globals(extra)
    return _added_safe_globals(extra)


@contextlib.contextmanager
def _added_safe_globals(extra: list):
    ser = torch.serialization
    before = list(ser.get_safe_globals())
    ser.add_safe_globals(extra)
    try:
        yield
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(before)


class LoadedRun(NamedTuple):
    model: torch.nn.Module
    train_config: dict
    model_config: object
    summary: dict | None
    path: Path


#: Sections config.json must hold, and the entries each must have.
CONFIG_SECTIONS = {"train": ("task",), "model": ("family", "config")}


def read_json_file(path: Path, what: str, remedy: str):
    """The JSON content of ``path``; ``ValueError`` naming the file, the error and ``remedy``."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a text file ({exc.reason} at byte {exc.start}); the {what} is damaged: "
                         f"{remedy}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); the {what} "
                         f"is damaged or was edited by hand: {remedy}") from None


class RunDir:
    def __init__(self, path) -> None:
        self.path = Path(path)

    def _config_remedy(self) -> str:
        return (f"restore it from a copy (its checkpoint cannot be used without it), or start a new run with "
                f"--out and another folder")

    config = property(lambda self: self.path / "config.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    best = property(lambda self: self.path / "best.pt")
    summary = property(lambda self: self.path / "summary.json")

    def read_config(self, complete: bool = False) -> dict:
        """config.json, checked to be an object with a ``train`` section; with ``complete`` (to
        resume or rebuild the run) every section and entry of :data:`CONFIG_SECTIONS`."""
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.config} not found: {self.path} is not a run directory")
        conf = read_json_file(self.config, "run's configuration", self._config_remedy())
        if not isinstance(conf, dict):
            raise ValueError(f"{self.config} holds a JSON {type(conf).__name__}, not the run's configuration (an "
                             f"object with sections {sorted(CONFIG_SECTIONS)}): {self._config_remedy()}")
        for section, keys in CONFIG_SECTIONS.items():
            if section != "train" and not complete:
                continue
            part = conf.get(section)
            missing = [section] if not isinstance(part, dict) else [
                f"{section}.{k}" for k in keys if complete and k not in part]
            if missing:
                raise ValueError(f"{self.config} has no {', '.join(repr(m) for m in missing)}: it is not a complete run "
                                 f"configuration (damaged or edited by hand): {self._config_remedy()}")
        return conf

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        rows = []
        for i, line in enumerate(self.metrics.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.metrics}: line {i} is not valid JSON ({exc.msg}); the metrics log is damaged "
                                 f"or was edited by hand: remove that line (a resumed run keeps the lines up to its "
                                 f"checkpoint), or start a new run") from None
        return rows

    def truncate_metrics(self, n_lines: int) -> None:
        """Keep the first ``n_lines`` metric lines (drop those written after the checkpoint)."""
        lines = self.read_metrics()[:n_lines]
        save_text("".join(json.dumps(r) + "\n" for r in lines), self.metrics)

    def append_metric(self, row: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def read_summary(self) -> dict | None:
        if not self.summary.is_file():
            return None
        summary = read_json_file(self.summary, "run's summary",
                                 f"remove it (--resume {self.path} then continues from the last checkpoint; a "
                                 f"finished run is only evaluated again) or restore it from a copy")
        if not isinstance(summary, dict):
            raise ValueError(f"{self.summary} holds a JSON {type(summary).__name__}, not a run summary: remove it or "
                             f"restore it from a copy")
        return summary

    def write_summary(self, summary: dict) -> None:
        save_json(summary, self.summary)


def to_plain(obj):
    """``obj`` with every named tuple replaced by ``{NAMEDTUPLE_KEY: "module:Name", "values": [...]}``
    (recursively through dicts, lists and tuples), so that it pickles as plain data."""
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        cls = type(obj)
        return {NAMEDTUPLE_KEY: f"{cls.__module__}:{cls.__qualname__}", "values": [to_plain(v) for v in obj]}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def _state_class(name: str, where: str):
    module, _, qual = name.partition(":")
    if not module.startswith(_STATE_MODULES) or not qual.isidentifier():
        raise ValueError(f"{where}: {name!r} is not a network-state type of this package")
    cls = getattr(importlib.import_module(module), qual, None)
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise ValueError(f"{where}: {name!r} is not a network-state type of this package")
    return cls


def from_plain(obj, where: str = "checkpoint"):
    """Inverse of :func:`to_plain`: rebuild the package's named tuples (nothing else is built)."""
    if isinstance(obj, dict):
        if NAMEDTUPLE_KEY in obj:
            cls = _state_class(str(obj[NAMEDTUPLE_KEY]), where)
            return cls(*[from_plain(v, where) for v in obj["values"]])
        return {k: from_plain(v, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v, where) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(from_plain(v, where) for v in obj)
    return obj


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _reason(exc: Exception) -> str:
    """The gist of a loader's error in one line (torch's weights-only errors span many lines)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _refused(path: Path, exc: Exception) -> ValueError:
    """The message for a ``.pt`` file that needs more than tensors and plain data to unpickle."""
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                 if n not in {f"{c.__module__}.{c.__qualname__}" for c in LEGACY_SAFE_GLOBALS}]
    except Exception:  # noqa: BLE001 - the names are only for the message
        names = []
    names = names or _GLOBAL_RE.findall(str(exc))[:1] or ["an object that is not a tensor or plain data"]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return ValueError(f"{path} carries pickled Python objects ({shown}), not only tensors and plain data; "
                      f"refused without loading it, since unpickling could run code: use files written by "
                      f"elm_neuro, or re-create it from a source you trust")


def load_checkpoint(path, map_location="cpu") -> dict:
    """A run's ``.pt`` file, read with ``torch.load(..., weights_only=True)`` (module docstring).

    A file carrying anything but tensors and plain data (a pickled callable, a class of another
    package) is refused with ``ValueError`` naming it and what it carries, without running any of
    it; a truncated or foreign file raises ``ValueError`` naming it (instead of a pickle or
    zip-reader error). Named-tuple states stored by :func:`to_plain` come back as named tuples.
    """
    path = Path(path)
    try:
        with _safe_globals(LEGACY_SAFE_GLOBALS):
            blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:
        if _GLOBAL_RE.search(str(exc)) or "unsupported global" in str(exc).lower():
            raise _refused(path, exc) from None
        raise ValueError(f"{path} is not a readable checkpoint ({_reason(exc)}); it may be truncated or "
                         f"foreign: restore it or start a new run") from None
    except Exception as exc:  # truncated zip, random bytes, wrong format: all one message
        raise ValueError(f"{path} is not a readable checkpoint ({_reason(exc)}); it may be "
                         f"truncated or foreign: restore it or start a new run") from None
    if not isinstance(blob, dict) or "model" not in blob:
        raise ValueError(f"{path} is not a checkpoint of this package (expected a dict with 'model' weights)")
    return from_plain(blob, str(path))


def load_weights(path, map_location="cpu") -> dict:
    """The model weights of ``best.pt``/``checkpoint.pt`` (:func:`load_checkpoint`) or of an
    exported ``model.safetensors``, as a state dict."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return load_checkpoint(path, map_location)["model"]
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(f"{path}: reading safetensors weights needs the safetensors package "
                         f"(pip install safetensors)") from None
    try:
        return load_file(str(path), device=str(map_location))
    except Exception as exc:  # noqa: BLE001 - truncated or foreign file: one message
        raise ValueError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
                         f"restore it or export the run again") from None


def build_from_config(model_section: dict):
    """Model and model config from config.json's ``model`` section."""
    family = model_section["family"]
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r} in config.json (known: {sorted(MODEL_FAMILIES)})")
    cfg_cls, model_cls = MODEL_FAMILIES[family]
    cfg = cfg_cls.from_dict(model_section["config"])
    return model_cls(cfg), cfg


def load_run(path, which: str = "best", map_location="cpu") -> LoadedRun:
    """Load a trained run in one call: ``model, train_config, model_config, summary, path``.

    ``which`` is ``best`` (best validation weights, the default: ``best.pt``, or
    ``model.safetensors`` in an exported folder) or ``last`` (the last checkpoint). Nothing in
    the folder is unpickled beyond tensors and plain data (module docstring). The model is
    returned in eval mode.
    """
    run = RunDir(path)
    conf = run.read_config(complete=True)
    model, mcfg = build_from_config(conf["model"])
    if which == "best":
        src = run.path / SAFETENSORS_NAME if (run.path / SAFETENSORS_NAME).is_file() else run.best
    elif which == "last":
        src = run.checkpoint
    else:
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found in run directory {run.path}")
    try:
        model.load_state_dict(load_weights(src, map_location))
    except RuntimeError as exc:  # wrong keys or shapes: the weights are not this config's model
        raise ValueError(f"{src}: the weights do not fit the model of {run.config} "
                         f"({str(exc).splitlines()[0]})") from None
    model.eval()
    return LoadedRun(model, conf["train"], mcfg, run.read_summary(), run.path)
