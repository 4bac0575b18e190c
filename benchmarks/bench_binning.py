"""Benchmark: binning SHD events into dense [B, T, C] frames.

Compares, on the same synthetic SHD events (``elm_neuro.data.synth``, float16-exact times,
sorted within samples as tonic needs):

* ``numba``  - :func:`elm_neuro.data.binning.bin_events` (parallel over samples),
* ``numpy``  - :func:`elm_neuro.data.binning.bin_events_numpy` (vectorised reference),
* ``torch``  - :func:`elm_neuro.data.binning.bin_events_torch` on CPU (and on CUDA if present),
* ``tonic``  - ``tonic.transforms.ToFrame(time_window=bin, start_time=0, end_time=window)``
  applied per sample to tonic's structured event arrays (built beforehand, not timed).

Every method bins the same samples in batches (default 64 samples, 2 ms bins, 1 s window,
700 channels, counts) and the outputs are checked for exact equality. Prints events/s,
samples/s and the speed ratios relative to tonic and numpy.

Usage: ``python benchmarks/bench_binning.py [--samples 512] [--batch 64] [--repeats 3]``
(tonic is installed by the ``test`` extra, ``pip install -e ".[test]"``, or ``[interop]``;
without it the tonic row is skipped).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from elm_neuro.data.binning import bin_events, bin_events_numpy, bin_events_torch
from elm_neuro.data.synth import generate_synthetic_events


def _time(fn, repeats):
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bin-ms", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    ev = generate_synthetic_events(args.samples, seed=args.seed)
    bin_size = args.bin_ms / 1000.0
    batches = [np.arange(s, min(s + args.batch, args.samples))
               for s in range(0, args.samples, args.batch)]
    n_events = int(ev.counts.sum())
    print(f"{args.samples} synthetic SHD samples, {n_events} events "
          f"({n_events / args.samples:.0f} per sample); bins {args.bin_ms} ms, window "
          f"{args.window} s, 700 channels, batches of {args.batch}; "
          f"numba threads {__import__('numba').get_num_threads()}, "
          f"torch threads {torch.get_num_threads()}")

    def run(fn):
        # checksum of every batch: exact equality is checked against numpy batch by batch
        return [fn(idx) for idx in batches]

    methods = {
        "numba": lambda idx: bin_events(ev.times, ev.units, ev.offsets, idx, bin_size,
                                        args.window, 700),
        "numpy": lambda idx: bin_events_numpy(ev.times, ev.units, ev.offsets, idx, bin_size,
                                              args.window, 700),
        "torch-cpu": lambda idx: bin_events_torch(ev.times, ev.units, ev.offsets, idx,
                                                  bin_size, args.window, 700).numpy(),
    }
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        t_d, u_d, o_d = (torch.from_numpy(ev.times).to(dev), torch.from_numpy(ev.units).to(dev),
                         torch.from_numpy(ev.offsets).to(dev))

        def cuda_bin(idx):
            out = bin_events_torch(t_d, u_d, o_d, torch.from_numpy(idx).to(dev), bin_size,
                                   args.window, 700)
            torch.cuda.synchronize()
            return out
        methods["torch-cuda"] = cuda_bin

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
                                            start_time=0, end_time=args.window * 1e6)
        methods["tonic"] = lambda idx: np.stack(
            [to_frame(structured[i])[:, 0, :] for i in idx]).astype(np.float32)
    except ImportError:
        print("tonic not installed: skipping the tonic ToFrame comparison")

    # warm-up (Numba compilation, CUDA context) outside the timings
    for fn in methods.values():
        fn(batches[0][:2])

    results = {}
    reference = None
    for name, fn in methods.items():
        sec, outs = _time(lambda: run(fn), args.repeats)
        outs = [o.cpu().numpy() if isinstance(o, torch.Tensor) else o for o in outs]
        if reference is None:
            reference = outs
            equal = True
        else:
            equal = all(np.array_equal(a, b) for a, b in zip(reference, outs))
        results[name] = sec
        print(f"{name:>10}: {sec * 1e3:9.1f} ms  {n_events / sec / 1e6:8.2f} M events/s  "
              f"{args.samples / sec:10.0f} samples/s  exact match with numba: {equal}")
        if not equal:
            raise SystemExit(f"{name} differs from the numba binning")
    base = results["numba"]
    for other in ("numpy", "tonic", "torch-cpu", "torch-cuda"):
        if other in results:
            print(f"numba speed-up over {other}: {results[other] / base:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
