"""The choice between a layer's fused sequence engine and its per-step path, made the same way by
every layer that has both (:class:`~elm_neuro.networks.elm_layer.ELMLayer`,
:class:`~elm_neuro.networks.lif_layer.LIFLayer`).

``cfg.engine``: ``step`` always steps; ``fused`` runs the engine and is an error for a
configuration it does not cover; ``auto`` runs the engine wherever it covers the configuration.
``record=True`` (internal traces, for analysis) always runs the per-step path.
"""
from __future__ import annotations

from typing import Optional


class EngineChoice:
    """Mixin: :attr:`engine_reason`, :attr:`engine` and :meth:`forward` from the layer's
    ``cfg.engine``, its :meth:`fused_unsupported` and its ``forward_fused`` / ``forward_step``."""

    def fused_unsupported(self) -> Optional[str]:
        """Why the fused engine cannot run this layer (None when it can)."""
        raise NotImplementedError

    @property
    def engine_reason(self) -> Optional[str]:
        """Why this layer runs on the per-step path (None when it runs the fused engine)."""
        if self.cfg.engine == "step":
            return "engine = 'step' was chosen"
        return self.fused_unsupported()

    @property
    def engine(self) -> str:
        """``fused`` or ``step``: the path :meth:`forward` takes (``record=True`` always steps)."""
        reason = self.engine_reason
        if reason is not None and self.cfg.engine == "fused":
            raise ValueError(f"engine 'fused' does not cover this configuration: {reason}")
        return "step" if reason is not None else "fused"

    def check_fused(self) -> None:
        """Raise when :meth:`forward_fused` cannot run this layer."""
        reason = self.fused_unsupported()
        if reason is not None:
            raise ValueError(f"the fused engine does not cover this configuration: {reason}")

    def forward(self, x, state=None, record: bool = False):
        """Run the layer over ``x`` ``[B, T, n_in]`` from ``state`` (zeros when None): the fused
        engine unless the configuration needs the per-step path (:attr:`engine`) or ``record``."""
        if not record and self.engine == "fused":
            return self.forward_fused(x, state)
        return self.forward_step(x, state, record)
