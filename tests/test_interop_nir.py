"""NIR export and import of LIF networks (elm_neuro.interop.nir_graph): the round trip equals the
network (float64, also through nir.write / nir.read), graphs that differ only in how they scale the
membrane give the same spikes, snntorch's NIR importer runs an exported graph to the same spikes,
a recurrent graph exported by snntorch imports here to the same spikes, what NIR cannot express is
refused naming it, and ``elm-neuro export --nir`` writes model.nir."""
import copy
import math

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir", reason="nir is not installed: pip install nir")

from elm_neuro.cli.main import main  # noqa: E402
from elm_neuro.interop import NIRUnsupported, from_nir, lif_layer_from_nir, to_nir  # noqa: E402
from elm_neuro.networks.lif_config import LIFLayerConfig, LIFNetworkConfig  # noqa: E402
from elm_neuro.networks.lif_layer import LIFLayer  # noqa: E402
from elm_neuro.networks.lif_network import LIFNetwork  # noqa: E402
from elm_neuro.networks.registry import preset_config  # noqa: E402

F64 = torch.float64


def _net(gain="unit", **kw):
    fields = dict(n_in=12, n=9, n_classes=4, readout="leaky", reset="zero", current_gain=gain, n_synapses=6,
                  dt=20.0, tau_mem_min=40.0, tau_mem_max=400.0, tau_out=100.0, weight_scale=3.0, rho=0.4)
    fields.update(kw)
    net = LIFNetwork(LIFNetworkConfig.make(**fields)).to(F64).eval()
    if net.cfg.readout == "leaky":
        with torch.no_grad():
            net.readout.bias.copy_(torch.linspace(-0.5, 0.5, net.cfg.n_classes, dtype=F64))
    return net


def _spikes(seed=0, b=3, t=60, c=12, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, c, generator=g, dtype=F64) < p).to(F64)


def _run(net, x):
    out = net(x, record=True)
    return out.logits, out.traces["hidden"]["spikes"]


@pytest.mark.parametrize("gain", ["unit", "leak"])
@pytest.mark.parametrize("how", ["exact", "euler"])
def test_round_trip_equals_the_network(gain, how, tmp_path):
    net = _net(gain)
    x = _spikes()
    logits, spikes = _run(net, x)
    assert 0.02 < spikes.mean() < 0.5  # the population spikes, and not in every step
    graph = to_nir(net, discretisation=how)
    assert set(graph.nodes) == {"input", "w_in", "lif", "w_rec", "w_out", "li", "output"}
    assert graph.metadata["discretisation"] == how and graph.metadata["dt_s"] == 0.02
    kappa = torch.exp(-net.cfg.hidden.dt / net.hidden.tau_m).detach().numpy()
    tau = np.asarray(graph.nodes["lif"].tau)
    # the graph's tau reproduces the network's decay under its own discretisation
    back_kappa = np.exp(-0.02 / tau) if how == "exact" else 1 - 0.02 / tau
    np.testing.assert_allclose(back_kappa, kappa, rtol=1e-13)
    g = 1.0 if gain == "unit" else 1 - kappa
    np.testing.assert_allclose(np.asarray(graph.nodes["lif"].r) * (1 - kappa), g * np.ones_like(kappa), rtol=1e-13)
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    for g_ in (graph, nir.read(path)):
        back = from_nir(g_, dtype=F64).eval()
        assert back.cfg.hidden.current_gain == gain and back.cfg.readout == "leaky"
        got_logits, got_spikes = _run(back, x)
        assert torch.equal(got_spikes, spikes)
        assert (got_logits - logits).abs().max() <= 1e-10
        assert math.isclose(back.cfg.hidden.dt, 20.0) and math.isclose(back.cfg.tau_out, 100.0, rel_tol=1e-12)


