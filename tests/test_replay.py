"""Replay buffer and n-step folding: exact checks on counting environments, and property tests."""

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbook.agents.base import Agent, Transition
from rlbook.envs.counting import CountingEnv, brute_force_nstep
from rlbook.replay import NStepFolder, PrioritizedReplayBuffer, ReplayBuffer, SumTree
from rlbook.train import Trainer


def one_step(obs, action, reward, next_obs, terminated=False, truncated=False, env_id=0):
    """A single-row Transition."""
    return Transition(obs=np.asarray([obs], np.float32), action=np.asarray([action]),
                      reward=np.asarray([reward], np.float32), next_obs=np.asarray([next_obs], np.float32),
                      terminated=np.asarray([terminated]), truncated=np.asarray([truncated]),
                      env_ids=np.asarray([env_id]))


def stored_rows(buffer: ReplayBuffer):
    """Every row the buffer can sample (by asking for all slots that are valid)."""
    slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment * buffer.num_envs)))
    return buffer.batch_at(slots)


# ---------------------------------------------------------------------- the ring
def test_ring_wraps_and_keeps_the_most_recent_rows():
    buffer = ReplayBuffer(5, (1,), np.float32, num_envs=1)
    for t in range(12):
        buffer.add([[t]], [t % 2], [t], [[t + 1]], [False], [False])
    assert len(buffer) == 5
    rows = stored_rows(buffer)
    assert sorted(rows.obs[:, 0].tolist()) == [7, 8, 9, 10, 11]
    np.testing.assert_array_equal(rows.next_obs[:, 0], rows.obs[:, 0] + 1)
    np.testing.assert_array_equal(rows.reward, rows.obs[:, 0])
    np.testing.assert_array_equal(rows.action, rows.obs[:, 0].astype(int) % 2)


def test_episode_end_keeps_the_final_observation():
    buffer = ReplayBuffer(10, (1,), np.float32, num_envs=1)
    buffer.add([[0]], [0], [1], [[1]], [False], [False])
    buffer.add([[1]], [0], [2], [[99]], [True], [False])  # final obs 99 is not the next episode's start
    buffer.add([[50]], [0], [3], [[51]], [False], [False])
    rows = stored_rows(buffer)
    by_obs = {o: (n, term) for o, n, term in zip(rows.obs[:, 0], rows.next_obs[:, 0], rows.terminated)}
    assert by_obs == {0: (1, False), 1: (99, True), 50: (51, False)}


def test_sampling_shapes_and_dtypes_for_uint8_frames():
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(100, (4, 12, 12), np.uint8, num_envs=3)
    obs = rng.integers(0, 255, size=(3, 4, 12, 12), dtype=np.uint8)
    for _ in range(20):  # three continuous streams of random frames
        nxt = rng.integers(0, 255, size=(3, 4, 12, 12), dtype=np.uint8)
        buffer.add(obs, np.arange(3), np.ones(3), nxt, np.zeros(3, bool), np.zeros(3, bool))
        obs = nxt
    batch = buffer.sample(32, rng)
    assert batch.obs.shape == (32, 4, 12, 12) and batch.obs.dtype == np.uint8
    assert batch.next_obs.shape == (32, 4, 12, 12) and batch.next_obs.dtype == np.uint8
    assert batch.action.shape == (32,) and batch.action.dtype == np.int64
    assert batch.reward.dtype == np.float32 and batch.terminated.dtype == bool
    assert batch.steps.dtype == np.int64 and (batch.steps == 1).all()
    many = buffer.sample((5, 7), rng)
    assert many.obs.shape == (5, 7, 4, 12, 12) and many.reward.shape == (5, 7)
    # one observation stored per slot: the next observations are not a second copy
    assert buffer._obs.nbytes == buffer.segment * 3 * 4 * 12 * 12


def test_the_stream_layout_stores_each_observation_once():
    # 3 envs x 20 steps of (4, 12, 12) frames: 60 transitions fit in 60 + 3 * n_step observation slots
    buffer = ReplayBuffer(60, (4, 12, 12), np.uint8, num_envs=3)
    assert buffer._obs.shape[0] == 63


def test_errors_name_the_bad_value():
    buffer = ReplayBuffer(10, (2,), np.float32)
    with pytest.raises(ValueError, match="shape"):
        buffer.add(np.zeros((1, 3)), [0], [0], np.zeros((1, 3)), [False], [False])
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="steps"):
        buffer.add(np.zeros((1, 2)), [0], [0], np.zeros((1, 2)), [False], [False], steps=[2])
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(1, (2,))


def test_rows_of_one_env_in_a_batch_must_continue_each_other():
    buffer = ReplayBuffer(10, (1,), np.float32, num_envs=1)
    with pytest.raises(ValueError, match="continuous"):
        buffer.add([[0], [5]], [0, 0], [1, 1], [[1], [6]], [False, False], [False, False], env_ids=[0, 0])


