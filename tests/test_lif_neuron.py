"""LIF / adLIF step functions: hand-computed traces, snntorch parity, Dale's-law helpers."""
import math

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F

from elm_neuro.neurons import lif as L

KAPPA_HALF_TAU = 1.0 / math.log(2.0)  # tau with exp(-1/tau) = 0.5 at dt = 1


def _run(currents, params, settings, adaptive=False):
    """Run one neuron (B = N = 1) over a list of currents; return v, s, w, ref lists."""
    state = L.initial_state(1, 1, adaptive, settings.refractory)
    vs, ss, ws, refs = [], [], [], []
    for i in currents:
        out = L.lif_step(torch.tensor([[i]]), state, params, settings)
        state = out.state
        vs.append(out.v.item())
        ss.append(out.s.item())
        ws.append(None if out.w is None else out.w.item())
        refs.append(None if state.ref is None else state.ref.item())
    return vs, ss, ws, refs


def _lif_params(gain="unit", theta=1.0, theta_r=1.0, tau_w=None, a=None, b=None):
    kappa, g = L.membrane_constants(torch.tensor([KAPPA_HALF_TAU]), 1.0, gain)
    if tau_w is None:
        return L.LIFParams(kappa, g, theta, theta_r)
    return L.LIFParams(kappa, g, theta, theta_r, L.decay(torch.tensor([tau_w]), 1.0), torch.tensor([a]),
                       torch.tensor([b]))


def test_membrane_constants():
    kappa, g = L.membrane_constants(torch.tensor([KAPPA_HALF_TAU, 2.0]), 1.0, "unit")
    torch.testing.assert_close(kappa, torch.tensor([0.5, math.exp(-0.5)]))
    assert g.tolist() == [1.0, 1.0]
    kappa, g = L.membrane_constants(torch.tensor([4.0]), 2.0, "leak")
    torch.testing.assert_close(g, 1 - torch.tensor([math.exp(-0.5)]))
    with pytest.raises(ValueError, match="current_gain"):
        L.membrane_constants(torch.tensor([1.0]), 1.0, "half")


def test_trace_subtract_reset():
    # kappa 0.5, g 1, theta 1, theta_r 1; reset applied one step after the spike
    vs, ss, _, _ = _run([0.6, 0.8, 0.0, 1.2, 0.1], _lif_params(), L.LIFSettings("subtract"))
    assert vs == pytest.approx([0.6, 1.1, -0.45, 0.975, 0.5875], abs=1e-6)
    assert ss == [0, 1, 0, 0, 0]


def test_trace_subtract_custom_reset_value():
    # ICLR convention: subtract 0.9, not the threshold
    vs, ss, _, _ = _run([1.5, 0.0, 0.0], _lif_params(theta_r=0.9), L.LIFSettings("subtract"))
    assert vs == pytest.approx([1.5, 0.75 - 0.9, -0.075], abs=1e-6)
    assert ss == [1, 0, 0]


def test_trace_zero_reset():
    vs, ss, _, _ = _run([0.6, 0.8, 0.0, 1.2, 0.1], _lif_params(), L.LIFSettings("zero"))
    assert vs == pytest.approx([0.6, 1.1, 0.0, 1.2, 0.1], abs=1e-6)
    assert ss == [0, 1, 0, 1, 0]


def test_trace_leak_gain():
    # g = 1 - kappa = 0.5: v_t = 0.5 v + 0.5 I
    vs, ss, _, _ = _run([2.0, 2.0, 2.0, 0.0], _lif_params(gain="leak"), L.LIFSettings("subtract"))
    # t3: 0.5*1.5 + 0.5*2 - 1 (reset of the t2 spike) = 0.75; t4: 0.5*0.75 + 0 = 0.375
    assert vs == pytest.approx([1.0, 1.5, 0.75, 0.375], abs=1e-6)
    assert ss == [0, 1, 0, 0]


