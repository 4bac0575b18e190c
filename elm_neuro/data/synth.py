"""Synthetic Spiking-Heidelberg-Digits data in the exact SHD file layout (SPEC section 5).

Public API
----------
``write_synthetic_shd(out_dir, n_train=1000, n_test=300, seed=0) -> (train_path, test_path)``
    Writes ``shd_train.h5`` and ``shd_test.h5`` in ``out_dir`` with the real layout and dtypes
    (spikes/times float16 seconds, spikes/units uint16, labels uint8, extra/speaker uint16,
    extra/keys with the 20 class names, extra/meta_info/{gender, age, body_height} per speaker),
    atomically and byte-reproducibly for a given seed. ``n_train=8156, n_test=2264`` gives the
    real SHD sizes. The CLI is ``elm-neuro data synth --out DIR --train N --test M --seed S``.
``generate_synthetic_events(n, seed=0, split="train") -> SHDEvents``
    The same samples in memory (times already rounded to float16 and cast to float64, so they
    equal what ``read_shd`` returns from the written file).

Generative model (every random number comes from ``numpy.random.SeedSequence(seed)``; the class
prototypes and the speakers are shared by the train and test splits of one seed):

* 700 tonotopic channels, index growing with characteristic frequency.
* Class prototype (20 classes = 10 English + 10 German digits, SHD's label order): a word of
  1-3 syllable segments spread over a base duration of 0.35-0.65 s. Each segment holds three
  formant-like bands (F1 in channels 60-260, F2 in 220-480, F3 in 430-640), each sweeping
  linearly from a start to an end channel over the segment, with a band width of 6-16
  channels and a rate of 1500-3500 spikes/s; about half the segments open with a broadband
  fricative / plosive burst (30-80 ms, channels 350-699). Look-alike words share structure:
  German "drei", "sechs", "acht", "neun" are perturbed copies of English "three", "six",
  "eight", "nine" (formant channels +-25, timing +-10 %), so some classes are confusable as in
  the real recordings.
* 12 speakers with gender, age and body height (``meta_info``). A speaker shifts the channel
  axis (pitch: c -> 350 + s*(c - 350) + shift, shift larger for short / female speakers,
  s in 0.92-1.08), warps time by a rate factor 0.85-1.2 and scales loudness 0.8-1.25.
  Speakers 4 and 5 appear only in the test split, which draws half of its samples from them
  and half from the 10 others (SHD: 12 speakers, 2 only in test).
* Per sample: onset 10-120 ms, extra time warp 0.92-1.08 and channel shift N(0, 6), per-band
  timing jitter N(0, 12 ms) and channel jitter N(0, 5), per-spike time jitter N(0, 2 ms), a
  band missing entirely with probability 0.05, spike deletion (thinning) with a per-sample
  probability 0.05-0.2, and uniform background noise at 300-800 spikes/s over all channels.
  Spikes are drawn as inhomogeneous Poisson events: the count of a band is Poisson(rate x
  duration x loudness x (1 - deletion)), spike positions within the band follow a Beta(2, 2)
  envelope along the sweep. The result has a few thousand spikes per sample (SHD's range)
  within about 0.3-1.1 s, spikes sorted by time within each sample.
* Labels are balanced (each class equally often up to one sample) and shuffled.

Learnable but not trivial: a nearest-centroid classifier on coarse binned counts beats the 5 %
chance level clearly on the test split, without being perfect (see the tests).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._h5io import write_shd_h5
from .shd import CLASS_NAMES, N_CLASSES, N_UNITS, SHDEvents

__all__ = ["write_synthetic_shd", "generate_synthetic_events", "N_SPEAKERS",
           "TEST_ONLY_SPEAKERS"]

N_SPEAKERS = 12
TEST_ONLY_SPEAKERS = (4, 5)
#: English digits whose German word is generated as a perturbed copy (three/drei, ...).
_LOOKALIKE_DIGITS = (3, 6, 8, 9)
_PITCH_CENTRE = 350.0


def _class_prototypes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Component table of the 20 class prototypes (times in s relative to word onset).

    Returns arrays over all components: ``cls``, ``t0``, ``t1``, ``c0``, ``c1``, ``width``,
    ``rate`` and ``burst`` (True: uniform spikes over channels c0..c1 instead of a sweep).
    """
    comps: list[tuple] = []

    def make_word(cls: int) -> list[tuple]:
        out = []
        n_seg = int(rng.integers(1, 4))
        dur = rng.uniform(0.35, 0.65)
        parts = rng.dirichlet(np.full(n_seg, 3.0)) * dur
        edges = np.concatenate(([0.0], np.cumsum(parts)))
        bands = ((60, 260), (220, 480), (430, 640))
        for s in range(n_seg):
            gap = 0.02 if s > 0 else 0.0
            ts, te = edges[s] + gap, edges[s + 1]
            if rng.random() < 0.5:
                bl = rng.uniform(0.03, 0.08)
                out.append((cls, ts, ts + bl, 350.0, 699.0, 0.0, rng.uniform(3000, 6000), True))
                ts = ts + 0.6 * bl
            for lo, hi in bands:
                c0, c1 = rng.uniform(lo, hi, size=2)
                out.append((cls, ts, te, c0, c1, rng.uniform(6, 16), rng.uniform(1500, 3500),
                            False))
        return out

    words = {c: make_word(c) for c in range(10)}
    for d in range(10):
        g = 10 + d
        if d in _LOOKALIKE_DIGITS:
            stretch = rng.uniform(0.9, 1.1)
            words[g] = [
                (g, t0 * stretch, t1 * stretch,
                 c0 if burst else float(np.clip(c0 + rng.normal(0, 25), 0, 699)),
                 c1 if burst else float(np.clip(c1 + rng.normal(0, 25), 0, 699)),
                 w, r * rng.uniform(0.8, 1.2), burst)
                for (_, t0, t1, c0, c1, w, r, burst) in words[d]
            ]
        else:
            words[g] = make_word(g)
    for c in range(N_CLASSES):
        comps.extend(words[c])
    arr = list(zip(*comps))
    names = ("cls", "t0", "t1", "c0", "c1", "width", "rate", "burst")
    table = {k: np.asarray(v) for k, v in zip(names, arr)}
    table["cls"] = table["cls"].astype(np.int64)
    table["burst"] = table["burst"].astype(bool)
    return table