def test_a_broken_stream_does_not_corrupt_the_last_row():
    buffer = ReplayBuffer(10, (1,), np.float32, num_envs=1)
    buffer.add([[0]], [0], [1], [[1]], [False], [False])
    buffer.add([[1]], [0], [2], [[2]], [False], [False])
    buffer.add([[100]], [0], [3], [[101]], [False], [False])  # a new run reset the env mid-episode
    rows = stored_rows(buffer)
    pairs = sorted(zip(rows.obs[:, 0].tolist(), rows.next_obs[:, 0].tolist()))
    assert pairs == [(0, 1), (1, 2), (100, 101)]


# ---------------------------------------------------------------------- n-step folding
def test_nstep_exact_on_one_episode_that_terminates():
    folder = NStepFolder(3, 0.5)
    out = []
    for t in range(5):  # rewards 1..5, terminates after 5 steps
        rows = folder.fold(one_step([t, 0, 0], 0, t + 1, [t + 1, 0, 0], terminated=t == 4))
        out += [(r[0], R, m, d, n[0], term) for r, R, m, d, n, term in
                zip(rows.obs, rows.reward, rows.steps, rows.discount, rows.next_obs, rows.terminated)]
    assert out == [
        (0, 1 + 0.5 * 2 + 0.25 * 3, 3, 0.125, 3, False),
        (1, 2 + 0.5 * 3 + 0.25 * 4, 3, 0.125, 4, False),
        (2, 3 + 0.5 * 4 + 0.25 * 5, 3, 0.125, 5, True),
        (3, 4 + 0.5 * 5, 2, 0.25, 5, True),
        (4, 5, 1, 0.5, 5, True),
    ]
    assert folder.pending == 0


def test_nstep_truncation_bootstraps_from_the_final_observation():
    folder = NStepFolder(4, 0.5)
    rows = [folder.fold(one_step([t, 0, 0], 0, t + 1, [t + 1, 0, 0], truncated=t == 1)) for t in range(2)]
    assert len(rows[0]) == 0
    last = rows[1]
    np.testing.assert_array_equal(last.reward, [1 + 0.5 * 2, 2])
    np.testing.assert_array_equal(last.steps, [2, 1])
    np.testing.assert_array_equal(last.discount, [0.25, 0.5])
    assert last.truncated.all() and not last.terminated.any()
    np.testing.assert_array_equal(last.next_obs[:, 0], [2, 2])


def test_nstep_broken_stream_is_flushed_as_truncated():
    folder = NStepFolder(3, 0.5)
    folder.fold(one_step([0, 0, 0], 0, 1, [1, 0, 0]))
    rows = folder.fold(one_step([7, 9, 0], 0, 8, [8, 9, 0]))  # not the previous next_obs
    assert len(rows) == 1 and rows.truncated[0] and rows.next_obs[0, 0] == 1 and rows.reward[0] == 1
    assert folder.pending == 1


class Recorder(Agent):
    """Keeps every one-step transition and passes it through an NStepFolder into a ReplayBuffer."""

    def __init__(self, observation_space, action_space, n, gamma, num_envs, capacity=10_000):
        super().__init__(observation_space, action_space)
        self.folder = NStepFolder(n, gamma)
        self.buffer = ReplayBuffer(capacity, observation_space.shape, np.float32, num_envs=num_envs, n_step=n)
        self.raw: list[Transition] = []
        self.emitted = []

    def act_batch(self, obs, explore=True):
        return np.zeros(len(obs), np.int64)

    def observe(self, transition):
        super().observe(transition)
        self.raw.append(Transition(**{k: np.copy(v) for k, v in vars(transition).items()}))
        rows = self.folder.fold(transition)
        self.emitted.append(rows)
        self.buffer.add(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated, rows.truncated,
                        rows.env_ids, rows.steps)


def expected_rows(raw: list[Transition], n: int, gamma: float) -> Counter:
    """Brute force: split each env's one-step stream into episodes and fold every start by hand."""
    streams: dict[int, list] = {}
    for tr in raw:
        for i in range(len(tr)):
            streams.setdefault(int(tr.env_ids[i]), []).append(
                (tr.obs[i], tr.reward[i], tr.next_obs[i], bool(tr.terminated[i]), bool(tr.truncated[i])))
    out = Counter()
    for env, stream in streams.items():
        ends = [i + 1 for i, s in enumerate(stream) if s[3] or s[4]]
        starts = [0] + ends
        for start, stop in zip(starts, ends + [len(stream)]):
            episode = stream[start:stop]
            finished = stop in ends
            rewards = np.array([s[1] for s in episode], np.float64)
            for t in range(len(episode)):
                if not finished and t + n > len(episode):
                    break  # still waiting for its future
                ret, m = brute_force_nstep(rewards, t, n, gamma)
                last = episode[t + m - 1]
                ended = finished and t + m == len(episode)
                out[(env, tuple(episode[t][0]), np.float32(ret), m, tuple(last[2]),
                     ended and last[3], ended and last[4])] += 1
    return out


