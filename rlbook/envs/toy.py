"""Small environments for chapters and tests: the three-state MDP and a Gymnasium env for any FiniteMDP."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlbook.mdp import FiniteMDP


def three_state_mdp(gamma: float = 0.90) -> FiniteMDP:
    """The three-state MDP of chapter 1 (from the machine-learning textbook's RL chapter).

    States ``s0, s1, s2``; actions ``a0, a1, a2``, not all available everywhere: ``s0`` allows
    ``a0, a1, a2``, ``s1`` allows ``a0, a2`` and ``s2`` allows ``a1``. Transitions and rewards:

    =======  =====================  ======================
    (s, a)   P over (s0, s1, s2)    R over (s0, s1, s2)
    =======  =====================  ======================
    s0, a0   0.7, 0.3, 0            +10, 0, 0
    s0, a1   1, 0, 0                0
    s0, a2   0.8, 0.2, 0            0
    s1, a0   0, 1, 0                0
    s1, a2   0, 0, 1                0, 0, -50
    s2, a1   0.8, 0.1, 0.1          +40, 0, 0
    =======  =====================  ======================

    The optimal action in ``s1`` is ``a0`` (stay put) for ``gamma = 0.90`` and ``a2`` (through the
    fire, -50, to reach the +40 of ``s2``) for ``gamma = 0.95``. Introduced in chapter 1.
    """
    P = np.zeros((3, 3, 3))
    R = np.zeros((3, 3, 3))
    P[0, 0] = [0.7, 0.3, 0.0]
    R[0, 0] = [10.0, 0.0, 0.0]
    P[0, 1] = [1.0, 0.0, 0.0]
    P[0, 2] = [0.8, 0.2, 0.0]
    P[1, 0] = [0.0, 1.0, 0.0]
    P[1, 2] = [0.0, 0.0, 1.0]
    R[1, 2] = [0.0, 0.0, -50.0]
    P[2, 1] = [0.8, 0.1, 0.1]
    R[2, 1] = [40.0, 0.0, 0.0]
    available = [[0, 1, 2], [0, 2], [1]]
    return FiniteMDP(P, R, gamma, available=available, terminal=np.zeros(3, dtype=bool),
                     state_names=["s0", "s1", "s2"], action_names=["a0", "a1", "a2"])


class FiniteMDPEnv(gym.Env):
    """A Gymnasium env that samples transitions from any :class:`~rlbook.mdp.FiniteMDP`.

    Observations and actions are ``Discrete``. Taking an action that the current state does not
    allow raises ``ValueError``; the allowed actions are in ``info["action_mask"]`` (int8, shape
    ``(A,)``) after ``reset`` and ``step``, and from :meth:`action_mask`. An episode terminates on
    entering a terminal state of the MDP and is truncated after ``max_episode_steps`` steps.

    Args:
        mdp: the MDP to sample from.
        start_state: the first state of every episode, or a start distribution of shape ``(S,)``.
        max_episode_steps: truncate episodes after this many steps (``None``: never).
        render_mode: only ``None`` or ``"ansi"`` (a one-line text description).

    Introduced in chapter 1.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, mdp: FiniteMDP, start_state: int | np.ndarray = 0, max_episode_steps: int | None = None,
                 render_mode: str | None = None):
        if not isinstance(mdp, FiniteMDP):
            raise TypeError(f"FiniteMDPEnv needs a FiniteMDP, got {type(mdp).__name__}")
        self.mdp = mdp
        S, A = mdp.n_states, mdp.n_actions
        if np.ndim(start_state) == 0:
            if not 0 <= int(start_state) < S:
                raise ValueError(f"start_state must lie in [0, {S}), got {start_state}")
            self.start_distribution = np.eye(S)[int(start_state)]
        else:
            dist = np.asarray(start_state, dtype=np.float64)
            if dist.shape != (S,) or np.any(dist < 0) or not np.isclose(dist.sum(), 1.0):
                raise ValueError(f"a start distribution must be non-negative, shape ({S},), and sum to 1")
            self.start_distribution = dist
        if max_episode_steps is not None and max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be positive or None, got {max_episode_steps}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Discrete(S)
        self.action_space = gym.spaces.Discrete(A)
        self._cumulative = np.cumsum(mdp.P, axis=2)
        self._masks = mdp.available.astype(np.int8)
        self.state: int | None = None
        self.elapsed_steps = 0

    def action_mask(self, state: int | None = None) -> np.ndarray:
        """The allowed actions of ``state`` (default: the current one) as an int8 mask ``(A,)``."""
        state = self.state if state is None else state
        if state is None:
            raise RuntimeError("call reset() before asking for the action mask")
        return self._masks[state].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state = int(self.np_random.choice(self.mdp.n_states, p=self.start_distribution))
        self.elapsed_steps = 0
        return self.state, {"action_mask": self.action_mask()}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        s, a = self.state, int(action)
        if not 0 <= a < self.mdp.n_actions:
            raise ValueError(f"action {action} is outside the action space [0, {self.mdp.n_actions})")
        if not self.mdp.available[s, a]:
            allowed = [self.mdp.action_names[i] for i in np.flatnonzero(self.mdp.available[s])]
            raise ValueError(f"action {self.mdp.action_names[a]} ({a}) is not available in state "
                             f"{self.mdp.state_names[s]} ({s}); available: {allowed}")
        row = self._cumulative[s, a]
        s2 = int(min(np.searchsorted(row, self.np_random.random(), side="right"), self.mdp.n_states - 1))
        reward = float(self.mdp.R[s, a, s2])
        self.state = s2
        self.elapsed_steps += 1
        terminated = bool(self.mdp.terminal[s2])
        truncated = self.max_episode_steps is not None and self.elapsed_steps >= self.max_episode_steps
        return s2, reward, terminated, bool(truncated and not terminated), {"action_mask": self.action_mask()}

    def render(self):
        if self.render_mode == "ansi":
            return f"state {self.mdp.state_names[self.state]} after {self.elapsed_steps} steps"
        return None
