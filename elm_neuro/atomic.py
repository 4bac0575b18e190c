"""Atomic file output, used by every part of the package that writes files.

Everything is first written to a temporary file in the destination folder (same file system),
then moved onto the destination with ``os.replace``: a reader, a resumed run or a crash sees
either the old complete file or the new complete file, never a half-written one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched. The final
    file gets the usual permissions (``0666 & ~umask``; ``mkstemp`` creates ``0600``).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_atomic(path: str | os.PathLike, write: Callable) -> None:
    """Call ``write(binary_file)`` on a temporary file, fsync it, then move it onto ``path``."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())


def save_bytes(data: bytes, path) -> None:
    write_atomic(path, lambda f: f.write(data))


def save_text(text: str, path) -> None:
    save_bytes(text.encode(), path)


def save_json(obj, path) -> None:
    save_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def save_torch(obj, path) -> None:
    import torch  # only here: the data code writes files through this module without torch

    write_atomic(path, lambda f: torch.save(obj, f))
