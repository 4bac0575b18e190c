"""Spoken digits synthesised with espeak-ng: the audio side of an SHD-like data set.

The Spiking Heidelberg Digits (SHD, Cramer et al. 2020) are recordings of the digits 0-9 in
English and German, turned into spikes by a cochlea model. The recordings cannot be downloaded
here, so this module speaks the twenty words with the espeak-ng formant synthesiser (the shared
library and voice data of the ``espeakng-loader`` wheel, called through ctypes) and gives them
SHD's labels, keys, speaker protocol and timing conventions. The cochlea
(:mod:`elm_neuro.data.cochlea`, ``wave_to_spikes(samples, sample_rate, ...)``) turns the samples
into spikes.

Public API
----------
``synthesize(text, voice="en", *, rate=175, pitch=50, pitch_range=50, sample_rate=None)``
    -> ``(samples, sample_rate)``: raw espeak-ng output as float32 in [-1, 1] (int16 / 32768),
    untrimmed, at the library's rate (22050 Hz) or resampled to ``sample_rate``.
``trim_silence(samples, sample_rate, margin_s=TRIM_MARGIN_S, threshold_db=TRIM_THRESHOLD_DB)``
    Cut leading / trailing silence to exactly ``margin_s`` on both sides.
``label_of(digit, language)``, ``label_key(label)``, ``label_text(label)``, ``label_language(label)``
    SHD's label convention: 0-9 English "zero".."nine", 10-19 German "null".."neun".
``Speaker``, ``draw_speakers(n=12, seed=0, variants=None)``
    A speaker = espeak-ng voice variant x English accent x base pitch x speaking rate x
    intonation range, drawn deterministically from a seed.
``speaker_split(speakers, test_only=TEST_ONLY_SPEAKERS)`` -> ``SpeakerSplit``;
``split_trials(speaker, label, split, ...)``
    SHD's protocol: the test-only speakers are never in the training split; the other speakers
    are in both, with disjoint trials.
``synthesize_utterance(label, speaker, rng, ...)`` -> ``Utterance``; ``utterance(label, speaker, rng)``
    -> samples. One recording: speaker + per-utterance variation, trimmed, gain, background noise.
``iter_split(split, speakers, ...)``
    Generator over every ``Utterance`` of a split (label, speaker, samples, key, trial, ...).
``utterance_rng(seed, speaker_id, label, trial)``, ``speech_settings()``
    The generator of one utterance (what ``iter_split`` uses); the audio settings as plain data.
``espeak_available()``, ``espeak_version()``

SHD facts this module follows (and where they come from)
--------------------------------------------------------
* Labels (SHD README of the data set, "Collection"; the package's reader
  :mod:`elm_neuro.data.shd`): 20 classes, 0-9 the English digits "zero".."nine", 10-19 the German
  digits "null".."neun" (digit = label mod 10). The file's ``extra/keys`` holds "the
  transformation from word id to spoken word", one string per label. Keys are taken from
  :data:`elm_neuro.data.shd.CLASS_NAMES` so that synthetic, speech-based and real files agree in
  this package; the README writes the German five as "fünf", the package's key is the ASCII
  "fuenf" (the exact byte strings of the official files could not be checked here). The text
  spoken for label 15 is "fünf" (espeak-ng's German rules read "fuenf" as two syllables).
* Speakers (SHD README, "Partitioning"): 12 speakers; all digits of speakers 4 and 5 go to the
  test set; in addition 5 % of the recordings of each digit and language of every other speaker
  go to the test set. So the test set holds all 12 speakers, 2 of them exclusively, and the
  training set the other 10. :func:`speaker_split` / :func:`split_trials` / :func:`iter_split`
  implement exactly that (defaults ``TEST_ONLY_SPEAKERS = (4, 5)``, ``TEST_FRACTION = 0.05``,
  ``N_TRIALS = 40``: the README says each word is "repeated about 40 times for each speaker").
* Timing: the Heidelberg Digits are "high-quality aligned studio recordings" (SHD web page); the
  paper's abstract calls the HD set "word-level aligned". That the HD audio is 48 kHz / 24 bit
  and that SHD samples last 0.32-1.17 s is stated only in third-party code (Yin et al. 2021,
  SHD preprocessing script), not checked against the paper. **Package choices**: the
  utterance is cut at the first / last 5 ms window within ``TRIM_THRESHOLD_DB`` (-50 dB) of the
  loudest window and keeps exactly ``TRIM_MARGIN_S`` (50 ms) before and after, so every word
  starts 50 ms into its sample (0.24-0.9 s in all with the default ranges, inside the 1 s that
  the package's SHD tasks keep); the output rate is ``SAMPLE_RATE`` = 22050 Hz, espeak-ng's own
  rate: no resampling, and since espeak-ng synthesises at 22050 Hz there is nothing above
  11 kHz that a higher rate (48 kHz like HD) could carry; it would only double the cochlea's
  work. ``synthesize(..., sample_rate=...)`` / ``synthesize_utterance(..., sample_rate=...)``
  give other rates (FFT resampling) if the cochlea wants them.

Speaker variety (ranges of :func:`draw_speakers`; each :class:`Speaker` field is validated
against the library's limits)
-------------------------------------------------------------------------------------------
* ``variant``: an espeak-ng voice variant (``VARIANTS``: 15 male, e.g. m1..m7, klatt..klatt3,
  and 8 female, e.g. f1, f4, Andrea, linda); half the speakers male, half female, variants
  drawn without replacement within a gender. The variant sets formants, base pitch, flutter,
  roughness. Variants with breath noise are left out: espeak-ng 1.52 reads uninitialised memory
  there, so their audio is not reproducible (found by synthesising every variant under two
  ``MALLOC_PERTURB_`` heap fills; every other variant gave identical samples).
* ``english``: the English accent (``ENGLISH_VOICES``: en-us, en (British), en-gb-x-rp,
  en-gb-scotland, en-us-nyc); German is always ``de``.
* ``pitch``: espeakPITCH, uniform in [30, 70] (library range 0-100, 50 = the variant's normal).
* ``rate``: espeakRATE in words per minute, uniform in [140, 210] (library range 80-450).
* ``pitch_range``: espeakRANGE (intonation range), uniform in [25, 75] (library range 0-100).
* Per utterance (drawn from the utterance's ``rng``): pitch +- 10, rate x [0.85, 1.15], range
  +- 15 (clipped to the library limits), so repeats of a word by one speaker differ like
  repeated recordings. The ranges were +- 4, x [0.94, 1.06] and +- 6 before: a speaker's
  repeats were then nearly identical after the cochlea, so that a logistic regression on spike
  counts in 50 ms bins (:mod:`elm_neuro.data.baseline`) recognised 99.2 % of the test
  utterances of training speakers (68.3 % of all, 60.6 % of the test-only speakers'; 2,000 / 600
  digits of ``elm-neuro data spoken``, seed 0). With the wider ranges: 96.7 % / 63.0 % / 54.6 %,
  and an ELM network (20 K parameters, 3,750 steps) generalises better to the test-only
  speakers (test 62.0 % against 53.8 %: tempo and pitch variety act as augmentation);
  benchmarks/bench_spoken_baseline.py has the numbers. Peak level ``gain_db`` uniform in
  [-20, -6] dBFS (the cochlea normalises the RMS: no effect on spikes); background noise with
  power spectrum ~ 1/f^beta, beta uniform in [0, 1.5] (white to beyond pink), at ``snr_db``
  uniform in [10, 30] dB. SNR is ``10 log10(mean(speech^2) / mean(noise^2))`` over the whole
  returned sample (margins included) and holds exactly: the noise is scaled to it. Should the
  sum exceed full scale, speech and noise are scaled down together (the SNR is kept).

Determinism, processes and threads
----------------------------------
espeak-ng keeps state from one synthesis to the next (e.g. its pitch-flutter phase and noise
generator), so the same call gives different samples depending on what was spoken before. Each
synthesis therefore loads a private copy of the shared library afresh (dlopen, espeak_Initialize,
synthesise, espeak_Terminate, dlclose; ~1 ms of the ~5 ms of CPU a synthesis takes), which
makes the output a pure function of (text, voice, parameters): identical in any order,
process or worker. The private
copy (one per process: an anonymous in-memory file on Linux, a temporary file removed at exit
elsewhere) also keeps this module's library instance apart from any other user of
``libespeak-ng`` in the process (e.g. a phonemizer), whose global state it would otherwise share.

* Threads: every call into the library holds one process-wide lock, so everything public here
  may be called from any number of threads; syntheses run one at a time (the GIL is released
  during a synthesis, so other Python threads go on, but a second synthesis waits: use
  processes for parallel synthesis). Not thread-safe: the private ``_engine`` and the library
  functions it wraps, used directly without its lock.
* Processes: works under ``fork`` and ``spawn``. A forked child re-creates the lock (in case
  the fork happened while another thread held it) and makes its own private copy of the
  library on first use; nothing is initialised at import, so spawned workers start clean.
  Spawned workers pay ~1-2 s of imports, so a pool pays off for thousands of utterances.
"""
from __future__ import annotations

