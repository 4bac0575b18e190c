"""The fused engines' Triton kernels compile for NVIDIA GPUs (sm_80, sm_90) without a GPU, and
none spills registers: every kernel the ELM and LIF engines launch, for every option set that the
interpreter tests (tests/test_engine_elm_triton.py, tests/test_engine_lif_triton.py) run, in
float32 and float64, with the tilings those tests force (several neuron blocks, chunked synapse
tables, batch blocks, the streamed LIF map), plus the leaky filter's scan.

How: :mod:`elm_neuro.networks.engines.triton_compile` (a stand-in driver makes Triton compile for
a given compute capability, every launch is a compile-only warm-up, ptxas's log gives registers
and spills). Triton picks compiled or interpreted kernels when they are decorated, and this
suite's other modules run the interpreter (tests/conftest.py sets ``TRITON_INTERPRET=1`` without
CUDA), so everything compiles in one fresh Python process without that variable, once per test
session, one process per compute capability (in parallel). The kernels cache in a
``TRITON_CACHE_DIR`` under pytest's cache (``.pytest_cache``; ``--cache-clear`` empties it), with
each kernel's ptxas log beside it: a kernel unchanged since the last run (Triton's cache key: its
source, constexprs, target, Triton and ptxas versions) is not compiled again. Cold, the ~190
kernels take about a minute and a half of two cores; warm, a few seconds. Skips (with the reason)
without triton or its bundled ptxas / cuobjdump.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from elm_neuro.networks.engines import triton_compile as TC

SMS = (80, 90)

# --------------------------------------------------------------------------- the option sets
# the interpreter tests' sizes (tests/test_engine_elm_triton.py: _problem; lif_engine_checks.kernel_problem)
_ELM_SIZES = dict(steps=6, n=5, d=3, m=2, h=5, bsz=3, n_rec=9)
_MLPS = [(False, "relu2"), (True, "relu2"), (True, "relu"), (True, "silu")]  # test_engine_elm_triton.MLPS


def _elm(dtype, two, act, hp, out, rec, o, layout="", module=None, backend=None, rows=0):
    name = (f"elm {layout + ' ' if layout else ''}{'rec' if rec else 'norec'} L{int(two)}-{act} {out}"
            f"{' hp' if hp else ''} o{o} {dtype}")
    case = dict(engine="elm", name=name, dtype=dtype, two=two, act=act, hp=hp, out=out, rec=rec, o=o, **_ELM_SIZES)
    if module:
        case["module"] = module
    if backend:
        case.update(backend=backend, rows=rows)
    return case


ELM_CASES = (
    # test_kernels_equal_reference_float64_recurrent: every MLP x output activation x high-pass
    [_elm("float64", two, act, hp, out, True, 1) for two, act in _MLPS for out in ("relu", "identity")
     for hp in (True, False)]
    # ..._without_recurrence: d_o 1 and 3 (the grid spreads the neuron blocks)
    + [_elm("float64", two, act, hp, out, False, o) for o in (1, 3)
       for two, act, hp, out in ((False, "relu2", True, "relu"), (True, "silu", False, "identity"),
                                 (True, "relu2", True, "identity"))]
    # ..._float32
    + [_elm("float32", two, act, hp, out, rec, 1)
       for two, act, hp, out, rec in ((True, "relu2", True, "relu", True), (False, "relu2", False, "identity", True),
                                      (True, "silu", True, "identity", False), (True, "relu", False, "relu", True))]
    # ..._other_layouts: one-neuron blocks with chunked synapse tables; batch blocks of two samples
    + [_elm("float64", two, act, hp, out, rec, o, layout, module)
       for layout, module in (("BN1", dict(MAX_SYN_BLOCK=2, TILE_BUDGET={4: 1, 8: 1})),
                              ("BB2", dict(MAX_SYN_BLOCK=2, BATCH_BLOCK=2, TILE_BUDGET={4: 256, 8: 256})))
       for two, act, hp, out, rec, o in ((True, "relu2", True, "relu", True, 1),
                                         (False, "silu", False, "identity", False, 3))]
    # the whole-GPU backend (tests/test_engine_elm_triton_grid.py), persistent and stepped, drive and rows
    + [_elm(dtype, two, act, hp, out, rec, o, f"grid-{form}{'-rows' if rows else ''}",
            dict(PERSISTENT=form == "persistent"), "elm_triton_grid", rows)
       for form in ("persistent", "stepped")
       for dtype, two, act, hp, out, rec, o, rows in (("float32", True, "relu2", True, "relu", True, 1, 0),
                                                     ("float64", True, "silu", True, "identity", True, 1, 4),
                                                     ("float32", True, "relu2", False, "identity", False, 3, 0),
                                                     ("float32", False, "relu2", True, "relu", False, 1, 4),
                                                     ("float64", False, "relu2", False, "identity", False, 3, 0))]
)

_LIF_SPECS = {  # tests/test_engine_lif_triton.py SPECS
    "lif": {},
    "adlif-gain-atan": dict(adaptive=True, has_gain=True, surrogate=1),
    "adlif-zero-refr-attached-superspike": dict(adaptive=True, reset=1, detach=False, refractory=2, surrogate=2),
    "lif-zero-refr-gain-norec": dict(reset=1, refractory=1, has_gain=True, recurrent=False),
    "lif-attached": dict(detach=False),
}


def _lif(name, dtype, spec, module=None, **sizes):
    case = dict(engine="lif", name=f"lif {name} {dtype}", dtype=dtype, **_LIF_SPECS[spec],
                **dict(dict(steps=6, n=5, bsz=3), **sizes))
    if module:
        case["module"] = module
    return case


LIF_CASES = (
    [_lif(s, "float64", s) for s in _LIF_SPECS]
    + [_lif(s, "float32", s) for s in ("adlif-gain-atan", "adlif-zero-refr-attached-superspike")]
    # the map streamed in tiles (one block; two blocks of a 20-neuron layer); batch blocks
    + [_lif(f"{layout} {s}", "float64", s, module=module, n=n, steps=4)
       for layout, module, n in (("streamed", dict(RESIDENT_BUDGET={4: 0, 8: 0}), 5),
                                 ("streamed-blocks", dict(RESIDENT_BUDGET={4: 0, 8: 0}, TILE_BUDGET={4: 32, 8: 32}), 20),
                                 ("BB2", dict(RESIDENT_BUDGET={4: 0, 8: 0}, BATCH_BLOCK=2), 5))
       for s in ("adlif-zero-refr-attached-superspike", "lif-attached")]
)
SCAN_CASES = [dict(engine="scan", name=f"scan gain {g} {dt}", dtype=dt, gain=g, steps=9, c=5, bsz=2)
              for g in (1.0, 0.25) for dt in ("float64", "float32")]
CASES = ELM_CASES + LIF_CASES + SCAN_CASES

# what each case must launch (forward and backward kernel)
KERNELS = {"elm": {"_elm_fwd_kernel", "_elm_bwd_kernel"}, "lif": {"_lif_fwd_kernel", "_lif_bwd_kernel"},
           "scan": {"_scan_fwd_kernel", "_scan_bwd_kernel"},
           # the whole-GPU backend: its persistent kernels or its per-step ones (and, by case, the gathers
           # outside the loops: _grid_kernels)
           "elm-grid-persistent": {"_fwd_persistent", "_bwd_persistent"},
           "elm-grid-stepped": {"_fwd_stepped", "_bwd_stepped"}}


def _grid_kernels(case: dict, loops: set) -> set:
    """What the whole-GPU backend launches for a case: its loops (``loops``: persistent or stepped), or
    for a readout without a hidden MLP layer its own pair of kernels; and the gathers outside the loops:
    with synapses the weights' gradient; with synapses from neurons the gradient into the initial
    outputs; with input rows their drive before the loop and their gradient after it."""
    rec, rows = case["rec"], case.get("rows", 0)
    if not rec and not case["two"]:
        loops = {"_readout_fwd_kernel", "_readout_bwd_kernel"}
    return (loops | ({"_weight_grad_kernel"} if rec or rows else set())
            | ({"_source_grad_kernel"} if rec or rows else set()) | ({"_input_drive_kernel"} if rows else set()))


def _cache(config) -> "Path | None":
    """The persistent Triton cache of these tests: under pytest's cache (``--cache-clear`` empties it)."""
    return config.cache.mkdir("triton-compile") if getattr(config, "cache", None) is not None else None


