"""A3C's parallel run: worker processes (or Ray actors) play, one learner trains (chapter 11).

:class:`A3CTrainer` is a :class:`~rlbook.train.Trainer` whose environment steps happen elsewhere. Each worker runs
:func:`play_rollouts`: an ordinary ``Trainer`` on the worker's own vector env (so autoreset rows, truncation and
objectives work exactly as in A2C), driving a :class:`RolloutWorker` agent that, whenever its ``(T, N)`` rollout is
full, sends it (or its gradient) to the learner and picks up the newest weights. The learner reads the messages,
takes one step per message, publishes the weights, and calls the usual plugins: checkpoints, early stopping,
progress and evaluation work unchanged. Ctrl-C and SIGTERM stop the learner after the step it is in, the
checkpoint is written, and the workers are stopped (none outlives the run); a worker that raises or dies stops the
run with a :class:`~rlbook.workers.WorkerError` naming it, after the checkpoint plugin has saved the learner.

Where the weights live:

* ``backend="processes"``: :class:`SharedWeights`, a flat tensor in shared memory (``torch.multiprocessing``) that
  the learner overwrites and workers copy, guarded by a sequence number so that no worker copies a half-written
  vector;
* ``backend="ray"``: :class:`RayWeights`, the newest vector in Ray's object store, announced by a small actor.

The worker code is the same for both; only the pool (:class:`~rlbook.workers.WorkerPool` or
:class:`~rlbook.workers.RayWorkerPool`) and the weights board differ.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing  # noqa: F401 -- registers the reductions that share tensors with spawned workers

from rlbook.agents.a3c import A3CAgent, A3CConfig, gradients_vector
from rlbook.agents.base import sample_actions
from rlbook.config import check_int
from rlbook.envs import as_vector_env, make_vec
from rlbook.train import Plugin, Trainer
from rlbook.workers import RayWorkerPool, WorkerError, WorkerPool, ray_inbox

BACKENDS = ("processes", "ray")


class SharedWeights:
    """The learner's newest weights in shared memory, for worker processes on this machine.

    ``publish`` writes a version with, for each worker, how many of its messages the learner has applied; a
    sequence number, odd while writing, brackets the write. ``fetch`` copies the vector and retries if the
    learner wrote in the meantime, so a worker never loads a mix of two versions. Passed to spawned workers, the
    tensors travel as shared-memory handles (``torch.multiprocessing``), not copies."""

    def __init__(self, vector: torch.Tensor, workers: int = 1):
        self.vector = vector.detach().clone().float().cpu().share_memory_()
        #: ``[sequence, version, applied by worker 0, applied by worker 1, ...]``
        self.state = torch.zeros(2 + workers, dtype=torch.int64).share_memory_()

    def publish(self, vector: torch.Tensor, version: int, applied: Sequence[int] = ()) -> None:
        """Make ``vector`` the newest weights, called ``version``, after ``applied[i]`` messages of worker ``i``
        (learner side)."""
        self.state[0] += 1
        self.vector.copy_(vector)
        self.state[1] = version
        if len(applied):
            self.state[2:] = torch.as_tensor(applied, dtype=torch.int64)
        self.state[0] += 1

    def version(self) -> int:
        """The newest version (``-1`` before the first publish)."""
        return int(self.state[1]) if int(self.state[0]) else -1

    def fetch(self, have: int, stop=None) -> tuple[int, torch.Tensor, list[int]] | None:
        """``(version, vector copy, applied)`` when a version other than ``have`` is published, else ``None``
        (also before the first publish). While a write is under way it waits, unless ``stop`` (a worker's
        stop signal) is set: a learner killed in the middle of a write must not leave its workers spinning."""
        while True:
            before = int(self.state[0])
            if before == 0:
                return None
            if before % 2:  # being written: a copy now could mix two versions
                if stop is not None and stop.is_set():
                    return None
                time.sleep(0.0001)
                continue
            version = int(self.state[1])
            if version == have:
                return None
            copy = self.vector.clone()
            applied = self.state[2:].tolist()
            if int(self.state[0]) == before:
                return version, copy, applied


class RayWeights:
    """The learner's newest weights for Ray actors: each version goes into Ray's object store, and the pool
    delivers its reference to every worker's inbox (:meth:`~rlbook.workers.RayWorkerPool.broadcast`); a worker
    reads the vector once per new version, from another machine if need be. Call :meth:`attach` with the
    started pool before :meth:`publish`."""

    KEY = "rlbook.parallel.weights"

    def __init__(self):
        self.pool = None

    def attach(self, pool: RayWorkerPool) -> None:
        """The pool whose workers receive the weights (learner side)."""
        self.pool = pool

    def __getstate__(self):
        return {"pool": None}  # the workers read their inbox; the pool stays with the learner

    def publish(self, vector: torch.Tensor, version: int, applied: Sequence[int] = ()) -> None:
        """Make ``vector`` the newest weights, called ``version``, after ``applied[i]`` messages of worker ``i``
        (learner side)."""
        import ray

        ref = ray.put(vector.detach().float().cpu().numpy())
        # in a list: the reference travels, not the array
        self.pool.broadcast(self.KEY, (version, [ref], list(applied)))

    def fetch(self, have: int, stop=None) -> tuple[int, torch.Tensor, list[int]] | None:
        """``(version, vector, applied)`` when a version other than ``have`` has been delivered, else ``None``."""
        import ray

        newest = ray_inbox().get(self.KEY)
        if newest is None or newest[0] == have:
            return None
        version, (ref,), applied = newest
        return version, torch.from_numpy(np.array(ray.get(ref))), applied


# ---------------------------------------------------------------------------------------------- worker side
class RolloutWorker(A3CAgent):
    """The agent inside a worker: acts with its copy of the policy, fills A2C's rollout, and when it is full
    sends it (``mode="data"``) or its gradient (``mode="gradients"``) through ``send``, then loads the newest
    weights from ``weights``. Messages are dicts with ``version`` (of the weights that played), ``steps`` (real
    environment steps), ``episodes`` (``(env, return, length)`` of the episodes finished since the last message)
    and ``rollout`` or ``gradients`` and ``metrics``."""

    def __init__(self, observation_space, action_space, config: A3CConfig, *, send, stop, weights, index=0,
                 env_offset=0):
        super().__init__(observation_space, action_space, config)
        self.send, self.stop, self.weights = send, stop, weights
        self.index, self.env_offset = index, env_offset
        self.version = -1
        #: Messages sent so far.
        self.sent = 0
        self.episodes: list[tuple[int, float, int]] = []
        #: Scores of the Atari games finished since the last message (:class:`~rlbook.envs.atari.AtariEpisodes`).
        self.games: list[float] = []
        self.steps_since = 0
        #: Set when the learner no longer listens (the worker's trainer then stops).
        self.stopping = False

    def sync(self, until_applied: int | None = None) -> None:
        """Load the newest weights. With ``until_applied``, wait until weights are published that include
        that many of this worker's messages (0: the first weights)."""
        while True:
            newest = self.weights.fetch(self.version, self.stop)
            if newest is not None:
                version, vector, applied = newest
                self.version = version
                torch.nn.utils.vector_to_parameters(vector.to(self.device), self.net.parameters())
                if until_applied is None or (applied[self.index] if applied else 0) >= until_applied:
                    return
            elif until_applied is None:
                return
            if self.stop.is_set():
                self.stopping = True
                return
            time.sleep(0.0002)

    def begin_run(self, num_envs: int) -> None:
        super().begin_run(num_envs)
        #: The probability of each action taken, under the weights that played it (``(T, N)``).
        self.behaviour = np.ones((self.config.n_steps, num_envs), dtype=np.float32)

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        probs = self.probabilities(obs)
        actions = sample_actions(probs, self.rng, explore)  # as A2CAgent.act_batch: the same random stream
        if self.rollout is not None and not self.rollout.full:  # the row this step will fill
            self.behaviour[self.rollout.pos] = probs[np.arange(len(actions)), actions]
        return actions + self.action_start

    def observe(self, transition) -> None:
        super().observe(transition)
        self.steps_since += transition.num_valid

    def update(self) -> dict[str, float]:
        if self.rollout is None or not self.rollout.full:
            return {}
        message: dict[str, Any] = {"version": self.version, "steps": self.steps_since, "episodes": self.episodes,
                                   "games": self.games}
        if self.config.mode == "data":
            message["rollout"] = self.rollout
            message["behaviour"] = self.behaviour
        else:
            metrics = self.rollout_gradients(self.rollout)
            message["gradients"] = gradients_vector(self.net)
            message["metrics"] = {k: float(v) for k, v in metrics.items()}
        if not self.send(message):
            self.stopping = True
            return {}
        self.sent += 1
        self.episodes, self.games, self.steps_since = [], [], 0
        self.rollout.clear()
        # synchronous: wait for the weights that include this message's update
        self.sync(until_applied=self.sent if self.config.synchronous else None)
        if self.stop.is_set():
            self.stopping = True
        return {}


