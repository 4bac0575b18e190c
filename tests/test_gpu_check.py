"""benchmarks/gpu_check.sh, the one prepared GPU check (issue 24 §4): its time limits fit the 8
minutes, its kernel grouping and test parsing, bench_lif.py without snntorch, and a whole
``--dry-run`` on the CPU whose log must hold every section with its figures."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def load(name: str, path: Path, monkeypatch=None):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gc():
    return load("gpu_check_under_test", BENCH / "gpu_check.py")


def test_time_limits_add_up_to_at_most_8_minutes(gc):
    assert sum(s.budget_s for s in gc.SECTIONS) <= gc.TOTAL_S
    sh = (BENCH / "gpu_check.sh").read_text()
    wheels = int(re.search(r"^WHEELS_S=(\d+)$", sh, re.M).group(1))
    total = int(re.search(r"^TOTAL_S=(\d+)$", sh, re.M).group(1))
    assert gc.TOTAL_S <= total
    # every step of the GPU run is under a timeout: the wheels' install and the driver (+ 5 s kill grace)
    assert re.search(r'timeout -k 2 "\$WHEELS_S" "\$PY" -m pip install', sh)
    assert 'exec timeout -k 5 "$TOTAL_S" "$PY" benchmarks/gpu_check.py' in sh
    assert wheels + total + 5 <= 8 * 60


def test_profiler_events_are_grouped_into_the_split(gc):
    triton = {"_elm_fwd_kernel", "_elm_bwd_kernel", "_lif_fwd_kernel", "_scan_bwd_kernel", "_fwd_persistent",
              "_input_drive_kernel", "_weight_grad_kernel"}
    want = {
        "_elm_fwd_kernel": "forward kernel", "_elm_bwd_kernel": "backward kernel", "_fwd_persistent": "forward kernel",
        "_input_drive_kernel": "synapse gathers", "_weight_grad_kernel": "synapse gathers",
        "_lif_fwd_kernel": "forward kernel", "_scan_bwd_kernel": "backward kernel",
        "sm90_xmma_gemm_f32f32_tf32f32_f32_nn_n_tilesize128x128x32": "GEMM",
        "void cutlass::Kernel2<cutlass_80_simt_sgemm_128x64_8x5_nn_align1>(Params)": "GEMM",
        "ampere_sgemm_64x32_sliced1x4_nn": "GEMM", "Memcpy DtoD (Device -> Device)": "copy",
        "Memset (Device)": "copy",
        "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>": "copy",
        "void at::native::vectorized_elementwise_kernel<4, at::native::AUnaryFunctor<float>>": "other",
        "ELMSequence": "forward kernel", "ELMSequenceBackward": "backward kernel",
        "LIFSequenceBackward0": "backward kernel", "aten::mm": "GEMM", "aten::copy_": "copy",
    }
    assert {name: gc.category(name, triton) for name in want} == want
    assert set(gc.SPLIT) >= {"forward kernel", "backward kernel", "GEMM", "copy"}


def test_pytest_summary_is_parsed(gc):
    fig = gc.parse_pytest(["tests/test_cuda.py::test_a PASSED", "FAILED tests/test_cuda.py::test_b - boom",
                           "==== 17 passed, 1 failed, 2 skipped in 80.10s ===="])
    assert (fig["passed"], fig["failed"], fig["skipped"]) == (17, 1, 2)
    assert fig["failures"] == ["FAILED tests/test_cuda.py::test_b - boom"]
    assert gc.parse_pytest(["19/77 tests collected (58 deselected) in 1.61s"])["collected"] == 19
    cut = gc.parse_pytest(["[gw0] [ 5%] PASSED tests/test_cuda.py::a", "[gw1] [10%] FAILED tests/test_cuda.py::b"])
    assert (cut["passed"], cut["failed"]) == (1, 1) and cut["summary"].startswith("cut off")


def test_bench_lif_runs_without_snntorch(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "snntorch", None)  # `import snntorch` fails
    monkeypatch.syspath_prepend(str(BENCH))
    bench_lif = load("bench_lif_without_snntorch", BENCH / "bench_lif.py")
    assert bench_lif.snn is None and "snntorch not importable" in bench_lif.SNNTORCH
    import torch
    models = bench_lif.build_models(torch.device("cpu"), skip_step=True, gather=False)
    assert models and not any(name.startswith("snntorch") for name in models)
    speedups = bench_lif.print_results(models, {name: 0.01 for name in models}, 2, "cpu")
    assert speedups == []
    assert "like-for-like speed-ups: none (no snntorch)" in capsys.readouterr().out


NUMBER = r"\d+(?:\.\d+)?"


def test_dry_run_logs_every_section_with_its_figures(tmp_path, gc):
    """The whole script on the CPU at tiny sizes, as on the GPU machine but ``--dry-run``: exit 0,
    and the log under $OUT holds every section, each with numbers."""
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    log_path = out / "gpu_check.log"
    assert log_path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    log = log_path.read_text()
    assert done.returncode == 0, log[-6000:] + done.stderr[-2000:]
    assert log.strip() == done.stdout.strip()  # the log is what was printed

    def block(name: str) -> str:
        m = re.search(rf"^== \[\d/\d\] {re.escape(name)} .*?^-- {re.escape(name)}: (\w+)", log, re.M | re.S)
        assert m, f"no section {name} in the log"
        assert m.group(1) == "ok", m.group(0)[-3000:]
        return m.group(0)

    for sec in gc.SECTIONS:
        block(sec.name)
    env_block = block("env")
    for key in ("python", "torch", "triton", "numba", "snntorch", "cuda_available"):
        assert re.search(rf"^{key}\s+\S", env_block, re.M), key
    assert re.search(rf"^torch\s+{NUMBER}", env_block, re.M)
    assert re.search(r"elm shd-adding: hidden fused/elm_numba, readout fused/elm_numba", env_block)
    assert re.search(rf"^{NUMBER}/{NUMBER} tests collected", block("cuda-tests"), re.M)
    split = (rf"forward kernel {NUMBER} \| backward kernel {NUMBER} \| synapse gathers {NUMBER} \| GEMM {NUMBER} \| "
             rf"copy {NUMBER} "
             rf"\| other {NUMBER}")
    shd = block("shd-adding")
    for bsz in gc.SIZES[True]["shd"]["B"]:
        assert re.search(rf"B {bsz}, T 20: {NUMBER} ms per training batch \(forward {NUMBER} ms", shd), bsz
    assert len(re.findall(split, shd)) == 3
    assert len(re.findall(r"ran: hidden fused/elm_numba x\d+ \[engine_ran: fused elm_numba\]", shd)) == 3
    enw = block("enwik8")
    assert re.search(rf"B 2, T 10: {NUMBER} ms per training batch", enw) and re.search(split, enw)
    lif = block("lif")
    assert re.search(rf"^lif\s+\d+\s+fused\s+{NUMBER}\s+{NUMBER}$", lif, re.M)
    assert re.search(rf"lif-hidden vs snntorch-hidden .*: {NUMBER}x", lif) or "no snntorch" in lif
    assert re.search(split, lif)
    nt = block("not-triton")
    assert "triton import blocked" in nt and "triton modules loaded in this process: none" in nt
    runs = re.findall(rf"^(.+?): ({NUMBER}) ms per (?:training batch|forward\+backward pass) .*; ran: (.*)$", nt, re.M)
    assert len(runs) == 4, nt
    for key, ms, ran in runs:  # every layer fell back to the per-step path, as the engine recorded
        assert float(ms) > 0
        assert "fused/" not in ran and ran.count("[engine_ran: step (") >= 1, (key, ran)
    assert "engine='fused' without triton: refused" in nt
    assert "--help" in block("compile-report")
    summary = log[log.index("== summary"):]
    assert re.search(rf"shd-adding B 8, T 20: {NUMBER} ms per training batch", summary)
    assert "LIF ms per pass: lif " in summary and "not triton: triton import blocked" in summary

    figures = json.loads((out / "gpu_check.json").read_text())
    assert figures["dry_run"] is True
    assert {name: r["status"] for name, r in figures["sections"].items()} == {s.name: "ok" for s in gc.SECTIONS}
    runs = figures["sections"]["shd-adding"]["figures"]["runs"]
    assert len(runs) == 3 and all(r["ms_per_batch"] > 0 and r["split"]["total_ms"] > 0 for r in runs.values())
