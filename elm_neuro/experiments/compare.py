"""Equal-budget comparison of model families on one task: ``elm-neuro compare``.

Every (model, seed) cell is a normal run directory ``OUT/<model>-s<seed>`` trained on the same
data and the same pairs (the data seed is the run seed; seeds are shared across models). The run
seed also fixes each model's initial weights and connectome (``TrainConfig.model_seed``), so the
seeds of a cell are independent networks and "± over seeds" is the spread over networks. Each
model sized by the budget solver to the same parameter count ``P``. Cells that finished are
skipped, cells with a checkpoint are resumed, so an interrupted comparison continues where it
stopped. ``report.md`` tabulates model, N, k_e, k_c, P, validation / test accuracy (mean +- std
over seeds) and wall time, and ``learning_curves.png`` shows validation accuracy per epoch.

Before any cell trains, every cell is checked (:func:`check_cells`: model family, preset,
overrides and budget resolved, data files present, device usable, a batch's activation memory
within what the device has), so that ``--models elm,foo`` or a budget too small for a later
model fails before the first cell trains. The comparison folder is locked for the life of the
command (:func:`elm_neuro.atomic.folder_lock`), each cell's run directory by its training.

A cell that fails while it trains (a run that diverges, any error but an interrupt) does not stop
the comparison, as in a sweep: the other cells train, ``report.md`` lists every failed cell with
its model, seed and one-line reason (:func:`failure_reason`) under "Failed cells", and
:func:`compare` then raises :class:`CellsFailed` (which carries the report and the failures) instead
of returning. Running the same command again retries the failed cells (a failed new run leaves
nothing behind; one that failed after a checkpoint resumes from it).
"""
from __future__ import annotations

import re
import statistics
import sys
from concurrent.futures import as_completed
from pathlib import Path

from elm_neuro.atomic import atomic_output, folder_lock, foreign_entries, list_names, save_text
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.preflight import preflight
from elm_neuro.training.run import RunDir
from elm_neuro.training.runtime import check_not_terminated, process_pool
from elm_neuro.training.trainer import is_complete, run_training


def cell_dir(out: Path, model: str, seed: int) -> Path:
    return Path(out) / f"{model}-s{seed}"


class CellsFailed(RuntimeError):
    """Some cells of a comparison failed; the others finished and ``report`` lists both.
    ``failed``: cell name (``<model>-s<seed>``) -> one-line reason."""

    def __init__(self, report: Path, failed: dict, total: int) -> None:
        self.report, self.failed, self.total = Path(report), dict(failed), int(total)
        names = ", ".join(sorted(self.failed))
        super().__init__(f"{len(self.failed)} of {total} cell(s) failed ({names}); the others finished; "
                         f"{self.report} lists the failures; run the same command again to retry them")

    def __reduce__(self):
        return type(self), (self.report, self.failed, self.total)


def failure_reason(exc: BaseException) -> str:
    """One line for a failed cell: ``"<exception class>: <message>"`` (lines joined), with the
    advice of a :class:`~elm_neuro.training.common.TrainingDiverged` in parentheses."""
    text = " ".join(str(exc).split())
    hint = getattr(exc, "hint", None)
    return f"{type(exc).__name__}: {text}" + (f" ({hint})" if hint else "")


def run_cell(run_dir: Path, cfg: TrainConfig, progress: bool) -> dict:
    """Train, resume or skip one cell; returns its summary."""
    run = RunDir(run_dir)
    done = run.read_summary()
    if is_complete(done):
        return done
    resume = run.checkpoint.is_file()
    changes = {k: getattr(cfg, k) for k in ("data_dir", "device", "threads")} if resume else None
    return run_training(run_dir, None if resume else cfg, resume=resume, progress=progress, changes=changes)


REPORT_FILES = ("report.md", "learning_curves.png")
_CELL_NAME = re.compile(r"[A-Za-z0-9_.-]+-s\d+")


def check_compare_dir(out: Path) -> None:
    """Refuse an ``--out`` folder holding anything a comparison did not write: its files are the
    cells' run directories (``<model>-s<seed>`` holding a ``config.json``), ``report.md`` and
    ``learning_curves.png`` (the report is rewritten at the end, so a user's file under one of
    those names would be lost: a folder that holds no cell yet must not hold them either)."""
    if not out.is_dir():
        if out.exists():
            raise ValueError(f"--out {out} is a file, not a folder; give a folder for the comparison")
        return
    cells = [e.name for e in out.iterdir() if e.is_dir() and _CELL_NAME.fullmatch(e.name)
             and (e / "config.json").is_file()]
    foreign = foreign_entries(out, cells + (list(REPORT_FILES) if cells else []))
    if foreign:
        raise ValueError(f"--out {out} holds {list_names(foreign)}, which a comparison did not write; "
                         f"use a new or empty folder (nothing there is touched)")


