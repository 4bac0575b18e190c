"""LIF networks to and from NIR, the Neuromorphic Intermediate Representation (pip ``nir``).

``to_nir(net_or_layer, *, discretisation="exact", dt_s=None) -> nir.NIRGraph``
``from_nir(graph, *, discretisation=None, dt_s=None) -> LIFNetwork``
``lif_layer_from_nir(graph, *, discretisation=None, dt_s=None) -> LIFLayer``

The graph of a :class:`~elm_neuro.networks.lif_network.LIFNetwork` with the leaky readout::

    input (n_in) -> w_in: Linear [N, n_in] -> lif: LIF [N] -> w_out: Affine [C, N] -> li: LI [C] -> output (C)
                                              lif -> w_rec: Linear [N, N] -> lif

``w_in`` / ``w_rec`` are the hidden layer's sparse connectome written densely (the effective
weights, Dale's signs applied; duplicate synapses add up; ``w_rec`` only when the connectome has
recurrent synapses), ``w_out`` the readout's connectome and bias. A :class:`LIFLayer` alone is the
same graph with ``lif -> output``.

Continuous time. NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``, spiking when ``v > v_threshold``
and then set to ``v_reset``; its LI is ``tau do/dt = (v_leak - o) + r I``. The network's step
(:mod:`elm_neuro.neurons.lif`) is ``v_t = kappa v_{t-1} + g I_t`` with ``kappa = exp(-dt / tau_m)``
and the hard reset to 0, the readout's ``o_t = kappa_o o_{t-1} + (1 - kappa_o) (W s_t + b)``. A
simulator turns the ODE back into a step of width ``dt_s`` (the graph's time step, recorded in
``graph.metadata["dt_s"]``, seconds) by one of two rules, and the export writes the parameters
that make that rule give the network's step exactly (``metadata["discretisation"]``):

- ``exact`` (default; zero-order hold, the exact solution for a current constant over the step):
  ``kappa = exp(-dt_s / tau)``, input factor ``r (1 - kappa)``: ``tau = tau_m`` in seconds,
  ``r = g / (1 - kappa)``;
- ``euler`` (forward Euler, what snntorch's importer simulates, with its fixed step 1e-4 s):
  ``kappa = 1 - dt_s / tau``, input factor ``r dt_s / tau``: ``tau = dt_s / (1 - kappa)``,
  ``r = g / (1 - kappa)`` (= ``tau / dt_s`` for the unit gain, the only ``r`` snntorch accepts).

The two readings of one graph differ by ``exp(-x)`` against ``1 - x`` in the decay per step,
``x = dt_s / tau``: about ``x^2 / 2`` (0.5 % of the decay at ``x`` = 0.1), so a graph should be
simulated by the rule it was written for. ``v_leak`` and ``v_reset`` are 0, ``v_threshold`` the
layer's threshold, the readout's ``r`` 1. ``dt_s`` defaults to the network's ``dt`` read as
milliseconds (the unit of the package's presets and trainer, where ``dt`` is the bin width);
``metadata`` also records the network's own ``dt`` (``source_dt``), the package version and
whether the timescales were learnable.

Import (:func:`from_nir`, :func:`lif_layer_from_nir`) reads graphs of this shape from any writer:
nested graphs (snntorch writes a recurrent LIF as a subgraph) are flattened, ``Affine`` and
``Linear`` are both accepted, a readout's ``r`` and ``v_leak`` are folded into its weights and
bias, a per-neuron hidden gain ``g = r (1 - kappa)`` or threshold into the rows of the hidden
weights (``current_gain`` "unit" when every ``g`` is 1, "leak" when every ``r`` is 1, else folded;
threshold 1 when the thresholds differ). ``dt_s`` and the discretisation come from the metadata or
the arguments (an argument wins; a graph without them, e.g. snntorch's, needs both: snntorch
writes ``euler`` at 1e-4 s). The network runs at ``dt = 1000 dt_s`` (ms), timescales
learnable unless the metadata says otherwise, in ``dtype`` (float32 unless given: the graph's
float64 values are rounded to it); its connectome has ``K`` = the most non-zero
weights of any hidden or readout row (shorter rows padded with zero-weight synapses).

What NIR cannot express is refused with a :class:`NIRUnsupported` (a ``ValueError``) naming it:
ELM layers and the ELM readout (no NIR primitive for an ELM neuron), the spiking readout, adLIF
(its adaptation reads the membrane potential, which no NIR node outputs), the subtractive reset
(NIR's LIF resets to ``v_reset``; train with ``reset="zero"``), a refractory period, the one-hot
embedding; on import, any node other than those above, a second LIF population, a bias into the
LIF, non-zero ``v_leak`` / ``v_reset`` of the LIF, readout timescales that differ between classes,
and shapes that do not chain (each message names the node and the sizes).
"""
from __future__ import annotations

