"""The vectorised ELM layer and network: kernels against the per-neuron reference, state,
determinism, dropout, connectome statistics (docs/design.md §2-3)."""
import dataclasses

import pytest
import torch

from elm_neuro.networks.elm_config import ELMLayerConfig
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.networks.common import detach_state
from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.wiring.connectome import random_connectome, recurrent_fraction

LAYER_CASES = [
    dict(),
    dict(memory_mode="legacy", branch_trace=True),
    dict(tau_r=None, output_act="identity", mlp_layers=0),
    dict(learn_tau=True, synapse_rect="relu", mlp_act="silu", rho=0.6),
    dict(output_act="spike", rho=0.5, mlp_layers=2),
]


def small_cfg(**kw):
    base = dict(d_m=3, d_tree=4, d_brch=3, rho=0.4, tau_min=1.0, tau_max=20.0, input_scale=2.0, tau_r=5.0)
    return ELMLayerConfig(**{**base, **kw})


def grads(layer):
    return {k: p.grad.clone() for k, p in layer.named_parameters()}


@pytest.mark.parametrize("case", LAYER_CASES)
def test_kernels_equal_per_neuron_reference(case):
    cfg = small_cfg(**case)
    torch.manual_seed(0)
    x = torch.randn(3, 12, 6)
    results = {}
    for impl in ("dense", "gather", "reference"):
        layer = ELMLayer(cfg, n_in=6, n=5, seed=4, synapse_impl="dense" if impl == "reference" else impl)
        out = layer.forward_reference(x) if impl == "reference" else layer(x)
        loss = (out.y * torch.linspace(-1, 1, out.y.shape[-1])).sum() + out.z_abs_mean.square().sum() \
            + out.state.m.sum()
        loss.backward()
        results[impl] = (out.y.detach(), out.state.m.detach(), out.z_abs_mean.detach(), grads(layer))
    ref = results["reference"]
    for impl in ("dense", "gather"):
        got = results[impl]
        torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-5)
        for name in ref[3]:
            torch.testing.assert_close(got[3][name], ref[3][name], rtol=1e-4, atol=1e-5, msg=f"{impl} grad {name}")


def test_dropout_masks_agree_between_kernels_in_training():
    cfg = small_cfg(dropout_in=0.3, dropout_rec=0.4)
    x = torch.randn(2, 8, 6)
    outs = []
    for impl in ("dense", "gather", "reference"):
        layer = ELMLayer(cfg, 6, 5, seed=1, synapse_impl="gather" if impl == "gather" else "dense").train()
        torch.manual_seed(11)
        outs.append((layer.forward_reference(x) if impl == "reference" else layer(x)).y)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[1], outs[2], rtol=1e-5, atol=1e-5)


def test_input_dropout_is_variational_and_off_in_eval():
    cfg = small_cfg(dropout_in=0.5, dropout_rec=0.0)
    layer = ELMLayer(cfg, 6, 5, seed=2).train()
    x = torch.randn(4, 9, 6)
    torch.manual_seed(3)
    mask_in, mask_rec = layer.draw_masks(x)
    assert mask_rec is None
    assert set(mask_in.unique().tolist()) <= {0.0, 2.0}
    torch.manual_seed(3)
    y_train = layer(x).y
    layer.eval()
    # training output == eval output on the input with one fixed mask over all steps
    torch.testing.assert_close(y_train, layer(x * mask_in[:, None, :]).y)
    # eval mode: no dropout, deterministic
    torch.testing.assert_close(layer(x).y, layer(x).y)
    nodrop = ELMLayer(dataclasses.replace(cfg, dropout_in=0.0), 6, 5, seed=2).eval()
    torch.testing.assert_close(layer(x).y, nodrop(x).y)


def test_state_passed_back_continues_sequence():
    net = ELMNetwork.from_preset("shd-adding", d_m=3, n=10, n_in=16, d_tree=4, d_brch=3, branch_trace=True).eval()
    x = (torch.rand(2, 30, 16) < 0.2).float()
    full = net(x)
    first = net(x[:, :13])
    second = net(x[:, 13:], detach_state(first.state))
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), full.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.state.hidden.m, full.state.hidden.m, rtol=1e-5, atol=1e-6)


def test_network_determinism_and_seed_dependence():
    kw = dict(d_m=2, n=12, n_in=20, d_tree=5, d_brch=2)
    a, b = ELMNetwork.from_preset("shd-adding", **kw), ELMNetwork.from_preset("shd-adding", **kw)
    c = ELMNetwork.from_preset("shd-adding", seed=1, **kw)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a.hidden.connectome, c.hidden.connectome)
    assert not torch.equal(a.hidden.w_s, c.hidden.w_s)
    x = (torch.rand(3, 15, 20) < 0.3).float()
    a.eval(), b.eval()
    assert torch.equal(a(x).logits, b(x).logits)


