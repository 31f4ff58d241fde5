"""The training loop: one :class:`Trainer` for every agent in the book.

The trainer steps a vector of environments, hands each batch of real transitions to the agent
(:meth:`~rlbook.agents.base.Agent.observe`), asks it to learn (:meth:`~rlbook.agents.base.Agent.update`)
and keeps the episode statistics. Everything optional lives in plugins that hook into the loop:

=====================  =====================================================================
hook                   called
=====================  =====================================================================
``before_training``    once, before the first reset (checkpoints are restored here)
``before_episode``     when an environment starts an episode (``env_id`` given)
``before_step``        before each vector step
``after_step``         after each vector step, with the transition batch and update metrics
``after_episode``      when an environment finishes an episode, with its return and length
``after_training``     once, at the end (also after a stop or a Ctrl-C)
``on_error``           when the loop raises (``KeyboardInterrupt`` included)
=====================  =====================================================================

Gymnasium's vector environments reset an environment on the step *after* its episode ended
(next-step autoreset). That step carries no real transition, so the trainer drops it: the
transition from one episode's last observation to the next episode's first never reaches the agent.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlbook.agents.base import Agent, Transition
from rlbook.envs import as_vector_env


class Plugin:
    """Base class of trainer plugins; override the hooks you need. Every hook gets the trainer."""

    def before_training(self, trainer: Trainer) -> None: ...

    def after_training(self, trainer: Trainer) -> None: ...

    def before_episode(self, trainer: Trainer, env_id: int) -> None: ...

    def after_episode(self, trainer: Trainer, env_id: int, episode_return: float, episode_length: int) -> None: ...

    def before_step(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer, transition: Transition | None, metrics: dict[str, Any]) -> None: ...

    def on_error(self, trainer: Trainer, error: BaseException) -> None: ...


class Objective:
    """What the agent is trained to maximise, computed from the environment's reward.

    The default passes the reward through. Subclass and override ``__call__`` to shape it
    (a penalty per step, a bonus for reaching a state). The trainer's episode statistics always
    report the environment's own reward, so shaped and unshaped runs stay comparable.
    """

    def __call__(self, transition: Transition, infos: dict[str, Any]) -> np.ndarray:
        """Return the rewards (shape ``(n,)``) the agent should see for this batch."""
        return transition.reward


class Trainer:
    """Drive ``agent`` on ``env`` until a budget runs out or a plugin stops it.

    Args:
        agent: any :class:`~rlbook.agents.base.Agent`.
        env: a Gymnasium env, a vector env (next-step autoreset), or an env id string.
        total_steps: stop after this many environment steps (summed over the vector).
        total_episodes: stop after this many finished episodes. At least one budget is required.
        plugins: :class:`Plugin` objects (progress bar, loggers, checkpoints, early stopping).
        objective: an :class:`Objective`; the environment's reward by default.
        seed: seeds the first ``env.reset``; ``None`` leaves the environment unseeded.
        train: ``False`` runs the agent greedily without learning (evaluation or a demo).

    After :meth:`run`, ``episode_returns``, ``episode_lengths`` and ``episode_end_steps`` hold one
    entry per finished episode, ``step`` the environment steps taken, ``stop_reason`` why it ended.
    """

    def __init__(
        self,
        agent: Agent,
        env,
        *,
        total_steps: int | None = None,
        total_episodes: int | None = None,
        plugins: Sequence[Plugin] = (),
        objective: Objective | None = None,
        seed: int | None = None,
        train: bool = True,
    ):
        if total_steps is None and total_episodes is None:
            raise ValueError("give a budget: total_steps and/or total_episodes")
        for name, value in (("total_steps", total_steps), ("total_episodes", total_episodes)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.agent = agent
        self.env = as_vector_env(env)
        self._check_env_matches_agent()
        self.total_steps = total_steps
        self.total_episodes = total_episodes
        self.plugins = list(plugins)
        self.objective = objective or Objective()
        self.seed = seed
        self.train = train

        self.step = 0
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.episode_end_steps: list[int] = []
        self.last_metrics: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.interrupted = False
        self.start_time = math.nan
        self.elapsed = 0.0  # seconds of training, accumulated over resumed runs
        self._elapsed_before = 0.0

    # ------------------------------------------------------------------ public
    @property
    def num_envs(self) -> int:
        return self.env.num_envs

    @property
    def episodes(self) -> int:
        """Finished episodes so far."""
        return len(self.episode_returns)

    def stop(self, reason: str) -> None:
        """Ask the loop to end after the current step (plugins call this)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def mean_return(self, window: int = 100) -> float:
        """Mean return of the last ``window`` finished episodes (NaN before the first)."""
        if not self.episode_returns:
            return math.nan
        return float(np.mean(self.episode_returns[-window:]))

    def run(self) -> Trainer:
        """Run the loop. A Ctrl-C ends it cleanly (plugins see it in ``on_error``; checkpoints save)
        and sets ``interrupted``; any other error is re-raised after ``on_error``."""
        self.stop_reason = None
        self.interrupted = False
        try:
            self._call("before_training")
            self.start_time = time.perf_counter()
            self._elapsed_before = self.elapsed
            self._loop()
        except KeyboardInterrupt as error:
            self.interrupted = True
            self.stop("interrupted")
            self._call("on_error", error)
        except BaseException as error:
            self._update_elapsed()
            self._call("on_error", error)
            raise
        finally:
            self._update_elapsed()
        self._call("after_training")
        return self

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to resume this run (plain values only)."""
        return {
            "step": int(self.step),
            "episode_returns": [float(r) for r in self.episode_returns],
            "episode_lengths": [int(n) for n in self.episode_lengths],
            "episode_end_steps": [int(s) for s in self.episode_end_steps],
            "elapsed": float(self.elapsed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.episode_returns = list(state["episode_returns"])
        self.episode_lengths = list(state["episode_lengths"])
        self.episode_end_steps = list(state["episode_end_steps"])
        self.elapsed = float(state["elapsed"])
        self._elapsed_before = self.elapsed

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        env, agent = self.env, self.agent
        n = env.num_envs
        env_ids = np.arange(n)
        # Resumed runs must not replay the same episodes: offset the seed by the steps already done.
        seed = None if self.seed is None else self.seed + self.step
        agent.begin_run(n)
        obs, _ = env.reset(seed=seed)
        episode_return = np.zeros(n, dtype=np.float64)
        episode_length = np.zeros(n, dtype=np.int64)
        needs_reset = np.zeros(n, dtype=bool)  # rows whose next step is an autoreset
        for i in range(n):
            self._call("before_episode", i)

        while not self._budget_spent():
            if self.plugins:
                self._call("before_step")
            actions = agent.act_batch(obs, explore=self.train)
            next_obs, reward, terminated, truncated, infos = env.step(actions)
            ended = terminated | truncated
            resetting = needs_reset.any()
            # Autoreset rows carry no real transition: mask them out of everything.
            if resetting:
                ended &= ~needs_reset
            episode_return += reward
            episode_length += 1
            if resetting:
                episode_return[needs_reset] = 0.0  # a reward wrapper may give the reset row a reward
                episode_length[needs_reset] = 0

            transition = None
            metrics: dict[str, Any] = {}
            if self.train:
                transition = Transition(
                    obs=obs,
                    action=np.asarray(actions),
                    reward=np.asarray(reward, dtype=np.float32),
                    next_obs=next_obs,
                    terminated=np.asarray(terminated, dtype=bool),
                    truncated=np.asarray(truncated, dtype=bool),
                    env_ids=env_ids,
                )
                if resetting:
                    transition = transition.select(~needs_reset)
                    infos = _select_infos(infos, ~needs_reset)
                if len(transition):
                    transition.reward = np.asarray(self.objective(transition, infos), dtype=np.float32)
                    agent.observe(transition)
                    metrics = agent.update()
                    if metrics:
                        self.last_metrics = metrics
                else:
                    transition = None  # a step that only reset environments: nothing real happened
            self.step += n - int(needs_reset.sum()) if resetting else n

            if resetting:
                for i in np.flatnonzero(needs_reset):
                    self._call("before_episode", int(i))
            if ended.any():
                for i in np.flatnonzero(ended):
                    self.episode_returns.append(float(episode_return[i]))
                    self.episode_lengths.append(int(episode_length[i]))
                    self.episode_end_steps.append(self.step)
                    self._call("after_episode", int(i), float(episode_return[i]), int(episode_length[i]))
                episode_return[ended] = 0.0
                episode_length[ended] = 0
            needs_reset = ended
            obs = next_obs
            if self.plugins:
                self._call("after_step", transition, metrics)

    def _budget_spent(self) -> bool:
        if self.stop_reason is not None:
            return True
        if self.total_steps is not None and self.step >= self.total_steps:
            self.stop_reason = "total_steps"
        elif self.total_episodes is not None and self.episodes >= self.total_episodes:
            self.stop_reason = "total_episodes"
        return self.stop_reason is not None

    def _update_elapsed(self) -> None:
        if not math.isnan(self.start_time):
            self.elapsed = self._elapsed_before + time.perf_counter() - self.start_time

    def _call(self, hook: str, *args) -> None:
        for plugin in self.plugins:
            getattr(plugin, hook)(self, *args)

    def _check_env_matches_agent(self) -> None:
        obs_space = self.env.single_observation_space
        act_space = self.env.single_action_space
        self.agent.check_spaces(obs_space, act_space)
        if obs_space.shape != self.agent.observation_space.shape or act_space != self.agent.action_space:
            raise ValueError(
                f"the agent was built for observations {self.agent.observation_space} and actions "
                f"{self.agent.action_space}, but the environment has {obs_space} and {act_space}"
            )


def _select_infos(infos: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """The rows of a vector env's ``infos`` where ``mask`` holds (nested dicts and ``_key`` masks too),
    so that an :class:`Objective` sees infos aligned with the transition's rows."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if isinstance(value, dict):
            out[key] = _select_infos(value, mask)
        elif isinstance(value, np.ndarray) and value.shape[:1] == mask.shape:
            out[key] = value[mask]
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------- plugins of the loop itself
class StopOnReward(Plugin):
    """Stop once the mean return of the last ``window`` episodes reaches ``threshold``.

    ``solved_at_step`` and ``solved_at_seconds`` record when that happened (``None`` if never)."""

    def __init__(self, threshold: float, window: int = 100):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.threshold = float(threshold)
        self.window = int(window)
        self.solved_at_step: int | None = None
        self.solved_at_seconds: float | None = None

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        if len(trainer.episode_returns) >= self.window and trainer.mean_return(self.window) >= self.threshold:
            if self.solved_at_step is None:
                self.solved_at_step = trainer.step
                self.solved_at_seconds = trainer._elapsed_before + time.perf_counter() - trainer.start_time
            trainer.stop(f"mean return of the last {self.window} episodes >= {self.threshold:g}")