@pytest.fixture(scope="module")
def compiled(request):
    problem = TC.toolchain_problem()
    if problem:
        pytest.skip(f"cannot compile Triton kernels for NVIDIA here: {problem}")
    t0 = time.perf_counter()
    results, reports, stderr = TC.compile_in_subprocess(CASES, list(SMS), sass=False, cache=_cache(request.config))
    return results, reports, time.perf_counter() - t0


def test_the_cases_cover_the_interpreter_tests():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))
    assert len(ELM_CASES) == 16 + 6 + 4 + 4 + 10 and len(LIF_CASES) == 5 + 2 + 6 and len(SCAN_CASES) == 4
    assert {c["dtype"] for c in CASES} == {"float32", "float64"}


def test_every_kernel_compiles_for_sm80_and_sm90(compiled):
    results, reports, took = compiled
    by_key = {(r.sm, r.hash): r for r in reports}
    assert {(r.case, r.sm) for r in results} == {(c["name"], sm) for c in CASES for sm in SMS}
    errors = [f"sm_{r.sm} {r.case}: {r.error}" for r in results if r.error]
    assert not errors, "compile errors:\n" + "\n".join(errors)
    engines = {c["name"]: c["engine"] + ("-grid-" + ("persistent" if c["module"]["PERSISTENT"] else "stepped")
                                         if c.get("backend") == "elm_triton_grid" else "") for c in CASES}
    by_name = {c["name"]: c for c in CASES}
    for r in results:
        launched = {by_key[(r.sm, h)].kernel for h in r.kernels}
        want = KERNELS[engines[r.case]]
        if by_name[r.case].get("backend") == "elm_triton_grid":
            want = _grid_kernels(by_name[r.case], want)
        assert launched == want, (r.case, r.sm, launched)
    for rep in reports:
        assert rep.sm in SMS and 0 < rep.registers <= 255 and rep.shared_fits, rep


