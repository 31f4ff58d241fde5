"""Agents that learn tables from experience: tabular Q-learning and model-learning value iteration.

Both work on environments with ``Discrete`` observations and actions (FrozenLake, Taxi,
CliffWalking, :class:`~rlbook.envs.toy.FiniteMDPEnv`) and run under the same
:class:`~rlbook.train.Trainer` as the deep agents of later chapters.

* :class:`QLearningAgent` keeps a table ``Q[s, a]`` and moves it towards the one-step target
  ``r + gamma max_a' Q[s', a']`` after every step (chapters 1 and 5).
* :class:`ModelBasedAgent` counts transitions and rewards while it plays, turns the counts into an
  estimated MDP, and solves that MDP by value iteration (``method="values"``) or Q-iteration
  (``method="q"``) every ``steps_per_iteration`` steps (chapter 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from rlbook.agents.base import Agent, Transition, rng_state, set_rng_state
from rlbook.config import AgentConfig, check_float, check_int
from rlbook.mdp import SolveResult, check_gamma, solve_arrays
from rlbook.schedules import LinearSchedule


# ---------------------------------------------------------------------------------------------- helpers
def _check_mask(action_mask: Any, n_states: int, n_actions: int) -> np.ndarray:
    if action_mask is None:
        return np.ones((n_states, n_actions), dtype=bool)
    mask = np.asarray(action_mask).astype(bool)
    if mask.shape != (n_states, n_actions):
        raise ValueError(f"action_mask must have shape (S, A) = {(n_states, n_actions)}, got {mask.shape}")
    if not mask.any(axis=1).all():
        raise ValueError(f"action_mask leaves state {int(np.flatnonzero(~mask.any(axis=1))[0])} without actions")
    return mask


def _random_available(rng: np.random.Generator, mask_rows: np.ndarray) -> np.ndarray:
    """One uniformly random allowed action per row of ``mask_rows`` ``(n, A)``: the largest random key."""
    keys = rng.random(mask_rows.shape)
    return np.argmax(np.where(mask_rows, keys, -1.0), axis=1)


def _argmax_random_ties(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Row-wise argmax of ``values`` ``(n, A)`` with ties broken uniformly at random."""
    best = values == values.max(axis=1, keepdims=True)
    return _random_available(rng, best)


def _check_exploration(config: Any) -> None:
    """Validate the epsilon fields shared by the tabular configs."""
    check_float("epsilon", config.epsilon, 0.0, 1.0)
    if config.epsilon_end is not None:
        check_float("epsilon_end", config.epsilon_end, 0.0, 1.0)
    check_int("epsilon_decay_steps", config.epsilon_decay_steps, 0)


