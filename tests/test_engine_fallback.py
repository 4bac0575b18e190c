"""A compiled backend that fails never takes training down (issue 24 §2), on the CPU.

The CUDA path runs here: the dispatch modules' ``pick`` answers as for a CUDA device (so the
layers get the Triton backends, whose kernels run under Triton's interpreter, tests/conftest.py)
and ``"cpu"`` joins ``backends.CHECKED_DEVICE_TYPES`` (so the first-use check runs). Faults are
made by patching the Triton modules: a kernel that fails to compile, a module that cannot be
imported, a kernel with wrong results, a kernel that fails inside a real call. Each time the layer
on ``engine='auto'`` warns once (:class:`EngineFallbackWarning`) and gives the per-step path's
outputs and gradients; on ``engine='fused'`` it raises naming the reason. The real kernels pass
their check (no false alarm), and the Triton host code makes no host synchronisation per call.
"""
import ast
import importlib
import sys
import warnings

import pytest
import torch

from conftest import interpreted_triton_backend
from elm_neuro.networks.common import leaky_integrate
from elm_neuro.networks.elm_config import ELMLayerConfig
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.networks.engines import backends as B
from elm_neuro.networks.engines import elm_contract as C
from elm_neuro.networks.engines import elm_sequence, leaky_scan, lif_sequence
from elm_neuro.networks.engines import inputs as I
from elm_neuro.networks.engines.backends import BackendUnusable, CheckMismatch, EngineFallbackWarning
from elm_neuro.networks.lif_config import LIFLayerConfig
from elm_neuro.networks.lif_layer import LIFLayer

ET = interpreted_triton_backend("elm_triton_grid")  # the CUDA backend of the ELM engine
LT = interpreted_triton_backend("lif_triton")
from triton.compiler.errors import CompilationError  # noqa: E402  (after the skip above)


@pytest.fixture
def as_cuda(monkeypatch):
    """The engines' dispatch picks the CUDA (Triton) backends for CPU tensors and checks them on first
    use; verdicts start empty and are dropped after the test."""
    monkeypatch.setattr(B, "_verdicts", {})
    monkeypatch.setattr(B, "CHECKED_DEVICE_TYPES", ("cpu",))
    real = B.pick

    def pick_cuda(device, *args, **kwargs):
        return real(torch.device("cuda"), *args, **kwargs)

    for mod in (elm_sequence, lif_sequence, leaky_scan):
        monkeypatch.setattr(mod, "pick", pick_cuda)


def elm_layer(dtype=torch.float32, engine="auto", **over):
    kw = dict(d_m=2, d_tree=2, d_brch=2, rho=0.5, mlp_layers=0, engine=engine)
    kw.update(over)
    return ELMLayer(ELMLayerConfig(**kw), 3, 4, seed=1).to(dtype).eval()


def lif_layer(dtype=torch.float32, engine="auto", **over):
    kw = dict(neuron="adlif", n_synapses=4, rho=0.5, dt=1.0, tau_mem_min=2.0, tau_mem_max=8.0, tau_adapt_min=5.0,
              tau_adapt_max=20.0, adapt_a_min=0.0, adapt_a_max=0.2, adapt_b_max=0.3, weight_scale=10.0,
              threshold=0.5, engine=engine)
    kw.update(over)
    cfg = LIFLayerConfig(**kw)
    return LIFLayer(cfg, 3, 4, cfg.rho, seed=1).to(dtype).eval()


def inputs(dtype=torch.float32, steps=3, bsz=2, n_in=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(bsz, steps, n_in, generator=g) < 0.6).to(dtype)


def outputs_and_grads(layer, x, path):
    out = layer.forward_step(x) if path == "step" else layer(x)
    y = out[0]
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    grads = torch.autograd.grad((y * probe).sum(), [p for p in layer.parameters() if p.requires_grad])
    return y.detach(), grads


def assert_same_as_step(layer, x, tol=1e-6):
    y, g = outputs_and_grads(layer, x, "auto")
    y_ref, g_ref = outputs_and_grads(layer, x, "step")
    torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def fallback_warnings(caught):
    return [w for w in caught if issubclass(w.category, EngineFallbackWarning)]


