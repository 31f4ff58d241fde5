"""Wiring tests: real agents driven by the real Trainer on counting environments, checked exactly.

Each test follows experience along the whole path, env -> Trainer -> observe -> replay buffer -> sample ->
Bellman target, and compares what arrives at the end with what the environment's definition says it must
be. The counting environments make that possible: from an observation ``[t, episode, tag]`` alone we know
the rewards still to come, how the episode ends (terminated or truncated by a time limit) and when.
The rules checked here are the ones a DQN gets wrong most easily: a time limit is not a terminal state
(bootstrap), a terminal state is (no bootstrap), an n-step row bootstraps with ``gamma ** m``, the
autoreset step of a vector env is not a transition, Double DQN picks with the online network and values
with the target network, and Polyak updates blend by ``tau``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlbook.agents.dqn import DQNAgent, DQNConfig
from rlbook.envs.counting import CountingEnv
from rlbook.envs.toy import FiniteMDPEnv
from rlbook.mdp import FiniteMDP
from rlbook.tabular import ModelBasedAgent, QLearningAgent
from rlbook.train import Plugin, Trainer

GAMMA = 0.9
#: tag -> (episode length, time limit or None). How each episode ends follows from these two numbers.
SPECS = {0: (3, None),   # terminates after 3 steps
         1: (6, 4),      # truncated by its time limit after 4 steps (never reaches its terminal state)
         2: (5, 5),      # the terminal state and the time limit coincide: terminated wins
         3: (2, None),   # terminates after 2 steps: resets while the others are mid-episode
         4: (7, 2)}      # truncated after 2 steps


class ShiftedCountingEnv(CountingEnv):
    """A counting env whose three actions are numbered -1, 0, 1 (the agent must store them 0-based)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.action_space = gym.spaces.Discrete(3, start=-1)


def counting_vector() -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([lambda tag=tag, spec=spec: ShiftedCountingEnv(
        spec[0], max_episode_steps=spec[1], tag=tag) for tag, spec in SPECS.items()])


def expected_row(obs: np.ndarray, n: int, gamma: float = GAMMA) -> dict:
    """What the row starting at observation ``obs = [t, episode, tag]`` must hold, from the env's definition."""
    t, episode, tag = (int(v) for v in obs)
    length, limit = SPECS[tag]
    end = length if limit is None else min(length, limit)
    ends_terminal = limit is None or length <= limit
    m = min(n, end - t)
    return {"reward": sum(gamma**k * (t + k + 1) for k in range(m)), "steps": m,
            "terminated": ends_terminal and t + m == end, "truncated": (not ends_terminal) and t + m == end,
            "next_obs": np.array([t + m, episode, tag], np.float32)}


def wiring_config(**overrides) -> DQNConfig:
    base = DQNConfig(gamma=GAMMA, lr=1e-3, batch_size=16, buffer_size=10_000, learning_starts=10**9,
                     hidden=(8,), device="cpu", seed=0, epsilon_decay_steps=0)
    return base.replace(**overrides)


class SeenTransitions(Plugin):
    """Collects every one-step transition the trainer hands to the agent."""

    def __init__(self):
        self.rows: list[tuple[int, int, int]] = []
        self.actions: dict[tuple[int, int, int], int] = {}

    def after_step(self, trainer, transition, metrics):
        if transition is not None:
            rows = [tuple(int(v) for v in o) for o in transition.obs]
            self.rows += rows
            self.actions.update(zip(rows, transition.action.tolist()))


def run_to_buffer(n_step: int, total_steps: int = 400, **overrides) -> tuple[DQNAgent, SeenTransitions]:
    venv = counting_vector()
    agent = DQNAgent(venv.single_observation_space, venv.single_action_space, wiring_config(n_step=n_step, **overrides))
    seen = SeenTransitions()
    Trainer(agent, venv, total_steps=total_steps, seed=0, plugins=[seen]).run()
    return agent, seen


