"""Advantage actor-critic (A2C): a policy gradient whose baseline is a learned value function (chapter 10).

Many environments step together; every ``n_steps`` vector steps the agent has a ``(n_steps, num_envs)``
rollout (:class:`~rlbook.rollout.RolloutBuffer`) and takes one gradient step on it:

    A_t = GAE(lambda) of the rollout (lambda = 1: the n-step return to the end of the rollout minus V(s_t))
    loss = - mean_t [ log pi(a_t | s_t) A_t ] + value_coef * mean_t (R_t - V(s_t))^2 - beta * mean_t H(pi_t),

with ``R_t = A_t + V(s_t)`` the value target, every mean taken over the rollout's valid rows only (the rows of
Gymnasium's next-step autoreset are in the ``(T, N)`` layout but carry no transition). Truncated episodes
bootstrap from their final observation, terminated ones do not; see :mod:`rlbook.rollout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlbook.agents.base import Agent, Transition, check_state_shapes, rng_state, sample_actions, set_rng_state
from rlbook.config import AgentConfig, check_float, check_int
from rlbook.core import resolve_device
from rlbook.nets import ActorCritic, clip_grad_norm, make_adam
from rlbook.rollout import MaskedTransition, RolloutBuffer, gae_advantages


@dataclass(kw_only=True)
class A2CConfig(AgentConfig):
    """Hyperparameters of :class:`A2CAgent`. ``seed`` and ``device`` come from
    :class:`~rlbook.config.AgentConfig`."""

    gamma: float = 0.99
    """Discount factor, in [0, 1]."""
    lr: float = 7e-4
    """Adam learning rate (> 0)."""
    adam_eps: float = 1e-5
    """Adam's epsilon (the old text's Pong A2C used 1e-3: a larger value damps steps on rarely-seen weights)."""
    n_steps: int = 5
    """Vector steps per rollout (the ``T`` of the ``(T, N)`` batch)."""
    gae_lambda: float = 1.0
    """GAE's lambda: 1 gives n-step returns to the end of the rollout, smaller values trade variance for bias."""
    entropy_beta: float = 0.01
    """Weight of the entropy bonus."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float | None = 0.5
    """Clip the gradient to this global norm (``None``: no clipping)."""
    normalize_advantage: bool = False
    """Scale each rollout's advantages to mean 0 and standard deviation 1."""
    network: Literal["mlp", "nature_cnn"] = "mlp"
    """Body of the actor and the critic."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden sizes of the MLP body (tanh activations)."""
    shared: bool = False
    """One body for actor and critic (``True``) or one each (``False``)."""

    def validate(self) -> None:
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_float("lr", self.lr, 0.0, low_open=True)
        check_float("adam_eps", self.adam_eps, 0.0, low_open=True)
        check_int("n_steps", self.n_steps, 1)
        check_float("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_float("entropy_beta", self.entropy_beta, 0.0)
        check_float("value_coef", self.value_coef, 0.0)
        if self.max_grad_norm is not None:
            check_float("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)
        for i, h in enumerate(self.hidden):
            check_int(f"hidden[{i}]", h, 1)

    @classmethod
    def cartpole(cls, **overrides) -> A2CConfig:
        """A2C for CartPole-v1, for 8 environments: 5-step rollouts, separate 64-64 tanh bodies, no entropy
        bonus, gradient clipping at 0.5 (RL Zoo's settings), with Adam at lr 0.002 and GAE lambda 0.95 (chosen
        on tuning seeds 100 and up, apart from the benchmark's; ``bench/a2c_sensitivity.py`` measures the
        neighbours of this point)."""
        base = cls(gamma=0.99, lr=2e-3, n_steps=5, gae_lambda=0.95, entropy_beta=0.0, value_coef=0.5,
                   max_grad_norm=0.5, hidden=(64, 64), shared=False)
        return base.replace(**overrides)

    @classmethod
    def pong(cls, **overrides) -> A2CConfig:
        """The old text's Pong A2C: 4-step returns, Adam at lr 0.001 with eps 1e-3, entropy 0.01, gradient
        clipping at 0.1, one Nature CNN body shared by actor and critic (use it with 50 environments: a rollout
        of 4 x 50 = 200 rows; the old text trained on batches of 128). The old text's tuned rate, 0.003, made
        every state's features identical within our first CPU run (``results/10_a2c/a2c_pong_cpu_proof.json``:
        a policy that ignores the screen), so the preset keeps its first rate."""
        base = cls(gamma=0.99, lr=1e-3, adam_eps=1e-3, n_steps=4, gae_lambda=1.0, entropy_beta=0.01,
                   value_coef=0.5, max_grad_norm=0.1, network="nature_cnn", shared=True)
        return base.replace(**overrides)


class A2CAgent(Agent):
    """A2C for discrete actions (chapter 10). An on-policy agent: ``fixed_shape = True``, so the
    :class:`~rlbook.train.Trainer` hands it every environment's row at every step
    (:class:`~rlbook.rollout.MaskedTransition`).

    Args:
        observation_space: a ``Box`` (flat vectors for ``network="mlp"``, uint8 frame stacks for
            ``"nature_cnn"``).
        action_space: a ``Discrete`` space.
        config: an :class:`A2CConfig`; keyword ``overrides`` replace its fields.

    The checkpoint holds the network, the optimizer, the counters and the random generator; an unfinished
    rollout is not in it (the resumed run starts a fresh one).
    """

    config_class = A2CConfig
    supported_observation_spaces = (gym.spaces.Box,)
    supported_action_spaces = (gym.spaces.Discrete,)
    fixed_shape = True

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: A2CConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        c: A2CConfig = self.config
        self.device = resolve_device(c.device)
        self.n_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        with torch.random.fork_rng(devices=[]):
            if c.seed is not None:
                torch.manual_seed(c.seed)
            #: Actor and critic (:class:`~rlbook.nets.ActorCritic`).
            self.net = ActorCritic(observation_space.shape, self.n_actions, body=c.network, hidden=c.hidden,
                                   shared=c.shared).to(self.device)
        self.optimizer = make_adam(self.net.parameters(), c.lr, eps=c.adam_eps)
        self.rng = np.random.default_rng(c.seed)
        #: The current rollout, made at the start of a run (it needs the number of environments).
        self.rollout: RolloutBuffer | None = None
        #: Gradient steps taken.
        self.num_updates = 0

    # ------------------------------------------------------------------ acting
    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(obs), device=self.device)
        return obs if obs.dtype == torch.uint8 else obs.float()

    def probabilities(self, obs: np.ndarray) -> np.ndarray:
        """``pi(. | s)`` for a batch of observations, ``(n, n_actions)`` float64."""
        with torch.no_grad():
            logits, _ = self.net(self._obs_tensor(obs))
            return torch.softmax(logits, dim=1).double().cpu().numpy()

    def values(self, obs: np.ndarray) -> np.ndarray:
        """``V(s)`` for a batch of observations, ``(n,)`` float64."""
        with torch.no_grad():
            return self.net.value(self._obs_tensor(obs)).double().cpu().numpy()

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        return sample_actions(self.probabilities(obs), self.rng, explore) + self.action_start

    # ------------------------------------------------------------------ storing
    def begin_run(self, num_envs: int) -> None:
        space = self.observation_space
        self.rollout = RolloutBuffer(self.config.n_steps, num_envs, space.shape, space.dtype)

    def observe(self, transition: Transition) -> None:
        if not isinstance(transition, MaskedTransition):
            raise TypeError("A2CAgent learns from fixed-shape rollouts: train it with rlbook's Trainer (or pass "
                            f"MaskedTransition rows), got {type(transition).__name__}")
        super().observe(transition)
        if self.rollout is None or self.rollout.num_envs != len(transition):
            self.begin_run(len(transition))
        if self.action_start:
            transition = MaskedTransition(**{**vars(transition),
                                             "action": np.asarray(transition.action) - self.action_start})
        self.rollout.add(transition)

    # ------------------------------------------------------------------ learning
    def update(self) -> dict[str, float]:
        """One gradient step when the rollout is full (else ``{}``)."""
        if self.rollout is None or not self.rollout.full:
            return {}
        metrics = self.learn_from_rollout(self.rollout)
        self.rollout.clear()
        return metrics

    def rollout_loss(self, rollout: RolloutBuffer, behaviour: np.ndarray | None = None,
                     importance_clip: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A2C's loss on a full rollout (see the module docstring), with its parts as detached tensors.

        ``behaviour``: the probability, under the policy that played, of each action taken (``(T, N)``), for
        a rollout played by older weights (A3C's workers). Each step's policy term is then weighted by the
        truncated importance ratio ``min(importance_clip, pi(a|s) / behaviour)`` (as in IMPALA's V-trace
        policy gradient), which undoes most of the bias of learning from a slightly older policy."""
        c = self.config
        t, n = rollout.steps, rollout.num_envs
        # one forward pass for the T x N rows and the N observations after them (their values bootstrap)
        obs = np.concatenate([rollout.obs.reshape(t * n, *rollout.obs.shape[2:]), rollout.last_next_obs])
        all_logits, all_values = self.net(self._obs_tensor(obs))
        logits, values = all_logits[:t * n], all_values[:t * n]
        all_values = all_values.detach().view(t + 1, n)
        dev = self.device
        valid = torch.as_tensor(rollout.valid, device=dev)
        advantages, targets = gae_advantages(
            torch.as_tensor(rollout.rewards, device=dev), all_values, torch.as_tensor(rollout.terminated, device=dev),
            torch.as_tensor(rollout.truncated, device=dev), valid, c.gamma, c.gae_lambda)
        mask = valid.view(-1).float()
        rows = mask.sum().clamp(min=1.0)
        adv = advantages.view(-1)
        if c.normalize_advantage:
            mean = (adv * mask).sum() / rows
            std = (((adv - mean) ** 2 * mask).sum() / rows).sqrt()
            adv = (adv - mean) / (std + 1e-8)
        log_probs = F.log_softmax(logits, dim=1)
        actions = torch.as_tensor(rollout.actions.reshape(-1), device=dev).long()
        taken = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
        weight = adv.detach()
        extra = {}
        if behaviour is not None:
            mu = torch.tensor(np.asarray(behaviour).reshape(-1), device=dev, dtype=taken.dtype)  # a copy
            ratio = (taken.detach().exp() / mu.clamp(min=1e-8)).clamp(max=importance_clip)
            weight = weight * ratio
            extra["importance_ratio"] = (ratio * mask).sum() / rows
        policy_loss = -(taken * weight * mask).sum() / rows
        value_loss = ((targets.view(-1) - values) ** 2 * mask).sum() / rows
        entropy = (-(log_probs.exp() * log_probs).sum(dim=1) * mask).sum() / rows
        loss = policy_loss + c.value_coef * value_loss - c.entropy_beta * entropy
        return loss, {"loss": loss.detach(), "policy_loss": policy_loss.detach(),
                      "value_loss": value_loss.detach(), "entropy": entropy.detach(), **extra}

    def rollout_gradients(self, rollout: RolloutBuffer, **loss_kwargs) -> dict[str, torch.Tensor]:
        """Fill the parameters' ``.grad`` with the (clipped) gradient of :meth:`rollout_loss`; returns the loss
        parts and the gradient's norm before clipping."""
        loss, metrics = self.rollout_loss(rollout, **loss_kwargs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = self.config.max_grad_norm
        metrics["grad_norm"] = clip_grad_norm(list(self.net.parameters()), math.inf if limit is None else limit)
        return metrics

    def learn_from_rollout(self, rollout: RolloutBuffer, **loss_kwargs) -> dict[str, torch.Tensor]:
        """One gradient step on a full rollout: :meth:`rollout_gradients`, then Adam."""
        metrics = self.rollout_gradients(rollout, **loss_kwargs)
        self.optimizer.step()
        self.num_updates += 1
        return metrics

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self.rng), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_shapes(self.net, state["net"], "network")
        super().load_state_dict(state)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])
        self.num_updates = int(state["num_updates"])
        if self.rollout is not None:
            self.rollout.clear()


__all__ = ["A2CAgent", "A2CConfig"]