class BrokenKernel:
    """A Triton kernel whose every launch fails to compile (as ``kernel[grid](...)`` would)."""

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            raise CompilationError("def kernel(x_ptr):\n    y = undefined_op(x_ptr)\n",
                                   ast.parse("y = undefined_op(x_ptr)").body[0], "undefined_op is not defined")
        return launch


# --------------------------------------------------------------------------- (a) a kernel fails to compile
def test_a_kernel_that_fails_to_compile_warns_once_and_the_layer_steps(as_cuda, monkeypatch):
    monkeypatch.setattr(ET, "_fwd_stepped", BrokenKernel())
    layer, x = elm_layer(), inputs()
    with pytest.warns(EngineFallbackWarning) as caught:
        y = layer(x).y
    (w,) = fallback_warnings(caught)
    msg = str(w.message)
    assert "elm_triton_grid on cpu for float32" in msg and "BB=" in msg and "HAS_REC=1" in msg  # backend, dtype, config
    assert "failed its first-use check" in msg and "CompilationError" in msg and "undefined_op" in msg
    torch.testing.assert_close(y, layer.forward_step(x).y, rtol=0, atol=0)
    assert layer.engine == "step" and layer.engine_reason == msg
    assert layer.engine_ran.startswith("step (elm_triton_grid on cpu for float32")
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert_same_as_step(layer, x, tol=0)  # the second call: the step path, no new warning
        assert_same_as_step(elm_layer(), x, tol=0)  # another layer of the same configuration: the verdict holds
    assert not fallback_warnings(again)
    assert list(B.verdicts().values()) == [msg]


