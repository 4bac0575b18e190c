"""Plumbing every network family shares: input embedding, variational dropout masks, the one
network output type, state detaching, input-shape checks and first-order leaky integration.

Every network's ``forward(x, state=None, record=False)`` returns :class:`NetworkOutput`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F

from elm_neuro.networks.checks import EMBEDDINGS
from elm_neuro.networks.presets import preset_fields


class NetworkOutput(NamedTuple):
    """What every network returns."""

    logits: torch.Tensor  # [B, T, C]
    state: Any  # the family's final state; pass it back in to continue the sequences
    regularizers: dict  # name -> scalar tensor (ELM: "mlp", "act"; spiking: "spike"; LSTM: none)
    traces: Optional[dict]  # {"hidden": {...}, "readout": {...}} when record=True, else None


def embed(x: torch.Tensor, kind: str, scale: float, n_in: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Input embedding in ``dtype`` (a network passes its parameters' dtype): ``none`` (cast),
    ``scaled`` (x*scale), ``one_hot`` (integer tokens ``[B, T]`` -> one-hot*scale)."""
    if kind == "one_hot":
        if x.dim() != 2:
            raise ValueError(f"one_hot embedding takes integer tokens [B, T], got shape {list(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= n_in):
            raise ValueError(f"tokens must lie in 0..{n_in - 1} (n_in - 1), got range {int(x.min())}..{int(x.max())}")
        return F.one_hot(x.long(), n_in).to(dtype) * scale
    if kind == "scaled":
        return x.to(dtype) * scale
    if kind == "none":
        return x.to(dtype)
    raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {kind!r}")


def check_input(x: torch.Tensor, n_in: int) -> None:
    if x.dim() != 3 or x.shape[-1] != n_in:
        raise ValueError(f"input must be [B, T, n_in={n_in}], got {list(x.shape)}")


def variational_mask(batch: int, width: int, p: float, like: torch.Tensor) -> Optional[torch.Tensor]:
    """Keep-mask ``[B, width]`` scaled by ``1/(1-p)``; ``None`` when ``p == 0``.

    Variational dropout: one mask per sample per ``forward`` call, the same at every step."""
    if p <= 0.0:
        return None
    keep = torch.empty(batch, width, device=like.device, dtype=like.dtype).bernoulli_(1.0 - p)
    return keep / (1.0 - p)


def dropout_masks(training: bool, x: torch.Tensor, n_in: int, p_in: float, n_rec: int, p_rec: float):
    """``(mask_in [B, n_in], mask_rec [B, n_rec])`` in training mode (None when off / in eval)."""
    if not training:
        return None, None
    bsz = x.shape[0]
    return variational_mask(bsz, n_in, p_in, x), variational_mask(bsz, n_rec, p_rec, x)


def detach_state(state):
    """A copy of a (nested) state with every tensor detached: carry it across BPTT chunks."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple):
        vals = [detach_state(s) for s in state]
        return type(state)(*vals) if hasattr(state, "_fields") else tuple(vals)
    return state


def state_to(state, dtype: torch.dtype):
    """A state named tuple with every tensor field cast to ``dtype`` (None fields stay None)."""
    return type(state)(*(None if t is None else t.to(dtype) for t in state))


def leaky_integrate(drive: torch.Tensor, o_prev: torch.Tensor, kappa: float, gain: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``o_t = kappa o_{t-1} + gain d_t`` over ``drive`` ``[B, T, C]``; returns ``(o [B, T, C], o_T)``."""
    o, outs = o_prev, []
    for d in drive.unbind(1):
        o = kappa * o + (d if gain == 1.0 else gain * d)
        outs.append(o)
    return torch.stack(outs, dim=1), o


class PresetBuilt:
    """``from_preset`` and ``budget`` for a network module whose config class is ``CONFIG`` and
    which builds the families ``FAMILIES``."""

    CONFIG: type
    FAMILIES: tuple[str, ...]

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """The network of preset ``name`` with ``overrides`` (flat names) applied."""
        family, fields = preset_fields(name)
        if family not in cls.FAMILIES:
            raise ValueError(f"preset {name!r} is a {family!r} preset; {cls.__name__} builds {list(cls.FAMILIES)}")
        return cls(make_config(cls.CONFIG, name, fields, overrides))

    def budget(self):
        """Exact trainable-parameter count (``Budget(n, k_e, k_c, p)``), from the configuration."""
        return self.cfg.budget()


def make_config(config_cls: type, preset: str, fields: dict, overrides: dict):
    """``config_cls`` defaults with the preset's ``fields``, then the caller's ``overrides`` applied
    errors name the preset."""
    try:
        return config_cls.make(**fields).replace(**overrides) if overrides else config_cls.make(**fields)
    except ValueError as exc:
        raise ValueError(f"{exc} (preset {preset!r})") from None
