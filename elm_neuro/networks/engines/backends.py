"""Which backend of a fused engine runs on a device, and whether a compiled backend may run at all:
the choice every engine makes the same way.

A backend is a module implementing an engine's contract (the contract module's plain-PyTorch
``forward_torch`` / ``backward_torch`` are the reference): a ``forward`` and a ``backward`` function
(or other names, for engines with several kernels), ``TAKES``, the input types of
:mod:`elm_neuro.networks.engines.inputs` its forward accepts, optionally ``list_events``, its
event lister, and optionally a compile key (below). :func:`pick` returns it as a :class:`Backend`:

- on the CPU the Numba module ``cpu`` (imported, so compiled, on first use);
- on CUDA the Triton module ``cuda``; where it cannot be imported (no triton, a broken install:
  any exception, not only ``ImportError``) :func:`pick` warns once (:class:`EngineFallbackWarning`)
  and raises :class:`BackendUnusable`, so that the layer runs its per-step path instead of the
  fused engine on the slow reference;
- on any other device, or where an engine has no module for the device (``None``), ``reference``.

First-use check
    Numba's kernels are compiled for the host and tested in the suite on every CPU it runs on
    (``make test-cpus``); Triton's are compiled at first use, by the Triton version at hand, for
    the GPU at hand, where the suite never ran them (it runs them under Triton's interpreter). A
    backend that can fail there declares so with a *compile key*: a function of a call's
    arguments giving what Triton compiles one kernel per, besides the dtype and the device (the
    kernels' constexprs and ``num_warps``: the options of the engine's ``Spec`` that are
    constexprs, the block sizes that follow from the layer's shapes). Before the first call of
    each configuration, the key ``(backend, device, dtype, compile key)``, the dispatch runs
    :func:`first_use`, which runs the engine's check once: forward and backward of the backend
    on a tiny problem with the same compile key (two time steps, random values kept away from
    the step's branch points, see the dispatch modules), compared with the contract's reference
    in float64, every output and gradient within ``CHECK_RTOL`` of ``1 + max |reference|``. The
    verdict is cached for the process (:func:`verdicts`). A failed check (any exception in
    compile or launch, or a mismatch, :class:`CheckMismatch`) warns once, with one line naming
    the backend, device, dtype, compile key and error, and makes :func:`first_use` raise
    :class:`BackendUnusable` for that configuration from then on: layers on ``engine='auto'``
    run their per-step path (their ``engine_reason`` says why), layers on ``engine='fused'``
    raise. Triton also specialises a kernel on its integer arguments (equal to 1, multiples of
    16) and pointer alignment, which the key leaves out (they change address arithmetic, not
    the kernel's structure); :func:`guarded` covers them: an exception of a checked backend in a
    real call marks its configuration failed the same way (forward: the layer steps for this
    call; backward: the contract's reference computes this call's gradients).

    Which devices are checked: ``CHECKED_DEVICE_TYPES`` (CUDA). On the CPU a Triton backend runs
    only under its interpreter (the tests) or compile-only (the ``triton_compile`` tool, where
    nothing runs, so a numerical check would fail). The tests exercise the CUDA path on the CPU:
    they answer the dispatch modules' ``pick`` as for ``torch.device("cuda")`` and add ``"cpu"``
    to ``CHECKED_DEVICE_TYPES`` (tests/test_engine_fallback.py).
"""
from __future__ import annotations

import importlib
import warnings
from typing import Callable, NamedTuple, Optional

import torch

CHECKED_DEVICE_TYPES = ("cuda",)
CHECK_RTOL = {torch.float32: 1e-4, torch.float64: 1e-10}  # relative to 1 + max |reference|
MESSAGE_CHARS = 300  # an error's text in a warning is cut to this many characters


class EngineFallbackWarning(RuntimeWarning):
    """A compiled backend could not be imported, or failed its first-use check (or a call), for a
    configuration: the layers it would run take the per-step path from then on."""


class BackendUnusable(RuntimeError):
    """The backend cannot run this call (it failed to import, or its configuration failed its
    check); layers on ``engine='auto'`` catch it and step."""


class CheckMismatch(RuntimeError):
    """A backend's result on the check problem differs from the reference's."""


class Backend(NamedTuple):
    """One backend of an engine: its name, kernels, the input types it takes, its event lister and
    its compile key (None: no first-use check, module docstring)."""

    name: str
    forward: Callable
    backward: Callable
    takes: tuple
    list_events: Optional[Callable] = None
    compile_key: Optional[Callable] = None


class Guard(NamedTuple):
    """A checked configuration: its verdict key ``(backend, device, dtype, compile key)``."""

    key: tuple

    @property
    def label(self) -> str:
        """The words that name it in messages (built only for a message, not on every call)."""
        name, device, dtype, stat = self.key
        return f"{name} on {device} for {describe(dtype, stat)}"


# verdict of every configuration checked in this process: key -> None (passed) or the reason it failed
_verdicts: dict = {}


def verdicts() -> dict:
    """A copy of this process's verdicts: ``{key: None | reason}``."""
    return dict(_verdicts)


