"""How a run uses the machine, and the run's timescales in physical time: config.json's
``runtime`` and ``timescales`` sections.

Threads
    torch's intra-op threads busy-wait, so more threads than cores (several runs side by side, or
    other work on the machine) slow every step down by several times. A run therefore chooses its
    thread count deliberately (:func:`choose_threads`):

    - ``TrainConfig.threads`` (``--threads N``) when given: N threads for this training process;
    - else, in a worker process of ``--workers`` / ``compare`` / ``sweep`` (the pool's initialiser
      called :func:`init_worker`): ``defaults.WORKER_THREADS`` (1) per worker, or the ``threads``
      the pool was started with;
    - else (one run alone): one per physical core of the CPUs this process may run on
      (:func:`physical_cores`).

    :func:`apply_threads` sets ``torch.set_num_threads`` and, where torch still allows it (before
    any inter-op parallel work has started in the process), ``torch.set_num_interop_threads``;
    a refusal is recorded, not raised. :func:`runtime_section` is what config.json records: the
    thread count actually in use, the rule that chose it, the physical cores, torch's version.

Engines
    Which path and backend each layer with a fused engine actually ran
    (:attr:`~elm_neuro.networks.engine_choice.EngineChoice.engine_ran`: ``fused elm_triton``,
    ``fused elm_numba``, ``step (<reason>)``) is known only once the model has run: a compiled
    backend that fails to import, its first-use check or a call makes the layer step from then
    on (:mod:`elm_neuro.networks.engines.backends`). :func:`engine_section` collects it (with the
    process's failed backend configurations, ``engine_fallbacks``); the training loops record it
    in config.json's ``runtime`` and print it (:meth:`~elm_neuro.training.pace.Pace.engines`)
    after the first training step and whenever it changes.

Physical cores
    :func:`count_physical_cores` counts the distinct ``(physical id, core id)`` pairs of the
    processors listed in a ``/proc/cpuinfo`` text (restricted to the processors this process may
    use, when given); it returns None when the text does not say (no ``core id`` lines, as on many
    ARM kernels). :func:`physical_cores` reads ``/proc/cpuinfo`` and the CPU affinity and falls
    back to the number of usable logical CPUs (``os.sched_getaffinity``, else ``os.cpu_count()``).

Termination
    ``SIGTERM`` (``kill PID``, a job scheduler ending a job, a container stopping) ends a command the
    way Ctrl-C does: :func:`terminate_like_interrupt` installs, in the main thread, a handler that
    raises :class:`Terminated`, a ``KeyboardInterrupt``, so every clean-up written for Ctrl-C runs
    for it too (a new run without a checkpoint removes what it wrote, a run with one is kept,
    marked and resumable, temporary files go, locks are released). A second ``SIGTERM`` while that
    clean-up runs is ignored, so that it finishes; ``SIGKILL`` still ends the process at once.
    Workers of a :func:`process_pool` (compare, sweep) handle ``SIGTERM`` the same way, and a
    parent that is terminated passes the signal on to them, cancels the cells not yet started and
    waits for the workers' clean-up (at most ``defaults.WORKER_EXIT_S``, then they are killed), so
    ``kill PARENT`` leaves the same as Ctrl-C does. (Ctrl-C reaches the workers itself: the
    terminal signals the whole process group.)

Timescales
    ELM timescales are in steps of the model's ``dt`` (``dt = 1``: one time bin), LIF / adLIF
    timescales in ms with ``dt`` = the bin width in ms. In both cases a timescale ``tau`` lasts
    ``tau / dt`` steps and, for data binned at ``bin_ms``, ``tau / dt * bin_ms`` milliseconds.
    :func:`timescale_section` lists every configured timescale range of a model configuration
    (ELM memory ``tau_min..tau_max`` of the hidden layer and the readout; LIF membrane and
    adaptation ranges, the readout's) in steps and in ms; Enwik8 runs have no bin width (a step
    is one character), so their ``ms`` entries are None.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch

from elm_neuro import defaults as D
from elm_neuro.networks.engine_choice import EngineChoice
from elm_neuro.networks.engines.backends import verdicts

CPUINFO = Path("/proc/cpuinfo")

# Threads per process of a pool of workers, set by init_worker in that process (None: not a worker).
_worker_threads: Optional[int] = None


def check_threads(threads, name: str = "threads") -> Optional[int]:
    """``threads`` if it is None or an integer >= 1; else ``ValueError`` naming ``name``."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{name} must be an integer >= 1 or None (automatic), got {threads!r}")
    return threads


