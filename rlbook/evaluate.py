"""Evaluating an agent: play whole episodes greedily and report their returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlbook.agents.base import Agent
from rlbook.config import check_bool, check_int, check_seed
from rlbook.envs import as_vector_env


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
