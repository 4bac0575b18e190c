"""Surrogate spike functions: Heaviside forward, surrogate derivatives against their formulas."""
import math

import pytest
import snntorch.surrogate as sns
import torch

from elm_neuro.neurons.surrogate import (
    SURROGATES,
    atan_spike,
    check_surrogate,
    fast_sigmoid_spike,
    spike,
    superspike_spike,
    surrogate_grad,
)


def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    y.sum().backward()
    return y.detach(), x.grad


@pytest.mark.parametrize("name", SURROGATES)
def test_forward_is_strict_heaviside(name):
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 2.0])
    y = spike(x, name, 5.0)
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert y.dtype == x.dtype


def test_fast_sigmoid_hand_values():
    # 1/(slope*|x|+1)^2 with slope 10: x=0 -> 1, x=+-0.1 -> 1/4, x=0.3 -> 1/16; scale 3 multiplies
    x = torch.tensor([0.0, 0.1, -0.1, 0.3])
    _, g = _grad(lambda v: spike(v, "fast_sigmoid", 10.0), x)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.25, 0.25, 1 / 16]))
    _, g3 = _grad(lambda v: fast_sigmoid_spike(v, 10.0, 3.0), x)
    torch.testing.assert_close(g3, 3 * torch.tensor([1.0, 0.25, 0.25, 1 / 16]))


def test_atan_hand_values():
    # (slope/2)/(1+(pi*slope*x/2)^2) with slope 2: x=0 -> 1, x=1/pi -> 1/2, x=-3/pi -> 1/10
    x = torch.tensor([0.0, 1 / math.pi, -3 / math.pi])
    _, g = _grad(lambda v: spike(v, "atan", 2.0), x)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.5, 0.1]))
    _, g2 = _grad(lambda v: atan_spike(v, 2.0, 0.5), x)
    torch.testing.assert_close(g2, torch.tensor([0.5, 0.25, 0.05]))


def test_superspike_hand_values():
    # (slope/2)/(slope*|x|+1)^2 with slope 4: x=0 -> 2, x=0.25 -> 1/2, x=-0.75 -> 1/8
    x = torch.tensor([0.0, 0.25, -0.75])
    _, g = _grad(lambda v: spike(v, "superspike", 4.0), x)
    torch.testing.assert_close(g, torch.tensor([2.0, 0.5, 0.125]))
    _, g2 = _grad(lambda v: superspike_spike(v, 4.0, 2.0), x)
    torch.testing.assert_close(g2, torch.tensor([4.0, 1.0, 0.25]))


def test_default_spike_keeps_elm_convention():
    # spike(x) is the ELM output spike: fast sigmoid, slope 100 (docs/design.md §1.10)
    x = torch.tensor([0.01, -0.02])
    _, g = _grad(spike, x)
    torch.testing.assert_close(g, torch.tensor([1 / 4, 1 / 9]))


@pytest.mark.parametrize("slope", [1.0, 2.0, 7.5])
def test_atan_and_fast_sigmoid_equal_snntorch(slope):
    x = torch.linspace(-3, 3, 301)
    for ours, theirs in ((lambda v: atan_spike(v, slope), sns.atan(alpha=slope)),
                         (lambda v: fast_sigmoid_spike(v, slope), sns.fast_sigmoid(slope=slope))):
        y1, g1 = _grad(ours, x)
        y2, g2 = _grad(theirs, x)
        assert torch.equal(y1, y2)
        torch.testing.assert_close(g1, g2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name,slope", [("atan", 3.0), ("superspike", 5.0)])
def test_unit_area_surrogates_integrate_to_scale(name, slope):
    # atan: integral over [-L, L] = (2/pi) arctan(pi*slope*L/2); superspike: 1 - 1/(1 + slope*L)
    big = 40.0
    x = torch.linspace(-big, big, 400001, dtype=torch.float64)
    area = torch.trapezoid(surrogate_grad(x, name, slope, 1.5), x).item()
    exact = (2 / math.pi) * math.atan(math.pi * slope * big / 2) if name == "atan" else 1 - 1 / (1 + slope * big)
    assert area == pytest.approx(1.5 * exact, rel=1e-6)


def test_surrogate_grad_matches_autograd_for_all():
    x = torch.randn(50, generator=torch.Generator().manual_seed(1))
    for name in SURROGATES:
        _, g = _grad(lambda v: spike(v, name, 3.0, 0.7), x)
        torch.testing.assert_close(g, surrogate_grad(x, name, 3.0, 0.7))


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="surrogate must be one of"):
        spike(torch.zeros(2), "boxcar")
    with pytest.raises(ValueError, match="surrogate must be one of"):
        surrogate_grad(torch.zeros(2), "sigmoid")
    with pytest.raises(ValueError, match="surrogate must be one of"):
        check_surrogate("nope")
    with pytest.raises(ValueError, match="surrogate_slope"):
        check_surrogate("atan", 0.0, 1.0)
    with pytest.raises(ValueError, match="surrogate_scale"):
        check_surrogate("atan", 1.0, -1.0)
