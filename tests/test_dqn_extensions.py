"""Chapter 7's switches on DQNAgent: C51's projection against a brute-force reference, noisy exploration,
prioritized replay inside the learning step, Double C51, and every combination of switches learning."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbook.agents.dqn import DQNAgent, DQNConfig, EpsilonGreedy, NoisyExploration, categorical_projection
from rlbook.envs.counting import ChainEnv
from rlbook.nets import NoisyLinear, QHead
from rlbook.replay import PrioritizedReplayBuffer


def brute_force_projection(probs, reward, discount, support):
    """C51's projection, one atom at a time, exactly as the paper's Algorithm 1 describes it."""
    v_min, v_max, k = support[0], support[-1], len(support)
    delta = (v_max - v_min) / (k - 1)
    out = np.zeros_like(probs)
    for i in range(len(probs)):
        for j in range(k):
            tz = min(max(reward[i] + discount[i] * support[j], v_min), v_max)
            b = (tz - v_min) / delta
            lo, up = int(np.floor(b)), int(np.ceil(b))
            if lo == up:
                out[i, lo] += probs[i, j]
            else:
                out[i, lo] += probs[i, j] * (up - b)
                out[i, up] += probs[i, j] * (b - lo)
    return out


def test_categorical_projection_matches_the_brute_force_reference():
    rng = np.random.default_rng(0)
    support = np.linspace(-10, 10, 51)  # delta 0.4
    probs = rng.dirichlet(np.ones(51), size=12)
    reward = np.array([0.0, 0.4, -0.8, 1.234, 2.8, 50.0, -50.0, 0.7, 2.0, -3.3, 9.9, 0.2])
    discount = np.array([1.0, 1.0, 1.0, 0.99, 0.0, 0.9, 0.9, 0.970299, 0.5, 0.0, 1.0, 0.81])
    # row 0: the identity; rows 1-2: every atom lands exactly on a support point (one and two places over);
    # rows 4 and 9: terminal rows, one atom at the reward; rows 5-6: beyond the support, clipped to its ends
    got = categorical_projection(*(torch.tensor(a, dtype=torch.float64) for a in (probs, reward, discount, support)))
    want = brute_force_projection(probs, reward, discount, support)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0)
    np.testing.assert_allclose(got[0].numpy(), probs[0])
    np.testing.assert_allclose(got[1, 1:50].numpy(), probs[1, :49], atol=1e-12)  # shifted one place up
    assert got[1, 50] == pytest.approx(probs[1, 49] + probs[1, 50])  # the top atom is clipped onto v_max
    np.testing.assert_allclose(got[4].numpy(), np.eye(51)[32], atol=1e-9)  # terminal: all at the reward, 2.8
    assert got[5, -1] == pytest.approx(probs[5][support * 0.9 + 50 >= 10].sum())
    assert got[6, 0] == pytest.approx(1.0)  # all of it below -10
    # terminal with a reward between two points: split by distance
    mid = categorical_projection(torch.tensor([[1.0] + [0.0] * 50]), torch.tensor([0.1]), torch.tensor([0.0]),
                                 torch.tensor(support, dtype=torch.float32))
    assert mid[0, 25] == pytest.approx(0.75) and mid[0, 26] == pytest.approx(0.25)


BOX = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
TWO = gym.spaces.Discrete(2)


def tiny(**overrides) -> DQNConfig:
    base = DQNConfig(gamma=0.9, lr=1e-3, batch_size=16, buffer_size=2_000, learning_starts=50, train_freq=2,
                     gradient_steps=1, target_update_interval=25, epsilon_decay_steps=200, epsilon_end=0.05,
                     hidden=(16,), device="cpu", seed=0, atoms=11, v_min=-2.0, v_max=2.0)
    return base.replace(**overrides)


def test_noisy_agents_explore_by_noise_and_evaluate_without_it():
    agent = DQNAgent(BOX, gym.spaces.Discrete(4), tiny(noisy=True, noisy_sigma0=3.0))
    assert isinstance(agent.exploration, NoisyExploration) and agent.epsilon == 0.0
    obs = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    greedy = agent.act(obs, explore=False)
    np.testing.assert_array_equal(greedy, agent.act(obs, explore=False))  # no noise: the same every time
    with torch.no_grad():
        first, head = agent.q_net.torso[0], agent.q_net.head
        # the layer that reads the observation is plain; the head is noisy and uses its means here
        assert not isinstance(first, NoisyLinear) and isinstance(head, NoisyLinear)
        h = torch.relu(first(torch.as_tensor(obs)))
        mean_q = torch.nn.functional.linear(h, head.weight_mu, head.bias_mu)
    np.testing.assert_array_equal(greedy, mean_q.argmax(1).numpy())
    explored = agent.act(obs, explore=True)
    assert 0.05 < np.mean(explored != greedy) < 0.95  # large noise changes many, not all, of the choices
    assert agent.q_net.training  # back in training mode after the greedy pass
    assert isinstance(DQNAgent(BOX, TWO, tiny()).exploration, EpsilonGreedy)


def test_noisy_runs_repeat_with_the_same_seed_and_checkpoint_their_noise(tmp_path):
    env = ChainEnv(5)
    runs = []
    for _ in range(2):
        agent = DQNAgent(env.observation_space, env.action_space, tiny(noisy=True))
        agent.learn(env, total_steps=150, seed=0)
        runs.append(agent)
    for a, b in zip(runs[0].q_net.parameters(), runs[1].q_net.parameters()):
        assert torch.equal(a, b)
    path = runs[0].save(tmp_path / "noisy.pt")
    loaded = DQNAgent.from_checkpoint(path)
    obs = np.eye(5, dtype=np.float32)
    np.testing.assert_array_equal(loaded.act(obs, explore=True), runs[0].act(obs, explore=True))  # same noise next


def test_prioritized_agent_updates_priorities_from_its_td_errors(monkeypatch):
    env = ChainEnv(5)
    agent = DQNAgent(env.observation_space, env.action_space, tiny(prioritized=True, priority_beta_steps=1000))
    calls = []
    real = PrioritizedReplayBuffer.update_priorities

    def spy(self, slots, td_errors):
        calls.append((np.array(slots), np.array(td_errors)))
        return real(self, slots, td_errors)

    monkeypatch.setattr(PrioritizedReplayBuffer, "update_priorities", spy)
    agent.learn(env, total_steps=120, seed=0)
    assert isinstance(agent.buffer, PrioritizedReplayBuffer)
    assert len(calls) == agent.gradient_steps_done > 0  # one draw and one update per gradient step
    slots, td = calls[-1]
    np.testing.assert_allclose(agent.buffer.tree[slots], (np.abs(td) + 1e-6) ** 0.6, rtol=1e-6)
    assert agent.beta == pytest.approx(0.4 + 0.6 * 120 / 1000)


def test_categorical_double_picks_the_next_action_by_the_online_expected_values():
    agent = DQNAgent(BOX, TWO, tiny(categorical=True, double=True))
    support = agent.support

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits.expand(len(x), -1, -1)

    peak = torch.full((2, 11), -30.0)
    peak[0, 10], peak[1, 0] = 0.0, 0.0  # action 0: mass at +2, action 1: mass at -2
    agent.online = None
    agent.q_net = Fixed(peak.flip(0))  # the online net prefers action 1 (its mass at +2)
    agent.target_net = Fixed(peak)
    batch = {"next_obs": torch.zeros(1, 5), "reward": torch.zeros(1), "discount": torch.ones(1),
             "terminated": torch.tensor([False])}
    target = agent.compute_target_distribution(batch)
    assert target[0, 0] == pytest.approx(1.0, abs=1e-6)  # the target net's distribution of action 1: at -2
    agent.config = agent.config.replace(double=False)
    assert agent.compute_target_distribution(batch)[0, 10] == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(support, torch.linspace(-2, 2, 11))


SWITCHES = ("n_step", "double", "dueling", "noisy", "prioritized", "categorical")


@pytest.mark.parametrize("combo", list(itertools.product([1, 3], *([(False, True)] * 5))),
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in zip(SWITCHES, c)))
def test_every_combination_of_switches_learns(combo):
    # small initial noise, so that one fixed batch shows the learning under the noise within a few steps
    config = tiny(**dict(zip(SWITCHES, combo)), target_update_interval=10_000, noisy_sigma0=0.05)
    env = ChainEnv(5)
    agent = DQNAgent(env.observation_space, env.action_space, config)
    agent.learn(env, total_steps=150, seed=0)
    net_out = agent.q_net(torch.eye(5))
    assert net_out.shape == ((5, 2, 11) if config.categorical else (5, 2))
    assert agent.q_values(np.eye(5, dtype=np.float32)).shape == (5, 2)
    assert agent.nonfinite() is None and agent.gradient_steps_done > 0
    if config.dueling:
        assert isinstance(agent.q_net.head, QHead) and agent.q_net.head.dueling
    # The learning step must reduce its own error. Freeze the target at the current online network, fix one
    # batch, and measure the squared TD error on it (for C51 the KL divergence to the target distribution: its
    # cross-entropy also holds the target's own entropy, which no learning removes), averaged over noise draws.
    agent.target_net.load_state_dict(agent.q_net.state_dict())
    fixed = agent._to_device(agent.buffer.batch_at(agent.buffer.sample_indices(64, np.random.default_rng(1))))
    fixed.pop("weights", None)

    def error_now():  # with noisy layers, the mean over many noise draws (what the gradient steps lower)
        with torch.no_grad():
            tds = [agent.compute_loss(fixed)[2] for _ in range(16 if config.noisy else 1)]
        return float(np.mean([td.mean() if config.categorical else td.pow(2).mean() for td in tds]))

    before = error_now()
    for _ in range(200):
        agent.gradient_step(fixed)
    assert error_now() < 0.8 * before, (before, error_now())


def test_categorical_loss_is_the_cross_entropy_to_the_projected_target():
    agent = DQNAgent(BOX, TWO, tiny(categorical=True))
    gen = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(6, 5, generator=gen), "action": torch.tensor([0, 1, 1, 0, 1, 0]),
             "reward": torch.randn(6, generator=gen), "next_obs": torch.randn(6, 5, generator=gen),
             "terminated": torch.tensor([False, True, False, False, True, False]),
             "discount": torch.full((6,), 0.9)}
    target = agent.compute_target_distribution(batch)
    with torch.no_grad():  # the projection by hand, for the target net's greedy next action
        next_probs = torch.softmax(agent.target_net(batch["next_obs"]), -1)
        best = (next_probs @ agent.support).argmax(1)
        p = next_probs[torch.arange(6), best]
        d = 0.9 * (~batch["terminated"]).float()
        want = torch.tensor(brute_force_projection(p.double().numpy(), batch["reward"].double().numpy(),
                                                   d.double().numpy(), agent.support.double().numpy()))
    torch.testing.assert_close(target.double(), want, atol=1e-6, rtol=0)
    losses, q_taken, kl = agent.distribution_losses(batch)
    log_p = torch.log_softmax(agent.q_net(batch["obs"]), -1)[torch.arange(6), batch["action"]]
    cross_entropy = -(want.float() * log_p).sum(1)
    torch.testing.assert_close(losses, cross_entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q_taken, (log_p.exp() @ agent.support).detach(), atol=1e-6, rtol=0)
    entropy = -(want.float() * want.float().clamp_min(1e-12).log()).sum(1)
    torch.testing.assert_close(kl, (cross_entropy - entropy).detach(), atol=1e-5, rtol=1e-5)
    assert torch.all(kl >= -1e-6)
    loss, _, _ = agent.compute_loss({**batch, "weights": torch.linspace(0.1, 1.0, 6)})
    torch.testing.assert_close(loss, (torch.linspace(0.1, 1.0, 6) * cross_entropy).mean(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("switches", [{"categorical": True}, {"dueling": True}, {"prioritized": True},
                                      {"noisy": True}])
def test_each_extension_learns_the_chain(switches):
    env = ChainEnv(5)
    config = tiny(**switches, hidden=(32,), buffer_size=5_000, learning_starts=100, train_freq=2,
                  target_update_interval=50, epsilon_decay_steps=500, v_min=-1.0, v_max=2.0, atoms=31)
    agent = DQNAgent(env.observation_space, env.action_space, config)
    # noise explores less directly than epsilon: it needs more steps to find the goal the first time
    agent.learn(env, total_steps=5000 if config.noisy else 2500, seed=0)
    from rlbook.evaluate import evaluate

    assert evaluate(agent, env, n_episodes=3).mean == pytest.approx(env.optimal_return)
    q = agent.q_values(np.eye(5, dtype=np.float32)[:4]).numpy()
    assert np.all(q[:, 1] > q[:, 0])  # walking right is better everywhere
    assert q[3, 1] == pytest.approx(0.99, abs=0.1)  # one step from the goal: 1 - 0.01


def test_categorical_double_target_matches_a_reference_on_random_logits():
    # Random online and target logits, one row each: the online network's expected values (a softmax over the
    # atoms, then the support) pick the action, the target network's distribution of it is projected.
    rng = np.random.default_rng(4)
    agent = DQNAgent(BOX, gym.spaces.Discrete(3), tiny(categorical=True, double=True))
    support = agent.support.double().numpy()
    online = torch.tensor(rng.normal(0, 3, (64, 3, 11)), dtype=torch.float32)
    target = torch.tensor(rng.normal(0, 3, (64, 3, 11)), dtype=torch.float32)

    class Rows(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits

    agent.q_net, agent.target_net = Rows(online), Rows(target)
    reward = rng.normal(0, 0.5, 64)
    batch = {"next_obs": torch.zeros(64, 5), "reward": torch.tensor(reward, dtype=torch.float32),
             "discount": torch.full((64,), 0.9), "terminated": torch.tensor(rng.random(64) < 0.2)}

    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    picked = (softmax(online.double().numpy()) @ support).argmax(axis=1)
    probs = softmax(target.double().numpy())[np.arange(64), picked]
    discount = 0.9 * ~batch["terminated"].numpy()
    want = brute_force_projection(probs, reward.astype(np.float32).astype(np.float64), discount, support)
    got = agent.compute_target_distribution(batch).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the atoms-then-support order matters: normalising over the actions instead picks other actions here
    wrong = (softmax(np.swapaxes(online.double().numpy(), 1, 2)).swapaxes(1, 2) @ support).argmax(axis=1)
    assert (wrong != picked).any()


def test_projection_keeps_an_atom_at_v_max_when_the_division_rounds_past_the_last_index():
    # On [0, 4.1] with 51 atoms in float32, (v_max - v_min) / delta is 50.0000038: its ceiling is 51, one past
    # the last support point. Everything pushed to v_max must still land on index 50.
    support = torch.linspace(0.0, 4.1, 51)
    assert ((support[-1] - support[0]) / ((support[-1] - support[0]) / 50)).ceil() == 51
    probs = torch.softmax(torch.randn(3, 51, generator=torch.Generator().manual_seed(0)), dim=1)
    out = categorical_projection(probs, torch.tensor([10.0, 4.1, 0.0]), torch.tensor([0.0, 0.0, 1.0]), support)
    assert out[0, 50] == pytest.approx(1.0) and out[1, 50] == pytest.approx(1.0)
    torch.testing.assert_close(out[2], probs[2])  # the identity
