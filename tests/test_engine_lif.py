"""The fused LIF / adLIF sequence engine: the Numba kernels equal the PyTorch reference of the kernel
contract (lif_contract); the fused layer and network equal the per-step path (spikes identical up
to the first spike that flips through rounding, every parameter gradient within the float32
rounding bound of tests/parity.py, 1e-10 in float64), with dropout, a carried-in state and T not a
multiple of anything; float64 gradcheck of the engine's backward; the leaky filter and the input
projection; engine choice, reasons and old configurations."""
import itertools
import math

import pytest
import torch

from elm_neuro import LIFNetwork
from elm_neuro.networks.lif_config import LIFLayerConfig, LIFNetworkConfig
from elm_neuro.networks.lif_layer import LeakyReadout, LIFLayer
from elm_neuro.networks.engines import leaky_scan as LS
from elm_neuro.networks.engines import lif_contract as C
from elm_neuro.networks.engines import lif_sequence as Q
from elm_neuro.neurons.lif import LIFState
from lif_engine_checks import assert_backend_equals_reference, kernel_problem, lif_spec
from parity import assert_all_close, assert_rounding_close

TORCH_REF = C.REFERENCE
NUMBA = Q.backend(torch.device("cpu"))


# --------------------------------------------------------------------------- kernel level
_spec = lif_spec


# every option that changes the kernel, each combined with others
KERNEL_SPECS = [_spec()] + [
    _spec(adaptive=ad, reset=rs, detach=dt, refractory=rf, has_gain=hg, surrogate=sg, recurrent=rc)
    for ad, rs, dt, rf, hg, sg, rc in [
        (True, 0, True, 0, True, 1, True), (True, 1, False, 2, False, 2, True), (False, 1, True, 3, True, 0, True),
        (False, 0, False, 0, True, 2, False), (True, 0, False, 1, True, 0, False), (False, 1, False, 0, False, 1, True),
        (True, 1, True, 2, True, 1, True)]]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", range(len(KERNEL_SPECS)))
def test_numba_kernels_equal_the_reference(case, dtype):
    spec = KERNEL_SPECS[case]
    problem, grads_in = kernel_problem(dtype, spec, seed=case)
    ref = assert_backend_equals_reference(NUMBA, problem, grads_in, spec, dtype)
    assert float(ref.s_all[:, 1:].mean()) > 0.05  # spikes (and resets) are exercised


@pytest.mark.parametrize("spec", [_spec(adaptive=True, reset=0, detach=False, refractory=2, has_gain=True),
                                  _spec(adaptive=True, reset=1, detach=False, refractory=0, has_gain=False),
                                  _spec(adaptive=False, reset=1, detach=False, refractory=1, has_gain=True)],
                         ids=["adlif-subtract-refr-gain", "adlif-zero", "lif-zero-refr-gain"])
def test_gradcheck_engine_below_threshold(spec):
    """float64 gradcheck of the Numba engine's backward (through the autograd Function): with a
    threshold no membrane reaches and a steep surrogate (sigma' ~ 1e-13), the sequence is a
    smooth (linear) function of every input, so the exact derivative is what the engine must
    give: of the currents, the recurrent map, every per-neuron constant and the carried state
    (spikes, refractory counters and resets enter through the initial state)."""
    spec = spec._replace(threshold=1e6, slope=1e6)
    (cur, mask, w0, s0), _ = kernel_problem(torch.float64, spec, steps=7, n=4, bsz=2, seed=3)
    diff = [cur, *w0, *s0[:3]]
    idx = [i for i, t in enumerate(diff) if t is not None]
    inputs = tuple(diff[i].clone().requires_grad_(True) for i in idx)

    def f(*xs):
        full = list(diff)
        for i, x in zip(idx, xs):
            full[i] = x
        c, w, s = full[0], C.Weights(*full[1:7]), C.State(*full[7:10], s0.ref)
        s_out, v_T, w_T, _ = Q.run(NUMBA, spec, mask, c, w, s)
        assert not bool(s_out.any())
        return (s_out, v_T, w_T) if spec.adaptive else (s_out, v_T)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


