"""DQN: the Bellman target by hand, acting, learning cadence, checkpoints, errors and a learning test."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlbook.agents.base import Transition
from rlbook.agents.dqn import DQNAgent, DQNConfig, build_q_network, play
from rlbook.envs.counting import ChainEnv
from rlbook.evaluate import evaluate
from rlbook.nets import QHead
from rlbook.replay import ReplayBatch
from rlbook.train import Checkpoint, Trainer

BOX2 = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
TWO = gym.spaces.Discrete(2)


def small_config(**overrides) -> DQNConfig:
    base = DQNConfig(gamma=0.9, lr=1e-3, batch_size=32, buffer_size=5_000, learning_starts=100, train_freq=4,
                     gradient_steps=1, target_update_interval=50, epsilon_decay_steps=500, epsilon_end=0.05,
                     hidden=(32,), device="cpu", seed=0)
    return DQNConfig(**{**base.to_dict(), **overrides})


class Scaled(nn.Module):
    """A fixed 'Q-network' whose Q-values are the observation times ``sign``: Q(s) = sign * s."""

    def __init__(self, sign: float):
        super().__init__()
        self.sign = sign

    def forward(self, x):
        return self.sign * x


def hand_batch(agent: DQNAgent) -> dict:
    batch = ReplayBatch(
        obs=np.zeros((4, 2), np.float32), action=np.zeros(4, np.int64),
        reward=np.array([1, 2, 3, 4], np.float32),
        next_obs=np.array([[1, 3], [2, 5], [4, 0], [1, 2]], np.float32),
        terminated=np.array([False, True, False, False]),
        truncated=np.array([False, False, True, True]),  # truncated rows still bootstrap
        steps=np.array([1, 1, 1, 3]), indices=np.arange(4))
    return agent._to_device(batch)


def test_targets_plain_and_nstep_by_hand():
    agent = DQNAgent(BOX2, TWO, small_config())
    agent.target_net = Scaled(1.0)  # max_a Q_target(s', a) = max(s')
    targets = agent.compute_targets(hand_batch(agent))
    # 1 + 0.9 * 3; terminated: 2; truncated: 3 + 0.9 * 4; 3-step row: 4 + 0.9**3 * 2
    torch.testing.assert_close(targets, torch.tensor([3.7, 2.0, 6.6, 4 + 0.729 * 2]))


def test_targets_double_dqn_by_hand():
    agent = DQNAgent(BOX2, TWO, small_config(double=True))
    agent.target_net = Scaled(1.0)
    agent.q_net = Scaled(-1.0)  # the online net prefers the action with the smaller entry
    targets = agent.compute_targets(hand_batch(agent))
    torch.testing.assert_close(targets, torch.tensor([1 + 0.9 * 1, 2.0, 3 + 0.9 * 0, 4 + 0.729 * 1]))
    agent.config = small_config(double=False)  # same nets, plain target: the max, not the online choice
    torch.testing.assert_close(agent.compute_targets(hand_batch(agent)), torch.tensor([3.7, 2.0, 6.6, 5.458]))


def test_loss_is_huber_or_mse_of_the_taken_action():
    # targets 3.7 and 2 (see above) against Q(s, a=0) = 1 and 0: TD errors 2.7 and 2.
    # MSE: (2.7**2 + 2**2) / 2. Huber (smooth L1, delta 1): (2.7 - 0.5 + 2 - 0.5) / 2.
    for loss, expected in (("mse", (2.7**2 + 2.0**2) / 2), ("huber", (2.2 + 1.5) / 2)):
        agent = DQNAgent(BOX2, TWO, small_config(loss=loss))
        agent.target_net = Scaled(1.0)
        agent.q_net = Scaled(1.0)
        batch = {k: v[:2] for k, v in hand_batch(agent).items()}
        batch["obs"] = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # Q(s, a=0) = 1 and 0
        value, q_taken, td_error = agent.compute_loss(batch)
        assert value.item() == pytest.approx(expected, rel=1e-6)
        torch.testing.assert_close(q_taken, torch.tensor([1.0, 0.0]))
        torch.testing.assert_close(td_error, torch.tensor([2.7, 2.0]))  # target - Q: what prioritized replay uses
        batch["weights"] = torch.tensor([0.5, 1.0])  # importance weights scale each row's loss
        weighted, _, _ = agent.compute_loss(batch)
        per_row = [(2.7**2, 4.0) if loss == "mse" else (2.2, 1.5)][0]
        assert weighted.item() == pytest.approx((0.5 * per_row[0] + per_row[1]) / 2, rel=1e-6)


def test_act_uses_one_forward_pass_and_explores_at_epsilon_one():
    agent = DQNAgent(BOX2, gym.spaces.Discrete(3, start=1), small_config())
    calls = []
    agent.q_net.register_forward_hook(lambda *args: calls.append(1))
    obs = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    greedy = agent.act_batch(obs, explore=False)
    assert len(calls) == 1 and greedy.shape == (7,)
    np.testing.assert_array_equal(greedy, agent.q_values(obs).argmax(1).numpy() + 1)
    calls.clear()
    assert agent.epsilon == 1.0
    random_actions = agent.act_batch(np.repeat(obs, 30, axis=0), explore=True)
    assert len(calls) == 0  # every action random: no forward pass at all
    assert set(random_actions.tolist()) == {1, 2, 3}
    assert agent.act(obs[0], explore=False) in (1, 2, 3)


def test_update_cadence_and_metrics():
    agent = DQNAgent(BOX2, TWO, small_config(learning_starts=10, train_freq=4, gradient_steps=2, batch_size=4))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(3, 2)).astype(np.float32)
    for _ in range(12):
        nxt = rng.normal(size=(3, 2)).astype(np.float32)
        agent.observe(Transition(obs, rng.integers(2, size=3), np.ones(3, np.float32), nxt, np.zeros(3, bool),
                                 np.zeros(3, bool), np.arange(3)))
        obs = nxt
        metrics = agent.update()
        n = agent.num_steps
        expected = 0 if n < 10 else 2 * (1 + (n - 10) // 4)
        assert agent.gradient_steps_done == expected, n
        if metrics:
            assert isinstance(metrics["loss"], torch.Tensor) and metrics["loss"].ndim == 0
            assert metrics["q_mean"].ndim == 0 and 0 < metrics["epsilon"] <= 1
    assert agent.gradient_steps_done == 2 * (1 + (36 - 10) // 4)


def test_polyak_and_hard_target_updates():
    agent = DQNAgent(BOX2, TWO, small_config(tau=0.25))
    before = [p.clone() for p in agent.target_net.parameters()]
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.add_(1.0)
    agent.update_target()
    for old, new, online in zip(before, agent.target_net.parameters(), agent.q_net.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)
    agent.config = small_config(tau=1.0)
    agent.update_target()
    for new, online in zip(agent.target_net.parameters(), agent.q_net.parameters()):
        torch.testing.assert_close(new, online)


def test_errors_for_spaces_the_agent_cannot_take():
    with pytest.raises(TypeError, match="Discrete"):
        DQNAgent(BOX2, gym.spaces.Box(-1, 1, shape=(1,)), small_config())
    with pytest.raises(TypeError, match="Box"):
        DQNAgent(gym.spaces.Discrete(5), TWO, small_config())
    with pytest.raises(TypeError, match="nature_cnn"):
        DQNAgent(gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8), TWO, small_config())
    with pytest.raises(TypeError, match="mlp"):
        DQNAgent(BOX2, TWO, small_config(network="nature_cnn"))
    with pytest.raises(ValueError, match="loss"):
        DQNConfig(loss="l1")
    with pytest.raises(ValueError, match="tau"):
        DQNConfig(tau=0.0)


def test_nature_cnn_agent_acts_on_uint8_frames():
    space = gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8)
    agent = DQNAgent(space, gym.spaces.Discrete(6), DQNConfig.pong(device="cpu", seed=0))
    frames = np.random.default_rng(0).integers(0, 255, size=(2, 4, 84, 84), dtype=np.uint8)
    assert agent.act_batch(frames, explore=False).shape == (2,)
    assert isinstance(build_q_network(agent.config, space, 6).head, nn.Linear)


def test_conv1d_agent_acts_and_learns_on_stock_windows():
    from rlbook.envs.stocks import StocksEnv, synthetic_prices
    from rlbook.nets import Conv1dNet

    env = StocksEnv(synthetic_prices(300, seed=0), bars=20, layout="conv")
    cfg = small_config(network="conv1d", conv_channels=(4,), conv_kernel=3, hidden=(8,), dueling=True)
    agent = DQNAgent(env.observation_space, env.action_space, cfg)
    assert isinstance(agent.q_net, Conv1dNet) and isinstance(agent.q_net.head, QHead)
    before = [p.detach().clone() for p in agent.q_net.parameters()]
    agent.learn(env, total_steps=200, seed=0)
    assert agent.gradient_steps_done > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, agent.q_net.parameters()))
    with pytest.raises(TypeError, match="conv1d"):
        DQNAgent(BOX2, TWO, small_config(network="conv1d"))
    with pytest.raises(ValueError, match="conv_kernel must be odd"):
        small_config(conv_kernel=4)


def trained_chain_agent(steps: int = 600, **overrides) -> tuple[DQNAgent, ChainEnv]:
    env = ChainEnv(5)
    agent = DQNAgent(env.observation_space, env.action_space, small_config(**overrides))
    agent.learn(env, total_steps=steps, seed=0)
    return agent, env


def test_save_load_round_trip_restores_everything(tmp_path):
    agent, env = trained_chain_agent()
    assert agent.gradient_steps_done > 0
    path = agent.save(tmp_path / "dqn.pt")
    other = DQNAgent(env.observation_space, env.action_space, small_config(seed=123))
    with pytest.raises(ValueError, match="seed"):
        other.load(path)
    loaded = DQNAgent(env.observation_space, env.action_space, small_config())
    loaded.buffer = copy.deepcopy(agent.buffer)  # the buffer is not in the checkpoint: hand it over
    loaded._rows_stored = agent._rows_stored
    loaded.load(path)
    assert (loaded.num_steps, loaded.gradient_steps_done, loaded.epsilon) == (
        agent.num_steps, agent.gradient_steps_done, agent.epsilon)
    obs = np.eye(5, dtype=np.float32)
    torch.testing.assert_close(loaded.q_values(obs), agent.q_values(obs))
    np.testing.assert_array_equal(loaded.act_batch(obs, True), agent.act_batch(obs, True))  # same rng state
    for a, b in zip(agent.optimizer.state_dict()["state"].values(), loaded.optimizer.state_dict()["state"].values()):
        for key in a:
            torch.testing.assert_close(a[key], b[key])
    # training continues identically
    for learner in (agent, loaded):
        learner.learn(ChainEnv(5), total_steps=100, seed=7)
    for p, q in zip(agent.q_net.parameters(), loaded.q_net.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    rebuilt = DQNAgent.from_checkpoint(path, env.observation_space, env.action_space, device="cpu")
    assert rebuilt.config == small_config()


def test_checkpoint_plugin_resumes_at_the_same_step(tmp_path):
    path = tmp_path / "run.pt"
    env = ChainEnv(5)
    first = DQNAgent(env.observation_space, env.action_space, small_config())
    Trainer(first, env, total_steps=300, plugins=[Checkpoint(path)], seed=0).run()
    resumed = DQNAgent(env.observation_space, env.action_space, small_config())
    plugin = Checkpoint(path)
    trainer = Trainer(resumed, ChainEnv(5), total_steps=450, plugins=[plugin], seed=0)
    trainer.run()
    assert plugin.resumed_from_step == 300 and trainer.step == 450
    assert resumed.num_steps == 450
    # an empty buffer refills for learning_starts (100) steps before learning resumes
    expected = first.gradient_steps_done + (450 - 400) // 4 + 1
    assert resumed.gradient_steps_done == expected


def chain_q_star(length: int, gamma: float, step_cost: float) -> np.ndarray:
    """Exact optimal Q-values ``(length - 1, 2)`` of ChainEnv's non-terminal cells (0 = left, 1 = right)."""
    V = np.zeros(length)
    for _ in range(200):
        Q = np.zeros((length - 1, 2))
        for s in range(length - 1):
            for a, s2 in ((0, max(s - 1, 0)), (1, s + 1)):
                end = s2 == length - 1
                Q[s, a] = float(end) - step_cost + (0.0 if end else gamma * V[s2])
        V[: length - 1] = Q.max(axis=1)
    return Q


