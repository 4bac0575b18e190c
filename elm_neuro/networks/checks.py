"""Validators and the behaviour every configuration dataclass shares.

Validators raise ``ValueError`` naming the field and what was expected.

:class:`ConfigMixin` gives a configuration dataclass a JSON round trip and checked replacement,
and lets configurations *compose*: a network configuration holds its layers' configurations as
fields (e.g. ``ELMNetworkConfig.hidden`` is an :class:`~elm_neuro.networks.elm_config.ELMLayerConfig`)
instead of re-declaring their fields. Three ways to name a field:

- a field of the configuration itself: ``cfg.replace(n=57)``;
- a dotted path into a nested configuration: ``cfg.replace(**{"hidden.d_m": 9})``;
- a *flat name* (``FLAT``: a class attribute mapping a name to one or more dotted paths), the
  vocabulary of presets, ``--set FIELD=VALUE``, sweep tables and run directories written before
  configurations composed: ``cfg.replace(d_m=9)`` sets ``hidden.d_m``; a name shared by several
  layers (``d_tree`` of the ELM Network: hidden and readout layer) sets every path it maps to.

Reading ``cfg.d_m`` (a flat name that is not a field) reads the first path it maps to.
``to_dict`` is nested; ``from_dict`` takes nested dicts and flat names alike, so run directories
and tables of either form load.

Requests from outside (``--set FIELD=VALUE``, whose VALUE is JSON when it parses and a string
otherwise) are checked against the fields' declared types by :meth:`ConfigMixin.check_types`
before they are applied, so that a value of the wrong type (``d_m=abc``, ``learn_tau=yes``) is
refused naming the field, the value and the type, whether or not the field's own validator would
have caught it; :meth:`ConfigMixin.same_field` tells whether two names address one field.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, ClassVar


def check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_finite(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0{' or None' if allow_none else ''}, got {value!r}")


def check_prob(name: str, value: Any, hi_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value and (
        value < 1.0 if hi_open else value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must lie in {'[0, 1)' if hi_open else '[0, 1]'}, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_range(lo_name: str, lo: Any, hi_name: str, hi: Any, positive: bool) -> None:
    check = check_positive if positive else check_finite
    check(lo_name, lo)
    check(hi_name, hi)
    if lo > hi:
        raise ValueError(f"{lo_name} must be <= {hi_name}, got {lo_name}={lo} > {hi_name}={hi}")


EMBEDDINGS = ("none", "scaled", "one_hot")  # input embeddings of every network family


def check_io_fields(cfg: Any) -> None:
    """The fields every network configuration has: ``n_in``, ``n_classes``, ``embedding``,
    ``embed_scale``, ``seed`` (and ``n`` where it is a field)."""
    check_int("n_in", cfg.n_in, 1)
    if "n" in getattr(cfg, "__dataclass_fields__", {}):
        check_int("n", cfg.n, 1)
    check_int("n_classes", cfg.n_classes, 1)
    check_choice("embedding", cfg.embedding, EMBEDDINGS)
    check_finite("embed_scale", cfg.embed_scale)
    check_int("seed", cfg.seed, 0)


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a JSON object",
               type(None): "null"}


def _accepts(hint, value) -> bool:
    """Whether ``value`` (as JSON gives it) has the declared type ``hint`` (ints pass for floats;
    booleans are not numbers)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, ConfigMixin):
        return isinstance(value, (dict, hint))
    return True  # Any and other annotations: the field's validator decides


