"""One prepared GPU check: every GPU figure of the package in one run of at most 8 minutes on a bare
CUDA machine (torch and triton installed, no network), printed and, where ``OUT`` (or ``--out``) names
a folder, teed to ``gpu_check.log`` there with the figures in ``gpu_check.json``.

    bash benchmarks/gpu_check.sh [--only shd-adding,lif]   # on the GPU machine (calls this driver)
    bash benchmarks/gpu_check.sh --dry-run                 # anywhere: the same Python parts on the CPU, tiny sizes
    python benchmarks/gpu_check.py [--dry-run] [--out DIR] [--only NAME,...]

Through the device tool: ``run(command="bash benchmarks/gpu_check.sh", timeout_s=540)``, with
``carry=[".whl"]`` where snntorch's wheel was downloaded into ``.whl/`` (gpu_check.sh's head says
how); ``gpu_check.log`` and ``gpu_check.json`` come back from ``$OUT``. The GPU image has torch,
triton, numpy, numba, h5py, scipy, matplotlib, pytest, pytest-xdist and pytest-timeout; the package
runs from this tree (``PYTHONPATH``), uninstalled; snntorch is the one thing it lacks, and without it
the LIF section measures the package's models alone and says so.

Time: every step has a limit. gpu_check.sh installs carried wheels within 15 s, then runs this
driver under ``timeout 460``; the driver runs each section in a process of its own (in a session
of its own, killed with its children at the section's limit or when the driver is stopped), the
limits below adding up to 435 s and the whole stopping at ``TOTAL_S`` (450 s). A section that
outlives its limit is reported as timed out and keeps the figures it had written.

Sections (``SECTIONS``; limit in seconds):

- ``env`` (20): python, torch, CUDA, cuDNN, triton, numba, numpy and snntorch versions, driver, GPU,
  commit, and per model (ELM SHD-Adding, ELM Enwik8, LIF, adLIF, LIF with leaky readout) the engine
  and backend its layers take by their configuration;
- ``cuda-tests`` (150): ``tests/test_cuda.py`` and the CUDA tests of ``tests/test_engine_lif.py``
  (``-k cuda``): the compiled Triton kernels against the reference and the per-step path (the
  Triton interpreter tests, tests/test_engine_*_triton.py, skip where CUDA is; these are their
  compiled counterparts), with pytest-xdist ``-n 4`` and pytest-timeout ``--timeout 120`` where
  installed; passed / failed / skipped counts and the failures;
- ``shd-adding`` (95): the ELM SHD-Adding preset (d_m 9, N 57), T 1000, ms per training batch
  (forward, loss, backward, Adamax step; median, and the forward alone) at B 8, 32 and 256, each
  with its first batch (compiles and the first-use check), peak memory
  (``torch.cuda.max_memory_allocated``), a torch.profiler split of the GPU kernel time per batch
  into forward kernel / backward kernel / GEMM / copy / other (kernel names grouped: the Triton
  kernels ``*fwd*`` / ``*bwd*``, cuBLAS/CUTLASS GEMMs, memcpy/memset/copy kernels) with the top
  kernels, which path each layer really ran (its ``forward_fused`` / ``forward_step`` calls
  counted, and the engine's own record ``layer.engine_ran``), the first-use verdicts
  (``backends.verdicts()``) and the registers and spills of every Triton kernel variant compiled
  (``CompiledKernel.n_regs`` / ``n_spills``);
- ``enwik8`` (35): the same for the Enwik8 preset at d_m 30, N 440, T 100, B 8;
- ``lif`` (45): ``benchmarks/bench_lif.py``'s models (fused LIF / adLIF networks, and snntorch RLeaky
  where snntorch imports), ms per forward+backward pass, like-for-like speed-ups against the target,
  peak memory per model, the split of ``lif``, paths, verdicts, registers and spills;
- ``not-triton`` (50): a process in which ``import triton`` fails (``sys.modules["triton"] = None``
  before torch and the package are imported): ELM SHD-Adding and Enwik8 (training batches) and LIF
  with ELM and with leaky readout (passes) on ``engine='auto'``; passes only when every layer's
  recorded path is the per-step one (the engines' fallback), no triton module got loaded, and
  reports ms per batch, the EngineFallbackWarnings, the verdicts and what ``engine='fused'`` says;
- ``compile-report`` (40): ``python -m elm_neuro.networks.engines.triton_compile`` for SHD-Adding
  (B 32) and Enwik8 (d_m 30, N 440, B 8), sm 90: registers, spill bytes, shared memory and SASS
  instructions per kernel as compiled without a GPU, beside the real ones of the timing sections.

``--dry-run`` runs every section on the CPU at tiny sizes (T 20 instead of 1000 and so on) without
CUDA: ``cuda-tests`` collects its tests (``--collect-only``), ``compile-report`` calls the tool's
``--help`` (tests/test_triton_compile.py tests the tool), ``not-triton`` makes the engines'
dispatch answer as for CUDA (the fallback tests' device), the rest run as on the GPU with Numba in
Triton's place. Its limit is ``DRY_SECTION_S`` per section (a cold Numba cache compiles for
minutes). tests/test_gpu_check.py runs it and checks the log.

Exit status: 0 when every section passed (or was skipped by design), 1 when one failed or timed
out, 2 without CUDA outside ``--dry-run``.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
TOTAL_S = 450  # all sections together (their budgets add up to 435 s; the rest is the driver's own time)
# benchmarks/gpu_check.sh: at most WHEELS_S installing carried wheels, then this driver under
# `timeout TOTAL_S + 10`: 15 + 460 + 5 (kill grace) = 480 s, the 8 minutes
DRY_SECTION_S = 300


class Section(NamedTuple):
    name: str
    budget_s: int
    title: str


SECTIONS = [
    Section("env", 20, "versions, GPU, the engine and backend of every model's layers"),
    Section("cuda-tests", 150, "CUDA tests: tests/test_cuda.py + tests/test_engine_lif.py -k cuda, compiled Triton"),
    Section("shd-adding", 95, "ELM SHD-Adding preset (d_m 9, N 57), T 1000: ms per training batch at B 8 / 32 / 256"),
    Section("enwik8", 35, "ELM Enwik8 preset (d_m 30, N 440), T 100, B 8: ms per training batch"),
    Section("lif", 45, "LIF / adLIF networks against snntorch RLeaky (B 8, T 1000)"),
    Section("not-triton", 50, "without Triton (import blocked): the engines fall back, each layer's path recorded"),
    Section("compile-report", 40, "registers, spills, instructions of the Triton kernels compiled offline (sm 90)"),
]
assert sum(s.budget_s for s in SECTIONS) <= TOTAL_S

# sizes of the GPU run and of --dry-run (CPU)
SIZES = {
    False: dict(shd=dict(T=1000, B=(8, 32, 256), reps=(20, 10, 5)), enwik8=dict(d_m=30, n=440, T=100, B=8, reps=20),
                lif=dict(B=8, T=1000, reps=5), not_triton=dict(shd_T=1000, enw_T=100, B=8, reps=3), profile_batches=2),
    True: dict(shd=dict(T=20, B=(2, 4, 8), reps=(2, 1, 1)), enwik8=dict(d_m=4, n=20, T=10, B=2, reps=2),
               lif=dict(B=2, T=20, reps=1), not_triton=dict(shd_T=10, enw_T=10, B=2, reps=1), profile_batches=1),
}
# README "Benchmarks": the fused engine's targets (issue 25: the whole-GPU kernels, elm_triton_grid)
TARGETS_MS = {"shd-adding B 8": 25.0, "shd-adding B 32": 10.0, "shd-adding B 256": 40.0, "enwik8": 5.0}
COMPILE_REPORTS = ["elm_neuro/networks/engines/triton_compile.py", "benchmarks/triton_compile.py",
                   "benchmarks/compile_report.py", "benchmarks/triton_report.py"]
CUDA_TESTS = ["tests/test_cuda.py", "tests/test_engine_lif.py", "-k", "cuda"]
# the compile report's runs (the shapes of the timing sections; the kernels' constexprs do not
# depend on the batch beyond its block, so one batch per preset)
COMPILE_PRESETS = [["--preset", "shd-adding", "--batch", "32"],
                   ["--preset", "enwik8", "--d-m", "30", "--n", "440", "--batch", "8"]]


# =========================================================================== driver (no torch here)
class Tee:
    """Lines to stdout and, when a folder is given, to its ``gpu_check.log`` (flushed per line)."""

    def __init__(self, out: Path | None) -> None:
        self.log = open(out / "gpu_check.log", "w", encoding="utf-8") if out else None

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        if self.log:
            self.log.write(line + "\n")
            self.log.flush()


def run_streaming(argv: list, env: dict, limit_s: float, say: Tee) -> tuple:
    """Run ``argv``, its output through ``say`` line by line; kill its process group after
    ``limit_s``. Returns ``(exit status, timed out, output lines)``."""
    lines: list = []
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, errors="replace", start_new_session=True)
    RUNNING.append(proc)

    def pump():
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("USDT:"):  # the CPU profiler's start/stop chatter
                continue
            lines.append(line)
            say(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=max(limit_s, 1))
    except subprocess.TimeoutExpired:
        timed_out = True
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
    reader.join(timeout=5)
    RUNNING.remove(proc)
    return proc.returncode, timed_out, lines


RUNNING: list = []  # the section processes running now (each in a session of its own)


def stop_children(signum, frame) -> None:
    """SIGTERM / SIGINT of the driver (gpu_check.sh's outer ``timeout``): end the running section's
    whole process group too (it runs in a session of its own, which a machine may leave running),
    then exit."""
    for proc in list(RUNNING):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    raise SystemExit(128 + signum)


def find_compile_report() -> str | None:
    for rel in COMPILE_REPORTS:
        if (ROOT / rel).is_file():
            return rel
    return None


def compile_report_argv(py: str, rel: str, args: list) -> list:
    if rel.startswith("elm_neuro/"):  # a package module: run as one (its imports are absolute)
        return [py, "-m", rel[:-3].replace("/", ".")] + args
    return [py, rel] + args


def command_section(sec: Section, py: str, dry: bool, tmp: Path) -> tuple:
    """``(list of argvs, note)`` of a section that runs commands rather than this file."""
    if sec.name == "cuda-tests":
        base = [py, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts="]
        if dry:
            return [base + ["-q", "--collect-only"] + CUDA_TESTS], "dry run: collects the tests the GPU run executes"
        extra = []
        if importlib.util.find_spec("xdist") is not None:
            extra += ["-n", "4"]
        if importlib.util.find_spec("pytest_timeout") is not None:
            extra += ["--timeout", "120"]
        return [base + ["-v", "-rfEs", "--durations=8"] + extra + CUDA_TESTS], None
    rel = find_compile_report()
    if rel is None:
        return [], (f"skipped: no compile report in this tree (looked for {', '.join(COMPILE_REPORTS)}); the "
                    "registers and spills of the kernels that ran are in the timing sections' 'triton kernels' lines")
    if dry:
        return [compile_report_argv(py, rel, ["--help"])], f"dry run: {rel} --help (the GPU run calls it per preset)"
    return [compile_report_argv(py, rel, args + ["--sm", "90", "--json", str(tmp / f"compile-{i}.json")])
            for i, args in enumerate(COMPILE_PRESETS)], None


def compile_figures(tmp: Path) -> dict:
    """Registers, spills, shared memory and instructions per kernel of the compile report's JSON files."""
    rows = []
    for i, args in enumerate(COMPILE_PRESETS):
        path = tmp / f"compile-{i}.json"
        if not path.exists():
            continue
        try:
            kernels = json.loads(path.read_text()).get("kernels", [])
        except ValueError:
            continue
        for k in kernels:
            rows.append(dict(preset=args[1], kernel=k.get("kernel"), sm=k.get("sm"), dtype=k.get("dtype"),
                             registers=k.get("registers"), spill_stores=k.get("spill_stores"),
                             spill_loads=k.get("spill_loads"), shared_bytes=k.get("shared_bytes"),
                             instructions=k.get("instructions", k.get("sass_instructions"))))
    return {"kernels": rows} if rows else {}


def parse_pytest(lines: list) -> dict:
    """Counts of pytest's last summary line, its FAILED/ERROR lines and, for --collect-only, the ids."""
    fig: dict = {}
    for line in reversed(lines):
        if re.search(r"\d+ (passed|failed|skipped|errors?|deselected|tests? collected)", line) \
                or re.search(r"\d+/\d+ tests? collected", line):
            fig["summary"] = line.strip("= ").strip()
            for n, what in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)", line):
                fig[what.rstrip("s") if what.startswith("error") else what] = int(n)
            m = re.search(r"(\d+)(?:/\d+)? tests? collected", line)
            if m:
                fig["collected"] = int(m.group(1))
            break
    if "summary" not in fig:  # cut off (timed out): count the verbose per-test lines seen so far
        seen = re.findall(r"\b(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", "\n".join(
            l for l in lines if "::" in l))
        if seen:
            fig["summary"] = "cut off; so far " + ", ".join(f"{seen.count(w)} {w.lower()}" for w in sorted(set(seen)))
            fig.update({w.lower(): seen.count(w) for w in set(seen)})
    fig["failures"] = [l for l in lines if l.startswith(("FAILED ", "ERROR "))]
    ids = [l.strip() for l in lines if re.match(r"^tests/\S+::\S+$", l.strip())]
    if ids:
        fig["test_ids"] = ids
    return fig