def test_trace_refractory():
    # zero reset, R = 2: after a spike, two steps with input blocked and no spike
    vs, ss, _, refs = _run([1.5] * 6, _lif_params(), L.LIFSettings("zero", refractory=2))
    assert vs == pytest.approx([1.5, 0.0, 0.0, 1.5, 0.0, 0.0], abs=1e-6)
    assert ss == [1, 0, 0, 1, 0, 0]
    assert refs == [2, 1, 0, 2, 1, 0]
    # subtract reset, R = 1: the membrane only leaks and takes the reset during the refractory step
    vs, ss, _, _ = _run([1.5, 1.5, 1.5], _lif_params(), L.LIFSettings("subtract", refractory=1))
    assert vs == pytest.approx([1.5, 0.75 - 1.0, -0.125 + 1.5], abs=1e-6)
    assert ss == [1, 0, 1]


def test_trace_adaptation():
    # kappa_m 0.5, kappa_w 0.5, a 0.5, b 1: w_t = 0.5 w + 0.5 v_{t-1} + s_{t-1}; v += I - w_t
    params = _lif_params(tau_w=KAPPA_HALF_TAU, a=0.5, b=1.0)
    vs, ss, ws, _ = _run([1.2, 1.0, 1.0, 0.0], params, L.LIFSettings("subtract"), adaptive=True)
    assert ws == pytest.approx([0.0, 1.6, 0.3, 0.25], abs=1e-6)
    assert vs == pytest.approx([1.2, -1.0, 0.2, -0.15], abs=1e-6)
    assert ss == [1, 0, 0, 0]


def test_trace_adaptation_zero_reset_and_leak_gain():
    # a = 0 (pure spike-triggered adaptation), b = 0.4, g = 1 - kappa_m = 0.5
    params = _lif_params(gain="leak", tau_w=KAPPA_HALF_TAU, a=0.0, b=0.4)
    vs, ss, ws, _ = _run([3.0, 3.0, 3.0], params, L.LIFSettings("zero"), adaptive=True)
    # t1: w 0, v 1.5 (spike); t2: w 0.4, v 0 + 0.5*(3-0.4) = 1.3 (spike); t3: w 0.2+0.4=0.6, v 0.5*2.4 = 1.2
    assert ws == pytest.approx([0.0, 0.4, 0.6], abs=1e-6)
    assert vs == pytest.approx([1.5, 1.3, 1.2], abs=1e-6)
    assert ss == [1, 1, 1]


def test_detach_reset_controls_reset_gradient():
    params = _lif_params()
    cur = torch.tensor([[1.5], [0.0]], requires_grad=True)  # [T, 1]
    grads = {}
    for detach in (True, False):
        st = L.LIFSettings("subtract", surrogate="atan", slope=2.0, detach_reset=detach)
        state = L.initial_state(1, 1, False, 0)
        out1 = L.lif_step(cur[0:1], state, params, st)
        out2 = L.lif_step(cur[1:2], out1.state, params, st)
        (g,) = torch.autograd.grad(out2.v.sum(), cur)
        grads[detach] = g[0, 0].item()
    # dv2/dI1 = kappa (through the membrane) minus theta_r * ds1/dv1 when the reset is not detached
    surrogate_at_v1 = 1.0 / (1.0 + (math.pi / 2 * 2.0 * 0.5) ** 2)
    assert grads[True] == pytest.approx(0.5)
    assert grads[False] == pytest.approx(0.5 - surrogate_at_v1, rel=1e-6)


