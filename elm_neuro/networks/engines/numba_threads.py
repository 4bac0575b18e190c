"""What the Numba (CPU) backends of the engines share: the threading layer and the thread count.

Threading layer: Numba's ``workqueue`` unless ``NUMBA_THREADING_LAYER`` is set (OpenMP's spinning
workers take the cores from torch; :mod:`elm_neuro.data.binning` explains the measurement).
Threads: as many as torch is given (``torch.get_num_threads``), at most Numba's pool; one thread
runs a backend's serial build, without any threading overhead.
"""
from __future__ import annotations

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
