"""Forward+backward speed of our LIF / adLIF networks against snntorch RLeaky at equal N, like for like.

SHD-Adding shapes (B 8, T 1000, 700 input channels), measured side by side:

    python benchmarks/bench_lif.py [--threads 1 --batch 8 --steps 1000 --repeats 5 --device cpu --skip-step --gather]

snntorch (the reference) is installed by the ``test`` extra: ``pip install -e ".[test]"``. Without
it the benchmark still runs: it says snntorch is missing and leaves out the snntorch models and the
ratios (benchmarks/gpu_check.sh on a GPU machine that has no snntorch; carry its wheel there to compare).

Every model is timed once per round, the models interleaved within each round (so that a busy,
shared machine slows them alike), and the median over ``--repeats`` rounds is reported; one warm-up
pass each first (Numba compiles there). One pass = forward over [B, T, 700] Bernoulli(0.01) spikes,
loss = sum of the last step's outputs, backward. Models (training mode, so dropout is on where the
preset has it):

- ``lif``: ``LIFNetwork.from_preset("lif-shd-adding")`` (N 227 LIF neurons, K 300 synapses, rho
  0.25, the docs/design.md §3 ELM readout + Linear(C, C); P = 76421), default engines: the fused LIF engine
  for the hidden layer, the fused ELM engine for the readout;
- ``lif[step]``: the same network on the per-step path (``engine="step"``), the reference;
- ``lif[gather]`` (with ``--gather``): the same network with its synapses through ``embedding_bag``
  (``synapse_impl="gather"``, for layers too large for dense maps; slow on the CPU);
- ``adlif``: the adLIF preset (N 225), fused;
- ``lif-leaky``: the LIF preset with the leaky readout (C leaky integrators on K synapses);
- ``lif-hidden``: the LIF preset's hidden layer alone (its spikes are the output);
- ``snntorch+elm``: ``Linear(700, N)`` -> ``snntorch.RLeaky`` (all-to-all ``Linear(N, N)``, the
  same beta per neuron, reset by subtraction, its default surrogate) -> *our* ELM readout layer
  + Linear(C, C), the very modules of ``lif``'s readout: the same readout on both sides;
- ``snntorch+leaky``: the same snntorch hidden layer -> our leaky readout (``lif-leaky``'s);
- ``snntorch-hidden``: the snntorch hidden layer alone (both without readout);
- ``snntorch``: the snntorch hidden layer -> Linear(N, C) (snntorch's own tutorial form).

Like-for-like ratios printed: ``lif / snntorch+elm`` (the same ELM readout on both sides),
``lif-leaky / snntorch+leaky`` (the same leaky readout on both sides) and ``lif-hidden /
snntorch-hidden`` (both without readout), against the issue's targets (3x on one CPU thread, 50x on
a GPU). The
snntorch hidden layer is dense (700 x N + N x N weights); ours has K = 300 synapses per neuron:
equal N, not equal P (the parameter counts are printed).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

try:
    import snntorch as snn
    SNNTORCH = f"snntorch {snn.__version__}"
except ImportError as exc:  # the reference is optional: our models are measured without it
    snn = None
    SNNTORCH = f"snntorch not importable ({type(exc).__name__}: {exc}): its models and the ratios are left out"

from elm_neuro.networks.budget import count_trainable
from elm_neuro.networks.lif_network import LIFNetwork

# the thread setting of a training run (benchmarks/ is on sys.path when run as a script)
from bench_elm import setup_threads

TARGETS = {"cpu": 3.0, "cuda": 50.0}  # targets: our LIF network vs snntorch RLeaky, one CPU thread / one GPU


class SnnTorchHidden(nn.Module):
    """``Linear(n_in, N)`` -> ``snntorch.RLeaky(N)`` per step; spikes [B, T, N]."""

    def __init__(self, n_in: int, n: int, beta: torch.Tensor) -> None:
        super().__init__()
        self.fc_in = nn.Linear(n_in, n)
        self.lif = snn.RLeaky(beta=beta, linear_features=n, reset_mechanism="subtract")

    def forward(self, x):
        cur = self.fc_in(x)  # all steps at once
        spk, mem = self.lif.init_rleaky()
        spikes = []
        for c in cur.unbind(1):
            spk, mem = self.lif(c, spk, mem)
            spikes.append(spk)
        return torch.stack(spikes, 1)


class WithReadout(nn.Module):
    """A hidden layer (returning spikes [B, T, N]) followed by one of our readouts: ``elm`` (an
    ELM readout layer + Linear(C, C), as :class:`LIFNetwork`), ``leaky`` (a
    :class:`~elm_neuro.networks.lif_layer.LeakyReadout`) or ``linear`` (Linear(N, C))."""

    def __init__(self, hidden: nn.Module, kind: str, readout: nn.Module, out: nn.Module | None = None) -> None:
        super().__init__()
        self.hidden, self.kind, self.readout, self.out = hidden, kind, readout, out

    def forward(self, x):
        s = self.hidden(x)
        if self.kind == "elm":
            return self.out(self.readout(s).y)
        if self.kind == "leaky":
            return self.readout(s)[0]
        return self.readout(s)


class HiddenOnly(nn.Module):
    """Our network's hidden layer alone: its spikes are the output."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.hidden = layer

    def forward(self, x):
        return self.hidden(x).s


def one_pass(model, x) -> None:
    out = model(x)
    logits = out.logits if hasattr(out, "logits") else out
    logits[:, -1].sum().backward()