import math
import sys
from typing import Optional

import numpy as np
import torch

from elm_neuro.networks import synapses as S
from elm_neuro.networks.lif_config import LIFLayerConfig, LIFNetworkConfig
from elm_neuro.networks.lif_layer import LeakyReadout, LIFLayer
from elm_neuro.networks.lif_network import LIFNetwork
from elm_neuro.neurons.elm import tau_bounds, tau_to_theta

DISCRETISATIONS = ("exact", "euler")
MS_PER_S = 1000.0
TOL = 1e-9  # relative tolerance of "every g is 1" / "every r is 1" / "one readout tau" on import


class NIRUnsupported(ValueError):
    """The network or graph holds something NIR (or this mapping) cannot express; the message names it."""


def _nir():
    try:
        import nir
    except ImportError:  # tests/test_interop_nir.py hides the package to check this message
        raise ImportError("NIR export and import need the nir package: pip install nir "
                          "(or pip install 'elm-neuro[nir]')") from None
    return nir


def _version() -> str:
    """The package version (written once, in ``elm_neuro/__init__.py``, which is always imported first)."""
    return sys.modules["elm_neuro"].__version__


# --------------------------------------------------------------------------- export
def _check_exportable(net) -> tuple[LIFLayer, Optional[LeakyReadout], LIFNetworkConfig | None]:
    if isinstance(net, LIFLayer):
        layer, readout, cfg = net, None, None
    elif isinstance(net, LIFNetwork):
        cfg = net.cfg
        if cfg.readout != "leaky":
            what = ("the ELM readout has no NIR primitive (an ELM neuron is an MLP with memory)" if cfg.readout == "elm"
                    else "the spiking readout (output LIF neurons and their low-pass) is not mapped")
            raise NIRUnsupported(f"to_nir: {what}; export a LIF network with readout='leaky'")
        if cfg.embedding == "one_hot":
            raise NIRUnsupported("to_nir: the one_hot embedding (integer tokens) has no NIR input node; "
                                 "NIR graphs take real-valued input channels")
        layer, readout = net.hidden, net.readout
    else:
        raise NIRUnsupported(f"to_nir takes a LIFNetwork or LIFLayer, got {type(net).__name__}"
                             + ("; ELM layers have no NIR primitive (an ELM neuron is an MLP with memory)"
                                if "ELM" in type(net).__name__ else ""))
    c = layer.cfg
    if c.adaptive:
        raise NIRUnsupported("to_nir: adLIF is not expressible in NIR: its adaptation w_t = kappa_w w + a v_{t-1} + "
                             "b s_{t-1} reads the membrane potential v, and no NIR node outputs a membrane potential")
    if c.reset != "zero":
        raise NIRUnsupported(f"to_nir: NIR's LIF resets the membrane to v_reset after a spike (a hard reset); this "
                             f"network subtracts theta_r (reset={c.reset!r}), which NIR cannot express: train with "
                             f"reset='zero' (--set reset=zero)")
    if c.refractory > 0:
        raise NIRUnsupported(f"to_nir: NIR's LIF has no refractory period; this network has refractory="
                             f"{c.refractory} steps")
    return layer, readout, cfg


def _dense_rows(connectome: torch.Tensor, w_eff: torch.Tensor, n_src: int) -> np.ndarray:
    """``[rows, n_src]`` float64: the ``K`` synapses of every row added into a dense matrix."""
    rows = connectome.shape[0]
    out = torch.zeros(rows, n_src, dtype=torch.float64)
    out.scatter_add_(1, connectome.cpu().long(), w_eff.detach().cpu().double())
    return out.numpy()


def _timescales(kappa: np.ndarray, tau_unit: np.ndarray, dt_s: float, dt: float, how: str) -> np.ndarray:
    if how == "exact":
        return tau_unit * (dt_s / dt)  # exp(-dt_s / tau) = exp(-dt / tau_m) = kappa
    return dt_s / (1.0 - kappa)


