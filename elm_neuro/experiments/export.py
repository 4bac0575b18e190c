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

``force`` replaces only an earlier export (:func:`export_folder_problem`): a folder holding
``MODEL_CARD.md`` and ``config.json`` and nothing but the files an export writes (:data:`EXPORT_NAMES`).
Anything else (a folder with other files, a plain file, a link, the current directory or a folder
above it, a git repository) is refused with a message naming what is in the way, and left as it
is: a user's files are never deleted to make room for a model.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from elm_neuro.atomic import (RefusedPath, foreign_entries, list_names, protected_reason, replace_folder,
                              save_bytes, save_text)
from elm_neuro.training.run import SAFETENSORS_NAME, RunDir, build_from_config, load_checkpoint, load_weights
from elm_neuro.training.trainer import is_complete

FILES = ("config.json", "summary.json", "metrics.jsonl", "vocab.json")
CARD = "MODEL_CARD.md"
#: Every file an export writes: an earlier export holds these and nothing else.
NIR_NAME = "model.nir"
EXPORT_NAMES = (*FILES, CARD, SAFETENSORS_NAME, "best.pt", NIR_NAME)


def _nir_graph(run: RunDir, blob: dict):
    """The NIR graph of the run's best weights (:func:`elm_neuro.interop.to_nir`); a model NIR cannot
    express is refused with the reason, before anything is written."""
    from elm_neuro.interop import NIRUnsupported, to_nir

    model, _ = build_from_config(run.read_config()["model"])
    model.load_state_dict(blob["model"])
    try:
        return to_nir(model.eval())
    except NIRUnsupported as exc:
        raise ValueError(f"{run.path}: no NIR export: {str(exc).removeprefix('to_nir: ')}") from None


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


def _shown_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies under it, else absolute."""
    path = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return path.relative_to(Path.cwd().resolve()).as_posix()
    return path.as_posix()


def model_card(conf: dict, summary: dict, name: str, folder=None) -> str:
    """A short markdown model card from a run's config.json and summary.json; ``folder`` is where
    the export lives (its load line names that path, relative to the working folder; default:
    ``name``)."""
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
        f'run = elm_neuro.load_run("{_shown_path(folder) if folder is not None else name}")'
        "  # this folder: model (eval mode, best weights), configs, summary",
        "```", "", "Model configuration:", "", "```json", json.dumps(mo["config"], indent=2, sort_keys=True), "```", "",
    ]
    return "\n".join(lines)


def export_folder_problem(out) -> str | None:
    """Why ``out`` is not an earlier export that ``--force`` may replace (None when it is one;
    module docstring)."""
    out = Path(out)
    reason = protected_reason(out)
    if reason is not None:
        return f"is {reason}"
    if out.is_symlink():
        return "is a symbolic link, not an earlier export"
    if not out.is_dir():
        return "is a file, not an earlier export (a folder)"
    foreign = foreign_entries(out, EXPORT_NAMES)
    if foreign:
        return f"holds files that elm-neuro export did not write ({list_names(foreign)})"
    if not ((out / CARD).is_file() and (out / "config.json").is_file()):
        return f"is not an earlier export (it has no {CARD} and config.json)"
    return None


def _check_replaceable(out: Path) -> None:
    problem = export_folder_problem(out)
    if problem is not None:
        raise RefusedPath(f"--out {out} {problem}; --force replaces only an earlier export, and nothing of it "
                          f"was changed: choose another folder (or move those files away yourself)")


def export_run(run_dir, out_dir, name: str | None = None, force: bool = False, nir: bool = False) -> Path:
    """Copy a finished run's files into ``out_dir`` with its weights (module docstring) and write
    ``MODEL_CARD.md``; an existing destination only with ``force``, and only an earlier export.
    ``nir``: also write ``model.nir``, the NIR graph of the best weights (LIF networks with the leaky
    readout, :mod:`elm_neuro.interop.nir_graph`; any other model is refused before anything is
    written, naming what NIR lacks)."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    if not is_complete(summary):
        state = "has no summary.json" if summary is None else f"is marked {summary.get('status')!r}"
        raise ValueError(f"{run.path} {state}: only finished runs can be exported")
    out = Path(out_dir)
    if out.resolve() == run.path.resolve():
        raise ValueError(f"--out {out} is the run directory itself; choose another folder")
    occupied = out.is_symlink() or out.exists() and not (out.is_dir() and not any(out.iterdir()))
    if occupied and not force:
        raise ValueError(f"--out {out} already exists; use --force to replace an earlier export, or choose "
                         f"another folder")
    reason = protected_reason(out)
    if reason is not None:
        raise RefusedPath(f"--out {out} is {reason}; export writes a folder of its own: choose another folder")
    if occupied:
        _check_replaceable(out)
    blob = verified_best(run)
    graph = _nir_graph(run, blob) if nir else None
    weights = _safetensors_bytes(blob)
    with replace_folder(out, replace=force, check=_check_replaceable) as tmp:
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
        if graph is not None:
            import nir as nir_pkg

            nir_pkg.write(tmp / NIR_NAME, graph)  # inside the folder that replaces out whole
        save_text(model_card(run.read_config(), summary, name or out.name, out), tmp / CARD)
    return out
