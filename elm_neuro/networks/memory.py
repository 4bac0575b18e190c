"""The memory a network needs for one training step, from its configuration alone.

Nothing is built and nothing large is allocated: every figure is arithmetic on the configuration
(sizes, engine choice, synapse kernel), so that a configuration far beyond the machine (a billion
parameters, a connectome of ten million neurons) is sized in microseconds, before the connectome
is drawn (:mod:`elm_neuro.training.preflight` adds the optimiser and the data, and refuses).

:func:`model_memory` gives four parts, in bytes (:class:`ModelMemory`):

- ``parameters``: ``budget().p`` values of the parameters' dtype (exact; the budget counts every
  trainable parameter).
- ``structure``: what the network holds or rebuilds every forward besides its parameters, per
  layer: the connectome ``[N, K]`` int64 (a buffer; the spiking layers also a ``[N, K]`` sign
  map), the synapse tables a forward makes from it (effective weights, the synapses listed by
  source and by target: :data:`TABLE_BYTES` a synapse), and the dense synapse maps a layer uses,
  each with its gradient: an ELM layer's input map ``[n_in, N * d_tree]`` on the dense kernel (or
  as the event input's ``m_in`` when its input needs a gradient), a LIF layer's input map
  ``[n_in, N]`` and its recurrent map ``[N, N]`` (always dense in the fused engine, the
  ``lif_contract``), the readouts' maps likewise.
- ``activations``: for a batch of ``B`` sequences of ``T`` steps, what the forward keeps for the
  backward pass (every layer, its outputs included), plus the gradient sequences of the layer
  whose backward needs the most (backward runs one layer at a time). Per ``(step, neuron,
  sample)`` and in values of the dtype:

  * fused ELM engine (the saved arrays of ``engines/elm_contract.py`` as the CPU backend keeps
    them: ``y``, ``m``, ``z``, ``tanh z``, ``p + bias``, the MLP input ``[beta ; kappa m]``, the
    first layer's pre-activation and activation): ``2 O + 4 M + D + 2 H``, plus the layer's
    output ``O`` (and the drive ``D`` when the input reaches the engine as one); backward
    ``ga`` (``H``, or ``M`` for an affine MLP), ``gz`` (``M``), ``gy`` (``O``) and the drive's
    gradient ``D`` when the input is a drive or needs a gradient;
  * per-step ELM path: ``STEP_BASE O + D + 4 M + 2 H`` (``+ STEP_DENSE_REC rho K`` with the dense
    kernel: the recurrent sources each step selects), plus the drive's gradient ``D``, all times
    :data:`STEP_RESIDENT`;
  * fused LIF engine: ``v``, ``s`` (+ ``w`` and the pre-gain drive for adLIF, + the refractory
    flags); backward the gradients of the current, the spikes and the membrane; the per-step path
    one more value (two with a refractory period);
  * LSTM: :data:`LSTM_VALUES` per hidden unit and step (gates, cell, tanh of the cell, output).

  The measured counts these come from are in ``tests/test_memory.py``, which checks the estimate
  against the tensors autograd saves and against the resident memory of a real training step.
- ``workspace``: arrays the CPU ELM engine's pool (:mod:`elm_neuro.networks.engines.workspace`)
  may keep free beside those the step uses, e.g. after an evaluation batch of another size: the
  pool keeps at most :data:`elm_neuro.defaults.ENGINE_WORKSPACE_BYTES` in all (the step's own
  included), and an evaluation leaves at most the engines' forward arrays. Zero on CUDA, for the
  LIF engine (it does not use the pool) and for layers on the per-step path.

The input batch itself (and the digit caches of the data) are the data's, not the model's: the
trainer's preflight adds them. Figures are estimates: ``tests/test_memory.py`` holds them within
the factor :data:`ESTIMATE_FACTOR` of what a training step measures (resident memory on the CPU).
"""
from __future__ import annotations

from typing import NamedTuple

from elm_neuro.defaults import ENGINE_WORKSPACE_BYTES
from elm_neuro.networks.engines.elm_contract import unsupported_reason as elm_fused_unsupported
from elm_neuro.networks.engines.inputs import ROWS_MAX_FILL
from elm_neuro.networks.engines.lif_contract import DENSE_REC_MAX
from elm_neuro.networks.registry import family_of
from elm_neuro.networks.synapses import resolve_impl

