"""Checks for the exercises of chapter 10 (actor-critic).

Usage in the chapter: ``from rlbook.exercises import ch10``, then ``ch10.nstep_advantage.check(my_advantages)``.
Each check computes the expected answer with :func:`rlbook.rollout.gae_advantages` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlbook.exercises import WrongAnswer, attempted, exercise
from rlbook.rollout import gae_advantages

#: Rollouts of one environment for "A2C's advantages": (rewards, values (T + 1), terminated, gamma). Every
#: row is valid and nothing is truncated, so an episode's end is always a termination.
ADVANTAGE_CASES = (
    ([1.0, 1.0, 1.0], [5.0, 4.0, 3.0, 2.0], [False, False, False], 0.9),
    ([1.0, 1.0, 1.0, 1.0], [2.0, 1.5, 1.0, 0.5, 9.0], [False, True, False, False], 0.99),
    ([0.0, 0.0, 2.0, -1.0, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [False, False, True, False, True], 0.5),
    ([3.0], [1.0, 10.0], [True], 0.95),
)


def expected_advantages(rewards, values, terminated, gamma) -> np.ndarray:
    t = len(rewards)
    adv, _ = gae_advantages(torch.tensor([rewards], dtype=torch.float64).T,
                            torch.tensor([values], dtype=torch.float64).T,
                            torch.tensor([terminated]).T, torch.zeros(t, 1, dtype=torch.bool),
                            torch.ones(t, 1, dtype=torch.bool), gamma, 1.0)
    return adv[:, 0].numpy()


@exercise("A2C's advantages", fill=("my_advantages",))
def nstep_advantage(my_advantages: Any) -> str:
    """Check ``my_advantages(rewards, values, terminated, gamma)``: A2C's advantage of each step of a
    rollout of one environment, ``G_t - V(s_t)``, where ``G_t`` sums the discounted rewards to the end of
    the rollout or of the episode and then adds ``gamma^m V`` of the next state unless the episode
    terminated; compared with :func:`rlbook.rollout.gae_advantages` with lambda 1."""
    for rewards, values, terminated, gamma in ADVANTAGE_CASES:
        case = f"For rewards {rewards}, terminated {terminated}"
        expected = expected_advantages(rewards, values, terminated, gamma)
        mine = attempted(my_advantages(list(rewards), list(values), list(terminated), gamma))
        try:
            mine = np.asarray(mine, dtype=np.float64)
        except (TypeError, ValueError):
            raise WrongAnswer(f"{case}, my_advantages returned {type(mine).__name__}; return numbers.") from None
        if mine.shape != (len(rewards),):
            raise WrongAnswer(f"{case}, my_advantages returned shape {mine.shape}; expected "
                              f"({len(rewards)},): one advantage per step (values has one more entry, the "
                              "state after the rollout).")
        if np.allclose(mine, expected, atol=1e-9):
            continue
        through = expected_advantages(rewards, values, [False] * len(rewards), gamma)
        if any(terminated) and np.allclose(mine, through):
            raise WrongAnswer(f"{case}, your returns run across the end of an episode. After a terminated "
                              "step the next state belongs to a new episode: stop the sum there and add no "
                              "value.")
        wrong = int(np.argmax(~np.isclose(mine, expected, atol=1e-9)))
        raise WrongAnswer(f"{case}, the advantage of step {wrong} is {mine[wrong]:.4f}, expected "
                          f"{expected[wrong]:.4f}. Go backwards from R = values[-1]: R = r_t + gamma R, "
                          "with R reset to 0 at a terminated step; the advantage is R - values[t].")
    return f"your advantages match rlbook.rollout.gae_advantages on {len(ADVANTAGE_CASES)} rollouts"


#: Policies of "Entropy", as rows of probabilities.
ENTROPY_CASES = ([0.5, 0.5], [1.0, 0.0, 0.0], [0.7, 0.2, 0.1], [0.25] * 4, [0.9, 0.05, 0.05])


@exercise("Entropy", fill=("my_entropy",))
def entropy(my_entropy: Any) -> str:
    """Check ``my_entropy(probs)``: ``H = -sum_a pi(a) log pi(a)`` in nats (natural logarithm), with
    ``0 log 0 = 0``."""
    for probs in ENTROPY_CASES:
        p = np.asarray(probs)
        nz = p[p > 0]
        expected = float(-(nz * np.log(nz)).sum())
        mine = attempted(my_entropy(p.copy()))
        case = f"For probabilities {probs}"
        try:
            mine = float(mine)
        except (TypeError, ValueError):
            raise WrongAnswer(f"{case}, my_entropy returned {type(mine).__name__}; return a number.") from None
        if np.isclose(mine, expected, atol=1e-9):
            continue
        if np.isnan(mine):
            raise WrongAnswer(f"{case}, you got nan: 0 * log 0 must count as 0 (leave out the zero "
                              "probabilities).")
        if np.isclose(mine, -expected):
            raise WrongAnswer(f"{case}, you got {mine:.4f}: the entropy is minus the sum of p log p.")
        if np.isclose(mine, expected / np.log(2)):
            raise WrongAnswer(f"{case}, you got {mine:.4f}, in bits; use the natural logarithm (nats), as "
                              "the loss does.")
        raise WrongAnswer(f"{case}, you got {mine:.4f}, expected {expected:.4f}.")
    return (f"your entropies match on {len(ENTROPY_CASES)} policies: log(n) nats for a uniform policy over "
            "n actions, 0 for a certain one")


__all__ = ["entropy", "nstep_advantage"]
