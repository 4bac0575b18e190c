"""The Lauscher cochlea chain (audio -> 700 channels of spikes, as in SHD), fast and exact.

The Spiking Heidelberg Digits (Cramer et al. 2020, IEEE TNNLS) were made by passing spoken
digits through the cochlea model of the ``lauscher`` package (LGPL-2.1): RMS normalisation,
Hann ramps, a hydrodynamic basilar-membrane model (after Sieroka, Dosch & Rupp 2006) giving
the membrane velocity at 700 places, Meddis inner hair cells giving firing probabilities, 40
auditory-nerve fibres per place sampling those probabilities, and one leaky integrate-and-fire
bushy cell per place on top of its 40 fibres. This module is an independent implementation of
that model (written from the model's equations; ``lauscher`` is only the reference of the
tests): ``exact=True`` reproduces Lauscher 1.0.1 spike for spike, the default fast mode draws
from the same distribution with far fewer random numbers.

Public API
----------
``wave_to_spikes(samples, sample_rate, n_channels=700, *, exact=False, rng=None, config=None,
pad=None) -> (times_s, units)``
    The whole chain. float64 seconds and int64 units, sorted by time then unit.
``CochleaConfig``
    Every model parameter (Lauscher's values as defaults), with unit and meaning.
Stages, for tests and analysis (``rate`` is always the rate of the stage's input signal):
``normalise_and_ramp(samples, config)`` -> conditioned waveform;
``basilar_membrane(signal, sample_rate, n_channels, config=, n_fft=)`` -> velocity
[channels, n // 2 + 1] at ``membrane_rate(sample_rate) = sample_rate // 2``;
``hair_cell(velocity, rate, config=)`` -> firing probability per sample;
``bushy_cells(prob, rate, exact=, rng=, config=)`` -> ``(times_s, units)``;
``fibre_spikes(prob, rate, exact=, rng=, config=)`` -> ``(sample, channel, fibre)`` of the
fibres behind ``bushy_cells`` (same draws).
``membrane_transfer(n_samples, sample_rate, n_channels, config)`` -> the cached transfer
function; ``padded_length(n)``; ``clear_transfer_cache()``.
Plain reference paths (slow, for the tests): ``membrane_transfer_reference``,
``basilar_membrane_reference``, ``hair_cell_reference``, ``bushy_cells_reference`` (exact
mode with numpy's own generator and Python loops), ``fast_bushy_cells_reference`` (the fast
mode's scheme in Python integers and lists).

The model, as implemented
-------------------------
Notation: n input samples at fs Hz; m = n // 2 + 1; F = fs // 2 (integer division); dt = 1 / F.

1. Conditioning: ``y = x * (L / sqrt(mean(x^2))) * w`` with L = ``rms_level`` and w the ramps:
   rising half of a Hann window of length 2 (n // 2) over the first n // 2 samples, its
   mirror over the last n // 2 (so, for even n, ``w = np.hanning(n)``; odd n: middle sample 1).

2. Basilar membrane. Places ``x_i = i * bm_length / (n_channels - 1)``; angular frequencies
   ``w_k = 2 pi (1 + k (F - 1) / (m - 1))``, k = 0..m-1 (1 Hz .. F Hz). With
   ``xi = c0 e^{-alpha x} - a - m_bm w^2 - i w r0 e^{-alpha x/2}`` (r0 = de sqrt(c0 m_bm)),
   local wave number ``k = w sqrt(rho / (h xi))``, ``q = sqrt(a + m_bm w^2)``,
   ``W(x) = -sqrt(xi(x)) + i q - w r0 e^{-alpha x/2} / (2 q)``,
   phase ``G(x) = 2 k(0) / alpha - i (2 sqrt2 w / (alpha sqrt(2 h q^2))) log(W(0) / (e^{alpha x/2} W(x)))``
   (the closed form of the WKB phase integral), pressure ``P(x) = sqrt(G / k) H0^(1)(G)``,
   middle-ear term ``Z = sqrt(2 c0 / h) (i J0(u) + Y0(u)) / (J1(u) - i Y1(u))``,
   ``u = (2 w / alpha) sqrt(2 / (h c0))``, the transfer function is
   ``V(w, x) = 2 w P(x) Z / (xi(x) P(0))`` and the velocity
   ``v_i[t] = Re( (1/m) sum_k V(w_k, x_i) S_k e^{2 pi i k t / m} )``, t = 0..m-1, at F Hz,
   where S_k (k < m) is the one-sided DFT of y. Principal branches throughout (G stays in the
   first quadrant, far from every cut). H0^(1) is scipy's (AMOS) for |G| < 20, else its
   large-argument series (DLMF 10.17.5; relative error ~3e-15 there, tested against scipy).

3. Inner hair cell (Meddis), explicit Euler at F Hz, every right-hand side from the previous
   step, s = v_i[t]:
   ``kt = g dt (s + A) / (s + A + B)`` if s + A > 0 else 0;
   ``q <- max(q + [y M dt - y dt q if q < M else 0] - kt q + x dt w, 0)``;
   ``c <- max(c + kt q - (l + r) dt c, 0)``;  ``w <- max(w + r dt c - x dt w, 0)``;
   ``p[t] = h dt c``. Start: the resting state of zero stimulus, k0 = g A / (A + B),
   ``c = M y k0 / (l k0 + y (l + r))``, ``q = c (l + r) / k0``, ``w = c r / x``.

4. Fibres: fibre f of channel i fires at sample t when ``u < p[t]`` (u uniform on [0, 1)) and
   ``t - t_last >= R_f``, ``R_f = fibre_refractory_s * F`` (a float; the first spike may come
   at t = 0); a draw inside the dead time is simply dropped.

5. Bushy cell, per step t (weights ``w_f = bushy_weight / fibres_per_cell``):
   if t > 0: when not refractory (counter <= 0), ``V = V e^{-dt/tau_m}`` if V < 1, else a spike
   is recorded at t - 1, the counter is set to ``bushy_refractory_s * F`` and V = 0 (V is also 0
   while refractory); every fibre current decays, ``I_f = I_f e^{-dt/tau_syn}``. Then
   ``I_f += spike_f[t]``; when not refractory ``V += (sum_f I_f) w_f dt``; ``V = min(V, 1)``;
   counter -= 1.

Lauscher's quirks, all reproduced (they change the output)
----------------------------------------------------------
* The "ramps" are each half the signal long: the whole utterance is Hann-windowed; an odd
  length leaves its middle sample unscaled.
* The membrane's frequency grid is ``linspace(1 Hz, F Hz, m)``, not the DFT's ``k fs / n``
  (the DC bin is evaluated at 1 Hz), and it depends on the signal's length.
* The membrane output is the real part of a length-m inverse DFT of the one-sided spectrum,
  labelled at F = fs // 2 Hz: the rate is halved with integer division (22050 Hz audio gives
  11025 Hz, 11025 Hz audio 5512 Hz, and spike times are divided by that integer); time is
  stretched by about (n + 2) / n; input above fs / 4 is mirrored to fs / 2 - f; and the
  transform is circular.
* With numpy's sign convention the membrane's response comes *before* its cause: a click at
  250 ms moves the basal channels at ~250 ms but the apical ones from ~205 ms (95 % of the
  energy before the click); the end of an utterance wraps onto its start.
* ``c0 = 10e8`` (= 1e9), as written in Lauscher.
* ``rho`` enters the local wave number only, not the phase integral's prefactor (harmless at
  rho = 1).
* The hair cell is driven by the raw velocity (its scale set by the 0.3 RMS), at F Hz.
* Fibre dead time: compared in float (``t - last < R``), so it lasts ceil(R) samples
  (R = 11.025 at 22050 Hz: 12 samples); drops, never delays, spikes; the first spike is free.
* Random draws: for each channel in turn, one (samples x fibres) block of uniforms, row-major
  (sample, then fibre), all drawn whatever the refractoriness. Exact mode draws them from its
  own MT19937 (the state of the RandomState, bit for bit numpy's ``random_sample``) and hands
  the advanced state back.
* Bushy cell: a threshold crossing is noticed one step late and recorded at the crossing
  sample; a crossing at the very last sample is lost; V is clipped to 1; the refractory
  counter is a float (tau F) decremented every step, so V is held at 0 for ceil(tau F) steps
  from the detection step, during which the currents keep decaying and accumulating but are
  not integrated: consecutive spikes are at least ceil(tau F) + 1 samples apart. The currents
  are summed in numpy's pairwise order (reproduced bit for bit).
* The same 1 ms is used for the fibres' and the bushy cells' refractory periods (two
  parameters here, equal by default).
* Lauscher runs its stages in a process pool; that changes nothing in the output (ordered map,
  all draws in the parent).

Silent input is the one deliberate difference: Lauscher divides by an RMS of 0 and runs NaNs
through the chain (ending, in practice, with no spikes); here a :class:`SilentAudioWarning` and
empty arrays (and, in exact mode, the random state advanced as Lauscher would).

Exact mode
----------
``wave_to_spikes(x, fs, n, exact=True, rng=np.random.RandomState(s))`` gives the spikes (units
and times, bit for bit) of ``Wave2Spike(num_channels=n)(MonoAudioWave(x, fs))`` after
``np.random.seed(s)``; ``rng=None`` uses (and advances) numpy's global state like Lauscher.
Intermediate signals agree to ~1e-14 (membrane velocity, relative to each channel's peak; it
is computed by a different FFT) and bit for bit (hair cell, given the same velocity).

Fast mode (the default)
-----------------------
The cost of the exact mode is the 40 uniforms per channel per sample. The fast mode gives the
same distribution of spikes from one uniform per fibre spike:

* Survival thresholds. For channel i let ``C_t = prod_{s < t} (1 - p[s])``. A fibre that
  becomes available at sample a (at the start, or ceil(R) samples after its last spike) draws
  ``U`` uniform on (0, 1] and fires at the first t >= a with ``C_{t+1} < U C_a``: then
  ``P(no spike at a..t) = P(U <= C_{t+1} / C_a) = prod_{s=a}^{t} (1 - p[s])``, exactly the
  survival of Lauscher's independent Bernoulli draws; spikes in the dead time are dropped
  there and never drawn here, which is the same process. The 40 fibres are independent, so
  all of a channel's fibres share the running product C: per sample one multiplication and
  one comparison with the largest threshold of the available fibres (kept sorted); per fibre
  spike one uniform, and the fibre's return ceil(R) samples later (a ring of counts).
  ``C`` is rescaled by 2^500 (exactly, with every threshold) before it can underflow; p >= 1
  fires every available fibre (Lauscher: u < p always holds).
* The bushy cell needs only the number of fibre spikes per sample (all weights are equal and
  the currents are linear): one summed current instead of 40 (same update order as above;
  equal to Lauscher's per-fibre sum up to rounding).
* Random numbers: xoshiro256** streams, one per channel, seeded by splitmix64 from a 64-bit
  seed drawn from ``rng`` and the channel number (so results do not depend on how channels
  are grouped). ``fast_bushy_cells_reference`` runs the same scheme in plain Python and gives
  the same spikes.

The fast mode's numbers differ from the exact mode's (other draws), its distribution does not:
tests/test_data_cochlea.py compares both modes on tones, a chirp and silence-then-burst
(per-channel rates, inter-spike intervals, onset latencies, refractoriness) and the fibres with
constant probabilities against the exact geometric law.

Transfer function, padding and cache
------------------------------------
V depends on the signal's length n and rate (through the frequency grid), not on the signal.
:func:`membrane_transfer` caches it per (length, rate, channels, membrane parameters), most
recent first, while the entries total at most ``TRANSFER_CACHE_BYTES`` (1 GiB; 700 channels x
12289 bins, 1.1 s at 22050 Hz, take 138 MB). To share it between utterances the fast mode
zero-pads the conditioned signal (after normalisation and ramps, which therefore see only the
real samples) to :func:`padded_length`: the membrane output length m becomes the next of
2^k, 5 2^(k-2), 3 2^(k-1), 7 2^(k-2) (four lengths per octave, at most 25 % more work, all fast
FFT sizes), and the output is cut back to the utterance's own m samples. Converting many
utterances, group them by ``padded_length`` (SHD's 0.3-1.4 s at 48 kHz fall into ~10 lengths).

Padding with silence is not neutral in this model, because of the quirks above: the time
stretch (n + 2) / n changes with n (shifting phases by up to 2 / fs seconds at the end of an
utterance), the grid's 1 Hz offsets move, and the circular wrap of the acausal responses
meets silence instead of the utterance's start. Measured on speech-like test utterances
(0.3 and 0.8 s at 16, 22.05 and 48 kHz, 64 channels): over the utterance, the largest change
of a channel's membrane velocity is, for the median channel, 0.7-12 % of that channel's peak
(up to ~100 % in single weak basal channels, near the ends of the utterance), and the firing
probabilities change by 0.2-6 % on average. The spikes do not notice: per-channel spike
counts of exact mode on the padded and on the unpadded membrane (0.5 s at 22.05 kHz, 32
channels, 150 draws each) agreed within their statistical error (all |z| <= 2.7).
``pad=False`` gives the fast mode Lauscher's own membrane (and a transfer function per length).

Performance
-----------
Numba kernels (compiled on first use, cached on disk) for the transfer function, the spectral
fold, the hair cell, the fibres and the bushy cells; scipy's FFT; channels in blocks of 16
through all stages. One thread; run utterances in parallel processes.
benchmarks/bench_cochlea.py measures (shared 2-core machine, one thread, CPU time): exact mode
134-138x faster than Lauscher at 24 / 64 channels with the transfer function cached, 54-55x when
it is computed too (as for an utterance of a new length); the transfer function costs ~0.4 us
per (channel, frequency), about 6 s for 700 channels and 0.8 s of 48 kHz audio, once per
length. Fast mode, 700 channels: ~0.23-0.30 CPU s per second of 22.05 kHz audio and
~0.36-0.42 s per second of 48 kHz audio, in roughly equal parts membrane FFTs, hair cell, and
fibres + bushy cells (~45 ns per fibre spike, ~1.9 million fibre spikes per second of speech at
700 channels).
"""
from __future__ import annotations