@pytest.mark.parametrize("switches", [{}, {"double": True}, {"n_step": 3}, {"double": True, "n_step": 3}])
def test_learns_the_exact_q_values_of_the_chain(switches):
    agent, env = trained_chain_agent(steps=2500, train_freq=2, **switches)
    learned = agent.q_values(np.eye(5, dtype=np.float32)[:4]).numpy()
    error = np.abs(learned - chain_q_star(5, 0.9, env.step_cost)).max()
    # One-step targets converge to Q* itself; n-step returns of an epsilon-greedy behaviour policy are
    # slightly biased (they include the exploratory steps), so they get a looser bound.
    assert error < (0.02 if switches.get("n_step", 1) == 1 else 0.15), learned
    assert evaluate(agent, env, n_episodes=3).mean == pytest.approx(env.optimal_return)


def test_play_records_frames_and_writes_an_animation(tmp_path):
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    agent = DQNAgent(env.observation_space, env.action_space, small_config(hidden=(8,)))
    path = agent.save(tmp_path / "cartpole.pt")
    frames, total = play(path, env, max_steps=5, seed=0, device="cpu", path=tmp_path / "ep.gif")
    assert len(frames) == int(total) + 1 <= 6 and frames[0].ndim == 3
    assert (tmp_path / "ep.gif").stat().st_size > 0


