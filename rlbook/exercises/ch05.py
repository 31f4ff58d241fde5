"""Checks for the exercises of chapter 5 (the Bellman equation, value iteration and tabular Q-learning).

Usage in the chapter: ``from rlbook.exercises import ch05``, then
``ch05.hand_made_policy.check(my_policy, my_rate)``. Each check below is an
:class:`~rlbook.exercises.Exercise`: its ``check`` method prints or raises, and the function documented
here returns the message of a correct answer.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from rlbook.exercises import WrongAnswer, exercise, number
from rlbook.mdp import FiniteMDP, policy_evaluation, success_probability, value_iteration
from rlbook.tabular import ModelBasedAgent
from rlbook.train import Trainer

#: The discount and the time limit of "A hand-made policy" (the limit of FrozenLake-v1).
POLICY_GAMMA = 0.99
HORIZON = 100

#: The discount of "More counts, better values", then the numbers of random steps, the seed and
#: the number of parallel lakes of its recipe.
COUNTS_GAMMA = 0.9
COUNTS_STEPS = (2_000, 20_000)
COUNTS_SEED = 0
COUNTS_ENVS = 16

#: How close a computed answer must be to the check's own computation.
TOLERANCE = 1e-6


def _lake(gamma: float, **kwargs: Any) -> tuple[FiniteMDP, np.ndarray]:
    """The MDP of the 4x4 lake (``kwargs`` go to ``gym.make``) and its goal mask ``(16,)``."""
    env = gym.make("FrozenLake-v1", **kwargs)
    goal = env.unwrapped.desc.flatten() == b"G"
    return FiniteMDP.from_gym(env, gamma), goal


@exercise("A hand-made policy", fill=("my_policy", "my_rate"))
def hand_made_policy(my_policy: Any, my_rate: Any) -> str:
    """Check ``my_policy``, 16 actions for the slippery 4x4 lake (0 left, 1 down, 2 right, 3 up), and
    ``my_rate``, its exact probability of reaching the goal within 100 steps."""
    mdp, goal = _lake(POLICY_GAMMA)
    try:
        policy = np.asarray(my_policy)
        actions = policy.astype(np.int64)
    except (TypeError, ValueError):
        raise WrongAnswer(f"my_policy should be an array of 16 actions, got {my_policy!r}") from None
    if policy.shape != (mdp.n_states,):
        raise WrongAnswer(f"my_policy has shape {policy.shape}; it should hold one action for each of the "
                          f"{mdp.n_states} states, shape ({mdp.n_states},), in the order of the states "
                          f"(row by row)")
    if policy.dtype.kind not in "iuf" or np.any(actions != policy) or np.any((actions < 0) | (actions > 3)):
        raise WrongAnswer(f"my_policy is {policy.tolist()}; each entry should be an action: 0 left, 1 down, "
                          f"2 right or 3 up")
    rate = number(my_rate, "my_rate")
    exact = success_probability(mdp, actions, goal, horizon=HORIZON)
    optimum = success_probability(mdp, value_iteration(mdp, tol=1e-10).policy, goal, horizon=HORIZON)
    if abs(rate - exact) <= TOLERANCE:
        return (f"your policy reaches the goal within {HORIZON} steps with probability {exact:.3f}; the "
                f"best stationary policy with {optimum:.3f}.")
    if abs(rate - success_probability(mdp, actions, goal)) <= TOLERANCE:
        hint = (f"that is the probability with no time limit; the episode ends after {HORIZON} steps "
                f"(pass horizon={HORIZON})")
    elif abs(rate - policy_evaluation(mdp, actions)[0]) <= TOLERANCE:
        hint = ("that is the discounted value of the start state, not a probability; use "
                "rlbook.mdp.success_probability")
    elif 1.0 < rate <= 100.0 and abs(rate / 100 - exact) <= TOLERANCE:
        hint = "that is a percentage; give the probability, between 0 and 1"
    elif abs(rate - exact) <= 0.05:
        hint = ("that is close, but not exact: a rate from played episodes has sampling noise. Compute it "
                "exactly with rlbook.mdp.success_probability")
    else:
        hint = (f"compute it with rlbook.mdp.success_probability(mdp4, my_policy, goal4, "
                f"horizon={HORIZON})")
    raise WrongAnswer(f"my_rate is {rate:.4g}, not the exact success probability of my_policy; {hint}.")


def _shortest_path(mdp: FiniteMDP, goal: np.ndarray) -> int:
    """The fewest steps from state 0 to the goal in a deterministic MDP: the smallest horizon T whose
    finite-horizon reach probability (value iteration with T sweeps) is 1."""
    reach = FiniteMDP(mdp.P, np.broadcast_to(goal.astype(float), mdp.P.shape), 1.0, terminal=mdp.terminal)
    for steps in range(1, mdp.n_states + 1):
        if value_iteration(reach, horizon=steps, keep_history=False).V[0] > 1.0 - 1e-9:
            return steps
    raise RuntimeError("the goal cannot be reached from the start")


@exercise("The non-slippery lake", fill=("rate_ice", "path_length"))
def non_slippery_lake(rate_ice: Any, path_length: Any) -> str:
    """Check ``rate_ice``, the exact success probability within 100 steps of an optimal policy of the
    non-slippery 4x4 lake, and ``path_length``, the number of moves of its shortest safe path."""
    mdp, goal = _lake(0.9, is_slippery=False)
    policy = value_iteration(mdp, tol=1e-10).policy
    rate = success_probability(mdp, policy, goal, horizon=HORIZON)
    mine = number(rate_ice, "rate_ice")
    if abs(mine - rate) > TOLERANCE:
        raise WrongAnswer(f"rate_ice is {mine:.4g}. On ice without slipping every move goes where it is "
                          f"meant to go: solve the MDP of gym.make('FrozenLake-v1', is_slippery=False) "
                          f"with value iteration and compute the success probability of its greedy policy "
                          f"within {HORIZON} steps with rlbook.mdp.success_probability.")
    steps = _shortest_path(mdp, goal)
    length = number(path_length, "path_length")
    if length == steps:
        return (f"the optimal policy always arrives (probability {rate:.2f}), in {steps} moves from the "
                f"start to the goal.")
    if length == steps + 1:
        hint = "that counts the cells on the path, start included; count the moves"
    elif length == steps - 1:
        hint = "one move short: count the last move, onto the goal, too"
    else:
        hint = ("the path goes from the top-left corner to the bottom-right one around the holes; with "
                "reward 1 on entering the goal, V(start) = gamma ** (moves - 1)")
    raise WrongAnswer(f"path_length is {length:g}; {hint}.")


@functools.cache
def count_errors() -> dict[str, Any]:
    """Run the recipe of "More counts, better values" (cached) and measure it.

    Returns:
        a dict with, for each number of steps ``n`` in ``COUNTS_STEPS``, the largest error
        ``errors[n]``, its variants that mistakes give (``mean[n]``: the mean error; ``other_gamma[n]``:
        compared with the values of gamma 0.99; ``unsolved[n]``: the values before ``solve()``), and,
        for the last ``n``, the three states with the largest errors (``worst``) and their visits.
    """
    exact = value_iteration(_lake(COUNTS_GAMMA)[0], tol=1e-12).V
    exact_099 = value_iteration(_lake(POLICY_GAMMA)[0], tol=1e-12).V
    found: dict[str, Any] = {"errors": {}, "mean": {}, "other_gamma": {}, "unsolved": {}}
    for steps in COUNTS_STEPS:
        envs = gym.make_vec("FrozenLake-v1", num_envs=COUNTS_ENVS, vectorization_mode="sync")
        agent = ModelBasedAgent(envs.single_observation_space, envs.single_action_space, gamma=COUNTS_GAMMA,
                                steps_per_iteration=10**9, seed=COUNTS_SEED)
        Trainer(agent, envs, total_steps=steps, seed=COUNTS_SEED).run()
        envs.close()
        found["unsolved"][steps] = float(np.abs(agent.V - exact).max())
        agent.solve()
        error = np.abs(agent.V - exact)
        found["errors"][steps] = float(error.max())
        found["mean"][steps] = float(error.mean())
        found["other_gamma"][steps] = float(np.abs(agent.V - exact_099).max())
        found["worst"] = np.argsort(error)[::-1][:3].tolist()
        found["visits"] = agent.counts.sum(axis=(1, 2))[found["worst"]].tolist()
    return found


@exercise("More counts, better values", fill=("err_small", "err_big"))
def more_counts(err_small: Any, err_big: Any) -> str:
    """Check ``err_small`` and ``err_big``: the largest absolute difference between the values of a
    learned model and the exact values (gamma 0.9) after 2,000 and after 20,000 random steps, with
    the recipe of the exercise (seed 0, 16 lakes at once, ``solve()`` after training)."""
    found = count_errors()
    small, big = COUNTS_STEPS
    for name, value, steps in (("err_small", err_small, small), ("err_big", err_big, big)):
        mine = number(value, name)
        if abs(mine - found["errors"][steps]) <= TOLERANCE:
            continue
        if abs(mine - found["mean"][steps]) <= TOLERANCE:
            hint = "that is the mean error over the states; take the largest one"
        elif abs(mine - found["other_gamma"][steps]) <= TOLERANCE:
            hint = f"that compares with the exact values of gamma = {POLICY_GAMMA}; solve with gamma = {COUNTS_GAMMA}"
        elif abs(mine - found["unsolved"][steps]) <= TOLERANCE:
            hint = "these are the values before the last solve; call agent.solve() after training"
        elif abs(mine - found["errors"][big if steps == small else small]) <= TOLERANCE:
            hint = "that is the error of the other number of steps"
        else:
            hint = (f"follow the recipe: a fresh ModelBasedAgent(gamma={COUNTS_GAMMA}, "
                    f"steps_per_iteration=10**9, seed={COUNTS_SEED}) and Trainer(agent, envs, "
                    f"total_steps={steps:_}, seed={COUNTS_SEED}) on {COUNTS_ENVS} lakes made by "
                    f"gym.make_vec, then agent.solve() and the largest absolute difference to the exact "
                    f"values of gamma = {COUNTS_GAMMA}")
        raise WrongAnswer(f"{name} is {mine:.4g}, not the error after {steps:,} steps; {hint}.")
    worst = ", ".join(str(s) for s in found["worst"])
    visits = ", ".join(f"{v:,}" for v in found["visits"])
    return (f"the largest error falls from {found['errors'][small]:.3f} after {small:,} steps to "
            f"{found['errors'][big]:.3f} after {big:,}. After {big:,} steps it is largest in states "
            f"{worst}, visited {visits} times.")
