"""The fused LIF engine's Triton (CUDA) backend and the leaky filter's scan kernels on the CPU,
under Triton's interpreter (set up in tests/conftest.py): equal to the PyTorch reference
(``lif_contract.forward_torch`` / ``backward_torch``, ``leaky_scan.scan_torch``) for every option
that changes the kernel and every tiling, and ``LIFLayer.forward_fused`` on it equals the per-step
path. Tiny sizes: the interpreter is slow.
"""
import pytest
import torch

from conftest import interpreted_triton_backend
from elm_neuro.networks.engines import leaky_scan as LS
from elm_neuro.networks.engines.backends import Backend
from lif_engine_checks import assert_backend_equals_reference, kernel_problem, lif_spec

X = interpreted_triton_backend("lif_triton")
TRITON = Backend("lif_triton", X.forward, X.backward, X.TAKES)


_spec = lif_spec


def _check(dtype, spec, seed=0, steps=6, n=5, bsz=3):
    problem, grads_in = kernel_problem(dtype, spec, steps=steps, n=n, bsz=bsz, seed=seed)
    assert_backend_equals_reference(TRITON, problem, grads_in, spec, dtype)


SPECS = {
    "lif": _spec(),
    "adlif-gain-atan": _spec(adaptive=True, has_gain=True, surrogate=1),
    "adlif-zero-refr-attached-superspike": _spec(adaptive=True, reset=1, detach=False, refractory=2, surrogate=2),
    "lif-zero-refr-gain-norec": _spec(reset=1, refractory=1, has_gain=True, recurrent=False),
    "lif-attached": _spec(detach=False),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_kernels_equal_reference_float64(name):
    _check(torch.float64, SPECS[name], seed=len(name))


@pytest.mark.parametrize("name", ["adlif-gain-atan", "adlif-zero-refr-attached-superspike"])
def test_kernels_equal_reference_float32(name):
    _check(torch.float32, SPECS[name], seed=3)


@pytest.mark.parametrize("layout", ["streamed-one-block", "streamed-blocks", "batch-blocks"])
def test_kernels_equal_reference_other_layouts(monkeypatch, layout):
    """The map streamed in tiles instead of held in registers; several neuron blocks per step (the
    recurrent current reads the other blocks' spikes of the last step); programs of two samples
    with a masked third."""
    monkeypatch.setattr(X, "RESIDENT_BUDGET", {4: 0, 8: 0})
    if layout == "streamed-blocks":
        monkeypatch.setattr(X, "TILE_BUDGET", {4: 32, 8: 32})  # BN 16 > n? no: n = 20 below -> two blocks
    if layout == "batch-blocks":
        monkeypatch.setattr(X, "BATCH_BLOCK", 2)
    n = 20 if layout == "streamed-blocks" else 5
    bb, bn, bk, nblk, resident = X._layout(n, 3, 8)
    assert not resident
    if layout == "streamed-blocks":
        assert nblk == 2 and bk < n
    if layout == "batch-blocks":
        assert bb == 2
    _check(torch.float64, SPECS["adlif-zero-refr-attached-superspike"], seed=5, n=n, steps=4)
    _check(torch.float64, SPECS["lif-attached"], seed=6, n=n, steps=4)


def test_resident_map_is_used_for_small_layers():
    assert X._layout(5, 3, 8)[4] and not X._layout(300, 3, 4)[4]


@pytest.mark.parametrize("gain", [1.0, 0.25])
def test_scan_kernels_equal_the_step_by_step_filter(gain):
    g = torch.Generator().manual_seed(1)
    d = torch.randn(2, 9, 5, generator=g, dtype=torch.float64)
    o0 = torch.randn(2, 5, generator=g, dtype=torch.float64)
    go = torch.randn(2, 9, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(X.scan_forward(d, o0, 0.7, gain), LS.scan_torch(d, o0, 0.7, gain), rtol=0, atol=1e-14)
    for a, b in zip(X.scan_backward(go, 0.7, gain), LS.scan_backward_torch(go, 0.7, gain)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_layer_forward_fused_on_triton_equals_per_step_path():
    """End to end: LIFLayer.forward_fused with the Triton backend against forward_step, train mode
    (identical dropout masks), a carried-in state, spikes, state and every parameter gradient."""
    from elm_neuro.networks.lif_config import LIFLayerConfig
    from elm_neuro.networks.lif_layer import LIFLayer
    from elm_neuro.neurons.lif import LIFState

    cfg = LIFLayerConfig(neuron="adlif", n_synapses=6, rho=0.5, dt=1.0, tau_mem_min=2.0, tau_mem_max=8.0,
                         tau_adapt_min=5.0, tau_adapt_max=20.0, adapt_a_min=0.0, adapt_a_max=0.2, adapt_b_max=0.3,
                         weight_scale=10.0, current_gain="unit", threshold=0.5, refractory=1, reset="zero",
                         detach_reset=False)
    layer = LIFLayer(cfg, 4, 5, cfg.rho, seed=1, dropout_in=0.2, dropout_rec=0.3).double().train()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 7, 4, generator=g) < 0.5).double()
    st = layer.initial_state(2)
    state = LIFState(torch.randn(st.v.shape, generator=g, dtype=torch.float64), (torch.rand(st.s.shape, generator=g)
                     < 0.5).double(), torch.randn(st.w.shape, generator=g, dtype=torch.float64), st.ref + 1.0)
    probe = torch.randn(2, 7, 5, generator=g, dtype=torch.float64)
    results = []
    for path in ("fused", "step"):
        torch.manual_seed(5)
        out = layer.forward_fused(x, state, backend=TRITON) if path == "fused" \
            else layer.forward_step(x, state)
        loss = (out.s * probe).sum() + out.state.v.sum() + out.state.w.sum()
        results.append((out, torch.autograd.grad(loss, list(layer.parameters()))))
    (fused, g_fused), (step, g_step) = results
    assert torch.equal(fused.s, step.s) and 0.05 < float(step.s.detach().mean()) < 0.95
    for a, b in zip(fused.state, step.state):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_fused, g_step):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