def test_epsilon_greedy_mixes_random_and_greedy_actions_at_the_right_rate():
    agent = DQNAgent(BOX2, gym.spaces.Discrete(4), small_config(epsilon_start=0.5, epsilon_end=0.5))
    obs = np.random.default_rng(0).normal(size=(4000, 2)).astype(np.float32)
    greedy = agent.act_batch(obs, explore=False)
    actions = agent.act_batch(obs, explore=True)
    # explore half the time, and a random action is the greedy one a quarter of the time: 0.5 + 0.5 / 4
    assert np.mean(actions == greedy) == pytest.approx(0.625, abs=0.03)


def two_vector_steps_of_five_envs(monkeypatch, agent, fake_step):
    """Feed ``agent`` two vector steps of 5 environments with ``fake_step`` in place of its gradient step and
    return the metrics of the second update."""
    monkeypatch.setattr(agent, "gradient_step", fake_step)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5, 2)).astype(np.float32)
    for _ in range(2):
        nxt = rng.normal(size=(5, 2)).astype(np.float32)
        agent.observe(Transition(obs, np.zeros(5, np.int64), np.ones(5, np.float32), nxt, np.zeros(5, bool),
                                 np.zeros(5, bool), np.arange(5)))
        obs = nxt
        metrics = agent.update()
    return metrics