#: Bytes a forward spends per synapse on its tables (effective weight, the synapse lists by source
#: and by target with their sort orders, the index masks the lists are cut with).
TABLE_BYTES = 64
#: Bytes of the connectome per synapse (int64 source indices).
CONNECTOME_BYTES = 8
#: Per-step ELM path: values per (step, neuron, sample) besides D, M and H (readout, high-pass,
#: output, their intermediate sums), and per recurrent synapse on the dense kernel (the sources it
#: selects each step and their weighted copy).
STEP_BASE = 5
STEP_DENSE_REC = 2
#: Per-step ELM path: resident memory over the tensors it saves (measured 1.3-1.5): a step makes
#: many small tensors, and the allocator keeps the blocks the step's graph frees for reuse.
STEP_RESIDENT = 1.4
#: LSTM: values kept per hidden unit, step and sample (four gates, cell, tanh(cell), output...).
LSTM_VALUES = 20
#: The estimate against a measured training step (tests/test_memory.py): measured / estimated
#: lies within [1 / ESTIMATE_FACTOR, ESTIMATE_FACTOR].
ESTIMATE_FACTOR = 2.0


class ModelMemory(NamedTuple):
    """Bytes of one training step of a network (module docstring)."""

    parameters: int
    structure: int
    activations: int
    workspace: int

    @property
    def total(self) -> int:
        return sum(self)


class _Layer(NamedTuple):
    structure: float  # bytes
    saved: float  # kept for backward during the whole backward pass (outputs included)
    backward: float  # gradient sequences while this layer's backward runs
    engine: float  # the CPU engine's arrays of a forward (saved) from its workspace


def _itemsize(dtype_bytes: int) -> int:
    if dtype_bytes not in (2, 4, 8):
        raise ValueError(f"dtype_bytes must be 2, 4 or 8, got {dtype_bytes}")
    return dtype_bytes


def elm_layer(c, n_src: int, n: int, batch: int, steps: int, *, cuda: bool, sparse_input: bool,
              input_grad: bool, impl: str = "auto", fb: int = 4) -> _Layer:
    """One ELM layer (``c``: an ``ELMLayerConfig``) of ``n`` neurons reading ``n_src`` sources."""
    k, d, m, o = c.k, c.d_tree, c.d_m, c.d_o
    two = c.mlp_layers >= 1
    h = c.mlp_width if two else 0
    h1 = h if two else m
    syn = n * k
    syn_in = syn * (1.0 - (c.rho if o == 1 else 0.0))
    dense = resolve_impl(impl, n_src, n * d) == "dense"
    dense_map = float(fb) * n_src * n * d
    tnb = float(steps) * n * batch
    structure = (CONNECTOME_BYTES + TABLE_BYTES) * syn
    fused = c.engine != "step" and elm_fused_unsupported(c) is None and fb in (4, 8)  # float16 / bfloat16 step
    if fused:
        if sparse_input and not cuda:
            form = "events"
        elif not cuda and (k * (syn_in / max(syn, 1))) / max(1, n_src * d) <= ROWS_MAX_FILL:
            form = "rows"
        else:
            form = "drive"
        saved = fb * tnb * (2 * o + 4 * m + d + 2 * h + o)  # + the layer's output [B, T, N * O]
        g_drive = form == "drive" or (form == "events" and input_grad)
        back = fb * tnb * (h1 + (m if two else 0) + o + (d if g_drive else 0))
        if form == "rows":
            back += float(fb) * steps * n_src * batch
        if form == "drive":
            saved += fb * tnb * d  # the drive, alive while the engine runs
            structure += 2 * dense_map if dense else 12.0 * syn_in
        elif form == "events" and input_grad:
            structure += dense_map  # m_in, for the input's gradient
        engine = 0.0 if cuda else saved
    else:
        rec = STEP_DENSE_REC * (syn - syn_in) / n if dense else 0.0
        saved = STEP_RESIDENT * fb * tnb * (STEP_BASE * o + d + 4 * m + 2 * h + rec)
        back = STEP_RESIDENT * fb * tnb * d
        structure += 2 * dense_map if dense else 12.0 * syn_in
        engine = 0.0
    return _Layer(structure, saved, back, engine)


def lif_layer(c, n_src: int, n: int, rho: float, batch: int, steps: int, *, cuda: bool, impl: str = "auto",
              fb: int = 4) -> _Layer:
    """One LIF / adLIF layer (``c``: a ``LIFLayerConfig``) of ``n`` neurons reading ``n_src`` sources."""
    syn = n * c.n_synapses
    dense = resolve_impl(impl, n_src + n, n) == "dense"
    tnb = float(steps) * n * batch
    structure = (CONNECTOME_BYTES + 4 + TABLE_BYTES) * syn  # connectome, sign map, tables
    structure += 2.0 * fb * n_src * n if dense else 12.0 * syn  # input map and its gradient
    fused = c.engine != "step" and n * n <= DENSE_REC_MAX and fb in (4, 8)
    states = 2 + (2 if c.adaptive else 0) + (1 if c.refractory > 0 else 0)
    gather = 0 if dense else 1  # the currents, saved by the gather kernel
    if fused:
        structure += 3.0 * fb * n * n  # the dense recurrent map, its gradient, its scatter buffer
        saved = fb * tnb * (states + gather)
        back = fb * tnb * 3  # the currents' and the spikes' gradients, the membrane's
        engine = 0.0  # the LIF engine allocates its arrays itself (no workspace)
    else:
        if dense and rho > 0:
            structure += 2.0 * fb * n * n
        saved = fb * tnb * (states + 1 + (1 if c.refractory > 0 else 0) + gather)
        back = fb * tnb * 2
        engine = 0.0
    return _Layer(structure, saved, back, engine)


