"""Benchmark: the cochlea chain (elm_neuro.data.cochlea) against the lauscher package.

Side by side in one run, one thread (``NUMBA_NUM_THREADS=1``, ``numba.set_num_threads(1)``),
process CPU time (Lauscher's pool workers included: their CPU time comes from
``RUSAGE_CHILDREN``), medians over ``--repeats``:

1. exact mode against ``lauscher`` (``Wave2Spike(num_channels=n)`` after ``np.random.seed``) at
   ``--exact-channels`` (default 24 and 64; Lauscher's runs take seconds to a minute each) on a
   ``--digit-s`` (0.45 s) speech-like clip at ``--rate`` Hz; the spikes are checked identical.
   "cold" recomputes the membrane's transfer function every time (as Lauscher does), "warm"
   finds it cached (a second utterance of the same length). Target: >= 100x.
2. fast mode at 700 channels: CPU seconds per second of audio on a ``--utterance-s`` (0.8 s)
   clip, warm (transfer function of its padded length cached, the state of a conversion that
   groups utterances by padded length), and the one-off cost of a transfer function. Target:
   <= 0.3 s per second of audio. Measured at every rate of ``--fast-rates`` (48000: the
   Heidelberg Digits' recording rate as stated in third-party SHD code, 22050: the rate of
   elm_neuro.data.speech).
3. the projected time to convert an SHD-sized set (8,156 + 2,264 digits of ``--mean-s`` = 0.8 s,
   the brief's figure, not checked against the paper; durations assumed spread over 0.3-1.4 s,
   i.e. ~10 padded lengths, one transfer function each) on 2 cores (2 processes), for the fast
   mode, the exact mode and Lauscher (its time scaled linearly from ``--exact-channels`` to 700;
   ``--lauscher-700`` measures one 700-channel run instead: minutes).

The clip: a synthetic vowel (harmonic complex at a gliding f0 through three formant resonators)
between two fricative noise bursts, 50 ms of near-silence at both ends.

Usage: ``python benchmarks/bench_cochlea.py [--rate 48000] [--exact-channels 24 64]
[--repeats 3] [--fast-rates 48000 22050] [--lauscher-700]``. Without lauscher installed the
comparison rows are skipped.
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy import signal as sps  # noqa: E402

from elm_neuro.data import cochlea as co  # noqa: E402

TARGET_EXACT_SPEEDUP = 100.0
TARGET_FAST_S_PER_S = 0.3
SHD_DIGITS = 8156 + 2264
CORES = 2


def speech_like(fs: int, dur: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(dur * fs))
    t = np.arange(n) / fs
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.3 * t / dur)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    source = sum(np.cos(k * phase) / k for k in range(1, 40))
    vowel = np.zeros(n)
    for fc, bw, gain in [(500, 80, 1.0), (1500, 120, 0.5), (2500, 150, 0.3)]:
        b, a = sps.iirpeak(fc, fc / bw, fs)
        vowel += gain * sps.lfilter(b, a, source)
    ramp = 0.03

    def gate(t0, t1, r):
        return np.clip(np.minimum(t - t0, t1 - t) / r, 0, 1)

    hiss = sps.butter(4, min(3500 / (fs / 2), 0.9), "high")
    out = vowel * gate(0.05 + 0.12 * dur, dur - 0.05 - 0.12 * dur, ramp)
    out += 0.3 * sps.lfilter(*hiss, rng.normal(size=n)) * gate(0.05, 0.05 + 0.1 * dur, 0.01)
    out += 0.2 * sps.lfilter(*hiss, rng.normal(size=n)) * gate(dur - 0.05 - 0.1 * dur, dur - 0.05, 0.01)
    return out + 1e-4 * rng.normal(size=n)


def cpu_now() -> float:
    """CPU seconds of this process and of its finished children (Lauscher's pool workers)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def timed(fn, repeats: int, before=None):
    times, out = [], None
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = cpu_now()
        out = fn()
        times.append(cpu_now() - t0)
    return statistics.median(times), out


def lauscher_run(x, fs, n_ch, seed):
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.helpers import CommandLineArguments
    from lauscher.transformations.wave2spike import Wave2Spike

    CommandLineArguments().num_concurrent_jobs = 1     # one worker process: one thread of work
    np.random.seed(seed)
    spikes = Wave2Spike(num_channels=n_ch)(MonoAudioWave(x.copy(), fs))
    return np.asarray(spikes.spike_times), np.asarray(spikes.spike_labels)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=48000, help="audio rate of the exact-vs-lauscher rows")
    ap.add_argument("--exact-channels", type=int, nargs="+", default=[24, 64])
    ap.add_argument("--digit-s", type=float, default=0.45)
    ap.add_argument("--utterance-s", type=float, default=0.8)
    ap.add_argument("--mean-s", type=float, default=0.8, help="mean digit duration of the projection")
    ap.add_argument("--fast-rates", type=int, nargs="+", default=[48000, 22050])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lauscher-repeats", type=int, default=1,
                    help="Lauscher runs per row (its runs are long and steady)")
    ap.add_argument("--lauscher-700", action="store_true", help="also time Lauscher at 700 channels (minutes)")
    args = ap.parse_args(argv)
    numba.set_num_threads(1)
    try:
        import lauscher  # noqa: F401
        have_lauscher = True
    except ImportError:
        have_lauscher = False
        print("lauscher is not installed: its rows are skipped (pip install lauscher==1.0.1 soundfile)")

    print(f"one thread (numba threads {numba.get_num_threads()}), process CPU time, medians of "
          f"{args.repeats} (ours) / {args.lauscher_repeats} (lauscher) runs")
    # compile every kernel before timing
    warm = speech_like(16000, 0.05)
    co.wave_to_spikes(warm, 16000, 4, exact=True, rng=np.random.RandomState(0))
    co.wave_to_spikes(warm, 16000, 4, rng=0)

    # ---------------------------------------------------------------- 1. exact vs lauscher
    fs = args.rate
    x = speech_like(fs, args.digit_s)
    print(f"\n[1] exact mode vs lauscher: {args.digit_s} s clip at {fs} Hz")
    ratios_cold, ratios_warm, lauscher_per_ch = [], [], []
    for n_ch in args.exact_channels:
        def run_exact():
            return co.wave_to_spikes(x, fs, n_ch, exact=True, rng=np.random.RandomState(1))
        cold, ours = timed(run_exact, args.repeats, before=co.clear_transfer_cache)
        warm_t, _ = timed(run_exact, args.repeats)
        line = f"  {n_ch:3d} channels: exact cold {cold:7.3f} s, warm {warm_t:7.3f} s"
        if have_lauscher:
            lt, ref = timed(lambda: lauscher_run(x, fs, n_ch, 1), args.lauscher_repeats)
            same = np.array_equal(ref[0], ours[0]) and np.array_equal(ref[1], ours[1])
            ratios_cold.append(lt / cold)
            ratios_warm.append(lt / warm_t)
            lauscher_per_ch.append(lt / n_ch)
            line += (f" | lauscher {lt:7.2f} s | speed-up cold {lt / cold:6.1f}x, warm {lt / warm_t:6.1f}x"
                     f" | spikes {ours[0].size}, identical: {same}")
        print(line)
    if ratios_cold:
        print(f"  target >= {TARGET_EXACT_SPEEDUP:.0f}x: cold {'met' if min(ratios_cold) >= TARGET_EXACT_SPEEDUP else 'NOT met'}"
              f" (min {min(ratios_cold):.1f}x), warm {'met' if min(ratios_warm) >= TARGET_EXACT_SPEEDUP else 'NOT met'}"
              f" (min {min(ratios_warm):.1f}x)")
    lauscher_700 = None
    if have_lauscher and args.lauscher_700:
        lauscher_700, _ = timed(lambda: lauscher_run(x, fs, 700, 1), 1)
        print(f"  lauscher at 700 channels: {lauscher_700:.1f} s for the {args.digit_s} s clip")

    # ---------------------------------------------------------------- 2. fast mode, 700 channels
    print(f"\n[2] fast mode, 700 channels, {args.utterance_s} s clip")
    fast = {}
    for rate in args.fast_rates:
        u = speech_like(rate, args.utterance_s)
        n_pad = co.padded_length(u.size)
        co.clear_transfer_cache()
        t0 = cpu_now()
        co.membrane_transfer(n_pad, rate, 700)
        tf_cost = cpu_now() - t0
        per, out = timed(lambda: co.wave_to_spikes(u, rate, 700, rng=2), args.repeats)
        per_s = per / args.utterance_s
        fast[rate] = (per_s, tf_cost)
        print(f"  {rate:6d} Hz: {per_s:6.3f} CPU s per s of audio (warm; {per:.3f} s for the clip, "
              f"{out[0].size} spikes), transfer function of its length {tf_cost:5.2f} s once | "
              f"target <= {TARGET_FAST_S_PER_S} s/s: {'met' if per_s <= TARGET_FAST_S_PER_S else 'NOT met'}")
    co.clear_transfer_cache()

    # ---------------------------------------------------------------- 3. projection
    audio_s = SHD_DIGITS * args.mean_s
    lengths = {co.padded_length(int(d * fs)) for d in np.arange(0.3, 1.4, 0.001)}
    print(f"\n[3] SHD-sized set: {SHD_DIGITS} digits x {args.mean_s} s = {audio_s:.0f} s of audio, "
          f"{CORES} cores (processes), durations 0.3-1.4 s -> {len(lengths)} padded lengths at {fs} Hz")
    if fs in fast:
        per_s, tf_cost = fast[fs]
        tf_total = len(lengths) * tf_cost * (1.1 / args.utterance_s)   # longer lengths cost more
        total = (audio_s * per_s + tf_total) / CORES
        print(f"  fast mode : {total / 3600:6.2f} h  ({per_s:.3f} s/s x {audio_s:.0f} s + ~{tf_total:.0f} s of "
              f"transfer functions, / {CORES})")
    if ratios_cold and lauscher_per_ch:
        per_digit_l = statistics.median(lauscher_per_ch) * 700 * (args.mean_s / args.digit_s)
        if lauscher_700 is not None:
            per_digit_l = lauscher_700 * (args.mean_s / args.digit_s)
        lauscher_total = SHD_DIGITS * per_digit_l / CORES
        exact_total = lauscher_total / min(ratios_cold)
        print(f"  exact mode: {exact_total / 3600:6.2f} h  (Lauscher's time / the cold speed-up at "
              f"{args.exact_channels[ratios_cold.index(min(ratios_cold))]} channels)")
        how = "measured at 700 channels" if lauscher_700 is not None else \
            f"scaled linearly from {args.exact_channels} channels"
        print(f"  lauscher  : {lauscher_total / 3600:6.1f} h  ({per_digit_l:.0f} s per {args.mean_s} s digit, {how})")


if __name__ == "__main__":
    main()