def child_env(dry: bool) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if not dry:
        env.pop("TRITON_INTERPRET", None)  # the kernels compile for the GPU
    return env


def drive(args) -> int:
    out = Path(args.out) if args.out else (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out:
        out.mkdir(parents=True, exist_ok=True)
    say = Tee(out)
    signal.signal(signal.SIGTERM, stop_children)
    signal.signal(signal.SIGINT, stop_children)
    dry, py = args.dry_run, sys.executable
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    unknown = set(only or []) - {s.name for s in SECTIONS}
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {sorted(unknown)}; known: {[s.name for s in SECTIONS]}")
    sections = [s for s in SECTIONS if only is None or s.name in only]
    total = DRY_SECTION_S * len(sections) if dry else TOTAL_S
    t_start = time.monotonic()
    deadline = t_start + total
    result = dict(dry_run=dry, started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  total_budget_s=total, sections={})
    json_path = out / "gpu_check.json" if out else None
    mode = "DRY RUN on the CPU, tiny sizes (no CUDA needed)" if dry else "GPU run"
    say(f"# gpu_check: {mode}; sections {', '.join(s.name for s in sections)}; at most {total} s in all")
    if os.environ.get("TRITON_INTERPRET") and not dry:
        say(f"# note: TRITON_INTERPRET={os.environ['TRITON_INTERPRET']} is set here; the sections run without it")
    say(f"# log: {out / 'gpu_check.log' if out else '(none: OUT unset)'}; figures: {json_path or '(none)'}")
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    env = child_env(dry)
    no_cuda = False

    def one(i: int, sec: Section, out_fn) -> dict:
        budget = DRY_SECTION_S if dry else sec.budget_s
        limit = min(budget, deadline - time.monotonic() - 2)
        out_fn("")
        out_fn(f"== [{i}/{len(sections)}] {sec.name} (limit {budget} s): {sec.title}")
        rec = dict(budget_s=budget, title=sec.title)
        if no_cuda and sec.name not in ("compile-report",):
            rec.update(status="skipped", note="no CUDA device")
        elif limit < 5:
            rec.update(status="skipped", note=f"no time left of the {total} s")
        else:
            rec.update(run_section(sec, py, dry, limit, env, tmp, out_fn))
        out_fn(f"-- {sec.name}: {rec['status']}" + (f" in {rec['elapsed_s']:.1f} s" if "elapsed_s" in rec else "")
               + (f" ({rec['note']})" if rec.get("note") else ""))
        return rec

    if dry and len(sections) > 1:
        # tiny sizes on the CPU: the sections side by side (one thread each), their output in order
        from concurrent.futures import ThreadPoolExecutor
        say("# dry run: the sections run side by side; each one's output follows in order")
        buffers = {sec.name: [] for sec in sections}
        with ThreadPoolExecutor(max_workers=len(sections)) as pool:
            futures = [pool.submit(one, i, sec, buffers[sec.name].append) for i, sec in enumerate(sections, 1)]
            for sec, fut in zip(sections, futures):
                rec = fut.result()
                for line in buffers[sec.name]:
                    say(line)
                result["sections"][sec.name] = rec
                result["elapsed_s"] = round(time.monotonic() - t_start, 1)
                if json_path:
                    write_json(json_path, result)
    else:
        for i, sec in enumerate(sections, 1):
            rec = one(i, sec, say)
            result["sections"][sec.name] = rec
            if sec.name == "env" and not dry and rec.get("figures", {}).get("cuda_available") is False:
                no_cuda = True
                say("-- no CUDA device here: the CUDA sections are skipped (--dry-run runs the Python parts on the CPU)")
            result["elapsed_s"] = round(time.monotonic() - t_start, 1)
            if json_path:
                write_json(json_path, result)
    say()
    for line in summary(result):
        say(line)
    if json_path:
        write_json(json_path, result)
    bad = [n for n, r in result["sections"].items() if r["status"] not in ("ok", "skipped")]
    if no_cuda:
        return 2
    return 1 if bad else 0


def run_section(sec: Section, py: str, dry: bool, limit: float, env: dict, tmp: Path, say: Tee) -> dict:
    t0 = time.monotonic()
    if sec.name in ("cuda-tests", "compile-report"):
        argvs, note = command_section(sec, py, dry, tmp)
        if not argvs:
            return dict(status="skipped", note=note)
        if note:
            say(f"   {note}")
        figures: dict = {"commands": [" ".join(a[1:]) for a in argvs]}
        rcs, timed_out = [], False
        if len(argvs) > 1:  # the compile report's presets side by side (ptxas is one thread), output in order
            from concurrent.futures import ThreadPoolExecutor
            buffers: list = [[] for _ in argvs]
            with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
                futures = [pool.submit(run_streaming, argv, env, limit, buf.append) for argv, buf in zip(argvs, buffers)]
                results = [f.result() for f in futures]
            for argv, buf, (rc, tout, _) in zip(argvs, buffers, results):
                say(f"$ {' '.join(argv[1:])}")
                for line in buf:
                    say(line)
                if tout:
                    say(f"   (timed out after {limit:.0f} s)")
                rcs.append(rc)
                timed_out = timed_out or tout
        for argv in argvs if len(argvs) == 1 else ():
            say(f"$ {' '.join(argv[1:])}")
            rc, timed_out, lines = run_streaming(argv, env, limit - (time.monotonic() - t0), say)
            rcs.append(rc)
            if sec.name == "cuda-tests":
                figures.update(parse_pytest(lines))
        if sec.name == "compile-report":
            figures.update(compile_figures(tmp))
        ok = not timed_out and all(rc == 0 for rc in rcs)
        if sec.name == "cuda-tests" and not dry and figures.get("passed", 0) == 0:
            ok = False
        status = "timed out" if timed_out else ("ok" if ok else f"failed (exit {rcs[-1] if rcs else '?'})")
        return dict(status=status, elapsed_s=round(time.monotonic() - t0, 1), limit_s=round(limit), figures=figures,
                    **({"note": note} if note else {}))
    fig_path = tmp / f"{sec.name}.json"
    argv = [py, str(Path(__file__).resolve()), "--section", sec.name, "--json", str(fig_path),
            "--budget", str(round(limit))] + (["--dry-run"] if dry else [])
    rc, timed_out, _ = run_streaming(argv, env, limit, say)
    figures = json.loads(fig_path.read_text()) if fig_path.exists() else {}
    status = "timed out" if timed_out else ("ok" if rc == 0 else f"failed (exit {rc})")
    return dict(status=status, elapsed_s=round(time.monotonic() - t0, 1), limit_s=round(limit), figures=figures)


def write_json(path: Path, data: dict) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=1, default=str))
    os.replace(part, path)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.1f}" if v >= 1 else f"{v:.3f}"


