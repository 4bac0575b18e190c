"""Recurrent LIF / adLIF network: fast paths vs reference, snntorch parity, budgets, Dale's law,
state continuation, determinism, presets and configuration errors."""
import math

import pytest
import snntorch as snn
import torch

from elm_neuro.networks.budget import closest_n, count_trainable
from elm_neuro.networks.elm_config import ELMNetworkConfig
from elm_neuro.networks.common import leaky_integrate
from elm_neuro.networks.lif_config import LIFNetworkConfig
from elm_neuro.networks.lif_layer import LIFLayer
from elm_neuro.networks.lif_network import LIFNetwork
from elm_neuro.networks.synapses import dense_map as dense_synapse_map
from elm_neuro.networks.lstm import LSTMConfig
from elm_neuro.networks.registry import preset_config
from elm_neuro.networks.registry import MODEL_FAMILIES, build_model, family_of
from elm_neuro.neurons.lif import LIFState

SMALL = dict(n_in=12, n=7, n_classes=3, n_synapses=9, rho=0.3, dt=1.0, tau_mem_min=2.0, tau_mem_max=8.0,
             tau_adapt_min=5.0, tau_adapt_max=20.0, current_gain="unit", weight_scale=3.0, readout="leaky",
             tau_out=4.0, readout_d_m=2, readout_d_tree=3, readout_d_brch=2, readout_tau_min=1.0,
             readout_tau_max=20.0, readout_rho=0.3, surrogate="atan", surrogate_slope=2.0)


def small(**kw) -> LIFNetworkConfig:
    return LIFNetworkConfig.make(**{**SMALL, **kw})


def spikes_in(bsz, steps, n_in, p=0.3, seed=0):
    return (torch.rand(bsz, steps, n_in, generator=torch.Generator().manual_seed(seed)) < p).float()


def _grads(module, loss):
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for n, p in module.named_parameters() if p.requires_grad],
                                allow_unused=True)
    return dict(zip(names, grads))


def _assert_grads_close(ga, gb):
    assert ga.keys() == gb.keys()
    for k in ga:
        a, b = ga[k], gb[k]
        assert a is not None and b is not None, k
        scale = max(float(b.abs().max()), 1.0)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale, msg=k)


