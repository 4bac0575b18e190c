"""The fused sequence engine of the ELM layer: the Numba kernels equal the PyTorch reference of the
kernel contract (elm_contract), and the fused layer / network equals the per-step path in outputs
and every gradient (float32 within the rounding bound of tests/parity.py, float64 tightly; dropout,
carried state), in every input form (drive, events, rows), passes gradcheck, and trains to the same
loss curve."""
import math

import pytest
import torch

from elm_neuro import ELMNetwork, ELMNeuron
from elm_neuro.networks.elm_config import ELMLayerConfig
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.networks import synapses as S
from elm_neuro.networks.engines import elm_contract as C
from elm_neuro.networks.engines import elm_numba as NB
from elm_neuro.networks.engines import elm_sequence as Q
from elm_neuro.networks.engines import inputs as I
from elm_neuro.networks.engines.simd import LANES
from parity import assert_all_close

TORCH_REF = C.REFERENCE
NUMBA = Q.backend(torch.device("cpu"))


# --------------------------------------------------------------------------- kernel level
def _random_problem(dtype, *, two, high_pass, out_o, with_rec, mask_kind, seed=0, size="small"):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    # small: every sample on the scalar path; wide: one vector block of samples (simd.LANES) and
    # the rest, and matrices whose rows go through all row-block sizes (8, 4, 1)
    steps, n, d, m, h, bsz = {"small": (7, 4, 3, 2, 5, 3), "wide": (6, 3, 6, 9, 13, 11)}[size]
    k = d + m
    drive = r(steps, n, d, bsz)
    if with_rec and out_o == 1:
        src = torch.randint(0, n, (9,), generator=g)
        flat = torch.randint(0, n * d, (9,), generator=g)
    else:
        src = flat = torch.zeros(0, dtype=torch.int64)
    rec, order = C.make_recurrent(src, flat, d, n)
    rec_w = r(src.numel())[order] if src.numel() else r(0)
    mask = {"ones": torch.ones(n, bsz), "dropout": (torch.rand(n, bsz, generator=g) < 0.5) * 2.0}[mask_kind]
    mask = mask.to(dtype)
    h1 = h if two else m
    args = dict(W1=r(n, h1, k, scale=0.5), b1=r(n, h1, scale=0.1), W2=r(n, m, h, scale=0.5) if two else None,
                b2=r(n, m, scale=0.1) if two else None, wy=r(n, out_o, m), bias=r(n, out_o, scale=0.1),
                kappa=torch.rand(n, m, generator=g, dtype=torch.float64).to(dtype),
                gain=torch.rand(n, m, generator=g, dtype=torch.float64).to(dtype),
                m0=r(n, m, bsz), h0=r(n, out_o, bsz) if high_pass else None, y0=r(n, out_o, bsz))
    grads_in = dict(gy=r(steps, n, out_o, bsz), g_mT=r(n, m, bsz), g_hT=r(n, out_o, bsz) if high_pass else None,
                    g_zabs=r(n, bsz))
    return drive, rec, rec_w, mask, args, grads_in


KERNEL_CASES = [
    dict(two=True, high_pass=True, mlp_act="relu2", out_act="relu", out_o=1, with_rec=True, mask_kind="dropout"),
    dict(two=True, high_pass=False, mlp_act="silu", out_act="identity", out_o=1, with_rec=True, mask_kind="ones"),
    dict(two=True, high_pass=True, mlp_act="relu", out_act="relu", out_o=1, with_rec=False, mask_kind="ones"),
    dict(two=False, high_pass=True, mlp_act="relu2", out_act="identity", out_o=1, with_rec=True, mask_kind="dropout"),
    dict(two=False, high_pass=False, mlp_act="relu2", out_act="identity", out_o=3, with_rec=False, mask_kind="ones"),
    dict(two=True, high_pass=False, mlp_act="relu2", out_act="relu", out_o=3, with_rec=False, mask_kind="ones"),
]


