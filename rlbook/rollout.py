"""On-policy data: fixed-shape rollouts with a ``valid`` mask, advantages computed on that layout, and whole
episodes per environment.

Defined for chapters 9-10 (policy gradients, actor-critic); chapter 4's cross-entropy agent uses
:class:`EpisodeBuffer` too. The pieces:

* :class:`MaskedTransition` -- what the :class:`~rlbook.train.Trainer` hands to an agent whose
  ``fixed_shape`` attribute is true: every environment's row at every vector step, with ``valid`` false on the
  rows of Gymnasium's next-step autoreset (the step that only resets an environment), instead of dropping them.
* :class:`RolloutBuffer` -- ``T`` such steps of ``N`` environments as ``(T, N)`` arrays.
* :func:`gae_advantages` -- generalized advantage estimation on the ``(T, N)`` layout (``lam=1`` gives the
  n-step returns of A2C, bootstrapped at the end of the rollout).
* :func:`returns_to_go` and :class:`EpisodeBuffer` -- whole episodes, for REINFORCE and CEM.

**Why the fixed shape needs no extra values.** In next-step autoreset mode, an environment whose episode
ended at step ``t`` returns the true final observation as ``next_obs[t]``; at step ``t + 1`` it only resets,
and that row's ``obs`` *is* the final observation. So ``V(obs[t + 1])``, which the learner computes for the
whole ``(T, N)`` block anyway, is exactly the bootstrap value a truncated row ``t`` needs. The values of all
``T`` observations plus those of the last step's ``next_obs`` are all the values the advantages need:
terminated rows do not bootstrap (``1 - terminated``), truncated rows bootstrap from their final observation,
and nothing chains across an episode boundary (``1 - done``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlbook.config import check_float, check_int
from rlbook.transition import Transition


@dataclass
class MaskedTransition(Transition):
    """A :class:`~rlbook.transition.Transition` with one row per environment of the vector, always
    (``env_ids == arange(N)``), and ``valid``: false on autoreset rows, which carry no transition (their
    reward is 0 and their ``obs`` is the final observation of the episode that ended on the step before).

    Attributes:
        valid: ``(N,)`` bool.
    """

    valid: np.ndarray

    @property
    def num_valid(self) -> int:
        """Rows that are real transitions (environment steps)."""
        return int(np.count_nonzero(self.valid))


class RolloutBuffer:
    """``steps`` vector steps of ``num_envs`` environments, stored as ``(steps, num_envs, ...)`` NumPy arrays.

    :meth:`add` takes one :class:`MaskedTransition` per vector step; after ``steps`` of them the buffer is
    :attr:`full`, and the learner reads ``obs``, ``actions``, ``rewards``, ``terminated``, ``truncated``,
    ``valid`` and ``last_next_obs`` (the ``next_obs`` of the final step, ``(num_envs, ...)``, where the next
    rollout starts), then calls :meth:`clear`.
    """

    def __init__(self, steps: int, num_envs: int, obs_shape: tuple[int, ...], obs_dtype=np.float32,
                 action_shape: tuple[int, ...] = (), action_dtype=np.int64):
        self.steps = check_int("steps", steps, 1)
        self.num_envs = check_int("num_envs", num_envs, 1)
        t, n = self.steps, self.num_envs
        self.obs = np.zeros((t, n, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((t, n, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros((t, n), dtype=np.float32)
        self.terminated = np.zeros((t, n), dtype=bool)
        self.truncated = np.zeros((t, n), dtype=bool)
        self.valid = np.zeros((t, n), dtype=bool)
        self.last_next_obs = np.zeros((n, *obs_shape), dtype=obs_dtype)
        self.pos = 0

    @property
    def full(self) -> bool:
        """Whether ``steps`` vector steps are stored (time to learn, then :meth:`clear`)."""
        return self.pos == self.steps

    def add(self, transition: MaskedTransition) -> None:
        """Store one vector step (all ``num_envs`` rows, in environment order)."""
        if self.full:
            raise RuntimeError("the rollout buffer is full: learn from it and clear() it first")
        if not isinstance(transition, MaskedTransition):
            raise TypeError("RolloutBuffer.add needs a MaskedTransition (an agent with fixed_shape = True gets "
                            f"them from the Trainer), got {type(transition).__name__}")
        if len(transition) != self.num_envs or not np.array_equal(transition.env_ids, np.arange(self.num_envs)):
            raise ValueError(f"expected one row per environment in order (0..{self.num_envs - 1}), got env_ids "
                             f"{np.asarray(transition.env_ids).tolist()}")
        t = self.pos
        self.obs[t] = transition.obs
        self.actions[t] = np.asarray(transition.action).reshape(self.actions.shape[1:])
        valid = np.asarray(transition.valid, dtype=bool)
        self.rewards[t] = np.where(valid, transition.reward, 0.0)
        self.terminated[t] = transition.terminated & valid
        self.truncated[t] = transition.truncated & valid
        self.valid[t] = valid
        self.last_next_obs[:] = transition.next_obs
        self.pos += 1

    def clear(self) -> None:
        """Start a new rollout (the arrays are overwritten step by step)."""
        self.pos = 0


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor,
                   truncated: torch.Tensor, valid: torch.Tensor, gamma: float, lam: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets on a ``(T, N)`` rollout.

    Args:
        rewards, terminated, truncated, valid: ``(T, N)`` (as stored by :class:`RolloutBuffer`).
        values: ``(T + 1, N)``: ``V(obs[t])`` for ``t < T`` and ``V(last_next_obs)`` in the last row.
        gamma: discount.
        lam: GAE's lambda; 1 gives ``sum_k gamma**k r_{t+k} + gamma**m V(s_{t+m}) - V(s_t)``, the return up to
            the end of the rollout or of the episode (A2C's n-step return), 0 gives the one-step TD error.

    ``delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)`` with ``V(s'_t) = values[t + 1]`` (for a row
    whose episode ended, the next row of the same environment is the autoreset row whose ``obs`` is the final
    observation; see the module docstring), and ``A_t = delta_t + gamma lam (1 - done_t) A_{t+1}``. Invalid rows
    get advantage 0 and a target equal to their value (so a loss masked by ``valid`` ignores them).
    Returns ``(advantages, targets)``, both ``(T, N)``, ``targets = advantages + values[:-1]``.
    """
    gamma = check_float("gamma", gamma, 0.0, 1.0)
    lam = check_float("lam", lam, 0.0, 1.0)
    steps = rewards.shape[0]
    if values.shape[0] != steps + 1 or values.shape[1:] != rewards.shape[1:]:
        raise ValueError(f"values must have shape (T + 1, N) = ({steps + 1}, {rewards.shape[1]}), "
                         f"got {tuple(values.shape)}")
    values = values.detach()
    not_terminated = (~terminated).to(values.dtype)
    not_done = (~(terminated | truncated)).to(values.dtype)
    valid_f = valid.to(values.dtype)
    advantages = torch.zeros_like(rewards, dtype=values.dtype)
    last = torch.zeros_like(values[0])
    for t in range(steps - 1, -1, -1):
        delta = rewards[t] + gamma * not_terminated[t] * values[t + 1] - values[t]
        last = (delta + gamma * lam * not_done[t] * last) * valid_f[t]
        advantages[t] = last
    return advantages, advantages + values[:-1]


