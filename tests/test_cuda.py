"""GPU paths: the same networks on CUDA give the CPU's outputs and gradients; the LM trainer
resumes on CUDA. Skipped cleanly without CUDA (CI has none); run by benchmarks/gpu_check.sh."""
import pytest
import torch

from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.networks.lif_network import LIFNetwork

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def exact_fp32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _run(model, x):
    out = model(x)
    (out.logits[:, -1].square().sum() + sum(out.regularizers.values())).backward()
    return out.logits.detach().cpu(), {k: p.grad.detach().cpu() for k, p in model.named_parameters()}


def _compare(make, x):
    cpu_logits, cpu_grads = _run(make().eval(), x)
    gpu_logits, gpu_grads = _run(make().cuda().eval(), x.cuda())
    torch.testing.assert_close(gpu_logits, cpu_logits, rtol=1e-4, atol=1e-4)
    for k in cpu_grads:
        torch.testing.assert_close(gpu_grads[k], cpu_grads[k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.parametrize("impl", ["dense", "gather"])
def test_elm_network_cuda_equals_cpu(impl):
    torch.manual_seed(0)
    x = (torch.rand(4, 120, 700) < 0.01).float()
    _compare(lambda: ELMNetwork.from_preset("shd-adding", d_m=5, n=20, synapse_impl=impl), x)


@pytest.mark.parametrize("preset", ["lif-shd-adding", "adlif-shd-adding", "lif-iclr2024"])
def test_lif_network_cuda_equals_cpu(preset):
    """Spikes are thresholds: a last-bit rounding difference between the devices can flip one
    spike (on the CPU alone, a 1e-6 relative weight change flips 1 of 7200 adLIF spikes in 60
    steps), after which the trajectories part. So both devices are compared up to the first step
    where their hidden spikes differ, which must not come early; the logits before it must agree
    closely. Surrogate gradients through spiking recurrence are ill-conditioned (on the CPU alone a
    1e-7 relative weight change moves the adLIF hidden-layer gradients by ~1 % in norm), so the
    gradients are compared by their relative norm difference (< 5 %)."""
    torch.manual_seed(1)
    x = (torch.rand(4, 60, 700) < 0.02).float()
    runs = []
    for dev in ("cpu", "cuda"):
        model = LIFNetwork.from_preset(preset, n=30).to(dev).eval()
        with torch.no_grad():
            spikes = model(x.to(dev), record=True).traces["hidden"]["spikes"].cpu()
        runs.append((model, spikes))
    differ = (runs[0][1] != runs[1][1]).any(dim=(0, 2)).nonzero().flatten()
    t0 = int(differ[0]) if len(differ) else x.shape[1]
    assert t0 >= 20, f"devices diverge already at step {t0}"
    results = []
    for (model, _), dev in zip(runs, ("cpu", "cuda")):
        out = model(x[:, :t0].to(dev))
        out.logits.square().sum().backward()
        results.append((out.logits.detach().cpu(), {k: p.grad.cpu() for k, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-4)
    for k, g_cpu in results[0][1].items():
        rel = float((results[1][1][k] - g_cpu).norm() / g_cpu.norm().clamp_min(1e-12))
        assert rel < 0.05, f"{k}: relative gradient difference {rel:.3g}"


def test_reference_path_runs_on_cuda():
    from elm_neuro.networks.elm_config import ELMLayerConfig
    from elm_neuro.networks.elm_layer import ELMLayer

    layer = ELMLayer(ELMLayerConfig(d_m=3, d_tree=4, d_brch=3, rho=0.4), 6, 5, seed=2).cuda()
    x = torch.randn(2, 9, 6, device="cuda")
    torch.testing.assert_close(layer.forward_reference(x).y, layer(x).y, rtol=1e-5, atol=1e-5)


def test_language_model_resumes_on_cuda(tmp_path):
    from elm_neuro.data.enwik8 import load_enwik8_tokens
    from elm_neuro.training.config import TrainConfig
    from elm_neuro.training.language import train_language_model

    tokens = load_enwik8_tokens(None, corpus_bytes=60_000)
    cfg = TrainConfig(task="enwik8", epochs=2, batches_per_epoch=5, batch_size=8, chunk_len=20, optimizer="adam",
                      lr=1e-2, warmup=2, eval_tokens=500, reset_steps=5, device="cuda",
                      model_overrides=dict(d_m=2, n=6, d_tree=3, d_brch=2))
    full = train_language_model(tmp_path / "full", cfg, tokens=tokens, progress=False)
    train_language_model(tmp_path / "part", cfg, tokens=tokens, progress=False, stop_after_epochs=1)
    resumed = train_language_model(tmp_path / "part", resume=True, tokens=tokens, progress=False)
    assert resumed["steps"] == full["steps"] and resumed["device"].startswith("cuda")
    assert resumed["test_bpc"] == pytest.approx(full["test_bpc"], rel=1e-3)


# --------------------------------------------------------------------------- fused engine (Triton)
def _triton_on_cuda_or_skip():
    import os

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs triton's interpreter (TRITON_INTERPRET=1 was set outside the suite)")
    pytest.importorskip("triton")
    from elm_neuro.networks.engines import elm_sequence as Q
    from elm_neuro.networks.engines import elm_triton_grid

    fns = Q.backend(torch.device("cuda"))
    assert fns.forward is elm_triton_grid.forward and fns.backward is elm_triton_grid.backward
    return elm_triton_grid


FUSED_CUDA_LAYERS = {
    # SHD-Adding's hidden layer (d_m 9, d_tree 30 x d_brch 10, rho 0.25, high-pass, relu output,
    # dropout): several neuron blocks per step, recurrent gathers across them
    "shd-adding": (dict(d_m=9, d_tree=30, d_brch=10, rho=0.25, dropout_in=0.2, dropout_rec=0.2), 40, 57, 50, 5),
    # Enwik8's (d_m 20, d_tree 50 x d_brch 15, rho 0.8, tau_r 2), fewer neurons, silu, learnable tau
    "enwik8": (dict(d_m=20, d_tree=50, d_brch=15, rho=0.8, tau_r=2.0, mlp_act="silu", learn_tau=True), 30, 90, 20, 3),
    # a readout-like layer: L = 0, d_o 3 (no recurrent synapses: the grid spreads the neurons), identity output
    "readout-do3": (dict(d_m=4, d_tree=6, d_brch=3, rho=0.0, mlp_layers=0, tau_r=None, output_act="identity",
                         d_o=3, memory_mode="legacy"), 12, 11, 33, 4),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(FUSED_CUDA_LAYERS))
def test_fused_triton_engine_cuda_equals_per_step_path(name, dtype):
    """The fused engine with its Triton kernels on CUDA against the per-step path on CUDA: train
    mode (identical dropout masks), a carried-in state, outputs, state and every parameter gradient."""
    _triton_on_cuda_or_skip()
    from elm_neuro.networks.elm_config import ELMLayerConfig
    from elm_neuro.networks.elm_layer import ELMLayer

    fields, n_in, n, steps, bsz = FUSED_CUDA_LAYERS[name]
    cfg = ELMLayerConfig(**fields)
    layer = ELMLayer(cfg, n_in, n, seed=3).to(device="cuda", dtype=dtype).train()
    assert layer.engine_reason is None
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(bsz, steps, n_in, device="cuda", dtype=dtype, generator=gen)
    state = layer.initial_state(bsz, x.device)
    state = type(state)(*(None if s is None else torch.randn(s.shape, device="cuda", dtype=dtype, generator=gen)
                          for s in state))
    w = torch.randn(bsz, steps, n * cfg.d_o, device="cuda", dtype=dtype, generator=gen)
    results = []
    for path in ("fused", "step"):
        layer.zero_grad()
        torch.manual_seed(5)  # the same dropout masks on both paths
        out = layer.forward_fused(x, state) if path == "fused" else layer.forward_step(x, state)
        loss = (out.y * w).sum() + out.state.m.square().sum() + out.state.y.sum() + out.z_abs_mean.sum()
        if out.state.h is not None:
            loss = loss + out.state.h.sum()
        loss.backward()
        results.append((out, {k: p.grad.detach().clone() for k, p in layer.named_parameters() if p.grad is not None}))
    torch.cuda.synchronize()
    (fused, g_fused), (step, g_step) = results
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused.y, step.y, **tol)
    torch.testing.assert_close(fused.z_abs_mean, step.z_abs_mean, **tol)
    torch.testing.assert_close(fused.state.m, step.state.m, **tol)
    assert g_fused.keys() == g_step.keys() and g_step
    for k in g_step:
        scale = float(g_step[k].abs().max()) + 1.0
        err = float((g_fused[k] - g_step[k]).abs().max())
        assert err <= (1e-10 if dtype == torch.float64 else 1e-3) * scale, f"{k}: {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "stepped"])
@pytest.mark.parametrize("module", ["elm_triton_grid", "elm_triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_kernels_equal_reference_on_cuda(dtype, module, persistent, monkeypatch):
    """The Triton kernels (the whole-GPU backend, persistent over many programs with grid barriers
    and one launch per step, and the earlier one-program-per-sample backend) against the PyTorch
    reference of the kernel contract, both on CUDA, at the Enwik8 preset's per-neuron sizes
    (d_m 20, d_tree 50, H 40) with recurrent synapses (the synapse weights' gradient included)."""
    _triton_on_cuda_or_skip()
    import importlib

    elm_triton = importlib.import_module(f"elm_neuro.networks.engines.{module}")
    if module == "elm_triton_grid":
        monkeypatch.setattr(elm_triton, "PERSISTENT", persistent)
    elif not persistent:
        pytest.skip("the one-program-per-sample backend has one form")
    from elm_neuro.networks.engines import elm_contract as C
    from elm_neuro.networks.engines.inputs import Drive

    gen = torch.Generator(device="cuda").manual_seed(1)
    steps, n, d, m, h, bsz, n_rec = 37, 70, 50, 20, 40, 6, 900

    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, device="cuda", dtype=dtype, generator=gen)

    src = torch.randint(0, n, (n_rec,), device="cuda", generator=gen)
    tgt = torch.randint(0, n * d, (n_rec,), device="cuda", generator=gen)
    rec, order = C.make_recurrent(src, tgt, d, n)
    mask = (torch.rand(n, bsz, device="cuda", generator=gen) > 0.2).to(dtype) * 1.25
    spec = C.Spec(C.MLP_ACTS["relu2"], C.OUT_ACTS["relu"], True, True, 0.6)
    inp = Drive(r(steps, n, d, bsz))
    w = C.Weights(r(n_rec, scale=0.3)[order], r(n, h, d + m, scale=0.15), r(n, h), r(n, m, h, scale=0.15), r(n, m),
                  r(n, 1, m, scale=0.3), r(n, 1), torch.rand(n, m, device="cuda", dtype=dtype, generator=gen),
                  torch.rand(n, m, device="cuda", dtype=dtype, generator=gen))
    s = C.State(r(n, m, bsz), r(n, 1, bsz), r(n, 1, bsz))
    ref, got = C.forward_torch(inp, rec, mask, w, s, spec), elm_triton.forward(inp, rec, mask, w, s, spec)
    g = C.OutGrads(r(steps, n, 1, bsz), r(n, m, bsz), r(n, 1, bsz), r(n, bsz))
    ref_g = C.backward_torch(ref, inp, rec, mask, w, g, spec)
    gb = ref_g.g_beta_all.reshape(steps, n * d, bsz)[:, rec.flat]
    ref_g = ref_g._replace(g_rec_w=(gb * (ref.y_all[:-1, :, 0][:, rec.src] * mask[rec.src])).sum(dim=(0, 2)))
    got_g = elm_triton.backward(got, inp, rec, mask, w, g, spec)
    if got_g.g_rec_w is None:  # the earlier backend leaves it to the autograd Function
        ref_g = ref_g._replace(g_rec_w=None)
    torch.cuda.synchronize()
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for name, want, have in list(zip(C.Saved._fields, ref, got)) + list(zip(C.Grads._fields, ref_g, got_g)):
        if want is None:
            assert have is None, name
            continue
        scale = float(want.abs().max()) + 1.0
        err = float((have - want).abs().max())
        assert err <= tol * scale, f"{name}: {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("family", ["elm", "lif"])
def test_fused_layers_pass_their_first_use_check_and_call_without_host_synchronisation(family):
    """On the GPU the real Triton kernels pass their first-use check (no EngineFallbackWarning, no
    failed verdict), the layer runs fused on Triton, and once the configuration is checked a
    forward and backward make no host synchronisation (torch's sync debug mode raises on one)."""
    _triton_on_cuda_or_skip()
    import warnings

    from elm_neuro.networks.elm_config import ELMLayerConfig
    from elm_neuro.networks.elm_layer import ELMLayer
    from elm_neuro.networks.engines.backends import EngineFallbackWarning, verdicts
    from elm_neuro.networks.lif_config import LIFLayerConfig
    from elm_neuro.networks.lif_layer import LIFLayer

    if family == "elm":
        layer = ELMLayer(ELMLayerConfig(d_m=4, d_tree=3, d_brch=2, rho=0.5, dropout_rec=0.2), 6, 8, seed=1)
    else:
        cfg = LIFLayerConfig(neuron="adlif", n_synapses=6, rho=0.5, dt=1.0, refractory=1)
        layer = LIFLayer(cfg, 6, 8, cfg.rho, seed=1, dropout_rec=0.2)
    layer = layer.cuda().train()
    x = torch.rand(4, 10, 6, device="cuda")

    def call():
        out = layer(x)
        out[0].square().sum().backward()

    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineFallbackWarning)
        call()  # checks the configuration, builds the connectome's tables
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert layer.engine_ran == f"fused {family}_triton"
    assert verdicts() and all(v is None for v in verdicts().values())
