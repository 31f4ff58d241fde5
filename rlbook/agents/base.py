"""The Agent interface every algorithm in the book implements.

An agent does four things: it picks actions (:meth:`Agent.act`), it takes in experience
(:meth:`Agent.observe`), it learns from what it has seen (:meth:`Agent.update`) and it saves and
restores its whole state (:meth:`Agent.save`, :meth:`Agent.load`). The :class:`~rlbook.train.Trainer`
drives any agent through these four calls, so a new algorithm plugs into logging, checkpoints,
progress bars and early stopping without touching the loop.

Observations and actions are batched over environments: the trainer always steps a vector of
environments (a single environment is a vector of one). :meth:`Agent.act` also accepts a single,
unbatched observation and then returns a single action, which is what a reader types in a notebook.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlbook.transition import Transition  # re-exported: agents receive Transitions

CHECKPOINT_FORMAT = "rlbook-checkpoint-v1"


def is_batched(space: gym.Space, obs: Any) -> bool:
    """True when ``obs`` holds a leading batch dimension over single observations of ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return np.ndim(obs) == 1
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)):
        return np.ndim(obs) == len(space.shape) + 1
    raise TypeError(f"observations of space {space} are not supported; use Discrete or Box")


class Agent(abc.ABC):
    """Base class of every rlbook agent.

    Subclasses implement :meth:`act_batch`, and usually :meth:`observe`, :meth:`update`,
    :meth:`state_dict` and :meth:`load_state_dict`. The base class gives them single-observation
    :meth:`act`, SB3-style :meth:`predict` and :meth:`learn`, and checkpoint files through
    :meth:`save` / :meth:`load`.

    Args:
        observation_space: the space of one environment's observations.
        action_space: the space of one environment's actions.
    """

    #: Observation space classes this agent accepts; checked by :meth:`Agent.check_spaces`.
    supported_observation_spaces: tuple[type[gym.Space], ...] = (gym.spaces.Space,)
    #: Action space classes this agent accepts; checked by :meth:`Agent.check_spaces`.
    supported_action_spaces: tuple[type[gym.Space], ...] = (gym.spaces.Space,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space = observation_space
        self.action_space = action_space
        self.check_spaces(observation_space, action_space)
        #: Environment steps observed so far (rows passed to :meth:`observe`).
        self.num_steps = 0

    # ------------------------------------------------------------------ the four calls
    def act(self, obs: Any, explore: bool = True) -> Any:
        """Choose actions for ``obs``: a batch ``(n, *obs_shape)`` gives ``(n, ...)`` actions, a single
        observation gives a single action. ``explore=False`` asks for the greedy (evaluation) action.

        Acting changes no learning state: only the agent's own random generator advances.
        """
        if is_batched(self.observation_space, obs):
            return self.act_batch(np.asarray(obs), explore)
        actions = self.act_batch(np.asarray(obs)[None], explore)
        return actions[0].item() if np.ndim(actions[0]) == 0 else actions[0]

    @abc.abstractmethod
    def act_batch(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """Actions for a batch of observations ``(n, *obs_shape)``; returns a NumPy array ``(n, ...)``."""

    def begin_run(self, num_envs: int) -> None:
        """Called by the trainer just before it resets the environments at the start of a run.

        Agents that keep per-environment state across steps (episode buffers, n-step queues) clear
        it here, so the first steps of the fresh episodes never join episodes of an earlier run.
        The default does nothing."""
        return None

    def observe(self, transition: Transition) -> None:
        """Take in a batch of experience (store it, tick schedules). The default only counts steps."""
        self.num_steps += len(transition)

    def update(self) -> dict[str, float]:
        """Do one learning step if one is due and return its metrics (``{}`` when nothing was done).

        The trainer calls this after every :meth:`observe`; the agent decides when learning is due
        (after a warm-up, every few steps, at the end of a batch of episodes)."""
        return {}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The agent's full learning state as tensors, numbers, strings, lists and dicts only
        (so that it loads with ``torch.load(..., weights_only=True)``)."""
        return {"num_steps": self.num_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.num_steps = int(state["num_steps"])

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write the agent's state (and ``extra``, such as the trainer's state) to ``path``.

        The file is written to a temporary name and renamed, so an interrupted save never leaves a
        half-written checkpoint behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "agent_class": type(self).__name__,
            "agent": self.state_dict(),
            "extra": extra or {},
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    def load(self, path: str | os.PathLike) -> dict[str, Any]:
        """Restore the state saved by :meth:`save` and return its ``extra`` dict.

        Loading never unpickles arbitrary objects (``weights_only=True``)."""
        payload = load_checkpoint(path)
        if payload["agent_class"] != type(self).__name__:
            raise ValueError(
                f"checkpoint {path} holds a {payload['agent_class']} agent, not a {type(self).__name__}"
            )
        self.load_state_dict(payload["agent"])
        return payload["extra"]

    # ------------------------------------------------------------------ conveniences
    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raise ``TypeError`` naming the space when this agent cannot handle it."""
        if not isinstance(observation_space, cls.supported_observation_spaces):
            names = ", ".join(s.__name__ for s in cls.supported_observation_spaces)
            raise TypeError(
                f"{cls.__name__} needs an observation space of type {names}; got {observation_space}"
            )
        if not isinstance(action_space, cls.supported_action_spaces):
            names = ", ".join(s.__name__ for s in cls.supported_action_spaces)
            raise TypeError(f"{cls.__name__} needs an action space of type {names}; got {action_space}")

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[Any, None]:
        """Stable-Baselines3 style: ``action, _ = agent.predict(obs)``."""
        return self.act(obs, explore=not deterministic), None

    def learn(self, env, total_steps: int | None = None, **trainer_kwargs) -> Agent:
        """Train on ``env`` for ``total_steps`` environment steps (SB3 style); returns ``self``.

        Keyword arguments go to :class:`~rlbook.train.Trainer` (``plugins``, ``seed``,
        ``total_episodes``, ``objective``, ...). The finished trainer is kept as ``self.trainer``."""
        from rlbook.train import Trainer  # the agents layer does not import the loop at module level

        self.trainer = Trainer(self, env, total_steps=total_steps, **trainer_kwargs)
        self.trainer.run()
        return self


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :meth:`Agent.save`, safely (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        raise ValueError(f"{path} is not a readable rlbook checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an rlbook checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return payload


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A NumPy generator's state as plain Python values (loadable with ``weights_only=True``)."""
    state = rng.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": {k: int(v) for k, v in state["state"].items()},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Restore a state taken by :func:`rng_state`."""
    rng.bit_generator.state = state
