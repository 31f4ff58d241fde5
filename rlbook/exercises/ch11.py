"""Checks for the exercises of chapter 11 (A3C, workers and scale-out).

Usage in the chapter: ``from rlbook.exercises import ch11``, then ``ch11.amdahl.check(my_speedup)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbook.exercises import WrongAnswer, attempted, exercise

#: (serial fraction, workers) for "Amdahl's law".
AMDAHL_CASES = ((0.0, 4), (0.5, 2), (0.25, 4), (0.1, 16), (1.0, 8), (0.3, 1))


@exercise("Amdahl's law", fill=("my_speedup",))
def amdahl(my_speedup: Any) -> str:
    """Check ``my_speedup(serial, workers)``: the speed-up over one worker when a fraction ``serial`` of the
    work cannot be shared out and the rest is split evenly over ``workers``: ``1 / (serial + (1 - serial) /
    workers)``."""
    for serial, n in AMDAHL_CASES:
        expected = 1.0 / (serial + (1.0 - serial) / n)
        mine = attempted(my_speedup(serial, n))
        case = f"For a serial fraction {serial} and {n} workers"
        try:
            mine = float(mine)
        except (TypeError, ValueError):
            raise WrongAnswer(f"{case}, my_speedup returned {type(mine).__name__}; return a number.") from None
        if np.isclose(mine, expected, rtol=1e-9):
            continue
        if np.isclose(mine, 1.0 / expected):
            raise WrongAnswer(f"{case}, you got {mine:.4f}: that is the time with {n} workers as a fraction of "
                              "the time with one; the speed-up is its inverse.")
        if np.isclose(mine, n * (1 - serial)) or np.isclose(mine, n):
            raise WrongAnswer(f"{case}, you got {mine:.4f}: the serial part takes as long with {n} workers as "
                              "with one. Add the times: serial + (1 - serial) / workers, then invert.")
        raise WrongAnswer(f"{case}, you got {mine:.4f}, expected {expected:.4f}.")
    return (f"your speed-ups match on {len(AMDAHL_CASES)} cases: with a serial fraction s, no number of workers "
            "gets past 1 / s")


#: (sequence number before the copy, sequence number after it) for "A consistent copy", with the answer.
SEQLOCK_CASES = (((2, 2), True), ((3, 3), False), ((2, 4), False), ((4, 5), False), ((0, 0), False),
                 ((10, 10), True), ((7, 8), False), ((6, 8), False))


@exercise("A consistent copy", fill=("my_consistent",))
def seqlock(my_consistent: Any) -> str:
    """Check ``my_consistent(before, after)``: whether a worker's copy of :class:`rlbook.parallel.SharedWeights`
    is one whole version, given the sequence number read before the copy and the one read after it (the
    learner adds 1 before it writes and 1 after; 0 means nothing was published yet)."""
    for (before, after), expected in SEQLOCK_CASES:
        mine = attempted(my_consistent(before, after))
        if not isinstance(mine, bool | np.bool_):
            raise WrongAnswer(f"For before={before}, after={after}, my_consistent returned {type(mine).__name__}; "
                              "return True or False.")
        if bool(mine) == expected:
            continue
        case = f"For before={before}, after={after}, you said {bool(mine)}"
        if before % 2 and before == after:
            raise WrongAnswer(f"{case}: an odd number means the learner was writing while you copied (and may "
                              "still be): the copy can mix two versions.")
        if before != after:
            raise WrongAnswer(f"{case}: the number changed during the copy, so the learner wrote in the middle "
                              "of it.")
        if before == 0:
            raise WrongAnswer(f"{case}: 0 means nothing has been published yet; there is nothing to copy.")
        raise WrongAnswer(f"{case}: an even number that did not change means no write overlapped the copy.")
    return f"your rule agrees on {len(SEQLOCK_CASES)} cases: even, non-zero, and unchanged across the copy"


__all__ = ["amdahl", "seqlock"]
