"""Spoken SHD (elm_neuro.data.spoken, ``elm-neuro data spoken``): the generation rule, determinism
(same seed, any worker count), restarts after a failure or a kill, provenance, ``--force``, bad
input, the silent-utterance rule, and every reader of the package on the files.

Sizes are tiny and the Python API runs at 16 cochlea channels (the layout is the same); the CLI
runs at SHD's 700 channels with ~16 digits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="espeakng-loader (espeak-ng library and voices) "
                    "is not installed: pip install espeakng-loader")

from elm_neuro import defaults as D  # noqa: E402
from elm_neuro.atomic import RefusedPath  # noqa: E402
from elm_neuro.cli.main import main  # noqa: E402
from elm_neuro.data import speech as sp  # noqa: E402
from elm_neuro.data import spoken  # noqa: E402
from elm_neuro.data.provenance import data_provenance, shd_provenance  # noqa: E402
from elm_neuro.data.shd import CLASS_NAMES, read_shd  # noqa: E402
from elm_neuro.data.synth import write_synthetic_shd  # noqa: E402

CH = 16  # cochlea channels of the Python-API tests
SMALL = dict(n_train=24, n_test=10, seed=3, n_channels=CH)


def _bytes(folder: Path) -> tuple[bytes, bytes]:
    return tuple((folder / f"shd_{s}.h5").read_bytes() for s in ("train", "test"))


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(D, "SPOKEN_CHUNK", 8)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A reference set made in one go (one process, chunks of 8)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(D, "SPOKEN_CHUNK", 8)
    try:
        d = tmp_path_factory.mktemp("spoken_clean")
        r = spoken.write_spoken_shd(d, workers=1, **SMALL)
    finally:
        mp.undo()
    return d, r


# --------------------------------------------------------------------------- the rule
def test_generation_rule():
    assert spoken.trials_needed(7600, 2000) == 40  # what SHD's ~40 trials give with 12 speakers
    assert spoken.trials_needed(7601, 2000) == 41 and spoken.trials_needed(100, 2001) == 41
    assert spoken.trials_needed(8156, 2264) == 47  # an SHD-sized set
    plan = spoken.plan_spoken(205, 61, seed=5)
    assert plan.n_trials == 40
    for rows, n in ((plan.train, 205), (plan.test, 61)):
        assert rows.shape == (n, 3)
        per_word = np.bincount(rows[:, 1], minlength=20)
        assert per_word.max() - per_word.min() <= 1  # balanced over the words
        assert len({tuple(r) for r in rows.tolist()}) == n  # no utterance twice
    assert not set(plan.train[:, 0]) & set(sp.TEST_ONLY_SPEAKERS)
    assert {tuple(r) for r in plan.train.tolist()}.isdisjoint({tuple(r) for r in plan.test.tolist()})
    # round robin: within a word, the training speakers' counts differ by at most one
    for label in range(20):
        counts = np.bincount(plan.train[plan.train[:, 1] == label, 0], minlength=12)
        shared = [c for i, c in enumerate(counts) if i not in sp.TEST_ONLY_SPEAKERS]
        assert max(shared) - min(shared) <= 1
    # every row is a trial the protocol gives to its split
    for split in ("train", "test"):
        for spk, label, trial in plan.rows(split).tolist():
            assert trial in sp.split_trials(spk, label, split, n_trials=plan.n_trials, seed=5)
    # deterministic, and a larger set needs more trials once the 40 are used up
    again = spoken.plan_spoken(205, 61, seed=5)
    assert np.array_equal(again.train, plan.train) and np.array_equal(again.test, plan.test)
    big = spoken.plan_spoken(8156, 2264, seed=0)
    assert big.n_trials == 47 and np.bincount(big.test[:, 1]).min() == 113
    held = np.isin(big.test[:, 0], sp.TEST_ONLY_SPEAKERS).mean()
    assert 0.5 < held < 0.9  # the test-only speakers give what the others' 5 % cannot


# --------------------------------------------------------------------------- determinism, workers, restarts
def test_deterministic_layout_and_independent_of_workers(clean, tmp_path, small_chunks):
    d, r = clean
    assert r.silent == [] and r.chunks_made == 5 and r.chunks_reused == 0  # 24 / 8 + 10 / 8 rounded up
    assert not (d / spoken.WORK_DIR).exists() and sorted(p.name for p in d.iterdir()) == ["shd_test.h5",
                                                                                          "shd_train.h5"]
    with h5py.File(d / "shd_train.h5", "r") as f:
        assert f["spikes/times"].dtype.metadata["vlen"] == np.float16
        assert f["spikes/units"].dtype.metadata["vlen"] == np.uint16
        assert f["labels"].dtype == np.uint8 and f["extra/speaker"].dtype == np.uint16
        assert [k.decode() for k in f["extra/keys"][()]] == list(CLASS_NAMES)
        meta = f["extra/meta_info"]
        assert {"gender", "age", "body_height", "variant", "accent", "pitch", "rate"} <= set(meta)
        assert len(meta["gender"]) == 12 and set(meta["gender"][()]) == {b"male", b"female"}
    again = tmp_path / "again"
    spoken.write_spoken_shd(again, workers=1, **SMALL)
    assert _bytes(again) == _bytes(d)
    two = tmp_path / "two"
    r2 = spoken.write_spoken_shd(two, workers=2, **SMALL)
    assert _bytes(two) == _bytes(d) and r2.chunks_made == 5
    other_seed = tmp_path / "seed4"
    spoken.write_spoken_shd(other_seed, workers=1, **{**SMALL, "seed": 4})
    assert _bytes(other_seed) != _bytes(d)


def test_restart_after_a_failure_skips_finished_chunks(clean, tmp_path, small_chunks, monkeypatch):
    out = tmp_path / "out"
    calls = {"n": 0}
    real = spoken._spikes

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:  # inside the third chunk
            raise RuntimeError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(spoken, "_spikes", failing)
    with pytest.raises(RuntimeError, match="simulated failure"):
        spoken.write_spoken_shd(out, workers=1, **SMALL)
    work = out / spoken.WORK_DIR
    assert sorted(p.name for p in work.glob("*.npz")) == ["train-00000.npz", "train-00001.npz"]
    assert not (out / "shd_train.h5").exists() and not (out / "shd_test.h5").exists()
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]  # nothing half-written
    monkeypatch.setattr(spoken, "_spikes", real)
    r = spoken.write_spoken_shd(out, workers=1, **SMALL)
    assert r.chunks_reused == 2 and r.chunks_made == 3
    assert _bytes(out) == _bytes(clean[0]) and not work.exists()


def test_restart_after_a_kill(clean, tmp_path):
    """A run killed (SIGKILL, workers and all) after some chunks; the rerun finishes the set, the
    same bytes as a clean run."""
    out = tmp_path / "killed"
    code = ("import sys; from elm_neuro import defaults as D; D.SPOKEN_CHUNK = 8\n"
            "from elm_neuro.data.spoken import write_spoken_shd\n"
            f"if __name__ == '__main__': write_spoken_shd({str(out)!r}, workers=2, n_train=24, n_test=10, seed=3, "
            f"n_channels={CH})\n")
    script = tmp_path / "run.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = out / spoken.WORK_DIR
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(work.glob("*.npz"))) < 1 and proc.poll() is None:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(list(work.glob("*.npz")))
    assert done >= 1 and not (out / "shd_train.h5").exists()  # killed after a chunk, before the end
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(D, "SPOKEN_CHUNK", 8)
        r = spoken.write_spoken_shd(out, workers=1, **SMALL)
    assert r.chunks_reused == done and r.chunks_made == 5 - done
    assert _bytes(out) == _bytes(clean[0]) and not work.exists()


# --------------------------------------------------------------------------- provenance and --force
def test_provenance_says_spoken(clean):
    d, _ = clean
    prov = shd_provenance(d)
    assert prov["source"] == "spoken" and prov["dataset"] == "SHD"
    assert "elm-neuro data spoken" in prov["detail"] and "24 train / 10 test samples, seed 3" in prov["detail"]
    assert data_provenance("shd-adding", str(d))["source"] == "spoken"
    with h5py.File(d / "shd_test.h5", "r") as f:
        attr = json.loads(f.attrs[spoken.SPOKEN_ATTR])
        assert int(f.attrs[spoken.SEED_ATTR]) == 3
    assert attr["generator"] == "elm_neuro.data.spoken" and attr["seed"] == 3 and attr["split"] == "test"
    assert attr["samples"] == 10 and attr["n_trials"] == 40 and attr["espeak_ng"]
    assert attr["cochlea"]["n_channels"] == CH and attr["cochlea"]["mode"] == "fast"
    assert attr["cochlea"]["config"]["fibres_per_cell"] == 40 and attr["version"]
    assert attr["speech"]["sample_rate"] == sp.SAMPLE_RATE and len(attr["speakers"]) == 12
    assert attr["silent_replaced"]["count"] == 0


def test_reports_never_take_spoken_data_for_shd(tmp_path):
    from elm_neuro.analysis.tradeoff_plots import reference_mismatch

    why = reference_mismatch("shd-adding", "test_acc", [77000], ["elm"], ["spoken"])
    assert why and "spoken digits made by elm-neuro" in why
    # a spoken set of SHD's sizes is still spoken: the marker decides, not the counts
    from elm_neuro.data._h5io import write_shd_h5

    for split, n in (("train", 8156), ("test", 2264)):
        write_shd_h5(tmp_path / f"shd_{split}.h5", np.zeros(0), np.zeros(0), np.zeros(n + 1, np.int64),
                     np.zeros(n, np.uint8), np.zeros(n, np.uint16), keys=CLASS_NAMES,
                     attrs={spoken.SPOKEN_ATTR: "{}", spoken.SEED_ATTR: 0})
    assert shd_provenance(tmp_path)["source"] == "spoken"


def test_force_replaces_only_spoken_files(clean, tmp_path):
    d = tmp_path / "d"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(D, "SPOKEN_CHUNK", 8)
        spoken.write_spoken_shd(d, workers=1, **{**SMALL, "seed": 9})
        with pytest.raises(ValueError, match="already holds shd_train.h5 and shd_test.h5.*--force"):
            spoken.write_spoken_shd(d, workers=1, **SMALL)
        spoken.write_spoken_shd(d, workers=1, force=True, **SMALL)
    assert _bytes(d) == _bytes(clean[0])
    synth = tmp_path / "synth"
    write_synthetic_shd(synth, 20, 6, seed=0)
    before = _bytes(synth)
    with pytest.raises(RefusedPath, match="no elm_neuro_spoken marker.*elm-neuro data spoken"):
        spoken.write_spoken_shd(synth, workers=1, force=True, **SMALL)
    assert _bytes(synth) == before and not (synth / spoken.WORK_DIR).exists()


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, words", [
    (dict(n_train=0), ["--train", "1..1000000"]),
    (dict(n_test=-3), ["--test"]),
    (dict(n_train=2.5), ["--train"]),
    (dict(seed=-1), ["--seed"]),
    (dict(n_speakers=5), ["--speakers", "6..65536"]),
    (dict(voices="m1,nosuch"), ["--voices", "nosuch"]),
    (dict(voices=""), ["--voices", "no voice given"]),
    (dict(workers=0), ["--workers"]),
    (dict(n_channels=701), ["n_channels", "1..700"]),
])
def test_bad_input_names_the_argument(tmp_path, kwargs, words):
    out = tmp_path / "new"
    with pytest.raises(ValueError) as info:
        spoken.write_spoken_shd(out, **{**SMALL, **kwargs})
    for w in words:
        assert w in str(info.value), str(info.value)
    assert not out.exists()


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [(["--train", "0"], "--train"), (["--test", "0"], "--test"), (["--speakers", "70000"], "--speakers"),
             (["--voices", "m1,zz9"], "--voices"), (["--workers", "0"], "--workers")]
    for extra, word in cases:
        assert main(["data", "spoken", "--out", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and word in err and err.startswith("elm-neuro data: error:"), err
        assert not (tmp_path / "o").exists()
    assert main(["data", "spoken", "--out", str(a_file), "--train", "2", "--test", "2"]) == 2
    err = capsys.readouterr().err
    assert f"--out {a_file} is a file" in err and a_file.read_text() == "x"


def test_voices_restrict_the_speakers():
    plan = spoken.plan_spoken(10, 10, seed=0, voices="f1,f4")
    assert {s.variant for s in plan.speakers} == {"f1", "f4"} and {s.gender for s in plan.speakers} == {"female"}
    assert sp.draw_speakers(12, 0) == sp.draw_speakers(12, 0, variants=None)  # the default is unchanged


# --------------------------------------------------------------------------- silent utterances
def test_a_silent_utterance_is_replaced_not_written(clean, tmp_path, small_chunks, monkeypatch):
    plan = spoken.plan_spoken(SMALL["n_train"], SMALL["n_test"], SMALL["seed"])
    spk, label, trial = plan.train[5].tolist()  # sample 5 of the training file will be silent
    real = sp.synthesize_utterance

    def silent_once(label_, speaker, rng, **kw):
        u = real(label_, speaker, rng, **kw)
        if (speaker.speaker_id, label_, kw.get("trial")) == (spk, label, trial):
            return u._replace(samples=np.zeros_like(u.samples))
        return u

    monkeypatch.setattr(sp, "synthesize_utterance", silent_once)
    out = tmp_path / "silent"
    r = spoken.write_spoken_shd(out, workers=1, **SMALL)
    assert r.silent == [(0, 5, spk, label, trial)]
    ev, ref = read_shd(out / "shd_train.h5"), read_shd(clean[0] / "shd_train.h5")
    assert (ev.counts > 0).all() and ev.labels[5] == label and ev.speakers[5] == spk
    assert not np.array_equal(ev.sample(5)[0], ref.sample(5)[0])  # another trial of the same word
    for i in (0, 4, 6, len(ev) - 1):  # the other samples are untouched
        assert np.array_equal(ev.sample(i)[0], ref.sample(i)[0])
    with h5py.File(out / "shd_train.h5", "r") as f:
        rec = json.loads(f.attrs[spoken.SPOKEN_ATTR])["silent_replaced"]
    assert rec["count"] == 1 and rec["utterances"] == [
        {"split": "train", "sample": 5, "speaker": spk, "label": label, "trial": trial}]
    assert spoken.spare_trial(plan.n_trials, 0, 5, 0) == 40 + 4 * 10


# --------------------------------------------------------------------------- readers
def test_every_reader_accepts_the_files(clean):
    from elm_neuro.data.binning import bin_events
    from elm_neuro.data.inspect import summarize
    from elm_neuro.data.shd_adding import make_splits
    from elm_neuro.data.shd_classification import SHDClassification
    from elm_neuro.data.tonic_adapter import SHDEventDataset

    d, _ = clean
    tr, te = read_shd(d / "shd_train.h5"), read_shd(d / "shd_test.h5")
    assert len(tr) == 24 and len(te) == 10 and set(te.speakers) & set(sp.TEST_ONLY_SPEAKERS)
    assert tr.durations().max() < 1.5 and (tr.counts > 0).all()
    x = bin_events(tr.times, tr.units, tr.offsets, np.arange(len(tr)), 0.002, 1.0, 700, binary=True)
    assert x.shape == (24, 500, 700) and x.sum() > 0
    splits = make_splits(tr, te, test_batches=1, batch_size=4)
    xb, yb = next(iter(splits["test"].batches()))
    assert xb.shape[0] == 4 and yb.max() <= 18
    cls = SHDClassification(te, np.arange(len(te)), fixed=True, n_batches=None, batch_size=4, seed=0,
                            bin_size=0.002, window=1.0, channel_factor=1)
    xc, yc = next(iter(cls.batches()))
    assert tuple(xc.shape) == (4, 500, 700) and yc.tolist() == te.labels[:4].tolist()
    events, target = SHDEventDataset(d / "shd_test.h5")[0]
    assert len(events) == te.counts[0] and 0 <= target < 20
    s = summarize(tr)
    assert s["classes"] == 20 and s["empty_samples"] == 0 and s["active_channels"][2] <= CH
    from elm_neuro.data.shd_adding import check_split_files  # the preflight of train / compare / sweep

    assert check_split_files(d)


# --------------------------------------------------------------------------- the CLI, end to end
def test_cli_end_to_end_spoken_to_training(tmp_path, capsys):
    """`data spoken` (700 channels) -> `data inspect` (statistics, baseline, per-class figure beside
    a synthetic set) -> `train --task shd-adding` for 2 steps; the run records spoken data."""
    d = tmp_path / "spoken"
    assert main(["data", "spoken", "--out", str(d), "--train", "10", "--test", "6", "--seed", "1",
                 "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "10 digits" in out and "silent utterances replaced: 0" in out
    assert "made 16 digits" in out
    assert len(read_shd(d / "shd_train.h5")) == 10 and read_shd(d / "shd_train.h5").units.max() > 600
    synth = tmp_path / "synth"
    write_synthetic_shd(synth, 40, 20, seed=0)
    png = tmp_path / "per_class.png"
    assert main(["data", "inspect", str(d), "--baseline", "--per-class", str(png), "--compare", str(synth)]) == 0
    text = capsys.readouterr().out
    assert "(spoken: spoken-digit SHD-format files" in text and "active channels:" in text
    assert "rate/channel (Hz):" in text and "linear baseline:" in text and "test acc" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pairs = tmp_path / "pairs.h5"
    assert main(["data", "shd-adding", "--shd", str(d), "--split", "test", "--pairs", "4", "--out", str(pairs)]) == 0
    assert len(read_shd(pairs, n_classes=19)) == 4
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["train", "--task", "shd-adding", "--data", str(d), "--out", str(run), "--epochs", "1",
                 "--batches-per-epoch", "2", "--batch-size", "2", "--device", "cpu", "--set", "d_m=2",
                 "--set", "n=3", "--set", "d_tree=2", "--set", "d_brch=2", "--no-progress",
                 "--train-set", "valid_batches=1", "--train-set", "test_batches=1",
                 "--train-set", "bin_ms=100.0", "--train-set", "channel_factor=70"]) == 0
    conf = json.loads((run / "config.json").read_text())
    assert conf["data"]["source"] == "spoken"
    # --force replaces the spoken files; a rerun without it is refused, one line
    assert main(["data", "spoken", "--out", str(d), "--train", "10", "--test", "6", "--seed", "1",
                 "--workers", "1", "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
