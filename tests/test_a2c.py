"""A2C (chapter 10): the loss on a rollout against a hand computation, autoreset rows ignored, learning on a
tiny environment, checkpoints and determinism."""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlbook.agents.a2c import A2CAgent, A2CConfig
from rlbook.envs.counting import ChainEnv, CountingEnv
from rlbook.nets import ActorCritic
from rlbook.rollout import MaskedTransition, gae_advantages
from rlbook.train import Trainer


def counting_vector():
    return gym.vector.SyncVectorEnv([lambda: CountingEnv(3), lambda: CountingEnv(5, max_episode_steps=4)])


class Capture(A2CAgent):
    """Keeps a copy of every rollout it learns from."""

    def learn_from_rollout(self, rollout):
        self.seen = getattr(self, "seen", [])
        self.seen.append({k: np.array(getattr(rollout, k), copy=True)
                          for k in ("obs", "actions", "rewards", "terminated", "truncated", "valid",
                                    "last_next_obs")})
        return super().learn_from_rollout(rollout)


def test_the_loss_is_the_hand_computed_a2c_loss_over_valid_rows():
    env = counting_vector()
    cfg = A2CConfig(n_steps=6, gamma=0.9, gae_lambda=0.8, entropy_beta=0.05, value_coef=0.7,
                    max_grad_norm=None, lr=1e-3, hidden=(8,), seed=0, device="cpu")
    agent = Capture(env.single_observation_space, env.single_action_space, cfg)
    agent.optimizer = torch.optim.SGD(agent.net.parameters(), lr=1.0)  # the step is then the gradient itself
    before = {k: v.clone() for k, v in agent.net.state_dict().items()}
    Trainer(agent, env, total_steps=10, seed=0).run()  # 6 vector steps: one update
    r = agent.seen[0]
    assert not r["valid"].all()  # the rollout holds autoreset rows
    # recompute the loss from scratch with the weights before the update
    net = ActorCritic((3,), 2, hidden=(8,))
    net.load_state_dict(before)
    obs = torch.as_tensor(r["obs"].reshape(12, 3))
    logits, values = net(obs)
    with torch.no_grad():
        last = net.value(torch.as_tensor(r["last_next_obs"]))
    adv, targets = gae_advantages(torch.as_tensor(r["rewards"]), torch.cat([values.detach().view(6, 2), last[None]]),
                                  torch.as_tensor(r["terminated"]), torch.as_tensor(r["truncated"]),
                                  torch.as_tensor(r["valid"]), 0.9, 0.8)
    keep = torch.as_tensor(r["valid"].reshape(-1))
    logp = F.log_softmax(logits, dim=1)[keep]
    a = torch.as_tensor(r["actions"].reshape(-1))[keep]
    policy = -(logp.gather(1, a[:, None]).squeeze(1) * adv.view(-1)[keep]).mean()
    value = ((targets.view(-1)[keep] - values[keep]) ** 2).mean()
    entropy = -(logp.exp() * logp).sum(1).mean()
    loss = policy + 0.7 * value - 0.05 * entropy
    net.zero_grad()
    loss.backward()
    for (name, p), q in zip(agent.net.named_parameters(), net.parameters()):
        torch.testing.assert_close(before[name] - p.detach(), q.grad, rtol=1e-4, atol=1e-6)


