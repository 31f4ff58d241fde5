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
import copy
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlbook.checkpoints import (
    PAYLOAD_FORMAT,
    CheckpointError,
    describe_space,
    read_checkpoint,
    space_from_dict,
    space_key,
    space_to_dict,
    write_checkpoint,
)
from rlbook.config import AgentConfig, check_bool
from rlbook.transition import Transition  # re-exported: agents receive Transitions


def is_batched(space: gym.Space, obs: Any) -> bool:
    """True when ``obs`` holds a leading batch dimension over single observations of ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return np.ndim(obs) == 1
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)):
        return np.ndim(obs) == len(space.shape) + 1
    raise TypeError(f"observations of space {space} are not supported; use Discrete or Box")


class Agent(abc.ABC):
    """Base class of every rlbook agent.

    Every agent is built the same way: ``Agent(observation_space, action_space, config=None, **overrides)``.
    ``config`` is an instance of the class's :attr:`config_class` (a dataclass derived from
    :class:`~rlbook.config.AgentConfig`, with ``seed`` and ``device`` among its fields); keyword ``overrides``
    replace some of its fields. Both are checked when the agent is built.

    Subclasses implement :meth:`act_batch`, and usually :meth:`observe`, :meth:`update`,
    :meth:`state_dict` and :meth:`load_state_dict`. The base class gives them single-observation
    :meth:`act`, SB3-style :meth:`predict` and :meth:`learn`, and checkpoint files through
    :meth:`save`, :meth:`load` and :meth:`from_checkpoint`.

    Args:
        observation_space: the space of one environment's observations.
        action_space: the space of one environment's actions.
        config: the hyperparameters (default: ``config_class()``).
        **overrides: fields of the config to replace.
    """

    #: The configuration dataclass of this agent.
    config_class: type[AgentConfig] = AgentConfig
    #: Observation space classes this agent accepts; checked by :meth:`Agent.check_spaces`.
    supported_observation_spaces: tuple[type[gym.Space], ...] = (gym.spaces.Space,)
    #: Action space classes this agent accepts; checked by :meth:`Agent.check_spaces`.
    supported_action_spaces: tuple[type[gym.Space], ...] = (gym.spaces.Space,)
    #: ``True`` for on-policy agents that learn from ``(T, N)`` rollouts: the :class:`~rlbook.train.Trainer`
    #: then passes every environment's row at every step, as a :class:`~rlbook.rollout.MaskedTransition` whose
    #: ``valid`` is false on autoreset rows, instead of dropping those rows.
    fixed_shape: bool = False
    #: ``True`` for agents whose :meth:`make_trainer` steps the environments in worker processes (A3C): they
    #: train on an env id or a picklable factory, never on an open environment (a window, say).
    trains_in_workers: bool = False

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: AgentConfig | None = None,
                 **overrides: Any):
        for name, space in (("observation_space", observation_space), ("action_space", action_space)):
            if not isinstance(space, gym.Space):
                raise TypeError(f"{name} must be a gymnasium Space (such as env.observation_space), "
                                f"got {type(space).__name__}")
        self.config = self.config_class.build(config, overrides)
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
        explore = check_bool("explore", explore)
        obs = np.asarray(obs)
        space = self.observation_space
        batched = is_batched(space, obs)
        shape = getattr(space, "shape", None)
        if shape is not None and (obs.shape[1:] if batched else obs.shape) != tuple(shape):
            raise ValueError(f"obs has shape {obs.shape}; {type(self).__name__} takes one observation of shape "
                             f"{tuple(shape)} or a batch of shape (n, {', '.join(map(str, shape))})")
        if batched:
            return self.act_batch(obs, explore)
        actions = self.act_batch(obs[None], explore)
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
        """Take in a batch of experience (store it, tick schedules). The default only counts steps (the real
        rows: a :class:`~rlbook.rollout.MaskedTransition`'s autoreset rows are not steps)."""
        self.num_steps += transition.num_valid

    def update(self) -> dict[str, float]:
        """Do one learning step if one is due and return its metrics (``{}`` when nothing was done).

        The trainer calls this after every :meth:`observe`; the agent decides when learning is due
        (after a warm-up, every few steps, at the end of a batch of episodes)."""
        return {}

    def nonfinite(self) -> str | None:
        """Describe any learning state that is no longer finite (NaN or infinite), or return ``None``.

        The trainer calls this every few thousand steps and before every checkpoint, so a diverged run
        stops with a clear error and never overwrites a good checkpoint. The default checks the parameters
        of every ``torch.nn.Module`` attribute of the agent (one device sync per call); agents add
        their own state (losses, tables)."""
        bad = [name for name, value in vars(self).items()
               if isinstance(value, torch.nn.Module) and not parameters_finite(value.parameters())]
        return f"the weights of {', '.join(bad)}" if bad else None

    def divergence_hint(self) -> str:
        """Settings worth checking when learning diverges (shown in the trainer's error)."""
        return ""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The agent's full learning state as tensors, numbers, strings, lists and dicts only
        (so that it loads with ``torch.load(..., weights_only=True)``). The config and the spaces are
        stored beside it by :meth:`save`."""
        return {"num_steps": self.num_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.num_steps = int(state["num_steps"])

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write the agent's state, config and spaces (and ``extra``, such as the trainer's state) to ``path``.

        The file is sealed with a digest and written atomically (:mod:`rlbook.checkpoints`), so an
        interrupted save never leaves a half-written checkpoint behind."""
        payload = {
            "format": PAYLOAD_FORMAT,
            "agent_class": type(self).__name__,
            "rlbook_version": _version(),
            "config": self.config.to_dict(),
            "spaces": {"observation": space_to_dict(self.observation_space),
                       "action": space_to_dict(self.action_space)},
            "agent": self.state_dict(),
            "extra": extra or {},
        }
        return write_checkpoint(path, payload)

    def load(self, path: str | os.PathLike) -> dict[str, Any]:
        """Restore the state saved by :meth:`save` and return its ``extra`` dict.

        Everything is checked before the agent changes: the file's digest, the agent class, the spaces and
        the config (a saved config that differs is refused, naming the fields; build the agent with
        :meth:`from_checkpoint` to take the saved config). A load that fails leaves the agent as it was.
        Nothing is unpickled (``weights_only=True``)."""
        payload = load_checkpoint(path)
        self._check_checkpoint(payload, path)
        self._apply_checkpoint(payload, path)
        return payload["extra"]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, observation_space: gym.Space | None = None,
                        action_space: gym.Space | None = None, *, device: str | None = None, **kwargs: Any) -> Agent:
        """Build an agent with the config saved in the checkpoint at ``path`` and load its state.

        The spaces default to the ones saved with it; ``device`` moves the agent elsewhere (the only
        field that may differ). ``kwargs`` go to the constructor (``policy_fn`` of a
        :class:`~rlbook.agents.policy_agent.PolicyAgent`).

        Called on the base class, ``Agent.from_checkpoint(path)`` builds whichever agent the file holds: a
        built-in, or a project's own agent once its module is imported (:func:`rlbook.registry.agent_class_named`).
        """
        payload = load_checkpoint(path)
        if cls is Agent:
            from rlbook.registry import RegistryError, agent_class_named

            try:
                cls = agent_class_named(str(payload.get("agent_class")))
            except RegistryError as exc:
                raise CheckpointError(f"{path}: {exc}") from None
        _check_class(payload, cls, path)
        try:
            config = cls.config_class.from_dict(payload["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: the saved {cls.config_class.__name__} is not valid here: {exc}") from exc
        if device is not None:
            config = config.replace(device=device)
        spaces = []
        for kind, given in (("observation", observation_space), ("action", action_space)):
            space = given if given is not None else space_from_dict(payload["spaces"][kind])
            if space is None:
                raise CheckpointError(f"{path}: the saved {kind} space ({describe_space(payload['spaces'][kind])}) "
                                      f"cannot be rebuilt; pass {kind}_space=")
            spaces.append(space)
        agent = cls(*spaces, config, **kwargs)
        agent._check_checkpoint(payload, path)
        agent._apply_checkpoint(payload, path)
        return agent

    def _check_checkpoint(self, payload: dict[str, Any], path) -> None:
        """Refuse a checkpoint of another class, other spaces or another config, before anything changes."""
        _check_class(payload, type(self), path)
        for kind, space in (("observation", self.observation_space), ("action", self.action_space)):
            saved = payload["spaces"][kind]
            if space_key(saved) != space_key(space_to_dict(space)):
                raise CheckpointError(f"{path} was saved by an agent for the {kind} space {describe_space(saved)}; "
                                      f"this agent has {space}")
        differ = self.config.differences(payload["config"])
        if differ:
            raise CheckpointError(f"the config saved in {path} differs from this agent's ({'; '.join(differ)}); "
                                  f"use {type(self).__name__}.from_checkpoint(path) to rebuild the agent from the "
                                  "saved config")

    def _apply_checkpoint(self, payload: dict[str, Any], path) -> None:
        backup = copy.deepcopy(self.state_dict())
        try:
            self.load_state_dict(payload["agent"])
        except Exception as exc:
            self.load_state_dict(backup)
            raise CheckpointError(f"{path} could not be loaded into this {type(self).__name__} ({exc}); "
                                  "the agent is unchanged") from exc

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
        return self.act(obs, explore=not check_bool("deterministic", deterministic)), None

    def learn(self, env, total_steps: int | None = None, **trainer_kwargs) -> Agent:
        """Train on ``env`` for ``total_steps`` environment steps (SB3 style); returns ``self``.

        Keyword arguments go to :class:`~rlbook.train.Trainer` (``plugins``, ``seed``,
        ``total_episodes``, ``objective``, ...). The finished trainer is kept as ``self.trainer``."""
        self.trainer = self.make_trainer(env, total_steps=total_steps, **trainer_kwargs)
        self.trainer.run()
        return self

    def make_trainer(self, env, *, num_envs: int = 1, **trainer_kwargs):
        """The trainer that trains this agent on ``env`` (an env id, an env or vector env, or a function that
        makes one): a :class:`~rlbook.train.Trainer` here; agents that train differently (A3C's workers)
        override it. With an env id, ``num_envs`` copies are stepped together. Keywords go to the trainer."""
        from rlbook.envs import make_vec
        from rlbook.train import Trainer  # the agents layer does not import the loop at module level

        if isinstance(env, str) and num_envs > 1:
            env = make_vec(env, num_envs)
        elif callable(env) and not isinstance(env, gym.Env | gym.vector.VectorEnv):
            env = env()
        return Trainer(self, env, **trainer_kwargs)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and verify a checkpoint written by :meth:`Agent.save` (see :mod:`rlbook.checkpoints`)."""
    return read_checkpoint(path)


def parameters_finite(parameters) -> bool:
    """True when every tensor in ``parameters`` is finite (one reduction and one device sync)."""
    tensors = [p.detach() for p in parameters]
    if not tensors:
        return True
    norms = torch._foreach_norm(tensors)
    return bool(torch.isfinite(torch.stack(norms)).all())


def _check_class(payload: dict[str, Any], cls: type, path) -> None:
    if payload.get("agent_class") != cls.__name__:
        raise CheckpointError(f"checkpoint {path} holds a {payload.get('agent_class')} agent, not a {cls.__name__}")


def _version() -> str:
    from rlbook import __version__

    return __version__


def sample_actions(probs: np.ndarray, rng: np.random.Generator, explore: bool) -> np.ndarray:
    """Actions ``(n,)`` (indices from 0) for rows of action probabilities ``(n, n_actions)``: one draw per row from
    ``rng`` by inverse-CDF sampling (``explore``), or each row's most likely action. A draw that falls past the
    last cumulative probability (rows that sum to just under 1 after rounding) takes the last action. The
    softmax-policy agents (CEM, REINFORCE, A2C) act with it."""
    if not explore:
        return probs.argmax(axis=1)
    u = rng.random(len(probs))[:, None]
    return (probs.cumsum(axis=1) < u).sum(axis=1).clip(max=probs.shape[1] - 1)


def check_state_shapes(module: torch.nn.Module, saved: dict[str, Any], what: str) -> None:
    """Raise ``ValueError`` when a checkpoint's ``saved`` state dict has other parameter names or shapes than
    ``module`` (before anything is loaded, so that a failed load changes nothing)."""
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in saved.items()}
    if ours != theirs:
        raise ValueError(f"the checkpoint's {what} has parameter shapes {theirs}, this agent's has {ours}")


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A NumPy generator's state as plain Python values (loadable with ``weights_only=True``)."""
    state = rng.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": {k: int(v) for k, v in state["state"].items()},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Restore a state taken by :func:`rng_state`."""
    rng.bit_generator.state = state
