"""elm_neuro.data.cochlea: the Lauscher cochlea chain.

* exact mode against the ``lauscher`` package itself (skipped without it): spikes identical,
  intermediate signals within 1e-9 of each channel's peak;
* every fast path against its plain reference path;
* the fast mode against the exact mode in distribution (rates, inter-spike intervals, onset
  latencies, refractoriness) and the fibres against their exact law;
* padding, caching, output format and bad input.

Sizes are chosen for seconds, not minutes: short clips, 4-32 channels, 8-11 kHz membrane rates.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import special, stats

from elm_neuro.data import cochlea as co


# ----------------------------------------------------------------------------- signals
def tone(fs, dur, freq, amp=1.0, onset=0.0):
    t = np.arange(int(round(dur * fs))) / fs
    return amp * np.sin(2 * np.pi * freq * t) * (t >= onset)


def chirp(fs, dur, f0=200.0, f1=4000.0):
    t = np.arange(int(round(dur * fs))) / fs
    k = (f1 / f0) ** (1 / dur)
    return np.sin(2 * np.pi * f0 * (k ** t - 1) / np.log(k))


def silence_then_burst(fs, dur, onset, seed=0):
    """Silence (a -100 dB floor, so the RMS is defined) then broadband noise from ``onset``."""
    rng = np.random.default_rng(seed)
    n = int(round(dur * fs))
    x = 1e-5 * rng.normal(size=n)
    start = int(round(onset * fs))
    x[start:] += rng.normal(size=n - start)
    return x


def mixture(fs, dur, seed=0):
    t = np.arange(int(round(dur * fs))) / fs
    rng = np.random.default_rng(seed)
    return (np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 7 * t))
            + 0.4 * np.sin(2 * np.pi * 2500 * t) + 0.05 * rng.normal(size=t.size))


def _stages(x, fs, n_ch, pad=False):
    sig = co.normalise_and_ramp(x)
    vel = co.basilar_membrane(sig, fs, n_ch, n_fft=co.padded_length(x.size) if pad else None)
    return vel, co.hair_cell(vel, fs // 2)


def _rel_to_peak(a, ref):
    """max |a - ref| per channel over that channel's max |ref|, the worst channel."""
    a, ref = np.atleast_2d(a), np.atleast_2d(ref)
    return float((np.abs(a - ref).max(axis=1) / np.abs(ref).max(axis=1)).max())


# ============================================================================= against lauscher
@pytest.fixture(scope="module")
def lauscher():
    return pytest.importorskip("lauscher", reason="lauscher is not installed (test extra)")


def _lauscher_spikes(x, fs, n_ch, seed):
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.transformations.wave2spike import Wave2Spike

    np.random.seed(seed)
    spikes = Wave2Spike(num_channels=n_ch)(MonoAudioWave(x.copy(), fs))
    return np.asarray(spikes.spike_times), np.asarray(spikes.spike_labels)


@pytest.mark.parametrize("fs, n_ch, n_samples, seed", [
    (16000, 6, 1201, 3),      # odd length: the window's unscaled middle sample
    (22050, 8, 1764, 11),     # 11025 Hz membrane rate: fibre dead time 11.025 samples
    (11025, 5, 1103, 2),      # odd rate: the membrane runs at 11025 // 2 = 5512 Hz
])
def test_exact_mode_equals_lauscher(lauscher, fs, n_ch, n_samples, seed):
    x = mixture(fs, n_samples / fs, seed)[:n_samples]
    ref_t, ref_u = _lauscher_spikes(x, fs, n_ch, seed)
    assert ref_t.size > 5
    rng = np.random.RandomState(seed)
    t, u = co.wave_to_spikes(x, fs, n_ch, exact=True, rng=rng)
    np.testing.assert_array_equal(u, ref_u)
    np.testing.assert_array_equal(t, ref_t)
    # the random state is advanced exactly as Lauscher advanced numpy's global one
    assert rng.random_sample() == np.random.random_sample()
    # rng=None: numpy's global state, as after np.random.seed
    np.random.seed(seed)
    t2, u2 = co.wave_to_spikes(x, fs, n_ch, exact=True)
    np.testing.assert_array_equal(t2, ref_t)
    np.testing.assert_array_equal(u2, ref_u)


