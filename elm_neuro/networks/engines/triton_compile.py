"""Compile the fused engines' Triton kernels for an NVIDIA GPU on a machine without one, and report
what the GPU would run: registers, spills, shared memory and the SASS instruction mix per kernel.

    python -m elm_neuro.networks.engines.triton_compile --preset shd-adding --batch 8 --batch 32 --sm 80 --sm 90
    python -m elm_neuro.networks.engines.triton_compile --preset enwik8 --batch 32 --sm 80 --sm 90 --keep build/sass
    python -m elm_neuro.networks.engines.triton_compile --cases cases.json --sm 80 --sm 90 --json out.json

How
    :func:`compile_only` installs, for its ``with`` block, a stand-in CUDA driver that makes Triton
    believe a GPU of compute capability ``sm`` is active, and turns every kernel launch into a
    compile-only warm-up: the launchers (``elm_triton.forward`` / ``backward``,
    ``lif_triton.forward`` / ``backward``, ``scan_forward`` / ``scan_backward``) run on CPU tensors
    exactly as on a GPU (same shapes, block sizes and constexprs), each kernel is compiled for
    ``sm_<sm>`` (TTIR -> TTGIR -> LLVM -> PTX -> cubin with the ptxas bundled with Triton) and
    nothing runs (the output tensors keep whatever ``torch.empty`` gave). The ptxas log of each
    compilation (Triton runs ptxas with ``-v`` and normally discards it) gives registers, stack
    frame and spill bytes; ``cuobjdump -sass`` (bundled too) gives the SASS, whose instructions
    are counted by class. Compiled kernels cache under a temporary ``TRITON_CACHE_DIR`` (removed
    afterwards), so every kernel is compiled (and its ptxas log seen) afresh; or, with
    ``--cache DIR``, under a persistent one, each kernel's ptxas log kept beside it, so that a
    kernel unchanged since an earlier run (by Triton's own cache key: source, constexprs,
    target, Triton and ptxas versions) is not compiled again. On exit the active driver,
    ``JITFunction.run``, the ptxas hook, the cache knobs and the per-device kernel caches are
    restored.

    :func:`run_case` builds a small random problem of the kernel contracts
    (:mod:`~elm_neuro.networks.engines.elm_contract`,
    :mod:`~elm_neuro.networks.engines.lif_contract`) for one option set, optionally with the
    backend's tuning constants overridden (``BATCH_BLOCK``, ``TILE_BUDGET``...), and calls the
    launchers; :func:`compile_model` runs one forward and backward of a whole network from a
    preset with every fused engine's dispatch pointed at its Triton backend.

Limits
    Nothing executes, so there are no timings and no numerical checks (the interpreter tests
    check the arithmetic). What a compile shows: compile errors of the NVIDIA backend (which the
    interpreter never meets), register pressure and spills, shared memory, and the instruction
    mix per program, e.g. to compare two versions of a kernel. Shared memory beyond the device's
    limit only fails at load time on a GPU; the report flags it (:data:`MAX_SHARED`).

Process
    Triton decides between compiled and interpreted kernels when they are decorated, so this
    needs a process in which ``TRITON_INTERPRET`` was not set when Triton was imported (the test
    suite sets it where CUDA is absent: tests/conftest.py). :func:`compile_in_subprocess` runs the
    compilation in fresh Python processes without it, one per compute capability, in parallel
    (what tests/test_triton_compile.py does).

Role in the engines (tests/test_layering.py): a *tool*. It imports the Triton backends, the
contracts and the dispatch modules; no engine module imports it, so it is never part of a model.
Needs triton with its NVIDIA backend (ptxas, ptxas-blackwell, cuobjdump under
``triton/backends/nvidia/bin``), torch CPU.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import torch

ENGINES = "elm_neuro.networks.engines"
# the largest shared memory per block (opt-in) of each compute capability, bytes
MAX_SHARED = {70: 98304, 75: 65536, 80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448, 100: 232448,
              120: 101376}
# instruction classes the table shows
MIX_COLUMNS = ("LDG", "STG", "LDS", "STS", "BAR", "SHFL", "FFMA", "DFMA", "MUFU", "LDL", "STL")
_TOOLS = {"ptxas": "ptxas (sm < 90)", "ptxas_blackwell": "ptxas-blackwell (sm >= 90)", "cuobjdump": "cuobjdump"}
_device_ids = itertools.count(1 << 20)  # a stand-in device number per session, never a real device's


# --------------------------------------------------------------------------- the toolchain
def toolchain_problem() -> Optional[str]:
    """Why kernels cannot be compiled here (None when they can): triton, its NVIDIA backend or a
    bundled tool missing. Imports no engine module (safe under the interpreter)."""
    try:
        import triton
    except ImportError as e:
        return f"triton is not installed ({e})"
    try:
        from triton import knobs
    except ImportError:
        return (f"triton {triton.__version__} has no triton.knobs, through which this tool finds and hooks "
                f"ptxas (triton 3.4 or newer)")
    try:
        importlib.import_module("triton.backends.nvidia.compiler")
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.backends.driver import GPUDriver  # noqa: F401
    except ImportError as e:
        return f"triton has no NVIDIA backend ({e})"
    for attr, name in _TOOLS.items():
        try:
            getattr(knobs.nvidia, attr)
        except RuntimeError as e:
            return f"triton's bundled {name} is missing or does not run ({e})"
    return None


def _interpreted() -> bool:
    from triton.runtime.jit import JITFunction

    from elm_neuro.networks.engines import elm_triton
    return not isinstance(elm_triton._elm_fwd_kernel, JITFunction)


# --------------------------------------------------------------------------- what a compile gives
@dataclass
class KernelReport:
    """One compiled kernel (one specialization) for one compute capability."""

    kernel: str
    sm: int
    dtype: str  # element type of the kernel's first tensor argument
    grid: tuple
    num_warps: int
    constexprs: dict  # the kernel's constexpr arguments
    ints: dict  # its integer arguments (Triton specializes those equal to 1 and multiples of 16)
    registers: int
    stack_bytes: int
    spill_stores: int  # bytes
    spill_loads: int
    shared_bytes: int
    instructions: Optional[int]  # SASS instructions without the NOP padding (None: not disassembled)
    mix: dict  # instruction class (opcode without modifiers) -> count
    cases: list = field(default_factory=list)  # the cases (or presets) that launched it
    hash: str = ""
    compile_seconds: float = 0.0

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads

    @property
    def shared_fits(self) -> bool:
        return self.shared_bytes <= MAX_SHARED.get(self.sm, 0)


@dataclass
class Launch:
    kernel: str
    grid: Optional[tuple]
    num_warps: int
    constexprs: dict
    ints: dict
    dtype: str
    compiled: object = None  # triton CompiledKernel
    error: Optional[str] = None
    case: str = ""
    seconds: float = 0.0  # compile time (0 when the kernel was compiled before in the session)


@dataclass
class CaseResult:
    """One case (or preset) compiled for one sm: its error, if any, and the kernels it launched."""

    case: str
    sm: int
    error: Optional[str]
    kernels: list  # hashes of the KernelReports, in launch order
    seconds: float
    grids: list = field(default_factory=list)  # this case's grid of each kernel (a report keeps its first)


def _ptxas_numbers(log: str) -> dict:
    """Registers, stack frame and spill bytes from a ``ptxas -v`` log."""
    out = {}
    m = re.search(r"Used (\d+) registers", log)
    if m is None:
        raise RuntimeError("no register count in the ptxas log:\n" + log)
    out["registers"] = int(m.group(1))
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if m is None:
        raise RuntimeError("no spill line in the ptxas log:\n" + log)
    out["stack_bytes"], out["spill_stores"], out["spill_loads"] = (int(g) for g in m.groups())
    return out


_SASS_LINE = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_PREDICATE = re.compile(r"^@!?U?P[T0-9]+\s+")
_BRANCH = re.compile(r"^(?:@!?U?P[T0-9]+\s+)?BRA(?:\.\S+)?\s+(0x[0-9a-f]+)")


def _opcode(text: str) -> str:
    """The opcode of an instruction's text, its predicate and modifiers dropped (``@!P0 LDG.E`` -> ``LDG``)."""
    return _PREDICATE.sub("", text.strip()).split()[0].split(".")[0]


