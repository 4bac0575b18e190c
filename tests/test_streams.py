"""Truncated-BPTT streams, annealed resets and bits per character."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from elm_neuro.data.streams import (
    TrainStream,
    bits_per_character,
    eval_token_count,
    iter_eval_chunks,
    reset_mask,
    reset_probability,
    stream_rows,
)

# 1003 distinct-valued tokens (values = positions) so every element can be traced back
TOKENS = np.arange(1003, dtype=np.int64)
B, L = 4, 10  # rows of R = 250 tokens, (250 - 1) // 10 = 24 full chunks


def test_rows_are_contiguous_and_remainder_dropped():
    rows = stream_rows(TOKENS, B)
    assert rows.shape == (4, 250)
    assert rows[1, 0] == 250 and rows[3, -1] == 999  # tokens 1000..1002 dropped
    np.testing.assert_array_equal(rows.ravel(), TOKENS[:1000])
    assert np.shares_memory(rows, TOKENS)
    with pytest.raises(ValueError, match="batch_size=600"):
        stream_rows(TOKENS, 600)
    with pytest.raises(ValueError, match="tokens: expected a 1-D integer array"):
        stream_rows(np.zeros((4, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        stream_rows(TOKENS, 0)


def test_train_chunks_inputs_and_shifted_targets():
    stream = TrainStream(TOKENS, B, chunk_len=L)
    assert stream.n_chunks == 24
    chunks = [next(stream) for _ in range(24)]
    for i, c in enumerate(chunks):
        assert c.x.dtype == torch.int64 and c.x.shape == (B, L) and c.y.shape == (B, L)
        assert (c.step, c.epoch, c.index, c.start_of_stream) == (i, 0, i, i == 0)
        # row b, chunk i: inputs are tokens b*250 + i*10 ... ; targets are the next tokens
        expect = torch.arange(B)[:, None] * 250 + i * L + torch.arange(L)[None, :]
        assert torch.equal(c.x, expect)
        assert torch.equal(c.y, expect + 1)
    # consecutive chunks of a row continue the text (state can be carried)
    row0 = torch.cat([c.x[0] for c in chunks])
    assert torch.equal(row0, torch.arange(240))
    # next epoch wraps to the start of every row and flags it
    c = next(stream)
    assert (c.step, c.epoch, c.index, c.start_of_stream) == (24, 1, 0, True)
    assert torch.equal(c.x, chunks[0].x)


def test_uint8_tokens_give_int64_tensors():
    tokens = (np.arange(500) % 200).astype(np.uint8)
    c = next(TrainStream(tokens, 2, chunk_len=7))
    assert c.x.dtype == torch.int64 and c.x[1, 0].item() == 250 % 200 and c.y[0, 6].item() == 7


def test_resumed_stream_equals_continued_one():
    cont = TrainStream(TOKENS, B, chunk_len=L)
    for _ in range(20):
        next(cont)
    saved = cont.state_dict()
    assert saved["position"] == 20
    tail = [next(cont) for _ in range(17)]  # crosses the epoch boundary at step 24

    resumed = TrainStream(TOKENS, B, chunk_len=L)
    resumed.load_state_dict(saved)
    started = TrainStream(TOKENS, B, chunk_len=L, start_step=20, max_steps=37)
    again = list(started)
    assert len(again) == 17 and started.position == 37
    for a, b, c in zip(tail, [next(resumed) for _ in range(17)], again):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, c.y)
        assert (a.step, a.epoch, a.index) == (b.step, b.epoch, b.index) == (c.step, c.epoch, c.index)
    assert tail[4].start_of_stream and tail[4].epoch == 1

    other = TrainStream(TOKENS, 5, chunk_len=L)
    with pytest.raises(ValueError, match="batch_size=4 does not match"):
        other.load_state_dict(saved)


def test_train_stream_rejects_rows_shorter_than_a_chunk():
    with pytest.raises(ValueError, match="chunk_len=100"):
        TrainStream(np.arange(400), 4, chunk_len=100)  # rows of 100 tokens: 99 inputs
    assert TrainStream(np.arange(404), 4, chunk_len=100).n_chunks == 1


def test_eval_chunks_cover_every_target_once():
    chunks = list(iter_eval_chunks(TOKENS, B, chunk_len=L))
    assert len(chunks) == 25  # 24 full + a final chunk of 249 - 240 = 9 steps
    assert [c.x.shape[1] for c in chunks] == [10] * 24 + [9]
    assert [c.start_of_stream for c in chunks] == [True] + [False] * 24
    ys = torch.cat([c.y for c in chunks], dim=1)
    xs = torch.cat([c.x for c in chunks], dim=1)
    rows = torch.from_numpy(stream_rows(TOKENS, B))
    assert torch.equal(ys, rows[:, 1:]) and torch.equal(xs, rows[:, :-1])
    n = sum(c.y.numel() for c in chunks)
    assert n == eval_token_count(len(TOKENS), B) == 4 * 249
    # one row: every token but the first is predicted
    assert sum(c.y.numel() for c in iter_eval_chunks(TOKENS, 1, chunk_len=100)) == 1002
    assert eval_token_count(1003, 1) == 1002


def test_reset_probability_schedule():
    assert reset_probability(0) == 1.0
    assert reset_probability(40000) == pytest.approx(0.01, abs=1e-15)
    assert reset_probability(20000) == pytest.approx(0.505, abs=1e-12)
    assert reset_probability(10000) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.sqrt(0.5)), abs=1e-12)
    assert reset_probability(123456) == 0.01
    values = [reset_probability(s) for s in range(0, 40001, 1000)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert reset_probability(5, start=0.5, end=0.1, steps=10) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="step"):
        reset_probability(-1)
    with pytest.raises(ValueError, match="end"):
        reset_probability(0, end=1.5)


def test_reset_mask_per_row_and_reproducible():
    g = torch.Generator().manual_seed(0)
    first = reset_mask(64, 0, g)
    assert first.dtype == torch.bool and first.shape == (64,) and bool(first.all())
    late = reset_mask(200_000, 50_000, torch.Generator().manual_seed(1))
    assert abs(late.float().mean().item() - 0.01) < 0.002
    mid = reset_mask(200_000, 20_000, torch.Generator().manual_seed(2))
    assert abs(mid.float().mean().item() - 0.505) < 0.005
    a = reset_mask(1000, 20_000, torch.Generator().manual_seed(7))
    b = reset_mask(1000, 20_000, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and 0 < int(a.sum()) < 1000


def test_bits_per_character_hand_computed():
    assert bits_per_character(300 * math.log(2), 100) == pytest.approx(3.0)
    # uniform prediction over 204 symbols: log2(204) bits per character
    n = 50
    assert bits_per_character(n * math.log(204), n) == pytest.approx(math.log2(204))
    assert bits_per_character(torch.tensor(2.0), 4) == pytest.approx(0.5 / math.log(2))
    with pytest.raises(ValueError, match="n_tokens"):
        bits_per_character(1.0, 0)
    with pytest.raises(ValueError, match="total_nats"):
        bits_per_character(float("nan"), 3)