def test_round_trip_of_dale_weights_scaled_input_and_a_layer():
    net = _net(dale=True, frac_inhibitory=0.3, embedding="scaled", embed_scale=0.7)
    x = _spikes(1)
    logits, spikes = _run(net, x)
    graph = to_nir(net)
    w = np.hstack([graph.nodes["w_in"].weight, graph.nodes["w_rec"].weight])
    assert (w < 0).any() and (w > 0).any()  # the effective, signed weights
    back = from_nir(graph, dtype=F64).eval()
    got_logits, got_spikes = _run(back, x)
    assert torch.equal(got_spikes, spikes) and (got_logits - logits).abs().max() <= 1e-10
    layer = net.hidden
    g = to_nir(layer, discretisation="euler", dt_s=1e-4)
    assert set(g.nodes) == {"input", "w_in", "lif", "w_rec", "output"} and ("lif", "output") in g.edges
    copy_ = lif_layer_from_nir(g, dtype=F64).eval()
    assert torch.equal(copy_(x).s, layer(x).s)  # the layer reads x unscaled (the network's embedding scales it)
    assert math.isclose(copy_.cfg.dt, 0.1)  # 1e-4 s read as ms


def test_graphs_that_rescale_the_membrane_import_to_the_same_network():
    """Per-neuron thresholds and input factors r, a readout r and v_leak, a bias-free Affine: scaling
    neuron n's membrane by c_n (its input rows and threshold by c_n) changes no spike, and a readout
    o = (1 - k) (v_leak + r (W s + b)) with W / r, b - v_leak / r ... is the same readout."""
    net = _net("unit")
    x = _spikes(2)
    logits, spikes = _run(net, x)
    graph = to_nir(net)
    g2 = copy.deepcopy(graph)
    c = np.linspace(0.5, 2.0, 9)
    lif = g2.nodes["lif"]
    lif.v_threshold = lif.v_threshold * c
    lif.r = lif.r * np.sqrt(c)
    g2.nodes["w_in"].weight = graph.nodes["w_in"].weight * np.sqrt(c)[:, None]
    g2.nodes["w_rec"] = nir.Affine(weight=graph.nodes["w_rec"].weight * np.sqrt(c)[:, None], bias=np.zeros(9))
    r_o, leak = np.array([0.5, 1.0, 2.0, 4.0]), np.array([0.1, -0.2, 0.0, 0.3])
    w_out, b_out = graph.nodes["w_out"].weight, graph.nodes["w_out"].bias
    g2.nodes["w_out"] = nir.Affine(weight=w_out / r_o[:, None], bias=(b_out - leak) / r_o)
    g2.nodes["li"] = nir.LI(tau=graph.nodes["li"].tau, r=r_o, v_leak=leak)
    back = from_nir(g2, dtype=F64).eval()
    assert back.cfg.hidden.threshold == 1.0 and back.cfg.hidden.current_gain == "unit"
    got_logits, got_spikes = _run(back, x)
    assert torch.equal(got_spikes, spikes) and (got_logits - logits).abs().max() <= 1e-10


# --------------------------------------------------------------------------- snntorch
snn = pytest.importorskip("snntorch", reason="snntorch is not installed: pip install snntorch")


def _layer(rho):
    cfg = LIFLayerConfig.make(reset="zero", current_gain="unit", n_synapses=8, dt=20.0, tau_mem_min=40.0,
                              tau_mem_max=400.0, weight_scale=2.0, rho=rho)
    return LIFLayer(cfg, 12, 9, rho, seed=1).to(F64).eval()


