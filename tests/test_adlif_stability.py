"""adLIF stability (docs/design.md §10, elm_neuro/neurons/lif.py): the Jury interval of the linear
step against its eigenvalues; the constraint of ``a`` and ``b`` in ``LIFLayer.params()`` keeps every
neuron's spectral radius below 1 at initialisation and at the extremes of every allowed range (both
gain modes, learnable timescales at their sigmoid bounds, stored values far outside); 5000 silent
steps from a random state decay (unconstrained, the same neurons run to -inf); the fused engine,
the per-step path and the plain reference apply the constraint identically; the configuration
checks, and configurations stored before them; adLIF trains on SHD-Adding through the CLI (and,
with the old unconstrained dynamics restored, stops at step 1 with a message that blames the
initialisation, not the learning rate)."""
import json
import math

import pytest
import torch

from elm_neuro.cli.main import EXIT_FAILURE, main
from elm_neuro.data.synth import write_synthetic_shd
from elm_neuro.networks.lif_config import LIFLayerConfig, LIFNetworkConfig
from elm_neuro.networks.lif_layer import LIFLayer
from elm_neuro.networks.registry import preset_config
from elm_neuro.neurons import lif as L
from elm_neuro.neurons.elm import tau_bounds
from elm_neuro.training.run import build_from_config

M = LIFLayerConfig.ADAPT_A_MARGIN
SMALL = dict(neuron="adlif", n_synapses=9, rho=0.3, weight_scale=3.0)


def _rho(params: L.LIFParams) -> torch.Tensor:
    return L.linear_spectral_radius(params.kappa_m, params.kappa_w, params.gain, params.a)


def _rho_bound(params: L.LIFParams) -> torch.Tensor:
    """What the constraint guarantees: max(kappa_m, kappa_w) on the slow side, 1 - m (1 + kappa_m)
    (1 + kappa_w) / 2 on the alternating mode near the upper end (neurons/lif.py docstring)."""
    km, kw = params.kappa_m.double(), params.kappa_w.double()
    return torch.maximum(torch.maximum(km, kw), 1 - M * (1 + km) * (1 + kw) / 2)


def _layer(n=16, n_in=10, seed=0, **kw) -> LIFLayer:
    cfg = LIFLayerConfig(**{**SMALL, **kw})
    return LIFLayer(cfg, n_in, n, cfg.rho, seed=seed)


# --------------------------------------------------------------------------- the linear step
def test_jury_interval_is_where_the_linear_step_is_stable():
    g = torch.Generator().manual_seed(0)
    n = 200_000
    km = torch.rand(n, generator=g, dtype=torch.float64)
    kw = torch.rand(n, generator=g, dtype=torch.float64)
    gain = torch.where(torch.rand(n, generator=g) < 0.5, torch.ones_like(km), 1 - km)  # unit or leak
    a = (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1) * 30
    rho = L.linear_spectral_radius(km, kw, gain, a)
    lower, upper = -(1 - km) * (1 - kw) / gain, (1 + km) * (1 + kw) / gain
    assert torch.equal(rho < 1, (a > lower) & (a < upper))  # the Jury criterion, sample for sample
    # the constrained interval [0, (1 - m) U] and its guarantees
    _, a_max = L.adaptation_bounds(km, kw, gain, M)
    inside = (a >= 0) & (a <= a_max)
    assert int(inside.sum()) > 10_000
    bound = torch.maximum(torch.maximum(km, kw), 1 - M * (1 + km) * (1 + kw) / 2)
    assert bool((rho[inside] <= bound[inside] + 1e-12).all())
    slow_side = (a >= 0) & (a <= 2 * (km + kw) / gain)  # [0, U + L]: never slower than the slower variable
    assert bool((rho[slow_side] <= torch.maximum(km, kw)[slow_side] + 1e-12).all())


