"""Deep Q-Networks (DQN): Q-learning with a neural network, experience replay and a target network.

Defined in chapter 6; chapter 7's extensions are switches on this one agent, and any combination of them works.
The pieces, top to bottom:

* :class:`DQNConfig` -- every hyperparameter, with presets (CartPole, Pong, Rainbow).
* :func:`build_q_network` -- the network factory: an MLP or the Nature CNN, with noisy layers, a dueling head
  and a categorical (C51) head as switches.
* :class:`EpsilonGreedy` and :class:`NoisyExploration` -- how the agent explores (a strategy it holds).
* :func:`categorical_projection` -- C51's projection of a shifted and shrunk return distribution back onto
  the fixed support.
* :class:`DQNAgent` -- acting (one forward pass per vector step), storing (:class:`~rlbook.replay.ReplayBuffer`
  or :class:`~rlbook.replay.PrioritizedReplayBuffer`, through :class:`~rlbook.replay.NStepFolder` when
  ``n_step > 1``), learning and saving. The learning step keeps per-sample numbers all the way: sample (with
  importance weights when prioritized) -> targets (:meth:`DQNAgent.compute_targets`, the one place the Bellman
  target is computed: plain, double, n-step; or :meth:`DQNAgent.compute_target_distribution` for C51) ->
  per-sample loss -> weighted mean -> gradient step -> new priorities from the per-sample TD errors.
* :func:`play` -- load a checkpoint and record an episode.

The one-step target for a transition ``(s, a, r, s')`` is ``y = r + gamma * max_a' Q_target(s', a')``,
with no bootstrap when the episode terminated at ``s'`` (but bootstrapping when it was only truncated by
a time limit). n-step rows fold ``m`` rewards and bootstrap with ``gamma**m``; Double DQN picks ``a'``
with the online network and evaluates it with the target network.
"""

from __future__ import annotations

import contextlib
import functools
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
from rlbook.nets import MLP, Conv1dNet, NatureCNN, NoisyLinear, QHead, clip_grad_norm, make_adam, noisy_layers
from rlbook.replay import NStepFolder, PrioritizedReplayBuffer, ReplayBatch, ReplayBuffer
from rlbook.schedules import LinearSchedule

NETWORKS = ("mlp", "nature_cnn", "conv1d")


