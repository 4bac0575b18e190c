"""Token streams for truncated back-propagation through time (docs/design.md §8).

Public API
----------
``stream_rows(tokens, batch_size) -> ndarray [B, R]``
    The token stream cut into ``B`` contiguous rows of ``R = n // B`` tokens; the last
    ``n - B*R`` tokens are dropped. Row ``b`` is ``tokens[b*R : (b+1)*R]``.
``TrainStream(tokens, batch_size, chunk_len=100, start_step=0, max_steps=None)``
    Iterator of training chunks (:class:`StreamChunk`), resumable.
``iter_eval_chunks(tokens, batch_size, chunk_len=100)``
    Chunks covering a whole stream, final partial chunk included.
``eval_token_count(n_tokens, batch_size)``
    Number of predictions :func:`iter_eval_chunks` makes.
``reset_probability(step, start=1.0, end=0.01, steps=40000)``, ``reset_mask(batch, step,
generator)``
    The annealed random reset of carried states.
``bits_per_character(total_nats, n_tokens)``
    ``total_nats / n_tokens / ln 2``.

The defaults (``chunk_len`` 100, reset 1.0 -> 0.01 over 40000 steps) are read from the
``paper-enwik8`` recipe of :mod:`elm_neuro.defaults` (module constants ``CHUNK_LEN``,
``RESET_START``, ``RESET_END``, ``RESET_STEPS``).

Choices
-------
* **Chunks.** Chunk ``i`` of a row holds inputs ``rows[:, i*L : (i+1)*L]`` and targets
  ``rows[:, i*L+1 : (i+1)*L+1]`` (the next token of each input), as int64 tensors ``[B, L]``.
  Since the last token of a row has no target, a row of ``R`` tokens gives ``(R-1) // L`` full
  training chunks; the leftover ``(R-1) % L`` inputs at the end of a row are not trained on
  (they are in :func:`iter_eval_chunks`).
* **Carrying state.** Consecutive chunks of one row are contiguous, so the trainer carries the
  hidden state (detached) from chunk ``i`` to ``i+1``. Each :class:`StreamChunk` carries its
  ``index`` within the epoch and ``start_of_stream`` (``index == 0``): there the state must be
  reset for every row, because training wraps around from the end of each row to its start
  (the next epoch), which is not contiguous text. Epochs repeat the same rows in the same order
  (no shuffling, no random offsets), so a training step number alone fixes the chunk:
  ``epoch, index = divmod(step, n_chunks)``. Resuming is therefore exact: a stream started at
  ``start_step=k`` (or loaded from ``state_dict()`` saved after ``k`` chunks) yields the same
  chunks as the original stream after its first ``k``.
* **Random resets (docs/design.md §8).** "Before each step the carried state is reset with probability
  annealed by a cosine from 1.0 to 0.01 over 40000 steps": *step* is the training (optimizer)
  step, i.e. one chunk, and the reset is drawn *per row* (per batch element), independently,
  before the chunk is processed. :func:`reset_probability` gives the probability
  ``end + (start - end) * (1 + cos(pi * min(step, steps) / steps)) / 2`` (1.0 at step 0, 0.505
  at 20000, 0.01 from 40000 on) and :func:`reset_mask` draws the Bernoulli mask from a given
  ``torch.Generator`` (reproducible from its seed). Rows with ``True`` start the chunk from the
  initial state; the others keep the carried state. Combine it with ``start_of_stream`` (reset
  everything) in the trainer.
* **Evaluation** (:func:`iter_eval_chunks`): the same ``B`` contiguous rows, chunks of ``L``
  steps, no random resets, and a final shorter chunk so that every token of every row except
  its first is predicted exactly once: ``B * (R - 1)`` predictions in all
  (:func:`eval_token_count`). Not counted: the first token of each row (no context to predict
  it from) and the ``n - B*R`` tokens dropped at the end of the stream. With ``batch_size=1``
  all ``n - 1`` tokens after the first are predicted. Bits per character are the summed
  cross-entropy (nats) over those predictions divided by their count and by ``ln 2``.
"""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np
import torch