import cmath
import dataclasses
import math
import threading
import warnings
from collections import OrderedDict

import numba
import numpy as np
import scipy.fft
from scipy import special

__all__ = [
    "CochleaConfig", "SilentAudioWarning", "wave_to_spikes",
    "normalise_and_ramp", "basilar_membrane", "hair_cell", "bushy_cells", "fibre_spikes",
    "membrane_transfer", "membrane_rate", "padded_length", "clear_transfer_cache",
    "basilar_membrane_reference", "hair_cell_reference", "bushy_cells_reference",
    "fast_bushy_cells_reference", "membrane_transfer_reference",
    "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "MAX_CHANNELS", "TRANSFER_CACHE_BYTES",
]

#: Accepted audio sample rates, Hz (inclusive).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
#: Largest accepted number of channels (the transfer function alone is n_channels x n/2 complex).
MAX_CHANNELS = 10000
#: The transfer-function cache keeps its most recent entries while they total at most this many
#: bytes (the newest entry is always kept, whatever its size).
TRANSFER_CACHE_BYTES = 1 << 30
#: Channels processed together (membrane, hair cell, fibres, bushy cell) in :func:`wave_to_spikes`:
#: the block's arrays stay in cache from one stage to the next.
_BLOCK = 16
#: |G| from which the Hankel function is taken from its asymptotic series (else scipy's AMOS).
_HANKEL_ASYMPTOTIC_FROM = 20.0


class SilentAudioWarning(UserWarning):
    """The audio is silent (all zeros, or too quiet for its RMS to be normalised): no spikes."""


