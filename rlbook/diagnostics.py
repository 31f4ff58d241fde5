"""What a value-based agent believes while it trains: trainer plugins that record it (chapter 7).

* :class:`HeldOutQ` -- the mean of ``max_a Q(s, a)`` over a fixed set of held-out states, every few thousand
  steps: the network's own estimate of how much return those states hold. Overestimation shows as this curve
  running above the true value; :func:`greedy_discounted_returns` measures that true value for CartPole.
* :class:`CartPoleGreedyValue` -- the true discounted return of the greedy policy from those states
  (CartPole), the value :class:`HeldOutQ` estimates.
* :class:`NoisySNR` -- the signal-to-noise ratio of each noisy layer (noisy networks) over training.
* :class:`PriorityStats` -- the spread of prioritized replay's priorities and of the importance weights of a
  sampled batch over training.

Each records plain lists (``steps`` and the values), ready to plot.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlbook.config import check_float, check_int
from rlbook.train import Plugin


class _Every(Plugin):
    """Runs :meth:`record` every ``every_steps`` environment steps (and at step 0), off the training clock."""

    def __init__(self, every_steps: int):
        self.every_steps = check_int("every_steps", every_steps, 1)
        self.steps: list[int] = []
        self._next = 0

    def before_training(self, trainer) -> None:
        self._next = trainer.step
        self.after_step(trainer, None, {})

    def after_step(self, trainer, transition, metrics) -> None:
        if trainer.step < self._next:
            return
        with trainer.pause_clock():
            if self.record(trainer):
                self.steps.append(int(trainer.step))
        self._next = (trainer.step // self.every_steps + 1) * self.every_steps

    def record(self, trainer) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError


class HeldOutQ(_Every):
    """Mean ``max_a Q(s, a)`` of the agent over ``states`` (``(n, *obs_shape)``), every ``every_steps`` steps.

    Attributes:
        steps, values: when it was measured and the mean of the maxima.
    """

    def __init__(self, states: np.ndarray, every_steps: int = 2_000):
        super().__init__(every_steps)
        self.states = np.asarray(states)
        if self.states.ndim < 2 or len(self.states) == 0:
            raise ValueError(f"states must be a non-empty batch of observations, got shape {self.states.shape}")
        self.values: list[float] = []

    def record(self, trainer) -> bool:
        with _greedy(trainer.agent):
            q = trainer.agent.q_values(self.states)
        self.values.append(float(q.max(dim=1).values.mean()))
        return True


class CartPoleGreedyValue(_Every):
    """The true discounted return of the agent's greedy policy from each of a fixed set of CartPole ``states``
    (:func:`greedy_discounted_returns`), averaged, every ``every_steps`` steps: the curve :class:`HeldOutQ`
    should follow. The mean over the states it records is what the network's mean ``max_a Q`` estimates, so the
    gap between the two is the overestimation.

    Attributes:
        steps, values: when it was measured and the mean true return.
    """

    def __init__(self, states: np.ndarray, gamma: float, every_steps: int = 10_000, horizon: int = 1_000):
        super().__init__(every_steps)
        self.states = np.asarray(states)
        if self.states.ndim != 2 or self.states.shape[1:] != (4,) or len(self.states) == 0:
            raise ValueError(f"states must be a non-empty (n, 4) batch of CartPole states, got {self.states.shape}")
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)
        self.horizon = check_int("horizon", horizon, 1)
        self.values: list[float] = []

    def record(self, trainer) -> bool:
        returns = greedy_discounted_returns(trainer.agent, self.states, self.gamma, self.horizon)
        self.values.append(float(returns.mean()))
        return True


class NoisySNR(_Every):
    """The signal-to-noise ratio of every noisy layer of the agent's online network (``agent.signal_to_noise()``).

    Attributes:
        steps, values: when, and one ``{layer name: ratio}`` dict per measurement.
    """

    def __init__(self, every_steps: int = 2_000):
        super().__init__(every_steps)
        self.values: list[dict[str, float]] = []

    def record(self, trainer) -> bool:
        ratios = trainer.agent.signal_to_noise()
        if not ratios:
            raise ValueError("NoisySNR needs an agent with noisy layers (DQNConfig(noisy=True))")
        self.values.append(ratios)
        return True


class PriorityStats(_Every):
    """Prioritized replay over training: quantiles (5, 25, 50, 75, 95 %) of the priorities of the rows that can be
    drawn, relative to their mean, and of the importance weights of one batch of ``batch_size`` rows drawn as the
    agent would draw it.

    Attributes:
        steps, priority_quantiles, weight_quantiles, beta: one entry per measurement.
    """

    QUANTILES = (5, 25, 50, 75, 95)

    def __init__(self, every_steps: int = 2_000, batch_size: int = 256, seed: int = 0):
        super().__init__(every_steps)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.rng = np.random.default_rng(seed)  # its own draws: the agent's generator is left alone
        self.priority_quantiles: list[list[float]] = []
        self.weight_quantiles: list[list[float]] = []
        self.beta: list[float] = []

    def record(self, trainer) -> bool:
        buffer = trainer.agent.buffer
        if buffer is None or not hasattr(buffer, "tree") or len(buffer) == 0:
            return False
        slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment * buffer.num_envs)))
        priorities = buffer.tree[slots]
        self.priority_quantiles.append(np.percentile(priorities / priorities.mean(), self.QUANTILES).tolist())
        batch = buffer.sample(self.batch_size, self.rng, beta=trainer.agent.beta)
        self.weight_quantiles.append(np.percentile(batch.weights, self.QUANTILES).tolist())
        self.beta.append(float(trainer.agent.beta))
        return True


class _greedy:
    """Noisy networks use their mean weights for a measurement (no noise in the numbers)."""

    def __init__(self, agent: Any):
        self.net = getattr(agent, "q_net", None)

    def __enter__(self):
        if self.net is not None:
            self.training = self.net.training
            self.net.eval()

    def __exit__(self, *exc):
        if self.net is not None and self.training:
            self.net.train()


def cartpole_states(n: int, seed: int = 0, policy_steps: int = 200) -> np.ndarray:
    """``n`` CartPole states ``(n, 4)`` from random play (the held-out set of chapter 7): each is the state after
    a random number (up to ``policy_steps``) of random actions from a reset, re-drawn when the pole fell first."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    states = []
    while len(states) < n:
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        for _ in range(int(rng.integers(0, policy_steps))):
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
            if terminated or truncated:
                break
        else:
            states.append(obs)
    env.close()
    return np.asarray(states, np.float32)


