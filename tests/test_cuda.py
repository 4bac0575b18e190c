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
