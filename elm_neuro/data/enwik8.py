"""Enwik8 character-level data: standard split, two tokenisations, atomic cache (docs/design.md §8).

Public API
----------
``load_enwik8_tokens(src=None, tokenization="paper", cache_dir=None, allow_any_size=False,
corpus_bytes=DEFAULT_CORPUS_BYTES) -> TokenSplits``
    Read enwik8 (raw file or ``enwik8.zip``), split, tokenise, cache. ``src=None`` uses the
    built-in standard-library text corpus (:mod:`elm_neuro.data.text_corpus`) instead, through
    exactly the same split/tokenise code.
``tokenize_splits(data, tokenization) -> (train, valid, test, vocab)``
    The pure split + tokenise step on bytes in memory.
``split_sizes(n) -> (n_train, n_valid, n_test)``
    The 90/5/5 split of ``n`` raw bytes.
``paper_vocabulary(data) -> bytes``
    Symbols of ``data`` without newlines, by frequency rank.
``TokenSplits``
    The result: ``train``/``valid``/``test`` uint8 token arrays, ``vocab`` (byte value of each
    token id), ``vocab_size``, ``decode(ids) -> bytes``, ``encode(bytes) -> ids``.
``ENWIK8_SIZE`` (10**8), ``TOKENIZATIONS`` (``("paper", "bytes")``), ``Enwik8Error``.

Choices
-------
* **Source.** ``src`` may be the raw ``enwik8`` file, a zip archive holding a member named
  ``enwik8`` (the official ``enwik8.zip``; recognised by its ``PK\\x03\\x04`` signature) or a
  folder holding either (``enwik8`` preferred). The input is validated by *size*, not by
  content: it must be exactly 10**8 bytes (the whole enwik8 file) unless ``allow_any_size``
  is true, which lets small or custom files through (tests, other corpora). Any file of at
  least 20 bytes is then accepted (so that each split gets at least one byte).
* **Split.** The raw bytes are split first, into contiguous parts: train = the first
  ``n*90//100`` bytes, valid = the next ``n*5//100``, test = the rest. For enwik8 this is the
  standard 90,000,000 / 5,000,000 / 5,000,000.
* **Tokenisation "paper"** (docs/design.md §8, the paper's stream): newline bytes (0x0A) are dropped
  *after* the split, from each part separately (so the split boundaries are the standard ones
  and the parts shrink by their own newline count). The remaining symbols are indexed by
  frequency rank: counts are taken over the whole input without newlines (all three parts),
  token id 0 is the most frequent byte, ties are broken by smaller byte value first, bytes
  that never occur get no id. Real enwik8 gives 204 symbols. ``vocab[i]`` is the byte value
  of token ``i``.
* **Tokenisation "bytes"**: token id = byte value, vocabulary of 256, nothing dropped.
* **Cache.** Three uint8 ``.npy`` arrays and one JSON file (vocabulary, sizes, md5 of the
  source file as stored on disk, md5 of the bytes tokenised, tokenisation, split rule), named
  ``<source file name>.<tokenization>.{train,valid,test}.npy`` / ``.json``, written next to the
  source or in ``cache_dir``. Every file is written under a temporary name in the same folder
  and moved into place with ``os.replace``; the JSON is written last and acts as the commit
  record. A cache is reused only when its JSON matches the source's md5 and size, the
  tokenisation and the format version, and the arrays load with the recorded sizes, dtype
  and token range; otherwise it is rebuilt. The source md5 is recomputed on every call
  (about 0.2 s for enwik8), so a changed source is never served from a stale cache. When the
  cache folder cannot be written (read-only data folder) a ``RuntimeWarning`` is issued and
  the tokens are returned from memory. The built-in corpus (``src=None``) is cached only if
  ``cache_dir`` is given (it takes well under a second to rebuild).

Errors (``ValueError`` subclasses, naming the file or argument): missing source, wrong size
(with the size found), zip without an ``enwik8`` member, unknown tokenisation, parts left
empty after newline dropping.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from elm_neuro.atomic import write_atomic
from elm_neuro.data.text_corpus import DEFAULT_CORPUS_BYTES, build_default_corpus

__all__ = [
    "ENWIK8_SIZE",
    "TOKENIZATIONS",
    "SPLITS",
    "Enwik8Error",
    "Enwik8NotFoundError",
    "TokenSplits",
    "split_sizes",
    "paper_vocabulary",
    "tokenize_splits",
    "load_enwik8_tokens",
]

#: Size of the enwik8 file in bytes (the first 10**8 bytes of the English Wikipedia dump).
ENWIK8_SIZE = 100_000_000
#: Accepted tokenisations.
TOKENIZATIONS = ("paper", "bytes")
#: Split names, in stream order.
SPLITS = ("train", "valid", "test")
#: Smallest input accepted with ``allow_any_size`` (each 5 % part gets at least one byte).
MIN_SIZE = 20
#: Version of the cache layout; a cache with another version is rebuilt.
CACHE_FORMAT = 1
NEWLINE = 0x0A
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_MEMBER = "enwik8"
_DEFAULT_CORPUS_NAME = "default_corpus"


class Enwik8Error(ValueError):
    """An enwik8 source or argument is not what was expected."""


class Enwik8NotFoundError(Enwik8Error, FileNotFoundError):
    """The enwik8 source does not exist (both a ``ValueError`` and a ``FileNotFoundError``)."""


# ----------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True, eq=False)
class TokenSplits:
    """Token arrays of the three splits and their vocabulary.

    ``train``/``valid``/``test``: 1-D uint8 arrays of token ids. ``vocab``: ``vocab[i]`` is the
    byte value of token ``i``. ``source``: the file read (or ``"<default corpus>"``);
    ``source_md5``: md5 of that file as stored (zip or raw); ``content_md5``: md5 of the bytes
    that were split and tokenised. ``cache_status``: ``"reused"``, ``"written"``, ``"none"``
    (no cache asked for) or ``"unwritable"``. ``cache_files``: the cache files, if any.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: bytes
    tokenization: str
    source: str = ""
    source_md5: str = ""
    content_md5: str = ""
    cache_status: str = "none"
    cache_files: tuple[str, ...] = ()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def sizes(self) -> dict[str, int]:
        """Number of tokens per split."""
        return {name: int(len(getattr(self, name))) for name in SPLITS}

    def split(self, name: str) -> np.ndarray:
        """The token array of split ``name`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def decode(self, ids) -> bytes:
        """Token ids (any integer array-like) -> the bytes they stand for."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"decode: token ids must lie in 0..{self.vocab_size - 1}")
        table = np.frombuffer(self.vocab, dtype=np.uint8)
        return table[ids.astype(np.int64).ravel()].tobytes()

    @property
    def decoder(self) -> Callable[[np.ndarray], bytes]:
        """:meth:`decode` as a plain function."""
        return self.decode

    def encode(self, data: bytes) -> np.ndarray:
        """Bytes -> uint8 token ids; with ``"paper"`` tokens newlines are dropped first.

        Raises ``ValueError`` for a byte that has no token id.
        """
        arr = np.frombuffer(bytes(data), dtype=np.uint8)
        if self.tokenization == "paper":
            arr = arr[arr != NEWLINE]
        lut = np.full(256, -1, dtype=np.int16)
        lut[np.frombuffer(self.vocab, dtype=np.uint8)] = np.arange(self.vocab_size)
        ids = lut[arr]
        if ids.size and ids.min() < 0:
            bad = int(arr[np.argmax(ids < 0)])
            raise ValueError(f"encode: byte 0x{bad:02x} is not in the vocabulary")
        return ids.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Pure split / tokenise


