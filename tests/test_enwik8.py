"""Enwik8 split / tokenisation / cache, the built-in corpus and the ``data enwik8`` CLI."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

from elm_neuro import atomic
from elm_neuro.cli.data_enwik8 import add_enwik8_parser
from elm_neuro.data import enwik8 as e8
from elm_neuro.data.enwik8 import (
    ENWIK8_SIZE,
    Enwik8Error,
    load_enwik8_tokens,
    paper_vocabulary,
    split_sizes,
    tokenize_splits,
)
from elm_neuro.data.text_corpus import DEFAULT_MODULES, build_default_corpus, corpus_sources


def fake_text(n: int = 10_000, seed: int = 0) -> bytes:
    """Skewed random bytes with newlines, like text: few frequent symbols, many rare ones."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b" etaoinshrdlu\n<>[]{}|=", dtype=np.uint8)
    weights = np.arange(len(alphabet), 0, -1, dtype=float) ** 2
    data = rng.choice(alphabet, size=n, p=weights / weights.sum()).astype(np.uint8)
    data[rng.integers(0, n, 30)] = rng.integers(128, 256, 30)  # rare high bytes
    return data.tobytes()


@pytest.fixture()
def fake(tmp_path):
    data = fake_text()
    path = tmp_path / "enwik8"
    path.write_bytes(data)
    return path, data


def leftover_temp_files(folder) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith(".tmp")]


# --- pure split / tokenise -------------------------------------------------------------------

def test_split_sizes_standard_and_small():
    assert split_sizes(ENWIK8_SIZE) == (90_000_000, 5_000_000, 5_000_000)
    assert split_sizes(10_000) == (9000, 500, 500)
    assert split_sizes(10_001) == (9000, 500, 501)
    with pytest.raises(ValueError, match="split_sizes"):
        split_sizes(5)


def test_paper_vocabulary_hand_checked():
    # counts without newlines: a 5, b 2, r 2, z 2, c 1, d 1 -> ties by byte value (b < r < z)
    assert paper_vocabulary(b"abracadabra\n\nzz\n") == b"abrzcd"
    # newlines never get an id even when they are the most frequent byte
    assert paper_vocabulary(b"\n\n\n\nyx") == b"xy"


def test_paper_tokens_hand_checked():
    # 20 bytes: train 18, valid 1, test 1; newline dropped from train after the split
    data = b"bbba\nbbaab\ncaaaaa\nbc"
    train, valid, test, vocab = tokenize_splits(data, "paper")
    # counts (no newlines): a 8, b 7, c 2 -> a=0, b=1, c=2
    assert vocab == b"abc"
    assert train.tolist() == [1, 1, 1, 0, 1, 1, 0, 0, 1, 2, 0, 0, 0, 0, 0]
    assert valid.tolist() == [1] and test.tolist() == [2]
    assert train.dtype == np.uint8


def test_newlines_dropped_after_split():
    # 100 bytes: newlines only in the train part; valid/test keep their full raw size of 5
    data = b"\n" * 40 + b"x" * 50 + b"abcde" + b"fghij"
    train, valid, test, vocab = tokenize_splits(data, "paper")
    assert (len(train), len(valid), len(test)) == (50, 5, 5)
    assert b"\n" not in vocab
    # a part made only of newlines is an error naming the split
    with pytest.raises(ValueError, match="valid split is empty"):
        tokenize_splits(b"a" * 90 + b"\n" * 5 + b"b" * 5, "paper")


def test_bytes_tokenization_is_identity():
    data = fake_text(1000)
    train, valid, test, vocab = tokenize_splits(data, "bytes")
    assert vocab == bytes(range(256))
    assert train.tobytes() + valid.tobytes() + test.tobytes() == data
    assert (len(train), len(valid), len(test)) == (900, 50, 50)


def test_unknown_tokenization_rejected():
    with pytest.raises(ValueError, match="tokenization.*'chars'"):
        tokenize_splits(b"x" * 100, "chars")


# --- files ------------------------------------------------------------------------------------

def test_fake_enwik8_paper_split_and_mapping(fake):
    path, data = fake
    s = load_enwik8_tokens(path, "paper", allow_any_size=True)
    raw = [data[:9000], data[9000:9500], data[9500:]]
    for name, part in zip(("train", "valid", "test"), raw):
        tokens = s.split(name)
        assert tokens.dtype == np.uint8
        assert len(tokens) == len(part) - part.count(b"\n")
        assert s.decode(tokens) == part.replace(b"\n", b"")
    counts = np.bincount(np.frombuffer(data, np.uint8), minlength=256)
    counts[10] = 0
    assert s.vocab_size == int((counts > 0).sum())
    ranked = [counts[v] for v in s.vocab]
    assert ranked == sorted(ranked, reverse=True)  # token id = frequency rank
    assert s.vocab[0] == ord(" ")  # the most frequent symbol of fake_text
    assert s.encode(b"e\nt").tolist() == [s.vocab.index(b"e"), s.vocab.index(b"t")]
    assert s.source_md5 == hashlib.md5(data).hexdigest() == s.content_md5


