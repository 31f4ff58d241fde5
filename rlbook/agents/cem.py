"""The cross-entropy method (CEM) for discrete actions. Introduced in chapter 4 (``book/04_cem.ipynb``).

The policy is a small network that maps an observation to logits over the actions. Learning repeats:

1. play a batch of episodes with actions sampled from the softmax of the logits;
2. keep the *elite*: the episodes whose return is at or above the batch's ``percentile``;
3. fit the network to the elite episodes' (observation, action) pairs with cross-entropy loss.

What "a batch" means here. The trainer runs its vector of environments without pause, so episodes
do not start together. A batch is simply *the next* ``episodes_per_batch`` *episodes to finish*, in
the order they finish, whichever environment played them. Every episode lands in exactly one batch
and no environment step is thrown away. The price: an episode that was running when the network
was fitted was played partly by the old policy and partly by the new one. CEM only uses the
episodes to pick good behaviour to imitate, so a little staleness does no harm.

For FrozenLake the chapter adds the options of :class:`CEMConfig`: discounted returns for the elite
filter (``gamma``), elite episodes kept across batches (``keep_elite``), a strict filter (``strict``,
so that a boundary of 0 does not make every failed episode elite), one-hot observations, a larger
batch and a lower learning rate (:meth:`CEMConfig.frozenlake`). On the slippery lake the discount
favours lucky short cuts; :meth:`CEMConfig.frozenlake_slippery` makes every successful episode elite
instead, and learns a much better policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlbook.agents.base import Agent, Transition, check_state_shapes, rng_state, sample_actions, set_rng_state
from rlbook.config import AgentConfig, check_float, check_int
from rlbook.core import resolve_device
from rlbook.nets import MLP
from rlbook.rollout import EpisodeBuffer


# ---------------------------------------------------------------------- settings
@dataclass(kw_only=True)
class CEMConfig(AgentConfig):
    """Hyperparameters of the cross-entropy method (presets: :meth:`cartpole`, :meth:`frozenlake`).

    ``seed`` and ``device`` come from :class:`~rlbook.config.AgentConfig` (``device`` defaults to the CPU
    here: for networks this small it is the fastest place)."""

    device: str = "cpu"
    """Where the policy network lives (``"cpu"``: fastest for these small networks; ``"auto"``, ``"cuda"``)."""
    episodes_per_batch: int = 16
    """Finished episodes per batch; the network is fitted once per batch."""
    percentile: float = 70.0
    """The elite boundary, as the percentile of the batch's returns an episode must reach (0-100)."""
    strict: bool = False
    """Elite episodes must be strictly above the boundary (``>``) instead of at or above it (``>=``)."""
    gamma: float = 1.0
    """Discount used for the returns the elite filter ranks (1.0: plain sum of rewards)."""
    keep_elite: int = 0
    """How many elite episodes to carry into the next batch's selection (0: none, start afresh)."""
    hidden_size: int = 128
    """Units of the policy network's single hidden layer."""
    lr: float = 0.01
    """Adam learning rate."""
    fit_steps: int = 1
    """Gradient steps on the elite pairs per batch (each uses all elite pairs)."""
    one_hot: bool | None = None
    """Feed Discrete observations as one-hot vectors (``None``: yes for Discrete spaces)."""

    def validate(self) -> None:
        check_int("episodes_per_batch", self.episodes_per_batch, 1)
        check_float("percentile", self.percentile, 0.0, 100.0)
        check_float("gamma", self.gamma, 0.0, 1.0, low_open=True)
        check_int("keep_elite", self.keep_elite, 0)
        check_int("hidden_size", self.hidden_size, 1)
        check_int("fit_steps", self.fit_steps, 1)
        check_float("lr", self.lr, 0.0, low_open=True)

    @classmethod
    def cartpole(cls, **overrides) -> CEMConfig:
        """The chapter's CartPole settings: 16 episodes per batch, 70th percentile, 128 units, lr 0.01."""
        return cls(episodes_per_batch=16, percentile=70.0, hidden_size=128, lr=0.01).replace(**overrides)

    @classmethod
    def frozenlake(cls, **overrides) -> CEMConfig:
        """FrozenLake with all the fixes: 100 episodes per batch, 30th percentile of returns discounted
        with gamma 0.9, strictly above it, up to 500 elite episodes kept, lr 0.001, one-hot states."""
        base = cls(episodes_per_batch=100, percentile=30.0, strict=True, gamma=0.9, keep_elite=500,
                   hidden_size=128, lr=0.001, one_hot=True)
        return base.replace(**overrides)

    @classmethod
    def frozenlake_slippery(cls, **overrides) -> CEMConfig:
        """Our settings for the slippery lake: every successful episode is elite (no discount, the
        boundary sits at the failures' return of 0, strictly above it), the last 500 kept, lr 0.001."""
        base = cls(episodes_per_batch=100, percentile=0.0, strict=True, gamma=1.0, keep_elite=500,
                   hidden_size=128, lr=0.001, one_hot=True)
        return base.replace(**overrides)


