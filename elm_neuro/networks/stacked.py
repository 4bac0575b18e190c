"""S ELM Networks of one shape as one network: ``stack_models([net_1, ..., net_S])``.

Seeds and sweep cells train many networks whose shapes agree and whose weights and connectomes
differ. Their neurons never interact, so S networks are one network of ``S N`` hidden and ``S C``
readout neurons whose connectome is block-diagonal: model ``s``'s input channel ``c`` becomes
channel ``s n_in + c``, its hidden neuron ``j`` neuron ``s N + j`` (and likewise in the readout).
Every per-neuron parameter of an ELM layer (synapse weights, MLPs, readout weights, bias, learnable
timescales) is stacked on the neuron axis, so one engine call (one Numba call on the CPU, one
launch of each kernel on a GPU) runs all S models; on a GPU the ``S N`` neurons fill streaming
multiprocessors that one model leaves idle (:mod:`elm_neuro.networks.engines.elm_triton_grid`).

:class:`StackedELMNetwork` takes inputs ``[S, B, T, C]`` (integer tokens ``[S, B, T]`` with the
one-hot embedding) or one ``[B, T, C]`` (tokens ``[B, T]``) that every model reads, and returns a
:class:`~elm_neuro.networks.common.NetworkOutput` whose logits are ``[S, B, T, K]`` and whose
regularisers are ``[S]`` tensors (model ``s``'s ``mlp`` and ``act``). Without dropout (or in eval
mode) its outputs and gradients are those of the S separate networks (tests: float64 to 1e-12);
with dropout each model draws its own masks, as the separate networks would, but from one draw
(other random numbers than S separate calls). :meth:`StackedELMNetwork.unstack` gives the S
networks back with the stacked module's current weights.

Training S models as one: the loss is the sum of the models' losses, so each parameter gets its
own model's gradient; an optimiser that treats every element alike (SGD, Adam) then takes each
model's own step, but a gradient clip by the global norm would couple the models (clip per model:
:meth:`StackedELMNetwork.model_parameters`).
"""
from __future__ import annotations

import copy
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from elm_neuro.networks.common import NetworkOutput, embed
from elm_neuro.networks.elm_layer import ELMLayer
from elm_neuro.networks.elm_network import ELMNetwork, NetworkState

_SAME_EXCEPT = ("seed",)  # configuration fields that may differ between stacked models


def _check_same_shape(nets: Sequence[ELMNetwork]) -> None:
    if len(nets) == 0:
        raise ValueError("stack_models needs at least one network, got none")
    for i, net in enumerate(nets):
        if not isinstance(net, ELMNetwork):
            raise TypeError(f"stack_models stacks ELMNetwork models; model {i} is a {type(net).__name__}")
    first = nets[0].cfg.replace(**{k: getattr(nets[0].cfg, k) for k in _SAME_EXCEPT})
    for i, net in enumerate(nets[1:], start=1):
        other = net.cfg.replace(**{k: getattr(nets[0].cfg, k) for k in _SAME_EXCEPT})
        if other != first:
            diff = [f for f in first.to_dict() if first.to_dict()[f] != other.to_dict()[f]]
            raise ValueError(f"stack_models needs networks of one configuration (all but {list(_SAME_EXCEPT)}); "
                             f"model {i} differs from model 0 in {diff}")
    dtypes = {p.dtype for net in nets for p in net.parameters()}
    devices = {p.device for net in nets for p in net.parameters()}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(f"stack_models needs the networks on one dtype and device, got {sorted(map(str, dtypes))} "
                         f"on {sorted(map(str, devices))}")


def _block_connectome(layers: Sequence[ELMLayer]) -> torch.Tensor:
    """The block-diagonal connectome of S layers: model ``s``'s input ``c`` -> ``s n_in + c``, its
    neuron ``j`` (source ``n_in + j``) -> ``S n_in + s N + j``."""
    s_count, n_in, n = len(layers), layers[0].n_in, layers[0].n
    rows = []
    for s, layer in enumerate(layers):
        conn = layer.connectome
        rows.append(torch.where(conn < n_in, conn + s * n_in, conn - n_in + s_count * n_in + s * n))
    return torch.cat(rows, dim=0)


