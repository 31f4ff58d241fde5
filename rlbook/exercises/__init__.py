"""Checks for the exercises at the end of each chapter, one module per chapter (``ch01``, ...).

An exercise in a chapter has four cells: the task; a *stub* cell that you fill in (``V_hand = None``,
or a function whose body raises ``NotImplementedError``); a *check* cell such as
``ch01.values_by_hand.check(V_hand)``; and the solution, collapsed on the website. A check gives
one of three answers:

* **not attempted**: the answer is still the stub (``None``, or code that raises
  ``NotImplementedError`` or returns ``None``). The check prints one line saying what to fill in
  and does not raise, so a chapter with untouched stubs runs from top to bottom.
* **wrong**: the check raises :class:`WrongAnswer`, an ``AssertionError`` whose message names the
  wrong value and says how to find the right one.
* **correct**: the check prints "correct" and what it verified.

A check computes the expected answer itself, with ``rlbook`` functions, and never stores a typed-in
answer. The solutions live in ``book/solutions/chNN.py``: the website shows them in a dropdown, and
``tests/test_exercises.py`` runs every one through its check.

How to add an exercise (the same recipe for every chapter):

1. In ``rlbook/exercises/chNN.py`` write a function decorated with :func:`exercise`. Its
   parameters are the names the reader fills in (``fill``), plus any chapter objects it needs
   (``context``). It raises :class:`WrongAnswer` with a helpful message, or returns a short text
   that says what was verified. Stubs are detected for you; use :func:`attempted` on values
   returned by the reader's functions.
2. In ``book/solutions/chNN.py`` write the solution between the lines ``# [name]`` and
   ``# [end name]``, where ``name`` is the check's name. It defines every ``fill`` name (and every
   ``context`` name, outside the markers, for the tests).
3. In the chapter, under ``## Exercises``: a markdown cell ``(ex-chNN-<name>)=`` then
   ``### <title>`` and the task; a stub cell tagged ``exercise-stub``; a check cell
   ``chNN.<name>.check(...)`` tagged ``nbval-check-output``; a markdown cell with metadata
   ``"jupyter": {"source_hidden": true}`` holding a ``:::{dropdown}`` that answers any "why?"
   question and shows the solution with ``{literalinclude}`` and ``:start-after: "# [name]"``,
   ``:end-before: "# [end name]"`` (copy one from chapter 1).
4. In ``tests/test_exercises.py`` add at least one wrong answer to ``WRONG_ANSWERS``.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Width of the messages a check prints or raises (the website's column holds 77 characters of code).
MESSAGE_WIDTH = 76

NOT_ATTEMPTED, WRONG, CORRECT = "not attempted", "wrong", "correct"


class WrongAnswer(AssertionError):
    """An answer that is wrong; the message says which value is wrong and how to find the right one."""


class NotAttempted(Exception):
    """Raised inside a check when the reader's code is still the stub (it returned ``None``)."""


@dataclass(frozen=True)
class Verdict:
    """What a check concluded about an answer.

    Attributes:
        status: ``"not attempted"``, ``"wrong"`` or ``"correct"``.
        message: the explanation, without the exercise's title.
    """

    status: str
    message: str


def number(value: Any, name: str) -> float:
    """``value`` as a float; a :class:`WrongAnswer` naming ``name`` when it is not a number (``True`` and
    ``False`` are not numbers here, although Python would let them pass)."""
    if isinstance(value, bool):
        raise WrongAnswer(f"{name} should be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise WrongAnswer(f"{name} should be a number, got {value!r}") from None


def attempted(value: Any) -> Any:
    """Return ``value``, or raise :class:`NotAttempted` when it is ``None`` (a stub returns nothing)."""
    if value is None:
        raise NotAttempted
    return value


def wrap(text: str, width: int = MESSAGE_WIDTH) -> str:
    """Fill ``text`` to lines of at most ``width`` characters (each line break in it is kept)."""
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) for line in text.splitlines())


