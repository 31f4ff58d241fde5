"""The agent that ignores what it sees: a baseline every chapter compares against."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlbook.agents.base import Agent, rng_state, set_rng_state
from rlbook.config import AgentConfig


class RandomAgent(Agent):
    """Samples actions uniformly from the action space (any space with a ``sample`` method).

    Args:
        observation_space: the space of one observation.
        action_space: the space of one action.
        config: an :class:`~rlbook.config.AgentConfig`; its ``seed`` seeds the agent's own generator
            (``RandomAgent(obs_space, act_space, seed=0)``).
    """

    config_class = AgentConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: AgentConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        self.rng = np.random.default_rng(self.config.seed)
        self.action_space.seed(int(self.rng.integers(2**31)))

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):  # fast path: one vectorised draw
            return space.start + self.rng.integers(space.n, size=len(obs))
        return np.stack([space.sample() for _ in range(len(obs))])

    def state_dict(self):
        return {**super().state_dict(), "rng": rng_state(self.rng)}

    def load_state_dict(self, state):
        set_rng_state(self.rng, state["rng"])
        super().load_state_dict(state)