@dataclass(kw_only=True)
class DQNConfig(AgentConfig):
    """Hyperparameters of :class:`DQNAgent` (defaults: the Pong settings of the Nature paper's lineage).

    ``seed`` and ``device`` come from :class:`~rlbook.config.AgentConfig`; every field is checked when the
    config is made (types from the annotations, ranges in :meth:`~rlbook.config.AgentConfig.validate`)."""

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
    network: Literal["mlp", "nature_cnn", "conv1d"] = "mlp"
    """Q-network kind: ``"mlp"`` for vector observations, ``"nature_cnn"`` for stacked 84x84 frames,
    ``"conv1d"`` for ``(channels, length)`` series (:class:`~rlbook.nets.Conv1dNet`, chapter 8)."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the MLP, and of the fully connected layers after the convolutions of
    ``"conv1d"`` (ignored by the Nature CNN)."""
    conv_channels: tuple[int, ...] = (64, 64)
    """Output channels of each convolution of ``network="conv1d"`` (kernel ``conv_kernel``)."""
    conv_kernel: int = 5
    """Kernel size of ``network="conv1d"``'s convolutions (odd)."""
    dueling: bool = False
    """Dueling head: the Q-values are a state value plus advantages centred on their mean over actions."""
    noisy: bool = False
    """Noisy networks: the fully connected layers carry learned noise, and the agent explores by that noise
    instead of by random actions (the epsilon settings are then unused). The layer that reads the observation
    stays plain: the Nature CNN's convolutions, and, in the same spirit, the first layer of an MLP."""
    noisy_factorized: bool = True
    """Factorized Gaussian noise (``True``, sigma0 0.4 by default) or independent noise per weight (``False``,
    sigma0 0.017)."""
    noisy_sigma0: float | None = None
    """Initial noise scale of the noisy layers (``None``: 0.4 factorized, 0.017 independent)."""
    prioritized: bool = False
    """Prioritized replay: rows are drawn in proportion to ``(|TD error| + eps) ** priority_alpha``."""
    priority_alpha: float = 0.6
    """How strongly priorities shape the draw (0: uniform)."""
    priority_beta_start: float = 0.4
    """Importance-sampling exponent at the first step; it rises linearly to 1."""
    priority_beta_steps: int = 100_000
    """Environment steps over which beta rises from ``priority_beta_start`` to 1."""
    priority_eps: float = 1e-6
    """Added to every ``|TD error|`` so that no row's priority is 0."""
    categorical: bool = False
    """Categorical DQN (C51): learn a distribution of returns on ``atoms`` fixed values in ``[v_min, v_max]``,
    with a cross-entropy loss, instead of its mean."""
    atoms: int = 51
    """Number of support points of the return distribution."""
    v_min: float = -10.0
    """Smallest support value."""
    v_max: float = 10.0
    """Largest support value."""

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
        for i, c in enumerate(self.conv_channels):
            check_int(f"conv_channels[{i}]", c, 1)
        if not self.conv_channels:
            raise ValueError("conv_channels must name at least one convolution")
        check_int("conv_kernel", self.conv_kernel, 1)
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (the padding keeps the length), got {self.conv_kernel}")
        if self.noisy_sigma0 is not None:
            check_float("noisy_sigma0", self.noisy_sigma0, 0.0, low_open=True)
        check_float("priority_alpha", self.priority_alpha, 0.0)
        check_float("priority_beta_start", self.priority_beta_start, 0.0, 1.0)
        check_int("priority_beta_steps", self.priority_beta_steps, 0)
        check_float("priority_eps", self.priority_eps, 0.0, low_open=True)
        check_int("atoms", self.atoms, 2)
        if not self.v_min < self.v_max:
            raise ValueError(f"v_min ({self.v_min:g}) must be smaller than v_max ({self.v_max:g})")

    @classmethod
    def cartpole(cls, **overrides) -> DQNConfig:
        """Chapter 6's plain DQN for CartPole-v1 (one-step targets, no Double DQN), tuned for a CPU with 8 copies
        of the environment in one NumPy vector env.

        Gradient steps are the cost, so learning comes in rounds: 32 steps on minibatches of 256 every 256
        environment steps (one gradient step per 8 env steps), Adam lr 1e-3, the target network copied every 64
        gradient steps, epsilon 1 -> 0.01 over 10,000 steps, Huber loss, gradients clipped at norm 10. Tuned on
        seeds the benchmark never uses (100-104); ``bench/dqn_cartpole.py`` measures it."""
        base = cls(gamma=0.99, lr=1e-3, batch_size=256, buffer_size=100_000, learning_starts=1_000,
                   train_freq=256, gradient_steps=32, target_update_interval=64, tau=1.0,
                   epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=10_000, loss="huber",
                   max_grad_norm=10.0, n_step=1, double=False, network="mlp", hidden=(128, 128))
        return base.replace(**overrides)

    @classmethod
    def cartpole_few_steps(cls, **overrides) -> DQNConfig:
        """The CartPole-v1 configuration that needed the fewest environment steps in our search (chapters 6-7):
        chapter 7's 3-step returns, Double DQN and a dueling head on top of :meth:`cartpole`, with one gradient
        step per environment step (4 gradient steps on minibatches of 128 every 4 env steps, so 8 per step of the
        8-environment vector), the target network copied every 250 gradient steps, epsilon 1 -> 0.01 over 5,000
        env steps and learning from env step 500.

        It is not chapter 6's DQN: the extensions are explained in chapter 7. Fewer steps are not fewer seconds:
        it takes eight times as many gradient steps per environment step as :meth:`cartpole`, and on a CPU the
        gradient steps are the cost (``bench/dqn_step_cost.py``). Chosen on tuning seeds 100-102
        (``bench/dqn_cartpole_tuning.py``); ``bench/dqn_cartpole.py`` measures it on seeds 0-9."""
        base = cls.cartpole(n_step=3, double=True, dueling=True, batch_size=128, train_freq=4, gradient_steps=4,
                            epsilon_decay_steps=5_000, learning_starts=500, target_update_interval=250)
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

    @classmethod
    def stocks(cls, **overrides) -> DQNConfig:
        """Chapter 8's trader: a dueling Double DQN with 2-step returns (the old text's choice), trained in
        chapter 6's CPU rhythm (32 gradient steps on minibatches of 256 every 256 environment steps, Adam lr
        1e-3, target copied every 64 gradient steps), gamma 0.99, epsilon 1 -> 0.1 over 50,000 steps (the old
        text's final 0.1: the market is noisy and the agent keeps trying), learning from step 2,000. An MLP
        with two hidden layers of 128 for the flat window; ``network="conv1d"`` for the ``(5, bars)`` layout:
        two convolutions of 32 channels, kernel 5, then 128 units, and 8 gradient steps per round instead of 32
        (on a CPU its gradient step costs about 30 times the MLP's). ``bench/stocks.py`` measures it."""
        base = cls(gamma=0.99, lr=1e-3, batch_size=256, buffer_size=100_000, learning_starts=2_000,
                   train_freq=256, gradient_steps=32, target_update_interval=64, tau=1.0, epsilon_start=1.0,
                   epsilon_end=0.1, epsilon_decay_steps=50_000, loss="huber", max_grad_norm=10.0, n_step=2,
                   double=True, dueling=True, network="mlp", hidden=(128, 128))
        if overrides.get("network") == "conv1d":
            base = base.replace(hidden=(128,), conv_channels=(32, 32), gradient_steps=8)
        return base.replace(**overrides)

    @classmethod
    def rainbow(cls, **overrides) -> DQNConfig:
        """All of chapter 7 at once on the Pong settings: 3-step returns, Double DQN, a dueling head, noisy
        networks (factorized, sigma0 0.4; no epsilon), prioritized replay (alpha 0.6, beta 0.4 -> 1 over 100k
        steps) and C51 (51 atoms on [-10, 10]), Adam lr 1e-4 as in the old text's Rainbow."""
        base = cls.pong(n_step=3, double=True, dueling=True, noisy=True, prioritized=True, categorical=True,
                        epsilon_start=0.0, epsilon_end=0.0, epsilon_decay_steps=0, loss="huber")
        return base.replace(**overrides)


