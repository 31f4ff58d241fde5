"""Evaluating an agent: play whole episodes greedily and report their returns; the book's solve rule
(:class:`GreedySolve`, a trainer plugin)."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlbook.agents.base import Agent
from rlbook.config import check_bool, check_float, check_int, check_seed
from rlbook.envs import as_vector_env, make
from rlbook.train import Plugin


@dataclass
class EvalResult:
    """Returns and lengths of the evaluated episodes, in the order they finished."""

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def __repr__(self) -> str:
        return (f"EvalResult(episodes={len(self.returns)}, mean_return={self.mean:.3f}, "
                f"std={self.std:.3f}, mean_length={np.mean(self.lengths):.1f})")


def evaluate(agent: Agent, env, n_episodes: int = 100, *, explore: bool = False,
             seed: int | None = None, max_steps: int | None = None) -> EvalResult:
    """Play ``n_episodes`` complete episodes and return their returns and lengths.

    Args:
        agent: any agent; it acts greedily unless ``explore=True`` and does not learn.
        env: an env, a vector env (episodes run in parallel, faster) or an env id.
        n_episodes: how many finished episodes to collect.
        explore: act with the agent's exploration (off by default).
        seed: seeds the first reset.
        max_steps: a safety cap on vector steps (default ``1000 * n_episodes``): an agent that
            never finishes an episode in an env without a time limit raises instead of hanging.

    With a vector env, episodes that start after the first ``n_episodes`` have been started are
    not counted, so fast-finishing episodes cannot crowd out slow ones.
    """
    if not isinstance(agent, Agent):
        raise TypeError(f"agent must be an rlbook Agent, got {type(agent).__name__}")
    n_episodes = check_int("n_episodes", n_episodes, 1)
    explore = check_bool("explore", explore)
    seed = check_seed("seed", seed)
    if max_steps is not None:
        max_steps = check_int("max_steps", max_steps, 1)
    venv = as_vector_env(env)
    try:
        return _play_episodes(agent, venv, n_episodes, explore, seed, max_steps)
    finally:
        if isinstance(env, str):  # we made it, so we close it
            venv.close()


def _play_episodes(agent: Agent, venv, n_episodes: int, explore: bool, seed: int | None,
                   max_steps: int | None) -> EvalResult:
    n = venv.num_envs
    obs, _ = venv.reset(seed=seed)
    returns, lengths = [], []
    ep_return = np.zeros(n)
    ep_length = np.zeros(n, dtype=np.int64)
    needs_reset = np.zeros(n, dtype=bool)
    started = n  # episodes begun so far; each env starts one at reset
    counted = np.ones(n, dtype=bool)  # does the running episode of each env count?
    if n > n_episodes:
        counted[n_episodes:] = False
        started = n_episodes
    max_steps = max_steps or 1000 * n_episodes
    for _ in range(max_steps):
        actions = agent.act_batch(obs, explore=explore)
        obs, reward, terminated, truncated, _ = venv.step(actions)
        live = ~needs_reset
        ep_return[live] += reward[live]
        ep_length[live] += 1
        ended = (terminated | truncated) & live
        for i in np.flatnonzero(ended):
            if counted[i]:
                returns.append(ep_return[i])
                lengths.append(ep_length[i])
            counted[i] = started < n_episodes
            started += counted[i]
            ep_return[i] = 0.0
            ep_length[i] = 0
        needs_reset = ended
        if len(returns) >= n_episodes:
            break
    else:
        raise RuntimeError(f"evaluate: only {len(returns)} of {n_episodes} episodes finished in {max_steps} steps")
    return EvalResult(np.asarray(returns[:n_episodes], dtype=np.float64), np.asarray(lengths[:n_episodes]))


# ---------------------------------------------------------------------- the book's solve rule
class GreedySolve(Plugin):
    """The book's solve rule, as a trainer plugin: *the greedy policy solves*.

    Every ``every_steps`` environment steps, play ``episodes`` greedy episodes on fresh environments (a
    separate evaluation vector env, reset with a seed never used for training). When their mean return
    reaches ``threshold``, play ``confirm`` more fresh greedy episodes; the run is solved when their mean
    reaches ``threshold`` too. The time spent evaluating does not count as training time (the trainer's
    clock is paused), so ``solved_at_seconds`` is pure training time. With ``stop=True`` a solved run stops.

    Args:
        make_env: an env id or a function that makes one evaluation env.
        threshold: the mean return that counts as solved (475 for CartPole-v1).
        every_steps: environment steps between two checks (2,000 in the book).
        episodes: greedy episodes per check (20).
        confirm: further greedy episodes that must confirm a passing check (100).
        num_envs: evaluation envs played in parallel.
        seed: seeds the evaluation envs: check ``k`` resets them with ``seed + 1000 * k`` (keep it apart from
            the training seeds).
        stop: stop training once solved.

    Attributes:
        history: one ``(step, seconds, mean_return)`` per check.
        solved_at_step / solved_at_seconds / confirm_mean: when it solved (``None`` if never), and the
            mean of the confirming episodes.
    """

    def __init__(self, make_env, threshold: float, every_steps: int = 2_000, episodes: int = 20,
                 confirm: int = 100, num_envs: int = 10, seed: int = 1_000_000, stop: bool = True):
        if not (isinstance(make_env, str) or callable(make_env)):
            raise TypeError(f"make_env must be an env id or a function that makes an env, got {make_env!r}")
        self.make_env = make_env
        self.threshold = check_float("threshold", threshold)
        self.every_steps = check_int("every_steps", every_steps, 1)
        self.episodes = check_int("episodes", episodes, 1)
        self.confirm = check_int("confirm", confirm, 0)
        self.num_envs = check_int("num_envs", num_envs, 1)
        self.seed = check_seed("seed", seed)
        self.stop = check_bool("stop", stop)
        self.history: list[tuple[int, float, float]] = []
        self.solved_at_step: int | None = None
        self.solved_at_seconds: float | None = None
        self.confirm_mean: float | None = None
        self._venv = None
        self._checks = 0
        self._next = self.every_steps

    def before_training(self, trainer) -> None:
        if self._venv is None:
            factory = (lambda: make(self.make_env)) if isinstance(self.make_env, str) else self.make_env
            self._venv = gym.vector.SyncVectorEnv([factory] * self.num_envs)
        self._next = (trainer.step // self.every_steps + 1) * self.every_steps

    def after_step(self, trainer, transition, metrics) -> None:
        if trainer.step < self._next or self.solved_at_step is not None:
            return
        self._next = (trainer.step // self.every_steps + 1) * self.every_steps
        seconds = trainer.seconds()
        with trainer.pause_clock():
            mean = self._mean(trainer.agent, self.episodes)
            self.history.append((trainer.step, seconds, mean))
            if mean >= self.threshold:
                confirm = self._mean(trainer.agent, self.confirm) if self.confirm else mean
                if confirm >= self.threshold:
                    self.solved_at_step, self.solved_at_seconds, self.confirm_mean = trainer.step, seconds, confirm
        if self.solved_at_step is not None and self.stop:
            trainer.stop(f"the greedy policy solved: {self.episodes} + {self.confirm} greedy episodes "
                         f">= {self.threshold:g}")

    def after_training(self, trainer) -> None:
        if self._venv is not None:
            self._venv.close()
            self._venv = None

    def _mean(self, agent: Agent, n: int) -> float:
        seed = self.seed + 1000 * self._checks
        self._checks += 1
        return evaluate(agent, self._venv, n_episodes=n, seed=seed).mean