def test_exact_stages_equal_lauscher(lauscher):
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.transformations import BasilarMembrane, BushyCell, HairCell, HanningWindow, RmsNormalizer

    fs, n_ch = 16000, 8
    x = chirp(fs, 0.12)
    wave = HanningWindow()(RmsNormalizer(0.3)(MonoAudioWave(x.copy(), fs)))
    sig = co.normalise_and_ramp(x)
    np.testing.assert_array_equal(sig, wave.samples)

    ref_vel = BasilarMembrane(channels=n_ch)(wave)
    assert ref_vel.sample_rate == co.membrane_rate(fs) == fs // 2
    vel = co.basilar_membrane(sig, fs, n_ch)
    assert vel.shape == ref_vel.channels.shape
    assert _rel_to_peak(vel, ref_vel.channels) < 1e-9
    np.testing.assert_allclose(vel, ref_vel.channels, rtol=1e-9, atol=1e-9 * np.abs(ref_vel.channels).max())

    ref_prob = HairCell()(ref_vel)
    np.testing.assert_array_equal(co.hair_cell(ref_vel.channels, ref_vel.sample_rate), ref_prob.channels)
    prob = co.hair_cell(vel, fs // 2)
    np.testing.assert_allclose(prob, ref_prob.channels, rtol=1e-9, atol=1e-9 * ref_prob.channels.max())

    np.random.seed(5)
    ref_spikes = BushyCell()(ref_prob)
    t, u = co.bushy_cells(ref_prob.channels, ref_prob.sample_rate, exact=True, rng=np.random.RandomState(5))
    assert t.size > 3
    np.testing.assert_array_equal(t, ref_spikes.spike_times)
    np.testing.assert_array_equal(u, ref_spikes.spike_labels)


def test_transfer_function_equals_lauscher(lauscher):
    from lauscher.transformations import BasilarMembrane

    for fs, n, n_ch in [(48000, 2400, 12), (22050, 1001, 9)]:
        bm = BasilarMembrane(channels=n_ch)
        om = 2 * np.pi * np.linspace(1, fs // 2, n // 2 + 1)
        ref = np.array([bm._v(om, c) for c in bm.ch])
        got = co.membrane_transfer(n, fs, n_ch)
        assert np.all(np.abs(got - ref) <= 1e-11 * np.abs(ref) + 1e-300)


# ============================================================================= fast paths vs plain paths
def test_transfer_function_matches_reference_and_hankel_series():
    for fs, n, n_ch in [(16000, 3000, 7), (44100, 4411, 5)]:
        fast = co.membrane_transfer(n, fs, n_ch)
        ref = co.membrane_transfer_reference(n, fs, n_ch)
        assert np.all(np.abs(fast - ref) <= 1e-12 * np.abs(ref) + 1e-300)
    rng = np.random.default_rng(0)
    z = (20 + 80 * rng.random(20000)) * np.exp(1j * 1.55 * rng.random(20000))
    ours = np.array([co._hankel0_asymptotic(v, co._HANKEL_C) for v in z[:2000]])
    ref = special.hankel1(0, z[:2000])
    assert np.max(np.abs(ours - ref) / np.abs(ref)) < 1e-13


def test_membrane_matches_reference():
    fs, n_ch = 16000, 24
    sig = co.normalise_and_ramp(mixture(fs, 0.1))
    fast = co.basilar_membrane(sig, fs, n_ch)
    ref = co.basilar_membrane_reference(sig, fs, n_ch)
    assert _rel_to_peak(fast, ref) < 1e-12


def test_hair_cell_matches_reference_bit_for_bit():
    rng = np.random.default_rng(1)
    vel = rng.normal(size=(3, 2000)) * np.array([[1.0], [20.0], [300.0]])   # incl. s + A < 0
    for rate in (8000, 11025):
        np.testing.assert_array_equal(co.hair_cell(vel, rate), co.hair_cell_reference(vel, rate))
    np.testing.assert_array_equal(co.hair_cell(vel[1], 8000), co.hair_cell_reference(vel[1], 8000))


def test_mt19937_matches_numpy():
    for seed in (0, 12345):
        rs = np.random.RandomState(seed)
        rs.random_sample(311)        # a state in the middle of a block
        state = rs.get_state()
        key, pos = np.array(state[1], dtype=np.uint32), int(state[2])
        out = np.empty(2000)
        pos = co._mt_uniforms(key, pos, out.size, out)
        np.testing.assert_array_equal(out, rs.random_sample(2000))
        assert pos == rs.get_state()[2]
        np.testing.assert_array_equal(key, rs.get_state()[1])


def test_pairwise_sum_matches_numpy():
    rng = np.random.default_rng(2)
    for n in [1, 7, 8, 9, 40, 127, 128, 129, 300, 1000]:
        a = rng.random(n) * np.exp(5 * rng.normal(size=n))
        assert co._np_sum(a, n) == np.sum(a)


def test_exact_bushy_cells_match_reference():
    fs, n_ch = 22050, 12
    _, prob = _stages(mixture(fs, 0.1), fs, n_ch)
    a = co.bushy_cells(prob, fs // 2, exact=True, rng=np.random.RandomState(4))
    b = co.bushy_cells_reference(prob, fs // 2, rng=np.random.RandomState(4))
    assert a[0].size > 3
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_fast_bushy_cells_match_reference():
    fs, n_ch = 16000, 6
    _, prob = _stages(mixture(fs, 0.08), fs, n_ch)
    prob = prob.copy()
    prob[2, 100:103] = 1.0                        # certain spikes: every available fibre fires
    for seed in (1, 2):
        a = co.bushy_cells(prob, fs // 2, rng=seed)
        b = co.fast_bushy_cells_reference(prob, fs // 2, seed=co._fast_seed(seed))
        assert a[0].size > 3
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_fast_fibres_survive_rescaling():
    """A long, loud channel drives the survival product through many 2^500 rescalings."""
    prob = np.full((1, 60000), 0.5)                # survival x 2^-60000 overall
    t, c, f = co.fibre_spikes(prob, 8000, rng=3)
    rate = t.size / (40 * 60000)
    # fibre law: spike with p after a dead time of 8 samples -> rate 1 / (8 + (1-p)/p) per sample
    assert rate == pytest.approx(1 / (8 + 1.0), rel=0.02)


# ============================================================================= fast mode in distribution
def _isi_law(p, dead, kmax):
    """P(ISI = dead + k) = p (1-p)^k for a fibre with constant p (k = 0..kmax-1, rest pooled)."""
    k = np.arange(kmax)
    probs = p * (1 - p) ** k
    return np.append(probs, 1 - probs.sum())


@pytest.mark.parametrize("exact", [False, True])
def test_fibres_follow_their_law(exact):
    rate, n_ch, n_t, p = 8000, 8, 4000, 0.02
    prob = np.full((n_ch, n_t), p)
    rng = np.random.RandomState(7) if exact else 7
    t, c, f = co.fibre_spikes(prob, rate, exact=exact, rng=rng)
    dead = 8                                       # 1 ms at 8 kHz
    isis = []
    for ch in range(n_ch):
        for fib in range(40):
            ts = t[(c == ch) & (f == fib)]
            assert ts.size == 0 or ts[0] >= 0
            isis.append(np.diff(ts))
    isi = np.concatenate(isis)
    assert isi.min() >= dead                       # never inside the dead time
    kmax = 60
    law = _isi_law(p, dead, kmax)
    counts = np.bincount(np.minimum(isi - dead, kmax), minlength=kmax + 1)
    chi2, pval = stats.chisquare(counts, law * counts.sum())
    assert pval > 1e-4, (chi2, pval)
    # first spikes: geometric from sample 0
    first = np.array([t[(c == ch) & (f == fib)][0] for ch in range(n_ch) for fib in range(40)])
    assert first.mean() == pytest.approx((1 - p) / p, rel=4 / math.sqrt(first.size))


def _spike_table(x, fs, n_ch, exact, seeds):
    out = []
    for s in seeds:
        rng = np.random.RandomState(s) if exact else s
        out.append(co.wave_to_spikes(x, fs, n_ch, exact=exact, rng=rng))
    return out


def _rates(runs, n_ch):
    return np.array([np.bincount(u, minlength=n_ch) for _, u in runs], dtype=float)


def _isis(runs, n_ch):
    out = []
    for t, u in runs:
        for ch in range(n_ch):
            out.append(np.diff(t[u == ch]))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def distribution_runs():
    """Exact and fast spikes of three inputs, 24 draws each (16 kHz audio, 16 channels)."""
    fs, n_ch = 16000, 16
    inputs = {
        "tones": tone(fs, 0.3, 500) + tone(fs, 0.3, 2000, 0.5),
        "chirp": chirp(fs, 0.3),
        "burst": silence_then_burst(fs, 0.3, onset=0.1),
    }
    runs = {}
    for name, x in inputs.items():
        runs[name] = (_spike_table(x, fs, n_ch, True, range(24)),
                      _spike_table(x, fs, n_ch, False, range(1000, 1024)))
    return fs, n_ch, runs


@pytest.mark.parametrize("name", ["tones", "chirp", "burst"])
def test_fast_rates_match_exact(distribution_runs, name):
    fs, n_ch, runs = distribution_runs
    exact, fast = (_rates(r, n_ch) for r in runs[name])
    assert exact.sum() > 300
    # per channel: difference of the mean counts within 4.5 standard errors (Poisson-or-wider)
    # (a floor of one count of variance keeps silent channels from dividing by zero)
    se = np.sqrt((exact.var(axis=0, ddof=1) + fast.var(axis=0, ddof=1) + 1.0) / len(exact))
    z = (fast.mean(0) - exact.mean(0)) / se
    assert np.abs(z).max() < 4.5, np.round(z, 2)
    # and in total
    tot_e, tot_f = exact.sum(1), fast.sum(1)
    z_tot = (tot_f.mean() - tot_e.mean()) / math.sqrt(tot_e.var(ddof=1) / len(tot_e) + tot_f.var(ddof=1) / len(tot_f))
    assert abs(z_tot) < 4.5


@pytest.mark.parametrize("name", ["tones", "chirp", "burst"])
def test_fast_isi_distribution_matches_exact(distribution_runs, name):
    fs, n_ch, runs = distribution_runs
    isi_e, isi_f = (_isis(r, n_ch) for r in runs[name])
    rate = fs // 2
    step = 1 / rate
    lif_dead = math.ceil(1e-3 * rate) + 1          # samples between two bushy spikes, at least
    for isi in (isi_e, isi_f):
        assert isi.size > 100
        assert np.round(isi / step).min() >= lif_dead
    # two-sample chi-square on ISI bins of 0.5 ms up to 15 ms, the rest pooled
    edges = np.append(np.arange(0, 15.5e-3, 0.5e-3), np.inf)
    he, _ = np.histogram(isi_e, edges)
    hf, _ = np.histogram(isi_f, edges)
    keep = (he + hf) >= 10
    table = np.vstack([np.append(he[keep], he[~keep].sum()), np.append(hf[keep], hf[~keep].sum())])
    table = table[:, table.sum(0) > 0]
    _, pval, _, _ = stats.chi2_contingency(table)
    assert pval > 1e-4
    assert stats.ks_2samp(isi_e, isi_f).pvalue > 1e-4


def test_fast_onset_latency_matches_exact(distribution_runs):
    """Silence, then a noise burst at 100 ms: first spike of each channel from the onset on, and
    the spikes before it (Lauscher's membrane is acausal and circular, so the "silence" is not
    spike-free: the burst's tapered end wraps onto the start, and apical channels answer up to
    ~45 ms early), alike in both modes."""
    fs, n_ch, runs = distribution_runs
    onset = 0.1

    def latencies(table):
        lat = []
        for t, u in table:
            for ch in range(n_ch):
                after = t[(u == ch) & (t >= onset)]
                if after.size:
                    lat.append(after[0] - onset)
        return np.array(lat)

    lat_e, lat_f = (latencies(tb) for tb in runs["burst"])
    assert lat_e.size > 100 and lat_f.size > 100
    assert np.median(lat_e) < 0.03                     # the burst drives the cells within ms
    z = (lat_f.mean() - lat_e.mean()) / math.sqrt(lat_e.var() / lat_e.size + lat_f.var() / lat_f.size)
    assert abs(z) < 4.5
    assert stats.ks_2samp(lat_e, lat_f).pvalue > 1e-4
    before_e, before_f = (np.array([(t < onset).sum() for t, _ in tb], float) for tb in runs["burst"])
    z = (before_f.mean() - before_e.mean()) / math.sqrt((before_e.var() + before_f.var() + 1) / before_e.size)
    assert abs(z) < 4.5
    after_e, after_f = (np.array([(t >= onset).sum() for t, _ in tb], float) for tb in runs["burst"])
    assert after_e.mean() > 3 * before_e.mean()


def test_fast_padding_keeps_spikes_in_the_span():
    fs, n_ch = 16000, 8
    x = mixture(fs, 0.137)
    assert co.padded_length(x.size) > x.size
    t, u = co.wave_to_spikes(x, fs, n_ch, rng=0)
    assert t.size > 0 and t.max() < (x.size // 2 + 1) / (fs // 2)
    # pad=False: the fast mode on Lauscher's own (unpadded) membrane
    t2, _ = co.wave_to_spikes(x, fs, n_ch, rng=0, pad=False)
    assert t2.size > 0


# ============================================================================= padding, cache, format
def test_padded_length():
    for n in [2, 3, 15, 16, 17, 1000, 1001, 22050, 38400, 48001, 123457]:
        p = co.padded_length(n)
        m = p // 2 + 1
        assert p >= n and p % 2 == 0
        k = m
        while k % 2 == 0:
            k //= 2
        assert k in (1, 3, 5, 7)
        assert m <= max(8, 1.25 * (n // 2 + 2))
        assert co.padded_length(p) == p                  # a padded length is its own class
    assert len({co.padded_length(n) for n in range(14400, 72000, 7)}) <= 10


def test_transfer_cache():
    co.clear_transfer_cache()
    before = co._TRANSFER_CACHE.computed
    a = co.membrane_transfer(2000, 16000, 4)
    b = co.membrane_transfer(2000, 16000, 4)
    assert a is b and not a.flags.writeable
    assert co._TRANSFER_CACHE.computed == before + 1
    c = co.membrane_transfer(2000, 16000, 4, co.CochleaConfig(bm_damping=0.2))
    assert c is not a and co._TRANSFER_CACHE.computed == before + 2
    # two utterances of the same padded class share one transfer function in fast mode
    x1, x2 = mixture(16000, 0.100), mixture(16000, 0.102)
    assert co.padded_length(x1.size) == co.padded_length(x2.size)
    co.wave_to_spikes(x1, 16000, 4, rng=0)
    n = co._TRANSFER_CACHE.computed
    co.wave_to_spikes(x2, 16000, 4, rng=0)
    assert co._TRANSFER_CACHE.computed == n


def test_output_format_and_order():
    fs, n_ch = 22050, 12
    x = mixture(fs, 0.2)
    for exact in (False, True):
        t, u = co.wave_to_spikes(x, fs, n_ch, exact=exact, rng=np.random.RandomState(0) if exact else 0)
        assert t.dtype == np.float64 and u.dtype == np.int64 and t.shape == u.shape
        assert t.size > 10
        assert u.min() >= 0 and u.max() < n_ch
        rate = fs // 2
        idx = np.round(t * rate)
        np.testing.assert_array_equal(idx / rate, t)          # multiples of 1 / (fs // 2)
        key = idx * n_ch + u
        assert np.all(np.diff(key) > 0)                        # by time, then unit, no duplicates


def test_same_seed_same_spikes():
    x = mixture(16000, 0.1)
    a = co.wave_to_spikes(x, 16000, 8, rng=42)
    b = co.wave_to_spikes(x, 16000, 8, rng=np.random.default_rng(42))
    c = co.wave_to_spikes(x, 16000, 8, rng=43)
    np.testing.assert_array_equal(a[0], b[0])
    assert not (a[0].size == c[0].size and np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))


def test_config_parameters_are_used():
    x = mixture(16000, 0.15)
    base = co.wave_to_spikes(x, 16000, 8, rng=1)[0].size
    more = co.wave_to_spikes(x, 16000, 8, rng=1, config=co.CochleaConfig(bushy_weight=26e3))[0].size
    assert more > base
    prob = np.full((2, 4000), 0.05)
    t, c, f = co.fibre_spikes(prob, 8000, rng=0, config=co.CochleaConfig(fibres_per_cell=5,
                                                                         fibre_refractory_s=2.5e-3))
    assert f.max() == 4
    for ch in range(2):
        for fib in range(5):
            assert np.diff(t[(c == ch) & (f == fib)]).min() >= 20


# ============================================================================= bad input
def test_silent_input_warns_and_returns_nothing():
    for x in (np.zeros(1000), np.full(1000, 1e-200)):
        with pytest.warns(co.SilentAudioWarning):
            t, u = co.wave_to_spikes(x, 16000, 8)
        assert t.size == 0 and u.size == 0 and t.dtype == np.float64 and u.dtype == np.int64
    # exact mode still advances the generator by Lauscher's draws: 8 ch x 501 samples x 40 fibres
    rng = np.random.RandomState(3)
    with pytest.warns(co.SilentAudioWarning):
        co.wave_to_spikes(np.zeros(1000), 16000, 8, exact=True, rng=rng)
    ref = np.random.RandomState(3)
    ref.random_sample(8 * 501 * 40)
    assert rng.random_sample() == ref.random_sample()
    with warnings.catch_warnings():
        warnings.simplefilter("error", co.SilentAudioWarning)
        with pytest.raises(co.SilentAudioWarning):
            co.wave_to_spikes(np.zeros(100), 16000, 4)


@pytest.mark.parametrize("samples, match", [
    (np.zeros(0), "at least 2 samples"),
    (np.ones(1), "at least 2 samples"),
    (np.array([0.1, np.nan, 0.3]), r"samples\[1\] = nan"),
    (np.array([0.1, 0.2, np.inf]), r"samples\[2\] = inf"),
    (np.ones((2, 100)), "one-dimensional"),
    (np.ones(100, dtype=complex), "real numbers"),
    (np.ones(100, dtype=bool), "real numbers"),
])
def test_bad_samples(samples, match):
    with pytest.raises(ValueError, match=match):
        co.wave_to_spikes(samples, 16000, 4)


@pytest.mark.parametrize("rate", [7999, 192001, 16000.5, float("nan"), True, "16000", None, -16000])
def test_bad_sample_rate(rate):
    with pytest.raises(ValueError, match="sample_rate must be a whole number of Hz in 8000..192000"):
        co.wave_to_spikes(np.ones(100), rate, 4)


@pytest.mark.parametrize("n_ch", [0, -3, 10001, 2.0, True, None])
def test_bad_channel_count(n_ch):
    with pytest.raises(ValueError, match="n_channels must be an integer in 1..10000"):
        co.wave_to_spikes(np.ones(100), 16000, n_ch)


def test_bad_rng_config_and_pad():
    x = mixture(16000, 0.05)
    with pytest.raises(TypeError, match="RandomState"):
        co.wave_to_spikes(x, 16000, 4, exact=True, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be"):
        co.wave_to_spikes(x, 16000, 4, rng="seed")
    with pytest.raises(TypeError, match="config must be a CochleaConfig"):
        co.wave_to_spikes(x, 16000, 4, config={"rms_level": 0.3})
    with pytest.raises(ValueError, match="pad=True cannot be combined with exact=True"):
        co.wave_to_spikes(x, 16000, 4, exact=True, pad=True)
    with pytest.raises(ValueError, match="CochleaConfig.bushy_tau_mem_s must be a finite number > 0"):
        co.CochleaConfig(bushy_tau_mem_s=0.0)
    with pytest.raises(ValueError, match="fibres_per_cell"):
        co.CochleaConfig(fibres_per_cell=0)
    with pytest.raises(ValueError, match="prob must be finite"):
        co.bushy_cells(np.array([[0.1, np.nan]]), 8000)
    with pytest.raises(ValueError, match="rate must be a positive whole number"):
        co.hair_cell(np.zeros(10), 0)
