"""Tests of the cross-entropy method (rlbook/agents/cem.py, chapter 4)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbook.agents.base import Transition
from rlbook.agents.cem import CEMAgent, CEMConfig, Episode, discounted_return, one_hot, select_elite
from rlbook.evaluate import evaluate
from rlbook.train import StopOnReward, Trainer

CARTPOLE_SPACES = (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))


def make_episode(actions, total_reward, score=None, obs_dim=4, offset=0.0):
    actions = np.asarray(actions, dtype=np.int64)
    obs = np.full((len(actions), obs_dim), offset, dtype=np.float32)
    return Episode(obs=obs, actions=actions, total_reward=float(total_reward),
                   score=float(total_reward if score is None else score))


# ---------------------------------------------------------------------- elite selection
def test_select_elite_percentile_boundary():
    returns = np.arange(1.0, 11.0)  # 1..10; the 70th percentile interpolates to 7.3
    mask, boundary = select_elite(returns, 70)
    assert boundary == pytest.approx(7.3)
    np.testing.assert_array_equal(np.flatnonzero(mask), [7, 8, 9])


def test_select_elite_ties_at_the_boundary():
    returns = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    mask, boundary = select_elite(returns, 70)
    assert boundary == 0.0
    assert mask.all()  # ">=": a boundary of 0 lets every failed episode in (naive FrozenLake)
    mask, _ = select_elite(returns, 70, strict=True)
    np.testing.assert_array_equal(mask, [False, False, False, False, True])
    mask, boundary = select_elite(np.array([5.0, 3.0, 5.0, 5.0]), 50)
    assert boundary == 5.0
    np.testing.assert_array_equal(mask, [True, False, True, True])


def test_select_elite_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        select_elite(np.array([]), 70)


def test_discounted_return():
    assert discounted_return(np.array([0.0, 0.0, 1.0]), 0.9) == pytest.approx(0.81)
    assert discounted_return(np.array([1.0, 1.0, 1.0]), 0.5) == pytest.approx(1.75)
    assert discounted_return(np.array([]), 0.9) == 0.0


def test_discounted_filter_prefers_short_successes():
    # Three successes of lengths 2, 4 and 8 and five failures; gamma 0.9 ranks the successes by length.
    cfg = CEMConfig(episodes_per_batch=8, percentile=75, strict=True, gamma=0.9, seed=0)
    agent = CEMAgent(gym.spaces.Discrete(16), gym.spaces.Discrete(4), cfg)
    env_id = 0
    for length, success in [(2, 1), (4, 1), (8, 1), (3, 0), (3, 0), (3, 0), (3, 0), (3, 0)]:
        for t in range(length):
            last = t == length - 1
            agent.observe(Transition(obs=np.array([t]), action=np.array([length % 4]),
                                     reward=np.array([float(success and last)], dtype=np.float32),
                                     next_obs=np.array([t + 1]), terminated=np.array([last]),
                                     truncated=np.array([False]), env_ids=np.array([env_id])))
    scores = [e.score for e in agent.finished]
    np.testing.assert_allclose(scores[:3], [0.9, 0.9**3, 0.9**7])
    metrics = agent.update()
    # The 75th percentile of [0.9, 0.729, 0.478, 0, 0, 0, 0, 0] interpolates between 0.478 and 0.729.
    assert metrics["reward_bound"] == pytest.approx(0.9**7 + 0.25 * (0.9**3 - 0.9**7))
    assert metrics["elite_episodes"] == 2  # the two shortest successes
    assert metrics["elite_pairs"] == 2 + 4
    assert metrics["reward_mean"] == pytest.approx(3 / 8)


# ---------------------------------------------------------------------- episode buffers
def test_observe_keeps_interleaved_episodes_apart():
    agent = CEMAgent(gym.spaces.Discrete(10), gym.spaces.Discrete(3), CEMConfig(episodes_per_batch=99, seed=0))
    # env 0 plays states 0,1,2 (ends at the third step); env 1 plays 5,6 and ends at its second row;
    # env 2 only shows up in the second step (rows may be missing, as after an autoreset).
    steps = [
        (np.array([0, 5]), np.array([0, 1]), np.array([0, 1]), np.array([False, False])),
        (np.array([1, 6, 9]), np.array([1, 2, 2]), np.array([0, 1, 2]), np.array([False, True, False])),
        (np.array([2, 8]), np.array([2, 0]), np.array([0, 2]), np.array([True, True])),
    ]
    for obs, act, ids, done in steps:
        agent.observe(Transition(obs=obs, action=act, reward=np.ones(len(obs), np.float32), next_obs=obs,
                                 terminated=done, truncated=np.zeros(len(obs), bool), env_ids=ids))
    assert [e.total_reward for e in agent.finished] == [2.0, 3.0, 2.0]  # env 1, then env 0, env 2
    first, second, third = agent.finished
    np.testing.assert_array_equal(first.obs.argmax(1), [5, 6])
    np.testing.assert_array_equal(first.actions, [1, 2])
    np.testing.assert_array_equal(second.obs.argmax(1), [0, 1, 2])
    np.testing.assert_array_equal(second.actions, [0, 1, 2])
    np.testing.assert_array_equal(third.obs.argmax(1), [9, 8])
    assert agent.num_steps == 7 and agent.num_episodes == 3


def test_buffers_grow_past_their_initial_length():
    agent = CEMAgent(*CARTPOLE_SPACES, CEMConfig(seed=0))
    length = 300  # more than the initial capacity of 64 steps
    for t in range(length):
        agent.observe(Transition(obs=np.full((1, 4), t, np.float32), action=np.array([t % 2]),
                                 reward=np.ones(1, np.float32), next_obs=np.zeros((1, 4), np.float32),
                                 terminated=np.array([t == length - 1]), truncated=np.array([False]),
                                 env_ids=np.array([0])))
    (episode,) = agent.finished
    np.testing.assert_array_equal(episode.obs[:, 0], np.arange(length))
    np.testing.assert_array_equal(episode.actions, np.arange(length) % 2)


# ---------------------------------------------------------------------- fitting and encoding
def test_fit_reduces_cross_entropy_on_elite_actions():
    agent = CEMAgent(*CARTPOLE_SPACES, CEMConfig(seed=0, lr=0.01))
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(256, 4, generator=gen)
    actions = (obs[:, 2] > 0).long()  # a rule the network can learn
    before = torch.nn.functional.cross_entropy(agent.net(obs), actions).item()
    for _ in range(20):
        agent.fit(obs, actions)
    after = torch.nn.functional.cross_entropy(agent.net(obs), actions).item()
    assert after < 0.5 * before


def test_update_fits_only_the_elite():
    agent = CEMAgent(*CARTPOLE_SPACES, CEMConfig(episodes_per_batch=4, percentile=50, seed=0, fit_steps=30))
    # Elite episodes (return 10) always push action 1 at obs 1.0; the rest push action 0 at obs 1.0.
    batch = [make_episode([1] * 10, 10, offset=1.0), make_episode([1] * 10, 10, offset=1.0),
             make_episode([0] * 3, 3, offset=1.0), make_episode([0] * 2, 2, offset=1.0)]
    metrics = agent.learn_from_batch(batch)
    assert metrics["elite_episodes"] == 2 and metrics["reward_bound"] == pytest.approx(6.5)
    assert agent.probabilities(np.ones((1, 4), np.float32))[0, 1] > 0.9


def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        one_hot(np.array([3]), 3)
    agent = CEMAgent(gym.spaces.Discrete(16), gym.spaces.Discrete(4), CEMConfig(seed=0))
    assert agent.in_features == 16
    x = agent.encode(np.array([0, 15, 7]))
    assert x.shape == (3, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(x.argmax(1), [0, 15, 7])
    assert (x.sum(1) == 1).all()
    shifted = CEMAgent(gym.spaces.Discrete(3, start=5), gym.spaces.Discrete(2, start=-1), CEMConfig(seed=0))
    np.testing.assert_array_equal(shifted.encode(np.array([5, 7])).argmax(1), [0, 2])
    assert set(shifted.act(np.array([5, 6, 7]))) <= {-1, 0}


def test_numpy_forward_matches_torch():
    agent = CEMAgent(*CARTPOLE_SPACES, CEMConfig(seed=3))
    agent.fit(torch.randn(32, 4), torch.randint(0, 2, (32,)))  # the NumPy views must follow Adam's update
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(agent.net(torch.from_numpy(obs)), 1).numpy()
    np.testing.assert_allclose(agent.probabilities(obs), expected, rtol=1e-5, atol=1e-6)


def test_kept_elite_is_capped_and_most_recent():
    agent = CEMAgent(*CARTPOLE_SPACES, CEMConfig(episodes_per_batch=4, percentile=0, keep_elite=6, seed=0))
    for b in range(3):  # percentile 0: every candidate is elite, so the cap decides
        agent.learn_from_batch([make_episode([0, 1], 10 * b + i) for i in range(4)])
        assert len(agent.kept_elite) == min(4 * (b + 1), 6)
    assert [e.total_reward for e in agent.kept_elite] == [12, 13, 20, 21, 22, 23]


def test_kept_elite_compete_with_the_new_batch():
    agent = CEMAgent(*CARTPOLE_SPACES, CEMConfig(episodes_per_batch=2, percentile=50, keep_elite=10, seed=0))
    agent.learn_from_batch([make_episode([0], 5), make_episode([0], 1)])
    assert [e.total_reward for e in agent.kept_elite] == [5]
    metrics = agent.learn_from_batch([make_episode([0], 2), make_episode([0], 3)])
    # candidates 5, 2, 3 -> median 3 -> elite 5 and 3
    assert metrics["reward_bound"] == 3 and metrics["reward_mean"] == 2.5
    assert [e.total_reward for e in agent.kept_elite] == [5, 3]


# ---------------------------------------------------------------------- checkpoints and errors
def test_save_load_round_trip(tmp_path):
    cfg = CEMConfig.cartpole(seed=1, keep_elite=20)
    agent = CEMAgent(*CARTPOLE_SPACES, cfg)
    Trainer(agent, gym.make("CartPole-v1"), total_episodes=40, seed=1).run()
    assert agent.num_batches == 2 and agent.kept_elite
    path = agent.save(tmp_path / "cem.pt")
    # a config that differs is refused, naming the fields, and leaves the agent as it was
    stranger = CEMAgent(*CARTPOLE_SPACES, CEMConfig.cartpole(seed=99, keep_elite=20, lr=0.02))
    before = [p.clone() for p in stranger.net.parameters()]
    with pytest.raises(ValueError, match=r"seed: saved 1 vs 99; lr: saved 0\.01 vs 0\.02"):
        stranger.load(path)
    assert all(torch.equal(a, b) for a, b in zip(before, stranger.net.parameters())) and stranger.num_steps == 0
    other = CEMAgent.from_checkpoint(path)  # the saved config and spaces
    assert other.config == cfg and other.observation_space == CARTPOLE_SPACES[0]
    assert other.optimizer.param_groups[0]["lr"] == cfg.lr
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs, explore=True), other.act(obs, explore=True))
    np.testing.assert_array_equal(agent.act(obs, explore=False), other.act(obs, explore=False))
    sa, so = agent.optimizer.state_dict(), other.optimizer.state_dict()
    for key in sa["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa["state"][key][name], so["state"][key][name])
    assert other.num_batches == 2 and other.num_steps == agent.num_steps
    assert len(other.kept_elite) == len(agent.kept_elite) and len(other.finished) == len(agent.finished)
    np.testing.assert_array_equal(other.kept_elite[0].actions, agent.kept_elite[0].actions)
    assert other.history == agent.history
    # after loading, both learn identically from the same batch
    batch = [make_episode([1, 0, 1], r) for r in (1, 5, 9, 3)]
    assert agent.learn_from_batch(batch)["loss"] == other.learn_from_batch(batch)["loss"]
    np.testing.assert_array_equal(agent.act(obs), other.act(obs))


def test_load_rejects_a_different_network(tmp_path):
    path = CEMAgent(*CARTPOLE_SPACES, CEMConfig(seed=0)).save(tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"saved by an agent for the observation space Box.*\(4,\)"):
        CEMAgent(gym.spaces.Box(-1, 1, (6,)), gym.spaces.Discrete(2), CEMConfig(seed=0)).load(path)


def test_box_action_space_raises_type_error():
    with pytest.raises(TypeError, match="Discrete"):
        CEMAgent(CARTPOLE_SPACES[0], gym.spaces.Box(-1.0, 1.0, (1,)))


def test_bad_config_values():
    with pytest.raises(ValueError, match="percentile"):
        CEMConfig(percentile=120)
    with pytest.raises(ValueError, match="gamma"):
        CEMConfig(gamma=0.0)
    with pytest.raises(TypeError, match="one_hot"):
        CEMAgent(*CARTPOLE_SPACES, CEMConfig(one_hot=True))


def test_same_seed_same_run():
    runs = []
    for _ in range(2):
        agent = CEMAgent(*CARTPOLE_SPACES, CEMConfig.cartpole(seed=5))
        Trainer(agent, gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point"),
                total_episodes=48, seed=5).run()
        runs.append([h["loss"] for h in agent.history])
    assert runs[0] == runs[1] and len(runs[0]) == 3


# ---------------------------------------------------------------------- learning
def test_cem_solves_cartpole():
    """Seeded: the 100-episode training mean reaches 475 within 150 batches (seed 0 needs about 65)."""
    env = gym.make_vec("CartPole-v1", num_envs=16, vectorization_mode="vector_entry_point")
    agent = CEMAgent(env.single_observation_space, env.single_action_space, CEMConfig.cartpole(seed=0))
    stop = StopOnReward(475, window=100)
    Trainer(agent, env, total_episodes=150 * 16, plugins=[stop], seed=0).run()
    assert stop.solved_at_step is not None, f"not solved; last batch mean {agent.history[-1]['reward_mean']}"
    greedy = evaluate(agent, gym.make_vec("CartPole-v1", num_envs=16, vectorization_mode="vector_entry_point"),
                      n_episodes=16, seed=123)
    assert greedy.mean >= 475


def test_cem_solves_non_slippery_frozenlake():
    """With the FrozenLake fixes the greedy policy reaches the goal within 60 batches of 100 episodes."""
    env = gym.make_vec("FrozenLake-v1", num_envs=16, vectorization_mode="sync", is_slippery=False)
    agent = CEMAgent(env.single_observation_space, env.single_action_space, CEMConfig.frozenlake(seed=0))
    Trainer(agent, env, total_episodes=60 * 100, seed=0).run()
    result = evaluate(agent, gym.make("FrozenLake-v1", is_slippery=False), n_episodes=1)
    assert result.mean == 1.0 and result.lengths[0] == 6  # the shortest path has 6 steps