def build_q_network(config: DQNConfig, observation_space: gym.spaces.Box, n_actions: int,
                    generator: torch.Generator | None = None) -> nn.Module:
    """The Q-network for ``config``: observations ``(n, *obs_shape)`` to Q-values ``(n, n_actions)``, or to logits
    ``(n, n_actions, atoms)`` of the return distribution when ``config.categorical``.

    ``config.network`` picks the torso (an MLP, the Nature CNN or 1-D convolutions); ``noisy`` makes the fully
    connected layers :class:`~rlbook.nets.NoisyLinear` layers drawing from ``generator``, except the MLP's first,
    which reads the observation (as the Nature CNN's convolutions do, it stays plain); ``dueling`` and
    ``categorical`` replace the plain linear head by a :class:`~rlbook.nets.QHead`. Raises ``TypeError`` when the
    network cannot take these observations (an MLP needs flat vectors, the Nature CNN ``(channels, 84, 84)``-like
    frame stacks, ``conv1d`` ``(channels, length)`` series)."""
    shape = observation_space.shape
    linear = nn.Linear
    if config.noisy:
        linear = functools.partial(NoisyLinear, factorized=config.noisy_factorized, sigma0=config.noisy_sigma0,
                                   generator=generator)
    if config.network == "mlp":
        if len(shape) != 1:
            raise TypeError(f"network='mlp' needs flat (1-D) Box observations, got shape {shape}; "
                            "use network='nature_cnn' for stacked frames (channels, height, width)")
        net = MLP(shape[0], n_actions, hidden=config.hidden, linear=linear, input_linear=nn.Linear)
    elif config.network == "nature_cnn":
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] < 36:
            raise TypeError(f"network='nature_cnn' needs square frame stacks (channels, size, size) with "
                            f"size >= 36, got shape {shape}; use network='mlp' for flat vectors")
        net = NatureCNN(in_channels=shape[0], n_actions=n_actions, frame_size=shape[1], linear=linear)
    elif config.network == "conv1d":
        if len(shape) != 2:
            raise TypeError(f"network='conv1d' needs (channels, length) Box observations, got shape {shape}; "
                            "use network='mlp' for flat vectors")
        net = Conv1dNet(shape[0], shape[1], n_actions, channels=config.conv_channels, kernel=config.conv_kernel,
                        hidden=config.hidden, linear=linear)
    else:
        raise ValueError(f"network must be one of {NETWORKS}, got {config.network!r}")
    if config.dueling or config.categorical:
        net.head = QHead(net.features_dim, n_actions, dueling=config.dueling,
                         atoms=config.atoms if config.categorical else 1, linear=linear)
    return net


