"""On-policy data: the trainer's fixed-shape rows, the (T, N) rollout buffer, GAE / n-step advantages checked
against sums written out per episode, returns-to-go and the episode buffer."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbook.agents.base import Agent
from rlbook.envs.counting import CountingEnv
from rlbook.rollout import EpisodeBuffer, MaskedTransition, RolloutBuffer, gae_advantages, returns_to_go
from rlbook.train import Trainer


class Recorder(Agent):
    """An on-policy agent that acts 0 and keeps every MaskedTransition it is given (copies)."""

    fixed_shape = True

    def __init__(self, observation_space, action_space, rollout_steps=None):
        super().__init__(observation_space, action_space)
        self.rows: list[MaskedTransition] = []
        self.rollout_steps = rollout_steps
        self.buffer = None

    def act_batch(self, obs, explore=True):
        return np.zeros(len(obs), dtype=np.int64)

    def observe(self, transition):
        super().observe(transition)
        assert isinstance(transition, MaskedTransition)
        self.rows.append(MaskedTransition(**{k: np.array(v, copy=True) for k, v in vars(transition).items()}))


def counting_vector(lengths=(3, 5), limits=(None, 4)):
    fns = [lambda n=n, m=m, k=k: CountingEnv(n, max_episode_steps=m, tag=k)
           for k, (n, m) in enumerate(zip(lengths, limits))]
    return gym.vector.SyncVectorEnv(fns)


def test_the_trainer_passes_every_row_and_marks_autoreset_rows_invalid():
    env = counting_vector()  # env 0 terminates every 3 steps; env 1 is truncated at 4 (its episodes last 5)
    agent = Recorder(env.single_observation_space, env.single_action_space)
    trainer = Trainer(agent, env, total_steps=20, seed=0).run()
    rows = agent.rows
    assert all(len(r) == 2 and np.array_equal(r.env_ids, [0, 1]) for r in rows)
    valid = np.array([r.valid for r in rows])
    done = np.array([r.terminated | r.truncated for r in rows])
    # a row is invalid exactly when the same environment's previous row ended its episode
    np.testing.assert_array_equal(valid[1:], ~done[:-1])
    assert valid[0].all()
    # the invalid row's obs is the final observation; it has no reward, and never ends an episode
    for t in range(1, len(rows)):
        for i in np.flatnonzero(~valid[t]):
            np.testing.assert_array_equal(rows[t].obs[i], rows[t - 1].next_obs[i])
            assert rows[t].reward[i] == 0.0 and not done[t, i]
            assert rows[t].next_obs[i][0] == 0  # the first observation of the next episode
    assert agent.num_steps == trainer.step == valid.sum()
    assert np.array([r.terminated for r in rows])[:, 0].any() and np.array([r.truncated for r in rows])[:, 1].any()
    # the episode bookkeeping is the same as for agents that get the rows dropped
    assert trainer.episode_lengths[:3] == [3, 4, 3]


def brute_force_advantages(rows, values_of, gamma, lam):
    """Per environment, per episode: A_t = sum_k (gamma lam)^k delta_{t+k} within the rollout and the episode,
    with delta bootstrapping from the true next observation unless terminated."""
    steps, n = len(rows), len(rows[0])
    out = np.zeros((steps, n))
    for i in range(n):
        for t in range(steps):
            if not rows[t].valid[i]:
                continue
            total, factor = 0.0, 1.0
            for k in range(t, steps):
                r = rows[k]
                nxt = 0.0 if r.terminated[i] else values_of(r.next_obs[i])
                total += factor * (r.reward[i] + gamma * nxt - values_of(r.obs[i]))
                if r.terminated[i] or r.truncated[i]:
                    break
                factor *= gamma * lam
            out[t, i] = total
    return out


@pytest.mark.parametrize(("gamma", "lam"), [(0.9, 1.0), (0.9, 0.95), (0.5, 0.0), (1.0, 0.7)])
def test_gae_on_the_rollout_layout_matches_sums_per_episode(gamma, lam):
    env = counting_vector(lengths=(3, 5, 2), limits=(None, 4, None))
    agent = Recorder(env.single_observation_space, env.single_action_space)
    Trainer(agent, env, total_steps=40, seed=0).run()
    steps = 11
    rows = agent.rows[2:2 + steps]  # a window that starts and ends inside episodes
    buf = RolloutBuffer(steps, 3, (3,))
    for r in rows:
        buf.add(r)
    assert buf.full

    def values_of(obs):  # any function of the observation will do; this one tells every state apart
        return float(0.3 * obs[0] - 0.1 * obs[1] + 0.7 * obs[2] + 1.0)

    values = np.array([[values_of(o) for o in buf.obs[t]] for t in range(steps)]
                      + [[values_of(o) for o in buf.last_next_obs]])
    adv, targets = gae_advantages(torch.as_tensor(buf.rewards), torch.as_tensor(values, dtype=torch.float64),
                                  torch.as_tensor(buf.terminated), torch.as_tensor(buf.truncated),
                                  torch.as_tensor(buf.valid), gamma, lam)
    expected = brute_force_advantages(rows, values_of, gamma, lam)
    # the buffer stores rewards as float32: agreement to float32 precision
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(targets.numpy(), expected + values[:-1], rtol=1e-6, atol=1e-6)
    assert (adv.numpy()[~buf.valid] == 0).all()


def test_lambda_one_gives_n_step_returns_by_hand():
    # one environment, 3 steps, no episode end: A_0 = r0 + g r1 + g^2 r2 + g^3 V(s3) - V(s0)
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    adv, targets = gae_advantages(r, v, no, no, ~no, gamma=0.5, lam=1.0)
    assert adv[0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 40 - 10)
    assert targets[2, 0].item() == pytest.approx(3 + 0.5 * 40)
    # terminated at step 1: no bootstrap and no chaining; truncated at step 1: bootstrap from V(s2)
    term = torch.tensor([[False], [True], [False]])
    adv, _ = gae_advantages(r, v, term, no, ~no, gamma=0.5, lam=1.0)
    assert adv[0, 0].item() == pytest.approx(1 + 0.5 * 2 - 10)
    adv, _ = gae_advantages(r, v, no, term, ~no, gamma=0.5, lam=1.0)
    assert adv[0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 30 - 10)
    with pytest.raises(ValueError, match="T \\+ 1"):
        gae_advantages(r, v[:3], no, no, ~no, gamma=0.5)


def test_rollout_buffer_checks_its_input():
    buf = RolloutBuffer(1, 2, (3,))
    row = MaskedTransition(obs=np.ones((2, 3)), action=np.zeros(2, np.int64), reward=np.array([1.0, 5.0]),
                           next_obs=np.full((2, 3), 2.0), terminated=np.array([False, True]),
                           truncated=np.array([False, True]), env_ids=np.arange(2), valid=np.array([True, False]))
    buf.add(row)
    assert buf.rewards[0].tolist() == [1.0, 0.0]  # nothing from an invalid row
    assert not buf.terminated[0, 1] and not buf.truncated[0, 1]
    assert (buf.last_next_obs == 2.0).all()
    with pytest.raises(RuntimeError, match="full"):
        buf.add(row)
    buf.clear()
    with pytest.raises(ValueError, match="one row per environment"):
        buf.add(MaskedTransition(**{**vars(row), "env_ids": np.array([1, 0])}))
    with pytest.raises(TypeError, match="MaskedTransition"):
        buf.add("rows")


def test_returns_to_go_by_hand():
    np.testing.assert_allclose(returns_to_go([1.0, 2.0, 3.0], 0.5), [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0])
    np.testing.assert_allclose(returns_to_go([1.0, 1.0], 1.0), [2.0, 1.0])
    assert returns_to_go([], 0.9).shape == (0,)


def test_episode_buffer_collects_whole_episodes_per_environment():
    buf = EpisodeBuffer((1,), capacity=2)  # capacity 2: the storage must grow for longer episodes
    finished = []
    lengths = {0: 3, 1: 5}
    t = {0: 0, 1: 0}
    for _ in range(12):
        ids = np.array([0, 1])
        obs = np.array([[t[0]], [t[1]]], dtype=np.float32)
        ends = np.array([t[0] == lengths[0] - 1, t[1] == lengths[1] - 1])
        finished += buf.add(obs, np.array([0, 1]), obs[:, 0] + 1.0, ends & (ids == 0), ends & (ids == 1), ids)
        for i in (0, 1):
            t[i] = 0 if ends[i] else t[i] + 1
    by_env = {i: [e for e in finished if e.env_id == i] for i in (0, 1)}
    assert [len(e) for e in by_env[0]] == [3, 3, 3, 3] and [len(e) for e in by_env[1]] == [5, 5]
    e = by_env[1][0]
    assert e.obs[:, 0].tolist() == [0, 1, 2, 3, 4] and e.rewards.tolist() == [1, 2, 3, 4, 5]
    assert e.actions.tolist() == [1] * 5 and not e.terminated and by_env[0][0].terminated
    assert e.total_reward == 15.0
    assert buf.running_lengths().tolist() == [0, 2]
    buf.discard_running()
    assert buf.running_lengths().tolist() == [0, 0]
    with pytest.raises(ValueError, match="once per add"):
        buf.add(np.zeros((2, 1)), np.zeros(2), np.zeros(2), np.zeros(2, bool), np.zeros(2, bool), np.array([1, 1]))


def test_discounts_above_one_are_refused():
    r = torch.zeros(2, 1)
    v = torch.zeros(3, 1)
    no = torch.zeros(2, 1, dtype=torch.bool)
    with pytest.raises(ValueError, match="gamma"):
        gae_advantages(r, v, no, no, ~no, gamma=1.5)
    with pytest.raises(ValueError, match="lam"):
        gae_advantages(r, v, no, no, ~no, gamma=0.9, lam=1.5)
    with pytest.raises(ValueError, match="gamma"):
        returns_to_go([1.0], 1.5)