import _ctypes  # dlclose: each synthesis unloads its library instance
import atexit
import ctypes
import math
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from .shd import CLASS_NAMES, N_CLASSES

__all__ = [
    "SAMPLE_RATE", "TRIM_MARGIN_S", "TRIM_THRESHOLD_DB", "LANGUAGES", "LANGUAGE_VOICES",
    "ENGLISH_VOICES", "VARIANTS", "KEYS", "TEXTS", "N_SPEAKERS", "TEST_ONLY_SPEAKERS",
    "TEST_FRACTION", "N_TRIALS", "SNR_DB_RANGE", "GAIN_DB_RANGE", "NOISE_EXPONENT_RANGE",
    "PITCH_RANGE", "RATE_RANGE", "INTONATION_RANGE", "SilentSynthesisError", "EspeakUnavailable",
    "Speaker", "SpeakerSplit", "Utterance", "espeak_available", "espeak_version", "synthesize",
    "trim_silence", "resample", "label_of", "label_key", "label_text", "label_language",
    "draw_speakers", "speaker_split", "split_trials", "synthesize_utterance", "utterance",
    "iter_split", "utterance_rng", "speech_settings",
]

# --------------------------------------------------------------------------- conventions
#: Output sample rate in Hz (espeak-ng's own rate; see the module docstring).
SAMPLE_RATE = 22050
#: Silence kept before the first and after the last sounding 5 ms window, seconds.
TRIM_MARGIN_S = 0.05
#: A 5 ms window sounds when its RMS is within this many dB of the loudest window's.
TRIM_THRESHOLD_DB = -50.0
_TRIM_FRAME_S = 0.005