def test_a_scan_kernel_that_fails_to_compile_falls_back_to_the_reference(as_cuda, monkeypatch):
    monkeypatch.setattr(LT, "_scan_fwd_kernel", BrokenKernel())
    g = torch.Generator().manual_seed(0)
    drive = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    o0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    with pytest.warns(EngineFallbackWarning, match="lif_triton on cpu for float64 BC=4 UNIT=0 failed its first-use"):
        o, o_T = leaky_scan.leaky_scan(drive, o0, 0.8, 0.2)
    want, want_T = leaky_integrate(drive, o0, 0.8, 0.2)
    torch.testing.assert_close(o, want, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(o_T, want_T, rtol=1e-14, atol=1e-14)
    g_got, = torch.autograd.grad(o.sum(), drive)
    g_want, = torch.autograd.grad(want.sum(), drive)
    torch.testing.assert_close(g_got, g_want, rtol=1e-14, atol=1e-14)


# --------------------------------------------------------------------------- (b) no Triton on the device
@pytest.fixture
def triton_unimportable(monkeypatch):
    real = importlib.import_module

    def import_module(name, *args, **kwargs):
        if name.endswith(("_triton", "_triton_grid")):
            raise RuntimeError("0 active drivers ([]). There should only be one.")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(B.importlib, "import_module", import_module)


def test_a_device_without_triton_support_falls_back_with_one_warning(as_cuda, triton_unimportable):
    x = inputs()
    for make, module in ((elm_layer, "elm_triton_grid"), (lif_layer, "lif_triton")):
        layer = make()
        with pytest.warns(EngineFallbackWarning, match=f"{module} cannot be imported for cuda "
                                                       r"\(RuntimeError: 0 active drivers"):
            out = layer(x)
        torch.testing.assert_close(out[0], layer.forward_step(x)[0], rtol=0, atol=0)
        assert layer.engine_reason.startswith(f"{module} cannot be imported") and layer.engine == "step"
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            make()(x)
        assert not fallback_warnings(again)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        o, _ = leaky_scan.leaky_scan(x, torch.zeros(2, 3), 0.5, 0.25)  # the filter's backend is lif_triton too
    assert not fallback_warnings(again)
    torch.testing.assert_close(o, leaky_integrate(x, torch.zeros(2, 3), 0.5, 0.25)[0], rtol=0, atol=0)
    with pytest.raises(BackendUnusable, match="elm_triton_grid cannot be imported"):  # the verdict holds: no new try
        elm_sequence.backend(torch.device("cpu"))


# --------------------------------------------------------------------------- (c) wrong results
def test_a_kernel_with_wrong_results_fails_its_check_and_the_layer_steps(as_cuda, monkeypatch):
    real = ET.forward

    def off_by_a_little(*args):
        saved = real(*args)
        return saved._replace(y_all=saved.y_all + 1e-3)

    monkeypatch.setattr(ET, "forward", off_by_a_little)
    layer, x = elm_layer(torch.float64), inputs(torch.float64)
    with pytest.warns(EngineFallbackWarning, match=r"elm_triton_grid on cpu for float64 .* \(CheckMismatch: forward "
                                                   r"y_all differs from the reference by 0.001"):
        y = layer(x).y
    torch.testing.assert_close(y, layer.forward_step(x).y, rtol=0, atol=0)


def lif_spec(layer):
    from elm_neuro.networks.engines import lif_contract as LC
    _, params, _ = layer._folded_weights()
    return LC.make_spec(layer.cfg, has_gain=params.gain is not None, recurrent=True)


def lif_weights_and_state(layer, cur):
    from elm_neuro.networks import synapses as S
    from elm_neuro.networks.engines import lif_contract as LC
    w_eff, params, _ = layer._folded_weights()
    m = S.dense_map(layer.connectome, w_eff, layer.n_in, layer.n_in + layer.n).detach()
    w = LC.Weights(m, *(None if t is None else t.detach() for t in (params.kappa_m, params.gain, params.kappa_w,
                                                                       params.a, params.b)))
    st = layer.initial_state(cur.shape[0])
    return w, LC.State(st.v, st.s, st.w, st.ref)


def test_the_check_raises_check_mismatch_for_a_wrong_gradient():
    real = LT.backward

    def wrong(*args):
        g = real(*args)
        return g._replace(g_a=g.g_a * 1.01)

    layer = lif_layer(torch.float64)
    cur = torch.rand(2, 3, 4, dtype=torch.float64)
    w, s = lif_weights_and_state(layer, cur)
    spec = lif_spec(layer)
    fns = B.Backend("lif_triton", LT.forward, wrong, LT.TAKES, None, LT.compile_key)
    lif_sequence.check(B.Backend("lif_triton", LT.forward, LT.backward, LT.TAKES, None, LT.compile_key), cur,
                       torch.ones(2, 4, dtype=torch.float64), w, s, spec)  # the real one passes
    with pytest.raises(CheckMismatch, match="backward g_a differs from the reference"):
        lif_sequence.check(fns, cur, torch.ones(2, 4, dtype=torch.float64), w, s, spec)


# --------------------------------------------------------------------------- (d) failure in a real call
def test_a_failure_in_backward_of_a_real_call_takes_the_references_gradients(as_cuda, monkeypatch):
    real, calls = LT.backward, []

    def fails_after_the_check(*args):
        calls.append(1)
        if len(calls) > 1:  # the first call is the first-use check's
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(*args)

    monkeypatch.setattr(LT, "backward", fails_after_the_check)
    layer, x = lif_layer(torch.float64), inputs(torch.float64, steps=4)
    with pytest.warns(EngineFallbackWarning, match=r"lif_triton on cpu for float64 .* failed in a call"):
        y, g = outputs_and_grads(layer, x, "auto")  # forward on Triton, backward on the reference
    assert layer.engine_ran == "fused lif_triton" and len(calls) == 2
    y_ref, g_ref = outputs_and_grads(layer, x, "step")
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_failure_in_backward_warns_and_the_layer_steps_from_then_on(as_cuda, monkeypatch):
    real, calls = ET.backward, []

    def fails_after_the_check(*args):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(*args)

    monkeypatch.setattr(ET, "backward", fails_after_the_check)
    layer, x = elm_layer(torch.float64), inputs(torch.float64)
    with pytest.warns(EngineFallbackWarning, match=r"elm_triton_grid on cpu for float64 .* failed in a call \(RuntimeError: "
                                                   "CUDA error: an illegal memory access"):
        y, g = outputs_and_grads(layer, x, "auto")
    y_ref, g_ref = outputs_and_grads(layer, x, "step")
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g, g_ref):  # the reference's gradients for this call
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert layer.engine_ran == "fused elm_triton_grid"  # this call's forward ran on Triton
    layer(x)
    assert layer.engine_ran.startswith("step (elm_triton_grid on cpu for float64") and "failed in a call" in \
        layer.engine_reason


