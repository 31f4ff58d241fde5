"""Checks for the exercises of chapter 12 (building an agent with the ``rlbook`` command line).

Usage in the chapter: ``from rlbook.exercises import ch12``, then ``ch12.epsilon.check(my_epsilon)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbook.exercises import WrongAnswer, attempted, exercise

#: Steps at which "Decaying exploration" is checked.
EPSILON_STEPS = (0, 1, 2_500, 5_000, 9_999, 10_000, 10_001, 50_000)


@exercise("Decaying exploration", fill=("my_epsilon",))
def epsilon(my_epsilon: Any) -> str:
    """Check ``my_epsilon(step)``: 1.0 at step 0, falling linearly to 0.1 at step 10,000, then 0.1 for ever."""
    for step in EPSILON_STEPS:
        expected = 0.1 if step >= 10_000 else 1.0 - 0.9 * step / 10_000
        mine = attempted(my_epsilon(step))
        try:
            mine = float(mine)
        except (TypeError, ValueError):
            raise WrongAnswer(f"At step {step:,}, my_epsilon returned {type(mine).__name__}; return a number.") \
                from None
        if np.isclose(mine, expected, atol=1e-9):
            continue
        case = f"At step {step:,} you got {mine:.4f}, expected {expected:.4f}"
        if step > 10_000 and mine < 0.1:
            raise WrongAnswer(f"{case}: the decay must stop at 0.1 (clip it), or the agent stops exploring "
                              "altogether.")
        if np.isclose(mine, 1.0 - step / 10_000) or np.isclose(mine, max(0.0, 1.0 - step / 10_000)):
            raise WrongAnswer(f"{case}: that falls to 0, not to 0.1; the slope is (1.0 - 0.1) / 10,000.")
        raise WrongAnswer(f"{case}.")
    return "your schedule matches at 8 steps: 1.0 -> 0.1 over 10,000 steps, then flat"


#: (reward, max_a' Q(s', a'), terminated, truncated) for "The target", with gamma 0.9.
TARGET_CASES = ((1.0, 5.0, False, False), (1.0, 5.0, True, False), (1.0, 5.0, False, True),
                (0.0, -2.0, False, True), (-1.0, 3.0, True, False), (2.0, 0.0, False, False))
GAMMA = 0.9


@exercise("The target", fill=("my_target",))
def target(my_target: Any) -> str:
    """Check ``my_target(reward, next_q, terminated, truncated, gamma)``: DQN's one-step target
    ``reward + gamma * next_q`` unless the episode terminated (then ``reward``); a truncated episode (a time
    limit) still bootstraps."""
    for reward, next_q, terminated, truncated in TARGET_CASES:
        expected = reward + (0.0 if terminated else GAMMA * next_q)
        mine = attempted(my_target(reward, next_q, terminated, truncated, GAMMA))
        try:
            mine = float(mine)
        except (TypeError, ValueError):
            raise WrongAnswer(f"my_target returned {type(mine).__name__}; return a number.") from None
        if np.isclose(mine, expected):
            continue
        case = (f"For reward {reward}, next_q {next_q}, terminated={terminated}, truncated={truncated} you got "
                f"{mine:g}, expected {expected:g}")
        if truncated and np.isclose(mine, reward):
            raise WrongAnswer(f"{case}: a time limit is not the end of the task; the state still has a value, "
                              "so bootstrap from it.")
        if terminated and np.isclose(mine, reward + GAMMA * next_q):
            raise WrongAnswer(f"{case}: after a terminal state there is nothing more to earn; do not bootstrap.")
        raise WrongAnswer(f"{case}.")
    return f"your target agrees on {len(TARGET_CASES)} cases: terminated stops the bootstrap, truncated does not"


__all__ = ["epsilon", "target"]