def as_counter(rows, env_ids) -> Counter:
    return Counter((int(e), tuple(o), np.float32(r), int(m), tuple(nx), bool(te), bool(tu))
                   for e, o, r, m, nx, te, tu in zip(env_ids, rows.obs, rows.reward, rows.steps, rows.next_obs,
                                                     rows.terminated, rows.truncated))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_vector_env_with_autoreset_stores_exact_nstep_rows(n):
    gamma = 0.5
    # different episode lengths per env, some cut by a time limit: ends interleave across envs
    envs = [lambda i=i: CountingEnv((2, 7), max_episode_steps=6, tag=i) for i in range(3)]
    venv = gym.vector.SyncVectorEnv(envs)
    agent = Recorder(venv.single_observation_space, venv.single_action_space, n, gamma, 3)
    trainer = Trainer(agent, venv, total_steps=300, seed=0).run()
    # no autoreset rows: every observation follows from the previous one of its env
    for tr in agent.raw:
        np.testing.assert_array_equal(tr.next_obs[:, 0], tr.obs[:, 0] + 1)
        np.testing.assert_array_equal(tr.reward, tr.obs[:, 0] + 1)
    assert trainer.episodes > 20
    truth = expected_rows(agent.raw, n, gamma)
    emitted = Counter()
    for rows in agent.emitted:
        emitted += as_counter(rows, rows.env_ids)
    # the folder emits exactly the brute-force rows (the last n - 1 steps of unfinished episodes wait)
    assert emitted == truth
    assert agent.folder.pending == sum(min(n - 1, int(c)) for c in agent.folder._count)
    assert any(k[6] for k in truth) and any(k[5] for k in truth)  # both kinds of ending occurred
    # the buffer holds them all (it is large enough) and gives back each row exactly
    stored = stored_rows(agent.buffer)
    env_of = stored.obs[:, 2].astype(int)  # the tag is the env index
    assert as_counter(stored, env_of) == emitted
    discounts = gamma ** stored.steps
    np.testing.assert_allclose(
        stored.reward, [sum(gamma**k * (t + k + 1) for k in range(m)) for t, m in zip(stored.obs[:, 0], stored.steps)])
    assert (discounts <= gamma).all()


def test_two_training_runs_on_one_agent_keep_rows_exact():
    envs = [lambda i=i: CountingEnv(9, tag=i) for i in range(2)]
    venv = gym.vector.SyncVectorEnv(envs)
    agent = Recorder(venv.single_observation_space, venv.single_action_space, 3, 0.5, 2)
    Trainer(agent, venv, total_steps=31, seed=0).run()  # stops mid-episode
    Trainer(agent, venv, total_steps=40, seed=1).run()  # resets: the old episodes are cut
    stored = stored_rows(agent.buffer)
    t, ep, m = stored.obs[:, 0], stored.obs[:, 1], stored.steps
    np.testing.assert_array_equal(stored.next_obs[:, 0], t + m)
    np.testing.assert_array_equal(stored.next_obs[:, 1], ep)
    np.testing.assert_allclose(stored.reward, [sum(0.5**k * (a + k + 1) for k in range(b)) for a, b in zip(t, m)])
    assert stored.truncated.any()  # the cut episodes bootstrap


def test_small_ring_with_vector_env_keeps_only_consistent_rows():
    envs = [lambda i=i: CountingEnv((3, 9), tag=i) for i in range(4)]
    venv = gym.vector.SyncVectorEnv(envs)
    agent = Recorder(venv.single_observation_space, venv.single_action_space, 3, 0.9, 4, capacity=40)
    Trainer(agent, venv, total_steps=500, seed=3).run()
    stored = stored_rows(agent.buffer)
    assert 0 < len(stored) <= 40
    t, ep, m = stored.obs[:, 0], stored.obs[:, 1], stored.steps
    np.testing.assert_array_equal(stored.next_obs[:, :2], np.stack([t + m, ep], 1))
    np.testing.assert_allclose(stored.reward, [sum(0.9**k * (a + k + 1) for k in range(b)) for a, b in zip(t, m)],
                               rtol=1e-6)
    # only recent rows: every stored episode index is among the last few of its env
    for env in range(4):
        eps = ep[stored.obs[:, 2] == env]
        assert eps.max() - eps.min() <= 4
    sample = agent.buffer.sample(256, np.random.default_rng(0))
    np.testing.assert_array_equal(sample.next_obs[:, 0], sample.obs[:, 0] + sample.steps)


# ---------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(2, 12), dones=st.lists(st.booleans(), min_size=1, max_size=60),
       batch=st.integers(1, 7))
