"""The choice between a layer's fused sequence engine and its per-step path, made the same way by
every layer that has both (:class:`~elm_neuro.networks.elm_layer.ELMLayer`,
:class:`~elm_neuro.networks.lif_layer.LIFLayer`).

``cfg.engine``: ``step`` always steps; ``fused`` runs the engine and is an error for a
configuration it does not cover; ``auto`` runs the engine wherever it covers the configuration.
``record=True`` (internal traces, for analysis) always runs the per-step path.

Fallback. The engine's dispatch raises
:class:`~elm_neuro.networks.engines.backends.BackendUnusable` where its compiled backend cannot
run a call: it cannot be imported on the device, the configuration failed its first-use check,
or the kernel failed in this call (:mod:`elm_neuro.networks.engines.backends`; the warning,
:class:`~elm_neuro.networks.engines.backends.EngineFallbackWarning`, is given once there). A
layer on ``auto`` then runs this call on its per-step path and keeps to it from then on
(:attr:`engine_reason` gives the warning's reason; the call's dropout masks are drawn anew); a
layer on ``fused`` raises ``RuntimeError`` naming the reason. :attr:`engine_ran` says which path
and backend the last call took (config.json's ``runtime`` and the training's pace line record it).
"""
from __future__ import annotations

from typing import Optional

from elm_neuro.networks.engines.backends import BackendUnusable


class EngineChoice:
    """Mixin: :attr:`engine_reason`, :attr:`engine`, :attr:`engine_ran` and :meth:`forward` from
    the layer's ``cfg.engine``, its :meth:`fused_unsupported` and its ``forward_fused`` /
    ``forward_step`` (which records the backend it ran in ``self._engine_backend``)."""

    _engine_fallback: Optional[str] = None  # why the engine's backend cannot run this layer (module docstring)
    _engine_backend: Optional[str] = None  # the backend of the last fused call
    _engine_last: Optional[str] = None  # "fused" / "step": the path of the last call

    def fused_unsupported(self) -> Optional[str]:
        """Why the fused engine cannot run this layer's configuration (None when it can)."""
        raise NotImplementedError

    @property
    def engine_reason(self) -> Optional[str]:
        """Why this layer runs on the per-step path (None when it runs the fused engine)."""
        if self.cfg.engine == "step":
            return "engine = 'step' was chosen"
        reason = self.fused_unsupported()
        return reason if reason is not None else self._engine_fallback

    @property
    def engine(self) -> str:
        """``fused`` or ``step``: the path :meth:`forward` takes (``record=True`` always steps)."""
        reason = self.engine_reason
        if reason is not None and self.cfg.engine == "fused":
            raise ValueError(f"engine 'fused' does not cover this configuration: {reason}")
        return "step" if reason is not None else "fused"

    @property
    def engine_ran(self) -> Optional[str]:
        """The path of the last :meth:`forward` call in words: ``fused <backend>`` or ``step
        (<reason>)``; None before the first call."""
        if self._engine_last is None:
            return None
        if self._engine_last == "fused":
            return f"fused {self._engine_backend}"
        return f"step ({self.engine_reason or 'record=True: traces'})"

    def check_fused(self) -> None:
        """Raise when :meth:`forward_fused` cannot run this layer."""
        reason = self.fused_unsupported()
        if reason is not None:
            raise ValueError(f"the fused engine does not cover this configuration: {reason}")

    def forward(self, x, state=None, record: bool = False):
        """Run the layer over ``x`` ``[B, T, n_in]`` from ``state`` (zeros when None): the fused
        engine unless the configuration needs the per-step path (:attr:`engine`) or ``record``,
        or the engine's backend cannot run it (module docstring)."""
        if not record and self.engine == "fused":
            try:
                out = self.forward_fused(x, state)
            except BackendUnusable as e:
                if self.cfg.engine == "fused":
                    raise RuntimeError(f"engine 'fused' cannot run this layer: {e}") from e
                self._engine_fallback = str(e)
            else:
                self._engine_last = "fused"
                return out
        self._engine_last = "step"
        return self.forward_step(x, state, record)
