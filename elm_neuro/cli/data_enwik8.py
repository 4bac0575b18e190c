"""``elm-neuro data enwik8``: split, tokenise and cache enwik8 (docs/design.md §8).

    elm-neuro data enwik8 --src data/enwik8.zip                    # paper tokens, 204 symbols
    elm-neuro data enwik8 --src data/enwik8 --tokenization bytes   # 256 byte tokens
    elm-neuro data enwik8 --src small.txt --allow-any-size --cache /tmp/c
    elm-neuro data enwik8 --cache /tmp/c                           # no --src: built-in corpus

Prints the source, its md5, the tokenisation, the vocabulary size, the token count of each
split and where the cache is (``--json`` prints the same as one JSON object). Without
``--src`` the built-in standard-library text corpus is used (``--corpus-bytes`` sets its size;
cached only when ``--cache`` is given). ``add_enwik8_parser`` is hooked into
``elm-neuro data`` by :mod:`elm_neuro.cli.data`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from elm_neuro.data.enwik8 import TOKENIZATIONS, load_enwik8_tokens
from elm_neuro.data.text_corpus import DEFAULT_CORPUS_BYTES

__all__ = ["add_enwik8_parser", "run_enwik8"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def run_enwik8(args: argparse.Namespace) -> int:
    """Prepare the tokens as ``args`` asks and print a summary; returns 0."""
    splits = load_enwik8_tokens(
        src=args.src,
        tokenization=args.tokenization,
        cache_dir=args.cache,
        allow_any_size=args.allow_any_size,
        corpus_bytes=args.corpus_bytes,
    )
    folder = None
    if splits.cache_files:
        folder = str(Path(splits.cache_files[0]).parent)
    row = {
        "source": splits.source,
        "source_md5": splits.source_md5,
        "tokenization": splits.tokenization,
        "vocab_size": splits.vocab_size,
        **splits.sizes,
        "cache": splits.cache_status,
        "cache_dir": folder,
    }
    if args.json:
        print(json.dumps(row))
        return 0
    print(f"source        {row['source']}  (md5 {row['source_md5']})")
    print(f"tokenization  {row['tokenization']}")
    print(f"vocab_size    {row['vocab_size']}")
    for name in ("train", "valid", "test"):
        print(f"{name:<13} {row[name]}")
    print(f"cache         {row['cache']}" + (f"  ({folder})" if folder else ""))
    return 0


def add_enwik8_parser(data_subparsers) -> argparse.ArgumentParser:
    """Add the ``enwik8`` sub-command to the ``elm-neuro data`` sub-parsers; returns its parser."""
    p = data_subparsers.add_parser(
        "enwik8",
        help="split (90/5/5), tokenise and cache enwik8 or the built-in text corpus",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--src", default=None,
                   help="enwik8 file, enwik8.zip or a folder holding one (default: the built-in "
                        "standard-library text corpus)")
    p.add_argument("--tokenization", choices=TOKENIZATIONS, default="paper",
                   help="paper: newlines dropped, symbols by frequency rank; bytes: 256 byte "
                        "tokens (default: paper)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache folder (default: next to --src; none for the built-in corpus)")
    p.add_argument("--allow-any-size", action="store_true",
                   help="accept a source that is not exactly 10^8 bytes (split 90/5/5 anyway)")
    p.add_argument("--corpus-bytes", type=_positive_int, default=DEFAULT_CORPUS_BYTES,
                   help=f"size of the built-in corpus when --src is not given "
                        f"(default: {DEFAULT_CORPUS_BYTES})")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run_enwik8)
    return p