def test_buffer_keeps_a_suffix_of_recent_rows(capacity, dones, batch):
    buffer = ReplayBuffer(capacity, (1,), np.float32, num_envs=1)
    n = len(dones)
    obs = np.arange(n, dtype=np.float32)[:, None]
    # a continuous stream: the next obs is the next row's obs, except the final obs of an episode
    nxt = obs + np.where(np.asarray(dones), 0.5, 1.0)[:, None].astype(np.float32)
    for s in range(0, n, batch):  # several rows of one env per add, in order
        part = slice(s, s + batch)
        buffer.add(obs[part], np.zeros(len(obs[part]), np.int64), obs[part, 0], nxt[part], np.asarray(dones[part]),
                   np.zeros(len(obs[part]), bool), env_ids=np.zeros(len(obs[part]), np.int64))
    rows = stored_rows(buffer)
    kept = np.sort(rows.obs[:, 0]).astype(int)
    k = len(kept)
    assert kept.tolist() == list(range(n - k, n))  # the most recent k rows, nothing older
    ends_in_window = int(np.sum(dones[max(0, n - capacity):]))
    assert min(n, capacity) - ends_in_window <= k <= min(n, capacity)
    np.testing.assert_array_equal(rows.next_obs[:, 0], nxt[rows.obs[:, 0].astype(int), 0])
    np.testing.assert_array_equal(rows.terminated, np.asarray(dones)[rows.obs[:, 0].astype(int)])
    assert len(buffer) == k


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), gamma=st.sampled_from([0.0, 0.5, 0.75, 1.0]),
       rewards=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
       ends=st.lists(st.sampled_from(["", "", "", "term", "trunc"]), min_size=40, max_size=40))
def test_nstep_return_equals_brute_force(n, gamma, rewards, ends):
    folder = NStepFolder(n, gamma)
    raw, out = [], Counter()
    episode = 0
    t = 0
    for i, r in enumerate(rewards):
        end = ends[i]
        tr = one_step([t, episode, 0], 0, r, [t + 1, episode, 0], terminated=end == "term", truncated=end == "trunc")
        raw.append(tr)
        rows = folder.fold(tr)
        out += as_counter(rows, rows.env_ids)
        t += 1
        if end:
            episode += 1
            t = 0
    assert out == expected_rows(raw, n, gamma)


def test_nstep_buffer_never_holds_more_rows_than_its_capacity():
    # The reproducer: capacity 7, 4-step rows, short truncated episodes used to give 8 rows.
    buffer = ReplayBuffer(7, (1,), n_step=4, num_envs=1)
    folder = NStepFolder(4, 0.9)
    most = 0
    for step in range(200):
        t = step % 3
        tr = one_step([t], 0, 1.0, [t + 1], terminated=False, truncated=t == 2)
        rows = folder.fold(tr)
        buffer.add(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated, rows.truncated,
                   rows.env_ids, rows.steps)
        most = max(most, len(buffer))
    # 7 positions kept; with 3-step episodes two of them hold final observations: 5 rows (it used to be 8)
    assert most == 5


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(2, 20), num_envs=st.integers(1, 4), n=st.integers(1, 4),
       lengths=st.lists(st.integers(1, 6), min_size=4, max_size=4), limit=st.sampled_from([None, 1, 2, 3]))
def test_len_never_exceeds_capacity_and_every_valid_row_is_whole(capacity, num_envs, n, lengths, limit):
    if capacity < num_envs:
        return  # refused at construction (tested in test_validation)
    buffer = ReplayBuffer(capacity, (3,), n_step=n, num_envs=num_envs)
    folder = NStepFolder(n, 0.5, num_envs=num_envs)
    venv = gym.vector.SyncVectorEnv([lambda i=i: CountingEnv(lengths[i], max_episode_steps=limit, tag=i)
                                     for i in range(num_envs)])
    obs, _ = venv.reset(seed=0)
    needs_reset = np.zeros(num_envs, bool)
    for _ in range(40):
        nxt, reward, term, trunc, _ = venv.step(np.zeros(num_envs, np.int64))
        live = ~needs_reset
        tr = Transition(obs=obs[live], action=np.zeros(int(live.sum()), np.int64),
                        reward=reward[live].astype(np.float32), next_obs=nxt[live], terminated=term[live],
                        truncated=trunc[live], env_ids=np.flatnonzero(live))
        rows = folder.fold(tr)
        buffer.add(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated, rows.truncated,
                   rows.env_ids, rows.steps)
        assert len(buffer) <= capacity
        needs_reset = term | trunc
        obs = nxt
        # every row in the window is whole: its next observation is the one it was stored with
        rows = stored_rows(buffer)
        np.testing.assert_array_equal(rows.next_obs[:, 0], rows.obs[:, 0] + rows.steps)
        np.testing.assert_array_equal(rows.next_obs[:, 1:], rows.obs[:, 1:])


