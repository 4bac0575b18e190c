"""A population of ELM neurons on a fixed connectome, vectorised over neurons (docs/design.md §1-2).

Layer step: ``v = [x_t ; y_{t-1}]`` (length ``n_in + N``), ``U = v[C]`` (``[N, K]``), and every
neuron runs :func:`elm_neuro.neurons.elm.elm_step` on its own row with its own parameters.
Parameters are stacked on a leading neuron axis (e.g. the first MLP weight is
``[N, d_mlp, d_tree + d_m]``); there is no Python loop over neurons in the fast paths.

Synapse kernels (``synapse_impl``, :mod:`elm_neuro.networks.synapses`), all computing the same
branch drive ``beta[b, n, k] = s_in * sum_j w[n, k, j] * v[b, C[n, k, j]]``:

- ``dense``: the input synapses as one dense map ``[n_in, N*d_tree]`` (one matmul over all time
  steps, or a row of the map per input event for sparse spike inputs on the CPU:
  :func:`elm_neuro.networks.engines.projection.project`); the recurrent
  synapses (``rho N K`` of them) as a list: per step one ``index_select`` and one ``index_add``.
  Fastest for small and mid-size layers.
- ``gather``: ``embedding_bag`` with per-synapse weights (bags of ``d_brch`` synapses = one
  branch); input part for all steps at once, recurrent part per step. Memory ``O(N*K)``.
- ``auto``: ``dense`` while the dense input map holds at most ``DENSE_MAX_ELEMENTS`` entries.

Engines (``cfg.engine``): :meth:`ELMLayer.forward_step` steps through time with one
:func:`~elm_neuro.neurons.elm.elm_step` per step (the reference); :meth:`ELMLayer.forward_fused`
runs the whole sequence in the fused engine (:mod:`elm_neuro.networks.engines.elm_sequence`),
its input in the form of the input rule (:mod:`elm_neuro.networks.engines.inputs`: drive, events
or rows); :meth:`ELMLayer.forward` takes the fused engine wherever it covers the configuration
(``auto``, :class:`~elm_neuro.networks.engine_choice.EngineChoice`; parameters in float32 /
float64, and on CUDA a Triton backend that imports and passes its first-use check, else the
layer steps and ``engine_reason`` says why). What the engine needs of the connectome alone (the
synapses' CSR, the kernels' table widths) is built once per connectome and kept on the layer, so
a fused call on CUDA makes no host synchronisation. :meth:`ELMLayer.forward_reference` is the
plain path: a loop over time *and neurons* with explicit indexing and ``F.linear`` per neuron; tests check that all kernels agree with it in
outputs and gradients.

Dropout is variational: one Bernoulli keep-mask per sample per call, rescaled by ``1/(1-p)``,
the same at every step, in training mode only, separately on the external input and on the
recurrent input. A new mask is drawn at every ``forward`` call (so with truncated BPTT each
chunk gets its own mask).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elm_neuro.networks import synapses as S
from elm_neuro.networks.common import check_input, dropout_masks, state_to
from elm_neuro.networks.elm_config import SYNAPSE_IMPLS, ELMLayerConfig
from elm_neuro.networks.engine_choice import EngineChoice
from elm_neuro.networks.engines import elm_contract as C
from elm_neuro.networks.engines import elm_sequence as Q
from elm_neuro.networks.engines import inputs as I
from elm_neuro.networks.engines import projection as P
from elm_neuro.neurons import elm as E
from elm_neuro.wiring.connectome import make_connectome


class LayerOutput(NamedTuple):
    y: torch.Tensor  # [B, T, N * d_o] outputs
    state: E.ELMState  # final state
    z_abs_mean: torch.Tensor  # [B, N] mean |z| over time and memory units, per sample
    traces: Optional[dict]  # when record=True: beta, z, m, rho, y with shape [B, T, N, ...]


def _swap_state(state: E.ELMState) -> E.ELMState:
    """Batch-first <-> neuron-major (swap the first two axes of every field)."""
    return E.ELMState(*(None if t is None else t.transpose(0, 1) for t in state))


class ELMLayer(EngineChoice, nn.Module):
    """``N`` ELM neurons reading ``n_in`` input channels and their own previous outputs.

    Args:
        cfg: neuron and wiring settings.
        n_in: number of input channels.
        n: number of neurons.
        seed: seeds the connectome (unless ``connectome`` is given) and the initial weights,
            each with its own generator, so construction never touches the global RNG.
        connectome: optional ``[n, K]`` index tensor into ``[x ; y_prev]``.
        synapse_impl: ``auto`` | ``dense`` | ``gather``.
    """

    def __init__(
        self,
        cfg: ELMLayerConfig,
        n_in: int,
        n: int,
        seed: int = 0,
        connectome: Optional[torch.Tensor] = None,
        synapse_impl: str = "auto",
    ) -> None:
        super().__init__()
        if synapse_impl not in SYNAPSE_IMPLS:
            raise ValueError(f"synapse_impl must be one of {SYNAPSE_IMPLS}, got {synapse_impl!r}")
        if cfg.d_o > 1 and cfg.rho > 0:
            raise ValueError(f"a recurrent layer (rho={cfg.rho}) needs d_o == 1, got d_o={cfg.d_o}")
        self.cfg = cfg
        self.n_in = int(n_in)
        self.n = int(n)
        self.synapse_impl = synapse_impl
        k = cfg.k
        if connectome is None:
            connectome = make_connectome(cfg.wiring, self.n_in, self.n, k, cfg.rho, seed=2 * seed)
        connectome = torch.as_tensor(connectome, dtype=torch.int64)
        if tuple(connectome.shape) != (self.n, k):
            raise ValueError(f"connectome must have shape [n, K] = [{self.n}, {k}], got {list(connectome.shape)}")
        if connectome.numel() and (connectome.min() < 0 or connectome.max() >= self.n_in + self.n):
            raise ValueError(f"connectome entries must lie in 0..{self.n_in + self.n - 1} (n_in + n - 1)")
        if cfg.d_o > 1 and bool((connectome >= self.n_in).any()):
            raise ValueError("a layer with d_o > 1 cannot have recurrent synapses")
        self.register_buffer("connectome", connectome.clone())

        g = torch.Generator().manual_seed(2 * seed + 1)

        def uniform(shape, bound):
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound, generator=g))

        self.w_s = uniform((self.n, k), 1.0 / math.sqrt(cfg.d_brch))
        self.mlp_w = nn.ParameterList()
        self.mlp_b = nn.ParameterList()
        for out_f, in_f in cfg.mlp_shapes():  # nn.Linear default init: U(+-1/sqrt(fan_in))
            bound = 1.0 / math.sqrt(in_f)
            self.mlp_w.append(uniform((self.n, out_f, in_f), bound))
            self.mlp_b.append(uniform((self.n, out_f), bound))
        self.w_y = uniform((self.n, cfg.d_o, cfg.d_m), 1.0 / math.sqrt(cfg.d_m))
        self.bias = nn.Parameter(torch.zeros(self.n, cfg.d_o))
        tau0 = E.log_spaced_taus(cfg.tau_min, cfg.tau_max, cfg.d_m)
        self.tau_lo, self.tau_hi = E.tau_bounds(cfg.tau_min, cfg.tau_max)
        if cfg.learn_tau:
            self.tau_theta = nn.Parameter(E.tau_to_theta(tau0, self.tau_lo, self.tau_hi).repeat(self.n, 1))
        else:
            self.register_buffer("tau_fixed", tau0[None, :].clone())

    # ------------------------------------------------------------------ parameters
    @property
    def tau_m(self) -> torch.Tensor:
        """Memory timescales ``[N, d_m]`` (learnable) or ``[1, d_m]`` (fixed, shared)."""
        if self.cfg.learn_tau:
            return E.theta_to_tau(self.tau_theta, self.tau_lo, self.tau_hi)
        return self.tau_fixed

    def step_weights(self) -> E.StepWeights:
        """Parameters in the step's neuron-major layout, with the decay factors of this pass."""
        c = self.cfg
        kappa_m, gain = E.memory_constants(self.tau_m, c.dt, c.memory_mode, c.lambda_value)
        return E.StepWeights(
            mlp_wT=tuple(w.transpose(1, 2) for w in self.mlp_w),
            mlp_b=tuple(b.unsqueeze(1) for b in self.mlp_b),
            w_yT=self.w_y.transpose(1, 2),
            bias=self.bias.unsqueeze(1),
            kappa_m=kappa_m.unsqueeze(1),
            gain=(E.UPDATE_SCALE * gain).unsqueeze(1),
            kappa_b=E.decay(c.tau_b, c.dt) if c.branch_trace else None,
            kappa_r=None if c.tau_r is None else E.decay(c.tau_r, c.dt),
        )

    def effective_synapses(self) -> torch.Tensor:
        """``s_in * rect(w_s)``: ``[N, K]`` weights as they multiply the inputs."""
        return self.cfg.input_scale * E.rectify_synapses(self.w_s, self.cfg.synapse_rect)

    def initial_state(self, batch: int, device=None, dtype=None) -> E.ELMState:
        """All-zero state in the parameters' dtype and device (unless given)."""
        c = self.cfg
        return E.initial_state(batch, self.n, c.d_m, c.d_o, c.d_tree, c.branch_trace, c.tau_r is not None,
                               device=device if device is not None else self.w_s.device,
                               dtype=dtype if dtype is not None else self.w_s.dtype)

    def resolved_impl(self) -> str:
        return S.resolve_impl(self.synapse_impl, self.n_in, self.n * self.cfg.d_tree)

    # ------------------------------------------------------------------ synapse kernels
    def _synapse_fns(self, x: torch.Tensor, mask_in, mask_rec):
        """Input drive of every step and the recurrent-drive function, neuron-major.

        Returns ``(beta_in, rec_fn)``: ``beta_in`` is ``[T, N * d_tree, B]``; ``rec_fn(drive,
        y_prev)`` adds the recurrent synapses' drive from ``y_prev`` ``[N, B]`` to ``drive``
        ``[N * d_tree, B]`` (None when the layer has no recurrent synapses).
        """
        c, n, n_in, conn = self.cfg, self.n, self.n_in, self.connectome
        w_eff = self.effective_synapses()
        mask_t = None if mask_rec is None else mask_rec.t()
        inp = self._input_drive(x, mask_in, w_eff)  # [B, T, N, D]
        beta_in = inp.reshape(inp.shape[0], inp.shape[1], n * c.d_tree).permute(1, 2, 0).contiguous()
        if not S.has_recurrent(conn, n_in):
            return beta_in, None
        if self.resolved_impl() == "dense":
            src, target, w_rec = S.synapse_list(conn, w_eff, n_in, c.d_tree, c.d_brch)
            w_rec = w_rec[:, None]

            def rec_fn(drive, y_prev):
                y_prev = y_prev if mask_t is None else y_prev * mask_t
                return drive.index_add(0, target, (y_prev.index_select(0, src) * w_rec).to(drive.dtype))

            return beta_in, rec_fn
        idx_rec, w_rec = S.bag_tables(conn, w_eff, n_in, n_in + n, c.d_tree, c.d_brch)

        def rec_fn(drive, y_prev):
            y_prev = y_prev if mask_t is None else y_prev * mask_t
            return drive + S.bag_sum(idx_rec, y_prev, w_rec)

        return beta_in, rec_fn

    def _input_drive(self, x: torch.Tensor, mask_in, w_eff: torch.Tensor) -> torch.Tensor:
        """The input synapses' branch drive of every step, ``[B, T, N, D]`` (batch first, as the
        projection gives it: no transposing copy); ``w_eff`` = :meth:`effective_synapses`. The
        dense kernel projects through :func:`elm_neuro.networks.engines.projection.project` (events
        for a sparse CPU input, by the input rule)."""
        bsz, steps, _ = x.shape
        c, conn, n = self.cfg, self.connectome, self.n
        if self.resolved_impl() == "dense":
            return P.project(x, mask_in, S.dense_map(conn, w_eff, 0, self.n_in, c.d_tree, c.d_brch)).view(
                bsz, steps, n, c.d_tree)
        if mask_in is not None:
            x = x * mask_in[:, None, :]
        drive = S.gather_inputs(x, conn, w_eff, self.n_in, c.d_tree, c.d_brch)  # [N*D, B*T]
        return drive.view(n, c.d_tree, bsz, steps).permute(2, 3, 0, 1)

    def _synapse_index(self) -> dict:
        """What the fused engine needs of the connectome alone, made once per connectome and device
        (it synchronises with the device: boolean selections, the CSR's table widths) and kept on
        the layer, so that a fused call makes none: ``rec`` / ``inp``, the flat positions in
        ``[N * K]`` of the recurrent and the input synapses; ``target``, every synapse's target
        column; ``csr``, per input form (rows or not) the CSR of the synapses from source rows
        (:func:`~elm_neuro.networks.engines.elm_contract.make_recurrent`) and the positions of its
        synapses in ``[N * K]`` (apply them to ``w_eff``)."""
        conn = self.connectome
        key = (conn.device, conn.data_ptr(), conn._version, tuple(conn.shape))
        cached = self.__dict__.get("_synapse_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        c, n_in = self.cfg, self.n_in
        flat = conn.reshape(-1)
        index = {"rec": torch.nonzero(flat >= n_in).view(-1), "inp": torch.nonzero(flat < n_in).view(-1),
                 "target": S.group_columns(conn, c.d_tree, c.d_brch).reshape(-1), "csr": {}}
        self.__dict__["_synapse_cache"] = (key, index)
        return index

    def _engine_synapses(self, w_eff: torch.Tensor, rows: bool) -> tuple[C.Recurrent, torch.Tensor]:
        """The synapses from source rows as the engine takes them: ``(Recurrent, weights)``; the
        recurrent ones (source ``j``: neuron ``j``), plus the input synapses (source ``N + c``:
        channel ``c``) when the input is read as rows. The CSR is built once per connectome
        (:meth:`_synapse_index`); a call only gathers the weights."""
        index = self._synapse_index()
        if rows not in index["csr"]:
            flat = self.connectome.reshape(-1)
            pos = torch.cat([index["rec"], index["inp"]]) if rows else index["rec"]
            src = torch.where(flat[pos] >= self.n_in, flat[pos] - self.n_in, flat[pos] + self.n)
            rec, order = C.make_recurrent(src, index["target"][pos], self.cfg.d_tree, self.n)
            index["csr"][rows] = (rec, pos[order])
        rec, pos = index["csr"][rows]
        return rec, w_eff.reshape(-1)[pos]

    def _engine_input(self, x: torch.Tensor, mask_in, w_eff: torch.Tensor, fns):
        """The engine's input in the form of the input rule (:func:`~elm_neuro.networks.engines.
        inputs.input_form`) for the backend ``fns``, and whether it is read as rows (its synapses
        then join the recurrent ones, :meth:`_engine_synapses`). A backend that takes a Drive only
        (Triton) gets one without any host synchronisation."""
        c, n, n_in = self.cfg, self.n, self.n_in
        fill = 1.0
        if I.Events in fns.takes or I.Rows in fns.takes:
            fill = self._synapse_index()["inp"].numel() / max(1, n_in * n * c.d_tree)
        form, listed = I.input_form(x, mask_in, fns.takes, fill, fns.list_events)
        if form is I.Events:
            index = self._synapse_index()
            pos = index["inp"]
            syn_ptr, syn_flat, w_in = I.synapses_by_channel(self.connectome.reshape(-1)[pos], index["target"][pos],
                                                            w_eff.reshape(-1)[pos], n_in)
            x_in = m_in = None
            if x.requires_grad:  # e.g. spikes of a layer below: its gradient is g_drive @ m_in^T
                x_in = x if mask_in is None else x * mask_in[:, None, :]
                m_in = S.dense_map(self.connectome, w_eff.detach(), 0, n_in, c.d_tree, c.d_brch)
            return I.Events(*listed, syn_ptr, syn_flat, w_in, x_in, m_in), False
        if form is I.Rows:  # the dense input read through its synapses in the engine (sources N + channel)
            mask_x = mask_in.t() if mask_in is not None else x.new_ones(n_in, x.shape[0])
            return I.Rows(x.permute(1, 2, 0), mask_x), True
        return I.Drive(self._input_drive(x, mask_in, w_eff).permute(1, 2, 3, 0)), False  # [T, N, D, B] view

    def draw_masks(self, x: torch.Tensor):
        """Variational dropout masks ``(mask_in [B, n_in], mask_rec [B, N])`` (None when off)."""
        return dropout_masks(self.training, x, self.n_in, self.cfg.dropout_in, self.n, self.cfg.dropout_rec)

    # ------------------------------------------------------------------ engines
    def fused_unsupported(self) -> Optional[str]:
        return C.unsupported_reason(self.cfg, self.w_s.dtype)

    def forward_fused(self, x: torch.Tensor, state: Optional[E.ELMState] = None, backend=None) -> LayerOutput:
        """The fused sequence engine (:mod:`elm_neuro.networks.engines.elm_sequence`); ``backend`` (a
        :class:`~elm_neuro.networks.engines.backends.Backend`) overrides the device's (tests pass
        the PyTorch reference, ``elm_contract.REFERENCE``)."""
        check_input(x, self.n_in)
        self.check_fused()
        bsz, steps, _ = x.shape
        c, n = self.cfg, self.n
        if state is None:
            state = self.initial_state(bsz, x.device)
        with torch.autocast(x.device.type, enabled=False):  # the engine computes in the parameters' dtype
            dtype = self.w_s.dtype
            x = x.to(dtype)
            state = state_to(state, dtype)
            mask_in, mask_rec = self.draw_masks(x)
            w_eff = self.effective_synapses()
            fns = backend if backend is not None else Q.backend(x.device)  # BackendUnusable: EngineChoice
            inp, rows = self._engine_input(x, mask_in, w_eff, fns)
            rec, w_rec = self._engine_synapses(w_eff, rows)
            mask = (mask_rec.t() if mask_rec is not None else x.new_ones(n, bsz)).contiguous()
            kappa_m, gain = E.memory_constants(self.tau_m, c.dt, c.memory_mode, c.lambda_value)
            two = len(self.mlp_w) == 2
            spec = C.Spec(C.MLP_ACTS[c.mlp_act], C.OUT_ACTS[c.output_act], two, c.tau_r is not None,
                          E.decay(c.tau_r, c.dt) if c.tau_r is not None else 0.0)
            w = C.Weights(w_rec, self.mlp_w[0], self.mlp_b[0], self.mlp_w[1] if two else None,
                          self.mlp_b[1] if two else None, self.w_y, self.bias, kappa_m.expand(n, c.d_m),
                          (E.UPDATE_SCALE * gain).expand(n, c.d_m))
            s = C.State(state.m.permute(1, 2, 0), state.h.permute(1, 2, 0) if state.h is not None else None,
                        state.y.permute(1, 2, 0))
            y, m_T, h_T, zabs = Q.run(fns, spec, rec, mask, inp, w, s)
            self._engine_backend = fns.name
        # y [T, N, O, B] -> [B, T, N*O]; states back to batch first
        y_out = y.permute(3, 0, 1, 2).reshape(bsz, steps, n * c.d_o)
        new_state = E.ELMState(m=m_T.permute(2, 0, 1), b=None,
                               h=h_T.permute(2, 0, 1) if spec.high_pass else None, y=y[-1].permute(2, 0, 1))
        return LayerOutput(y_out, new_state, zabs.t() / (steps * c.d_m), None)

    def forward_step(self, x: torch.Tensor, state: Optional[E.ELMState] = None, record: bool = False) -> LayerOutput:
        """The per-step path: one :func:`~elm_neuro.neurons.elm.elm_step` per time step (the
        reference the fused engine is tested against)."""
        check_input(x, self.n_in)
        bsz, steps, _ = x.shape
        c, n = self.cfg, self.n
        if state is None:
            state = self.initial_state(bsz, x.device)
        mask_in, mask_rec = self.draw_masks(x)
        beta_in, rec_fn = self._synapse_fns(x, mask_in, mask_rec)
        w = self.step_weights()
        st = _swap_state(state)  # neuron-major inside the loop
        ys, zs = [], []
        rec = {"beta": [], "z": [], "m": [], "rho": [], "y": []} if record else None
        # unbind once: indexing beta_in[t] per step would make the backward pass O(T^2)
        for drive in beta_in.unbind(0):
            if rec_fn is not None:
                drive = rec_fn(drive, st.y[..., 0])
            beta = drive.view(n, c.d_tree, bsz).transpose(1, 2)
            out = E.elm_step(beta, st, w, c.mlp_act, c.output_act)
            st = out.state
            ys.append(out.y)
            zs.append(out.z)
            if record:
                for key, val in (("beta", out.beta), ("z", out.z), ("m", st.m), ("rho", out.rho), ("y", out.y)):
                    rec[key].append(val.detach())
        # [T, N, B, d] -> [B, T, N, d]
        y = torch.stack(ys).permute(2, 0, 1, 3).reshape(bsz, steps, n * c.d_o)
        z_abs_mean = torch.stack(zs).abs().mean(dim=(0, 3)).t()  # [T, N, B, d_m] -> [B, N]
        traces = {k: torch.stack(v).permute(2, 0, 1, 3) for k, v in rec.items()} if record else None
        return LayerOutput(y, _swap_state(st), z_abs_mean, traces)

    def forward_reference(self, x: torch.Tensor, state: Optional[E.ELMState] = None) -> LayerOutput:
        """Plain path: loops over time and neurons with explicit indexing (slow; for tests)."""
        check_input(x, self.n_in)
        c = self.cfg
        bsz, steps, _ = x.shape
        if state is None:
            state = self.initial_state(bsz, x.device)
        mask_in, mask_rec = self.draw_masks(x)
        w_eff = self.effective_synapses()
        tau = self.tau_m.expand(self.n, c.d_m)
        m, b, h, y_prev = state.m, state.b, state.h, state.y
        ys, z_abs = [], torch.zeros(bsz, self.n, device=x.device, dtype=x.dtype)
        for x_t in x.unbind(1):
            x_t = x_t if mask_in is None else x_t * mask_in
            r_t = y_prev[..., 0] if mask_rec is None else y_prev[..., 0] * mask_rec
            v = torch.cat([x_t, r_t], dim=1)
            new_m, new_b, new_h, new_y = [], [], [], []
            for n in range(self.n):
                u = v[:, self.connectome[n]]  # [B, K]
                beta = (u * w_eff[n]).view(bsz, c.d_tree, c.d_brch).sum(-1)
                if c.branch_trace:
                    beta = math.exp(-c.dt / c.tau_b) * b[:, n] + beta
                    new_b.append(beta)
                kappa = torch.exp(-c.dt / tau[n].clamp_min(1e-6))
                if c.memory_mode == "ratio":
                    gain = 1 - torch.exp(-c.lambda_value * c.dt / tau[n].clamp_min(1e-6))
                else:
                    gain = c.lambda_value * (1 - kappa)
                md = kappa * m[:, n]
                hid = torch.cat([beta, md], dim=1)
                for i in range(len(self.mlp_w)):
                    hid = F.linear(hid, self.mlp_w[i][n], self.mlp_b[i][n])
                    if i < len(self.mlp_w) - 1:
                        hid = E.mlp_activation(hid, c.mlp_act)
                z_abs = z_abs + F.one_hot(torch.tensor(n, device=x.device), self.n).to(x.dtype) * hid.abs().mean(1, keepdim=True)
                mn = md + gain * 1.7159 * torch.tanh(2 * hid / 3)
                rho = F.linear(mn, self.w_y[n])
                p = rho
                if c.tau_r is not None:
                    kr = math.exp(-c.dt / c.tau_r)
                    hn = kr * h[:, n] + (1 - kr) * rho
                    p = rho - hn
                    new_h.append(hn)
                new_m.append(mn)
                new_y.append(E.output_activation(p + self.bias[n], c.output_act))
            m = torch.stack(new_m, 1)
            b = torch.stack(new_b, 1) if c.branch_trace else None
            h = torch.stack(new_h, 1) if c.tau_r is not None else None
            y_prev = torch.stack(new_y, 1)
            ys.append(y_prev)
        y = torch.stack(ys, 1).reshape(bsz, steps, self.n * c.d_o)
        return LayerOutput(y, E.ELMState(m, b, h, y_prev), z_abs / steps, None)
