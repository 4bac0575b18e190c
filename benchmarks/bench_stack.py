"""Does stacking S seeds into one network (elm_neuro.stack_models) speed up training on the CPU?

    python benchmarks/bench_stack.py [--preset shd-adding --n 57 --d-m 9 --seeds 3 --batch 16
                                      --steps 250 --repeats 5 --threads 1]

Measures, side by side (interleaved rounds, medians of CPU time with one thread), one training step
(forward, loss, backward, Adam step) of S separate networks one after another and of the same S
networks stacked (one engine call per layer for all of them, inputs [S, B, T, C]), and prints the
ratio separate / stacked (above 1: stacking is faster). The sweep runs seeds as separate
processes (sweep workers); a stacked cell would replace S of them by one, so on 2 cores what
matters is this per-core ratio. Defaults: the spoken-digit studies' sizes (elm_neuro.defaults:
budget-tradeoff-spoken, 250 bins).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elm_neuro.networks.elm_network import ELMNetwork  # noqa: E402
from elm_neuro.networks.stacked import stack_models  # noqa: E402


def step_fn(model, params, x, y, stacked: bool):
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        out = model(x)
        if stacked:
            loss = torch.nn.functional.cross_entropy(out.logits[:, :, -1].flatten(0, 1), y.flatten())
        else:
            loss = torch.nn.functional.cross_entropy(out.logits[:, -1], y)
        loss.backward()
        opt.step()
    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="shd-adding")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--d-m", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=250, help="time steps per sample")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    nets = [ELMNetwork.from_preset(a.preset, n=a.n, d_m=a.d_m, seed=s) for s in range(a.seeds)]
    cfg = nets[0].cfg
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(a.seeds, a.batch, a.steps, cfg.n_in, generator=g) < 0.02).float()
    y = torch.randint(0, cfg.n_classes, (a.seeds, a.batch), generator=g)
    stacked = stack_models([ELMNetwork.from_preset(a.preset, n=a.n, d_m=a.d_m, seed=s) for s in range(a.seeds)])
    separate_steps = [step_fn(net, net.parameters(), x[s], y[s], False) for s, net in enumerate(nets)]
    stacked_step = step_fn(stacked, stacked.parameters(), x, y, True)
    for f in separate_steps + [stacked_step]:  # compile and warm up
        f()
    times = {"separate": [], "stacked": []}
    for _ in range(a.repeats):
        t0 = time.process_time()
        for f in separate_steps:
            f()
        times["separate"].append(time.process_time() - t0)
        t0 = time.process_time()
        stacked_step()
        times["stacked"].append(time.process_time() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.preset} n {a.n} d_m {a.d_m}, {a.seeds} seeds, batch {a.batch}, T {a.steps}, threads {a.threads}, "
          f"engine {nets[0].hidden.engine}")
    for k, v in med.items():
        print(f"  {k:9s} {1e3 * v:8.1f} ms per training step of all {a.seeds} models (median of {a.repeats})")
    print(f"  separate / stacked = {med['separate'] / med['stacked']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