def _peak(mib) -> str:
    return "n/a on the CPU" if mib is None else f"{mib} MiB"


def summary(result: dict) -> list:
    """The closing lines: every section's status and the headline figures."""
    secs = result["sections"]
    env = secs.get("env", {}).get("figures", {})
    lines = [f"== summary ({'dry run, CPU' if result['dry_run'] else env.get('gpu', 'GPU ?')}; "
             f"torch {env.get('torch', '?')}, triton {env.get('triton', '?')}, python {env.get('python', '?')}; "
             f"{result.get('elapsed_s', 0):.0f} s of {result['total_budget_s']})"]
    for name, r in secs.items():
        t = f"{r['elapsed_s']:.0f}/{r['budget_s']} s" if "elapsed_s" in r else f"-/{r['budget_s']} s"
        lines.append(f"  {name:15s} {r['status']:18s} {t}")
    for name in ("shd-adding", "enwik8"):
        runs = secs.get(name, {}).get("figures", {}).get("runs", {})
        for key, run in runs.items():
            if "ms_per_batch" not in run:
                lines.append(f"  {name} {key}: {run.get('error', 'no figure')}")
                continue
            target = TARGETS_MS.get(f"shd-adding {key.split(',')[0]}" if name == "shd-adding" else name)
            verdict = "" if target is None or result["dry_run"] else \
                f" (target <= {target:g} ms: {'met' if run['ms_per_batch'] <= target else 'not met'})"
            split = run.get("split", {}).get("ms_per_batch", {})
            lines.append(f"  {name} {key}: {_ms(run['ms_per_batch'])} ms per training batch{verdict}; peak "
                         f"{_peak(run.get('peak_mib'))}; " + " | ".join(f"{k} {_ms(v)}" for k, v in split.items()))
            if run.get("engine_ran"):
                lines.append("    ran: " + ", ".join(f"{layer} {_cut(r, 60)}" for layer, r in run["engine_ran"].items()))
    lif = secs.get("lif", {}).get("figures", {})
    if lif.get("ms_per_pass"):
        lines.append("  LIF ms per pass: " + ", ".join(f"{k} {_ms(v)}" for k, v in lif["ms_per_pass"].items()))
    if lif.get("peak_mib"):
        lines.append("  LIF peak MiB: " + ", ".join(f"{k} {v}" for k, v in lif["peak_mib"].items()))
    if lif.get("engine_ran"):
        lines.append("  LIF ran: " + "; ".join(f"{m}: " + ", ".join(f"{layer} {_cut(r, 30)}" for layer, r in rec.items())
                                              for m, rec in lif["engine_ran"].items()))
    if lif:
        sp = lif.get("speedups") or []
        lines.append("  LIF vs snntorch: " + ("; ".join(f"{s['ours']}/{s['theirs']} {s['ratio']:.1f}x" for s in sp)
                                              if sp else str(lif.get("snntorch", "not measured"))))
    nt = secs.get("not-triton", {}).get("figures", {})
    if nt:
        lines.append(f"  not triton: {nt.get('triton_import', '?')}")
        for key, run in nt.get("runs", {}).items():
            ran = ", ".join(f"{layer} {_cut(r, 40)}" for layer, r in run.get("engine_ran", {}).items())
            lines.append(f"    {key}: {_ms(run.get('ms_per_batch') or run.get('ms_per_pass'))} ms "
                         f"({run.get('error') or run.get('skipped') or 'ran: ' + ran})")
        if "engine_fused" in nt:
            lines.append(f"    engine='fused': {_cut(nt['engine_fused'], 100)}")
        lines.append(f"    EngineFallbackWarnings: {len(nt.get('fallback_warnings', []))}; triton modules loaded: "
                     f"{', '.join(nt.get('triton_modules_loaded', [])) or 'none'}")
    tests = secs.get("cuda-tests", {}).get("figures", {})
    if tests.get("summary"):
        lines.append(f"  CUDA tests: {tests['summary']}")
    kernels = {}
    for name in ("shd-adding", "enwik8", "lif"):
        for k in secs.get(name, {}).get("figures", {}).get("triton_kernels", []):
            kernels.setdefault(k["kernel"], []).append(k)
    if kernels:
        lines.append("  triton kernels that ran (registers / spills, over the variants compiled): " + "; ".join(
            f"{n} x{len(v)} regs {min(k['n_regs'] or 0 for k in v)}-{max(k['n_regs'] or 0 for k in v)} "
            f"spills {max(k['n_spills'] or 0 for k in v)}" for n, v in kernels.items()))
    else:
        lines.append("  triton kernels that ran: none" + (" (dry run: Numba on the CPU)" if result["dry_run"] else ""))
    offline = secs.get("compile-report", {}).get("figures", {}).get("kernels", [])
    if offline:
        lines.append("  compiled offline for sm 90 (registers / spill bytes st+ld / SASS instructions): " + "; ".join(
            f"{k['preset']} {k['kernel']} {k['registers']}/{(k['spill_stores'] or 0) + (k['spill_loads'] or 0)}/"
            f"{k['instructions']}" for k in offline))
    return lines