def test_snntorch_runs_an_exported_graph_to_the_same_spikes():
    """snntorch simulates NIR's LIF by forward Euler at dt 1e-4 s (beta = 1 - dt / tau, r = tau / dt):
    a graph written for it (discretisation 'euler', dt_s 1e-4) gives the network's spikes exactly.
    A feed-forward population goes through snntorch's public import_from_nir; for a recurrent one,
    import_from_nir with nirtorch 2.x routes the population's input through its recurrent weights
    (its RNN subgraph has the edge input -> w_rec, which nirtorch then runs; NIRTorch PR #51), so
    the test builds snntorch's RLeaky from the same subgraph with snntorch's own node converter.
    The 'exact' graph read by snntorch's Euler step would decay by 1 - x instead of exp(-x) per
    step (x = dt / tau): beta differs from the network's kappa by at most x^2 / 2."""
    from snntorch.import_nir import _nir_to_snntorch_module, _replace_rnn_subgraph_with_nirgraph, import_from_nir

    x = _spikes(3)
    ff = _layer(0.0)
    graph = to_nir(ff, discretisation="euler", dt_s=1e-4)
    assert "w_rec" not in graph.nodes
    mod = import_from_nir(graph).to(F64)
    outs, state = [], None
    for x_t in x.unbind(1):
        s, state = mod(x_t, state)
        outs.append(s.to(F64))
    ours = ff(x).s
    assert 0.05 < ours.mean() < 0.5 and torch.equal(torch.stack(outs, 1), ours)

    rec = _layer(0.5)
    sub = _replace_rnn_subgraph_with_nirgraph(to_nir(rec, discretisation="euler", dt_s=1e-4))
    w_in = _nir_to_snntorch_module(sub.nodes["w_in"]).to(F64)
    rleaky = _nir_to_snntorch_module(sub.nodes["lif"], init_hidden=False).to(F64)
    assert isinstance(rleaky, snn.RLeaky) and rleaky.reset_mechanism == "zero"
    spk, mem, outs = torch.zeros(3, 9, dtype=F64), torch.zeros(3, 9, dtype=F64), []
    for x_t in x.unbind(1):
        spk, mem = rleaky(w_in(x_t), spk.to(F64), mem)
        outs.append(spk.to(F64))
    ours = rec(x).s
    assert 0.05 < ours.mean() < 0.5 and torch.equal(torch.stack(outs, 1), ours)

    exact = to_nir(rec, dt_s=1e-4)  # snntorch refuses it: its step needs r = tau / dt
    with pytest.raises(AssertionError, match="r not supported"):
        _nir_to_snntorch_module(_replace_rnn_subgraph_with_nirgraph(copy.deepcopy(exact)).nodes["lif"])
    tau = np.asarray(exact.nodes["lif"].tau)
    kappa = np.exp(-1e-4 / tau)
    beta = 1 - 1e-4 / tau
    gap = kappa - beta
    assert np.all(gap > 0) and np.all(gap <= (1e-4 / tau) ** 2 / 2)


def test_a_recurrent_graph_exported_by_snntorch_imports_here():
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 9, bias=False)
    rleaky = snn.RLeaky(beta=0.8, all_to_all=True, linear_features=9, reset_mechanism="zero", reset_delay=False,
                        init_hidden=True)
    with torch.no_grad():
        lin.weight.mul_(4)
        rleaky.recurrent.weight.mul_(2)
        rleaky.recurrent.bias.zero_()
    net = torch.nn.Sequential(lin, rleaky)
    graph = export_to_nir(net, torch.zeros(12))
    assert {type(v).__name__ for v in graph.nodes.values()} == {"Input", "Linear", "LIF", "Affine", "Output"}
    with pytest.raises(ValueError, match="does not record discretisation and dt_s"):
        lif_layer_from_nir(graph)
    layer = lif_layer_from_nir(graph, discretisation="euler", dt_s=1e-4, dtype=F64).eval()
    assert layer.cfg.current_gain == "unit" and math.isclose(float(layer.tau_m[0].detach()), -0.1 / math.log(0.8), rel_tol=1e-6)  # beta in float32
    x = _spikes(4).float()
    theirs = torch.stack([net(x_t) for x_t in x.unbind(1)], 1)
    ours = layer(x.to(F64)).s
    assert 0.05 < ours.mean() < 0.5 and torch.equal(theirs.to(F64), ours)
    with torch.no_grad():
        rleaky.recurrent.bias.fill_(0.1)
    with pytest.raises(NIRUnsupported, match=r"node '1.w_rec' \(recurrent map\) adds a bias current"):
        lif_layer_from_nir(export_to_nir(net, torch.zeros(12)), discretisation="euler", dt_s=1e-4)


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("make, match", [
    (lambda: _net(readout="elm"), "the ELM readout has no NIR primitive"),
    (lambda: _net(readout="spiking"), "the spiking readout"),
    (lambda: _net(neuron="adlif"), "adLIF is not expressible in NIR: .* no NIR node outputs a membrane"),
    (lambda: _net(reset="subtract"), r"resets the membrane to v_reset .*\(reset='subtract'\).*--set reset=zero"),
    (lambda: _net(refractory=2), "no refractory period; this network has refractory=2"),
    (lambda: _net(embedding="one_hot"), "one_hot embedding"),
    (lambda: __import__("elm_neuro.networks.registry", fromlist=["build_model"]).build_model(
        preset_config("shd", n_in=12, n_classes=4, n=3, d_m=2, d_tree=2, d_brch=2)),
     "ELM layers have no NIR primitive"),
])
def test_what_nir_cannot_express_is_refused(make, match):
    with pytest.raises(NIRUnsupported, match=match):
        to_nir(make())


