"""Tiny environments with known answers, for chapter 6's tests.

:class:`CountingEnv`: rewards known in advance, the oracle for replay and n-step tests. In an episode of
``episode_length`` steps the observation before step ``t`` (t = 0, 1, ...) is ``[t, episode, tag]`` and
the reward of step ``t`` is ``t + 1``, whatever the action. So every stored transition can be checked by
hand: from ``[t, e, tag]`` the n-step return with discount ``gamma`` is ``sum_k gamma**k * (t + k + 1)``
over the steps left in the episode.

:class:`ChainEnv`: a short corridor where walking right pays; a DQN learns it in a few thousand steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class CountingEnv(gym.Env):
    """Observation ``[t, episode, tag]`` (float32, shape ``(3,)``), reward ``t + 1``, terminates after
    ``episode_length`` steps; actions (``Discrete(n_actions)``) change nothing.

    Args:
        episode_length: steps per episode, or ``(low, high)`` to draw each episode's length uniformly
            from ``low..high`` (inclusive) with the env's seeded generator.
        n_actions: size of the (ignored) discrete action space.
        max_episode_steps: if set, truncate episodes after this many steps (a time limit shorter than
            ``episode_length`` turns termination into truncation).
        tag: a constant third observation entry (tell the environments of a vector apart).
    """

    metadata = {"render_modes": []}

    def __init__(self, episode_length: int | tuple[int, int] = 5, n_actions: int = 2,
                 max_episode_steps: int | None = None, tag: float = 0.0):
        if isinstance(episode_length, (tuple, list)):
            low, high = (int(v) for v in episode_length)
        else:
            low = high = int(episode_length)
        if not 1 <= low <= high:
            raise ValueError(f"episode_length must be >= 1 (or a range low <= high), got {episode_length!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps!r}")
        self.length_range = (low, high)
        self.max_episode_steps = max_episode_steps
        self.tag = float(tag)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.t = 0
        self.episode = -1
        self.length = low

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.episode, self.tag], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        low, high = self.length_range
        self.length = low if low == high else int(self.np_random.integers(low, high + 1))
        return self._obs(), {"episode_length": self.length}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        reward = float(self.t + 1)
        self.t += 1
        terminated = self.t >= self.length
        truncated = (not terminated and self.max_episode_steps is not None
                     and self.t >= self.max_episode_steps)
        return self._obs(), reward, terminated, truncated, {}


def brute_force_nstep(rewards: np.ndarray, t: int, n: int, gamma: float) -> tuple[float, int]:
    """Reference n-step return from step ``t`` of one episode with rewards ``rewards`` (shape ``(T,)``):
    ``(sum_{k < m} gamma**k * rewards[t + k], m)`` with ``m = min(n, T - t)`` steps folded."""
    m = min(n, len(rewards) - t)
    return float(sum(gamma**k * rewards[t + k] for k in range(m))), m


class ChainEnv(gym.Env):
    """A corridor of ``length`` cells; the agent starts in cell 0 and the episode terminates with reward
    +1 on reaching the last cell. Actions: 0 = left (a wall at cell 0), 1 = right. Each step costs
    ``step_cost``; episodes are truncated after ``max_episode_steps`` (default ``4 * length``).

    Observation: the one-hot cell, float32 shape ``(length,)``. The optimal return is
    ``1 - step_cost * (length - 1)`` (walk right ``length - 1`` times)."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 8, step_cost: float = 0.01, max_episode_steps: int | None = None):
        if length < 2:
            raise ValueError(f"length must be >= 2, got {length}")
        self.length = int(length)
        self.step_cost = float(step_cost)
        self.max_episode_steps = int(max_episode_steps or 4 * length)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.length,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0
        self.t = 0

    @property
    def optimal_return(self) -> float:
        return 1.0 - self.step_cost * (self.length - 1)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self.position] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = 0
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self.position = min(self.position + 1, self.length - 1) if action == 1 else max(self.position - 1, 0)
        self.t += 1
        terminated = self.position == self.length - 1
        truncated = not terminated and self.t >= self.max_episode_steps
        reward = (1.0 if terminated else 0.0) - self.step_cost
        return self._obs(), reward, terminated, truncated, {}