# ----------------------------------------------------------------------------- fast == reference
LAYER_CASES = {
    "lif-subtract-dense": dict(synapse_impl="dense"),
    "lif-subtract-gather": dict(synapse_impl="gather"),
    "adlif-zero-refr-dale-dense": dict(neuron="adlif", reset="zero", refractory=2, dale=True,
                                       frac_inhibitory=0.3, detach_reset=False, synapse_impl="dense"),
    "adlif-leak-fixed-gather": dict(neuron="adlif", current_gain="leak", weight_scale=8.0, learn_tau=False,
                                    learn_adapt=False, synapse_impl="gather", surrogate="superspike",
                                    surrogate_slope=5.0),
    "lif-leak-gain-folded": dict(current_gain="leak", weight_scale=8.0, synapse_impl="dense"),
    "lif-dropout-train": dict(dropout_in=0.3, dropout_rec=0.4, reset_value=0.7, surrogate="fast_sigmoid",
                              surrogate_slope=10.0, surrogate_scale=0.5),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_fast_path_equals_reference(case):
    cfg = small(**LAYER_CASES[case])
    layer = LIFLayer(cfg.hidden, cfg.n_in, cfg.n, cfg.rho, seed=3, dropout_in=cfg.dropout_in,
                     dropout_rec=cfg.dropout_rec, synapse_impl=cfg.synapse_impl)
    layer.train(cfg.dropout_in > 0)
    x = spikes_in(3, 16, cfg.n_in)
    s0 = layer.initial_state(3)
    s0 = LIFState(torch.rand(3, cfg.n, generator=torch.Generator().manual_seed(9)), s0.s, s0.w, s0.ref)
    torch.manual_seed(11)
    fast = layer(x, s0)
    torch.manual_seed(11)
    ref = layer.forward_reference(x, s0)
    assert torch.equal(fast.s, ref.s)
    rate = float(fast.s.detach().mean())
    assert 0.05 < rate < 0.95, rate  # spikes, resets (and refractory periods) are exercised
    for a, b in zip(fast.state, ref.state):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    probe = torch.randn(fast.s.shape, generator=torch.Generator().manual_seed(2))
    probe_v = torch.randn(fast.state.v.shape, generator=torch.Generator().manual_seed(3))

    def loss(o):
        return (o.s * probe).sum() + (o.state.v * probe_v).sum()

    _assert_grads_close(_grads(layer, loss(fast)), _grads(layer, loss(ref)))


@pytest.mark.parametrize("impl", ["dense", "gather"])
@pytest.mark.parametrize("readout", ["elm", "leaky", "spiking"])
@pytest.mark.parametrize("neuron", ["lif", "adlif"])
def test_network_fast_path_equals_reference(readout, neuron, impl):
    cfg = small(readout=readout, neuron=neuron, dale=readout == "spiking", frac_inhibitory=0.25, synapse_impl=impl)
    net = LIFNetwork(cfg).eval()
    x = spikes_in(2, 14, cfg.n_in, seed=4)
    fast = net(x)
    ref = net(x, reference=True)
    torch.testing.assert_close(fast.logits, ref.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.regularizers["spike"], ref.regularizers["spike"])
    assert 0.05 < float(fast.regularizers["spike"].detach()) < 0.95
    probe = torch.randn(fast.logits.shape, generator=torch.Generator().manual_seed(5))
    _assert_grads_close(_grads(net, (fast.logits * probe).sum() + fast.regularizers["spike"]),
                        _grads(net, (ref.logits * probe).sum() + ref.regularizers["spike"]))


# ----------------------------------------------------------------------------- snntorch parity
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_layer_equals_snntorch_rleaky(reset):
    """Our layer on a connectome = snntorch RLeaky with the densified K-synapse weights, on the
    per-step path (traces) and in the fused engine."""
    cfg = small(reset=reset, refractory=1 if reset == "zero" else 0, rho=0.4)
    layer = LIFLayer(cfg.hidden, cfg.n_in, cfg.n, cfg.rho, seed=1, synapse_impl="gather").eval()
    x = spikes_in(2, 30, cfg.n_in, seed=8)
    ours = layer(x, record=True)
    with torch.no_grad():
        w_eff = layer.effective_weights()
        m_in = dense_synapse_map(layer.connectome, w_eff, 0, cfg.n_in)
        m_rec = dense_synapse_map(layer.connectome, w_eff, cfg.n_in, cfg.n_in + cfg.n)
        kappa = layer.params().kappa_m
    rl = snn.RLeaky(beta=kappa, threshold=cfg.threshold, linear_features=cfg.n, reset_mechanism=reset)
    with torch.no_grad():
        rl.recurrent.weight.copy_(m_rec.t())
        rl.recurrent.bias.zero_()
    spk, mem = rl.init_rleaky()
    mems, spks = [], []
    for x_t in x.unbind(1):
        spk, mem = rl(x_t @ m_in, spk, mem)
        mems.append(mem)
        spks.append(spk)
    assert torch.equal(ours.traces["spikes"], torch.stack(spks, 1).detach())
    torch.testing.assert_close(ours.traces["membrane"], torch.stack(mems, 1).detach(), rtol=0, atol=2e-6)
    assert 0.05 < float(ours.s.detach().mean()) < 0.95
    # the fused engine (the default path without record=True) gives snntorch's spikes and membrane too
    assert layer.engine == "fused"
    fused = layer(x)
    assert torch.equal(fused.s.detach(), torch.stack(spks, 1).detach())
    torch.testing.assert_close(fused.state.v.detach(), mem.detach(), rtol=0, atol=2e-6)


# ----------------------------------------------------------------------------- budgets
BUDGET_CASES = [
    ("preset", "lif-shd-adding", {}),
    ("preset", "adlif-shd-adding", {}),
    ("preset", "lif-iclr2024", {}),
    ("small", None, dict(readout="elm", neuron="adlif")),
    ("small", None, dict(readout="leaky", neuron="adlif", learn_adapt=False)),
    ("small", None, dict(readout="spiking", neuron="adlif", learn_tau=False)),
    ("small", None, dict(readout="spiking", neuron="lif", learn_tau=False, dale=True)),
    ("small", None, dict(readout="elm", readout_d_m=5, n=11)),
]


@pytest.mark.parametrize("kind,name,kw", BUDGET_CASES)
def test_budget_equals_trainable_parameters(kind, name, kw):
    cfg = preset_config(name, **kw) if kind == "preset" else small(**kw)
    b = cfg.budget()
    assert b.p == count_trainable(LIFNetwork(cfg))
    assert b.n == cfg.n and b.k_c == cfg.n_synapses


def test_budget_hand_values():
    # LIF, learnable tau: k_e 1; ELM readout as in the ELM Network: C (300 + 3*30 + 16) + C (C + 1)
    b = preset_config("lif-shd-adding").budget()
    assert b == (227, 1, 300, 227 * 301 + 19 * 406 + 19 * 20)
    b = preset_config("adlif-shd-adding").budget()
    assert b == (225, 4, 300, 225 * 304 + 19 * 406 + 19 * 20)
    # ICLR SNN: 481 hidden + 19 spiking outputs, 100 synapses + tau each: 500 * 101
    assert preset_config("lif-iclr2024").budget() == (481, 1, 100, 500 * 101)
    assert small(readout="leaky", n=7).budget().p == 7 * 10 + 3 * 10


def test_shd_adding_presets_match_elm_budget():
    target = ELMNetworkConfig().replace(**preset_config("shd-adding").to_dict()).budget().p
    assert target == 76551
    for name in ("lif-shd-adding", "adlif-shd-adding", "lstm-shd-adding"):
        cfg = preset_config(name)
        assert closest_n(lambda n: cfg.replace(n=n).budget().p, target) == cfg.n


@pytest.mark.parametrize("target", [20_000, 76_551, 250_000])
@pytest.mark.parametrize("make", [lambda: small(n_in=700, n_synapses=300, readout="elm", n_classes=19),
                                  lambda: preset_config("adlif-shd-adding"),
                                  lambda: preset_config("lif-iclr2024"),
                                  lambda: LSTMConfig()])
def test_closest_n_within_one_neuron(target, make):
    cfg = make()

    def p_of(n):
        return cfg.replace(n=n).budget().p

    n = closest_n(p_of, target)
    one_neuron = p_of(n + 1) - p_of(n)
    assert abs(p_of(n) - target) <= one_neuron
    assert abs(p_of(n) - target) <= min(abs(p_of(n + 1) - target), abs(p_of(n - 1) - target))


# ----------------------------------------------------------------------------- Dale's law
def test_dale_law_holds_after_optimiser_step():
    cfg = small(dale=True, frac_inhibitory=0.3, readout="spiking", n=10)
    net = LIFNetwork(cfg)
    assert int((net.hidden.sign < 0).sum()) == 3 and int((net.readout.sign < 0).sum()) == 1
    opt = torch.optim.SGD(net.parameters(), lr=50.0)
    x = spikes_in(2, 12, cfg.n_in, seed=6)
    for _ in range(2):
        out = net(x)
        loss = out.logits.sum() + out.regularizers["spike"] * 100
        opt.zero_grad()
        loss.backward()
        opt.step()
    for layer in (net.hidden, net.readout):
        w_eff = layer.effective_weights()
        assert bool((w_eff * layer.syn_sign >= 0).all())
        assert bool((layer.w < 0).any())  # raw weights went negative: relu keeps the sign right
        m_in = dense_synapse_map(layer.connectome, w_eff, 0, layer.n_in)
        m_rec = dense_synapse_map(layer.connectome, w_eff, layer.n_in, layer.n_in + layer.n)
        in_sign = torch.ones(layer.n_in) if layer is net.hidden else net.hidden.sign
        assert bool((m_in * in_sign[:, None] >= 0).all())
        assert bool((m_rec * layer.sign[:, None] >= 0).all())
    assert bool((net.hidden.sign[net.hidden.connectome[net.hidden.connectome >= cfg.n_in] - cfg.n_in] != 0).all())


def test_signed_weights_without_dale_take_both_signs():
    layer = LIFNetwork(small()).hidden
    w = layer.effective_weights()
    assert bool((w > 0).any()) and bool((w < 0).any())
    assert torch.equal(layer.sign, torch.ones(layer.n))


# ----------------------------------------------------------------------------- state, determinism
@pytest.mark.parametrize("kw", [dict(readout="elm"), dict(readout="leaky", neuron="adlif", refractory=2),
                                dict(readout="spiking", neuron="adlif", reset="zero", dale=True)])
def test_state_passed_back_continues_sequence(kw):
    net = LIFNetwork(small(**kw)).eval()
    x = spikes_in(2, 24, 12, seed=7)
    full = net(x)
    first = net(x[:, :10])
    second = net(x[:, 10:], state=first.state)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), full.logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(second.state.hidden.v, full.state.hidden.v)


