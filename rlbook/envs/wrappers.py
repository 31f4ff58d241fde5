"""Small Gymnasium wrappers used in the book. Introduced in chapter 2.

A wrapper sits between the agent and an environment and changes one thing: the observations
(``ObservationWrapper``), the rewards (``RewardWrapper``) or, as here, the actions
(``ActionWrapper``). Everything else passes through to the wrapped environment.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np


class RandomActionWrapper(gym.ActionWrapper):
    """With probability ``epsilon``, replace the agent's action by a random one.

    This is the classic example of an :class:`gymnasium.ActionWrapper`: the agent never knows that
    some of its actions were swapped. The random action is drawn uniformly from the action space,
    so it may by chance equal the agent's own choice; a "replaced" step is one where the coin came
    up, whatever the draw.

    The count is kept in :attr:`num_replaced` (out of :attr:`num_actions` steps) and each step's
    ``info`` holds ``"action_replaced"`` (bool).

    Args:
        env: the environment to wrap.
        epsilon: probability of replacing an action, in ``[0, 1]``.
        seed: seeds the wrapper's own random generator (coin flips and random actions). With
            ``None``, the generator is seeded from the first ``reset(seed=...)`` that passes a seed,
            so a seeded reset alone makes a run reproducible.
    """

    def __init__(self, env: gym.Env, epsilon: float = 0.1, seed: int | None = None):
        super().__init__(env)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating, np.integer)):
            raise TypeError(f"epsilon must be a number in [0, 1], got {type(epsilon).__name__}")
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)
        self._seeded = seed is not None
        self._seed(seed)
        #: Steps taken through the wrapper.
        self.num_actions = 0
        #: Steps whose action was replaced by a random one.
        self.num_replaced = 0
        self._last_replaced = False

    def _seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)
        # a private copy of the action space, so sampling never disturbs the env's own generator
        self._sampler = copy.deepcopy(self.env.action_space)
        self._sampler.seed(int(self.rng.integers(2**31)))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the wrapped env; the first seeded reset also seeds an unseeded wrapper.

        Returns ``(obs, info)`` of the wrapped env."""
        if seed is not None and not self._seeded:
            self._seed(seed)
            self._seeded = True
        return super().reset(seed=seed, options=options)

    def action(self, action: Any) -> Any:
        """The action passed to the wrapped env: ``action``, or a random one with probability epsilon."""
        self._last_replaced = bool(self.rng.random() < self.epsilon)
        self.num_actions += 1
        if self._last_replaced:
            self.num_replaced += 1
            return self._sampler.sample()
        return action

    def step(self, action: Any):
        """Step the wrapped env with :meth:`action` applied to ``action``.

        Returns ``(obs, reward, terminated, truncated, info)``; ``info["action_replaced"]`` says
        whether the action was replaced."""
        obs, reward, terminated, truncated, info = super().step(action)
        info = {**info, "action_replaced": self._last_replaced}
        return obs, reward, terminated, truncated, info
