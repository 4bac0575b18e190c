"""Shared behaviour of every configuration dataclass: JSON round trip and checked replacement."""
from __future__ import annotations

import dataclasses


class ConfigMixin:
    """``to_dict`` / ``from_dict`` / ``replace`` for a dataclass, rejecting unknown field names."""

    @classmethod
    def _check_fields(cls, names) -> None:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(names) - allowed)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(allowed)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        cls._check_fields(d)
        return cls(**d)

    def replace(self, **overrides):
        self._check_fields(overrides)
        return dataclasses.replace(self, **overrides)