class _TabularAgent(Agent):
    """Shared checks: ``Discrete`` spaces, table sizes, the action mask, the agent's generator."""

    supported_observation_spaces = (gym.spaces.Discrete,)
    supported_action_spaces = (gym.spaces.Discrete,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any = None, **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        self.n_states = int(observation_space.n)
        self.n_actions = int(action_space.n)
        self._obs_start = int(observation_space.start)
        self._act_start = int(action_space.start)
        self.action_mask = _check_mask(self.config.action_mask, self.n_states, self.n_actions)
        self.rng = np.random.default_rng(self.config.seed)

    def epsilon_at(self, step: int) -> float:
        """Exploration probability after ``step`` environment steps: ``config.epsilon``, decaying
        linearly to ``config.epsilon_end`` over ``config.epsilon_decay_steps`` when those are set."""
        c = self.config
        if c.epsilon_end is None or c.epsilon_decay_steps == 0:
            return c.epsilon
        return LinearSchedule(c.epsilon, c.epsilon_end, c.epsilon_decay_steps).value_at(step)

    def _states(self, obs: np.ndarray) -> np.ndarray:
        """Table rows ``(n,)`` of a batch of observations; ``ValueError`` for states outside the space."""
        obs = np.asarray(obs).reshape(-1)
        states = obs.astype(np.int64) - self._obs_start
        if len(states) and (states.min() < 0 or states.max() >= self.n_states
                            or (obs.dtype.kind not in "iu" and np.any(obs != states + self._obs_start))):
            bad = obs[(states < 0) | (states >= self.n_states) | (obs != states + self._obs_start)][0]
            raise ValueError(f"state {bad.item()!r} is not in the observation space {self.observation_space}")
        return states

    def _actions(self, actions: np.ndarray) -> np.ndarray:
        return np.asarray(actions, dtype=np.int64).reshape(-1) - self._act_start


# ---------------------------------------------------------------------------------------------- Q-learning
@dataclass(kw_only=True)
class QLearningConfig(AgentConfig):
    """Hyperparameters of :class:`QLearningAgent` (``seed`` and ``device`` come from
    :class:`~rlbook.config.AgentConfig`; a table needs no device)."""

    alpha: float = 0.1
    """Learning rate at step 0, in (0, 1]."""
    alpha_decay: float = 0.0
    """Learning-rate decay: ``alpha_t = alpha / (1 + t * alpha_decay)`` after ``t`` updates (0: constant)."""
    gamma: float = 0.99
    """Discount factor."""
    epsilon: float = 0.1
    """Probability of a uniformly random (available) action when exploring, at step 0. 1.0 is random play."""
    epsilon_end: float | None = None
    """Final epsilon of a linear decay (``None``: epsilon stays constant)."""
    epsilon_decay_steps: int = 0
    """Environment steps over which epsilon falls linearly from ``epsilon`` to ``epsilon_end``."""
    initial_q: float = 0.0
    """Initial value of every available ``Q[s, a]`` (optimistic values drive exploration)."""
    action_mask: tuple[tuple[bool, ...], ...] | None = None
    """Which actions each state allows, ``S`` rows of ``A`` booleans (an ``(S, A)`` array is fine; ``None``:
    all). Exploration draws only allowed actions and neither the greedy choice nor the max uses the others."""

    def validate(self) -> None:
        check_gamma(self.gamma)
        check_float("alpha", self.alpha, 0.0, 1.0, low_open=True)
        check_float("alpha_decay", self.alpha_decay, 0.0)
        _check_exploration(self)


class QLearningAgent(_TabularAgent):
    """Tabular Q-learning with epsilon-greedy exploration. Introduced in chapter 1, used in chapter 5.

    After each step ``(s, a, r, s')`` it moves ``Q[s, a]`` a fraction ``alpha`` towards the target
    ``r + gamma max_a' Q[s', a']``, where the max runs over the actions available in ``s'``. A
    terminated step has target ``r`` (nothing follows a terminal state); a truncated step still
    bootstraps, because the time limit is not part of the task.

    Batches from several environments are applied together when their ``(s, a)`` pairs are
    distinct. When a pair repeats within a batch, the rows are applied one after the other in row
    order, exactly as if the steps had come one at a time (a plain fancy-index update would keep
    only the last row).

    Args:
        observation_space, action_space: ``Discrete`` spaces (``TypeError`` otherwise).
        config: a :class:`QLearningConfig` (its ``action_mask`` says which actions each state allows,
            its ``seed`` seeds exploration and tie-breaking); keyword arguments override its fields.

    Attributes:
        Q: the table, float64 ``(S, A)``; unavailable entries are ``-inf``.
        num_updates: rows learned from so far (the ``t`` of the alpha decay).
    """

    config_class = QLearningConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: QLearningConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        self.Q = np.where(self.action_mask, self.config.initial_q, -np.inf)
        self.num_updates = 0
        self._pending: Transition | None = None

    # -------------------------------------------------------------------------------------- schedules
    def alpha_at(self, updates: int) -> float:
        """Learning rate after ``updates`` rows have been learned from."""
        return self.config.alpha / (1.0 + updates * self.config.alpha_decay)

    # -------------------------------------------------------------------------------------- acting
    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        if explore and len(obs) == 1:  # single env: scalar draws avoid array overhead
            state = int(obs[0]) - self._obs_start
            if not 0 <= state < self.n_states or obs[0] != state + self._obs_start:
                self._states(obs)  # raises the clear error
            if self.rng.random() < self.epsilon_at(self.num_steps):
                choices = np.flatnonzero(self.action_mask[state])
            else:
                row = self.Q[state]
                choices = np.flatnonzero(row == row.max())
            return np.array([choices[self.rng.integers(len(choices))] + self._act_start])
        states = self._states(obs)
        q = self.Q[states]
        if not explore:
            return np.argmax(q, axis=1) + self._act_start  # ties: lowest index, deterministic
        greedy = _argmax_random_ties(self.rng, q)
        random = _random_available(self.rng, self.action_mask[states])
        explore_rows = self.rng.random(len(states)) < self.epsilon_at(self.num_steps)
        return np.where(explore_rows, random, greedy) + self._act_start

    # -------------------------------------------------------------------------------------- learning
    def observe(self, transition: Transition) -> None:
        super().observe(transition)
        self._pending = transition

    def update(self) -> dict[str, float]:
        batch, self._pending = self._pending, None
        if batch is None or len(batch) == 0:
            return {}
        if len(batch) == 1:  # the common single-env case: plain Python scalars are several times faster
            s0 = int(batch.obs[0]) - self._obs_start
            a0 = int(batch.action[0]) - self._act_start
            if not self.action_mask[s0, a0]:
                raise ValueError(f"transition takes action {a0} in state {s0}, which the action mask forbids")
            alpha = self.alpha_at(self.num_updates)
            target = float(batch.reward[0])
            if not batch.terminated[0]:
                target += self.config.gamma * float(self.Q[int(batch.next_obs[0]) - self._obs_start].max())
            td0 = target - float(self.Q[s0, a0])
            self.Q[s0, a0] += alpha * td0
            self.num_updates += 1
            return {"td_error": abs(td0), "alpha": alpha}
        s = self._states(batch.obs)
        a = self._actions(batch.action)
        s2 = self._states(batch.next_obs)
        r = np.asarray(batch.reward, dtype=np.float64)
        not_done = ~np.asarray(batch.terminated, dtype=bool)
        if not self.action_mask[s, a].all():
            i = int(np.flatnonzero(~self.action_mask[s, a])[0])
            raise ValueError(f"transition row {i} takes action {a[i]} in state {s[i]}, which the action mask forbids")
        gamma = self.config.gamma
        pairs = s * self.n_actions + a
        if len(np.unique(pairs)) == len(pairs):
            alpha = self.alpha_at(self.num_updates)
            target = r + gamma * not_done * self.Q[s2].max(axis=1)
            td = target - self.Q[s, a]
            self.Q[s, a] += alpha * td
        else:  # repeated (s, a): apply the rows in order, as sequential single steps would
            td = np.empty(len(pairs))
            for i in range(len(pairs)):
                alpha = self.alpha_at(self.num_updates + i)
                target = r[i] + gamma * not_done[i] * self.Q[s2[i]].max()
                td[i] = target - self.Q[s[i], a[i]]
                self.Q[s[i], a[i]] += alpha * td[i]
        self.num_updates += len(pairs)
        return {"td_error": float(np.abs(td).mean()), "alpha": alpha}

    def greedy_policy(self) -> np.ndarray:
        """The greedy action of every state, ``(S,)`` (ties: lowest index)."""
        return np.argmax(self.Q, axis=1)

    def values(self) -> np.ndarray:
        """``max_a Q[s, a]`` for every state, ``(S,)``."""
        return self.Q.max(axis=1)

    # -------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "Q": torch.from_numpy(self.Q.copy()), "num_updates": self.num_updates,
                "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        Q = state["Q"].numpy().astype(np.float64)
        if Q.shape != self.Q.shape:
            raise ValueError(f"checkpoint Q-table has shape {tuple(Q.shape)}, this agent {self.Q.shape}")
        super().load_state_dict(state)
        self.Q = Q
        self.num_updates = int(state["num_updates"])
        set_rng_state(self.rng, state["rng"])

    def nonfinite(self) -> str | None:
        """Unavailable actions hold ``-inf`` by design; any NaN, or ``+inf``, means divergence."""
        return "the Q-table" if np.isnan(self.Q).any() or np.isposinf(self.Q).any() else None


# ---------------------------------------------------------------------------------------------- model-based
@dataclass(kw_only=True)
class ModelBasedConfig(AgentConfig):
    """Hyperparameters of :class:`ModelBasedAgent` (``seed`` and ``device`` come from
    :class:`~rlbook.config.AgentConfig`; a table needs no device)."""

    method: Literal["values", "q"] = "values"
    """``"values"``: value iteration on V, act by one-step lookahead; ``"q"``: Q-iteration, act by argmax Q."""
    gamma: float = 0.9
    """Discount factor of the learned MDP."""
    steps_per_iteration: int = 100
    """Environment steps of play between two solves of the learned model (one "iteration")."""
    sweeps: int | None = None
    """Backups per solve: ``None`` solves to ``tol`` (warm-started); ``1`` is the old text's single sweep."""
    tol: float = 1e-6
    """Convergence tolerance of a solve when ``sweeps`` is ``None``."""
    epsilon: float = 1.0
    """Exploration while learning, at step 0: probability of a random action, otherwise the greedy action of
    the last solve with ties broken at random (1.0: pure random play, as in the old text)."""
    epsilon_end: float | None = None
    """Final epsilon of a linear decay (``None``: epsilon stays constant)."""
    epsilon_decay_steps: int = 0
    """Environment steps over which epsilon falls linearly from ``epsilon`` to ``epsilon_end``."""
    action_mask: tuple[tuple[bool, ...], ...] | None = None
    """Which actions each state allows, ``S`` rows of ``A`` booleans (``None``: all)."""

    def validate(self) -> None:
        check_gamma(self.gamma)
        check_int("steps_per_iteration", self.steps_per_iteration, 1)
        if self.sweeps is not None:
            check_int("sweeps", self.sweeps, 1)
        check_float("tol", self.tol, 0.0, low_open=True)
        _check_exploration(self)


class ModelBasedAgent(_TabularAgent):
    """Learn the MDP from experience, then solve it: value iteration on a learned model. Introduced in chapter 5.

    While it plays, the agent counts transitions ``N[s, a, s']`` and sums the rewards seen on each. The
    learned model is ``P_hat[s, a, s'] = N[s, a, s'] / N[s, a]`` with mean rewards; pairs never tried have
    no outgoing probability, so their value is 0 until they are tried. States where an episode
    terminated are never left in the data, so they keep value 0 as terminal states should.

    Every ``steps_per_iteration`` observed steps, :meth:`ModelBasedAgent.update` re-solves the learned model
    (warm-started from the last solution) and counts one *iteration*. Acting greedily picks the
    action with the largest one-step lookahead ``sum_s' P_hat (R_hat + gamma V)`` (``method="values"``)
    or the largest Q-value (``method="q"``). Exploring is epsilon-greedy with respect to the last solve:
    a random action with probability ``epsilon`` (optionally decaying linearly, see ``epsilon_at``),
    otherwise the greedy action with ties broken at random. ``epsilon=1`` is pure random play; a smaller
    epsilon lets the agent's own greedy play carry it to the states that matter (the cells near the goal)
    and so fills in the learned model exactly where the policy needs it.

    Args:
        observation_space, action_space: ``Discrete`` spaces (``TypeError`` otherwise).
        config: a :class:`ModelBasedConfig` (with the ``action_mask`` of allowed actions and the ``seed`` of the
            agent's generator); keyword arguments override its fields.

    Attributes:
        counts: int64 ``(S, A, S)``; ``reward_sums``: float64 ``(S, A, S)``.
        V: ``(S,)`` and Q: ``(S, A)`` of the last solve. iterations: solves done. last_solve: its SolveResult.
    """

    config_class = ModelBasedConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: ModelBasedConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        S, A = self.n_states, self.n_actions
        self.counts = np.zeros((S, A, S), dtype=np.int64)
        self.reward_sums = np.zeros((S, A, S))
        self.V = np.zeros(S)
        self.Q = np.where(self.action_mask, 0.0, -np.inf)
        self.iterations = 0
        self.last_solve: SolveResult | None = None
        self._steps_at_last_solve = 0

    # -------------------------------------------------------------------------------------- acting
    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        states = self._states(obs)
        q = self.Q[states]
        if not explore:
            return np.argmax(q, axis=1) + self._act_start  # ties: lowest index, deterministic
        epsilon = self.epsilon_at(self.num_steps)
        random = _random_available(self.rng, self.action_mask[states])
        if epsilon == 1.0:
            return random + self._act_start
        # Random ties: before the goal has ever been reached every Q is 0 and the greedy part is random play.
        greedy = _argmax_random_ties(self.rng, q)
        explore_rows = self.rng.random(len(states)) < epsilon
        return np.where(explore_rows, random, greedy) + self._act_start

    # -------------------------------------------------------------------------------------- learning
    def observe(self, transition: Transition) -> None:
        super().observe(transition)
        s = self._states(transition.obs)
        a = self._actions(transition.action)
        s2 = self._states(transition.next_obs)
        np.add.at(self.counts, (s, a, s2), 1)  # add.at: repeated (s, a, s') rows all count
        np.add.at(self.reward_sums, (s, a, s2), np.asarray(transition.reward, dtype=np.float64))

    def update(self) -> dict[str, float]:
        """Re-solve the learned model when ``steps_per_iteration`` new steps have been observed
        (one "iteration"); returns the iteration count and solve metrics, ``{}`` in between."""
        if self.num_steps - self._steps_at_last_solve < self.config.steps_per_iteration:
            return {}
        self._steps_at_last_solve = self.num_steps
        result = self.solve()
        return {"iteration": float(self.iterations), "sweeps": float(result.iterations)}

    def model(self) -> tuple[np.ndarray, np.ndarray]:
        """The learned model: ``P_hat`` ``(S, A, S)`` (rows of untried pairs are 0) and the mean reward
        ``r_hat[s, a]`` ``(S, A)``."""
        totals = self.counts.sum(axis=2)
        safe = np.maximum(totals, 1)
        P_hat = self.counts / safe[:, :, None]
        r_hat = self.reward_sums.sum(axis=2) / safe
        return P_hat, r_hat

    def solve(self) -> SolveResult:
        """Solve the learned model now (value iteration or Q-iteration), update ``V`` and ``Q``, count an
        iteration and return the :class:`~rlbook.mdp.SolveResult`."""
        P_hat, r_hat = self.model()
        c = self.config
        method = "v" if c.method == "values" else "q"
        start = self.V if method == "v" else np.where(self.action_mask, self.Q, 0.0)
        max_iter = c.sweeps if c.sweeps is not None else 100_000
        result = solve_arrays(P_hat, r_hat, c.gamma, self.action_mask, method=method, tol=c.tol,
                              max_iter=max_iter, start=start)
        self.V, self.Q = result.V, result.Q
        self.iterations += 1
        self.last_solve = result
        return result

    def greedy_policy(self) -> np.ndarray:
        """The greedy action of every state under the last solve, ``(S,)``."""
        return np.argmax(self.Q, axis=1)

    # -------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "counts": torch.from_numpy(self.counts.copy()),
                "reward_sums": torch.from_numpy(self.reward_sums.copy()), "V": torch.from_numpy(self.V.copy()),
                "Q": torch.from_numpy(self.Q.copy()), "iterations": self.iterations,
                "steps_at_last_solve": self._steps_at_last_solve, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        counts = state["counts"].numpy()
        if counts.shape != self.counts.shape:
            raise ValueError(f"checkpoint counts have shape {tuple(counts.shape)}, this agent {self.counts.shape}")
        super().load_state_dict(state)
        self.counts = counts.astype(np.int64)
        self.reward_sums = state["reward_sums"].numpy().astype(np.float64)
        self.V = state["V"].numpy().astype(np.float64)
        self.Q = state["Q"].numpy().astype(np.float64)
        self.iterations = int(state["iterations"])
        self._steps_at_last_solve = int(state["steps_at_last_solve"])
        set_rng_state(self.rng, state["rng"])