# --------------------------------------------------------------------------- layer level
SMALL = dict(n_synapses=9, rho=0.4, dt=1.0, tau_mem_min=2.0, tau_mem_max=8.0, tau_adapt_min=5.0, tau_adapt_max=20.0,
             current_gain="unit", weight_scale=3.0, surrogate="atan", surrogate_slope=2.0)
LAYER_CASES = {
    "lif-subtract-unit": dict(),
    "lif-leak-folded-gather": dict(current_gain="leak", weight_scale=8.0, synapse_impl="gather"),
    "lif-zero-refr-attached-fastsig": dict(reset="zero", refractory=2, detach_reset=False, surrogate="fast_sigmoid",
                                           surrogate_slope=10.0, surrogate_scale=0.5),
    "lif-dale-superspike-fixed-tau": dict(dale=True, frac_inhibitory=0.3, surrogate="superspike", surrogate_slope=5.0,
                                          learn_tau=False, reset_value=0.7),
    "adlif-subtract-leak": dict(neuron="adlif", current_gain="leak", weight_scale=8.0),
    "adlif-zero-refr-dale-attached": dict(neuron="adlif", reset="zero", refractory=1, dale=True, detach_reset=False),
    "adlif-fixed-adapt-gather": dict(neuron="adlif", learn_tau=False, learn_adapt=False, synapse_impl="gather",
                                     surrogate="fast_sigmoid", surrogate_slope=25.0),
}


def _layer(case, dtype, **extra):
    kw = {**SMALL, **LAYER_CASES[case], **extra}
    impl = kw.pop("synapse_impl", "dense")
    cfg = LIFLayerConfig(**kw)
    layer = LIFLayer(cfg, 12, 7, cfg.rho, seed=3, dropout_in=0.25, dropout_rec=0.3, synapse_impl=impl)
    return layer.to(dtype).train()