@dataclasses.dataclass(frozen=True)
class CochleaConfig:
    """Parameters of the cochlea chain; the defaults are those of Lauscher 1.0.1 (SHD).

    Units: the membrane model uses CGS units (cm, g, s); membrane velocity and the hair cell's
    stimulus are in the model's own (arbitrary) velocity units, set by ``rms_level``; rates are
    per second.
    """

    # ---- input conditioning
    rms_level: float = 0.3
    """Root-mean-square amplitude the waveform is scaled to before everything else (full scale 1)."""

    # ---- basilar membrane (Sieroka, Dosch & Rupp 2006, long-wave hydrodynamic model)
    bm_length: float = 3.5
    """cm. Length of the membrane; channel i sits at place x_i = i * bm_length / (n - 1)."""
    bm_stiffness: float = 10e8
    """dyn/cm^3. Stiffness at the base, c0 in s(x) = c0 exp(-alpha x) - a (Lauscher writes
    ``10e8``, i.e. 1e9)."""
    bm_stiffness_offset: float = 3500.0
    """dyn/cm^3. The constant ``a`` subtracted from the stiffness."""
    bm_stiffness_decay: float = 3.0
    """1/cm. ``alpha``: stiffness falls as exp(-alpha x) from base to apex (damping as
    exp(-alpha x / 2))."""
    bm_fluid_density: float = 1.0
    """g/cm^3. ``rho`` of the cochlear fluid (enters the local wave number only, as in Lauscher)."""
    bm_damping: float = 0.15
    """Dimensionless damping ratio ``de``: r(x) = de * sqrt(c0 * m) * exp(-alpha x / 2)."""
    bm_channel_height: float = 0.1
    """cm. ``h``, height of the fluid channel (scala)."""
    bm_mass: float = 0.05
    """g/cm^2. ``m``, membrane mass per unit area."""

    # ---- inner hair cell (Meddis 1986 / 1988 transmitter-pool model)
    ihc_replenish_rate: float = 5.05
    """1/s. ``y``: the free pool q refills towards ``ihc_max_transmitter`` at rate y (M - q)."""
    ihc_permeability_rate: float = 2000.0
    """1/s. ``g``: maximal membrane permeability k(s) = g (s + A) / (s + A + B)."""
    ihc_loss_rate: float = 2500.0
    """1/s. ``l``: transmitter lost from the cleft."""
    ihc_reuptake_rate: float = 6580.0
    """1/s. ``r``: transmitter taken back from the cleft into the reprocessing store w."""
    ihc_reprocess_rate: float = 66.3
    """1/s. ``x``: reprocessing store w returned to the free pool."""
    ihc_permeability_offset: float = 5.0
    """Velocity units. ``A``: permeability is zero for stimulus s <= -A."""
    ihc_permeability_half: float = 300.0
    """Velocity units. ``B``: half-saturation of the permeability."""
    ihc_firing_gain: float = 50000.0
    """1/s. ``h``: firing rate = h * c (cleft content); probability per sample h c / rate."""
    ihc_max_transmitter: float = 1.0
    """Transmitter units. ``M``: capacity of the free pool."""

    # ---- auditory-nerve fibres and bushy cells
    fibres_per_cell: int = 40
    """Fibres (independent Bernoulli samplers of one hair cell's probability) per bushy cell."""
    fibre_refractory_s: float = 1e-3
    """s. Dead time of a fibre: a spike less than this after its previous spike is dropped."""
    bushy_tau_mem_s: float = 1e-3
    """s. Membrane time constant of the bushy-cell LIF."""
    bushy_tau_syn_s: float = 5e-4
    """s. Time constant of the exponentially decaying synaptic current of each fibre."""
    bushy_refractory_s: float = 1e-3
    """s. Refractory period of the bushy cell after a spike (membrane clamped to 0)."""
    bushy_weight: float = 13e3
    """1/s. Total synaptic weight; each fibre's current enters with weight / fibres_per_cell."""

    def __post_init__(self):
        positive = ["rms_level", "bm_length", "bm_stiffness", "bm_stiffness_decay",
                    "bm_fluid_density", "bm_damping", "bm_channel_height", "bm_mass",
                    "ihc_replenish_rate", "ihc_reprocess_rate", "ihc_permeability_rate", "ihc_permeability_half", "ihc_firing_gain",
                    "ihc_max_transmitter", "fibre_refractory_s", "bushy_tau_mem_s",
                    "bushy_tau_syn_s", "bushy_refractory_s", "bushy_weight"]
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float, np.integer, np.floating))
                                           and math.isfinite(v) and v > 0):
                raise ValueError(f"CochleaConfig.{name} must be a finite number > 0, got {v!r}")
        for name in ["bm_stiffness_offset", "ihc_loss_rate", "ihc_reuptake_rate",
                     "ihc_permeability_offset"]:
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float, np.integer, np.floating))
                                           and math.isfinite(v) and v >= 0):
                raise ValueError(f"CochleaConfig.{name} must be a finite number >= 0, got {v!r}")
        if self.ihc_loss_rate + self.ihc_reuptake_rate == 0:
            raise ValueError("CochleaConfig.ihc_loss_rate + ihc_reuptake_rate must be > 0 (the cleft "
                             "must drain for the hair cell to have a resting state)")
        n = self.fibres_per_cell
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 1000:
            raise ValueError(f"CochleaConfig.fibres_per_cell must be an integer in 1..1000, got {n!r}")

    def membrane_key(self) -> tuple:
        """The parameters the basilar membrane's transfer function depends on."""
        return (float(self.bm_length), float(self.bm_stiffness), float(self.bm_stiffness_offset),
                float(self.bm_stiffness_decay), float(self.bm_fluid_density),
                float(self.bm_damping), float(self.bm_channel_height), float(self.bm_mass))


_DEFAULT = CochleaConfig()


# =============================================================================== input checks
def _check_rate(sample_rate) -> int:
    ok = isinstance(sample_rate, (int, float, np.integer, np.floating)) and not isinstance(sample_rate, bool)
    if ok:
        f = float(sample_rate)
        ok = math.isfinite(f) and f == int(f) and MIN_SAMPLE_RATE <= f <= MAX_SAMPLE_RATE
    if not ok:
        raise ValueError(f"sample_rate must be a whole number of Hz in {MIN_SAMPLE_RATE}.."
                         f"{MAX_SAMPLE_RATE}, got {sample_rate!r}")
    return int(sample_rate)


def _check_channels(n_channels) -> int:
    if isinstance(n_channels, bool) or not isinstance(n_channels, (int, np.integer)) \
            or not 1 <= int(n_channels) <= MAX_CHANNELS:
        raise ValueError(f"n_channels must be an integer in 1..{MAX_CHANNELS}, got {n_channels!r}")
    return int(n_channels)


def _check_samples(samples) -> np.ndarray:
    x = np.asarray(samples)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"samples must be real numbers (a float or integer PCM array), got dtype {x.dtype}")
    if x.ndim != 1:
        raise ValueError(f"samples must be a one-dimensional (mono) array, got shape {x.shape}")
    if x.size < 2:
        raise ValueError(f"samples must hold at least 2 samples (one per ramp of the window), got {x.size}")
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"samples must be finite; samples[{i}] = {x[i]}")
    return x


def _config(config) -> CochleaConfig:
    if config is None:
        return _DEFAULT
    if not isinstance(config, CochleaConfig):
        raise TypeError(f"config must be a CochleaConfig or None, got {type(config).__name__}")
    return config


def membrane_rate(sample_rate) -> int:
    """Sample rate (Hz) of everything after the basilar membrane: ``sample_rate // 2`` (Lauscher's
    integer halving, e.g. 11025 for 22050 Hz audio)."""
    return _check_rate(sample_rate) // 2


# =============================================================================== conditioning
def _ramp_window(n: int) -> np.ndarray:
    """Lauscher's window: a rising half-Hann over the first n // 2 samples, the mirrored falling
    half over the last n // 2, and 1 for the middle sample of an odd length."""
    half = n // 2
    hann = np.hanning(2 * half)
    if n % 2 == 0:
        return hann
    return np.concatenate([hann[:half], [1.0], hann[half:]])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2)))


def normalise_and_ramp(samples, config: CochleaConfig | None = None) -> np.ndarray:
    """Scale ``samples`` to RMS ``config.rms_level`` and apply the ramps: a float64 copy.

    ``y = x * (level / rms(x)) * w`` with ``w`` :func:`_ramp_window` (each ramp spans half the
    signal, so the whole signal is one Hann window). Raises ValueError for silent input (RMS 0).
    """
    cfg = _config(config)
    x = _check_samples(samples)
    rms = _rms(x)
    if rms == 0.0:
        raise ValueError("samples are silent (RMS 0): nothing to normalise")
    if not math.isfinite(rms):
        raise ValueError("samples are too large to normalise (their RMS overflows float64)")
    y = x * (cfg.rms_level / rms)
    return y * _ramp_window(len(y))


# =============================================================================== membrane model
# Transfer function, per place x and angular frequency w (see the module docstring):
#   xi(w,x) = c0 e^{-alpha x} - a - m w^2 - i w r0 e^{-alpha x/2}
#   k(w,x)  = w sqrt(rho / (h xi))
#   W(w,x)  = -sqrt(xi) + i q - w r0 e^{-alpha x/2} / (2 q),   q = sqrt(a + m w^2)
#   G(w,x)  = 2 k(w,0)/alpha - i (2 sqrt2 w / (alpha sqrt(2 h q^2))) log(W(w,0) / (e^{alpha x/2} W(w,x)))
#   P(w,x)  = sqrt(G / k) H0^(1)(G)
#   Z(w)    = sqrt(2 c0 / h) (i J0(u) + Y0(u)) / (J1(u) - i Y1(u)),  u = (2w/alpha) sqrt(2/(h c0))
#   V(w,x)  = 2 w P(w,x) Z(w) / (xi(w,x) P(w,0))