@pytest.mark.parametrize("n_step", [1, 3])
def test_buffer_holds_exactly_the_real_transitions(n_step):
    agent, seen = run_to_buffer(n_step)
    buffer = agent.buffer
    slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment * buffer.num_envs)))
    batch = buffer.batch_at(slots)
    assert len(batch) == len(buffer) == agent._rows_stored > 100
    assert buffer.num_envs == len(SPECS)
    for i in range(len(batch)):
        want = expected_row(batch.obs[i], n_step)
        t, episode, tag = batch.obs[i]
        assert t < want["steps"] + t <= SPECS[int(tag)][0]  # never the reset step out of a final state
        assert batch.steps[i] == want["steps"], batch.obs[i]
        assert batch.reward[i] == pytest.approx(want["reward"], rel=1e-6), batch.obs[i]
        assert bool(batch.terminated[i]) == want["terminated"], batch.obs[i]
        assert bool(batch.truncated[i]) == want["truncated"], batch.obs[i]
        np.testing.assert_array_equal(batch.next_obs[i], want["next_obs"])
        assert int(tag) == slots[i] // buffer.segment  # each environment's rows in its own stream
        # actions are stored 0-based: the env's -1, 0, 1 become 0, 1, 2
        assert batch.action[i] == seen.actions[(int(t), int(episode), int(tag))] + 1
    stored = {tuple(int(v) for v in o) for o in batch.obs}
    assert len(stored) == len(batch)  # no row stored twice
    assert stored <= set(seen.rows)
    # Every transition of every finished episode reached the buffer (the n-step folder may still hold the
    # last steps of the episodes that are running).
    last_episode = {tag: max(e for _, e, g in seen.rows if g == tag) for tag in SPECS}
    finished = {r for r in seen.rows if r[1] < last_episode[r[2]]}
    assert finished <= stored
    assert set(seen.rows) - stored <= {r for r in seen.rows if r[1] == last_episode[r[2]]}