@pytest.mark.parametrize("num_envs,n", [(1, 1), (3, 1), (3, 3)])
def test_sampling_is_uniform_over_the_valid_rows(num_envs, n):
    # Several envs with different episode lengths fill their segments unevenly; every valid row must still
    # come up with the same probability (the draw spans the envs, rejects the slots without a row).
    buffer = ReplayBuffer(60, (3,), n_step=n, num_envs=num_envs)
    folder = NStepFolder(n, 0.9, num_envs=num_envs)
    venv = gym.vector.SyncVectorEnv([lambda i=i: CountingEnv(3 + 2 * i, max_episode_steps=4 + i, tag=i)
                                     for i in range(num_envs)])
    obs, _ = venv.reset(seed=0)
    needs_reset = np.zeros(num_envs, bool)
    for _ in range(70):
        nxt, reward, term, trunc, _ = venv.step(np.zeros(num_envs, np.int64))
        live = ~needs_reset
        rows = folder.fold(Transition(obs=obs[live], action=np.zeros(int(live.sum()), np.int64),
                                      reward=reward[live].astype(np.float32), next_obs=nxt[live],
                                      terminated=term[live], truncated=trunc[live], env_ids=np.flatnonzero(live)))
        buffer.add(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated, rows.truncated,
                   rows.env_ids, rows.steps)
        needs_reset = term | trunc
        obs = nxt
    valid = np.flatnonzero(buffer._valid(np.arange(buffer.segment * buffer.num_envs)))
    assert 40 <= len(valid) <= 60
    draws = 200 * len(valid)
    counts = np.bincount(buffer.sample_indices(draws, np.random.default_rng(0)), minlength=len(buffer._obs))
    assert counts[valid].sum() == draws  # nothing but valid rows
    expected = draws / len(valid)
    # each row within 5 standard deviations of its binomial expectation; and a chi-square of the whole
    assert np.all(np.abs(counts[valid] - expected) < 5 * np.sqrt(expected))
    chi2 = float(np.sum((counts[valid] - expected) ** 2 / expected))
    assert chi2 < len(valid) + 5 * np.sqrt(2 * len(valid))


# ---------------------------------------------------------------------- prioritized replay (chapter 7)
@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 40), updates=st.lists(st.tuples(st.integers(0, 39), st.floats(0, 10)), max_size=80))
def test_sum_tree_keeps_every_inner_node_the_sum_of_its_children(capacity, updates):
    tree = SumTree(capacity)
    reference = np.zeros(capacity)
    for item, value in updates:
        if item < capacity:
            tree.update([item], [value])
            reference[item] = value
    np.testing.assert_allclose(tree[np.arange(capacity)], reference)
    assert tree.total == pytest.approx(reference.sum())
    inner = np.arange(1, tree.size)
    np.testing.assert_allclose(tree.tree[inner], tree.tree[2 * inner] + tree.tree[2 * inner + 1])


def test_sum_tree_of_one_item_is_its_own_root():
    """Capacity 1: the only leaf is the root (tree[1]) and there is no inner node to refresh (the random test
    above reaches this case only by chance; an update that climbed to node 0 would loop for ever)."""
    tree = SumTree(1)
    assert tree.size == 1
    tree.update([0], [2.5])
    assert tree.total == 2.5 and tree.tree[1] == 2.5
    np.testing.assert_array_equal(tree.find(np.array([0.0, 2.4])), [0, 0])
    tree.update([0, 0], [4.0, 1.0])  # the last value wins
    assert tree.total == 1.0


def test_sum_tree_find_is_the_inverse_of_the_running_sum_and_skips_zeros():
    tree = SumTree(6)
    tree.update(np.arange(6), [1.0, 0.0, 2.0, 0.0, 0.5, 0.0])
    edges = np.cumsum([1.0, 0.0, 2.0, 0.0, 0.5])
    targets = np.array([0.0, 0.999, 1.0, 2.9, 3.0, 3.49])
    np.testing.assert_array_equal(tree.find(targets), [0, 0, 2, 2, 4, 4])
    assert edges[-1] == tree.total
    # vectorised batch update with a repeated item: the last value wins
    tree.update([5, 1, 5], [7.0, 1.0, 3.0])
    np.testing.assert_allclose(tree[[1, 5]], [1.0, 3.0])
    draws = tree.find(np.random.default_rng(0).random(100_000) * tree.total)
    freq = np.bincount(draws, minlength=6) / len(draws)
    np.testing.assert_allclose(freq, tree[np.arange(6)] / tree.total, atol=0.005)


def fill_prioritized(buffer, folder, venv, steps, rng=None):
    obs, _ = venv.reset(seed=0)
    n = venv.num_envs
    needs_reset = np.zeros(n, bool)
    for _ in range(steps):
        nxt, reward, term, trunc, _ = venv.step(np.zeros(n, np.int64))
        live = ~needs_reset
        rows = folder.fold(Transition(obs=obs[live], action=np.zeros(int(live.sum()), np.int64),
                                      reward=reward[live].astype(np.float32), next_obs=nxt[live],
                                      terminated=term[live], truncated=trunc[live], env_ids=np.flatnonzero(live)))
        buffer.add(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated, rows.truncated,
                   rows.env_ids, rows.steps)
        if rng is not None and len(buffer) > 8:  # the agent's side: priorities from fake TD errors
            batch = buffer.sample(8, rng, beta=0.5)
            buffer.update_priorities(batch.indices, rng.exponential(2.0, 8))
        assert_tree_matches_validity(buffer)
        needs_reset = term | trunc
        obs = nxt


def assert_tree_matches_validity(buffer):
    slots = np.arange(buffer.segment * buffer.num_envs)
    np.testing.assert_array_equal(buffer.tree[slots] > 0, buffer._valid(slots))


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(4, 30), num_envs=st.integers(1, 3), n=st.integers(1, 4),
       lengths=st.lists(st.integers(1, 6), min_size=3, max_size=3), limit=st.sampled_from([None, 2, 3]))
