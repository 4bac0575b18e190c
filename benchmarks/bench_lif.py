"""Forward+backward throughput of our recurrent LIF network against a snntorch RLeaky network of the
same size and the equal-budget ELM Network, on SHD-Adding shapes.

    python benchmarks/bench_lif.py [--steps 1000 --batch 8 --repeats 2 --device cpu --threads N]

snntorch (the parity reference) is installed by the ``test`` extra: ``pip install -e ".[test]"``.

Models (training mode, loss = sum of the last step's logits, one backward per batch):

- ``lif[dense|gather]``: ``LIFNetwork.from_preset("lif-shd-adding")`` (N 227 LIF neurons, K 300,
  rho 0.25, ELM readout; P = 76421), with each synapse kernel;
- ``adlif[dense]``: the adLIF preset (N 225);
- ``lif-leaky``: the LIF preset with the leaky readout (the hidden layer's own cost);
- ``snntorch``: Linear(700, N) -> snntorch.RLeaky(all-to-all Linear(N, N)) -> Linear(N, 19), the
  same N and beta, atan surrogate, reset by subtraction (dense weights: far more parameters);
- ``elm``: ``ELMNetwork.from_preset("shd-adding", d_m=9, n=57)`` (P = 76551).

Prints the thread setting (``--threads``, else one per physical core as a training run chooses),
then samples/s and the ratio of every model to ``lif[dense]``. Input: Bernoulli(0.01) spikes of
shape [B, T, 700]. On a CPU shared with other jobs use ``--threads 1``: with more OpenMP threads
than free cores the many small per-step ops stall at thread barriers (we saw 10-50x slowdowns).
The ``gather`` kernel (``embedding_bag``) is for layers too large for dense maps; its backward
is slow on CPU.
"""
from __future__ import annotations

import argparse

import snntorch as snn
import torch
import torch.nn as nn

from elm_neuro.networks.budget import count_trainable
from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.networks.lif_network import LIFNetwork

# the same thread setting and timing loop (benchmarks/ is on sys.path when run as a script)
from bench_elm import setup_threads, throughput


class SnnTorchRLIF(nn.Module):
    """Linear(n_in, N) -> RLeaky(N) -> Linear(N, C) per step; logits [B, T, C]."""

    def __init__(self, n_in: int, n: int, n_classes: int, beta: torch.Tensor) -> None:
        super().__init__()
        self.fc_in = nn.Linear(n_in, n)
        self.lif = snn.RLeaky(beta=beta, linear_features=n, reset_mechanism="subtract")
        self.fc_out = nn.Linear(n, n_classes)

    def forward(self, x):
        cur = self.fc_in(x)  # all steps at once
        spk, mem = self.lif.init_rleaky()
        spikes = []
        for c in cur.unbind(1):
            spk, mem = self.lif(c, spk, mem)
            spikes.append(spk)
        return self.fc_out(torch.stack(spikes, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000, help="time steps T (1000 for SHD-Adding)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: one per physical core, as a training run)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-gather", action="store_true", help="skip the gather kernel (slow on CPU)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    threads = setup_threads(args.threads, dev)
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.steps, 700, device=dev) < 0.01).float()
    print(f"device={dev} {threads} B={args.batch} T={args.steps} repeats={args.repeats}")
    models = {}
    impls = ("dense",) if args.skip_gather else ("dense", "gather")
    for impl in impls:
        models[f"lif[{impl}]"] = LIFNetwork.from_preset("lif-shd-adding", synapse_impl=impl)
    models["adlif[dense]"] = LIFNetwork.from_preset("adlif-shd-adding", synapse_impl="dense")
    models["lif-leaky"] = LIFNetwork.from_preset("lif-shd-adding", readout="leaky", synapse_impl="dense")
    ref = models["lif[dense]"]
    with torch.no_grad():
        beta = ref.hidden.params().kappa_m.clone()
    models["snntorch"] = SnnTorchRLIF(700, ref.cfg.n, ref.cfg.n_classes, beta)
    models["elm"] = ELMNetwork.from_preset("shd-adding", d_m=9, n=57)
    rates, params = {}, {}
    for name, model in models.items():
        model = model.to(dev).train()
        params[name] = count_trainable(model)
        rates[name] = throughput(model, x, args.repeats)
        print(f"  measured {name}", flush=True)
    base = rates["lif[dense]"]
    print(f"{'model':14s} {'params':>8s} {'samples/s':>10s} {'ratio to lif[dense]':>20s}")
    for name, r in rates.items():
        print(f"{name:14s} {params[name]:8d} {r:10.2f} {r / base:20.3f}")
    print(f"lif[dense] / snntorch = {base / rates['snntorch']:.3f}   lif[dense] / elm = {base / rates['elm']:.3f}")


if __name__ == "__main__":
    main()
