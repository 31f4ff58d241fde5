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

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlbook.agents.base import Agent, Transition
from rlbook.config import check_bool, check_float, check_int, check_seed
from rlbook.envs import as_vector_env
from rlbook.rollout import MaskedTransition

logger = logging.getLogger("rlbook")


class TrainingDiverged(RuntimeError):
    """Learning produced non-finite numbers (NaN or infinity): the run stops and no checkpoint is written."""


class Plugin:
    """Base class of trainer plugins; override the hooks you need. Every hook gets the trainer.

    Plugins run in the order given, except that a plugin with a lower ``priority`` runs first
    (the :class:`Checkpoint` plugin restores the run before the loggers look at its step)."""

    #: Lower runs first; the default is 0.
    priority: int = 0

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

    def reset(self) -> None:
        """Called by the trainer at the start of every run, before the environments reset: clear any state
        the objective keeps across steps (counts, running statistics). The default keeps none."""

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
        check_every: environment steps between two checks that the agent's learning state is finite
            (:meth:`~rlbook.agents.base.Agent.nonfinite`; each costs one device sync).
        handle_signals: take over Ctrl-C and SIGTERM while running (see below); ``False`` leaves them alone
            (a trainer inside a worker process, whose parent decides how to stop).

    After :meth:`run`, ``episode_returns``, ``episode_lengths`` and ``episode_end_steps`` hold one
    entry per finished episode, ``step`` the environment steps taken, ``stop_reason`` why it ended.

    Interruptions: while :meth:`run` is in progress, Ctrl-C (SIGINT) and SIGTERM do not cut a step in
    half: the loop finishes the step it is in (so the agent's and the trainer's step counters agree),
    then stops; plugins see it in ``on_error`` and ``after_training`` (checkpoints save, logs flush).
    After Ctrl-C, :meth:`run` returns with ``interrupted`` set; after SIGTERM it raises ``SystemExit``
    (exit status 143) once everything is saved. A second Ctrl-C stops at once.

    Divergence: a non-finite reward or observation from the environment raises ``ValueError`` at the
    step it appears; learning state that becomes non-finite raises :class:`TrainingDiverged` at the next
    check (every ``check_every`` steps and before every checkpoint), and no checkpoint is written from it.
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
        check_every: int = 1_000,
        handle_signals: bool = True,
    ):
        if not isinstance(agent, Agent):
            raise TypeError(f"agent must be an rlbook Agent, got {type(agent).__name__}")
        if total_steps is None and total_episodes is None:
            raise ValueError("give a budget: total_steps and/or total_episodes")
        self.total_steps = None if total_steps is None else check_int("total_steps", total_steps, 1)
        self.total_episodes = None if total_episodes is None else check_int("total_episodes", total_episodes, 1)
        self.seed = check_seed("seed", seed)
        self.train = check_bool("train", train)
        self.check_every = check_int("check_every", check_every, 1)
        self.handle_signals = check_bool("handle_signals", handle_signals)
        if isinstance(plugins, Plugin) or not isinstance(plugins, Sequence):
            raise TypeError(f"plugins must be a list of Plugin objects, got {type(plugins).__name__}")
        for p in plugins:
            if not isinstance(p, Plugin):
                raise TypeError(f"every plugin must be an rlbook Plugin, got {type(p).__name__}")
        if objective is not None and not callable(objective):
            raise TypeError(f"objective must be an Objective (callable), got {type(objective).__name__}")
        self.agent = agent
        self.env = as_vector_env(env)
        self._check_env_matches_agent()
        self.plugins = sorted(plugins, key=lambda p: p.priority)  # stable: equal priorities keep their order
        self.objective = objective or Objective()

        self.step = 0
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.episode_end_steps: list[int] = []
        self.last_metrics: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.interrupted = False
        self.signal: int | None = None  # the signal that stopped the run, if one did
        self.start_time = math.nan
        self.elapsed = 0.0  # seconds of training, accumulated over resumed runs
        self._elapsed_before = 0.0
        self._step_offset = 0  # agent.num_steps - step at the start of the run (agents can outlive trainers)
        self._last_check = 0

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

    def seconds(self) -> float:
        """Training time so far in seconds (this run plus the runs it resumed), not counting time spent
        inside :meth:`pause_clock`."""
        if math.isnan(self.start_time):
            return self.elapsed
        return self._elapsed_before + time.perf_counter() - self.start_time

    @contextlib.contextmanager
    def pause_clock(self):
        """A block whose time does not count as training time (an evaluation inside a plugin).

        For example::

            with trainer.pause_clock():
                result = evaluate(trainer.agent, eval_env, n_episodes=20)
        """
        start = time.perf_counter()
        try:
            yield
        finally:
            if not math.isnan(self.start_time):
                self.start_time += time.perf_counter() - start

    def counters_agree(self) -> bool:
        """True when the agent has observed exactly the steps this run counted (no step cut in half)."""
        return not self.train or self.agent.num_steps - self.step == self._step_offset

    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` when the agent's learning state is no longer finite."""
        problem = self.agent.nonfinite() if self.train else None
        if problem:
            hint = self.agent.divergence_hint()
            raise TrainingDiverged(
                f"training diverged: {problem} became non-finite (NaN or infinite) between step {self._last_check:,} "
                f"(the last check, all finite) and step {self.step:,}. "
                + (f"Likely causes: {hint}. " if hint else "")
                + "No checkpoint was written from the diverged state.")
        self._last_check = self.step

    def run(self) -> Trainer:
        """Run the loop. A Ctrl-C ends it cleanly (plugins see it in ``on_error``; checkpoints save)
        and sets ``interrupted``; SIGTERM does the same, then raises ``SystemExit(143)``; any other
        error is re-raised after ``on_error``."""
        self.stop_reason = None
        self.interrupted = False
        self.signal = None
        with _StopOnSignals(self) if self.handle_signals else contextlib.nullcontext():
            try:
                self._call("before_training")
                self._step_offset = self.agent.num_steps - self.step
                self._last_check = self.step
                self.start_time = time.perf_counter()
                self._elapsed_before = self.elapsed
                self._loop()
                if self.signal is not None:
                    raise KeyboardInterrupt  # stopped cleanly at a step boundary: report it as an interruption
            except KeyboardInterrupt as error:
                self.interrupted = True
                self.stop("interrupted" if self.signal in (None, signal.SIGINT) else "terminated (SIGTERM)")
                self._call("on_error", error)
            except BaseException as error:
                self._update_elapsed()
                self._call("on_error", error)
                raise
            finally:
                self._update_elapsed()
            self._call("after_training")
        if self.signal == signal.SIGTERM:
            logger.warning("rlbook: stopped by SIGTERM at step %s; exiting with status 143", f"{self.step:,}")
            raise SystemExit(128 + signal.SIGTERM)
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
        if hasattr(self.objective, "reset"):
            self.objective.reset()
        obs, _ = env.reset(seed=seed)
        check_obs = np.issubdtype(np.asarray(obs).dtype, np.floating)
        if check_obs:
            self._check_inputs(None, obs, np.zeros(n, bool))
        episode_return = np.zeros(n, dtype=np.float64)
        episode_length = np.zeros(n, dtype=np.int64)
        needs_reset = np.zeros(n, dtype=bool)  # rows whose next step is an autoreset
        fixed_shape = bool(getattr(agent, "fixed_shape", False))
        for i in range(n):
            self._call("before_episode", i)

        while not self._budget_spent():
            if self.plugins:
                self._call("before_step")
            actions = agent.act_batch(obs, explore=self.train)
            next_obs, reward, terminated, truncated, infos = env.step(actions)
            resetting = needs_reset.any()
            if not np.isfinite(reward).all() or (check_obs and not np.isfinite(next_obs).all()):
                self._check_inputs(reward, next_obs, needs_reset)
            ended = terminated | truncated
            # Autoreset rows carry no real transition: mask them out of everything.
            if resetting:
                ended &= ~needs_reset
            episode_return += reward
            episode_length += 1
            if resetting:
                episode_return[needs_reset] = 0.0  # a reward wrapper may give the reset row a reward
                episode_length[needs_reset] = 0
            real = n - int(needs_reset.sum()) if resetting else n

            transition = None
            metrics: dict[str, Any] = {}
            if self.train and real:
                transition = Transition(
                    obs=obs,
                    action=np.asarray(actions),
                    reward=np.asarray(reward, dtype=np.float32),
                    next_obs=next_obs,
                    terminated=np.asarray(terminated, dtype=bool),
                    truncated=np.asarray(truncated, dtype=bool),
                    env_ids=env_ids,
                )
                if fixed_shape:  # every row, autoreset rows marked invalid (on-policy agents)
                    transition = MaskedTransition(**vars(transition), valid=~needs_reset)
                elif resetting:
                    transition = transition.select(~needs_reset)
                    infos = _select_infos(infos, ~needs_reset)
                rows = len(transition)
                transition.reward = np.asarray(self.objective(transition, infos), dtype=np.float32)
                if transition.reward.shape != (rows,) or not np.isfinite(transition.reward).all():
                    self._check_objective(transition.reward, rows)
                if fixed_shape and resetting:
                    transition.reward[needs_reset] = 0.0  # an autoreset row carries no reward
                agent.observe(transition)
                self.step += real  # together with observe: the two counters move as one
                metrics = agent.update()
                if metrics:
                    self.last_metrics = metrics
                if self.step - self._last_check >= self.check_every:
                    self.check_finite()
            else:
                self.step += real  # a step that only reset environments adds 0

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
        if self.train:
            self.check_finite()

    def _check_inputs(self, reward: np.ndarray | None, obs: np.ndarray, ignore: np.ndarray) -> None:
        """Raise ``ValueError`` naming the step and environment of a non-finite reward or observation."""
        if reward is not None:
            bad = ~np.isfinite(reward) & ~ignore
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"the environment returned a non-finite reward ({reward[i]}) at step "
                                 f"{self.step:,} (environment {i} of the vector); the agent did not see it")
        if np.issubdtype(np.asarray(obs).dtype, np.floating):
            bad = ~np.isfinite(np.asarray(obs).reshape(len(obs), -1)).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"the environment returned a non-finite observation at step {self.step:,} "
                                 f"(environment {i} of the vector): {obs[i]}; the agent did not see it")

    def _check_objective(self, reward: np.ndarray, rows: int) -> None:
        if reward.shape != (rows,):
            raise ValueError(f"the objective {type(self.objective).__name__} returned rewards of shape "
                             f"{reward.shape}; expected ({rows},), one per transition row")
        i = int(np.flatnonzero(~np.isfinite(reward))[0])
        raise ValueError(f"the objective {type(self.objective).__name__} returned a non-finite reward "
                         f"({reward[i]}) at step {self.step:,}; the agent did not see it")

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


class _StopOnSignals:
    """While a run is in progress, the first SIGINT (Ctrl-C) or SIGTERM asks the loop to stop after the
    current step; a second SIGINT interrupts at once (``KeyboardInterrupt``). Handlers can only be set in
    the main thread; elsewhere Ctrl-C keeps its usual meaning (``KeyboardInterrupt`` where it lands)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        trainer = self.trainer
        if trainer.signal is None:
            trainer.signal = signum
            trainer.stop("interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)")
            name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            logger.warning("rlbook: %s received at step %s: finishing this step, then saving and stopping%s", name,
                           f"{trainer.step:,}", " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "")
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        return False


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
        self.threshold = check_float("threshold", threshold)
        self.window = check_int("window", window, 1)
        self.solved_at_step: int | None = None
        self.solved_at_seconds: float | None = None

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        if len(trainer.episode_returns) >= self.window and trainer.mean_return(self.window) >= self.threshold:
            if self.solved_at_step is None:
                self.solved_at_step = trainer.step
                self.solved_at_seconds = trainer.seconds()
            trainer.stop(f"mean return of the last {self.window} episodes >= {self.threshold:g}")


class Checkpoint(Plugin):
    """Save the agent and the trainer's progress to ``path``, and resume from it.

    Args:
        path: the checkpoint file (sealed with a digest and written atomically: see :mod:`rlbook.checkpoints`).
        every_steps: also save every this many environment steps (``None``: only at the end).
        resume: if ``path`` exists when training starts, load it and continue from its step.
        on_interrupt: save when the run is interrupted (Ctrl-C, SIGTERM) or fails with an error.
        extra: plain values saved beside the trainer's state (the command line records the env id).

    A checkpoint is never written from a state that cannot be resumed exactly: not when learning has
    diverged (non-finite weights or losses: the last good checkpoint stays), and not when a forced
    interrupt (a second Ctrl-C) cut a step in half (the agent's and the trainer's step counters would
    disagree). It runs before the other plugins (``priority = -100``), so that loggers see the resumed step.
    """

    priority = -100

    def __init__(self, path: str | os.PathLike, every_steps: int | None = None, resume: bool = True,
                 on_interrupt: bool = True, extra: dict[str, Any] | None = None):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path, got {type(path).__name__}")
        self.path = Path(path)
        self.every_steps = None if every_steps is None else check_int("every_steps", every_steps, 1)
        self.resume = check_bool("resume", resume)
        self.on_interrupt = check_bool("on_interrupt", on_interrupt)
        self.extra = dict(extra or {})
        self.resumed_from_step: int | None = None
        #: The step of the last checkpoint this plugin wrote (``None`` before the first).
        self.saved_at_step: int | None = None
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
        # Never overwrite a checkpoint with an agent that failed to load or start, or that diverged.
        # After an interruption after_training follows and saves.
        if not (self.on_interrupt and self._ready) or isinstance(error, (KeyboardInterrupt, TrainingDiverged)):
            return
        try:
            self.save(trainer)
        except TrainingDiverged as diverged:
            logger.warning("rlbook: not saving %s after the error: %s", self.path, diverged)

    def after_training(self, trainer):
        if not self._ready or (trainer.interrupted and not self.on_interrupt):
            return
        self.save(trainer)
        if trainer.interrupted and self.saved_at_step == trainer.step:
            logger.warning("rlbook: checkpoint saved to %s at step %s; run again with the same Checkpoint to resume",
                           self.path, f"{trainer.step:,}")

    def save(self, trainer: Trainer) -> None:
        """Write the checkpoint now (after checking that the state is finite and whole)."""
        if not trainer.counters_agree():
            kept = "no checkpoint" if self.saved_at_step is None else f"the checkpoint of step {self.saved_at_step:,}"
            logger.warning("rlbook: not saving %s: the run was interrupted in the middle of a step (the agent has "
                           "seen %s steps, the trainer counted %s); %s is kept", self.path,
                           f"{trainer.agent.num_steps - trainer._step_offset:,}", f"{trainer.step:,}", kept)
            return
        trainer.check_finite()
        trainer._update_elapsed()
        trainer.agent.save(self.path, extra={**self.extra, "trainer": trainer.state_dict()})
        self.saved_at_step = trainer.step