def split_sizes(n: int) -> tuple[int, int, int]:
    """The 90/5/5 split of ``n`` raw bytes: ``(n*90//100, n*5//100, rest)``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < MIN_SIZE:
        raise ValueError(f"split_sizes: expected an integer number of bytes >= {MIN_SIZE}, got {n!r}")
    n = int(n)
    n_train = n * 90 // 100
    n_valid = n * 5 // 100
    return n_train, n_valid, n - n_train - n_valid


def _as_uint8(data) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ValueError(f"data: expected bytes or a 1-D uint8 array, got {arr.dtype} {arr.shape}")
    return arr


def paper_vocabulary(data) -> bytes:
    """Byte values of ``data`` (newlines excluded) sorted by falling count, ties by byte value.

    >>> paper_vocabulary(b"abracadabra")
    b'abrcd'
    """
    counts = np.bincount(_as_uint8(data), minlength=256).astype(np.int64)
    counts[NEWLINE] = 0
    values = np.arange(256)
    order = np.lexsort((values, -counts))  # last key is primary: count descending, then value
    order = order[counts[order] > 0]
    return bytes(order.astype(np.uint8).tolist())


def tokenize_splits(data, tokenization: str = "paper") -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """Split raw ``data`` 90/5/5 and tokenise each part (see module docstring).

    Returns ``(train, valid, test, vocab)`` with uint8 token arrays. Raises ``ValueError`` for
    an unknown tokenisation, input shorter than ``MIN_SIZE`` bytes, or a part that is empty
    after newline dropping.
    """
    _check_tokenization(tokenization)
    arr = _as_uint8(data)
    n_train, n_valid, _ = split_sizes(len(arr))
    parts = [arr[:n_train], arr[n_train : n_train + n_valid], arr[n_train + n_valid :]]
    if tokenization == "bytes":
        return (*(np.array(p, dtype=np.uint8) for p in parts), bytes(range(256)))
    vocab = paper_vocabulary(arr)
    lut = np.zeros(256, dtype=np.uint8)
    lut[np.frombuffer(vocab, dtype=np.uint8)] = np.arange(len(vocab), dtype=np.uint8)
    out = []
    for name, part in zip(SPLITS, parts):
        kept = part[part != NEWLINE]
        if kept.size == 0:
            raise ValueError(f"{name} split is empty after dropping newlines ({part.size} raw bytes)")
        out.append(lut[kept])
    return out[0], out[1], out[2], vocab


def _check_tokenization(tokenization) -> None:
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f"tokenization: expected one of {TOKENIZATIONS}, got {tokenization!r}")


# ----------------------------------------------------------------------------------------------
# Source files


def _resolve_source(src) -> Path:
    path = Path(src).expanduser()
    if path.is_dir():
        for name in ("enwik8", "enwik8.zip"):
            if (path / name).is_file():
                return path / name
        raise Enwik8NotFoundError(f"enwik8 source folder {path} holds neither 'enwik8' nor 'enwik8.zip'")
    if not path.is_file():
        raise Enwik8NotFoundError(
            f"enwik8 source {path} does not exist (get http://mattmahoney.net/dc/enwik8.zip and give its path, "
            "or leave the source out for the built-in standard-library text corpus: no --data / --src on the "
            "command line, src=None in Python)"
        )
    return path


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == _ZIP_MAGIC


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


def _content_size(path: Path) -> int:
    """Size of the bytes to tokenise: the file size, or the ``enwik8`` member's for a zip."""
    if not _is_zip(path):
        if path.suffix.lower() == ".zip":
            raise Enwik8Error(f"enwik8 source {path} is named .zip but is not a zip archive")
        return path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if _ZIP_MEMBER not in names:
                raise Enwik8Error(
                    f"enwik8 source {path}: zip archive has no member {_ZIP_MEMBER!r} "
                    f"(members: {names[:5]}{' ...' if len(names) > 5 else ''})"
                )
            return zf.getinfo(_ZIP_MEMBER).file_size
    except zipfile.BadZipFile as exc:
        raise Enwik8Error(f"enwik8 source {path}: unreadable zip archive ({exc})") from exc