def _readout_linear(c: int, batch: int, steps: int, fb: int) -> _Layer:
    return _Layer(0.0, 2.0 * fb * batch * steps * c, float(fb) * batch * steps * c, 0.0)


def _embedding(cfg, batch: int, steps: int, fb: int) -> _Layer:
    """The embedded input: a new ``[B, T, n_in]`` tensor for one-hot tokens and scaled inputs."""
    if cfg.embedding == "none":
        return _Layer(0.0, 0.0, 0.0, 0.0)
    return _Layer(0.0, float(fb) * batch * steps * cfg.n_in, 0.0, 0.0)


def network_layers(cfg, batch: int, steps: int, cuda: bool = False, fb: int = 4) -> list[_Layer]:
    """The layers of a network configuration (any family), as :func:`model_memory` counts them."""
    family = family_of(cfg)
    sparse = True  # the tasks' inputs are spikes or one-hot tokens (events on the CPU)
    impl = getattr(cfg, "synapse_impl", "auto")
    emb = _embedding(cfg, batch, steps, fb)
    if family == "elm":
        return [emb,
                elm_layer(cfg.hidden, cfg.n_in, cfg.n, batch, steps, cuda=cuda, sparse_input=sparse,
                          input_grad=False, impl=impl, fb=fb),
                elm_layer(cfg.readout, cfg.n, cfg.n_classes, batch, steps, cuda=cuda, sparse_input=False,
                          input_grad=True, impl=impl, fb=fb),
                _readout_linear(cfg.n_classes, batch, steps, fb),
                _Layer(0.0, float(fb) * batch * steps * cfg.n, 0.0, 0.0)]  # relu(a) of the activity penalty
    if family == "elm-neuron":
        return [emb, elm_layer(cfg.layer(), cfg.n_in, 1, batch, steps, cuda=cuda, sparse_input=sparse,
                               input_grad=False, impl="dense", fb=fb)]
    if family in ("lif", "adlif"):
        hc, c = cfg.hidden, cfg.n_classes
        layers = [emb, lif_layer(hc, cfg.n_in, cfg.n, hc.rho, batch, steps, cuda=cuda, impl=impl, fb=fb)]
        if cfg.readout == "elm":
            layers += [elm_layer(cfg.elm_readout, cfg.n, c, batch, steps, cuda=cuda, sparse_input=True,
                                 input_grad=True, impl=impl, fb=fb), _readout_linear(c, batch, steps, fb)]
        elif cfg.readout == "leaky":
            syn = c * hc.n_synapses
            layers.append(_Layer((CONNECTOME_BYTES + 4 + TABLE_BYTES) * syn + 2.0 * fb * cfg.n * c,
                                 3.0 * fb * batch * steps * c, 2.0 * fb * batch * steps * c, 0.0))
        else:  # spiking output neurons, their spikes low-passed
            layers += [lif_layer(hc, cfg.n, c, cfg.readout_rho, batch, steps, cuda=cuda, impl=impl, fb=fb),
                       _Layer(0.0, float(fb) * batch * steps * c, float(fb) * batch * steps * c, 0.0)]
        return layers
    if family == "lstm":
        return [emb, _Layer(0.0, float(fb) * batch * steps * (LSTM_VALUES * cfg.n + cfg.n_in),
                            float(fb) * batch * steps * 4 * cfg.n, 0.0),
                _readout_linear(cfg.n_classes, batch, steps, fb)]
    raise ValueError(f"no memory model for network family {family!r}")


def model_memory(cfg, batch: int, steps: int, cuda: bool = False, dtype_bytes: int = 4,
                 workspace_bytes: int = ENGINE_WORKSPACE_BYTES) -> ModelMemory:
    """The memory of one training step of the network ``cfg`` on ``batch`` sequences of ``steps``
    steps (module docstring); ``cuda``: the model trains on a GPU (Triton engines, no workspace).
    Pure arithmetic on the configuration: nothing is built."""
    fb = _itemsize(dtype_bytes)
    for name, v in (("batch", batch), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    layers = network_layers(cfg, batch, steps, cuda, fb)
    params = cfg.budget().p * fb
    structure = sum(lay.structure for lay in layers)
    activations = sum(lay.saved for lay in layers) + max(lay.backward for lay in layers)
    engine = sum(lay.engine for lay in layers)  # forward arrays of the engines
    in_use = engine + max(lay.backward for lay in layers)
    workspace = 0.0 if cuda else min(engine, max(0.0, float(workspace_bytes) - in_use))
    return ModelMemory(int(params), int(structure), int(activations), int(workspace))
