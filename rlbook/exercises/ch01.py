"""Checks for the exercises of chapter 1 (Markov processes, reward processes and decision processes).

Usage in the chapter: ``from rlbook.exercises import ch01``, then
``ch01.values_by_hand.check(V_hand)``. Each check below is an :class:`~rlbook.exercises.Exercise`:
its ``check`` method prints or raises, and the function documented here returns the message of a
correct answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbook.envs.toy import FiniteMDPEnv, three_state_mdp
from rlbook.exercises import WrongAnswer, exercise
from rlbook.mdp import mrp_values, q_iteration
from rlbook.tabular import QLearningAgent
from rlbook.train import Trainer

#: The weather chain of chapter 1, with rows and columns (sunny, rainy).
WEATHER_P = np.array([[0.8, 0.2], [0.1, 0.9]])
#: Rewards of "Values by hand", +1 for a sunny day and 0 for a rainy one, discounted by ``WEATHER_GAMMA``.
WEATHER_REWARD = np.array([1.0, 0.0])
WEATHER_GAMMA = 0.5

#: Steps of random play, the seed, and the largest error allowed in "A better step size".
STEP_SIZE_STEPS = 10_000
STEP_SIZE_SEED = 0
STEP_SIZE_MAX_ERROR = 2.0
Q_LEARNING_GAMMA = 0.9


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise WrongAnswer(f"{name} should be a number, got {value!r}") from None


@exercise("Values by hand", fill=("V_hand",))
def values_by_hand(V_hand: Any) -> str:
    """Check ``V_hand``, the values ``[V(sunny), V(rainy)]`` of the weather chain with reward +1
    for a sunny day and ``gamma = 0.5``, solved by hand from the two Bellman equations."""
    V = np.asarray(V_hand, dtype=np.float64)
    if V.shape != (2,):
        raise WrongAnswer(f"V_hand should be two numbers [V(sunny), V(rainy)], got shape {V.shape}")
    P, r, gamma = WEATHER_P, WEATHER_REWARD, WEATHER_GAMMA
    exact = mrp_values(P, r, gamma)
    if np.allclose(V, exact, rtol=0.0, atol=5e-3):
        return f"V_hand = {np.round(V, 3)} solves both Bellman equations."
    problems = []
    for s, name in enumerate(("sunny", "rainy")):
        if abs(V[s] - exact[s]) <= 5e-3:
            continue
        right = r[s] + gamma * (P[s] @ V)
        equation = f"V_{name[0]} = {r[s]:g} + {gamma:g} ({P[s, 0]:g} V_s + {P[s, 1]:g} V_r)"
        problems.append(f"V_hand[{s}] is {V[s]:.4g}, but the equation of a {name} day, {equation}, "
                        f"gives {right:.4g} on its right side with your numbers.")
    raise WrongAnswer(" ".join(problems) + " Solve the two equations together.")


def _flip_gamma(tol: float = 1e-9) -> float:
    """The discount factor at which the best action in s1 turns from a0 to a2 (bisection)."""
    lo, hi = 0.90, 0.95
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if q_iteration(three_state_mdp(mid), tol=1e-12).policy[1] == 2:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


@exercise("Where does the fire become worth it?", fill=("gamma_flip",))
def fire_threshold(gamma_flip: Any) -> str:
    """Check ``gamma_flip``, the discount factor (to three decimals) at which the optimal action in
    ``s1`` of the three-state MDP changes from ``a0`` (stay) to ``a2`` (through the fire)."""
    g = _number(gamma_flip, "gamma_flip")
    if not 0.0 < g < 1.0:
        raise WrongAnswer(f"gamma_flip is {g}; a discount factor of this MDP lies between 0 and 1")
    flip = _flip_gamma()
    if abs(g - flip) <= 5e-4 + 1e-9:
        return f"the fire is worth crossing from gamma = {g:.3f} on."
    best = q_iteration(three_state_mdp(g), tol=1e-12).policy[1]
    side = ("a0 is still the best action in s1 there: the flip lies higher" if best == 0 else
            "a2 is already the best action in s1 there: the flip lies lower")
    raise WrongAnswer(f"gamma_flip is {g:.4f}, more than 0.0005 away from the flip; {side}.")


def step_size_error(alpha: float, alpha_decay: float) -> tuple[float, float]:
    """Train Q-learning on the three-state MDP as "A better step size" asks, and measure it.

    Returns:
        ``(error, last_alpha)``: the largest ``|Q - Q*|`` over the available pairs after
        ``STEP_SIZE_STEPS`` steps of random play, and the step size of the last update.
    """
    mdp = three_state_mdp(Q_LEARNING_GAMMA)
    env = FiniteMDPEnv(mdp)
    agent = QLearningAgent(env.observation_space, env.action_space, alpha=alpha, alpha_decay=alpha_decay,
                           gamma=Q_LEARNING_GAMMA, epsilon=1.0, action_mask=mdp.available, seed=STEP_SIZE_SEED)
    Trainer(agent, env, total_steps=STEP_SIZE_STEPS, seed=STEP_SIZE_SEED).run()
    exact = q_iteration(mdp, tol=1e-12).Q
    error = float(np.abs(agent.Q[mdp.available] - exact[mdp.available]).max())
    return error, agent.alpha_at(agent.num_updates - 1)


@exercise("A better step size", fill=("my_alpha", "my_alpha_decay"))
def step_size(my_alpha: Any, my_alpha_decay: Any) -> str:
    """Check settings ``alpha`` and ``alpha_decay`` of Q-learning on the three-state MDP: after
    10,000 steps of random play (seed 0) the largest error of Q over the available pairs must be
    below 2."""
    alpha, decay = _number(my_alpha, "my_alpha"), _number(my_alpha_decay, "my_alpha_decay")
    if not 0.0 < alpha <= 1.0:
        raise WrongAnswer(f"my_alpha is {alpha:g}; a step size must lie in (0, 1]")
    if decay < 0.0:
        raise WrongAnswer(f"my_alpha_decay is {decay:g}; a decay cannot be negative")
    error, last_alpha = step_size_error(alpha, decay)
    if error < STEP_SIZE_MAX_ERROR:
        return f"the largest error is {error:.2f}, below {STEP_SIZE_MAX_ERROR:g}."
    raise WrongAnswer(f"the largest error is {error:.2f}, not below {STEP_SIZE_MAX_ERROR:g}. The step size "
                      f"has fallen to {last_alpha:.2g} by the last step: if it is tiny, the table stopped "
                      f"moving too early (decay more slowly); if it is large, each noisy sample moves "
                      f"the table too much (start lower or decay faster).")