def _speakers(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-speaker metadata and the acoustic transform parameters derived from it."""
    female = rng.random(N_SPEAKERS) < 0.5
    female[:2] = (True, False)  # both genders always present
    height = np.where(female, rng.normal(166, 6, N_SPEAKERS), rng.normal(180, 7, N_SPEAKERS))
    age = rng.integers(18, 65, N_SPEAKERS)
    # shorter vocal tract (shorter speaker) -> higher formants -> higher channels
    shift = -(height - 173.0) * 1.6 + rng.normal(0, 6, N_SPEAKERS)
    return {
        "gender": np.where(female, b"female", b"male"),
        "age": age.astype(np.uint8),
        "body_height": np.round(height, 1).astype(np.float32),
        "shift": shift,
        "scale": rng.uniform(0.92, 1.08, N_SPEAKERS),
        "warp": rng.uniform(0.85, 1.2, N_SPEAKERS),
        "gain": rng.uniform(0.8, 1.25, N_SPEAKERS),
    }


def _generate(n: int, rng: np.random.Generator, protos: dict, spk: dict,
              split: str) -> SHDEvents:
    if n < 0:
        raise ValueError(f"number of samples must be >= 0, got {n}")
    labels = rng.permutation(np.resize(np.arange(N_CLASSES), n)).astype(np.int64)
    shared = np.array([s for s in range(N_SPEAKERS) if s not in TEST_ONLY_SPEAKERS])
    if split == "train":
        speakers = rng.choice(shared, size=n)
    elif split == "test":
        held = rng.random(n) < 0.5
        speakers = np.where(held, rng.choice(np.array(TEST_ONLY_SPEAKERS), size=n),
                            rng.choice(shared, size=n))
    else:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    speakers = speakers.astype(np.int64)

    # per-sample nuisance parameters
    onset = rng.uniform(0.01, 0.12, n)
    warp = spk["warp"][speakers] * rng.uniform(0.92, 1.08, n)
    shift = spk["shift"][speakers] + rng.normal(0, 6, n)
    scale = spk["scale"][speakers]
    gain = spk["gain"][speakers] * rng.uniform(0.8, 1.2, n)
    keep_p = 1.0 - rng.uniform(0.05, 0.2, n)
    bg_rate = rng.uniform(300, 800, n)

    # (sample, component) rows
    n_comp = np.bincount(protos["cls"], minlength=N_CLASSES)
    first = np.concatenate(([0], np.cumsum(n_comp)[:-1]))
    per = n_comp[labels]
    row_s = np.repeat(np.arange(n), per)
    row_c = np.repeat(first[labels] - np.concatenate(([0], np.cumsum(per)[:-1])), per) \
        + np.arange(per.sum())
    r = len(row_s)
    t0 = protos["t0"][row_c] + rng.normal(0, 0.012, r)
    t1 = protos["t1"][row_c] + rng.normal(0, 0.012, r)
    t1 = np.maximum(t1, t0 + 0.02)
    burst = protos["burst"][row_c]
    c0 = protos["c0"][row_c] + np.where(burst, 0.0, rng.normal(0, 5, r))
    c1 = protos["c1"][row_c] + np.where(burst, 0.0, rng.normal(0, 5, r))
    T0 = onset[row_s] + warp[row_s] * t0
    T1 = onset[row_s] + warp[row_s] * t1
    C0 = _PITCH_CENTRE + (c0 - _PITCH_CENTRE) * scale[row_s] + shift[row_s]
    C1 = _PITCH_CENTRE + (c1 - _PITCH_CENTRE) * scale[row_s] + shift[row_s]
    width = protos["width"][row_c] * scale[row_s]
    present = rng.random(r) >= 0.05
    lam = protos["rate"][row_c] * (T1 - T0) * gain[row_s] * keep_p[row_s] * present
    k = rng.poisson(lam)

    # band spikes
    ev_row = np.repeat(np.arange(r), k)
    m = len(ev_row)
    b = burst[ev_row]
    frac = np.where(b, rng.random(m), rng.beta(2.0, 2.0, m))
    t = T0[ev_row] + frac * (T1[ev_row] - T0[ev_row]) + rng.normal(0, 0.002, m)
    centre = C0[ev_row] + frac * (C1[ev_row] - C0[ev_row])
    ch = np.where(b, C0[ev_row] + rng.random(m) * (C1[ev_row] - C0[ev_row]),
                  centre + rng.normal(0, 1, m) * width[ev_row])
    ev_sample = row_s[ev_row]

    # background noise over [0, end of word + 0.1 s]
    end = np.zeros(n)
    np.maximum.at(end, row_s, T1)
    span = end + 0.1
    n_bg = rng.poisson(bg_rate * span * keep_p)
    bg_sample = np.repeat(np.arange(n), n_bg)
    bg_t = rng.random(len(bg_sample)) * span[bg_sample]
    bg_ch = rng.integers(0, N_UNITS, len(bg_sample)).astype(np.float64)

    sample = np.concatenate((ev_sample, bg_sample))
    t = np.concatenate((t, bg_t))
    units = np.floor(np.concatenate((ch, bg_ch)))
    ok = (units >= 0) & (units < N_UNITS) & (t >= 0)
    sample, t, units = sample[ok], t[ok], units[ok].astype(np.int32)
    t = t.astype(np.float16).astype(np.float64)  # exactly what the float16 file holds
    order = np.lexsort((units, t, sample))
    sample, t, units = sample[order], t[order], units[order]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(sample, minlength=n), out=offsets[1:])
    meta = {"gender": spk["gender"], "age": spk["age"], "body_height": spk["body_height"]}
    return SHDEvents(times=t, units=units, offsets=offsets, labels=labels, speakers=speakers,
                     keys=CLASS_NAMES, path="", meta_info=meta)


def _streams(seed: int):
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    proto_ss, spk_ss, train_ss, test_ss = np.random.SeedSequence(int(seed)).spawn(4)
    protos = _class_prototypes(np.random.default_rng(proto_ss))
    spk = _speakers(np.random.default_rng(spk_ss))
    return protos, spk, train_ss, test_ss


def generate_synthetic_events(n: int, seed: int = 0, split: str = "train") -> SHDEvents:
    """``n`` synthetic samples of ``split`` ('train' or 'test') in memory (see module doc)."""
    protos, spk, train_ss, test_ss = _streams(seed)
    ss = train_ss if split == "train" else test_ss
    return _generate(int(n), np.random.default_rng(ss), protos, spk, split)


def write_synthetic_shd(out_dir: str | os.PathLike, n_train: int = 1000, n_test: int = 300,
                        seed: int = 0) -> tuple[Path, Path]:
    """Write ``shd_train.h5`` / ``shd_test.h5`` to ``out_dir``; return their paths."""
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("train", n_train), ("test", n_test)):
        ev = generate_synthetic_events(int(n), seed, split)
        path = out_dir / f"shd_{split}.h5"
        write_shd_h5(path, ev.times, ev.units, ev.offsets, ev.labels, ev.speakers,
                     keys=CLASS_NAMES, meta_info=ev.meta_info, times_dtype=np.float16)
        paths.append(path)
    return paths[0], paths[1]