def _type_words(hint) -> str:
    """``an integer``, ``a number or null``... for a declared type."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_type_words(arg) for arg in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, ConfigMixin):
        return f"a {hint.__name__} (a JSON object)"
    return _TYPE_WORDS.get(hint if origin is None else origin, str(hint))


def _nested_type(cls, name: str):
    """The configuration class of field ``name`` when it is a nested configuration, else None."""
    default = cls.__dataclass_fields__[name].default_factory
    if default is dataclasses.MISSING:
        return None
    probe = default()
    return type(probe) if isinstance(probe, ConfigMixin) else None


def _replace_nested(cls, sub, head: str, fields: dict, given: dict):
    """``sub.replace(**fields)``; an error names the nested path and the names the caller gave."""
    try:
        return sub.replace(**fields)
    except ValueError as exc:
        names = ", ".join(f"{k}={v!r}" for k, v in given.items()
                          if any(p.split(".")[0] == head for p in cls._paths(k)))
        raise ValueError(f"{head}.{exc}" + (f" (from {names})" if names else "")) from None


class ConfigMixin:
    """``to_dict`` / ``from_dict`` / ``replace`` / flat names for a (possibly nested) dataclass."""

    FLAT: ClassVar[dict[str, tuple[str, ...]]] = {}

    # ----------------------------------------------------------------- names
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def flat_names(cls) -> tuple[str, ...]:
        """Every name ``replace`` takes besides dotted paths: own scalar fields, then ``FLAT``."""
        own = tuple(n for n in cls.field_names() if _nested_type(cls, n) is None)
        return own + tuple(n for n in cls.FLAT if n not in own)

    @classmethod
    def _paths(cls, name: str) -> tuple[str, ...]:
        if name in cls.__dataclass_fields__:
            return (name,)
        if name in cls.FLAT:
            return cls.FLAT[name]
        if "." in name:
            head, rest = name.split(".", 1)
            sub = _nested_type(cls, head) if head in cls.__dataclass_fields__ else None
            if sub is not None:
                sub._paths(rest)  # raises on an unknown tail
                return (name,)
        raise ValueError(f"unknown {cls.__name__} field(s) [{name!r}]; allowed: {sorted(cls.flat_names())} "
                         f"or a dotted path into {[n for n in cls.field_names() if _nested_type(cls, n)]}")

    @classmethod
    def field_type(cls, name: str):
        """The declared type of the field a name (own, dotted or flat) addresses (its first path)."""
        head, _, rest = cls._paths(name)[0].partition(".")
        if rest:
            return _nested_type(cls, head).field_type(rest)
        return typing.get_type_hints(cls)[head]

    @classmethod
    def check_types(cls, values: dict) -> None:
        """``ValueError`` naming the field, the value and the expected type for the first value of
        ``values`` (names as :meth:`replace` takes them) whose type is not the field's."""
        for name, value in values.items():
            hint = cls.field_type(name)
            if not _accepts(hint, value):
                got = f"the string {value!r}" if isinstance(value, str) else repr(value)
                raise ValueError(f"{name} must be {_type_words(hint)}, got {got}")

    @classmethod
    def same_field(cls, a: str, b: str) -> bool:
        """Whether names ``a`` and ``b`` (own, dotted or flat) address a common field."""
        return bool(set(cls._paths(a)) & set(cls._paths(b)))

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: read a flat name through to its first path.
        flat = type(self).__dict__.get("FLAT") or getattr(type(self), "FLAT", {})
        if name.startswith("_") or name not in flat:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        obj = self
        for part in flat[name][0].split("."):
            obj = object.__getattribute__(obj, part)
        return obj

    # ----------------------------------------------------------------- replace / round trip
    @classmethod
    def _group(cls, values: dict) -> tuple[dict, dict]:
        """Split names into own-field values and per-nested-field overrides (dotted tails)."""
        own: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            for path in cls._paths(name):
                head, _, rest = path.partition(".")
                sub = _nested_type(cls, head)
                if rest:
                    nested.setdefault(head, {})[rest] = value
                elif sub is not None and isinstance(value, dict):
                    own[head] = sub.from_dict(value)
                else:
                    own[head] = value
        return own, nested

    def replace(self, **overrides):
        """A copy with ``overrides`` applied (own fields, dotted paths or flat names; checked)."""
        own, nested = self._group(overrides)
        for head, fields in nested.items():
            own[head] = _replace_nested(type(self), own.get(head, getattr(self, head)), head, fields, overrides)
        return dataclasses.replace(self, **own)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """From ``to_dict`` output (nested), flat names, or a mix; unknown names raise.

        Flat names apply on top of the defaults of the nested configurations; the object is
        built (and checked) once, with every value in place.
        """
        own, nested = cls._group(d)
        for head, fields in nested.items():
            base = own[head] if head in own else cls.__dataclass_fields__[head].default_factory()
            own[head] = _replace_nested(cls, base, head, fields, d)
        return cls(**own)

    @classmethod
    def make(cls, **fields):
        """The default configuration with ``fields`` applied (own, dotted or flat names)."""
        return cls.from_dict(fields)

    def flat(self) -> dict:
        """One value per flat name (a table row): own scalar fields and ``FLAT`` names."""
        out = {}
        for name in self.flat_names():
            out[name] = getattr(self, name)
        return out
