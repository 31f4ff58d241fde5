"""REINFORCE (chapter 9): the loss's gradient against an analytic reference, returns-to-go wiring, episodes that
straddle an update, learning on a tiny environment, save/load and determinism."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbook.agents.pg import PGConfig, ReinforceAgent
from rlbook.envs.counting import ChainEnv, CountingEnv
from rlbook.rollout import returns_to_go
from rlbook.train import Trainer

BOX3 = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)


def linear_agent(**overrides) -> ReinforceAgent:
    return ReinforceAgent(BOX3, gym.spaces.Discrete(2), PGConfig(hidden=(), seed=0, device="cpu", **overrides))


def test_policy_gradient_matches_the_analytic_score_function():
    """For a linear softmax policy, d log pi(a|s) / dW = (onehot(a) - pi(.|s)) s^T: the loss's gradient must be
    -mean_t (G_t - b) (onehot(a_t) - pi_t) s_t^T, minus beta times the entropy's gradient."""
    torch.manual_seed(0)
    for baseline in (False, True):
        agent = linear_agent(baseline=baseline)
        obs = torch.randn(7, 3)
        actions = torch.tensor([0, 1, 1, 0, 1, 0, 0])
        g = torch.randn(7) * 3 + 1
        loss, _ = agent.loss(obs, actions, g)
        agent.optimizer.zero_grad()
        loss.backward()
        w = agent.policy.head.weight.detach()
        b = agent.policy.head.bias.detach()
        pi = torch.softmax(obs @ w.T + b, dim=1)
        weights = g - g.mean() if baseline else g
        score = torch.nn.functional.one_hot(actions, 2).float() - pi
        expected_w = -(weights[:, None, None] * score[:, :, None] * obs[:, None, :]).mean(0)
        expected_b = -(weights[:, None] * score).mean(0)
        torch.testing.assert_close(agent.policy.head.weight.grad, expected_w)
        torch.testing.assert_close(agent.policy.head.bias.grad, expected_b)


def test_entropy_bonus_gradient_by_finite_differences():
    agent = linear_agent(entropy_beta=0.5)
    obs = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    actions = torch.tensor([0, 1, 0, 1, 1])
    g = torch.zeros(5)  # no policy term: only the entropy bonus moves the weights
    loss, parts = agent.loss(obs, actions, g)
    agent.optimizer.zero_grad()
    loss.backward()
    w = agent.policy.head.weight
    eps = 1e-3
    with torch.no_grad():
        for i, j in ((0, 0), (1, 2)):
            w[i, j] += eps
            up = agent.loss(obs, actions, g)[0]
            w[i, j] -= 2 * eps
            down = agent.loss(obs, actions, g)[0]
            w[i, j] += eps
            assert w.grad[i, j].item() == pytest.approx(((up - down) / (2 * eps)).item(), abs=1e-3)
    assert loss.item() == pytest.approx(-0.5 * parts["entropy"].item())


def test_the_batch_holds_each_episodes_returns_to_go():
    env = CountingEnv(4)  # rewards 1, 2, 3, 4, then termination
    agent = ReinforceAgent(env.observation_space, env.action_space,
                           PGConfig(gamma=0.5, episodes_per_update=3, seed=0, device="cpu"))
    seen = []
    agent.learn_from = lambda obs, actions, g: seen.append((obs.clone(), g.clone())) or {}
    Trainer(agent, env, total_steps=12, seed=0).run()
    obs, g = seen[0]
    expected = np.tile(returns_to_go([1.0, 2.0, 3.0, 4.0], 0.5), 3)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-6)
    assert obs[:, 0].tolist() == [0, 1, 2, 3] * 3  # the steps of the three episodes, in order
    assert agent.dropped_steps == 0


