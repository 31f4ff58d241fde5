"""Command-line options from agent configs: the same dataclass from a notebook, a script or a shell.

A notebook writes ``DQNConfig.cartpole(lr=3e-4)``; chapter 12's ``rlbook`` command line and the ``bench/``
scripts build that same dataclass from ``--lr 3e-4`` or ``--set lr=3e-4``. Nothing here knows any agent: every
option is read off the config class itself, the type from the field's annotation and the help from the field's
docstring (the string literal written under it)::

    parser = argparse.ArgumentParser()
    # --lr, --batch-size, ..., --set
    add_config_options(parser, DQNConfig, exclude=("seed", "device"))
    args = parser.parse_args()
    try:
        config = config_from_args(DQNConfig, args,
                                  base=DQNConfig.cartpole())
    except ConfigOptionError as e:
        parser.error(str(e))  # one line, exit status 2

The options store the text the user typed and :func:`config_from_args` converts it, so a bad value gives the
same kind of message whichever way it was given (``--lr abc: lr must be a number (float), got 'abc'``). Only the
fields the user set are applied: a preset ``base`` keeps its own values for the rest.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import re
import shlex
import textwrap
import types
import typing
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union, get_args, get_origin

from rlbook.config import AgentConfig, check_annotated

#: Prefix of the ``argparse`` destinations of the field options (``--lr`` stores into ``config__lr``), so that
#: they never clash with a script's own options.
DEST_PREFIX = "config__"
#: Destination of the ``--set KEY=VALUE`` option.
SET_DEST = "config_set"

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_NONE = ("none", "null")


class ConfigOptionError(ValueError):
    """A bad option for a config: the message is one line naming the option and what was expected."""


# ---------------------------------------------------------------------------------------------- docstrings
@functools.cache
def _field_help(config_class: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in config_class.__mro__:  # the most derived class first: a subclass's docstring wins
        if klass is object:
            continue
        for name, doc in _class_field_docs(klass).items():
            docs.setdefault(name, doc)
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(config_class)}


def _class_field_docs(klass: type) -> dict[str, str]:
    """The attribute docstrings written in ``klass``'s own body (not its bases'); empty without source."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:  # pragma: no cover - inspect found something that is not the class
        return {}
    body = next((node.body for node in tree.body if isinstance(node, ast.ClassDef) and node.name == klass.__name__),
                [])
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def field_help(config_class: type[AgentConfig]) -> dict[str, str]:
    """Field name -> its docstring (whitespace collapsed to one line), read from the source of the class and its
    bases (``ast`` over ``inspect.getsource``, cached), in field order; a field without a docstring maps to
    ``''``."""
    _check_config_class(config_class)
    return dict(_field_help(config_class))


# ---------------------------------------------------------------------------------------------- parsing
@functools.cache
def _hints(config_class: type) -> dict[str, Any]:
    return typing.get_type_hints(config_class)


def _field_names(config_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class)]


def _check_config_class(config_class: Any) -> None:
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise TypeError(f"config_class must be a config dataclass (an AgentConfig subclass), got {config_class!r}")


def _unknown_field(config_class: type, name: str, exclude: Iterable[str] = ()) -> ConfigOptionError:
    known = [n for n in _field_names(config_class) if n not in exclude]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "its fields: " + ", ".join(known)
    return ConfigOptionError(f"{config_class.__name__} has no field {name!r} ({hint})")


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _scalar_kind(tp: Any) -> bool:
    return tp in (int, float, bool, str) or get_origin(tp) is Literal


