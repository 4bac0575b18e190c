"""Benchmark: binning SHD events into dense [B, T, C] frames, and the SHD-Adding batch path.

Compares, on the same synthetic SHD events (``elm_neuro.data.synth``, float16-exact times,
sorted within samples as tonic needs), in batches of ``--batch`` samples (default 64, 2 ms
bins, 1 s window, 700 channels, counts):

* ``numba u8 out``  - :func:`elm_neuro.data.binning.bin_events` into one reused uint8 buffer
  (``out=``), the way a loader that keeps its buffer calls it,
* ``numba f32 out`` - the same into a reused float32 buffer,
* ``numba f32 new`` - ``bin_events`` allocating a fresh float32 array per batch (the default),
* ``numpy``         - :func:`elm_neuro.data.binning.bin_events_numpy` (vectorised reference),
* ``torch-cpu``     - :func:`elm_neuro.data.binning.bin_events_torch` on the CPU (and
  ``torch-cuda`` on a GPU when present),
* ``tonic``         - ``tonic.transforms.ToFrame(time_window=bin, start_time=0, end_time=window)``
  applied per sample to tonic's structured event arrays in integer microseconds (built
  beforehand, not timed).

Every method first bins every batch once, untimed, and its output is compared with the numpy
reference for exact equality (printed as ``exact``). The headline, ``bin_events`` into a reused
uint8 buffer against tonic's ``ToFrame``, is timed first on its own, in ``--repeats`` rounds,
two ways: whole passes over all batches alternating (the buffer stays in cache from one batch to
the next, as when many batches are binned in a row), and batch by batch alternating (tonic's
work between two batches evicts the buffer and the events from the cache, as a training step
would). Either way the noise of a shared machine hits both methods alike; the speed-up is the
median of the per-round ratios. Then all methods
are timed the same way together (rotating order); there the float32 methods' large buffers
evict the uint8 buffer and the events from the cache between passes, so the uint8 row of that
table is slower than the headline.
One thread by default (``numba.set_num_threads`` and ``torch.set_num_threads``); ``--threads``
changes both. Times are the process's CPU time with one thread (``--clock``; on a shared machine
the wall clock of a 2 ms batch also counts the moments the process waited for a core, which the
200 ms batches of tonic average out and ours do not), else wall-clock time.

A second table times the SHD-Adding batch (``--pair-batches`` batches of ``--pair-batch`` pairs
of 2 x 500 steps x 700 channels, binary): the per-batch binning of every pair
(``SHDAdding.bin_pairs``, the path of every training step before the digit cache) against the
cached path (``SHDAdding.batch``: each pair's two rows of the split's uint8 digit cache copied
into a float32 batch), with exact equality.

Usage: ``python benchmarks/bench_binning.py [--samples 512] [--batch 64] [--repeats 7]
[--threads 1]`` (tonic is installed by the ``test`` extra, ``pip install -e ".[test]"``, or
``[interop]``; without it the tonic rows are skipped).
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import torch

from elm_neuro.data.binning import bin_events, bin_events_numpy, bin_events_torch
from elm_neuro.data.shd_adding import SHDAdding
from elm_neuro.data.synth import generate_synthetic_events

TARGET_VS_TONIC = 60.0


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter  # set by main from --clock


def _interleaved(methods: dict, passes: int) -> dict:
    """Seconds of ``passes`` rounds of every method (order rotated per round): name -> list."""
    names = list(methods)
    times = {n: [] for n in names}
    for r in range(passes):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = clock()
            methods[n]()
            times[n].append(clock() - t0)
    return times


def _side_by_side(ours, theirs, batches, rounds: int) -> dict:
    """Seconds per round of ``ours`` and ``theirs`` over all batches, timed batch by batch in
    alternating order (each batch binned by one right after the other)."""
    times = {"numba u8 out": [], "tonic": []}
    for r in range(rounds):
        a = b = 0.0
        for j, idx in enumerate(batches):
            order = (ours, theirs) if (r + j) % 2 == 0 else (theirs, ours)
            for fn in order:
                t0 = clock()
                fn(idx)
                dt = clock() - t0
                if fn is ours:
                    a += dt
                else:
                    b += dt
        times["numba u8 out"].append(a)
        times["tonic"].append(b)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--bin-ms", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pair-batch", type=int, default=8)
    ap.add_argument("--pair-batches", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default=None,
                    help="time measure (default: cpu = process CPU time with one thread, else wall)")
    args = ap.parse_args(argv)
    global clock
    clock_name = args.clock or ("cpu" if args.threads == 1 and not torch.cuda.is_available() else "wall")
    clock = CLOCKS[clock_name]
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)

    ev = generate_synthetic_events(args.samples, seed=args.seed)
    bin_size, window = args.bin_ms / 1000.0, args.window
    batches = [np.arange(s, min(s + args.batch, args.samples))
               for s in range(0, args.samples, args.batch)]
    n_events = int(ev.counts.sum())
    print(f"{args.samples} synthetic SHD samples, {n_events} events "
          f"({n_events / args.samples:.0f} per sample); bins {args.bin_ms} ms, window "
          f"{window} s, 700 channels, batches of {args.batch}; numba threads "
          f"{numba.get_num_threads()}, torch threads {torch.get_num_threads()}; "
          f"{args.repeats} interleaved rounds per table; clock {clock_name}")

    # ------------------------------------------------------------------ the SHD-Adding batch
    # first, before any binning method runs: those allocate and free 90 MB arrays, after which
    # every fresh large allocation in this process page-faults (a training process does not)
    task = SHDAdding(ev, np.arange(args.samples), fixed=True, n_batches=args.pair_batches,
                     batch_size=args.pair_batch, seed=0, bin_size=bin_size, digit_window=window)
    pairs = task.pairs()
    t0 = time.perf_counter()
    cache = task.binned()
    build = time.perf_counter() - t0
    k_all = range(task.n_batches)
    same = all(np.array_equal(task.batch(0, k, pairs)[0].numpy(),
                              task.bin_pairs(pairs[k * task.batch_size:(k + 1) * task.batch_size])[0])
               for k in k_all)
    pair_passes = {
        "per-batch binning": lambda: [task.bin_pairs(pairs[k * task.batch_size:
                                                           (k + 1) * task.batch_size])
                                      for k in k_all],
        "digit cache": lambda: [task.batch(0, k, pairs) for k in k_all],
    }
    pt = _interleaved(pair_passes, args.repeats)
    per = {n: float(np.median(v)) / task.n_batches for n, v in pt.items()}
    print(f"\nSHD-Adding batch of {task.batch_size} pairs x [{task.n_steps}, {task.n_channels}] "
          f"float32 (digit cache: {len(cache)} samples, {task.cache_nbytes / 1e6:.0f} MB uint8, "
          f"built once in {build * 1e3:.0f} ms):")
    for name, sec in per.items():
        print(f"{name:>18}: {sec * 1e3:7.2f} ms/batch")
    print(f"digit cache {per['per-batch binning'] / per['digit cache']:.1f}x faster than binning "
          f"per batch; exact equality: {same}")

    full = (args.batch, int(round(window / bin_size)), 700)
    u8_buf = np.empty(full, np.uint8)
    f32_buf = np.empty(full, np.float32)

    def numba_out(buf):
        def fn(idx):
            return bin_events(ev.times, ev.units, ev.offsets, idx, bin_size, window, 700,
                              out=buf[:len(idx)])
        return fn

    per_batch = {
        "numba u8 out": numba_out(u8_buf),
        "numba f32 out": numba_out(f32_buf),
        "numba f32 new": lambda idx: bin_events(ev.times, ev.units, ev.offsets, idx, bin_size,
                                                window, 700),
        "numpy": lambda idx: bin_events_numpy(ev.times, ev.units, ev.offsets, idx, bin_size,
                                              window, 700),
        "torch-cpu": lambda idx: bin_events_torch(ev.times, ev.units, ev.offsets, idx,
                                                  bin_size, window, 700),
    }
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        t_d, u_d, o_d = (torch.from_numpy(ev.times).to(dev), torch.from_numpy(ev.units).to(dev),
                         torch.from_numpy(ev.offsets).to(dev))

        def cuda_bin(idx):
            out = bin_events_torch(t_d, u_d, o_d, torch.from_numpy(idx).to(dev), bin_size,
                                   window, 700)
            torch.cuda.synchronize()
            return out
        per_batch["torch-cuda"] = cuda_bin
    try:
        import tonic

        dtype = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])
        structured = []
        for i in range(args.samples):
            t, u = ev.sample(i)
            s = np.zeros(len(t), dtype=dtype)
            s["t"], s["x"] = (t * 1e6).astype(np.int64), u  # tonic's SHD: integer microseconds
            structured.append(s)
        to_frame = tonic.transforms.ToFrame(sensor_size=(700, 1, 1),
                                            time_window=args.bin_ms * 1000.0,
                                            start_time=0, end_time=window * 1e6)
        per_batch["tonic"] = lambda idx: np.stack([to_frame(structured[i])[:, 0, :]
                                                   for i in idx])
    except ImportError:
        print("tonic not installed: skipping the tonic ToFrame comparison")

    # warm-up (Numba compilation for both dtypes, CUDA context) and exact equality, untimed
    exact = {name: True for name in per_batch}
    for idx in batches:
        ref = bin_events_numpy(ev.times, ev.units, ev.offsets, idx, bin_size, window, 700)
        for name, fn in per_batch.items():
            out = fn(idx)
            out = out.cpu().numpy() if isinstance(out, torch.Tensor) else out
            exact[name] &= bool(out.shape == ref.shape and np.array_equal(out, ref))

    passes = {name: (lambda fn=fn: [fn(idx) for idx in batches]) for name, fn in per_batch.items()}
    if "tonic" in passes:
        # the headline pair alone, side by side, two ways: whole passes alternating (the uint8
        # buffer stays in cache from batch to batch, as when binning many batches in a row), and
        # batch by batch alternating (tonic's work between two batches evicts the buffer and the
        # events, as a training step between batches would)
        pair_ways = {
            "pass by pass": _interleaved({n: passes[n] for n in ("numba u8 out", "tonic")},
                                         args.repeats),
            "batch by batch": _side_by_side(per_batch["numba u8 out"], per_batch["tonic"],
                                            batches, args.repeats),
        }
        print(f"\nbin_events (uint8, reused out=) vs tonic ToFrame, side by side, median of "
              f"{args.repeats} rounds (target >= {TARGET_VS_TONIC:.0f}x); exact equality with the "
              f"numpy reference: bin_events {exact['numba u8 out']}, tonic {exact['tonic']}")
        for way, pair in pair_ways.items():
            ratio = float(np.median(np.array(pair["tonic"]) / np.array(pair["numba u8 out"])))
            print(f"{way:>16}: {np.median(pair['numba u8 out']) * 1e3 / len(batches):6.2f} vs "
                  f"{np.median(pair['tonic']) * 1e3 / len(batches):6.1f} ms per batch of "
                  f"{args.batch}: {ratio:5.1f}x ({'met' if ratio >= TARGET_VS_TONIC else 'NOT met'})")
    times = _interleaved(passes, args.repeats)
    med = {n: float(np.median(v)) for n, v in times.items()}
    print(f"\nall methods, {args.repeats} interleaved rounds:\n{'method':>14} {'median ms/pass':>15} "
          f"{'ms/batch':>9} {'M events/s':>11} {'x tonic':>8}  exact")
    for name in per_batch:
        sec = med[name]
        vs = ""
        if "tonic" in times:
            vs = f"{float(np.median(np.array(times['tonic']) / np.array(times[name]))):7.1f}x"
        print(f"{name:>14} {sec * 1e3:15.1f} {sec * 1e3 / len(batches):9.2f} "
              f"{n_events / sec / 1e6:11.2f} {vs:>8}  {exact[name]}")

    return 0 if all(exact.values()) and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
