"""The public API: ``from elm_neuro import ...`` for the networks, presets, the budget solver and
load_run; every network with ``from_preset`` and ``budget``."""
import subprocess
import sys

import pytest
import torch

import elm_neuro
from elm_neuro import ELMNetwork, ELMNeuron, LIFNetwork, LSTMNetwork, closest_n, load_run, preset_config
from elm_neuro.networks.budget import count_trainable

NETWORKS = [(ELMNetwork, "shd-adding", dict(d_m=3, n=5)), (ELMNeuron, "elm-neuron-shd-adding", dict(d_m=4)),
            (LIFNetwork, "lif-shd-adding", dict(n=20)), (LIFNetwork, "adlif-shd-adding", dict(n=20)),
            (LIFNetwork, "lif-iclr2024", dict(n=20)), (LSTMNetwork, "lstm-shd-adding", dict(n=4))]


def test_every_public_name_imports():
    assert set(elm_neuro.__all__) >= {"ELMNetwork", "ELMNeuron", "LIFNetwork", "LSTMNetwork", "preset_config",
                                      "closest_n", "load_run"}
    for name in elm_neuro.__all__:
        assert getattr(elm_neuro, name) is not None, name
    assert load_run is elm_neuro.load_run and callable(closest_n)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        elm_neuro.Nope  # noqa: B018


def test_import_is_light():
    code = "import sys, elm_neuro; assert 'torch' not in sys.modules and 'elm_neuro.networks' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("cls,preset,kw", NETWORKS)
def test_from_preset_and_budget(cls, preset, kw):
    net = cls.from_preset(preset, **kw)
    assert isinstance(net, cls) and net.cfg == preset_config(preset, **kw)
    assert net.budget() == net.cfg.budget() and net.budget().p == count_trainable(net)
    out = net((torch.rand(2, 5, 700) < 0.05).float())
    assert out.logits.shape == (2, 5, net.cfg.n_classes)


def test_from_preset_refuses_another_family():
    with pytest.raises(ValueError, match="preset 'lstm-shd-adding' is a 'lstm' preset; ELMNetwork builds"):
        ELMNetwork.from_preset("lstm-shd-adding")
    cfg = preset_config("shd-adding", d_m=9)
    assert closest_n(lambda k: cfg.replace(n=k).budget().p, 76551) == 57