from elm_neuro.defaults import RECIPES

__all__ = [
    "StreamChunk",
    "TrainStream",
    "stream_rows",
    "iter_eval_chunks",
    "eval_token_count",
    "reset_probability",
    "reset_mask",
    "bits_per_character",
]


class StreamChunk(NamedTuple):
    """One chunk of the row-parallel stream.

    ``x``, ``y``: int64 tensors ``[B, l]`` (inputs, next-token targets; ``l = chunk_len`` except
    for the last evaluation chunk). ``step``: running chunk count since the stream's start
    (the training step). ``epoch``: pass over the rows. ``index``: chunk number within the
    epoch. ``start_of_stream``: ``index == 0`` (reset every row's state before this chunk).
    """

    x: torch.Tensor
    y: torch.Tensor
    step: int
    epoch: int
    index: int
    start_of_stream: bool


#: docs/design.md §8 defaults (chunk length, reset schedule), defined once in the ``paper-enwik8`` recipe.
_ENWIK8 = RECIPES["paper-enwik8"]
CHUNK_LEN = _ENWIK8["chunk_len"]
RESET_START = _ENWIK8["reset_start"]
RESET_END = _ENWIK8["reset_end"]
RESET_STEPS = _ENWIK8["reset_steps"]


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _check_step(value, name: str = "step") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def stream_rows(tokens, batch_size: int) -> np.ndarray:
    """``tokens`` (1-D integer array or CPU tensor) as ``batch_size`` contiguous rows ``[B, n//B]``.

    The trailing ``n % B`` tokens are dropped. Returns a view where possible (no copy).
    Raises ``ValueError`` if a row would have fewer than 2 tokens (nothing to predict).
    """
    b = _check_positive_int(batch_size, "batch_size")
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"tokens: expected a 1-D integer array, got {arr.dtype} array of shape {arr.shape}")
    r = len(arr) // b
    if r < 2:
        raise ValueError(
            f"tokens: {len(arr)} tokens cannot fill batch_size={b} rows of at least 2 tokens each"
        )
    return arr[: b * r].reshape(b, r)


def _to_long(block: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(block, dtype=np.int64))