def _random_state(layer, bsz, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    st = layer.initial_state(bsz)
    return LIFState(torch.randn(st.v.shape, generator=g, dtype=dtype),
                    (torch.rand(st.s.shape, generator=g) < 0.4).to(dtype),
                    None if st.w is None else torch.randn(st.w.shape, generator=g, dtype=dtype),
                    None if st.ref is None else torch.randint(0, 3, st.ref.shape, generator=g).to(dtype))


def _first_flip(a: torch.Tensor, b: torch.Tensor) -> int:
    differ = (a != b).any(dim=0).any(dim=-1).nonzero().flatten()
    return int(differ[0]) if len(differ) else a.shape[1]


def _run_layer(layer, path, x, state, probe, probe_v, backend=None):
    torch.manual_seed(5)  # the same dropout masks on both paths
    out = layer.forward_fused(x, state, backend=backend) if path == "fused" else layer.forward_step(x, state)
    loss = (out.s * probe).sum() + (out.state.v * probe_v).sum()
    if out.state.w is not None:
        loss = loss + out.state.w.sum()
    params = [p for p in layer.parameters() if p.requires_grad]
    return out, torch.autograd.grad(loss, params)


def _assert_grads(got, want, dtype, names, ops):
    """float32: the rounding bound of ``ops`` operations; float64: 1e-10 of the largest entry."""
    assert_all_close(got, want, names, dtype, ops, rtol64=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_fused_layer_equals_step_path(case, dtype):
    """Train mode (identical dropout masks), a random carried-in state (spikes, adaptation and
    refractory counters included), T = 23; spikes identical up to the first one that flips
    through rounding (compared there, as tests/test_cuda.py does), states and every parameter
    gradient within float32's rounding bound of the chain (steps x the widest sum, 12 inputs + 7
    neurons) or 1e-10 (float64)."""
    layer = _layer(case, dtype)
    bsz, steps = 3, 23
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(bsz, steps, 12, generator=g) < 0.4).to(dtype)
    state = _random_state(layer, bsz, dtype, seed=2)
    with torch.no_grad():
        torch.manual_seed(5)
        s_step = layer.forward_step(x, state).s
        torch.manual_seed(5)
        s_fused = layer.forward_fused(x, state).s
    t0 = _first_flip(s_step, s_fused)
    assert t0 >= 15, f"the paths part already at step {t0}"
    x = x[:, :t0]
    probe = torch.randn(bsz, t0, layer.n, generator=g, dtype=dtype)
    probe_v = torch.randn(bsz, layer.n, generator=g, dtype=dtype)
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    fused, g_fused = _run_layer(layer, "fused", x, state, probe, probe_v)
    step, g_step = _run_layer(layer, "step", x, state, probe, probe_v)
    assert torch.equal(fused.s, step.s)
    assert 0.05 < float(step.s.detach().mean()) < 0.95  # spikes, resets (and refractory periods) are exercised
    ops = t0 * 19
    for a, b in zip(fused.state, step.state):
        assert (a is None) == (b is None)
        if a is not None:
            assert_all_close([a], [b], ["state"], dtype, ops, rtol64=1e-10, atol64=1e-10)
    _assert_grads(g_fused, g_step, dtype, names, ops + 3 * t0)


@pytest.mark.parametrize("case", ["lif-zero-refr-attached-fastsig", "adlif-zero-refr-dale-attached"])
def test_torch_reference_backend_equals_step_path_bitwise_forward(case):
    """The contract's PyTorch reference computes the per-step path's operations: the same spikes
    and membrane to the last bit, and the same gradients (float64)."""
    layer = _layer(case, torch.float64)
    x = (torch.rand(2, 19, 12, generator=torch.Generator().manual_seed(4)) < 0.4).double()
    state = _random_state(layer, 2, torch.float64, seed=6)
    probe = torch.randn(2, 19, layer.n, dtype=torch.float64)
    probe_v = torch.randn(2, layer.n, dtype=torch.float64)
    ref, g_ref = _run_layer(layer, "fused", x, state, probe, probe_v, backend=TORCH_REF)
    step, g_step = _run_layer(layer, "step", x, state, probe, probe_v)
    assert torch.equal(ref.s, step.s) and torch.equal(ref.state.v, step.state.v)
    _assert_grads(g_ref, g_step, torch.float64, [n for n, p in layer.named_parameters() if p.requires_grad], 0)


def test_long_sequence_spikes_identical_in_float32():
    """The LIF preset's hidden layer over 400 steps (N 40, B 4): the fused engine's spikes and
    final membrane equal the per-step path's exactly (the recurrent sum's order matches there)."""
    net = LIFNetwork.from_preset("lif-shd-adding", n=40).eval()
    x = (torch.rand(4, 400, 700, generator=torch.Generator().manual_seed(0)) < 0.02).float()
    with torch.no_grad():
        a, b = net.hidden.forward_step(x), net.hidden.forward_fused(x)
    assert float(a.s.mean()) > 0.01
    assert torch.equal(a.s, b.s)
    # the membranes differ only by the order of the recurrent sum (40 terms a step), remembered
    # through the leak for about 1 / (1 - kappa) steps
    memory = 1.0 / (1.0 - float(net.hidden.params().kappa_m.detach().max()))
    assert_rounding_close(b.state.v, a.state.v, math.ceil(40 * memory), "v_T")


# --------------------------------------------------------------------------- network level
TINY = dict(n_in=12, n=7, n_classes=3, n_synapses=9, rho=0.3, dt=1.0, tau_mem_min=2.0, tau_mem_max=8.0,
            tau_adapt_min=5.0, tau_adapt_max=20.0, current_gain="unit", weight_scale=3.0, tau_out=4.0,
            readout_d_m=2, readout_d_tree=3, readout_d_brch=2, readout_tau_min=1.0, readout_tau_max=20.0,
            readout_rho=0.3, dropout_in=0.2, dropout_rec=0.2)
NETWORK_CASES = {
    "lif-elm": dict(readout="elm"),
    "adlif-elm-leak": dict(readout="elm", neuron="adlif", current_gain="leak", weight_scale=8.0),
    "lif-leaky-zero": dict(readout="leaky", reset="zero", refractory=1),
    "iclr2024-like-spiking": dict(readout="spiking", dale=True, reset_value=0.9, surrogate="fast_sigmoid"),
    "adlif-spiking-refr": dict(readout="spiking", neuron="adlif", refractory=2, surrogate="superspike",
                               surrogate_slope=5.0),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(NETWORK_CASES))
def test_fused_network_equals_step_path(case, dtype):
    """Whole networks, every readout: logits, the spike regulariser and every parameter gradient,
    over two chunks with the state carried from the first into the second (T = 13 and 8): float32
    within the rounding bound of the chain (21 steps x the widest sum of a step, 12 inputs + 7
    neurons), float64 within 1e-10."""
    nets = {eng: LIFNetwork(LIFNetworkConfig.make(**{**TINY, **NETWORK_CASES[case]}, engine=eng)).to(dtype).train()
            for eng in ("step", "fused")}
    g = torch.Generator().manual_seed(7)
    x1 = (torch.rand(3, 13, 12, generator=g) < 0.4).to(dtype)
    x2 = (torch.rand(3, 8, 12, generator=g) < 0.4).to(dtype)
    results = {}
    for eng, net in nets.items():
        torch.manual_seed(3)
        out1 = net(x1)
        out2 = net(x2, out1.state)
        w = torch.linspace(-1, 1, out1.logits.shape[-1], dtype=dtype)
        loss = (out1.logits * w).sum() + (out2.logits * w).sum() + out1.regularizers["spike"] \
            + out2.regularizers["spike"]
        results[eng] = (out1, out2, torch.autograd.grad(loss, list(net.parameters())))
    (a1, a2, ga), (b1, b2, gb) = results["step"], results["fused"]
    assert all(layer.engine == "fused" for layer in nets["fused"].modules() if isinstance(layer, LIFLayer))
    ops = 21 * 19
    for a, b in ((a1, b1), (a2, b2)):
        assert_all_close([b.logits], [a.logits], ["logits"], dtype, ops, rtol64=1e-10, atol64=1e-10)
        torch.testing.assert_close(b.regularizers["spike"], a.regularizers["spike"], rtol=0, atol=0)
    assert 0.05 < float(a1.regularizers["spike"].detach()) < 0.95
    _assert_grads(gb, ga, dtype, [n for n, _ in nets["step"].named_parameters()], ops + 3 * 21)


def test_training_curves_agree():
    """40 Adam steps of the tiny adLIF network (ELM readout) on both engines: the loss curves agree."""
    curves = {}
    for eng in ("step", "fused"):
        net = LIFNetwork(LIFNetworkConfig.make(**{**TINY, **NETWORK_CASES["adlif-elm-leak"]}, engine=eng))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        losses = []
        for _ in range(40):
            x = (torch.rand(4, 11, 12, generator=g) < 0.4).float()
            y = torch.randint(0, 3, (4,), generator=g)
            out = net(x)
            loss = torch.nn.functional.cross_entropy(out.logits[:, -1], y) + 0.01 * out.regularizers["spike"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        curves[eng] = torch.tensor(losses)
    torch.testing.assert_close(curves["fused"], curves["step"], rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- leaky filter
@pytest.mark.parametrize("gain", [1.0, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_leaky_scan_equals_step_by_step(dtype, gain):
    from elm_neuro.networks.common import leaky_integrate

    g = torch.Generator().manual_seed(0)
    d = torch.randn(3, 17, 5, generator=g, dtype=dtype, requires_grad=True)
    o0 = torch.randn(3, 5, generator=g, dtype=dtype, requires_grad=True)
    probe = torch.randn(3, 17, 5, generator=g, dtype=dtype)
    results = []
    for fn in (leaky_integrate, LS.leaky_scan):
        o, o_T = fn(d, o0, 0.8, gain)
        results.append((o, o_T, *torch.autograd.grad((o * probe).sum() + o_T.sum(), (d, o0))))
    for a, b in zip(*results):
        assert torch.equal(a, b)  # the same operations in the same order: bit for bit


def test_leaky_readout_engines_agree():
    cfg = LIFLayerConfig(**SMALL)
    ro = {eng: LeakyReadout(cfg.replace(engine=eng), 7, 3, tau_out=4.0, seed=1) for eng in ("step", "fused")}
    a = (torch.rand(2, 9, 7, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    outs = [r(a) for r in ro.values()]
    assert torch.equal(outs[0][0], outs[1][0])


def test_nan_input_gives_nan_like_the_step_path():
    layer = _layer("adlif-subtract-leak", torch.float32).eval()
    x = (torch.rand(2, 9, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    x[0, 3, 0] = float("nan")
    for path in ("step", "fused"):
        out = layer.forward_step(x) if path == "step" else layer.forward_fused(x)
        assert torch.isnan(out.state.v[0]).any(), path
        assert torch.isfinite(out.state.v[1]).all(), path


# --------------------------------------------------------------------------- choice and reasons
def test_engine_choice_and_reasons():
    for preset in ("lif-shd-adding", "adlif-shd-adding", "lif-iclr2024"):
        net = LIFNetwork.from_preset(preset, n=20)
        assert net.hidden.engine == "fused" and net.hidden.engine_reason is None, preset
        assert net.cfg.hidden.engine == "auto"
    net = LIFNetwork.from_preset("lif-shd-adding", n=20)
    assert net.readout.engine == "fused"  # the ELM readout runs in the fused ELM engine
    assert LIFNetwork.from_preset("lif-iclr2024", n=20).readout.engine == "fused"  # spiking readout
    step = LIFNetwork.from_preset("lif-shd-adding", n=20, engine="step")
    assert step.hidden.engine_reason == "engine = 'step' was chosen" and step.readout.engine == "step"
    half = LIFNetwork.from_preset("lif-shd-adding", n=20).hidden.to(torch.bfloat16)
    assert half.engine == "step" and "bfloat16" in half.engine_reason
    forced = LIFLayer(LIFLayerConfig(**SMALL, engine="fused"), 12, 7, 0.4).to(torch.bfloat16)
    with pytest.raises(ValueError, match="engine 'fused' does not cover this configuration: parameters in"):
        forced(torch.zeros(1, 3, 12, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="engine must be one of"):
        LIFLayerConfig(engine="fast")
    # record=True (analysis traces) runs the per-step path and gives the same spikes and logits
    x = (torch.rand(2, 15, 700, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    net.eval()
    rec, plain = net(x, record=True), net(x)
    assert torch.equal(rec.traces["hidden"]["spikes"], net.hidden(x).s)
    torch.testing.assert_close(rec.logits, plain.logits, rtol=0, atol=1e-6)


def test_old_configurations_load_with_the_default_engine():
    """A configuration written before the field existed (no "engine") loads as auto."""
    cfg = LIFNetworkConfig.make(**TINY)
    nested = cfg.to_dict()
    del nested["hidden"]["engine"]
    assert LIFNetworkConfig.from_dict(nested).hidden.engine == "auto"
    flat = {k: v for k, v in cfg.flat().items() if k != "engine"}
    assert LIFNetworkConfig.from_dict(flat) == cfg
    assert LIFNetworkConfig.make(**TINY, engine="step").elm_readout.engine == "step"  # one flat name, both layers


def test_bf16_autocast_runs_the_engine_in_float32():
    net = LIFNetwork.from_preset("lif-shd-adding", n=20).eval()
    x = (torch.rand(2, 15, 700, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hid = net.hidden(x)
    assert hid.s.dtype == torch.float32 and torch.equal(hid.s, net.hidden(x).s)


def test_empty_and_unbatched_edge_cases():
    layer = LIFLayer(LIFLayerConfig(**SMALL, neuron="adlif", refractory=1), 12, 7, 0.4)
    out = layer(torch.zeros(0, 5, 12))
    assert out.s.shape == (0, 5, 7)
    # no recurrent synapses (rho 0): the engine skips the recurrent map
    flat = LIFLayer(LIFLayerConfig(**{**SMALL, "rho": 0.0}), 12, 7, 0.0, seed=1)
    x = (torch.rand(2, 9, 12, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    assert torch.equal(flat.forward_fused(x).s, flat.forward_step(x).s)


def test_all_option_combinations_build_and_run():
    """Every combination of neuron, reset, refractory, gain and surrogate runs on the fused engine
    and gives the per-step path's spikes (eval, float64, short)."""
    x = (torch.rand(2, 6, 12, generator=torch.Generator().manual_seed(3)) < 0.5).double()
    for neuron, reset, refr, gain, sur in itertools.product(("lif", "adlif"), ("subtract", "zero"), (0, 2),
                                                            ("unit", "leak"), ("fast_sigmoid", "atan", "superspike")):
        cfg = LIFLayerConfig(**{**SMALL, "neuron": neuron, "reset": reset, "refractory": refr, "current_gain": gain,
                                "surrogate": sur, "weight_scale": 8.0 if gain == "leak" else 3.0})
        layer = LIFLayer(cfg, 12, 7, cfg.rho, seed=2).double().eval()
        assert torch.equal(layer.forward_fused(x).s, layer.forward_step(x).s), (neuron, reset, refr, gain, sur)


# --------------------------------------------------------------------------- CUDA (Triton)
def _cuda_triton_or_skip():
    import os

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs triton's interpreter (TRITON_INTERPRET=1 was set outside the suite)")
    pytest.importorskip("triton")
    from elm_neuro.networks.engines import lif_triton

    assert Q.backend(torch.device("cuda")).forward is lif_triton.forward
    return lif_triton


@pytest.mark.parametrize("preset", ["lif-shd-adding", "adlif-shd-adding", "lif-iclr2024"])
def test_cuda_fused_engine_equals_cuda_step_path(preset):
    """On CUDA the fused engine (Triton) gives the per-step path's spikes up to the first one that
    flips through rounding (which must not come early), and before it the same logits and
    gradients (relative norm, as tests/test_cuda.py compares devices)."""
    _cuda_triton_or_skip()
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        x = (torch.rand(4, 60, 700, generator=torch.Generator().manual_seed(1)) < 0.02).float().cuda()
        nets = {eng: LIFNetwork.from_preset(preset, n=30, engine=eng).cuda().eval() for eng in ("step", "fused")}
        with torch.no_grad():
            spikes = {eng: net.hidden(x).s for eng, net in nets.items()}
        t0 = _first_flip(spikes["step"], spikes["fused"])
        assert t0 >= 20, f"the engines part already at step {t0}"
        results = {}
        for eng, net in nets.items():
            out = net(x[:, :t0])
            out.logits.square().sum().backward()
            results[eng] = (out.logits.detach(), {k: p.grad for k, p in net.named_parameters()})
        torch.testing.assert_close(results["fused"][0], results["step"][0], rtol=1e-4, atol=1e-4)
        for k, g_step in results["step"][1].items():
            rel = float((results["fused"][1][k] - g_step).norm() / g_step.norm().clamp_min(1e-12))
            assert rel < 1e-3, f"{k}: relative gradient difference {rel:.3g}"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def test_cuda_kernels_equal_the_reference():
    """The Triton kernels compiled for the GPU against the PyTorch reference (float64)."""
    X = _cuda_triton_or_skip()
    for spec in KERNEL_SPECS[:4]:
        (cur, mask, w, s), g = kernel_problem(torch.float64, spec, seed=1)

        def cuda(nt):
            return type(nt)(*(None if t is None else t.cuda() for t in nt))

        cur, mask, w, s, g = cur.cuda(), mask.cuda(), cuda(w), cuda(s), cuda(g)
        ref, got = C.forward_torch(cur, mask, w, s, spec), X.forward(cur, mask, w, s, spec)
        assert torch.equal(ref.s_all, got.s_all)
        torch.testing.assert_close(got.v_all, ref.v_all, rtol=1e-12, atol=1e-12)
        gref, ggot = C.backward_torch(ref, mask, w, g, spec), X.backward(got, mask, w, g, spec)
        for name in ("g_cur", "g_kappa_m", "g_v0", "g_s0"):
            torch.testing.assert_close(getattr(ggot, name), getattr(gref, name), rtol=1e-10, atol=1e-10, msg=name)
