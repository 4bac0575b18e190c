"""One ELM neuron, a few steps, against values computed by hand in numpy (docs/design.md §1)."""
import math

import numpy as np
import pytest
import torch

from elm_neuro.networks.elm_config import ELMLayerConfig
from elm_neuro.networks.elm_neuron import RoutedELMNeuron
from elm_neuro.neurons import elm as E
from elm_neuro.neurons.surrogate import fast_sigmoid_spike


def numpy_neuron(u, p, cfg, steps):
    """Plain numpy transcription of docs/design.md §1 for one neuron; u is [T, K]."""
    d_m, d_tree, d_brch = cfg.d_m, cfg.d_tree, cfg.d_brch
    taus = np.exp(np.linspace(math.log(cfg.tau_min), math.log(cfg.tau_max), d_m))
    kappa = np.exp(-cfg.dt / taus)
    if cfg.memory_mode == "ratio":
        gain = 1 - np.exp(-cfg.lambda_value * cfg.dt / taus)
    else:
        gain = cfg.lambda_value * (1 - kappa)
    w = {"relu": np.maximum(p["w_s"], 0), "abs": np.abs(p["w_s"]), "exp": np.exp(p["w_s"]), "none": p["w_s"]}[
        cfg.synapse_rect
    ]
    m = np.zeros(d_m)
    b = np.zeros(d_tree)
    h = np.zeros(cfg.d_o)
    out = []
    for t in range(steps):
        beta = np.array([cfg.input_scale * sum(w[k * d_brch + j] * u[t, k * d_brch + j] for j in range(d_brch))
                         for k in range(d_tree)])
        if cfg.branch_trace:
            b = math.exp(-cfg.dt / cfg.tau_b) * b + beta
            beta = b
        md = kappa * m
        hid = np.concatenate([beta, md])
        for i, (W, bb) in enumerate(zip(p["mlp_w"], p["mlp_b"])):
            hid = W @ hid + bb
            if i < len(p["mlp_w"]) - 1:
                hid = {"relu2": np.maximum(hid, 0) ** 2, "relu": np.maximum(hid, 0),
                       "silu": hid / (1 + np.exp(-hid))}[cfg.mlp_act]
        m = md + gain * 1.7159 * np.tanh(2 * hid / 3)
        rho = p["w_y"] @ m
        pp = rho
        if cfg.tau_r is not None:
            kr = math.exp(-cfg.dt / cfg.tau_r)
            h = kr * h + (1 - kr) * rho
            pp = rho - h
        y = pp + p["bias"]
        y = {"identity": y, "relu": np.maximum(y, 0), "spike": (y > 0).astype(float)}[cfg.output_act]
        out.append(y)
    return np.array(out), m


CASES = [
    dict(memory_mode="ratio"),
    dict(memory_mode="legacy"),
    dict(memory_mode="ratio", tau_r=None),
    dict(memory_mode="legacy", tau_r=3.0, branch_trace=True),
    dict(memory_mode="ratio", branch_trace=True, tau_r=None, output_act="identity", mlp_act="silu"),
    dict(memory_mode="ratio", mlp_layers=0, output_act="identity", synapse_rect="abs"),
    dict(memory_mode="legacy", mlp_layers=2, mlp_act="relu", synapse_rect="relu", d_o=3),
    dict(memory_mode="ratio", output_act="spike", synapse_rect="exp", dt=0.5),
]


@pytest.mark.parametrize("case", CASES)
def test_single_neuron_matches_hand_computation(case):
    base = dict(d_m=3, d_mlp=4, d_tree=2, d_brch=3, tau_min=2.0, tau_max=30.0, input_scale=2.0,
                tau_r=5.0, rho=0.0)
    cfg = ELMLayerConfig(**{**base, **case})
    neuron = RoutedELMNeuron(cfg, n_in=cfg.k, routing="none", seed=3)
    layer = neuron.layer
    rng = np.random.default_rng(0)
    with torch.no_grad():  # non-trivial values everywhere, the output bias included
        layer.bias.copy_(torch.tensor(rng.normal(0, 0.3, size=(1, cfg.d_o)), dtype=torch.float32))
    steps = 6
    u = rng.normal(size=(steps, cfg.k)).astype(np.float32)
    p = {
        "w_s": layer.w_s[0].detach().double().numpy(),
        "mlp_w": [w[0].detach().double().numpy() for w in layer.mlp_w],
        "mlp_b": [b[0].detach().double().numpy() for b in layer.mlp_b],
        "w_y": layer.w_y[0].detach().double().numpy(),
        "bias": layer.bias[0].detach().double().numpy(),
    }
    want, want_m = numpy_neuron(u.astype(np.float64), p, cfg, steps)
    out = neuron(torch.from_numpy(u)[None])
    assert out.y.shape == (1, steps, cfg.d_o)
    np.testing.assert_allclose(out.y[0].detach().numpy(), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.state.m[0, 0].detach().numpy(), want_m, rtol=1e-4, atol=1e-5)


