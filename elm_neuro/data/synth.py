"""Synthetic Spiking-Heidelberg-Digits data in the exact SHD file layout (docs/design.md §5).

Public API
----------
``write_synthetic_shd(out_dir, n_train=1000, n_test=300, seed=0) -> (train_path, test_path)``
    (default sizes: ``SYNTH_N_TRAIN`` / ``SYNTH_N_TEST`` of :mod:`elm_neuro.defaults`)
    Writes ``shd_train.h5`` and ``shd_test.h5`` in ``out_dir`` with the real layout and dtypes
    (spikes/times float16 seconds, spikes/units uint16, labels uint8, extra/speaker uint16,
    extra/keys with the 20 class names, extra/meta_info/{gender, age, body_height} per speaker),
    atomically and byte-reproducibly for a given seed. ``n_train=8156, n_test=2264`` gives the
    real SHD sizes. Each file is marked as synthetic by root attributes (the real SHD files have
    none): ``elm_neuro_synthetic = "elm_neuro.data.synth"`` (:data:`SYNTHETIC_ATTR`) and
    ``synthetic_seed``; :func:`elm_neuro.data.provenance.shd_provenance` reads them, so that a
    report never presents results on synthetic data as results on SHD. The CLI is
    ``elm-neuro data synth --out DIR --train N --test M --seed S``.
``generate_synthetic_events(n, seed=0, split="train") -> SHDEvents``
    The same samples in memory (times already rounded to float16 and cast to float64, so they
    equal what ``read_shd`` returns from the written file).

Generative model (every random number comes from ``numpy.random.SeedSequence(seed)``; the class
prototypes and the speakers are shared by the train and test splits of one seed; samples are
drawn in vectorised chunks of 256, each from its own child seed):

* 700 tonotopic channels, index growing with characteristic frequency.
* A small inventory of 4 vowel-like formant triplets (F1 in channels 60-260, F2 in 220-480,
  F3 in 430-640) shared by all words, so classes differ by their time course rather than by
  private channels.
* Class prototype (20 classes = 10 English + 10 German digits, SHD's label order): a word of
  1-3 syllable segments spread over a base duration of 0.35-0.65 s. Each segment glides from
  one vowel to another: three formant bands, each sweeping linearly from a start to an end
  channel (vowel +- N(0, 10)), band width 6-16 channels, rate 1500-3500 spikes/s; about half
  the segments open with a broadband fricative / plosive burst (30-80 ms, channels ~300-699,
  3000-6000 spikes/s). Look-alike words share structure: German "drei", "sechs", "acht",
  "neun" are perturbed copies of English "three", "six", "eight", "nine" (formant channels
  +- N(0, 25), timing x 0.9-1.1), so some classes are confusable as in the real recordings.
* 12 speakers with gender, age and body height (``meta_info``). A speaker shifts the channel
  axis (pitch / vocal-tract length: c -> 350 + s*(c - 350) + shift, shift = -1.6 channels per
  cm of body height above 173 cm + N(0, 6), s in 0.92-1.08), warps time by a rate factor
  0.85-1.2 and scales loudness by 0.8-1.25. Speakers 4 and 5 appear only in the test split,
  which draws half of its samples from them and half from the 10 others (SHD: 12 speakers,
  2 only in test).
* Per sample: onset 0-250 ms, extra time warp 0.85-1.15, channel shift N(0, 15), loudness
  x 0.8-1.2; per band: timing jitter N(0, 20 ms) on both ends, channel jitter N(0, 8) on both
  ends, gain x 0.6-1.4, missing entirely with probability 0.05; per spike: time jitter
  N(0, 2 ms); spike deletion (thinning) with a per-sample probability 0.05-0.2; background
  noise at 500-1500 spikes/s, uniform over all channels and over [0, word end + 0.1 s].
  Spikes are Poisson events: the count of a band is Poisson(rate x duration x gains x
  (1 - deletion)); positions along a band's sweep follow a Beta(2, 2) envelope (median of
  three uniforms), channels are Gaussian around the sweep. Units are floor(channel), spikes
  outside 0..699 are discarded. The result has roughly 1500-10000 spikes per sample (mean
  ~4000) within about 0.3-1.3 s; spikes are sorted by time within each sample.
* Labels are balanced (each class equally often up to one sample) and shuffled.

Learnable but not trivial: a nearest-centroid classifier on coarse binned counts beats the 5 %
chance level clearly on the test split, without being perfect (see the tests).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from elm_neuro.defaults import SYNTH_N_TEST, SYNTH_N_TRAIN

from ._h5io import atomic_output, check_generated, write_shd_h5
from .shd import CLASS_NAMES, N_CLASSES, N_UNITS, SHDEvents

__all__ = ["write_synthetic_shd", "generate_synthetic_events", "N_SPEAKERS",
           "TEST_ONLY_SPEAKERS", "SYNTHETIC_ATTR"]

#: Root attribute of every file :func:`write_synthetic_shd` writes (value: the generator module), so
#: synthetic data is never taken for the real SHD (:mod:`elm_neuro.data.provenance`); the seed is in
#: ``synthetic_seed``.
SYNTHETIC_ATTR = "elm_neuro_synthetic"
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

    # a small inventory of vowel-like formant triplets (F1, F2, F3 channels) shared by all
    # words, so that classes differ by their sequence and sweeps rather than by unique bands
    n_vowels = 4
    vowels = np.stack([rng.uniform(lo, hi, n_vowels)
                       for lo, hi in ((60, 260), (220, 480), (430, 640))], axis=1)

    def make_word(cls: int) -> list[tuple]:
        out = []
        n_seg = int(rng.integers(1, 4))
        dur = rng.uniform(0.35, 0.65)
        parts = rng.dirichlet(np.full(n_seg, 3.0)) * dur
        edges = np.concatenate(([0.0], np.cumsum(parts)))
        for s in range(n_seg):
            gap = 0.02 if s > 0 else 0.0
            ts, te = edges[s] + gap, edges[s + 1]
            if rng.random() < 0.5:
                bl = rng.uniform(0.03, 0.08)
                lo = rng.uniform(300, 450)
                out.append((cls, ts, ts + bl, lo, 699.0, 0.0, rng.uniform(3000, 6000), True))
                ts = ts + 0.6 * bl
            v_from, v_to = rng.integers(0, n_vowels, 2)
            for f in range(3):
                c0 = vowels[v_from, f] + rng.normal(0, 10)
                c1 = vowels[v_to, f] + rng.normal(0, 10)
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


#: Samples drawn per vectorised chunk (bounded memory, cache-friendly arrays, progress bar).
_CHUNK = 256


def _sample_params(n: int, rng: np.random.Generator, spk: dict, split: str) -> dict:
    """Labels, speakers and per-sample nuisance parameters of ``n`` samples."""
    labels = rng.permutation(np.resize(np.arange(N_CLASSES), n)).astype(np.int64)
    shared = np.array([s for s in range(N_SPEAKERS) if s not in TEST_ONLY_SPEAKERS])
    if split == "train":
        speakers = rng.choice(shared, size=n)
    else:
        held = rng.random(n) < 0.5
        speakers = np.where(held, rng.choice(np.array(TEST_ONLY_SPEAKERS), size=n),
                            rng.choice(shared, size=n))
    speakers = speakers.astype(np.int64)
    return {
        "labels": labels,
        "speakers": speakers,
        "onset": rng.uniform(0.0, 0.25, n),
        "warp": spk["warp"][speakers] * rng.uniform(0.85, 1.15, n),
        "shift": spk["shift"][speakers] + rng.normal(0, 15, n),
        "scale": spk["scale"][speakers],
        "gain": spk["gain"][speakers] * rng.uniform(0.8, 1.2, n),
        "keep_p": 1.0 - rng.uniform(0.05, 0.2, n),
        "bg_rate": rng.uniform(500, 1500, n),
    }


def _draw_chunk(par: dict, protos: dict, rng: np.random.Generator):
    """Spikes of the samples described by ``par`` (one chunk): (sample, float16 time, unit),
    grouped by sample and sorted by time within each sample."""
    labels = par["labels"]
    n = len(labels)
    # (sample, component) rows
    n_comp = np.bincount(protos["cls"], minlength=N_CLASSES)
    first = np.concatenate(([0], np.cumsum(n_comp)[:-1]))
    per = n_comp[labels]
    row_s = np.repeat(np.arange(n), per)
    row_c = np.repeat(first[labels] - np.concatenate(([0], np.cumsum(per)[:-1])), per) \
        + np.arange(per.sum())
    r = len(row_s)
    t0 = protos["t0"][row_c] + rng.normal(0, 0.02, r)
    t1 = protos["t1"][row_c] + rng.normal(0, 0.02, r)
    t1 = np.maximum(t1, t0 + 0.02)
    burst = protos["burst"][row_c]
    c0 = protos["c0"][row_c] + np.where(burst, 0.0, rng.normal(0, 8, r))
    c1 = protos["c1"][row_c] + np.where(burst, 0.0, rng.normal(0, 8, r))
    onset, warp = par["onset"][row_s], par["warp"][row_s]
    scale, shift = par["scale"][row_s], par["shift"][row_s]
    T0 = onset + warp * t0
    T1 = onset + warp * t1
    C0 = _PITCH_CENTRE + (c0 - _PITCH_CENTRE) * scale + shift
    C1 = _PITCH_CENTRE + (c1 - _PITCH_CENTRE) * scale + shift
    width = protos["width"][row_c] * scale
    present = rng.random(r) >= 0.05
    band_gain = rng.uniform(0.6, 1.4, r)
    lam = (protos["rate"][row_c] * (T1 - T0) * par["gain"][row_s] * par["keep_p"][row_s]
           * present * band_gain)

    # background rows: one per sample, uniform over [0, end of word + 0.1 s] x all channels
    end = np.zeros(n)
    np.maximum.at(end, row_s, T1)
    span = end + 0.1
    bg_lam = par["bg_rate"] * span * par["keep_p"]
    # word rows and background rows grouped by sample, so all spike arrays come out grouped
    kind = np.concatenate((np.where(burst, 1, 0), np.full(n, 2)))
    rs = np.concatenate((row_s, np.arange(n)))
    grp = np.argsort(rs, kind="stable")
    kind, rs = kind[grp], rs[grp]
    T0 = np.concatenate((T0, np.zeros(n)))[grp]
    T1 = np.concatenate((T1, span))[grp]
    C0 = np.concatenate((C0, np.zeros(n)))[grp]
    C1 = np.concatenate((C1, np.full(n, float(N_UNITS))))[grp]
    width = np.concatenate((width, np.zeros(n)))[grp]
    k = rng.poisson(np.concatenate((lam, bg_lam))[grp])

    # spikes: position `frac` along the row's time span; Beta(2, 2) envelope for formant bands
    # (the median of three uniforms is Beta(2, 2) distributed), uniform for bursts / noise
    ev_row = np.repeat(np.arange(len(k)), k)
    m = len(ev_row)
    ev_kind = kind[ev_row]
    band = ev_kind == 0
    frac = rng.random(m)
    nb = int(band.sum())
    u1, u2 = rng.random(nb), rng.random(nb)
    u0 = frac[band]
    frac[band] = np.maximum(np.minimum(u0, u1), np.minimum(np.maximum(u0, u1), u2))
    t0r, t1r = T0[ev_row], T1[ev_row]
    t = t0r + frac * (t1r - t0r)
    word = ev_kind != 2
    t[word] += rng.normal(0, 0.002, int(word.sum()))
    c0r, c1r = C0[ev_row], C1[ev_row]
    ch = np.empty(m)
    ch[band] = c0r[band] + frac[band] * (c1r[band] - c0r[band]) \
        + rng.normal(0, 1, nb) * width[ev_row[band]]
    flat = ~band  # bursts and background: uniform over their channel range
    ch[flat] = c0r[flat] + rng.random(m - nb) * (c1r[flat] - c0r[flat])
    sample = rs[ev_row]

    units = np.floor(ch)
    ok = (units >= 0) & (units < N_UNITS) & (t >= 0)
    sample, t, units = sample[ok], t[ok], units[ok].astype(np.int32)
    t16 = t.astype(np.float16)  # exactly what the float16 file holds
    # sort by (sample, time): float16 bit patterns of non-negative numbers sort like the
    # numbers, so one stable integer sort does it; ties keep generation order
    key = (sample.astype(np.int64) << 16) | t16.view(np.uint16).astype(np.int64)
    order = np.argsort(key, kind="stable")
    return sample[order], t16[order], units[order]


def _streams(seed: int):
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    proto_ss, spk_ss, train_ss, test_ss = np.random.SeedSequence(int(seed)).spawn(4)
    protos = _class_prototypes(np.random.default_rng(proto_ss))
    spk = _speakers(np.random.default_rng(spk_ss))
    return protos, spk, train_ss, test_ss


def generate_synthetic_events(n: int, seed: int = 0, split: str = "train",
                              progress: bool | None = None) -> SHDEvents:
    """``n`` synthetic samples of ``split`` ('train' or 'test') in memory (see module doc).

    Samples are drawn in chunks of 256 (each chunk from its own child of the split's
    ``SeedSequence``), with a tqdm progress bar when ``progress`` is True (None: only on a
    terminal).
    """
    if int(n) != n or n < 0:
        raise ValueError(f"number of samples must be a non-negative integer, got {n}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    n = int(n)
    protos, spk, train_ss, test_ss = _streams(seed)
    ss = train_ss if split == "train" else test_ss
    n_chunks = -(-n // _CHUNK)
    param_ss, *chunk_ss = ss.spawn(1 + n_chunks)
    par = _sample_params(n, np.random.default_rng(param_ss), spk, split)
    times, units, counts = [], [], []
    for c in tqdm(range(n_chunks), desc=f"synthetic SHD {split}", unit="chunk",
                  disable=(not progress) if progress is not None else None, leave=False):
        sl = slice(c * _CHUNK, min(n, (c + 1) * _CHUNK))
        sub = {k: v[sl] for k, v in par.items()}
        s, t16, u = _draw_chunk(sub, protos, np.random.default_rng(chunk_ss[c]))
        times.append(t16)
        units.append(u)
        counts.append(np.bincount(s, minlength=sl.stop - sl.start))
    offsets = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum(np.concatenate(counts), out=offsets[1:])
    t = np.concatenate(times).astype(np.float64) if times else np.zeros(0)
    u = np.concatenate(units) if units else np.zeros(0, dtype=np.int32)
    meta = {"gender": spk["gender"], "age": spk["age"], "body_height": spk["body_height"]}
    return SHDEvents(times=t, units=u, offsets=offsets, labels=par["labels"],
                     speakers=par["speakers"], keys=CLASS_NAMES, path="", meta_info=meta)


def write_synthetic_shd(out_dir: str | os.PathLike, n_train: int = SYNTH_N_TRAIN, n_test: int = SYNTH_N_TEST,
                        seed: int = 0, force: bool = False) -> tuple[Path, Path]:
    """Write ``shd_train.h5`` / ``shd_test.h5`` to ``out_dir``; return their paths.

    Every argument is checked before anything is created. A folder that already holds either file
    (runs may point to it) is refused unless ``force``. Both files are written to temporary files
    beside them first and moved into place together at the end, so an interrupted or failed write
    leaves the old pair (or nothing) and no new folder.
    """
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} (--{name.split('_')[1]}) must be a positive integer, got {v}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed (--seed) must be an integer >= 0, got {seed}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(17, "File exists", str(out_dir))
    paths = [out_dir / "shd_train.h5", out_dir / "shd_test.h5"]
    present = [p.name for p in paths if p.exists()]
    if present and not force:
        raise ValueError(f"--out {out_dir} already holds {' and '.join(present)} (runs may point to them); use "
                         f"--force to replace them, or choose another folder")
    if present:
        check_generated(paths, SYNTHETIC_ATTR, "elm-neuro data synth")  # never the real SHD or a user's file
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(paths[0]) as tmp_train, atomic_output(paths[1]) as tmp_test:
            for split, n, tmp in (("train", n_train, tmp_train), ("test", n_test, tmp_test)):
                ev = generate_synthetic_events(int(n), int(seed), split)
                write_shd_h5(tmp, ev.times, ev.units, ev.offsets, ev.labels, ev.speakers,
                             keys=CLASS_NAMES, meta_info=ev.meta_info, times_dtype=np.float16,
                             attrs={SYNTHETIC_ATTR: "elm_neuro.data.synth", "synthetic_seed": int(seed)})
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return paths[0], paths[1]