def test_state_dict_round_trips_connectome():
    kw = dict(d_m=2, n=12, n_in=20, d_tree=5, d_brch=2)
    a = ELMNetwork.from_preset("shd-adding", **kw)
    b = ELMNetwork.from_preset("shd-adding", seed=9, **kw)
    assert "hidden.connectome" in a.state_dict()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.hidden.connectome, b.hidden.connectome)
    x = (torch.rand(2, 10, 20) < 0.3).float()
    assert torch.equal(a.eval()(x).logits, b.eval()(x).logits)


def test_connectome_statistics():
    c = random_connectome(n_in=700, n=200, k=300, rho=0.25, seed=0)
    assert c.shape == (200, 300)  # fan-in exactly K
    assert int(c.min()) >= 0 and int(c.max()) < 900
    assert abs(recurrent_fraction(c, 700) - 0.25) < 0.01  # 60000 draws: sd ~ 0.0018
    rec = c[c >= 700] - 700
    inp = c[c < 700]
    # uniform over sources: every neuron and most channels get picked
    assert rec.unique().numel() == 200
    assert inp.unique().numel() > 690
    assert torch.equal(c, random_connectome(700, 200, 300, 0.25, seed=0))
    assert recurrent_fraction(random_connectome(10, 5, 50, 0.0, 1), 10) == 0.0
    assert recurrent_fraction(random_connectome(10, 5, 50, 1.0, 1), 10) == 1.0


def test_readout_layer_reads_hidden_of_same_step():
    net = ELMNetwork.from_preset("shd-adding", d_m=2, n=6, n_in=10, d_tree=3, d_brch=2, n_classes=4)
    assert int(net.readout.connectome.max()) < 6  # only hidden outputs, no recurrence
    assert net.readout.cfg.mlp_layers == 0 and net.readout.cfg.output_act == "identity"
    assert net.readout.cfg.tau_r is None and net.readout.cfg.d_m == 3
    net.eval()
    x = (torch.rand(1, 7, 10) < 0.4).float()
    out = net(x, record=True)
    # the readout layer run on the recorded hidden outputs reproduces the logits
    hid_y = out.traces["hidden"]["y"][..., 0]
    torch.testing.assert_close(net.out(net.readout(hid_y).y), out.logits)
    assert set(out.traces["hidden"]) == {"beta", "z", "m", "rho", "y"}
    assert out.traces["hidden"]["z"].shape == (1, 7, 6, 2)
    assert out.traces["hidden"]["beta"].shape == (1, 7, 6, 3)


def test_regularizers_match_definition():
    net = ELMNetwork.from_preset("shd-adding", d_m=2, n=6, n_in=10, d_tree=3, d_brch=2).eval()
    x = (torch.rand(2, 9, 10) < 0.4).float()
    out = net(x, record=True)
    z = out.traces["hidden"]["z"]
    a = out.traces["hidden"]["y"]
    # docs/design.md §7: per sample (mean over t and memory units, squared, mean over neurons), then the batch mean
    want_mlp = (z.abs().mean(dim=(1, 3)) ** 2).mean(dim=1).mean()
    want_act = torch.relu(a).mean()
    torch.testing.assert_close(out.regularizers["mlp"], want_mlp)
    torch.testing.assert_close(out.regularizers["act"], want_act)


def test_one_hot_embedding_and_token_errors():
    net = ELMNetwork.from_preset("enwik8", d_m=2, n=5, n_in=11, n_classes=11, d_tree=2, d_brch=3)
    out = net(torch.randint(0, 11, (2, 6)))
    assert out.logits.shape == (2, 6, 11)
    with pytest.raises(ValueError, match="tokens must lie in 0..10"):
        net(torch.tensor([[3, 11]]))
    with pytest.raises(ValueError, match="integer tokens"):
        net(torch.zeros(1, 2, 11))


def test_layer_input_shape_error():
    layer = ELMLayer(small_cfg(), 6, 5)
    with pytest.raises(ValueError, match=r"input must be \[B, T, n_in=6\]"):
        layer(torch.zeros(2, 3, 7))


def test_layer_on_sparse_spikes_equals_reference():
    cfg = small_cfg(rho=0.3)
    torch.manual_seed(5)
    x = (torch.rand(3, 15, 40) < 0.02).float()  # spike-like: the sparse input kernel runs
    res = []
    for ref in (False, True):
        layer = ELMLayer(cfg, n_in=40, n=6, seed=3, synapse_impl="dense")
        out = layer.forward_reference(x) if ref else layer(x)
        (out.y.sum() + out.state.m.square().sum()).backward()
        res.append((out.y.detach(), grads(layer)))
    torch.testing.assert_close(res[0][0], res[1][0], rtol=1e-5, atol=1e-5)
    for k in res[1][1]:
        torch.testing.assert_close(res[0][1][k], res[1][1][k], rtol=1e-4, atol=1e-5)


def test_sparse_inputs_under_bf16_autocast_take_the_dense_path():
    layer = ELMLayer(small_cfg(), n_in=40, n=6, seed=3, synapse_impl="dense")
    x = (torch.rand(2, 8, 40) < 0.02).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    out.y.float().sum().backward()
    assert torch.isfinite(layer.w_s.grad).all()