class Checkpoint(Plugin):
    """Save the agent and the trainer's progress to ``path``, and resume from it.

    Args:
        path: the checkpoint file (written atomically).
        every_steps: also save every this many environment steps (``None``: only at the end).
        resume: if ``path`` exists when training starts, load it and continue from its step.
        on_interrupt: save when the run is interrupted by Ctrl-C or fails with an error.
    """

    def __init__(self, path: str | os.PathLike, every_steps: int | None = None, resume: bool = True,
                 on_interrupt: bool = True):
        if every_steps is not None and every_steps <= 0:
            raise ValueError(f"every_steps must be positive, got {every_steps}")
        self.path = Path(path)
        self.every_steps = every_steps
        self.resume = resume
        self.on_interrupt = on_interrupt
        self.resumed_from_step: int | None = None
        self._next_save = math.inf
        self._ready = False  # True once before_training finished: only then is the agent worth saving

    def before_training(self, trainer):
        self._ready = False
        if self.resume and self.path.exists():
            extra = trainer.agent.load(self.path)
            if "trainer" in extra:
                trainer.load_state_dict(extra["trainer"])
            self.resumed_from_step = trainer.step
        if self.every_steps:
            self._next_save = (trainer.step // self.every_steps + 1) * self.every_steps
        self._ready = True

    def after_step(self, trainer, transition, metrics):
        if trainer.step >= self._next_save:
            self.save(trainer)
            # from the step count: a vector step larger than every_steps must not trigger a save per step
            self._next_save = (trainer.step // self.every_steps + 1) * self.every_steps

    def on_error(self, trainer, error):
        # Never overwrite a checkpoint with an agent that failed to load or start.
        if self.on_interrupt and self._ready:
            self.save(trainer)

    def after_training(self, trainer):
        if self._ready:
            self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        trainer._update_elapsed()
        trainer.agent.save(self.path, extra={"trainer": trainer.state_dict()})