def test_the_reported_instability():
    """a = -0.9 (Bittar & Garner's initial range), tau_m 10 ms, tau_w 60 ms, dt 2 ms, leak gain:
    a factor 1.3718 per step, past float32's range after about 280 steps."""
    km, kw = torch.tensor([math.exp(-2 / 10)], dtype=torch.float64), torch.tensor([math.exp(-2 / 60)],
                                                                               dtype=torch.float64)
    rho = float(L.linear_spectral_radius(km, kw, 1 - km, torch.tensor([-0.9], dtype=torch.float64)))
    assert rho == pytest.approx(1.371845, abs=1e-6)
    assert 275 < math.log(torch.finfo(torch.float32).max) / math.log(rho) < 285
    assert L.adaptation_bounds(0.5, 0.5, 1.0, 0.05) == (0.0, 0.95 * 1.5 * 1.5)
    assert L.adaptation_bounds(0.5, 0.5, 0.0, 0.05)[1] == math.inf


# --------------------------------------------------------------------------- initialisation and extremes
@pytest.mark.parametrize("gain", ["leak", "unit"])
@pytest.mark.parametrize("dt", [2.0, 10.0, 100.0])
def test_every_initial_neuron_is_stable_and_unclamped(gain, dt):
    """Default ranges (a in [0, 1], b in [0, 2], SHD-Adding timescales) at fine and coarse steps."""
    layer = _layer(n=400, current_gain=gain, dt=dt)
    p = layer.params()
    assert bool((_rho(p) < 1).all()) and bool((_rho(p) <= _rho_bound(p) + 1e-9).all())
    assert torch.equal(p.a, layer.a) and torch.equal(p.b, layer.b)  # initial values are used as drawn
    assert float(layer.a.detach().min()) >= 0 and float(layer.a.detach().max()) <= 1


@pytest.mark.parametrize("gain", ["leak", "unit"])
@pytest.mark.parametrize("dt", [2.0, 100.0])
def test_extremes_of_the_allowed_initial_range(gain, dt):
    """a at both ends of what the configuration allows (0 and adapt_a_bound), the timescales at the
    short end of their ranges, where the bound is smallest."""
    base = dict(current_gain=gain, dt=dt, tau_mem_max=10.0, tau_adapt_max=60.0)  # tau fixed at the minimum
    bound = LIFLayerConfig(**SMALL, **base).adapt_a_bound()
    for a in (0.0, bound):
        layer = _layer(adapt_a_min=a, adapt_a_max=a, **base)
        p = layer.params()
        torch.testing.assert_close(p.a, layer.a, rtol=1e-6, atol=0)  # at most a float32 rounding off
        assert bool((_rho(p) < 1).all()) and bool((_rho(p) <= _rho_bound(p) + 1e-6).all()), (a, _rho(p).max())
    with pytest.raises(ValueError, match="adapt_a_max must be <= "):
        LIFLayerConfig(**SMALL, **base, adapt_a_max=bound * 1.001)


@pytest.mark.parametrize("gain", ["leak", "unit"])
@pytest.mark.parametrize("dt", [2.0, 10.0, 100.0])
def test_constraint_holds_for_any_stored_values_and_learned_timescales(gain, dt):
    """Learnable tau_m and tau_w at the ends of their sigmoid maps (tau_min / 10 and tau_max *
    sqrt(10)), raw a from far below 0 to far above the bound, raw b negative: every neuron as used
    is stable, a lies in [0, a_max], b >= 0, and inside the interval a is used as stored."""
    raw_a = torch.tensor([-50.0, -0.9, -0.01, 0.0, 0.3, 1.0, 3.0, 25.0, 1e4])
    layer = _layer(n=len(raw_a), current_gain=gain, dt=dt)
    lo_m, hi_m = tau_bounds(10.0, 50.0)
    lo_w, hi_w = tau_bounds(60.0, 240.0)
    for th_m in (-40.0, 40.0):
        for th_w in (-40.0, 40.0):
            with torch.no_grad():
                layer.tau_m_theta.fill_(th_m)
                layer.tau_w_theta.fill_(th_w)
                layer.a.copy_(raw_a)
                layer.b.fill_(-1.0)
            torch.testing.assert_close(layer.tau_m, torch.full_like(layer.tau_m, lo_m if th_m < 0 else hi_m))
            torch.testing.assert_close(layer.tau_w, torch.full_like(layer.tau_w, lo_w if th_w < 0 else hi_w))
            p = layer.params()
            _, a_max = L.adaptation_bounds(p.kappa_m, p.kappa_w, p.gain, M)
            assert bool((p.a >= 0).all()) and bool((p.a <= a_max).all()) and bool((p.b == 0).all())
            inside = (raw_a >= 0) & (raw_a <= a_max)
            assert torch.equal(p.a[inside], raw_a[inside])
            rho = _rho(p)
            assert bool((rho < 1).all()), (th_m, th_w, rho)
            assert bool((rho <= _rho_bound(p) + 1e-6).all())