def _frequency_grid(n_samples: int, sample_rate: int) -> np.ndarray:
    """Angular frequencies of the n//2 + 1 one-sided bins as Lauscher lays them out: a linear
    grid from 1 Hz to sample_rate // 2 Hz (not the DFT's k * rate / n)."""
    return 2 * np.pi * np.linspace(1, sample_rate // 2, n_samples // 2 + 1)


def _places(n_channels: int, cfg: CochleaConfig) -> np.ndarray:
    return np.linspace(0, cfg.bm_length, n_channels)


def _frequency_terms(om: np.ndarray, cfg: CochleaConfig):
    """Everything of the transfer function that depends on the frequency only."""
    c0, a, alpha = cfg.bm_stiffness, cfg.bm_stiffness_offset, cfg.bm_stiffness_decay
    rho, h, m = cfg.bm_fluid_density, cfg.bm_channel_height, cfg.bm_mass
    r0 = cfg.bm_damping * np.sqrt(c0 * m)
    mw2 = m * om ** 2
    q = np.sqrt(a + mw2)
    xi0 = ((c0 - a) - mw2) - 1j * om * r0
    k0 = om * np.sqrt(rho / (h * xi0))
    w0 = -np.sqrt(xi0) + 1j * q - om * r0 / (2 * q)
    g_base = 2 * k0 / alpha
    coef = 2 * np.sqrt(2) * om / (alpha * np.sqrt(2 * h * q * q))
    p_base = np.sqrt(g_base / k0) * special.hankel1(0, g_base)
    u = (2 * om / alpha) * np.sqrt(2 / (h * c0))
    z = np.sqrt(2 * c0 / h) * (1j * special.j0(u) + special.y0(u)) / (special.j1(u) - 1j * special.y1(u))
    amp = 2 * om * z / p_base
    return mw2, q, w0, g_base, coef, amp, r0


def membrane_transfer_reference(n_samples: int, sample_rate: int, n_channels: int,
                                config: CochleaConfig | None = None) -> np.ndarray:
    """Plain numpy / scipy evaluation of V(w, x): complex [n_channels, n_samples // 2 + 1]."""
    cfg = _config(config)
    om = _frequency_grid(n_samples, sample_rate)
    mw2, q, w0, g_base, coef, amp, r0 = _frequency_terms(om, cfg)
    c0, a, alpha = cfg.bm_stiffness, cfg.bm_stiffness_offset, cfg.bm_stiffness_decay
    rho_h = cfg.bm_fluid_density / cfg.bm_channel_height
    out = np.empty((n_channels, om.size), dtype=np.complex128)
    for i, x in enumerate(_places(n_channels, cfg)):
        dec = np.exp(-alpha * x / 2)
        xi = ((c0 * np.exp(-alpha * x) - a) - mw2) - 1j * om * (r0 * dec)
        k = om * np.sqrt(rho_h / xi)
        w = -np.sqrt(xi) + 1j * q - om * (r0 * dec) / (2 * q)
        g = g_base - 1j * coef * np.log(w0 * dec / w)
        out[i] = amp / xi * np.sqrt(g / k) * special.hankel1(0, g)
    return out


def _hankel_coefficients(n: int = 48) -> np.ndarray:
    """Coefficients of H0^(1)(z) ~ sqrt(2/(pi z)) e^{i(z - pi/4)} sum_k c_k (i/z)^k (DLMF 10.17.5,
    nu = 0): c_k = c_{k-1} * (-(2k-1)^2) / (8k)."""
    c = np.empty(n + 1)
    c[0] = 1.0
    for k in range(1, n + 1):
        c[k] = c[k - 1] * (-(2 * k - 1) ** 2) / (8.0 * k)
    return c


_HANKEL_C = _hankel_coefficients()


@numba.njit(cache=True)
def _hankel0_asymptotic(z, coeffs):
    """H0^(1)(z) from its large-argument series, for |z| >= 20 and 0 <= arg z < pi/2 (relative
    error ~3e-15 there: the terms fall below 1e-17 of the sum well before they start growing)."""
    w = 1j / z
    aw = abs(w)
    n = 1
    t = abs(coeffs[1]) * aw
    last = coeffs.shape[0] - 1
    while t > 1e-17 and n < last:
        n += 1
        t *= (2 * n - 1) ** 2 / (8.0 * n) * aw
    s = coeffs[n] + 0j
    for k in range(n - 1, -1, -1):
        s = s * w + coeffs[k]
    return cmath.sqrt(2.0 / (math.pi * z)) * cmath.exp(1j * (z - math.pi / 4)) * s


@numba.njit(cache=True)
def _transfer_rows(om, mw2, q, w0, g_base, coef, amp, places, c0, a, alpha, r0, rho_h, coeffs,
                   big, out, g_small, small):
    """V for a block of places; where |G| < big, ``out`` holds V / H0(G) and ``small``/``g_small``
    mark the element and its G for scipy's Hankel function."""
    for i in range(places.shape[0]):
        x = places[i]
        dec = math.exp(-alpha * x / 2)
        stiff = c0 * math.exp(-alpha * x) - a
        rx = r0 * dec
        for k in range(om.shape[0]):
            w_ = om[k]
            xi = complex((stiff - mw2[k]), -w_ * rx)
            sxi = cmath.sqrt(xi)
            kx = w_ * cmath.sqrt(rho_h / xi)
            wx = complex(-sxi.real - w_ * rx / (2 * q[k]), -sxi.imag + q[k])
            lg = cmath.log(w0[k] * dec / wx)
            g = complex(g_base[k].real + coef[k] * lg.imag, g_base[k].imag - coef[k] * lg.real)
            pre = amp[k] / xi * cmath.sqrt(g / kx)
            if abs(g) >= big and g.imag >= 0.0 and g.real > 0.0:
                out[i, k] = pre * _hankel0_asymptotic(g, coeffs)
                small[i, k] = False
            else:
                out[i, k] = pre
                g_small[i, k] = g
                small[i, k] = True


def _compute_transfer(n_samples: int, sample_rate: int, n_channels: int, cfg: CochleaConfig) -> np.ndarray:
    om = _frequency_grid(n_samples, sample_rate)
    mw2, q, w0, g_base, coef, amp, r0 = _frequency_terms(om, cfg)
    places = _places(n_channels, cfg)
    out = np.empty((n_channels, om.size), dtype=np.complex128)
    rho_h = cfg.bm_fluid_density / cfg.bm_channel_height
    block = max(1, min(n_channels, (1 << 21) // max(1, om.size)))
    g_small = np.empty((block, om.size), dtype=np.complex128)
    small = np.empty((block, om.size), dtype=np.bool_)
    for s in range(0, n_channels, block):
        e = min(n_channels, s + block)
        rows = out[s:e]
        _transfer_rows(om, mw2, q, w0, g_base, coef, amp, places[s:e], float(cfg.bm_stiffness),
                       float(cfg.bm_stiffness_offset), float(cfg.bm_stiffness_decay), float(r0),
                       float(rho_h), _HANKEL_C, _HANKEL_ASYMPTOTIC_FROM, rows, g_small, small)
        sm = small[:e - s]
        if sm.any():
            rows[sm] *= special.hankel1(0, g_small[:e - s][sm])
    return out


class _TransferCache:
    """Transfer functions by (length, rate, channels, membrane parameters), most recent first,
    kept while they total at most :data:`TRANSFER_CACHE_BYTES` (thread-safe)."""

    def __init__(self):
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0

    def get(self, n_samples, sample_rate, n_channels, cfg):
        key = (n_samples, sample_rate, n_channels, cfg.membrane_key())
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        value = _compute_transfer(n_samples, sample_rate, n_channels, cfg)
        value.setflags(write=False)
        with self._lock:
            self.computed += 1
            self._items[key] = value
            self._items.move_to_end(key)
            total = sum(v.nbytes for v in self._items.values())
            while len(self._items) > 1 and total > TRANSFER_CACHE_BYTES:
                _, old = self._items.popitem(last=False)
                total -= old.nbytes
        return value

    def clear(self):
        with self._lock:
            self._items.clear()


_TRANSFER_CACHE = _TransferCache()


def clear_transfer_cache() -> None:
    """Forget every cached transfer function."""
    _TRANSFER_CACHE.clear()


def membrane_transfer(n_samples: int, sample_rate, n_channels: int = 700,
                      config: CochleaConfig | None = None) -> np.ndarray:
    """The membrane's transfer function V(w_k, x_i) for signals of ``n_samples`` samples at
    ``sample_rate``: complex128 [n_channels, n_samples // 2 + 1], read-only, cached."""
    cfg = _config(config)
    fs = _check_rate(sample_rate)
    n = _check_channels(n_channels)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    return _TRANSFER_CACHE.get(int(n_samples), fs, n, cfg)


# FFT lengths of the membrane output in fast mode: 2^k, 5 * 2^(k-2), 3 * 2^(k-1), 7 * 2^(k-2).
_SMOOTH_STEPS = (4, 5, 6, 7)


def padded_length(n_samples: int) -> int:
    """Length fast mode pads a signal of ``n_samples`` samples to (with zeros, after the ramps).

    The padded length is ``2 * (m - 1)``, where ``m`` (the membrane's transform length) is the
    smallest number of the form 2^k, 5 * 2^(k-2), 3 * 2^(k-1) or 7 * 2^(k-2) (four lengths per
    octave, each at most 25 % above the previous, all fast FFT sizes) that is at least 8 and
    makes ``2 * (m - 1) >= n_samples``. A padded length is its own padded length.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    need = max(8, int(n_samples) // 2 + 1)
    # n_samples odd: 2 * (m - 1) >= n_samples needs m >= n_samples // 2 + 2
    if n_samples % 2:
        need = max(need, int(n_samples) // 2 + 2)
    k = max(0, need.bit_length() - 3)
    while True:
        for step in _SMOOTH_STEPS:
            m = step << k
            if m >= need:
                return 2 * (m - 1)
        k += 1


@numba.njit(cache=True)
def _fold_rows(tf, spec, out):
    """out[b, k] = (Y[k] + conj(Y[m - k])) / 2 with Y = tf[b] * spec, k = 0..m//2: the half
    spectrum whose real inverse transform is Re(ifft(Y))."""
    m = tf.shape[1]
    for b in range(tf.shape[0]):
        out[b, 0] = (tf[b, 0] * spec[0]).real
        for k in range(1, m // 2 + 1):
            y1 = tf[b, k] * spec[k]
            y2 = tf[b, m - k] * spec[m - k]
            out[b, k] = 0.5 * (y1 + y2.conjugate())


def _membrane_rows(tf_rows: np.ndarray, spec: np.ndarray, n_keep: int, half: np.ndarray | None = None) -> np.ndarray:
    m = tf_rows.shape[1]
    if half is None or half.shape[0] < tf_rows.shape[0]:
        half = np.empty((tf_rows.shape[0], m // 2 + 1), dtype=np.complex128)
    half = half[:tf_rows.shape[0]]
    _fold_rows(tf_rows, spec, half)
    vel = scipy.fft.irfft(half, n=m, axis=1, workers=1)
    return vel[:, :n_keep]


def basilar_membrane(signal, sample_rate, n_channels: int = 700, *, config: CochleaConfig | None = None,
                     n_fft: int | None = None) -> np.ndarray:
    """Membrane velocity of a conditioned signal (:func:`normalise_and_ramp`'s output).

    Returns float64 [n_channels, len(signal) // 2 + 1] at :func:`membrane_rate` (sample_rate // 2):
    ``Re(IDFT_m(V(w_k, x_i) * S_k))`` with S the signal's one-sided spectrum (k = 0..m-1,
    m = n // 2 + 1) and V :func:`membrane_transfer` (cached). ``n_fft`` (>= len(signal)) pads the
    signal with zeros to that length first (fast mode uses :func:`padded_length`); the output
    is cut back to the unpadded length. ``n_fft=None``: no padding, Lauscher's result.
    """
    cfg = _config(config)
    fs = _check_rate(sample_rate)
    n_ch = _check_channels(n_channels)
    x = _check_samples(signal)
    n = x.size if n_fft is None else int(n_fft)
    if n < x.size:
        raise ValueError(f"n_fft must be >= len(signal) = {x.size}, got {n_fft}")
    tf = _TRANSFER_CACHE.get(n, fs, n_ch, cfg)
    spec = scipy.fft.rfft(x, n=n, workers=1)
    n_keep = x.size // 2 + 1
    out = np.empty((n_ch, n_keep))
    for s in range(0, n_ch, _BLOCK):
        out[s:s + _BLOCK] = _membrane_rows(tf[s:s + _BLOCK], spec, n_keep)
    return out


def basilar_membrane_reference(signal, sample_rate, n_channels: int = 700, *,
                               config: CochleaConfig | None = None) -> np.ndarray:
    """Plain path of :func:`basilar_membrane` (no padding): the transfer function from
    :func:`membrane_transfer_reference`, a complex FFT of the signal, and per channel the real
    part of a complex inverse FFT of length n // 2 + 1."""
    cfg = _config(config)
    fs = _check_rate(sample_rate)
    n_ch = _check_channels(n_channels)
    x = _check_samples(signal)
    m = x.size // 2 + 1
    tf = membrane_transfer_reference(x.size, fs, n_ch, cfg)
    spec = np.fft.fft(x)[:m]
    return np.stack([np.fft.ifft(tf[i] * spec).real for i in range(n_ch)])


# =============================================================================== hair cell
def _hair_constants(rate: int, cfg: CochleaConfig):
    """Per-sample rates and the resting state (permeability at zero stimulus) of the hair cell,
    at ``rate`` Hz (the membrane's rate)."""
    y, g, l_, r = cfg.ihc_replenish_rate, cfg.ihc_permeability_rate, cfg.ihc_loss_rate, cfg.ihc_reuptake_rate
    x, a, b = cfg.ihc_reprocess_rate, cfg.ihc_permeability_offset, cfg.ihc_permeability_half
    h, m = cfg.ihc_firing_gain, cfg.ihc_max_transmitter
    fs = float(rate)
    k_rest = g * a / (a + b)
    c_rest = m * y * k_rest / (l_ * k_rest + y * (l_ + r))
    q_rest = c_rest * (l_ + r) / k_rest if k_rest > 0 else m
    w_rest = c_rest * r / x
    steps = (a, b, g / fs, y * m / fs, y / fs, (l_ + r) / fs, r / fs, x / fs, h / fs, m)
    return steps, (q_rest, c_rest, w_rest)


@numba.njit(cache=True)
def _hair_rows(vel, out, a, b, gdt, ymdt, ydt, lrdt, rdt, xdt, hdt, m, q0, c0, w0):
    for i in range(vel.shape[0]):
        q = q0
        c = c0
        w = w0
        for j in range(vel.shape[1]):
            s = vel[i, j] + a
            kt = gdt * s / (s + b) if s > 0.0 else 0.0
            refill = ymdt - ydt * q if q < m else 0.0
            release = kt * q
            cleft_out = lrdt * c
            back = rdt * c
            reprocessed = xdt * w
            q = max(q + refill - release + reprocessed, 0.0)
            c = max(c + release - cleft_out, 0.0)
            w = max(w + back - reprocessed, 0.0)
            out[i, j] = c * hdt


def hair_cell(velocity, rate, *, config: CochleaConfig | None = None) -> np.ndarray:
    """Firing probability per sample of each channel's hair cell: float64 like ``velocity``
    ([channels, samples] or [samples]), at ``rate`` Hz (the membrane's rate, sample_rate // 2)."""
    cfg = _config(config)
    v = np.asarray(velocity, dtype=np.float64)
    one = v.ndim == 1
    v2 = np.ascontiguousarray(v[None] if one else v)
    if v2.ndim != 2:
        raise ValueError(f"velocity must be [channels, samples] or [samples], got shape {v.shape}")
    if not np.isfinite(v2).all():
        raise ValueError("velocity must be finite")
    rate = _check_positive_int(rate, "rate")
    steps, rest = _hair_constants(rate, cfg)
    out = np.empty_like(v2)
    _hair_rows(v2, out, *steps, *rest)
    return out[0] if one else out


def hair_cell_reference(velocity, rate, *, config: CochleaConfig | None = None) -> np.ndarray:
    """Plain Python loop of :func:`hair_cell` (same operations, same order: equal bit for bit)."""
    cfg = _config(config)
    v = np.atleast_2d(np.asarray(velocity, dtype=np.float64))
    (a, b, gdt, ymdt, ydt, lrdt, rdt, xdt, hdt, m), (q0, c0, w0) = _hair_constants(int(rate), cfg)
    out = np.empty_like(v)
    for i, row in enumerate(v):
        q, c, w = q0, c0, w0
        for j, s in enumerate(row.tolist()):
            s = s + a
            kt = gdt * s / (s + b) if s > 0.0 else 0.0
            refill = ymdt - ydt * q if q < m else 0.0
            release, reprocessed = kt * q, xdt * w
            q, c, w = (max(q + refill - release + reprocessed, 0.0),
                       max(c + release - lrdt * c, 0.0),
                       max(w + rdt * c - reprocessed, 0.0))
            out[i, j] = c * hdt
    return out.reshape(np.shape(velocity)) if np.ndim(velocity) == 1 else out


def _check_positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(v)) or float(v) != int(v) or int(v) < 1:
        raise ValueError(f"{name} must be a positive whole number of Hz, got {v!r}")
    return int(v)


# =============================================================================== bushy-cell constants
def _bushy_constants(rate: int, cfg: CochleaConfig):
    """(fibre dead time in samples (float), bushy refractory in samples (float), membrane decay,
    synaptic decay, weight per fibre, dt) at ``rate`` Hz, computed as Lauscher does."""
    dt = 1 / float(rate)
    return (cfg.fibre_refractory_s * rate, cfg.bushy_refractory_s * rate,
            float(np.exp(-dt / cfg.bushy_tau_mem_s)), float(np.exp(-dt / cfg.bushy_tau_syn_s)),
            cfg.bushy_weight / float(cfg.fibres_per_cell), dt)


# =============================================================================== exact mode: MT19937
@numba.njit(cache=True)
def _mt_regenerate(key):
    """One MT19937 state transition (624 new words) in place."""
    upper = 0x80000000
    lower = 0x7FFFFFFF
    magic = 0x9908B0DF
    for i in range(227):
        y = (np.int64(key[i]) & upper) | (np.int64(key[i + 1]) & lower)
        v = np.int64(key[i + 397]) ^ (y >> 1)
        if y & 1:
            v ^= magic
        key[i] = v
    for i in range(227, 623):
        y = (np.int64(key[i]) & upper) | (np.int64(key[i + 1]) & lower)
        v = np.int64(key[i - 227]) ^ (y >> 1)
        if y & 1:
            v ^= magic
        key[i] = v
    y = (np.int64(key[623]) & upper) | (np.int64(key[0]) & lower)
    v = np.int64(key[396]) ^ (y >> 1)
    if y & 1:
        v ^= magic
    key[623] = v


@numba.njit(cache=True, inline="always")
def _mt_temper(y):
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y


@numba.njit(cache=True, inline="always")
def _mt_uniform(key, pos):
    """One double of numpy's legacy ``random_sample`` from state (key, pos): ``(u, new pos)``
    (two 32-bit outputs, 27 + 26 bits, as numpy combines them)."""
    if pos >= 624:
        _mt_regenerate(key)
        pos = 0
    hi = _mt_temper(np.int64(key[pos])) >> 5
    pos += 1
    if pos >= 624:
        _mt_regenerate(key)
        pos = 0
    lo = _mt_temper(np.int64(key[pos])) >> 6
    pos += 1
    return (hi * 67108864.0 + lo) / 9007199254740992.0, pos


@numba.njit(cache=True)
def _mt_uniforms(key, pos, n, out):
    """n doubles of numpy's legacy ``random_sample`` from state (key, pos); returns the new pos."""
    for i in range(n):
        out[i], pos = _mt_uniform(key, pos)
    return pos


@numba.njit(cache=True, inline="always")
def _np_sum_block(a, start, n):
    """numpy's sum of a[start:start+n] for n <= 128: eight running partial sums (sequential
    below 8 elements), combined pairwise, then the remainder added one by one."""
    if n < 8:
        s = 0.0
        for i in range(start, start + n):
            s += a[i]
        return s
    r0 = a[start]
    r1 = a[start + 1]
    r2 = a[start + 2]
    r3 = a[start + 3]
    r4 = a[start + 4]
    r5 = a[start + 5]
    r6 = a[start + 6]
    r7 = a[start + 7]
    full = n - n % 8
    i = 8
    while i < full:
        r0 += a[start + i]
        r1 += a[start + i + 1]
        r2 += a[start + i + 2]
        r3 += a[start + i + 3]
        r4 += a[start + i + 4]
        r5 += a[start + i + 5]
        r6 += a[start + i + 6]
        r7 += a[start + i + 7]
        i += 8
    s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        s += a[start + i]
        i += 1
    return s


@numba.njit(cache=True)
def _np_sum(a, n):
    """Sum of the contiguous float64 vector a[:n] in numpy's order: blocks of at most 128 as in
    :func:`_np_sum_block`, longer runs halved (first half a multiple of 8) and the halves added.
    Written with an explicit stack (Numba's cache does not take recursive functions)."""
    if n <= 128:
        return _np_sum_block(a, 0, n)
    depth = 64
    st_start = np.empty(depth, dtype=np.int64)
    st_n = np.empty(depth, dtype=np.int64)
    st_stage = np.empty(depth, dtype=np.int64)
    st_left = np.empty(depth)
    top = 0
    st_start[0] = 0
    st_n[0] = n
    st_stage[0] = 0
    value = 0.0
    while top >= 0:
        ln = st_n[top]
        if ln <= 128 or st_stage[top] == 2:
            if ln <= 128:
                value = _np_sum_block(a, st_start[top], ln)
            else:
                value = st_left[top] + value
            top -= 1
            if top >= 0:
                if st_stage[top] == 1:          # the left half just finished
                    st_left[top] = value
                    st_stage[top] = 2
                    h = st_n[top] // 2
                    h -= h % 8
                    top += 1
                    st_start[top] = st_start[top - 1] + h
                    st_n[top] = st_n[top - 1] - h
                    st_stage[top] = 0
            continue
        # stage 0: descend into the left half
        st_stage[top] = 1
        h = ln // 2
        h -= h % 8
        top += 1
        st_start[top] = st_start[top - 1]
        st_n[top] = h
        st_stage[top] = 0
    return value


@numba.njit(cache=True)
def _exact_rows(prob, key, pos, n_fib, fib_dead, lif_dead, d_mem, d_syn, weight, dt,
                spikes, n_spikes, record, fib_t, fib_c, fib_f, row0):
    """Lauscher's fibres and bushy cells, channel after channel, drawing the same uniforms in the
    same order (per channel: samples x fibres, row-major). ``spikes[i, :n_spikes[i]]`` get the
    sample indices of channel i's bushy spikes. With ``record``, fibre spikes go to fib_* and
    the count is returned as the second value. Returns (pos, n_fibre_spikes)."""
    last = np.empty(n_fib)
    isyn = np.empty(n_fib)
    n_rec = 0
    for i in range(prob.shape[0]):
        last[:] = -fib_dead
        isyn[:] = 0.0
        vm = 0.0
        refrac = 0.0
        ns = 0
        for j in range(prob.shape[1]):
            pj = prob[i, j]
            if j > 0:
                if refrac <= 0.0:
                    if vm < 1.0:
                        vm = vm * d_mem
                    else:
                        refrac = lif_dead
                        vm = 0.0
                        spikes[i, ns] = j - 1
                        ns += 1
                else:
                    vm = 0.0
                for f in range(n_fib):
                    isyn[f] = isyn[f] * d_syn
            for f in range(n_fib):
                u, pos = _mt_uniform(key, pos)
                if u < pj and not (j - last[f] < fib_dead):
                    last[f] = j
                    isyn[f] += 1.0
                    if record:
                        fib_t[n_rec] = j
                        fib_c[n_rec] = row0 + i
                        fib_f[n_rec] = f
                        n_rec += 1
            if refrac <= 0.0:
                vm += _np_sum(isyn, n_fib) * weight * dt
            if vm > 1.0:
                vm = 1.0
            refrac -= 1.0
        n_spikes[i] = ns
    return pos, n_rec


# =============================================================================== fast mode
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_S30, _S27, _S31, _S17, _S45, _S11, _S7 = (_U64(v) for v in (30, 27, 31, 17, 45, 11, 7))
_S64_45, _S64_7 = _U64(64 - 45), _U64(64 - 7)
_FIVE, _NINE = _U64(5), _U64(9)
_TWO_M53 = 2.0 ** -53
_RESCALE_BELOW = 2.0 ** -500
_RESCALE_BY = 2.0 ** 500


@numba.njit(cache=True, inline="always")
def _splitmix(x):
    x = x + _GOLDEN
    z = x
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return x, z ^ (z >> _S31)


@numba.njit(cache=True)
def _stream_init(seed, channel, st):
    """xoshiro256** state of ``channel``'s stream: four splitmix64 outputs from
    seed + golden * (channel + 1)."""
    x = _U64(seed) + _GOLDEN * _U64(channel + 1)
    for i in range(4):
        x, z = _splitmix(x)
        st[i] = z


@numba.njit(cache=True, inline="always")
def _uniform_open0(st):
    """A uniform double in (0, 1] from xoshiro256** (53 bits)."""
    s0 = st[0]
    s1 = st[1]
    s2 = st[2]
    s3 = st[3]
    x = s1 * _FIVE
    r = ((x << _S7) | (x >> _S64_7)) * _NINE
    t = s1 << _S17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _S45) | (s3 >> _S64_45)
    st[0] = s0
    st[1] = s1
    st[2] = s2
    st[3] = s3
    return (float(r >> _S11) + 1.0) * _TWO_M53


@numba.njit(cache=True)
def _fast_rows(prob, seed, row0, n_fib, fib_dead, lif_dead, d_mem, d_syn, weight, dt,
               spikes, n_spikes, record, fib_t, fib_c, fib_f):
    """Fibres by survival thresholds, bushy cells as in Lauscher (see the module docstring).

    Channel i uses the random stream (seed, row0 + i). ``spikes[i, :n_spikes[i]]`` get the
    sample indices of channel i's bushy spikes. With ``record``, fibre spikes go to fib_*;
    returns their number."""
    st = np.empty(4, dtype=np.uint64)
    dead = max(1, int(math.ceil(fib_dead)))      # a fibre firing at j is available from j + dead
    thr = np.empty(n_fib)                        # thresholds of the available fibres, ascending
    ids = np.empty(n_fib, dtype=np.int64)        # their fibre numbers (kept when recording)
    back = np.zeros(dead, dtype=np.int64)        # back[j % dead]: fibres available again at j
    back_ids = np.empty((dead, n_fib), dtype=np.int64) if record else np.empty((1, 1), dtype=np.int64)
    n_rec = 0
    for i in range(prob.shape[0]):
        _stream_init(seed, row0 + i, st)
        surv = 1.0
        n_av = 0
        for f in range(n_fib):
            v = _uniform_open0(st)
            k = n_av
            while k > 0 and thr[k - 1] > v:
                thr[k] = thr[k - 1]
                ids[k] = ids[k - 1]
                k -= 1
            thr[k] = v
            ids[k] = f
            n_av += 1
        back[:] = 0
        slot = 0
        isyn = 0.0
        vm = 0.0
        refrac = 0.0
        ns = 0
        for j in range(prob.shape[1]):
            # fibres whose dead time ends now draw a threshold below the current survival
            for r in range(back[slot]):
                v = _uniform_open0(st) * surv
                k = n_av
                if record:
                    while k > 0 and thr[k - 1] > v:
                        thr[k] = thr[k - 1]
                        ids[k] = ids[k - 1]
                        k -= 1
                    ids[k] = back_ids[slot, r]
                else:
                    while k > 0 and thr[k - 1] > v:
                        thr[k] = thr[k - 1]
                        k -= 1
                thr[k] = v
                n_av += 1
            pj = prob[i, j]
            if pj >= 1.0:
                surv = 0.0
            elif pj > 0.0:
                surv *= 1.0 - pj
            count = 0
            while n_av > 0 and thr[n_av - 1] > surv:
                n_av -= 1
                if record:
                    back_ids[slot, count] = ids[n_av]
                    fib_t[n_rec] = j
                    fib_c[n_rec] = row0 + i
                    fib_f[n_rec] = ids[n_av]
                    n_rec += 1
                count += 1
            back[slot] = count                   # they return at j + dead: the same slot
            slot += 1
            if slot == dead:
                slot = 0
            if surv < _RESCALE_BELOW:
                if surv == 0.0:
                    surv = 1.0                   # every available fibre fired: start afresh
                else:
                    surv *= _RESCALE_BY
                    for k in range(n_av):
                        thr[k] *= _RESCALE_BY
            # bushy cell (Lauscher's update order, one summed synaptic current)
            if j > 0:
                if refrac <= 0.0:
                    if vm < 1.0:
                        vm = vm * d_mem
                    else:
                        refrac = lif_dead
                        vm = 0.0
                        spikes[i, ns] = j - 1
                        ns += 1
                else:
                    vm = 0.0
                isyn = isyn * d_syn
            isyn += count
            if refrac <= 0.0:
                vm += isyn * weight * dt
            if vm > 1.0:
                vm = 1.0
            refrac -= 1.0
        n_spikes[i] = ns
    return n_rec


# =============================================================================== random sources
def _legacy_state(rng):
    """The MT19937 state of a RandomState (None: numpy's global one) as (rng, key copy, pos)."""
    if rng is None:
        rng = np.random.mtrand._rand
    if not isinstance(rng, np.random.RandomState):
        raise TypeError("exact=True needs rng to be a numpy.random.RandomState (or None for numpy's "
                        f"global state, as after np.random.seed), got {type(rng).__name__}")
    state = rng.get_state(legacy=True)
    if state[0] != "MT19937":
        raise TypeError(f"exact=True needs an MT19937 RandomState, got {state[0]}")
    return rng, np.array(state[1], dtype=np.uint32), int(state[2]), state


def _store_legacy_state(rng, key, pos, old):
    rng.set_state((old[0], key, pos, old[3], old[4]))


def _fast_seed(rng) -> int:
    """A 64-bit seed for the fast mode's streams from ``rng`` (None: fresh entropy)."""
    if rng is None:
        rng = np.random.default_rng()
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2 ** 64, dtype=np.uint64))
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(0, 2 ** 63, dtype=np.int64)) * 2 + int(rng.randint(0, 2))
    raise TypeError(f"rng must be None, an int seed, a numpy Generator or RandomState, got {type(rng).__name__}")