@pytest.mark.parametrize("size", ["small", "wide"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", range(len(KERNEL_CASES)))
def test_numba_kernels_equal_the_reference(case, dtype, size):
    """float64 within 1e-12; float32 within the rounding bound of its longest chain (the steps
    times the widest sum of a step)."""
    c = dict(KERNEL_CASES[case])
    spec = C.Spec(C.MLP_ACTS[c.pop("mlp_act")], C.OUT_ACTS[c.pop("out_act")], c["two"], c["high_pass"], 0.7)
    drive, rec, rec_w, mask, a, gi = _random_problem(dtype, size=size, **c)
    w = C.Weights(rec_w, a["W1"], a["b1"], a["W2"], a["b2"], a["wy"], a["bias"], a["kappa"], a["gain"])
    s = C.State(a["m0"], a["h0"], a["y0"])
    steps, n, d, bsz = drive.shape
    ops = steps * max(a["W1"].shape[1:] + a["wy"].shape[1:] + (bsz,))
    ref, got = C.forward_torch(I.Drive(drive), rec, mask, w, s, spec), NB.forward(I.Drive(drive), rec, mask, w, s, spec)
    names = ("y_all", "m_all", "beta_all", "a1_all", "z_all", "pre_all", "h_T", "zabs")
    for name in names:
        assert (getattr(ref, name) is None) == (getattr(got, name) is None), name
    present = [nm for nm in names if getattr(ref, nm) is not None]
    assert_all_close([getattr(got, nm) for nm in present], [getattr(ref, nm) for nm in present], present, dtype, ops,
                     rtol64=1e-12, atol64=1e-12)
    g = C.OutGrads(gi["gy"], gi["g_mT"], gi["g_hT"], gi["g_zabs"])
    gref, ggot = C.backward_torch(ref, I.Drive(None), rec, mask, w, g, spec), \
        NB.backward(got, I.Drive(None), rec, mask, w, g, spec)
    # the MLP weight gradients (the reference leaves them to the Function's GEMMs)
    inp = torch.cat([ref.beta_all, a["kappa"][None, :, :, None] * ref.m_all[:-1]], dim=2)
    g_W1 = torch.einsum("tnhb,tnkb->nhk", gref.ga_all, inp)
    g_W2 = torch.einsum("tnmb,tnhb->nmh", gref.gz_all, C.mlp_act(ref.a1_all, spec.mlp_act)) if c["two"] else None
    gref = gref._replace(g_W1=g_W1, g_W2=g_W2, g_b1=gref.ga_all.sum(dim=(0, 3)),
                         g_b2=gref.gz_all.sum(dim=(0, 3)) if c["two"] else None)
    names = [nm for nm in C.Grads._fields if nm != "g_rec_w"]  # the reference leaves g_rec_w to the Function
    for name in names:
        assert (getattr(gref, name) is None) == (getattr(ggot, name) is None), name
    present = [nm for nm in names if getattr(gref, nm) is not None]
    assert_all_close([getattr(ggot, nm) for nm in present], [getattr(gref, nm) for nm in present], present, dtype,
                     2 * ops + steps * bsz, rtol64=1e-12, atol64=1e-12)


# --------------------------------------------------------------------------- layer and network level
TINY = dict(n_in=9, n=6, n_classes=4, d_m=3, d_tree=3, d_brch=2, rho=0.5)
NETWORKS = {
    "shd-adding": lambda **kw: ELMNetwork.from_preset("shd-adding", **{**TINY, **kw}),
    "enwik8": lambda **kw: ELMNetwork.from_preset("enwik8", **{**TINY, "n_in": 7, "n_classes": 7, **kw}),
    "legacy-silu-learned": lambda **kw: ELMNetwork.from_preset(
        "shd-adding", **{**TINY, "memory_mode": "legacy", "mlp_act": "silu", "learn_tau": True, "synapse_rect": "relu",
                         "tau_r": None, "output_act": "identity", "mlp_layers": 0, **kw}),
    "gather": lambda **kw: ELMNetwork.from_preset("shd-adding", **{**TINY, "synapse_impl": "gather", **kw}),
    "neuron": lambda **kw: ELMNeuron.from_preset("elm-neuron-shd-adding", n_in=9, n_classes=4, d_m=3, d_tree=3,
                                                 d_brch=3, **kw),
}


def _inputs(name, dtype, steps=13, bsz=3, seed=1, density=0.4):
    g = torch.Generator().manual_seed(seed)
    if name == "enwik8":
        return torch.randint(0, 7, (bsz, steps), generator=g)
    return (torch.rand(bsz, steps, 9, generator=g) < density).to(dtype)


def _sparse_counts(dtype, steps=40, bsz=3):
    """Spike counts at 3 % density (below inputs.EVENTS_MAX_DENSITY: the event path), some of
    them 2, and an empty first step."""
    x = _inputs("shd-adding", dtype, steps=steps, bsz=bsz, density=0.03)
    x[0, 5:, :3] *= 2.0
    x[:, 0] = 0.0
    return x


def _run(net, x, state=None):
    torch.manual_seed(3)  # the same dropout masks on both engines
    out = net(x, state)
    loss = (out.logits * torch.linspace(-1, 1, out.logits.shape[-1], dtype=out.logits.dtype)).sum() \
        + sum(v for v in out.regularizers.values())
    return out, loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_fused_network_equals_step_path(name, dtype):
    _compare_engines(name, dtype, _inputs(name, dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["shd-adding", "neuron"])
def test_sparse_inputs_run_as_events_and_equal_the_step_path(name, dtype, monkeypatch):
    """Spiking inputs below the density threshold: the Numba backend builds the input drive from
    the events in its loop and gives the input synapses' gradient itself."""
    forms = []
    real = I.input_form

    def spy(x, *args, **kwargs):
        form = real(x, *args, **kwargs)
        forms.append((x.shape[-1], form[0]))  # (the layer's n_in, the form chosen)
        return form

    monkeypatch.setattr(I, "input_form", spy)
    _compare_engines(name, dtype, _sparse_counts(dtype))
    # the layer reading the 9 input channels ran on events
    assert [f for n_in, f in forms if n_in == 9] and all(f is I.Events for n_in, f in forms if n_in == 9)


def test_event_and_drive_inputs_give_the_same_kernel_results():
    """The same layer and masks, the input drive once as events and once as a tensor (the
    density threshold raised and lowered): equal outputs and input-weight gradients."""
    layer = ELMLayer(ELMLayerConfig(d_m=3, d_tree=4, d_brch=3, rho=0.4, dropout_in=0.3, dropout_rec=0.3), 9, 6,
                     seed=4).double().train()
    x = _sparse_counts(torch.float64, steps=25, bsz=4).requires_grad_(True)  # e.g. spikes of a layer below
    res = {}
    for mode, density in (("events", 1.0), ("drive", 0.0)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(I, "EVENTS_MAX_DENSITY", density)
            torch.manual_seed(5)
            out = layer.forward_fused(x)
            g_w, g_x = torch.autograd.grad((out.y * torch.linspace(-1, 1, out.y.shape[-1], dtype=x.dtype)).sum()
                                           + out.z_abs_mean.sum(), [layer.w_s, x])
            res[mode] = (out.y, g_w, g_x)
    for a, b in zip(res["events"], res["drive"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    assert float(res["events"][1].abs().sum()) > 0
    assert float(res["events"][2][x == 0].abs().sum()) > 0  # silent inputs get a gradient too


@pytest.mark.parametrize("bsz", [3, LANES + 2])
def test_dense_input_rows_and_drive_give_the_same_results(bsz):
    """A dense input (e.g. a hidden layer's outputs reaching the readout) read through its
    synapses inside the Numba engine, and as the dense map's drive: equal outputs, input-weight
    and input gradients, with input and recurrent dropout, in a layer with both kinds of synapses."""
    layer = ELMLayer(ELMLayerConfig(d_m=3, d_tree=4, d_brch=3, rho=0.4, dropout_in=0.3, dropout_rec=0.3), 9, 6,
                     seed=4).double().train()
    assert S.has_recurrent(layer.connectome, 9)
    x = torch.randn(bsz, 17, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    res, seen = {}, []
    real = NB.forward

    def spy(inp, *args, **kw):
        seen.append(type(inp))
        return real(inp, *args, **kw)

    for mode in ("rows", "drive"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(I, "ROWS_MAX_FILL", 1.0 if mode == "rows" else 0.0)
            mp.setattr(NB, "forward", spy)
            torch.manual_seed(5)
            out = layer.forward_fused(x)
            loss = (out.y * torch.linspace(-1, 1, out.y.shape[-1], dtype=x.dtype)).sum() + out.z_abs_mean.sum()
            res[mode] = (out.y,) + torch.autograd.grad(loss, [layer.w_s, x] + list(layer.mlp_w))
    assert seen == [I.Rows, I.Drive]  # the Numba engine ran, once on rows and once on the drive
    for a, b in zip(res["rows"], res["drive"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    assert float(res["rows"][2].abs().sum()) > 0


def _compare_engines(name, dtype, x):
    """Two chunks (the state carried from the first into the second), logits and every parameter
    gradient: float64 within 1e-12; float32 within the rounding bound of the chain (tests/parity.py):
    2 chunks x T steps times the widest sum of a step (16 bounds the MLP's, the synapses' and the
    readout's sums here)."""
    nets = {eng: NETWORKS[name](engine=eng, dropout_in=0.25, dropout_rec=0.25) if name != "neuron"
            else NETWORKS[name](engine=eng) for eng in ("step", "fused")}
    for net in nets.values():
        net.to(dtype).train()
    results = {}
    for eng, net in nets.items():
        out1, loss1 = _run(net, x)
        # a carried-in state (truncated BPTT): the second chunk's gradient reaches the first through it
        out2, loss2 = _run(net, x.flip(1), out1.state)
        grads = torch.autograd.grad(loss1 + loss2, list(net.parameters()))
        results[eng] = (out1.logits, out2.logits, loss1 + loss2, grads)
    (a1, a2, la, ga), (b1, b2, lb, gb) = results["step"], results["fused"]
    ops = 2 * x.shape[1] * 16
    assert_all_close([b1, b2, lb], [a1, a2, la], ["logits 1", "logits 2", "loss"], dtype, ops,
                     rtol64=1e-12, atol64=1e-12)
    # a parameter's gradient adds the chain's terms of every sample and step: B x T more
    assert_all_close(gb, ga, [n for n, _ in nets["step"].named_parameters()], dtype, ops + x.shape[0] * x.shape[1],
                     rtol64=1e-12, atol64=1e-12)
    assert all(layer.engine == "fused" for layer in nets["fused"].modules() if isinstance(layer, ELMLayer))


def test_gradcheck_through_the_fused_engine():
    net = NETWORKS["shd-adding"](engine="fused", n=3, d_m=2, n_classes=3, dropout_in=0.2, dropout_rec=0.2).double()
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    x = _inputs("shd-adding", torch.float64, steps=5, bsz=2).requires_grad_(True)

    def f(x, *ps):
        with torch.random.fork_rng():
            torch.manual_seed(7)
            out = torch.func.functional_call(net, dict(zip(names, ps)), (x,))
        return out.logits, out.regularizers["mlp"], out.regularizers["act"]

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_training_curves_agree():
    """200 optimiser steps on both engines: the loss curves agree to 1e-4."""
    curves = {}
    for eng in ("step", "fused"):
        net = NETWORKS["shd-adding"](engine=eng, dropout_in=0.1, dropout_rec=0.1)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        losses = []
        for _ in range(200):
            x = (torch.rand(4, 11, 9, generator=g) < 0.4).float()
            y = torch.randint(0, 4, (4,), generator=g)
            out = net(x)
            loss = torch.nn.functional.cross_entropy(out.logits[:, -1], y) + 0.002 * out.regularizers["mlp"] \
                + 0.2 * out.regularizers["act"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        curves[eng] = torch.tensor(losses)
    assert math.isfinite(float(curves["fused"].sum()))
    torch.testing.assert_close(curves["fused"], curves["step"], rtol=0, atol=1e-4)
    assert float(curves["fused"][-20:].mean()) < float(curves["fused"][:20].mean())  # it learned


def test_engine_choice_and_reasons():
    net = ELMNetwork.from_preset("shd-adding", **TINY)
    assert (net.hidden.engine, net.readout.engine, net.hidden.engine_reason) == ("fused", "fused", None)
    assert ELMNetwork.from_preset("enwik8", **{**TINY, "n_in": 7, "n_classes": 7}).hidden.engine == "fused"
    assert ELMNeuron.from_preset("elm-neuron-shd-adding").neuron.layer.engine == "fused"
    trace = ELMNetwork.from_preset("shd-adding", **TINY, branch_trace=True)
    assert trace.hidden.engine == "step" and "branch trace" in trace.hidden.engine_reason
    spike = ELMLayer(ELMLayerConfig(d_m=2, d_tree=2, d_brch=2, output_act="spike"), 4, 3)
    assert spike.engine == "step" and "spike" in spike.engine_reason
    assert ELMNetwork.from_preset("shd-adding", **TINY, engine="step").hidden.engine_reason == \
        "engine = 'step' was chosen"
    forced = ELMNetwork.from_preset("shd-adding", **TINY, branch_trace=True, engine="fused")
    with pytest.raises(ValueError, match="engine 'fused' does not cover this configuration: the branch trace"):
        forced(torch.zeros(1, 3, 9))
    # record=True (analysis traces) runs the per-step path and gives the same logits
    x = _inputs("shd-adding", torch.float32)
    net.eval()
    torch.testing.assert_close(net(x, record=True).logits, net(x).logits, rtol=0, atol=1e-6)


def test_nan_input_gives_nan_like_the_step_path():
    x = _inputs("shd-adding", torch.float32)
    x[0, 0, 0] = float("nan")
    for eng in ("step", "fused"):
        out = NETWORKS["shd-adding"](engine=eng).eval()(x)
        assert torch.isnan(out.logits[0, -1]).all(), eng
        assert torch.isfinite(out.logits[1:]).all(), eng


def test_bf16_autocast_runs_the_engine_in_float32():
    net = NETWORKS["shd-adding"]().eval()
    x = _inputs("shd-adding", torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    ref = net(x)
    assert torch.isfinite(out.logits.float()).all()
    torch.testing.assert_close(out.logits.float(), ref.logits, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("bsz", [2, LANES, 2 * LANES + 3])  # Numba: vector blocks of LANES samples + the rest
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_backends_agree_on_a_layer(backend, bsz):
    layer = ELMLayer(ELMLayerConfig(d_m=3, d_tree=3, d_brch=2, rho=0.5, learn_tau=True), 7, 5, seed=2).double()
    x = (torch.rand(bsz, 9, 7) < 0.5).double()
    ref = layer.forward_step(x)
    got = layer.forward_fused(x, backend=TORCH_REF if backend == "torch" else NUMBA)
    torch.testing.assert_close(got.y, ref.y, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.z_abs_mean, ref.z_abs_mean, rtol=0, atol=1e-12)
    for a, b in zip(got.state, ref.state):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    weights = torch.linspace(-1, 1, ref.y.shape[-1], dtype=x.dtype)
    grads = [torch.autograd.grad((out.y * weights).sum() + out.z_abs_mean.sum(), list(layer.parameters()))
             for out in (ref, got)]
    for (name, _), a, b in zip(layer.named_parameters(), *grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12, msg=name)


def test_fast_tanh_of_float32_is_within_one_ulp():
    """The kernels' float32 tanh (a rational function evaluated in float64) against tanh in float64
    rounded to float32, on a dense grid, tiny values and the special values."""
    import numpy as np
    from numba import njit

    @njit(error_model="numpy")
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = NB.fast_tanh(x[i])

    grid = np.linspace(-12.0, 12.0, 400_001, dtype=np.float32)
    tiny = np.logspace(-38, 1, 20_000).astype(np.float32)
    x = np.concatenate([grid, tiny, -tiny, np.array([0.0, -0.0, np.inf, -np.inf, 1e30, -1e30], np.float32)])
    out = np.empty_like(x)
    apply(x, out)
    exact = torch.tanh(torch.from_numpy(x).double()).float().numpy()
    ulp = np.abs(out.astype(np.float64) - exact) / np.spacing(np.abs(exact)).astype(np.float64)
    assert ulp.max() <= 1.0
    assert (ulp == 0).mean() > 0.85  # mostly correctly rounded
    nan = np.array([np.nan], np.float32)
    apply(nan, nan)
    assert np.isnan(nan[0])
    assert out[-4] == 1.0 and out[-3] == -1.0 and out[-6] == 0.0


def test_the_parallel_build_equals_the_reference(monkeypatch):
    """The kernels' parallel build (the neuron loop spread over threads; used when a step has
    enough work and torch has several threads) on one kernel case, float64."""
    monkeypatch.setattr(NB, "PARALLEL_MIN_STEP_WORK", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert NB._parallel(1, 1, 1, 1)
        test_numba_kernels_equal_the_reference(0, torch.float64, "wide")
    finally:
        torch.set_num_threads(threads)
