"""Spoken digits through espeak-ng (elm_neuro.data.speech): audio, labels and keys, determinism
(across calls, processes, threads and pool workers), speakers and SHD's speaker split, noise at
the drawn SNR, and errors for bad input."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="espeakng-loader (espeak-ng library and voices) "
                    "is not installed: pip install espeakng-loader")

from elm_neuro.data import speech as sp  # noqa: E402
from elm_neuro.data.shd import CLASS_NAMES  # noqa: E402


@pytest.fixture(scope="module")
def speakers():
    return sp.draw_speakers(12, seed=0)


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


# --------------------------------------------------------------------------- audio
def test_every_digit_in_both_languages_is_plausible_speech(speakers):
    for label in range(20):
        spk = speakers[label % len(speakers)]
        u = sp.synthesize_utterance(label, spk, label)
        x = u.samples
        assert x.dtype == np.float32 and x.ndim == 1 and u.sample_rate == sp.SAMPLE_RATE
        assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
        assert 0.2 <= x.size / u.sample_rate <= 1.5, (label, x.size / u.sample_rate)
        # clearly louder than the noise floor: the speech carries most of the energy
        assert np.max(np.abs(u.clean)) > 0.05
        # trimmed: exactly the margin before the first sounding frame
        margin = round(sp.TRIM_MARGIN_S * u.sample_rate)
        assert np.max(np.abs(u.clean[:margin // 2])) < 0.01 * np.max(np.abs(u.clean))


def test_raw_synthesis_of_every_word_with_the_base_voices():
    for label in range(20):
        voice = sp.LANGUAGE_VOICES[sp.label_language(label)]
        x, rate = sp.synthesize(sp.label_text(label), voice)
        assert rate == 22050 and x.dtype == np.float32
        assert 0.2 <= x.size / rate <= 1.5 and np.max(np.abs(x)) > 0.1


def test_trim_keeps_a_fixed_margin():
    x, rate = sp.synthesize("acht", "de")
    padded = np.concatenate([np.zeros(5000, np.float32), x, np.zeros(3000, np.float32)])
    a, b = sp.trim_silence(x, rate), sp.trim_silence(padded, rate)
    assert np.array_equal(a, b)
    m = round(sp.TRIM_MARGIN_S * rate)
    assert a.size > 2 * m and np.any(a[m:m + round(0.005 * rate)])


def test_resampled_output_keeps_its_duration():
    x, rate = sp.synthesize("sieben", "de")
    y, rate2 = sp.synthesize("sieben", "de", sample_rate=16000)
    assert rate2 == 16000 and abs(y.size / rate2 - x.size / rate) < 1e-3
    assert 0.5 < np.max(np.abs(y)) / np.max(np.abs(x)) < 1.5


# --------------------------------------------------------------------------- labels and keys
def test_label_and_key_convention():
    assert sp.KEYS == tuple(CLASS_NAMES) and len(set(sp.KEYS)) == 20
    assert sp.KEYS[:10] == ("zero", "one", "two", "three", "four", "five", "six", "seven",
                            "eight", "nine")
    assert sp.KEYS[10:] == ("null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben",
                            "acht", "neun")
    for digit in range(10):
        assert sp.label_of(digit, "english") == digit
        assert sp.label_of(digit, "german") == 10 + digit
    assert sp.label_key(15) == "fuenf" and sp.label_text(15) == "fünf"
    assert sp.label_language(9) == "english" and sp.label_language(10) == "german"
    u = sp.synthesize_utterance(13, sp.draw_speakers(1)[0], 0)
    assert (u.label, u.key) == (13, "drei")


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_samples_and_history_does_not_matter(speakers):
    spk = speakers[3]
    a = sp.utterance(17, spk, 42)
    sp.utterance(2, speakers[5], 7)  # something else in between
    b = sp.utterance(17, spk, np.random.default_rng(42))
    assert np.array_equal(a, b)
    c = sp.utterance(17, spk, 43)
    assert not np.array_equal(a, c)
    x1 = sp.synthesize("sieben", "de+f4", rate=150)[0]
    sp.synthesize("three", "en-us+klatt", pitch=80)
    x2 = sp.synthesize("sieben", "de+f4", rate=150)[0]
    assert np.array_equal(x1, x2)


def test_same_samples_in_another_process(speakers):
    spk = speakers[7]
    code = ("import hashlib, numpy as np; from elm_neuro.data import speech as sp; "
            f"x = sp.utterance(4, sp.draw_speakers(12, seed=0)[7], 99); "
            "print(hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == _digest(sp.utterance(4, spk, 99))


def test_same_samples_whatever_the_heap_holds():
    # espeak-ng reads uninitialised memory with breath-noise variants (which are therefore
    # refused); every variant a speaker can have must not depend on the heap's contents.
    code = ("import hashlib, numpy as np; from elm_neuro.data import speech as sp\n"
            "for v in sorted(sp.VARIANTS):\n"
            "    for text, lang in (('zero', 'en-us'), ('sechs', 'de')):\n"
            "        x = sp.synthesize(text, lang + '+' + v, rate=150, pitch=40)[0]\n"
            "        print(v, text, hashlib.sha256(x.tobytes()).hexdigest())\n")
    outs = []
    for fill in ("85", "170"):
        env = dict(os.environ, MALLOC_PERTURB_=fill)
        outs.append(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   timeout=300, check=True, env=env).stdout)
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 2 * len(sp.VARIANTS)


def test_draw_speakers_is_deterministic_and_varied():
    a, b = sp.draw_speakers(12, seed=3), sp.draw_speakers(12, seed=3)
    assert a == b and a != sp.draw_speakers(12, seed=4)
    assert [s.speaker_id for s in a] == list(range(12))
    assert sum(s.gender == "male" for s in a) == 6
    assert len({s.variant for s in a}) == 12  # without replacement within each gender
    for s in a:
        assert sp.PITCH_RANGE[0] <= s.pitch <= sp.PITCH_RANGE[1]
        assert sp.RATE_RANGE[0] <= s.rate <= sp.RATE_RANGE[1]
        assert sp.INTONATION_RANGE[0] <= s.pitch_range <= sp.INTONATION_RANGE[1]
        assert s.english in sp.ENGLISH_VOICES


def test_different_speakers_sound_different(speakers):
    clean = [sp.synthesize_utterance(7, s, 5, jitter=False).clean for s in speakers[:4]]
    for i in range(len(clean)):
        for j in range(i + 1, len(clean)):
            assert clean[i].size != clean[j].size or not np.allclose(clean[i], clean[j], atol=1e-3)
    # one parameter alone changes the audio too
    base = sp.Speaker(0, "m3")
    for other in (sp.Speaker(0, "m3", pitch=70), sp.Speaker(0, "m3", rate=220),
                  sp.Speaker(0, "f4"), sp.Speaker(0, "m3", english="en-gb-scotland")):
        a = sp.synthesize_utterance(1, base, 0, jitter=False).clean
        b = sp.synthesize_utterance(1, other, 0, jitter=False).clean
        assert a.size != b.size or not np.allclose(a, b, atol=1e-3), other


# --------------------------------------------------------------------------- speaker split
def test_speaker_split_follows_shd(speakers):
    split = sp.speaker_split(speakers)
    assert split.test_only == (4, 5)
    assert not set(split.train) & set(split.test_only)
    assert set(split.test) == set(range(12)) and set(split.train) == set(range(12)) - {4, 5}
    for sid in range(12):
        for label in (0, 19):
            train = sp.split_trials(sid, label, "train")
            test = sp.split_trials(sid, label, "test")
            assert not set(train) & set(test) and set(train) | set(test) == set(range(40))
            if sid in (4, 5):
                assert train == ()
            else:
                assert len(test) == 2  # 5 % of 40 recordings
    assert sp.split_trials(0, 3, "test", seed=1) == sp.split_trials(0, 3, "test", seed=1)


def test_iter_split_keeps_test_speakers_out_of_training(speakers):
    kw = dict(n_trials=4, test_fraction=0.25, labels=(2, 12), seed=0)
    train = list(sp.iter_split("train", speakers, **kw))
    test = list(sp.iter_split("test", speakers, **kw))
    train_ids = {u.speaker.speaker_id for u in train}
    test_ids = {u.speaker.speaker_id for u in test}
    assert not train_ids & {4, 5} and {4, 5} <= test_ids and test_ids == set(range(12))
    triples = lambda us: {(u.speaker.speaker_id, u.label, u.trial) for u in us}  # noqa: E731
    assert not triples(train) & triples(test)
    assert len(train) == 10 * 2 * 3 and len(test) == 10 * 2 * 1 + 2 * 2 * 4
    assert all(u.key == sp.KEYS[u.label] for u in train + test)
    # an utterance does not depend on the split or order that produced it
    u = test[-1]
    again = sp.synthesize_utterance(u.label, u.speaker, sp._utterance_rng(0, u.speaker.speaker_id,
                                                                          u.label, u.trial))
    assert np.array_equal(u.samples, again.samples)


# --------------------------------------------------------------------------- noise and gain
def test_noise_at_the_drawn_snr_and_gain(speakers):
    snrs = []
    for seed in range(8):
        u = sp.synthesize_utterance(seed % 20, speakers[seed], seed)
        noise = u.samples.astype(np.float64) - u.clean
        measured = 10 * np.log10(np.mean(u.clean.astype(np.float64) ** 2) / np.mean(noise ** 2))
        assert abs(measured - u.snr_db) < 0.05, (measured, u.snr_db)
        assert sp.SNR_DB_RANGE[0] <= u.snr_db <= sp.SNR_DB_RANGE[1]
        assert sp.GAIN_DB_RANGE[0] <= u.gain_db <= sp.GAIN_DB_RANGE[1]
        peak_db = 20 * np.log10(np.max(np.abs(u.clean)))
        assert abs(peak_db - u.gain_db) < 0.01
        snrs.append(u.snr_db)
    assert len(set(np.round(snrs, 3))) == len(snrs)  # drawn per utterance
    u = sp.synthesize_utterance(3, speakers[0], 1, snr_db_range=(20.0, 20.0),
                                gain_db_range=(-10.0, -10.0))
    assert u.snr_db == 20.0 and u.gain_db == -10.0


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, words", [
    (lambda: sp.synthesize("", "en"), ["text"]),
    (lambda: sp.synthesize("   ", "en"), ["text"]),
    (lambda: sp.synthesize("seven", "xx-nolanguage"), ["voice", "xx-nolanguage"]),
    (lambda: sp.synthesize("seven", "en+nosuchvariant"), ["variant", "nosuchvariant"]),
    (lambda: sp.synthesize("seven", ""), ["voice"]),
    (lambda: sp.synthesize("seven", "en", rate=500), ["rate"]),
    (lambda: sp.synthesize("seven", "en", pitch=-1), ["pitch"]),
    (lambda: sp.synthesize("seven", "en", pitch_range=101), ["pitch_range"]),
    (lambda: sp.synthesize("seven", "en", pitch=float("nan")), ["pitch"]),
    (lambda: sp.Speaker(0, "m3", pitch=120), ["pitch"]),
    (lambda: sp.Speaker(0, "m3", rate=20), ["rate"]),
    (lambda: sp.Speaker(0, "m3", pitch_range=-5), ["pitch_range"]),
    (lambda: sp.Speaker(0, "nosuchvariant"), ["variant"]),
    (lambda: sp.Speaker(0, "m3", english="fr"), ["english"]),
    (lambda: sp.Speaker(-1, "m3"), ["speaker_id"]),
    (lambda: sp.label_key(20), ["label"]),
    (lambda: sp.label_of(3, "french"), ["language"]),
    (lambda: sp.utterance(1, sp.Speaker(0, "m3"), 0, snr_db_range=(30.0, 10.0)), ["snr_db_range"]),
    (lambda: sp.speaker_split(sp.draw_speakers(3), test_only=(7,)), ["test_only"]),
    (lambda: sp.speaker_split(sp.draw_speakers(2), test_only=(0, 1)), ["test_only"]),
    (lambda: sp.split_trials(0, 0, "valid"), ["split"]),
])
def test_bad_input_names_the_argument(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for w in words:
        assert w in str(info.value), str(info.value)


def test_irreproducible_breath_variants_are_refused():
    for voice in ("en+f2", "de+whisper", "en-us+Alicia"):
        with pytest.raises(ValueError, match="breath") as info:
            sp.synthesize("seven", voice)
        assert voice in str(info.value)
    assert not {"f2", "f3", "f5", "Alicia", "victor"} & set(sp.VARIANTS)


def test_silent_synthesis_raises_naming_text_and_voice():
    with pytest.raises(sp.SilentSynthesisError) as info:
        sp.synthesize("...", "de+f1")
    assert "'...'" in str(info.value) and "de+f1" in str(info.value)


# --------------------------------------------------------------------------- threads and processes
def test_threads_are_serialised_and_give_the_same_samples(speakers):
    jobs = [(label, speakers[label % 12], label) for label in range(8)]
    expected = [_digest(sp.utterance(*job)) for job in jobs]
    got = [None] * len(jobs)

    def work(i):
        got[i] = _digest(sp.utterance(*jobs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_pool_workers_give_the_same_samples(speakers, method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"start method {method} is not available here")
    jobs = [(label, speakers[label % 12], 1000 + label) for label in (0, 5, 11, 19)]
    sp.utterance(*jobs[0])  # the parent has used the library before forking
    with mp.get_context(method).Pool(2) as pool:
        results = pool.starmap(sp.utterance, jobs)
    for job, x in zip(jobs, results):
        assert np.array_equal(x, sp.utterance(*job))
