"""LSTM baseline: budget, nn.LSTM fast path vs the written-out equations, state, determinism."""
import pytest
import torch

from elm_neuro.networks.budget import closest_n, count_trainable
from elm_neuro.networks import lstm as lstm_module
from elm_neuro.networks.lstm import LSTMConfig, LSTMNetwork
from elm_neuro.networks.registry import preset_config
from elm_neuro.networks.registry import build_model, family_of


def small(**kw):
    return LSTMConfig(**{**dict(n_in=9, n=6, n_classes=4), **kw})


@pytest.mark.parametrize("kw", [dict(), dict(n=1), dict(n_in=700, n=26, n_classes=19), dict(n=13, n_classes=204)])
def test_budget_equals_trainable_parameters(kw):
    cfg = small(**kw)
    assert cfg.budget().p == count_trainable(LSTMNetwork(cfg))


def test_budget_hand_values():
    b = small().budget()
    # k_c = 4 (9 + 6) = 60, k_e = 8, P = 6 * 68 + 4 * 7 = 436
    assert b == (6, 8, 60, 436)
    assert preset_config("lstm-shd-adding").budget().p == 26 * (4 * 726 + 8) + 19 * 27


@pytest.mark.parametrize("target", [5_000, 76_551, 3_500_000])
def test_closest_n_sizes_lstm_to_target(target):
    cfg = small(n_in=204, n_classes=204)

    def p_of(n):
        return cfg.replace(n=n).budget().p

    n = closest_n(p_of, target)
    assert abs(p_of(n) - target) <= p_of(n + 1) - p_of(n)
    assert abs(p_of(n) - target) <= min(abs(p_of(n + 1) - target), abs(p_of(n - 1) - target))


def test_fast_path_equals_reference_outputs_and_gradients():
    net = LSTMNetwork(small(dropout_in=0.3)).train()
    x = torch.randn(3, 11, 9, generator=torch.Generator().manual_seed(0))
    s0 = net.initial_state(3)
    s0 = type(s0)(torch.randn(3, 6, generator=torch.Generator().manual_seed(1)), s0.c + 0.5)
    torch.manual_seed(3)
    fast = net(x, s0)
    torch.manual_seed(3)
    ref = net.forward_reference(x, s0)
    torch.testing.assert_close(fast.logits, ref.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.state.h, ref.state.h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.state.c, ref.state.c, rtol=1e-5, atol=1e-6)
    probe = torch.randn(fast.logits.shape, generator=torch.Generator().manual_seed(2))
    params = list(net.parameters())
    ga = torch.autograd.grad((fast.logits * probe).sum() + fast.state.c.sum(), params)
    gb = torch.autograd.grad((ref.logits * probe).sum() + ref.state.c.sum(), params)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_state_passed_back_continues_sequence():
    net = LSTMNetwork(small()).eval()
    x = torch.randn(2, 20, 9, generator=torch.Generator().manual_seed(4))
    full = net(x)
    a = net(x[:, :7])
    b = net(x[:, 7:], a.state)
    torch.testing.assert_close(torch.cat([a.logits, b.logits], 1), full.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.state.h, full.state.h)


def test_determinism_and_global_rng_untouched():
    torch.manual_seed(0)
    r = torch.rand(2)
    torch.manual_seed(0)
    a = LSTMNetwork(small(seed=3))
    assert torch.equal(torch.rand(2), r)
    b = LSTMNetwork(small(seed=3))
    c = LSTMNetwork(small(seed=4))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a.lstm.weight_ih_l0, c.lstm.weight_ih_l0)
    bound = 1 / 6 ** 0.5
    assert float(a.lstm.weight_hh_l0.detach().abs().max()) <= bound


def test_interface_record_embedding_registry():
    net = LSTMNetwork(small(embedding="one_hot", embed_scale=2.0))
    out = net(torch.randint(0, 9, (2, 5)), record=True)
    assert out.logits.shape == (2, 5, 4)
    assert out.regularizers == {}
    assert out.traces["hidden"]["h"].shape == (2, 5, 6)
    torch.testing.assert_close(out.traces["hidden"]["h"][:, -1], out.state.h.detach())
    assert family_of(small()) == "lstm"
    assert isinstance(build_model(small()), LSTMNetwork)
    assert preset_config("lstm-iclr2024").n == 250
    cfg = small(seed=2)
    assert LSTMConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("field,value", [("n", 0), ("n_in", 0), ("n_classes", 0), ("embedding", "bag"),
                                         ("dropout_in", 1.0), ("seed", -1), ("embed_scale", float("nan"))])
def test_bad_configuration_raises_naming_field(field, value):
    with pytest.raises(ValueError, match=field):
        small(**{field: value})
    with pytest.raises(ValueError, match="unknown LSTMConfig field"):
        small().replace(hidden=3)


def test_cpu_bf16_autocast_runs_the_lstm_in_float32_where_onednn_lacks_it(monkeypatch):
    """On a CPU without oneDNN's bfloat16 LSTM (forced here, whatever this CPU has) the LSTM runs in
    float32 under bfloat16 autocast: its hidden states equal the float32 network's exactly, and the
    readout is still autocast (bfloat16 logits); where the CPU has it, autocast runs it natively."""
    net = LSTMNetwork(LSTMConfig(n_in=6, n=5, n_classes=3, seed=2))
    x = torch.randn(2, 7, 6, generator=torch.Generator().manual_seed(0))
    plain = net(x, record=True)
    monkeypatch.setattr(lstm_module, "_bf16_lstm_supported", lambda: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, record=True)
    assert torch.equal(out.traces["hidden"]["h"], plain.traces["hidden"]["h"])
    assert out.logits.dtype == torch.bfloat16
    torch.testing.assert_close(out.logits.float(), plain.logits, rtol=0.02, atol=0.02)
    monkeypatch.setattr(lstm_module, "_bf16_lstm_supported", lambda: True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lstm_module._cpu_bf16_lstm_unsupported(x) is False
    assert lstm_module._cpu_bf16_lstm_unsupported(x) is False  # no autocast: nothing to work around