def test_determinism_same_seed():
    x = spikes_in(2, 10, 12, seed=1)
    a, b = LIFNetwork(small(seed=5)), LIFNetwork(small(seed=5))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert torch.equal(a.eval()(x).logits, b.eval()(x).logits)
    c = LIFNetwork(small(seed=6))
    assert not torch.equal(a.hidden.connectome, c.hidden.connectome)
    assert not torch.equal(a.hidden.w, c.hidden.w)
    # construction does not touch the global RNG
    torch.manual_seed(0)
    r1 = torch.rand(3)
    torch.manual_seed(0)
    LIFNetwork(small(readout="elm"))
    assert torch.equal(torch.rand(3), r1)


# ----------------------------------------------------------------------------- records, regularizer
def test_record_traces_and_spike_regularizer():
    net = LIFNetwork(small(neuron="adlif", readout="spiking")).eval()
    x = spikes_in(2, 9, 12, seed=2)
    out = net(x, record=True)
    hid, ro = out.traces["hidden"], out.traces["readout"]
    for key in ("membrane", "spikes", "current", "adaptation"):
        assert hid[key].shape == (2, 9, 7)
        assert ro[key].shape == (2, 9, 3)
    assert torch.equal(ro["output"], out.logits.detach())
    total = hid["spikes"].sum() + ro["spikes"].sum()
    torch.testing.assert_close(out.regularizers["spike"], total / (2 * 9 * (7 + 3)))
    # spikes recorded are the threshold crossings of the recorded membrane
    assert torch.equal(hid["spikes"], (hid["membrane"] > 1.0).float())
    out2 = LIFNetwork(small(readout="elm")).eval()(x, record=True)
    torch.testing.assert_close(out2.regularizers["spike"], out2.traces["hidden"]["spikes"].mean())
    assert "adaptation" not in out2.traces["hidden"]
    assert out2.traces["readout"]["y"].shape == (2, 9, 3, 1)
    assert net(x).traces is None