# =========================================================================== sections (child processes)
class Ctx:
    """What a section knows: its sizes, device, time limit and the figures it writes as it goes."""

    def __init__(self, args) -> None:
        self.dry = args.dry_run
        self.sizes = SIZES[self.dry]
        self.t0 = time.monotonic()
        self.budget = float(args.budget)
        self.path = Path(args.json) if args.json else None
        self.fig: dict = {}
        import torch
        self.torch = torch
        self.dev = torch.device("cpu" if self.dry else "cuda")
        if self.dry:  # tiny sizes: one thread each (the dry sections run side by side)
            torch.set_num_threads(1)

    def left(self) -> float:
        """Seconds left of the section's limit, less a margin for writing up."""
        return self.budget - (time.monotonic() - self.t0) - max(3.0, 0.08 * self.budget)

    def set(self, key, value) -> None:
        self.fig[key] = value
        if self.path:
            write_json(self.path, self.fig)

    def sync(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)


ENGINE_MODULES = {"ELMLayer": "elm_sequence", "LIFLayer": "lif_sequence", "LeakyReadout": "leaky_scan"}


def layer_engines(model, dev) -> list:
    """Every engine-bearing layer of ``model``: its path (``layer.engine``) and, off the per-step
    path, the backend the engine takes on ``dev`` (``<engine module>.backend(dev).name``)."""
    rows = []
    for name, mod in model.named_modules():
        kind = type(mod).__name__
        if kind not in ENGINE_MODULES:
            continue
        try:
            engine = str(mod.engine) if hasattr(type(mod), "engine") else \
                ("step" if mod.cfg.engine == "step" else "fused")
        except Exception as exc:  # noqa: BLE001 - reported, the check goes on
            engine = f"error ({type(exc).__name__}: {exc})"
        backend = "-"
        if engine != "step":
            try:
                backend = importlib.import_module(f"elm_neuro.networks.engines.{ENGINE_MODULES[kind]}").backend(dev).name
            except Exception as exc:  # noqa: BLE001
                backend = f"error ({type(exc).__name__}: {exc})"
        reason = getattr(mod, "engine_reason", None) if engine == "step" else None
        rows.append(dict(layer=name or "(model)", cls=kind, engine=engine, backend=backend,
                         **({"reason": reason} if reason else {})))
    return rows


