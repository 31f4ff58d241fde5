"""Regimens: how a training run is organised into epochs, with hooks a reader overrides (chapter 12).

A :class:`~rlbook.train.Trainer` runs a budget of steps or episodes. A regimen puts a plan on top: **epochs** of
``episodes`` episodes each (``epochs=-1``: until :meth:`Regimen.finished` says so), a checkpoint after every
epoch, and hooks at every level, which a subclass overrides::

    before_training()          after_training()
    before_epoch(epoch)        after_epoch(epoch)
    before_episode(env_id)     after_episode(env_id, episode_return,
                                             episode_length)
    before_step()              after_step(transition, metrics)
    on_error(error) -> bool    # True swallows the error: the run ends
                               # quietly, its checkpoint saved

Two regimens are built in: :class:`Online` (play and learn; the default of ``rlbook train``) and
:class:`Offline` (learn from episodes an earlier run saved with :class:`SaveEpisodes`, without playing).
The plugins here are the command line's batteries: :class:`FrameRate`, :class:`NoProgress` (early stopping),
:class:`RecordVideo` and :class:`SaveEpisodes`; every :class:`~rlbook.train.Plugin` works in a regimen.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlbook.agents.base import Agent
from rlbook.config import check_bool, check_float, check_int
from rlbook.train import Checkpoint, Objective, Plugin, Trainer
from rlbook.transition import Transition


class Regimen:
    """Train ``agent`` on ``env`` for ``epochs`` epochs of ``episodes`` episodes, calling the hooks.

    Args:
        agent: any :class:`~rlbook.agents.base.Agent`.
        env: an env id, a Gymnasium env or vector env (what :meth:`~rlbook.agents.base.Agent.make_trainer` takes).
        episodes: finished episodes per epoch (summed over a vector env's copies).
        epochs: the number of epochs; ``-1`` runs until :meth:`finished` returns ``True`` (or Ctrl-C).
        num_envs: copies of the environment stepped together (when ``env`` is an id).
        plugins: more :class:`~rlbook.train.Plugin` objects (progress bar, loggers, ...).
        objective: the :class:`~rlbook.train.Objective` (reward shaping) the agent learns from.
        seed: seeds the environments.
        train: ``False`` runs greedily without learning (``rlbook train --test``): no checkpoint is written.
        checkpoint: a checkpoint file: loaded at the start when present, saved after every epoch, at the end
            and on Ctrl-C, SIGTERM or an error.
        resume: with a checkpoint present, also continue its run's counters (episodes and epochs done count
            towards ``epochs``); otherwise only the agent's learned state is loaded and ``epochs`` more run.
        checkpoint_extra: plain values saved in the checkpoint (the command line records the env id there).

    After :meth:`run`: ``trainer`` (the :class:`~rlbook.train.Trainer` it used), ``epoch`` (epochs finished),
    ``stop_reason``, ``error`` (an error :meth:`on_error` swallowed, else ``None``), ``loaded_from`` (the
    checkpoint loaded at the start, if any).
    """

    #: The name ``rlbook list regimens`` shows.
    name = "online"

    def __init__(self, agent: Agent, env: Any, *, episodes: int, epochs: int = 1, num_envs: int = 1,
                 plugins: Sequence[Plugin] = (), objective: Objective | None = None, seed: int | None = None,
                 train: bool = True, checkpoint: str | os.PathLike | None = None, resume: bool = False,
                 checkpoint_extra: dict[str, Any] | None = None):
        if not isinstance(agent, Agent):
            raise TypeError(f"agent must be an rlbook Agent, got {type(agent).__name__}")
        self.agent = agent
        self.env = env
        self.episodes = check_int("episodes", episodes, 1)
        self.epochs = check_int("epochs", epochs, -1)
        if self.epochs == 0:
            raise ValueError("epochs must be >= 1, or -1 to run until the regimen is finished")
        self.num_envs = check_int("num_envs", num_envs, 1)
        self.plugins = list(plugins)
        self.objective = objective
        self.seed = seed
        self.train = check_bool("train", train)
        self.resume = check_bool("resume", resume)
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.trainer: Trainer | None = None
        self.epoch = 0
        self.stop_reason: str | None = None
        self.error: BaseException | None = None
        self.loaded_from: Path | None = None

    # ------------------------------------------------------------------ hooks (override)
    def before_training(self) -> None:
        """Once, before the first step (after a checkpoint was loaded)."""

    def after_training(self) -> None:
        """Once, at the end (also after Ctrl-C; ``self.trainer.interrupted`` tells)."""

    def before_epoch(self, epoch: int) -> None:
        """Before the first episode of epoch ``epoch`` (counting from 0)."""

    def after_epoch(self, epoch: int) -> None:
        """After epoch ``epoch``'s last episode (its checkpoint is already saved)."""

    def before_episode(self, env_id: int) -> None:
        """When copy ``env_id`` of the environment starts an episode."""

    def after_episode(self, env_id: int, episode_return: float, episode_length: int) -> None:
        """When copy ``env_id`` finished an episode."""

    def before_step(self) -> None:
        """Before every (vector) step."""

    def after_step(self, transition: Transition | None, metrics: dict[str, Any]) -> None:
        """After every (vector) step, with what the agent observed and its learning metrics."""

    def on_error(self, error: BaseException) -> bool:
        """An exception stopped training (not Ctrl-C). Return ``True`` to swallow it: :meth:`run` then returns
        normally with ``self.error`` set. The checkpoint has already been saved."""
        return False

    def finished(self) -> bool:
        """With ``epochs=-1``, asked after every epoch: stop now? The default: the environment's own
        ``reward_threshold`` (CartPole-v1: 475) is reached by the mean return of the last 100 episodes.
        An environment without a threshold runs until Ctrl-C or a plugin stops it."""
        spec = getattr(self.trainer.env, "spec", None) or getattr(getattr(self.trainer.env, "env", None),
                                                                 "spec", None)
        threshold = getattr(spec, "reward_threshold", None)
        return threshold is not None and len(self.trainer.episode_returns) >= 100 and \
            self.trainer.mean_return(100) >= threshold

    # ------------------------------------------------------------------ running
    def epoch_returns(self, epoch: int) -> list[float]:
        """The returns of the episodes of epoch ``epoch`` (counting from 0) finished so far."""
        return self.trainer.episode_returns[epoch * self.episodes:(epoch + 1) * self.episodes]

    def _make_trainer(self, plugins: list[Plugin]) -> Trainer:
        budget = ({"total_episodes": self.episodes * self.epochs} if self.epochs > 0
                  else {"total_steps": 2 ** 62})
        return self.agent.make_trainer(self.env, num_envs=self.num_envs, plugins=plugins,
                                       objective=self.objective, seed=self.seed, train=self.train, **budget)

    def run(self) -> Regimen:
        """Run every epoch; returns ``self``."""
        plugins: list[Plugin] = [_Hooks(self)]
        if self.checkpoint is not None and self.train:
            if self.checkpoint.exists() and not self.resume:
                self.agent.load(self.checkpoint)
                self.loaded_from = self.checkpoint
            elif self.checkpoint.exists():
                self.loaded_from = self.checkpoint  # the checkpoint plugin loads it, counters too
            plugins.append(_EpochCheckpoint(self.checkpoint, resume=self.resume, extra=self.checkpoint_extra))
        elif self.checkpoint is not None and self.checkpoint.exists():
            self.agent.load(self.checkpoint)  # testing a trained agent: load it, never write it
            self.loaded_from = self.checkpoint
        self.trainer = self._make_trainer(plugins + self.plugins)
        try:
            self.trainer.run()
        except Exception as error:
            if not self.on_error(error):
                raise
            self.error = error
            self.stop_reason = f"error swallowed by the regimen: {type(error).__name__}: {error}"
        else:
            reason = self.trainer.stop_reason
            # the trainer's budget is the regimen's epochs: say so in the regimen's words
            self.stop_reason = f"{self.epoch} epoch(s) done" if reason in (None, "total_episodes") else reason
        return self


