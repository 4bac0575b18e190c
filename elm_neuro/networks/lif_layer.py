"""The layers of the recurrent spiking networks: LIF / adLIF populations and the leaky readout.

:class:`LIFLayer`. ``v = [x_t ; s_{t-1}]`` (length ``n_in + N``), connectome ``C`` ``[N, K]``;
a neuron sums its ``K`` weighted synapses into one current (current-based synapses, no
dendritic branches: one synapse group of ``K``, :mod:`elm_neuro.networks.synapses`)::

    I_t[n] = sum_k w_eff[n, k] * v[C[n, k]]

and runs :func:`elm_neuro.neurons.lif.lif_step`. Synapse weights are signed (``dale=False``) or,
with Dale's law (``dale=True``), ``w_eff = relu(w) * sign(source)``: every neuron of the layer is
excitatory (+1) or inhibitory (-1), exactly ``round(frac_inhibitory * N)`` of them inhibitory;
external input channels are excitatory afferents (+1) unless ``input_sign`` says otherwise.

Synapse kernels (``synapse_impl``; identical results): ``dense`` scatters the K weights of every
neuron into ``[n_in, N]`` and ``[N, N]`` maps (duplicate synapses add up): one product for the
input part of all steps (for sparse spike inputs on the CPU a row of the map per input event, the
input dropout mask applied per event: :func:`~elm_neuro.networks.engines.projection.project`,
the same on both engines), one small matmul per step for the recurrent part; ``gather`` uses
``embedding_bag`` (bags of K synapses per neuron), memory ``O(N K)``; ``auto`` picks ``dense``
up to ``DENSE_MAX_ELEMENTS`` map entries. ``forward_reference`` is the plain path (loops over
time and neurons, explicit indexing, the equations written out again); tests check the fast
paths against it in outputs and gradients.

:class:`LeakyReadout`: ``C`` non-spiking leaky integrators, each with K synapses on the hidden
spikes of the same step (rho 0) and a bias.

Engines (``cfg.engine``, as the ELM layer): :meth:`LIFLayer.forward_step` steps through time with
one :func:`~elm_neuro.neurons.lif.lif_step` per step (the reference);
:meth:`LIFLayer.forward_fused` runs the whole sequence in the fused engine
(:mod:`elm_neuro.networks.engines.lif_sequence`: Numba on the CPU, Triton on CUDA);
:meth:`LIFLayer.forward` takes the fused engine wherever it covers the layer (``auto``; every
option of the configuration in float32 / float64; ``record=True`` steps; on CUDA a Triton backend
that cannot be imported or fails its first-use check makes the layer step,
:class:`~elm_neuro.networks.engine_choice.EngineChoice`). The leaky readout's
filter runs as one Function (:func:`~elm_neuro.networks.engines.leaky_scan.leaky_scan`) unless
``engine = "step"``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from elm_neuro.networks import synapses as S
from elm_neuro.networks.common import check_input, dropout_masks, leaky_integrate, state_to
from elm_neuro.networks.elm_config import SYNAPSE_IMPLS
from elm_neuro.networks.checks import check_choice
from elm_neuro.networks.engine_choice import EngineChoice
from elm_neuro.networks.engines import lif_contract as C
from elm_neuro.networks.engines import lif_sequence as Q
from elm_neuro.networks.engines.leaky_scan import leaky_scan
from elm_neuro.networks.engines.projection import project
from elm_neuro.networks.lif_config import LIFLayerConfig
from elm_neuro.neurons import lif as L
from elm_neuro.neurons.elm import decay, tau_bounds, tau_to_theta, theta_to_tau
from elm_neuro.wiring.connectome import make_connectome


def _feedforward_currents(x: torch.Tensor, connectome: torch.Tensor, w_eff: torch.Tensor, n_in: int, impl: str,
                          mask: Optional[torch.Tensor] = None):
    """``[B, T, N]`` currents from the ``n_in`` input sources, for all steps at once; ``mask``
    ``[B, n_in]``: the input dropout mask (applied per input event for sparse inputs)."""
    bsz, steps, _ = x.shape
    n = connectome.shape[0]
    if impl == "dense":
        # sparse spike inputs: a row of the map per input event (the input rule of engines.inputs)
        return project(x, mask, S.dense_map(connectome, w_eff, 0, n_in))
    if mask is not None:
        x = x * mask[:, None, :]
    return S.gather_inputs(x, connectome, w_eff, n_in).view(n, bsz, steps).permute(1, 2, 0)


def _recurrent_fn(connectome: torch.Tensor, w_eff: torch.Tensor, n_in: int, impl: str):
    """``f(s_prev [B, N]) -> [B, N]`` currents from the layer's own previous spikes, or None."""
    n = connectome.shape[0]
    if not S.has_recurrent(connectome, n_in):
        return None
    if impl == "dense":
        m_rec = S.dense_map(connectome, w_eff, n_in, n_in + n)
        return lambda s_prev: s_prev @ m_rec
    idx, w = S.bag_tables(connectome, w_eff, n_in, n_in + n)
    return lambda s_prev: S.bag_sum(idx, s_prev.t().contiguous(), w).t()


