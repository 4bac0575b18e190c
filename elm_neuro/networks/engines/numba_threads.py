"""What the Numba (CPU) backends of the engines share: the threading layer, the thread count and
how their kernels are compiled (:func:`build`); and :func:`widest_cpu`, the x86-64 level with the
widest vectors this CPU runs (``python -m elm_neuro.networks.engines.numba_threads --widest-cpu``
prints it for ``NUMBA_CPU_NAME``: the Makefile's ``test-cpus`` compiles the engines for it).

Threading layer: Numba's ``workqueue`` unless ``NUMBA_THREADING_LAYER`` is set (OpenMP's spinning
workers take the cores from torch; :mod:`elm_neuro.data.binning` explains the measurement).
Threads: as many as torch is given (``torch.get_num_threads``), at most Numba's pool; one thread
runs a backend's serial build, without any threading overhead.
"""
from __future__ import annotations

import sys
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


def widest_cpu(flags: set | None = None) -> str:
    """The x86-64 micro-architecture level with the widest vectors this CPU runs (an LLVM CPU name
    for ``NUMBA_CPU_NAME``): ``x86-64-v4`` with AVX-512, ``x86-64-v3`` with AVX2 and FMA, else
    ``x86-64-v2``. ``flags``: the CPU's feature flags (default: from ``/proc/cpuinfo``)."""
    if flags is None:
        flags = set()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "x86-64-v4"
    if {"avx2", "fma", "bmi2"} <= flags:
        return "x86-64-v3"
    return "x86-64-v2"


if __name__ == "__main__" and sys.argv[1:] == ["--widest-cpu"]:
    print(widest_cpu())