#: Spill bytes (stores + loads, and stack) a kernel may have, by Triton version: none from Triton 3.9
#: on. Triton 3.8 (torch 2.14's; Python 3.12, seen here) caps three of these kernels at 96 / 128
#: registers for sm_90 and spills 8-12 B there (the ELM backward with SiLU in float64, the forward
#: with relu2 in float32); Triton 3.4-3.7 have not been compiled here, and are held to that too.
SPILL_BUDGET = {(3, 9): 0, (3, 0): 32}
#: float64 kernels (the reference precision, not what the presets train in) may spill this much: the
#: whole-GPU backward with SiLU in float64 keeps one 4-byte value on the stack per step with Triton 3.9
#: (one store per step, one load per item; ptxas trades it for registers)
FLOAT64_SPILL_BUDGET = 8


def _spill_budget() -> int:
    import triton

    version = tuple(int(v) for v in triton.__version__.split(".")[:2])
    return next(b for v, b in sorted(SPILL_BUDGET.items(), reverse=True) if version >= v)


def test_no_kernel_spills_registers(compiled):
    results, reports, took = compiled
    budget = _spill_budget()
    def allowed(r):
        return max(budget, FLOAT64_SPILL_BUDGET) if all(c.endswith("float64") for c in r.cases) else budget
    spills = [f"sm_{r.sm} {r.kernel} ({', '.join(r.cases)}): {r.registers} registers, stack {r.stack_bytes} B, "
              f"spill stores {r.spill_stores} B, loads {r.spill_loads} B" for r in reports
              if r.spills > allowed(r) or r.stack_bytes > allowed(r)]
    assert not spills, f"over {budget} B:\n" + "\n".join(spills)


