"""Throughput of the ELM Network's engines (fused sequence engine vs the per-step path) against
an LSTM with the same number of trainable parameters.

    python benchmarks/bench_elm.py [--preset shd-adding --d-m 9 --n 57 --batch 8 --steps 1000
                                    --repeats 5 --device cpu --threads 1]
    python benchmarks/bench_elm.py --preset enwik8 --d-m 30 --n 440 --steps 100   # Enwik8 shapes

Prints the thread setting (``--threads``, else one per physical core as a training run chooses),
then, measured side by side (the models take turns, ``--repeats`` rounds, medians), samples/s of
the forward pass (train mode, building the graph) and of a whole training step (forward, loss,
backward, Adamax step) for ``elm[fused]``, ``elm[step]`` (the per-step reference path),
``elm[fused,gather]`` and torch.nn.LSTM (+ linear readout, sized by the budget solver to the ELM
network's P), and the ratios fused / step and to the LSTM. Times are the process's CPU time for
a one-thread CPU run (``--clock``; the machine may be shared), else wall-clock time.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from elm_neuro.networks.budget import closest_n, count_trainable
from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.training.runtime import runtime_section


class LSTMClassifier(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.out(self.lstm(x)[0])


def lstm_params(n_in: int, hidden: int, n_classes: int) -> int:
    return 4 * hidden * (n_in + hidden + 2) + n_classes * (hidden + 1)


def setup_threads(threads: int | None, device) -> str:
    """Apply the thread setting as a training run does (None: automatic, one per physical core;
    :mod:`elm_neuro.training.runtime`) and describe it for the benchmark output."""
    rt = runtime_section(threads, device)
    return (f"threads={rt['threads']} ({rt['threads_rule']}; interop {rt['interop_threads']}, "
            f"{rt['physical_cores']} physical cores) torch={rt['torch']}")


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def pick_clock(name: str | None, threads: int | None, device) -> str:
    """``cpu`` (the process's CPU time) for a one-thread CPU run, else ``wall``: on a machine
    shared with other jobs the CPU time of a one-thread run does not count the time the process
    waited for a core, which the wall clock does."""
    if name is not None:
        return name
    return "cpu" if threads == 1 and torch.device(device).type == "cpu" else "wall"


def timed_steps(model, x, y, opt, clock=time.perf_counter):
    """One forward (s) and one training step (s) of ``model`` on ``(x, y)``."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t0 = clock()
    out = model(x)
    sync()
    t1 = clock()
    logits = out.logits if hasattr(out, "logits") else out
    loss = torch.nn.functional.cross_entropy(logits[:, -1].float(), y)
    if hasattr(out, "regularizers") and "mlp" in out.regularizers:
        loss = loss + 0.002 * out.regularizers["mlp"] + 0.2 * out.regularizers["act"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sync()
    return t1 - t0, clock() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="shd-adding", choices=["shd-adding", "enwik8"])
    ap.add_argument("--d-m", type=int, default=9)
    ap.add_argument("--n", type=int, default=57)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: one per physical core, as a training run)")
    ap.add_argument("--no-step", action="store_true", help="leave out the (slow) per-step path")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default=None,
                    help="time measure (default: cpu = process CPU time with --threads 1 on the CPU, else wall)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    threads = setup_threads(args.threads, dev)
    clock_name = pick_clock(args.clock, args.threads, dev)
    clock = CLOCKS[clock_name]
    torch.manual_seed(0)
    n_in, n_cls = (700, 19) if args.preset == "shd-adding" else (204, 204)
    if args.preset == "shd-adding":
        x = (torch.rand(args.batch, args.steps, n_in, device=dev) < 0.01).float()
    else:
        x = torch.randint(0, n_in, (args.batch, args.steps), device=dev)
    y = torch.randint(0, n_cls, (args.batch,), device=dev)
    print(f"device={dev} {threads} preset={args.preset} B={args.batch} T={args.steps} clock={clock_name}")
    models = {}
    engines = [("elm[fused]", "fused", "dense"), ("elm[step]", "step", "dense"), ("elm[fused,gather]", "fused", "gather")]
    for name, engine, impl in engines:
        if args.no_step and engine == "step":
            continue
        models[name] = ELMNetwork.from_preset(args.preset, d_m=args.d_m, n=args.n, synapse_impl=impl,
                                              engine=engine).to(dev).train()
    p = count_trainable(models["elm[fused]"])
    hidden = closest_n(lambda h: lstm_params(n_in, h, n_cls), p)
    lstm = LSTMClassifier(n_in, hidden, n_cls).to(dev)
    assert count_trainable(lstm) == lstm_params(n_in, hidden, n_cls)
    if args.preset == "enwik8":
        emb = torch.nn.functional.one_hot(x, n_in).float()
        models["lstm"] = lambda _x, _m=lstm: _m(emb)
        opt_params = {"lstm": lstm.parameters()}
    else:
        models["lstm"] = lstm
        opt_params = {"lstm": lstm.parameters()}
    opts = {k: torch.optim.Adamax(opt_params.get(k, getattr(m, "parameters", lambda: [])()), lr=1e-4)
            for k, m in models.items()}
    times: dict = {k: ([], []) for k in models}
    for k, m in models.items():  # warm-up (compiles the engine's kernels)
        timed_steps(m, x, y, opts[k], clock)
    for _ in range(args.repeats):
        for k, m in models.items():
            fwd, step = timed_steps(m, x, y, opts[k], clock)
            times[k][0].append(fwd)
            times[k][1].append(step)
    print(f"ELM d_m={args.d_m} N={args.n}: P={p}; LSTM hidden={hidden}: P={count_trainable(lstm)}")
    rate = {k: (args.batch / statistics.median(f), args.batch / statistics.median(s)) for k, (f, s) in times.items()}
    print(f"{'model':18s} {'forward/s':>10s} {'train step/s':>13s} {'ms/step':>9s}   (samples/s; ms per training step)")
    for k, (f, s) in rate.items():
        print(f"{k:18s} {f:10.2f} {s:13.2f} {1000 * args.batch / s:9.1f}")
    if "elm[step]" in rate:
        f, s = rate["elm[fused]"], rate["elm[step]"]
        print(f"ratio fused / step: forward {f[0] / s[0]:.2f}x, training step {f[1] / s[1]:.2f}x")
    print(f"ratio fused / lstm (training step): {rate['elm[fused]'][1] / rate['lstm'][1]:.3f}")


if __name__ == "__main__":
    main()
