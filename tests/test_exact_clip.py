"""Gradient clipping to the exact global norm (docs/design.md §7), and the optimiser step that uses it."""
import math
from types import SimpleNamespace

import pytest
import torch

from elm_neuro.training.common import TrainingDiverged, clip_grad_norm_exact, optimizer_step


def params_with_grads(scale: float, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape in ((3, 4), (5,), (2, 2, 2))]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype) * scale
    return ps


def global_norm(ps) -> float:
    return float(torch.cat([p.grad.reshape(-1) for p in ps if p.grad is not None]).double().norm())


def test_clip_gives_exactly_the_clip_norm_when_active():
    ps = params_with_grads(3.0)
    before = [p.grad.clone() for p in ps]
    g = global_norm(ps)
    assert g > 1.0
    total = clip_grad_norm_exact(ps, 1.0)
    assert float(total) == pytest.approx(g, rel=1e-15)  # the norm before clipping is returned
    assert abs(global_norm(ps) - 1.0) < 1e-7
    for p, b in zip(ps, before):  # every gradient scaled by the same factor clip / g
        torch.testing.assert_close(p.grad, b / g, rtol=1e-14, atol=0)
    # hand example: gradients (3, 4) and (12,) have norm 13; clip 2.6 scales by 0.2
    a = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    a.grad, b.grad = torch.tensor([3.0, 4.0], dtype=torch.float64), torch.tensor([12.0], dtype=torch.float64)
    assert float(clip_grad_norm_exact([a, b], 2.6)) == 13.0
    assert a.grad.tolist() == pytest.approx([0.6, 0.8], abs=1e-15)
    assert b.grad.tolist() == pytest.approx([2.4], abs=1e-15)


def test_torch_clip_misses_the_norm_by_its_epsilon():
    """What this replaces: clip_grad_norm_ scales by clip / (g + 1e-6)."""
    ps = params_with_grads(1e-3 * 1.5)  # small gradients: g ~ 0.005, clip 0.001
    g = global_norm(ps)
    torch.nn.utils.clip_grad_norm_(ps, 1e-3)
    assert global_norm(ps) == pytest.approx(1e-3 * g / (g + 1e-6), rel=1e-12)
    ps = params_with_grads(1e-3 * 1.5)
    clip_grad_norm_exact(ps, 1e-3)
    assert abs(global_norm(ps) - 1e-3) < 1e-15


def test_below_the_clip_gradients_are_unchanged():
    ps = params_with_grads(0.05)
    before = [p.grad.clone() for p in ps]
    g = global_norm(ps)
    assert g < 1.0
    assert float(clip_grad_norm_exact(ps, 1.0)) == pytest.approx(g, rel=1e-15)
    assert all(torch.equal(p.grad, b) for p, b in zip(ps, before))  # bit for bit


def test_float32_mixed_dtypes_and_params_without_grad():
    ps = params_with_grads(3.0, dtype=torch.float32)
    ps += params_with_grads(2.0, dtype=torch.float64, seed=1)
    frozen = torch.nn.Parameter(torch.ones(3))  # no gradient: skipped, stays None
    total = clip_grad_norm_exact(ps + [frozen], 1.0)
    assert frozen.grad is None and total.dtype == torch.float64
    assert abs(global_norm(ps) - 1.0) < 1e-6  # float32 gradients: rounding of float32
    assert float(clip_grad_norm_exact([frozen], 1.0)) == 0.0  # no gradient at all
    single = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    single.grad = torch.tensor([6.0, 8.0], dtype=torch.float64)
    assert float(clip_grad_norm_exact(single, 5.0)) == 10.0 and single.grad.tolist() == [3.0, 4.0]


def test_non_finite_norm_leaves_gradients_alone():
    ps = params_with_grads(1.0)
    ps[1].grad[2] = float("inf")
    before = [p.grad.clone() for p in ps]
    total = clip_grad_norm_exact(ps, 1.0)
    assert math.isinf(float(total))
    assert all(torch.equal(p.grad, b) for p, b in zip(ps, before))
    ps[1].grad[2] = float("nan")
    assert math.isnan(float(clip_grad_norm_exact(ps, 1.0)))
    for bad in (0.0, -1.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
            clip_grad_norm_exact(ps, bad)


def _session(model, clip, tmp_path):
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return SimpleNamespace(model=model, optimizer=opt, scheduler=sched, cfg=SimpleNamespace(clip=clip),
                           run=SimpleNamespace(checkpoint=tmp_path / "checkpoint.pt"))


def test_optimizer_step_applies_the_exact_clip(tmp_path):
    model = torch.nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64))
    w0 = model.weight.detach().clone()
    x = torch.tensor([[3.0, 4.0, 12.0]], dtype=torch.float64)  # d(sum(w x))/dw = x, norm 13
    gnorm = optimizer_step(_session(model, 1.0, tmp_path), model(x).sum(), "step 1")
    assert gnorm == 13.0
    step = (w0 - model.weight.detach()).reshape(-1)  # SGD lr 1: the clipped gradient x / 13
    assert abs(float(step.norm()) - 1.0) < 1e-7
    torch.testing.assert_close(step, x.reshape(-1) / 13.0, rtol=1e-15, atol=0)


def test_optimizer_step_stops_on_non_finite_gradients(tmp_path):
    model = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    loss = torch.sqrt(model.weight).sum()  # finite loss 0, infinite gradient at 0
    assert torch.isfinite(loss)
    with pytest.raises(TrainingDiverged, match=r"non-finite gradient norm \(inf\) at step 7 .*\(none written yet"):
        optimizer_step(_session(model, 1.0, tmp_path), loss, "step 7")
    assert float(model.weight.detach()) == 0.0  # no update
