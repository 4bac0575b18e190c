"""Built-in real-text corpus for offline language modelling (stand-in for enwik8, docs/design.md §8).

When no enwik8 file is at hand, the language-modelling path still needs real text: this module
concatenates the *source files* of a fixed list of pure-Python standard-library modules. They
exist on every CPython installation, need no download, and are a few MB of genuine English
prose (docstrings, comments) interleaved with code, which is a fair small-scale test of a
character-level model.

Public API
----------
``DEFAULT_MODULES``
    The fixed, sorted tuple of module names read.
``DEFAULT_CORPUS_BYTES``
    Default corpus size (3,000,000 bytes).
``corpus_sources(modules=DEFAULT_MODULES) -> list[(name, path)]``
    The source file of each module found on this installation, in corpus order.
``build_default_corpus(max_bytes=DEFAULT_CORPUS_BYTES, modules=DEFAULT_MODULES) -> bytes``
    The corpus itself.

Choices
-------
* **Files, not imports.** Each module's file is located with
  ``importlib.util.find_spec(name).origin`` (this does not import or execute the module) and
  read as raw bytes (stdlib sources are UTF-8; bytes are kept as they are, no decoding).
  Modules are taken in sorted name order.
* **Whole files.** The complete ``.py`` text is used (code, docstrings and comments): simpler
  and more faithful than extracting docstrings, and the mix resembles enwik8's mix of prose and
  markup.
* **Separator.** Each file is preceded by ``b"\\n\\n# ===== module <name> =====\\n\\n"`` so that
  files never run into each other mid-line.
* **Size.** The concatenation is truncated to ``max_bytes`` (``None`` = everything). About
  3.7 MB is available on CPython 3.11 with the default list; if less is available than asked
  for, the whole concatenation is returned (never padded or repeated).
* **Determinism.** The same installation always gives the same bytes (fixed list, fixed order,
  no timestamps). Different Python versions ship different sources, so the corpus (and its
  md5, which the enwik8 cache records) differs between versions. A listed module that is
  missing or has no ``.py`` source on this installation (for instance a frozen or stripped
  module) is skipped; :func:`corpus_sources` tells which files were used.
* Only modules that are neither frozen (CPython 3.11+ freezes ``os``, ``codecs``, ``abc`` ...)
  nor removed in CPython 3.13 are listed, so every supported version reads the same list of
  files.
"""
from __future__ import annotations

import importlib.util
import os

__all__ = ["DEFAULT_MODULES", "DEFAULT_CORPUS_BYTES", "corpus_sources", "build_default_corpus"]

#: Default corpus size in bytes (a few MB: 2.7 MB train / 150 kB valid / 150 kB test).
DEFAULT_CORPUS_BYTES = 3_000_000

#: Standard-library modules whose source files make up the default corpus (sorted).
DEFAULT_MODULES: tuple[str, ...] = tuple(sorted((
    "_pydecimal", "_pyio", "_strptime", "_threading_local", "argparse", "ast", "bisect",
    "calendar", "cmd", "code", "codeop", "colorsys", "configparser", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "difflib", "dis", "doctest", "enum", "filecmp",
    "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt", "getpass", "gettext",
    "glob", "gzip", "heapq", "hmac", "imaplib", "inspect", "ipaddress", "locale", "logging",
    "mailbox", "mimetypes", "netrc", "numbers", "operator", "optparse", "pathlib", "pdb",
    "pickle", "pickletools", "platform", "plistlib", "poplib", "pprint", "profile", "pstats",
    "pydoc", "queue", "quopri", "random", "reprlib", "rlcompleter", "sched", "secrets",
    "selectors", "shelve", "shlex", "shutil", "smtplib", "socket", "socketserver", "statistics",
    "string", "stringprep", "subprocess", "symtable", "tabnanny", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "token", "tokenize", "trace", "traceback", "tracemalloc",
    "types", "typing", "uuid", "warnings", "wave", "weakref", "zipapp",
)))


def _separator(name: str) -> bytes:
    return f"\n\n# ===== module {name} =====\n\n".encode("ascii")


def corpus_sources(modules: tuple[str, ...] | list[str] = DEFAULT_MODULES) -> list[tuple[str, str]]:
    """``(module name, source path)`` for each of ``modules`` with a ``.py`` file here, in order.

    Modules are located without importing them. Missing modules, frozen modules and modules
    without Python source are skipped (see module docstring).
    """
    if isinstance(modules, str):
        raise ValueError(f"modules: expected a sequence of module names, got the string {modules!r}")
    out = []
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        origin = getattr(spec, "origin", None) if spec is not None else None
        if origin and origin.endswith(".py") and os.path.isfile(origin):
            out.append((name, origin))
    return out


def build_default_corpus(
    max_bytes: int | None = DEFAULT_CORPUS_BYTES,
    modules: tuple[str, ...] | list[str] = DEFAULT_MODULES,
) -> bytes:
    """Concatenate the stdlib source files of ``modules`` (separator before each), truncated.

    ``max_bytes``: positive number of bytes to keep, or ``None`` for all. Raises ``ValueError``
    for a non-positive ``max_bytes`` or when none of ``modules`` has a source file.
    """
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes: expected a positive integer or None, got {max_bytes!r}")
    sources = corpus_sources(modules)
    if not sources:
        raise ValueError(
            f"default text corpus: none of the {len(modules)} listed standard-library modules has "
            "a .py source file on this Python installation"
        )
    parts: list[bytes] = []
    total = 0
    for name, path in sources:
        with open(path, "rb") as fh:
            text = fh.read()
        for piece in (_separator(name), text):
            parts.append(piece)
            total += len(piece)
        if max_bytes is not None and total >= max_bytes:
            break
    data = b"".join(parts)
    return data if max_bytes is None else data[:max_bytes]
