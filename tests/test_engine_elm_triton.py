"""The fused ELM engine's Triton (CUDA) backend on the CPU, under Triton's interpreter (set up in
tests/conftest.py): its kernels give the PyTorch reference's outputs and gradients
(``elm_contract.forward_torch`` / ``backward_torch``) for every option that changes the kernel,
and ``ELMLayer.forward_fused`` on it gives the per-step path's. Tiny sizes: the interpreter is slow.
"""
import pytest
import torch

from conftest import interpreted_triton_backend
from elm_neuro.networks.engines import elm_contract as C
from elm_neuro.networks.engines import inputs as I
from elm_neuro.networks.engines.backends import Backend
from parity import assert_rounding_close

X = interpreted_triton_backend("elm_triton")
TRITON = Backend("elm_triton", X.forward, X.backward, X.TAKES)


def _problem(dtype, two, act, hp, out, rec, o, seed, steps=6, n=5, d=3, m=2, h=5, bsz=3, n_rec=9):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=dtype)

    h1 = h if two else m
    if rec:
        src = torch.randint(0, n, (n_rec,), generator=g)
        tgt = torch.randint(0, n * d, (n_rec,), generator=g)
        tgt[:3] = 0  # three synapses on one branch: the gather's chunks see several rows
    else:
        src = tgt = torch.zeros(0, dtype=torch.long)
    recur, order = C.make_recurrent(src, tgt, d, n)
    rec_w = r(src.numel())[order]
    mask = (torch.randint(0, 2, (n, bsz), generator=g) * 2).to(dtype)  # zeros and twos
    spec = C.Spec(C.MLP_ACTS[act], C.OUT_ACTS[out], two, hp, 0.6)
    drive = r(steps, n, d, bsz)
    w = C.Weights(rec_w, r(n, h1, d + m, scale=0.6), r(n, h1), r(n, m, h, scale=0.6) if two else None,
                  r(n, m) if two else None, r(n, o, m), r(n, o), torch.rand(n, m, generator=g, dtype=dtype),
                  1.7 * torch.rand(n, m, generator=g, dtype=dtype))
    s = C.State(r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, o, bsz))
    grads_in = C.OutGrads(r(steps, n, o, bsz), r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, bsz))
    return (I.Drive(drive), recur, mask, w, s, spec), grads_in


def _check(dtype, two, act, hp, out, rec, o, seed=0, **sizes):
    """float64 within 1e-12 (relative to 1 + the largest entry); float32 within the rounding bound of
    tests/parity.py (steps x the widest sum of a step, twice and plus B x T for the gradients)."""
    (inp, recur, mask, w, s, spec), g = _problem(dtype, two, act, hp, out, rec, o, seed, **sizes)
    ref, got = C.forward_torch(inp, recur, mask, w, s, spec), X.forward(inp, recur, mask, w, s, spec)
    ref_g = C.backward_torch(ref, inp, recur, mask, w, g, spec)
    got_g = X.backward(got, inp, recur, mask, w, g, spec)
    steps, n, d, bsz = inp.drive.shape
    ops = steps * max(w.W1.shape[1:] + w.wy.shape[1:])
    for kind, pairs in (("forward", zip(C.Saved._fields, ref, got)), ("backward", zip(C.Grads._fields, ref_g, got_g))):
        for name, want, have in pairs:
            if want is None:
                assert have is None, name
                continue
            assert have.shape == want.shape and have.dtype == want.dtype, name
            if dtype == torch.float32:
                assert_rounding_close(have, want, ops if kind == "forward" else 2 * ops + steps * bsz, name)
                continue
            scale = 1.0 + float(want.abs().max()) if want.numel() else 1.0
            err = float((have - want).abs().max()) if want.numel() else 0.0
            assert err <= 1e-12 * scale, f"{name}: max error {err:.3g} (scale {scale:.3g})"


# one MLP variant per row: L = 0 (one affine map; the activation is unused) or L = 1 with each activation
MLPS = [(False, "relu2"), (True, "relu2"), (True, "relu"), (True, "silu")]


@pytest.mark.parametrize("hp", [True, False], ids=["hp", "nohp"])
@pytest.mark.parametrize("out", ["relu", "identity"])
@pytest.mark.parametrize("two,act", MLPS, ids=["L0", "L1-relu2", "L1-relu", "L1-silu"])
def test_kernels_equal_reference_float64_recurrent(two, act, out, hp):
    _check(torch.float64, two, act, hp, out, rec=True, o=1, seed=len(act) + 2 * two + 4 * hp + 8 * (out == "relu"))