def check_cells(jobs: list) -> None:
    """:func:`elm_neuro.training.preflight.preflight` of every ``(run_dir, cfg)`` that will train
    from the start (finished and checkpointed cells keep their configuration); the first failure
    raises, naming the cell."""
    tokens = None
    for run_dir, cfg in jobs:
        run = RunDir(run_dir)
        if is_complete(run.read_summary()) or run.checkpoint.is_file():
            continue
        if cfg.task == "enwik8" and tokens is None:  # one tokenisation for every cell
            from elm_neuro.training.language import load_tokens

            tokens = load_tokens(cfg)
        try:
            preflight(cfg, tokens=tokens)
        except (ValueError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ValueError(f"{Path(run_dir).name} (model {cfg.model!r}): {msg}") from None


def _mean_std(vals: list[float]) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


# Accuracy of always answering the most frequent class (SHD-Adding: the sum 9, 10 %; SHD: 1/20).
CHANCE = {"shd-adding": 0.10, "shd": 0.05}


def validation_size(conf: dict) -> str | None:
    """What a run's validation metric is measured on, e.g. ``"200 pairs"`` (None: unknown):
    SHD-Adding ``valid_batches x batch_size`` fixed pairs, SHD its whole validation pool, Enwik8 the
    validation prefix of ``eval_tokens`` tokens."""
    tr = conf.get("train", {})
    if tr.get("task") == "shd-adding":
        return f"{tr['valid_batches'] * tr['batch_size']} pairs"
    if tr.get("task") == "enwik8":
        return f"{tr['eval_tokens']} tokens"
    if tr.get("task") == "shd" and tr.get("data_dir"):
        import h5py

        from elm_neuro.data.shd_adding import split_pool

        try:
            with h5py.File(Path(tr["data_dir"]) / "shd_train.h5", "r") as f:
                n_train = int(f["labels"].shape[0])
        except (OSError, KeyError):
            return None
        return f"{len(split_pool('valid', n_train, 0))} samples"
    return None


def write_report(out: Path, models: list[str], seeds: list[int], title: str, chance: float | None = None,
                 failed: dict | None = None) -> Path:
    """``report.md`` and ``learning_curves.png`` from the cells' run directories; ``failed``
    (cell name -> one-line reason) adds a "Failed cells" section after the table."""
    import matplotlib  # plotting only here: importing this module does not load matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    lines = [f"# {title}", "", "| model | N | k_e | k_c | P | valid | test | wall (s) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4.6))
    metric = None
    sizes: set = set()
    for model in models:
        sums = [s for s in (RunDir(cell_dir(out, model, seed)).read_summary() for seed in seeds) if is_complete(s)]
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
            run = RunDir(cell_dir(out, model, seed))
            rows = [r for r in run.read_metrics() if r["kind"] == "valid"]
            if rows:
                curves.append([r[key] for r in rows])
                sizes.add(validation_size(run.read_config()))
        if curves:
            length = min(len(c) for c in curves)
            mean = [statistics.mean(c[i] for c in curves) for i in range(length)]
            ax.plot(range(1, length + 1), mean, marker="o", label=f"{model} (P={s0['p']})")
    if chance is not None and metric == "acc":
        ax.axhline(chance, color="gray", ls="--", lw=1, label=f"chance (most frequent class, {chance:.2f})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
    shown = {"acc": "accuracy", "bpc": "bits per character"}.get(metric, metric or "")
    sizes.discard(None)
    on = f"\n(on {sizes.pop()})" if len(sizes) == 1 else ""
    ax.set_ylabel(f"validation {shown}{on}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9, frameon=False)  # off the curves
    fig.tight_layout()
    fig_path = out / "learning_curves.png"
    try:
        with atomic_output(fig_path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    chance_note = f" Chance (always the most frequent class): {chance:.2f}." if chance and metric == "acc" else ""
    lines += _failure_lines(models, seeds, failed or {})
    lines += ["", f"Metric: {'accuracy (higher is better)' if metric == 'acc' else 'bits per character'}; "
              f"{_spread_note(out, models, seeds)}{chance_note}", "", "![learning curves](learning_curves.png)", ""]
    report = out / "report.md"
    save_text("\n".join(lines), report)
    return report


def _spread_note(out: Path, models: list[str], seeds: list[int]) -> str:
    """How to read the table's numbers: "mean ± std over seeds" only where some model has more
    than one finished seed; with one seed each, say so (a single value has no spread)."""
    counts = [sum(is_complete(RunDir(cell_dir(out, m, s)).read_summary()) for s in seeds) for m in models]
    counts = [c for c in counts if c]
    if counts and max(counts) == 1:
        return "one seed per model: single runs, no spread (differences between runs of one seed are not significant)."
    if counts and min(counts) == 1:
        return "mean ± std over the finished seeds (the `seeds` column); a row of one seed is a single run."
    return "mean ± std over seeds."


def _failure_lines(models: list[str], seeds: list[int], failed: dict) -> list[str]:
    """The "Failed cells" section: one bullet per failed cell (model, seed, reason), in the
    order of the table; the table's ``seeds`` column counts only finished cells."""
    if not failed:
        return []
    out = ["", "## Failed cells", "",
           f"{len(failed)} of {len(models) * len(seeds)} cells failed; the table above averages the finished "
           f"ones only.", ""]
    for model in models:
        for seed in seeds:
            name = cell_dir(Path("."), model, seed).name
            if name in failed:
                out.append(f"- `{name}` (model {model}, seed {seed}): {failed[name]}")
    return out


def _cell_job(run_dir: str, cfg_dict: dict) -> dict:
    check_not_terminated()  # a cell queued before the parent was terminated does not start
    return run_cell(Path(run_dir), TrainConfig.from_dict(cfg_dict), progress=False)


def compare(out, base: TrainConfig, models: list[str], seeds: list[int], model_overrides: dict | None = None,
            progress: bool = True, workers: int = 1) -> Path:
    """Train every (model, seed) cell at ``base.params`` and write the report; returns its path.

    ``workers > 1`` trains cells in that many processes (spawned, one torch thread each unless
    ``base.threads`` is set: the models' many small per-step operations run faster
    single-threaded, side by side; :mod:`elm_neuro.training.runtime`). One process (``workers``
    1) uses ``base.threads``, else one thread per physical core.

    A cell that fails is recorded and the others go on (module docstring); when any failed, the
    report lists them and :class:`CellsFailed` is raised after it is written. An interrupt stops
    everything at once.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    out = Path(out)
    model_overrides = model_overrides or {}
    unknown = sorted(set(model_overrides) - set(models))
    if unknown:
        raise ValueError(f"--set names model(s) {unknown} that are not in --models {models}")
    if base.data_dir is not None:
        base = base.replace(data_dir=str(Path(base.data_dir).expanduser().resolve()))
    jobs = [(cell_dir(out, model, seed), base.replace(model=model, seed=seed,
                                                      model_overrides=dict(model_overrides.get(model, {}))))
            for model in models for seed in seeds]
    check_compare_dir(out)
    check_cells(jobs)
    with folder_lock(out, "--out folder"):
        failed = _train_cells(jobs, base, workers, progress)
        title = f"{base.task}: models at P ≈ {base.params}" if base.params else f"{base.task}: model comparison"
        report = write_report(out, models, seeds, title, CHANCE.get(base.task), failed)
    if failed:
        raise CellsFailed(report, failed, len(jobs))
    return report


def _train_cells(jobs: list, base: TrainConfig, workers: int, progress: bool) -> dict:
    """Train the cells; returns the failed ones (cell name -> :func:`failure_reason`)."""
    failed: dict = {}

    def done(run_dir: Path, summary, exc) -> None:
        if exc is not None:
            failed[Path(run_dir).name] = failure_reason(exc)
            print(f"compare: cell {Path(run_dir).name} failed: {failed[Path(run_dir).name]}", file=sys.stderr,
                  flush=True)
        elif progress and workers > 1:
            key = "test_acc" if "test_acc" in summary else "test_bpc"
            print(f"{Path(run_dir).name}: {key} {summary[key]:.4f} (P={summary['p']}, {summary['wall_s']:.0f} s)",
                  flush=True)

    if workers <= 1:
        for run_dir, cfg in jobs:
            try:
                summary = run_cell(run_dir, cfg, progress)
            except Exception as exc:  # one failing cell must not stop the others (interrupts do)
                done(run_dir, None, exc)
            else:
                done(run_dir, summary, None)
        return failed
    with process_pool(workers, base.threads) as ex:
        futures = {ex.submit(_cell_job, str(d), c.to_dict()): d for d, c in jobs}
        for fut in as_completed(futures):
            try:
                summary = fut.result()
            except Exception as exc:
                done(futures[fut], None, exc)
            else:
                done(futures[fut], summary, None)
    return failed