def test_episodes_that_straddle_an_update_are_dropped():
    # two environments, episodes of 3 and 5 steps; an update after every 2 finished episodes
    env = gym.vector.SyncVectorEnv([lambda: CountingEnv(3), lambda: CountingEnv(5)])
    agent = ReinforceAgent(env.single_observation_space, env.single_action_space,
                           PGConfig(episodes_per_update=2, seed=0, device="cpu"))
    lengths = []
    real = agent.learn_from

    def spy(obs, actions, g):
        lengths.append(len(g))
        return real(obs, actions, g)

    agent.learn_from = spy
    Trainer(agent, env, total_steps=40, seed=0).run()
    # vector steps 1-3: env 0's first episode; step 4 only resets env 0; step 5 ends env 1's first episode and
    # is the first step of env 0's second one. The update after step 5 learns from 3 + 5 steps, and env 0's
    # second episode, whose first action the old policy chose, is dropped when it ends (3 steps).
    assert lengths[0] == 8
    assert agent.dropped_steps >= 3
    assert all(n in (6, 8, 10) for n in lengths)  # only whole episodes: 3+3, 3+5 or 5+5 steps


def test_reinforce_learns_a_short_corridor():
    env = ChainEnv(4)
    agent = ReinforceAgent(env.observation_space, env.action_space,
                           PGConfig(gamma=0.9, lr=0.05, episodes_per_update=4, hidden=(16,), seed=0,
                                    device="cpu"))
    start = np.eye(4, dtype=np.float32)[:1]
    right_before = agent.probabilities(start)[0, 1]
    agent.learn(env, total_steps=3_000, seed=0)
    obs, _ = env.reset(seed=1)
    total = 0.0
    for _ in range(20):
        obs, r, term, trunc, _ = env.step(agent.act(obs, explore=False))
        total += r
        if term or trunc:
            break
    assert term and total > 0  # the greedy policy walks to the rewarding end
    assert agent.probabilities(start)[0, 1] > max(0.9, right_before)
    assert agent.num_updates > 10


def test_save_load_round_trip_and_determinism(tmp_path):
    def run():
        env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="vector_entry_point")
        agent = ReinforceAgent(env.single_observation_space, env.single_action_space,
                               PGConfig.cartpole(seed=3, device="cpu", hidden=(16,)))
        Trainer(agent, env, total_steps=600, seed=3).run()
        return agent

    a, b = run(), run()
    for p, q in zip(a.policy.parameters(), b.policy.parameters()):
        assert torch.equal(p, q)
    assert a.num_updates > 0
    path = a.save(tmp_path / "pg.pt")
    c = ReinforceAgent.from_checkpoint(path)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(c.probabilities(obs), a.probabilities(obs))
    assert c.num_updates == a.num_updates and c.num_steps == a.num_steps


def test_acting_samples_from_the_policy_and_greedy_takes_the_mode():
    agent = linear_agent()
    with torch.no_grad():
        agent.policy.head.weight.zero_()
        agent.policy.head.bias.copy_(torch.tensor([0.0, np.log(3.0)]))  # pi = (0.25, 0.75) everywhere
    obs = np.zeros((20_000, 3), np.float32)
    share = agent.act_batch(obs, explore=True).mean()
    assert share == pytest.approx(0.75, abs=0.01)
    assert (agent.act_batch(obs[:5], explore=False) == 1).all()
    with pytest.raises(ValueError, match="episodes_per_update"):
        PGConfig(episodes_per_update=0)
    with pytest.raises(TypeError, match="flat"):
        ReinforceAgent(gym.spaces.Box(0, 1, (2, 2)), gym.spaces.Discrete(2))


def test_entropy_and_kl_by_hand():
    agent = linear_agent()
    with torch.no_grad():
        agent.policy.head.weight.zero_()
        agent.policy.head.bias.zero_()  # uniform policy: entropy ln 2
    obs = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    actions = torch.tensor([0, 1, 1, 0, 1, 1])
    g = torch.arange(6.0)
    _, parts = agent.loss(obs, actions, g)
    assert parts["entropy"].item() == pytest.approx(np.log(2.0))
    before = torch.log_softmax(agent.policy(obs), dim=1).detach()
    metrics = agent.learn_from(obs, actions, g)
    after = torch.log_softmax(agent.policy(obs), dim=1).detach()
    kl = (before.exp() * (before - after)).sum(dim=1).mean().item()
    assert metrics["kl"] == pytest.approx(kl, rel=1e-5) and metrics["kl"] > 0
    assert metrics["entropy"] == pytest.approx(np.log(2.0))
    assert agent.num_updates == 1 and metrics["steps"] == 6