def test_a_failure_in_forward_of_a_real_call_steps_that_call(as_cuda, monkeypatch):
    real, calls = ET.forward, []

    def fails_after_the_check(*args):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("triton.runtime.errors.OutOfResources: out of resource: shared memory")
        return real(*args)

    monkeypatch.setattr(ET, "forward", fails_after_the_check)
    layer, x = elm_layer(), inputs()
    with pytest.warns(EngineFallbackWarning, match="failed in a call"):
        y = layer(x).y
    torch.testing.assert_close(y, layer.forward_step(x).y, rtol=0, atol=0)
    assert layer.engine_ran.startswith("step (") and len(calls) == 2


# --------------------------------------------------------------------------- (e) engine = 'fused'
def test_engine_fused_raises_with_the_reason(as_cuda, monkeypatch):
    monkeypatch.setattr(ET, "_fwd_stepped", BrokenKernel())
    layer = elm_layer(engine="fused")
    with pytest.warns(EngineFallbackWarning):
        with pytest.raises(RuntimeError, match="engine 'fused' cannot run this layer: elm_triton_grid on cpu for float32 "
                                               ".* failed its first-use check .*CompilationError"):
            layer(inputs())


def test_engine_fused_without_triton_raises_with_the_reason(as_cuda, triton_unimportable):
    with pytest.warns(EngineFallbackWarning):
        with pytest.raises(RuntimeError, match="engine 'fused' cannot run this layer: lif_triton cannot be imported"):
            lif_layer(engine="fused")(inputs())


# --------------------------------------------------------------------------- float16 / bfloat16
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("make", [elm_layer, lif_layer], ids=["elm", "lif"])
def test_half_precision_layers_step_on_auto_and_refuse_fused(as_cuda, make, dtype):
    x = inputs(dtype)
    layer = make(dtype)
    assert layer.engine == "step" and f"parameters in {dtype}" in layer.engine_reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = layer(x)
    assert not fallback_warnings(caught) and out[0].dtype == dtype
    torch.testing.assert_close(out[0], make(dtype, engine="step")(x)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"engine 'fused' does not cover this configuration: parameters in {dtype}"):
        make(dtype, engine="fused")(x)
    with pytest.raises(ValueError, match=f"parameters in {dtype}"):
        make(dtype).forward_fused(x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_triton_host_code_refuses_half_precision_with_a_clear_error(dtype):
    assert "parameters in" in C.unsupported_reason(ELMLayerConfig(d_m=2, d_tree=2, d_brch=2), dtype)
    with pytest.raises(TypeError, match=f"elm_triton_grid computes in float32 or float64, not {dtype}"):
        ET._elem_ok(dtype)
    with pytest.raises(TypeError, match=f"lif_triton computes in float32 or float64, not {dtype}"):
        LT.scan_compile_key(torch.zeros(1, 1, 3, dtype=dtype), None, 0.5, 1.0)


# --------------------------------------------------------------------------- (f) no false alarm
ELM_CASES = {"recurrent-L0": dict(tau_r=None), "L1-relu2-mlp": dict(mlp_layers=1, d_mlp=3, mlp_act="relu2", tau_r=None),
             "hp-L1-silu": dict(mlp_layers=1, d_mlp=3, mlp_act="silu", tau_r=3.0)}
LIF_CASES = {"adaptive": dict(), "refractory-zero-reset": dict(neuron="lif", refractory=1, reset="zero",
                                                               current_gain="leak")}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(ELM_CASES) + list(LIF_CASES))