def test_autoreset_rows_change_nothing_but_the_bootstrap_of_a_truncated_row():
    """Whatever the action stored on an invalid row, and its observation when the episode before it terminated,
    the update is the same. (After a truncation, the invalid row's observation is the final observation, the
    state the truncated row bootstraps from: that one matters.)"""
    env = counting_vector()
    cfg = A2CConfig(n_steps=6, hidden=(8,), seed=0, device="cpu", max_grad_norm=None)
    results = []
    for garbage in (False, True):
        agent = A2CAgent(env.single_observation_space, env.single_action_space, cfg)
        state = {k: v.clone() for k, v in agent.net.state_dict().items()}
        Trainer(agent, counting_vector(), total_steps=10, seed=0, train=True,
                plugins=[]).run() if not garbage else None
        if garbage:
            # replay the same rollout with the invalid rows scrambled
            ref = Capture(env.single_observation_space, env.single_action_space, cfg)
            Trainer(ref, counting_vector(), total_steps=10, seed=0).run()
            r = ref.seen[0]
            agent.net.load_state_dict(state)
            agent.begin_run(2)
            rb = agent.rollout
            for k in ("obs", "actions", "rewards", "terminated", "truncated", "valid"):
                getattr(rb, k)[:] = r[k]
            rb.last_next_obs[:] = r["last_next_obs"]
            after_termination = np.zeros_like(rb.valid)
            after_termination[1:] = rb.terminated[:-1]
            assert after_termination.any() and (~rb.valid & ~after_termination).any()
            rb.obs[after_termination] = 99.0
            rb.actions[~rb.valid] = 1 - rb.actions[~rb.valid]
            rb.pos = rb.steps
            agent.update()
        results.append([p.detach().clone() for p in agent.net.parameters()])
    for p, q in zip(*results):
        torch.testing.assert_close(p, q)


def test_a2c_learns_a_short_corridor():
    env = gym.vector.SyncVectorEnv([lambda: ChainEnv(5)] * 4)
    agent = A2CAgent(env.single_observation_space, env.single_action_space,
                     A2CConfig(lr=3e-3, n_steps=5, entropy_beta=0.01, hidden=(16,), seed=0, device="cpu"))
    Trainer(agent, env, total_steps=6_000, seed=0).run()
    start = np.eye(5, dtype=np.float32)[:1]
    assert agent.probabilities(start)[0, 1] > 0.9
    assert agent.values(start)[0] > 0.5  # the return of walking right, discounted, is 0.96 * 0.99**3


def test_checkpoint_round_trip_and_determinism(tmp_path):
    def run():
        env = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point")
        agent = A2CAgent(env.single_observation_space, env.single_action_space,
                         A2CConfig.cartpole(seed=2, device="cpu"))
        Trainer(agent, env, total_steps=400, seed=2).run()
        return agent

    a, b = run(), run()
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)
    path = a.save(tmp_path / "a2c.pt")
    c = A2CAgent.from_checkpoint(path)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(c.probabilities(obs), a.probabilities(obs))
    np.testing.assert_array_equal(c.values(obs), a.values(obs))
    assert c.num_updates == a.num_updates == 20


def test_settings_and_networks():
    with pytest.raises(ValueError, match="n_steps"):
        A2CConfig(n_steps=0)
    with pytest.raises(ValueError, match="gae_lambda"):
        A2CConfig(gae_lambda=1.5)
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = A2CAgent(space, gym.spaces.Discrete(6), A2CConfig.pong(seed=0, device="cpu"))
    assert agent.net.shared and agent.net.critic_body is agent.net.actor_body
    frames = np.zeros((2, 4, 84, 84), np.uint8)
    assert agent.act_batch(frames).shape == (2,)
    probs = agent.probabilities(frames)
    np.testing.assert_allclose(probs, 1 / 6, atol=0.02)  # the small policy head starts near uniform
    separate = ActorCritic((4,), 2, shared=False)
    assert separate.critic_body is not separate.actor_body
    with pytest.raises(TypeError, match="MaskedTransition"):
        A2CAgent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)).observe("rows")


def test_greedy_and_sampled_actions_with_a_shifted_action_space():
    space = gym.spaces.Discrete(3, start=1)
    agent = A2CAgent(gym.spaces.Box(-1, 1, (2,), np.float32), space, A2CConfig(hidden=(4,), seed=0, device="cpu"))
    with torch.no_grad():
        agent.net.policy_head.weight.zero_()
        agent.net.policy_head.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))
    obs = np.zeros((4000, 2), np.float32)
    assert (agent.act_batch(obs[:3], explore=False) == 2).all()  # the most likely action, shifted by start
    sampled = agent.act_batch(obs, explore=True)
    expected = torch.softmax(torch.tensor([0.0, 2.0, 0.0]), 0).numpy()
    np.testing.assert_allclose(np.bincount(sampled - 1, minlength=3) / len(obs), expected, atol=0.03)
    agent.probabilities = lambda o: np.tile([0.5, 0.25, 0.25 - 1e-12], (len(o), 1))

    class Top:
        def random(self, n):
            return np.full(n, 1.0 - 1e-13)

    agent.rng = Top()
    assert agent.act_batch(obs[:2]).tolist() == [3, 3]  # a rounding gap at the top is the last action


