"""Equal-budget comparison of model families on one task: ``elm-neuro compare``.

Every (model, seed) cell is a normal run directory ``OUT/<model>-s<seed>`` trained on the same
data and the same pairs (the data seed is the run seed; seeds are shared across models). The run
seed also fixes each model's initial weights and connectome (``TrainConfig.model_seed``), so the
seeds of a cell are independent networks and "± over seeds" is the spread over networks. Each
model sized by the budget solver to the same parameter count ``P``. Cells that finished are
skipped, cells with a checkpoint are resumed, so an interrupted comparison continues where it
stopped. ``report.md`` tabulates model, N, k_e, k_c, P, validation / test accuracy (mean +- std
over seeds) and wall time, and ``learning_curves.png`` shows validation accuracy per epoch.
"""
from __future__ import annotations

import multiprocessing as mp
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from elm_neuro.atomic import save_text
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.run import RunDir
from elm_neuro.training.runtime import init_worker
from elm_neuro.training.trainer import run_training


def cell_dir(out: Path, model: str, seed: int) -> Path:
    return Path(out) / f"{model}-s{seed}"


def run_cell(run_dir: Path, cfg: TrainConfig, progress: bool) -> dict:
    """Train, resume or skip one cell; returns its summary."""
    run = RunDir(run_dir)
    done = run.read_summary()
    if done is not None:
        return done
    return run_training(run_dir, None if run.checkpoint.is_file() else cfg, resume=run.checkpoint.is_file(),
                        progress=progress)


def _mean_std(vals: list[float]) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


# Accuracy of always answering the most frequent class (SHD-Adding: the sum 9, 10 %; SHD: 1/20).
CHANCE = {"shd-adding": 0.10, "shd": 0.05}


def write_report(out: Path, models: list[str], seeds: list[int], title: str, chance: float | None = None) -> Path:
    """``report.md`` and ``learning_curves.png`` from the cells' run directories."""
    import matplotlib  # plotting only here: importing this module does not load matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    lines = [f"# {title}", "", "| model | N | k_e | k_c | P | valid | test | wall (s) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6, 4))
    metric = None
    for model in models:
        sums = [s for s in (RunDir(cell_dir(out, model, seed)).read_summary() for seed in seeds) if s]
        if not sums:
            continue
        key = "acc" if "test_acc" in sums[0] else "bpc"
        metric = key
        s0 = sums[0]
        lines.append(
            f"| {model} | {s0['n']} | {s0['k_e']} | {s0['k_c']} | {s0['p']} | "
            f"{_mean_std([s['valid_' + key] for s in sums])} | {_mean_std([s['test_' + key] for s in sums])} | "
            f"{statistics.mean(s['wall_s'] for s in sums):.0f} | {len(sums)} |")
        curves = []
        for seed in seeds:
            rows = [r for r in RunDir(cell_dir(out, model, seed)).read_metrics() if r["kind"] == "valid"]
            if rows:
                curves.append([r[key] for r in rows])
        if curves:
            length = min(len(c) for c in curves)
            mean = [statistics.mean(c[i] for c in curves) for i in range(length)]
            ax.plot(range(1, length + 1), mean, marker="o", label=f"{model} (P={s0['p']})")
    if chance is not None and metric == "acc":
        ax.axhline(chance, color="gray", ls="--", lw=1, label=f"chance (most frequent class, {chance:.2f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric or ''}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig_path = out / "learning_curves.png"
    tmp = out / ".learning_curves.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(fig_path)
    chance_note = f" Chance (always the most frequent class): {chance:.2f}." if chance and metric == "acc" else ""
    lines += ["", f"Metric: {'accuracy (higher is better)' if metric == 'acc' else 'bits per character'}; "
              f"mean ± std over seeds.{chance_note}", "", "![learning curves](learning_curves.png)", ""]
    report = out / "report.md"
    save_text("\n".join(lines), report)
    return report


def _init_worker(threads: int | None = None) -> None:
    """Initialiser of each worker process: ``threads`` torch threads (None: one per worker)."""
    init_worker(threads)


def _cell_job(run_dir: str, cfg_dict: dict) -> dict:
    return run_cell(Path(run_dir), TrainConfig.from_dict(cfg_dict), progress=False)


def compare(out, base: TrainConfig, models: list[str], seeds: list[int], model_overrides: dict | None = None,
            progress: bool = True, workers: int = 1) -> Path:
    """Train every (model, seed) cell at ``base.params`` and write the report.

    ``workers > 1`` trains cells in that many processes (spawned, one torch thread each unless
    ``base.threads`` is set: the models' many small per-step operations run faster
    single-threaded, side by side; :mod:`elm_neuro.training.runtime`). One process (``workers``
    1) uses ``base.threads``, else one thread per physical core.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_overrides = model_overrides or {}
    jobs = [(cell_dir(out, model, seed), base.replace(model=model, seed=seed,
                                                      model_overrides=dict(model_overrides.get(model, {}))))
            for model in models for seed in seeds]
    if workers <= 1:
        for run_dir, cfg in jobs:
            run_cell(run_dir, cfg, progress)
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(base.threads,)) as ex:
            futures = {ex.submit(_cell_job, str(d), c.to_dict()): d for d, c in jobs}
            for fut in as_completed(futures):
                s = fut.result()
                if progress:
                    key = "test_acc" if "test_acc" in s else "test_bpc"
                    print(f"{futures[fut].name}: {key} {s[key]:.4f} (P={s['p']}, {s['wall_s']:.0f} s)", flush=True)
    title = f"{base.task}: models at P ≈ {base.params}" if base.params else f"{base.task}: model comparison"
    return write_report(out, models, seeds, title, CHANCE.get(base.task))