def test_each_update_uses_fresh_gradients_and_clipping():
    """Two updates equal two independent Adam steps on their own gradients (no accumulation), and
    max_grad_norm bounds the gradient."""
    obs = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))
    actions = torch.tensor([0, 1] * 4)
    g1, g2 = torch.linspace(-2, 3, 8), torch.linspace(4, -1, 8)
    agent = linear_agent(lr=0.1)
    twin = linear_agent(lr=0.1)
    agent.learn_from(obs, actions, g1)
    agent.learn_from(obs, actions, g2)
    for g in (g1, g2):
        loss, _ = twin.loss(obs, actions, g)
        twin.optimizer.zero_grad()
        loss.backward()
        twin.optimizer.step()
    for p, q in zip(agent.policy.parameters(), twin.policy.parameters()):
        torch.testing.assert_close(p, q)
    clipped = linear_agent(max_grad_norm=1e-3)
    loss, _ = clipped.loss(obs, actions, g1 * 100)
    clipped.learn_from(obs, actions, g1 * 100)
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in clipped.policy.parameters()]))
    assert norm.item() <= 1e-3 * 1.001


def test_observe_by_hand_grows_per_environment_state_and_counts_steps():
    from rlbook.transition import Transition

    space = gym.spaces.Discrete(2, start=1)  # actions 1 and 2
    agent = ReinforceAgent(BOX3, space, PGConfig(episodes_per_update=1, seed=0, device="cpu"))

    def rows(env_ids, actions, rewards, done):
        n = len(env_ids)
        return Transition(obs=np.full((n, 3), 0.5, np.float32), action=np.array(actions),
                          reward=np.array(rewards, np.float32), next_obs=np.zeros((n, 3), np.float32),
                          terminated=np.array(done), truncated=np.zeros(n, bool), env_ids=np.array(env_ids))

    agent.observe(rows([2], [2], [1.0], [False]))  # env 2 first: per-env state must grow to 3 entries
    agent.observe(rows([0, 2], [1, 1], [5.0, 2.0], [True, True]))
    assert len(agent._started_at) == 3
    assert agent.num_steps == 3
    assert len(agent.batch) == 2 and agent.batch_returns == [5.0, 3.0]
    obs, actions, g = agent.batch[1]
    assert actions.tolist() == [1, 0]  # actions stored from 0 (the space starts at 1)
    np.testing.assert_allclose(g, [1.0 + 0.99 * 2.0, 2.0])
    metrics = agent.update()
    assert metrics["episode_return"] == 4.0 and metrics["episodes"] == 2.0
    # env 1 begins an episode after the update: it is fresh; env 0's next one too
    agent.observe(rows([1], [2], [1.0], [True]))
    assert len(agent.batch) == 1 and agent.dropped_steps == 0
    # a new environment whose id equals the number known so far, beside a smaller one: the state grows again
    agent.observe(rows([0, 3], [1, 1], [1.0, 1.0], [False, True]))
    assert len(agent._started_at) == 4 and len(agent.batch) == 2
    assert set(np.asarray(agent.act_batch(np.zeros((50, 3), np.float32))).tolist()) <= {1, 2}


def test_sampling_never_returns_an_action_past_the_last_when_rounding_leaves_a_gap():
    agent = linear_agent()
    agent.probabilities = lambda obs: np.tile([0.5, 0.5 - 1e-12], (len(obs), 1))  # rows sum to just under 1

    class Top:
        def random(self, n):
            return np.full(n, 1.0 - 1e-13)

    agent.rng = Top()
    assert agent.act_batch(np.zeros((3, 3), np.float32)).tolist() == [1, 1, 1]


# ---------------------------------------------------------------------- n-step policy gradient
def nstep_rows(env_ids, obs0, actions, rewards, terminated, truncated=None):
    from rlbook.transition import Transition

    n = len(env_ids)
    return Transition(obs=np.array([[o, 0.0, 0.0] for o in obs0], np.float32), action=np.array(actions),
                      reward=np.array(rewards, np.float32), next_obs=np.zeros((n, 3), np.float32),
                      terminated=np.array(terminated), truncated=np.zeros(n, bool) if truncated is None
                      else np.array(truncated), env_ids=np.array(env_ids))