def test_the_real_kernels_pass_their_check(as_cuda, case, dtype):
    make, over = (elm_layer, ELM_CASES[case]) if case in ELM_CASES else (lif_layer, LIF_CASES[case])
    layer, x = make(dtype, **over), inputs(dtype, steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineFallbackWarning)
        assert_same_as_step(layer, x, tol=1e-5 if dtype == torch.float32 else 1e-10)
        leaky_scan.leaky_scan(x, torch.zeros(2, 3, dtype=dtype), 0.5, 0.5)
    name = "elm_triton_grid" if make is elm_layer else "lif_triton"
    assert layer.engine_ran == f"fused {name}"
    checked = B.verdicts()
    assert {k[0] for k in checked} == {name, "lif_triton"} and all(v is None for v in checked.values())


# --------------------------------------------------------------------------- no host synchronisation
@pytest.fixture
def no_sync(monkeypatch):
    """Within the block, the package's own code may not turn a tensor into a Python value (``item``,
    ``int``, ``float``, ``bool``, ``tolist``, ``__index__``): each would wait for the device."""
    def trap(name):
        real = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "elm_neuro" in caller and active:
                raise AssertionError(f"Tensor.{name} called from {caller}:{sys._getframe(1).f_lineno}")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, method)

    active = []
    for name in ("item", "__int__", "__float__", "__bool__", "tolist", "__index__"):
        trap(name)
    return active


def test_the_triton_host_code_makes_no_host_synchronisation(no_sync):
    g = torch.Generator().manual_seed(0)
    n, d, m, bsz, steps = 3, 2, 2, 2, 3
    src, tgt = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 5])
    rec, order = C.make_recurrent(src, tgt, d, n)
    assert (rec.in_width, rec.out_width) == (2, 2)
    spec = C.Spec(C.MLP_ACTS["relu2"], C.OUT_ACTS["identity"], False, True, 0.6)
    w = C.Weights(torch.randn(4, generator=g), torch.randn(n, m, d + m, generator=g), torch.randn(n, m, generator=g),
                  None, None, torch.randn(n, 1, m, generator=g), torch.randn(n, 1, generator=g),
                  torch.rand(n, m, generator=g), torch.rand(n, m, generator=g))
    s = C.State(torch.randn(n, m, bsz, generator=g), torch.randn(n, 1, bsz, generator=g),
                torch.randn(n, 1, bsz, generator=g))
    inp, mask = I.Drive(torch.randn(steps, n, d, bsz, generator=g)), torch.ones(n, bsz)
    gr = C.OutGrads(torch.randn(steps, n, 1, bsz, generator=g), torch.randn(n, m, bsz, generator=g),
                    torch.randn(n, 1, bsz, generator=g), torch.randn(n, bsz, generator=g))
    want = C.forward_torch(inp, rec, mask, w, s, spec)
    no_sync.append(True)
    saved = ET.forward(inp, rec, mask, w, s, spec)
    grads = ET.backward(saved, inp, rec, mask, w, gr, spec)
    ET.compile_key(inp, rec, mask, w, s, spec)
    no_sync.clear()
    torch.testing.assert_close(saved.y_all, want.y_all, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads.g_wy, C.backward_torch(want, inp, rec, mask, w, gr, spec).g_wy, rtol=1e-4,
                               atol=1e-4)
    # a Rows input: the synapses from input rows split off and gathered outside the loop, still without
    # a synchronisation (the CSR counted both parts' widths)
    rec_r, order_r = C.make_recurrent(torch.tensor([0, 3, 4, 2, 1]), torch.tensor([0, 1, 1, 5, 2]), d, n)
    rows = I.Rows(torch.randn(steps, 2, bsz, generator=g), torch.ones(2, bsz))
    w_r = w._replace(rec_w=torch.randn(5, generator=g)[order_r])
    want_r = C.forward_rows_torch(rows, rec_r, mask, w_r, s, spec)
    no_sync.append(True)
    saved_r = ET.forward(rows, rec_r, mask, w_r, s, spec)
    grads_r = ET.backward(saved_r, rows, rec_r, mask, w_r, gr, spec)
    no_sync.clear()
    torch.testing.assert_close(saved_r.y_all, want_r.y_all, rtol=1e-5, atol=1e-5)
    want_gr = C.backward_rows_torch(want_r, rows, rec_r, mask, w_r, gr, spec, True)
    torch.testing.assert_close(grads_r.g_rec_w, want_gr.g_rec_w, rtol=1e-4, atol=1e-4)
    with pytest.raises(AssertionError, match="Tensor.__int__ called from .*elm_triton_grid.py"):  # the trap works
        no_sync.append(True)
        ET._width(None, rec.flat, n * d)