# =============================================================================== spikes
class _SpikeSink:
    """Collects per-channel spike indices block by block, then sorts by (sample, channel)."""

    def __init__(self):
        self.idx: list[np.ndarray] = []
        self.unit: list[np.ndarray] = []

    def add(self, spikes, n_spikes, row0):
        for i in range(n_spikes.shape[0]):
            n = int(n_spikes[i])
            if n:
                self.idx.append(spikes[i, :n].copy())
                self.unit.append(np.full(n, row0 + i, dtype=np.int64))

    def result(self, rate: int):
        if not self.idx:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
        idx = np.concatenate(self.idx)
        unit = np.concatenate(self.unit)
        order = np.argsort(idx, kind="stable")   # channels were appended in order: ties by unit
        idx, unit = idx[order], unit[order]
        return idx.astype(np.float64) / rate, unit


def _check_prob(prob) -> np.ndarray:
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"prob must be [channels, samples] or [samples], got shape {np.shape(prob)}")
    if not np.isfinite(p).all():
        raise ValueError("prob must be finite")
    return np.ascontiguousarray(p)


class _Spiker:
    """Fibres + bushy cells over successive blocks of channels, exact or fast."""

    def __init__(self, rate: int, cfg: CochleaConfig, exact: bool, rng, n_samples: int, record: bool = False):
        self.rate = rate
        self.consts = _bushy_constants(rate, cfg)
        self.n_fib = int(cfg.fibres_per_cell)
        self.exact = exact
        self.record = record
        self.sink = _SpikeSink()
        self.spikes = np.empty((_BLOCK, n_samples), dtype=np.int64)
        self.n_spikes = np.empty(_BLOCK, dtype=np.int64)
        self.fib = [[], [], []]
        if exact:
            self.rng, self.key, self.pos, self.old = _legacy_state(rng)
        else:
            self.seed = np.uint64(_fast_seed(rng))

    def run(self, prob_rows: np.ndarray, row0: int):
        b, t = prob_rows.shape
        if self.spikes.shape[0] < b or self.spikes.shape[1] < t:
            self.spikes = np.empty((max(b, _BLOCK), t), dtype=np.int64)
            self.n_spikes = np.empty(max(b, _BLOCK), dtype=np.int64)
        # a fibre fires at most once per ceil(dead time) samples
        per_fibre = t // max(1, math.ceil(self.consts[0])) + 1
        cap = b * self.n_fib * per_fibre if self.record else 0
        ft, fc, ff = (np.empty(cap, dtype=np.int64) for _ in range(3))
        fib_dead, lif_dead, d_mem, d_syn, weight, dt = self.consts
        if self.exact:
            self.pos, n_rec = _exact_rows(prob_rows, self.key, self.pos, self.n_fib, fib_dead, lif_dead,
                                          d_mem, d_syn, weight, dt, self.spikes, self.n_spikes,
                                          self.record, ft, fc, ff, row0)
        else:
            n_rec = _fast_rows(prob_rows, self.seed, row0, self.n_fib, fib_dead, lif_dead, d_mem, d_syn,
                               weight, dt, self.spikes, self.n_spikes, self.record, ft, fc, ff)
        self.sink.add(self.spikes, self.n_spikes[:b], row0)
        if self.record:
            for lst, arr in zip(self.fib, (ft, fc, ff)):
                lst.append(arr[:n_rec])

    def skip(self, n_draws: int):
        """Advance the exact mode's generator by n_draws uniforms (unused)."""
        buf = np.empty(min(n_draws, 1 << 20))
        while n_draws > 0:
            k = min(n_draws, buf.size)
            self.pos = _mt_uniforms(self.key, self.pos, k, buf)
            n_draws -= k

    def finish(self):
        if self.exact:
            _store_legacy_state(self.rng, self.key, self.pos, self.old)
        return self.sink.result(self.rate)

    def fibres(self):
        if not self.fib[0]:
            return tuple(np.zeros(0, dtype=np.int64) for _ in range(3))
        t, c, f = (np.concatenate(x) for x in self.fib)
        order = np.lexsort((f, c, t))
        return t[order], c[order], f[order]


