"""What the Numba (CPU) backends of the engines share: the threading layer, the thread count and
how their kernels are compiled (:func:`build`).

Threading layer: Numba's ``workqueue`` unless ``NUMBA_THREADING_LAYER`` is set (OpenMP's spinning
workers take the cores from torch; :mod:`elm_neuro.data.binning` explains the measurement).
Threads: as many as torch is given (``torch.get_num_threads``), at most Numba's pool; one thread
runs a backend's serial build, without any threading overhead.
"""
from __future__ import annotations

import types

import numba
import torch

if numba.config.THREADING_LAYER == "default":  # the user did not choose one
    numba.config.THREADING_LAYER = "workqueue"


def engine_threads() -> int:
    """The threads a kernel call uses (Numba's pool set to it when more than one)."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if n > 1:
        numba.set_num_threads(n)
    return n


def build(fn, parallel: bool, **options):
    """``numba.njit(cache=True, parallel=parallel, **options)(fn)``, the parallel build under its
    own name (``<name>_parallel``). Numba's on-disk cache keys a compiled function by its name,
    source and argument types, not by its options: without the rename a parallel and a serial
    build of one kernel load each other from the cache, and a parallel build run on one thread
    (e.g. a one-thread training worker after a many-thread process filled the cache) ran the ELM
    forward kernel 4x slower than the serial build."""
    if parallel:
        fn = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel", fn.__defaults__,
                                fn.__closure__)
        fn.__qualname__ = fn.__name__
    return numba.njit(cache=True, parallel=parallel, **options)(fn)