class Exercise:
    """One exercise: its title, the names the reader fills in, and its check.

    Made by the :func:`exercise` decorator; it looks like the check function it wraps (name,
    signature, docstring) and adds :meth:`check` (for the notebook) and :meth:`verdict` (for tests).
    Calling it is the same as calling :meth:`check`.

    Attributes:
        name: the check function's name, e.g. ``"values_by_hand"``.
        title: the exercise's heading in the chapter, e.g. ``"Values by hand"``.
        fill: the parameters that are the reader's answers.
        context: the other parameters: chapter objects the check needs.
    """

    def __init__(self, func: Callable[..., str], title: str, fill: tuple[str, ...]):
        self._func = func
        self._signature = inspect.signature(func)
        names = tuple(self._signature.parameters)
        unknown = [n for n in fill if n not in names]
        if unknown:
            raise ValueError(f"fill names {unknown} are not parameters of {func.__name__}{self._signature}")
        self.name = func.__name__
        self.title = title
        self.fill = fill or names
        self.context = tuple(n for n in names if n not in self.fill)
        functools.update_wrapper(self, func)

    @property
    def heading(self) -> str:
        """How the check's messages start, e.g. ``Exercise "Values by hand"``."""
        return f'Exercise "{self.title}"'

    def __get__(self, instance: Any, owner: Any = None) -> Exercise:
        # A (trivial) descriptor counts as a routine for inspect.isroutine, so Sphinx documents an
        # exercise like the check function it wraps, with its signature and docstring.
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Calling an exercise checks an answer, like :meth:`check`."""
        __tracebackhide__ = True
        self.check(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<exercise {self.__module__}.{self.name}: {self.title!r}, fill in {', '.join(self.fill)}>"

    def verdict(self, *args: Any, **kwargs: Any) -> Verdict:
        """Check an answer and say what was found, without printing or raising for a wrong answer.

        Takes the same arguments as the check function. Errors in the reader's code other than
        ``NotImplementedError`` propagate, with their own traceback.
        """
        __tracebackhide__ = True
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        missing = [n for n in self.fill if bound.arguments.get(n) is None]
        if missing:
            return Verdict(NOT_ATTEMPTED, _fill_in(missing))
        try:
            message = self._func(*bound.args, **bound.kwargs)
        except (NotImplementedError, NotAttempted):
            return Verdict(NOT_ATTEMPTED, _fill_in(self.fill))
        except WrongAnswer as wrong:
            return Verdict(WRONG, str(wrong))
        if not isinstance(message, str) or not message:
            raise TypeError(f"check {self.name} must return a message saying what it verified, "
                            f"got {message!r}")
        return Verdict(CORRECT, message)

    def check(self, *args: Any, **kwargs: Any) -> None:
        """Check an answer in a notebook: print "not attempted" or "correct", raise if wrong.

        Raises:
            WrongAnswer: the answer is wrong; the message says what to fix.
        """
        __tracebackhide__ = True
        verdict = self.verdict(*args, **kwargs)
        if verdict.status == WRONG:
            raise WrongAnswer(wrap(f"{self.heading}: {verdict.message}")) from None
        status = "not attempted yet" if verdict.status == NOT_ATTEMPTED else verdict.status
        print(wrap(f"{self.heading}: {status}. {verdict.message}"))


def _fill_in(names: tuple[str, ...] | list[str]) -> str:
    listed = " and ".join(", ".join(names).rsplit(", ", 1)) if len(names) > 1 else names[0]
    return f"Fill in {listed} in the cell above, then run this check again."


def exercise(title: str, fill: tuple[str, ...] = ()) -> Callable[[Callable[..., str]], Exercise]:
    """Decorator that turns a check function into an :class:`Exercise`.

    Args:
        title: the exercise's heading in the chapter.
        fill: the parameters that are the reader's answers (default: all of them). The check is
            "not attempted" while any of them is ``None``; the other parameters are chapter objects.

    The decorated function receives the answers, raises :class:`WrongAnswer` when one is wrong and
    returns a short message saying what it verified.
    """

    def decorate(func: Callable[..., str]) -> Exercise:
        return Exercise(func, title, tuple(fill))

    return decorate


def exercises_in(module: Any) -> list[Exercise]:
    """The exercises defined in a chapter module (such as ``rlbook.exercises.ch01``), in order."""
    found = [v for v in vars(module).values() if isinstance(v, Exercise) and v.__module__ == module.__name__]
    return sorted(found, key=lambda e: inspect.getsourcelines(e._func)[1])