class _WorkerPlugin(Plugin):
    """Inside a worker: collects finished episodes (and Atari games) for the next message, and ends the worker's
    run when the learner stops."""

    def __init__(self):
        self.source, self.seen = None, 0

    def before_training(self, trainer):
        from rlbook.envs.atari import find_atari_episodes

        try:
            self.source = find_atari_episodes(trainer.env)
            self.seen = len(self.source.episode_scores)
        except (TypeError, ValueError):  # not an Atari env
            self.source = None

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        agent = trainer.agent
        agent.episodes.append((agent.env_offset + env_id, episode_return, episode_length))

    def after_step(self, trainer, transition, metrics):
        if self.source is not None and len(self.source.episode_scores) > self.seen:
            trainer.agent.games.extend(self.source.episode_scores[self.seen:])
            self.seen = len(self.source.episode_scores)
        if trainer.agent.stopping:
            trainer.stop("the learner stopped")


def play_rollouts(index: int, make_env: Callable[[], gym.vector.VectorEnv], config: A3CConfig, weights,
                  seed: int | None, objective=None, *, stop, send) -> None:
    """A worker's whole life (the target of :class:`~rlbook.workers.WorkerPool` and
    :class:`~rlbook.workers.RayWorkerPool`): make the env, load the published weights, play and send until the
    learner stops. ``seed`` seeds the env's first reset; the agent's sampling is seeded by ``config.seed``."""
    torch.set_num_threads(1)
    env = as_vector_env(make_env())
    try:
        agent = RolloutWorker(env.single_observation_space, env.single_action_space, config, send=send, stop=stop,
                              weights=weights, index=index, env_offset=index * env.num_envs)
        agent.sync(until_applied=0)  # the learner's first weights
        if agent.stopping:
            return
        Trainer(agent, env, total_steps=2 ** 62, plugins=[_WorkerPlugin()], objective=objective, seed=seed,
                handle_signals=False, check_every=2 ** 62).run()
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------- learner side
class A3CTrainer(Trainer):
    """Train an :class:`~rlbook.agents.a3c.A3CAgent` with ``agent.config.workers`` workers.

    Args:
        agent: the learner's agent (its ``config`` says how many workers, which mode, synchronous or not).
        env: an env id (each worker makes ``envs_per_worker`` copies with :func:`rlbook.envs.make_vec`) or a
            picklable function of no arguments that returns one worker's vector env, such as
            ``functools.partial(make_atari, "Pong", num_envs=8)``.
        envs_per_worker: copies per worker when ``env`` is an id.
        backend: ``"processes"`` (spawned processes on this machine) or ``"ray"`` (Ray actors: on this machine
            after ``ray.init()``, on a cluster after ``ray.init(address=...)``; started locally if Ray is not
            running yet).
        ray_cpus_per_worker: the CPUs Ray reserves for each worker (0.5 fits two workers per core).
        total_steps, total_episodes, plugins, objective, seed, check_every: as in :class:`~rlbook.train.Trainer`.
            Steps count the environment steps in the messages the learner has used; ``seed`` seeds worker ``i``'s
            environments from ``seed + i * envs_per_worker`` (the numbers an A2C with all the envs would use).

    After :meth:`~rlbook.train.Trainer.run`, ``policy_lags`` holds one entry per update: how many updates the
    weights that produced the message were behind the learner's. Plugins see ``before_step``/``after_step``
    once per message (with ``transition=None``) and ``after_episode`` for every episode the workers finished;
    ``before_episode`` is not called (the episodes start in the workers).
    """

    def __init__(self, agent: A3CAgent, env: str | Callable[[], gym.vector.VectorEnv], *,
                 envs_per_worker: int = 4, backend: str = "processes", total_steps: int | None = None,
                 total_episodes: int | None = None, plugins: Sequence[Plugin] = (), objective=None,
                 seed: int | None = None, check_every: int = 1_000, ray_cpus_per_worker: float = 1.0):
        if not isinstance(agent, A3CAgent):
            raise TypeError(f"A3CTrainer trains an A3CAgent, got {type(agent).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if isinstance(env, str):
            env = functools.partial(make_vec, env, check_int("envs_per_worker", envs_per_worker, 1))
        elif not callable(env) or isinstance(env, gym.Env | gym.vector.VectorEnv):
            raise TypeError("env must be an env id or a picklable function that makes one worker's vector env "
                            f"(an open environment cannot travel to a worker), got {type(env).__name__}")
        self.make_env = env
        probe = as_vector_env(env())  # the spaces, checked here rather than in every worker
        try:
            super().__init__(agent, probe, total_steps=total_steps, total_episodes=total_episodes,
                             plugins=plugins, objective=objective, seed=seed, check_every=check_every)
            self.envs_per_worker = probe.num_envs
        finally:
            probe.close()
        self.backend = backend
        self.ray_cpus_per_worker = ray_cpus_per_worker
        if backend == "ray":
            _ray_started()  # here, not in run(): starting Ray takes seconds that are not training
        self.policy_lags: list[int] = []
        #: Seconds from the start of :meth:`~rlbook.train.Trainer.run` to the first message (starting the workers:
        #: spawning interpreters, importing PyTorch, making environments); part of the training time.
        self.startup_seconds = math.nan
        #: The Atari games the workers finished (``episode_scores``, read by :class:`~rlbook.logs.GameScores`).
        self.atari_games = _Games()
        #: ``(learner update, worker index, environment steps)`` of every message used, in order.
        self.messages: list[tuple[int, int, int]] = []

    @property
    def num_envs(self) -> int:
        return self.agent.config.workers * self.envs_per_worker

    def _worker_args(self, weights) -> list[tuple]:
        c: A3CConfig = self.agent.config
        out = []
        for i in range(c.workers):
            config = c.replace(device="cpu", seed=None if c.seed is None else c.seed + i)
            seed = None if self.seed is None else self.seed + self.step + i * self.envs_per_worker
            out.append((self.make_env, config, weights, seed, self.objective))
        return out

    def _loop(self) -> None:
        if not self.train:
            raise ValueError("A3CTrainer only trains; evaluate a trained agent with rlbook.evaluate")
        agent: A3CAgent = self.agent
        c = agent.config
        if self.backend == "ray":
            weights = RayWeights()
            pool = RayWorkerPool(play_rollouts, self._worker_args(weights), name="a3c-worker",
                                 max_queued=c.max_queued, cpus_per_worker=self.ray_cpus_per_worker)
            weights.attach(pool)
        else:
            weights = SharedWeights(agent.weights_vector(), c.workers)
            pool = WorkerPool(play_rollouts, self._worker_args(weights), name="a3c-worker",
                              max_queued=c.max_queued)
        applied = [0] * c.workers  # messages of each worker used so far
        with pool:
            weights.publish(agent.weights_vector(), agent.num_updates, applied)
            while not self._budget_spent():
                if self.plugins:
                    self._call("before_step")
                try:
                    index, message = pool.get()
                except WorkerError:
                    if self.signal is not None:  # a signal to the process group reached the workers too
                        break
                    raise
                if math.isnan(self.startup_seconds):
                    self.startup_seconds = time.perf_counter() - self.start_time
                metrics = self._learn(index, message)
                applied[index] += 1
                weights.publish(agent.weights_vector(), agent.num_updates, applied)
                self._episodes(message["episodes"])
                self.atari_games.episode_scores.extend(message["games"])
                if self.step - self._last_check >= self.check_every:
                    self.check_finite()
                if self.plugins:
                    self._call("after_step", None, metrics)
        self.check_finite()

    def _learn(self, index: int, message: dict[str, Any]) -> dict[str, Any]:
        agent: A3CAgent = self.agent
        lag = agent.num_updates - int(message["version"])
        if "rollout" in message:
            rollout = message["rollout"]
            if not rollout.obs.flags.writeable:  # Ray hands over read-only views of its object store
                rollout = copy.deepcopy(rollout)
            clip = agent.config.importance_clip
            metrics = agent.learn_from_rollout(rollout, **({} if clip is None else {
                "behaviour": message["behaviour"], "importance_clip": clip}))
        else:
            agent.apply_gradients(message["gradients"])
            metrics = dict(message["metrics"])
        steps = int(message["steps"])
        agent.num_steps += steps
        self.step += steps  # together with the agent's counter: the two move as one
        self.policy_lags.append(lag)
        self.messages.append((agent.num_updates, index, steps))
        metrics["policy_lag"] = lag
        self.last_metrics = metrics
        return metrics

    def _episodes(self, episodes) -> None:
        for env_id, episode_return, length in episodes:
            self.episode_returns.append(float(episode_return))
            self.episode_lengths.append(int(length))
            self.episode_end_steps.append(self.step)
            self._call("after_episode", int(env_id), float(episode_return), int(length))


class _Games:
    """Where an :class:`A3CTrainer` keeps the workers' Atari game scores (the attribute
    :class:`~rlbook.logs.GameScores` reads from an :class:`~rlbook.envs.atari.AtariEpisodes` env)."""

    def __init__(self):
        self.episode_scores: list[float] = []


def _ray_started() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)


__all__ = ["A3CTrainer", "RayWeights", "RolloutWorker", "SharedWeights", "play_rollouts"]