def test_the_options_reach_the_kernels(compiled):
    """The cases compile distinct specializations: each option shows in the kernels' constexprs."""
    results, reports, took = compiled
    for sm in SMS:
        elm = [r for r in reports if r.sm == sm and r.kernel == "_elm_fwd_kernel"]
        assert {(r.constexprs["MLP_ACT"], r.constexprs["OUT_ACT"], r.constexprs["TWO"], r.constexprs["HP"],
                 r.constexprs["HAS_REC"]) for r in elm} >= {(a, o, t, h, True) for a, t in ((0, False), (0, True),
                                                                                            (1, True), (2, True))
                                                            for o in (0, 1) for h in (True, False)}
        assert {r.dtype for r in elm} == {"float32", "float64"}
        grid = [r for r in reports if r.sm == sm and r.kernel in ("_fwd_persistent", "_fwd_stepped")]
        # (drive, synapses from neurons, the drives' share of the first layer precomputed): a Drive with
        # synapses, rows (their input drive) with synapses, a Drive alone with a hidden MLP layer; the
        # readouts without one run their own kernels (relu or identity output, with and without high-pass)
        assert {(r.kernel, r.constexprs["HAS_DRIVE"], r.constexprs["WRITE_U"], r.constexprs["PRE"]) for r in grid} == {
            (k, True, rec, not rec) for k in ("_fwd_persistent", "_fwd_stepped") for rec in (True, False)}
        readout = [r for r in reports if r.sm == sm and r.kernel == "_readout_fwd_kernel"]
        assert {(r.constexprs["OUT_ACT"], r.constexprs["HP"], r.constexprs["O"]) for r in readout} == {
            (1, True, 1), (0, False, 3)}
        assert {r.constexprs["BN"] for r in elm} >= {1} and {r.constexprs["BB"] for r in elm} == {1, 2}
        assert {r.constexprs["BO"] for r in elm} == {1, 4}
        lif = [r for r in reports if r.sm == sm and r.kernel == "_lif_bwd_kernel"]
        assert {r.constexprs["SUR"] for r in lif} == {0, 1, 2}
        assert {(r.constexprs["REC"], r.constexprs["RESIDENT"]) for r in lif} == {(True, True), (True, False),
                                                                                   (False, False)}
        assert {r.constexprs["BB"] for r in lif} == {1, 2}
        scan = [r for r in reports if r.sm == sm and r.kernel == "_scan_fwd_kernel"]
        assert {(r.constexprs["UNIT"], r.dtype) for r in scan} == {(u, d) for u in (True, False)
                                                                   for d in ("float32", "float64")}


def test_the_toolchain_check_names_what_is_missing(monkeypatch):
    """Where a bundled tool is missing the test skips with that tool's name (checked here by
    hiding cuobjdump, then triton itself)."""
    triton = pytest.importorskip("triton")
    if not hasattr(triton, "knobs"):  # triton < 3.4: the check names that instead
        assert "has no triton.knobs" in TC.toolchain_problem()
        return
    from triton import knobs

    found = knobs.NvidiaTool.from_path

    def without_cuobjdump(path):
        return None if Path(path).name.startswith("cuobjdump") else found(path)

    monkeypatch.setattr(knobs.NvidiaTool, "from_path", staticmethod(without_cuobjdump))
    assert "cuobjdump" in TC.toolchain_problem()
    monkeypatch.setitem(sys.modules, "triton", None)
    assert TC.toolchain_problem().startswith("triton is not installed")


