"""Binning of flat spike events into dense [B, T, C] frames (docs/design.md §5, "Binning").

Public API
----------
``bin_events(times, units, offsets, sample_idx, bin_size, window, n_channels,
channel_factor=1, binary=False, t_offset=None, *, out=None, dtype=None) -> np.ndarray [B, T, C]``
    Fast path: a Numba kernel, parallel over the B requested samples (``prange``); every
    sample zeroes and fills only its own output slab, so there are no races. ``dtype`` is
    ``np.float32`` (the default) or ``np.uint8`` (binary frames or small counts, a quarter of
    the memory); ``out`` is a reused C-contiguous buffer of shape [B, T, C] filled in place
    (its old contents are overwritten; no separate ``np.zeros`` pass).
``bin_events_numpy(..., *, dtype=None)``
    Plain numpy reference with the same signature (less ``out``) and the same result, bit for
    bit.
``bin_events_torch(...)``
    The same binning with torch tensor operations (``index_put_`` with accumulation) on any
    device, e.g. straight on the GPU from flat events kept there; returns a float32 tensor.
``n_bins(window, bin_size)``
    The number of time bins T.

Definitions (shared by all three paths)
--------------------------------------
Sample b covers events ``offsets[s]:offsets[s+1]`` with ``s = sample_idx[b]``. For each event

    t' = t - t_offset[b]                      (float64; t_offset defaults to 0)
    k  = floor(t' / bin_size)                 (float64 division, then floor: ``bin_index``)
    c  = unit // channel_factor               (integer channel down-sampling)

and the event is counted in ``out[b, k, c]`` when ``0 <= t' < window`` and ``k < T``; all
other events are dropped (a spike at exactly ``t' = window`` is dropped, a spike at exactly a
bin edge ``t' = j * bin_size`` goes to bin j when the float64 quotient is exactly j).
``T = n_bins(window, bin_size)`` = ``round(window / bin_size)`` when that ratio is an integer up
to 1e-9 relative error (e.g. 1 s / 2 ms = 500), else ``ceil(window / bin_size)``.
``C = ceil(n_channels / channel_factor)``: channel c pools the ``channel_factor`` units
``c*f .. c*f+f-1`` (e.g. 700 units / 7 = 100 channels). ``binary=True`` stores 1 where the
count is > 0 (docs/design.md §5: counts, or binary).

Output dtype: counts are exact integers in float32 (the default) and in uint8. A uint8 cell holds
at most ``UINT8_MAX_COUNT`` = 255 spikes; a count above it is not wrapped and not saturated:
:class:`CountOverflowError` (a ``ValueError``) names the first sample where it happens, so a
uint8 result, when one is returned, always equals the float32 one. Binary frames never overflow.
SHD's 2 ms bins hold one or two spikes per unit, so uint8 counts fail only with wide bins pooled
over many units (``channel_factor``).

Times are float64 seconds (cast SHD's float16 before calling). Spikes need not be sorted.
A unit outside ``0..n_channels-1`` or a NaN time is an error (``ValueError`` naming the first
offending entry of ``sample_idx``) rather than being dropped silently.

Threading: unless ``NUMBA_THREADING_LAYER`` is set, Numba's ``workqueue`` layer is used for the
parallel kernel. The OpenMP layer keeps its worker threads busy-waiting after every call; when
binning runs batch after batch between training steps, those spinning threads take the cores
from torch (measured: two training processes on 2 cores ran 20x slower with OpenMP than with
workqueue, 62 s vs 3 s per epoch).
"""
from __future__ import annotations

import math

import numba
import numpy as np

if numba.config.THREADING_LAYER == "default":  # the user did not choose one (see module docstring)
    numba.config.THREADING_LAYER = "workqueue"

__all__ = ["bin_events", "bin_events_numpy", "bin_events_torch", "n_bins", "bin_index",
           "CountOverflowError", "UINT8_MAX_COUNT"]

#: Output dtypes of :func:`bin_events` / :func:`bin_events_numpy`.
_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8))
_DTYPE_NAMES = ("float32", "uint8")
#: The largest count a uint8 cell holds; more raises :class:`CountOverflowError`.
UINT8_MAX_COUNT = 255


class CountOverflowError(ValueError):
    """A (time bin, channel) cell holds more spikes than the requested uint8 output can count."""


