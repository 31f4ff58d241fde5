"""Checks for the exercises of chapter 9 (policy gradients).

Usage in the chapter: ``from rlbook.exercises import ch09``, then ``ch09.returns_to_go.check(my_returns_to_go)``.
Each check computes the expected answer with :func:`rlbook.rollout.returns_to_go` or with autograd itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlbook.exercises import WrongAnswer, attempted, exercise
from rlbook.rollout import returns_to_go as rollout_returns_to_go

#: The episodes of "Returns-to-go", as (rewards, gamma).
RETURN_CASES = (([1.0, 1.0, 1.0, 1.0], 0.9), ([0.0, 0.0, 5.0], 0.5), ([2.0, -1.0, 3.0, 0.5, 1.0], 0.99),
                ([7.0], 0.3), ([1.0, 2.0, 3.0], 1.0))


def _array(value: Any, name: str, shape: tuple[int, ...], case: str) -> np.ndarray:
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise WrongAnswer(f"{case}, {name} returned {type(value).__name__}; return a list or array of "
                          "numbers.") from None
    if out.shape != shape:
        raise WrongAnswer(f"{case}, {name} returned shape {out.shape}; expected {shape}.")
    return out


@exercise("Returns-to-go", fill=("my_returns_to_go",))
def returns_to_go(my_returns_to_go: Any) -> str:
    """Check ``my_returns_to_go(rewards, gamma)``: ``G_t = r_t + gamma r_{t+1} + gamma^2 r_{t+2} + ...`` to the
    end of the episode, one number per step; compared with :func:`rlbook.rollout.returns_to_go`."""
    for rewards, gamma in RETURN_CASES:
        case = f"For rewards {rewards} and gamma {gamma:g}"
        expected = rollout_returns_to_go(rewards, gamma)
        mine = _array(attempted(my_returns_to_go(list(rewards), gamma)), "my_returns_to_go", (len(rewards),),
                      case)
        if np.allclose(mine, expected, atol=1e-9):
            continue
        r = np.asarray(rewards)
        forward = np.array([sum(gamma ** k * r[k] for k in range(t + 1)) for t in range(len(r))])
        if np.allclose(mine, forward):
            raise WrongAnswer(f"{case}, you summed the rewards *before* each step. A return-to-go looks "
                              "forward: G_t adds r_t and the rewards after it.")
        if np.allclose(mine, np.cumsum(r[::-1])[::-1]) and gamma != 1.0:
            raise WrongAnswer(f"{case}, your returns are not discounted: each later reward is weighted by "
                              "one more factor of gamma.")
        if np.allclose(mine, np.full(len(r), expected[0])):
            raise WrongAnswer(f"{case}, every step got the whole episode's return. REINFORCE weights step t "
                              "only by what came after it (an action cannot change the past).")
        wrong = int(np.argmax(~np.isclose(mine, expected, atol=1e-9)))
        raise WrongAnswer(f"{case}, G_{wrong} is {mine[wrong]:.4f}, expected {expected[wrong]:.4f}. Work "
                          "backwards: G_t = r_t + gamma G_(t+1), with G after the last step 0.")
    return f"your returns-to-go match rlbook.rollout.returns_to_go on {len(RETURN_CASES)} episodes"


#: The cases of "The score function", as (logits, action).
SCORE_CASES = (([0.0, 0.0], 0), ([1.0, -2.0, 0.5], 2), ([3.0, 3.0, 3.0, -1.0], 3), ([10.0, 0.0], 1))


@exercise("The score function", fill=("my_score",))
def score_function(my_score: Any) -> str:
    """Check ``my_score(logits, action)``: the gradient of ``log softmax(logits)[action]`` with respect to the
    logits, one number per logit; compared with autograd."""
    for logits, action in SCORE_CASES:
        case = f"For logits {logits} and action {action}"
        x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        torch.log_softmax(x, dim=0)[action].backward()
        expected = x.grad.numpy()
        mine = _array(attempted(my_score(np.array(logits), action)), "my_score", (len(logits),), case)
        if np.allclose(mine, expected, atol=1e-8):
            continue
        p = np.exp(np.array(logits) - np.max(logits))
        p /= p.sum()
        onehot = np.eye(len(logits))[action]
        if np.allclose(mine, p - onehot):
            raise WrongAnswer(f"{case}, your gradient has the wrong sign: raising the logit of the action "
                              "taken raises its log-probability.")
        if np.allclose(mine, onehot):
            raise WrongAnswer(f"{case}, you kept only the logit's own term. log softmax also subtracts "
                              "log sum_b exp(z_b), whose gradient is the whole probability vector.")
        raise WrongAnswer(f"{case}, you got {np.round(mine, 4).tolist()}, expected "
                          f"{np.round(expected, 4).tolist()}: one-hot(action) minus softmax(logits).")
    return (f"your score function matches autograd on {len(SCORE_CASES)} cases: one-hot(a) - pi, so a step "
            "pushes up the action taken and pushes down the others by their probability")


__all__ = ["returns_to_go", "score_function"]