def to_nir(net, *, discretisation: str = "exact", dt_s: Optional[float] = None):
    """The NIR graph of a LIF network with the leaky readout, or of one LIF layer (module docstring)."""
    nir = _nir()
    if discretisation not in DISCRETISATIONS:
        raise ValueError(f"discretisation must be one of {DISCRETISATIONS}, got {discretisation!r}")
    layer, readout, cfg = _check_exportable(net)
    c = layer.cfg
    dt_s = c.dt / MS_PER_S if dt_s is None else float(dt_s)
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise ValueError(f"dt_s must be a finite number of seconds > 0, got {dt_s!r}")
    with torch.no_grad():
        tau_m = layer.tau_m.detach().cpu().double().clamp_min(1e-6).numpy()
        kappa = np.exp(-c.dt / tau_m)
        gain = np.ones_like(kappa) if c.current_gain == "unit" else 1.0 - kappa
        w = _dense_rows(layer.connectome, layer.effective_weights(), layer.n_in + layer.n)
    scale = cfg.embed_scale if cfg is not None and cfg.embedding == "scaled" else 1.0
    n_in, n = layer.n_in, layer.n
    nodes = {"input": nir.Input(input_type=np.array([n_in])),
             "w_in": nir.Linear(weight=w[:, :n_in] * scale),
             "lif": nir.LIF(tau=_timescales(kappa, tau_m, dt_s, c.dt, discretisation), r=gain / (1.0 - kappa),
                            v_leak=np.zeros(n), v_threshold=np.full(n, float(c.threshold)), v_reset=np.zeros(n))}
    edges = [("input", "w_in"), ("w_in", "lif")]
    if S.has_recurrent(layer.connectome, n_in):
        nodes["w_rec"] = nir.Linear(weight=w[:, n_in:])
        edges += [("lif", "w_rec"), ("w_rec", "lif")]
    if readout is None:
        nodes["output"] = nir.Output(output_type=np.array([n]))
        edges.append(("lif", "output"))
    else:
        k = readout.n
        with torch.no_grad():
            w_out = _dense_rows(readout.connectome, readout.effective_weights(), n)
            bias = readout.bias.detach().cpu().double().numpy()
        kappa_o = np.full(k, math.exp(-c.dt / readout.tau_out))
        nodes["w_out"] = nir.Affine(weight=w_out, bias=bias)
        nodes["li"] = nir.LI(tau=_timescales(kappa_o, np.full(k, readout.tau_out), dt_s, c.dt, discretisation),
                             r=np.ones(k), v_leak=np.zeros(k))
        nodes["output"] = nir.Output(output_type=np.array([k]))
        edges += [("lif", "w_out"), ("w_out", "li"), ("li", "output")]
    meta = {"dt_s": dt_s, "discretisation": discretisation, "source": f"elm_neuro {_version()}",
            "source_dt": float(c.dt), "learn_tau": bool(c.learn_tau)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


# --------------------------------------------------------------------------- import
def _flatten(graph, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges with nested graphs inlined (keys ``outer.inner``) and their own Input /
    Output passthroughs removed; the top level's Input / Output stay."""
    nir = _nir()
    nodes, edges = {}, []
    sub_in, sub_out = {}, {}
    for key, node in graph.nodes.items():
        name = prefix + key
        if isinstance(node, nir.NIRGraph):
            inner, inner_edges = _flatten(node, name + ".")
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise NIRUnsupported(f"from_nir: subgraph {name!r} has {len(ins)} Input and {len(outs)} Output nodes; "
                                     "expected one of each")
            i_key, o_key = f"{name}.{ins[0]}", f"{name}.{outs[0]}"
            sub_in[name] = [b for a, b in inner_edges if a == i_key]
            sub_out[name] = [a for a, b in inner_edges if b == o_key]
            nodes.update({k: v for k, v in inner.items() if k not in (i_key, o_key)})
            edges += [(a, b) for a, b in inner_edges if a != i_key and b != o_key]
        else:
            nodes[name] = node
    for a, b in graph.edges:
        a, b = prefix + a, prefix + b
        for src in sub_out.get(a, [a]):
            for dst in sub_in.get(b, [b]):
                edges.append((src, dst))
    return nodes, list(dict.fromkeys(edges))


def _size(node) -> int:
    t = node.input_type if hasattr(node, "input_type") else None
    return int(np.prod(next(iter(t.values())))) if t else -1


def _one(cands: list, what: str) -> str:
    if len(cands) != 1:
        raise NIRUnsupported(f"from_nir: expected exactly one {what}, found {len(cands)} ({cands})")
    return cands[0]


def _weight(nodes: dict, key: str, out: int, inp: int, role: str, bias_ok: bool) -> tuple[np.ndarray, np.ndarray]:
    nir = _nir()
    node = nodes[key]
    if not isinstance(node, (nir.Linear, nir.Affine)):
        raise NIRUnsupported(f"from_nir: node {key!r} ({type(node).__name__}) as the {role}; expected Linear or Affine")
    w = np.asarray(node.weight, dtype=np.float64)
    if w.shape != (out, inp):
        raise NIRUnsupported(f"from_nir: node {key!r} ({role}) has weight shape {list(w.shape)}; the graph needs "
                             f"[{out}, {inp}]")
    b = np.asarray(node.bias, dtype=np.float64).reshape(-1) if isinstance(node, nir.Affine) else np.zeros(out)
    if b.shape != (out,):
        raise NIRUnsupported(f"from_nir: node {key!r} ({role}) has bias shape {list(b.shape)}; expected [{out}]")
    if not bias_ok and np.any(b != 0):
        raise NIRUnsupported(f"from_nir: node {key!r} ({role}) adds a bias current into the LIF population; "
                             "elm_neuro's LIF neurons have none")
    return w, b


def _settings(graph, discretisation: Optional[str], dt_s: Optional[float]) -> tuple[str, float, bool]:
    meta = dict(getattr(graph, "metadata", None) or {})
    how = discretisation if discretisation is not None else meta.get("discretisation")
    dt = dt_s if dt_s is not None else meta.get("dt_s")
    if how is None or dt is None:
        missing = [n for n, v in (("discretisation", how), ("dt_s", dt)) if v is None]
        raise ValueError(f"from_nir: the graph does not record {' and '.join(missing)} (metadata); pass "
                         f"{', '.join(f'{m}=' for m in missing)} (snntorch writes discretisation='euler', dt_s=1e-4)")
    if how not in DISCRETISATIONS:
        raise ValueError(f"discretisation must be one of {DISCRETISATIONS}, got {how!r}")
    dt = float(np.asarray(dt).reshape(-1)[0])
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt_s must be a finite number of seconds > 0, got {dt!r}")
    return how, dt, bool(meta.get("learn_tau", True))


def _kappa(tau: np.ndarray, dt_s: float, how: str, key: str) -> np.ndarray:
    tau = np.asarray(tau, dtype=np.float64).reshape(-1)
    kappa = np.exp(-dt_s / tau) if how == "exact" else 1.0 - dt_s / tau
    if not np.all((kappa > 0) & (kappa < 1)):
        raise NIRUnsupported(f"from_nir: node {key!r}: tau gives a decay per step outside (0, 1) at dt_s {dt_s:g} s "
                             f"({how}); every tau must exceed {'0' if how == 'exact' else 'dt_s'}")
    return kappa


def _parse(graph, discretisation, dt_s, want_readout: bool) -> dict:
    nir = _nir()
    how, dt, learn_tau = _settings(graph, discretisation, dt_s)
    nodes, edges = _flatten(graph)
    allowed = (nir.Input, nir.Output, nir.Linear, nir.Affine, nir.LIF, nir.LI)
    for key, node in nodes.items():
        if not isinstance(node, allowed):
            raise NIRUnsupported(f"from_nir: node {key!r} is a {type(node).__name__}; elm_neuro reads Input, Linear, "
                                 f"Affine, one LIF population{', one LI readout' if want_readout else ''} and Output")
    succ = {k: [b for a, b in edges if a == k] for k in nodes}
    pred = {k: [a for a, b in edges if b == k] for k in nodes}
    lif = _one([k for k, v in nodes.items() if isinstance(v, nir.LIF)], "LIF population")
    src = _one([k for k, v in nodes.items() if isinstance(v, nir.Input)], "Input node")
    n_in, node = _size(nodes[src]), nodes[lif]
    n = int(np.asarray(node.tau).size)
    for name in ("r", "v_leak", "v_threshold", "v_reset"):
        if np.asarray(getattr(node, name)).size != n:
            raise NIRUnsupported(f"from_nir: node {lif!r}: {name} has {np.asarray(getattr(node, name)).size} "
                                 f"entries for {n} neurons")
    if np.any(np.asarray(node.v_leak) != 0) or np.any(np.asarray(node.v_reset) != 0):
        raise NIRUnsupported(f"from_nir: node {lif!r}: v_leak and v_reset must be 0 (elm_neuro's LIF rests at 0 and "
                             "resets to 0)")
    w_in_key = _one([p for p in pred[lif] if src in pred[p]], f"weight node from {src!r} into {lif!r}")
    w_in, _ = _weight(nodes, w_in_key, n, n_in, "input map", bias_ok=False)
    rec = [p for p in pred[lif] if p != w_in_key]
    w_rec = np.zeros((n, n))
    if rec:
        rec_key = _one(rec, f"recurrent weight node into {lif!r}")
        if pred[rec_key] != [lif]:
            raise NIRUnsupported(f"from_nir: node {rec_key!r} feeds {lif!r} from {pred[rec_key]}; a recurrent map "
                                 f"reads {lif!r} alone")
        w_rec, _ = _weight(nodes, rec_key, n, n, "recurrent map", bias_ok=False)
    kappa = _kappa(node.tau, dt, how, lif)
    out = {"how": how, "dt_s": dt, "learn_tau": learn_tau, "n_in": n_in, "n": n, "kappa": kappa,
           "gain": np.asarray(node.r, dtype=np.float64).reshape(-1) * (1.0 - kappa), "r": np.asarray(node.r, float),
           "threshold": np.asarray(node.v_threshold, dtype=np.float64).reshape(-1), "w": np.hstack([w_in, w_rec])}
    if not want_readout:
        return out
    readers = [s for s in succ[lif] if s not in rec]
    w_out_key = _one(readers, f"readout weight node after {lif!r}")
    li_key = _one(succ[w_out_key], f"node after {w_out_key!r}")
    li = nodes[li_key]
    if not isinstance(li, nir.LI):
        raise NIRUnsupported(f"from_nir: node {li_key!r} is a {type(li).__name__}; the readout is a leaky integrator "
                             f"(LI) after {w_out_key!r} (for the LIF population alone use lif_layer_from_nir)")
    k = int(np.asarray(li.tau).size)
    w_out, b_out = _weight(nodes, w_out_key, k, n, "readout map", bias_ok=True)
    dst = _one(succ[li_key], f"node after {li_key!r}")
    if not isinstance(nodes[dst], nir.Output) or _size(nodes[dst]) not in (k, -1):
        raise NIRUnsupported(f"from_nir: {li_key!r} ({k} outputs) must feed the Output node of {k} outputs, got "
                             f"{dst!r} ({type(nodes[dst]).__name__}, {_size(nodes[dst])})")
    kappa_o = _kappa(li.tau, dt, how, li_key)
    if np.ptp(kappa_o) > TOL * kappa_o.max():
        raise NIRUnsupported(f"from_nir: node {li_key!r}: the readout's timescales differ between outputs "
                             f"({np.min(li.tau):g}..{np.max(li.tau):g} s); elm_neuro's leaky readout has one tau_out")
    r_o = np.asarray(li.r, dtype=np.float64).reshape(-1)
    leak = np.asarray(li.v_leak, dtype=np.float64).reshape(-1)
    # o_t = kappa o + (1 - kappa) (v_leak + r (W s + b)): r and v_leak folded into W and b
    out.update(k=k, kappa_o=float(kappa_o[0]), w_out=w_out * r_o[:, None], b_out=r_o * b_out + leak)
    return out


def _sparse(dense: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(connectome [rows, k], weights [rows, k])``: each row's non-zero entries, padded with
    zero-weight synapses on source 0."""
    rows = dense.shape[0]
    conn = np.zeros((rows, k), dtype=np.int64)
    w = np.zeros((rows, k))
    for i in range(rows):
        idx = np.flatnonzero(dense[i])
        conn[i, :len(idx)], w[i, :len(idx)] = idx, dense[i, idx]
    return torch.from_numpy(conn), torch.from_numpy(w)


def _layer_fields(p: dict, k: int) -> tuple[dict, np.ndarray]:
    """The hidden layer's configuration fields and its dense weights with any gain / threshold folded in."""
    w, gain, theta = p["w"].copy(), p["gain"], p["threshold"]
    if np.all(np.abs(gain - 1.0) <= TOL):
        current_gain = "unit"
    elif np.all(np.abs(p["r"] - 1.0) <= TOL):
        current_gain = "leak"
    else:  # a LIF drive g I = sum (g w) v: the gain folded into the rows
        current_gain, w = "unit", w * gain[:, None]
    threshold = float(theta[0])
    if np.any(theta <= 0):
        raise NIRUnsupported("from_nir: v_threshold must be > 0 for every neuron")
    if np.ptp(theta) > TOL * theta.max():  # v > theta_n  <=>  v / theta_n > 1: fold per row
        w, threshold = w / theta[:, None], 1.0
    dt = p["dt_s"] * MS_PER_S
    tau = -dt / np.log(p["kappa"])
    n_rec = int(np.count_nonzero(w[:, p["n_in"]:]))
    rho = n_rec / max(1, np.count_nonzero(w))
    fields = dict(neuron="lif", n_synapses=k, rho=min(rho, 1.0), dt=dt, threshold=threshold, reset="zero",
                  refractory=0, current_gain=current_gain, tau_mem_min=float(tau.min()), tau_mem_max=float(tau.max()),
                  learn_tau=p["learn_tau"], dale=False)
    return fields, w


def _fill_layer(layer: LIFLayer, conn: torch.Tensor, w: torch.Tensor, tau: np.ndarray) -> None:
    with torch.no_grad():
        layer.connectome.copy_(conn)
        layer.w.copy_(w)
        tau_t = torch.from_numpy(tau)
        if layer.cfg.learn_tau:
            lo, hi = tau_bounds(layer.cfg.tau_mem_min, layer.cfg.tau_mem_max)
            layer.tau_m_theta.copy_(tau_to_theta(tau_t, lo, hi))
        else:
            layer.tau_m_fixed.copy_(tau_t)


def _k(*dense: np.ndarray) -> int:
    return max(1, *(int(np.count_nonzero(d, axis=1).max(initial=0)) for d in dense))


def lif_layer_from_nir(graph, *, discretisation: Optional[str] = None, dt_s: Optional[float] = None,
                       dtype: torch.dtype = torch.float32) -> LIFLayer:
    """The recurrent LIF population of ``graph`` with its input map, as a :class:`LIFLayer`
    (whatever reads its spikes is left out; module docstring)."""
    p = _parse(graph, discretisation, dt_s, want_readout=False)
    k = _k(p["w"])
    fields, w = _layer_fields(p, k)
    cfg = LIFLayerConfig.make(**fields)
    conn, wk = _sparse(w, k)
    layer = LIFLayer(cfg, p["n_in"], p["n"], cfg.rho, connectome=conn).to(dtype)
    _fill_layer(layer, conn, wk, -cfg.dt / np.log(p["kappa"]))
    return layer


def from_nir(graph, *, discretisation: Optional[str] = None, dt_s: Optional[float] = None,
             dtype: torch.dtype = torch.float32) -> LIFNetwork:
    """A :class:`LIFNetwork` with the leaky readout from ``graph`` (module docstring)."""
    p = _parse(graph, discretisation, dt_s, want_readout=True)
    k = _k(p["w"], p["w_out"])
    fields, w = _layer_fields(p, k)
    dt = fields.pop("dt")  # shared with the (unused) ELM readout's configuration: the flat name sets both
    cfg = LIFNetworkConfig.make(n_in=p["n_in"], n=p["n"], n_classes=p["k"], embedding="none", readout="leaky",
                                tau_out=-dt / math.log(p["kappa_o"]), dt=dt,
                                **{f"hidden.{name}": v for name, v in fields.items()})
    net = LIFNetwork(cfg).to(dtype)
    hidden = cfg.hidden
    conn, wk = _sparse(w, k)
    _fill_layer(net.hidden, conn, wk, -hidden.dt / np.log(p["kappa"]))
    conn_o, wk_o = _sparse(p["w_out"], k)
    with torch.no_grad():
        net.readout.connectome.copy_(conn_o)
        net.readout.w.copy_(wk_o)
        net.readout.bias.copy_(torch.from_numpy(p["b_out"]))
    return net


__all__ = ["DISCRETISATIONS", "NIRUnsupported", "from_nir", "lif_layer_from_nir", "to_nir"]
