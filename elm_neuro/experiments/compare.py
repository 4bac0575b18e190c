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

**Learning-rate search** (``lr_grid``, e.g. ``defaults.LR_GRID``; a plan's compare stage key
``lr_grid``). One recipe learning rate for every family makes the weaker families' numbers lower
bounds, not a comparison; with a grid, each cell trains one run per learning rate, in
``OUT/<model>-s<seed>/lr-<lr>/`` (normal run directories: skipped when finished, resumed from their
checkpoint), and takes the one with the best validation metric the trainer reports
(``valid_acc``, higher is better; ``valid_bpc`` on Enwik8, lower is better; a tie goes to the
smaller learning rate). The cell folder then becomes that run: its ``config.json``,
``metrics.jsonl``, ``best.pt`` (and ``vocab.json``) are copied up, ``summary.json`` is the chosen
run's with ``lr`` and ``lr_search`` (the grid, every learning rate's validation score, the total
wall time) added, and ``lr_search.json`` beside it records the search (grid, metric, one entry per
learning rate: its run folder, status, score, and the chosen ``lr``). Everything that reads a
cell (the report, ``reproduce``'s results table through ``cell_dir``, ``export``, the timescale
figure) therefore sees the chosen run. **The learning rate is chosen per (model, seed) cell**, not
once per family on one seed and reused: every seed repeats the whole protocol (search, then
training), so the spread over seeds includes the variation of the choice and no seed is treated
differently from the others; the price is ``len(grid)`` runs per cell instead of
``len(grid) + seeds - 1`` per family. Validation scores are used for the choice, so the report's
``valid`` column is biased upwards by it; ``test`` is not. A run that diverges after some updates
(:class:`~elm_neuro.training.common.TrainingDiverged` with ``updates > 0``) is a result of the search
(that learning rate is too large), recorded as ``diverged`` in ``lr_search.json`` and not retried;
any other failure of a run (a divergence at the initialisation included) fails the cell, and the
next call retries it. A cell fails when every learning rate diverged. A folder is one protocol:
cells searched over one grid are refused by a call with another grid or none, and cells trained
at one learning rate by a call with a grid.

