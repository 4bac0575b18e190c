"""The whole-GPU ELM backend (``elm_triton_grid``) on the CPU, under Triton's interpreter: its per-step
bodies, launched once per time step (the form the interpreter can run; the persistent kernel runs
the same bodies between grid barriers), give the PyTorch reference's outputs and gradients for a
Drive and for a Rows input (the input synapses' drive gathered for every step before the loop, their
gradients after it), including every synapse weight's gradient, which the backend reduces itself
after the backward loop."""
import pytest
import torch

from conftest import interpreted_triton_backend
from elm_neuro.networks.engines import elm_contract as C
from elm_neuro.networks.engines import inputs as I
from parity import assert_rounding_close

X = interpreted_triton_backend("elm_triton_grid")


def _problem(dtype, two, act, hp, out, o, seed, rows, rec=True, steps=5, n=5, d=3, m=2, h=5, bsz=3, c=4,
             n_syn=14):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=dtype)

    h1 = h if two else m
    n_src = n + (c if rows else 0)
    if rec or rows:
        src = torch.randint(0 if rec else n, n_src, (n_syn,), generator=g)
        tgt = torch.randint(0, n * d, (n_syn,), generator=g)
        tgt[:3] = 0  # three synapses on one branch
        src[0] = 0 if rec else n
    else:
        src = tgt = torch.zeros(0, dtype=torch.long)
    recur, order = C.make_recurrent(src, tgt, d, n)
    rec_w = r(src.numel())[order]
    mask = (torch.randint(0, 2, (n, bsz), generator=g) * 2).to(dtype)  # zeros and twos
    spec = C.Spec(C.MLP_ACTS[act], C.OUT_ACTS[out], two, hp, 0.6)
    if rows:
        inp = I.Rows(r(steps, c, bsz), (torch.randint(0, 2, (c, bsz), generator=g) * 1.5).to(dtype))
    else:
        inp = I.Drive(r(bsz, steps, n, d).permute(1, 2, 3, 0))  # the layer's strided view
    w = C.Weights(rec_w, r(n, h1, d + m, scale=0.6), r(n, h1), r(n, m, h, scale=0.6) if two else None,
                  r(n, m) if two else None, r(n, o, m), r(n, o), torch.rand(n, m, generator=g, dtype=dtype),
                  1.7 * torch.rand(n, m, generator=g, dtype=dtype))
    s = C.State(r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, o, bsz))
    grads_in = C.OutGrads(r(steps, n, o, bsz), r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, bsz))
    return (inp, recur, mask, w, s, spec), grads_in


def _reference(inp, recur, mask, w, s, spec, g):
    if isinstance(inp, I.Rows):
        ref = C.forward_rows_torch(inp, recur, mask, w, s, spec)
        return ref, C.backward_rows_torch(ref, inp, recur, mask, w, g, spec, True)
    ref = C.forward_torch(inp, recur, mask, w, s, spec)
    ref_g = C.backward_torch(ref, inp, recur, mask, w, g, spec)
    if recur.count:  # the synapse weights' gradient, as the autograd Function forms it
        steps, n, d, bsz = ref.beta_all.shape
        gb = ref_g.g_beta_all.reshape(steps, n * d, bsz)[:, recur.flat]
        ref_g = ref_g._replace(g_rec_w=(gb * (ref.y_all[:-1, :, 0][:, recur.src] * mask[recur.src])).sum(dim=(0, 2)))
    return ref, ref_g


def _check(dtype, two, act, hp, out, o, rows, seed=0, **kw):
    (inp, recur, mask, w, s, spec), g = _problem(dtype, two, act, hp, out, o, seed, rows, **kw)
    ref, ref_g = _reference(inp, recur, mask, w, s, spec, g)
    got = X.forward(inp, recur, mask, w, s, spec)
    got_g = X.backward(got, inp, recur, mask, w, g, spec, True)
    steps, bsz = ref.z_all.shape[0], ref.z_all.shape[-1]
    ops = steps * max(w.W1.shape[1:] + w.wy.shape[1:])
    checked = 0
    for kind, pairs in (("forward", zip(C.Saved._fields, ref, got)), ("backward", zip(C.Grads._fields, ref_g, got_g))):
        for name, want, have in pairs:
            if want is None:
                continue
            assert have is not None, name
            assert have.shape == want.shape and have.dtype == want.dtype, name
            checked += 1
            if dtype == torch.float32:
                assert_rounding_close(have, want, ops if kind == "forward" else 2 * ops + steps * bsz, name)
                continue
            scale = 1.0 + float(want.abs().max()) if want.numel() else 1.0
            err = float((have - want).abs().max()) if want.numel() else 0.0
            assert err <= 1e-12 * scale, f"{name}: max error {err:.3g} (scale {scale:.3g})"
    return checked


MLPS = [(False, "relu2"), (True, "relu2"), (True, "relu"), (True, "silu")]