def test_nstep_weights_by_hand_with_termination_truncation_and_two_envs():
    from rlbook.agents.pg import NStepPGAgent, NStepPGConfig

    agent = NStepPGAgent(BOX3, gym.spaces.Discrete(2), NStepPGConfig(
        gamma=0.5, reward_steps=3, batch_steps=100, baseline=False, seed=0, device="cpu"))
    # env 0: rewards 1, 2, 4, 8 then termination; env 1: rewards 16, 32 then truncation
    agent.observe(nstep_rows([0, 1], [0, 10], [0, 1], [1.0, 16.0], [False, False]))
    agent.observe(nstep_rows([0, 1], [1, 11], [1, 0], [2.0, 32.0], [False, False], [False, True]))
    assert [r[2] for r in agent._ready] == [16 + 0.5 * 32, 32.0]  # truncation flushes, no bootstrap
    agent.observe(nstep_rows([0], [2], [1], [4.0], [False]))
    assert agent._ready[-1][2] == 1 + 0.5 * 2 + 0.25 * 4  # the window is full: step 0 leaves with 3 rewards
    agent.observe(nstep_rows([0], [3], [0], [8.0], [True]))
    got = {float(r[0][0]): r[2] for r in agent._ready}
    assert got == {10.0: 32.0, 11.0: 32.0, 0.0: 3.0, 1.0: 2 + 0.5 * 4 + 0.25 * 8, 2.0: 4 + 0.5 * 8, 3.0: 8.0}
    assert [r[1] for r in agent._ready if r[0][0] < 10] == [0, 1, 1, 0]  # actions travel with their steps
    assert agent._scales == [r[2] for r in agent._ready]  # no baseline: the weight is the n-step reward


def test_nstep_running_mean_baseline_and_batches():
    from rlbook.agents.pg import NStepPGAgent, NStepPGConfig

    agent = NStepPGAgent(BOX3, gym.spaces.Discrete(2), NStepPGConfig(
        gamma=0.9, reward_steps=1, batch_steps=3, seed=0, device="cpu"))
    seen = []
    agent.learn_from = lambda obs, actions, w: seen.append(w.clone()) or {}
    for r in (1.0, 3.0, 5.0, 7.0):  # n = 1: each step's weight is its reward minus the mean so far
        agent.observe(nstep_rows([0], [0], [0], [r], [False]))
    metrics = agent.update()
    torch.testing.assert_close(seen[0], torch.tensor([1 - 1.0, 3 - 2.0, 5 - 3.0, 7 - 4.0]))
    assert metrics["mean_nstep_reward"] == 4.0 and agent.update() == {}  # the batch was used up
    agent.observe(nstep_rows([0], [0], [0], [-20.0], [True]))
    assert agent._scales == [-20.0 - (16 - 20) / 5]


def test_nstep_pg_learns_a_short_corridor_and_round_trips(tmp_path):
    from rlbook.agents.pg import NStepPGAgent, NStepPGConfig

    env = ChainEnv(4)
    agent = NStepPGAgent(env.observation_space, env.action_space, NStepPGConfig(
        gamma=0.9, lr=0.02, reward_steps=4, batch_steps=8, hidden=(16,), seed=0, device="cpu"))
    start = np.eye(4, dtype=np.float32)[:1]
    before = agent.probabilities(start)[0, 1]
    agent.learn(env, total_steps=3_000, seed=0)
    assert agent.probabilities(start)[0, 1] > max(0.9, before)
    assert agent.num_updates > 100 and agent.reward_count > 2_000
    c = NStepPGAgent.from_checkpoint(agent.save(tmp_path / "npg.pt"))
    assert (c.reward_sum, c.reward_count) == (agent.reward_sum, agent.reward_count)
    np.testing.assert_array_equal(c.probabilities(start), agent.probabilities(start))


