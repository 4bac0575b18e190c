"""Forward+backward throughput of the ELM Network (SHD-Adding preset) against an LSTM with the
same number of trainable parameters.

    python benchmarks/bench_elm.py [--d-m 9 --n 57 --batch 8 --steps 1000 --repeats 3 --device cpu]

Prints the thread setting (``--threads``, else one per physical core as a training run chooses),
then samples/s for each synapse kernel of the ELM Network and for torch.nn.LSTM (+ linear
readout, sized by the budget solver to the ELM network's P), and their ratio.
"""
from __future__ import annotations

import argparse
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


def throughput(model, x, repeats: int) -> float:
    def step():
        out = model(x)
        logits = out.logits if hasattr(out, "logits") else out
        logits[:, -1].sum().backward()

    step()  # warm-up
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return repeats * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-m", type=int, default=9)
    ap.add_argument("--n", type=int, default=57)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: one per physical core, as a training run)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    threads = setup_threads(args.threads, dev)
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.steps, 700, device=dev) < 0.01).float()
    print(f"device={dev} {threads} B={args.batch} T={args.steps}")
    rates = {}
    for impl in ("dense", "gather"):
        net = ELMNetwork.from_preset("shd-adding", d_m=args.d_m, n=args.n, synapse_impl=impl).to(dev).train()
        p = count_trainable(net)
        rates[f"elm[{impl}]"] = throughput(net, x, args.repeats)
    hidden = closest_n(lambda h: lstm_params(700, h, 19), p)
    lstm = LSTMClassifier(700, hidden, 19).to(dev)
    assert count_trainable(lstm) == lstm_params(700, hidden, 19)
    rates["lstm"] = throughput(lstm, x, args.repeats)
    print(f"ELM d_m={args.d_m} N={args.n}: P={p}; LSTM hidden={hidden}: P={count_trainable(lstm)}")
    for name, r in rates.items():
        print(f"{name:14s} {r:10.2f} samples/s   ratio to lstm {r / rates['lstm']:.3f}")


if __name__ == "__main__":
    main()