def one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (a multi-line message, such as a Triton
    compile error's, gives its first and last lines), at most ``MESSAGE_CHARS`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if len(lines) == 1 else (f"{lines[0]} ... {lines[-1]}" if lines else "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def _fail(key, message: str) -> str:
    """Record ``key`` as failed with ``message`` and warn, unless it failed before; its reason."""
    if _verdicts.get(key) is None:
        _verdicts[key] = message
        warnings.warn(message, EngineFallbackWarning, stacklevel=3)
    return _verdicts[key]


def _fatal(exc: BaseException) -> bool:
    """Errors that say nothing about the backend (out of device memory): raised as they are."""
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _load(module_name: str, names: tuple) -> Backend:
    module = importlib.import_module(module_name)
    fwd, bwd = (getattr(module, n) for n in names[:2])
    key = getattr(module, names[2], None) if len(names) > 2 else None
    return Backend(module_name.rpartition(".")[2], fwd, bwd, tuple(module.TAKES), getattr(module, "list_events", None),
                   key)


def pick(device: torch.device, cpu: Optional[str], cuda: Optional[str], reference: Backend,
         names: tuple = ("forward", "backward")) -> Backend:
    """The backend of an engine for ``device`` (module docstring); ``names`` are the module's
    forward and backward functions and, optionally, its compile key."""
    if device.type == "cpu" and cpu is not None:
        return _load(cpu, names)
    if device.type == "cuda" and cuda is not None:
        key = ("import", cuda)
        if _verdicts.get(key) is not None:
            raise BackendUnusable(_verdicts[key])
        try:
            return _load(cuda, names)
        except Exception as e:  # an install that cannot compile at all: not only ImportError
            raise BackendUnusable(_fail(key, f"{cuda.rpartition('.')[2]} cannot be imported for {device.type} "
                                             f"({one_line(e)}); layers that would run it take the per-step path"))
    return reference


def describe(dtype: torch.dtype, static: tuple) -> str:
    """``float32 BN=4 BD=8 ...``: a configuration in words (``static``: ``(name, value)`` pairs)."""
    parts = [str(dtype).replace("torch.", "")]
    parts += [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in static]
    return " ".join(parts)


def first_use(fns: Backend, device: torch.device, dtype: torch.dtype, static: Callable[[], tuple],
              check: Callable[[], None]) -> Optional[Guard]:
    """The first-use check of a call's configuration (module docstring): None when ``fns`` needs
    none on ``device``; else its :class:`Guard`, after running ``check`` (which raises on a
    failure) once per configuration and process. Raises :class:`BackendUnusable` for a
    configuration that failed. ``static`` gives the call's compile key."""
    if fns.compile_key is None or device.type not in CHECKED_DEVICE_TYPES:
        return None
    stat = static()
    key = (fns.name, str(device), dtype, stat)
    guard = Guard(key)
    if key not in _verdicts:
        try:
            with torch.no_grad():
                check()
        except Exception as e:
            if _fatal(e):
                raise
            _fail(key, f"{guard.label} failed its first-use check ({one_line(e)}); layers with this configuration "
                       "take the per-step path")
        else:
            _verdicts[key] = None
    if _verdicts[key] is not None:
        raise BackendUnusable(_verdicts[key])
    return guard


def guarded(guard: Optional[Guard], fn: Callable, *args, fallback: Optional[Callable] = None):
    """``fn(*args)``; for a checked backend (``guard`` not None) an exception marks its
    configuration failed (warning once) and then either ``fallback(*args)`` gives the result
    (backward: the reference) or :class:`BackendUnusable` is raised (forward: the layer steps)."""
    if guard is None:
        return fn(*args)
    try:
        return fn(*args)
    except BackendUnusable:
        raise
    except Exception as e:
        if _fatal(e):
            raise
        reason = _fail(guard.key, f"{guard.label} failed in a call ({one_line(e)}); layers with this configuration "
                                  "take the per-step path")
        if fallback is None:
            raise BackendUnusable(reason) from e
        return fallback(*args)


def check_batches(bsz: int):
    """Batch sizes for a check problem, smallest first: 2, 4, 8, ... up to ``bsz`` (then ``bsz``):
    the check takes the first whose compile key is the call's (block sizes may follow the batch)."""
    b = max(1, min(2, bsz))
    while True:
        yield b
        if b >= bsz:
            return
        b = min(2 * b, bsz)


def assert_matches(got: tuple, want: tuple, what: str) -> None:
    """Every field of ``want`` (a reference result in float64; None fields skipped) equals
    ``got``'s within ``CHECK_RTOL[got's dtype] * (1 + max |want|)``, else :class:`CheckMismatch`."""
    for name, w in zip(want._fields, want):
        if w is None:
            continue
        g = getattr(got, name)
        if g is None or tuple(g.shape) != tuple(w.shape):
            raise CheckMismatch(f"{what} {name}: expected shape {list(w.shape)}, got "
                                f"{None if g is None else list(g.shape)}")
        if not w.numel():
            continue
        tol = CHECK_RTOL.get(g.dtype, CHECK_RTOL[torch.float32]) * (1.0 + float(w.abs().max()))
        err = float((g.double() - w).abs().max())
        if not err <= tol:  # NaN fails too
            raise CheckMismatch(f"{what} {name} differs from the reference by {err:.3g} (tolerance {tol:.3g})")