def n_bins(window: float, bin_size: float) -> int:
    """Number of time bins T covering ``[0, window)`` (see module docstring)."""
    if not (math.isfinite(bin_size) and bin_size > 0):
        raise ValueError(f"bin_size must be a positive number of seconds, got {bin_size}")
    if not (math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number of seconds, got {window}")
    ratio = window / bin_size
    r = round(ratio)
    if r >= 1 and abs(ratio - r) <= 1e-9 * max(1.0, ratio):
        return int(r)
    return int(math.ceil(ratio))


@numba.njit(cache=True, inline="always")
def bin_index(t_shifted: float, bin_size: float) -> int:
    """floor(t' / bin_size) in float64: the single definition of the bin of a spike."""
    return int(math.floor(t_shifted / bin_size))


def _check_args(times, units, offsets, sample_idx, bin_size, window, n_channels,
                channel_factor, t_offset):
    times = np.ascontiguousarray(times, dtype=np.float64)
    units = np.ascontiguousarray(units)
    if not np.issubdtype(units.dtype, np.integer):
        raise ValueError(f"units must be integers, got dtype {units.dtype}")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    sample_idx = np.ascontiguousarray(np.atleast_1d(sample_idx), dtype=np.int64)
    if times.ndim != 1 or units.shape != times.shape:
        raise ValueError(
            f"times and units must be flat arrays of equal length, got {times.shape} and "
            f"{units.shape}"
        )
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(times) \
            or (np.diff(offsets) < 0).any():
        raise ValueError(
            f"offsets must be non-decreasing, start at 0 and end at len(times)={len(times)}"
        )
    n_samples = len(offsets) - 1
    if sample_idx.ndim != 1:
        raise ValueError(f"sample_idx must be one-dimensional, got shape {sample_idx.shape}")
    if sample_idx.size and (sample_idx.min() < 0 or sample_idx.max() >= n_samples):
        bad = int(np.argmax((sample_idx < 0) | (sample_idx >= n_samples)))
        raise ValueError(
            f"sample_idx[{bad}] = {sample_idx[bad]} is outside 0..{n_samples - 1}"
        )
    if int(channel_factor) != channel_factor or channel_factor < 1:
        raise ValueError(f"channel_factor must be a positive integer, got {channel_factor}")
    if int(n_channels) != n_channels or n_channels < 1:
        raise ValueError(f"n_channels must be a positive integer, got {n_channels}")
    n_t = n_bins(float(window), float(bin_size))
    n_c = -(-int(n_channels) // int(channel_factor))
    b = len(sample_idx)
    if t_offset is None:
        toff = np.zeros(b, dtype=np.float64)
    else:
        toff = np.ascontiguousarray(np.broadcast_to(np.asarray(t_offset, np.float64), (b,)))
        if not np.isfinite(toff).all():
            raise ValueError("t_offset must be finite")
    return times, units, offsets, sample_idx, n_t, n_c, toff


def _raise_bad(bad: np.ndarray, sample_idx: np.ndarray, n_channels: int) -> None:
    if bad.any():
        b = int(np.argmax(bad > 0))
        raise ValueError(
            f"sample {sample_idx[b]} (entry {b} of sample_idx) has a unit outside "
            f"0..{n_channels - 1} or a NaN spike time"
        )


@numba.njit(cache=True, inline="always")
def _bin_index_fast(t_shifted: float, bin_size: float, inv_bin: float) -> int:
    """:func:`bin_index` for ``t_shifted >= 0``, mostly without a division (exactly equal).

    ``q = t' * fl(1/bin)`` differs from the exact ``t'/bin`` by at most 2.1 ulp of q, and
    ``fl(t'/bin)`` by at most 0.5 ulp, so the two lie within ``3e-16 * q`` of each other. When
    q is farther than ``1e-15 * (q + 1)`` from every integer, no integer separates them and
    ``floor(q) == floor(fl(t'/bin))``; otherwise (spikes on or next to a bin edge) the float64
    division of :func:`bin_index` decides.
    """
    q = t_shifted * inv_bin
    k = int(q)                      # q >= 0: truncation is floor
    if abs((q - k) - 0.5) > 0.5 - 1e-15 * (q + 1.0):
        return bin_index(t_shifted, bin_size)
    return k


@numba.njit(parallel=True, cache=True)
def _bin_kernel(times, units, offsets, sample_idx, bin_size, window, n_t, n_c, n_channels, factor,
                binary, cap, t_offset, out, bad, over):
    # out: [B, T * C] view of the caller's [B, T, C] buffer; every sample zeroes and fills its own
    # row (one contiguous slab), so the zeroing is parallel and the slab is still in cache when
    # the spikes land in it.
    inv_bin = 1.0 / bin_size
    for b in numba.prange(sample_idx.shape[0]):
        row = out[b]
        row[:] = 0
        s = sample_idx[b]
        toff = t_offset[b]
        n_bad = 0
        n_over = 0
        for e in range(offsets[s], offsets[s + 1]):
            t = times[e] - toff
            u = units[e]
            if u < 0 or u >= n_channels or t != t:
                n_bad += 1
                continue
            if t < 0.0 or t >= window:
                continue
            k = _bin_index_fast(t, bin_size, inv_bin)
            if k >= n_t:
                continue
            i = k * n_c + (u if factor == 1 else u // factor)   # skip the integer division
            if binary:
                row[i] = 1
            else:
                v = row[i]
                if cap > 0 and v >= cap:
                    n_over += 1       # the cell is full: counted as an error, never wrapped
                else:
                    row[i] = v + 1
        bad[b] = n_bad
        over[b] = n_over


def _out_dtype(dtype, out) -> np.dtype:
    """The output dtype from ``dtype=`` and ``out=`` (see :func:`bin_events`)."""
    if dtype is None:
        return np.dtype(np.float32) if out is None or not isinstance(out, np.ndarray) \
            else out.dtype
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a numpy dtype, one of {_DTYPE_NAMES}, got {dtype!r}") \
            from None
    if dt not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPE_NAMES}, got {dt}")
    return dt


def _check_out(out, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """``out`` validated against the result's shape and dtype; a fresh buffer when None."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array of shape {shape} and dtype {dtype}, got "
                         f"{type(out).__name__}")
    if out.dtype not in _DTYPES:
        raise ValueError(f"out must have dtype {_DTYPE_NAMES[0]} or {_DTYPE_NAMES[1]}, got "
                         f"{out.dtype}")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype} but dtype={dtype} was requested; pass a "
                         f"buffer of dtype {dtype} or leave dtype=None to use the buffer's")
    if out.shape != shape:
        raise ValueError(f"out must have shape (len(sample_idx), T, C) = {shape} for these "
                         f"arguments, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous (e.g. np.empty({shape}, np.{dtype})), got a "
                         f"non-contiguous array (strides {out.strides})")
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")
    return out


def _raise_overflow(over: np.ndarray, sample_idx: np.ndarray) -> None:
    if over.any():
        b = int(np.argmax(over > 0))
        raise CountOverflowError(
            f"sample {sample_idx[b]} (entry {b} of sample_idx) has more than "
            f"{UINT8_MAX_COUNT} spikes in one (time bin, channel) cell, which dtype=uint8 "
            f"cannot count; use dtype=np.float32 for counts, or binary=True"
        )


def bin_events(times, units, offsets, sample_idx, bin_size: float, window: float,
               n_channels: int, channel_factor: int = 1, binary: bool = False,
               t_offset=None, *, out: np.ndarray | None = None, dtype=None) -> np.ndarray:
    """Numba fast path: [len(sample_idx), T, C] frames; see the module docstring.

    ``dtype``: ``np.float32`` (default) or ``np.uint8`` (binary frames, or counts of at most
    255 per cell). ``out``: a C-contiguous buffer of exactly that shape and dtype to fill and
    return instead of allocating one (``dtype=None`` takes the buffer's dtype). Its previous
    contents do not matter: each sample's slab is zeroed inside the parallel loop, just before
    its spikes are counted. Reusing one buffer batch after batch avoids allocating and
    page-faulting a fresh array per call, which costs more than the binning itself.

    uint8 counts never wrap: a cell that would exceed 255 raises :class:`CountOverflowError`
    (a ``ValueError``) naming the sample (``out`` is then partly written).
    """
    times, units, offsets, sample_idx, n_t, n_c, toff = _check_args(
        times, units, offsets, sample_idx, bin_size, window, n_channels, channel_factor,
        t_offset)
    dt = _out_dtype(dtype, out)
    out = _check_out(out, (len(sample_idx), n_t, n_c), dt)
    bad = np.zeros(len(sample_idx), dtype=np.int64)
    over = np.zeros(len(sample_idx), dtype=np.int64)
    cap = float(UINT8_MAX_COUNT) if dt == np.uint8 else 0.0
    if len(sample_idx):
        _bin_kernel(times, units, offsets, sample_idx, float(bin_size), float(window), n_t, n_c,
                    int(n_channels), int(channel_factor), bool(binary), cap, toff,
                    out.reshape(len(sample_idx), n_t * n_c), bad, over)
    _raise_bad(bad, sample_idx, int(n_channels))
    _raise_overflow(over, sample_idx)
    return out


def bin_events_numpy(times, units, offsets, sample_idx, bin_size: float, window: float,
                     n_channels: int, channel_factor: int = 1, binary: bool = False,
                     t_offset=None, *, dtype=None) -> np.ndarray:
    """Plain numpy reference of :func:`bin_events` (same result, bit for bit, in the same
    ``dtype``, with the same :class:`CountOverflowError` for uint8 counts above 255)."""
    times, units, offsets, sample_idx, n_t, n_c, toff = _check_args(
        times, units, offsets, sample_idx, bin_size, window, n_channels, channel_factor,
        t_offset)
    dt = _out_dtype(dtype, None)
    b_count = len(sample_idx)
    counts = np.diff(offsets)[sample_idx]
    starts = offsets[:-1][sample_idx]
    row = np.repeat(np.arange(b_count, dtype=np.int64), counts)
    ev = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) \
        + np.arange(counts.sum(), dtype=np.int64)
    t = times[ev] - toff[row]
    u = units[ev].astype(np.int64)
    invalid = (u < 0) | (u >= n_channels) | np.isnan(t)
    bad = np.bincount(row[invalid], minlength=b_count)
    _raise_bad(bad, sample_idx, int(n_channels))
    keep = (t >= 0.0) & (t < window)
    k = np.floor(t[keep] / bin_size).astype(np.int64)
    row, c = row[keep], u[keep] // channel_factor
    inside = k < n_t
    flat = (row[inside] * n_t + k[inside]) * n_c + c[inside]
    counts = np.bincount(flat, minlength=b_count * n_t * n_c).reshape(b_count, n_t * n_c)
    if binary:
        counts = counts > 0
    elif dt == np.uint8:
        _raise_overflow((counts > UINT8_MAX_COUNT).any(axis=1), sample_idx)
    return counts.astype(dt).reshape(b_count, n_t, n_c)


def bin_events_torch(times, units, offsets, sample_idx, bin_size: float, window: float,
                     n_channels: int, channel_factor: int = 1, binary: bool = False,
                     t_offset=None, device=None):
    """Torch version of :func:`bin_events`, on the device of ``times`` (or ``device``).

    Arguments may be numpy arrays or tensors; flat events already on the GPU are binned there
    without a host round trip. Times are float64 (the bin index is computed as
    floor(t'/bin_size) in float64 exactly like the other paths; IEEE division is correctly
    rounded on CPU and CUDA). Returns a float32 tensor [B, T, C].
    """
    import torch

    def as_t(x, dtype):
        if isinstance(x, torch.Tensor):
            return x.to(device=device or x.device, dtype=dtype)
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

    dev = device if device is not None else (
        times.device if isinstance(times, torch.Tensor) else torch.device("cpu"))
    t_all = as_t(times, torch.float64).to(dev)
    u_all = as_t(units, torch.int64).to(dev)
    off = as_t(offsets, torch.int64).to(dev)
    idx = as_t(np.atleast_1d(sample_idx) if not isinstance(sample_idx, torch.Tensor)
               else sample_idx, torch.int64).to(dev)
    n_samples = off.numel() - 1
    if t_all.ndim != 1 or u_all.shape != t_all.shape:
        raise ValueError("times and units must be flat tensors of equal length")
    if off.numel() < 1 or int(off[0]) != 0 or int(off[-1]) != t_all.numel():
        raise ValueError(
            f"offsets must start at 0 and end at len(times)={t_all.numel()}"
        )
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_samples):
        bad = int(torch.nonzero((idx < 0) | (idx >= n_samples))[0, 0])
        raise ValueError(f"sample_idx[{bad}] = {int(idx[bad])} is outside 0..{n_samples - 1}")
    if int(channel_factor) != channel_factor or channel_factor < 1:
        raise ValueError(f"channel_factor must be a positive integer, got {channel_factor}")
    n_t = n_bins(float(window), float(bin_size))
    n_c = -(-int(n_channels) // int(channel_factor))
    b_count = idx.numel()
    counts = off[1:][idx] - off[:-1][idx]
    starts = off[:-1][idx]
    row = torch.repeat_interleave(torch.arange(b_count, device=dev), counts)
    first = torch.cumsum(counts, 0) - counts
    ev = torch.arange(int(counts.sum()), device=dev) + torch.repeat_interleave(
        starts - first, counts)
    if t_offset is None:
        toff = torch.zeros(b_count, dtype=torch.float64, device=dev)
    else:
        toff = torch.as_tensor(np.asarray(t_offset, dtype=np.float64) if not isinstance(
            t_offset, torch.Tensor) else t_offset, dtype=torch.float64, device=dev)
        toff = toff.expand(b_count) if toff.ndim == 0 else toff
    t = t_all[ev] - toff[row]
    u = u_all[ev]
    invalid = (u < 0) | (u >= n_channels) | torch.isnan(t)
    if bool(invalid.any()):
        b = int(row[invalid][0])
        raise ValueError(
            f"sample {int(idx[b])} (entry {b} of sample_idx) has a unit outside "
            f"0..{n_channels - 1} or a NaN spike time"
        )
    keep = (t >= 0.0) & (t < window)
    k = torch.floor(t[keep] / bin_size).to(torch.int64)
    row, c = row[keep], u[keep] // channel_factor
    inside = k < n_t
    row, k, c = row[inside], k[inside], c[inside]
    out = torch.zeros((b_count, n_t, n_c), dtype=torch.float32, device=dev)
    ones = torch.ones(row.numel(), dtype=torch.float32, device=dev)
    out.index_put_((row, k, c), ones, accumulate=not binary)
    return out
