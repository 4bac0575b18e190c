"""Reused arrays for the CPU engines' large per-sequence buffers.

Why: the fused ELM engine saves some 190 MB per SHD-Adding batch (B 8, T 1000) for its backward
and writes 50 MB of sequence gradients. Freshly allocated, such arrays come from the kernel page
by page on first touch: measured here, first-touching 190 MB costs about 70 ms against 10 ms for
writing memory already mapped, about half of the forward kernel's time. The workspace hands out
arrays that were used before, so that their pages stay mapped.

Safety without bookkeeping by the caller: an array is handed out as ``torch.from_numpy`` of a
numpy array the workspace keeps; every tensor and view made from it holds one reference to that
numpy array (through its storage), so the array is free exactly when its reference count is back
to the workspace's own. An array is never handed out twice while anything (autograd's saved
tensors, a returned output, a user's view) still uses it; a caller that keeps outputs just makes
the workspace allocate another array.

That reading of ``sys.getrefcount`` is a CPython and PyTorch detail, so it is checked, not
assumed: :func:`refcounts_track_users` makes an array, a tensor of it and a view, and watches the
count rise and fall as they come and go. Where it does not (another interpreter, a free-threaded
build with deferred reference counting, a PyTorch that stops referencing the array), a workspace
reuses nothing: it hands out fresh arrays, only slower. tests/test_engine_workspace.py asserts
the check passes where the suite runs, so a change underneath fails there first.

Bound: the arrays kept (in use or free) total at most ``max_bytes`` (default
:data:`elm_neuro.defaults.ENGINE_WORKSPACE_BYTES`): to make room the least recently used free
arrays are dropped, and an array that still does not fit is handed out without being kept. :func:`clear` drops every
free array (e.g. after training, before something else needs the memory).
"""
from __future__ import annotations

import sys
import threading

import numpy as np
import torch

from elm_neuro.defaults import ENGINE_WORKSPACE_BYTES

# references to a kept array while the workspace inspects it: its list slot and the argument of
# sys.getrefcount (nothing else may name it then)
_OWN_REFERENCES = 2


def refcounts_track_users() -> bool:
    """Whether ``sys.getrefcount`` of a kept array counts the tensors and views that use it: one
    more for a tensor made by ``torch.from_numpy``, views counted through it, and back to the
    array's own count when they are gone (module docstring)."""
    getrefcount = getattr(sys, "getrefcount", None)
    if getrefcount is None:
        return False
    holder = [np.empty(4, np.float32)]
    base = getrefcount(holder[0])
    if base != _OWN_REFERENCES:
        return False
    tensor = torch.from_numpy(holder[0])
    view = tensor[1:]
    in_use = getrefcount(holder[0]) > base
    del tensor
    still = getrefcount(holder[0]) > base  # the view alone keeps it in use
    del view
    return in_use and still and getrefcount(holder[0]) == base


class Workspace:
    """A pool of reusable numpy arrays handed out as CPU tensors (module docstring); ``reuse`` is
    False where :func:`refcounts_track_users` fails (then every array is fresh and none is kept)."""

    def __init__(self, max_bytes: int = ENGINE_WORKSPACE_BYTES, reuse: bool | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.reuse = refcounts_track_users() if reuse is None else bool(reuse)
        self._arrays: list[np.ndarray] = []  # least recently used first
        self._lock = threading.Lock()

    def _free(self, i: int) -> bool:
        return sys.getrefcount(self._arrays[i]) == _OWN_REFERENCES

    @property
    def kept_bytes(self) -> int:
        return sum(a.nbytes for a in self._arrays)

    def empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised CPU tensor of ``shape`` and ``dtype`` (contiguous), reusing a free
        kept array of the same shape and dtype when there is one."""
        shape = tuple(int(s) for s in shape)
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        if not self.reuse:
            return torch.from_numpy(np.empty(shape, np_dtype))
        with self._lock:
            for i in range(len(self._arrays)):
                if self._arrays[i].shape == shape and self._arrays[i].dtype == np_dtype and self._free(i):
                    arr = self._arrays.pop(i)
                    self._arrays.append(arr)  # most recently used
                    return torch.from_numpy(arr)
            arr = np.empty(shape, np_dtype)
            if arr.nbytes <= self.max_bytes:
                self._evict(self.max_bytes - arr.nbytes)
                if self.kept_bytes + arr.nbytes <= self.max_bytes:  # else the arrays in use fill the bound
                    self._arrays.append(arr)
            return torch.from_numpy(arr)

    def _evict(self, budget: int) -> None:
        """Drop free arrays, least recently used first, until the kept ones fit ``budget``."""
        total = self.kept_bytes
        i = 0
        while total > budget and i < len(self._arrays):
            if self._free(i):
                total -= self._arrays.pop(i).nbytes
            else:
                i += 1

    def clear(self) -> None:
        """Drop every free array (arrays still in use stay with their users and are forgotten)."""
        with self._lock:
            self._arrays.clear()


WORKSPACE = Workspace()  # the CPU engines' shared pool


def clear() -> None:
    """Drop the engines' kept arrays (:data:`WORKSPACE`)."""
    WORKSPACE.clear()