**Spiking timescales for the bin width** (``bin_width_taus``; a plan's compare stage key). The
LIF / adLIF defaults (membrane 10..50 ms, adaptation 60..240 ms) are Bittar & Garner's step counts
at 2 ms bins; at 20 ms bins they decay within one to three steps while the ELM remembers for
seconds. With ``bin_width_taus`` the spiking families start from
:meth:`~elm_neuro.networks.lif_config.LIFNetworkConfig.bin_width_taus` of the data's bin width
(the same step counts, the ELM readout with the ELM Network's 1..500 steps), learnable; a field the
caller sets for a model (``model_overrides``) wins over them.
"""
from __future__ import annotations

import math
import re
import shutil
import statistics
import sys
from concurrent.futures import as_completed
from pathlib import Path
from typing import Optional, Sequence

from elm_neuro.atomic import atomic_output, folder_lock, foreign_entries, list_names, save_json, save_text
from elm_neuro.networks.lif_config import LIFNetworkConfig
from elm_neuro.networks.registry import PHYSICAL_TIME_FAMILIES
from elm_neuro.training.common import TrainingDiverged
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.preflight import preflight
from elm_neuro.training.run import RunDir, read_json_file
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


# --------------------------------------------------------------------------- learning-rate search
LR_SEARCH_FILE = "lr_search.json"
# Files of the chosen run copied into its cell folder (those it has), the summary last.
CHOSEN_FILES = ("config.json", "metrics.jsonl", "best.pt", "vocab.json")
# Keys of a plan's compare stage that are options of :func:`compare` (:func:`stage_options`).
STAGE_OPTIONS = ("lr_grid", "bin_width_taus")


def lr_dir(cell: Path, lr: float) -> Path:
    """The run folder of learning rate ``lr`` inside a cell: ``<cell>/lr-<lr>`` (``%g``, e.g. ``lr-0.003``)."""
    return Path(cell) / f"lr-{lr:g}"


def check_lr_grid(grid) -> list[float]:
    """The learning-rate grid as sorted floats; refuses an empty grid, a value that is not a
    finite number > 0, and two values with one folder name (equal to 6 significant digits)."""
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__iter__"):
        raise ValueError(f"lr_grid must be a list of learning rates, got {grid!r}")
    vals = list(grid)
    if not vals:
        raise ValueError("lr_grid must hold at least one learning rate, got an empty list")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"lr_grid values must be finite numbers > 0, got {v!r} in {vals}")
    vals = sorted(float(v) for v in vals)
    names = [lr_dir(Path("."), v).name for v in vals]
    if len(set(names)) != len(names):
        raise ValueError(f"lr_grid values must differ (to 6 significant digits), got {vals}")
    return vals


def search_metric(task: str) -> tuple[str, bool]:
    """The validation metric a learning rate is chosen by, and whether higher is better: the
    trainers' ``valid_acc`` (classification) or ``valid_bpc`` (Enwik8)."""
    return ("valid_bpc", False) if task == "enwik8" else ("valid_acc", True)


def select_lr(scores: Sequence[tuple[float, Optional[float]]], higher_is_better: bool = True) -> Optional[float]:
    """The learning rate of the best score among ``(lr, score)`` pairs (a score of None or NaN: no
    result, e.g. diverged); ties go to the smaller learning rate. None when no lr has a score."""
    best_lr, best = None, None
    for lr, score in sorted(scores, key=lambda p: p[0]):
        if score is None or not math.isfinite(score):
            continue
        if best is None or (score > best if higher_is_better else score < best):
            best_lr, best = lr, score
    return best_lr


def stage_options(stage: dict) -> dict:
    """The :func:`compare` keyword options a plan's compare stage sets (:data:`STAGE_OPTIONS`:
    ``lr_grid``, ``bin_width_taus``), for ``compare(..., **stage_options(stage))``."""
    return {k: stage[k] for k in STAGE_OPTIONS if k in stage}


def bin_width_overrides(base: TrainConfig, models: list[str], model_overrides: dict) -> dict:
    """``model_overrides`` with :meth:`LIFNetworkConfig.bin_width_taus` of each spiking family's
    bin width under its own fields (a field given there wins; ``dt`` stays the trainer's: the bin
    width, or the model's ``dt`` override, which the taus then follow). SHD tasks only."""
    if base.task == "enwik8":
        raise ValueError("bin_width_taus applies to the SHD tasks, whose time bins are in ms; an Enwik8 step is "
                         "a token")
    out = {m: dict(v) for m, v in model_overrides.items()}
    for model in models:
        if model in PHYSICAL_TIME_FAMILIES:
            own = out.get(model, {})
            fields = LIFNetworkConfig.bin_width_taus(own.get("dt", base.bin_ms))
            fields.pop("dt")
            out[model] = {**fields, **own}
    return out


def _read_search(cell: Path) -> Optional[dict]:
    path = Path(cell) / LR_SEARCH_FILE
    if not path.is_file():
        return None
    record = read_json_file(path, "learning-rate search record",
                            "restore it, or remove the cell folder to search again")
    if not isinstance(record, dict) or not isinstance(record.get("grid"), list) or not isinstance(
            record.get("runs", []), list):
        raise ValueError(f"{path} is not a learning-rate search record (damaged or edited by hand): restore it, "
                         f"or remove the cell folder to search again")
    return record


def _diverged(record: dict, lr: float) -> Optional[dict]:
    return next((e for e in record.get("runs", []) if e.get("lr") == lr and e.get("status") == "diverged"), None)


def _lr_divergence(exc: BaseException) -> bool:
    """A divergence after some updates: the learning rate's doing, a result of the search. One at
    the initialisation (``updates == 0``) is the model's or the data's: the cell fails."""
    return isinstance(exc, TrainingDiverged) and exc.updates != 0


def check_lr_protocol(cells: list, grid: Optional[list[float]]) -> None:
    """Refuse mixing protocols in one folder (module docstring): a cell searched over another grid
    (or, without a grid, searched at all), or a cell trained at one learning rate when a grid is
    given. ``cells``: ``(cell folder, config)`` pairs."""
    for cell, _ in cells:
        cell = Path(cell)
        record = _read_search(cell)
        if grid is None and record is not None:
            raise ValueError(f"{cell.name} was trained by a learning-rate search over {record['grid']} "
                             f"({cell / LR_SEARCH_FILE}); give the same lr_grid to continue that comparison, or use "
                             f"a new --out folder")
        if grid is not None and record is None and (cell / "config.json").is_file():
            lr = RunDir(cell).read_config().get("train", {}).get("lr")
            raise ValueError(f"{cell.name} was trained at one learning rate (lr {lr}) without a search; a comparison "
                             f"with lr_grid {grid} needs a new --out folder")
        if grid is not None and record is not None and [float(v) for v in record["grid"]] != grid:
            raise ValueError(f"{cell.name} was searched over the learning rates {record['grid']}, not {grid}; give "
                             f"that grid to continue the comparison, or use a new --out folder")


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)


def finish_search(cell: Path, record: dict, grid: list[float], metric: str, higher_is_better: bool) -> dict:
    """Choose the cell's learning rate from its finished runs and make the cell that run
    (module docstring); returns the cell's summary. ``ValueError`` when every run diverged."""
    cell = Path(cell)
    entries, summaries = [], {}
    for lr in grid:
        div = _diverged(record, lr)
        if div is not None:
            entries.append(div)
            continue
        run = lr_dir(cell, lr)
        s = RunDir(run).read_summary()
        if not is_complete(s):
            raise RuntimeError(f"the run of lr {lr:g} ({run}) has not finished")
        summaries[lr] = s
        entries.append({"lr": lr, "run": run.name, "status": "completed", metric: s[metric],
                        "best_epoch": s.get("best_epoch"), "wall_s": s["wall_s"]})
    chosen = select_lr([(e["lr"], e.get(metric)) for e in entries], higher_is_better)
    if chosen is None:
        raise ValueError(f"every learning rate of the grid {grid} diverged; try smaller ones")
    record = {**record, "grid": grid, "metric": metric, "higher_is_better": higher_is_better, "runs": entries,
              "lr": chosen, "run": lr_dir(cell, chosen).name}
    save_json(record, cell / LR_SEARCH_FILE)
    src = lr_dir(cell, chosen)
    for name in CHOSEN_FILES:
        if (src / name).is_file():
            _copy_atomic(src / name, cell / name)
    summary = {k: v for k, v in summaries[chosen].items() if k != "already_complete"}
    summary["lr"] = chosen
    summary["lr_search"] = {"metric": metric, "grid": grid, "scores": [e.get(metric) for e in entries],
                            "status": [e["status"] for e in entries], "lr": chosen,
                            "wall_s": sum(e.get("wall_s") or 0.0 for e in entries)}
    RunDir(cell).write_summary(summary)
    return summary


REPORT_FILES = ("report.md", "learning_curves.png")
_CELL_NAME = re.compile(r"[A-Za-z0-9_.-]+-s\d+")


def check_compare_dir(out: Path) -> None:
    """Refuse an ``--out`` folder holding anything a comparison did not write: its files are the
    cells' run directories (``<model>-s<seed>`` holding a ``config.json``, or the
    ``lr_search.json`` of a learning-rate search), ``report.md`` and
    ``learning_curves.png`` (the report is rewritten at the end, so a user's file under one of
    those names would be lost: a folder that holds no cell yet must not hold them either)."""
    if not out.is_dir():
        if out.exists():
            raise ValueError(f"--out {out} is a file, not a folder; give a folder for the comparison")
        return
    cells = [e.name for e in out.iterdir() if e.is_dir() and _CELL_NAME.fullmatch(e.name)
             and ((e / "config.json").is_file() or (e / LR_SEARCH_FILE).is_file())]
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
            name = Path(run_dir).name
            if name.startswith("lr-"):  # a run of a learning-rate search: name its cell
                name = f"{Path(run_dir).parent.name} (lr {cfg.lr:g})"
            raise ValueError(f"{name} (model {cfg.model!r}): {msg}") from None


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
                 failed: dict | None = None, notes: Sequence[str] = ()) -> Path:
    """``report.md`` and ``learning_curves.png`` from the cells' run directories; ``failed``
    (cell name -> one-line reason) adds a "Failed cells" section after the table. Cells chosen by
    a learning-rate search add an ``lr`` column (the chosen learning rate, per seed where they
    differ) and a "Learning rates" section (:func:`_lr_lines`); ``notes`` are lines printed
    under the metric line."""
    import matplotlib  # plotting only here: importing this module does not load matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    searched = _searched(out, models, seeds)
    lr_head, lr_rule = (" lr |", "---|") if searched else ("", "")
    lines = [f"# {title}", "", f"| model | N | k_e | k_c | P |{lr_head} valid | test | wall (s) | seeds |",
             f"|---|---|---|---|---|{lr_rule}---|---|---|---|"]
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
            f"{(_chosen_lrs(sums) + ' | ') if searched else ''}"
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
    if searched:
        lines += _lr_lines(out, models, seeds)
    lines += _failure_lines(models, seeds, failed or {})
    lines += ["", f"Metric: {'accuracy (higher is better)' if metric == 'acc' else 'bits per character'}; "
              f"{_spread_note(out, models, seeds)}{chance_note}"]
    lines += [n for n in notes if n]
    lines += ["", "![learning curves](learning_curves.png)", ""]
    report = out / "report.md"
    save_text("\n".join(lines), report)
    return report