# ----------------------------------------------------------------------------- snntorch parity
def _random_currents(steps, bsz, n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, bsz, n, generator=g) * 0.9 - 0.1).requires_grad_(True)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_parity_with_snntorch_leaky(reset):
    steps, bsz, n = 40, 3, 6
    tau = torch.linspace(2.0, 9.0, n)
    kappa, gain = L.membrane_constants(tau, 1.0, "unit")
    params = L.LIFParams(kappa, gain, 1.0, 1.0)
    settings = L.LIFSettings(reset, surrogate="atan", slope=2.0, detach_reset=True, refractory=0)
    cur = _random_currents(steps, bsz, n, 3)
    ref = snn.Leaky(beta=kappa.clone(), threshold=1.0, reset_mechanism=reset)  # default surrogate: atan(2)
    mem = ref.reset_mem()
    state = L.initial_state(bsz, n, False, 0)
    ours_v, ours_s, th_v, th_s = [], [], [], []
    for i_t in cur.unbind(0):
        spk, mem = ref(i_t, mem)
        out = L.lif_step(i_t, state, params, settings)
        state = out.state
        th_v.append(mem)
        th_s.append(spk)
        ours_v.append(out.v)
        ours_s.append(out.s)
    ov, os_, tv, ts = (torch.stack(z) for z in (ours_v, ours_s, th_v, th_s))
    assert torch.equal(ov, tv)
    assert torch.equal(os_, ts)
    assert 0 < int(os_.sum()) < os_.numel()  # the test exercises spikes and resets
    probe = torch.randn(ov.shape, generator=torch.Generator().manual_seed(4))
    (g_ours,) = torch.autograd.grad((ov * probe).sum() + (os_ * probe).sum(), cur)
    (g_theirs,) = torch.autograd.grad((tv * probe).sum() + (ts * probe).sum(), cur)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_parity_with_snntorch_rleaky(reset):
    """RLeaky(all-to-all) = our step with I_t + V s_{t-1}; its hard reset = ours with R = 1."""
    steps, bsz, n = 40, 3, 6
    tau = torch.linspace(2.0, 9.0, n)
    kappa, gain = L.membrane_constants(tau, 1.0, "unit")
    params = L.LIFParams(kappa, gain, 1.0, 1.0)
    settings = L.LIFSettings(reset, surrogate="atan", slope=2.0, detach_reset=True,
                             refractory=1 if reset == "zero" else 0)
    cur = _random_currents(steps, bsz, n, 5)
    v_rec = torch.randn(n, n, generator=torch.Generator().manual_seed(6)) * 0.4
    ref = snn.RLeaky(beta=kappa.clone(), threshold=1.0, linear_features=n, reset_mechanism=reset)
    with torch.no_grad():
        ref.recurrent.weight.copy_(v_rec)
        ref.recurrent.bias.zero_()
    spk, mem = ref.init_rleaky()
    state = L.initial_state(bsz, n, False, settings.refractory)
    ours, theirs = [], []
    for i_t in cur.unbind(0):
        spk, mem = ref(i_t, spk, mem)
        out = L.lif_step(i_t + F.linear(state.s, v_rec), state, params, settings)
        state = out.state
        ours.append((out.v, out.s))
        theirs.append((mem, spk))
    ov, os_ = (torch.stack(z) for z in zip(*ours))
    tv, ts = (torch.stack(z) for z in zip(*theirs))
    assert torch.equal(os_, ts)
    # snntorch adds (beta v + I) + V s, we add beta v + (I + V s): float32 round-off only
    torch.testing.assert_close(ov, tv, rtol=0, atol=1e-6)
    assert 0 < int(os_.sum()) < os_.numel()
    probe = torch.randn(ov.shape, generator=torch.Generator().manual_seed(7))
    (g_ours,) = torch.autograd.grad((ov * probe).sum() + (os_ * probe).sum(), cur)
    (g_theirs,) = torch.autograd.grad((tv * probe).sum() + (ts * probe).sum(), cur)
    # gradients reach ~1e2 through 40 recurrent steps; agreement to float32 round-off of that size
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6 * float(g_theirs.abs().max()))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_fused_engine_parity_with_snntorch_rleaky(reset):
    """The fused sequence engine (Numba kernels, the whole sequence in one autograd Function) =
    snntorch RLeaky: spikes, membrane and the surrogate gradient of the input currents."""
    from elm_neuro.networks.engines import lif_contract as C, lif_sequence as Q

    steps, bsz, n = 40, 3, 6
    kappa, _ = L.membrane_constants(torch.linspace(2.0, 9.0, n), 1.0, "unit")
    cur = _random_currents(steps, bsz, n, 5)
    v_rec = torch.randn(n, n, generator=torch.Generator().manual_seed(6)) * 0.4
    ref = snn.RLeaky(beta=kappa.clone(), threshold=1.0, linear_features=n, reset_mechanism=reset)
    with torch.no_grad():
        ref.recurrent.weight.copy_(v_rec)
        ref.recurrent.bias.zero_()
    spk, mem = ref.init_rleaky()
    spikes = []
    for i_t in cur.unbind(0):
        spk, mem = ref(i_t, spk, mem)
        spikes.append(spk)
    theirs = torch.stack(spikes, 1)  # [B, T, N]
    spec = C.Spec(False, C.RESET_CODES[reset], True, 1 if reset == "zero" else 0, False, C.SURROGATE_CODES["atan"],
                  1.0, 1.0, 2.0, 1.0)
    zeros = torch.zeros(bsz, n)
    ours, v_T, _, _ = Q.run(Q.backend(torch.device("cpu")), spec, torch.ones(bsz, n), cur.transpose(0, 1),
                            C.Weights(v_rec.t(), kappa, None, None, None, None),
                            C.State(zeros, zeros, None, zeros if reset == "zero" else None))
    assert torch.equal(ours, theirs) and 0 < int(ours.sum()) < ours.numel()
    torch.testing.assert_close(v_T, mem, rtol=0, atol=1e-6)
    probe = torch.randn(ours.shape, generator=torch.Generator().manual_seed(7))
    (g_ours,) = torch.autograd.grad((ours * probe).sum() + v_T.sum(), cur)
    (g_theirs,) = torch.autograd.grad((theirs * probe).sum() + mem.sum(), cur)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6 * float(g_theirs.abs().max()))