def _loguniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u).to(torch.float32)


# --------------------------------------------------------------------------- the spiking layer
class LIFLayerOutput(NamedTuple):
    s: torch.Tensor  # [B, T, N] spikes
    state: L.LIFState
    traces: Optional[dict]  # membrane, spikes, current, adaptation: [B, T, N]


class LIFLayer(EngineChoice, nn.Module):
    """``n`` LIF / adLIF neurons reading ``n_in`` sources of step t and their own spikes of t-1.

    Neuron settings come from ``cfg`` (an :class:`LIFLayerConfig`); ``rho``, the seed, the
    dropout rates and the sign of the input sources (``input_sign`` ``[n_in]``, default +1: used
    under Dale's law) are per layer. Construction never touches the global RNG.
    """

    def __init__(self, cfg: LIFLayerConfig, n_in: int, n: int, rho: float, seed: int = 0,
                 input_sign: Optional[torch.Tensor] = None, dropout_in: float = 0.0, dropout_rec: float = 0.0,
                 connectome: Optional[torch.Tensor] = None, synapse_impl: str = "auto") -> None:
        super().__init__()
        check_choice("synapse_impl", synapse_impl, SYNAPSE_IMPLS)
        self.cfg = cfg
        self.n_in, self.n = int(n_in), int(n)
        self.dropout_in, self.dropout_rec = float(dropout_in), float(dropout_rec)
        self.synapse_impl = synapse_impl
        k = cfg.n_synapses
        if connectome is None:
            connectome = make_connectome(cfg.wiring, self.n_in, self.n, k, rho, seed=2 * seed)
        connectome = torch.as_tensor(connectome, dtype=torch.int64)
        if tuple(connectome.shape) != (self.n, k):
            raise ValueError(f"connectome must have shape [n, K] = [{self.n}, {k}], got {list(connectome.shape)}")
        if connectome.numel() and (connectome.min() < 0 or connectome.max() >= self.n_in + self.n):
            raise ValueError(f"connectome entries must lie in 0..{self.n_in + self.n - 1} (n_in + n - 1)")
        self.register_buffer("connectome", connectome.clone())

        g = torch.Generator().manual_seed(2 * seed + 1)
        std = cfg.weight_scale / math.sqrt(k)
        w0 = torch.randn(self.n, k, generator=g) * std
        self.w = nn.Parameter(w0.abs() if cfg.dale else w0)
        self._timescale("tau_m", _loguniform(self.n, cfg.tau_mem_min, cfg.tau_mem_max, g),
                        cfg.tau_mem_min, cfg.tau_mem_max)
        if cfg.adaptive:
            self._timescale("tau_w", _loguniform(self.n, cfg.tau_adapt_min, cfg.tau_adapt_max, g),
                            cfg.tau_adapt_min, cfg.tau_adapt_max)
            # [adapt_a_min, adapt_a_max] lies in every initial neuron's stable interval (LIFLayerConfig
            # checks it), so the drawn values are used as they are; params() clamps what training makes
            a0 = cfg.adapt_a_min + (cfg.adapt_a_max - cfg.adapt_a_min) * torch.rand(self.n, generator=g)
            b0 = cfg.adapt_b_min + (cfg.adapt_b_max - cfg.adapt_b_min) * torch.rand(self.n, generator=g)
            for name, val in (("a", a0), ("b", b0)):
                if cfg.learn_adapt:
                    setattr(self, name, nn.Parameter(val))
                else:
                    self.register_buffer(name, val)
        sign = L.ei_signs(self.n, cfg.frac_inhibitory, g) if cfg.dale else torch.ones(self.n)
        self.register_buffer("sign", sign)
        if input_sign is None:
            input_sign = torch.ones(self.n_in)
        input_sign = torch.as_tensor(input_sign, dtype=torch.float32).detach().clone()
        if tuple(input_sign.shape) != (self.n_in,):
            raise ValueError(f"input_sign must have shape [n_in] = [{self.n_in}], got {list(input_sign.shape)}")
        self.register_buffer("syn_sign", torch.cat([input_sign, sign])[self.connectome])

    def _timescale(self, name: str, tau0: torch.Tensor, lo_init: float, hi_init: float) -> None:
        lo, hi = tau_bounds(lo_init, hi_init)
        setattr(self, f"_{name}_bounds", (lo, hi))
        if self.cfg.learn_tau:
            setattr(self, f"{name}_theta", nn.Parameter(tau_to_theta(tau0, lo, hi)))
        else:
            self.register_buffer(f"{name}_fixed", tau0.clone())

    # ------------------------------------------------------------------ parameters
    def _tau(self, name: str) -> torch.Tensor:
        if self.cfg.learn_tau:
            lo, hi = getattr(self, f"_{name}_bounds")
            return theta_to_tau(getattr(self, f"{name}_theta"), lo, hi)
        return getattr(self, f"{name}_fixed")

    @property
    def tau_m(self) -> torch.Tensor:
        """Membrane timescales ``[N]`` (unit of dt)."""
        return self._tau("tau_m")

    @property
    def tau_w(self) -> torch.Tensor:
        """Adaptation timescales ``[N]`` (adLIF only)."""
        return self._tau("tau_w")

    def effective_weights(self) -> torch.Tensor:
        """``[N, K]`` weights as they multiply the sources: ``w`` or ``relu(w) * sign(source)``."""
        if self.cfg.dale:
            return L.dale_weights(self.w, self.syn_sign)
        return self.w

    def adaptation(self, kappa_m: torch.Tensor, gain: torch.Tensor):
        """``(kappa_w, a, b)`` as the step uses them (adLIF): the stored ``a`` clamped per neuron
        into the stable interval ``[0, (1 - m)(1 + kappa_m)(1 + kappa_w) / g]`` of this neuron's
        current timescales and gain, ``b`` at ``>= 0``
        (:func:`~elm_neuro.neurons.lif.constrain_adaptation`, ``m`` =
        ``LIFLayerConfig.ADAPT_A_MARGIN``). The parameters themselves stay as the optimiser (or a
        checkpoint) left them."""
        kappa_w = decay(self.tau_w, self.cfg.dt)
        a, b = L.constrain_adaptation(self.a, self.b, kappa_m, kappa_w, gain, self.cfg.ADAPT_A_MARGIN)
        return kappa_w, a, b

    def params(self) -> L.LIFParams:
        """The per-neuron constants of a forward pass, for both engines: decays, gain and, for
        adLIF, the constrained adaptation of :meth:`adaptation` (the constraint lives here, so the
        fused engine and the per-step path use the same values)."""
        c = self.cfg
        kappa_m, gain = L.membrane_constants(self.tau_m, c.dt, c.current_gain)
        if c.adaptive:
            kappa_w, a, b = self.adaptation(kappa_m, gain)
            return L.LIFParams(kappa_m, gain, float(c.threshold), c.theta_reset, kappa_w, a, b)
        return L.LIFParams(kappa_m, gain, float(c.threshold), c.theta_reset)

    def initial_state(self, batch: int, device=None) -> L.LIFState:
        """All-zero state in the weights' dtype, on their device unless ``device`` is given."""
        device = device if device is not None else self.w.device
        return L.initial_state(batch, self.n, self.cfg.adaptive, self.cfg.refractory, device=device,
                               dtype=self.w.dtype)

    def resolved_impl(self) -> str:
        return S.resolve_impl(self.synapse_impl, self.n_in + self.n, self.n)

    def draw_masks(self, x: torch.Tensor):
        """Variational dropout masks ``(mask_in [B, n_in], mask_rec [B, N])`` (None when off / eval)."""
        return dropout_masks(self.training, x, self.n_in, self.dropout_in, self.n, self.dropout_rec)

    # ------------------------------------------------------------------ engines
    def fused_unsupported(self) -> Optional[str]:
        return C.unsupported_reason(self.w.dtype, self.n)

    def _folded_weights(self):
        """``(w_eff, params, folded)`` as both engines use them: with the leak gain of a LIF layer
        folded into the weights (``folded`` = that gain, else None) and ``params.gain = None``
        wherever the step need not multiply by it."""
        w_eff = self.effective_weights()
        params = self.params()
        folded = None  # the gain g when it is folded into the weights (traces then divide it out)
        if self.cfg.current_gain == "unit":
            params = params._replace(gain=None)  # g = 1: skip the multiplication
        elif not self.cfg.adaptive:
            # LIF: g I_t = sum_k (g w_eff[n, k]) v[C[n, k]]; fold g into the weights once
            folded = params.gain
            w_eff = w_eff * folded[:, None]
            params = params._replace(gain=None)
        return w_eff, params, folded

    def _has_recurrent(self) -> bool:
        """Whether the connectome has recurrent synapses, asked of the device once per connectome
        (a fused call makes no host synchronisation)."""
        conn = self.connectome
        key = (conn.device, conn.data_ptr(), conn._version, tuple(conn.shape))
        cached = self.__dict__.get("_recurrent_cache")
        if cached is None or cached[0] != key:
            cached = (key, S.has_recurrent(conn, self.n_in))
            self.__dict__["_recurrent_cache"] = cached
        return cached[1]

    def forward_fused(self, x: torch.Tensor, state: Optional[L.LIFState] = None, backend=None) -> LIFLayerOutput:
        """The fused sequence engine (:mod:`elm_neuro.networks.engines.lif_sequence`); ``backend`` (a
        :class:`~elm_neuro.networks.engines.backends.Backend`) overrides the device's (tests pass
        the PyTorch reference, ``lif_contract.REFERENCE``)."""
        check_input(x, self.n_in)
        self.check_fused()
        bsz = x.shape[0]
        n, c = self.n, self.cfg
        if state is None:
            state = self.initial_state(bsz, x.device)
        with torch.autocast(x.device.type, enabled=False):  # the engine computes in the parameters' dtype
            dtype = self.w.dtype
            x = x.to(dtype)
            state = state_to(state, dtype)
            mask_in, mask_rec = self.draw_masks(x)
            w_eff, params, _ = self._folded_weights()
            impl = self.resolved_impl()
            cur = _feedforward_currents(x, self.connectome, w_eff, self.n_in, impl, mask_in)  # [B, T, N]
            recurrent = self._has_recurrent()
            # the recurrent synapses as a dense source-major map (the engine's contract)
            m_rec = S.dense_map(self.connectome, w_eff, self.n_in, self.n_in + n) if recurrent \
                else w_eff.new_zeros(1, 1)
            mask = mask_rec if mask_rec is not None else x.new_ones(bsz, n)
            spec = C.make_spec(c, has_gain=params.gain is not None, recurrent=recurrent)
            fns = backend if backend is not None else Q.backend(x.device)  # BackendUnusable: EngineChoice
            s, v_T, w_T, ref_T = Q.run(fns, spec, mask, cur,
                                       C.Weights(m_rec, params.kappa_m, params.gain, params.kappa_w, params.a, params.b),
                                       C.State(state.v, state.s, state.w, state.ref))
            self._engine_backend = fns.name
        new_state = L.LIFState(v=v_T, s=s[:, -1] if s.shape[1] else state.s, w=w_T if c.adaptive else None,
                               ref=ref_T if c.refractory > 0 else None)
        return LIFLayerOutput(s, new_state, None)

    def forward_step(self, x: torch.Tensor, state: Optional[L.LIFState] = None, record: bool = False
                     ) -> LIFLayerOutput:
        """The per-step path: one :func:`~elm_neuro.neurons.lif.lif_step` per time step (the
        reference the fused engine is tested against)."""
        check_input(x, self.n_in)
        bsz = x.shape[0]
        if state is None:
            state = self.initial_state(bsz, x.device)
        mask_in, mask_rec = self.draw_masks(x)
        w_eff, params, folded = self._folded_weights()
        settings = self.cfg.settings()
        impl = self.resolved_impl()
        i_in = _feedforward_currents(x, self.connectome, w_eff, self.n_in, impl, mask_in)
        rec_fn = _recurrent_fn(self.connectome, w_eff, self.n_in, impl)
        spikes = []
        rec = {"membrane": [], "spikes": [], "current": []} if record else None
        if record and self.cfg.adaptive:
            rec["adaptation"] = []
        # unbind once: indexing i_in[:, t] per step would make the backward pass O(T^2)
        for cur in i_in.unbind(1):
            if rec_fn is not None:
                s_prev = state.s if mask_rec is None else state.s * mask_rec
                cur = cur + rec_fn(s_prev)
            out = L.lif_step(cur, state, params, settings)
            state = out.state
            spikes.append(out.s)
            if record:
                rec["membrane"].append(out.v.detach())
                rec["spikes"].append(out.s.detach())
                rec["current"].append((cur if folded is None else cur / folded).detach())
                if self.cfg.adaptive:
                    rec["adaptation"].append(out.w.detach())
        traces = {key: torch.stack(val, dim=1) for key, val in rec.items()} if record else None
        return LIFLayerOutput(torch.stack(spikes, dim=1), state, traces)

    def forward_reference(self, x: torch.Tensor, state: Optional[L.LIFState] = None) -> LIFLayerOutput:
        """Plain path: loops over time and neurons, explicit indexing, equations written out."""
        check_input(x, self.n_in)
        c = self.cfg
        bsz = x.shape[0]
        if state is None:
            state = self.initial_state(bsz, x.device)
        mask_in, mask_rec = self.draw_masks(x)
        w_eff = self.effective_weights()
        tau_m = self.tau_m
        tau_w = self.tau_w if c.adaptive else None
        if c.adaptive:  # the stability constraint of a and b, as params() applies it
            _, a_used, b_used = self.adaptation(*L.membrane_constants(tau_m, c.dt, c.current_gain))
        v, s, w, ref = state
        spikes = []
        for x_t in x.unbind(1):
            x_t = x_t if mask_in is None else x_t * mask_in
            r_t = s if mask_rec is None else s * mask_rec
            src = torch.cat([x_t, r_t], dim=1)
            new_v, new_s, new_w, new_ref = [], [], [], []
            for n in range(self.n):
                current = (src[:, self.connectome[n]] * w_eff[n]).sum(-1)  # [B]
                kappa = torch.exp(-c.dt / tau_m[n].clamp_min(1e-6))
                gain = 1.0 if c.current_gain == "unit" else 1.0 - kappa
                drive = current
                if c.adaptive:
                    kw = torch.exp(-c.dt / tau_w[n].clamp_min(1e-6))
                    w_n = kw * w[:, n] + a_used[n] * v[:, n] + b_used[n] * s[:, n]
                    new_w.append(w_n)
                    drive = drive - w_n
                refr = None
                if c.refractory > 0:
                    refr = (ref[:, n] > 0).to(v.dtype)
                    drive = drive * (1 - refr)
                reset_sig = s[:, n].detach() if c.detach_reset else s[:, n]
                if c.reset == "subtract":
                    v_n = kappa * v[:, n] + gain * drive - c.theta_reset * reset_sig
                else:
                    v_n = kappa * v[:, n] * (1 - reset_sig) + gain * drive
                s_n = L.fire(v_n, c.threshold, c.surrogate, c.surrogate_slope, c.surrogate_scale)
                if refr is not None:
                    s_n = s_n * (1 - refr)
                    new_ref.append(torch.where(s_n > 0, float(c.refractory), (ref[:, n] - 1).clamp_min(0)))
                new_v.append(v_n)
                new_s.append(s_n)
            v, s = torch.stack(new_v, 1), torch.stack(new_s, 1)
            w = torch.stack(new_w, 1) if c.adaptive else None
            ref = torch.stack(new_ref, 1) if c.refractory > 0 else None
            spikes.append(s)
        return LIFLayerOutput(torch.stack(spikes, dim=1), L.LIFState(v, s, w, ref), None)