class _Hooks(Plugin):
    """Forwards the trainer's hooks to the regimen and marks the epochs."""

    priority = -50  # after the checkpoint has restored the counters, before loggers

    def __init__(self, regimen: Regimen):
        self.regimen = regimen
        self._started = False

    def before_training(self, trainer):
        r = self.regimen
        r.trainer = trainer
        r.epoch = trainer.episodes // r.episodes
        r.before_training()
        r.before_epoch(r.epoch)

    def before_episode(self, trainer, env_id):
        self.regimen.before_episode(env_id)

    def before_step(self, trainer):
        self.regimen.before_step()

    def after_step(self, trainer, transition, metrics):
        self.regimen.after_step(transition, metrics)

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        r = self.regimen
        r.after_episode(env_id, episode_return, episode_length)
        if trainer.episodes % r.episodes:
            return
        r.epoch = trainer.episodes // r.episodes
        for plugin in trainer.plugins:
            if isinstance(plugin, _EpochCheckpoint):
                plugin.save(trainer)
        r.after_epoch(r.epoch - 1)
        if r.epochs > 0 and r.epoch >= r.epochs:
            return  # the trainer's episode budget ends the run
        if r.epochs < 0 and r.finished():
            trainer.stop(f"the regimen is finished after {r.epoch} epoch(s)")
            return
        if trainer.stop_reason is None:
            r.before_epoch(r.epoch)

    def after_training(self, trainer):
        self.regimen.after_training()