class FixedQ(nn.Module):
    """A 'Q-network' with known values: Q(s) = s @ weight, for s = [t, episode, tag]."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight, dtype=torch.float32), requires_grad=False)

    def forward(self, x):
        return x.float() @ self.weight


TARGET_W = [[2.0, 3.0, 1.0], [0.0, 0.0, 0.0], [1.0, -1.0, 0.0]]  # Q_target(s) = (2t + tag, 3t - tag, t)
ONLINE_W = [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # the online net prefers action 1 when t > 0


@pytest.mark.parametrize("n_step,double", [(1, False), (1, True), (3, False), (3, True)])
def test_targets_of_sampled_rows_follow_the_env_definition(n_step, double):
    agent, _ = run_to_buffer(n_step, double=double)
    agent.target_net = FixedQ(TARGET_W)
    agent.q_net = FixedQ(ONLINE_W)
    batch = agent.buffer.sample(512, np.random.default_rng(1))
    targets = agent.compute_targets(agent._to_device(batch)).numpy()
    q_target = np.asarray(TARGET_W, np.float64)
    q_online = np.asarray(ONLINE_W, np.float64)
    bootstrapped = 0
    for obs, y in zip(batch.obs, targets):
        want = expected_row(obs, n_step)
        nxt = want["next_obs"].astype(np.float64)
        if double:
            value = (nxt @ q_target)[np.argmax(nxt @ q_online)]
        else:
            value = (nxt @ q_target).max()
        expected = want["reward"] + (0.0 if want["terminated"] else GAMMA ** want["steps"] * value)
        bootstrapped += want["truncated"]
        assert y == pytest.approx(expected, rel=1e-5), (obs, want)
    assert bootstrapped > 10  # truncated rows were sampled, and bootstrapped


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_target_updates_through_the_trainer(tau):
    venv = counting_vector()
    agent = DQNAgent(venv.single_observation_space, venv.single_action_space,
                     wiring_config(learning_starts=50, train_freq=5, gradient_steps=2, target_update_interval=3,
                                   tau=tau))
    calls = []
    original = agent.update_target

    def recording_update_target():
        before = [p.detach().clone() for p in agent.target_net.parameters()]
        online = [p.detach().clone() for p in agent.q_net.parameters()]
        original()
        after = [p.detach().clone() for p in agent.target_net.parameters()]
        calls.append((agent.gradient_steps_done, before, online, after))

    agent.update_target = recording_update_target
    Trainer(agent, venv, total_steps=300, seed=0).run()
    assert agent.gradient_steps_done > 30
    assert [c[0] for c in calls] == list(range(3, agent.gradient_steps_done + 1, 3))
    for _, before, online, after in calls:
        for b, o, a in zip(before, online, after):
            torch.testing.assert_close(a, (1 - tau) * b + tau * o, rtol=0, atol=1e-6)
    for (_, _, _, after), (_, before, _, _) in zip(calls, calls[1:]):  # untouched between two updates
        for a, b in zip(after, before):
            assert torch.equal(a, b)
    assert any(not torch.equal(b, a) for b, a in zip(calls[-1][1], calls[-1][3]))


def two_state_mdp() -> FiniteMDP:
    """State 0 --(any action, reward 1)--> state 1 --(reward 10)--> state 2 (terminal)."""
    P = np.zeros((3, 2, 3))
    P[0, :, 1] = 1.0
    P[1, :, 2] = 1.0
    P[2, :, 2] = 1.0
    R = np.zeros((3, 2, 3))
    R[0, :, 1] = 1.0
    R[1, :, 2] = 10.0
    return FiniteMDP(P, R, gamma=GAMMA)


def test_q_learning_bootstraps_truncation_not_termination_through_the_trainer():
    # Env A is cut by a time limit at state 1; env B runs to the terminal state 2. Optimistic Q = 5 everywhere.
    mdp = two_state_mdp()
    venv = gym.vector.SyncVectorEnv([lambda: FiniteMDPEnv(mdp, max_episode_steps=1),
                                     lambda: FiniteMDPEnv(mdp, max_episode_steps=None)])
    agent = QLearningAgent(venv.single_observation_space, venv.single_action_space, alpha=1.0, gamma=GAMMA,
                           initial_q=5.0, epsilon=1.0, seed=0)
    Trainer(agent, venv, total_steps=40, seed=0).run()
    # From state 1 only env B moves, and it terminates: the target is the reward alone.
    np.testing.assert_allclose(agent.Q[1][agent.Q[1] != 5.0], 10.0)
    assert (agent.Q[1] == 10.0).any()
    # From state 0 both envs bootstrap from state 1 (A's truncation included): 1 + gamma * max Q[1].
    np.testing.assert_allclose(agent.Q[0], 1.0 + GAMMA * 10.0)
    # Nothing was ever learned from the terminal state or from an autoreset step (2 -> 0 or 1 -> 0).
    np.testing.assert_array_equal(agent.Q[2], 5.0)


def test_model_based_counts_only_real_transitions_through_the_trainer():
    mdp = two_state_mdp()
    venv = gym.vector.SyncVectorEnv([lambda: FiniteMDPEnv(mdp, max_episode_steps=1),
                                     lambda: FiniteMDPEnv(mdp, max_episode_steps=None)])
    agent = ModelBasedAgent(venv.single_observation_space, venv.single_action_space, gamma=GAMMA,
                            steps_per_iteration=10, seed=0)
    trainer = Trainer(agent, venv, total_steps=60, seed=0).run()
    counts = agent.counts
    assert counts.sum() == trainer.step == 60
    assert counts[0, :, 1].sum() + counts[1, :, 2].sum() == 60  # only the MDP's own moves
    assert counts[:, :, 0].sum() == 0 and counts[2].sum() == 0  # no reset transition, nothing out of the end
    P_hat, r_hat = agent.model()
    np.testing.assert_allclose(r_hat[0][counts[0].sum(1) > 0], 1.0)
    np.testing.assert_allclose(r_hat[1][counts[1].sum(1) > 0], 10.0)
    np.testing.assert_allclose(agent.V, [1 + GAMMA * 10, 10, 0], atol=1e-5)


DETERMINISM_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import gymnasium as gym, torch
    torch.set_num_threads(1)
    from rlbook.agents.dqn import DQNAgent, DQNConfig
    from rlbook.train import Trainer
    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 4)
    config = DQNConfig.cartpole(seed=3, device="cpu", learning_starts=300, train_freq=64, gradient_steps=8,
                                hidden=(32, 32), n_step=3, double=True)
    agent = DQNAgent(venv.single_observation_space, venv.single_action_space, config)
    trainer = Trainer(agent, venv, total_steps=2_000, seed=3).run()
    digest = hashlib.sha256()
    for tensor in agent.q_net.state_dict().values():
        digest.update(tensor.numpy().tobytes())
    print(digest.hexdigest(), agent.gradient_steps_done, trainer.episodes, sum(trainer.episode_returns))
""")


def test_a_whole_run_is_deterministic_across_processes():
    outputs = [subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], capture_output=True, text=True,
                              check=True).stdout.split() for _ in range(2)]
    assert outputs[0] == outputs[1]
    assert int(outputs[0][1]) > 100  # it learned: 27 rounds of 8 gradient steps