def test_clamped_values_have_no_gradient_and_the_bound_moves_with_the_timescales():
    layer = _layer(n=4, current_gain="unit", dt=100.0)  # a_max ~ 1.1: 5.0 is above it
    with torch.no_grad():
        layer.a.copy_(torch.tensor([-0.5, 0.2, 0.4, 5.0]))
    p = layer.params()
    (p.a.sum() + p.b.sum()).backward()
    assert layer.a.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert float(layer.tau_m_theta.grad[3].abs()) > 0 and float(layer.tau_m_theta.grad[1]) == 0.0


# --------------------------------------------------------------------------- long silent input
def _old_init(layer: LIFLayer, seed: int = 0) -> None:
    """Raw a as Bittar & Garner's range [-1, 1] drew them (what old checkpoints may hold), -0.9 included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.a.copy_(2 * torch.rand(layer.n, generator=g) - 1)
        layer.a[0] = -0.9


def _random_state(layer: LIFLayer, bsz: int, dtype, seed: int = 1) -> L.LIFState:
    g = torch.Generator().manual_seed(seed)
    return L.LIFState(v=3 * torch.randn(bsz, layer.n, generator=g, dtype=dtype), s=torch.zeros(bsz, layer.n, dtype=dtype),
                      w=3 * torch.randn(bsz, layer.n, generator=g, dtype=dtype))


def test_5000_silent_steps_decay_and_did_not_unconstrained():
    layer = _layer(n=16, dt=2.0)  # SHD-Adding timescales, leak gain
    _old_init(layer)
    state = _random_state(layer, 3, torch.float32)
    with torch.no_grad():
        raw = layer.params()._replace(a=layer.a.clone(), b=layer.b.clone())  # what the step used before
    assert float(L.linear_spectral_radius(raw.kappa_m, raw.kappa_w, raw.gain, raw.a).max()) > 1.2
    st = state
    for _ in range(5000):
        st = L.lif_step(torch.zeros(3, layer.n), st, raw, layer.cfg.settings()).state
    assert not bool(torch.isfinite(st.v).all())  # unconstrained: runs to -inf (then NaN)
    x = torch.zeros(3, 5000, layer.n_in)
    with torch.no_grad():
        outs = {"step": layer.forward_step(x, state), "fused": layer.forward_fused(x, state)}
    for name, out in outs.items():
        assert bool(torch.isfinite(out.state.v).all()) and bool(torch.isfinite(out.state.w).all()), name
        assert float(out.state.v.abs().max()) < 1e-6 and float(out.state.w.abs().max()) < 1e-6, name
        assert not bool(out.s[:, 100:].any()), name  # the initial spikes die out
    torch.testing.assert_close(outs["fused"].state.v, outs["step"].state.v, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- engines agree
def test_engines_and_reference_apply_the_constraint_identically():
    """Raw a below 0, inside and above the bound (unit gain, coarse dt): fused engine (Numba),
    per-step path and plain reference give the same spikes, states and parameter gradients
    (float64, 1e-10), the clamped a no gradient."""
    layer = _layer(n=6, n_in=8, current_gain="unit", dt=100.0, threshold=0.5, weight_scale=6.0).double()
    with torch.no_grad():
        layer.a.copy_(torch.tensor([-0.7, 0.0, 0.3, 0.9, 4.0, -0.05], dtype=torch.float64))
        layer.b.copy_(torch.tensor([0.5, -0.3, 1.0, 0.2, 0.0, 1.5], dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2, 30, 8, generator=g) < 0.4).double()
    state = _random_state(layer, 2, torch.float64)
    probe = torch.randn(2, 30, 6, generator=g, dtype=torch.float64)
    results = {}
    for path in ("fused", "step", "reference"):
        out = {"fused": layer.forward_fused, "step": layer.forward_step, "reference": layer.forward_reference}[path](
            x, state)
        loss = (out.s * probe).sum() + out.state.v.sum() + out.state.w.sum()
        params = [p for p in layer.parameters() if p.requires_grad]
        results[path] = (out, torch.autograd.grad(loss, params))
    s_ref, g_ref = results["reference"]
    assert 0.05 < float(s_ref.s.detach().mean()) < 0.95
    for path in ("fused", "step"):
        out, grads = results[path]
        assert torch.equal(out.s, s_ref.s), path
        torch.testing.assert_close(out.state.v, s_ref.state.v, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out.state.w, s_ref.state.w, rtol=1e-10, atol=1e-10)
        for a, b in zip(grads, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    g_a = g_ref[names.index("a")]
    assert float(g_a[0]) == 0.0 and float(g_a[4]) == 0.0 and float(g_a[5]) == 0.0  # clamped: no gradient
    assert float(g_ref[names.index("b")][1]) == 0.0


# --------------------------------------------------------------------------- configuration
def test_configuration_refuses_unstable_initial_ranges():
    with pytest.raises(ValueError, match=r"adapt_a_min must be >= 0 for adLIF, the lower end of the stable "
                                         r"interval .* got -1.0"):
        LIFLayerConfig(neuron="adlif", adapt_a_min=-1.0)
    with pytest.raises(ValueError, match=r"adapt_a_max must be <= 18.75 for adLIF, the stable bound \(1 - 0.05\)"
                                         r"\(1 \+ kappa_m\)\(1 \+ kappa_w\) / g .*tau_mem_min=10, tau_adapt_min=60, "
                                         r"dt=2, current_gain='leak'.* got 20.0"):
        LIFLayerConfig(neuron="adlif", adapt_a_max=20.0)
    with pytest.raises(ValueError, match=r"adapt_b_min must be >= 0 for adLIF .* got -0.5"):
        LIFLayerConfig(neuron="adlif", adapt_b_min=-0.5)
    with pytest.raises(ValueError, match=r"hidden.adapt_a_min must be >= 0 .*\(from adapt_a_min=-0.5\)"):
        preset_config("adlif-shd-adding", adapt_a_min=-0.5)  # presets and --set: the same check
    with pytest.raises(ValueError, match="adapt_a_min must be >= 0"):
        LIFNetworkConfig.make(neuron="adlif", adapt_a_min=-0.5)
    with pytest.raises(ValueError, match="adapt_a_min must be >= 0"):
        LIFLayerConfig(neuron="lif", adapt_a_min=-1.0).replace(neuron="adlif")
    assert LIFLayerConfig(neuron="lif", adapt_a_min=-1.0).adapt_a_min == -1.0  # unused by LIF: not checked
    assert LIFLayerConfig(neuron="adlif").adapt_a_bound() == pytest.approx(18.7508, abs=1e-4)
    assert LIFLayerConfig(neuron="adlif", current_gain="unit").adapt_a_bound() == pytest.approx(3.39894, abs=1e-5)
    assert LIFLayerConfig(neuron="adlif", dt=100.0).adapt_a_bound() == pytest.approx(1.12953, abs=1e-5)
    d = preset_config("adlif-shd-adding").hidden
    assert (d.adapt_a_min, d.adapt_a_max, d.adapt_b_min, d.adapt_b_max) == (0.0, 1.0, 0.0, 2.0)


def test_configurations_stored_before_the_check_still_load():
    """A config.json written with Bittar & Garner's range (a in [-1, 1]) and a checkpoint holding
    a = -0.9: the configuration reads with its range moved into the stable one, the weights load
    as saved, and the model runs 400 silent steps without a non-finite value."""
    cfg = preset_config("adlif-shd-adding", n=12, n_in=20, n_classes=5, dt=2.0)
    stored = json.loads(json.dumps(cfg.to_dict()))
    stored["hidden"]["adapt_a_min"] = -1.0
    stored["hidden"]["adapt_b_min"] = -0.5
    model, mcfg = build_from_config({"family": "adlif", "config": stored})
    h = mcfg.hidden
    assert (h.adapt_a_min, h.adapt_a_max, h.adapt_b_min, h.adapt_b_max) == (0.0, 1.0, 0.0, 2.0)
    flat = LIFNetworkConfig.from_dict({"neuron": "adlif", "adapt_a_min": -1.0, "adapt_a_max": 30.0})  # a table row
    assert (flat.hidden.adapt_a_min, flat.hidden.adapt_a_max) == (0.0, pytest.approx(18.7508, abs=1e-4))
    weights = model.state_dict()
    weights["hidden.a"] = torch.full_like(weights["hidden.a"], -0.9)
    model.load_state_dict(weights)
    assert float(model.hidden.a.detach()[0]) == pytest.approx(-0.9)  # stored as saved...
    assert bool((model.hidden.params().a == 0).all())  # ...used at the bound
    with torch.no_grad():
        out = model(torch.zeros(2, 400, 20))
    assert bool(torch.isfinite(out.logits).all())


# --------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 40, 20, seed=2)
    return d


def _train_args(shd, out, *extra):
    return ["train", "--task", "shd-adding", "--model", "adlif", "--params", "3000", "--data", str(shd),
            "--out", str(out), "--epochs", "1", "--batches-per-epoch", "3", "--batch-size", "4", "--device", "cpu",
            "--no-progress", "--set", "n_synapses=12", "--set", "readout_d_tree=4", "--set", "readout_d_brch=3",
            "--train-set", "valid_batches=1", "--train-set", "test_batches=1", "--train-set", "channel_factor=14",
            "--train-set", "log_every=1", *extra]


@pytest.mark.parametrize("engine", ["auto", "step"])
def test_adlif_trains_on_shd_adding_through_the_cli(shd, tmp_path, engine, capsys):
    run = tmp_path / "run"
    assert main(_train_args(shd, run, "--set", f"engine={engine}")) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in train for k in ("loss", "ce", "grad_norm"))
    assert 2.0 < train[0]["ce"] < 4.0  # about log(19) = 2.94 at the start
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["family"] == "adlif"
    assert math.isfinite(summary["test_loss"])
    hidden = json.loads((run / "config.json").read_text())["model"]["config"]["hidden"]
    assert hidden["dt"] == 10.0 and hidden["adapt_a_min"] == 0.0  # the step of the failing report


def test_old_dynamics_stop_at_step_1_blaming_the_initialisation(shd, tmp_path, monkeypatch, capsys):
    """The reported failure, with the pre-fix behaviour restored (no constraint, no range check,
    a in [-1, 1]): NaN gradients at step 1; one line, exit 1, naming the family and the parameters
    and not advising a lower learning rate."""
    monkeypatch.setattr(L, "constrain_adaptation", lambda a, b, *args: (a, b))
    monkeypatch.setattr(LIFLayerConfig, "_check_adaptation_stable", lambda self: None)
    monkeypatch.setattr(LIFLayerConfig, "_move_adaptation_into_stable_range", lambda self: None)
    run = tmp_path / "run"
    assert main(_train_args(shd, run, "--set", "adapt_a_min=-1")) == EXIT_FAILURE
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    line = lines[0]
    assert line.startswith("elm-neuro train: error: non-finite gradient norm (nan) at epoch 1, step 1 before any "
                           "update; stopped: the adlif model at its initialisation gives a finite loss but "
                           "non-finite gradients of hidden.")
    assert "hidden.a" in line and "not the learning rate" in line and "lower --lr" not in line
    assert not run.exists()
