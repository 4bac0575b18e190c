"""What the whole-GPU ELM kernels (elm_neuro.networks.engines.elm_triton_grid) would take per training
batch on one H100, estimated without a GPU from their SASS (compile-only; issue 25 §4).

    python benchmarks/gpu_estimate.py            # SHD-Adding B 32 / 256 (T 1000), Enwik8 (d_m 30, N 440) B 8 / 64 (T 100)
    python benchmarks/gpu_estimate.py --json out.json --stacked 16

How: every kernel a training step launches is compiled for sm 90 by the package's compile-only tool
(elm_neuro.networks.engines.triton_compile, a stand-in driver: nothing runs), with the persistent
kernels chosen. From each persistent kernel's SASS, step_instructions counts the instructions one
warp issues per time step (the time loop's body; the loop over the branches D times, the gather
of outgoing synapses ceil(S_out / chunk) times, an ``if`` both ways: an upper bound) and the CTA
barriers among them (a kernel without a grid barrier runs each item's whole sequence in turn:
its time loop's body per item). Each work item is one warp; the persistent grid keeps at most 4
programs per SM, one warp per scheduler, so a step takes ``items per program x instructions / IPC``
cycles of one scheduler. Assumptions, all printed: 1.755 GHz; IPC per scheduler 1 (the issue
limit) and 0.4 (a single warp waiting on its own loads); a grid barrier 1 us per step of a
recurrent layer (an L2 atomic round trip and the last arrival's store seen); outside the loops,
the MLP weight gradients (GEMMs over T x B), the copies, the readout's dense drive (where it takes
one) and the readouts' first-layer products: bytes at 2.5 TB/s plus FLOPs at 50 TFLOP/s (float32
without tensor cores); the synapse gathers before and after the loops (the input rows' drive,
every synapse weight's gradient, the input rows' gradient above the first layer): each synapse's
row segment of B samples per step read from L2 at 5.5 TB/s, each ``[T, N D, B]`` array once at
2.5 TB/s. ``--stacked S``: the same for S models stacked
(elm_neuro.stack_models: S N neurons in one launch). benchmarks/gpu_check.sh measures it when a
GPU is lent.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLOCK_HZ = 1.755e9
SCHEDULERS = 132 * 4
PROGRAMS_PER_SM = 4
IPCS = (1.0, 0.4)
BARRIER_S = 1e-6
HBM_BPS = 2.5e12
L2_BPS = 5.5e12
FP32_FLOPS = 50e12
TARGETS_MS = {("shd-adding", 32): 10.0, ("shd-adding", 256): 40.0, ("enwik8", 8): 5.0}
CASES = (("shd-adding", 32, 1000), ("shd-adding", 256, 1000), ("enwik8", 8, 100), ("enwik8", 64, 100))
# the Enwik8 network of the targets (and of benchmarks/gpu_check.py's enwik8 section): d_m 30, N 440
PRESET_OVERRIDES = {"enwik8": dict(d_m=30, n=440)}


def kernel_step(rep, sass: str) -> dict:
    """Per-step figures of one persistent kernel (a KernelReport and its SASS)."""
    from elm_neuro.networks.engines.triton_compile import step_instructions
    c = rep.constexprs
    if rep.kernel.startswith("_readout"):  # one lane per (neuron, sample), blocks of LANES pairs, no barrier
        items = math.ceil(c["N"] * c["B"] / c["LANES"])
        per_program = math.ceil(items / min(items, SCHEDULERS // 4 * PROGRAMS_PER_SM))
        counted = step_instructions(sass, [], per_program, time_outer=False)
        return dict(kernel=rep.kernel, n=c["N"], d=c["D"], m=c["M"], samples=1, items=items,
                    programs=min(items, SCHEDULERS // 4 * PROGRAMS_PER_SM), registers=rep.registers,
                    spills=rep.spills, instructions=counted["instructions"], barriers=counted["barriers"],
                    grid_barrier=False)
    items = c["N"] * c["NSB"]
    programs = min(items, SCHEDULERS // 4 * PROGRAMS_PER_SM)
    per_program = math.ceil(items / programs)
    backward = rep.kernel.startswith("_bwd")
    # the loops over branches (D) and memory units (M) of the step, in the order of the source
    # (PRE: the branch drives' share of the first layer comes precomputed, no loop over branches)
    branches = [] if c.get("PRE") else [c["D"]]
    if backward:
        trips = ([math.ceil(c["S_OUT"] / c["BSO"])] if c.get("HAS_REC") else []) + [c["M"]] + branches + [c["M"]]
    else:
        trips = branches + [c["M"], c["M"]]
    synced = bool(c.get("HAS_REC") if backward else c.get("WRITE_U"))
    # without a grid barrier the kernel runs each item's whole sequence in turn (item loop outside)
    counted = step_instructions(sass, trips, per_program, time_outer=synced)
    return dict(kernel=rep.kernel, n=c["N"], d=c["D"], m=c["M"], samples=c["BB"], items=items, programs=programs,
                registers=rep.registers, spills=rep.spills, instructions=counted["instructions"],
                barriers=counted["barriers"], grid_barrier=synced)


def outside_seconds(cfg, batch: int, steps: int, dense_readout: bool = True) -> float:
    """The training step's work outside the persistent kernels (module docstring); the readout's
    dense drive only where it takes one (``dense_readout``; else its gathers, :func:`gather_seconds`)."""
    h, r = cfg.hidden, cfg.readout
    n, m, d = cfg.n, h.d_m, h.d_tree
    h1 = h.d_mlp or 2 * m
    tb = steps * batch
    flops = 2 * n * tb * h1 * (d + m) + 2 * n * tb * m * h1  # g_W1, g_W2 of the hidden layer
    flops += 2 * cfg.n_classes * tb * r.d_m * (r.d_tree + r.d_m)  # the readout's g_W1
    if dense_readout:  # readout drive: forward, input and weight gradients
        flops += 3 * 2 * tb * n * cfg.n_classes * r.d_tree
    flops += 2 * 2 * tb * cfg.n_classes * r.d_m * r.d_tree  # its first layer's drive share and g_beta (PRE)
    nbytes = 4 * tb * n * (2 * (d + m) + 4 * h1 + m)  # MLP input concatenation, GEMM operands
    nbytes += 4 * tb * cfg.n_classes * r.d_tree * (3 if dense_readout else 0)  # the readout's drive, its gradient
    nbytes += 4 * tb * cfg.n_classes * (2 * r.d_tree + 2 * r.d_m)  # read by, written by the PRE products
    return nbytes / HBM_BPS + flops / FP32_FLOPS


def gather_seconds(model, launched_nd: set, batch: int, steps: int) -> float:
    """The synapse gathers outside the time loops (elm_triton_grid): the input rows' drive before
    the forward loop (a layer that reads rows: an ``_input_drive_kernel`` launched for its ``N D``
    columns), every synapse weight's gradient after the backward loop, and the input rows'
    gradient of a layer above the first. Each gathered row segment from L2 at L2_BPS, each
    ``[T, N D, B]`` array written or read once at HBM_BPS."""
    seconds, first = 0.0, True
    for layer in model.modules():
        if not hasattr(layer, "connectome"):
            continue
        total = layer.connectome.numel()
        inputs = int((layer.connectome < layer.n_in).sum())
        nd = layer.n * layer.cfg.d_tree
        rows = nd in launched_nd
        gathered = (inputs if rows else 0) + (total if rows else total - inputs) + (inputs if rows and not first else 0)
        arrays = (1 if rows else 0) + (1 if gathered else 0)
        seconds += 4 * steps * batch * gathered / L2_BPS + 4 * steps * batch * nd * arrays / HBM_BPS
        first = False
    return seconds


def estimate(preset: str, batch: int, steps: int, stacked: int = 1, keep: Path | None = None) -> dict:
    from elm_neuro.networks import registry
    from elm_neuro.networks.engines import triton_compile as TC
    over = dict(PRESET_OVERRIDES.get(preset, {}))
    cfg = registry.preset_config(preset, **over)
    if stacked > 1:  # S models as one network of S N hidden and S C readout neurons (same shapes per neuron)
        over.update(n=cfg.n * stacked, n_classes=cfg.n_classes * stacked)
    with tempfile.TemporaryDirectory() as tmp:
        keep = keep or Path(tmp)
        results, reports = TC.compile_all([dict(preset=preset, batch=batch, steps=4, **over)], [90], keep=keep)
        if results[0].error:
            raise RuntimeError(f"{preset} B {batch}: {results[0].error}")
        kernels = []
        launched_nd = {rep.constexprs["ND"] for rep in reports if rep.kernel == "_input_drive_kernel"}
        for rep in reports:
            if rep.kernel not in ("_fwd_persistent", "_bwd_persistent", "_readout_fwd_kernel", "_readout_bwd_kernel"):
                continue
            sass = (keep / f"{rep.kernel}-sm90-{rep.hash[:10]}.sass").read_text()
            kernels.append(kernel_step(rep, sass))
    from elm_neuro.networks import registry as R
    model = R.build_model(R.preset_config(preset, **over))
    readout_rows = cfg.n_classes * stacked * cfg.readout.d_tree in launched_nd
    out = dict(preset=preset, batch=batch, steps=steps, stacked=stacked, kernels=kernels,
               outside_ms=1e3 * (outside_seconds(cfg, batch * stacked, steps, dense_readout=not readout_rows)
                                 + gather_seconds(model, launched_nd, batch, steps)))
    for ipc in IPCS:
        kernel_s = sum(steps * k["instructions"] / ipc / CLOCK_HZ + (steps * BARRIER_S if k["grid_barrier"] else 0.0)
                       for k in kernels)
        out[f"ms_at_ipc_{ipc}"] = 1e3 * kernel_s + out["outside_ms"]
    return out


def table(rows: list) -> str:
    lines = ["| case | kernel | N | samples/item | items | regs | spills B | instr/step | BAR/step | grid barrier |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"{r['preset']} B {r['batch']}" + (f" x{r['stacked']} stacked" if r["stacked"] > 1 else "")
        for k in r["kernels"]:
            lines.append(f"| {name} | {k['kernel']} | {k['n']} | {k['samples']} | {k['items']} | {k['registers']} | "
                         f"{k['spills']} | {k['instructions']} | {k['barriers']} | {'yes' if k['grid_barrier'] else 'no'} |")
    lines += ["", "| case | T | outside kernels ms | ms/batch at IPC 1 | ms/batch at IPC 0.4 | target ms |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        name = f"{r['preset']} B {r['batch']}" + (f" x{r['stacked']} stacked" if r["stacked"] > 1 else "")
        target = TARGETS_MS.get((r["preset"], r["batch"])) if r["stacked"] == 1 else None
        lines.append(f"| {name} | {r['steps']} | {r['outside_ms']:.2f} | {r['ms_at_ipc_1.0']:.1f} | "
                     f"{r['ms_at_ipc_0.4']:.1f} | {target if target else '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--stacked", type=int, default=16, help="also estimate this many stacked SHD-Adding models at B 32 "
                                                            "(0: not)")
    ap.add_argument("--only", help="comma-separated cases, e.g. shd-adding:32,enwik8:8")
    a = ap.parse_args(argv)
    cases = list(CASES)
    if a.only:
        want = {tuple(x.split(":")) for x in a.only.split(",")}
        cases = [c for c in cases if (c[0], str(c[1])) in want]
    rows = [estimate(p, b, t) for p, b, t in cases]
    if a.stacked > 1:
        rows.append(estimate("shd-adding", 32, 1000, stacked=a.stacked))
    print(f"assumptions: {CLOCK_HZ / 1e9} GHz, {SCHEDULERS} schedulers, grid barrier {BARRIER_S * 1e6:.1f} us/step, "
          f"outside the kernels {HBM_BPS / 1e12} TB/s and {FP32_FLOPS / 1e12:.0f} TFLOP/s, "
          f"the gathers outside the loops from L2 at {L2_BPS / 1e12} TB/s\n")
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