def test_several_rounds_in_one_vector_step_and_metrics_are_round_means(monkeypatch):
    # 5 environments, a round every env step: each vector step owes 5 rounds of 2 gradient steps.
    agent = DQNAgent(BOX2, TWO, small_config(learning_starts=5, train_freq=1, gradient_steps=2, batch_size=4))
    losses = iter(np.arange(1.0, 1000.0))

    def fake_step(batch):
        return torch.tensor(next(losses)), torch.full((4,), 2.0), torch.zeros(4)

    metrics = two_vector_steps_of_five_envs(monkeypatch, agent, fake_step)
    # first vector step (5 steps seen): the round due at step 5 (losses 1, 2); second (10 steps seen): the rounds
    # due at steps 6..10, 5 rounds x 2 = 10 gradient steps with losses 3..12
    assert metrics["loss"].item() == pytest.approx(np.mean(np.arange(3.0, 13.0)))
    assert metrics["q_mean"].item() == pytest.approx(2.0)
    assert agent._next_train_at == 11


def test_gradient_clipping_is_applied_only_when_configured(monkeypatch):
    import rlbook.agents.dqn as dqn_module

    calls = []
    real = dqn_module.clip_grad_norm
    monkeypatch.setattr(dqn_module, "clip_grad_norm", lambda params, norm: calls.append(norm) or real(params, norm))
    for max_norm, expected in ((0.5, [0.5] * 3), (None, [])):
        calls.clear()
        agent = DQNAgent(BOX2, TWO, small_config(max_grad_norm=max_norm))
        batch = {k: v[:4] for k, v in hand_batch(agent).items()}
        before = [p.detach().clone() for p in agent.q_net.parameters()]
        for _ in range(3):
            agent.gradient_step(batch)
        assert calls == expected
        assert any(not torch.equal(a, b) for a, b in zip(before, agent.q_net.parameters()))  # it stepped


