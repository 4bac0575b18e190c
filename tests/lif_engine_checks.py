"""Shared by the LIF engine tests (Numba and Triton backends): the kernel options and the check
that a backend's forward and backward equal the PyTorch reference of the kernel contract."""
import torch

from elm_neuro.networks.engines import lif_sequence as Q


def lif_spec(adaptive=False, reset=0, detach=True, refractory=0, has_gain=False, surrogate=0, recurrent=True):
    return Q.Spec(adaptive, reset, detach, refractory, has_gain, surrogate, 0.5, 0.7, 4.0, 1.3, recurrent)


def assert_backend_equals_reference(forward, backward, args, grads_in, spec, tol):
    """Spikes, spike counts and refractory state identical; everything else within ``tol``."""
    gs, g_vT, g_wT = grads_in
    ref, got = Q.forward_torch(*args), forward(*args)
    for name, want, have in zip(Q.Saved._fields, ref, got):
        assert (want is None) == (have is None), name
        if want is None:
            continue
        if name in ("s_all", "q_all", "ref_T"):
            assert torch.equal(have, want), name
        else:
            torch.testing.assert_close(have, want, rtol=tol, atol=tol, msg=name)
    bargs = args[1:8] + (gs, g_vT, g_wT, spec)
    gref, ggot = Q.backward_torch(ref, *bargs), backward(got, *bargs)
    for name, want, have in zip(Q.Grads._fields, gref, ggot):
        assert (want is None) == (have is None), name
        if want is not None:
            assert float((have - want).abs().max()) <= tol * (1.0 + float(want.abs().max())), name
    return ref
