"""Language modelling (docs/design.md §8): bits per character by hand, carried state, a tiny training run on
the built-in corpus, resume equivalence, the train/sample CLI, and text generation."""
import json
import math
import os
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn as nn

from elm_neuro.cli.main import main
from elm_neuro.data.enwik8 import load_enwik8_tokens
from elm_neuro.networks.elm_network import ELMNetwork
from elm_neuro.networks.lstm import LSTMConfig, LSTMNetwork
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.language import map_state, reset_rows, stream_bpc, train_language_model
from elm_neuro.training.run import RunDir, load_run
from elm_neuro.training.sampling import decode_tokens, encode_prompt, generate, load_vocab, sample_run

TINY = dict(d_m=2, n=6, d_tree=3, d_brch=2)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokens():
    return load_enwik8_tokens(None, corpus_bytes=100_000)


def lm_cfg(**kw):
    base = dict(task="enwik8", epochs=2, batches_per_epoch=10, batch_size=8, chunk_len=30, optimizer="adam",
                lr=1e-2, warmup=2, log_every=5, eval_tokens=1000, reset_steps=10, device="cpu",
                model_overrides=dict(TINY))
    base.update(kw)
    return TrainConfig(**base)


def tiny_elm(v, seed=0):
    return ELMNetwork.from_preset("enwik8", n_in=v, n_classes=v, seed=seed, **TINY)


# ----------------------------------------------------------------------------- toy models
class ToyOut(NamedTuple):
    logits: torch.Tensor
    state: object
    regularizers: dict
    traces: object


