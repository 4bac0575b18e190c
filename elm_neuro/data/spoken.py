"""Spoken SHD: the twenty digit words spoken by espeak-ng, through the Lauscher cochlea, as SHD files.

``elm-neuro data spoken --out DIR --train N --test M --seed S [--workers W] [--speakers K]
[--voices LIST] [--force]`` writes ``shd_train.h5`` and ``shd_test.h5`` in the layout of the real
Spiking Heidelberg Digits (:mod:`elm_neuro.data._h5io`: 700 channels, ``spikes/times`` float16
seconds, ``spikes/units`` uint16, ``labels`` uint8, ``extra/speaker``, ``extra/keys``,
``extra/meta_info``), made the way SHD was made: a spoken word (:mod:`elm_neuro.data.speech`)
turned into spikes by the cochlea model (:mod:`elm_neuro.data.cochlea`, fast mode, Lauscher's
parameters). Every reader of the package takes them unchanged.

Public API
----------
``write_spoken_shd(out_dir, n_train, n_test, seed=0, *, workers=2, n_speakers=12, voices=None,
force=False, n_channels=700, progress=None, log=None) -> SpokenResult``
    The command. ``SpokenResult``: the two paths, the silent utterances replaced, the chunks
    computed and reused, the wall time and the CPU seconds per digit.
``plan_spoken(n_train, n_test, seed=0, n_speakers=12, voices=None) -> SpokenPlan``
    Which utterances the files hold (the rule below), without synthesising anything.
``trials_needed(n_train, n_test, n_speakers=12)``
    The trials per speaker and word the rule uses.
``SPOKEN_ATTR``, ``SEED_ATTR``
    Root attributes of every file written here: the provenance as JSON, and the seed.
    :func:`elm_neuro.data.provenance.shd_provenance` reports such files as ``spoken``.

Which utterances (the generation rule)
--------------------------------------
An utterance is (speaker, word, trial); :mod:`elm_neuro.data.speech` makes each one from its own
generator seeded by (seed, speaker, label, trial), so it is the same whatever else is made.

1. Speakers: ``draw_speakers(n_speakers, seed, voices)``; SHD's protocol
   (:func:`~elm_neuro.data.speech.speaker_split`): speakers 4 and 5 only in the test split, the
   others in both with disjoint trials (5 % of each speaker's trials of each word in the test
   split, :func:`~elm_neuro.data.speech.split_trials`).
2. Trials per speaker and word: ``T = N_TRIALS`` (40, SHD's "about 40 times"), raised to the
   smallest T whose pools hold enough: every word needs ``ceil(N / 20)`` training and
   ``ceil(M / 20)`` test utterances (12 speakers, T = 40: 380 training and 100 test utterances per
   word, 7,600 / 2,000 in all; an SHD-sized 8,156 / 2,264 set needs T = 47). One T serves both
   splits, so their trials stay disjoint.
3. Words: each of the 20 words gets ``N // 20`` samples, and ``N mod 20`` words, drawn from the
   seed, one more (balanced up to one sample). The same for the test split with M.
4. Speakers within a word: in proportion to their trials in the split, as in SHD, where a split
   is the whole pool. The split's speakers in a seeded order (one per word); speaker s gets
   ``k * pool_s / pool`` of the word's k samples, rounded down, and the rest go one each by
   largest remainder (ties: the earlier speaker in that order); a speaker's samples are its
   first trials of the split in increasing order. Training speakers have equal pools, so a word
   is spread evenly over them (counts differ by at most one); in the test split the two
   test-only speakers, with all T trials there against the others' 5 %, give about 80 % of every
   word at any M, their share of the whole test pool (1,600 of 2,000 utterances at T = 40): a
   small test split tests generalisation to unseen speakers as much as SHD's does.
5. Order in the file: the split's samples shuffled by a seeded permutation.

A silent utterance (espeak-ng gives no sound, or the cochlea no spike) is never written as an empty
sample: it is replaced by the next spare trial of the same speaker and word, outside the
protocol's trials and private to that sample: sample i of split s (0 train, 1 test) tries trials
``T + SPARE_TRIALS * (2 i + s) + r``, r = 0, 1, ... (``SPARE_TRIALS`` = 4 tries; all silent is
an error). The replacements are counted in the command's output and listed in the provenance
attribute (split, sample, speaker, label, silent trial).

Provenance
----------
Root attribute ``elm_neuro_spoken`` (:data:`SPOKEN_ATTR`): a JSON object with the generator and
the command, the package version, the seed, the split and its size, the rule's T, the speakers
(voice variant, accent, pitch, rate, intonation), the speech settings
(:func:`~elm_neuro.data.speech.speech_settings`), the cochlea (mode, channels, every
:class:`~elm_neuro.data.cochlea.CochleaConfig` value), the espeak-ng version, and the silent
utterances; ``spoken_seed`` (:data:`SEED_ATTR`) the seed. ``extra/meta_info`` holds per speaker
``gender`` (of the voice variant) and, as the real files have them, ``age`` and ``body_height``,
both 0 (a synthetic voice has neither), and the voice itself: ``variant``, ``accent``, ``pitch``,
``rate``, ``pitch_range``. ``--force`` replaces only files that carry the attribute
(:func:`elm_neuro.data._h5io.check_generated`).

Determinism
-----------
The files are a function of (seed, N, M, speakers, voices, channels) and the package's version:
byte-identical from run to run and for any ``--workers`` (each sample is computed from its own
seeds, chunks are fixed by the plan, not by the workers, and they are put together in plan order;
HDF5 stores no times). The cochlea's generator of an utterance is seeded by (seed, speaker, label,
trial) too (stream 4, after speech's streams 1-3; the plan's draws use stream 5).

Restarts, atomic output, processes
----------------------------------
The samples are made in chunks of ``SPOKEN_CHUNK`` (32) utterances in a hidden work folder inside
``--out`` (``.elm-neuro-spoken.work``: ``plan.json`` and one ``<split>-<chunk>.npz`` per chunk,
each written atomically). A rerun with the same settings skips the finished chunks, so an
interrupted or killed run loses at most the chunks in progress; a rerun with other settings
starts the work folder afresh. Once every chunk is there both files are written to temporary
files, moved into place together, and the work folder is removed: nothing half-written is ever
visible under the final names. The folder is locked (:func:`elm_neuro.atomic.folder_lock`) while
the command runs.

``workers`` > 1 runs the chunks in spawned processes (one numba / BLAS thread each:
``NUMBA_NUM_THREADS=1`` and friends are set for them); 1 runs them in this process. The cochlea
caches one transfer function per padded length per process (9 lengths for words of 0.24-0.95 s,
~140 MB for the longest, ~670 MB together: within the cochlea's 1 GiB cache, so a worker computes
each once, in its first chunks; memory: ~1 GB per worker).
For sets of at least ``PROJECT_FROM`` (1,000) digits the command prints the projected time once
``PROJECT_AFTER`` (256) digits after the first finished chunk are done (the start-up, spawning and
the first transfer functions, is counted once, not per digit).

Measured (2-core machine, 700 channels, ``--workers 2``, 2,000 + 600 digits): 201 s wall,
0.077 s per digit, 0.15 CPU-s per digit (~93 % of it the cochlea, ~6 % espeak-ng); an SHD-sized
set (8,156 + 2,264) therefore takes ~13.5 min, and the projection printed after 256 digits said
3.1 min for the 2,600 (3.4 min in all). With the other core busy (another process's test suite)
the same set took 399 s: ~27 min for an SHD-sized set. Disk: ~27 KB per digit, in the work
folder while it runs and in the final files (~280 MB for an SHD-sized set).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from importlib import metadata
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
from tqdm.auto import tqdm

from elm_neuro import defaults as D
from elm_neuro.atomic import atomic_output, folder_lock, make_folders, remove_empty_folders

from . import speech as sp
from ._h5io import check_generated, write_shd_h5
from .shd import N_CLASSES, N_UNITS

__all__ = ["write_spoken_shd", "plan_spoken", "trials_needed", "SpokenPlan", "SpokenResult",
           "SPOKEN_ATTR", "SEED_ATTR", "WORK_DIR", "SPARE_TRIALS", "MAX_SAMPLES"]

#: Root attribute of every file written here: the provenance as a JSON object (module docstring).
SPOKEN_ATTR = "elm_neuro_spoken"
#: Root attribute with the seed.
SEED_ATTR = "spoken_seed"
GENERATOR = "elm_neuro.data.spoken"
COMMAND = "elm-neuro data spoken"
#: The hidden work folder inside ``--out`` (chunks of a run in progress).
WORK_DIR = ".elm-neuro-spoken.work"
PLAN_FILE = "plan.json"
#: Tries of spare trials for a silent utterance (module docstring).
SPARE_TRIALS = 4
#: Largest --train / --test.
MAX_SAMPLES = 1_000_000
#: Sets of at least this many digits get a projected time once ``PROJECT_AFTER`` are done.
PROJECT_FROM = 1000
PROJECT_AFTER = 256
_SPLITS = ("train", "test")
_COCHLEA_STREAM, _PLAN_STREAM = 4, 5
# One thread per worker process for every library that would start more (set before they load).
_THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --------------------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True, eq=False)
class SpokenPlan:
    """Which utterances the files hold: ``train`` / ``test`` are int64 [n, 3] arrays of (speaker
    id, label, trial) in file order; ``n_trials`` is the rule's T."""

    seed: int
    speakers: tuple[sp.Speaker, ...]
    n_trials: int
    train: np.ndarray
    test: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        return self.train if split == "train" else self.test