class PathRecorder:
    """Which path every ELM / LIF layer of ``model`` really took: the instance's ``forward_fused``
    and ``forward_step`` are wrapped and each call counted as ``fused/<backend>``, ``step`` or, when
    ``forward_fused`` handed the call to ``forward_step`` (the engine's fallback: a backend that
    cannot be imported or failed its first-use check), ``step (fallback from fused)``. The
    backend's name is the engine module's ``backend(device).name`` when the fused call returned.
    :meth:`text` gives ``layer path xcount, ...``; :meth:`reset` starts counting afresh."""

    KINDS = {"ELMLayer": "elm_sequence", "LIFLayer": "lif_sequence"}

    def __init__(self, model, dev) -> None:
        import collections
        self.dev, self.ran, self.layers = dev, {}, {}
        self._counter = collections.Counter
        for name, mod in model.named_modules():
            kind = type(mod).__name__
            if kind in self.KINDS and hasattr(mod, "forward_fused") and hasattr(mod, "forward_step"):
                self._wrap(name or "(model)", mod, self.KINDS[kind])
        self.reset()

    def reset(self) -> None:
        self.ran = {name: self._counter() for name in self.ran}

    def _backend(self, module: str) -> str:
        try:
            return importlib.import_module(f"elm_neuro.networks.engines.{module}").backend(self.dev).name
        except Exception as exc:  # noqa: BLE001
            return f"? ({type(exc).__name__})"

    def _wrap(self, name: str, mod, module: str) -> None:
        fused, step = mod.forward_fused, mod.forward_step
        state = dict(depth=0, fell=False)
        self.ran[name] = None
        self.layers[name] = mod

        def forward_fused(*a, **k):
            state["depth"] += 1
            state["fell"] = False
            try:
                out = fused(*a, **k)
            except Exception as exc:
                self.ran[name][f"fused refused ({type(exc).__name__})"] += 1
                raise
            finally:
                state["depth"] -= 1
            self.ran[name]["step (fallback from fused)" if state["fell"] else f"fused/{self._backend(module)}"] += 1
            return out

        def forward_step(*a, **k):
            if state["depth"]:
                state["fell"] = True
            else:
                self.ran[name]["step"] += 1
            return step(*a, **k)
        mod.forward_fused, mod.forward_step = forward_fused, forward_step

    def paths(self) -> dict:
        return {name: dict(c) for name, c in self.ran.items()}

    def records(self) -> dict:
        """The engine's own record of each layer's last call (``layer.engine_ran``: ``fused <backend>``
        or ``step (<reason>)``), where the layers keep one."""
        return {name: getattr(mod, "engine_ran", "(no engine_ran record)") for name, mod in self.layers.items()}

    def text(self) -> str:
        """Per layer: the calls counted by path, and the engine's record of the last one."""
        rec = self.records()
        return "; ".join(f"{name} " + (" + ".join(f"{p} x{n}" for p, n in c.items()) or "not called")
                         + f" [engine_ran: {_cut(rec[name])}]" for name, c in self.ran.items()) or "no ELM / LIF layer"


def _cut(text, n: int = 90) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n - 3] + "..."


def verdicts_report() -> list:
    """This process's first-use verdicts of the compiled backends
    (``elm_neuro.networks.engines.backends.verdicts()``), one line each: passed or why not."""
    try:
        from elm_neuro.networks.engines import backends
        got = backends.verdicts()
    except Exception as exc:  # noqa: BLE001 - an engine without the registry: said so
        return [f"(no verdicts: {type(exc).__name__}: {exc})"]
    return [f"{' '.join(str(p) for p in key) if isinstance(key, tuple) else key}: "
            + ("passed" if why is None else f"FAILED: {why}") for key, why in got.items()]


def print_verdicts(ctx: "Ctx") -> None:
    lines = verdicts_report()
    ctx.set("verdicts", lines)
    print("first-use verdicts of the compiled backends (backends.verdicts()): "
          + ("none in this process" if not lines else ""))
    for line in lines:
        print(f"  {line}")


def engines_text(rows: list) -> str:
    return ", ".join(f"{r['layer']} {r['engine']}" + (f"/{r['backend']}" if r["backend"] != "-" else "")
                     for r in rows)


def triton_jit_functions() -> dict:
    """``name -> JITFunction`` of the package's Triton modules already imported (none are imported here)."""
    fns = {}
    for modname in ("elm_neuro.networks.engines.elm_triton", "elm_neuro.networks.engines.elm_triton_grid",
                    "elm_neuro.networks.engines.lif_triton"):
        mod = sys.modules.get(modname)
        for attr, obj in (vars(mod).items() if mod else ()):
            if type(obj).__name__ == "JITFunction":
                fns[attr] = obj
    return fns


def triton_kernel_stats() -> list:
    """Registers, spills, shared memory and warps of every kernel variant Triton compiled in this
    process (``CompiledKernel.n_regs`` / ``n_spills``, read off the JIT caches)."""
    rows = []
    for name, fn in triton_jit_functions().items():
        caches = getattr(fn, "device_caches", None) or getattr(fn, "cache", None) or {}
        for per_device in caches.values():
            kernels = per_device[0] if isinstance(per_device, tuple) else per_device
            for k in (kernels.values() if isinstance(kernels, dict) else ()):
                if getattr(k, "n_regs", None) is None and hasattr(k, "_init_handles"):
                    try:
                        k._init_handles()
                    except Exception:  # noqa: BLE001 - a variant that never launched
                        pass
                md = getattr(k, "metadata", None)
                rows.append(dict(kernel=name, n_regs=getattr(k, "n_regs", None), n_spills=getattr(k, "n_spills", None),
                                 shared=getattr(md, "shared", None), num_warps=getattr(md, "num_warps", None)))
    return rows


def print_kernel_stats(ctx: Ctx) -> None:
    rows = triton_kernel_stats()
    ctx.set("triton_kernels", rows)
    if not rows:
        print("triton kernels: none compiled in this process" +
              (" (dry run: the CPU runs Numba; on the GPU each compiled variant is listed with its registers "
               "and spills)" if ctx.dry else ""))
        return
    print("triton kernels compiled (registers, spills, shared memory, warps):")
    for r in rows:
        print(f"  {r['kernel']:18s} regs {r['n_regs']}  spills {r['n_spills']}  smem {r['shared']} B  "
              f"warps {r['num_warps']}")


GEMM = re.compile(r"gemm|gemv|cutlass|xmma|cublas|matmul|splitk|^aten::(mm|addmm|bmm|baddbmm|addbmm)$", re.I)
COPY = re.compile(r"memcpy|memset|copy|^aten::(cat|fill_|zero_|clone|contiguous|_to_copy|stack)$", re.I)
CPU_FWD = re.compile(r"\w*(Sequence|Scan)")
CPU_BWD = re.compile(r"\w*(Sequence|Scan)Backward\d*")
SPLIT = ("forward kernel", "backward kernel", "synapse gathers", "GEMM", "copy", "other")


def category(name: str, triton_names: set) -> str:
    """The split's part of one profiler event: the engines' forward / backward kernels (Triton
    kernels by name on the GPU; the engines' autograd Functions on the CPU), the Triton gathers
    outside the time loops (elm_triton_grid: the input rows' drive, the synapse weights' and source
    rows' gradients), GEMM, copy, other."""
    if any(name.startswith(t) for t in triton_names):
        return "backward kernel" if "bwd" in name else "forward kernel" if "fwd" in name else "synapse gathers"
    if CPU_BWD.fullmatch(name):
        return "backward kernel"
    if CPU_FWD.fullmatch(name):
        return "forward kernel"
    if GEMM.search(name):
        return "GEMM"
    if COPY.search(name):
        return "copy"
    return "other"