def _read_content(path: Path) -> bytes:
    if not _is_zip(path):
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read(_ZIP_MEMBER)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Enwik8Error(f"enwik8 source {path}: unreadable zip archive ({exc})") from exc


def _check_size(path: Path, size: int, allow_any_size: bool) -> None:
    what = f"enwik8 source {path}" + (f" (member {_ZIP_MEMBER!r})" if _is_zip(path) else "")
    if allow_any_size:
        if size < MIN_SIZE:
            raise Enwik8Error(f"{what}: {size} bytes, expected at least {MIN_SIZE} to split 90/5/5")
    elif size != ENWIK8_SIZE:
        raise Enwik8Error(
            f"{what}: {size} bytes, expected exactly {ENWIK8_SIZE} (the enwik8 file); training needs enwik8 "
            "itself (or no --data for the built-in text corpus); only `elm-neuro data enwik8 --allow-any-size` "
            "(allow_any_size=True) splits another file 90/5/5"
        )


# ----------------------------------------------------------------------------------------------
# Atomic cache


def _cache_paths(folder: Path, stem: str, tokenization: str) -> dict[str, Path]:
    paths = {name: folder / f"{stem}.{tokenization}.{name}.npy" for name in SPLITS}
    paths["meta"] = folder / f"{stem}.{tokenization}.json"
    return paths


def _load_cache(paths: dict[str, Path], expect: dict) -> tuple[dict, dict[str, np.ndarray]] | None:
    """The cached metadata and arrays if they match ``expect`` and are intact, else ``None``."""
    try:
        meta = json.loads(paths["meta"].read_text())
        for key, value in expect.items():
            if meta.get(key) != value:
                return None
        vocab_size = len(meta["vocab"])
        arrays = {}
        for name in SPLITS:
            arr = np.load(paths[name], allow_pickle=False)
            if arr.dtype != np.uint8 or arr.ndim != 1 or len(arr) != meta["sizes"][name]:
                return None
            if arr.size and int(arr.max()) >= vocab_size:
                return None
            arrays[name] = arr
        meta["vocab"] = bytes(meta["vocab"])
        if not isinstance(meta["content_md5"], str):
            return None
        return meta, arrays
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