# --------------------------------------------------------------------------- physical cores
def count_physical_cores(cpuinfo: str, allowed: Optional[Iterable[int]] = None) -> Optional[int]:
    """Distinct ``(physical id, core id)`` pairs of the processors in a ``/proc/cpuinfo`` text.

    ``allowed``: logical CPU numbers this process may use (the ``processor`` field); others are
    not counted. A processor block without ``physical id`` counts as socket 0. Returns None when
    no counted block has a ``core id`` (the text does not describe cores), or when ``allowed``
    names no processor of the text.
    """
    if not isinstance(cpuinfo, str):
        raise ValueError(f"cpuinfo must be the text of /proc/cpuinfo (str), got {type(cpuinfo).__name__}")
    allowed_set = None if allowed is None else {int(a) for a in allowed}
    cores, seen = set(), 0
    for block in cpuinfo.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields:
            continue
        try:
            proc = int(fields["processor"])
        except ValueError:
            continue
        if allowed_set is not None and proc not in allowed_set:
            continue
        seen += 1
        if "core id" not in fields:
            return None  # a processor without core information: the text cannot be trusted to count cores
        cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) if seen and cores else None


def usable_cpus() -> Optional[set]:
    """Logical CPUs this process may run on (``os.sched_getaffinity``), None where unknown."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def physical_cores(cpuinfo_path=CPUINFO) -> int:
    """Physical cores among the CPUs this process may use (module docstring); at least 1."""
    allowed = usable_cpus()
    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        text = None
    n = count_physical_cores(text, allowed) if text is not None else None
    if n is None:
        n = len(allowed) if allowed else (os.cpu_count() or 1)
    return max(1, int(n))


# --------------------------------------------------------------------------- threads
def init_worker(threads: Optional[int] = None) -> int:
    """Initialiser of a process in a pool of training workers: mark it as a worker and apply its
    thread count (``threads``, default ``defaults.WORKER_THREADS``). Returns the count set."""
    global _worker_threads
    n = check_threads(threads)
    _worker_threads = D.WORKER_THREADS if n is None else n
    apply_threads(_worker_threads)
    return _worker_threads


_pool_terminated: list = []  # set in a pool worker once it received SIGTERM


def _pool_worker(threads: Optional[int]) -> None:
    """Initialiser of a :func:`process_pool` worker: :func:`init_worker`, and ``SIGTERM`` raising
    :class:`Terminated` for the rest of the process's life (a second one ignored)."""
    init_worker(threads)

    def handler(signum, frame):
        if not _pool_terminated:
            _pool_terminated.append(signum)
            raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def check_not_terminated() -> None:
    """Raise :class:`Terminated` in a pool worker that was terminated: a job queued before the
    parent cancelled the rest must not start (call it first thing in a pool job)."""
    if _pool_terminated:
        raise Terminated()


@contextlib.contextmanager
def process_pool(workers: int, threads: Optional[int] = None) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned training processes (``threads`` torch threads each, default
    one; :func:`init_worker`) whose interrupt and termination end every worker the way they end
    one process (module docstring, "Termination")."""
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_worker,
                             initargs=(threads,))
    try:
        yield ex
    except KeyboardInterrupt as exc:
        procs = list((getattr(ex, "_processes", None) or {}).values()) or mp.active_children()
        ex.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, Terminated):  # Ctrl-C reached the workers already (the process group)
            for p in procs:
                with contextlib.suppress(OSError, ValueError):
                    if p.is_alive():
                        os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + D.WORKER_EXIT_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
        raise
    else:
        ex.shutdown(wait=True)


def worker_threads() -> Optional[int]:
    """The thread count :func:`init_worker` set in this process (None outside a worker)."""
    return _worker_threads


def choose_threads(threads: Optional[int] = None) -> tuple[int, str]:
    """``(count, rule)``: the thread count a run uses and why (module docstring)."""
    n = check_threads(threads)
    if n is not None:
        return n, "set by --threads (TrainConfig.threads)"
    if _worker_threads is not None:
        return _worker_threads, "automatic: one process of several workers"
    return physical_cores(), "automatic: one per physical core"


def apply_threads(threads: int) -> dict:
    """Set torch's intra-op threads to ``threads`` and its inter-op threads where still allowed.

    Returns ``{"threads", "interop_threads", "interop_set"}`` as torch reports them afterwards;
    ``interop_set`` is False when torch refused (inter-op work already started in this process,
    or the count was set before), True when set or already equal.
    """
    n = check_threads(threads)
    if n is None:
        raise ValueError("threads must be an integer >= 1, got None")
    torch.set_num_threads(n)
    interop_set = True
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # only legal before any inter-op parallel work in this process
            interop_set = False
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "interop_set": interop_set}


def runtime_section(threads: Optional[int], device) -> dict:
    """Choose and apply the thread count of a run; config.json's ``runtime`` section."""
    n, rule = choose_threads(threads)
    applied = apply_threads(n)
    return {"threads": applied["threads"], "threads_setting": threads, "threads_rule": rule,
            "interop_threads": applied["interop_threads"], "interop_set": applied["interop_set"],
            "physical_cores": physical_cores(), "torch": torch.__version__, "device": str(device)}


