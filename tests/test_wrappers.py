"""Tests of RandomActionWrapper (rlbook.envs.wrappers) and PolicyAgent (rlbook.agents.policy_agent)."""

import gymnasium as gym
import numpy as np
import pytest

from rlbook.agents.policy_agent import PolicyAgent
from rlbook.envs.wrappers import RandomActionWrapper
from rlbook.train import Trainer


class ActionEcho(gym.Env):
    """Observation = the last action the env received (so we can see what the wrapper passed on)."""

    def __init__(self, n: int = 4):
        self.action_space = gym.spaces.Discrete(n)
        self.observation_space = gym.spaces.Discrete(n)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return int(action), 0.0, False, False, {}


def _run(env, n, action=0):
    received, flagged = [], []
    env.reset(seed=0)
    for _ in range(n):
        obs, _, _, _, info = env.step(action)
        received.append(obs)
        flagged.append(info["action_replaced"])
    return np.array(received), np.array(flagged)


@pytest.mark.parametrize("epsilon", [0.1, 0.5])
def test_replacement_rate_is_epsilon(epsilon):
    n = 4000
    env = RandomActionWrapper(ActionEcho(4), epsilon=epsilon, seed=1)
    received, flagged = _run(env, n)
    tol = 4 * np.sqrt(epsilon * (1 - epsilon) / n)  # four binomial standard deviations
    assert abs(flagged.mean() - epsilon) < tol
    assert env.num_replaced == flagged.sum() and env.num_actions == n
    # a replaced action is uniform over 4 actions, so 3/4 of the replaced ones differ from 0
    changed = (received != 0).mean()
    assert abs(changed - 0.75 * epsilon) < 4 * np.sqrt(0.75 * epsilon / n)
    # every changed action was flagged as replaced
    assert np.all(flagged[received != 0])


def test_epsilon_zero_changes_nothing_and_one_changes_everything():
    env = RandomActionWrapper(ActionEcho(4), epsilon=0.0, seed=0)
    received, flagged = _run(env, 500, action=2)
    assert np.all(received == 2) and not flagged.any() and env.num_replaced == 0
    env = RandomActionWrapper(ActionEcho(4), epsilon=1.0, seed=0)
    received, flagged = _run(env, 2000, action=2)
    assert flagged.all()
    assert set(np.unique(received)) == {0, 1, 2, 3}
    assert abs((received == 2).mean() - 0.25) < 0.05


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_epsilon_raises(bad):
    with pytest.raises(ValueError, match="epsilon must be in"):
        RandomActionWrapper(ActionEcho(), epsilon=bad)


def test_non_numeric_epsilon_raises_type_error():
    with pytest.raises(TypeError, match="epsilon"):
        RandomActionWrapper(ActionEcho(), epsilon="0.1")


def test_seeded_reset_makes_runs_reproducible():
    a = _run(RandomActionWrapper(ActionEcho(4), epsilon=0.3), 200)[0]
    b = _run(RandomActionWrapper(ActionEcho(4), epsilon=0.3), 200)[0]
    c = _run(RandomActionWrapper(ActionEcho(4), epsilon=0.3, seed=5), 200)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_wrapper_on_cartpole_shortens_a_good_policy():
    lean = PolicyAgent(gym.spaces.Box(-np.inf, np.inf, (4,)), gym.spaces.Discrete(2),
                       policy_fn=lambda o: int(o[2] + o[3] > 0))
    env = gym.make("CartPole-v1")
    clean = Trainer(lean, env, total_episodes=3, seed=0)
    clean.run()
    noisy = Trainer(lean, RandomActionWrapper(gym.make("CartPole-v1"), epsilon=1.0, seed=0),
                    total_episodes=20, seed=0)
    noisy.run()
    assert np.mean(clean.episode_lengths) > 5 * np.mean(noisy.episode_lengths)


# --------------------------------------------------------------------------- PolicyAgent
def _cartpole_spaces():
    env = gym.make("CartPole-v1")
    return env.observation_space, env.action_space


def test_policy_agent_single_and_batched():
    obs_space, act_space = _cartpole_spaces()
    agent = PolicyAgent(obs_space, act_space, policy_fn=lambda o: int(o[2] > 0))
    assert agent.act(np.array([0, 0, 0.1, 0], np.float32)) == 1
    assert agent.act(np.array([0, 0, -0.1, 0], np.float32), explore=False) == 0
    batch = np.array([[0, 0, 0.1, 0], [0, 0, -0.1, 0], [0, 0, 0.2, 0]], np.float32)
    out = agent.act(batch)
    assert out.dtype == np.int64 and out.tolist() == [1, 0, 1]


def test_policy_agent_vectorized_and_bool_actions():
    obs_space, act_space = _cartpole_spaces()
    calls = []

    def fn(batch):
        calls.append(batch.shape)
        return batch[:, 2] > 0

    agent = PolicyAgent(obs_space, act_space, policy_fn=fn, vectorized=True)
    batch = np.array([[0, 0, 0.1, 0], [0, 0, -0.1, 0]], np.float32)
    assert agent.act(batch).tolist() == [1, 0]
    assert calls == [(2, 4)]  # one call for the whole batch


def test_policy_agent_checks_its_input_and_output():
    obs_space, act_space = _cartpole_spaces()
    with pytest.raises(TypeError, match="policy_fn must be a function"):
        PolicyAgent(obs_space, act_space, policy_fn=3)
    with pytest.raises(TypeError, match="pass the policy as policy_fn"):
        PolicyAgent(obs_space, act_space, lambda o: 0)
    with pytest.raises(ValueError, match="outside"):
        PolicyAgent(obs_space, act_space, policy_fn=lambda o: 2).act(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="integer"):
        PolicyAgent(obs_space, act_space, policy_fn=lambda o: 0.5).act(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="one action per observation"):
        PolicyAgent(obs_space, act_space, policy_fn=lambda b: np.zeros(3, int), vectorized=True).act(np.zeros((2, 4)))
    box = gym.spaces.Box(-1, 1, (2,))
    with pytest.raises(ValueError, match="shape"):
        PolicyAgent(obs_space, box, policy_fn=lambda o: np.zeros(3)).act(np.zeros(4, np.float32))


def test_policy_agent_lean_policy_beats_random_on_cartpole():
    obs_space, act_space = _cartpole_spaces()
    agent = PolicyAgent(obs_space, act_space, policy_fn=lambda o: int(o[2] > 0))
    trainer = Trainer(agent, "CartPole-v1", total_episodes=50, seed=0)
    trainer.run()
    assert 30 < np.mean(trainer.episode_lengths) < 60  # the published 42 +- 9
    # a box action space works through the Trainer too
    env = gym.make("Pendulum-v1")
    push = PolicyAgent(env.observation_space, env.action_space,
                       policy_fn=lambda o: np.array([2.0 * np.sign(o[1])], np.float32))
    t = Trainer(push, env, total_episodes=1, seed=0)
    t.run()
    assert t.episode_lengths == [200]
