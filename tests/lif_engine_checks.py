"""Shared by the LIF engine tests (Numba and Triton backends): the kernel options, a random kernel
problem, and the check that a backend's forward and backward equal the PyTorch reference of the
kernel contract (lif_contract)."""
import torch

from elm_neuro.networks.engines import lif_contract as C
from parity import assert_rounding_close


def lif_spec(adaptive=False, reset=0, detach=True, refractory=0, has_gain=False, surrogate=0, recurrent=True):
    return C.Spec(adaptive, reset, detach, refractory, has_gain, surrogate, 0.5, 0.7, 4.0, 1.3, recurrent)


def kernel_problem(dtype, spec, steps=11, n=6, bsz=3, seed=0):
    """``(cur_in, mask, Weights, State)`` and the ``OutGrads`` of a random problem for ``spec``."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    def u(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)

    M = r(n, n) * (u(n, n) < 0.5)
    mask = ((u(bsz, n) < 0.7) * 1.25).to(dtype)
    ad, refr = spec.adaptive, spec.refractory > 0
    cur = 1.5 * r(bsz, steps, n)
    w = C.Weights(M, u(n), u(n) if spec.has_gain else None, u(n) if ad else None, r(n) if ad else None,
                  r(n) if ad else None)
    s = C.State(r(bsz, n), (r(bsz, n) > 0).to(dtype), r(bsz, n) if ad else None,
                torch.randint(0, 3, (bsz, n), generator=g).to(dtype) if refr else None)
    grads_in = C.OutGrads(r(bsz, steps, n), r(bsz, n), r(bsz, n) if ad else None)
    return (cur, mask, w, s), grads_in


def assert_backend_equals_reference(fns, problem, grads_in, spec, dtype):
    """Spikes, spike counts and refractory state identical; float64 within 1e-12 (forward) and
    1e-10 relative (backward); float32 within the rounding bound of tests/parity.py (the steps
    times the widest sum of a step, N)."""
    cur, mask, w, s = problem
    bsz, steps, n = cur.shape
    ops = steps * max(n, 4)
    ref, got = C.forward_torch(cur, mask, w, s, spec), fns.forward(cur, mask, w, s, spec)
    for name, want, have in zip(C.Saved._fields, ref, got):
        assert (want is None) == (have is None), name
        if want is None:
            continue
        if name in ("s_all", "q_all", "ref_T"):
            assert torch.equal(have, want), name
        elif dtype == torch.float32:
            assert_rounding_close(have, want, ops, name)
        else:
            torch.testing.assert_close(have, want, rtol=1e-12, atol=1e-12, msg=name)
    gref, ggot = C.backward_torch(ref, mask, w, grads_in, spec), fns.backward(got, mask, w, grads_in, spec)
    for name, want, have in zip(C.Grads._fields, gref, ggot):
        assert (want is None) == (have is None), name
        if want is None:
            continue
        if dtype == torch.float32:
            assert_rounding_close(have, want, 2 * ops + steps * bsz, name)
        else:
            assert float((have - want).abs().max()) <= 1e-10 * (1.0 + float(want.abs().max())), name
    return ref