def test_prioritized_buffer_never_draws_an_invalid_row(capacity, num_envs, n, lengths, limit):
    if capacity < num_envs:
        return
    buffer = PrioritizedReplayBuffer(capacity, (3,), n_step=n, num_envs=num_envs)
    folder = NStepFolder(n, 0.5, num_envs=num_envs)
    venv = gym.vector.SyncVectorEnv([lambda i=i: CountingEnv(lengths[i], max_episode_steps=limit, tag=i)
                                     for i in range(num_envs)])
    rng = np.random.default_rng(0)
    fill_prioritized(buffer, folder, venv, 40, rng)  # checks, after every add, priority > 0 <=> valid row
    if len(buffer):
        batch = buffer.sample(256, rng, beta=0.4)
        assert buffer._valid(batch.indices).all()
        np.testing.assert_array_equal(batch.next_obs[:, 0], batch.obs[:, 0] + batch.steps)


def test_prioritized_sampling_follows_priorities_and_weights_correct_for_it():
    venv = gym.vector.SyncVectorEnv([lambda: CountingEnv(7, tag=0)])
    buffer = PrioritizedReplayBuffer(50, (3,), num_envs=1, alpha=0.6)
    fill_prioritized(buffer, NStepFolder(1, 0.9, num_envs=1), venv, 60)
    slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment)))
    assert len(slots) == len(buffer) and np.all(buffer.tree[slots] == 1.0)  # new rows: the max priority, 1
    td = np.linspace(0.0, 5.0, len(slots))
    buffer.update_priorities(slots, td)
    p = (np.abs(td) + buffer.eps) ** 0.6
    np.testing.assert_allclose(buffer.tree[slots], p)
    assert buffer.max_priority == pytest.approx(p.max())
    rng = np.random.default_rng(3)
    draws = np.concatenate([buffer.sample(50, rng).indices for _ in range(2000)])
    freq = np.array([np.mean(draws == s) for s in slots])
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.004)
    batch = buffer.sample(50, rng, beta=0.4)
    probabilities = buffer.tree[batch.indices] / buffer.tree.total
    w = (len(buffer) * probabilities) ** -0.4
    np.testing.assert_allclose(batch.weights, w / w.max(), rtol=1e-6)
    assert batch.weights.max() == 1.0
    # a new row enters at the largest priority seen
    fill_prioritized(buffer, NStepFolder(1, 0.9, num_envs=1), venv, 1)
    newest = buffer._slot(np.zeros(1, np.int64), buffer._head[:1] - 1)
    if buffer._valid(newest).all():
        assert buffer.tree[newest][0] == pytest.approx(buffer.max_priority)


def test_priority_updates_never_make_an_invalid_slot_drawable():
    # Episodes of 3 steps: positions 0, 1, 2 are rows, 3 holds the final observation, 4, 5, 6 rows, ...
    venv = gym.vector.SyncVectorEnv([lambda: CountingEnv(3, tag=0)])
    buffer = PrioritizedReplayBuffer(20, (3,), num_envs=1)
    fill_prioritized(buffer, NStepFolder(1, 0.9, num_envs=1), venv, 12)
    slots = np.arange(buffer.segment)
    invalid = slots[~buffer._valid(slots)]
    assert len(invalid) >= 2  # final observations (and slots never written)
    buffer.update_priorities(invalid, np.full(len(invalid), 3.0))  # a stale or mistaken update
    assert_tree_matches_validity(buffer)


# ---------------------------------------------------------------------- tests that kill surviving mutants
def add_step(buffer, obs, next_obs, env_ids, done=None, steps=None):
    """Add one row per entry of ``env_ids`` (obs/next_obs: (k, d))."""
    k = len(env_ids)
    done = np.zeros(k, bool) if done is None else np.asarray(done)
    buffer.add(np.asarray(obs, np.float32), np.zeros(k, np.int64), np.ones(k, np.float32),
               np.asarray(next_obs, np.float32), done, np.zeros(k, bool), np.asarray(env_ids), steps)


def test_a_full_buffer_holds_exactly_its_capacity_when_it_does_not_divide_among_envs():
    buffer = ReplayBuffer(7, (1,), num_envs=3)  # quotas 3, 2, 2
    for t in range(20):
        add_step(buffer, [[t], [t], [t]], [[t + 1]] * 3, [0, 1, 2])
    assert len(buffer) == 7
    rows = stored_rows(buffer)
    assert Counter(rows.obs[:, 0].tolist()) == {19: 3, 18: 3, 17: 1}  # the newest rows, 3 + 2 + 2
    assert len(ReplayBuffer(7, (1,))) == 0  # not allocated yet: empty
    with pytest.raises(ValueError, match="num_envs"):
        ReplayBuffer(7, (1,), num_envs=0)