def profile_split(ctx: Ctx, step: Callable, batches: int, wall_ms: float | None) -> dict:
    """Run ``step`` ``batches`` times under torch.profiler: per batch, the GPU kernel time (CPU: the
    ops' self time) by :func:`category`, the top kernels, and the kernels of the engines seen."""
    torch = ctx.torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = ctx.dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    ctx.sync()
    with profile(activities=acts) as prof:
        for _ in range(batches):
            step()
        ctx.sync()
    items, basis = [], "GPU kernel time" if cuda else "CPU op self time"
    if cuda:
        items = [(e.name, e.time_range.elapsed_us()) for e in prof.events() if e.device_type == DeviceType.CUDA]
    if not items:
        if cuda:
            basis = "CPU op self time (no GPU kernel events: CUPTI unavailable?)"
        items = [(a.key, a.self_cpu_time_total) for a in prof.key_averages()]
    triton_names = set(triton_jit_functions())
    parts = dict.fromkeys(SPLIT, 0.0)
    per_name: dict = {}
    for name, us in items:
        parts[category(name, triton_names)] += us / 1e3 / batches
        t, n = per_name.get(name, (0.0, 0))
        per_name[name] = (t + us / 1e3 / batches, n + 1)
    top = sorted(per_name.items(), key=lambda kv: -kv[1][0])[:6]
    engines_seen = sorted(n for n in per_name if any(n.startswith(t) for t in triton_names)
                          or CPU_FWD.fullmatch(n) or CPU_BWD.fullmatch(n))
    total = sum(parts.values())
    split = dict(basis=basis, batches=batches, ms_per_batch={k: round(v, 3) for k, v in parts.items()},
                 total_ms=round(total, 3), top=[dict(name=n, ms=round(t, 3), calls=c // batches or c)
                                                for n, (t, c) in top], engine_kernels_seen=engines_seen)
    if cuda and wall_ms is not None:
        split["outside_kernels_ms"] = round(wall_ms - total, 3)
    return split


def print_split(split: dict) -> None:
    parts = " | ".join(f"{k} {_ms(v)}" for k, v in split["ms_per_batch"].items())
    extra = f" | outside kernels {_ms(split['outside_kernels_ms'])}" if "outside_kernels_ms" in split else ""
    print(f"    split ({split['basis']}, ms per batch over {split['batches']} profiled): {parts}{extra}")
    print("    top: " + "; ".join(f"{t['name'][:60]} {_ms(t['ms'])} ms x{t['calls']}" for t in split["top"]))
    print(f"    engine kernels seen: {', '.join(split['engine_kernels_seen']) or 'none'}")


def timed(ctx: Ctx, step: Callable, reps: int, cap_s: float) -> dict:
    """One warm-up ``step`` (compiles), then up to ``reps`` timed ones (at least one; no new one
    after ``cap_s``); ``step`` returns its own seconds or None (then the wall time counts). Peak
    memory over all of them on CUDA."""
    torch = ctx.torch
    if ctx.dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.dev)
    t = time.perf_counter()
    step()
    ctx.sync()
    first = time.perf_counter() - t
    times: list = []
    start = time.perf_counter()
    while len(times) < reps and (not times or time.perf_counter() - start < cap_s):
        ctx.sync()
        t = time.perf_counter()
        got = step()
        ctx.sync()
        times.append(got if isinstance(got, float) else time.perf_counter() - t)
    res = dict(ms=round(1e3 * statistics.median(times), 3), ms_min=round(1e3 * min(times), 3), repeats=len(times),
               first_s=round(first, 2))
    if ctx.dev.type == "cuda":
        res["peak_mib"] = round(torch.cuda.max_memory_allocated(ctx.dev) / 2**20, 1)
    return res


def training_step(ctx: Ctx, model, x, y) -> Callable:
    """bench_elm's training step (forward, cross-entropy on the last step + regularizers, backward,
    Adamax): returns its seconds; the forward's seconds are kept in ``step.fwd``."""
    from bench_elm import timed_steps

    opt = ctx.torch.optim.Adamax(model.parameters(), lr=1e-4)
    fwd: list = []

    def step():
        f, s = timed_steps(model, x, y, opt)
        fwd.append(f)
        return s
    step.fwd = fwd
    return step


def warnings_recorder():
    import warnings
    cm = warnings.catch_warnings(record=True)
    got = cm.__enter__()
    warnings.simplefilter("always")
    return cm, got


