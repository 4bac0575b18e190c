"""How inputs reach the engines (elm_neuro.networks.engines.inputs): the one rule that chooses the
form (events, rows, drive), the compiled event lister against its reference, the synapses listed
by channel, and the event-driven input projection against the dense product."""
import pytest
import torch

from elm_neuro.networks.engines import inputs as I
from elm_neuro.networks.engines import inputs_numba
from elm_neuro.networks.engines import projection as P
from parity import assert_all_close

ALL = (I.Drive, I.Events, I.Rows)


def _spikes(density, shape=(3, 20, 10), seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < density).float()


def test_the_rule_chooses_events_then_rows_then_drive():
    sparse, dense = _spikes(0.1), _spikes(0.9)
    form, listed = I.input_form(sparse, None, ALL, synapse_fill=0.05)
    assert form is I.Events and int(listed.ptr[-1]) == int(sparse.count_nonzero())
    assert I.input_form(dense, None, ALL, synapse_fill=0.05) == (I.Rows, None)
    assert I.input_form(dense, None, ALL, synapse_fill=0.5) == (I.Drive, None)
    # a backend that does not take a form never gets it
    assert I.input_form(sparse, None, (I.Drive, I.Rows), synapse_fill=0.05) == (I.Rows, None)
    assert I.input_form(sparse, None, (I.Drive,), synapse_fill=0.0) == (I.Drive, None)
    # the density counts x * mask: a mask that silences most channels makes a dense input sparse
    mask = torch.zeros(3, 10)
    mask[:, 0] = 1.25
    form, listed = I.input_form(dense, mask, ALL)
    assert form is I.Events and torch.all(listed.chan == 0) and torch.all(listed.value == 1.25)
    # at the threshold: events; just above it: not
    x = torch.zeros(1, 4, 10)
    x.view(-1)[:10] = 1.0  # 25 % non-zero
    assert I.input_form(x, None, ALL)[0] is I.Events
    x.view(-1)[10] = 1.0
    assert I.input_form(x, None, ALL)[0] is I.Drive
    # integer inputs and autocast take the dense product
    assert I.input_form(sparse.long(), None, ALL)[0] is I.Drive
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert I.input_form(sparse, None, ALL)[0] is I.Drive


def test_synapses_by_channel():
    src = torch.tensor([2, 0, 2, 1, 0])
    target = torch.tensor([10, 11, 12, 13, 14])
    weight = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    ptr, flat, w = I.synapses_by_channel(src, target, weight, 4)
    assert ptr.tolist() == [0, 2, 3, 5, 5]
    assert flat.tolist() == [11, 14, 13, 10, 12]
    assert w.tolist() == pytest.approx([0.2, 0.5, 0.4, 0.1, 0.3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_event_listing_equals_the_reference(dtype):
    """inputs_numba.list_events (two compiled passes) equals inputs.list_events_torch, NaNs, the
    dropout mask and the too-dense and empty cases included."""
    g = torch.Generator().manual_seed(3)
    x = ((torch.rand(5, 37, 11, generator=g) < 0.1) * torch.randn(5, 37, 11, generator=g)).to(dtype)
    x[2, 4, 9] = float("nan")  # a NaN is an event, as in torch.nonzero
    mask = ((torch.rand(5, 11, generator=g) < 0.7) * 1.25).to(dtype)  # dropout: 0 or 1 / (1 - p)
    for m in (None, mask):
        ref, got = I.list_events_torch(x, 0.25, m), inputs_numba.list_events(x, 0.25, m)
        for a, b in zip(ref, got):
            assert a.dtype == b.dtype and torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0))
        assert got[0][-1] == int(torch.count_nonzero(x if m is None else x * m[:, None, :]))
    dense = torch.ones(2, 3, 4, dtype=dtype)
    assert inputs_numba.list_events(dense, 0.25) is None and I.list_events_torch(dense, 0.25) is None
    assert inputs_numba.list_events(dense[:, :0], 0.25) is None



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_event_projection_equals_the_product(dtype):
    """Sparse spike inputs: the event-driven projection (input dropout applied per event) equals
    ``(x * mask) @ M`` in value and in the gradients of ``M`` and of an input that needs one; dense
    inputs take the product itself. Per sample and step the events add in channel order, as the
    product's reference loop does, so float64 agrees to 1e-12 and float32 within the rounding of
    a 40-term sum."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 50, 40, generator=g) < 0.03).to(dtype).requires_grad_(True)
    mask = ((torch.rand(3, 40, generator=g) < 0.8) * 1.25).to(dtype)
    M = torch.randn(40, 7, generator=g, dtype=dtype, requires_grad=True)
    probe = torch.randn(3, 50, 7, generator=g, dtype=dtype)
    out = P.project(x, mask, M)
    assert out.grad_fn is not None and "EventProjection" in type(out.grad_fn).__name__
    ref = P.project_dense(x, mask, M)
    grads = [torch.autograd.grad((o * probe).sum(), (M, x)) for o in (out, ref)]
    assert_all_close([out, *grads[0]], [ref, *grads[1]], ["out", "g_M", "g_x"], dtype, 40 * 3, rtol64=1e-12)
    dense = P.project(torch.ones(2, 3, 40, dtype=dtype), None, M)
    assert "EventProjection" not in type(dense.grad_fn).__name__
    assert "EventProjection" not in type(P.project(x, mask, M, fns=P.REFERENCE).grad_fn).__name__


def test_bag_sum_works_around_old_torch_embedding_bag(monkeypatch):
    """synapses.bag_sum: with the torch < 2.6 work-around on, the table is made to require a gradient
    where only the per-synapse weights do; values and the weights' gradient are unchanged."""
    from elm_neuro.networks import synapses as S

    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 7, (5, 3), generator=g)
    table = torch.randn(7, 4, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    want = (table[idx] * w.detach()[..., None]).sum(1)
    grads = []
    old_torch = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 6)
    assert S.BAG_NEEDS_TABLE_GRAD == old_torch
    for flag in (True,) if old_torch else (False, True):  # off, old torch fails its internal assert
        monkeypatch.setattr(S, "BAG_NEEDS_TABLE_GRAD", flag)
        out = S.bag_sum(idx, table, w)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
        (gw,) = torch.autograd.grad(out.square().sum(), w)
        grads.append(gw)
    torch.testing.assert_close(grads[-1], 2 * (table[idx] * want[:, None, :]).sum(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[0], grads[-1], rtol=0, atol=0)
    assert not table.requires_grad  # the caller's table is left alone