def test_observe_counts_steps_restarts_its_rollout_for_a_new_vector_and_stores_actions_from_zero():
    from rlbook.rollout import MaskedTransition

    space = gym.spaces.Discrete(2, start=5)
    agent = A2CAgent(gym.spaces.Box(-1, 1, (2,), np.float32), space,
                     A2CConfig(n_steps=3, hidden=(4,), seed=0, device="cpu"))

    def rows(n, valid):
        return MaskedTransition(obs=np.zeros((n, 2), np.float32), action=np.full(n, 6), reward=np.ones(n, np.float32),
                                next_obs=np.zeros((n, 2), np.float32), terminated=np.zeros(n, bool),
                                truncated=np.zeros(n, bool), env_ids=np.arange(n), valid=np.array(valid))

    agent.observe(rows(2, [True, False]))
    assert agent.num_steps == 1 and agent.rollout.num_envs == 2 and agent.rollout.pos == 1
    assert agent.rollout.actions[0].tolist() == [1, 1]
    agent.observe(rows(3, [True, True, True]))  # another vector: a fresh rollout of its size
    assert agent.rollout.num_envs == 3 and agent.rollout.pos == 1 and agent.num_steps == 4


def test_normalized_advantages_and_a_single_valid_row():
    env = counting_vector()
    cfg = A2CConfig(n_steps=6, gamma=0.9, normalize_advantage=True, entropy_beta=0.0, value_coef=0.0,
                    max_grad_norm=None, lr=1e-3, hidden=(8,), seed=0, device="cpu")
    agent = Capture(env.single_observation_space, env.single_action_space, cfg)
    agent.optimizer = torch.optim.SGD(agent.net.parameters(), lr=1.0)
    before = {k: v.clone() for k, v in agent.net.state_dict().items()}
    Trainer(agent, env, total_steps=10, seed=0).run()
    r = agent.seen[0]
    net = ActorCritic((3,), 2, hidden=(8,))
    net.load_state_dict(before)
    logits, values = net(torch.as_tensor(r["obs"].reshape(12, 3)))
    with torch.no_grad():
        last = net.value(torch.as_tensor(r["last_next_obs"]))
    adv, _ = gae_advantages(torch.as_tensor(r["rewards"]), torch.cat([values.detach().view(6, 2), last[None]]),
                            torch.as_tensor(r["terminated"]), torch.as_tensor(r["truncated"]),
                            torch.as_tensor(r["valid"]), 0.9, 1.0)
    keep = torch.as_tensor(r["valid"].reshape(-1))
    a = adv.view(-1)[keep]
    a = (a - a.mean()) / (a.std(unbiased=False) + 1e-8)  # mean 0, std 1 over the valid rows
    logp = F.log_softmax(logits, dim=1)[keep]
    act = torch.as_tensor(r["actions"].reshape(-1))[keep]
    loss = -(logp.gather(1, act[:, None]).squeeze(1) * a).mean()
    net.zero_grad()
    loss.backward()
    for (name, p), q in zip(agent.net.named_parameters(), net.parameters()):
        grad = torch.zeros_like(p) if q.grad is None else q.grad  # the critic gets no gradient (value_coef 0)
        torch.testing.assert_close(before[name] - p.detach(), grad, rtol=1e-4, atol=1e-6)
    # one environment, one step: the means divide by the one valid row
    one = A2CAgent(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2),
                   A2CConfig(n_steps=1, hidden=(4,), seed=0, device="cpu", max_grad_norm=None, entropy_beta=0.0,
                             value_coef=1.0, gamma=0.0))
    one.begin_run(1)
    rb = one.rollout
    rb.obs[0, 0] = [0.3, -0.2]
    rb.rewards[0, 0], rb.valid[0, 0], rb.pos = 2.0, True, 1
    value = one.values(rb.obs[0])[0]
    metrics = one.update()
    assert metrics["value_loss"].item() == pytest.approx((2.0 - value) ** 2, rel=1e-5)


