"""Policy gradients: REINFORCE and its first fixes (chapter 9).

The policy is a network from observations to action logits, ``pi(a | s) = softmax(logits)``. REINFORCE raises
the log-probability of each action taken in proportion to the return that followed it:

    loss = - mean_t [ log pi(a_t | s_t) * (G_t - b) ] - beta * mean_t H(pi(. | s_t)),

where ``G_t`` is the discounted return-to-go of step ``t`` in its episode, ``b`` a baseline (0, or the mean
``G_t`` of the batch) and ``H`` the entropy of the policy (a bonus that keeps it from collapsing too early).
Its gradient is an unbiased estimate of the gradient of the expected return as long as the data come from the
current policy, which is why the agent learns only from episodes that it played entirely with its current
weights (see :class:`ReinforceAgent`).

:class:`NStepPGAgent` is the chapter's second agent: it does not wait for episodes to end. Each step's weight is
its ``n``-step discounted reward (no bootstrap) minus a running-mean baseline, and it updates on small batches
of steps, with an entropy bonus.

:func:`per_sample_gradients` and :func:`gradient_variance` measure the variance problem: the gradient of every
single step's term of the loss, and how much those estimates scatter around their mean.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from rlbook.agents.base import Agent, Transition, check_state_shapes, rng_state, sample_actions, set_rng_state
from rlbook.config import AgentConfig, check_float, check_int
from rlbook.core import resolve_device
from rlbook.nets import MLP, clip_grad_norm, make_adam
from rlbook.rollout import EpisodeBuffer, returns_to_go


@dataclass(kw_only=True)
class PGConfig(AgentConfig):
    """Hyperparameters of :class:`ReinforceAgent` (defaults: the old text's REINFORCE on CartPole).

    ``seed`` and ``device`` come from :class:`~rlbook.config.AgentConfig`."""

    gamma: float = 0.99
    """Discount of the returns-to-go, in [0, 1]."""
    lr: float = 0.01
    """Adam learning rate (> 0)."""
    episodes_per_update: int = 4
    """Finished episodes per gradient step."""
    baseline: bool = False
    """Subtract the batch's mean return-to-go from every return (a baseline that does not depend on the
    action: the gradient stays nearly unbiased -- the mean includes the step's own return, an O(1/batch)
    effect -- and its variance drops)."""
    entropy_beta: float = 0.0
    """Weight of the entropy bonus (0: none)."""
    hidden: tuple[int, ...] = (128,)
    """Hidden layer sizes of the policy MLP."""
    max_grad_norm: float | None = None
    """Clip the gradient to this global norm (``None``: no clipping)."""

    def validate(self) -> None:
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_float("lr", self.lr, 0.0, low_open=True)
        check_int("episodes_per_update", self.episodes_per_update, 1)
        check_float("entropy_beta", self.entropy_beta, 0.0)
        for i, h in enumerate(self.hidden):
            check_int(f"hidden[{i}]", h, 1)
        if self.max_grad_norm is not None:
            check_float("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)

    @classmethod
    def cartpole(cls, **overrides) -> PGConfig:
        """The old text's REINFORCE for CartPole: gamma 0.99, Adam lr 0.01, 4 episodes per update, one hidden
        layer of 128, no baseline, no entropy bonus."""
        return cls(gamma=0.99, lr=0.01, episodes_per_update=4, hidden=(128,)).replace(**overrides)


class ReinforceAgent(Agent):
    """REINFORCE for discrete actions (chapter 9), with a mean baseline and an entropy bonus as switches.

    Args:
        observation_space: a flat ``Box``.
        action_space: a ``Discrete`` space.
        config: a :class:`PGConfig`; keyword ``overrides`` replace its fields.

    Acting samples from the policy (greedy acting, ``explore=False``, takes its most likely action). Each
    environment's steps go to its running episode (:class:`~rlbook.rollout.EpisodeBuffer`); when
    ``episodes_per_update`` episodes have finished, :meth:`update` takes one gradient step on all their steps.

    **Episodes that straddle an update.** With several environments, some are in the middle of an episode when
    an update changes the policy. Such an episode was played partly by the old policy, and its returns-to-go
    mix the two; the agent drops it when it ends (``dropped_steps`` counts the steps lost), so that every
    gradient comes from episodes played entirely by the weights being updated. With one environment nothing
    is ever dropped: the update happens when an episode ends.
    """

    config_class = PGConfig
    supported_observation_spaces = (gym.spaces.Box,)
    supported_action_spaces = (gym.spaces.Discrete,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PGConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        c: PGConfig = self.config
        if len(observation_space.shape) != 1:
            raise TypeError(f"ReinforceAgent needs flat (1-D) Box observations, got shape {observation_space.shape}")
        self.device = resolve_device(c.device)
        self.n_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        with torch.random.fork_rng(devices=[]):
            if c.seed is not None:
                torch.manual_seed(c.seed)
            #: The policy network: observations to action logits.
            self.policy = MLP(observation_space.shape[0], self.n_actions, hidden=c.hidden).to(self.device)
        self.optimizer = make_adam(self.policy.parameters(), c.lr)
        self.rng = np.random.default_rng(c.seed)
        self.episodes = EpisodeBuffer(observation_space.shape, np.float32)
        self.batch: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (obs, actions, returns-to-go)
        self.batch_returns: list[float] = []
        #: Gradient steps taken.
        self.num_updates = 0
        #: Steps of episodes dropped because an update happened while they were played.
        self.dropped_steps = 0
        self._started_at = np.zeros(0, dtype=np.int64)  # per env: num_updates when its running episode began

    # ------------------------------------------------------------------ acting
    def probabilities(self, obs: np.ndarray) -> np.ndarray:
        """``pi(. | s)`` for a batch of observations, ``(n, n_actions)`` float64."""
        with torch.no_grad():
            logits = self.policy(torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device))
            return torch.softmax(logits, dim=1).double().cpu().numpy()

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        return sample_actions(self.probabilities(obs), self.rng, explore) + self.action_start

    # ------------------------------------------------------------------ storing
    def begin_run(self, num_envs: int) -> None:
        self.episodes.discard_running()
        self._started_at = np.full(num_envs, self.num_updates, dtype=np.int64)

    def observe(self, transition: Transition) -> None:
        super().observe(transition)
        ids = np.asarray(transition.env_ids, dtype=np.int64)
        if len(self._started_at) <= ids.max():
            grown = np.full(int(ids.max()) + 1, self.num_updates, dtype=np.int64)
            grown[:len(self._started_at)] = self._started_at
            self._started_at = grown
        lengths = self.episodes.running_lengths()
        lengths = np.concatenate([lengths, np.zeros(max(0, len(self._started_at) - len(lengths)), np.int64)])
        starting = ids[lengths[ids] == 0]  # these rows are the first steps of new episodes
        self._started_at[starting] = self.num_updates
        actions = np.asarray(transition.action).reshape(len(ids)) - self.action_start
        for e in self.episodes.add(transition.obs, actions, transition.reward, transition.terminated,
                                   transition.truncated, ids):
            if self._started_at[e.env_id] != self.num_updates:
                self.dropped_steps += len(e)
                continue
            self.batch.append((e.obs, e.actions, returns_to_go(e.rewards, self.config.gamma)))
            self.batch_returns.append(e.total_reward)

    # ------------------------------------------------------------------ learning
    def update(self) -> dict[str, float]:
        """One gradient step once ``episodes_per_update`` fresh episodes have finished (else ``{}``)."""
        if len(self.batch) < self.config.episodes_per_update:
            return {}
        batch, self.batch = self.batch, []
        returns, self.batch_returns = self.batch_returns, []
        obs = torch.as_tensor(np.concatenate([b[0] for b in batch]), device=self.device)
        actions = torch.as_tensor(np.concatenate([b[1] for b in batch]), device=self.device)
        g = torch.as_tensor(np.concatenate([b[2] for b in batch]), dtype=torch.float32, device=self.device)
        metrics = self.learn_from(obs, actions, g)
        metrics["episode_return"] = float(np.mean(returns))
        metrics["episodes"] = float(len(batch))
        return metrics

    def weights(self, returns: torch.Tensor) -> torch.Tensor:
        """What multiplies each ``log pi(a_t | s_t)``: ``G_t``, or ``G_t`` minus the batch mean with
        ``baseline=True``."""
        return returns - returns.mean() if self.config.baseline else returns

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The REINFORCE loss of one batch of steps (see the module docstring) and its parts."""
        logits = self.policy(obs)
        log_probs = F.log_softmax(logits, dim=1)
        taken = log_probs.gather(1, actions.long().unsqueeze(1)).squeeze(1)
        weights = self.weights(returns)
        policy_loss = -(taken * weights).mean()
        entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
        return policy_loss - self.config.entropy_beta * entropy, {"policy_loss": policy_loss, "entropy": entropy}

    def learn_from(self, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """One Adam step on the batch; returns the loss, the entropy and the KL divergence between the policy
        before and after the step on the batch's states."""
        with torch.no_grad():
            before = F.log_softmax(self.policy(obs), dim=1)
        loss, parts = self.loss(obs, actions, returns)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = list(self.policy.parameters())
        grad_norm = clip_grad_norm(params, self.config.max_grad_norm if self.config.max_grad_norm else math.inf)
        self.optimizer.step()
        self.num_updates += 1
        with torch.no_grad():
            after = F.log_softmax(self.policy(obs), dim=1)
            kl = (before.exp() * (before - after)).sum(dim=1).mean()
        return {"loss": loss.item(), "policy_loss": parts["policy_loss"].item(), "entropy": parts["entropy"].item(),
                "kl": kl.item(), "grad_norm": grad_norm.item(), "steps": float(len(returns))}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self.rng), "num_updates": self.num_updates, "dropped_steps": self.dropped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_shapes(self.policy, state["policy"], "policy")
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])
        self.num_updates = int(state["num_updates"])
        self.dropped_steps = int(state["dropped_steps"])
        self.batch, self.batch_returns = [], []  # unfinished batches are not in the checkpoint
        self.episodes.discard_running()