def _stack_layer(layers: Sequence[ELMLayer]) -> ELMLayer:
    """One ELM layer holding the S layers' neurons (block-diagonal connectome, stacked parameters)."""
    first = layers[0]
    s_count = len(layers)
    merged = ELMLayer(first.cfg, s_count * first.n_in, s_count * first.n, connectome=_block_connectome(layers),
                      synapse_impl=first.synapse_impl)
    params = dict(merged.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            p.data = torch.cat([dict(layer.named_parameters())[name].detach() for layer in layers], dim=0).clone()
        if not first.cfg.learn_tau:
            taus = [layer.tau_fixed for layer in layers]
            if any(not torch.equal(t, taus[0]) for t in taus[1:]):
                raise ValueError("stack_models: the models' fixed timescales differ")
            merged.tau_fixed = taus[0].clone()
    return merged.to(device=first.w_s.device)


class StackedELMNetwork(nn.Module):
    """S ELM Networks of one configuration run as one (module docstring). Build with
    :func:`stack_models`."""

    def __init__(self, nets: Sequence[ELMNetwork]) -> None:
        super().__init__()
        _check_same_shape(nets)
        self.count = len(nets)
        self.cfg = nets[0].cfg
        self.__dict__["_templates"] = [copy.deepcopy(net).cpu() for net in nets]  # for unstack (not submodules)
        self.hidden = _stack_layer([net.hidden for net in nets])
        self.readout = _stack_layer([net.readout for net in nets])
        self.out_weight = nn.Parameter(torch.stack([net.out.weight.detach() for net in nets]).clone())  # [S, K, C]
        self.out_bias = nn.Parameter(torch.stack([net.out.bias.detach() for net in nets]).clone())  # [S, K]

    def initial_state(self, batch: int, device=None) -> NetworkState:
        return NetworkState(self.hidden.initial_state(batch, device), self.readout.initial_state(batch, device))

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the stacked hidden layer reads it: ``[B, T, S n_in]``."""
        cfg, s_count = self.cfg, self.count
        token = cfg.embedding == "one_hot"
        shared = x.dim() == (2 if token else 3)
        if not shared and (x.dim() != (3 if token else 4) or x.shape[0] != s_count):
            want = "[S, B, T] or [B, T] tokens" if token else "[S, B, T, n_in] or [B, T, n_in]"
            raise ValueError(f"stacked input must be {want} with S = {s_count}, got {list(x.shape)}")
        dtype = self.out_weight.dtype
        if shared:
            e = embed(x, cfg.embedding, cfg.embed_scale, cfg.n_in, dtype=dtype)  # [B, T, n_in]
            return e.repeat(1, 1, s_count)
        e = torch.stack([embed(xs, cfg.embedding, cfg.embed_scale, cfg.n_in, dtype=dtype) for xs in x.unbind(0)])
        b, t = e.shape[1], e.shape[2]
        return e.permute(1, 2, 0, 3).reshape(b, t, s_count * cfg.n_in)

    def forward(self, x: torch.Tensor, state: Optional[NetworkState] = None, record: bool = False) -> NetworkOutput:
        """Logits ``[S, B, T, K]``; regularisers ``mlp`` and ``act`` as ``[S]`` tensors; the state
        and traces of the stacked layers (model ``s``'s neurons are ``s N .. (s + 1) N - 1``)."""
        s_count, n, k = self.count, self.cfg.n, self.cfg.n_classes
        hs, rs = (None, None) if state is None else state
        hid = self.hidden(self._inputs(x), hs, record)
        ro = self.readout(hid.y, rs, record)
        b, t = ro.y.shape[0], ro.y.shape[1]
        r = ro.y.reshape(b, t, s_count, k).permute(2, 0, 1, 3)  # [S, B, T, K]
        logits = torch.einsum("sbtc,skc->sbtk", r, self.out_weight) + self.out_bias[:, None, None, :]
        l_mlp = hid.z_abs_mean.reshape(b, s_count, n).square().mean(dim=2).mean(dim=0)
        l_act = F.relu(hid.y).reshape(b, t, s_count, n).mean(dim=(0, 1, 3))
        traces = {"hidden": hid.traces, "readout": ro.traces} if record else None
        return NetworkOutput(logits, NetworkState(hid.state, ro.state), {"mlp": l_mlp, "act": l_act}, traces)

    def model_parameters(self, s: int) -> Iterator[tuple]:
        """Where model ``s`` lives in the stacked parameters: ``(stacked parameter, index)`` pairs, in
        the order of the model's own ``parameters()``; ``p[index]`` is the model's parameter and
        ``p.grad[index]`` its gradient (e.g. for a per-model gradient clip)."""
        n, k = self.cfg.n, self.cfg.n_classes
        for layer, width in ((self.hidden, n), (self.readout, k)):
            for p in layer.parameters():
                yield p, slice(s * width, (s + 1) * width)
        yield self.out_weight, s
        yield self.out_bias, s

    def unstack(self) -> list[ELMNetwork]:
        """The S networks with the stacked module's current weights (new modules on its device and dtype)."""
        nets = []
        like = self.out_weight
        for s, template in enumerate(self._templates):
            net = copy.deepcopy(template).to(device=like.device, dtype=like.dtype)
            with torch.no_grad():
                for (p, idx), q in zip(self.model_parameters(s), net.parameters()):
                    q.copy_(p[idx])
            net.train(self.training)
            nets.append(net)
        return nets


def stack_models(nets: Sequence[ELMNetwork]) -> StackedELMNetwork:
    """``S`` ELM Networks of one configuration (seeds may differ) as one
    :class:`StackedELMNetwork` (module docstring); :meth:`~StackedELMNetwork.unstack` gives them back."""
    stacked = StackedELMNetwork(list(nets))
    stacked.train(nets[0].training)
    return stacked