def _expected(tp: Any) -> str:
    """What the command line expects for annotation ``tp``, in words."""
    origin = get_origin(tp)
    if tp is int:
        return "an integer (int)"
    if tp is float:
        return "a number (float)"
    if tp is bool:
        return "true or false (also yes/no, 1/0, on/off)"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if _is_union(tp):
        return " or ".join("none" if a is type(None) else _expected(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and _scalar_kind(args[0]):
            return f"comma-separated values, each {_expected(args[0])}"
        if args and Ellipsis not in args and all(_scalar_kind(a) for a in args):
            return f"{len(args)} comma-separated values"
    return f"a Python literal for {tp!r}".replace("typing.", "")


def _convert(text: str, tp: Any) -> Any:
    """``text`` as a value of annotation ``tp``; ``ValueError`` (without a message) when it is not one."""
    origin = get_origin(tp)
    stripped = text.strip()
    if tp is str:
        return text
    if tp is bool:
        word = stripped.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError
    if tp is int:
        try:
            number = Decimal(stripped)
        except InvalidOperation:
            raise ValueError from None
        if not number.is_finite() or number != number.to_integral_value():
            raise ValueError
        return int(number)
    if tp is float:
        return float(stripped)
    if origin is Literal:
        for allowed in get_args(tp):
            try:
                value = _convert(text, type(allowed))
            except ValueError:
                continue
            if value == allowed:
                return allowed
        raise ValueError
    if _is_union(tp):
        args = get_args(tp)
        if type(None) in args and stripped.lower() in _NONE:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(text, option)
            except ValueError:
                continue
        raise ValueError
    if origin is tuple:
        args = get_args(tp)
        homogeneous = len(args) == 2 and args[1] is Ellipsis
        items = args[:1] if homogeneous else args
        if all(_scalar_kind(a) for a in items):
            inner = stripped
            if inner[:1] + inner[-1:] in ("()", "[]"):
                inner = inner[1:-1].strip()
            if not inner:
                return ()
            pieces = inner.split(",")
            if len(pieces) > 1 and not pieces[-1].strip():  # "64," is a one-element tuple
                pieces = pieces[:-1]
            kinds = [args[0]] * len(pieces) if homogeneous else list(args)
            if len(kinds) != len(pieces):
                raise ValueError
            return tuple(_convert(p, k) for p, k in zip(pieces, kinds))
    try:  # anything else (nested tuples): a Python literal, checked against the annotation afterwards
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError from None


def parse_field(config_class: type[AgentConfig], name: str, text: str) -> Any:
    """Convert the command-line string ``text`` to a value for field ``name`` by its annotation.

    ``int`` accepts ``10000``, ``10_000`` and ``1e4`` when it is an exact integer (``1.5`` and ``true`` are
    errors); ``float`` accepts ``1e-3``; ``bool`` accepts true/false, yes/no, 1/0, on/off (any case); ``str`` is
    taken as is; ``Literal[...]`` takes one of its values (ints or strings, as declared); ``X | None`` takes
    ``none`` / ``None`` / ``null`` for ``None``, else an ``X``; ``tuple[int, ...]`` takes comma-separated values
    (``64,64``; ``''`` or ``()`` is the empty tuple); any other annotation a Python literal. The value is then
    checked with :func:`rlbook.config.check_annotated` (types only: range checks are the config's ``validate``).

    Raises :class:`ConfigOptionError`: an unknown field (with the closest names), or a value that is not of the
    field's type (naming the field, the text and what was expected)."""
    _check_config_class(config_class)
    if not isinstance(text, str):
        raise TypeError(f"text must be the command line's string, got {text!r} of type {type(text).__name__}")
    name = name.strip().replace("-", "_")
    if name not in _field_names(config_class):
        raise _unknown_field(config_class, name)
    tp = _hints(config_class)[name]
    try:
        value = _convert(text, tp)
    except ValueError:
        raise ConfigOptionError(f"{name} must be {_expected(tp)}, got {text!r}") from None
    try:
        return check_annotated(name, value, tp)
    except (TypeError, ValueError) as exc:
        raise ConfigOptionError(_one_line(str(exc))) from None


# ---------------------------------------------------------------------------------------------- argparse
def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _metavar(tp: Any) -> str:
    origin = get_origin(tp)
    if tp in (int, float, bool):
        return tp.__name__.upper()
    if tp is str:
        return "TEXT"
    if origin is Literal:
        return "{" + ",".join(str(a) for a in get_args(tp)) + "}"
    if _is_union(tp):
        return "|".join("none" if a is type(None) else _metavar(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and _scalar_kind(args[0]):
            return f"{_metavar(args[0])},..."
        if args and Ellipsis not in args and all(_scalar_kind(a) for a in args):
            return ",".join(_metavar(a) for a in args)
    return "LITERAL"


def format_value(value: Any) -> str:
    """``value`` as it would be typed on the command line (``none``, ``true``, ``64,64``, ``()``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if not value:
            return "()"
        if all(not isinstance(v, (tuple, list)) for v in value):
            return ",".join(format_value(v) for v in value)
    return str(value)


def _plain_doc(doc: str) -> str:
    """A docstring without its reST markup, for ``--help``."""
    doc = re.sub(r":[a-z]+:`~?([^`<]*?)\s*<[^`]*>`", r"\1", doc)  # :meth:`text <target>` -> text
    doc = re.sub(r":[a-z]+:`~([^`]*\.)?([^`.]*)`", r"\2", doc)  # :class:`~a.b.C` -> C
    doc = re.sub(r":[a-z]+:`([^`]*)`", r"\1", doc)
    return doc.replace("``", "")


def _has_option(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def add_set_option(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup | None = None, *,
                   help: str | None = None) -> argparse.Action | None:
    """Add ``--set KEY=VALUE`` (repeatable) to ``group`` (or ``parser``) unless the parser has it already, with
    ``help`` or a generic help; the pairs are read by :func:`config_overrides`. Returns the new action, or
    ``None`` when there was one."""
    if _has_option(parser, "--set"):
        return None
    return (group or parser).add_argument(
        "--set", dest=SET_DEST, action="append", metavar="KEY=VALUE", default=argparse.SUPPRESS,
        help=help or "set a config field (repeatable; dashes or underscores), e.g. --set lr=1e-3 --set hidden=64,64")


def add_config_options(parser: argparse.ArgumentParser, config_class: type[AgentConfig], *,
                       exclude: Iterable[str] = (), title: str | None = None, base: AgentConfig | None = None,
                       description: str | None = None) -> argparse._ArgumentGroup:
    """Add an argument group (titled ``title``, by default ``'<ConfigClass> options'``) with one option per field
    of ``config_class`` not in ``exclude``: ``--field-name VALUE``, its help the field's docstring and its
    default (``base``'s value when given, else the class's), its metavar the type (``INT``, ``FLOAT``, ``BOOL``,
    ``{huber,mse}``, ``INT,...``). Also adds ``--set KEY=VALUE`` to the group unless the parser has it.

    The options store the raw text into ``config__<field>`` and are absent from the namespace unless given;
    :func:`config_overrides` / :func:`config_from_args` convert them. Names in ``exclude`` that are not fields
    of ``config_class`` are ignored (a script may exclude fields of several config classes at once). Raises
    ``ValueError`` (adding nothing) when an option would clash with one the parser has."""
    _check_config_class(config_class)
    exclude = _exclude(config_class, exclude)
    if base is not None and not isinstance(base, config_class):
        raise TypeError(f"base must be a {config_class.__name__}, got {type(base).__name__}")
    names = [n for n in _field_names(config_class) if n not in exclude]
    clashes = [_option(n) for n in names if _has_option(parser, _option(n))]
    if clashes:
        raise ValueError(f"{config_class.__name__}'s options {', '.join(clashes)} clash with the parser's own; "
                         "exclude those fields or use add_set_option")
    group = parser.add_argument_group(title or f"{config_class.__name__} options", description)
    docs, hints = _field_help(config_class), _hints(config_class)
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)} if base is None else {}
    for name in names:
        if base is not None:
            default = getattr(base, name)
        elif defaults[name] is not dataclasses.MISSING:
            default = defaults[name]
        else:  # a default_factory (or none at all)
            default = getattr(config_class(), name, None)
        text = _plain_doc(docs[name])
        text = (text + " " if text else "") + f"(default: {format_value(default)})"
        group.add_argument(_option(name), dest=DEST_PREFIX + name, metavar=_metavar(hints[name]),
                           default=argparse.SUPPRESS, help=text.replace("%", "%%"))
    add_set_option(parser, group)
    return group


def _exclude(config_class: type, exclude: Iterable[str]) -> frozenset[str]:
    if isinstance(exclude, str):
        raise TypeError(f"exclude must be a collection of field names, got the string {exclude!r}")
    return frozenset(e.replace("-", "_") for e in exclude)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _given(config_class: type, args: argparse.Namespace, exclude: Iterable[str]) -> dict[str, tuple[Any, str]]:
    """Field -> (value, the option as typed) for every field the user set."""
    _check_config_class(config_class)
    exclude = _exclude(config_class, exclude)
    known = set(_field_names(config_class))
    given: dict[str, tuple[Any, str]] = {}

    def add(name: str, text: str, source: str) -> None:
        if name in exclude:
            raise ConfigOptionError(f"{source}: {name} cannot be set here (the program sets it itself or has its "
                                    "own option for it)")
        if name not in known:
            raise ConfigOptionError(f"{source}: {_unknown_field(config_class, name, exclude)}")
        try:
            value = parse_field(config_class, name, text)
        except ConfigOptionError as exc:
            raise ConfigOptionError(f"{source}: {exc}") from None
        if name in given and given[name][0] != value:
            raise ConfigOptionError(f"{source}: {name} is already set to {format_value(given[name][0])} by "
                                    f"{given[name][1]}")
        given.setdefault(name, (value, source))

    values = vars(args)
    dests = [DEST_PREFIX + n for n in _field_names(config_class)]  # field order, then other classes' options
    dests += sorted(d for d in values if d.startswith(DEST_PREFIX) and d not in dests)
    for dest in (d for d in dests if d in values):
        name = dest[len(DEST_PREFIX):]
        add(name, values[dest], f"{_option(name)} {shlex.quote(values[dest])}")
    for pair in values.get(SET_DEST) or ():
        source = f"--set {shlex.quote(pair)}"
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigOptionError(f"{source}: expected KEY=VALUE, e.g. --set lr=1e-3")
        add(key, text, source)
    return given


def config_overrides(config_class: type[AgentConfig], args: argparse.Namespace, *,
                     exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields the user set, from both ``--field`` options and ``--set key=value`` pairs, converted by
    :func:`parse_field` (an empty dict when none was given).

    Raises :class:`ConfigOptionError` (one line, starting with the option as typed) for a bad value, a field
    that ``config_class`` lacks (a ``--set`` key, or a ``--field`` option added for another config class), a
    malformed pair (no ``=``), a field in ``exclude``, or a field given twice with different values."""
    return {name: value for name, (value, _) in _given(config_class, args, exclude).items()}


def config_from_args(config_class: type[AgentConfig], args: argparse.Namespace, *, base: AgentConfig | None = None,
                     exclude: Iterable[str] = ()) -> AgentConfig:
    """``base`` (by default ``config_class()``) with the fields the user set (:func:`config_overrides`) replaced;
    the fields not given keep ``base``'s values.

    Raises :class:`ConfigOptionError` as :func:`config_overrides` does, and when a value of the right type fails
    the config's own checks (``validate``: ``--lr -1``); the message starts with the options responsible."""
    given = _given(config_class, args, exclude)
    if base is None:
        base = config_class()
    elif not isinstance(base, config_class):
        raise TypeError(f"base must be a {config_class.__name__}, got {type(base).__name__}: {base!r}")
    overrides = {name: value for name, (value, _) in given.items()}
    try:
        return type(base).build(base, overrides)
    except (TypeError, ValueError) as exc:
        message = _one_line(str(exc))
        named = [n for n in given if re.search(rf"\b{re.escape(n)}\b", message)]
        if not named:  # the message names none of them: blame those that fail on their own
            named = [n for n in given if _fails(base, n, given[n][0])] or list(given)
        sources = ", ".join(given[n][1] for n in named)
        raise ConfigOptionError(f"{sources}: {message}") from None


def _fails(base: AgentConfig, name: str, value: Any) -> bool:
    try:
        base.replace(**{name: value})
    except (TypeError, ValueError):
        return True
    return False


__all__ = ["ConfigOptionError", "add_config_options", "add_set_option", "config_from_args", "config_overrides",
           "field_help", "format_value", "parse_field"]