@pytest.mark.parametrize("rows", [False, True], ids=["drive", "rows"])
@pytest.mark.parametrize("two,act,hp,out", [(False, "relu2", True, "relu"), (True, "relu2", True, "relu"),
                                            (True, "relu", False, "identity"), (True, "silu", True, "identity")],
                         ids=["L0-hp-relu", "L1-relu2-hp-relu", "L1-relu-nohp-id", "L1-silu-hp-id"])
def test_steps_equal_reference_float64(two, act, hp, out, rows):
    checked = _check(torch.float64, two, act, hp, out, 1, rows, seed=len(act) + 3 * two + 5 * hp)
    assert checked >= 14  # every saved tensor and gradient was compared, g_rec_w included


def _rows_run(inp, recur, mask, w, s, spec, g, given=None):
    """``(got, got_g, ref, ref_g)``: the backend (given the CSR ``given``, else ``recur``) and the
    contract's Rows reference, forward and backward with the input rows' gradient."""
    got = X.forward(inp, given or recur, mask, w, s, spec)
    got_g = X.backward(got, inp, given or recur, mask, w, g, spec, True)
    ref = C.forward_rows_torch(inp, recur, mask, w, s, spec)
    return got, got_g, ref, C.backward_rows_torch(ref, inp, recur, mask, w, g, spec, True)


def test_rows_give_the_input_rows_gradient_and_every_synapse_weight_gradient():
    (inp, recur, mask, w, s, spec), g = _problem(torch.float64, True, "relu2", True, "relu", 1, 3, rows=True)
    assert bool((recur.src >= 5).any()) and bool((recur.src < 5).any())  # input and recurrent synapses
    got, got_g, ref, ref_g = _rows_run(inp, recur, mask, w, s, spec, g)
    torch.testing.assert_close(got_g.g_x_rows, ref_g.g_x_rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_g.g_rec_w, ref_g.g_rec_w, rtol=1e-12, atol=1e-12)
    assert float(got_g.g_x_rows.abs().sum()) > 0 and float(got_g.g_rec_w[recur.src >= 5].abs().min()) > 0
    # without want_input_grad the rows' gradient is not made
    assert X.backward(got, inp, recur, mask, w, g, spec, False).g_x_rows is None


@pytest.mark.parametrize("o", [1, 3])
def test_layers_without_synapses_and_wide_outputs(o):
    _check(torch.float64, True, "relu2", o == 1, "identity", o, rows=False, rec=False)


@pytest.mark.parametrize("two", [False, True], ids=["L0", "L1"])
@pytest.mark.parametrize("rows", [False, True], ids=["drive", "rows"])
def test_readout_layers_take_the_first_layer_drive_share_from_the_host(two, rows):
    """A layer whose synapses all read input rows, or that takes a Drive without synapses (the
    readouts): no synapse from a neuron, so the drives' share of the first layer is one product
    for every step on the host (PRE) and the loop keeps the memory's share; checked against the
    reference with the input rows' gradient and every input synapse weight's."""
    from elm_neuro.networks.engines.elm_triton_grid import _Layout
    (inp, recur, mask, w, s, spec), _ = _problem(torch.float64, two, "relu2", False, "identity", 1, 4, rows, rec=False)
    lay = _Layout(recur, w, 5, 2, 1, 3, 4 if rows else 0, spec, not rows, 5)
    assert lay.pre and lay.own.count == 0 and lay.inp.count == (14 if rows else 0)
    assert _check(torch.float64, two, "relu2", False, "identity", 1, rows, seed=4, rec=False) >= 12


@pytest.mark.parametrize("inputs", [True, False], ids=["input-synapses", "no-input-synapses"])
def test_a_csr_without_its_counts_is_counted_by_the_backend(inputs):
    """A Recurrent built without the table widths and the count of synapses from neurons (a caller
    other than make_recurrent): the backend counts them itself and gives the same results, with
    input rows whose synapses are absent too."""
    (inp, recur, mask, w, s, spec), g = _problem(torch.float64, True, "relu2", True, "relu", 1, 5, rows=inputs)
    if not inputs:  # rows nothing reads: every synapse reads a neuron
        inp = I.Rows(torch.randn(5, 4, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64))
    bare = recur._replace(in_width=None, out_width=None, own=None, own_in_width=None, own_out_width=None,
                          inp_in_width=None, inp_out_width=None)
    got, got_g, ref, ref_g = _rows_run(inp, recur, mask, w, s, spec, g, given=bare)
    torch.testing.assert_close(got.y_all, ref.y_all, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.beta_all, ref.beta_all, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_g.g_rec_w, ref_g.g_rec_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_g.g_x_rows, ref_g.g_x_rows, rtol=1e-12, atol=1e-12)
    assert bool((got_g.g_x_rows != 0).any()) == inputs