def interleaved_medians(models: dict, x: torch.Tensor, repeats: int, max_s: float | None = None) -> dict:
    """Median seconds per forward+backward pass of every model, the models interleaved per round;
    with ``max_s``, no new round starts once the timed rounds have taken that long (one at least)."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for model in models.values():  # warm-up (compilation, allocator)
        one_pass(model, x)
    times = {name: [] for name in models}
    start = time.perf_counter()
    for r in range(repeats):
        if r and max_s is not None and time.perf_counter() - start > max_s:
            break
        for name, model in models.items():
            model.zero_grad(set_to_none=True)
            sync()
            t0 = time.perf_counter()
            one_pass(model, x)
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def build_models(dev, skip_step: bool, gather: bool) -> dict:
    """The models of the module docstring on ``dev`` in training mode (the snntorch ones only where
    snntorch imports)."""
    nets = {"lif": LIFNetwork.from_preset("lif-shd-adding")}
    if not skip_step:
        nets["lif[step]"] = LIFNetwork.from_preset("lif-shd-adding", engine="step")
    if gather:
        nets["lif[gather]"] = LIFNetwork.from_preset("lif-shd-adding", synapse_impl="gather")
    nets["adlif"] = LIFNetwork.from_preset("adlif-shd-adding")
    leaky = LIFNetwork.from_preset("lif-shd-adding", readout="leaky")
    nets["lif-leaky"] = leaky
    ref = nets["lif"]
    nets["lif-hidden"] = HiddenOnly(LIFNetwork.from_preset("lif-shd-adding").hidden)
    if snn is None:
        return {k: m.to(dev).train() for k, m in nets.items()}
    with torch.no_grad():
        beta = ref.hidden.params().kappa_m.clone()
    n, c = ref.cfg.n, ref.cfg.n_classes
    # snntorch hidden layers with our readouts (separate copies of the same modules and weights)
    elm_twin = LIFNetwork.from_preset("lif-shd-adding")
    leaky_twin = LIFNetwork.from_preset("lif-shd-adding", readout="leaky")
    torch.manual_seed(0)
    nets["snntorch+elm"] = WithReadout(SnnTorchHidden(700, n, beta), "elm", elm_twin.readout, elm_twin.out)
    nets["snntorch+leaky"] = WithReadout(SnnTorchHidden(700, n, beta), "leaky", leaky_twin.readout)
    nets["snntorch-hidden"] = SnnTorchHidden(700, n, beta)
    nets["snntorch"] = WithReadout(SnnTorchHidden(700, n, beta), "linear", nn.Linear(n, c))
    return {k: m.to(dev).train() for k, m in nets.items()}


def hidden_engines(models: dict) -> dict:
    """The hidden layer's engine of every model (``-`` for the snntorch ones)."""
    return {name: str(getattr(getattr(m, "hidden", None), "engine", "-")) for name, m in models.items()}


PAIRS = [("lif", "snntorch+elm", "the same ELM readout on both sides"),
         ("lif-leaky", "snntorch+leaky", "the same leaky readout on both sides"),
         ("lif-hidden", "snntorch-hidden", "both without readout")]


def print_results(models: dict, secs: dict, batch: int, device_type: str) -> list:
    """Print the table and the speed-ups of :func:`interleaved_medians`' ``secs``; return the
    like-for-like speed-ups as dicts (``ours``, ``theirs``, ``what``, ``ratio``, ``target``, ``met``)."""
    engines = hidden_engines(models)
    print(f"{'model':16s} {'params':>8s} {'hidden engine':>13s} {'ms/pass':>9s} {'samples/s':>10s}")
    for name, s in secs.items():
        params = count_trainable(models[name])
        print(f"{name:16s} {params:8d} {engines[name]:>13s} {1e3 * s:9.1f} {batch / s:10.2f}")
    target = TARGETS.get(device_type, TARGETS["cpu"])
    speedups = []
    if all(theirs in secs for _, theirs, _ in PAIRS):
        print("like-for-like speed-ups (snntorch time / ours):")
        for ours, theirs, what in PAIRS:
            ratio = secs[theirs] / secs[ours]
            speedups.append(dict(ours=ours, theirs=theirs, what=what, ratio=ratio, target=target, met=ratio >= target))
            verdict = "met" if ratio >= target else "not met"
            print(f"  {ours} vs {theirs} ({what}): {ratio:.2f}x  (target {target:g}x on {device_type}: {verdict})")
    else:
        print("like-for-like speed-ups: none (no snntorch)")
    if "lif[step]" in secs:
        print(f"  lif fused engines vs lif[step] (per-step path): {secs['lif[step]'] / secs['lif']:.2f}x")
    if "snntorch" in secs:
        print(f"  lif vs snntorch (Linear readout, not like for like): {secs['snntorch'] / secs['lif']:.2f}x")
    return speedups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000, help="time steps T (1000 for SHD-Adding)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds; the median over them is reported")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1, the issue's setting; 0: one per physical core)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-step", action="store_true", help="leave out the (slow) per-step reference path")
    ap.add_argument("--gather", action="store_true",
                    help="also measure lif[gather] (synapses through embedding_bag, for layers too large for dense "
                         "maps; some 10 s per pass on the CPU)")
    ap.add_argument("--skip-gather", action="store_true", help="the default (kept for older command lines)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    threads = setup_threads(args.threads or None, dev)
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.steps, 700, device=dev) < 0.01).float()
    print(f"device={dev} {threads} B={args.batch} T={args.steps} rounds={args.repeats} (interleaved, medians)")
    print(SNNTORCH if snn is None else f"reference: {SNNTORCH}")
    models = build_models(dev, args.skip_step, args.gather and not args.skip_gather)
    secs = interleaved_medians(models, x, args.repeats)
    print_results(models, secs, args.batch, dev.type)


if __name__ == "__main__":
    main()
