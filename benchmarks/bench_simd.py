"""The explicit-SIMD blocks of the CPU engines (elm_neuro.networks.engines.simd) against what
they replace, at the SHD-Adding preset's shapes (N 57 neurons, MLP 18 x 39 and 9 x 18, B 8).

    python benchmarks/bench_simd.py [--steps 1000 --repeats 7]

Prints, measured side by side (interleaved rounds, medians, process CPU time, one thread):
- ``matvec``: the first MLP layer of every neuron for every step, as vector blocks over the
  samples vs one scalar-loop dot product per sample and unit (the kernel's form before);
- ``gram``: the first layer's weight gradient over T*B from the [N, T, features, B] blocks vs
  torch.bmm of the same numbers in GEMM layout ([N, features, T*B]).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from numba import njit

from elm_neuro.networks.engines.simd import gram, matvec

_FM = dict(fastmath={"reassoc", "contract", "nsz"}, error_model="numpy")


@njit(**_FM)
def mlp_vector_blocks(W, bias, x, out, steps):
    for _ in range(steps):
        for n in range(W.shape[0]):
            matvec(W[n], 0, W.shape[2], x[n], out[n], bias[n], x.shape[2])


@njit(**_FM)
def mlp_dot_products(W, bias, x_rows, out_rows, steps):
    for _ in range(steps):
        for n in range(W.shape[0]):
            for b in range(x_rows.shape[1]):
                for j in range(W.shape[1]):
                    acc = bias[n, j]
                    for i in range(W.shape[2]):
                        acc += W[n, j, i] * x_rows[n, b, i]
                    out_rows[n, b, j] = acc


@njit(**_FM)
def weight_grads(ga, inp, out):
    for n in range(ga.shape[0]):
        gram(ga[n], inp[n], out[n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, h, k, bsz, steps = 57, 18, 39, 8, args.steps
    f32 = np.float32
    W, bias = rng.standard_normal((n, h, k)).astype(f32), rng.standard_normal((n, h)).astype(f32)
    x = rng.standard_normal((n, k, bsz)).astype(f32)
    x_rows, out, out_rows = np.ascontiguousarray(x.transpose(0, 2, 1)), np.zeros((n, h, bsz), f32), np.zeros((n, bsz, h), f32)
    ga, inp = rng.standard_normal((n, steps, h, bsz)).astype(f32), rng.standard_normal((n, steps, k, bsz)).astype(f32)
    g_out = np.zeros((n, h, k), f32)
    ga_t = torch.from_numpy(np.ascontiguousarray(ga.transpose(0, 2, 1, 3)).reshape(n, h, steps * bsz))
    inp_t = torch.from_numpy(np.ascontiguousarray(inp.transpose(0, 2, 1, 3)).reshape(n, k, steps * bsz))
    cases = {
        "matvec (vector blocks)": lambda: mlp_vector_blocks(W, bias, x, out, steps),
        "matvec (dot products)": lambda: mlp_dot_products(W, bias, x_rows, out_rows, steps),
        "gram (vector blocks)": lambda: weight_grads(ga, inp, g_out),
        "gram (torch.bmm)": lambda: torch.bmm(ga_t, inp_t.transpose(1, 2)),
    }
    for fn in cases.values():  # compile, warm up
        fn()
    assert np.allclose(out.transpose(0, 2, 1), out_rows, rtol=1e-4, atol=1e-3)
    assert np.allclose(g_out, torch.bmm(ga_t, inp_t.transpose(1, 2)).numpy(), rtol=1e-3, atol=1e-1)
    times: dict = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"N={n} MLP {h}x{k} B={bsz} T={steps}, one thread, process CPU time, medians of {args.repeats}")
    for name, t in med.items():
        print(f"{name:26s} {1000 * t:8.1f} ms")
    print(f"ratio matvec: vector blocks / dot products {med['matvec (dot products)'] / med['matvec (vector blocks)']:.2f}x")
    print(f"ratio gram: vector blocks / torch.bmm {med['gram (torch.bmm)'] / med['gram (vector blocks)']:.2f}x")


if __name__ == "__main__":
    main()
