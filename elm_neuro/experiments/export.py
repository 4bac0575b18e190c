"""Keep a trained run for users: a small folder with its config, metrics, best weights and a
model card, loadable with one call (``elm_neuro.load_run(folder)``).

    elm-neuro export runs/demo/compare/elm-s0 --out models/demo-elm-shd-adding [--force]

The best weights are exported as ``model.safetensors`` (tensors only, the ecosystem's format for
shared weights; metadata: epoch and validation metric) when the ``safetensors`` package is
installed, else as ``best.pt`` (tensors and plain data, read with ``weights_only=True``). Before
anything is written, ``best.pt`` is loaded and put into the model its ``config.json`` describes,
so a truncated or foreign file is never exported. An existing, non-empty destination is refused
unless ``force``; with ``force`` the new folder is assembled beside it and then replaces it
(:func:`elm_neuro.atomic.replace_folder`), so the destination never mixes two models' files.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from elm_neuro.atomic import replace_folder, save_bytes, save_text
from elm_neuro.training.run import SAFETENSORS_NAME, RunDir, build_from_config, load_checkpoint, load_weights
from elm_neuro.training.trainer import is_complete

FILES = ("config.json", "summary.json", "metrics.jsonl", "vocab.json")


def verified_best(run: RunDir) -> dict:
    """The run's ``best.pt`` (read with ``weights_only=True``) after checking that its weights fit
    the model of the run's ``config.json``; ``ValueError`` naming the file otherwise."""
    exported = run.path / SAFETENSORS_NAME
    if not run.best.is_file() and exported.is_file():  # an exported folder, exported again
        blob = {"model": load_weights(exported)}
    elif not run.best.is_file():
        raise FileNotFoundError(f"{run.best} not found: the run has no best weights to export")
    else:
        blob = load_checkpoint(run.best)
    model, _ = build_from_config(run.read_config()["model"])
    try:
        model.load_state_dict(blob["model"])
    except RuntimeError as exc:
        raise ValueError(f"{run.best}: the weights do not fit the model of {run.config} "
                         f"({str(exc).splitlines()[0]}); the run cannot be exported") from None
    return blob


def _safetensors_bytes(blob: dict) -> bytes | None:
    """``model.safetensors`` content of a best.pt blob, or None when safetensors is missing."""
    try:
        from safetensors.torch import save
    except ImportError:
        return None
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in blob["model"].items()}
    meta = {k: json.dumps(blob[k]) for k in blob if k != "model"}
    return save(tensors, metadata=meta)


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


def export_run(run_dir, out_dir, name: str | None = None, force: bool = False) -> Path:
    """Copy a finished run's files into ``out_dir`` with its weights (module docstring) and write
    ``MODEL_CARD.md``; an existing destination only with ``force``."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    if not is_complete(summary):
        state = "has no summary.json" if summary is None else f"is marked {summary.get('status')!r}"
        raise ValueError(f"{run.path} {state}: only finished runs can be exported")
    out = Path(out_dir)
    if out.resolve() == run.path.resolve():
        raise ValueError(f"--out {out} is the run directory itself; choose another folder")
    if (out.is_dir() and any(out.iterdir()) or out.exists() and not out.is_dir()) and not force:
        raise ValueError(f"--out {out} already exists; use --force to replace it, or choose another folder")
    blob = verified_best(run)
    weights = _safetensors_bytes(blob)
    with replace_folder(out, replace=force) as tmp:
        for fname in FILES:
            src = run.path / fname
            if src.is_file():
                shutil.copyfile(src, tmp / fname)
        if weights is not None:
            save_bytes(weights, tmp / SAFETENSORS_NAME)
        elif run.best.is_file():
            shutil.copyfile(run.best, tmp / "best.pt")
        else:
            shutil.copyfile(run.path / SAFETENSORS_NAME, tmp / SAFETENSORS_NAME)
        save_text(model_card(run.read_config(), summary, name or out.name), tmp / "MODEL_CARD.md")
    return out
