"""Asynchronous advantage actor-critic (A3C): A2C's losses, with the playing spread over worker processes
(chapter 11).

Two ways to split the work between ``workers`` processes and one learner (the process that trains):

* ``mode="data"`` (data-parallel): each worker plays its own environments with a recent copy of the policy and
  sends whole ``(T, N)`` rollouts; the learner takes one A2C step per rollout
  (:meth:`~rlbook.agents.a2c.A2CAgent.learn_from_rollout`) and publishes the new weights.
* ``mode="gradients"`` (gradient-parallel): each worker also computes A2C's (clipped) gradient on its rollout and
  sends only that; the learner's Adam applies it (:meth:`A3CAgent.apply_gradients`). The backward passes run in
  parallel; the one optimizer keeps the weights and Adam's moments in one place, so a checkpoint holds them all.

Either way a rollout or gradient may come from weights a few updates old (the *policy lag*, recorded for each
update). ``synchronous=True`` makes each worker wait for the weights that include its message's update before it
plays on: with one worker this is exactly A2C (a test checks that the weights agree bit for bit).

The agent is an :class:`~rlbook.agents.a2c.A2CAgent` (acting, saving and loading are A2C's); the parallel run is
:class:`rlbook.parallel.A3CTrainer`, which :meth:`A3CAgent.learn` builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from rlbook.agents.a2c import A2CAgent, A2CConfig
from rlbook.config import check_float, check_int


@dataclass(kw_only=True)
class A3CConfig(A2CConfig):
    """Hyperparameters of :class:`A3CAgent`: :class:`~rlbook.agents.a2c.A2CConfig`'s and the parallel ones."""

    workers: int = 2
    """Worker processes that play (and, with ``mode="gradients"``, compute gradients)."""
    mode: Literal["data", "gradients"] = "data"
    """What workers send: rollouts (``"data"``) or gradients (``"gradients"``)."""
    synchronous: bool = False
    """Each worker waits for the weights that include the update of its last message before playing on (no
    running ahead of its own updates: what lag remains is other workers' updates applied in the meantime; with
    one worker, exactly A2C)."""
    max_queued: int = 2
    """Messages a worker may have on its way to the learner before its send waits (bounds the lag)."""
    importance_clip: float | None = None
    """Data-parallel only: weight each step's policy term by the truncated importance ratio
    ``min(importance_clip, pi_now(a|s) / pi_played(a|s))``, correcting for the policy lag (1 is IMPALA's
    choice); ``None`` (the default): plain A3C, no correction. On CartPole the correction cost steps and did
    not change how many seeds solved (``bench/a3c_cartpole.py``)."""

    def validate(self) -> None:
        super().validate()
        check_int("workers", self.workers, 1)
        check_int("max_queued", self.max_queued, 1)
        if self.importance_clip is not None:
            check_float("importance_clip", self.importance_clip, 0.0, low_open=True)

    @classmethod
    def cartpole(cls, **overrides) -> A3CConfig:
        """:meth:`A2CConfig.cartpole <rlbook.agents.a2c.A2CConfig.cartpole>`'s A2C with two workers (use four
        CartPoles per worker: together the eight of A2C's preset) and half its learning rate, 0.001: with the
        policy lag of asynchronous updates, A2C's 0.002 left a data-parallel run unsolved on the tuning seeds
        (100 and up, apart from the benchmark's), 0.001 solved them all in both modes
        (``bench/a3c_cartpole.py`` measures both rates)."""
        return cls.from_dict({**A2CConfig.cartpole().to_dict(), "lr": 1e-3, "workers": 2, **overrides})

    @classmethod
    def pong(cls, **overrides) -> A3CConfig:
        """:meth:`A2CConfig.pong <rlbook.agents.a2c.A2CConfig.pong>`'s A2C with four workers (the old text's A3C
        ran four processes)."""
        return cls.from_dict({**A2CConfig.pong().to_dict(), "workers": 4, **overrides})


class A3CAgent(A2CAgent):
    """A2C's agent, trained by worker processes (see the module docstring). ``agent.learn(env_fn, steps)``
    runs :class:`rlbook.parallel.A3CTrainer`; in the plain :class:`~rlbook.train.Trainer` it learns as A2C."""

    config_class = A3CConfig
    trains_in_workers = True

    def weights_vector(self) -> torch.Tensor:
        """All parameters as one flat float32 CPU tensor (what workers receive)."""
        return torch.nn.utils.parameters_to_vector(self.net.parameters()).detach().float().cpu()

    def apply_gradients(self, gradients: np.ndarray | torch.Tensor) -> None:
        """One Adam step with a flat gradient vector (from a worker's
        :meth:`~rlbook.agents.a2c.A2CAgent.rollout_gradients`, laid out as :meth:`weights_vector`)."""
        flat = torch.tensor(gradients)  # a copy: Ray hands over read-only arrays
        params = list(self.net.parameters())
        expected = sum(p.numel() for p in params)
        if flat.ndim != 1 or flat.numel() != expected:
            raise ValueError(f"expected a flat gradient of {expected} numbers (one per parameter), got shape "
                             f"{tuple(flat.shape)}")
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(device=p.device, dtype=p.dtype)
            offset += n
        self.optimizer.step()
        self.num_updates += 1

    def learn(self, env, total_steps: int | None = None, **trainer_kwargs: Any) -> A3CAgent:
        """Train with :class:`rlbook.parallel.A3CTrainer` (``env``: an env id or a picklable function that
        makes one worker's vector env; other keywords go to the trainer). The trainer is kept as
        ``self.trainer``."""
        self.trainer = self.make_trainer(env, total_steps=total_steps, **trainer_kwargs)
        self.trainer.run()
        return self

    def make_trainer(self, env, *, num_envs: int | None = None, **trainer_kwargs: Any):
        """An :class:`rlbook.parallel.A3CTrainer` (``num_envs``: copies per worker); with ``train=False``
        (a greedy test run, no learning) an ordinary trainer in this process."""
        if trainer_kwargs.get("train", True) is False:
            return super().make_trainer(env, num_envs=num_envs or 1, **trainer_kwargs)
        from rlbook.parallel import A3CTrainer  # the agents layer does not import the loop at module level

        trainer_kwargs.pop("train", None)
        if num_envs is not None:
            trainer_kwargs["envs_per_worker"] = num_envs
        return A3CTrainer(self, env, **trainer_kwargs)


def gradients_vector(net: torch.nn.Module) -> np.ndarray:
    """The ``.grad`` of every parameter of ``net`` as one flat float32 array (zeros where a grad is missing)."""
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1) for p in net.parameters()]
    return torch.cat(parts).float().cpu().numpy()


__all__ = ["A3CAgent", "A3CConfig", "gradients_vector"]