@pytest.mark.parametrize("neuron", ["lif", "adlif"])
def test_recorded_current_is_the_synaptic_current(neuron):
    # with current_gain "leak" the LIF layer folds g into its weights; the trace still shows I_t
    cfg = small(neuron=neuron, current_gain="leak", weight_scale=8.0)
    layer = LIFNetwork(cfg).hidden.eval()
    x = spikes_in(2, 10, cfg.n_in, seed=5)
    out = layer(x, record=True)
    with torch.no_grad():
        w = layer.effective_weights()
        m_in = dense_synapse_map(layer.connectome, w, 0, cfg.n_in)
        m_rec = dense_synapse_map(layer.connectome, w, cfg.n_in, cfg.n_in + cfg.n)
        s_prev = torch.cat([torch.zeros(2, 1, cfg.n), out.traces["spikes"][:, :-1]], 1)
        expected = x @ m_in + s_prev @ m_rec
    torch.testing.assert_close(out.traces["current"], expected, rtol=1e-5, atol=1e-5)


def test_low_pass_spikes_hand_values():
    s = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 4, 1)
    o, last = leaky_integrate(s, torch.zeros(1, 1), 0.5)
    assert o.flatten().tolist() == [1.0, 0.5, 1.25, 1.625]
    assert last.item() == 1.625


def test_learnable_timescales():
    cfg = small(neuron="adlif")
    layer = LIFNetwork(cfg).hidden
    assert bool((layer.tau_m >= 2.0 - 1e-5).all()) and bool((layer.tau_m <= 8.0 + 1e-5).all())
    assert bool((layer.tau_w >= 5.0 - 1e-4).all()) and bool((layer.tau_w <= 20.0 + 1e-4).all())
    out = layer(spikes_in(2, 12, 12, seed=3))
    g = torch.autograd.grad(out.state.v.sum() + out.s.sum(), [layer.tau_m_theta, layer.tau_w_theta, layer.a, layer.b])
    assert all(bool((gi != 0).any()) for gi in g)
    fixed = LIFNetwork(small(neuron="adlif", learn_tau=False, learn_adapt=False)).hidden
    assert {n for n, _ in fixed.named_parameters()} == {"w"}
    torch.testing.assert_close(fixed.tau_m, layer.tau_m)  # same draw, same values


def test_one_hot_embedding():
    cfg = small(n_in=5, embedding="one_hot", embed_scale=2.0)
    out = LIFNetwork(cfg)(torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(0)))
    assert out.logits.shape == (2, 6, 3)


