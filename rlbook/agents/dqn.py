"""Deep Q-Networks (DQN): Q-learning with a neural network, experience replay and a target network.

Defined in chapter 6; chapter 7's extensions are switches on this one agent. The pieces, top to bottom:

* :class:`DQNConfig` -- every hyperparameter, with presets for CartPole and Pong.
* :func:`build_q_network` -- the network factory (MLP or Nature CNN; chapter 7 adds dueling, noisy and
  categorical heads here).
* :class:`DQNAgent` -- acting (epsilon-greedy, one forward pass per vector step), storing
  (:class:`~rlbook.replay.ReplayBuffer`, through :class:`~rlbook.replay.NStepFolder` when ``n_step > 1``),
  learning (:meth:`DQNAgent.compute_targets` is the one place the Bellman target is computed: plain,
  double, n-step) and saving.
* :func:`play` -- load a checkpoint and record an episode.

The one-step target for a transition ``(s, a, r, s')`` is ``y = r + gamma * max_a' Q_target(s', a')``,
with no bootstrap when the episode terminated at ``s'`` (but bootstrapping when it was only truncated by
a time limit). n-step rows fold ``m`` rewards and bootstrap with ``gamma**m``; Double DQN picks ``a'``
with the online network and evaluates it with the target network.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlbook.agents.base import Agent, Transition, parameters_finite, rng_state, set_rng_state
from rlbook.config import AgentConfig, check_float, check_int
from rlbook.core import resolve_device
from rlbook.nets import MLP, NatureCNN, clip_grad_norm
from rlbook.replay import NStepFolder, ReplayBatch, ReplayBuffer
from rlbook.schedules import LinearSchedule

NETWORKS = ("mlp", "nature_cnn")


@dataclass(kw_only=True)
class DQNConfig(AgentConfig):
    """Hyperparameters of :class:`DQNAgent` (defaults: the Pong settings of the Nature paper's lineage).

    ``seed`` and ``device`` come from :class:`~rlbook.config.AgentConfig`; every field is checked when the
    config is made (types from the annotations, ranges in :meth:`validate`)."""

    gamma: float = 0.99
    """Discount factor, in [0, 1]."""
    lr: float = 1e-4
    """Adam learning rate (> 0)."""
    batch_size: int = 32
    """Transitions per gradient step."""
    buffer_size: int = 100_000
    """Replay capacity in transitions (all environments together)."""
    learning_starts: int = 10_000
    """Environment steps collected before the first gradient step (also the refill after loading)."""
    train_freq: int = 1
    """Environment steps between rounds of learning (summed over the vector of environments)."""
    gradient_steps: int = 1
    """Gradient steps per round of learning."""
    target_update_interval: int = 1_000
    """Gradient steps between target-network updates."""
    tau: float = 1.0
    """Target update weight: 1.0 copies the online network (hard sync), smaller values blend (Polyak)."""
    epsilon_start: float = 1.0
    """Exploration rate at the first step."""
    epsilon_end: float = 0.02
    """Exploration rate after the decay."""
    epsilon_decay_steps: int = 100_000
    """Environment steps over which epsilon falls linearly from start to end."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: ``"huber"`` (smooth L1) or ``"mse"``."""
    max_grad_norm: float | None = 10.0
    """Clip the gradient to this global norm (``None``: no clipping)."""
    n_step: int = 1
    """Rewards folded per replayed transition (n-step returns; 1 is plain DQN)."""
    double: bool = False
    """Double DQN: choose the next action with the online network, value it with the target network."""
    network: Literal["mlp", "nature_cnn"] = "mlp"
    """Q-network kind: ``"mlp"`` for vector observations, ``"nature_cnn"`` for stacked 84x84 frames."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the MLP (ignored by the Nature CNN)."""

    def validate(self) -> None:
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_float("lr", self.lr, 0.0, low_open=True)
        for name in ("batch_size", "buffer_size", "train_freq", "gradient_steps", "target_update_interval",
                     "n_step"):
            check_int(name, getattr(self, name), 1)
        for name in ("learning_starts", "epsilon_decay_steps"):
            check_int(name, getattr(self, name), 0)
        check_float("tau", self.tau, 0.0, 1.0, low_open=True)
        for name in ("epsilon_start", "epsilon_end"):
            check_float(name, getattr(self, name), 0.0, 1.0)
        if self.max_grad_norm is not None:
            check_float("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)
        if self.buffer_size < self.batch_size:
            raise ValueError(f"buffer_size ({self.buffer_size}) must be at least batch_size ({self.batch_size})")
        for i, h in enumerate(self.hidden):
            check_int(f"hidden[{i}]", h, 1)

    @classmethod
    def cartpole(cls, **overrides) -> DQNConfig:
        """Tuned for CartPole-v1 on a CPU with 8 copies in one NumPy vector env: solve fast in wall-clock time.

        Gradient steps are the cost, so learning comes in rounds: 32 steps on minibatches of 256 every 256
        environment steps (one gradient step per 8 env steps). 3-step returns spread the reward back
        quickly and Double DQN keeps the values from running away, which keeps the policy at 500.
        In tuning, a (64, 64) network, no gradient clipping, fewer gradient steps per round, gamma 0.98 or
        a faster epsilon decay each failed some seeds or needed more steps; 32 copies instead of 8 cost
        about as many seconds but 10-25 % more steps."""
        base = cls(gamma=0.99, lr=1e-3, batch_size=256, buffer_size=100_000, learning_starts=1_000,
                   train_freq=256, gradient_steps=32, target_update_interval=64, tau=1.0,
                   epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=10_000, loss="huber",
                   max_grad_norm=10.0, n_step=3, double=True, network="mlp", hidden=(128, 128))
        return base.replace(**overrides)

    @classmethod
    def pong(cls, **overrides) -> DQNConfig:
        """The old book's Pong settings: gamma 0.99, batch 32, replay 10k, learning after 10k steps,
        Adam lr 1e-4, target sync every 1,000 steps, epsilon 1.0 -> 0.02 over 100k steps, one gradient
        step per environment step, MSE loss without clipping, 1-step returns, the Nature CNN.

        A 10k replay takes about 282 MB of uint8 frame stacks; ``buffer_size=100_000`` (2.8 GB) is the
        common larger choice."""
        base = cls(gamma=0.99, lr=1e-4, batch_size=32, buffer_size=10_000, learning_starts=10_000,
                   train_freq=1, gradient_steps=1, target_update_interval=1_000, tau=1.0,
                   epsilon_start=1.0, epsilon_end=0.02, epsilon_decay_steps=100_000, loss="mse",
                   max_grad_norm=None, n_step=1, double=False, network="nature_cnn")
        return base.replace(**overrides)


def build_q_network(config: DQNConfig, observation_space: gym.spaces.Box, n_actions: int) -> nn.Module:
    """The Q-network for ``config.network``: maps observations ``(n, *obs_shape)`` to Q-values ``(n, n_actions)``.

    Raises ``TypeError`` when the network cannot take these observations (an MLP needs flat vectors, the
    Nature CNN needs ``(channels, 84, 84)``-like frame stacks). Chapter 7's heads plug in here."""
    shape = observation_space.shape
    if config.network == "mlp":
        if len(shape) != 1:
            raise TypeError(f"network='mlp' needs flat (1-D) Box observations, got shape {shape}; "
                            "use network='nature_cnn' for stacked frames (channels, height, width)")
        return MLP(shape[0], n_actions, hidden=config.hidden)
    if config.network == "nature_cnn":
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] < 36:
            raise TypeError(f"network='nature_cnn' needs square frame stacks (channels, size, size) with "
                            f"size >= 36, got shape {shape}; use network='mlp' for flat vectors")
        return NatureCNN(in_channels=shape[0], n_actions=n_actions, frame_size=shape[1])
    raise ValueError(f"network must be one of {NETWORKS}, got {config.network!r}")


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one call per step for all parameters; CPU and CUDA), else foreach."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr, foreach=True)