def _int_arg(name: str, flag: str | None, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        shown = f"{name} ({flag})" if flag else name
        raise ValueError(f"{shown} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _check_speakers(n_speakers) -> int:
    lo = max(max(sp.TEST_ONLY_SPEAKERS) + 1, len(sp.TEST_ONLY_SPEAKERS) + 1)  # test-only ids exist, others train
    return _int_arg("n_speakers", "--speakers", n_speakers, lo, 65536)


def _check_voices(voices) -> tuple[str, ...] | None:
    """``voices``: espeak-ng variants (a sequence, or names separated by commas), None for all."""
    if voices is None:
        return None
    if isinstance(voices, str):
        voices = [v.strip() for v in voices.split(",") if v.strip()]
    if not isinstance(voices, (list, tuple)) or not all(isinstance(v, str) for v in voices):
        raise ValueError(f"voices (--voices) must be espeak-ng variant names, got {voices!r}")
    chosen = tuple(dict.fromkeys(voices))
    unknown = [v for v in chosen if v not in sp.VARIANTS]
    if not chosen or unknown:
        what = f"unknown or excluded voice(s) {', '.join(unknown)}" if unknown else "no voice given"
        raise ValueError(f"voices (--voices): {what}; choose among {', '.join(sorted(sp.VARIANTS))}")
    return chosen


def _n_test_trials(n_trials: int) -> int:
    """Test trials of a speaker and word that is in both splits (speech.split_trials' rule)."""
    frac = sp.TEST_FRACTION
    return 0 if frac == 0.0 else min(n_trials, max(1, int(round(frac * n_trials))))


def _pool_per_word(n_trials: int, n_speakers: int) -> tuple[int, int]:
    """(training, test) utterances of one word with ``n_trials`` trials per speaker and word."""
    held = len(sp.TEST_ONLY_SPEAKERS)
    shared = n_speakers - held
    nt = _n_test_trials(n_trials)
    return shared * (n_trials - nt), held * n_trials + shared * nt


def trials_needed(n_train: int, n_test: int, n_speakers: int = D.SPOKEN_SPEAKERS) -> int:
    """The rule's T: the smallest number of trials per speaker and word (at least ``N_TRIALS``)
    whose pools give every word ``ceil(n / 20)`` samples in both splits."""
    n_speakers = _check_speakers(n_speakers)
    need_train, need_test = -(-int(n_train) // N_CLASSES), -(-int(n_test) // N_CLASSES)
    held = len(sp.TEST_ONLY_SPEAKERS)
    shared = n_speakers - held
    # lower bounds (every pool is at most T per speaker), then count up
    t = max(sp.N_TRIALS, need_train // shared, need_test // n_speakers)
    while True:
        got_train, got_test = _pool_per_word(t, n_speakers)
        if got_train >= need_train and got_test >= need_test:
            return t
        t += 1


def _apportion(k: int, sizes: np.ndarray) -> np.ndarray:
    """``k`` split over pools of ``sizes`` in proportion to them (largest remainder; ties go to the
    earlier pool), never more than a pool holds."""
    total = int(sizes.sum())
    exact = k * sizes / total
    share = np.minimum(np.floor(exact).astype(np.int64), sizes)
    rest = k - int(share.sum())
    order = np.lexsort((np.arange(len(sizes)), -(exact - share)))  # largest remainder first
    while rest > 0:
        for i in order:
            if rest and share[i] < sizes[i]:
                share[i] += 1
                rest -= 1
    return share


def _select(split: str, n: int, speakers: Sequence[sp.Speaker], n_trials: int, seed: int) -> np.ndarray:
    """Rows (speaker, label, trial) of one split: steps 3-5 of the rule (module docstring)."""
    s = _SPLITS.index(split)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_PLAN_STREAM, s)))
    per_word = np.full(N_CLASSES, n // N_CLASSES)
    per_word[rng.permutation(N_CLASSES)[: n % N_CLASSES]] += 1
    groups = sp.speaker_split(speakers)
    members = np.array(groups.train if split == "train" else groups.test)
    rows = []
    for label in range(N_CLASSES):
        order = rng.permutation(members)
        trials = [sp.split_trials(int(spk), label, split, n_trials=n_trials, seed=seed) for spk in order]
        share = _apportion(int(per_word[label]), np.array([len(t) for t in trials]))
        for spk, tr, k in zip(order, trials, share):
            rows.extend((int(spk), label, t) for t in tr[:k])
    out = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return out[rng.permutation(len(out))]


def plan_spoken(n_train: int, n_test: int, seed: int = 0, n_speakers: int = D.SPOKEN_SPEAKERS,
                voices: Sequence[str] | str | None = None) -> SpokenPlan:
    """The utterances of a spoken set (module docstring, "Which utterances"); arguments checked,
    each error naming its command-line option."""
    n_train = _int_arg("n_train", "--train", n_train, 1, MAX_SAMPLES)
    n_test = _int_arg("n_test", "--test", n_test, 1, MAX_SAMPLES)
    seed = _int_arg("seed", "--seed", seed, 0, 2**63 - 1)
    n_speakers = _check_speakers(n_speakers)
    voices = _check_voices(voices)
    speakers = sp.draw_speakers(n_speakers, seed, variants=voices)
    t = trials_needed(n_train, n_test, n_speakers)
    return SpokenPlan(seed=seed, speakers=speakers, n_trials=t,
                      train=_select("train", n_train, speakers, t, seed),
                      test=_select("test", n_test, speakers, t, seed))


def spare_trial(n_trials: int, split: int, index: int, attempt: int) -> int:
    """The trial a silent sample ``index`` of split ``split`` (0 train, 1 test) tries next."""
    return n_trials + SPARE_TRIALS * (2 * index + split) + attempt


# --------------------------------------------------------------------------- one chunk (worker side)
class _Chunk(NamedTuple):
    path: str
    split: int  # 0 train, 1 test
    start: int  # index of its first sample in the split
    rows: np.ndarray  # [k, 3] speaker, label, trial
    speakers: tuple  # Speaker of every id
    seed: int
    n_trials: int
    n_channels: int


def _cochlea_rng(seed: int, speaker_id: int, label: int, trial: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(
        seed, spawn_key=(_COCHLEA_STREAM, int(speaker_id), int(label), int(trial))))


def _spikes(label: int, speaker: sp.Speaker, trial: int, seed: int, n_channels: int):
    """(times float64, units, audio seconds) of one utterance; no spikes when it is silent."""
    from .cochlea import SilentAudioWarning, wave_to_spikes  # numba: loaded where the work is

    try:
        u = sp.synthesize_utterance(label, speaker, sp.utterance_rng(seed, speaker.speaker_id, label, trial),
                                    trial=trial)
    except sp.SilentSynthesisError:
        return np.zeros(0), np.zeros(0, np.int64), 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SilentAudioWarning)
        t, units = wave_to_spikes(u.samples, u.sample_rate, n_channels,
                                  rng=_cochlea_rng(seed, speaker.speaker_id, label, trial))
    return t, units, u.samples.size / u.sample_rate


def _run_chunk(job: _Chunk) -> dict:
    """Make and save one chunk (atomically); returns its CPU time and audio length."""
    cpu0 = time.process_time()
    times, units, counts, used, silent = [], [], [], [], []
    audio = 0.0
    for k, (sid, label, trial) in enumerate(job.rows.tolist()):
        index = job.start + k
        speaker = job.speakers[sid]
        tried = trial
        for attempt in range(SPARE_TRIALS + 1):
            t, u, dur = _spikes(label, speaker, tried, job.seed, job.n_channels)
            if t.size:
                break
            silent.append((job.split, index, sid, label, tried))
            tried = spare_trial(job.n_trials, job.split, index, attempt)
        else:
            raise RuntimeError(f"speaker {sid}, word {sp.KEYS[label]!r}: {SPARE_TRIALS + 1} trials in a row gave "
                               f"no spikes (espeak-ng or the cochlea is broken here); nothing was written")
        times.append(t.astype(np.float16))  # the file's dtype; order kept (rounding is monotonic)
        units.append(u.astype(np.uint16))
        counts.append(t.size)
        used.append(tried)
        audio += dur
    arrays = {
        "rows": job.rows, "trials_used": np.array(used, np.int64),
        "counts": np.array(counts, np.int64),
        "times": np.concatenate(times) if times else np.zeros(0, np.float16),
        "units": np.concatenate(units) if units else np.zeros(0, np.uint16),
        "silent": np.array(silent, np.int64).reshape(-1, 5),
    }
    with atomic_output(job.path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return {"path": job.path, "n": len(job.rows), "cpu_s": time.process_time() - cpu0, "audio_s": audio}


def _load_chunk(path: Path, rows: np.ndarray) -> dict | None:
    """A finished chunk's arrays, or None when missing, unreadable or not this chunk's rows."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("rows", "trials_used", "counts", "times", "units", "silent")}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if not np.array_equal(data["rows"], rows) or int(data["counts"].sum()) != len(data["times"]) \
            or len(data["times"]) != len(data["units"]) or len(data["counts"]) != len(rows):
        return None
    return data


def _init_worker() -> None:
    for name in _THREAD_VARS:
        os.environ[name] = "1"
    with contextlib.suppress(Exception):  # numba may not be loaded yet: then the variable does it
        import numba

        numba.set_num_threads(1)


@contextlib.contextmanager
def _one_thread_env():
    """The thread variables set to 1 while the pool's workers are spawned (they inherit them)."""
    old = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- provenance
def _package_version() -> str:
    try:
        return metadata.version("elm_neuro")
    except metadata.PackageNotFoundError:
        return "unknown"


def _settings(plan: SpokenPlan, n_channels: int, voices) -> dict:
    """Everything the samples depend on (plan.json; the provenance attribute adds the split)."""
    from .cochlea import CochleaConfig

    return {
        "generator": GENERATOR, "command": COMMAND, "version": _package_version(), "seed": plan.seed,
        "n_train": len(plan.train), "n_test": len(plan.test), "n_trials": plan.n_trials,
        "voices": list(voices) if voices is not None else None,
        "speakers": [dataclasses.asdict(s) for s in plan.speakers],
        "speech": sp.speech_settings(), "espeak_ng": sp.espeak_version(),
        "cochlea": {"model": "elm_neuro.data.cochlea (Lauscher's chain)", "mode": "fast", "pad": True,
                    "n_channels": n_channels, "config": dataclasses.asdict(CochleaConfig())},
        "spare_trials": SPARE_TRIALS,
    }


def _meta_info(speakers: Sequence[sp.Speaker]) -> dict:
    return {
        "gender": np.array([s.gender.encode() for s in speakers]),
        "age": np.zeros(len(speakers), np.uint8),
        "body_height": np.zeros(len(speakers), np.float32),
        "variant": np.array([s.variant.encode() for s in speakers]),
        "accent": np.array([s.english.encode() for s in speakers]),
        "pitch": np.array([s.pitch for s in speakers], np.float32),
        "rate": np.array([s.rate for s in speakers], np.float32),
        "pitch_range": np.array([s.pitch_range for s in speakers], np.float32),
    }


# --------------------------------------------------------------------------- the command
@dataclasses.dataclass(frozen=True)
class SpokenResult:
    """What :func:`write_spoken_shd` did."""

    train: Path
    test: Path
    silent: list  # (split, sample, speaker, label, silent trial) of every replaced utterance
    chunks_made: int
    chunks_reused: int
    digits_made: int
    wall_s: float
    cpu_s_per_digit: float | None  # over the chunks made by this call
    projected_s: float | None  # the projection printed for a large set (None: none)


def _check_out(out_dir: Path, force: bool) -> list[Path]:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder; give a folder for shd_train.h5 and shd_test.h5")
    paths = [out_dir / "shd_train.h5", out_dir / "shd_test.h5"]
    present = [p.name for p in paths if p.exists() or p.is_symlink()]
    if present and not force:
        raise ValueError(f"--out {out_dir} already holds {' and '.join(present)} (runs may point to them); use "
                         f"--force to replace them, or choose another folder")
    if present:
        check_generated(paths, SPOKEN_ATTR, COMMAND)  # never the real SHD, a synthetic set or a user's file
    return paths


def _prepare_work(work: Path, settings: dict, log) -> None:
    """The work folder for ``settings`` and the chunk size: kept when it was made for them, else
    started afresh."""
    plan_path = work / PLAN_FILE
    text = json.dumps({**settings, "chunk": D.SPOKEN_CHUNK}, indent=1, sort_keys=True) + "\n"
    if work.is_dir():
        try:
            same = plan_path.read_text() == text
        except OSError:
            same = False
        if same:
            return
        if any(work.iterdir()):
            log(f"{work} holds chunks of other settings; starting afresh")
        _clear_work(work)
    work.mkdir(exist_ok=True)
    with atomic_output(plan_path) as tmp:
        tmp.write_text(text)


def _clear_work(work: Path) -> None:
    """Remove the work folder: only its own entries (plan, chunks, their temporary files)."""
    if not work.is_dir() or work.is_symlink():
        return
    for entry in work.iterdir():
        name = entry.name
        if entry.is_file() and (name.startswith(PLAN_FILE) or name.startswith(_SPLITS)) \
                and (name.endswith(".npz") or name.endswith(".tmp") or name == PLAN_FILE):
            entry.unlink()
    with contextlib.suppress(OSError):
        work.rmdir()


def _jobs(plan: SpokenPlan, work: Path, n_channels: int) -> list[_Chunk]:
    size = D.SPOKEN_CHUNK
    jobs = []
    by_id = {s.speaker_id: s for s in plan.speakers}
    speakers = tuple(by_id[i] for i in range(len(plan.speakers)))
    for s, split in enumerate(_SPLITS):
        rows = plan.rows(split)
        for c, start in enumerate(range(0, len(rows), size)):
            jobs.append(_Chunk(str(work / f"{split}-{c:05d}.npz"), s, start, rows[start:start + size], speakers,
                               plan.seed, plan.n_trials, n_channels))
    return jobs


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def write_spoken_shd(out_dir: str | os.PathLike, n_train: int = D.SPOKEN_N_TRAIN, n_test: int = D.SPOKEN_N_TEST,
                     seed: int = D.SEED, *, workers: int = D.SPOKEN_WORKERS, n_speakers: int = D.SPOKEN_SPEAKERS,
                     voices: Sequence[str] | str | None = None, force: bool = False, n_channels: int = N_UNITS,
                     progress: bool | None = None, log: Callable[[str], None] | None = None) -> SpokenResult:
    """Write ``shd_train.h5`` / ``shd_test.h5`` of spoken digits to ``out_dir`` (module docstring).

    Every argument is checked, and ``out_dir`` too (a file, files present without ``force``,
    files ``force`` may not replace), before anything is created; each error names its option.
    ``n_channels`` (1..700) is for tests: fewer cochlea channels, same layout. ``progress``: the
    tqdm bar (None: on a terminal only). ``log`` receives the lines worth printing (a projected
    time, a restarted work folder). Raises :class:`~elm_neuro.data.speech.EspeakUnavailable`
    without espeak-ng.
    """
    t_start = time.monotonic()
    log = log or (lambda line: None)
    plan = plan_spoken(n_train, n_test, seed, n_speakers, voices)
    workers = _int_arg("workers", "--workers", workers, 1, 256)
    n_channels = _int_arg("n_channels", None, n_channels, 1, N_UNITS)
    voices = _check_voices(voices)
    out_dir = Path(out_dir)
    paths = _check_out(out_dir, force)
    settings = _settings(plan, n_channels, voices)  # asks espeak-ng for its version: fails before any folder
    created = make_folders(out_dir)
    work = out_dir / WORK_DIR
    try:
        with folder_lock(out_dir, "--out folder"):
            try:
                _check_out(out_dir, force)  # again, under the lock
                _prepare_work(work, settings, log)
                jobs = _jobs(plan, work, n_channels)
                chunks: dict[str, dict] = {}
                todo = []
                for job in jobs:
                    data = _load_chunk(Path(job.path), job.rows)
                    if data is None:
                        todo.append(job)
                    else:
                        chunks[job.path] = data
                total = len(plan.train) + len(plan.test)
                stats = _run_jobs(todo, workers, total, total - sum(len(j.rows) for j in todo), progress, log)
                for job in todo:
                    data = _load_chunk(Path(job.path), job.rows)
                    if data is None:
                        raise RuntimeError(f"chunk {job.path} was not written as expected; run the command again")
                    chunks[job.path] = data
                silent = _write_files(plan, jobs, chunks, paths, settings)
                _clear_work(work)
            except BaseException:
                if work.is_dir() and not any(e.suffix == ".npz" for e in work.iterdir()):
                    _clear_work(work)  # nothing worth keeping for a restart
                raise
    except BaseException:
        remove_empty_folders(created)  # only what this call created, and only while empty
        raise
    digits = sum(len(j.rows) for j in todo)
    return SpokenResult(train=paths[0], test=paths[1], silent=silent, chunks_made=len(todo),
                        chunks_reused=len(jobs) - len(todo),
                        digits_made=digits, wall_s=time.monotonic() - t_start,
                        cpu_s_per_digit=stats["cpu_s"] / digits if digits else None,
                        projected_s=stats["projected_s"])


def _run_jobs(todo: list[_Chunk], workers: int, total: int, done: int, progress, log) -> dict:
    """Run the chunks (in this process or a spawned pool), with the bar and the projection."""
    stats = {"cpu_s": 0.0, "projected_s": None}
    if not todo:
        return stats
    todo_digits = sum(len(j.rows) for j in todo)
    t0 = time.monotonic()
    made = 0
    bar = tqdm(total=total, initial=done, desc="spoken SHD", unit="digit", smoothing=0.05,
               disable=(not progress) if progress is not None else None)

    ref = {}  # clock and count at the first finished chunk: the projection leaves out start-up

    def finished(res: dict) -> None:
        nonlocal made
        made += res["n"]
        stats["cpu_s"] += res["cpu_s"]
        bar.update(res["n"])
        now = time.monotonic()
        if not ref:
            ref.update(t=now, made=made)
        since = made - ref["made"]
        if stats["projected_s"] is None and total >= PROJECT_FROM and since >= PROJECT_AFTER and made < todo_digits:
            per = (now - ref["t"]) / since
            stats["projected_s"] = (ref["t"] - t0) + per * (todo_digits - ref["made"])
            line = (f"projected time: {_minutes(stats['projected_s'])} for {todo_digits} digits on {workers} "
                    f"worker(s) ({per:.3f} s per digit over {since} digits, plus {ref['t'] - t0:.0f} s of start-up)")
            with (contextlib.nullcontext() if bar.disable else tqdm.external_write_mode()):
                log(line)

    try:
        if workers == 1 or len(todo) == 1:
            for job in todo:
                finished(_run_chunk(job))
        else:
            _pool_run(todo, min(workers, len(todo)), finished)
    finally:
        bar.close()
    return stats


def _pool_run(todo: list[_Chunk], workers: int, finished) -> None:
    with _one_thread_env():
        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
    try:
        pending = {ex.submit(_run_chunk, job) for job in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                finished(fut.result())
    except BaseException:
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # finished chunks are on disk; the ones in progress are redone on a rerun
            with contextlib.suppress(OSError, ValueError, AttributeError):
                p.terminate()
        for p in procs:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                p.join(10)
        raise
    ex.shutdown(wait=True)


def _write_files(plan: SpokenPlan, jobs: list[_Chunk], chunks: dict, paths: list[Path], settings: dict) -> list:
    """Both files from the chunks, in plan order, moved into place together; the silent list."""
    silent_all = []
    per_split = {}
    for s, split in enumerate(_SPLITS):
        parts = [chunks[j.path] for j in jobs if j.split == s]
        counts = np.concatenate([p["counts"] for p in parts])
        silent = np.concatenate([p["silent"] for p in parts]).tolist()
        silent_all.extend(tuple(r) for r in silent)
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        per_split[split] = (parts, offsets, silent)
    with atomic_output(paths[0]) as tmp_train, atomic_output(paths[1]) as tmp_test:
        for (split, tmp) in (("train", tmp_train), ("test", tmp_test)):
            parts, offsets, silent = per_split[split]
            rows = plan.rows(split)
            prov = {**settings, "split": split, "samples": int(len(rows)),
                    "silent_replaced": {"count": len(silent), "total_both_splits": len(silent_all),
                                        "utterances": [dict(zip(("split", "sample", "speaker", "label", "trial"),
                                                                 (split, *r[1:]))) for r in silent]}}
            write_shd_h5(tmp, np.concatenate([p["times"] for p in parts]),
                         np.concatenate([p["units"] for p in parts]), offsets, rows[:, 1], rows[:, 0],
                         keys=sp.KEYS, meta_info=_meta_info(plan.speakers), times_dtype=np.float16,
                         attrs={SPOKEN_ATTR: json.dumps(prov, sort_keys=True), SEED_ATTR: int(plan.seed)})
    return silent_all
