"""The fused engine's Triton (CUDA) backend on the CPU, under Triton's interpreter
(``TRITON_INTERPRET=1``): its kernels give the PyTorch reference's outputs and gradients
(``elm_sequence.forward_torch`` / ``backward_torch``) for every option that changes the kernel,
and ``ELMLayer.forward_fused`` on it gives the per-step path's. Tiny sizes: the interpreter is slow.
"""
import os

# Triton chooses compiled or interpreted functions when they are decorated, its own library's
# (tl.sum...) included, so the variable must be set before triton is first imported. It stays set
# for this process: CUDA tests of the Triton kernels run in a process of their own
# (benchmarks/gpu_check.sh; tests/test_cuda.py skips them under the interpreter).
os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="triton is not installed (it installs on Linux x86_64 only)")
import triton.language as tl  # noqa: E402

from elm_neuro.networks.engines import elm_sequence as Q  # noqa: E402

if type(tl.sum).__name__ != "InterpretedFunction":  # pragma: no cover
    pytest.skip("triton was imported before this module without TRITON_INTERPRET=1; run this file on its own",
                allow_module_level=True)
from elm_neuro.networks.engines import elm_triton as X  # noqa: E402

if type(X._elm_fwd_kernel).__name__ != "InterpretedFunction":  # pragma: no cover
    pytest.skip("elm_triton was imported before this module without TRITON_INTERPRET=1; run this file on its own",
                allow_module_level=True)


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
    recur, order = Q.make_recurrent(src, tgt, d, n)
    rec_w = r(src.numel())[order]
    mask = (torch.randint(0, 2, (n, bsz), generator=g) * 2).to(dtype)  # zeros and twos
    spec = Q.Spec(Q.MLP_ACTS[act], Q.OUT_ACTS[out], two, hp, 0.6)
    args = (r(steps, n, d, bsz), recur, rec_w, mask, r(n, h1, d + m, scale=0.6), r(n, h1),
            r(n, m, h, scale=0.6) if two else None, r(n, m) if two else None, r(n, o, m), r(n, o),
            torch.rand(n, m, generator=g, dtype=dtype), 1.7 * torch.rand(n, m, generator=g, dtype=dtype),
            r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, o, bsz), spec)
    grads_in = (r(steps, n, o, bsz), r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, bsz))
    return args, grads_in


def _check(dtype, two, act, hp, out, rec, o, seed=0, **sizes):
    args, (gy, g_mT, g_hT, g_zabs) = _problem(dtype, two, act, hp, out, rec, o, seed, **sizes)
    drive, recur, rec_w, mask, W1, b1, W2, b2, wy, bias, kappa, gain, m0, h0, y0, spec = args
    ref = Q.forward_torch(*args)
    got = X.forward(*args)
    bargs = (recur, rec_w, mask, W1, W2, wy, kappa, gain, gy, g_mT, g_hT, g_zabs, spec)
    ref_g = Q.backward_torch(ref, *bargs)
    got_g = X.backward(got, *bargs)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for name, want, have in list(zip(Q.Saved._fields, ref, got)) + list(zip(Q.Grads._fields, ref_g, got_g)):
        if want is None:
            assert have is None, name
            continue
        assert have.shape == want.shape and have.dtype == want.dtype, name
        scale = 1.0 + float(want.abs().max()) if want.numel() else 1.0
        err = float((have - want).abs().max()) if want.numel() else 0.0
        assert err <= tol * scale, f"{name}: max error {err:.3g} (scale {scale:.3g})"


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
            out = layer.forward_fused(x, state, backend=(X.forward, X.backward))
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