class BigramModel(nn.Module):
    """logits_t = table[x_t]: a model whose output is known in closed form (no state)."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def forward(self, x, state=None, record=False):
        return ToyOut(self.table[x], state, {}, None)


class CounterModel(nn.Module):
    """State = number of tokens seen; the next token is (count mod V) with certainty."""

    def __init__(self, v):
        super().__init__()
        self.v = v
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, state=None, record=False):
        b, t = x.shape
        start = torch.zeros(b, dtype=torch.long) if state is None else state
        count = start[:, None] + torch.arange(1, t + 1)
        logits = torch.full((b, t, self.v), -1e4)
        logits.scatter_(2, (count % self.v)[..., None], 0.0)
        return ToyOut(logits, count[:, -1], {}, None)


# ----------------------------------------------------------------------------- (a) BPC by hand
def test_uniform_model_gives_log2_vocab_bits():
    v = 37
    toks = np.random.default_rng(0).integers(0, v, 1001)
    res = stream_bpc(BigramModel(np.zeros((v, v))), toks, 4, 7, CPU, TrainConfig(task="enwik8"))
    assert res["n"] == 4 * (1001 // 4 - 1) == 996
    assert res["bpc"] == pytest.approx(math.log2(v), rel=1e-6)
    assert res["loss"] == pytest.approx(math.log(v), rel=1e-6)


def test_bigram_model_bpc_equals_hand_computation():
    rng = np.random.default_rng(1)
    v, n, b = 11, 503, 3
    table = rng.normal(0, 2, (v, v))
    toks = rng.integers(0, v, n)
    res = stream_bpc(BigramModel(table), toks, b, 9)
    rows = toks[: b * (n // b)].reshape(b, -1)
    logp = table - np.log(np.exp(table).sum(1, keepdims=True))
    nats = -sum(logp[r[i], r[i + 1]] for r in rows for i in range(len(r) - 1))
    count = b * (rows.shape[1] - 1)
    assert res["n"] == count
    assert res["bpc"] == pytest.approx(nats / count / math.log(2), rel=1e-5)


# ----------------------------------------------------------------------------- (b) carried state
def test_chunked_bpc_equals_one_long_run(tokens):
    model = tiny_elm(tokens.vocab_size, seed=3)
    seq = tokens.valid[:601]
    chunked = stream_bpc(model, seq, 4, 7)
    whole = stream_bpc(model, seq, 4, 10_000)  # one chunk covers each whole row
    assert chunked["n"] == whole["n"] == 4 * 149
    assert chunked["bpc"] == pytest.approx(whole["bpc"], abs=1e-5)
    assert chunked["bpc"] > 5.0  # untrained: near log2(V); the comparison is not trivially 0 == 0


def test_reset_rows_zeroes_only_masked_rows(tokens):
    model = tiny_elm(tokens.vocab_size)
    x = torch.as_tensor(tokens.train[:40].astype(np.int64)).view(4, 10)
    state = model(x).state
    mask = torch.tensor([True, False, True, False])
    out = reset_rows(state, mask)
    assert type(out) is type(state) and type(out.hidden) is type(state.hidden)
    leaves, leaves_out = [], []
    map_state(state, leaves.append)
    map_state(out, leaves_out.append)
    assert len(leaves) == len(leaves_out) >= 4
    for before, after in zip(leaves, leaves_out):
        assert before.shape == after.shape and before[~mask].abs().sum() > 0
        assert torch.equal(after[mask], torch.zeros_like(after[mask]))
        assert torch.equal(after[~mask], before[~mask])
    # None fields stay None, a None state stays None
    assert [f is None for f in out.hidden] == [f is None for f in state.hidden]
    assert reset_rows(None, mask) is None
    # a reset row continues exactly like a fresh sequence
    x2 = torch.as_tensor(tokens.train[40:60].astype(np.int64)).view(4, 5)
    cont = model(x2, out).logits
    fresh = model(x2).logits
    torch.testing.assert_close(cont[mask], fresh[mask], rtol=0, atol=0)
    assert not torch.allclose(cont[~mask], fresh[~mask])


# ----------------------------------------------------------------------------- (c) learning
def test_tiny_training_run_lowers_bpc(tokens, tmp_path):
    cfg = lm_cfg(epochs=3, batches_per_epoch=20, model_overrides=dict(TINY, n=16))
    summary = train_language_model(tmp_path / "lm", cfg, tokens=tokens, progress=False)
    v = tokens.vocab_size
    assert summary["status"] == "completed" and summary["steps"] == 60 and summary["family"] == "elm"
    assert summary["valid_bpc"] < math.log2(v) - 1.5  # log2(90) = 6.49; reached ~4.2
    assert summary["test_bpc"] < math.log2(v) - 1.5
    run = RunDir(tmp_path / "lm")
    rows = run.read_metrics()
    train = [r for r in rows if r["kind"] == "train"]
    valid = [r for r in rows if r["kind"] == "valid"]
    assert len(train) == 60 // 5 and len(valid) == 3 and rows[-1]["kind"] == "final"
    assert train[-1]["bpc"] < train[0]["bpc"] - 1.0
    assert summary["valid_tokens"] == 8 * (len(tokens.valid) // 8 - 1)
    vocab = json.loads((run.path / "vocab.json").read_text())
    assert vocab == {"vocab": list(tokens.vocab), "tokenization": "paper"}
    conf = run.read_config()
    assert conf["model"]["config"]["n_in"] == conf["model"]["config"]["n_classes"] == v
    # load_run + stream_bpc reproduces the summary's final validation BPC
    loaded = load_run(tmp_path / "lm")
    again = stream_bpc(loaded.model, tokens.valid, cfg.batch_size, cfg.chunk_len)
    assert again["bpc"] == pytest.approx(summary["valid_bpc"], abs=1e-6)
    # and the trained model samples text from its vocabulary, deterministically
    text = generate(loaded.model, load_vocab(run.path), "def ", 30, seed=1)
    assert len(text) == 30 and set(text) <= set(tokens.vocab)
    assert text == generate(loaded.model, load_vocab(run.path), "def ", 30, seed=1)


# ----------------------------------------------------------------------------- (d) resume
def test_resume_gives_identical_run(tokens, tmp_path):
    cfg = lm_cfg(epochs=3, batches_per_epoch=7)  # 7 steps/epoch: stops mid-row, carried state matters
    full = train_language_model(tmp_path / "full", cfg, tokens=tokens, progress=False)
    assert train_language_model(tmp_path / "part", cfg, tokens=tokens, progress=False, stop_after_epochs=1) is None
    part = RunDir(tmp_path / "part")
    ck = torch.load(part.checkpoint, weights_only=True)
    assert part.read_summary() is None and ck["step"] == 7 and "__namedtuple__" in ck["carried_state"]  # plain data
    part.append_metric({"kind": "train", "epoch": 2, "step": 999, "bpc": 0.0})  # after the checkpoint: dropped
    resumed = train_language_model(tmp_path / "part", resume=True, tokens=tokens, progress=False)
    for key in ("valid_bpc", "test_bpc", "valid_loss", "test_loss", "steps", "best_epoch"):
        assert resumed[key] == full[key], key
    for name in ("checkpoint.pt", "best.pt"):
        a = torch.load(tmp_path / "full" / name, weights_only=True)["model"]
        b = torch.load(tmp_path / "part" / name, weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in RunDir(tmp_path / "full").read_metrics()]
    assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in part.read_metrics()]


def test_lstm_language_model_trains_and_samples(tokens, tmp_path):
    cfg = lm_cfg(model="lstm", epochs=1, batches_per_epoch=30, lr=3e-2, model_overrides=dict(n=12))
    summary = train_language_model(tmp_path / "lstm", cfg, tokens=tokens, progress=False)
    assert summary["family"] == "lstm" and summary["n"] == 12
    conf = RunDir(tmp_path / "lstm").read_config()["model"]["config"]
    assert conf["embedding"] == "one_hot" and conf["n_in"] == tokens.vocab_size  # preset lstm-enwik8
    assert summary["valid_bpc"] < math.log2(tokens.vocab_size) - 1.5  # reached ~4.1
    text = sample_run(tmp_path / "lstm", "class ", 20, seed=4)
    assert len(text) == 20 and text == sample_run(tmp_path / "lstm", "class ", 20, seed=4, which="last")


def test_trainer_input_errors(tokens, tmp_path):
    with pytest.raises(ValueError, match=r"batch_size: the validation prefix .* fewer than 2 per row"):
        train_language_model(tmp_path / "a", lm_cfg(eval_tokens=5), tokens=tokens, progress=False)
    with pytest.raises(ValueError, match="too short for one chunk of chunk_len=20000"):
        train_language_model(tmp_path / "b", lm_cfg(chunk_len=20000), tokens=tokens, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    cfg = lm_cfg(epochs=1, batches_per_epoch=2)
    train_language_model(tmp_path / "c", cfg, tokens=tokens, progress=False, stop_after_epochs=1)
    other = load_enwik8_tokens(None, corpus_bytes=100_000, tokenization="bytes")
    with pytest.raises(ValueError, match="vocabulary of 256 symbols differs from the run's vocab.json"):
        train_language_model(tmp_path / "c", resume=True, tokens=other, progress=False)


# ----------------------------------------------------------------------------- (e) CLI
def test_train_and_sample_cli_on_default_corpus(tmp_path, capsysbinary):
    out = tmp_path / "cli"
    args = ["train", "--task", "enwik8", "--epochs", "1", "--batches-per-epoch", "4", "--batch-size", "64",
            "--set", "d_m=2", "--set", "n=6", "--set", "d_tree=3", "--set", "d_brch=2", "--train-set",
            "chunk_len=20", "--train-set", "eval_tokens=2000", "--device", "cpu", "--no-progress",
            "--out", str(out)]
    assert main(args) == 0
    summary = json.loads(RunDir(out).summary.read_text())
    assert summary["status"] == "completed" and summary["task"] == "enwik8" and summary["steps"] == 4
    conf = RunDir(out).read_config()
    assert conf["train"]["data_dir"] is None and conf["model"]["config"]["n"] == 6
    vocab = load_vocab(out)
    default = load_enwik8_tokens(None)  # what no --data means: the built-in 3 MB corpus
    assert vocab == default.vocab and summary["test_tokens"] == 64 * (len(default.test) // 64 - 1)
    capsysbinary.readouterr()

    sample = ["sample", str(out), "--prompt", "import os\ndef ", "--length", "50", "--seed", "7"]
    assert main(sample) == 0
    first = capsysbinary.readouterr().out
    assert main(sample) == 0
    assert capsysbinary.readouterr().out == first  # deterministic for a seed
    prompt = "import os\ndef ".encode()
    assert first.startswith(prompt) and first.endswith(b"\n") and len(first) == len(prompt) + 50 + 1
    gen = first[len(prompt):-1]
    assert set(gen) <= set(vocab)
    assert gen == sample_run(out, "import os\ndef ", 50, seed=7)
    assert main(sample[:-1] + ["8"]) == 0
    assert capsysbinary.readouterr().out != first
    # greedy decoding through the CLI agrees with the library
    assert main(sample + ["--top-k", "1", "--temperature", "0.5"]) == 0
    assert capsysbinary.readouterr().out[len(prompt):-1] == sample_run(out, "import os\ndef ", 50, top_k=1)

    # errors: one line on stderr, exit code 2
    for extra, msg in ((["--length", "0"], b"length must be an integer >= 1"),
                       (["--temperature", "-1"], b"temperature must be a finite number > 0"),
                       (["--prompt", ""], b"prompt: empty")):
        assert main(["sample", str(out), "--prompt", "x", "--length", "5"] + extra) == 2
        assert msg in capsysbinary.readouterr().err
    assert main(["sample", str(tmp_path / "nowhere"), "--prompt", "x", "--length", "5"]) == 2
    assert b"config.json not found" in capsysbinary.readouterr().err
    # a binary prompt (bytes that are not UTF-8 reach argv as surrogate escapes) is checked byte by byte
    assert 0xFF not in vocab
    assert main(["sample", str(out), "--prompt", os.fsdecode(b"de\xff"), "--length", "5"]) == 2
    err = capsysbinary.readouterr().err
    assert b"--prompt: byte b'\\xff' (0xff) at position 2 is not in the model's vocabulary" in err
    assert b"Traceback" not in err and len(err.strip().splitlines()) == 1


def test_sample_refuses_a_classification_run(tmp_path):
    d = tmp_path / "shd"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"train": {"task": "shd"}, "model": {}}))
    with pytest.raises(ValueError, match="holds a 'shd' run, not a language model"):
        sample_run(d, "x", 3)


# ----------------------------------------------------------------------------- generation
def test_generation_carries_state():
    v = 7
    vocab = b"abcdefg"
    # after a prompt of 3 tokens the counter model predicts tokens 3, 4, 5, ... (mod 7)
    text = generate(CounterModel(v), vocab, "abc", 10)
    assert text == decode_tokens(vocab, [(3 + i) % v for i in range(10)]) == b"defgabcdef"


def test_greedy_generation_matches_one_long_forward_pass(tokens):
    model = tiny_elm(tokens.vocab_size, seed=5)
    vocab = tokens.vocab
    prompt = "for i in range(10):\n    x = "
    gen = generate(model, vocab, prompt, 25, top_k=1)
    ids = encode_prompt(vocab, prompt) + encode_prompt(vocab, gen)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    p = len(encode_prompt(vocab, prompt))
    assert logits[p - 1:-1].argmax(-1).tolist() == ids[p:]
    assert b"\n" not in decode_tokens(vocab, ids)  # paper tokenisation: prompt newline dropped


def test_lstm_with_one_hot_embedding_generates():
    vocab = bytes(range(97, 107))
    model = LSTMNetwork(LSTMConfig(n_in=10, n=8, n_classes=10, embedding="one_hot", seed=2))
    model.train()
    a = generate(model, vocab, "abc", 40, temperature=0.7, top_k=4, seed=11)
    assert model.training  # mode restored
    assert a == generate(model, vocab, b"abc", 40, temperature=0.7, top_k=4, seed=11)
    assert a != generate(model, vocab, "abc", 40, temperature=0.7, top_k=4, seed=12)
    assert len(a) == 40 and set(a) <= set(vocab)


def test_temperature_and_top_k_follow_the_distribution():
    v = 5
    table = np.tile(np.log([0.4, 0.3, 0.15, 0.1, 0.05]), (v, 1))  # same next-token law after any token
    model = BigramModel(table)
    vocab = b"ABCDE"
    n = 20000
    counts = lambda text: np.bincount(np.frombuffer(text, np.uint8) - 65, minlength=v) / n  # noqa: E731
    p = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    np.testing.assert_allclose(counts(generate(model, vocab, "A", n, seed=0)), p, atol=0.015)
    hot = p ** 0.5 / (p ** 0.5).sum()  # temperature 2: p^(1/2), renormalised
    np.testing.assert_allclose(counts(generate(model, vocab, "A", n, temperature=2.0, seed=1)), hot, atol=0.015)
    top2 = np.array([0.4, 0.3, 0, 0, 0]) / 0.7
    np.testing.assert_allclose(counts(generate(model, vocab, "A", n, top_k=2, seed=2)), top2, atol=0.015)
    assert generate(model, vocab, "A", 50, top_k=1) == b"A" * 50
    assert generate(model, vocab, "A", 50, top_k=99, seed=3) == generate(model, vocab, "A", 50, seed=3)


def test_prompt_encoding_rules():
    paper = b" etaoin"  # no newline: the paper tokenisation
    assert encode_prompt(paper, "tea\nnote") == [2, 1, 3, 6, 4, 2, 1]  # newline dropped
    with_nl = bytes(range(256))
    assert encode_prompt(with_nl, "a\nb") == [97, 10, 98]  # bytes tokenisation keeps it
    with pytest.raises(ValueError, match=r"prompt: byte b'x' \(0x78\) at position 2 is not in the model's vocabulary"):
        encode_prompt(paper, "tex")
    with pytest.raises(ValueError, match=r"prompt: byte b'\\xc3' \(0xc3\) at position 0"):
        encode_prompt(paper, "é")
    with pytest.raises(ValueError, match="prompt: expected str or bytes"):
        encode_prompt(paper, 5)
    with pytest.raises(ValueError, match="vocab: byte values must be distinct"):
        encode_prompt(b"aa", "a")
    with pytest.raises(ValueError, match="ids: token ids must lie in 0..6"):
        decode_tokens(paper, [7])


# ----------------------------------------------------------------------------- (f) errors
@pytest.mark.parametrize("kw,msg", [
    (dict(prompt=""), "prompt: empty"),
    (dict(prompt="\n\n"), "prompt: empty"),
    (dict(prompt=b""), "prompt: empty"),
    (dict(length=0), "length must be an integer >= 1"),
    (dict(length=2.5), "length must be an integer >= 1"),
    (dict(temperature=0.0), "temperature must be a finite number > 0"),
    (dict(temperature=-1.0), "temperature must be a finite number > 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number > 0"),
    (dict(temperature=float("inf")), "temperature must be a finite number > 0"),
    (dict(temperature="hot"), "temperature must be a finite number > 0"),
    (dict(top_k=0), "top_k must be None or an integer >= 1"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(vocab=b"abcdef"), "vocab: 6 symbols, but the model predicts 7 classes"),
])
def test_generate_errors(kw, msg):
    args = dict(model=tiny_elm(7), vocab=b"abcdefg", prompt="abc", length=3)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        generate(**args)


def test_cli_small_defaults_for_language_modelling(tmp_path):
    """Without --paper the annealed reset spans a quarter of the run and the corpus size is settable."""
    import argparse

    from elm_neuro.cli.train import add_common_train_args, train_config_from_args

    p = argparse.ArgumentParser()
    add_common_train_args(p)
    args = p.parse_args(["--task", "enwik8", "--epochs", "2", "--batches-per-epoch", "10", "--corpus-bytes", "50000"])
    cfg = train_config_from_args(args, "elm", {}, None, 0)
    assert (cfg.reset_steps, cfg.corpus_bytes, cfg.optimizer) == (5, 50000, "adam")
    args = p.parse_args(["--task", "enwik8", "--paper"])
    cfg = train_config_from_args(args, "elm", {}, None, 0)
    assert (cfg.reset_steps, cfg.lr, cfg.steps_total) == (40000, 5e-4, 300000)


@pytest.mark.parametrize("family", ["lif", "adlif"])
def test_spiking_language_model_trains_with_carried_state(tokens, tmp_path, family):
    """The spiking networks run the LM path too (presets lif-enwik8 / adlif-enwik8)."""
    over = dict(n=10, n_synapses=6, readout_d_tree=2, readout_d_brch=3)
    cfg = lm_cfg(model=family, epochs=1, batches_per_epoch=6, model_overrides=over)
    summary = train_language_model(tmp_path / family, cfg, tokens=tokens, progress=False)
    conf = RunDir(tmp_path / family).read_config()["model"]["config"]
    assert summary["family"] == family and conf["embedding"] == "one_hot" and conf["hidden"]["neuron"] == family
    assert math.isfinite(summary["test_bpc"]) and summary["test_tokens"] > 0


def test_sweep_runs_language_modelling_cells(tmp_path, capsys):
    """`elm-neuro sweep --task enwik8` uses the same sweep machinery (default corpus, tiny cells)."""
    import csv

    from elm_neuro.cli.main import main

    out = tmp_path / "sweep"
    args = ["sweep", "--task", "enwik8", "--d-m", "2,3", "--n", "6", "--seeds", "1", "--out", str(out),
            "--epochs", "1", "--batches-per-epoch", "3", "--corpus-bytes", "30000", "--set", "d_tree=3",
            "--set", "d_brch=2", "--train-set", "chunk_len=20", "--train-set", "eval_tokens=300",
            "--train-set", "batch_size=4", "--no-progress", "--no-report"]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["run_id"], r["task"], r["d_m"]) for r in rows] == [("dm2-n6-s0", "enwik8", "2"), ("dm3-n6-s0", "enwik8", "3")]
    assert all(float(r["test_bpc"]) > 0 for r in rows)
