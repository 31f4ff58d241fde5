"""The batch of experience that the trainer hands to an agent after every vector step.

It lives in its own small module because both sides use it: the agents (``rlbook.agents``) take
it in, and the building blocks below them (:mod:`rlbook.replay`'s n-step rows extend it) must not
depend on the agents.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class Transition:
    """A batch of transitions, one row per environment that took a valid step.

    The trainer drops the rows of Gymnasium's next-step autoreset (the step that only resets an
    environment whose episode ended on the previous step), so every row here is a real transition.

    Attributes:
        obs: observations before the step, shape ``(n, *obs_shape)``.
        action: actions taken, shape ``(n, *action_shape)``.
        reward: rewards after the trainer's :class:`~rlbook.train.Objective`, shape ``(n,)``, float32.
        next_obs: observations after the step, shape ``(n, *obs_shape)``. For a row whose episode
            ended this is the true final observation (not the first observation of the next episode).
        terminated: the episode reached a terminal state (do not bootstrap), shape ``(n,)``, bool.
        truncated: the episode was cut by a time limit (bootstrap from ``next_obs``), shape ``(n,)``.
        env_ids: which environment of the vector each row comes from, shape ``(n,)``, int64. Agents
            that keep per-environment state (n-step returns, episode buffers) key it on these.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    env_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.reward)

    @property
    def num_valid(self) -> int:
        """Rows that are real transitions (all of them here; see ``rlbook.rollout.MaskedTransition``)."""
        return len(self.reward)

    @property
    def done(self) -> np.ndarray:
        """``terminated | truncated``: the episode of this row is over."""
        return self.terminated | self.truncated

    def select(self, mask: np.ndarray) -> Transition:
        """The rows where ``mask`` is true (a boolean array of shape ``(n,)``)."""
        return Transition(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})