def greedy_discounted_returns(agent, states: np.ndarray, gamma: float, horizon: int = 1_000) -> np.ndarray:
    """The true discounted return of the agent's greedy policy from each CartPole state in ``states``
    (``(n, 4)``), by playing it out: ``sum_t gamma**t r_t`` until the pole falls or ``horizon`` steps pass
    (``gamma ** horizon`` is negligible for the book's discounts). CartPole's time limit is not applied: the
    values the network learns bootstrap through it, as truncation should.

    All the states are played at once, in Gymnasium's NumPy-vectorised CartPole (one batched forward pass per
    step); a row stops counting once its pole has fallen."""
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    states = np.asarray(states, np.float64)
    if states.ndim != 2 or states.shape[1] != 4 or len(states) == 0:
        raise ValueError(f"states must be a non-empty (n, 4) batch of CartPole states, got shape {states.shape}")
    horizon = check_int("horizon", horizon, 1)
    env = CartPoleVectorEnv(num_envs=len(states), max_episode_steps=horizon + 1)
    env.reset(seed=0)
    env.state = states.T.copy()  # the vector env keeps its state as (4, n)
    alive = np.ones(len(states), bool)
    total, discount = np.zeros(len(states)), 1.0
    for _ in range(horizon):
        actions = np.asarray(agent.act_batch(env.state.T.astype(np.float32), explore=False))
        _, reward, terminated, _, _ = env.step(actions)
        total += discount * reward * alive
        discount *= gamma
        alive &= ~terminated
        if not alive.any():
            break
    env.close()
    return total


__all__ = ["CartPoleGreedyValue", "HeldOutQ", "NoisySNR", "PriorityStats", "cartpole_states",
           "greedy_discounted_returns"]