@pytest.mark.parametrize("o", [1, 3])
@pytest.mark.parametrize("two,act,hp,out", [(False, "relu2", True, "relu"), (True, "silu", False, "identity"),
                                            (True, "relu2", True, "identity")])
def test_kernels_equal_reference_float64_without_recurrence(two, act, hp, out, o):
    """No recurrent synapses (every d_o > 1 layer): the grid spreads the neuron blocks too."""
    _check(torch.float64, two, act, hp, out, rec=False, o=o, seed=o)


@pytest.mark.parametrize("two,act,hp,out,rec", [
    (True, "relu2", True, "relu", True), (False, "relu2", False, "identity", True),
    (True, "silu", True, "identity", False), (True, "relu", False, "relu", True)])
def test_kernels_equal_reference_float32(two, act, hp, out, rec):
    _check(torch.float32, two, act, hp, out, rec=rec, o=1, seed=7)


@pytest.mark.parametrize("layout", ["one-neuron-blocks", "batch-blocks"])
def test_kernels_equal_reference_other_layouts(monkeypatch, layout):
    """Several neuron blocks per step (the gather reads other blocks' outputs of the last step),
    synapse tables read in several chunks, and programs of two samples with a masked third."""
    monkeypatch.setattr(X, "MAX_SYN_BLOCK", 2)
    if layout == "one-neuron-blocks":
        monkeypatch.setattr(X, "TILE_BUDGET", {4: 1, 8: 1})  # BN = 1
    else:
        monkeypatch.setattr(X, "BATCH_BLOCK", 2)
        monkeypatch.setattr(X, "TILE_BUDGET", {4: 256, 8: 256})  # BN = 4 at BB = 2: two blocks of the five neurons
    blocks, bs, bso = X._layout(5, 3, 2, 5, 5, 1, 3, 3, 3, 8, True, X.BATCH_BLOCK)
    assert bs == 2 and bso == 2 and blocks["BN"] < 5 and blocks["BB"] == (2 if layout == "batch-blocks" else 1)
    _check(torch.float64, True, "relu2", True, "relu", rec=True, o=1, seed=3)
    _check(torch.float64, False, "silu", False, "identity", rec=False, o=3, seed=4)


def test_layer_forward_fused_on_triton_equals_per_step_path():
    """End to end: ELMLayer.forward_fused with the Triton backend against forward_step, train mode
    (identical dropout masks), a carried-in state, outputs, state and every parameter gradient."""
    from elm_neuro.networks.elm_config import ELMLayerConfig
    from elm_neuro.networks.elm_layer import ELMLayer

    cfg = ELMLayerConfig(d_m=3, d_tree=3, d_brch=2, rho=0.5, tau_r=3.0, dropout_in=0.2, dropout_rec=0.3,
                         learn_tau=True, mlp_act="silu")
    layer = ELMLayer(cfg, 4, 5, seed=1).double().train()
    assert layer.engine_reason is None and bool((layer.connectome >= layer.n_in).any())  # recurrent synapses
    torch.manual_seed(0)
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    state = layer.initial_state(2, x.device)
    state = type(state)(*(None if s is None else torch.randn_like(s) for s in state))
    w = torch.randn(2, 7, 5 * cfg.d_o, dtype=torch.float64)
    results = []
    for path in ("fused", "step"):
        layer.zero_grad()
        torch.manual_seed(5)  # the same dropout masks on both paths
        if path == "fused":
            out = layer.forward_fused(x, state, backend=TRITON)
        else:
            out = layer.forward_step(x, state)
        loss = (out.y * w).sum() + out.state.m.square().sum() + out.state.y.sum() + out.z_abs_mean.sum()
        if out.state.h is not None:
            loss = loss + out.state.h.sum()
        loss.backward()
        results.append((out, {k: p.grad.clone() for k, p in layer.named_parameters() if p.grad is not None}))
    (fused, g_fused), (step, g_step) = results
    torch.testing.assert_close(fused.y, step.y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.z_abs_mean, step.z_abs_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.state.m, step.state.m, rtol=1e-12, atol=1e-12)
    assert g_fused.keys() == g_step.keys() and g_step
    for k in g_step:
        torch.testing.assert_close(g_fused[k], g_step[k], rtol=1e-12, atol=1e-12, msg=k)