LANGUAGES = ("english", "german")
#: espeak-ng voice of each language (English: the speaker's accent replaces it).
LANGUAGE_VOICES = {"english": "en-us", "german": "de"}
ENGLISH_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc")
#: The espeak-ng variants speakers are drawn from, with their gender (voices/!v/<name>). Left
#: out: variants with a ``breath`` setting (f2, f3, f5, Alicia, victor, whisper, ...), which
#: are not reproducible (see :func:`synthesize`), and robotic / effect voices.
VARIANTS = {
    **{v: "male" for v in ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt2",
                           "klatt3", "Andy", "Denis", "antonio", "david", "edward")},
    **{v: "female" for v in ("f1", "f4", "Andrea", "Annie", "aunty", "belinda", "linda",
                             "steph")},
}

#: ``extra/keys``: the word of each label (label 0-9 English, 10-19 German).
KEYS: tuple[str, ...] = tuple(CLASS_NAMES)
#: The text espeak-ng speaks for each label.
TEXTS: tuple[str, ...] = tuple("fünf" if k == "fuenf" else k for k in KEYS)

N_SPEAKERS = 12
TEST_ONLY_SPEAKERS = (4, 5)
TEST_FRACTION = 0.05
N_TRIALS = 40

# Draw ranges (speaker level, then utterance level).
PITCH_RANGE = (30.0, 70.0)
RATE_RANGE = (140.0, 210.0)
INTONATION_RANGE = (25.0, 75.0)
_PITCH_JITTER = 10.0  # per-utterance ranges: see "Speaker variety" in the module docstring
_RATE_JITTER = 0.15
_INTONATION_JITTER = 15.0
SNR_DB_RANGE = (10.0, 30.0)
GAIN_DB_RANGE = (-20.0, -6.0)
NOISE_EXPONENT_RANGE = (0.0, 1.5)

# espeak-ng's own limits (speak_lib.h).
_RATE_LIMITS = (80, 450)  # espeakRATE_MINIMUM, espeakRATE_MAXIMUM
_PITCH_LIMITS = (0, 100)
_RANGE_LIMITS = (0, 100)

# Streams of SeedSequence(seed, spawn_key=(stream, ...)).
_SPEAKER_STREAM, _SPLIT_STREAM, _UTTERANCE_STREAM = 1, 2, 3


class SilentSynthesisError(RuntimeError):
    """espeak-ng returned no audio, or only zeros, for a text and voice."""


class EspeakUnavailable(RuntimeError):
    """The espeak-ng library (``pip install espeakng-loader``) cannot be loaded."""


# --------------------------------------------------------------------------- the library
# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4
_BUFFER_MS = 200

_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)