# --------------------------------------------------------------------------- non-spiking readout
class LeakyReadout(nn.Module):
    """``C`` leaky integrators on ``n_in`` sources of the same step (K synapses each, rho 0)::

        o_t[c] = kappa_o o_{t-1}[c] + (1 - kappa_o) (sum_k w_eff[c, k] a_t[C[c, k]] + bias[c])

    ``kappa_o = exp(-dt / tau_out)`` (``dt`` of the layer configuration ``cfg``); weights start ``U(-1/sqrt(K), 1/sqrt(K))`` (nn.Linear
    default), under Dale's law ``w_eff = relu(w) * sign(source)`` with absolute initial values.
    """

    def __init__(self, cfg: LIFLayerConfig, n_in: int, n_classes: int, tau_out: float, seed: int = 0,
                 input_sign: Optional[torch.Tensor] = None, synapse_impl: str = "auto") -> None:
        super().__init__()
        self.cfg, self.n_in, self.n, self.tau_out = cfg, int(n_in), int(n_classes), float(tau_out)
        self.synapse_impl = synapse_impl
        k = cfg.n_synapses
        conn = make_connectome(cfg.wiring, self.n_in, self.n, k, 0.0, seed=2 * seed)
        self.register_buffer("connectome", conn)
        g = torch.Generator().manual_seed(2 * seed + 1)
        w0 = torch.empty(self.n, k).uniform_(-1 / math.sqrt(k), 1 / math.sqrt(k), generator=g)
        self.w = nn.Parameter(w0.abs() if cfg.dale else w0)
        self.bias = nn.Parameter(torch.zeros(self.n))
        if input_sign is None:
            input_sign = torch.ones(self.n_in)
        self.register_buffer("syn_sign", torch.as_tensor(input_sign, dtype=torch.float32).clone()[conn])

    def effective_weights(self) -> torch.Tensor:
        return L.dale_weights(self.w, self.syn_sign) if self.cfg.dale else self.w

    @property
    def kappa(self) -> float:
        return decay(self.tau_out, self.cfg.dt)

    def initial_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.n, device=device if device is not None else self.w.device, dtype=self.w.dtype)

    def forward(self, a: torch.Tensor, state: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
        """``a`` ``[B, T, n_in]`` -> ``(o [B, T, C], o_T [B, C])``; ``mask`` ``[B, n_in]`` dropout or None."""
        if state is None:
            state = self.initial_state(a.shape[0], a.device)
        impl = S.resolve_impl(self.synapse_impl, self.n_in, self.n)
        drive = _feedforward_currents(a, self.connectome, self.effective_weights(), self.n_in, impl, mask) + self.bias
        kappa = self.kappa
        if self.cfg.engine == "step":
            return leaky_integrate(drive, state, kappa, 1.0 - kappa)
        return leaky_scan(drive, state, kappa, 1.0 - kappa)  # the whole filter in one Function

    def forward_reference(self, a: torch.Tensor, state: Optional[torch.Tensor] = None,
                          mask: Optional[torch.Tensor] = None):
        if state is None:
            state = self.initial_state(a.shape[0], a.device)
        w_eff = self.effective_weights()
        kappa = math.exp(-self.cfg.dt / self.tau_out)
        o, outs = state, []
        for a_t in a.unbind(1):
            a_t = a_t if mask is None else a_t * mask
            o = torch.stack([kappa * o[:, c] + (1 - kappa) * ((a_t[:, self.connectome[c]] * w_eff[c]).sum(-1)
                                                              + self.bias[c]) for c in range(self.n)], 1)
            outs.append(o)
        return torch.stack(outs, dim=1), o