def test_first_step_by_hand():
    """Two synapses on one branch, d_m = 1, every number written out."""
    cfg = ELMLayerConfig(d_m=1, d_mlp=1, d_tree=1, d_brch=2, tau_min=4.0, tau_max=4.0, input_scale=10.0,
                         tau_r=None, output_act="identity", rho=0.0)
    neuron = RoutedELMNeuron(cfg, n_in=2, routing="none")
    L = neuron.layer
    with torch.no_grad():
        L.w_s.copy_(torch.tensor([[0.5, -0.25]]))
        L.mlp_w[0].copy_(torch.tensor([[[0.1, 0.2]]]))  # hidden = 0.1*beta + 0.2*m~ + 0.3
        L.mlp_b[0].copy_(torch.tensor([[0.3]]))
        L.mlp_w[1].copy_(torch.tensor([[[2.0]]]))  # z = 2*relu(hidden)^2 - 1
        L.mlp_b[1].copy_(torch.tensor([[-1.0]]))
        L.w_y.copy_(torch.tensor([[[1.5]]]))
        L.bias.copy_(torch.tensor([[0.25]]))
    x = torch.tensor([[[1.0, 2.0], [2.0, 0.0]]])
    out = neuron(x)
    # step 1: beta = 10*(0.5*1 - 0.25*2) = 0; m~ = 0; hidden = 0.3; z = 2*0.09 - 1 = -0.82
    z1 = -0.82
    m1 = (1 - math.exp(-5 / 4)) * 1.7159 * math.tanh(2 * z1 / 3)
    y1 = 1.5 * m1 + 0.25
    # step 2: beta = 10*(0.5*2) = 10; m~ = exp(-1/4) m1; hidden = 1 + 0.2 m~ + 0.3
    md = math.exp(-0.25) * m1
    z2 = 2 * (1.0 + 0.2 * md + 0.3) ** 2 - 1
    m2 = md + (1 - math.exp(-5 / 4)) * 1.7159 * math.tanh(2 * z2 / 3)
    y2 = 1.5 * m2 + 0.25
    np.testing.assert_allclose(out.y[0, :, 0].detach().numpy(), [y1, y2], rtol=1e-6)


def test_fast_sigmoid_surrogate_gradient():
    x = torch.tensor([-0.5, -0.01, 0.0, 0.02, 1.0], requires_grad=True)
    y = fast_sigmoid_spike(x, 100.0)
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    y.sum().backward()
    want = 1.0 / (100.0 * x.detach().abs() + 1.0) ** 2
    torch.testing.assert_close(x.grad, want)


def test_timescales_log_spaced_and_learnable_bounds():
    taus = E.log_spaced_taus(1.0, 500.0, 10)
    assert taus[0].item() == pytest.approx(1.0) and taus[-1].item() == pytest.approx(500.0, rel=1e-6)
    ratios = taus[1:] / taus[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 500.0 ** (1 / 9)))
    lo, hi = E.tau_bounds(1.0, 500.0)
    assert (lo, hi) == pytest.approx((0.1, 500.0 * math.sqrt(10)))
    back = E.theta_to_tau(E.tau_to_theta(taus, lo, hi), lo, hi)
    torch.testing.assert_close(back, taus, rtol=1e-5, atol=1e-5)
    # the end units lie strictly inside (lo, hi): the sigmoid's gradient is not zero there
    theta = E.tau_to_theta(taus, lo, hi)
    assert torch.isfinite(theta).all()
    assert (torch.sigmoid(theta) * (1 - torch.sigmoid(theta))).min() > 1e-4


def test_learnable_tau_receives_gradient_and_starts_log_spaced():
    cfg = ELMLayerConfig(d_m=4, d_tree=2, d_brch=2, learn_tau=True, rho=0.0, tau_min=1.0, tau_max=100.0)
    neuron = RoutedELMNeuron(cfg, n_in=4, routing="none")
    torch.testing.assert_close(neuron.layer.tau_m[0], E.log_spaced_taus(1.0, 100.0, 4), rtol=1e-5, atol=1e-5)
    out = neuron(torch.randn(2, 5, 4))
    out.y.sum().backward()
    assert neuron.layer.tau_theta.grad is not None
    assert neuron.layer.tau_theta.grad.abs().sum() > 0


def test_random_routing_indices_in_range_and_seeded():
    cfg = ELMLayerConfig(d_m=2, d_tree=3, d_brch=4, rho=0.0)
    a = RoutedELMNeuron(cfg, n_in=7, routing="random", seed=5)
    b = RoutedELMNeuron(cfg, n_in=7, routing="random", seed=5)
    c = RoutedELMNeuron(cfg, n_in=7, routing="random", seed=6)
    assert a.layer.connectome.shape == (1, 12)
    assert int(a.layer.connectome.max()) < 7 and int(a.layer.connectome.min()) >= 0
    assert torch.equal(a.layer.connectome, b.layer.connectome)
    assert not torch.equal(a.layer.connectome, c.layer.connectome)
    with pytest.raises(ValueError, match="routing 'none' needs n_in == K"):
        RoutedELMNeuron(cfg, n_in=7, routing="none")


def test_standalone_neuron_parameter_count():
    for mlp_layers, learn in [(1, False), (0, False), (1, True), (2, False)]:
        cfg = ELMLayerConfig(d_m=5, d_tree=4, d_brch=3, d_o=7, mlp_layers=mlp_layers, learn_tau=learn, rho=0.0)
        neuron = RoutedELMNeuron(cfg, n_in=20)
        k, d_m, d_mlp, d_tree, d_o = 12, 5, 10, 4, 7
        if mlp_layers == 1:
            mlp = d_mlp * (d_tree + d_m + 1) + d_m * (d_mlp + 1)
        elif mlp_layers == 0:
            mlp = d_m * (d_tree + d_m + 1)
        else:
            mlp = d_mlp * (d_tree + d_m + 1) + d_mlp * (d_mlp + 1) + d_m * (d_mlp + 1)
        want = k + mlp + d_o * (d_m + 1) + (d_m if learn else 0)
        assert sum(p.numel() for p in neuron.parameters()) == want
        assert cfg.params_per_neuron() == want