class _Engine:
    """Per-process state: the private library copy, the callback, the chunks of one synthesis."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.copy_dir: str | None = None
        self.lib_path: str | None = None
        self.data_parent: bytes | None = None
        self.data_dir: str | None = None
        self.variants: frozenset[str] | None = None
        self.breathy: frozenset[str] = frozenset()
        self.sample_rate: int | None = None
        self.chunks: list[bytes] = []
        self.callback = _CALLBACK_TYPE(self._collect)

    def _collect(self, wav, n, events) -> int:  # called by espeak-ng inside espeak_Synth
        if n > 0 and wav:
            self.chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    def prepare(self) -> None:
        """Find the wheel, make this process's private copy of its library (once)."""
        if self.lib_path is not None:
            return
        try:
            import espeakng_loader
        except ImportError as e:
            raise EspeakUnavailable(
                "espeak-ng is not installed: pip install espeakng-loader "
                "(it ships libespeak-ng and its voice data)") from e
        try:
            src = os.path.realpath(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
            with open(src, "rb") as f:
                image = f.read()
        except (OSError, RuntimeError) as e:
            raise EspeakUnavailable(
                f"espeakng-loader's library or voice data is missing: {e}") from e
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            # Linux: an anonymous in-memory file, gone with the process (pool workers that are
            # killed leave nothing behind).
            fd = os.memfd_create("elm_neuro-libespeak-ng", getattr(os, "MFD_CLOEXEC", 0))
            view = memoryview(image)
            while view:
                view = view[os.write(fd, view):]
            self.fd, self.lib_path = fd, f"/proc/self/fd/{fd}"
        else:
            copy_dir = tempfile.mkdtemp(prefix="elm_neuro-espeak-")
            dst = os.path.join(copy_dir, "libespeak-ng" + os.path.splitext(src)[1])
            with open(dst, "wb") as f:
                f.write(image)
            self.copy_dir, self.lib_path = copy_dir, dst
        self.data_dir = data
        # espeak_Initialize wants the directory that contains espeak-ng-data.
        self.data_parent = os.fsencode(os.path.dirname(os.path.abspath(data)))
        vdir = os.path.join(data, "voices", "!v")
        self.variants = frozenset(os.listdir(vdir)) if os.path.isdir(vdir) else frozenset()
        self.breathy = frozenset(v for v in self.variants if _uses_breath(os.path.join(vdir, v)))

    def cleanup(self) -> None:
        if os.getpid() != self.pid:
            return
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
        if self.copy_dir is not None:
            shutil.rmtree(self.copy_dir, ignore_errors=True)
        self.fd = self.copy_dir = self.lib_path = None

    def open(self):
        """A fresh library instance, initialised for synchronous retrieval."""
        try:
            lib = ctypes.CDLL(self.lib_path, mode=os.RTLD_LOCAL)
        except OSError as e:
            raise EspeakUnavailable(f"cannot load libespeak-ng ({self.lib_path}): {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, self.data_parent,
                                     _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            _ctypes.dlclose(lib._handle)
            raise EspeakUnavailable(
                f"espeak_Initialize failed (returned {rate}) with data at {self.data_dir}")
        self.sample_rate = rate
        lib.espeak_SetSynthCallback(self.callback)
        return lib

    @staticmethod
    def close(lib) -> None:
        try:
            lib.espeak_Terminate()
        finally:
            _ctypes.dlclose(lib._handle)


def _uses_breath(path: str) -> bool:
    """Whether a variant file sets a non-zero ``breath`` (espeak-ng's breath-noise formants)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split("//", 1)[0].split()
                if words and words[0] == "breath" and any(w not in ("0", "-0") for w in words[1:]):
                    return True
    except OSError:
        return False
    return False


_engine = _Engine()
atexit.register(lambda: _engine.cleanup())


def _after_fork_in_child() -> None:
    # The child gets a fresh lock (the parent's may have been held by another thread at the
    # fork) and its own library copy (the parent's copy goes when the parent exits).
    global _engine
    inherited, _engine = _engine, _Engine()
    if inherited.fd is not None:
        try:
            os.close(inherited.fd)
        except OSError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def espeak_available() -> bool:
    """True when ``espeakng-loader`` is installed and its library loads."""
    try:
        espeak_version()
    except EspeakUnavailable:
        return False
    return True


def espeak_version() -> str:
    """The espeak-ng version string (``espeak_Info``); raises :class:`EspeakUnavailable`."""
    eng = _engine
    with eng.lock:
        eng.prepare()
        lib = eng.open()
        try:
            return lib.espeak_Info(None).decode()
        finally:
            eng.close(lib)


# --------------------------------------------------------------------------- validation helpers
def _number(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return v


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"text is empty ({text!r}): nothing to speak")
    if "\0" in text:
        raise ValueError("text must not contain NUL characters")
    return text


_LANGUAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


def _check_voice(voice, variants: frozenset[str], breathy: frozenset[str]) -> str:
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError(f"voice must be a non-empty espeak-ng voice name such as 'en' or "
                         f"'de+f2', got {voice!r}")
    if voice.count("+") > 1 or not _LANGUAGE_NAME.match(voice.split("+", 1)[0]):
        raise ValueError(f"voice {voice!r} is not of the form 'language' or 'language+variant' "
                         f"(e.g. 'en-us', 'de+f2')")
    if "+" in voice:
        variant = voice.split("+", 1)[1]
        if variant not in variants:
            raise ValueError(f"voice {voice!r}: unknown espeak-ng variant {variant!r} "
                             f"(e.g. {', '.join(sorted(VARIANTS)[:6])}, ...)")
        if variant in breathy:
            raise ValueError(f"voice {voice!r}: variant {variant!r} uses espeak-ng's breath noise, "
                             f"whose output depends on uninitialised memory (not reproducible); "
                             f"choose another variant")
    return voice


# --------------------------------------------------------------------------- synthesis
def synthesize(text: str, voice: str = "en", *, rate: float = 175, pitch: float = 50,
               pitch_range: float = 50, sample_rate: int | None = None
               ) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng: ``(samples float32 in [-1, 1], sample_rate)``.

    ``voice`` is an espeak-ng voice ("en", "en-us", "de", ...) optionally with a variant
    ("de+f2", "en-us+klatt"); ``rate`` words per minute (80-450), ``pitch`` base pitch and
    ``pitch_range`` intonation range (0-100, 50 = the voice's normal). The audio is untrimmed,
    at the library's rate (22050 Hz) unless ``sample_rate`` asks for another one (FFT
    resampling). The result depends on the arguments only (see the module docstring).

    Variants with a ``breath`` setting (f2, f3, f5, Alicia, victor, whisper, ...) are refused:
    with them espeak-ng 1.52 reads uninitialised memory (its output changes with the heap's
    contents, e.g. under ``MALLOC_PERTURB_``), so they cannot be reproduced.

    Raises ``ValueError`` naming the argument for an empty text, an unknown or irreproducible
    voice or variant, a parameter outside its range; :class:`SilentSynthesisError` when espeak-ng produces no
    sound (e.g. for text of punctuation only); :class:`EspeakUnavailable` without the library.
    """
    text = _check_text(text)
    rate_i = int(round(_number("rate", rate, *_RATE_LIMITS)))
    pitch_i = int(round(_number("pitch", pitch, *_PITCH_LIMITS)))
    range_i = int(round(_number("pitch_range", pitch_range, *_RANGE_LIMITS)))
    if sample_rate is not None and (isinstance(sample_rate, bool)
                                    or not isinstance(sample_rate, (int, np.integer))
                                    or not 1000 <= sample_rate <= 384000):
        raise ValueError(
            f"sample_rate must be an integer in [1000, 384000] Hz, got {sample_rate!r}")
    encoded = text.encode("utf-8") + b"\0"
    eng = _engine
    with eng.lock:
        eng.prepare()
        voice = _check_voice(voice, eng.variants, eng.breathy)
        lib = eng.open()
        try:
            status = lib.espeak_SetVoiceByName(voice.encode("utf-8"))
            if status != _EE_OK:
                raise ValueError(f"voice {voice!r} is not an espeak-ng voice (espeak_SetVoiceByName "
                                 f"returned {status}); try 'en', 'en-us', 'de'")
            for param, value in ((_P_RATE, rate_i), (_P_PITCH, pitch_i), (_P_RANGE, range_i),
                                 (_P_VOLUME, 100)):
                lib.espeak_SetParameter(param, value, 0)
            eng.chunks = []
            status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                      None, None)
            if status != _EE_OK:
                raise RuntimeError(
                    f"espeak_Synth failed ({status}) for text {text!r}, voice {voice!r}")
            lib.espeak_Synchronize()
            raw = b"".join(eng.chunks)
            native = eng.sample_rate
        finally:
            eng.chunks = []
            eng.close(lib)
    pcm = np.frombuffer(raw, dtype=np.int16)
    if pcm.size == 0 or not np.any(pcm):
        raise SilentSynthesisError(
            f"espeak-ng produced no sound for text {text!r} with voice {voice!r} "
            f"({pcm.size} samples, all zero)")
    samples = pcm.astype(np.float32) / np.float32(32768.0)
    if sample_rate is not None and int(sample_rate) != native:
        samples = np.clip(resample(samples, native, int(sample_rate)), -1.0, 1.0)
        native = int(sample_rate)
    return samples, int(native)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited FFT resampling of a whole (short) signal; float32 out."""
    x = np.asarray(samples, dtype=np.float64)
    if rate_in == rate_out or x.size == 0:
        return x.astype(np.float32)
    n_out = max(1, int(round(x.size * rate_out / rate_in)))
    spec = np.fft.rfft(x)
    keep = n_out // 2 + 1
    if keep <= spec.size:
        spec = spec[:keep].copy()
        if n_out % 2 == 0:
            spec[-1] = spec[-1].real  # the new Nyquist bin of a real signal
    else:
        spec = np.concatenate([spec, np.zeros(keep - spec.size, dtype=spec.dtype)])
    y = np.fft.irfft(spec, n=n_out) * (n_out / x.size)
    return y.astype(np.float32)


def trim_silence(samples: np.ndarray, sample_rate: int, margin_s: float = TRIM_MARGIN_S,
                 threshold_db: float = TRIM_THRESHOLD_DB) -> np.ndarray:
    """Keep the sounding part plus exactly ``margin_s`` before and after it.

    The sounding part runs from the start of the first to the end of the last 5 ms window whose
    RMS is within ``threshold_db`` of the loudest window's (windows at every sample offset).
    The margins take the signal's own samples where it has them and zeros beyond, so the output
    length is (sounding part) + 2 x margin exactly, wherever the word sits in its input.
    Raises :class:`SilentSynthesisError` for an all-zero input.
    """
    x = np.asarray(samples, dtype=np.float32)
    _number("margin_s", margin_s, 0.0, 10.0)
    _number("threshold_db", threshold_db, -200.0, 0.0)
    n = x.size
    frame = max(1, int(round(_TRIM_FRAME_S * sample_rate)))
    # Mean power of every window of ``frame`` samples ending at k (zeros outside the signal),
    # so the cut does not depend on where the signal sits in its array.
    cum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    k = np.arange(n + frame - 1)
    power = (cum[np.minimum(n, k + 1)] - cum[np.maximum(0, k - frame + 1)]) / frame
    peak = power.max() if power.size else 0.0
    if peak <= 0.0:
        raise SilentSynthesisError("cannot trim an all-zero signal")
    loud = np.flatnonzero(power >= peak * 10.0 ** (threshold_db / 10.0))
    start, stop = max(0, int(loud[0]) - frame + 1), min(n, int(loud[-1]) + 1)
    margin = int(round(margin_s * sample_rate))
    out = np.zeros(stop - start + 2 * margin, dtype=np.float32)
    lo, hi = start - margin, stop + margin
    src_lo, src_hi = max(0, lo), min(x.size, hi)
    out[src_lo - lo:src_hi - lo] = x[src_lo:src_hi]
    return out


# --------------------------------------------------------------------------- labels
def _check_label(label) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
            or not 0 <= int(label) < N_CLASSES:
        raise ValueError(f"label must be an integer in 0..{N_CLASSES - 1}, got {label!r}")
    return int(label)


def label_of(digit: int, language: str) -> int:
    """SHD label of a digit (0-9) in "english" (labels 0-9) or "german" (labels 10-19)."""
    if isinstance(digit, bool) or not isinstance(digit, (int, np.integer)) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an integer in 0..9, got {digit!r}")
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    return 10 * LANGUAGES.index(language) + int(digit)


def label_key(label: int) -> str:
    """The ``extra/keys`` word of a label ("zero".."nine", "null".."neun")."""
    return KEYS[_check_label(label)]


def label_text(label: int) -> str:
    """The text espeak-ng speaks for a label (the key, "fünf" for "fuenf")."""
    return TEXTS[_check_label(label)]


def label_language(label: int) -> str:
    """ "english" for labels 0-9, "german" for 10-19."""
    return LANGUAGES[_check_label(label) // 10]


# --------------------------------------------------------------------------- speakers
@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an espeak-ng variant, an English accent and speaking parameters.

    ``speaker_id`` is what ``extra/speaker`` records (0..65535). ``pitch`` and ``pitch_range``
    are espeakPITCH / espeakRANGE (0-100), ``rate`` espeakRATE (80-450 words per minute).
    """

    speaker_id: int
    variant: str
    english: str = "en-us"
    pitch: float = 50.0
    rate: float = 175.0
    pitch_range: float = 50.0

    def __post_init__(self) -> None:
        sid = self.speaker_id
        if isinstance(sid, bool) or not isinstance(sid, (int, np.integer)) or not 0 <= sid <= 65535:
            raise ValueError(f"speaker_id must be an integer in 0..65535, got {sid!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of the espeak-ng variants {sorted(VARIANTS)}, "
                             f"got {self.variant!r}")
        if self.english not in ENGLISH_VOICES:
            raise ValueError(f"english must be one of {ENGLISH_VOICES}, got {self.english!r}")
        object.__setattr__(self, "speaker_id", int(sid))
        object.__setattr__(self, "pitch", _number("pitch", self.pitch, *_PITCH_LIMITS))
        object.__setattr__(self, "rate", _number("rate", self.rate, *_RATE_LIMITS))
        object.__setattr__(self, "pitch_range",
                           _number("pitch_range", self.pitch_range, *_RANGE_LIMITS))

    @property
    def gender(self) -> str:
        return VARIANTS[self.variant]

    def voice(self, language: str) -> str:
        """espeak-ng voice name of this speaker for "english" or "german"."""
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
        base = self.english if language == "english" else LANGUAGE_VOICES[language]
        return f"{base}+{self.variant}"


def draw_speakers(n: int = N_SPEAKERS, seed: int = 0,
                  variants: Sequence[str] | None = None) -> tuple[Speaker, ...]:
    """``n`` speakers (ids 0..n-1) drawn deterministically from ``seed``.

    Genders alternate in a seeded order (n // 2 male, the rest female); variants are drawn
    without replacement within a gender while there are enough of them. Parameter ranges:
    ``PITCH_RANGE``, ``RATE_RANGE``, ``INTONATION_RANGE``; accent from ``ENGLISH_VOICES``.
    ``variants`` restricts the voices to a subset of ``VARIANTS`` (None: all of them); a subset
    of one gender gives speakers of that gender only. With ``variants=None`` the speakers are
    those of every earlier version of this function.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 65536:
        raise ValueError(f"n must be an integer in 1..65536, got {n!r}")
    chosen = _check_variants(variants)
    rng = np.random.default_rng(np.random.SeedSequence(_seed(seed), spawn_key=(_SPEAKER_STREAM,)))
    pools = {g: sorted(v for v in chosen if VARIANTS[v] == g) for g in ("male", "female")}
    if pools["male"] and pools["female"]:
        genders = np.array(["male"] * (n // 2) + ["female"] * (n - n // 2))
    else:
        genders = np.array(["male" if pools["male"] else "female"] * n)
    rng.shuffle(genders)
    orders = {g: list(rng.permutation(pool)) for g, pool in pools.items()}
    speakers = []
    for sid in range(n):
        g = str(genders[sid])
        if not orders[g]:
            orders[g] = list(rng.permutation(pools[g]))
        variant = str(orders[g].pop())
        speakers.append(Speaker(
            speaker_id=sid, variant=variant,
            english=str(ENGLISH_VOICES[int(rng.integers(len(ENGLISH_VOICES)))]),
            pitch=round(float(rng.uniform(*PITCH_RANGE)), 2),
            rate=round(float(rng.uniform(*RATE_RANGE)), 2),
            pitch_range=round(float(rng.uniform(*INTONATION_RANGE)), 2)))
    return tuple(speakers)


def _check_variants(variants) -> tuple[str, ...]:
    """The variants of :func:`draw_speakers` (None: all of ``VARIANTS``), checked."""
    if variants is None:
        return tuple(VARIANTS)
    if isinstance(variants, str) or not isinstance(variants, (list, tuple, set, frozenset)):
        raise ValueError(f"variants must be a sequence of espeak-ng variant names, got {variants!r}")
    chosen = tuple(dict.fromkeys(variants))
    if not chosen:
        raise ValueError(f"variants is empty; give at least one of {sorted(VARIANTS)}")
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise ValueError(f"variants: unknown or excluded espeak-ng variant(s) {unknown}; choose from "
                         f"{sorted(VARIANTS)}")
    return chosen


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class SpeakerSplit:
    """Speaker ids of each split (SHD protocol): ``test_only`` never occur in ``train``."""

    train: tuple[int, ...]
    test: tuple[int, ...]
    test_only: tuple[int, ...]


def speaker_split(speakers: Sequence[Speaker] | Sequence[int],
                  test_only: Sequence[int] = TEST_ONLY_SPEAKERS) -> SpeakerSplit:
    """SHD's speaker protocol: ``test_only`` speakers in the test split only, all others in both.

    (SHD: speakers 4 and 5 only in the test set; the test set also takes 5 % of every other
    speaker's recordings, see :func:`split_trials`.) Raises ``ValueError`` when a test-only id is
    not among the speakers or no speaker would be left for training.
    """
    ids = [s.speaker_id if isinstance(s, Speaker) else s for s in speakers]
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"speakers must be Speaker objects or integer ids, got {i!r}")
    ids = sorted(int(i) for i in ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"speakers has duplicate ids: {ids}")
    held = sorted({int(i) for i in test_only})
    missing = [i for i in held if i not in ids]
    if missing:
        raise ValueError(f"test_only ids {missing} are not among the speakers {ids}")
    train = tuple(i for i in ids if i not in held)
    if not train:
        raise ValueError("test_only holds every speaker: no speaker left for the training split")
    return SpeakerSplit(train=train, test=tuple(ids), test_only=tuple(held))


def split_trials(speaker_id: int, label: int, split: str, *, n_trials: int = N_TRIALS,
                 test_only: Sequence[int] = TEST_ONLY_SPEAKERS,
                 test_fraction: float = TEST_FRACTION, seed: int = 0) -> tuple[int, ...]:
    """Trial numbers (0..n_trials-1) of one speaker and word that belong to ``split``.

    Test-only speakers: every trial in "test", none in "train". Other speakers: a seeded choice
    of ``round(test_fraction * n_trials)`` trials (at least 1 when ``test_fraction > 0``) in
    "test", the rest in "train"; the two sets are disjoint and cover all trials.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    frac = _number("test_fraction", test_fraction, 0.0, 1.0)
    label = _check_label(label)
    if int(speaker_id) in {int(i) for i in test_only}:
        return tuple(range(n_trials)) if split == "test" else ()
    n_test = 0 if frac == 0.0 else min(n_trials, max(1, int(round(frac * n_trials))))
    rng = np.random.default_rng(np.random.SeedSequence(
        _seed(seed), spawn_key=(_SPLIT_STREAM, int(speaker_id), label)))
    test = set(rng.permutation(n_trials)[:n_test].tolist())
    return tuple(t for t in range(n_trials) if (t in test) == (split == "test"))


# --------------------------------------------------------------------------- utterances
class Utterance(NamedTuple):
    """One synthetic recording."""

    label: int
    speaker: Speaker
    samples: np.ndarray  # float32 [n] in [-1, 1], at sample_rate
    key: str  # extra/keys word
    trial: int  # repetition number (-1 when not drawn by iter_split)
    sample_rate: int
    snr_db: float
    gain_db: float
    noise_exponent: float
    clean: np.ndarray  # the speech part of ``samples`` (same gain, no noise)


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy Generator or a non-negative integer seed, got {rng!r}")


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (a fast FFT size)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise with power spectrum ~ 1/f^exponent (no DC)."""
    m = _fast_length(max(n, 4))
    white = rng.standard_normal(m)
    if exponent == 0.0:
        return white[:n]
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n=m)[:n]


def synthesize_utterance(label: int, speaker: Speaker, rng, *, sample_rate: int = SAMPLE_RATE,
                         snr_db_range: tuple[float, float] = SNR_DB_RANGE,
                         gain_db_range: tuple[float, float] = GAIN_DB_RANGE,
                         noise_exponent_range: tuple[float, float] = NOISE_EXPONENT_RANGE,
                         jitter: bool = True, trial: int = -1) -> Utterance:
    """Speak word ``label`` as ``speaker``; every random choice comes from ``rng``.

    ``rng``: a ``numpy.random.Generator`` or an integer seed. Draws, in this order: pitch, rate
    and range jitter (when ``jitter``), SNR, gain, noise exponent, noise. Steps: synthesize ->
    trim to ``TRIM_MARGIN_S`` -> peak-normalise and apply ``gain_db`` (dBFS) -> add noise at
    ``snr_db`` -> scale both down if the sum would clip. Same arguments and seed, same samples.
    """
    label = _check_label(label)
    if not isinstance(speaker, Speaker):
        raise ValueError(f"speaker must be a Speaker, got {type(speaker).__name__}")
    rng = _rng(rng)
    snr_lo, snr_hi = (_number("snr_db_range", v, -60.0, 120.0) for v in snr_db_range)
    gain_lo, gain_hi = (_number("gain_db_range", v, -120.0, 0.0) for v in gain_db_range)
    ex_lo, ex_hi = (_number("noise_exponent_range", v, 0.0, 4.0) for v in noise_exponent_range)
    for name, lo, hi in (("snr_db_range", snr_lo, snr_hi), ("gain_db_range", gain_lo, gain_hi),
                         ("noise_exponent_range", ex_lo, ex_hi)):
        if lo > hi:
            raise ValueError(f"{name} must be (low, high) with low <= high, got ({lo}, {hi})")
    pitch, rate, pitch_range = speaker.pitch, speaker.rate, speaker.pitch_range
    if jitter:
        pitch = float(np.clip(pitch + rng.uniform(-_PITCH_JITTER, _PITCH_JITTER), *_PITCH_LIMITS))
        rate = float(np.clip(rate * rng.uniform(1 - _RATE_JITTER, 1 + _RATE_JITTER), *_RATE_LIMITS))
        pitch_range = float(np.clip(
            pitch_range + rng.uniform(-_INTONATION_JITTER, _INTONATION_JITTER), *_RANGE_LIMITS))
    snr_db = float(rng.uniform(snr_lo, snr_hi))
    gain_db = float(rng.uniform(gain_lo, gain_hi))
    exponent = float(rng.uniform(ex_lo, ex_hi))

    raw, rate_hz = synthesize(label_text(label), speaker.voice(label_language(label)), rate=rate,
                              pitch=pitch, pitch_range=pitch_range, sample_rate=sample_rate)
    speech = trim_silence(raw, rate_hz).astype(np.float64)
    speech *= 10.0 ** (gain_db / 20.0) / np.max(np.abs(speech))
    noise = _coloured_noise(speech.size, exponent, rng)
    p_speech = np.mean(speech ** 2)
    noise *= math.sqrt(p_speech / (10.0 ** (snr_db / 10.0) * np.mean(noise ** 2)))
    mixed = speech + noise
    peak = np.max(np.abs(mixed))
    if peak > 1.0:
        speech /= peak
        mixed /= peak
    return Utterance(label=label, speaker=speaker, samples=mixed.astype(np.float32),
                     key=KEYS[label], trial=int(trial), sample_rate=rate_hz, snr_db=snr_db,
                     gain_db=gain_db, noise_exponent=exponent, clean=speech.astype(np.float32))


def utterance(label: int, speaker: Speaker, rng, **kwargs) -> np.ndarray:
    """The samples (float32, ``SAMPLE_RATE``) of :func:`synthesize_utterance`."""
    return synthesize_utterance(label, speaker, rng, **kwargs).samples


def utterance_rng(seed: int, speaker_id: int, label: int, trial: int) -> np.random.Generator:
    """The generator of one utterance, seeded by (seed, speaker id, label, trial) alone (what
    :func:`iter_split` passes to :func:`synthesize_utterance`)."""
    return np.random.default_rng(np.random.SeedSequence(
        _seed(seed), spawn_key=(_UTTERANCE_STREAM, int(speaker_id), int(label), int(trial))))


_utterance_rng = utterance_rng  # the name of earlier versions


def speech_settings() -> dict:
    """Every setting that shapes the audio besides the speakers (rates, trimming, draw ranges,
    jitter), as plain data: what a data set made from this module records as its provenance."""
    return {"sample_rate": SAMPLE_RATE, "trim_margin_s": TRIM_MARGIN_S,
            "trim_threshold_db": TRIM_THRESHOLD_DB, "pitch_range": list(PITCH_RANGE),
            "rate_range": list(RATE_RANGE), "intonation_range": list(INTONATION_RANGE),
            "pitch_jitter": _PITCH_JITTER, "rate_jitter": _RATE_JITTER,
            "intonation_jitter": _INTONATION_JITTER, "snr_db_range": list(SNR_DB_RANGE),
            "gain_db_range": list(GAIN_DB_RANGE), "noise_exponent_range": list(NOISE_EXPONENT_RANGE),
            "n_trials": N_TRIALS, "test_only_speakers": list(TEST_ONLY_SPEAKERS),
            "test_fraction": TEST_FRACTION}


def iter_split(split: str, speakers: Sequence[Speaker] | None = None, *, seed: int = 0,
               n_trials: int = N_TRIALS, test_only: Sequence[int] = TEST_ONLY_SPEAKERS,
               test_fraction: float = TEST_FRACTION, labels: Sequence[int] | None = None,
               **utterance_kwargs) -> Iterator[Utterance]:
    """Every utterance of ``split`` ("train" / "test"), ordered by speaker, label, trial.

    ``speakers`` default to ``draw_speakers(N_SPEAKERS, seed)``. Which speakers and trials
    belong to the split: :func:`speaker_split` and :func:`split_trials`. Each utterance is drawn
    from its own generator, seeded by (seed, speaker id, label, trial), so an utterance is the
    same whichever split, order or process produces it. ``utterance_kwargs`` go to
    :func:`synthesize_utterance`.
    """
    seed = _seed(seed)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    speakers = draw_speakers(N_SPEAKERS, seed) if speakers is None else tuple(speakers)
    groups = speaker_split(speakers, test_only)
    members = set(groups.train if split == "train" else groups.test)
    labels = range(N_CLASSES) if labels is None else [_check_label(x) for x in labels]
    for spk in sorted(speakers, key=lambda s: s.speaker_id):
        if spk.speaker_id not in members:
            continue
        for label in labels:
            for trial in split_trials(spk.speaker_id, label, split, n_trials=n_trials,
                                      test_only=groups.test_only, test_fraction=test_fraction,
                                      seed=seed):
                yield synthesize_utterance(label, spk, utterance_rng(seed, spk.speaker_id,
                                                                     label, trial),
                                           trial=trial, **utterance_kwargs)
