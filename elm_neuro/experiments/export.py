"""Keep a trained run for users: a small folder with its config, metrics, best weights and a
model card, loadable with one call (``elm_neuro.load_run(folder)``).

    elm-neuro export runs/demo/compare/elm-s0 --out models/demo-elm-shd-adding
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from elm_neuro.atomic import atomic_output, save_text
from elm_neuro.training.run import RunDir

FILES = ("config.json", "summary.json", "metrics.jsonl", "best.pt", "vocab.json")


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)


def model_card(conf: dict, summary: dict, name: str) -> str:
    """A short markdown model card from a run's config.json and summary.json."""
    tr, mo = conf["train"], conf["model"]
    metric = ("accuracy", "valid_acc", "test_acc") if "test_acc" in summary else ("bits per character",
                                                                                    "valid_bpc", "test_bpc")
    data = tr.get("data_dir") or "built-in text corpus"
    with contextlib.suppress(ValueError):  # show paths under the working folder relative to it
        data = str(Path(data).relative_to(Path.cwd()))
    lines = [
        f"# {name}", "",
        f"- **model**: `{mo['family']}` network; N = {summary['n']}, k_e = {summary['k_e']}, "
        f"k_c = {summary['k_c']}, P = {summary['p']} trainable parameters",
        f"- **task**: {tr['task']} on `{data}`"
        + (f" ({tr['bin_ms']} ms bins, {tr['digit_window_s']} s per digit, channel factor {tr['channel_factor']})"
           if tr["task"] != "enwik8" else ""),
        f"- **training**: {summary['epochs']} epochs, {summary['steps']} steps of batch {tr['batch_size']}, "
        f"{tr['optimizer']} lr {tr['lr']}, seed {tr['seed']}, {summary['wall_s']:.0f} s on {summary['device']}",
        f"- **{metric[0]}** (best validation epoch {summary['best_epoch']}): validation "
        f"{summary[metric[1]]:.4f}, test {summary[metric[2]]:.4f}",
        "", "Load it with:", "", "```python", "import elm_neuro", "",
        f'run = elm_neuro.load_run("{name}")  # model (eval mode, best weights), configs, summary',
        "```", "", "Model configuration:", "", "```json", json.dumps(mo["config"], indent=2, sort_keys=True), "```", "",
    ]
    return "\n".join(lines)


def export_run(run_dir, out_dir, name: str | None = None) -> Path:
    """Copy a finished run's files into ``out_dir`` and write ``MODEL_CARD.md``."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    if summary is None:
        raise ValueError(f"{run.path} has no summary.json: only finished runs can be exported")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fname in FILES:
        src = run.path / fname
        if src.is_file():
            _copy_atomic(src, out / fname)
    save_text(model_card(run.read_config(), summary, name or out.name), out / "MODEL_CARD.md")
    return out