# ----------------------------------------------------------------------------- registry, presets
def test_registry_and_presets():
    assert {"lif", "adlif", "lstm"} <= set(MODEL_FAMILIES)
    assert family_of(preset_config("lif-shd-adding")) == "lif"
    assert family_of(preset_config("adlif-shd-adding", n=50)) == "adlif"
    assert family_of(preset_config("lstm-shd-adding")) == "lstm"
    assert family_of(ELMNetworkConfig()) == "elm"
    assert preset_config("lif-shd-adding", n=100).n == 100
    assert isinstance(build_model(small(neuron="adlif")), LIFNetwork)
    iclr = preset_config("lif-iclr2024")
    assert (iclr.n + iclr.n_classes, iclr.n_synapses, iclr.threshold, iclr.hidden.theta_reset, iclr.frac_inhibitory,
            iclr.tau_mem_min, iclr.tau_out, iclr.dt, iclr.rho, iclr.readout) == \
        (500, 100, 1.0, 0.9, 0.2, 25.0, 20.0, 2.0, 0.1, "spiking")
    assert math.isclose(iclr.weight_scale / math.sqrt(iclr.n_synapses), 0.03)
    cfg = small(neuron="adlif", dale=True)
    assert LIFNetworkConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown LIFNetworkConfig field"):
        cfg.replace(d_m=3)
    with pytest.raises(ValueError, match="unknown LIFNetworkConfig field"):
        LIFNetworkConfig.from_dict({"bogus": 1})


@pytest.mark.parametrize("field,value,match", [
    ("threshold", 0.0, "threshold"), ("threshold", -1.0, "threshold"),
    ("tau_mem_min", 0.0, "tau_mem_min"), ("tau_mem_max", -2.0, "tau_mem_max"),
    ("tau_adapt_min", 0.0, "tau_adapt_min"), ("tau_out", 0.0, "tau_out"), ("dt", 0.0, "dt"),
    ("frac_inhibitory", 1.5, "frac_inhibitory"), ("frac_inhibitory", -0.1, "frac_inhibitory"),
    ("surrogate", "sigmoid", "surrogate must be one of"), ("surrogate_slope", 0.0, "surrogate_slope"),
    ("neuron", "izhikevich", "neuron must be one of"), ("reset", "soft", "reset must be one of"),
    ("readout", "linear", "readout must be one of"), ("current_gain", "x", "current_gain"),
    ("refractory", -1, "refractory"), ("reset_value", 0.0, "reset_value"), ("rho", 1.2, "rho"),
    ("dropout_rec", 1.0, "dropout_rec"), ("n_synapses", 0, "n_synapses"), ("weight_scale", 0.0, "weight_scale"),
    ("synapse_impl", "sparse", "synapse_impl"), ("dale", 1, "dale"), ("readout_tau_max", 0.5, r"elm_readout.tau_min must be <= tau_max.*readout_tau_max=0.5"),
])
def test_bad_configuration_raises_naming_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        small(**{field: value})


def test_tau_range_order_checked():
    with pytest.raises(ValueError, match="tau_mem_min must be <= tau_mem_max"):
        small(tau_mem_min=10.0, tau_mem_max=5.0)
    with pytest.raises(ValueError, match="adapt_a_min must be <= adapt_a_max"):
        small(adapt_a_min=1.0, adapt_a_max=-1.0)


# ----------------------------------------------------------------------------- learning
@pytest.mark.parametrize("readout,dale", [("leaky", False), ("spiking", True)])
def test_network_learns_which_channel_group_is_active(readout, dale):
    """Surrogate gradients train the network: class = which half of the inputs fires more."""
    g = torch.Generator().manual_seed(0)

    def batch(b=32, t=20):
        y = torch.randint(0, 2, (b,), generator=g)
        p = torch.full((b, 12), 0.1)
        p[y == 0, :6] = 0.4
        p[y == 1, 6:] = 0.4
        return (torch.rand(b, t, 12, generator=g) < p[:, None, :]).float(), y

    net = LIFNetwork(small(n=16, n_classes=2, readout=readout, dale=dale))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses, accs = [], []
    for _ in range(70):
        x, y = batch()
        logits = net(x).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        accs.append((logits.argmax(-1) == y).float().mean().item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:5]) / 5
    assert sum(accs[-10:]) / 10 > 0.85
