"""Configurations compose: network configs hold layer configs, flat names address them, old
flat run folders still load, presets are plain data, and one resolver serves every command."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from elm_neuro.networks.elm_config import ELMLayerConfig, ELMNetworkConfig, ELMNeuronConfig, elm_readout_config
from elm_neuro.networks.lif_config import LIFLayerConfig, LIFNetworkConfig
from elm_neuro.networks.lstm import LSTMConfig
from elm_neuro.networks.presets import PRESETS
from elm_neuro.networks.registry import MODEL_FAMILIES, preset_config, resolve_model_config

ROOT = Path(__file__).resolve().parents[1]

# The field names of the flat configurations written before configs composed (sweep-table
# columns, --set names, config.json of older runs): every one must still be accepted.
OLD_ELM_FIELDS = {
    "n_in", "n", "n_classes", "embedding", "embed_scale", "d_m", "d_mlp", "mlp_layers", "mlp_act", "d_tree",
    "d_brch", "input_scale", "synapse_rect", "branch_trace", "tau_b", "tau_min", "tau_max", "learn_tau",
    "memory_mode", "lambda_value", "dt", "tau_r", "output_act", "rho", "wiring", "dropout_in", "dropout_rec",
    "readout_d_m", "seed", "synapse_impl"}
OLD_LIF_FIELDS = {
    "n_in", "n", "n_classes", "embedding", "embed_scale", "neuron", "n_synapses", "rho", "wiring", "dt", "threshold",
    "reset", "reset_value", "detach_reset", "refractory", "current_gain", "tau_mem_min", "tau_mem_max",
    "tau_adapt_min", "tau_adapt_max", "adapt_a_min", "adapt_a_max", "adapt_b_min", "adapt_b_max", "learn_tau",
    "learn_adapt", "surrogate", "surrogate_slope", "surrogate_scale", "weight_scale", "dale", "frac_inhibitory",
    "readout", "readout_rho", "tau_out", "readout_d_m", "readout_d_tree", "readout_d_brch", "readout_input_scale",
    "readout_tau_min", "readout_tau_max", "dropout_in", "dropout_rec", "seed", "synapse_impl"}
OLD_NEURON_FIELDS = {
    "n_in", "n_classes", "d_m", "d_mlp", "mlp_layers", "mlp_act", "d_tree", "d_brch", "routing", "input_scale",
    "synapse_rect", "branch_trace", "tau_b", "tau_min", "tau_max", "learn_tau", "memory_mode", "lambda_value", "dt",
    "embedding", "embed_scale", "seed"}


def test_network_configs_hold_layer_configs():
    cfg = ELMNetworkConfig()
    assert isinstance(cfg.hidden, ELMLayerConfig) and isinstance(cfg.readout, ELMLayerConfig)
    assert cfg.readout == elm_readout_config()
    assert (cfg.readout.d_m, cfg.readout.mlp_layers, cfg.readout.tau_r, cfg.readout.output_act, cfg.readout.rho) == \
        (3, 0, None, "identity", 0.0)
    lif = LIFNetworkConfig()
    assert isinstance(lif.hidden, LIFLayerConfig)
    # the spiking network's readout is the same docs/design.md §3 readout configuration, in ms at 2 ms bins
    assert lif.elm_readout == elm_readout_config(tau_min=2.0, tau_max=1000.0, dt=2.0)
    assert ELMNeuronConfig().neuron.d_m == 100 and ELMNeuronConfig().layer().d_o == 19


def test_flat_names_route_to_layers():
    cfg = ELMNetworkConfig().replace(d_m=4, d_tree=10, readout_d_m=2, n=7)
    assert (cfg.hidden.d_m, cfg.hidden.d_tree, cfg.readout.d_tree, cfg.readout.d_m, cfg.n) == (4, 10, 10, 2, 7)
    assert cfg.d_m == 4 and cfg.d_tree == 10  # read through
    dotted = cfg.replace(**{"readout.d_tree": 5})
    assert (dotted.hidden.d_tree, dotted.readout.d_tree) == (10, 5)
    lif = LIFNetworkConfig().replace(dt=10.0, readout_d_tree=10, n_synapses=100, dropout_in=0.1)
    assert (lif.hidden.dt, lif.elm_readout.dt, lif.elm_readout.d_tree, lif.hidden.n_synapses) == (10.0, 10.0, 10, 100)
    assert (lif.hidden.dropout_in, lif.elm_readout.dropout_in) == (0.1, 0.1)
    assert ELMNeuronConfig().replace(d_m=7).neuron.d_m == 7


def test_flat_names_cover_the_old_fields():
    new = {"engine"}  # fields added since (the fused engines)
    assert set(ELMNetworkConfig.flat_names()) == OLD_ELM_FIELDS | new
    assert set(LIFNetworkConfig.flat_names()) == OLD_LIF_FIELDS | new  # the LIF engine
    assert set(ELMNeuronConfig.flat_names()) >= OLD_NEURON_FIELDS | new
    assert set(ELMNetworkConfig().flat()) == OLD_ELM_FIELDS | new
    assert ELMNetworkConfig().replace(d_m=5).flat()["d_m"] == 5


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_round_trips_nested_and_flat(name):
    cfg = preset_config(name)
    cls = type(cfg)
    nested = json.loads(json.dumps(cfg.to_dict()))
    assert cls.from_dict(nested) == cfg
    # the flat form (a sweep-table row, an older config.json) rebuilds the same configuration
    assert cls.from_dict(cfg.flat()) == cfg


def test_old_flat_run_folders_load():
    """config.json model sections written before configs composed (flat; kept in
    tests/fixtures from the demo runs exported then) load, field for field, with the same P."""
    legacy = json.loads((ROOT / "tests" / "fixtures" / "legacy_flat_configs.json").read_text())
    for folder, entry in legacy.items():
        family, flat = entry["model"]["family"], entry["model"]["config"]
        cfg = MODEL_FAMILIES[family][0].from_dict(flat)
        for key, value in flat.items():
            assert getattr(cfg, key) == value, (folder, key)
        assert cfg.budget().p == entry["p"]
    # and today's exported models (nested) load too
    for folder in ("demo-elm-shd-adding", "demo-lif-shd-adding"):
        conf = json.loads((ROOT / "models" / folder / "config.json").read_text())
        cfg = MODEL_FAMILIES[conf["model"]["family"]][0].from_dict(conf["model"]["config"])
        assert cfg.budget().p == json.loads((ROOT / "models" / folder / "summary.json").read_text())["p"]


def test_errors_name_the_nested_path_and_the_given_name():
    with pytest.raises(ValueError, match=r"hidden\.d_tree must be an integer >= 1, got 0 \(from d_tree=0\)"):
        preset_config("shd-adding", d_tree=0)
    with pytest.raises(ValueError, match=r"unknown ELMNetworkConfig field\(s\) \['colour'\]"):
        ELMNetworkConfig().replace(colour=1)
    with pytest.raises(ValueError, match=r"unknown ELMLayerConfig field\(s\) \['colour'\]"):
        ELMNetworkConfig().replace(**{"readout.colour": 1})
    with pytest.raises(ValueError, match=r"elm_readout.dt must equal the network's dt = 2.0"):
        LIFNetworkConfig().replace(**{"elm_readout.dt": 1.0})
    with pytest.raises(ValueError, match="readout.d_o must be 1"):
        ELMNetworkConfig().replace(**{"readout.d_o": 2})


def test_presets_are_plain_data():
    code = ("import sys, elm_neuro.networks.presets as p; "
            "assert not [m for m in sys.modules if m.startswith('elm_neuro.networks.') and m != 'elm_neuro.networks.presets'],"
            " sorted(sys.modules); assert 'torch' not in sys.modules; print(len(p.PRESETS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(PRESETS)
    for name, (family, fields) in PRESETS.items():
        assert family in MODEL_FAMILIES and isinstance(fields, dict), name


def test_one_resolver_for_budget_and_training():
    from elm_neuro.training.model_setup import train_model_config

    neuron = resolve_model_config(preset="elm-neuron-shd-adding", params=50000)
    assert neuron.d_m == 93 and neuron.budget().p == 50381
    assert train_model_config("elm-neuron", "shd-adding", None, {}, 50000, 700, 19) == neuron
    lif = resolve_model_config("lif", overrides={"n_synapses": 100}, task="shd-adding", n_in=100, dt=10.0,
                               params=20000)
    assert (lif.n_in, lif.hidden.dt, lif.elm_readout.dt) == (100, 10.0, 10.0)
    assert abs(lif.budget().p - 20000) <= lif.hidden.n_synapses + lif.internal_params()
    elm = resolve_model_config("elm", task="shd-adding", dt=10.0)
    assert elm.hidden.dt == 1.0  # ELM timescales are in steps
    with pytest.raises(ValueError, match="preset 'lif-shd-adding' is a 'lif' preset, not 'elm'"):
        resolve_model_config("elm", preset="lif-shd-adding")
    with pytest.raises(ValueError, match="give either n"):
        resolve_model_config("lstm", task="shd-adding", overrides={"n": 3}, params=5000)
    assert isinstance(resolve_model_config("lstm", task="enwik8"), LSTMConfig)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_budget_command_sizes_every_preset(name, capsys):
    from elm_neuro.cli.main import main

    target = 2 * preset_config(name).budget().p // 3
    assert main(["budget", "--preset", name, "--params", str(target), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    cfg = resolve_model_config(preset=name, params=target)
    assert row["P"] == cfg.budget().p and row["target_P"] == target
    assert row["N"] == cfg.budget().n
