"""Exact parameter counts (docs/design.md §4), the N solver, the budget CLI and configuration errors."""
import json

import pytest

from elm_neuro.cli.main import main
from elm_neuro.networks.budget import closest_n, count_trainable
from elm_neuro.networks.elm_config import ELMLayerConfig, ELMNetworkConfig
from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.networks.registry import preset_config

SHD = {2: (155, 77069), 3: (130, 76864), 4: (111, 77025), 5: (96, 77310), 7: (73, 77079),
       9: (57, 76551), 11: (46, 76588), 15: (32, 77246), 20: (21, 74895), 25: (15, 74109)}
ENWIK8 = {5: (2398, 3516342), 10: (1500, 3515184), 15: (1024, 3516748), 20: (742, 3516486),
          25: (561, 3511095), 30: (440, 3515924), 35: (353, 3508407), 40: (290, 3508874),
          45: (243, 3516717), 50: (206, 3514590), 60: (153, 3501507), 70: (118, 3489142),
          85: (85, 3500419), 100: (64, 3502348)}
CASES = [("shd-adding", d, n, p) for d, (n, p) in SHD.items()] + [("enwik8", d, n, p) for d, (n, p) in ENWIK8.items()]


@pytest.mark.parametrize("preset,d_m,n,p", CASES)
def test_paper_parameter_counts(preset, d_m, n, p):
    cfg = preset_config(preset, d_m=d_m, n=n)
    b = cfg.budget()
    assert b.p == p
    assert b.k_c == (300 if preset == "shd-adding" else 750)
    d_tree = 30 if preset == "shd-adding" else 50
    assert b.k_e == 4 * d_m ** 2 + 2 * d_m * (d_tree + 2) + 1
    c = cfg.n_classes
    assert b.p == n * (b.k_c + b.k_e) + c * (b.k_c + 3 * d_tree + 16) + c * (c + 1)


@pytest.mark.parametrize("preset,d_m,n,p", [CASES[0], CASES[5], CASES[9], CASES[10], CASES[-1]])
def test_count_equals_built_model(preset, d_m, n, p):
    assert count_trainable(ELMNetwork.from_preset(preset, d_m=d_m, n=n)) == p


@pytest.mark.parametrize("over", [dict(learn_tau=True), dict(mlp_layers=0), dict(mlp_layers=2, d_mlp=7),
                                  dict(branch_trace=True, d_tree=7, d_brch=4, n_classes=5)])
def test_count_equals_built_model_for_variants(over):
    cfg = preset_config("shd-adding", d_m=4, n=9, n_in=30, **over)
    assert count_trainable(ELMNetwork(cfg)) == cfg.budget().p


def test_solver_finds_closest_n():
    cfg = preset_config("shd-adding", d_m=9)
    n = closest_n(lambda k: cfg.replace(n=k).budget().p, 77000)
    assert n == 57
    # closest means no neighbour is closer
    for target in (10000, 20000, 77000, 300000):
        n = closest_n(lambda k: cfg.replace(n=k).budget().p, target)
        here = abs(cfg.replace(n=n).budget().p - target)
        assert here <= abs(cfg.replace(n=n + 1).budget().p - target)
        if n > 1:
            assert here <= abs(cfg.replace(n=n - 1).budget().p - target)
    with pytest.raises(ValueError, match="too small"):
        closest_n(lambda k: cfg.replace(n=k).budget().p, 1000)


def test_budget_cli_prints_and_solves(capsys):
    assert main(["budget", "--preset", "shd-adding", "--d-m", "9", "--n", "57"]) == 0
    assert capsys.readouterr().out.split() == ["N=57", "d_m=9", "k_e=901", "k_c=300", "P=76551"]
    assert main(["budget", "--preset", "shd-adding", "--d-m", "2", "--params", "77000", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["N"] == 155 and row["P"] == 77069
    assert main(["budget", "--preset", "enwik8", "--d-m", "20", "--n", "742", "--set", "learn_tau=true"]) == 0
    assert "P=3531938" in capsys.readouterr().out  # 3516486 + 742*20 + 204*3 learnable taus


def test_budget_cli_errors(capsys):
    assert main(["budget", "--preset", "nope", "--n", "3"]) == 2
    assert "preset must be one of" in capsys.readouterr().err
    assert main(["budget", "--d-m", "9", "--n", "5", "--params", "7"]) == 2
    assert "either --n or --params" in capsys.readouterr().err
    assert main(["budget", "--set", "bogus=1"]) == 2
    assert "unknown ELMNetworkConfig field(s) ['bogus']" in capsys.readouterr().err


@pytest.mark.parametrize("field,value,msg", [
    ("d_m", 0, "d_m must be an integer >= 1"),
    ("rho", 1.5, r"rho must lie in \[0, 1\]"),
    ("dropout_in", 1.0, r"dropout_in must lie in \[0, 1\)"),
    ("dropout_rec", -0.1, r"dropout_rec must lie in \[0, 1\)"),
    ("mlp_act", "tanh", "mlp_act must be one of"),
    ("output_act", "sigmoid", "output_act must be one of"),
    ("memory_mode", "v3", "memory_mode must be one of"),
    ("synapse_rect", "square", "synapse_rect must be one of"),
    ("tau_r", 0.0, "tau_r must be a finite number > 0"),
    ("embedding", "learned", "embedding must be one of"),
    ("synapse_impl", "cuda", "synapse_impl must be one of"),
])
def test_bad_network_configs(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        preset_config("shd-adding", **{field: value})


def test_bad_layer_configs():
    with pytest.raises(ValueError, match="tau_min must be <= tau_max"):
        ELMLayerConfig(tau_min=10.0, tau_max=1.0)
    with pytest.raises(ValueError, match=r"n_synapses \(K\) must equal d_tree \* d_brch"):
        ELMLayerConfig(d_tree=3, d_brch=4, n_synapses=10)
    with pytest.raises(ValueError, match="unknown ELMNetworkConfig field"):
        ELMNetworkConfig.from_dict({"d_m": 3, "colour": "red"})
    cfg = ELMNetworkConfig.make(n=4, d_m=2)
    assert ELMNetworkConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