def test_a_rollout_without_a_valid_row_changes_nothing():
    # one environment, one-step rollouts: the step after an episode's end is an autoreset row and nothing else
    agent = A2CAgent(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2),
                     A2CConfig(n_steps=1, hidden=(4,), seed=0, device="cpu"))
    agent.begin_run(1)
    agent.rollout.obs[0, 0] = [0.5, 0.5]
    agent.rollout.pos = 1  # valid is False
    before = [p.detach().clone() for p in agent.net.parameters()]
    metrics = agent.update()
    assert all(torch.isfinite(v).all() for v in metrics.values())
    for p, q in zip(before, agent.net.parameters()):
        assert torch.equal(p, q)


def test_two_updates_are_two_steps_on_fresh_gradients():
    env = counting_vector()
    cfg = A2CConfig(n_steps=3, hidden=(8,), seed=0, device="cpu", max_grad_norm=None, entropy_beta=0.02)
    agent = Capture(env.single_observation_space, env.single_action_space, cfg)
    agent.optimizer = torch.optim.SGD(agent.net.parameters(), lr=0.1)
    twin = A2CAgent(env.single_observation_space, env.single_action_space, cfg)
    twin.optimizer = torch.optim.SGD(twin.net.parameters(), lr=0.1)
    Trainer(agent, env, total_steps=12, seed=0).run()  # 6 vector steps: two rollouts
    assert len(agent.seen) == 2
    twin.begin_run(2)
    for r in agent.seen:  # replay both rollouts through a fresh agent, each from its own zero gradients
        for k in ("obs", "actions", "rewards", "terminated", "truncated", "valid"):
            getattr(twin.rollout, k)[:] = r[k]
        twin.rollout.last_next_obs[:] = r["last_next_obs"]
        twin.rollout.pos = twin.rollout.steps
        twin.optimizer.zero_grad()  # the reference starts each step from zero, whatever update() does
        twin.update()
    for p, q in zip(agent.net.parameters(), twin.net.parameters()):
        torch.testing.assert_close(p, q)


def _bench(name):
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    return importlib.import_module(name)


def test_variance_bench_weights_by_hand():
    """bench/pg_variance.py's four weightings on two episodes: one terminated (no bootstrap), one truncated
    (the critic's value of the final observation stands in for the rest)."""
    pg_variance = _bench("pg_variance")

    class Critic:  # V(s) = 10 * s[0]
        def values(self, obs):
            return 10.0 * np.asarray(obs)[:, 0].astype(np.float64)

    def episode(first, rewards, final, terminated):
        obs = np.array([[first + k, 0, 0, 0] for k in range(len(rewards))], np.float32)
        return {"obs": obs, "actions": np.zeros(len(rewards), int), "rewards": rewards,
                "final_obs": np.array([final, 0, 0, 0], np.float32), "terminated": terminated}

    gamma = 0.5
    rewards = [1.0] * 7
    w = pg_variance.weights_of(Critic(), [episode(0, rewards, 7, True), episode(1, [2.0, 4.0], 3, False)], gamma)
    g = np.r_[[sum(gamma ** k for k in range(7 - t)) for t in range(7)], [2 + 0.5 * 4, 4.0]]
    np.testing.assert_allclose(w["returns"], g)
    np.testing.assert_allclose(w["mean_baseline"], g - g.mean())
    v = np.r_[10.0 * np.arange(7), 10.0, 20.0]
    np.testing.assert_allclose(w["value_baseline"], g - v)
    # 5-step advantages: step 0 of episode 1 sums 5 rewards and bootstraps from V(s_5) = 50
    first = sum(gamma ** k for k in range(5)) + gamma ** 5 * 50.0 - 0.0
    assert w["a2c_advantage"][0] == pytest.approx(first)
    assert w["a2c_advantage"][6] == pytest.approx(1.0 - 60.0)  # terminated: nothing after the last reward
    # truncated episode: 2 + 0.5 * 4 + 0.25 * V(final = 3) = 4 + 7.5, minus V(s_0) = 10
    assert w["a2c_advantage"][7] == pytest.approx(2 + 0.5 * 4 + 0.25 * 30.0 - 10.0)
    assert w["a2c_advantage"][8] == pytest.approx(4 + 0.5 * 30.0 - 20.0)