class TrainStream:
    """Endless (or ``max_steps``-long) iterator of training chunks; see module docstring.

    ``tokens``: 1-D token array (e.g. ``TokenSplits.train``). ``start_step``: the first step to
    yield (resume point). ``max_steps``: stop before this step (``None`` = never stop).
    ``position`` is always the step of the next chunk to be yielded; :meth:`state_dict` /
    :meth:`load_state_dict` save and restore it.
    """

    def __init__(self, tokens, batch_size: int, chunk_len: int = CHUNK_LEN, start_step: int = 0,
                 max_steps: int | None = None):
        self.chunk_len = _check_positive_int(chunk_len, "chunk_len")
        self.rows = stream_rows(tokens, batch_size)
        self.batch_size, self.row_len = self.rows.shape
        self.n_chunks = (self.row_len - 1) // self.chunk_len
        if self.n_chunks < 1:
            raise ValueError(
                f"tokens: rows of {self.row_len} tokens (batch_size={self.batch_size}) are too "
                f"short for one chunk of chunk_len={self.chunk_len} (need chunk_len + 1 tokens)"
            )
        self.position = _check_step(start_step, "start_step")
        self.max_steps = None if max_steps is None else _check_step(max_steps, "max_steps")

    def chunk(self, step: int) -> StreamChunk:
        """The chunk of training step ``step`` (random access; does not move ``position``)."""
        step = _check_step(step)
        epoch, index = divmod(step, self.n_chunks)
        a = index * self.chunk_len
        b = a + self.chunk_len
        return StreamChunk(_to_long(self.rows[:, a:b]), _to_long(self.rows[:, a + 1 : b + 1]),
                           step, epoch, index, index == 0)

    def __iter__(self) -> "TrainStream":
        return self

    def __next__(self) -> StreamChunk:
        if self.max_steps is not None and self.position >= self.max_steps:
            raise StopIteration
        out = self.chunk(self.position)
        self.position += 1
        return out

    def state_dict(self) -> dict:
        """Resume record: the next step plus the geometry it is valid for."""
        return {"position": self.position, "batch_size": self.batch_size,
                "chunk_len": self.chunk_len, "row_len": self.row_len}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`; the geometry must match this stream's."""
        for key in ("batch_size", "chunk_len", "row_len"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"state_dict: {key}={state.get(key)!r} does not match this stream's "
                    f"{key}={getattr(self, key)!r}"
                )
        self.position = _check_step(state.get("position"), "state_dict position")


def iter_eval_chunks(tokens, batch_size: int, chunk_len: int = CHUNK_LEN) -> Iterator[StreamChunk]:
    """Chunks over the whole stream, last one partial; ``B * (R - 1)`` targets in all.

    Yields :class:`StreamChunk` with ``epoch = 0`` and ``step = index``; carry the state from
    chunk to chunk and reset it at ``start_of_stream`` (the first chunk) only.
    """
    length = _check_positive_int(chunk_len, "chunk_len")
    rows = stream_rows(tokens, batch_size)
    n_inputs = rows.shape[1] - 1
    for index, a in enumerate(range(0, n_inputs, length)):
        b = min(a + length, n_inputs)
        yield StreamChunk(_to_long(rows[:, a:b]), _to_long(rows[:, a + 1 : b + 1]),
                          index, 0, index, index == 0)


def eval_token_count(n_tokens: int, batch_size: int) -> int:
    """Predictions made by :func:`iter_eval_chunks` on ``n_tokens`` tokens: ``B * (n//B - 1)``."""
    n = _check_step(n_tokens, "n_tokens")
    b = _check_positive_int(batch_size, "batch_size")
    if n // b < 2:
        raise ValueError(f"n_tokens: {n} tokens cannot fill batch_size={b} rows of at least 2 tokens")
    return b * (n // b - 1)


def reset_probability(step: int, start: float = RESET_START, end: float = RESET_END,
                      steps: int = RESET_STEPS) -> float:
    """Cosine-annealed reset probability: ``start`` at step 0, ``end`` from ``steps`` on."""
    step = _check_step(step)
    steps = _check_positive_int(steps, "steps")
    for name, value in (("start", start), ("end", end)):
        if not (0.0 <= float(value) <= 1.0):
            raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    frac = min(step, steps) / steps
    return float(end) + (float(start) - float(end)) * 0.5 * (1.0 + math.cos(math.pi * frac))


def reset_mask(batch: int, step: int, generator: torch.Generator | None = None,
               start: float = RESET_START, end: float = RESET_END,
               steps: int = RESET_STEPS) -> torch.Tensor:
    """Bool ``[batch]`` on the CPU: ``True`` where a row's carried state is reset before ``step``.

    Each row is reset independently with probability :func:`reset_probability` ``(step, ...)``;
    the draw uses ``generator`` (pass a seeded ``torch.Generator`` for reproducible runs;
    ``None`` uses torch's global generator).
    """
    b = _check_positive_int(batch, "batch")
    p = reset_probability(step, start, end, steps)
    return torch.rand(b, generator=generator) < p


def bits_per_character(total_nats: float, n_tokens: int) -> float:
    """Mean cross-entropy in bits: ``total_nats / n_tokens / ln 2``.

    ``total_nats``: summed cross-entropy (natural log) over ``n_tokens`` predictions (float or
    0-d tensor).
    """
    n = _check_positive_int(n_tokens, "n_tokens")
    total = float(total_nats)
    if not math.isfinite(total) or total < 0:
        raise ValueError(f"total_nats: expected a finite non-negative number, got {total_nats!r}")
    return total / n / math.log(2)