class _EpochCheckpoint(Checkpoint):
    """The regimen's checkpoint: saved after every epoch (by ``_Hooks``), at the end and on interruption."""


class Online(Regimen):
    """Play and learn, epoch after epoch: the default regimen of ``rlbook train``."""

    name = "online"


class Offline(Regimen):
    """Learn from episodes saved by :class:`SaveEpisodes`, without playing (``rlbook train --regimen offline``).

    Every epoch replays every saved episode in order, one transition at a time, through ``observe`` and
    ``update``, exactly as the agent saw them when they were played (rewards after that run's objective). For
    off-policy learners (DQN, Q-learning, the model-based agent); on-policy agents (A2C: ``fixed_shape``) are
    refused, since a policy gradient from another policy's actions is biased.

    Args:
        agent: the agent to train.
        episodes_dir: the folder of ``episode-*.npz`` files.
        epochs: passes over the saved episodes.
        checkpoint, resume: as in :class:`Regimen` (saved after every epoch; ``resume`` continues the epoch count).
    """

    name = "offline"

    def __init__(self, agent: Agent, episodes_dir: str | os.PathLike, *, epochs: int = 1,
                 checkpoint: str | os.PathLike | None = None, resume: bool = False,
                 checkpoint_extra: dict[str, Any] | None = None):
        if getattr(agent, "fixed_shape", False):
            raise ValueError(f"{type(agent).__name__} learns on-policy from (T, N) rollouts; it cannot learn from "
                             "saved episodes (use an off-policy agent such as dqn or qlearning)")
        super().__init__(agent, None, episodes=1, epochs=epochs, checkpoint=checkpoint, resume=resume,
                         checkpoint_extra=checkpoint_extra)
        self.episodes_dir = Path(episodes_dir)
        self.files = sorted(self.episodes_dir.glob("episode-*.npz"))
        if not self.files:
            raise ValueError(f"no saved episodes (episode-*.npz) in {self.episodes_dir}; record some with "
                             "`rlbook train ... --save-episodes` first")
        if self.epochs < 0:
            raise ValueError("the offline regimen needs a number of epochs (passes over the saved episodes)")
        self.steps = 0
        self.last_metrics: dict[str, Any] = {}

    def run(self) -> Offline:
        agent = self.agent
        if self.checkpoint is not None and self.checkpoint.exists():
            extra = agent.load(self.checkpoint)
            self.loaded_from = self.checkpoint
            if self.resume:
                self.epoch = int(extra.get("offline", {}).get("epoch", 0))
        try:
            self.before_training()
            agent.begin_run(1)
            while self.epoch < self.epochs:
                self.before_epoch(self.epoch)
                for path in self.files:
                    self._replay(path)
                self.epoch += 1
                self._save()
                self.after_epoch(self.epoch - 1)
            self.stop_reason = f"{self.epoch} epoch(s) done"
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            self._save()
        except Exception as error:
            if not self.on_error(error):
                raise
            self.error = error
            self.stop_reason = f"error swallowed by the regimen: {type(error).__name__}: {error}"
        self.after_training()
        return self

    def _replay(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            episode = {k: data[k] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
        n = len(episode["reward"])
        self.before_episode(0)
        for t in range(n):
            self.before_step()
            row = Transition(obs=episode["obs"][t:t + 1], action=episode["action"][t:t + 1],
                             reward=episode["reward"][t:t + 1].astype(np.float32),
                             next_obs=episode["next_obs"][t:t + 1], terminated=episode["terminated"][t:t + 1],
                             truncated=episode["truncated"][t:t + 1], env_ids=np.zeros(1, np.int64))
            self.agent.observe(row)
            metrics = self.agent.update()
            self.last_metrics = metrics or self.last_metrics
            self.steps += 1
            self.after_step(row, metrics)
        self.after_episode(0, float(episode["reward"].sum()), n)

    def _save(self) -> None:
        if self.checkpoint is not None:
            self.agent.save(self.checkpoint, extra={**self.checkpoint_extra, "offline": {"epoch": self.epoch}})


# ---------------------------------------------------------------------- plugins
class FrameRate(Plugin):
    """Measure environment frames per second over the last ``seconds`` of wall time; the rate is in
    ``trainer.last_metrics["fps"]`` (so loggers and the progress bar show it) and in ``fps``."""

    def __init__(self, seconds: float = 2.0):
        self.seconds = check_float("seconds", seconds, 0.0, low_open=True)
        self.fps = math.nan
        self._mark: tuple[float, int] | None = None

    def before_training(self, trainer):
        self._mark = (time.perf_counter(), trainer.step)

    def after_step(self, trainer, transition, metrics):
        now = time.perf_counter()
        start, step = self._mark
        if now - start >= self.seconds:
            self.fps = (trainer.step - step) / (now - start)
            self._mark = (now, trainer.step)
        # copy the metrics only when they lack the current rate (the agent replaces them when it learns)
        if not math.isnan(self.fps) and trainer.last_metrics.get("fps") != self.fps:
            trainer.last_metrics = {**trainer.last_metrics, "fps": self.fps}


class NoProgress(Plugin):
    """Early stopping: stop when the mean return of the last ``window`` episodes has not beaten its best by more
    than ``min_delta`` for ``patience`` episodes."""

    def __init__(self, patience: int = 200, window: int = 20, min_delta: float = 0.0):
        self.patience = check_int("patience", patience, 1)
        self.window = check_int("window", window, 1)
        self.min_delta = check_float("min_delta", min_delta, 0.0)
        self.best = -math.inf
        self.best_at = 0

    def before_training(self, trainer):
        self.best, self.best_at = -math.inf, trainer.episodes

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        if trainer.episodes < self.window:
            return
        mean = trainer.mean_return(self.window)
        if mean > self.best + self.min_delta:
            self.best, self.best_at = mean, trainer.episodes
        elif trainer.episodes - self.best_at >= self.patience:
            trainer.stop(f"no progress: the mean return of {self.window} episodes has not beaten {self.best:.2f} "
                         f"in {self.patience} episodes")


class RecordVideo(Plugin):
    """Every ``every_episodes`` episodes (and at the end), play one greedy episode on a separate copy of the
    environment and write it to ``directory/step-<N>.webp``.

    Args:
        make_env: a function returning a single env made with ``render_mode="rgb_array"``.
        directory: where the animations go.
        every_episodes: episodes between two recordings.
        max_steps: the longest recorded episode.
    """

    def __init__(self, make_env, directory: str | os.PathLike, every_episodes: int = 100, max_steps: int = 1_000,
                 fps: float = 30):
        self.make_env = make_env
        self.directory = Path(directory)
        self.every_episodes = check_int("every_episodes", every_episodes, 1)
        self.max_steps = check_int("max_steps", max_steps, 1)
        self.fps = fps
        self.written: list[Path] = []
        self._next = self.every_episodes

    def before_training(self, trainer):
        self._next = (trainer.episodes // self.every_episodes + 1) * self.every_episodes

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        if trainer.episodes >= self._next:
            self.record(trainer)
            self._next = (trainer.episodes // self.every_episodes + 1) * self.every_episodes

    def after_training(self, trainer):
        if not self.written or not self.written[-1].name.endswith(f"-{trainer.step}.webp"):
            self.record(trainer)

    def record(self, trainer) -> Path:
        """Record one greedy episode now; returns the file written."""
        from rlbook.plot import animate_episode, record_episode

        with trainer.pause_clock():
            env = self.make_env()
            try:
                frames, _ = record_episode(trainer.agent, env, max_steps=self.max_steps)
            finally:
                env.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"step-{trainer.step}.webp"
            animate_episode(frames, fps=self.fps, max_frames=len(frames), format="webp").save(str(path))
        self.written.append(path)
        return path


class SaveEpisodes(Plugin):
    """Write every finished episode to ``directory/episode-<k>.npz`` (``obs``, ``action``, ``reward``,
    ``next_obs``, ``terminated``, ``truncated``: one row per step, as the agent observed them), for the
    :class:`Offline` regimen or for study. Autoreset rows are not steps and are not saved."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.count = 0
        self._open: dict[int, list[dict[str, np.ndarray]]] = {}

    def before_training(self, trainer):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = len(list(self.directory.glob("episode-*.npz")))
        self._open = {}

    def after_step(self, trainer, transition, metrics):
        if transition is None:
            return
        valid = getattr(transition, "valid", None)
        for row in range(len(transition.reward)):
            if valid is not None and not valid[row]:
                continue
            env_id = int(transition.env_ids[row])
            self._open.setdefault(env_id, []).append(
                {k: np.asarray(getattr(transition, k)[row]) for k in
                 ("obs", "action", "reward", "next_obs", "terminated", "truncated")})
            if transition.terminated[row] or transition.truncated[row]:
                self._write(self._open.pop(env_id))

    def _write(self, steps: list[dict[str, np.ndarray]]) -> None:
        self.count += 1
        arrays = {k: np.stack([s[k] for s in steps]) for k in steps[0]}
        path = self.directory / f"episode-{self.count:06d}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)


__all__ = ["FrameRate", "NoProgress", "Offline", "Online", "RecordVideo", "Regimen", "SaveEpisodes"]
