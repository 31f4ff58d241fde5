"""An agent whose policy is a plain Python function: hand-coded baselines. Introduced in chapter 2."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlbook.agents.base import Agent
from rlbook.config import AgentConfig


@dataclass(kw_only=True)
class PolicyConfig(AgentConfig):
    """Settings of :class:`PolicyAgent` (the policy itself is code, passed as ``policy_fn``)."""

    vectorized: bool = False
    """Whether ``policy_fn`` takes a whole batch ``(n, *obs_shape)`` instead of one observation."""


class PolicyAgent(Agent):
    """Acts with a fixed, hand-written policy ``policy_fn``; it does not learn.

    Example: the CartPole rule "push the cart towards the side the pole leans to" is
    ``PolicyAgent(env.observation_space, env.action_space, policy_fn=lambda obs: int(obs[2] > 0))``.

    Args:
        observation_space: the space of one observation.
        action_space: the space of one action.
        config: a :class:`PolicyConfig`; keyword ``overrides`` replace its fields (``vectorized=True``).
        policy_fn: with ``vectorized=False``, a function of ONE observation ``(*obs_shape)`` that
            returns one action; it is called once per row of a batch (fine for baselines and
            notebooks, slow for big batches). With ``vectorized=True``, a function of a batch
            ``(n, *obs_shape)`` returning ``n`` actions ``(n, *action_shape)`` at once.

    The same action is returned with ``explore=True`` and ``explore=False``: the policy is
    whatever the function says. A checkpoint holds the settings, not the function:
    ``PolicyAgent.from_checkpoint(path, policy_fn=...)``.
    """

    config_class = PolicyConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PolicyConfig | None = None,
                 *, policy_fn: Callable[[np.ndarray], Any] | None = None, **overrides: Any):
        if callable(config) and not isinstance(config, AgentConfig):
            raise TypeError("pass the policy as policy_fn=...: PolicyAgent(obs_space, act_space, policy_fn=f)")
        if policy_fn is None:
            raise TypeError("PolicyAgent needs its policy: PolicyAgent(obs_space, act_space, policy_fn=f)")
        super().__init__(observation_space, action_space, config, **overrides)
        if not callable(policy_fn):
            raise TypeError(f"policy_fn must be a function of an observation, got {type(policy_fn).__name__}")
        self.policy_fn = policy_fn
        self.vectorized = self.config.vectorized

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Actions ``(n, *action_shape)`` for observations ``(n, *obs_shape)``."""
        if self.vectorized:
            actions = np.asarray(self.policy_fn(obs))
        else:
            actions = np.asarray([self.policy_fn(row) for row in obs])
        if actions.ndim == 0 or len(actions) != len(obs):
            raise ValueError(
                f"policy_fn gave actions of shape {actions.shape} for {len(obs)} observations; "
                f"expected one action per observation"
            )
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            whole = actions.dtype == bool or np.issubdtype(actions.dtype, np.integer) or (
                np.issubdtype(actions.dtype, np.floating) and np.all(actions == np.round(actions))
            )
            if actions.ndim != 1 or not whole:
                raise ValueError(f"policy_fn must return one integer action per observation for {space}, "
                                 f"got {actions[:3]!r}")
            actions = actions.astype(np.int64)
            if len(actions) and (actions.min() < space.start or actions.max() >= space.start + space.n):
                bad = actions[(actions < space.start) | (actions >= space.start + space.n)][0]
                raise ValueError(f"policy_fn returned action {bad}, outside {space}")
        elif isinstance(space, gym.spaces.Box) and actions.shape[1:] != space.shape:
            raise ValueError(f"policy_fn returned actions of shape {actions.shape[1:]}, expected {space.shape}")
        return actions
