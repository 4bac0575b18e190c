"""Sweeps on a Ray cluster started the way users start one: ``ray start --head`` on this machine
(its own temporary folder and HOME, stopped at the end). The same grid and seeds give the same
results as the local executor; a cluster with token authentication (``ray start``'s default since
Ray 2.5x) is refused at once with the cause and the fix when this process sends no token, and
works with ``RAY_AUTH_MODE=token``."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'elm-neuro[distributed]'")

from elm_neuro.analysis.sweep_table import read_table  # noqa: E402
from elm_neuro.data.synth import write_synthetic_shd  # noqa: E402

RAY = Path(sys.executable).with_name("ray")
GRID = ["--task", "shd", "--params", "1500", "--d-m", "2,3", "--seeds", "1", "--epochs", "1",
        "--batches-per-epoch", "2", "--batch-size", "8", "--set", "d_tree=4", "--set", "d_brch=3",
        "--train-set", "bin_ms=50", "--train-set", "channel_factor=14", "--train-set", "valid_batches=2",
        "--train-set", "test_batches=2", "--train-set", "warmup=1", "--lr", "0.01", "--threads", "1", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster (2 CPUs) started with ``ray start --head``; yields (address, env)."""
    if not RAY.is_file():
        pytest.skip(f"the ray command is not installed beside {sys.executable}")
    root = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "HOME": str(root / "home"), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AUTH_MODE", None)
    (root / "home").mkdir()
    port = _free_port()
    cmd = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           f"--temp-dir={root / 'tmp'}", "--include-dashboard=false", "--disable-usage-stats"]
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}", env, started.stdout + started.stderr
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 120, 60, seed=1)
    return d


def _sweep(out, data, env, *extra, timeout=600):
    cmd = [sys.executable, "-m", "elm_neuro.cli.main", "sweep", *GRID, "--data", str(data), "--out", str(out), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_started_cluster_gives_the_local_results(cluster, shd, tmp_path):
    address, env, log = cluster
    token = "Token authentication is enabled" in log  # Ray >= 2.5x: `ray start` turns it on by default
    if token:
        refused = _sweep(tmp_path / "refused", shd, env, "--executor", "ray", "--address", address,
                         "--ray-timeout", "60", timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr  # a connection failure
        msg = refused.stderr.strip().splitlines()[-1]
        assert f"--address {address}: the Ray cluster requires token authentication" in msg
        assert "set RAY_AUTH_MODE=token in this shell" in msg and "~/.ray/auth_token" in msg
        assert refused.stderr.count("InvalidAuthToken") == 0  # Ray's retry warnings are not shown
        assert not (tmp_path / "refused").exists()  # nothing written
    ray_env = {**env, "RAY_AUTH_MODE": "token"} if token else env
    on_ray = _sweep(tmp_path / "ray", shd, ray_env, "--executor", "ray", "--address", address)
    assert on_ray.returncode == 0, on_ray.stdout + on_ray.stderr
    local = _sweep(tmp_path / "local", shd, env, "--workers", "1")
    assert local.returncode == 0, local.stdout + local.stderr
    rows = {name: read_table(tmp_path / name / "results.csv") for name in ("ray", "local")}
    assert [r["run_id"] for r in rows["ray"]] == [r["run_id"] for r in rows["local"]] == [
        "p1500-dm2-n5-s0", "p1500-dm3-n3-s0"]
    for a, b in zip(rows["ray"], rows["local"]):
        assert (a["test_acc"], a["valid_acc"], a["p"]) == (b["test_acc"], b["valid_acc"], b["p"])


def test_a_cluster_that_goes_away_ends_the_sweep_and_it_resumes(cluster, shd, tmp_path):
    """The head node stopped while cells train: the sweep ends with one line naming the address and
    what to do (not Ray's own abort a minute later), and the same sweep then finishes locally,
    resuming what was started. (Last in the file: it stops the module's cluster.)"""
    import time

    address, env, log = cluster
    ray_env = {**env, "RAY_AUTH_MODE": "token"} if "Token authentication is enabled" in log else env
    out = tmp_path / "lost"
    longer = ["--seeds", "2", "--epochs", "4", "--batches-per-epoch", "10"]
    cmd = [sys.executable, "-m", "elm_neuro.cli.main", "sweep", *GRID, *longer, "--data", str(shd), "--out", str(out),
           "--executor", "ray", "--address", address]
    proc = subprocess.Popen(cmd, env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(out.glob("cells/*/config.json")):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        assert list(out.glob("cells/*/config.json")), "no cell started on the cluster"
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    line = err.strip().splitlines()[-1]
    assert f"--address {address}: the Ray cluster stopped answering" in line
    assert "finished cells are kept and unfinished ones resume from their checkpoints" in line
    again = _sweep(out, shd, env, *longer, "--workers", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = read_table(out / "results.csv")
    assert sorted(r["run_id"] for r in rows) == ["p1500-dm2-n5-s0", "p1500-dm2-n5-s1", "p1500-dm3-n3-s0",
                                                 "p1500-dm3-n3-s1"]