def test_compile_only_restores_what_it_patches(request):
    """After a compile-only block the process is as before: Triton's driver, launch, ptxas step and
    cache folder, and the kernels' per-device caches (in a process without the interpreter)."""
    problem = TC.toolchain_problem()
    if problem:
        pytest.skip(f"cannot compile Triton kernels for NVIDIA here: {problem}")
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from triton import knobs
        from triton.backends.nvidia.compiler import CUDABackend
        from triton.runtime import driver
        from triton.runtime.jit import JITFunction
        from elm_neuro.networks.engines import lif_triton, triton_compile as TC
        before = (JITFunction.run, CUDABackend.make_cubin, driver._active, knobs.cache.dir)
        with TC.compile_only(90, sass=False, cache=Path(sys.argv[1])) as s:
            TC.run_case(dict(engine="scan", dtype="float32", gain=1.0))
            assert knobs.cache.dir == sys.argv[1] and driver.active.get_current_target().arch == 90
        assert (JITFunction.run, CUDABackend.make_cubin, driver._active, knobs.cache.dir) == before
        assert not lif_triton._scan_fwd_kernel.device_caches and not lif_triton._scan_bwd_kernel.device_caches
        assert {r.kernel for r in s.reports()} == {"_scan_fwd_kernel", "_scan_bwd_kernel"}
        print("restored")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(Path(TC.__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cache = _cache(request.config) or Path(request.getfixturevalue("tmp_path"))
    done = subprocess.run([sys.executable, "-c", script, str(cache)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "restored" in done.stdout, done.stderr[-3000:]


# --------------------------------------------------------------------------- instructions per time step
def _sass(lines: list) -> str:
    """A cuobjdump-like listing of ``lines`` (instruction texts), 16 bytes apart from 0x0000."""
    return "\n".join(f"        /*{16 * i:04x}*/                   {text} ;    /* 0x000 */" for i, text in enumerate(lines))


def test_step_instructions_weighs_each_loop_by_its_trips():
    """A hand-made persistent kernel: 1 setup, a time loop holding 2 + an item loop (1 + a 3-line inner
    loop + 1) + a 2-line spin loop + its back edge; trips 5 of the inner loop, 2 items per program."""
    lines = ["MOV R0, RZ",  # 0x00 setup: outside the time loop
             "IADD3 R1, R1, 0x1, RZ", "BAR.SYNC.DEFER_BLOCKING 0x0",  # 0x10, 0x20: time loop head (2)
             "LDG.E R2, desc[UR4][R4.64]",  # 0x30 item loop head
             "FFMA R3, R2, R2, R3", "BAR.SYNC.DEFER_BLOCKING 0x0", "@P0 BRA 0x40",  # 0x40-0x60 inner loop (3)
             "@P1 BRA 0x30",  # 0x70 item loop back edge
             "LDG.E.STRONG.GPU R6, desc[UR4][R8.64]", "@!P2 BRA 0x80",  # 0x80-0x90 spin loop (2)
             "BRA 0x10",  # 0xa0 time loop back edge
             "EXIT"]
    got = TC.step_instructions(_sass(lines), [5], items_per_program=2)
    # time loop: 2 + 2 x (1 + 5 x 3 + 1) + 2 + 1 = 39; BAR.SYNC: 1 + 2 x 5
    assert got == {"instructions": 2 + 2 * (1 + 5 * 3 + 1) + 2 + 1, "barriers": 1 + 2 * 5, "loops": 4}
    with pytest.raises(ValueError, match="expected 2 inner loops"):
        TC.step_instructions(_sass(lines), [5, 7])


def test_step_instructions_of_a_kernel_whose_items_hold_the_time_loop():
    """Items independent through time (no grid barrier): the outermost loop takes the items, the time
    loop inside it runs each item's sequence; a step costs the time loop's body per item."""
    lines = ["MOV R0, RZ",  # 0x00 setup
             "IMAD R1, R0, 0x4, RZ",  # 0x10 item loop head: once per item, not per step
             "IADD3 R2, R2, 0x1, RZ",  # 0x20 time loop head
             "FFMA R3, R2, R2, R3", "@P0 BRA 0x30",  # 0x30-0x40 inner loop (2)
             "STG.E desc[UR4][R4.64], R3",  # 0x50
             "@P1 BRA 0x20",  # 0x60 time loop back edge
             "@P2 BRA 0x10",  # 0x70 item loop back edge
             "EXIT"]
    got = TC.step_instructions(_sass(lines), [3], items_per_program=2, time_outer=False)
    assert got == {"instructions": 2 * (1 + 3 * 2 + 1 + 1), "barriers": 0, "loops": 3}


def test_step_instructions_counts_a_loop_unrolled_at_run_time_as_main_and_remainder():
    """A loop of 10 trips unrolled 4 times: the main loop (4 bodies of 1 line + its branch) runs 10 // 4
    = 2 times, the remainder (1 body + its branch) 10 % 4 = 2 times."""
    lines = ["S2R R0, SR_TID.X",
             "NOP", "IADD3 R1, R1, 0x1, RZ",  # 0x10 (NOP dropped), 0x20: time loop head
             "LDG.E R2, desc[UR4][R4.64]",  # 0x30 item loop head
             "FFMA R3, R2, R2, R3", "FFMA R3, R2, R2, R3", "FFMA R3, R2, R2, R3", "FFMA R3, R2, R2, R3",
             "@P0 BRA 0x40",  # 0x40-0x80 main loop: 5 lines
             "FFMA R3, R2, R2, R3", "@P3 BRA 0x90",  # 0x90-0xa0 remainder: 2 lines
             "@P1 BRA 0x30",  # 0xb0
             "BRA 0x10", "EXIT"]
    got = TC.step_instructions(_sass(lines), [10])
    assert got["instructions"] == 1 + (1 + 2 * 5 + 2 * 2 + 1) + 1