class DQNAgent(Agent):
    """DQN for discrete actions (chapter 6), with n-step returns and Double DQN as switches (chapter 7).

    Args:
        observation_space: a ``Box`` (vectors for ``network="mlp"``, uint8 frame stacks for ``"nature_cnn"``).
        action_space: a ``Discrete`` space.
        config: a :class:`DQNConfig` (default: ``DQNConfig()``); keyword ``overrides`` replace its fields.

    Learning happens inside :meth:`update`, which the trainer calls after every :meth:`observe`: once
    ``learning_starts`` steps are stored, every ``train_freq`` environment steps it samples
    ``gradient_steps`` minibatches in one draw and takes a gradient step on each. Metrics come back as
    0-dim tensors (no device sync per step).

    The checkpoint (:meth:`state_dict`) holds the online and target networks, the optimizer, the step
    counters, the random generator and the config -- but not the replay buffer (hundreds of MB for
    Atari). After loading into an agent whose buffer is empty, the agent collects ``learning_starts``
    fresh steps before it learns again.
    """

    config_class = DQNConfig
    supported_observation_spaces = (gym.spaces.Box,)
    supported_action_spaces = (gym.spaces.Discrete,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: DQNConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        self.config: DQNConfig
        self.n_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        self.device = resolve_device(self.config.device)
        self.rng = np.random.default_rng(self.config.seed)
        with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching global state
            if self.config.seed is not None:
                torch.manual_seed(self.config.seed)
            self.q_net = build_q_network(self.config, observation_space, self.n_actions).to(self.device)
        self.target_net = copy.deepcopy(self.q_net)
        self.target_net.requires_grad_(False)
        self._parameters = list(self.q_net.parameters())
        self.optimizer = make_adam(self._parameters, self.config.lr)
        self.epsilon_schedule = LinearSchedule(self.config.epsilon_start, self.config.epsilon_end,
                                               self.config.epsilon_decay_steps)
        #: The replay buffer, made at the first :meth:`observe` (it needs the number of environments).
        self.buffer: ReplayBuffer | None = None
        self.folder = NStepFolder(self.config.n_step, self.config.gamma) if self.config.n_step > 1 else None
        #: Gradient steps taken so far.
        self.gradient_steps_done = 0
        self._next_train_at = self.config.learning_starts
        self._rows_stored = 0  # rows put in this agent's buffer (the buffer is not checkpointed)
        self._losses_finite = torch.ones((), dtype=torch.bool, device=self.device)  # all losses so far finite

    def build_buffer(self, num_envs: int) -> ReplayBuffer:
        """The replay buffer for this config (chapter 7 switches to prioritized replay here)."""
        space = self.observation_space
        return ReplayBuffer(self.config.buffer_size, space.shape, space.dtype, num_envs=num_envs,
                            n_step=self.config.n_step)

    # ------------------------------------------------------------------ acting
    @property
    def epsilon(self) -> float:
        """The exploration rate at the current step."""
        return self.epsilon_schedule.value_at(self.num_steps)

    def q_values(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Online Q-values ``(n, n_actions)`` for observations ``(n, *obs_shape)``, without gradients."""
        with torch.no_grad():
            return self.q_net(torch.as_tensor(obs, device=self.device))

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Epsilon-greedy actions ``(n,)`` for observations ``(n, *obs_shape)``: one forward pass for the
        whole batch (skipped when every action is random)."""
        n = len(obs)
        if explore:
            explore_mask = self.rng.random(n) < self.epsilon
            random_actions = self.rng.integers(self.n_actions, size=n)
            if explore_mask.all():
                return random_actions + self.action_start
        greedy = self.q_values(obs).argmax(dim=1).cpu().numpy()
        if explore:
            greedy = np.where(explore_mask, random_actions, greedy)
        return greedy + self.action_start

    # ------------------------------------------------------------------ storing
    def observe(self, transition: Transition) -> None:
        """Store the batch in the replay buffer (n-step folded when ``n_step > 1``)."""
        super().observe(transition)
        if self.buffer is None:  # the first batch of a run holds a row from every environment
            self.buffer = self.build_buffer(int(np.max(transition.env_ids)) + 1)
        if self.folder is None:
            self.buffer.add(transition.obs, transition.action - self.action_start, transition.reward,
                            transition.next_obs, transition.terminated, transition.truncated, transition.env_ids)
            self._rows_stored += len(transition)
        else:
            rows = self.folder.fold(transition)
            if len(rows):
                self.buffer.add(rows.obs, rows.action - self.action_start, rows.reward, rows.next_obs,
                                rows.terminated, rows.truncated, rows.env_ids, rows.steps)
                self._rows_stored += len(rows)

    # ------------------------------------------------------------------ learning
    def update(self) -> dict[str, Any]:
        """Learn if a round is due: ``gradient_steps`` per ``train_freq`` env steps since the last round.

        Returns ``{}`` or ``{"loss", "q_mean"}`` (0-dim tensors, means over the round) and ``"epsilon"``."""
        if self.num_steps < self._next_train_at or self._rows_stored == 0:
            return {}
        rounds = 1 + (self.num_steps - self._next_train_at) // self.config.train_freq
        self._next_train_at += rounds * self.config.train_freq
        n_steps = rounds * self.config.gradient_steps
        batch = self.buffer.sample((n_steps, self.config.batch_size), self.rng)
        tensors = self._to_device(batch)
        loss_sum = torch.zeros((), device=self.device)
        q_sum = torch.zeros((), device=self.device)
        for i in range(n_steps):
            loss, q_taken = self.gradient_step({k: v[i] for k, v in tensors.items()})
            loss_sum += loss
            q_sum += q_taken.mean()
        self._losses_finite &= torch.isfinite(loss_sum)  # on the device: no sync until someone asks
        return {"loss": loss_sum / n_steps, "q_mean": q_sum / n_steps, "epsilon": self.epsilon}

    def _to_device(self, batch: ReplayBatch) -> dict[str, torch.Tensor]:
        """The sampled arrays as tensors on the agent's device (one transfer per array)."""
        device = self.device
        discount = (self.config.gamma ** batch.steps).astype(np.float32)
        return {
            "obs": torch.as_tensor(batch.obs, device=device),
            "action": torch.as_tensor(batch.action, device=device),
            "reward": torch.as_tensor(batch.reward, device=device),
            "next_obs": torch.as_tensor(batch.next_obs, device=device),
            "terminated": torch.as_tensor(batch.terminated, device=device),
            "discount": torch.as_tensor(discount, device=device),
        }

    def compute_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Bellman targets ``(B,)``: ``reward + discount * (1 - terminated) * Q_target(next_obs, a')``.

        ``reward`` is the folded n-step return and ``discount`` is ``gamma**m``; ``a'`` maximises the target
        network (plain DQN) or the online network (Double DQN). Truncated rows bootstrap like any other."""
        with torch.no_grad():
            next_q_target = self.target_net(batch["next_obs"])
            if self.config.double:
                next_action = self.q_net(batch["next_obs"]).argmax(dim=1, keepdim=True)
                next_value = next_q_target.gather(1, next_action).squeeze(1)
            else:
                next_value = next_q_target.max(dim=1).values
            not_terminal = (~batch["terminated"]).to(next_value.dtype)
            return batch["reward"] + batch["discount"] * not_terminal * next_value

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The TD loss of a minibatch and the Q-values of the actions taken ``(B,)`` (detached)."""
        targets = self.compute_targets(batch)
        q_taken = self.q_net(batch["obs"]).gather(1, batch["action"].long().unsqueeze(1)).squeeze(1)
        if self.config.loss == "huber":
            loss = F.smooth_l1_loss(q_taken, targets)
        else:
            loss = F.mse_loss(q_taken, targets)
        return loss, q_taken.detach()

    def gradient_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a minibatch of device tensors; updates the target network when due."""
        loss, q_taken = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            clip_grad_norm(self._parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.gradient_steps_done += 1
        if self.gradient_steps_done % self.config.target_update_interval == 0:
            self.update_target()
        return loss.detach(), q_taken

    def update_target(self) -> None:
        """Copy the online network into the target (``tau == 1``) or blend it in by ``tau`` (Polyak)."""
        with torch.no_grad():
            if self.config.tau >= 1.0:
                for target, online in zip(self.target_net.parameters(), self.q_net.parameters()):
                    target.copy_(online)
            else:
                for target, online in zip(self.target_net.parameters(), self.q_net.parameters()):
                    target.lerp_(online, self.config.tau)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer, counters, random generator and config (not the replay buffer)."""
        return {
            **super().state_dict(),
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.rng),
            "gradient_steps_done": self.gradient_steps_done,
            "next_train_at": self._next_train_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (use :meth:`load`, which checks the file, the spaces and the config first
        and leaves the agent unchanged when anything fails)."""
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])
        Agent.load_state_dict(self, state)
        self.gradient_steps_done = int(state["gradient_steps_done"])
        self._next_train_at = int(state["next_train_at"])
        if self.folder is not None:
            self.folder.reset()
        if self._rows_stored < self.config.learning_starts:  # refill an empty buffer before learning
            self._next_train_at = max(self._next_train_at,
                                      self.num_steps + self.config.learning_starts - self._rows_stored)

    # ------------------------------------------------------------------ health
    def nonfinite(self) -> str | None:
        """``None`` while every loss so far and every weight is finite, else what is not (one device sync)."""
        parts = []
        if not bool(self._losses_finite):
            parts.append("the TD loss")
        parts += [f"the weights of {name}" for name, net in (("q_net", self.q_net), ("target_net", self.target_net))
                  if not parameters_finite(net.parameters())]
        return " and ".join(parts) or None

    def divergence_hint(self) -> str:
        c = self.config
        clip = f"gradient clipping at {c.max_grad_norm:g}" if c.max_grad_norm is not None else "no gradient clipping"
        return (f"a learning rate too high for this problem (lr={c.lr:g}), rewards too large for the {c.loss} loss "
                f"with {clip}, or a target network updated too often (target_update_interval="
                f"{c.target_update_interval}, tau={c.tau:g})")


def play(checkpoint: str | os.PathLike | DQNAgent, env: gym.Env | str, *, max_steps: int = 10_000,
         seed: int | None = None, device: str = "auto", path: str | os.PathLike | None = None,
         fps: float = 30) -> tuple[list[np.ndarray], float]:
    """Play one greedy episode with a trained agent and keep its frames.

    Args:
        checkpoint: a checkpoint file written by ``agent.save`` (or the Checkpoint plugin), or an agent.
        env: a single env made with ``render_mode="rgb_array"``, or an env id (made so).
        max_steps: stop after this many steps.
        seed: seeds the episode's reset.
        device: where to load the networks.
        path: if given, also write the animation there (``.webp`` or ``.gif``).
        fps: playback speed of the written animation.

    Returns:
        ``(frames, total_reward)``; show the frames with ``rlbook.plot.animate_episode(frames)``.
    """
    from rlbook.envs import make
    from rlbook.plot import animate_episode, record_episode

    if isinstance(env, str):
        env = make(env, render_mode="rgb_array")
    if isinstance(checkpoint, DQNAgent):
        agent = checkpoint
    else:
        agent = DQNAgent.from_checkpoint(checkpoint, env.observation_space, env.action_space, device=device)
    frames, total = record_episode(agent, env, max_steps=max_steps, seed=seed)
    if path is not None:
        suffix = str(path).rsplit(".", 1)[-1].lower()
        if suffix not in ("webp", "gif"):
            raise ValueError(f"path must end in .webp or .gif, got {path!r}")
        animate_episode(frames, fps=fps, max_frames=len(frames), format=suffix).save(str(path))
    return frames, total


__all__ = ["DQNAgent", "DQNConfig", "build_q_network", "play"]