def bushy_cells(prob, rate, *, exact: bool = False, rng=None, config: CochleaConfig | None = None):
    """Spikes of the bushy cells driven by hair-cell firing probabilities ``prob`` ([channels,
    samples] at ``rate`` Hz, :func:`hair_cell`'s output): ``(times_s, units)`` as in
    :func:`wave_to_spikes`. ``exact`` / ``rng`` as there."""
    cfg = _config(config)
    rate = _check_positive_int(rate, "rate")
    p = _check_prob(prob)
    spiker = _Spiker(rate, cfg, exact, rng, p.shape[1])
    for s in range(0, p.shape[0], _BLOCK):
        spiker.run(p[s:s + _BLOCK], s)
    return spiker.finish()


def fibre_spikes(prob, rate, *, exact: bool = False, rng=None, config: CochleaConfig | None = None):
    """The auditory-nerve fibre spikes behind :func:`bushy_cells` (same draws, same arguments):
    ``(sample_index, channel, fibre)`` int64 arrays sorted by sample, channel, fibre. For tests
    and analysis. (Fast mode: fibre numbers follow the fibres through their dead times; which
    fibre gets which threshold is immaterial, the fibres being exchangeable.)"""
    cfg = _config(config)
    rate = _check_positive_int(rate, "rate")
    p = _check_prob(prob)
    spiker = _Spiker(rate, cfg, exact, rng, p.shape[1], record=True)
    for s in range(0, p.shape[0], _BLOCK):
        spiker.run(p[s:s + _BLOCK], s)
    spiker.finish()
    return spiker.fibres()