def _graph(**changes):
    graph = to_nir(_net())
    for key, node in changes.items():
        if node is None:
            graph.nodes.pop(key)
            graph.edges = [e for e in graph.edges if key not in e]
        else:
            graph.nodes[key] = node
    return graph


@pytest.mark.parametrize("change, match", [
    (dict(li=nir.CubaLIF(tau_syn=np.ones(4), tau_mem=np.ones(4), r=np.ones(4), v_leak=np.zeros(4),
                         v_threshold=np.ones(4))), "node 'li' is a CubaLIF"),
    (dict(w_in=nir.Affine(weight=np.ones((9, 12)), bias=np.ones(9))), r"node 'w_in' \(input map\) adds a bias"),
    (dict(w_in=nir.Linear(weight=np.ones((9, 11)))), r"node 'w_in' \(input map\) has weight shape \[9, 11\]; the "
                                                     r"graph needs \[9, 12\]"),
    (dict(li=nir.LI(tau=np.array([0.1, 0.1, 0.2, 0.1]), r=np.ones(4), v_leak=np.zeros(4))),
     "the readout's timescales differ between outputs"),
    (dict(lif=nir.LIF(tau=np.full(9, 0.1), r=np.ones(9), v_leak=np.full(9, 0.1), v_threshold=np.ones(9))),
     "v_leak and v_reset must be 0"),
    (dict(li=None), "expected exactly one readout weight node|node after 'w_out'"),
])
def test_unsupported_or_inconsistent_graphs_are_refused(change, match):
    with pytest.raises(NIRUnsupported, match=match):
        from_nir(_graph(**change))


def test_time_step_and_discretisation_errors():
    graph = to_nir(_net())
    graph.metadata = {}
    with pytest.raises(ValueError, match=r"does not record discretisation and dt_s \(metadata\); pass "
                                         r"discretisation=, dt_s="):
        from_nir(graph)
    with pytest.raises(ValueError, match="discretisation must be one of"):
        from_nir(graph, discretisation="rk4", dt_s=0.02)
    with pytest.raises(ValueError, match="dt_s must be a finite number of seconds > 0"):
        to_nir(_net(), dt_s=0.0)
    with pytest.raises(NIRUnsupported, match="every tau must exceed dt_s"):
        from_nir(graph, discretisation="euler", dt_s=10.0)


# --------------------------------------------------------------------------- the export command
def test_export_nir_writes_model_nir(tmp_path, capsys):
    from elm_neuro.training.config import TrainConfig
    from elm_neuro.training.trainer import run_training
    from elm_neuro.data.synth import write_synthetic_shd

    data = tmp_path / "data"
    write_synthetic_shd(data, 40, 20, seed=0)
    cfg = TrainConfig(task="shd", model="lif", data_dir=str(data), bin_ms=50.0, channel_factor=14, batch_size=4,
                      epochs=1, batches_per_epoch=2, warmup=1, seed=0, threads=1,
                      model_overrides=dict(n=6, readout="leaky", reset="zero", n_synapses=5))
    run_training(tmp_path / "run", cfg, resume=False, progress=False)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model"), "--nir"]) == 0
    assert "model.nir" in capsys.readouterr().out
    graph = nir.read(tmp_path / "model" / "model.nir")
    from elm_neuro.training.run import load_run

    model = load_run(tmp_path / "model").model.to(F64).eval()
    x = _spikes(5, c=model.cfg.n_in)
    back = from_nir(graph, dtype=F64).eval()
    assert (back(x).logits - model(x).logits).abs().max() <= 1e-10
    # an ELM run (or a subtractive reset) is refused before anything is written
    cfg2 = cfg.replace(model_overrides=dict(n=6, readout="leaky", n_synapses=5, reset="subtract"))
    run_training(tmp_path / "run2", cfg2, resume=False, progress=False)
    assert main(["export", str(tmp_path / "run2"), "--out", str(tmp_path / "model2"), "--nir"]) == 2
    assert "no NIR export: NIR's LIF resets the membrane" in capsys.readouterr().err
    assert not (tmp_path / "model2").exists()


def test_without_nir_the_message_names_the_package(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "nir", None)  # `import nir` now raises ImportError
    with pytest.raises(ImportError, match=r"need the nir package: pip install nir \(or pip install 'elm-neuro\[nir\]'\)"):
        to_nir(_net())