@dataclass(kw_only=True)
class NStepPGConfig(PGConfig):
    """Hyperparameters of :class:`NStepPGAgent` (defaults: the old text's policy gradient on CartPole: gamma
    0.99, Adam lr 0.001, 10-step rewards, batches of 8 steps, entropy bonus 0.01, running-mean baseline).

    Inherits ``gamma``, ``lr``, ``entropy_beta``, ``hidden`` and ``max_grad_norm`` from :class:`PGConfig`;
    ``episodes_per_update`` is not used, and ``baseline`` switches the running-mean baseline."""

    lr: float = 0.001
    """Adam learning rate (> 0)."""
    reward_steps: int = 10
    """``n``: each step's weight sums the discounted rewards of at most ``n`` steps (fewer at an episode's
    end), without bootstrapping."""
    batch_steps: int = 8
    """Gradient step once at least this many steps have their weights (an episode's end flushes its whole
    window at once, so a batch can hold up to ``batch_steps + reward_steps - 1`` steps per environment)."""
    baseline: bool = True
    """Subtract the running mean of every ``n``-step reward seen so far (including the current one)."""
    entropy_beta: float = 0.01
    """Weight of the entropy bonus (0: none)."""

    def validate(self) -> None:
        super().validate()
        check_int("reward_steps", self.reward_steps, 1)
        check_int("batch_steps", self.batch_steps, 1)

    @classmethod
    def cartpole(cls, **overrides) -> NStepPGConfig:
        """The old text's policy gradient for CartPole (the class defaults)."""
        return cls().replace(**overrides)