@pytest.mark.parametrize("make", [elm_layer, lif_layer], ids=["elm", "lif"])
def test_a_fused_layer_call_on_triton_makes_no_host_synchronisation(as_cuda, no_sync, make):
    layer, x = make().train(), inputs()
    outputs_and_grads(layer, x, "auto")  # the first call checks the configuration and counts the widths
    no_sync.append(True)
    y, g = outputs_and_grads(layer, x, "auto")
    no_sync.clear()
    assert layer.engine_ran == f"fused {'elm_triton_grid' if make is elm_layer else 'lif_triton'}"


# --------------------------------------------------------------------------- the CSR is built once
def test_the_elm_layer_builds_its_csr_once_per_connectome(monkeypatch):
    layer, x = elm_layer(torch.float64), inputs(torch.float64)
    built = []
    real = C.make_recurrent
    monkeypatch.setattr(C, "make_recurrent", lambda *a: built.append(1) or real(*a))
    y1 = layer(x).y
    y2 = layer(x).y
    assert len(built) == 1 and torch.equal(y1, y2)
    torch.testing.assert_close(y1, layer.forward_step(x).y, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # a new connectome (load_state_dict copies into the buffer): built anew
        layer.connectome.copy_(torch.roll(layer.connectome, 1, 0))
    torch.testing.assert_close(layer(x).y, layer.forward_step(x).y, rtol=1e-12, atol=1e-12)
    assert len(built) == 2
    rec, _ = layer._engine_synapses(layer.effective_synapses(), False)
    assert rec.in_width == int(torch.bincount(rec.flat).max()) and rec.out_width == int(torch.bincount(rec.src).max())



# --------------------------------------------------------------------------- what a run records
def test_a_training_run_records_the_fallback_in_its_config_and_engines_line(as_cuda, triton_unimportable, tmp_path,
                                                                           capsys):
    from elm_neuro.data.synth import write_synthetic_shd
    from elm_neuro.training.config import TrainConfig
    from elm_neuro.training.run import RunDir
    from elm_neuro.training.trainer import run_training

    write_synthetic_shd(tmp_path / "shd", 60, 30, seed=1)
    cfg = TrainConfig(task="shd-adding", model="elm", model_overrides=dict(d_m=2, d_tree=4, d_brch=3, n=6),
                      data_dir=str(tmp_path / "shd"), epochs=1, batches_per_epoch=1, batch_size=2, valid_batches=1,
                      test_batches=1, bin_ms=50.0, channel_factor=14, warmup=1, device="cpu")
    with pytest.warns(EngineFallbackWarning, match="elm_triton_grid cannot be imported"):
        run_training(tmp_path / "run", cfg, resume=False, progress=False)
    runtime = RunDir(tmp_path / "run").read_config()["runtime"]
    reason = ("elm_triton_grid cannot be imported for cuda (RuntimeError: 0 active drivers ([]). There should only be "
              "one.); layers that would run it take the per-step path")
    assert runtime["engines"] == {"hidden": f"step ({reason})", "readout": f"step ({reason})"}
    assert runtime["engine_fallbacks"] == [reason]
    assert f"run: engines: hidden step ({reason}), readout step ({reason})\n" in capsys.readouterr().out