def categorical_projection(probs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """Project the distribution of ``reward + discount * Z`` back onto ``support`` (C51, chapter 7).

    ``Z`` takes the value ``support[j]`` with probability ``probs[i, j]``. Shifted by the reward and shrunk by
    the discount, its atoms ``reward + discount * support[j]`` fall between the fixed support points (or
    beyond its ends, where they are clipped). Each atom's probability is split between the two neighbouring
    support points in proportion to how close it lands to each; an atom that lands exactly on a point keeps
    all of it there. ``discount`` is ``gamma ** m`` times ``1 - terminated``: a terminal row is a single atom
    at its reward.

    Args:
        probs: ``(B, K)`` probabilities of the next state's distribution (rows sum to 1).
        reward: ``(B,)`` (n-step) rewards.
        discount: ``(B,)`` bootstrap discounts.
        support: ``(K,)`` evenly spaced support values, ``v_min`` to ``v_max``.

    Returns ``(B, K)`` probabilities on ``support``. Vectorised, on the device of the inputs.
    """
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (len(support) - 1)
    atoms = (reward[:, None] + discount[:, None] * support[None, :]).clamp(v_min, v_max)
    position = (atoms - v_min) / delta  # fractional index of each shifted atom
    lower = position.floor().clamp(0, len(support) - 1)
    upper = position.ceil().clamp(0, len(support) - 1)
    weight_upper = position - lower  # 0 when the atom sits on a support point: all of it goes to `lower`
    projected = torch.zeros_like(probs)
    projected.scatter_add_(1, lower.long(), probs * (1.0 - weight_upper))
    projected.scatter_add_(1, upper.long(), probs * weight_upper)
    return projected


class EpsilonGreedy:
    """Explore with random actions: with probability ``epsilon`` (a schedule over environment steps) a uniformly
    random action, otherwise the greedy one. The forward pass is skipped when every action is random."""

    def __init__(self, schedule: LinearSchedule):
        self.schedule = schedule

    def actions(self, agent: DQNAgent, obs: np.ndarray, explore: bool) -> np.ndarray:
        n = len(obs)
        if explore:
            random_rows = agent.rng.random(n) < self.schedule.value_at(agent.num_steps)
            random_actions = agent.rng.integers(agent.n_actions, size=n)
            if random_rows.all():
                return random_actions
        greedy = agent.greedy_actions(obs)
        return np.where(random_rows, random_actions, greedy) if explore else greedy


class NoisyExploration:
    """Explore by the noise in the network's weights (noisy networks): act greedily with freshly drawn noise,
    or, for evaluation, with the mean weights (no noise at all)."""

    def actions(self, agent: DQNAgent, obs: np.ndarray, explore: bool) -> np.ndarray:
        if explore:
            return agent.greedy_actions(obs)
        with evaluation_mode(agent.q_net):
            return agent.greedy_actions(obs)


@contextlib.contextmanager
def evaluation_mode(module: nn.Module):
    """``module.eval()`` for a block (noisy layers use their mean weights), then back to training mode."""
    module.eval()
    try:
        yield module
    finally:
        module.train()


class DQNAgent(Agent):
    """DQN for discrete actions (chapter 6), with chapter 7's extensions as switches: n-step returns, Double
    DQN, a dueling head, noisy networks, prioritized replay and categorical (C51) values.

    Args:
        observation_space: a ``Box`` (vectors for ``network="mlp"``, uint8 frame stacks for ``"nature_cnn"``).
        action_space: a ``Discrete`` space.
        config: a :class:`DQNConfig` (default: ``DQNConfig()``); keyword ``overrides`` replace its fields.

    Learning happens inside :meth:`update`, which the trainer calls after every :meth:`observe`: once
    ``learning_starts`` steps are stored, every ``train_freq`` environment steps it takes ``gradient_steps``
    gradient steps, each on a fresh minibatch (uniform replay draws them all at once; prioritized replay draws
    each after the previous step has updated the priorities). Metrics come back as 0-dim tensors (no device
    sync per step).

    The checkpoint (:meth:`state_dict`) holds the online and target networks, the optimizer, the step
    counters and the random generators -- but not the replay buffer (hundreds of MB for Atari). After loading
    into an agent whose buffer is empty, the agent collects ``learning_starts`` fresh steps before it learns
    again.
    """

    config_class = DQNConfig
    supported_observation_spaces = (gym.spaces.Box,)
    supported_action_spaces = (gym.spaces.Discrete,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: DQNConfig | None = None,
                 **overrides: Any):
        super().__init__(observation_space, action_space, config, **overrides)
        c: DQNConfig = self.config
        self.n_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        self.device = resolve_device(c.device)
        self.rng = np.random.default_rng(c.seed)
        # The noisy layers draw from their own generator, so that a seeded run repeats exactly.
        self.noise_generator = None
        if c.noisy:
            self.noise_generator = torch.Generator(device=self.device)
            self.noise_generator.manual_seed(int(np.random.default_rng(c.seed).integers(2**62)))
        with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching global state
            if c.seed is not None:
                torch.manual_seed(c.seed)
            self.q_net = build_q_network(c, observation_space, self.n_actions, self.noise_generator).to(self.device)
        self.target_net = build_q_network(c, observation_space, self.n_actions, self.noise_generator).to(self.device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        #: The C51 support (``atoms`` values from ``v_min`` to ``v_max``), or ``None``.
        self.support = (torch.linspace(c.v_min, c.v_max, c.atoms, device=self.device) if c.categorical else None)
        self._parameters = list(self.q_net.parameters())
        self.optimizer = make_adam(self._parameters, c.lr)
        self.epsilon_schedule = LinearSchedule(c.epsilon_start, c.epsilon_end, c.epsilon_decay_steps)
        self.beta_schedule = LinearSchedule(c.priority_beta_start, 1.0, c.priority_beta_steps)
        #: How the agent explores: :class:`EpsilonGreedy` or, for noisy networks, :class:`NoisyExploration`.
        self.exploration = NoisyExploration() if c.noisy else EpsilonGreedy(self.epsilon_schedule)
        #: The replay buffer, made at the first :meth:`observe` (it needs the number of environments).
        self.buffer: ReplayBuffer | None = None
        self.folder = NStepFolder(c.n_step, c.gamma) if c.n_step > 1 else None
        #: Gradient steps taken so far.
        self.gradient_steps_done = 0
        self._next_train_at = c.learning_starts
        self._rows_stored = 0  # rows put in this agent's buffer (the buffer is not checkpointed)
        self._losses_finite = torch.ones((), dtype=torch.bool, device=self.device)  # all losses so far finite

    def build_buffer(self, num_envs: int) -> ReplayBuffer:
        """The replay buffer for this config: uniform, or prioritized when ``config.prioritized``."""
        space, c = self.observation_space, self.config
        if c.prioritized:
            return PrioritizedReplayBuffer(c.buffer_size, space.shape, space.dtype, num_envs=num_envs,
                                           n_step=c.n_step, alpha=c.priority_alpha, eps=c.priority_eps)
        return ReplayBuffer(c.buffer_size, space.shape, space.dtype, num_envs=num_envs, n_step=c.n_step)

    # ------------------------------------------------------------------ acting
    @property
    def epsilon(self) -> float:
        """The exploration rate at the current step (0 with noisy networks, which explore by their noise)."""
        return 0.0 if self.config.noisy else self.epsilon_schedule.value_at(self.num_steps)

    @property
    def beta(self) -> float:
        """Prioritized replay's importance-sampling exponent at the current step."""
        return self.beta_schedule.value_at(self.num_steps)

    def q_values(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Online Q-values ``(n, n_actions)`` for observations ``(n, *obs_shape)``, without gradients (the
        expected values of the return distributions with C51)."""
        with torch.no_grad():
            out = self.q_net(torch.as_tensor(obs, device=self.device))
            return out if self.support is None else torch.softmax(out, dim=-1) @ self.support

    def greedy_actions(self, obs: np.ndarray) -> np.ndarray:
        """``argmax_a Q(s, a)`` for a batch of observations, 0-based ``(n,)``."""
        return self.q_values(obs).argmax(dim=1).cpu().numpy()

    def act_batch(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Actions ``(n,)`` for observations ``(n, *obs_shape)``, chosen by the agent's exploration strategy
        (greedy when ``explore=False``): one forward pass for the whole batch."""
        return self.exploration.actions(self, obs, explore) + self.action_start

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

        Returns ``{}`` or ``{"loss", "q_mean"}`` (0-dim tensors, means over the round) with ``"epsilon"`` (and
        ``"beta"`` for prioritized replay)."""
        if self.num_steps < self._next_train_at or self._rows_stored == 0:
            return {}
        rounds = 1 + (self.num_steps - self._next_train_at) // self.config.train_freq
        self._next_train_at += rounds * self.config.train_freq
        n_steps = rounds * self.config.gradient_steps
        batch_size = self.config.batch_size
        loss_sum = torch.zeros((), device=self.device)
        q_sum = torch.zeros((), device=self.device)
        if self.config.prioritized:
            beta = self.beta
            for _ in range(n_steps):  # priorities change after every step: draw each minibatch afresh
                batch = self.buffer.sample(batch_size, self.rng, beta=beta)
                loss, q_taken, td_error = self.gradient_step(self._to_device(batch))
                self.buffer.update_priorities(batch.indices, td_error.cpu().numpy())
                loss_sum += loss
                q_sum += q_taken.mean()
        else:
            tensors = self._to_device(self.buffer.sample((n_steps, batch_size), self.rng))
            for i in range(n_steps):
                loss, q_taken, _ = self.gradient_step({k: v[i] for k, v in tensors.items()})
                loss_sum += loss
                q_sum += q_taken.mean()
        self._losses_finite &= torch.isfinite(loss_sum)  # on the device: no sync until someone asks
        metrics = {"loss": loss_sum / n_steps, "q_mean": q_sum / n_steps, "epsilon": self.epsilon}
        if self.config.prioritized:
            metrics["beta"] = beta
        return metrics

    def _to_device(self, batch: ReplayBatch) -> dict[str, torch.Tensor]:
        """The sampled arrays as tensors on the agent's device (one transfer per array). ``discount`` is
        ``gamma ** m`` for a row that folded ``m`` rewards: ``gamma`` for every one-step row."""
        device = self.device
        discount = (self.config.gamma ** batch.steps).astype(np.float32)
        tensors = {
            "obs": torch.as_tensor(batch.obs, device=device),
            "action": torch.as_tensor(batch.action, device=device),
            "reward": torch.as_tensor(batch.reward, device=device),
            "next_obs": torch.as_tensor(batch.next_obs, device=device),
            "terminated": torch.as_tensor(batch.terminated, device=device),
            "discount": torch.as_tensor(discount, device=device),
        }
        if batch.weights is not None:
            tensors["weights"] = torch.as_tensor(batch.weights, device=device)
        return tensors

    def compute_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Bellman targets ``(B,)``: ``reward + discount * (1 - terminated) * Q_target(next_obs, a')``.

        ``a'`` maximises the target network (plain DQN) or the online network (Double DQN). For the one-step
        rows of plain DQN ``reward`` is ``r`` and ``discount`` is ``gamma``; n-step rows fold ``m`` rewards and
        bootstrap with ``gamma**m``. Truncated rows bootstrap like any other."""
        with torch.no_grad():
            next_q_target = self.target_net(batch["next_obs"])
            if self.config.double:
                next_action = self.q_net(batch["next_obs"]).argmax(dim=1, keepdim=True)
                next_value = next_q_target.gather(1, next_action).squeeze(1)
            else:
                next_value = next_q_target.max(dim=1).values
            not_terminal = (~batch["terminated"]).to(next_value.dtype)
            return batch["reward"] + batch["discount"] * not_terminal * next_value

    def compute_target_distribution(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """C51's target ``(B, atoms)``: the target network's distribution for the next state's action ``a'``
        (the one with the largest expected value, under the online network with Double DQN), shifted by the
        reward, shrunk by ``discount * (1 - terminated)`` and projected onto the support."""
        with torch.no_grad():
            next_probs = torch.softmax(self.target_net(batch["next_obs"]), dim=-1)  # (B, A, K)
            if self.config.double:
                online = torch.softmax(self.q_net(batch["next_obs"]), dim=-1)
                next_action = (online @ self.support).argmax(dim=1)
            else:
                next_action = (next_probs @ self.support).argmax(dim=1)
            probs = next_probs[torch.arange(len(next_action), device=self.device), next_action]
            discount = batch["discount"] * (~batch["terminated"]).to(probs.dtype)
            return categorical_projection(probs, batch["reward"], discount, self.support)

    def td_losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample losses of a minibatch ``(B,)`` (Huber or squared TD error), with the Q-values of the
        actions taken and the TD errors ``target - Q(s, a)`` (both ``(B,)``, detached)."""
        targets = self.compute_targets(batch)
        q_taken = self.q_net(batch["obs"]).gather(1, batch["action"].long().unsqueeze(1)).squeeze(1)
        if self.config.loss == "huber":
            losses = F.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            losses = F.mse_loss(q_taken, targets, reduction="none")
        return losses, q_taken.detach(), (targets - q_taken).detach()

    def distribution_losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """C51's per-sample losses ``(B,)``: the cross-entropy between the projected target distribution and the
        predicted one for the action taken; with the expected Q-values of those actions and, as each row's error
        for prioritized replay, the KL divergence (the cross-entropy less the target's entropy: 0 when the two
        distributions agree)."""
        target = self.compute_target_distribution(batch)
        action = batch["action"].long()
        rows = torch.arange(len(action), device=self.device)
        log_probs = torch.log_softmax(self.q_net(batch["obs"]), dim=-1)[rows, action]
        losses = -(target * log_probs).sum(dim=1)
        entropy = -(target * target.clamp_min(1e-12).log()).sum(dim=1)
        return losses, (log_probs.exp() @ self.support).detach(), (losses - entropy).detach()

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss of a minibatch: the mean of the per-sample losses, each weighted by its importance weight
        when the rows came from prioritized replay. Returns ``(loss, q_taken, td_error)``."""
        losses, q_taken, td_error = (self.td_losses(batch) if self.support is None
                                     else self.distribution_losses(batch))
        weights = batch.get("weights")
        loss = losses.mean() if weights is None else (weights * losses).mean()
        return loss, q_taken, td_error

    def gradient_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on a minibatch of device tensors; updates the target network when due.

        Returns the detached ``(loss, q_taken, td_error)`` of :meth:`compute_loss`."""
        loss, q_taken, td_error = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            clip_grad_norm(self._parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.gradient_steps_done += 1
        if self.gradient_steps_done % self.config.target_update_interval == 0:
            self.update_target()
        return loss.detach(), q_taken, td_error

    def update_target(self) -> None:
        """Copy the online network into the target (``tau == 1``) or blend it in by ``tau`` (Polyak)."""
        with torch.no_grad():
            if self.config.tau >= 1.0:
                for target, online in zip(self.target_net.parameters(), self.q_net.parameters()):
                    target.copy_(online)
            else:
                for target, online in zip(self.target_net.parameters(), self.q_net.parameters()):
                    target.lerp_(online, self.config.tau)

    # ------------------------------------------------------------------ diagnostics
    def signal_to_noise(self) -> dict[str, float]:
        """Signal-to-noise ratio of each noisy layer of the online network (``{}`` without noisy networks)."""
        return {name: layer.signal_to_noise() for name, layer in noisy_layers(self.q_net)}

    def value_distribution(self, obs: np.ndarray) -> np.ndarray:
        """C51's predicted return distributions ``(n, n_actions, atoms)`` for observations ``(n, *obs_shape)``."""
        if self.support is None:
            raise ValueError("value_distribution needs categorical=True")
        with torch.no_grad():
            return torch.softmax(self.q_net(torch.as_tensor(obs, device=self.device)), dim=-1).cpu().numpy()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer, counters and random generators (not the replay buffer)."""
        state = {
            **super().state_dict(),
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.rng),
            "gradient_steps_done": self.gradient_steps_done,
            "next_train_at": self._next_train_at,
        }
        if self.noise_generator is not None:
            state["noise_generator"] = self.noise_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (use :meth:`~rlbook.agents.base.Agent.load`, which checks the file, the
        spaces and the config first and leaves the agent unchanged when anything fails)."""
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])
        if self.noise_generator is not None:
            self.noise_generator.set_state(state["noise_generator"])
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


def play(checkpoint, env, **kwargs) -> tuple[list[np.ndarray], float]:
    """Chapter 6's name for :func:`rlbook.play.play`, which plays one greedy episode with any agent."""
    from rlbook.play import play as play_any  # imported here: rlbook.play imports the agents package

    return play_any(checkpoint, env, **kwargs)


__all__ = ["DQNAgent", "DQNConfig", "EpsilonGreedy", "NoisyExploration", "build_q_network", "categorical_projection",
           "play"]
