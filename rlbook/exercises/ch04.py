"""Checks for the exercises of chapter 4 (the cross-entropy method).

Usage in the chapter: ``from rlbook.exercises import ch04``, then
``ch04.elite_by_hand.check(my_boundary, my_elite)``. Each check below is an
:class:`~rlbook.exercises.Exercise`: its ``check`` method prints or raises, and the function documented
here returns the message of a correct answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbook.agents.cem import discounted_return, select_elite
from rlbook.exercises import WrongAnswer, attempted, exercise, number

#: The returns of the batch in "Elite by hand", and the percentile of its boundary.
ELITE_RETURNS = (3.0, 8.0, 8.0, 1.0, 5.0, 8.0, 2.0, 6.0)
ELITE_PERCENTILE = 50.0

#: The discount of "Which success counts more?" and the lengths of its two successful episodes.
SCORE_GAMMA = 0.9
SCORE_LENGTHS = (6, 10)

#: The batches ``(n, k)`` on which "Top k instead of a percentile" tries the reader's functions.
TOP_K_CASES = ((16, 5), (100, 30), (10, 1), (7, 7), (2, 1))
#: Percentiles lower by this much still count (NumPy may place p / 100 (n - 1) a hair above n - k).
TOP_K_MARGIN = 1e-6


@exercise("Elite by hand", fill=("my_boundary", "my_elite"))
def elite_by_hand(my_boundary: Any, my_elite: Any) -> str:
    """Check ``my_boundary``, the 50th percentile of the returns 3, 8, 8, 1, 5, 8, 2, 6, and
    ``my_elite``, the indices (counted from 0) of the episodes at or above it."""
    returns = np.array(ELITE_RETURNS)
    mask, boundary = select_elite(returns, ELITE_PERCENTILE)
    b = number(my_boundary, "my_boundary")
    if abs(b - boundary) > 1e-9:
        position = ELITE_PERCENTILE / 100 * (len(returns) - 1)
        raise WrongAnswer(f"my_boundary is {b:g}, not the {ELITE_PERCENTILE:g}th percentile. Sort the "
                          f"{len(returns)} returns, find position {ELITE_PERCENTILE:g} / 100 * "
                          f"({len(returns)} - 1) = {position:g} (the smallest is at position 0), and "
                          f"interpolate between the two values around it.")
    try:
        elite = sorted(int(i) for i in my_elite)
    except (TypeError, ValueError):
        raise WrongAnswer(f"my_elite should be a list of episode indices, got {my_elite!r}") from None
    expected = [int(i) for i in np.flatnonzero(mask)]
    if elite != expected:
        missing = sorted(set(expected) - set(elite))
        extra = sorted(set(elite) - set(expected))
        problems = []
        if missing:
            problems.append(f"the episodes {missing} are elite too (their returns are at or above "
                            f"{boundary:g})")
        if extra:
            problems.append(f"the episodes {extra} are not (their returns are below {boundary:g}, or the "
                            f"index is outside 0 to {len(returns) - 1})")
        if not missing and not extra:
            problems.append("each index should appear once")
        raise WrongAnswer(f"my_elite is {list(my_elite)}: " + "; ".join(problems)
                          + ". Count the episodes from 0.")
    return f"the boundary is {boundary:g}, and episodes {expected} are elite."


@exercise("Which success counts more?", fill=("score_6", "score_10"))
def discounted_scores(score_6: Any, score_10: Any) -> str:
    """Check ``score_6`` and ``score_10``, the discounted returns with ``gamma = 0.9`` of a success
    after 6 steps and one after 10 (the reward 1 arrives on the last step)."""
    answers = {"score_6": score_6, "score_10": score_10}
    expected = {}
    for (name, value), steps in zip(answers.items(), SCORE_LENGTHS):
        rewards = np.zeros(steps)
        rewards[-1] = 1.0
        right = discounted_return(rewards, SCORE_GAMMA)
        expected[name] = right
        mine = number(value, name)
        if np.isclose(mine, right, rtol=1e-6, atol=0.0):
            continue
        if np.isclose(mine, SCORE_GAMMA * right, rtol=1e-6, atol=0.0):
            hint = (f"that is gamma^{steps}, one factor of gamma too many: the first reward (t = 0) is not "
                    f"discounted, so the reward of step {steps} arrives at t = {steps - 1}")
        elif np.isclose(mine, right / SCORE_GAMMA, rtol=1e-6, atol=0.0):
            hint = f"that is one factor of gamma too few: the reward of step {steps} arrives at t = {steps - 1}"
        else:
            hint = (f"the discounted return is the sum of gamma^t r_t over t = 0, 1, ..., and only the "
                    f"last reward, at t = {steps - 1}, is not 0")
        raise WrongAnswer(f"{name} is {mine:.4g}; {hint}.")
    return (f"{expected['score_6']:.3f} against {expected['score_10']:.3f}: the shorter success ranks "
            f"higher.")


def _permuted_returns(n: int, seed: int) -> np.ndarray:
    """``n`` distinct returns 0, 1, ..., n - 1 in a random order, as floats ``(n,)``."""
    return np.random.default_rng(seed).permutation(n).astype(float)


@exercise("Top k instead of a percentile", fill=("top_k_elite", "percentile_for_top_k"))
def top_k(top_k_elite: Any, percentile_for_top_k: Any) -> str:
    """Check ``top_k_elite(returns, k)``, a boolean mask of the ``k`` largest of distinct returns,
    and ``percentile_for_top_k(n, k)``, a percentile at which :func:`~rlbook.agents.cem.select_elite`
    keeps exactly ``k`` of ``n`` episodes."""
    for seed, (n, k) in enumerate(TOP_K_CASES):
        returns = _permuted_returns(n, seed)
        mask = np.asarray(attempted(top_k_elite(returns.copy(), k)))
        if mask.shape != (n,) or mask.dtype != bool:
            raise WrongAnswer(f"top_k_elite(returns, {k}) for {n} returns gave an array of shape "
                              f"{mask.shape} and dtype {mask.dtype}; it should be a boolean mask of shape "
                              f"({n},)")
        expected = returns >= np.sort(returns)[n - k]
        if not np.array_equal(mask, expected):
            raise WrongAnswer(f"top_k_elite(returns, {k}) for {n} returns marks the returns "
                              f"{sorted(returns[mask].astype(int).tolist())[:8]} (at most 8 shown), not the "
                              f"{k} largest. np.argsort sorts in increasing order: the largest come last.")
    for seed, (n, k) in enumerate(TOP_K_CASES):
        p = number(attempted(percentile_for_top_k(n, k)), f"percentile_for_top_k({n}, {k})")
        if not 0.0 <= p <= 100.0:
            raise WrongAnswer(f"percentile_for_top_k({n}, {k}) is {p:g}; a percentile lies in [0, 100]")
        returns = _permuted_returns(n, seed)
        kept = int(select_elite(returns, max(p - TOP_K_MARGIN, 0.0))[0].sum())
        if kept != k:
            raise WrongAnswer(f"with percentile_for_top_k({n}, {k}) = {p:.4g}, select_elite keeps {kept} of "
                              f"{n} distinct returns, not {k}. The p-th percentile sits at position "
                              f"p / 100 * (n - 1) of the sorted returns; put it on the k-th largest, "
                              f"at position n - k.")
    cases = ", ".join(f"k = {k} of {n}" for n, k in TOP_K_CASES)
    return f"both agree with select_elite for {cases}."


@exercise("The boundary in the naive run", fill=("drowned",))
def drowned_batches(drowned: Any, naive: Any) -> str:
    """Check ``drowned``, the fraction of the batches of the naive FrozenLake agent ``naive`` (a
    :class:`~rlbook.agents.cem.CEMAgent`) whose elite boundary was 0 although at least one of
    their episodes succeeded."""
    bounds = np.array([h["reward_bound"] for h in naive.history])
    means = np.array([h["reward_mean"] for h in naive.history])
    expected = float(np.mean((bounds == 0) & (means > 0)))
    value = number(drowned, "drowned")
    if abs(value - expected) <= 1e-9:
        return (f"in {expected:.0%} of the naive run's {len(bounds)} batches the filter threw a success "
                f"in with the failures.")
    if 1.0 < value <= 100.0 and abs(value / 100 - expected) <= 1e-9:
        raise WrongAnswer(f"drowned is {value:g}, a percentage; give the fraction, between 0 and 1")
    if 1.0 < value <= len(bounds) and abs(value / len(bounds) - expected) <= 1e-9:
        raise WrongAnswer(f"drowned is {value:g}, a number of batches; divide by the {len(bounds)} batches "
                          f"to get the fraction")
    hints = []
    if abs(value - np.mean(bounds == 0)) <= 1e-9:
        hints.append("that is the fraction of batches with boundary 0, with or without a success")
    if abs(value - np.mean(means > 0)) <= 1e-9:
        hints.append("that is the fraction of batches with a success, whatever their boundary")
    hint = "; ".join(hints) or "count the batches where both hold"
    raise WrongAnswer(f"drowned is {value:.4g}; {hint}. A batch counts when its reward_bound is 0 and its "
                      f"reward_mean (the share of episodes that succeeded) is above 0.")