class NStepPGAgent(ReinforceAgent):
    """Policy gradient on ``n``-step rewards with a running-mean baseline and an entropy bonus (chapter 9).

    Args:
        observation_space: a flat ``Box``.
        action_space: a ``Discrete`` space.
        config: an :class:`NStepPGConfig`; keyword ``overrides`` replace its fields.

    Each environment keeps its last ``reward_steps`` steps. A step leaves that window with the weight
    ``r_t + gamma r_{t+1} + ... + gamma^(n-1) r_{t+n-1}`` (the window is flushed with shorter sums when the
    episode ends, by termination or truncation alike: nothing is bootstrapped), minus the running mean of all
    such sums so far. Once at least ``batch_steps`` steps have their weights, the agent takes one gradient
    step on all of them (more than ``batch_steps`` when an episode's end has just flushed a window).

    **Policy lag.** A step's weight is known ``n`` steps after it was taken, so a batch can hold steps chosen by
    the weights of a few updates ago (with one environment, ``n = 10`` and batches of 8: at most two). The
    agent uses them anyway, as the old text did; the KL metric of each update shows how small one update's
    change of the policy is.
    """

    config_class = NStepPGConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 config: NStepPGConfig | None = None, **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        self._windows: dict[int, deque] = {}
        self._ready: list[tuple[np.ndarray, int, float]] = []  # (obs, action, n-step reward)
        #: Sum and count of every n-step reward so far (the running-mean baseline).
        self.reward_sum, self.reward_count = 0.0, 0
        self._scales: list[float] = []

    def begin_run(self, num_envs: int) -> None:
        self._windows = {}

    def _emit(self, window: deque) -> None:
        obs, action, _ = window[0]
        g, discount = 0.0, 1.0
        for _, _, r in window:
            g += discount * r
            discount *= self.config.gamma
        self._ready.append((obs, action, g))
        self.reward_sum += g
        self.reward_count += 1
        baseline = self.reward_sum / self.reward_count if self.config.baseline else 0.0
        self._scales.append(g - baseline)
        window.popleft()

    def observe(self, transition: Transition) -> None:
        Agent.observe(self, transition)
        ids = np.asarray(transition.env_ids, dtype=np.int64)
        obs = np.asarray(transition.obs, dtype=np.float32)
        actions = np.asarray(transition.action).reshape(len(ids)) - self.action_start
        rewards = np.asarray(transition.reward, dtype=np.float64).reshape(len(ids))
        done = np.asarray(transition.terminated) | np.asarray(transition.truncated)
        n = self.config.reward_steps
        for row, env_id in enumerate(ids.tolist()):
            window = self._windows.setdefault(env_id, deque())
            window.append((obs[row], int(actions[row]), float(rewards[row])))
            if done[row]:
                while window:
                    self._emit(window)
            elif len(window) == n:
                self._emit(window)

    def update(self) -> dict[str, float]:
        """One gradient step once ``batch_steps`` steps have their weights (else ``{}``)."""
        if len(self._ready) < self.config.batch_steps:
            return {}
        ready, self._ready = self._ready, []
        scales, self._scales = self._scales, []
        obs = torch.as_tensor(np.stack([r[0] for r in ready]), device=self.device)
        actions = torch.as_tensor(np.array([r[1] for r in ready]), device=self.device)
        weights = torch.as_tensor(np.array(scales), dtype=torch.float32, device=self.device)
        metrics = self.learn_from(obs, actions, weights)
        metrics["mean_nstep_reward"] = self.reward_sum / max(self.reward_count, 1)
        return metrics

    def weights(self, returns: torch.Tensor) -> torch.Tensor:
        """The weights arrive with the running-mean baseline already subtracted (see the class docstring)."""
        return returns

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reward_sum": self.reward_sum, "reward_count": self.reward_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.reward_sum = float(state["reward_sum"])
        self.reward_count = int(state["reward_count"])
        self._windows, self._ready, self._scales = {}, [], []


