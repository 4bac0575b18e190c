"""Fidelity to docs/design.md §7: the regularisers per sample, float64 everywhere (gradcheck for every family),
and seeds that vary the network."""
import pytest
import torch
from torch.func import functional_call

from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.experiments.sweep import SweepGrid, plan_cells
from elm_neuro.networks import common
from elm_neuro.networks.registry import build_model, preset_config
from elm_neuro.neurons import lif as L
from elm_neuro.training.classification import train_classifier
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.model_setup import run_model_config
from elm_neuro.training.run import RunDir

N_IN = 6
# The LIF entries run the per-step path: the gradcheck swaps neurons.lif.fire for a smooth spike,
# which only that path calls (the fused LIF engine's own gradcheck: tests/test_engine_lif.py).
TINY = {
    "elm": ("shd-adding", dict(n_in=N_IN, n=3, n_classes=3, d_m=2, d_tree=2, d_brch=2, rho=0.5)),
    "elm-gather": ("shd-adding", dict(n_in=N_IN, n=3, n_classes=3, d_m=2, d_tree=2, d_brch=2, rho=0.5,
                                      synapse_impl="gather", branch_trace=True, learn_tau=True)),
    "elm-neuron": ("elm-neuron-shd-adding", dict(n_in=N_IN, n_classes=3, d_m=2, d_tree=2, d_brch=2)),
    "lif": ("lif-shd-adding", dict(n_in=N_IN, n=4, n_classes=3, n_synapses=4, rho=0.5, readout_d_tree=2,
                                   readout_d_brch=2, weight_scale=3.0, detach_reset=False, engine="step")),
    "adlif-spiking": ("lif-iclr2024", dict(n_in=N_IN, n=4, n_classes=3, n_synapses=4, neuron="adlif",
                                           refractory=1, weight_scale=3.0, dropout_in=0.2, dropout_rec=0.2,
                                           detach_reset=False, engine="step")),
    "lif-leaky": ("lif-shd-adding", dict(n_in=N_IN, n=4, n_classes=3, n_synapses=4, readout="leaky",
                                         reset="zero", synapse_impl="gather", detach_reset=False, engine="step")),
    "lstm": ("lstm-shd-adding", dict(n_in=N_IN, n=3, n_classes=3, dropout_in=0.2)),
}


def inputs(bsz=2, steps=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(bsz, steps, N_IN, generator=g) < 0.5).to(dtype)


# --------------------------------------------------------------------------- 1. per-sample regulariser
@pytest.mark.parametrize("name,impl", [("shd-adding", "dense"), ("shd-adding", "gather"), ("elm-neuron-shd-adding", None)])
def test_mlp_regulariser_is_the_mean_of_per_sample_values(name, impl):
    kw = dict(n_in=N_IN, n_classes=3, d_m=3, d_tree=2, d_brch=2)
    if impl is not None:
        kw.update(n=4, rho=0.5, synapse_impl=impl)
    net = build_model(preset_config(name, **kw)).double().eval()
    # samples of very different density: the batch-inside-the-square value is then smaller
    x = torch.cat([inputs(1, 30, seed=1) * 0, inputs(1, 30, seed=2), torch.ones(1, 30, N_IN, dtype=torch.float64)])
    out = net(x, record=True)
    singles = [net(x[i:i + 1]).regularizers for i in range(3)]
    for key in out.regularizers:
        mean_single = torch.stack([s[key] for s in singles]).mean()
        torch.testing.assert_close(out.regularizers[key], mean_single, rtol=1e-13, atol=1e-15)
    # by hand from the recorded MLP outputs z [B, T, N, d_m]
    z = (out.traces["hidden"] if "hidden" in out.traces else out.traces)["z"].abs()
    per_sample = z.mean(dim=(1, 3)).square().mean(dim=1)
    torch.testing.assert_close(out.regularizers["mlp"], per_sample.mean(), rtol=1e-13, atol=0)
    inside = z.mean(dim=(0, 1, 3)).square().mean()
    assert float(out.regularizers["mlp"].detach()) > float(inside) * 1.01


# --------------------------------------------------------------------------- 2. float64 and gradcheck
def _smooth_fire(v, threshold, surrogate, slope, scale):
    """A smooth stand-in for the spike (gradcheck needs a differentiable forward)."""
    return torch.sigmoid(4.0 * (v - threshold))