def bushy_cells_reference(prob, rate, *, rng=None, config: CochleaConfig | None = None):
    """Plain numpy / Python path of exact-mode :func:`bushy_cells`: per channel a
    ``rng.random_sample((samples, fibres))`` block compared with the probabilities, the fibres'
    dead time applied in a loop, then the bushy-cell LIF step by step with one current per fibre
    summed by ``np.sum``."""
    cfg = _config(config)
    if rng is None:
        rng = np.random.mtrand._rand
    p = np.atleast_2d(np.asarray(prob, dtype=np.float64))
    fib_dead, lif_dead, d_mem, d_syn, weight, dt = _bushy_constants(int(rate), cfg)
    n_fib = cfg.fibres_per_cell
    draws = [rng.random_sample((p.shape[1], n_fib)) < p[i][:, None] for i in range(p.shape[0])]
    idx, unit = [], []
    for i, fired in enumerate(draws):
        for f in range(n_fib):
            last = -fib_dead
            for j in np.flatnonzero(fired[:, f]).tolist():
                if j - last < fib_dead:
                    fired[j, f] = False
                else:
                    last = j
        isyn = np.zeros(n_fib)
        vm, refrac = 0.0, 0.0
        for j in range(p.shape[1]):
            if j > 0:
                if refrac <= 0:
                    if vm < 1.0:
                        vm = vm * d_mem
                    else:
                        refrac, vm = lif_dead, 0.0
                        idx.append(j - 1)
                        unit.append(i)
                else:
                    vm = 0.0
                isyn = isyn * d_syn
            isyn = isyn + fired[j]
            if refrac <= 0:
                vm += np.sum(isyn) * weight * dt
            vm = min(vm, 1.0)
            refrac -= 1
    idx = np.asarray(idx, dtype=np.int64)
    unit = np.asarray(unit, dtype=np.int64)
    order = np.lexsort((unit, idx))
    return idx[order].astype(np.float64) / int(rate), unit[order]


