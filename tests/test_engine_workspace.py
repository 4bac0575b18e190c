"""The CPU engines' workspace: arrays are reused only when nothing uses them any more (a tensor, a
view of it, autograd's saved copy), the kept bytes stay within the bound, and the fused ELM layer
gives the same results from reused arrays as from fresh ones."""
import pytest
import torch

from elm_neuro.networks.elm_config import ELMLayerConfig
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.networks.engines import workspace as W


def test_an_array_in_use_is_never_handed_out_again():
    ws = W.Workspace(10**6)
    a = ws.empty((10, 4), torch.float32)
    first = a.data_ptr()
    b = ws.empty((10, 4), torch.float32)
    assert b.data_ptr() != first
    view = a.t()[1:]  # a view keeps the array in use
    del a
    assert ws.empty((10, 4), torch.float32).data_ptr() not in (first, b.data_ptr())
    del view
    assert ws.empty((10, 4), torch.float32).data_ptr() == first  # free again: reused
    assert ws.empty((10, 4), torch.float64).dtype == torch.float64  # another dtype: another array


def test_autograd_keeps_its_saved_array_until_backward():
    ws = W.Workspace(10**6)
    w = torch.randn(6, requires_grad=True)
    buf = ws.empty((6,), torch.float32)
    buf.copy_(torch.arange(6.0))
    ptr = buf.data_ptr()
    loss = (w * buf).sum()  # saves buf for backward
    del buf
    other = ws.empty((6,), torch.float32)
    assert other.data_ptr() != ptr
    other.fill_(-1.0)
    loss.backward()
    torch.testing.assert_close(w.grad, torch.arange(6.0))  # the saved values were not overwritten
    del loss
    assert ws.empty((6,), torch.float32).data_ptr() == ptr


def test_kept_bytes_stay_within_the_bound():
    ws = W.Workspace(max_bytes=1000)
    arrays = [ws.empty((100,), torch.float32) for _ in range(4)]  # 400 bytes each
    assert ws.kept_bytes <= 1000
    del arrays
    ws.empty((50,), torch.float32)  # evicts free arrays to make room
    assert ws.kept_bytes <= 1000
    big = ws.empty((1000,), torch.float32)  # larger than the bound: handed out, not kept
    assert big.numel() == 1000 and ws.kept_bytes <= 1000
    ws.clear()
    assert ws.kept_bytes == 0
    with pytest.raises(ValueError, match="max_bytes"):
        W.Workspace(-1)


def test_the_fused_layer_gives_the_same_results_from_reused_arrays():
    layer = ELMLayer(ELMLayerConfig(d_m=3, d_tree=4, d_brch=3, rho=0.4), 9, 6, seed=1).train()
    x = (torch.rand(5, 30, 9, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    results = []
    for _ in range(3):  # the second and third calls run on the workspace's arrays of the first
        out = layer.forward_fused(x)
        grads = torch.autograd.grad(out.y.square().sum() + out.z_abs_mean.sum(), list(layer.parameters()))
        results.append((out.y.detach().clone(),) + tuple(g.clone() for g in grads))
        del out, grads
    for later in results[1:]:
        for a, b in zip(results[0], later):
            assert torch.equal(a, b)


def test_the_reference_count_assumption_holds_here():
    """The workspace decides that an array is free from its reference count: a tensor and each of
    its views must count, and the count must fall back when they go. If CPython or PyTorch change
    that, this fails (and workspaces stop reusing arrays instead of handing out used ones)."""
    assert W.refcounts_track_users()
    assert W.Workspace().reuse and W.WORKSPACE.reuse


def test_without_the_assumption_nothing_is_reused_or_kept(monkeypatch):
    monkeypatch.setattr(W, "refcounts_track_users", lambda: False)
    ws = W.Workspace(10**6)
    assert not ws.reuse
    a = ws.empty((10, 4), torch.float32)
    assert ws.kept_bytes == 0 and a.shape == (10, 4) and a.dtype == torch.float32
    assert W.Workspace(10**6, reuse=True).reuse  # an explicit choice wins