def test_rows_given_in_any_env_order_and_several_per_env_are_stored_exactly():
    buffer = ReplayBuffer(40, (3,), num_envs=3)
    obs = lambda e, t: [t, 10 * e, -t]  # noqa: E731 -- three numbers per observation
    # one batch in decreasing env order, then one with two consecutive rows per env, interleaved
    add_step(buffer, [obs(2, 0), obs(1, 0), obs(0, 0)], [obs(2, 1), obs(1, 1), obs(0, 1)], [2, 1, 0])
    add_step(buffer, [obs(1, 1), obs(0, 1), obs(1, 2), obs(0, 2), obs(2, 1)],
             [obs(1, 2), obs(0, 2), obs(1, 3), obs(0, 3), obs(2, 2)], [1, 0, 1, 0, 2])
    add_step(buffer, [obs(0, 3), obs(1, 3), obs(2, 2)], [obs(0, 4), obs(1, 4), obs(2, 3)], [0, 1, 2])
    rows = stored_rows(buffer)
    got = sorted((tuple(o), tuple(n)) for o, n in zip(rows.obs.tolist(), rows.next_obs.tolist()))
    want = sorted((tuple(map(float, obs(e, t))), tuple(map(float, obs(e, t + 1))))
                  for e, last in ((0, 3), (1, 3), (2, 2)) for t in range(last + 1))
    assert got == want


def test_a_break_in_one_env_stream_starts_a_new_stream_there_only():
    buffer = ReplayBuffer(40, (2,), num_envs=2)
    add_step(buffer, [[0, 0], [0, 1]], [[1, 0], [1, 1]], [0, 1])
    # env 1's next row does not start where its last ended (only the second number differs): a new run
    add_step(buffer, [[1, 0], [1, 5]], [[2, 0], [2, 5]], [0, 1])
    add_step(buffer, [[2, 0], [2, 5]], [[3, 0], [3, 5]], [0, 1])
    rows = stored_rows(buffer)
    pairs = sorted((tuple(o), tuple(n)) for o, n in zip(rows.obs.tolist(), rows.next_obs.tolist()))
    assert pairs == sorted([((0., 0.), (1., 0.)), ((1., 0.), (2., 0.)), ((2., 0.), (3., 0.)),
                            ((0., 1.), (1., 1.)), ((1., 5.), (2., 5.)), ((2., 5.), (3., 5.))])


def test_a_terminal_multi_step_row_keeps_its_final_observation_after_the_next_episode_starts():
    buffer = ReplayBuffer(20, (1,), num_envs=1, n_step=3)
    add_step(buffer, [[0]], [[3]], [0], done=[True], steps=[3])  # a 3-step row that ends its episode at obs 3
    for t in range(4):
        add_step(buffer, [[10 + t]], [[11 + t]], [0])
    rows = stored_rows(buffer)
    first = rows.obs[:, 0] == 0
    assert rows.next_obs[first, 0].tolist() == [3.0] and rows.steps[first].tolist() == [3]


def test_uniform_sampling_reaches_every_row_when_envs_hold_different_numbers():
    buffer = ReplayBuffer(60, (1,), num_envs=2)
    add_step(buffer, [[0]], [[1]], [0])
    for t in range(20):
        add_step(buffer, [[100 + t]], [[101 + t]], [1])
    draws = buffer.sample(21_000, np.random.default_rng(0)).obs[:, 0]
    counts = Counter(draws.tolist())
    assert set(counts) == {0.0, *[100.0 + t for t in range(20)]}
    assert min(counts.values()) > 800 and max(counts.values()) < 1200  # 1,000 each


def test_nstep_folder_checks_its_settings():
    with pytest.raises(ValueError):
        NStepFolder(0, 0.9)
    with pytest.raises(ValueError):
        NStepFolder(2, 1.5)


def test_nstep_folder_flushes_only_the_env_whose_stream_broke():
    folder = NStepFolder(3, 0.5, num_envs=2)

    def step(obs, nxt):
        return Transition(obs=np.array(obs, np.float32)[:, None], action=np.zeros(2, np.int64),
                          reward=np.ones(2, np.float32), next_obs=np.array(nxt, np.float32)[:, None],
                          terminated=np.zeros(2, bool), truncated=np.zeros(2, bool), env_ids=np.arange(2))

    folder.fold(step([0, 0], [1, 1]))
    rows = folder.fold(step([1, 7], [2, 8]))  # env 1 jumped from 1 to 7: its pending row is cut there
    assert rows.env_ids.tolist() == [1] and rows.truncated.tolist() == [True]
    assert rows.obs[:, 0].tolist() == [0.0] and rows.next_obs[:, 0].tolist() == [1.0]
    rows = folder.fold(step([2, 8], [3, 9]))  # env 0: its first 3-step row is complete
    assert rows.env_ids.tolist() == [0] and rows.obs[:, 0].tolist() == [0.0] and rows.steps.tolist() == [3]


def test_prioritized_buffer_allocated_by_its_first_add():
    buffer = PrioritizedReplayBuffer(10, (3,))
    venv = gym.vector.SyncVectorEnv([lambda i=i: CountingEnv(4, tag=i) for i in range(2)])
    fill_prioritized(buffer, NStepFolder(1, 0.9, num_envs=2), venv, 12)  # checks the tree after every add
    assert buffer.num_envs == 2 and len(buffer) > 0