# --------------------------------------------------------------------------- engines
def engine_section(model: torch.nn.Module) -> dict:
    """``{"engines": {layer name: path and backend of its last call}, "engine_fallbacks": [...]}``
    (module docstring): layers not run yet are left out; ``engine_fallbacks`` lists the reasons of
    this process's backend configurations that failed (empty when none)."""
    ran = {(name or type(model).__name__): m.engine_ran for name, m in model.named_modules()
           if isinstance(m, EngineChoice) and m.engine_ran is not None}
    return {"engines": ran, "engine_fallbacks": sorted(r for r in verdicts().values() if r is not None)}


def engine_text(section: dict) -> str:
    """``hidden fused elm_triton, readout step (...)``: :func:`engine_section`'s engines in one line."""
    return ", ".join(f"{name} {ran}" for name, ran in section["engines"].items()) or "none ran"


# --------------------------------------------------------------------------- termination
class Terminated(KeyboardInterrupt):
    """The process received ``SIGTERM``; handled as an interrupt (module docstring)."""

    signal_name = "SIGTERM"


@contextlib.contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """For the life of the block, ``SIGTERM`` raises :class:`Terminated` in the main thread
    (module docstring); the previous handler is restored afterwards. Outside the main thread
    (where Python cannot install handlers) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def handler(signum, frame):
        if raised:  # the clean-up of the first one is running: let it finish
            return
        raised.append(signum)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- timescales
def _range(lo: float, hi: float, dt: float, bin_ms: Optional[float]) -> dict:
    steps = [float(lo) / dt, float(hi) / dt]
    return {"steps": steps, "ms": None if bin_ms is None else [s * bin_ms for s in steps]}


def _layer_ranges(prefix: str, layer, bin_ms: Optional[float]) -> dict:
    """Timescale ranges of one layer configuration: ELM memory, LIF membrane / adaptation."""
    out = {}
    if hasattr(layer, "tau_min") and hasattr(layer, "tau_max"):  # ELM layer
        out[f"{prefix}memory"] = _range(layer.tau_min, layer.tau_max, layer.dt, bin_ms)
    if hasattr(layer, "tau_mem_min"):  # LIF / adLIF layer
        out[f"{prefix}membrane"] = _range(layer.tau_mem_min, layer.tau_mem_max, layer.dt, bin_ms)
        if getattr(layer, "adaptive", False):
            out[f"{prefix}adaptation"] = _range(layer.tau_adapt_min, layer.tau_adapt_max, layer.dt, bin_ms)
    return out


def timescale_section(model_config, bin_ms: Optional[float]) -> dict:
    """Every configured timescale range of ``model_config`` in steps and in ms (module docstring).

    ``bin_ms`` is the data's bin width (None for Enwik8: one step is one character). Keys:
    ``bin_ms``, ``step`` (what one step is), then one ``{"steps": [lo, hi], "ms": [lo, hi] | None}``
    per range: ``memory`` / ``readout_memory`` (ELM Network), ``memory`` (single ELM neuron),
    ``membrane``, ``adaptation`` (adLIF), ``readout_memory`` or ``readout_tau_out`` (LIF networks).
    Families without explicit timescales (LSTM) list none.
    """
    if bin_ms is not None and (isinstance(bin_ms, bool) or not isinstance(bin_ms, (int, float)) or bin_ms <= 0):
        raise ValueError(f"bin_ms must be a number > 0 or None (no bin width), got {bin_ms!r}")
    out = {"bin_ms": None if bin_ms is None else float(bin_ms),
           "step": "one character (no bin width)" if bin_ms is None else f"one time bin of {float(bin_ms):g} ms"}
    if hasattr(model_config, "neuron") and not isinstance(getattr(model_config, "neuron"), str):
        out.update(_layer_ranges("", model_config.neuron, bin_ms))  # the single ELM neuron
        return out
    hidden = getattr(model_config, "hidden", None)
    if hidden is None:
        return out
    out.update(_layer_ranges("", hidden, bin_ms))
    readout_kind = getattr(model_config, "readout", None)
    if isinstance(readout_kind, str):  # LIF networks: "elm" readout layer, or leaky / spiking readout
        if readout_kind == "elm":
            out.update(_layer_ranges("readout_", model_config.elm_readout, bin_ms))
        else:
            out["readout_tau_out"] = _range(model_config.tau_out, model_config.tau_out, hidden.dt, bin_ms)
    elif readout_kind is not None:  # ELM Network: the readout ELM layer
        out.update(_layer_ranges("readout_", readout_kind, bin_ms))
    return out