def sass_mix(sass: str) -> collections.Counter:
    """Instruction counts by opcode (predicates and modifiers dropped) of a ``cuobjdump -sass`` listing."""
    return collections.Counter(_opcode(m.group(2)) for m in map(_SASS_LINE.match, sass.splitlines()) if m)


def sass_instructions(sass: str) -> list[tuple[int, str]]:
    """``(address, instruction text)`` of a ``cuobjdump -sass`` listing, NOP padding dropped."""
    out = []
    for line in sass.splitlines():
        m = _SASS_LINE.match(line)
        if m:
            text = m.group(2).strip()
            if _opcode(text) != "NOP":
                out.append((int(m.group(1), 16), text))
    return out


def sass_loops(instrs: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """The loops of a listing as ``(first, last)`` address ranges: every branch to a lower address
    (the back edge at ``last`` to the loop head ``first``), outermost first."""
    loops = []
    for addr, text in instrs:
        m = _BRANCH.match(text)
        if m and int(m.group(1), 16) < addr:
            loops.append((int(m.group(1), 16), addr))
    return sorted(set(loops), key=lambda r: (r[0], -r[1]))


def _unrolled_trips(inner: list, trips: list, instrs: list, loops: list) -> list:
    """Pair the inner loops found with the expected trip counts. A loop the compiler unrolled ``u``
    times at run time appears as a main loop of ``u`` bodies (``trips // u`` times) and a remainder
    loop of one body (``trips % u`` times) right after it; ``u`` is the power of two nearest the
    ratio of their lengths without their branches. Any other mismatch raises ``ValueError``."""
    def length(r):
        return sum(1 for a, _ in instrs if r[0] <= a <= r[1])

    out, i = [], 0
    for k, trip in enumerate(trips):
        if i >= len(inner):
            raise ValueError(f"expected {len(trips)} inner loops inside the item loop, found loops {loops}")
        spare = (len(inner) - i) - (len(trips) - k)
        if spare > 0:  # main loop + remainder loop
            main, rem = inner[i], inner[i + 1]
            u = 2 ** max(1, round(math.log2(max((length(main) - 1) / max(length(rem) - 1, 1), 1.0))))
            out += [(main, trip // u), (rem, trip % u)]
            i += 2
        else:
            out.append((inner[i], trip))
            i += 1
    if i != len(inner):
        raise ValueError(f"expected {len(trips)} inner loops inside the item loop, found loops {loops}")
    return out


def step_instructions(sass: str, inner_trips: list[int], items_per_program: int = 1, time_outer: bool = True) -> dict:
    """Instructions a persistent kernel issues per time step and warp, from its SASS: the body of
    its outermost loop (the time loop), the item loop's body ``items_per_program`` times, each
    inner loop's body ``trip`` times (``inner_trips``: their trip counts in address order), a grid
    barrier's spin loop once (its waiting is counted as time, not instructions). With
    ``time_outer=False`` the kernel is the other way round (items independent through time: the
    outermost loop takes the items, the time loop inside runs each one's sequence): the time
    loop's body ``items_per_program`` times. Branches within a body (an ``if``) count both ways: an
    upper bound. Raises ``ValueError`` when the loops found are not a time loop, an item loop and
    ``len(inner_trips)`` inner loops (say, one the compiler unrolled in part), so that a changed
    kernel cannot give a silently wrong count. Returns ``{"instructions", "barriers" (BAR.SYNC per
    step), "loops"}``."""
    instrs = sass_instructions(sass)
    loops = sass_loops(instrs)
    if len(loops) < 2:
        raise ValueError(f"expected a time loop and an item loop, found {len(loops)} loops")
    outer = max(loops, key=lambda r: r[1] - r[0])
    inside = [r for r in loops if r != outer and outer[0] <= r[0] and r[1] <= outer[1]]
    second = max(inside, key=lambda r: r[1] - r[0]) if inside else None
    if second is None:
        raise ValueError(f"expected a loop inside the outermost one, found loops {loops}")
    # the body counted per step: the time loop's, or (time outer) the item loop's within it; after
    # the item loop, inside the time loop: the grid barrier's spin loop (counted once)
    counted, body = (outer, second) if time_outer else (second, second)
    inner = sorted((r for r in inside if r != second and second[0] <= r[0] and r[1] <= second[1]),
                   key=lambda r: r[0])
    weighted = _unrolled_trips(inner, inner_trips, instrs, loops)
    total = barriers = 0
    for addr, text in instrs:
        if not (counted[0] <= addr <= counted[1]):
            continue
        weight = 1
        if body[0] <= addr <= body[1]:
            weight = items_per_program
            for (first, last), trips in weighted:
                if first <= addr <= last:
                    weight *= trips
        total += weight
        if _PREDICATE.sub("", text).startswith("BAR.SYNC"):
            barriers += weight
    return {"instructions": total, "barriers": barriers, "loops": len(loops)}


def _start_sass(cubin: bytes, path: Path) -> subprocess.Popen:
    """``cuobjdump -sass`` of a cubin, started in the background (it takes about as long as a
    small kernel's compile, so it overlaps the next compile)."""
    from triton import knobs
    path.write_bytes(cubin)
    return subprocess.Popen([knobs.nvidia.cuobjdump.path, "-sass", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish_sass(proc: subprocess.Popen) -> str:
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"cuobjdump failed: {err.strip()}")
    return out


# --------------------------------------------------------------------------- the compile-only session
class Session:
    """What a :func:`compile_only` block launched (:attr:`launches`) and, per kernel, the ptxas log."""

    def __init__(self, sm: int, workdir: Path, keep: Optional[Path], sass: bool, log_dir: Optional[Path] = None):
        self.sm, self.workdir, self.keep, self.sass, self.log_dir = sm, workdir, keep, sass, log_dir
        self._disasm: dict[str, subprocess.Popen] = {}  # kernel hash -> cuobjdump running
        self.launches: list[Launch] = []
        self.case = ""
        self._logs: dict[str, str] = {}  # kernel hash -> ptxas log
        self._capture: Optional[list] = None
        self._reports: dict[str, KernelReport] = {}

    def remember_log(self, key: str, log: str) -> None:
        """Keep a kernel's ptxas log (and, with a persistent cache, store it next to the cache)."""
        self._logs[key] = log
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            part = self.log_dir / f"{key}.log.part{os.getpid()}"
            part.write_text(log)
            part.replace(self.log_dir / f"{key}.log")  # atomic: a reader sees the whole log or none

    def stored_log(self, key: str) -> Optional[str]:
        """The ptxas log of a kernel compiled by an earlier session into the persistent cache."""
        if key in self._logs:
            return self._logs[key]
        path = self.log_dir / f"{key}.log" if self.log_dir is not None else None
        if path is None or not path.is_file():
            return None
        self._logs[key] = path.read_text()
        return self._logs[key]

    def errors(self, since: int = 0) -> list[str]:
        return [f"{x.kernel}: {x.error}" for x in self.launches[since:] if x.error]

    def report(self, launch: Launch) -> KernelReport:
        """The report of a launch's kernel (computed once per kernel)."""
        k = launch.compiled
        rep = self._reports.get(k.hash)
        if rep is None:
            log = self._logs.get(k.hash)
            if log is None:
                raise RuntimeError(f"{launch.kernel}: no ptxas log (the kernel did not compile in this session)")
            sass = _finish_sass(self._disasm.pop(k.hash)) if k.hash in self._disasm else None
            mix = sass_mix(sass) if sass is not None else collections.Counter()
            if self.keep is not None:
                stem = self._stem(launch)
                self.keep.mkdir(parents=True, exist_ok=True)
                for ext in ("ptx", "ttgir"):
                    (self.keep / f"{stem}.{ext}").write_text(k.asm[ext])
                if sass is not None:
                    (self.keep / f"{stem}.sass").write_text(sass)
                (self.keep / f"{stem}.ptxas.log").write_text(log)
            rep = KernelReport(kernel=launch.kernel, sm=self.sm, dtype=launch.dtype, grid=launch.grid,
                               num_warps=k.metadata.num_warps, constexprs=launch.constexprs, ints=launch.ints,
                               shared_bytes=int(k.metadata.shared),
                               instructions=sum(mix.values()) - mix["NOP"] if sass is not None else None,
                               mix={op: n for op, n in mix.most_common() if op != "NOP"}, hash=k.hash,
                               compile_seconds=launch.seconds, **_ptxas_numbers(log))
            self._reports[k.hash] = rep
        if launch.case and launch.case not in rep.cases:
            rep.cases.append(launch.case)
        return rep

    def _stem(self, launch: Launch) -> str:
        return f"{launch.kernel}-sm{self.sm}-{launch.compiled.hash[:10]}"

    def _compiled(self, launch: Launch) -> None:
        """A launch compiled: start its kernel's disassembly (once per kernel)."""
        k = launch.compiled
        if self.sass and k.hash not in self._disasm and k.hash not in self._reports:
            self._disasm[k.hash] = _start_sass(k.asm["cubin"], self.workdir / f"{self._stem(launch)}.cubin")

    def reports(self) -> list[KernelReport]:
        """One report per compiled kernel, in the order of their first launch."""
        for x in self.launches:
            if x.compiled is not None:
                self.report(x)
        return list(self._reports.values())


def _fake_driver(sm: int, device_id: int):
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import GPUDriver

    class CompileOnlyCuda(GPUDriver):
        """A CUDA driver for compiling only: Triton's launch path asks it for the target, device
        and stream; nothing is ever loaded or launched through it."""

        def __init__(self):  # GPUDriver's would bind torch.cuda's device and stream functions
            pass

        @staticmethod
        def is_active():
            return True

        def get_current_target(self):
            return GPUTarget("cuda", sm, 32)

        def get_current_device(self):
            return device_id

        def get_current_stream(self, device=None):
            return 0

        def get_active_torch_device(self):
            return torch.device("cpu")

        def get_device_interface(self):
            return torch.cuda

        def map_python_to_cpp_type(self, ty):
            return ty

        def get_benchmarker(self):
            raise RuntimeError("compile-only driver: nothing runs")

        def get_empty_cache_for_benchmark(self):
            raise RuntimeError("compile-only driver: nothing runs")

        def clear_cache(self, cache):
            pass

    return CompileOnlyCuda()


@contextlib.contextmanager
def compile_only(sm: int = 90, keep: Optional[Path] = None, sass: bool = True,
                 cache: Optional[Path] = None) -> Iterator[Session]:
    """Within the block, every Triton kernel launch compiles the kernel for ``sm_<sm>`` and runs
    nothing (module docstring); yields the :class:`Session` recording the launches. ``keep``: a
    folder for each kernel's PTX, TTGIR, SASS and ptxas log; ``sass=False``: no disassembly
    (no instruction counts; faster). ``cache``: a persistent ``TRITON_CACHE_DIR`` (default: a
    temporary one, so everything compiles afresh); a kernel found there (same source, constexprs,
    target, Triton and ptxas versions: Triton's own cache key) is not compiled again, and its
    ptxas log, kept under ``cache/ptxas-logs``, gives its numbers."""
    problem = toolchain_problem()
    if problem:
        raise RuntimeError(problem)
    if _interpreted():
        raise RuntimeError("Triton's interpreter is on in this process (TRITON_INTERPRET=1 when triton was imported): "
                           "compile in a process without it (compile_in_subprocess)")
    from triton import knobs
    from triton.backends.nvidia.compiler import CUDABackend
    from triton.runtime import driver as drivers
    from triton.runtime.jit import JITFunction

    device_id = next(_device_ids)
    tmp = tempfile.TemporaryDirectory(prefix="triton-compile-")
    cache_dir = Path(cache) if cache is not None else Path(tmp.name) / "cache"
    session = Session(sm, Path(tmp.name), Path(keep) if keep is not None else None, sass,
                      cache_dir / "ptxas-logs" if cache is not None else None)
    orig_run, orig_cubin, orig_active = JITFunction.run, CUDABackend.make_cubin, drivers._active
    functions = []

    def compile_once(fn, args, grid, kwargs):
        """The compiled kernel of a launch and the ptxas logs its compile printed (none: found
        in a cache)."""
        session._capture = []
        try:
            return orig_run(fn, *args, grid=grid, warmup=True, **kwargs), session._capture
        finally:
            session._capture = None

    def run(fn, *args, grid, warmup, **kwargs):
        if fn not in functions:
            functions.append(fn)
        constexpr_names = {p.name for p in fn.params if p.is_constexpr}
        tensors = [v for v in itertools.chain(args, kwargs.values()) if isinstance(v, torch.Tensor)]
        launch = Launch(fn.__name__, None, int(kwargs.get("num_warps", 4)),
                        {k: v for k, v in kwargs.items() if k in constexpr_names},
                        {k: v for k, v in kwargs.items() if k not in constexpr_names and type(v) is int},
                        str(tensors[0].dtype).replace("torch.", "") if tensors else "", case=session.case)
        session.launches.append(launch)
        t0 = time.perf_counter()
        try:
            k, logs = compile_once(fn, args, grid, kwargs)
            if not logs and session.stored_log(k.hash) is None:
                # in the persistent cache without its log (a session cut short): compile it again
                fn.device_caches.pop(device_id, None)
                with knobs.compilation.scope():
                    knobs.compilation.always_compile = True
                    k, logs = compile_once(fn, args, grid, kwargs)
        except Exception as e:  # recorded, so that a caller's fallback cannot hide it
            launch.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            raise
        launch.compiled = k
        launch.seconds = time.perf_counter() - t0
        if logs and k.hash not in session._logs:
            session.remember_log(k.hash, logs[-1])
        session._compiled(launch)
        try:
            launch.grid = tuple(grid(dict(kwargs)) if callable(grid) else grid)
        except Exception:  # a grid function that needs the bound arguments
            launch.grid = None
        return k

    def make_cubin(self, src, metadata, opt, capability):
        # Triton runs ptxas -v and prints its log only when asked: ask, and keep the print
        with knobs.nvidia.scope():
            knobs.nvidia.dump_ptxas_log = True
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                cubin = orig_cubin(self, src, metadata, opt, capability)
        if session._capture is not None:
            session._capture.append(out.getvalue())
        return cubin

    try:
        with knobs.cache.scope():
            knobs.cache.dir = str(cache_dir)
            drivers.set_active(_fake_driver(sm, device_id))
            JITFunction.run, CUDABackend.make_cubin = run, make_cubin
            try:
                yield session
                session.reports()  # while the cubins are at hand
            finally:
                JITFunction.run, CUDABackend.make_cubin = orig_run, orig_cubin
                drivers._active = orig_active
                for proc in session._disasm.values():
                    proc.kill()
                    proc.communicate()
                for fn in functions:
                    fn.device_caches.pop(device_id, None)
    finally:
        tmp.cleanup()


# --------------------------------------------------------------------------- problems of the contracts
@contextlib.contextmanager
def overridden(module, values: Optional[dict]):
    """Set a backend's tuning constants (``BATCH_BLOCK``, ``TILE_BUDGET``...) for the block
    (dict keys given as strings are turned back into ints: JSON cases)."""
    old = {}
    try:
        for name, value in (values or {}).items():
            if not hasattr(module, name):
                raise AttributeError(f"{module.__name__} has no {name}")
            old[name] = getattr(module, name)
            if isinstance(value, dict):
                value = {int(k): v for k, v in value.items()}
            setattr(module, name, value)
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def elm_case(dtype="float32", two=True, act="relu2", hp=True, out="relu", rec=True, o=1, steps=6, n=5, d=3, m=2,
             h=5, bsz=3, n_rec=9, seed=0, module=None, backend="elm_triton", rows=0):
    """One forward and backward of the ELM kernels (``backend``: ``elm_triton``, or ``elm_triton_grid``,
    whose ``module`` overrides may set ``PERSISTENT``) on a random problem; ``rows``: that many input
    channels read as Rows through extra synapses (``elm_triton_grid``)."""
    from elm_neuro.networks.engines import elm_contract as C
    from elm_neuro.networks.engines.inputs import Drive, Rows

    X = importlib.import_module(f"{ENGINES}.{backend}")

    dt = _DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dt)

    h1 = h if two else m
    if rec or rows:
        src = torch.randint(0 if rec else n, n + rows if rows else n, (n_rec,), generator=g)
        tgt = torch.randint(0, n * d, (n_rec,), generator=g)
        tgt[: min(3, n_rec)] = 0  # several synapses on one branch
    else:
        src = tgt = torch.zeros(0, dtype=torch.long)
    recur, order = C.make_recurrent(src, tgt, d, n)
    mask = torch.ones(n, bsz, dtype=dt)
    spec = C.Spec(C.MLP_ACTS[act], C.OUT_ACTS[out], bool(two), bool(hp), 0.6)
    w = C.Weights(r(src.numel())[order], r(n, h1, d + m), r(n, h1), r(n, m, h) if two else None,
                  r(n, m) if two else None, r(n, o, m), r(n, o), torch.rand(n, m, generator=g, dtype=dt),
                  torch.rand(n, m, generator=g, dtype=dt))
    s = C.State(r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, o, bsz))
    grads = C.OutGrads(r(steps, n, o, bsz), r(n, m, bsz), r(n, o, bsz) if hp else None, r(n, bsz))
    inp = Rows(r(steps, rows, bsz), torch.ones(rows, bsz, dtype=dt)) if rows else Drive(r(steps, n, d, bsz))
    with overridden(X, module):
        saved = X.forward(inp, recur, mask, w, s, spec)
        X.backward(saved, inp, recur, mask, w, grads, spec)


def lif_case(dtype="float32", adaptive=False, reset=0, detach=True, refractory=0, has_gain=False, surrogate=0,
             recurrent=True, steps=6, n=5, bsz=3, seed=0, module=None):
    """One forward and backward of the LIF / adLIF kernels (``lif_triton``) on a random problem."""
    from elm_neuro.networks.engines import lif_contract as C
    from elm_neuro.networks.engines import lif_triton as X

    dt = _DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dt)

    spec = C.Spec(bool(adaptive), int(reset), bool(detach), int(refractory), bool(has_gain), int(surrogate), 0.5,
                  0.7, 4.0, 1.3, bool(recurrent))
    w = C.Weights(r(n, n), r(n), r(n) if has_gain else None, r(n) if adaptive else None, r(n) if adaptive else None,
                  r(n) if adaptive else None)
    s = C.State(r(bsz, n), (r(bsz, n) > 0).to(dt), r(bsz, n) if adaptive else None,
                torch.ones(bsz, n, dtype=dt) if refractory else None)
    grads = C.OutGrads(r(bsz, steps, n), r(bsz, n), r(bsz, n) if adaptive else None)
    mask = torch.ones(bsz, n, dtype=dt)
    with overridden(X, module):
        saved = X.forward(r(bsz, steps, n), mask, w, s, spec)
        X.backward(saved, mask, w, grads, spec)


def scan_case(dtype="float32", gain=1.0, kappa=0.7, steps=6, c=5, bsz=3, seed=0, module=None):
    """The leaky filter's scan kernels (``lif_triton.scan_forward`` / ``scan_backward``)."""
    from elm_neuro.networks.engines import lif_triton as X

    dt = _DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(bsz, steps, c, generator=g, dtype=dt)
    with overridden(X, module):
        X.scan_forward(d, torch.zeros(bsz, c, dtype=dt), kappa, gain)
        X.scan_backward(torch.randn_like(d), kappa, gain)


CASE_KINDS = {"elm": elm_case, "lif": lif_case, "scan": scan_case}


def case_name(case: dict) -> str:
    return case.get("name") or ",".join(f"{k}={v}" for k, v in case.items())


def run_case(case: dict) -> None:
    """Launch the kernels of one case: ``{"engine": "elm" | "lif" | "scan", "name": ..., **options}``
    with the options of :func:`elm_case`, :func:`lif_case` or :func:`scan_case`."""
    opts = {k: v for k, v in case.items() if k not in ("engine", "name")}
    CASE_KINDS[case["engine"]](**opts)


# --------------------------------------------------------------------------- whole networks
@contextlib.contextmanager
def triton_dispatch():
    """Point every fused engine's dispatch at its CUDA (Triton) backend for CPU tensors: the
    dispatch modules' ``pick`` answers as for a CUDA device (``backends.pick`` itself is kept), and
    the whole-GPU ELM backend launches its persistent kernels, as on CUDA."""
    from elm_neuro.networks.engines import backends
    from elm_neuro.networks.engines import elm_triton_grid
    real = backends.pick
    persistent = elm_triton_grid.PERSISTENT
    elm_triton_grid.PERSISTENT = True if persistent is None else persistent

    def pick_cuda(device, *args, **kwargs):
        return real(torch.device("cuda"), *args, **kwargs)

    patched = []
    try:
        for name in ("elm_sequence", "lif_sequence", "leaky_scan", "projection"):
            try:
                mod = importlib.import_module(f"{ENGINES}.{name}")
            except ImportError:
                continue
            if getattr(mod, "pick", None) is real:
                mod.pick = pick_cuda
                patched.append(mod)
        yield
    finally:
        elm_triton_grid.PERSISTENT = persistent
        for mod in patched:
            mod.pick = real


def preset_name(preset: str, batch: int, **over) -> str:
    extra = "".join(f" {k.replace('_', '-')} {v}" for k, v in over.items() if v is not None)
    return f"{preset}{extra} B {batch}"


def compile_model(preset: str, batch: int = 8, steps: int = 4, **overrides) -> None:
    """One training step's forward and backward of a preset's network (float32, train mode) with
    every fused engine on its Triton backend (call inside :func:`compile_only`)."""
    from elm_neuro.networks import registry
    over = {k: v for k, v in overrides.items() if v is not None}
    model = registry.build_model(registry.preset_config(preset, **over)).train()
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    if getattr(cfg, "embedding", "none") == "one_hot":
        x = torch.randint(0, cfg.n_in, (batch, steps), generator=g)
    else:
        x = (torch.rand(batch, steps, cfg.n_in, generator=g) < 0.05).float()
    with triton_dispatch():
        out = model(x)
        loss = out.logits.float().sum() + sum(v.float() for v in out.regularizers.values())
        loss.backward()


# --------------------------------------------------------------------------- running a set
def compile_all(jobs: list, sms: list, keep: Optional[Path] = None, sass: bool = True,
                cache: Optional[Path] = None) -> tuple[list, list]:
    """Compile ``jobs`` (case dicts, or ``{"preset": name, "batch": B, ...}``) for each sm:
    ``(case results, kernel reports)``. A job's compile error is recorded, not raised. A kernel
    that several jobs launch with the same specialization compiles once per sm."""
    results, reports = [], []
    for sm in sms:
        with compile_only(sm, keep, sass, cache) as session:
            for job in jobs:
                job = dict(job)
                name = job.pop("label", None) or (preset_name(**job) if "preset" in job else case_name(job))
                session.case, first, t0 = name, len(session.launches), time.perf_counter()
                error = None
                try:
                    compile_model(**job) if "preset" in job else run_case(job)
                except Exception as e:
                    error = f"{type(e).__name__}: {e}"
                errors = session.errors(first)
                if errors:  # also those a fallback caught
                    error = "; ".join(errors)
                launched, grids = [], []
                for x in session.launches[first:]:
                    if x.compiled is not None and x.compiled.hash not in launched:
                        launched.append(x.compiled.hash)
                        grids.append(x.grid)
                results.append(CaseResult(name, sm, error, launched, time.perf_counter() - t0, grids))
        reports += session.reports()
    return results, reports


def compile_in_subprocess(jobs: list, sms: list, timeout: float = 600, keep: Optional[Path] = None,
                          sass: bool = True, cache: Optional[Path] = None,
                          workers: Optional[int] = None) -> tuple[list, list, str]:
    """:func:`compile_all` in fresh Python processes without ``TRITON_INTERPRET`` (usable from a
    process that runs Triton's interpreter), one per sm, up to ``workers`` at a time (default:
    the CPU count): ``(case results, kernel reports, their stderr)``, in the order of ``sms``."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    workers = max(1, min(len(sms), workers or os.cpu_count() or 1))
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="triton-compile-jobs-") as tmp:
        jobs_file = Path(tmp) / "jobs.json"
        jobs_file.write_text(json.dumps(jobs))
        todo, running, done = list(sms), {}, {}
        try:
            while todo or running:
                while todo and len(running) < workers:
                    sm = todo.pop(0)
                    out_file, err_file = Path(tmp) / f"sm{sm}.json", Path(tmp) / f"sm{sm}.err"
                    cmd = [sys.executable, "-m", __name__, "--cases", str(jobs_file), "--json", str(out_file),
                           "--quiet", "--sm", str(sm)]
                    cmd += (["--keep", str(keep)] if keep else []) + (["--cache", str(cache)] if cache else [])
                    cmd += [] if sass else ["--no-sass"]
                    with open(err_file, "w") as err:
                        running[sm] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
                for sm, proc in list(running.items()):
                    if proc.poll() is not None:
                        done[sm] = proc.returncode
                        del running[sm]
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(f"{__name__} for sm {sorted(running)}", timeout)
                time.sleep(0.05)
        finally:
            for proc in running.values():
                proc.kill()
                proc.wait()
        results, reports, stderr = [], [], ""
        for sm in sms:
            out_file, err = Path(tmp) / f"sm{sm}.json", (Path(tmp) / f"sm{sm}.err").read_text()
            stderr += err
            if done[sm] not in (0, 1) or not out_file.exists():
                raise RuntimeError(f"compile subprocess for sm_{sm} failed (exit {done[sm]}):\n{err[-4000:]}")
            res, rep = load_json(out_file.read_text())
            results += res
            reports += rep
        return results, reports, stderr


def to_json(results: list, reports: list) -> str:
    return json.dumps({"cases": [asdict(r) for r in results], "kernels": [asdict(r) for r in reports]}, indent=1)


def load_json(text: str) -> tuple[list, list]:
    d = json.loads(text)
    reports = []
    for r in d["kernels"]:
        r["grid"] = tuple(r["grid"]) if r["grid"] is not None else None
        reports.append(KernelReport(**r))
    return [CaseResult(**r) for r in d["cases"]], reports


# --------------------------------------------------------------------------- the table
def _consts(rep: KernelReport) -> str:
    parts = []
    for k, v in rep.constexprs.items():
        if isinstance(v, bool):
            if v:
                parts.append(k)
        else:
            parts.append(f"{k} {v}")
    return " ".join(parts)


def format_table(results: list, reports: list) -> str:
    """A markdown table: per case and sm, each kernel it launched, with registers, spills (bytes
    stored / loaded), shared memory, SASS instructions and their mix."""
    by_hash = {(r.sm, r.hash): r for r in reports}
    head = ("| case | sm | kernel | grid | constexprs | regs | spills st/ld B | smem B | SASS instr | "
            + " ".join(MIX_COLUMNS) + " |")
    lines = [head, "|" + "---|" * 10]
    for res in results:
        if res.error:
            lines.append(f"| {res.case} | {res.sm} | **error** | | {res.error} | | | | | |")
        for i, h in enumerate(res.kernels):
            r = by_hash[(res.sm, h)]
            g = res.grids[i] if i < len(res.grids) else r.grid
            grid = "x".join(map(str, g)) if g else "?"
            mix = " ".join(str(r.mix.get(op, 0)) for op in MIX_COLUMNS)
            lines.append(f"| {res.case} | {r.sm} | `{r.kernel}` | {grid} | {_consts(r)} | {r.registers} | "
                         f"{r.spill_stores}/{r.spill_loads} | {r.shared_bytes}{'' if r.shared_fits else ' (over the limit)'} | "
                         f"{'-' if r.instructions is None else r.instructions} | {mix} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="a network preset (elm_neuro.networks.presets), e.g. shd-adding, enwik8")
    src.add_argument("--cases", help="a JSON file: a list of case dicts (run_case) or preset jobs")
    ap.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 8)")
    ap.add_argument("--steps", type=int, default=4, help="time steps of the traced sequence (default 4)")
    ap.add_argument("--d-m", type=int)
    ap.add_argument("--n", type=int)
    ap.add_argument("--sm", type=int, action="append", help="compute capability, e.g. 80, 90 (repeatable; default 90)")
    ap.add_argument("--json", help="write the case results and kernel reports here")
    ap.add_argument("--keep", help="write each kernel's PTX, TTGIR, SASS and ptxas log into this folder")
    ap.add_argument("--no-sass", action="store_true", help="no disassembly (no instruction counts; faster)")
    ap.add_argument("--cache", help="a persistent Triton cache folder: kernels compiled there before are not "
                                    "compiled again (default: a temporary one)")
    ap.add_argument("--quiet", action="store_true", help="no table on stdout")
    a = ap.parse_args(argv)
    # Triton 3.9 warns that its FP-fusion default will change; the kernels compile with its default
    warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION is unset")
    problem = toolchain_problem()
    if problem:
        print(f"cannot compile: {problem}", file=sys.stderr)
        return 2
    if a.cases:
        jobs = json.loads(Path(a.cases).read_text())
    else:
        jobs = [dict(preset=a.preset, batch=b, steps=a.steps, d_m=a.d_m, n=a.n) for b in (a.batch or [8])]
    sms = a.sm or [90]
    import triton
    t0 = time.perf_counter()
    results, reports = compile_all(jobs, sms, Path(a.keep) if a.keep else None, sass=not a.no_sass,
                                   cache=Path(a.cache) if a.cache else None)
    took = time.perf_counter() - t0
    if a.json:
        Path(a.json).write_text(to_json(results, reports))
    if not a.quiet:
        print(f"triton {triton.__version__}, torch {torch.__version__}: {len(reports)} kernels for sm "
              f"{', '.join(map(str, sms))} in {took:.1f} s\n")
        print(format_table(results, reports))
    print(f"compiled {len(reports)} kernels ({len(results)} jobs x sm) in {took:.1f} s", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