def test_prioritized_round_metrics_are_means_over_its_gradient_steps(monkeypatch):
    # the prioritized branch draws each minibatch after the previous step; its metrics are still round means
    agent = DQNAgent(BOX2, TWO, small_config(learning_starts=5, train_freq=1, gradient_steps=2, batch_size=4,
                                             prioritized=True))
    losses = iter(np.arange(1.0, 1000.0))
    q_values = iter(np.arange(10.0, 1000.0))

    def fake_step(batch):
        return torch.tensor(next(losses)), torch.full((4,), next(q_values)), torch.ones(4)

    metrics = two_vector_steps_of_five_envs(monkeypatch, agent, fake_step)
    assert metrics["loss"].item() == pytest.approx(np.mean(np.arange(3.0, 13.0)))
    assert metrics["q_mean"].item() == pytest.approx(np.mean(np.arange(12.0, 22.0)))
    assert 0.4 <= metrics["beta"] < 1.0


def test_learning_starts_with_the_first_stored_row():
    # learning_starts=1: the first stored row is enough for a gradient step ...
    agent = DQNAgent(BOX2, TWO, small_config(learning_starts=1, train_freq=1, batch_size=4))
    obs, nxt = np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32)
    step = Transition(obs, np.zeros(1, np.int64), np.ones(1, np.float32), nxt, np.zeros(1, bool), np.zeros(1, bool),
                      np.zeros(1, np.int64))
    agent.observe(step)
    assert agent.update() and agent.gradient_steps_done == 1
    # ... and with 3-step returns no row is stored after one step: nothing to learn from yet, no error
    nstep = DQNAgent(BOX2, TWO, small_config(learning_starts=1, train_freq=1, batch_size=4, n_step=3))
    nstep.observe(step)
    assert nstep.update() == {} and nstep.gradient_steps_done == 0


def test_an_infinite_loss_is_reported_even_when_the_weights_stay_finite():
    # An infinite reward makes the Huber loss infinite while its gradient (the sign of the error) stays finite,
    # so the weights stay finite: only the loss record can tell.
    agent = DQNAgent(BOX2, TWO, small_config(learning_starts=1, train_freq=1, batch_size=4))
    step = Transition(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), np.array([np.inf], np.float32),
                      np.ones((1, 2), np.float32), np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, np.int64))
    agent.observe(step)
    agent.update()
    assert all(torch.isfinite(p).all() for p in agent.q_net.parameters())
    assert agent.nonfinite() == "the TD loss"
