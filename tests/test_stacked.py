"""``stack_models``: S ELM Networks of one configuration run as one block-diagonal network give the S
separate networks' logits, regularisers and gradients (float64, 1e-12), on the fused engine and on
the per-step path, for separate and for shared inputs; ``unstack`` gives the networks back."""
import pytest
import torch

import elm_neuro
from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.networks.lif_network import LIFNetwork
from elm_neuro.networks.stacked import StackedELMNetwork, stack_models

S = 3


def _nets(engine="auto", **over):
    kw = dict(n=7, d_m=3, n_in=20, n_classes=5, dropout_in=0.0, dropout_rec=0.0, engine=engine)
    kw.update(over)
    return [ELMNetwork.from_preset("shd-adding", seed=s, **kw).double() for s in range(S)]


def _loss(logits, reg):
    k = logits.shape[-1]
    w = torch.linspace(-1.0, 1.0, k, dtype=logits.dtype)
    return (logits * w).sum() + 3.0 * reg["mlp"] + 2.0 * reg["act"]


def _spikes(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.3).double()


def _compare(nets, x, shared=False):
    stacked = stack_models(nets)
    out = stacked(x)
    assert out.logits.shape == (S,) + tuple((x if shared else x[0]).shape[:2]) + (nets[0].cfg.n_classes,)
    assert out.regularizers["mlp"].shape == (S,) and out.regularizers["act"].shape == (S,)
    total = sum(_loss(out.logits[s], {k: v[s] for k, v in out.regularizers.items()}) for s in range(S))
    total.backward()
    for s, net in enumerate(nets):
        o = net(x if shared else x[s])
        _loss(o.logits, o.regularizers).backward()
        torch.testing.assert_close(out.logits[s], o.logits, rtol=1e-12, atol=1e-12)
        for key in ("mlp", "act"):
            torch.testing.assert_close(out.regularizers[key][s], o.regularizers[key], rtol=1e-12, atol=1e-12)
        pairs = list(zip(stacked.model_parameters(s), net.named_parameters()))
        assert len(pairs) == len(list(net.parameters()))
        for (p, idx), (name, q) in pairs:
            torch.testing.assert_close(p.grad[idx], q.grad, rtol=1e-12, atol=1e-12, msg=name)
    return stacked


@pytest.mark.parametrize("engine", ["fused", "step"])
def test_stacked_equals_separate_networks_outputs_and_gradients(engine):
    nets = _nets(engine)
    stacked = _compare(nets, _spikes((S, 4, 15, 20)))
    assert stacked.hidden.n == S * 7 and stacked.readout.n == S * 5
    # block-diagonal: no hidden neuron of model 1 reads a channel or neuron of another model
    conn = stacked.hidden.connectome[7:14]
    n_in = S * 20
    inputs, neurons = conn[conn < n_in], conn[conn >= n_in] - n_in
    assert bool(((inputs >= 20) & (inputs < 40)).all()) and bool(((neurons >= 7) & (neurons < 14)).all())


def test_one_input_shared_by_every_model():
    _compare(_nets(), _spikes((4, 15, 20), seed=1), shared=True)


def test_learnable_timescales_and_tokens():
    """Learnable memory timescales (stacked per neuron) and one-hot tokens, per model and shared."""
    nets = [ELMNetwork.from_preset("enwik8", n=6, d_m=3, d_tree=4, d_brch=3, n_in=11, n_classes=11, learn_tau=True,
                                   seed=s).double() for s in range(S)]
    g = torch.Generator().manual_seed(3)
    _compare(nets, torch.randint(0, 11, (S, 2, 9), generator=g))
    for net in nets:
        net.zero_grad()
    _compare(nets, torch.randint(0, 11, (2, 9), generator=g), shared=True)


def test_unstack_returns_the_trained_networks():
    nets = _nets()
    stacked = stack_models(nets)
    x = _spikes((S, 4, 12, 20), seed=2)
    opt = torch.optim.Adam(stacked.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        out = stacked(x)
        _loss(out.logits, {k: v.sum() for k, v in out.regularizers.items()}).backward()
        opt.step()
    back = stacked.unstack()
    assert [type(b) for b in back] == [ELMNetwork] * S
    out = stacked(x)
    for s, net in enumerate(back):
        torch.testing.assert_close(net(x[s]).logits, out.logits[s], rtol=1e-12, atol=1e-12)
        # the weights moved (the originals are untouched) and the connectome is the model's own
        assert not torch.equal(net.hidden.w_s, nets[s].hidden.w_s)
        assert torch.equal(net.hidden.connectome, nets[s].hidden.connectome)
    # the same steps on the separate networks (Adam is per element) reach the same weights
    for s, net in enumerate(nets):
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            o = net(x[s])
            _loss(o.logits, o.regularizers).backward()
            opt.step()
        for (name, a), b in zip(net.named_parameters(), back[s].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_bad_stacks_are_refused_by_name():
    with pytest.raises(ValueError, match="at least one"):
        stack_models([])
    with pytest.raises(TypeError, match="model 1 is a LIFNetwork"):
        stack_models([_nets()[0], LIFNetwork.from_preset("lif-shd-adding", n=5)])
    other = _nets(n=8)[1]
    with pytest.raises(ValueError, match=r"model 1 differs from model 0 in \['n'\]"):
        stack_models([_nets()[0], other])
    stacked = stack_models(_nets())
    with pytest.raises(ValueError, match=r"S = 3"):
        stacked(_spikes((2, 4, 15, 20)))


def test_public_name():
    assert elm_neuro.stack_models is stack_models
    assert isinstance(elm_neuro.stack_models(_nets()), StackedELMNetwork)