# ---------------------------------------------------------------------- the pieces the chapter shows
def select_elite(returns: np.ndarray, percentile: float, strict: bool = False) -> tuple[np.ndarray, float]:
    """Which episodes are elite.

    Args:
        returns: one return per episode, shape ``(m,)``.
        percentile: the boundary is this percentile of ``returns`` (NumPy's linear interpolation).
        strict: keep returns ``> boundary`` instead of ``>= boundary``.

    Returns:
        ``(mask, boundary)``: a boolean mask of shape ``(m,)`` and the boundary as a float.
    """
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 1 or len(returns) == 0:
        raise ValueError(f"returns must be a non-empty 1-d array, got shape {returns.shape}")
    boundary = float(np.percentile(returns, percentile))
    mask = returns > boundary if strict else returns >= boundary
    return mask, boundary


def discounted_return(rewards: np.ndarray, gamma: float) -> float:
    """``sum_t gamma**t * rewards[t]`` for one episode's rewards, shape ``(T,)``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    return float(rewards @ gamma ** np.arange(len(rewards)))


def one_hot(states: np.ndarray, n: int) -> np.ndarray:
    """One-hot rows for integer states: shape ``(m,)`` -> ``(m, n)`` float32."""
    states = np.asarray(states)
    if states.size and (states.min() < 0 or states.max() >= n):
        raise ValueError(f"states must lie in [0, {n}), got values from {states.min()} to {states.max()}")
    out = np.zeros((len(states), n), dtype=np.float32)
    out[np.arange(len(states)), states] = 1.0
    return out


@dataclass
class Episode:
    """One finished episode as the elite filter sees it.

    Attributes:
        obs: encoded observations (network inputs), shape ``(T, d)`` float32.
        actions: actions taken, shape ``(T,)`` int64.
        total_reward: the undiscounted return.
        score: the return the elite filter ranks (discounted with ``gamma``).
    """

    obs: np.ndarray
    actions: np.ndarray
    total_reward: float
    score: float


def policy_net(in_features: int, hidden: int, n_actions: int) -> MLP:
    """The policy: one hidden ReLU layer, logits over actions; ``(n, in_features)`` -> ``(n, n_actions)``."""
    return MLP(in_features, n_actions, hidden=(hidden,))


# ---------------------------------------------------------------------- the agent
class CEMAgent(Agent):
    """The cross-entropy method: imitate the best episodes of each batch.

    Args:
        observation_space: Box (flattened) or Discrete (one-hot) observations of one environment.
        action_space: a Discrete action space; a Box raises ``TypeError``.
        config: the hyperparameters (default ``CEMConfig()``, the CartPole settings); keyword ``overrides``
            replace its fields (``seed``, ``device``, ...).

    ``update()`` returns ``{}`` until a batch of ``episodes_per_batch`` finished episodes is
    complete; then it fits the network and returns ``batch``, ``reward_mean`` (undiscounted mean of
    the batch), ``reward_bound`` (the elite boundary on the filter's returns), ``elite_episodes``,
    ``elite_pairs`` and ``loss`` (cross-entropy before the fit). ``history`` keeps those dicts.

    Acting runs one forward pass per vector step (in NumPy on the CPU). The fit runs in PyTorch; for
    networks this small ``torch.set_num_threads(1)`` is faster, several times so on a busy CPU.
    """

    config_class = CEMConfig
    supported_observation_spaces = (gym.spaces.Box, gym.spaces.Discrete)
    supported_action_spaces = (gym.spaces.Discrete,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: CEMConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        config = self.config
        self.device = resolve_device(config.device)
        self.n_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        discrete_obs = isinstance(observation_space, gym.spaces.Discrete)
        self.one_hot = discrete_obs if config.one_hot is None else bool(config.one_hot)
        if self.one_hot and not discrete_obs:
            raise TypeError(f"one_hot=True needs a Discrete observation space, got {observation_space}")
        self.in_features = int(observation_space.n) if self.one_hot else int(np.prod(observation_space.shape))

        # The network is seeded from the config without touching torch's global generator.
        with torch.random.fork_rng(devices=[]):
            if config.seed is not None:
                torch.manual_seed(config.seed)
            self.net = policy_net(self.in_features, config.hidden_size, self.n_actions).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        # NumPy views of (weight.T, bias) per linear layer. They share memory with the parameters,
        # which Adam and load_state_dict update in place, so they always see the current weights.
        self._numpy_layers = None
        if self.device.type == "cpu" and all(isinstance(m, (nn.Linear, nn.ReLU)) for m in self.net.torso):
            self._numpy_layers = [(m.weight.detach().numpy().T, m.bias.detach().numpy())
                                  for m in self.net.modules() if isinstance(m, nn.Linear)]
        self.rng = np.random.default_rng(config.seed)

        self.num_batches = 0
        self.num_episodes = 0
        self.finished: list[Episode] = []  # finished episodes waiting for the next batch
        self.kept_elite: list[Episode] = []  # elite carried across batches (keep_elite > 0)
        self.history: list[dict[str, float]] = []
        #: The running episode of each environment (:class:`~rlbook.rollout.EpisodeBuffer`, encoded observations).
        self.episodes = EpisodeBuffer((self.in_features,), np.float32, capacity=64)

    # ------------------------------------------------------------------ acting
    def encode(self, obs: np.ndarray) -> np.ndarray:
        """Network inputs for a batch of observations: ``(n, *obs_shape)`` -> ``(n, in_features)`` float32."""
        obs = np.asarray(obs)
        if self.one_hot:
            return one_hot(obs.reshape(len(obs)).astype(np.int64) - int(self.observation_space.start),
                           self.in_features)
        return obs.reshape(len(obs), self.in_features).astype(np.float32, copy=False)

    def probabilities(self, obs: np.ndarray) -> np.ndarray:
        """The policy's action probabilities for raw observations, ``(n, *obs_shape)`` -> ``(n, n_actions)``."""
        x = self.encode(obs)
        if self._numpy_layers is None:
            with torch.inference_mode():
                return torch.softmax(self.net(torch.as_tensor(x, device=self.device)), dim=1).cpu().numpy()
        # On the CPU the same forward pass runs in NumPy on views of the network's weights: for a
        # (16, 4) batch torch's per-call overhead costs several times the arithmetic.
        *hidden, (weight_t, bias) = self._numpy_layers
        for w_t, b in hidden:
            x = np.maximum(x @ w_t + b, 0.0)
        x = x @ weight_t + bias
        x -= x.max(axis=1, keepdims=True)
        np.exp(x, out=x)
        return x / x.sum(axis=1, keepdims=True)

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Sample from the softmax policy (``explore``) or take its most likely action; ``(n,)`` int64."""
        return sample_actions(self.probabilities(obs), self.rng, explore) + self.action_start

    # ------------------------------------------------------------------ experience
    def observe(self, transition: Transition) -> None:
        """Append each row to its environment's running episode; finished episodes join the batch."""
        super().observe(transition)
        actions = np.asarray(transition.action).reshape(len(transition)) - self.action_start
        ended = self.episodes.add(self.encode(transition.obs), actions, transition.reward, transition.terminated,
                                  transition.truncated, transition.env_ids)
        gamma = self.config.gamma
        for e in ended:
            score = discounted_return(e.rewards, gamma) if gamma < 1.0 else e.total_reward
            self.finished.append(Episode(obs=e.obs, actions=e.actions, total_reward=e.total_reward, score=score))
        self.num_episodes += len(ended)

    def discard_running_episodes(self) -> None:
        """Forget the episodes still being played (:meth:`CEMAgent.begin_run` does this before it
        resets the environments, else their first steps would extend old episodes)."""
        self.episodes.discard_running()

    def begin_run(self, num_envs: int) -> None:
        """Start of a training run: drop the episodes of the previous run's environments."""
        self.discard_running_episodes()

    # ------------------------------------------------------------------ learning
    def update(self) -> dict[str, float]:
        """Fit the policy once a batch of finished episodes is complete (else return ``{}``)."""
        m = self.config.episodes_per_batch
        if len(self.finished) < m:
            return {}
        batch, self.finished = self.finished[:m], self.finished[m:]
        return self.learn_from_batch(batch)

    def learn_from_batch(self, batch: list[Episode]) -> dict[str, float]:
        """One CEM iteration on a list of finished episodes: select the elite, fit, report metrics."""
        cfg = self.config
        candidates = self.kept_elite + batch
        mask, boundary = select_elite(np.array([e.score for e in candidates]), cfg.percentile, cfg.strict)
        elite = [e for e, keep in zip(candidates, mask) if keep]
        if cfg.keep_elite:
            self.kept_elite = elite[-cfg.keep_elite:]
        loss = float("nan")
        if elite:
            obs = torch.as_tensor(np.concatenate([e.obs for e in elite]), device=self.device)
            actions = torch.as_tensor(np.concatenate([e.actions for e in elite]), device=self.device)
            loss = self.fit(obs, actions)
        self.num_batches += 1
        metrics = {
            "batch": float(self.num_batches),
            "reward_mean": float(np.mean([e.total_reward for e in batch])),
            "reward_bound": boundary,
            "elite_episodes": float(len(elite)),
            "elite_pairs": float(sum(len(e.actions) for e in elite)),
            "loss": loss,
        }
        self.history.append(metrics)
        return metrics

    def fit(self, obs: torch.Tensor, actions: torch.Tensor) -> float:
        """``fit_steps`` Adam steps of cross-entropy between the policy and the elite actions.

        Args:
            obs: encoded elite observations, shape ``(k, in_features)``.
            actions: the actions taken there, shape ``(k,)`` (0-based).

        Returns the loss before the first step."""
        first = None
        for _ in range(self.config.fit_steps):
            loss = nn.functional.cross_entropy(self.net(obs), actions)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if first is None:
                first = loss.item()  # once per batch, not per step
        return first

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer, random generator, counters, kept elite and finished episodes waiting
        for the next batch. Episodes still running are not saved (the trainer restarts them)."""
        return {
            **super().state_dict(),
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.rng),
            "num_batches": self.num_batches,
            "num_episodes": self.num_episodes,
            "kept_elite": [_episode_state(e) for e in self.kept_elite],
            "finished": [_episode_state(e) for e in self.finished],
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_shapes(self.net, state["net"], "network")
        super().load_state_dict(state)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])
        self.num_batches = int(state["num_batches"])
        self.num_episodes = int(state["num_episodes"])
        self.kept_elite = [_episode_from_state(s) for s in state["kept_elite"]]
        self.finished = [_episode_from_state(s) for s in state["finished"]]
        self.history = [dict(h) for h in state["history"]]
        self.discard_running_episodes()  # running episodes are not in the checkpoint


def _episode_state(e: Episode) -> dict[str, Any]:
    return {"obs": torch.from_numpy(e.obs), "actions": torch.from_numpy(e.actions),
            "total_reward": e.total_reward, "score": e.score}


def _episode_from_state(s: dict[str, Any]) -> Episode:
    return Episode(obs=s["obs"].numpy(), actions=s["actions"].numpy(), total_reward=float(s["total_reward"]),
                   score=float(s["score"]))