@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("train", [False, True])
def test_gradcheck_float64(family, train, monkeypatch):
    """Every family's backward equals finite differences of its forward in float64, in eval mode
    and in train mode with a fixed dropout mask, with respect to the input and every parameter.
    The spike's Heaviside has no derivative (its surrogate is checked in test_surrogate.py), so
    spiking networks are checked with a smooth stand-in spike; everything else (membranes,
    resets, adaptation, refractory counters, timescales, readouts, dropout) is the real code.
    The reset signal is not detached here (``detach_reset=False``): a detached reset is by design
    not the derivative of the forward."""
    monkeypatch.setattr(L, "fire", _smooth_fire)
    preset, kw = TINY[family]
    net = build_model(preset_config(preset, **kw)).double().train(train)
    names = [n for n, p in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    x = inputs(2, 4, seed=3).requires_grad_(True)

    def f(x, *ps):
        with torch.random.fork_rng():
            torch.manual_seed(11)  # the same dropout masks at every call
            out = functional_call(net, dict(zip(names, ps)), (x,))
        return out.logits, *out.regularizers.values()

    logits = f(x, *params)[0]
    assert logits.dtype == torch.float64 and logits.shape == (2, 4, 3)
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("preset", ["shd-adding", "enwik8", "lif-shd-adding", "lstm-enwik8", "elm-neuron-shd"])
def test_state_follows_parameters_dtype(preset):
    small = dict(n_in=N_IN, n_classes=3) if "enwik8" not in preset else dict(n_in=5, n_classes=5)
    if preset in ("shd-adding", "enwik8"):
        small.update(n=3, d_m=2, d_tree=2, d_brch=2)
    elif preset == "lif-shd-adding":
        small.update(n=3, n_synapses=3, readout_d_tree=2, readout_d_brch=2)
    elif preset == "lstm-enwik8":
        small.update(n=3)
    else:
        small.update(d_m=2, d_tree=2, d_brch=3)
    net = build_model(preset_config(preset, **small)).double()
    x = torch.randint(0, 5, (2, 4)) if "enwik8" in preset else inputs(2, 4)
    out = net(x)
    leaves = [t for t in torch.utils._pytree.tree_leaves(out.state) if isinstance(t, torch.Tensor)]
    assert leaves and all(t.dtype == torch.float64 for t in leaves)
    assert out.logits.dtype == torch.float64
    again = net(x, out.state)  # a float64 state continues the sequence
    assert again.logits.dtype == torch.float64
    assert common.embed(x, net.cfg.embedding, 1.0, net.cfg.n_in, dtype=torch.float64).dtype == torch.float64


# --------------------------------------------------------------------------- 3. seeds vary the network
def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_run_seed_drives_the_model_seed():
    def model(extra=None, **kw):
        overrides = dict(d_m=2, n=5, d_tree=3, d_brch=2, **(extra or {}))
        return build_model(run_model_config(TrainConfig(task="shd-adding", model_overrides=overrides, **kw), 20, 19))

    a, a2, b = model(seed=1), model(seed=1), model(seed=2)
    assert (a.cfg.seed, b.cfg.seed) == (1, 2)
    wa, wa2, wb = _weights(a), _weights(a2), _weights(b)
    assert all(torch.equal(wa[k], wa2[k]) for k in wa)
    assert not torch.equal(a.hidden.connectome, b.hidden.connectome)
    assert not torch.equal(wa["hidden.w_s"], wb["hidden.w_s"])
    # an explicit model seed wins: two runs with other data seeds, the same network
    c, d = model(seed=3, model_seed=7), model(seed=4, model_seed=7)
    assert c.cfg.seed == 7 and all(torch.equal(v, _weights(d)[k]) for k, v in _weights(c).items())
    assert model(extra={"seed": 9}, seed=5).cfg.seed == 9  # a model seed among the overrides, too
    with pytest.raises(ValueError, match="model_seed must be an integer >= 0 or None"):
        TrainConfig(model_seed=-1)


def test_sweep_seeds_are_different_networks():
    base = TrainConfig(task="shd-adding", model="lif", channel_factor=7, bin_ms=10.0,
                       model_overrides=dict(n_synapses=20, readout_d_tree=4, readout_d_brch=5))
    cells = plan_cells(SweepGrid(base=base, axis="d_m", values=None, budgets=[8000], seeds=[0, 1]))
    nets = [build_model(run_model_config(c.config, 100, 19)) for c in cells]
    assert [n.cfg.seed for n in nets] == [0, 1]
    assert nets[0].cfg.n == nets[1].cfg.n
    assert not torch.equal(nets[0].hidden.connectome, nets[1].hidden.connectome)
    assert not torch.equal(nets[0].hidden.w, nets[1].hidden.w)


def test_config_json_records_both_seeds(tmp_path):
    data = tmp_path / "shd"
    write_synthetic_shd(data, 40, 20, seed=1)
    cfg = TrainConfig(task="shd", data_dir=str(data), device="cpu", epochs=1, batches_per_epoch=2, batch_size=4,
                      valid_batches=1, test_batches=1, bin_ms=100.0, channel_factor=70, warmup=1, log_every=1,
                      model_overrides=dict(d_m=2, n=3, d_tree=2, d_brch=2), seed=3)
    train_classifier(tmp_path / "run", cfg, progress=False)
    conf = RunDir(tmp_path / "run").read_config()
    assert conf["train"]["seed"] == 3 and conf["train"]["model_seed"] is None
    assert conf["model"]["config"]["seed"] == 3