def _searched(out: Path, models: list[str], seeds: list[int]) -> bool:
    """Whether a finished cell of the comparison was chosen by a learning-rate search."""
    return any("lr_search" in s for s in (RunDir(cell_dir(out, m, seed)).read_summary() for m in models
                                          for seed in seeds) if is_complete(s))


def _chosen_lrs(sums: list[dict]) -> str:
    """The ``lr`` column: one learning rate when every seed chose it, else one per seed in order."""
    lrs = [s.get("lr") for s in sums]
    shown = [f"{lr:g}" if isinstance(lr, (int, float)) else "-" for lr in lrs]
    return shown[0] if len(set(shown)) == 1 else ", ".join(shown)


def _lr_lines(out: Path, models: list[str], seeds: list[int]) -> list[str]:
    """The "Learning rates" section: how the learning rate was chosen, then per model the chosen
    learning rate of each seed and the validation score of every learning rate of the grid (mean
    over the finished seeds; ``diverged`` where every seed's run diverged) and the search's wall
    time."""
    found = {m: [(seed, s) for seed in seeds for s in [RunDir(cell_dir(out, m, seed)).read_summary()]
                 if is_complete(s) and "lr_search" in s] for m in models}
    found = {m: v for m, v in found.items() if v}
    first = next(iter(found.values()))[0][1]["lr_search"]
    grid, metric = first["grid"], first["metric"]
    better = "highest" if metric != "valid_bpc" else "lowest"
    lines = ["", "## Learning rates", "",
             f"Each (model, seed) cell trained one run per learning rate of the grid "
             f"{', '.join(f'{v:g}' for v in grid)} "
             f"and kept the one with the {better} `{metric}` (ties: the smaller learning rate); the table is that "
             f"run's. The `valid` column was used for this choice, so it is biased upwards; `test` is not.", "",
             "| model | chosen lr | " + " | ".join(f"{metric} at {v:g}" for v in grid) + " | search wall (s) |",
             "|---|---|" + "---|" * len(grid) + "---|"]
    for model, cells in found.items():
        chosen = ", ".join(f"{s['lr']:g} (s{seed})" for seed, s in cells)
        cols = []
        for i in range(len(grid)):
            vals = [s["lr_search"]["scores"][i] for _, s in cells if i < len(s["lr_search"]["scores"])]
            ok = [v for v in vals if v is not None]
            text = _mean_std(ok) if ok else "diverged"
            if ok and len(ok) < len(vals):
                text += f" ({len(vals) - len(ok)} diverged)"
            cols.append(text)
        wall = statistics.mean(s["lr_search"]["wall_s"] for _, s in cells)
        lines.append(f"| {model} | {chosen} | " + " | ".join(cols) + f" | {wall:.0f} |")
    return lines


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
            progress: bool = True, workers: int = 1, lr_grid: Optional[Sequence[float]] = None,
            bin_width_taus: bool = False) -> Path:
    """Train every (model, seed) cell at ``base.params`` and write the report; returns its path.

    ``workers > 1`` trains cells in that many processes (spawned, one torch thread each unless
    ``base.threads`` is set: the models' many small per-step operations run faster
    single-threaded, side by side; :mod:`elm_neuro.training.runtime`). One process (``workers``
    1) uses ``base.threads``, else one thread per physical core.

    ``lr_grid`` (e.g. ``defaults.LR_GRID``): choose each cell's learning rate from these on the
    validation split, one run per learning rate, in parallel like cells; None (the default)
    trains every cell once at ``base.lr``. ``bin_width_taus``: start the LIF / adLIF families'
    timescales from the bin width's ranges (module docstring). A plan's compare stage passes
    both with ``**stage_options(stage)``.

    A cell that fails is recorded and the others go on (module docstring); when any failed, the
    report lists them and :class:`CellsFailed` is raised after it is written. An interrupt stops
    everything at once.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not isinstance(bin_width_taus, bool):
        raise ValueError(f"bin_width_taus must be True or False, got {bin_width_taus!r}")
    grid = None if lr_grid is None else check_lr_grid(lr_grid)
    out = Path(out)
    model_overrides = model_overrides or {}
    unknown = sorted(set(model_overrides) - set(models))
    if unknown:
        raise ValueError(f"--set names model(s) {unknown} that are not in --models {models}")
    if bin_width_taus:
        model_overrides = bin_width_overrides(base, models, model_overrides)
    if base.data_dir is not None:
        base = base.replace(data_dir=str(Path(base.data_dir).expanduser().resolve()))
    jobs = [(cell_dir(out, model, seed), base.replace(model=model, seed=seed,
                                                      model_overrides=dict(model_overrides.get(model, {}))))
            for model in models for seed in seeds]
    check_compare_dir(out)
    check_lr_protocol(jobs, grid)
    if grid is None:
        check_cells(jobs)
    else:
        check_cells(_first_runs_to_train(jobs, grid))
    with folder_lock(out, "--out folder"):
        if grid is None:
            failed = _train_cells(jobs, base, workers, progress)
        else:
            failed = _search_cells(jobs, grid, base, workers, progress)
        title = f"{base.task}: models at P ≈ {base.params}" if base.params else f"{base.task}: model comparison"
        notes = [_bin_width_note(base, models)] if bin_width_taus else []
        report = write_report(out, models, seeds, title, CHANCE.get(base.task), failed, notes=notes)
    if failed:
        raise CellsFailed(report, failed, len(jobs))
    return report


def _bin_width_note(base: TrainConfig, models: list[str]) -> str:
    spiking = [m for m in models if m in PHYSICAL_TIME_FAMILIES]
    if not spiking:
        return ""
    f = LIFNetworkConfig.bin_width_taus(base.bin_ms)
    return (f"{' and '.join(spiking)}: timescales initialised for the {base.bin_ms:g} ms bins (membrane "
            f"{f['tau_mem_min']:g}..{f['tau_mem_max']:g} ms, adLIF adaptation {f['tau_adapt_min']:g}.."
            f"{f['tau_adapt_max']:g} ms, ELM readout {f['readout_tau_min']:g}..{f['readout_tau_max']:g} ms), "
            f"learnable, unless set per model.")


def _search_runs(cell: Path, cfg: TrainConfig, grid: list[float], record: Optional[dict]) -> list:
    """``(run folder, config)`` of the learning rates of a cell still to train or finish (not
    recorded as diverged)."""
    return [(lr_dir(cell, lr), cfg.replace(lr=lr)) for lr in grid
            if record is None or _diverged(record, lr) is None]


def _first_runs_to_train(jobs: list, grid: list[float]) -> list:
    """Per unfinished cell, its first run that will train from the start (the others of the cell
    differ only in the learning rate): what :func:`check_cells` checks."""
    first = []
    for cell, cfg in jobs:
        if is_complete(RunDir(cell).read_summary()):
            continue
        for run_dir, run_cfg in _search_runs(cell, cfg, grid, _read_search(cell)):
            run = RunDir(run_dir)
            if not (is_complete(run.read_summary()) or run.checkpoint.is_file()):
                first.append((run_dir, run_cfg))
                break
    return first


def _search_cells(jobs: list, grid: list[float], base: TrainConfig, workers: int, progress: bool) -> dict:
    """Train every learning rate of every unfinished cell, then choose per cell
    (:func:`finish_search`); returns the failed cells (cell name -> reason)."""
    metric, higher = search_metric(base.task)
    records: dict = {}
    runs, owner = [], {}
    for cell, cfg in jobs:
        if is_complete(RunDir(cell).read_summary()):
            continue
        record = _read_search(cell)
        if record is None:
            record = {"grid": grid, "metric": metric, "higher_is_better": higher, "selection": "per (model, seed) cell",
                      "runs": []}
            Path(cell).mkdir(parents=True, exist_ok=True)
            save_json(record, Path(cell) / LR_SEARCH_FILE)
        records[cell] = record
        for run_dir, run_cfg in _search_runs(cell, cfg, grid, record):
            runs.append((run_dir, run_cfg))
            owner[Path(run_dir)] = (Path(cell), run_cfg.lr)
    errors: dict = {}

    def done(run_dir: Path, summary, exc) -> None:
        cell, lr = owner[Path(run_dir)]
        if exc is None:
            if progress and workers > 1:
                key = "test_acc" if "test_acc" in summary else "test_bpc"
                print(f"{cell.name} lr {lr:g}: {metric} {summary[metric]:.4f}, {key} {summary[key]:.4f} "
                      f"({summary['wall_s']:.0f} s)", flush=True)
            return
        reason = failure_reason(exc)
        if _lr_divergence(exc):
            record = records[cell]
            record["runs"] = [e for e in record["runs"] if e.get("lr") != lr] + [
                {"lr": lr, "run": Path(run_dir).name, "status": "diverged", metric: None, "reason": reason}]
            save_json(record, cell / LR_SEARCH_FILE)
            print(f"compare: cell {cell.name}: lr {lr:g} diverged, out of the search: {reason}", file=sys.stderr,
                  flush=True)
            return
        errors[cell] = "; ".join(filter(None, [errors.get(cell), f"lr {lr:g}: {reason}"]))
        print(f"compare: cell {cell.name} failed at lr {lr:g}: {reason}", file=sys.stderr, flush=True)

    _run_jobs(runs, base, workers, progress, done)
    failed: dict = {}
    for cell, record in records.items():
        if cell in errors:
            failed[cell.name] = errors[cell]
            continue
        try:
            finish_search(cell, record, grid, metric, higher)
        except ValueError as exc:  # every learning rate diverged
            failed[cell.name] = failure_reason(exc)
            print(f"compare: cell {cell.name} failed: {failed[cell.name]}", file=sys.stderr, flush=True)
    return failed


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

    _run_jobs(jobs, base, workers, progress, done)
    return failed


def _run_jobs(jobs: list, base: TrainConfig, workers: int, progress: bool, done) -> None:
    """Train or resume every ``(run_dir, cfg)`` (:func:`run_cell`), in this process or in
    ``workers`` processes; ``done(run_dir, summary, exc)`` after each (``exc`` None on success).
    A failing run does not stop the others (interrupts do)."""
    if workers <= 1:
        for run_dir, cfg in jobs:
            try:
                summary = run_cell(run_dir, cfg, progress)
            except Exception as exc:  # one failing cell must not stop the others (interrupts do)
                done(run_dir, None, exc)
            else:
                done(run_dir, summary, None)
        return
    with process_pool(workers, base.threads) as ex:
        futures = {ex.submit(_cell_job, str(d), c.to_dict()): d for d, c in jobs}
        for fut in as_completed(futures):
            try:
                summary = fut.result()
            except Exception as exc:
                done(futures[fut], None, exc)
            else:
                done(futures[fut], summary, None)