def fast_bushy_cells_reference(prob, rate, *, seed: int, config: CochleaConfig | None = None):
    """Plain Python path of fast-mode :func:`bushy_cells` with the 64-bit stream seed ``seed``
    (what the fast mode draws from its rng): the same streams, thresholds and LIF, written with
    Python integers, a sorted list of thresholds and a queue. Returns ``(times_s, units)``."""
    cfg = _config(config)
    p = np.atleast_2d(np.asarray(prob, dtype=np.float64))
    fib_dead, lif_dead, d_mem, d_syn, weight, dt = _bushy_constants(int(rate), cfg)
    n_fib = cfg.fibres_per_cell
    mask = (1 << 64) - 1
    dead = max(1, math.ceil(fib_dead))

    def stream(channel):
        x = (seed + 0x9E3779B97F4A7C15 * (channel + 1)) & mask
        st = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & mask
            z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            st.append(z ^ (z >> 31))
        while True:
            s0, s1, s2, s3 = st
            x = (s1 * 5) & mask
            r = ((((x << 7) | (x >> 57)) & mask) * 9) & mask
            t = (s1 << 17) & mask
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 45) | (s3 >> 19)) & mask
            st = [s0, s1, s2, s3]
            yield ((r >> 11) + 1) * 2.0 ** -53

    idx, unit = [], []
    for i in range(p.shape[0]):
        draw = stream(i)
        surv = 1.0
        ready = [next(draw) for _ in range(n_fib)]    # thresholds of the available fibres
        waiting = []                                  # sample at which each dead fibre returns
        isyn, vm, refrac = 0.0, 0.0, 0.0
        for j, pj in enumerate(p[i].tolist()):
            while waiting and waiting[0] == j:
                waiting.pop(0)
                ready.append(next(draw) * surv)
            surv = 0.0 if pj >= 1.0 else (surv * (1.0 - pj) if pj > 0.0 else surv)
            fired = [th for th in ready if th > surv]
            ready = [th for th in ready if th <= surv]
            waiting += [j + dead] * len(fired)
            if surv == 0.0:
                surv = 1.0
            elif surv < 2.0 ** -500:
                surv *= 2.0 ** 500
                ready = [th * 2.0 ** 500 for th in ready]
            if j > 0:
                if refrac <= 0:
                    if vm < 1.0:
                        vm = vm * d_mem
                    else:
                        refrac, vm = lif_dead, 0.0
                        idx.append(j - 1)
                        unit.append(i)
                else:
                    vm = 0.0
                isyn = isyn * d_syn
            isyn += len(fired)
            if refrac <= 0:
                vm += isyn * weight * dt
            vm = min(vm, 1.0)
            refrac -= 1
    idx = np.asarray(idx, dtype=np.int64)
    unit = np.asarray(unit, dtype=np.int64)
    order = np.lexsort((unit, idx))
    return idx[order].astype(np.float64) / int(rate), unit[order]


# =============================================================================== the chain
def wave_to_spikes(samples, sample_rate, n_channels: int = 700, *, exact: bool = False, rng=None,
                   config: CochleaConfig | None = None, pad: bool | None = None):
    """Spikes of ``n_channels`` bushy cells for a mono waveform: Lauscher's cochlea chain.

    Parameters
    ----------
    samples : 1-D array of real numbers (float or integer PCM; the scale is irrelevant, the RMS
        is normalised), at least 2 samples, all finite.
    sample_rate : whole number of Hz in ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` (8 kHz .. 192 kHz).
    n_channels : 1 .. ``MAX_CHANNELS`` places along the membrane (700 for SHD).
    exact : False (default): the fast mode, True: Lauscher's own draws (see the module docstring).
    rng : exact mode: a ``numpy.random.RandomState`` (MT19937), or None for numpy's global state,
        so that ``np.random.seed(s)`` before the call gives what ``Wave2Spike`` gives after the
        same seed; the state is advanced exactly as Lauscher advances it. Fast mode: None (fresh
        entropy), an int seed, a ``numpy.random.Generator`` or a ``RandomState``; one 64-bit
        seed is drawn from it per call.
    config : :class:`CochleaConfig` (None: Lauscher's parameters).
    pad : zero-pad the conditioned signal to :func:`padded_length` before the membrane (so that
        utterances share cached transfer functions). None: pad in fast mode only. Exact mode
        never pads (``pad=True`` with ``exact=True`` is an error).

    Returns
    -------
    ``(times_s, units)``: float64 seconds and int64 channel numbers 0..n_channels-1 of every
    bushy-cell spike, sorted by time, ties (spikes of several channels in the same sample) by
    unit. Each time is ``t / (sample_rate // 2)`` for the spike's sample index t at the
    membrane's rate (Lauscher's float64 division), so times are exact multiples of that step;
    ``times_s < (len(samples) // 2 + 1) / (sample_rate // 2)``.

    Silent audio (every sample 0, or so quiet that its RMS underflows to 0) has no defined
    normalisation: a :class:`SilentAudioWarning` is issued and empty arrays are returned (what
    Lauscher's NaN-filled chain also ends in), leaving the decision to the caller (turn the
    warning into an error with ``warnings.simplefilter("error", SilentAudioWarning)``). In
    exact mode the random state is still advanced by the draws Lauscher would make, so later
    utterances of a seeded run keep matching it.

    Raises ValueError naming the argument for: fewer than 2 samples, a non-finite sample,
    a non-1-D / non-real array, a sample rate or channel count outside its range; TypeError
    for a wrong ``rng`` / ``config`` type.
    """
    cfg = _config(config)
    fs = _check_rate(sample_rate)
    n_ch = _check_channels(n_channels)
    x = _check_samples(samples)
    if pad is None:
        pad = not exact
    if exact and pad:
        raise ValueError("pad=True cannot be combined with exact=True: Lauscher transforms the "
                         "signal at its own length")
    rate = fs // 2
    n_keep = x.size // 2 + 1
    if _rms(x) == 0.0:
        warnings.warn("wave_to_spikes: the audio is silent (all zeros, or too quiet for its RMS to be "
                      "normalised); returning no spikes", SilentAudioWarning, stacklevel=2)
        if exact:
            spiker = _Spiker(rate, cfg, True, rng, 1)
            spiker.skip(n_ch * n_keep * int(cfg.fibres_per_cell))
            spiker.finish()
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    sig = normalise_and_ramp(x, cfg)
    n_fft = padded_length(x.size) if pad else x.size
    tf = _TRANSFER_CACHE.get(n_fft, fs, n_ch, cfg)
    spec = scipy.fft.rfft(sig, n=n_fft, workers=1)
    steps, rest = _hair_constants(rate, cfg)
    spiker = _Spiker(rate, cfg, exact, rng, n_keep)
    half = np.empty((_BLOCK, tf.shape[1] // 2 + 1), dtype=np.complex128)
    prob = np.empty((_BLOCK, n_keep))
    for s in range(0, n_ch, _BLOCK):
        e = min(n_ch, s + _BLOCK)
        vel = _membrane_rows(tf[s:e], spec, n_keep, half)
        p = prob[:e - s]
        _hair_rows(vel, p, *steps, *rest)
        spiker.run(p, s)
    return spiker.finish()