def _write_cache(paths: dict[str, Path], meta: dict, arrays: dict[str, np.ndarray]) -> None:
    paths["meta"].parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        paths["meta"].unlink()  # arrays are about to change: invalidate the commit record first
    for name in SPLITS:
        write_atomic(paths[name], lambda fh, a=arrays[name]: np.save(fh, a, allow_pickle=False))
    text = json.dumps(meta, indent=1).encode("utf-8")
    write_atomic(paths["meta"], lambda fh: fh.write(text))


# ----------------------------------------------------------------------------------------------
# Entry point


def load_enwik8_tokens(
    src: str | os.PathLike | None = None,
    tokenization: str = "paper",
    cache_dir: str | os.PathLike | None = None,
    allow_any_size: bool = False,
    corpus_bytes: int | None = DEFAULT_CORPUS_BYTES,
) -> TokenSplits:
    """Split and tokenise enwik8 (or the built-in corpus), using or refreshing the cache.

    ``src``: the ``enwik8`` file, ``enwik8.zip``, a folder holding one of them, or ``None`` for
    the built-in standard-library corpus of ``corpus_bytes`` bytes (always split with
    ``allow_any_size``). ``tokenization``: ``"paper"`` or ``"bytes"``. ``cache_dir``: where to
    cache (default: next to ``src``; for ``src=None`` no cache unless given). See the module
    docstring for the split, tokenisation and cache rules.
    """
    _check_tokenization(tokenization)
    if src is None:
        data = build_default_corpus(corpus_bytes)
        if corpus_bytes is not None and len(data) < corpus_bytes:
            raise Enwik8Error(f"corpus_bytes (--corpus-bytes) {corpus_bytes}: the built-in text corpus has only "
                              f"{len(data)} bytes on this Python installation; give at most {len(data)}, or use "
                              f"enwik8 itself (--data / --src)")
        source, stem = "<default corpus>", _DEFAULT_CORPUS_NAME
        source_md5 = content_md5 = hashlib.md5(data).hexdigest()
        size = len(data)
        folder = None if cache_dir is None else Path(cache_dir).expanduser()
        path = None
    else:
        path = _resolve_source(src)
        size = _content_size(path)
        _check_size(path, size, allow_any_size)
        source, stem = str(path), path.name
        source_md5 = _file_md5(path)
        data = content_md5 = None
        folder = Path(cache_dir).expanduser() if cache_dir is not None else path.parent

    expect = {
        "format": CACHE_FORMAT,
        "tokenization": tokenization,
        "source_md5": source_md5,
        "source_content_size": size,
    }
    paths = _cache_paths(folder, stem, tokenization) if folder is not None else None
    if paths is not None:
        cached = _load_cache(paths, expect)
        if cached is not None:
            meta, arrays = cached
            return TokenSplits(
                **arrays,
                vocab=meta["vocab"],
                tokenization=tokenization,
                source=source,
                source_md5=source_md5,
                content_md5=meta["content_md5"],
                cache_status="reused",
                cache_files=tuple(str(p) for p in paths.values()),
            )

    if data is None:
        data = _read_content(path)
        if len(data) != size:
            raise Enwik8Error(f"enwik8 source {path}: read {len(data)} bytes, expected {size}")
        content_md5 = hashlib.md5(data).hexdigest()
    train, valid, test, vocab = tokenize_splits(data, tokenization)
    del data
    arrays = {"train": train, "valid": valid, "test": test}

    status, files = "none", ()
    if paths is not None:
        n_train, n_valid, n_test = split_sizes(size)
        meta = {
            **expect,
            "source": source,
            "content_md5": content_md5,
            "raw_split_bytes": {"train": n_train, "valid": n_valid, "test": n_test},
            "split_rule": "raw bytes split 90/5/5 (n*90//100, n*5//100, rest) before tokenising",
            "newlines": "dropped from each part after the split" if tokenization == "paper" else "kept",
            "sizes": {name: int(len(a)) for name, a in arrays.items()},
            "vocab_size": len(vocab),
            "vocab": list(vocab),
        }
        try:
            _write_cache(paths, meta, arrays)
            status, files = "written", tuple(str(p) for p in paths.values())
        except OSError as exc:
            warnings.warn(
                f"enwik8 cache in {folder} could not be written ({exc}); using tokens from memory",
                RuntimeWarning,
                stacklevel=2,
            )
            status = "unwritable"
    return TokenSplits(
        train=train,
        valid=valid,
        test=test,
        vocab=vocab,
        tokenization=tokenization,
        source=source,
        source_md5=source_md5,
        content_md5=content_md5,
        cache_status=status,
        cache_files=files,
    )