def returns_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = sum_{k >= t} gamma**(k - t) r_k`` for one episode's rewards ``(T,)`` (float64)."""
    gamma = check_float("gamma", gamma, 0.0, 1.0)
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


@dataclass
class Episode:
    """One finished episode of one environment.

    Attributes:
        obs: observations ``(T, *obs_shape)`` (as stored: encoded, if the agent encodes them).
        actions: actions ``(T, *action_shape)``.
        rewards: rewards ``(T,)`` float64.
        terminated: the episode ended in a terminal state (``False``: it was truncated by a time limit, and its
            last observation still had a future).
        env_id: the environment of the vector it came from.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    env_id: int

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        return float(self.rewards.sum())


class EpisodeBuffer:
    """Collects whole episodes per environment from batches of transitions (chapter 4's CEM and chapter 9's
    REINFORCE learn from whole episodes).

    :meth:`add` appends each row to its environment's running episode and returns the episodes that ended
    with it. Storage per environment grows by doubling, so a long episode costs no more than amortised
    copying. :meth:`discard_running` forgets unfinished episodes (at the start of a run, when the
    environments are reset, or after a policy update when only the current policy's data may be used).
    """

    def __init__(self, obs_shape: tuple[int, ...], obs_dtype=np.float32, action_shape: tuple[int, ...] = (),
                 action_dtype=np.int64, capacity: int = 64):
        self.obs_shape, self.obs_dtype = tuple(obs_shape), obs_dtype
        self.action_shape, self.action_dtype = tuple(action_shape), action_dtype
        cap = check_int("capacity", capacity, 1)
        self._obs = np.zeros((0, cap, *self.obs_shape), dtype=obs_dtype)
        self._act = np.zeros((0, cap, *self.action_shape), dtype=action_dtype)
        self._rew = np.zeros((0, cap), dtype=np.float64)
        self._len = np.zeros(0, dtype=np.int64)

    def running_lengths(self) -> np.ndarray:
        """Steps stored so far of each environment's unfinished episode."""
        return self._len.copy()

    def discard_running(self) -> None:
        """Forget every environment's unfinished episode."""
        self._len[:] = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, env_ids: np.ndarray) -> list[Episode]:
        """Append one row per entry of ``env_ids`` (each environment at most once) and return the finished
        episodes, in the order of ``env_ids``."""
        ids = np.asarray(env_ids, dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"each environment may appear once per add, got env_ids {ids.tolist()}")
        if len(ids) == 0:
            return []
        self._ensure_capacity(int(ids.max()) + 1)
        pos = self._len[ids]
        self._obs[ids, pos] = obs
        self._act[ids, pos] = np.asarray(actions).reshape(len(ids), *self.action_shape)
        self._rew[ids, pos] = rewards
        self._len[ids] = pos + 1
        terminated = np.asarray(terminated, dtype=bool)
        done = terminated | np.asarray(truncated, dtype=bool)
        finished = []
        for k in np.flatnonzero(done):  # a loop over finished episodes only, not over steps
            i = int(ids[k])
            n = int(self._len[i])
            finished.append(Episode(self._obs[i, :n].copy(), self._act[i, :n].copy(), self._rew[i, :n].copy(),
                                    bool(terminated[k]), i))
            self._len[i] = 0
        return finished

    def _ensure_capacity(self, num_envs: int) -> None:
        envs, cap = self._rew.shape
        longest = int(self._len.max()) if len(self._len) else 0
        if num_envs <= envs and longest < cap:
            return
        new_envs, new_cap = max(envs, num_envs), cap * 2 if longest >= cap else cap
        obs = np.zeros((new_envs, new_cap, *self.obs_shape), dtype=self.obs_dtype)
        act = np.zeros((new_envs, new_cap, *self.action_shape), dtype=self.action_dtype)
        rew = np.zeros((new_envs, new_cap), dtype=np.float64)
        obs[:envs, :cap], act[:envs, :cap], rew[:envs, :cap] = self._obs, self._act, self._rew
        length = np.zeros(new_envs, dtype=np.int64)
        length[:envs] = self._len
        self._obs, self._act, self._rew, self._len = obs, act, rew, length


__all__ = ["Episode", "EpisodeBuffer", "MaskedTransition", "RolloutBuffer", "gae_advantages", "returns_to_go"]
