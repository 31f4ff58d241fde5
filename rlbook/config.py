"""Agent configurations: one validated dataclass shape for the hyperparameters of every agent.

Every agent in the book is built the same way, ``Agent(observation_space, action_space, config=None,
**overrides)``, from a dataclass that subclasses :class:`AgentConfig`. The base class gives each of them:

* ``seed`` and ``device`` fields;
* checks at construction: each field's type is read from its annotation (``int`` rejects ``True`` and
  ``1e4``, ``float`` rejects strings, NaN and infinities, ``Literal[...]`` names the allowed values,
  ``X | None`` allows ``None``), then the class's own range checks (:meth:`AgentConfig.validate`), so a bad
  value fails where it is written, with the field's name in the message;
* :meth:`AgentConfig.to_dict` / :meth:`AgentConfig.from_dict` (plain values: checkpoints, results files,
  the command line) and :meth:`AgentConfig.replace` (a copy with some fields changed, checked again);
* :meth:`AgentConfig.differences`, which checkpoints use to refuse a saved config that differs.

Defined in chapter 6 (DQN); chapter 12's command line turns these dataclasses into options.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import numpy as np

C = TypeVar("C", bound="AgentConfig")


# ---------------------------------------------------------------------- value checks
def _bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python ``int``; ``TypeError`` unless it is an integer (``True`` and ``1e4`` are not),
    ``ValueError`` outside ``[low, high]``. The messages name ``name``."""
    if _bool(value) or not isinstance(value, (int, np.integer)):
        hint = ""
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            hint = f" (a float: write {int(value):_})"
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}{hint}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_bounds_text(low, high)}, got {value}")
    return value


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite Python ``float``; ``TypeError`` unless it is a real number (``True`` and
    ``"1e-3"`` are not), ``ValueError`` when it is NaN, infinite or outside the bounds (``low_open`` /
    ``high_open`` exclude the bound itself)."""
    if _bool(value) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        if low is not None and high is not None:
            text = f"lie in {lo}{low:g}, {high:g}{hi}"
        elif low is not None:
            text = f"be {'>' if low_open else '>='} {low:g}"
        else:
            text = f"be {'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must {text}, got {value:g}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a Python ``bool``; ``TypeError`` for anything else (``1`` and ``"yes"`` included)."""
    if not _bool(value):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")
    return bool(value)


def check_seed(name: str, value: Any) -> int | None:
    """A seed: ``None`` or an integer in ``[0, 2**63)``."""
    if value is None:
        return None
    if _bool(value) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer or None, got {value!r} of type {type(value).__name__}")
    if not 0 <= value < 2**63:
        raise ValueError(f"{name} must be a non-negative integer (below 2**63) or None, got {value}")
    return int(value)


def _bounds_text(low, high) -> str:
    if low is not None and high is not None:
        return f"an integer in [{low}, {high}]"
    if low is not None:
        return f">= {low}"
    return f"<= {high}"


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is tuple:
        return "a sequence"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def check_annotated(name: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (``int``, ``float``, ``bool``, ``str``, ``Literal``,
    ``tuple[X, ...]``, unions with ``None``) and return it normalised (NumPy scalars to Python ones,
    lists and arrays to tuples). Raises ``TypeError`` / ``ValueError`` naming ``name``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise TypeError(f"{name} must be {_describe(tp)}, got None")
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return check_annotated(name, value, options[0])
        for option in options:
            try:
                return check_annotated(name, value, option)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"{name} must be {_describe(tp)}, got {value!r} of type {type(value).__name__}")
    if origin is Literal:
        allowed = get_args(tp)
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
        return value
    if tp is bool:
        return check_bool(name, value)
    if tp is int:
        return check_int(name, value)
    if tp is float:
        return check_float(name, value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r} of type {type(value).__name__}")
        return value
    if origin is tuple:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a sequence (tuple or list), got {value!r} of type "
                            f"{type(value).__name__}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_annotated(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{name} must have {len(args)} entries, got {len(value)}")
        return tuple(check_annotated(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    raise TypeError(f"cannot check {name} against the annotation {tp!r}")  # pragma: no cover - a config bug


# ---------------------------------------------------------------------- the base class
@dataclasses.dataclass(kw_only=True)
class AgentConfig:
    """The fields every agent has. Subclass it (``@dataclass(kw_only=True)``) for an agent's hyperparameters,
    give every field a docstring, and put range checks in :meth:`validate`."""

    seed: int | None = None
    """Seeds everything random inside the agent: initial weights, exploration, sampling (``None``: unseeded)."""
    device: str = "auto"
    """Where the agent's networks live: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            value = check_annotated(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        self.seed = check_seed("seed", self.seed)
        _check_device(self.device)
        self.validate()

    def validate(self) -> None:
        """Range checks beyond the types (override; raise ``ValueError`` naming the field)."""

    def __str__(self) -> str:
        """The fields, wrapped to lines of at most 76 characters (``print(config)`` in a notebook)."""
        items = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        lines, line = [], f"{type(self).__name__}("
        for i, item in enumerate(items):
            piece = item + ("," if i < len(items) - 1 else ")")
            if len(line) + 1 + len(piece) > 76 and not line.endswith("("):
                lines.append(line)
                line = "    " + piece
            else:
                line += ("" if line.endswith("(") else " ") + piece
        lines.append(line)
        return "\n".join(lines)

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), for checkpoints, results files and the command line."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build the config from :meth:`to_dict`'s output; unknown fields are an error (a typo would
        otherwise be ignored)."""
        if not isinstance(values, dict):
            raise TypeError(f"{cls.__name__}.from_dict takes a dict, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (and checked); an unknown field name is a ``TypeError``."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown {type(self).__name__} field(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def differences(self, other: AgentConfig | dict[str, Any], ignore: Sequence[str] = ("device",)) -> list[str]:
        """``"name: saved X vs Y"`` for every field where ``other`` (a config or its dict) differs from
        this one, apart from ``ignore``."""
        theirs = other.to_dict() if isinstance(other, AgentConfig) else dict(other)
        mine = self.to_dict()
        names = [n for n in {**mine, **theirs} if n not in ignore]
        return [f"{n}: saved {theirs.get(n)!r} vs {mine.get(n)!r}" for n in names if theirs.get(n) != mine.get(n)]

    @classmethod
    def build(cls: type[C], config: C | None, overrides: dict[str, Any]) -> C:
        """What agent constructors do with ``(config=None, **overrides)``: the default config (or the one
        given, which must be of this class) with the overrides applied."""
        if config is None:
            config = cls()
        elif not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}: {config!r}")
        return config.replace(**overrides) if overrides else config


def _type_hints(cls: type) -> dict[str, Any]:
    cache = cls.__dict__.get("_rlbook_hints")
    if cache is None:
        cache = typing.get_type_hints(cls)
        type.__setattr__(cls, "_rlbook_hints", cache)
    return cache


def _check_device(device: str) -> None:
    if device == "auto":
        return
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


__all__ = ["AgentConfig", "check_annotated", "check_bool", "check_float", "check_int", "check_seed"]