def test_rleaky_zero_reset_differs_from_refractory_free_zero_reset():
    """Documents the snntorch convention difference: RLeaky's hard reset drops the input of the step
    after a spike, Leaky's (our R = 0) does not."""
    kappa, gain = L.membrane_constants(torch.tensor([KAPPA_HALF_TAU]), 1.0, "unit")
    params = L.LIFParams(kappa, gain, 1.0, 1.0)
    v0 = _run([1.5, 0.7], params, L.LIFSettings("zero", refractory=0))[0]
    v1 = _run([1.5, 0.7], params, L.LIFSettings("zero", refractory=1))[0]
    assert v0 == pytest.approx([1.5, 0.7])
    assert v1 == pytest.approx([1.5, 0.0])


# ----------------------------------------------------------------------------- Dale's law
def test_ei_signs_exact_count_and_seeded():
    s = L.ei_signs(50, 0.2, torch.Generator().manual_seed(0))
    assert int((s < 0).sum()) == 10 and int((s > 0).sum()) == 40
    assert torch.equal(s, L.ei_signs(50, 0.2, torch.Generator().manual_seed(0)))
    assert not torch.equal(s, L.ei_signs(50, 0.2, torch.Generator().manual_seed(1)))
    assert int((L.ei_signs(7, 0.0, torch.Generator()) < 0).sum()) == 0
    assert int((L.ei_signs(7, 1.0, torch.Generator()) < 0).sum()) == 7
    with pytest.raises(ValueError, match="frac_inhibitory"):
        L.ei_signs(5, 1.2, torch.Generator())


def test_dale_weights():
    w = torch.tensor([[0.5, -0.3, 0.2], [-0.1, 0.4, 0.0]])
    sign = torch.tensor([[1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    assert torch.equal(L.dale_weights(w, sign), torch.tensor([[0.5, 0.0, -0.2], [0.0, -0.4, 0.0]]))


def test_unknown_reset_raises():
    with pytest.raises(ValueError, match="reset must be one of"):
        L.membrane_update(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1), "soft", 1.0)