def per_sample_gradients(policy: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor,
                         weights: torch.Tensor) -> torch.Tensor:
    """The gradient of ``-log pi(a_i | s_i) * w_i`` with respect to every parameter of ``policy``, one row per
    sample: ``(n, number of parameters)``. Their mean is the gradient of the batch's policy loss (minus the
    policy-gradient estimate, without the entropy term); how much the rows scatter is the variance problem of
    chapter 9."""
    if not (len(obs) == len(actions) == len(weights)):
        raise ValueError(f"obs, actions and weights need one row per sample, got {len(obs)}, {len(actions)} "
                         f"and {len(weights)}")
    params = {name: p.detach() for name, p in policy.named_parameters()}

    def one(p, o, taken, w):  # taken: the one-hot action (indexing by a batched tensor is not vmap-able)
        logits = functional_call(policy, p, (o.unsqueeze(0),))
        return -(F.log_softmax(logits, dim=1)[0] * taken).sum() * w

    with torch.no_grad():
        n_actions = policy(obs[:1]).shape[1]
    taken = F.one_hot(actions.long(), n_actions).to(obs.dtype)
    grads = vmap(grad(one), in_dims=(None, 0, 0, 0))(params, obs, taken, weights)
    return torch.cat([g.reshape(len(obs), -1) for g in grads.values()], dim=1)


def gradient_variance(grads: torch.Tensor) -> dict[str, float]:
    """How noisy single-sample gradient estimates are, from the rows of :func:`per_sample_gradients`:

    - ``variance``: the total variance, ``sum_j Var_i(g_ij)`` (the trace of the covariance), the expected
      squared distance of one sample's gradient from the mean gradient;
    - ``mean_sq_norm``: ``|mean_i g_i|^2``, the squared length of the signal;
    - ``snr``: their ratio, ``mean_sq_norm / variance`` (a batch of ``B`` independent samples has ``B`` times
      this signal-to-noise ratio)."""
    if grads.ndim != 2 or len(grads) < 2:
        raise ValueError(f"grads must be (n >= 2, parameters), got shape {tuple(grads.shape)}")
    g = grads.double()
    mean = g.mean(dim=0)
    variance = float(((g - mean) ** 2).sum(dim=1).mean())
    signal = float((mean ** 2).sum())
    return {"variance": variance, "mean_sq_norm": signal, "snr": signal / variance if variance > 0 else math.inf}


__all__ = ["NStepPGAgent", "NStepPGConfig", "PGConfig", "ReinforceAgent", "gradient_variance",
           "per_sample_gradients"]