def test_per_sample_gradients_match_autograd_one_by_one_and_average_to_the_batch_gradient():
    from rlbook.agents.pg import per_sample_gradients

    agent = ReinforceAgent(BOX3, gym.spaces.Discrete(3), PGConfig(hidden=(5,), seed=0, device="cpu"))
    torch.manual_seed(1)
    obs, actions, w = torch.randn(6, 3), torch.tensor([0, 2, 1, 1, 0, 2]), torch.randn(6)
    grads = per_sample_gradients(agent.policy, obs, actions, w)
    params = list(agent.policy.parameters())
    assert grads.shape == (6, sum(p.numel() for p in params))
    for i in range(6):
        agent.policy.zero_grad()
        (-torch.log_softmax(agent.policy(obs[i:i + 1]), 1)[0, actions[i]] * w[i]).backward()
        torch.testing.assert_close(grads[i], torch.cat([p.grad.reshape(-1) for p in params]))
    agent.policy.zero_grad()
    loss, _ = agent.loss(obs, actions, w)  # no baseline, no entropy bonus: the mean of the rows
    loss.backward()
    torch.testing.assert_close(grads.mean(0), torch.cat([p.grad.reshape(-1) for p in params]))
    with pytest.raises(ValueError, match="one row per sample"):
        per_sample_gradients(agent.policy, obs, actions[:5], w)


def test_gradient_variance_by_hand_and_a_baseline_lowers_it():
    from rlbook.agents.pg import gradient_variance, per_sample_gradients

    g = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1); squared distances 2 and 2
    got = gradient_variance(g)
    assert got == {"variance": 2.0, "mean_sq_norm": 5.0, "snr": 2.5}
    with pytest.raises(ValueError, match="n >= 2"):
        gradient_variance(g[:1])
    agent = linear_agent()
    torch.manual_seed(0)
    obs, actions = torch.randn(500, 3), torch.randint(0, 2, (500,))
    returns = 50 + torch.randn(500)  # large positive returns, as on CartPole
    raw = gradient_variance(per_sample_gradients(agent.policy, obs, actions, returns))
    centred = gradient_variance(per_sample_gradients(agent.policy, obs, actions, returns - returns.mean()))
    assert centred["variance"] < raw["variance"] / 100


def test_nstep_observe_and_update_details():
    from rlbook.agents.pg import NStepPGAgent, NStepPGConfig

    space = gym.spaces.Discrete(2, start=1)  # actions 1 and 2
    agent = NStepPGAgent(BOX3, space, NStepPGConfig(reward_steps=1, batch_steps=2, gamma=0.9, seed=0,
                                                    device="cpu"))
    seen = []
    agent.learn_from = lambda obs, actions, w: seen.append((obs.clone(), actions.clone(), w.clone())) or {}
    agent.observe(nstep_rows([0], [0.5], [2], [4.0], [False]))
    assert agent.num_steps == 1 and agent.update() == {}  # one step ready, the batch needs two
    agent.observe(nstep_rows([0], [1.5], [1], [2.0], [False]))
    assert agent.num_steps == 2
    metrics = agent.update()  # exactly batch_steps steps: the update happens
    obs, actions, w = seen[0]
    assert actions.tolist() == [1, 0]  # stored from 0
    assert obs[:, 0].tolist() == [0.5, 1.5]
    torch.testing.assert_close(w, torch.tensor([0.0, 2.0 - 3.0]))
    assert metrics["mean_nstep_reward"] == 3.0
    single = NStepPGAgent(BOX3, gym.spaces.Discrete(2), NStepPGConfig(reward_steps=1, batch_steps=1, seed=0,
                                                                      device="cpu"))
    single.observe(nstep_rows([0], [0.0], [0], [5.0], [True]))
    assert single.update()["mean_nstep_reward"] == 5.0


def test_gradient_variance_on_more_rows_than_columns_and_constant_rows():
    from rlbook.agents.pg import gradient_variance

    g = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 3.0]])  # mean (2, 1)
    # squared distances: 4 + 1, 0 + 1, 4 + 4 -> mean 14 / 3
    got = gradient_variance(g)
    assert got["variance"] == pytest.approx(14 / 3) and got["mean_sq_norm"] == pytest.approx(5.0)
    assert gradient_variance(torch.ones(4, 3)) == {"variance": 0.0, "mean_sq_norm": 3.0, "snr": math.inf}
    small = gradient_variance(torch.tensor([[1.0], [1.2]]))  # variance 0.01 < 1
    assert small["snr"] == pytest.approx(1.21 / 0.01)
