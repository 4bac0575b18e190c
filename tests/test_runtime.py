"""Threads (physical cores, worker initialiser, what config.json records), the timescale section
of config.json in steps and ms, and the data provenance that runs record."""

import h5py
import numpy as np
import pytest
import torch

from elm_neuro.cli.main import main
from elm_neuro.data._h5io import write_shd_h5
from elm_neuro.data.provenance import data_provenance, enwik8_provenance, shd_provenance
from elm_neuro.data.shd import CLASS_NAMES
from elm_neuro.data.synth import SYNTHETIC_ATTR, write_synthetic_shd
from elm_neuro.networks.registry import preset_config
from elm_neuro.training import runtime as R
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.run import RunDir
from elm_neuro.training.trainer import run_training


def cpuinfo(entries):
    """A /proc/cpuinfo text: one block per (processor, physical id, core id); None ids left out."""
    blocks = []
    for proc, phys, core in entries:
        lines = [f"processor\t: {proc}", "vendor_id\t: GenuineIntel", "model name\t: Fake CPU @ 2.00GHz"]
        if phys is not None:
            lines.append(f"physical id\t: {phys}")
        lines.append("siblings\t: 4")
        if core is not None:
            lines.append(f"core id\t\t: {core}")
        lines.append("cpu cores\t: 2")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n"