def elm_runs(ctx: Ctx, label: str, configs: list, make: Callable, data: Callable) -> None:
    """Time the ELM network ``make()`` at each ``(key, B, reps)`` of ``configs`` on ``data(B)``."""
    torch = ctx.torch
    runs: dict = {}
    ctx.set("runs", runs)
    torch.manual_seed(0)
    model = make().to(ctx.dev).train()
    rows = layer_engines(model, ctx.dev)
    recorder = PathRecorder(model, ctx.dev)
    print(f"{label} on {ctx.dev}: {engines_text(rows)} (by the configuration; 'ran' below: what really ran)")
    for i, (key, bsz, reps) in enumerate(configs):
        left = ctx.left()
        if left < 2:
            runs[key] = dict(error="not run: the section's time limit was spent")
            print(f"  {key}: not run (the section's time limit was spent)")
            ctx.set("runs", runs)
            continue
        cm, caught = warnings_recorder()
        recorder.reset()
        try:
            x, y = data(bsz)
            step = training_step(ctx, model, x, y)
            res = timed(ctx, step, reps, cap_s=max(0.5, 0.5 * left / (len(configs) - i)))
            run = dict(B=bsz, ms_per_batch=res["ms"], ms_min=res["ms_min"], ms_forward=round(
                1e3 * statistics.median(step.fwd[1:] or step.fwd), 3), repeats=res["repeats"],
                first_batch_s=res["first_s"], peak_mib=res.get("peak_mib"), engines=rows)
            print(f"  {key}: {_ms(run['ms_per_batch'])} ms per training batch (forward {_ms(run['ms_forward'])} ms; "
                  f"median of {run['repeats']}, min {_ms(run['ms_min'])}; first batch {run['first_batch_s']} s "
                  f"with compiling); peak memory {_peak(run['peak_mib'])}")
            if ctx.left() > 3 * run["ms_per_batch"] / 1e3 * ctx.sizes["profile_batches"] + 1:
                run["split"] = profile_split(ctx, step, ctx.sizes["profile_batches"], run["ms_per_batch"])
                print_split(run["split"])
                run["engine_kernels_ran"] = ", ".join(run["split"]["engine_kernels_seen"]) or "no engine kernel seen"
            run["ran"] = recorder.paths()
            run["engine_ran"] = recorder.records()
            run["engines_ran"] = recorder.text()
            print(f"    ran: {run['engines_ran']}")
        except Exception as exc:  # noqa: BLE001 - one configuration failing leaves the others
            run = dict(B=bsz, error=f"{type(exc).__name__}: {exc}", ran=recorder.paths(), engines_ran=recorder.text())
            print(f"  {key}: FAILED {run['error']} (ran: {run['engines_ran']})")
        finally:
            cm.__exit__(None, None, None)
        if caught:
            run["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
            for w in run["warnings"]:
                print(f"    warning: {w}")
        runs[key] = run
        ctx.set("runs", runs)
    if any("error" in r for r in runs.values()):
        raise SystemExit(1)


def spikes(ctx: Ctx, bsz: int, steps: int):
    torch = ctx.torch
    return (torch.rand(bsz, steps, 700, device=ctx.dev) < 0.01).float()


def section_env(ctx: Ctx) -> None:
    torch = ctx.torch
    fig = dict(python=platform.python_version(), executable=sys.executable, torch=torch.__version__,
               cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
               else None, cuda_available=torch.cuda.is_available(),
               triton_interpret=os.environ.get("TRITON_INTERPRET"))
    for name in ("triton", "numba", "numpy", "snntorch"):
        try:
            fig[name] = importlib.import_module(name).__version__
        except Exception as exc:  # noqa: BLE001
            fig[name] = f"not importable ({type(exc).__name__}: {exc})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        fig.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   gpu_memory_gib=round(p.total_memory / 2**30, 1))
        try:
            fig["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception as exc:  # noqa: BLE001
            fig["driver"] = f"nvidia-smi: {type(exc).__name__}"
    else:
        fig["gpu"] = "none (dry run on the CPU)" if ctx.dry else "none: torch sees no CUDA device"
    try:
        fig["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or "unknown (no git here)"
    except Exception:  # noqa: BLE001
        fig["commit"] = "unknown (no git here)"
    cache = Path(os.environ.get("TRITON_CACHE_DIR", Path.home() / ".triton" / "cache"))
    fig["triton_cache"] = f"{cache} ({len(list(cache.iterdir())) if cache.is_dir() else 0} entries)"
    for k, v in fig.items():
        print(f"{k:17s} {v}")
    ctx.set("versions", fig)
    ctx.fig.update(fig)
    ctx.set("cuda_available", fig["cuda_available"])
    if not ctx.dry and not torch.cuda.is_available():
        return
    from elm_neuro.networks.elm_network import ELMNetwork
    from elm_neuro.networks.lif_network import LIFNetwork
    e = ctx.sizes["enwik8"]
    models = {"elm shd-adding": lambda: ELMNetwork.from_preset("shd-adding"),
              f"elm enwik8 (d_m {e['d_m']}, N {e['n']})": lambda: ELMNetwork.from_preset("enwik8", d_m=e["d_m"], n=e["n"]),
              "lif-shd-adding": lambda: LIFNetwork.from_preset("lif-shd-adding"),
              "adlif-shd-adding": lambda: LIFNetwork.from_preset("adlif-shd-adding"),
              "lif-shd-adding, leaky readout": lambda: LIFNetwork.from_preset("lif-shd-adding", readout="leaky")}
    engines = {}
    print(f"engines and backends on {ctx.dev} (layer engine/backend; the timing sections show what ran):")
    for name, make in models.items():
        try:
            engines[name] = layer_engines(make().to(ctx.dev), ctx.dev)
            print(f"  {name}: {engines_text(engines[name])}")
        except Exception as exc:  # noqa: BLE001
            engines[name] = f"error: {type(exc).__name__}: {exc}"
            print(f"  {name}: {engines[name]}")
    ctx.set("engines", engines)


def section_shd_adding(ctx: Ctx) -> None:
    from elm_neuro.networks.elm_network import ELMNetwork
    s = ctx.sizes["shd"]
    torch = ctx.torch
    ctx.set("preset", dict(name="shd-adding", d_m=9, n=57, T=s["T"]))

    def data(bsz):
        return spikes(ctx, bsz, s["T"]), torch.randint(0, 19, (bsz,), device=ctx.dev)
    configs = [(f"B {b}, T {s['T']}", b, r) for b, r in zip(s["B"], s["reps"])]
    try:
        elm_runs(ctx, f"ELM SHD-Adding (d_m 9, N 57, T {s['T']})", configs, lambda: ELMNetwork.from_preset("shd-adding"),
                 data)
    finally:
        print_verdicts(ctx)
        print_kernel_stats(ctx)


def section_enwik8(ctx: Ctx) -> None:
    from elm_neuro.networks.elm_network import ELMNetwork
    e = ctx.sizes["enwik8"]
    torch = ctx.torch
    ctx.set("preset", dict(name="enwik8", d_m=e["d_m"], n=e["n"], T=e["T"], B=e["B"]))

    def data(bsz):
        return (torch.randint(0, 204, (bsz, e["T"]), device=ctx.dev), torch.randint(0, 204, (bsz,), device=ctx.dev))
    try:
        elm_runs(ctx, f"ELM Enwik8 (d_m {e['d_m']}, N {e['n']}, T {e['T']})", [(f"B {e['B']}, T {e['T']}", e["B"], e["reps"])],
                 lambda: ELMNetwork.from_preset("enwik8", d_m=e["d_m"], n=e["n"]), data)
    finally:
        print_verdicts(ctx)
        print_kernel_stats(ctx)


def section_lif(ctx: Ctx) -> None:
    import bench_lif
    torch = ctx.torch
    s = ctx.sizes["lif"]
    ctx.set("snntorch", bench_lif.SNNTORCH)
    print(f"B {s['B']}, T {s['T']}; {bench_lif.SNNTORCH if bench_lif.snn is None else 'reference: ' + bench_lif.SNNTORCH}")
    torch.manual_seed(0)
    x = spikes(ctx, s["B"], s["T"])
    models = bench_lif.build_models(ctx.dev, skip_step=True, gather=False)
    ctx.set("engines", {n: layer_engines(m, ctx.dev) for n, m in models.items() if not n.startswith("snntorch")})
    recorders = {n: PathRecorder(m, ctx.dev) for n, m in models.items() if not n.startswith("snntorch")}
    peaks, first = {}, {}
    for name, model in models.items():  # the warm-up pass (compiles), one model at a time: its peak memory
        if ctx.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.dev)
        t = time.perf_counter()
        bench_lif.one_pass(model, x)
        ctx.sync()
        first[name] = round(time.perf_counter() - t, 2)
        if ctx.dev.type == "cuda":
            peaks[name] = round(torch.cuda.max_memory_allocated(ctx.dev) / 2**20, 1)
    ctx.set("first_pass_s", first)
    ctx.set("peak_mib", peaks or None)
    print("first pass (s, with compiling): " + ", ".join(f"{k} {v}" for k, v in first.items()))
    print("peak memory (MiB): " + (", ".join(f"{k} {v}" for k, v in peaks.items()) or "n/a (CPU)"))
    secs = bench_lif.interleaved_medians(models, x, s["reps"], max_s=max(1.0, 0.6 * ctx.left()))
    ctx.set("ms_per_pass", {k: round(1e3 * v, 3) for k, v in secs.items()})
    ctx.set("speedups", bench_lif.print_results(models, secs, s["B"], ctx.dev.type))
    print("engines (by the configuration): " + "; ".join(f"{n}: {engines_text(r)}" for n, r in ctx.fig["engines"].items()))
    ctx.set("ran", {n: r.paths() for n, r in recorders.items()})
    ctx.set("engine_ran", {n: r.records() for n, r in recorders.items()})
    print("ran: " + "; ".join(f"{n}: {r.text()}" for n, r in recorders.items()))
    if ctx.left() > 3 * secs["lif"] * ctx.sizes["profile_batches"] + 1:
        model = models["lif"]

        def step():
            model.zero_grad(set_to_none=True)
            bench_lif.one_pass(model, x)
        split = profile_split(ctx, step, ctx.sizes["profile_batches"], 1e3 * secs["lif"])
        print("  lif:")
        print_split(split)
        ctx.set("split_lif", split)
    print_verdicts(ctx)
    print_kernel_stats(ctx)


def dispatch_as_cuda() -> None:
    """Dry run: make the fused engines' dispatch (``pick`` in each dispatch module) choose as for
    ``torch.device("cuda")`` while the tensors stay on the CPU, as the fallback tests do, so that the
    CPU walks the path a GPU without Triton takes (the CUDA backend cannot be imported, the layers
    step)."""
    import torch
    from elm_neuro.networks.engines import backends, elm_sequence, leaky_scan, lif_sequence

    cuda = torch.device("cuda")
    for mod in (elm_sequence, lif_sequence, leaky_scan):
        mod.pick = lambda device, *a, _pick=backends.pick, **k: _pick(cuda if device.type == "cpu" else device, *a, **k)


def section_not_triton(ctx: Ctx) -> None:
    """Triton's import is blocked in this process (section_main): the models run on engine
    ``auto`` as a user's would, and each layer's recorded path must be the per-step one (the
    fused engines cannot take their CUDA backend); ``engine='fused'`` must refuse with a message.
    On the CPU (dry run) the dispatch answers as for CUDA (:func:`dispatch_as_cuda`)."""
    torch = ctx.torch
    try:
        import triton  # noqa: F401
        blocked = f"NOT blocked: triton {triton.__version__} imported"
    except ImportError as exc:
        blocked = f"triton import blocked ({type(exc).__name__}: {exc})"
    ctx.set("triton_import", blocked)
    print(blocked)
    if ctx.dry:
        dispatch_as_cuda()
        print("dry run: the engines' dispatch answers as for CUDA, the tensors stay on the CPU")
    from elm_neuro.networks.elm_network import ELMNetwork
    from elm_neuro.networks.lif_network import LIFNetwork
    import bench_lif

    s = ctx.sizes["not_triton"]
    bsz = s["B"]
    enwik8 = ctx.sizes["enwik8"]
    plan = [
        (f"elm shd-adding, B {bsz}, T {s['shd_T']}", "train", lambda: ELMNetwork.from_preset("shd-adding"),
         s["shd_T"], "shd"),
        (f"elm enwik8 (d_m {enwik8['d_m']}, N {enwik8['n']}), B {bsz}, T {s['enw_T']}", "train",
         lambda: ELMNetwork.from_preset("enwik8", d_m=enwik8["d_m"], n=enwik8["n"]), s["enw_T"], "tok"),
        (f"lif-shd-adding, B {bsz}, T {s['shd_T']}", "pass", lambda: LIFNetwork.from_preset("lif-shd-adding"),
         s["shd_T"], "shd"),
        (f"lif-shd-adding leaky readout, B {bsz}, T {s['shd_T']}", "pass",
         lambda: LIFNetwork.from_preset("lif-shd-adding", readout="leaky"), s["shd_T"], "shd"),
    ]
    runs: dict = {}
    problems: list = []
    cm, caught = warnings_recorder()
    try:
        for i, (key, kind, make, steps, inp) in enumerate(plan):
            left = ctx.left()
            if left < 2:
                runs[key] = dict(skipped="not run: the section's time limit was spent")
                print(f"{key}: not run (the section's time limit was spent)")
                continue
            recorder = None
            try:
                torch.manual_seed(0)
                model = make().to(ctx.dev).train()
                recorder = PathRecorder(model, ctx.dev)
                if inp == "shd":
                    x, y = spikes(ctx, bsz, steps), torch.randint(0, 19, (bsz,), device=ctx.dev)
                else:
                    x = torch.randint(0, 204, (bsz, steps), device=ctx.dev)
                    y = torch.randint(0, 204, (bsz,), device=ctx.dev)
                if kind == "train":
                    step = training_step(ctx, model, x, y)
                else:
                    def step(model=model, x=x):
                        model.zero_grad(set_to_none=True)
                        bench_lif.one_pass(model, x)
                res = timed(ctx, step, s["reps"], cap_s=max(0.5, 0.6 * left / (len(plan) - i)))
                unit = "ms_per_batch" if kind == "train" else "ms_per_pass"
                paths, records = recorder.paths(), recorder.records()
                fused = sorted({p for c in paths.values() for p in c if p.startswith("fused/")}
                               | {r for r in records.values() if str(r).startswith("fused")})
                runs[key] = {unit: res["ms"], "repeats": res["repeats"], "first_s": res["first_s"],
                             "peak_mib": res.get("peak_mib"), "ran": paths, "engine_ran": records,
                             "engines_ran": recorder.text()}
                what = "training batch" if kind == "train" else "forward+backward pass"
                print(f"{key}: {_ms(res['ms'])} ms per {what} (median of {res['repeats']}); ran: {recorder.text()}")
                if fused:
                    problems.append(key)
                    runs[key]["error"] = f"a fused engine ran without triton: {', '.join(fused)}"
                    print(f"  PROBLEM: {runs[key]['error']}")
            except Exception as exc:  # noqa: BLE001
                runs[key] = dict(error=f"{type(exc).__name__}: {exc}",
                                 **({"engines_ran": recorder.text()} if recorder else {}))
                problems.append(key)
                print(f"{key}: FAILED {runs[key]['error']}")
            ctx.set("runs", runs)
        # engine='fused' has no path to fall back to: it must refuse, with a message
        try:
            model = ELMNetwork.from_preset("shd-adding", engine="fused").to(ctx.dev)
            with torch.no_grad():
                model(spikes(ctx, 1, 2))
            refusal = "ran (no error): engine='fused' computed without triton"
        except Exception as exc:  # noqa: BLE001
            refusal = f"refused: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ctx.set("engine_fused", refusal)
        print(f"elm shd-adding engine='fused' without triton: {refusal}")
    finally:
        cm.__exit__(None, None, None)
    warned = sorted({f"{w.category.__name__}: {w.message}" for w in caught
                     if w.category.__name__ == "EngineFallbackWarning"})
    ctx.set("fallback_warnings", warned)
    print(f"EngineFallbackWarning, once per configuration: {len(warned)}")
    for w in warned:
        print(f"  {w}")
    print_verdicts(ctx)
    leaked = sorted(m for m in sys.modules if (m == "triton" or m.startswith("triton.")) and sys.modules[m] is not None)
    ctx.set("triton_modules_loaded", leaked)
    print(f"triton modules loaded in this process: {', '.join(leaked) or 'none'}")
    if leaked or blocked.startswith("NOT") or problems or not any("engine_ran" in r for r in runs.values()):
        raise SystemExit(1)


SECTION_FNS = {"env": section_env, "shd-adding": section_shd_adding, "enwik8": section_enwik8, "lif": section_lif,
               "not-triton": section_not_triton}


def section_main(args) -> int:
    if args.section == "not-triton":
        sys.modules["triton"] = None  # before torch and the package: `import triton` fails from here on
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_elm, bench_lif
    ctx = Ctx(args)
    ctx.set("device", str(ctx.dev))
    SECTION_FNS[args.section](ctx)
    ctx.set("elapsed_s", round(time.monotonic() - ctx.t0, 1))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="every section on the CPU at tiny sizes, no CUDA needed")
    ap.add_argument("--out", help="folder for gpu_check.log and gpu_check.json (default: $OUT when set)")
    ap.add_argument("--only", help=f"comma-separated sections of {[s.name for s in SECTIONS]}")
    ap.add_argument("--section", choices=sorted(SECTION_FNS), help=argparse.SUPPRESS)  # a child process
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.section:
        return section_main(args)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