def test_pong_bench_runs_end_to_end_and_writes_its_results():
    import json

    from rlbook.results import results_path

    a2c_pong = _bench("a2c_pong")
    name = f"_test_a2c_pong_{os.getpid()}"
    try:
        path = a2c_pong.main(["--device", "cpu", "--num-envs", "2", "--total-steps", "120", "--threads", "1",
                              "--env-threads", "1", "--results-name", name, "--quiet", "--n-steps", "3"])
        data = json.loads(path.read_text())
    finally:
        results_path(f"10_a2c/{name}").unlink(missing_ok=True)
    assert data["provenance"]["run"]["steps"] >= 120
    assert data["provenance"]["settings"]["config"]["n_steps"] == 3  # the override reached the agent
    assert data["provenance"]["run"]["updates"] >= 120 // (2 * 3)
    assert "a2c_pong_seconds_to_solve" not in data["metrics"]  # a GPU run's metric only
    assert data["metrics"]["a2c_pong_frames_per_second"]["median"] > 0


def test_the_importance_ratio_weights_each_policy_term_and_is_truncated():
    """A2CAgent.rollout_loss with the behaviour policy's probabilities: equal to the current ones -> the plain loss;
    twice as likely under the behaviour policy -> half the policy term; far less likely -> truncated at 1."""
    env = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point")
    agent = A2CAgent(env.single_observation_space, env.single_action_space, A2CConfig.cartpole(seed=0))
    Trainer(agent, env, total_steps=agent.config.n_steps * 4 - 4, seed=0).run()  # one rollout short of full
    obs = agent.rollout.last_next_obs.copy()
    agent.observe(MaskedTransition(
        obs=obs, action=np.zeros(4, np.int64), reward=np.ones(4, np.float32), next_obs=obs,
        terminated=np.zeros(4, bool), truncated=np.zeros(4, bool), env_ids=np.arange(4), valid=np.ones(4, bool)))
    rollout = agent.rollout
    assert rollout.full
    rollout.valid[0, 0] = False  # an autoreset row: left out of every mean, the ratio's too
    t, n = rollout.steps, rollout.num_envs
    probs = agent.probabilities(rollout.obs.reshape(t * n, -1))[np.arange(t * n), rollout.actions.reshape(-1)]
    plain = agent.rollout_loss(rollout)[1]["policy_loss"]
    same = agent.rollout_loss(rollout, behaviour=probs.reshape(t, n))[1]
    assert float(same["policy_loss"]) == pytest.approx(float(plain), rel=1e-5)
    assert float(same["importance_ratio"]) == pytest.approx(1.0, abs=1e-5)
    half = agent.rollout_loss(rollout, behaviour=np.minimum(2 * probs, 1e9).reshape(t, n))[1]
    assert float(half["policy_loss"]) == pytest.approx(float(plain) / 2, rel=1e-5)
    assert float(half["importance_ratio"]) == pytest.approx(0.5, rel=1e-5)
    rare = agent.rollout_loss(rollout, behaviour=(probs / 10).reshape(t, n))[1]
    assert float(rare["policy_loss"]) == pytest.approx(float(plain), rel=1e-5)  # ratio 10, truncated to 1
    loose = agent.rollout_loss(rollout, behaviour=(probs / 10).reshape(t, n), importance_clip=20.0)[1]
    assert float(loose["policy_loss"]) == pytest.approx(10 * float(plain), rel=1e-5)