@pytest.mark.parametrize("o,hp,out", [(1, False, "identity"), (3, True, "relu"), (1, True, "relu")])
def test_readouts_run_one_lane_per_neuron_and_sample(o, hp, out, monkeypatch):
    """A readout without a hidden MLP layer (the presets' readouts: L 0, d_m 3) runs its own kernels,
    one lane per (neuron, sample) over blocks of 32 pairs (5 neurons x 9 samples: two blocks, the
    second part empty), equal to the reference in every saved tensor and gradient."""
    seen = []
    for name in ("_readout_fwd_kernel", "_readout_bwd_kernel", "_fwd_persistent", "_fwd_stepped"):
        monkeypatch.setattr(X, name, _Spy(getattr(X, name), name, seen))
    for rows in (False, True):
        seen.clear()
        assert _check(torch.float64, False, "relu2", hp, out, o, rows, seed=6, rec=False, bsz=9) >= 11
        assert seen == ["_readout_fwd_kernel", "_readout_bwd_kernel"]


def test_source_gradients_launch_in_parts_of_at_most_the_grid_limit(monkeypatch):
    """The input rows' gradient takes one program per step along the grid's third dimension, which
    CUDA caps at 65,535: longer sequences launch in parts (a cap of 2 here, 5 steps: 2 + 2 + 1)."""
    monkeypatch.setattr(X, "MAX_GRID_Z", 2)
    _check(torch.float64, True, "relu2", True, "relu", 1, rows=True, steps=5)


def test_gathers_over_every_step_in_chunks_with_a_partial_last_chunk(monkeypatch):
    """The input drive and the weight gradient run over chunks of steps; 5 steps in chunks of 2 leave
    a last chunk of one step, whose missing step must be neither read nor written."""
    from elm_neuro.networks.engines import elm_triton_grid as G
    seen = []

    def chunks(steps, rows):
        seen.append(steps)
        return 2, -(-steps // 2)
    monkeypatch.setattr(G, "_chunks", chunks)
    _check(torch.float64, True, "relu2", True, "relu", 1, rows=True, steps=5)
    assert seen == [5, 5]  # the forward's input drive and the backward's weight gradient


def test_float32_within_rounding_and_batches_over_a_lane_block():
    """float32, and a batch of 40 (two sample blocks of 32 lanes per neuron: 2 N work items)."""
    _check(torch.float32, True, "relu2", True, "relu", 1, rows=True, bsz=40, steps=3)


def test_float64_rows_against_the_reference_at_a_reference_rows_layer():
    """The contract's Rows reference equals a direct evaluation: the drive of the input synapses
    is ``sum w x mask`` per target column (a hand-built two-synapse case)."""
    x = torch.tensor([[[1.0], [2.0]]], dtype=torch.float64)  # T 1, C 2, B 1
    rows = I.Rows(x, torch.tensor([[1.0], [0.5]], dtype=torch.float64))
    # one neuron (N 1), two branches: source rows 1 and 2 are channels 0 and 1, row 0 the neuron itself
    rec, order = C.make_recurrent(torch.tensor([1, 2, 0]), torch.tensor([0, 0, 1]), 2, 1)
    rec_w = torch.tensor([3.0, 5.0, 7.0], dtype=torch.float64)[order]
    drive, own, own_w = C.rows_as_drive(rows, rec, rec_w, 1, 2)
    assert drive.drive.shape == (1, 1, 2, 1)
    assert float(drive.drive[0, 0, 0, 0]) == 3.0 * 1.0 * 1.0 + 5.0 * 2.0 * 0.5
    assert float(drive.drive[0, 0, 1, 0]) == 0.0
    assert own.count == 1 and float(own_w[0]) == 7.0


def test_outgoing_synapses_gathered_in_chunks(monkeypatch):
    """Chunks of 2 outgoing synapses (the GPU's 32 shrunk so that the tiny problem needs several)."""
    monkeypatch.setattr(X, "OUT_CHUNK", 2)
    (inp, recur, *_), _ = _problem(torch.float64, True, "relu2", True, "relu", 1, 0, rows=True)
    assert recur.own_out_width > 2 and recur.inp_out_width > 2  # the neurons' and the input rows' tables
    _check(torch.float64, True, "relu2", True, "relu", 1, rows=True)


@pytest.mark.parametrize("rows,rec", [(False, True), (True, True), (True, False)], ids=["drive", "rows", "readout"])
def test_persistent_kernels_equal_reference(rows, rec, monkeypatch):
    """The persistent kernels themselves (time loop, item loop and grid barrier inside the kernel):
    off CUDA their grid is one program, which passes each barrier on its own arrival, so the
    interpreter runs them; on a GPU tests/test_cuda.py runs them over many programs."""
    monkeypatch.setattr(X, "PERSISTENT", True)
    seen = []
    for name in ("_fwd_persistent", "_bwd_persistent"):
        kernel = getattr(X, name)
        monkeypatch.setattr(X, name, _Spy(kernel, name, seen))
    _check(torch.float64, True, "relu2", True, "relu", 1, rows=rows, rec=rec)
    assert seen == ["_fwd_persistent", "_bwd_persistent"]


class _Spy:
    def __init__(self, kernel, name, seen):
        self.kernel, self.name, self.seen = kernel, name, seen

    def __getitem__(self, grid):
        self.seen.append(self.name)
        return self.kernel[grid]
