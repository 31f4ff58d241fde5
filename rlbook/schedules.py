"""Schedules: a number that changes with the training step (exploration epsilon, PER's beta).

Defined in chapter 6 (DQN): epsilon falls from 1 to a small value while the agent learns.
"""

from __future__ import annotations

import math

from rlbook.config import check_float, check_int


class LinearSchedule:
    """Moves linearly from ``start`` to ``end`` over ``duration`` steps, then stays at ``end``.

    ``LinearSchedule(1.0, 0.02, 100_000).value_at(50_000)`` is 0.51. Works for rising values too
    (PER's beta goes 0.4 -> 1).
    """

    def __init__(self, start: float, end: float, duration: int):
        self.start = check_float("start", start)
        self.end = check_float("end", end)
        self.duration = check_int("duration", duration, 0)

    def value_at(self, step: int) -> float:
        """The value after ``step`` steps (``step`` >= 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.duration == 0 or step >= self.duration:
            return self.end
        return self.start + (self.end - self.start) * (step / self.duration)

    def __call__(self, step: int) -> float:
        return self.value_at(step)

    def __repr__(self) -> str:
        return f"LinearSchedule(start={self.start:g}, end={self.end:g}, duration={self.duration})"


class ExponentialSchedule:
    """Decays geometrically from ``start`` towards ``end``: ``end + (start - end) * decay ** step``.

    ``half_life`` (steps for the gap to ``end`` to halve) is the readable way to set the rate:
    ``ExponentialSchedule(1.0, 0.05, half_life=10_000)``.
    """

    def __init__(self, start: float, end: float, half_life: float):
        self.start = check_float("start", start)
        self.end = check_float("end", end)
        self.half_life = check_float("half_life", half_life, 0.0, low_open=True)
        self.decay = 0.5 ** (1.0 / self.half_life)

    def value_at(self, step: int) -> float:
        """The value after ``step`` steps (``step`` >= 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.end + (self.start - self.end) * math.exp(step * math.log(self.decay))

    def __call__(self, step: int) -> float:
        return self.value_at(step)

    def __repr__(self) -> str:
        return f"ExponentialSchedule(start={self.start:g}, end={self.end:g}, half_life={self.half_life:g})"
