"""Chapter 7's diagnostics: held-out Q-values, noisy layers' signal-to-noise, prioritized replay's spread,
and the true discounted return of a greedy CartPole policy."""

import gymnasium as gym
import numpy as np
import pytest

from rlbook.agents import DQNAgent, DQNConfig, PolicyAgent
from rlbook.diagnostics import (
    CartPoleGreedyValue,
    HeldOutQ,
    NoisySNR,
    PriorityStats,
    cartpole_states,
    greedy_discounted_returns,
)
from rlbook.envs.counting import ChainEnv
from rlbook.train import Trainer


def chain_agent(**switches):
    env = ChainEnv(5)
    config = DQNConfig(gamma=0.9, lr=1e-3, batch_size=16, buffer_size=2_000, learning_starts=50, train_freq=2,
                       target_update_interval=25, epsilon_decay_steps=200, hidden=(16,), device="cpu", seed=0,
                       **switches)
    return env, DQNAgent(env.observation_space, env.action_space, config)


def test_held_out_q_records_the_mean_max_q_on_schedule():
    env, agent = chain_agent(noisy=True)
    states = np.eye(5, dtype=np.float32)
    held = HeldOutQ(states, every_steps=100)
    trainer = Trainer(agent, env, total_steps=350, plugins=[held], seed=0).run()
    assert held.steps == [0, 100, 200, 300] and len(held.values) == 4
    agent.q_net.eval()  # measured with the mean weights, no noise
    assert held.values[-1] != held.values[0]
    assert trainer.step == 350
    final = HeldOutQ(states, every_steps=10**6)
    Trainer(agent, env, total_steps=1, plugins=[final], seed=1).run()
    expected = float(agent.q_values(states).max(dim=1).values.mean())
    assert final.values[0] == pytest.approx(expected, abs=1e-6)


def test_noisy_snr_and_priority_stats():
    env, agent = chain_agent(noisy=True, prioritized=True)
    snr, stats = NoisySNR(every_steps=100), PriorityStats(every_steps=100, batch_size=32)
    Trainer(agent, env, total_steps=300, plugins=[snr, stats], seed=0).run()
    assert snr.steps == [0, 100, 200, 300]
    assert set(snr.values[0]) == {"head"} and all(v > 0 for v in snr.values[-1].values())
    assert stats.steps == [100, 200, 300]  # nothing to measure before the buffer holds rows
    assert all(len(q) == 5 and q == sorted(q) for q in stats.priority_quantiles)
    assert all(0 < w[0] <= w[-1] <= 1.0 for w in stats.weight_quantiles)
    assert stats.beta == sorted(stats.beta) and stats.beta[0] > 0.4
    with pytest.raises(ValueError, match="noisy"):
        env2, plain = chain_agent()
        Trainer(plain, env2, total_steps=10, plugins=[NoisySNR(every_steps=5)]).run()


def test_greedy_discounted_return_of_a_cartpole_policy_by_hand():
    states = cartpole_states(3, seed=0)
    assert states.shape == (3, 4) and np.all(np.abs(states[:, 2]) < 0.21)
    env = gym.make("CartPole-v1")
    push_right = PolicyAgent(env.observation_space, env.action_space, policy_fn=lambda obs: 1)
    got = greedy_discounted_returns(push_right, states, gamma=0.9)
    for s, value in zip(states, got):  # replay by hand: reward 1 per step until the pole falls
        sim = gym.make("CartPole-v1").unwrapped
        sim.reset(seed=0)
        sim.state = s.astype(np.float64)
        steps = 0
        while True:
            _, _, terminated, _, _ = sim.step(1)
            steps += 1
            if terminated:
                break
        assert value == pytest.approx(sum(0.9**t for t in range(steps)))


def test_cartpole_greedy_value_plugin_records_the_played_out_return():
    states = cartpole_states(4, seed=1)
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="vector_entry_point")
    agent = DQNAgent(env.single_observation_space, env.single_action_space,
                     DQNConfig.cartpole(device="cpu", seed=0, learning_starts=100, train_freq=50, gradient_steps=5))
    value = CartPoleGreedyValue(states, gamma=0.95, every_steps=100)
    Trainer(agent, env, total_steps=250, plugins=[value], seed=0).run()
    assert [s // 100 for s in value.steps] == [0, 1, 2]  # the first step at or after each multiple
    expected = greedy_discounted_returns(agent, states, 0.95).mean()  # the last one, with the final weights
    value_now = CartPoleGreedyValue(states, gamma=0.95, every_steps=10**6)
    Trainer(agent, env, total_steps=1, plugins=[value_now], seed=1).run()
    assert value_now.values[0] == pytest.approx(expected)
    assert all(0 < v <= 1 / (1 - 0.95) for v in value.values)
    with pytest.raises(ValueError, match="CartPole states"):
        CartPoleGreedyValue(np.zeros((3, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="gamma"):
        CartPoleGreedyValue(states, gamma=1.5)