def test_fake_enwik8_bytes(fake):
    path, data = fake
    s = load_enwik8_tokens(path, "bytes", allow_any_size=True)
    assert s.sizes == {"train": 9000, "valid": 500, "test": 500}
    assert s.vocab_size == 256
    assert s.train.tobytes() == data[:9000] and s.test.tobytes() == data[9500:]


def test_wrong_size_without_flag_names_file_and_size(fake):
    path, _ = fake
    with pytest.raises(Enwik8Error, match=rf"{path.name}.*10000 bytes.*100000000") as info:
        load_enwik8_tokens(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not list(path.parent.glob("*.npy"))  # rejected before anything was written


def test_missing_source_is_value_error(tmp_path):
    with pytest.raises(ValueError, match="nope.*does not exist"):
        load_enwik8_tokens(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        load_enwik8_tokens(tmp_path / "nope")
    with pytest.raises(ValueError, match="neither 'enwik8' nor 'enwik8.zip'"):
        load_enwik8_tokens(tmp_path)


def test_zip_source_matches_raw(fake, tmp_path):
    path, data = fake
    zpath = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("enwik8", data)
    raw = load_enwik8_tokens(path, allow_any_size=True)
    zipped = load_enwik8_tokens(zpath, allow_any_size=True)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(raw.split(name), zipped.split(name))
    assert zipped.vocab == raw.vocab
    assert zipped.content_md5 == raw.content_md5 != zipped.source_md5
    # the size check applies to the member, not to the compressed file
    with pytest.raises(ValueError, match=r"enwik8\.zip \(member 'enwik8'\): 10000 bytes"):
        load_enwik8_tokens(zpath)


def test_zip_without_member_and_fake_zip(tmp_path):
    zpath = tmp_path / "other.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("text.txt", b"x" * 100)
    with pytest.raises(ValueError, match=r"other\.zip.*no member 'enwik8'.*text\.txt"):
        load_enwik8_tokens(zpath, allow_any_size=True)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(ValueError, match=r"bad\.zip is named \.zip but is not a zip archive"):
        load_enwik8_tokens(bad, allow_any_size=True)


def test_folder_source_and_too_small(tmp_path):
    (tmp_path / "enwik8").write_bytes(b"a\nb" * 4)  # 12 bytes
    with pytest.raises(ValueError, match="12 bytes, expected at least 20"):
        load_enwik8_tokens(tmp_path, allow_any_size=True)
    (tmp_path / "enwik8").write_bytes(b"ab" * 50)
    s = load_enwik8_tokens(tmp_path, "bytes", allow_any_size=True)
    assert s.source == str(tmp_path / "enwik8") and s.sizes["train"] == 90


def test_exact_enwik8_size_accepted_without_flag(tmp_path):
    path = tmp_path / "enwik8"
    with open(path, "wb") as fh:  # sparse file of 10^8 zero bytes: fast to make and to read
        fh.truncate(ENWIK8_SIZE)
    s = load_enwik8_tokens(path, "bytes", cache_dir=tmp_path / "cache")
    assert s.sizes == {"train": 90_000_000, "valid": 5_000_000, "test": 5_000_000}
    with open(path, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ValueError, match="100000001 bytes, expected exactly 100000000"):
        load_enwik8_tokens(path, "bytes", cache_dir=tmp_path / "cache")
    for name in s.cache_files:  # do not leave 100 MB behind in pytest's kept temp folders
        os.unlink(name)


# --- cache ------------------------------------------------------------------------------------

def test_cache_written_then_reused(fake):
    path, data = fake
    first = load_enwik8_tokens(path, allow_any_size=True)
    assert first.cache_status == "written"
    folder = path.parent
    names = sorted(f for f in os.listdir(folder) if f != "enwik8")
    assert names == [
        "enwik8.paper.json", "enwik8.paper.test.npy", "enwik8.paper.train.npy", "enwik8.paper.valid.npy",
    ]
    assert leftover_temp_files(folder) == []
    meta = json.loads((folder / "enwik8.paper.json").read_text())
    assert meta["source_md5"] == hashlib.md5(data).hexdigest()
    assert meta["tokenization"] == "paper"
    assert meta["sizes"] == first.sizes and meta["vocab_size"] == first.vocab_size
    assert bytes(meta["vocab"]) == first.vocab
    np.testing.assert_array_equal(np.load(folder / "enwik8.paper.train.npy"), first.train)

    second = load_enwik8_tokens(path, allow_any_size=True)
    assert second.cache_status == "reused"
    assert second.vocab == first.vocab
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(second.split(name), first.split(name))

    # a different tokenisation has its own cache; the first one stays valid
    assert load_enwik8_tokens(path, "bytes", allow_any_size=True).cache_status == "written"
    assert load_enwik8_tokens(path, allow_any_size=True).cache_status == "reused"


def test_cache_rebuilt_when_source_changes_or_cache_is_damaged(fake):
    path, data = fake
    load_enwik8_tokens(path, allow_any_size=True)
    path.write_bytes(data[::-1])  # same size, other content
    s = load_enwik8_tokens(path, allow_any_size=True)
    assert s.cache_status == "written"
    assert s.decode(s.train) == data[::-1][:9000].replace(b"\n", b"")
    npy = path.parent / "enwik8.paper.valid.npy"
    npy.write_bytes(npy.read_bytes()[:-7])  # truncated array
    assert load_enwik8_tokens(path, allow_any_size=True).cache_status == "written"
    assert load_enwik8_tokens(path, allow_any_size=True).cache_status == "reused"


def test_cache_dir_and_size_check_before_cache(fake, tmp_path):
    path, _ = fake
    cache = tmp_path / "c" / "d"
    s = load_enwik8_tokens(path, cache_dir=cache, allow_any_size=True)
    assert s.cache_status == "written" and all(str(cache) in f for f in s.cache_files)
    assert not list(path.parent.glob("*.npy"))
    # a valid cache for a small file must not let it through without allow_any_size
    with pytest.raises(ValueError, match="10000 bytes"):
        load_enwik8_tokens(path, cache_dir=cache)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, fake, monkeypatch):
    target = tmp_path / "out.npy"

    def broken(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.write_atomic(target, broken)
    assert os.listdir(tmp_path) == ["enwik8"]

    # an unwritable cache folder: warning, tokens from memory, no stray files
    path, _ = fake

    def failing_replace(src, dst):
        raise PermissionError("read-only")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.warns(RuntimeWarning, match="could not be written"):
        s = load_enwik8_tokens(path, allow_any_size=True)
    assert s.cache_status == "unwritable" and len(s.train) > 0
    assert os.listdir(tmp_path) == ["enwik8"]


# --- built-in corpus ---------------------------------------------------------------------------

def test_default_corpus_deterministic_and_real_text():
    a = build_default_corpus(200_000)
    b = build_default_corpus(200_000)
    assert a == b and len(a) == 200_000
    assert a.startswith(b"\n\n# ===== module " + DEFAULT_MODULES[0].encode())
    assert b"def " in a and b"return" in a
    assert len(set(a)) > 70  # letters, digits, punctuation, whitespace
    sources = corpus_sources()
    assert len(sources) >= 0.9 * len(DEFAULT_MODULES)
    assert [n for n, _ in sources] == sorted(n for n, _ in sources)
    assert len(build_default_corpus(None)) > 2_000_000  # "a few MB" available
    with pytest.raises(ValueError, match="max_bytes"):
        build_default_corpus(0)


def test_default_corpus_tokens(tmp_path):
    s = load_enwik8_tokens(None, corpus_bytes=100_000)
    assert s.sizes == {
        "train": 90_000 - build_default_corpus(100_000)[:90_000].count(b"\n"),
        "valid": 5000 - build_default_corpus(100_000)[90_000:95_000].count(b"\n"),
        "test": 5000 - build_default_corpus(100_000)[95_000:].count(b"\n"),
    }
    assert 60 < s.vocab_size < 200 and s.cache_status == "none" and s.vocab[0] == ord(" ")
    assert s.decode(s.valid) == build_default_corpus(100_000)[90_000:95_000].replace(b"\n", b"")
    again = load_enwik8_tokens(None, corpus_bytes=100_000, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train, s.train)
    assert again.cache_status == "written"
    assert load_enwik8_tokens(None, corpus_bytes=100_000, cache_dir=tmp_path).cache_status == "reused"


# --- CLI --------------------------------------------------------------------------------------

def make_cli():
    parser = argparse.ArgumentParser(prog="elm-neuro")
    sub = parser.add_subparsers(dest="command")
    data = sub.add_parser("data").add_subparsers(dest="data_command")
    add_enwik8_parser(data)
    return parser


def test_cli_prints_sizes_and_vocab(fake, tmp_path, capsys):
    path, data = fake
    args = make_cli().parse_args(
        ["data", "enwik8", "--src", str(path), "--allow-any-size", "--cache", str(tmp_path / "c")]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    s = load_enwik8_tokens(path, allow_any_size=True, cache_dir=tmp_path / "c")
    assert f"vocab_size    {s.vocab_size}" in out
    assert f"train         {s.sizes['train']}" in out and f"test          {s.sizes['test']}" in out
    assert "cache         written" in out

    args = make_cli().parse_args(
        ["data", "enwik8", "--src", str(path), "--allow-any-size", "--tokenization", "bytes", "--json"]
    )
    assert args.func(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["vocab_size"] == 256 and (row["train"], row["valid"], row["test"]) == (9000, 500, 500)


def test_cli_default_corpus_and_errors(fake, capsys):
    args = make_cli().parse_args(["data", "enwik8", "--corpus-bytes", "50000", "--json"])
    assert args.func(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["source"] == "<default corpus>" and row["cache"] == "none"
    args = make_cli().parse_args(["data", "enwik8", "--src", str(fake[0])])
    with pytest.raises(ValueError, match="10000 bytes"):
        args.func(args)
    with pytest.raises(SystemExit):
        make_cli().parse_args(["data", "enwik8", "--tokenization", "words"])