def test_adding_rows_keeps_the_learned_priorities_of_the_rows_still_in_the_window():
    buffer = PrioritizedReplayBuffer(30, (1,), num_envs=1)
    for t in range(10):
        add_step(buffer, [[t]], [[t + 1]], [0])
    slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment)))
    buffer.update_priorities(slots, np.arange(1.0, len(slots) + 1))
    before = buffer.tree[slots].copy()
    add_step(buffer, [[10]], [[11]], [0])
    buffer.add(np.zeros((0, 1), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
               np.zeros((0, 1), np.float32), np.zeros(0, bool), np.zeros(0, bool))  # an empty batch
    np.testing.assert_array_equal(buffer.tree[slots], before)


def test_prioritized_sampling_checks_beta_and_never_draws_past_the_total():
    buffer = PrioritizedReplayBuffer(8, (1,), num_envs=1)
    for t in range(5):
        add_step(buffer, [[t]], [[t + 1]], [0])
    slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment)))
    buffer.update_priorities(slots, np.full(len(slots), 1e-3))  # a total below 1
    with pytest.raises(ValueError, match="beta"):
        buffer.sample(4, np.random.default_rng(0), beta=1.5)

    class Highest:  # a generator whose uniform draws are all the largest float below 1
        def random(self, size):
            return np.full(size, np.nextafter(1.0, 0.0))

    drawn = buffer.sample_indices(4, Highest())
    assert buffer._valid(drawn).all()


def test_sum_tree_find_never_walks_into_an_empty_right_subtree_by_rounding():
    # found by a search: with these priorities the running sums round so that a target just below the total
    # passes the left sums on the way down; the walk must still end on item 5, not on a padding leaf
    p = [0.0, 0.00042734912847357666, 0.0, 0.00022006384668592715, 0.0002608359366863775, 0.0008650342829258504]
    tree = SumTree(6)
    tree.update(np.arange(6), np.array(p))
    assert tree.find(np.array([np.nextafter(tree.total, 0)])).tolist() == [5]


def test_float64_observations_in_a_float32_buffer_still_form_one_stream():
    # each row's next observation is the next row's observation, given as float64: one slot per row
    buffer = ReplayBuffer(50, (2,), np.float32, num_envs=1)
    rng = np.random.default_rng(0)
    obs = rng.random((1, 2))
    for _ in range(50):
        nxt = rng.random((1, 2))
        buffer.add(obs, np.zeros(1, np.int64), np.ones(1), nxt, np.zeros(1, bool), np.zeros(1, bool))
        obs = nxt
    assert len(buffer) == 50


def test_a_full_nstep_buffer_holds_exactly_its_capacity():
    buffer = ReplayBuffer(7, (1,), num_envs=1, n_step=3)
    folder = NStepFolder(3, 0.9, num_envs=1)
    for t in range(30):  # one long episode, folded into 3-step rows as the agent does
        rows = folder.fold(one_step([t + 1], 0, 1.0, [t + 2]))
        if len(rows):
            buffer.add(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated, rows.truncated,
                       rows.env_ids, rows.steps)
    assert len(buffer) == 7
    stored = stored_rows(buffer)
    assert sorted(stored.obs[:, 0].tolist()) == list(range(22, 29))
    np.testing.assert_array_equal(stored.next_obs[:, 0], stored.obs[:, 0] + 3)


def test_a_break_is_seen_even_when_another_env_has_no_pending_observation():
    # env 1 starts only in the second batch (nothing pending at its head); env 0's stream breaks in that batch
    buffer = ReplayBuffer(40, (1,), num_envs=2)
    add_step(buffer, [[0]], [[1]], [0])
    add_step(buffer, [[5], [100]], [[6], [101]], [0, 1])
    rows = stored_rows(buffer)
    pairs = sorted(zip(rows.obs[:, 0].tolist(), rows.next_obs[:, 0].tolist()))
    assert pairs == [(0.0, 1.0), (5.0, 6.0), (100.0, 101.0)]


def test_an_nstep_buffer_fills_up_to_its_capacity_row_by_row():
    # a 3-step row leaves two slots for the rows after it: no position may be wasted, or the window of 7
    # positions would hold fewer than 7 rows
    buffer = ReplayBuffer(7, (1,), num_envs=1, n_step=3)
    folder = NStepFolder(3, 0.9, num_envs=1)
    added = 0
    for t in range(12):
        rows = folder.fold(one_step([t + 1], 0, 1.0, [t + 2]))
        if len(rows):
            buffer.add(rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated, rows.truncated,
                       rows.env_ids, rows.steps)
            added += len(rows)
        assert len(buffer) == min(added, 7)


def test_a_broken_stream_keeps_the_rows_before_it():
    buffer = ReplayBuffer(6, (1,), num_envs=1)
    for t in range(3):
        add_step(buffer, [[t]], [[t + 1]], [0])
    add_step(buffer, [[50]], [[51]], [0])  # a new run: the stream breaks, the three rows before stay
    assert len(buffer) == 4
    assert sorted(stored_rows(buffer).obs[:, 0].tolist()) == [0.0, 1.0, 2.0, 50.0]
