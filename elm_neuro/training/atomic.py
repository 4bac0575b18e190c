"""Atomic file writes: write to a temporary name in the same folder, then ``os.replace``.

A reader (or a resumed run) therefore sees either the old complete file or the new complete
file, never a half-written one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_torch(obj, path) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def save_json(obj, path) -> None:
    _atomic(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def save_text(text: str, path) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def save_bytes(data: bytes, path) -> None:
    _atomic(path, lambda f: f.write(data))