# 2 sockets x 2 cores x 2 hyperthreads: processors 0-3 are the first threads, 4-7 their siblings.
TWO_SOCKETS = cpuinfo([(p, (p // 2) % 2, p % 2) for p in range(8)])


def test_count_physical_cores_on_fake_cpuinfo():
    assert R.count_physical_cores(TWO_SOCKETS) == 4  # 8 logical CPUs, 4 (socket, core) pairs
    assert R.count_physical_cores(TWO_SOCKETS, allowed={0, 4}) == 1  # two hyperthreads of one core
    assert R.count_physical_cores(TWO_SOCKETS, allowed={0, 1, 2}) == 3
    assert R.count_physical_cores(TWO_SOCKETS, allowed={0, 1, 2, 3, 4, 5, 6, 7, 99}) == 4
    # the 2-core machine of the issue: one socket, cores 0 and 1, no hyperthreads
    assert R.count_physical_cores(cpuinfo([(0, 0, 0), (1, 0, 1)])) == 2
    # no "physical id" lines (some kernels): one socket
    assert R.count_physical_cores(cpuinfo([(0, None, 0), (1, None, 0), (2, None, 1)])) == 2
    # core ids repeat across sockets: (socket, core) pairs are distinct
    assert R.count_physical_cores(cpuinfo([(0, 0, 0), (1, 1, 0)])) == 2
    # no core information (e.g. ARM kernels), empty text, or no allowed processor: unknown
    assert R.count_physical_cores(cpuinfo([(0, None, None), (1, None, None)])) is None
    assert R.count_physical_cores("") is None
    assert R.count_physical_cores(TWO_SOCKETS, allowed={42}) is None
    with pytest.raises(ValueError, match="cpuinfo must be the text"):
        R.count_physical_cores(None)


def test_physical_cores_reads_the_file_and_falls_back(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(TWO_SOCKETS)
    monkeypatch.setattr(R, "usable_cpus", lambda: {0, 1, 4, 5})  # cores (0, 0) and (0, 1), both threads
    assert R.physical_cores(path) == 2
    path.write_text(cpuinfo([(0, None, None), (1, None, None)]))
    assert R.physical_cores(path) == 4  # no core ids: the usable logical CPUs
    assert R.physical_cores(tmp_path / "missing") == 4
    monkeypatch.setattr(R, "usable_cpus", lambda: None)
    monkeypatch.setattr(R.os, "cpu_count", lambda: 6)
    assert R.physical_cores(tmp_path / "missing") == 6
    monkeypatch.setattr(R.os, "cpu_count", lambda: None)
    assert R.physical_cores(tmp_path / "missing") == 1


def test_choose_threads_rules(monkeypatch):
    monkeypatch.setattr(R, "_worker_threads", None)
    monkeypatch.setattr(R, "physical_cores", lambda: 3)
    assert R.choose_threads(None) == (3, "automatic: one per physical core")
    assert R.choose_threads(5) == (5, "set by --threads (TrainConfig.threads)")
    monkeypatch.setattr(R, "_worker_threads", 1)
    assert R.choose_threads(None) == (1, "automatic: one process of several workers")
    assert R.choose_threads(2)[0] == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            R.choose_threads(bad)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        TrainConfig(threads=0)


def test_runtime_section_applies_and_records(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(R, "_worker_threads", None)
    monkeypatch.setattr(R, "physical_cores", lambda: 2)
    try:
        sec = R.runtime_section(None, "cpu")
        assert torch.get_num_threads() == 2
        assert sec["threads"] == 2 and sec["threads_setting"] is None and sec["physical_cores"] == 2
        assert sec["threads_rule"] == "automatic: one per physical core"
        assert sec["torch"] == torch.__version__ and sec["device"] == "cpu"
        assert sec["interop_threads"] == torch.get_num_interop_threads()
        sec = R.runtime_section(1, "cpu")
        assert torch.get_num_threads() == 1 and sec["threads"] == 1 and sec["threads_setting"] == 1
    finally:
        torch.set_num_threads(before)


def test_worker_initialiser_sets_the_thread_count():
    """The pool initialiser of compare / sweep: one thread per worker, or the given count."""
    with R.process_pool(1) as ex:
        assert ex.submit(torch.get_num_threads).result() == 1
        assert ex.submit(R.worker_threads).result() == 1
        assert ex.submit(R.choose_threads, None).result() == (1, "automatic: one process of several workers")
        assert ex.submit(R.choose_threads, 2).result()[0] == 2  # an explicit setting still wins in a worker
    with R.process_pool(1, 2) as ex:
        assert ex.submit(torch.get_num_threads).result() == 2
        assert ex.submit(R.choose_threads, None).result() == (2, "automatic: one process of several workers")


def test_threads_cli_flag_parses(tmp_path, capsys):
    from elm_neuro.cli.main import build_parser
    from elm_neuro.cli.train import train_config_from_args

    parser = build_parser()
    for cmd in (["train"], ["compare", "--params", "3000", "--out", "x"], ["sweep", "--out", "x"],
                ["demo"]):
        args = parser.parse_args(cmd + ["--threads", "3"])
        assert args.threads == 3
        assert parser.parse_args(cmd).threads is None  # automatic
    args = parser.parse_args(["train", "--threads", "3"])
    assert train_config_from_args(args, "elm", {}, None, 0).threads == 3
    args = parser.parse_args(["train", "--train-set", "threads=2"])
    assert train_config_from_args(args, "elm", {}, None, 0).threads == 2
    assert main(["train", "--threads", "0", "--out", str(tmp_path / "r")]) == 2
    assert "threads must be an integer >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- timescale section
def test_timescale_section_hand_values():
    # ELM Network (docs/design.md §7 taus 1..500 steps, dt 1) at 10 ms bins: 10 ms .. 5 s, the readout likewise
    elm = preset_config("shd-adding")
    sec = R.timescale_section(elm, 10.0)
    assert sec["bin_ms"] == 10.0 and sec["step"] == "one time bin of 10 ms"
    assert sec["memory"] == {"steps": [1.0, 500.0], "ms": [10.0, 5000.0]}
    assert sec["readout_memory"] == {"steps": [1.0, 500.0], "ms": [10.0, 5000.0]}
    assert R.timescale_section(elm.replace(tau_min=2.0, tau_max=50.0), 2.0)["memory"] == {
        "steps": [2.0, 50.0], "ms": [4.0, 100.0]}
    # LIF with dt = bin width 10 ms: membranes 10..50 ms = 1..5 steps; ELM readout 2..1000 ms
    lif = preset_config("lif-shd-adding", dt=10.0)
    sec = R.timescale_section(lif, 10.0)
    assert sec["membrane"] == {"steps": [1.0, 5.0], "ms": [10.0, 50.0]}
    assert "adaptation" not in sec
    assert sec["readout_memory"] == {"steps": [0.2, 100.0], "ms": [2.0, 1000.0]}
    adlif = preset_config("adlif-shd-adding", dt=20.0, readout="leaky", tau_out=40.0)
    sec = R.timescale_section(adlif, 20.0)
    assert sec["membrane"] == {"steps": [0.5, 2.5], "ms": [10.0, 50.0]}
    assert sec["adaptation"] == {"steps": [3.0, 12.0], "ms": [60.0, 240.0]}
    assert sec["readout_tau_out"] == {"steps": [2.0, 2.0], "ms": [40.0, 40.0]}
    # Enwik8: no bin width, steps are characters
    enw = preset_config("enwik8", tau_min=1.0, tau_max=100.0)
    sec = R.timescale_section(enw, None)
    assert sec["bin_ms"] is None and sec["step"] == "one character (no bin width)"
    assert sec["memory"] == {"steps": [1.0, 100.0], "ms": None}
    # the single ELM neuron; the LSTM has no configured timescales
    assert R.timescale_section(preset_config("elm-neuron-shd-adding", tau_min=1.0, tau_max=1000.0), 2.0)[
        "memory"] == {"steps": [1.0, 1000.0], "ms": [2.0, 2000.0]}
    assert set(R.timescale_section(preset_config("lstm-shd-adding"), 2.0)) == {"bin_ms", "step"}
    with pytest.raises(ValueError, match="bin_ms must be a number > 0"):
        R.timescale_section(elm, 0.0)


# --------------------------------------------------------------------------- a run's config.json
@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 60, 30, seed=1)
    return d


def tiny_cfg(shd_dir, model, **kw):
    over = {"elm": dict(d_m=2, d_tree=4, d_brch=3, n=6), "lif": dict(n_synapses=12, readout_d_tree=4,
                                                                     readout_d_brch=3, n=6)}[model]
    return TrainConfig(task="shd-adding", model=model, model_overrides=over, data_dir=str(shd_dir), epochs=1,
                       batches_per_epoch=1, batch_size=2, valid_batches=1, test_batches=1, bin_ms=50.0,
                       channel_factor=14, warmup=1, device="cpu", **kw)


def test_run_config_records_threads_timescales_and_data(shd_dir, tmp_path, capsys):
    run_training(tmp_path / "elm", tiny_cfg(shd_dir, "elm"), resume=False, progress=False)
    conf = RunDir(tmp_path / "elm").read_config()
    # the engine and backend each layer ran (the CPU's Numba backend), also on the run's engines line
    assert conf["runtime"]["engines"] == {"hidden": "fused elm_numba", "readout": "fused elm_numba"}
    assert conf["runtime"]["engine_fallbacks"] == []
    assert "elm: engines: hidden fused elm_numba, readout fused elm_numba\n" in capsys.readouterr().out
    # the test process is a worker (conftest): automatic means one thread
    assert conf["runtime"]["threads"] == 1 and conf["runtime"]["threads_setting"] is None
    assert conf["runtime"]["threads_rule"] == "automatic: one process of several workers"
    assert conf["runtime"]["torch"] == torch.__version__
    assert conf["train"]["threads"] is None  # the setting; "runtime" holds what was used
    assert conf["timescales"]["memory"] == {"steps": [1.0, 500.0], "ms": [50.0, 25000.0]}
    assert conf["data"]["source"] == "synthetic" and "elm-neuro data synth" in conf["data"]["detail"]
    run_training(tmp_path / "lif", tiny_cfg(shd_dir, "lif", threads=1), resume=False, progress=False)
    conf = RunDir(tmp_path / "lif").read_config()
    assert conf["runtime"]["engines"] == {"hidden": "fused lif_numba", "readout": "fused elm_numba"}
    assert conf["runtime"]["threads"] == 1 and conf["runtime"]["threads_setting"] == 1
    assert conf["runtime"]["threads_rule"] == "set by --threads (TrainConfig.threads)"
    assert conf["model"]["config"]["hidden"]["dt"] == 50.0
    assert conf["timescales"]["membrane"] == {"steps": [0.2, 1.0], "ms": [10.0, 50.0]}
    assert torch.get_num_threads() == 1


# --------------------------------------------------------------------------- data provenance
def _write_empty_shd(path, n, attrs=None):
    write_shd_h5(path, np.zeros(0), np.zeros(0), np.zeros(n + 1, dtype=np.int64), np.zeros(n, dtype=np.uint8),
                 np.zeros(n, dtype=np.uint16), keys=CLASS_NAMES, attrs=attrs)


def test_synthetic_files_carry_the_marker(shd_dir):
    for split in ("train", "test"):
        with h5py.File(shd_dir / f"shd_{split}.h5", "r") as f:
            assert f.attrs[SYNTHETIC_ATTR] == "elm_neuro.data.synth" and int(f.attrs["synthetic_seed"]) == 1
    prov = shd_provenance(shd_dir)
    assert prov["source"] == "synthetic" and prov["dataset"] == "SHD"
    assert prov["detail"] == ("synthetic SHD-format files from `elm-neuro data synth` (60 train / 30 test samples, "
                              "seed 1)")


def test_shd_provenance_real_unknown(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    _write_empty_shd(real / "shd_train.h5", 8156)
    _write_empty_shd(real / "shd_test.h5", 2264)
    assert data_provenance("shd-adding", str(real))["source"] == "real"
    assert data_provenance("shd", str(real))["source"] == "real"
    other = tmp_path / "other"
    other.mkdir()
    _write_empty_shd(other / "shd_train.h5", 1000)
    _write_empty_shd(other / "shd_test.h5", 300)
    prov = shd_provenance(other)
    assert prov["source"] == "unknown" and "1000 train / 300 test samples" in prov["detail"]
    marked = tmp_path / "marked"
    marked.mkdir()
    _write_empty_shd(marked / "shd_train.h5", 8156, {SYNTHETIC_ATTR: "elm_neuro.data.synth"})
    _write_empty_shd(marked / "shd_test.h5", 2264)
    assert shd_provenance(marked)["source"] == "synthetic"  # the real sizes do not hide the marker
    assert shd_provenance(tmp_path / "missing")["source"] == "unknown"
    assert shd_provenance(None)["source"] == "unknown"


def test_enwik8_provenance(tmp_path):
    assert data_provenance("enwik8", None)["source"] == "builtin-corpus"
    small = tmp_path / "enwik8"
    small.write_bytes(b"x" * 1000)
    prov = enwik8_provenance(small)
    assert prov["source"] == "unknown" and "1000 bytes" in prov["detail"]
    with open(small, "r+b") as f:
        f.truncate(10 ** 8)
    assert enwik8_provenance(tmp_path)["source"] == "real"  # the folder holding the file
    assert enwik8_provenance(tmp_path / "nothing")["source"] == "unknown"
    with pytest.raises(ValueError, match="task must be one of"):
        data_provenance("mnist", None)
