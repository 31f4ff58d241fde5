"""The Trainer: hook order, budgets, early stopping, autoreset handling, checkpoints and resuming."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlbook.agents import Agent, RandomAgent
from rlbook.agents.base import load_checkpoint, rng_state, set_rng_state
from rlbook.evaluate import evaluate
from rlbook.logs import CSVLogger, ProgressBar, TensorBoardLogger
from rlbook.train import Checkpoint, Objective, Plugin, StopOnReward, Trainer


class FixedLengthEnv(gym.Env):
    """Observation = steps taken in the episode; reward 1 per step; ends after ``length`` steps,
    by termination or (``truncate=True``) by truncation."""

    def __init__(self, length=3, truncate=False):
        self.length = length
        self.truncate = truncate
        self.observation_space = gym.spaces.Box(0, 100, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t >= self.length
        return (np.array([self.t], dtype=np.float32), 1.0, end and not self.truncate, end and self.truncate, {})


class Recorder(Plugin):
    def __init__(self):
        self.calls = []

    def before_training(self, trainer):
        self.calls.append(("before_training",))

    def after_training(self, trainer):
        self.calls.append(("after_training",))

    def before_episode(self, trainer, env_id):
        self.calls.append(("before_episode", env_id))

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        self.calls.append(("after_episode", env_id, episode_return, episode_length))

    def before_step(self, trainer):
        self.calls.append(("before_step",))

    def after_step(self, trainer, transition, metrics):
        self.calls.append(("after_step", None if transition is None else len(transition)))


class RecordingAgent(RandomAgent):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def observe(self, transition):
        super().observe(transition)
        self.seen.append(copy.deepcopy(transition))


def make_agent(env, cls=RandomAgent):
    return cls(env.observation_space, env.action_space, seed=0)


def test_hook_order_over_two_episodes():
    env = FixedLengthEnv(length=2)
    rec = Recorder()
    Trainer(make_agent(env), env, total_episodes=2, plugins=[rec], seed=0).run()
    step = [("before_step",), ("after_step", 1)]
    reset_step = [("before_step",), ("before_episode", 0), ("after_step", None)]
    expected = (
        [("before_training",), ("before_episode", 0)]
        + step
        + [("before_step",), ("after_episode", 0, 2.0, 2), ("after_step", 1)]
        + reset_step
        + step
        + [("before_step",), ("after_episode", 0, 2.0, 2), ("after_step", 1)]
        + [("after_training",)]
    )
    # the reset step carries no transition: plugins get None there
    assert rec.calls == expected


def test_budgets_are_required_and_checked():
    env = FixedLengthEnv()
    with pytest.raises(ValueError, match="give a budget"):
        Trainer(make_agent(env), env)
    with pytest.raises(ValueError, match="total_steps must be >= 1, got -5"):
        Trainer(make_agent(env), env, total_steps=-5)


def test_agent_and_env_must_match():
    agent = RandomAgent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match="the agent was built for observations"):
        Trainer(agent, FixedLengthEnv(), total_steps=10)


def test_total_steps_counts_real_steps_only():
    env = FixedLengthEnv(length=3)
    trainer = Trainer(make_agent(env), env, total_steps=9, seed=0).run()
    # 3 episodes of 3 steps; the two autoreset steps in between do not count
    assert trainer.step == 9
    assert trainer.episode_lengths == [3, 3, 3]
    assert trainer.episode_end_steps == [3, 6, 9]
    assert trainer.stop_reason == "total_steps"


def test_stop_on_reward_threshold():
    env = FixedLengthEnv(length=5)
    stop = StopOnReward(threshold=5.0, window=3)
    trainer = Trainer(make_agent(env), env, total_episodes=100, plugins=[stop]).run()
    assert trainer.episodes == 3
    assert stop.solved_at_step == 15
    assert "mean return of the last 3 episodes" in trainer.stop_reason
    stop_never = StopOnReward(threshold=6.0, window=3)
    trainer = Trainer(make_agent(env), env, total_episodes=10, plugins=[stop_never]).run()
    assert trainer.episodes == 10 and stop_never.solved_at_step is None


def test_vector_env_autoreset_transitions_never_reach_the_agent():
    lengths = [2, 3]
    venv = gym.vector.SyncVectorEnv([lambda n=n: FixedLengthEnv(length=n) for n in lengths])
    agent = RecordingAgent(venv.single_observation_space, venv.single_action_space, seed=0)
    trainer = Trainer(agent, venv, total_steps=30, seed=0).run()
    rows = 0
    for t in agent.seen:
        rows += len(t)
        # every real transition moves the step counter forward by exactly one
        np.testing.assert_array_equal(t.next_obs[:, 0], t.obs[:, 0] + 1)
        for env_id, nxt, term in zip(t.env_ids, t.next_obs[:, 0], t.terminated):
            assert term == (nxt == lengths[env_id])
    assert rows == trainer.step == agent.num_steps
    assert sorted(set(trainer.episode_lengths)) == [2, 3]


def test_objective_shapes_the_reward_but_not_the_statistics():
    class Penalty(Objective):
        def __call__(self, transition, infos):
            return transition.reward - 10.0

    env = FixedLengthEnv(length=2)
    agent = RecordingAgent(env.observation_space, env.action_space)
    trainer = Trainer(agent, env, total_episodes=2, objective=Penalty()).run()
    assert all(np.all(t.reward == -9.0) for t in agent.seen)
    assert trainer.episode_returns == [2.0, 2.0]


def test_objective_reset_runs_at_the_start_of_every_run_before_any_reward():
    class Counting(Objective):
        def __init__(self):
            self.resets, self.calls, self.calls_at_reset = 0, 0, []

        def reset(self):
            self.resets += 1
            self.calls_at_reset.append(self.calls)

        def __call__(self, transition, infos):
            self.calls += 1
            return transition.reward * self.resets  # rewards depend on the reset having happened

    env = FixedLengthEnv(length=2)
    agent = RecordingAgent(env.observation_space, env.action_space)
    objective = Counting()
    trainer = Trainer(agent, env, total_episodes=2, objective=objective)
    trainer.run()
    assert objective.resets == 1 and objective.calls_at_reset == [0]
    assert all(np.all(t.reward == 1.0) for t in agent.seen)
    trainer.total_episodes = 4
    trainer.run()  # a second run (a resumed one) resets it again, before its first reward
    assert objective.resets == 2 and objective.calls_at_reset == [0, 4]


def test_test_mode_does_not_learn():
    env = FixedLengthEnv(length=2)
    agent = RecordingAgent(env.observation_space, env.action_space)
    Trainer(agent, env, total_episodes=3, train=False).run()
    assert agent.seen == [] and agent.num_steps == 0


def test_evaluate_counts_whole_episodes_and_errors():
    venv = gym.vector.SyncVectorEnv([lambda n=n: FixedLengthEnv(length=n) for n in (2, 5)])
    agent = RandomAgent(venv.single_observation_space, venv.single_action_space)
    result = evaluate(agent, venv, n_episodes=7)
    assert len(result.returns) == 7
    assert set(result.lengths) <= {2, 5}
    np.testing.assert_array_equal(result.returns, result.lengths)
    with pytest.raises(ValueError, match="n_episodes must be >= 1"):
        evaluate(agent, venv, n_episodes=0)


class LinearQAgent(Agent):
    """A tiny torch agent (linear Q, one Adam step per observed batch) to test checkpoints."""

    def __init__(self, observation_space, action_space, seed=0, epsilon=0.3):
        super().__init__(observation_space, action_space)
        torch.manual_seed(seed)
        self.q = nn.Linear(observation_space.shape[0], action_space.n)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=1e-2)
        self.rng = np.random.default_rng(seed)
        self.epsilon = epsilon
        self.updates = 0
        self._last = None

    def act_batch(self, obs, explore):
        with torch.no_grad():
            greedy = self.q(torch.as_tensor(obs, dtype=torch.float32)).argmax(1).numpy()
        if not explore:
            return greedy
        random = self.rng.integers(self.action_space.n, size=len(obs))
        return np.where(self.rng.random(len(obs)) < self.epsilon, random, greedy)

    def observe(self, transition):
        super().observe(transition)
        self._last = transition

    def update(self):
        t = self._last
        obs = torch.as_tensor(t.obs, dtype=torch.float32)
        nxt = torch.as_tensor(t.next_obs, dtype=torch.float32)
        with torch.no_grad():
            target = torch.as_tensor(t.reward) + 0.99 * self.q(nxt).max(1).values * torch.as_tensor(~t.terminated)
        q = self.q(obs).gather(1, torch.as_tensor(t.action).long()[:, None])[:, 0]
        loss = ((q - target) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        return {"loss": loss.detach()}

    def state_dict(self):
        return {**super().state_dict(), "q": self.q.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self.rng), "updates": self.updates}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.q.load_state_dict(state["q"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])
        self.updates = state["updates"]


class InterruptAt(Plugin):
    def __init__(self, step):
        self.step = step

    def after_step(self, trainer, transition, metrics):
        if trainer.step >= self.step:
            raise KeyboardInterrupt


def test_checkpoint_round_trip_and_resume(tmp_path):
    path = tmp_path / "ckpt.pt"
    env = gym.make("CartPole-v1")
    agent = LinearQAgent(env.observation_space, env.action_space, seed=3)
    first = Trainer(agent, env, total_steps=1000, seed=0,
                    plugins=[Checkpoint(path, every_steps=100), InterruptAt(450)]).run()
    assert first.interrupted and first.stop_reason == "interrupted"
    assert first.step == 450
    saved = load_checkpoint(path)
    assert saved["extra"]["trainer"]["step"] == 450
    assert saved["agent"]["num_steps"] == 450 and saved["agent"]["updates"] == agent.updates

    # a fresh agent resumes from the file: same step, same weights, same optimizer state, same actions
    fresh = LinearQAgent(env.observation_space, env.action_space, seed=99)
    ckpt = Checkpoint(path)
    resumed = Trainer(fresh, gym.make("CartPole-v1"), total_steps=1000, seed=0, plugins=[ckpt])
    ckpt.before_training(resumed)
    assert ckpt.resumed_from_step == 450 and resumed.step == 450
    assert resumed.episode_returns == first.episode_returns
    for a, b in zip(agent.q.parameters(), fresh.q.parameters()):
        torch.testing.assert_close(a, b)
    opt_a, opt_b = agent.optimizer.state_dict(), fresh.optimizer.state_dict()
    for key in opt_a["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt_a["state"][key][name], opt_b["state"][key][name])
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.act_batch(obs, explore=True), fresh.act_batch(obs, explore=True))

    # and the resumed run finishes the budget from where it stopped
    fresh2 = LinearQAgent(env.observation_space, env.action_space, seed=99)
    done = Trainer(fresh2, gym.make("CartPole-v1"), total_steps=1000, seed=0, plugins=[Checkpoint(path)]).run()
    assert done.step == 1000 and fresh2.num_steps == 1000
    assert done.episode_returns[: len(first.episode_returns)] == first.episode_returns
    assert load_checkpoint(path)["extra"]["trainer"]["step"] == 1000


def test_loading_rejects_foreign_files(tmp_path):
    env = FixedLengthEnv()
    agent = make_agent(env)
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    with pytest.raises(ValueError, match="is not an rlbook checkpoint: it looks like a plain torch.save file"):
        agent.load(bogus)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not an rlbook checkpoint"):
        agent.load(garbage)
    with pytest.raises(FileNotFoundError):
        agent.load(tmp_path / "missing.pt")
    other = LinearQAgent(env.observation_space, env.action_space)
    other.save(tmp_path / "linear.pt")
    with pytest.raises(ValueError, match="holds a LinearQAgent agent, not a RandomAgent"):
        agent.load(tmp_path / "linear.pt")


def test_loggers_write_csv_and_tensorboard(tmp_path):
    env = gym.make("CartPole-v1")
    agent = LinearQAgent(env.observation_space, env.action_space)
    csv_logger = CSVLogger(tmp_path / "csv", every_steps=100)
    tb = TensorBoardLogger(tmp_path / "tb", every_steps=100)
    trainer = Trainer(agent, env, total_steps=500, seed=0,
                      plugins=[csv_logger, tb, ProgressBar(disable=True)]).run()
    episodes = (tmp_path / "csv" / "episodes.csv").read_text().splitlines()
    assert episodes[0] == "step,episode,return,length,seconds"
    assert len(episodes) == 1 + trainer.episodes
    metrics = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,loss" and len(metrics) >= 5
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"episode/return", "train/loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("episode/return")) == trainer.episodes


def test_metrics_history_averages_each_period_and_keeps_the_last_partial_one():
    from rlbook.logs import MetricsHistory

    class Scripted(RandomAgent):  # metric "k" = the agent's step count, on every other step
        def update(self):
            return {"k": float(self.num_steps)} if self.num_steps % 2 == 0 else {}

    env = gym.make("CartPole-v1")
    history = MetricsHistory(every_steps=10)
    Trainer(Scripted(env.observation_space, env.action_space), env, total_steps=25, seed=0,
            plugins=[history]).run()
    steps, values = history.series("k")
    assert steps.tolist() == [10, 20, 25]
    assert values.tolist() == [np.mean([2, 4, 6, 8, 10]), np.mean([12, 14, 16, 18, 20]), np.mean([22, 24])]
    with pytest.raises(KeyError, match=r"no metric 'loss' was recorded; recorded: \['k'\]"):
        history.series("loss")


def test_agent_rejects_unsupported_spaces():
    class DiscreteOnly(RandomAgent):
        supported_action_spaces = (gym.spaces.Discrete,)

    with pytest.raises(TypeError, match="DiscreteOnly needs an action space of type Discrete"):
        DiscreteOnly(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (1,)))


def test_learn_and_predict_like_sb3():
    env = gym.make("CartPole-v1")
    agent = make_agent(env).learn(env, total_steps=50, seed=0)
    assert agent.trainer.step == 50
    action, state = agent.predict(env.reset(seed=0)[0])
    assert env.action_space.contains(action) and state is None


def test_begin_run_is_called_before_every_run_resets_the_envs():
    class Counting(RandomAgent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.runs = []

        def begin_run(self, num_envs):
            self.runs.append((num_envs, self.num_steps))

    env = FixedLengthEnv(length=2)
    agent = Counting(env.observation_space, env.action_space)
    agent.learn(env, total_steps=3)
    agent.learn(env, total_steps=5)
    assert agent.runs == [(1, 0), (1, 3)]


class InPlaceEnv(FixedLengthEnv):
    """Returns (and then mutates) the same observation array every step, as some envs do."""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.zeros(1, dtype=np.float32)
        return self.state, {}

    def step(self, action):
        _, reward, terminated, truncated, info = super().step(action)
        self.state[0] = self.t
        return self.state, reward, terminated, truncated, info


def test_stored_observations_survive_envs_that_update_their_array_in_place():
    env = InPlaceEnv(length=4)
    agent = RecordingAgent(env.observation_space, env.action_space)
    Trainer(agent, env, total_steps=8).run()
    for t in agent.seen:
        np.testing.assert_array_equal(t.next_obs[:, 0], t.obs[:, 0] + 1)


def test_vector_envs_that_reuse_their_buffer_are_refused():
    venv = gym.vector.SyncVectorEnv([lambda: FixedLengthEnv()] * 2, copy=False)
    with pytest.raises(ValueError, match="copy=False"):
        Trainer(RandomAgent(venv.single_observation_space, venv.single_action_space), venv, total_steps=5)


def test_reward_of_autoreset_rows_never_enters_episode_returns():
    venv = gym.vector.SyncVectorEnv([lambda: FixedLengthEnv(length=3)] * 2)
    venv = gym.wrappers.vector.TransformReward(venv, lambda r: r - 1.0)  # the reset row gets -1 too
    trainer = Trainer(RandomAgent(venv.single_observation_space, venv.single_action_space), venv,
                      total_episodes=6).run()
    assert trainer.episode_returns == [0.0] * 6  # three steps of 1 - 1
    from rlbook.evaluate import evaluate

    np.testing.assert_array_equal(evaluate(trainer.agent, venv, n_episodes=6).returns, np.zeros(6))


def test_objective_infos_are_aligned_with_the_transition_rows():
    seen = []

    class Check(Objective):
        def __call__(self, transition, infos):
            seen.append((len(transition), {k: len(v) for k, v in infos.items() if isinstance(v, np.ndarray)}))
            return transition.reward

    class InfoEnv(FixedLengthEnv):
        def step(self, action):
            out = super().step(action)
            return (*out[:4], {"t": self.t})

    venv = gym.vector.SyncVectorEnv([lambda n=n: InfoEnv(length=n) for n in (2, 3)])
    Trainer(RandomAgent(venv.single_observation_space, venv.single_action_space), venv, total_steps=12,
            objective=Check()).run()
    assert any(rows == 1 for rows, _ in seen)  # some steps had an autoreset row removed
    for rows, sizes in seen:
        assert all(size == rows for size in sizes.values()), (rows, sizes)


def test_metrics_reach_plugins_once_per_update():
    class UpdatesEveryStep(RandomAgent):
        def update(self):
            return {"one": 1.0}

    class Count(Plugin):
        calls = 0

        def after_step(self, trainer, transition, metrics):
            Count.calls += bool(metrics)

    env = FixedLengthEnv(length=2)
    trainer = Trainer(UpdatesEveryStep(env.observation_space, env.action_space), env, total_steps=10,
                      plugins=[Count()]).run()
    assert Count.calls == trainer.step == 10  # reset-only steps pass no (stale) metrics


def test_action_space_size_must_match():
    env = FixedLengthEnv()  # Discrete(2)
    agent = RandomAgent(env.observation_space, gym.spaces.Discrete(3))
    with pytest.raises(ValueError, match="the agent was built for"):
        Trainer(agent, env, total_steps=5)


def test_failed_start_keeps_the_checkpoint_and_errors_close_the_logs(tmp_path):
    env = gym.make("CartPole-v1")
    path = tmp_path / "linear.pt"
    LinearQAgent(env.observation_space, env.action_space).save(path)
    before = path.read_bytes()
    csv_logger = CSVLogger(tmp_path / "csv")
    with pytest.raises(ValueError, match="holds a LinearQAgent agent"):
        Trainer(make_agent(env), env, total_steps=10, plugins=[csv_logger, Checkpoint(path)]).run()
    assert path.read_bytes() == before  # the user's checkpoint was not overwritten by the fresh agent
    assert csv_logger._episodes_file is None  # and the log files were closed

    class Boom(Plugin):
        def after_step(self, trainer, transition, metrics):
            if trainer.step >= 30:
                raise RuntimeError("boom")

    csv_logger = CSVLogger(tmp_path / "csv2")
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(make_agent(env), env, total_steps=100, plugins=[csv_logger, Boom()]).run()
    assert csv_logger._episodes_file is None


class SlowCountingEnv(gym.Wrapper):
    """A counting env whose steps take 2 ms (to see that evaluation time is not training time)."""

    def step(self, action):
        import time

        time.sleep(0.002)
        return self.env.step(action)


def test_greedy_solve_rule_checks_on_fresh_envs_and_pauses_the_clock():
    from rlbook.envs.counting import CountingEnv
    from rlbook.evaluate import GreedySolve

    env = CountingEnv(5)  # every episode returns 1 + 2 + 3 + 4 + 5 = 15
    agent = RandomAgent(env.observation_space, env.action_space, seed=0)
    slow = lambda: SlowCountingEnv(CountingEnv(5))  # noqa: E731
    never = GreedySolve(slow, threshold=15.5, every_steps=100, episodes=20, confirm=100, num_envs=4)
    trainer = Trainer(agent, env, total_steps=400, plugins=[never], seed=0).run()
    assert [h[0] for h in never.history] == [100, 200, 300, 400] and never.solved_at_step is None
    assert all(h[2] == 15.0 for h in never.history)
    # 4 checks x 20 episodes x 5 steps x 2 ms = 0.8 s of evaluation, none of it training time
    assert trainer.seconds() < 0.4 and trainer.stop_reason == "total_steps"
    solves = GreedySolve(slow, threshold=15.0, every_steps=100, episodes=20, confirm=100, num_envs=4)
    trainer = Trainer(RandomAgent(env.observation_space, env.action_space), CountingEnv(5), total_steps=1000,
                      plugins=[solves], seed=0).run()
    assert solves.solved_at_step == trainer.step == 100 and solves.confirm_mean == 15.0
    assert solves.solved_at_seconds < 0.2 and "greedy policy solved" in trainer.stop_reason


class _Poisoned(gym.Env):
    """A 2-float observation, reward 1 per step, episodes of 5 steps; at global step ``at`` (counted per env)
    this copy returns a NaN in the ``where`` it is told ("reward", "obs" or "reset")."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, poison: str | None = None, at: int = 3):
        self.poison, self.at, self.t, self.k = poison, at, 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k = 0
        obs = np.zeros(2, np.float32)
        if self.poison == "reset":
            obs[1] = np.nan
        return obs, {}

    def step(self, action):
        self.t += 1
        self.k += 1
        obs, reward = np.full(2, self.t, np.float32), 1.0
        if self.t == self.at and self.poison == "reward":
            reward = float("nan")
        if self.t == self.at and self.poison == "obs":
            obs[0] = np.nan
        return obs, reward, False, self.k >= 5, {}


def _poisoned_vec(poison):
    # two copies: only the second is poisoned, so a check on "all rows bad" or on the first row misses it
    return gym.vector.SyncVectorEnv([lambda: _Poisoned(), lambda: _Poisoned(poison)])


@pytest.mark.parametrize(("poison", "words"), [("reward", "non-finite reward \\(nan\\) at step 4"),
                                               ("obs", "non-finite observation at step 4"),
                                               ("reset", "non-finite observation at step 0")])
def test_a_non_finite_reward_or_observation_stops_the_run_at_its_step(poison, words):
    env = _poisoned_vec(poison)
    agent = RandomAgent(env.single_observation_space, env.single_action_space, seed=0)
    seen = []

    class Watch(Plugin):
        def after_step(self, trainer, transition, metrics):
            seen.append(transition.reward.copy())

    with pytest.raises(ValueError, match=rf"{words} \(environment 1 of the vector\)"):
        Trainer(agent, env, total_steps=40, plugins=[Watch()], seed=0).run()
    assert all(np.isfinite(r).all() for r in seen)  # nothing non-finite reached the plugins (or the agent)


def test_finite_steps_skip_the_detailed_input_check(monkeypatch):
    """The per-row check (with its messages) runs only when a cheap test of the whole batch fails: on finite
    data it runs once, on the first observation, and never inside the loop."""
    calls = []
    original = Trainer._check_inputs
    monkeypatch.setattr(Trainer, "_check_inputs", lambda self, *a: (calls.append(a), original(self, *a)))
    env = _poisoned_vec(None)
    agent = RandomAgent(env.single_observation_space, env.single_action_space, seed=0)
    Trainer(agent, env, total_steps=40, seed=0).run()
    assert len(calls) == 1 and calls[0][0] is None


class _Labelled(gym.Env):
    """Episodes of 3 steps, reward 1; each step's info carries a label of which copy and step it is."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, copy: int, length: int):
        self.copy, self.length, self.k = copy, length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k = 0
        return np.zeros(1, np.float32), {"label": -1.0}

    def step(self, action):
        self.k += 1
        return (np.full(1, self.k, np.float32), 1.0, self.k >= self.length, False,
                {"label": 100.0 * self.copy + self.k})


class _Recorder(RandomAgent):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = []

    def observe(self, transition):
        super().observe(transition)
        self.rows.append((transition.env_ids.copy(), transition.next_obs[:, 0].copy(), transition.reward.copy()))


class _LabelReward(Objective):
    """The reward the agent sees is the info label of its row: any misaligned row shows at once."""

    def __call__(self, transition, infos):
        return infos["label"]


def test_an_objective_sees_infos_aligned_with_its_rows_when_some_rows_reset():
    # copies of different episode lengths, so that resets happen on different steps
    env = gym.vector.SyncVectorEnv([lambda: _Labelled(0, 2), lambda: _Labelled(1, 3)])
    agent = _Recorder(env.single_observation_space, env.single_action_space, seed=0)
    Trainer(agent, env, total_steps=20, objective=_LabelReward(), seed=0).run()
    assert any(len(ids) == 1 for ids, _, _ in agent.rows)  # some steps had a resetting row
    for ids, step_in_episode, reward in agent.rows:
        np.testing.assert_array_equal(reward, 100.0 * ids + step_in_episode)


class _BadObjective(Objective):
    def __init__(self, kind):
        self.kind = kind

    def __call__(self, transition, infos):
        reward = np.array(transition.reward, dtype=np.float64)
        if self.kind == "nan":
            reward[-1] = np.nan  # one row of two: a check on "all rows" or on the first row misses it
            return reward
        return np.append(reward, 0.0)  # one reward too many


@pytest.mark.parametrize(("kind", "words"), [("nan", "returned a non-finite reward"),
                                             ("shape", r"returned rewards of shape \(3,\); expected \(2,\)")])
def test_a_bad_objective_stops_the_run_before_the_agent_sees_its_rewards(kind, words):
    env = gym.vector.SyncVectorEnv([lambda: _Labelled(0, 5), lambda: _Labelled(1, 5)])
    agent = _Recorder(env.single_observation_space, env.single_action_space, seed=0)
    with pytest.raises(ValueError, match=words):
        Trainer(agent, env, total_steps=20, objective=_BadObjective(kind), seed=0).run()
    assert agent.rows == []


class _NoisyResetFlags(gym.vector.SyncVectorEnv):
    """A vector env that (against Gymnasium's contract) repeats ``terminated`` on the step that only resets."""

    def step(self, actions):
        obs, reward, terminated, truncated, infos = super().step(actions)
        resetting = getattr(self, "_was_done", np.zeros(self.num_envs, bool))
        self._was_done = terminated | truncated
        return obs, reward, terminated | resetting, truncated, infos


def test_a_resetting_row_never_ends_an_episode_whatever_its_flags():
    env = _NoisyResetFlags([lambda: _Labelled(0, 2), lambda: _Labelled(1, 3)])
    agent = _Recorder(env.single_observation_space, env.single_action_space, seed=0)
    trainer = Trainer(agent, env, total_steps=30, seed=0).run()
    assert trainer.episode_lengths and set(trainer.episode_lengths) <= {2, 3}
    assert trainer.episode_returns == [float(n) for n in trainer.episode_lengths]


# ---------------------------------------------------------------------------- tests that kill surviving mutants
def test_staggered_episodes_of_a_vector_env_are_each_recorded_once():
    # episodes of 2 and 3 steps side by side: they end at different vector steps, and each is recorded once,
    # with its own return and length, at the step count when it ended (autoreset rows excluded)
    venv = gym.vector.SyncVectorEnv([lambda: FixedLengthEnv(2), lambda: FixedLengthEnv(3)])
    agent = RandomAgent(venv.single_observation_space, venv.single_action_space)
    trainer = Trainer(agent, venv, total_steps=14, seed=0).run()
    assert trainer.step == 15  # the last vector step holds two real steps
    # by hand: A ends at vector steps 2, 5, 8 and B at 3, 7; a row after an end is an autoreset (not counted)
    assert list(zip(trainer.episode_end_steps, trainer.episode_lengths)) == [(4, 2), (5, 3), (8, 2), (11, 3),
                                                                             (12, 2)]
    assert trainer.episode_returns == [float(n) for n in trainer.episode_lengths]  # reward 1 per step


def test_a_run_without_learning_counts_its_steps_and_stops_on_budget():
    env = FixedLengthEnv(3)
    trainer = Trainer(make_agent(env), env, total_steps=7, train=False).run()
    assert trainer.step == 7 and trainer.episode_lengths == [3, 3]


class _DivergesAt(RandomAgent):
    """A random agent whose learning state 'becomes non-finite' once it has seen ``at`` steps."""

    def __init__(self, space, actions, at):
        super().__init__(space, actions)
        self.at = at

    def nonfinite(self):
        return "the weights" if self.num_steps >= self.at else None


@pytest.mark.parametrize(("at", "total", "last_good", "caught"),
                         [(15, 100, 10, 20), (5, 100, 0, 10), (25, 27, 20, 27)])
def test_divergence_is_caught_at_the_first_check_after_it(at, total, last_good, caught):
    # checks every 10 steps and once at the end: a state that goes bad at step 15 is caught at step 20
    env = FixedLengthEnv(50)
    agent = _DivergesAt(env.observation_space, env.action_space, at)
    with pytest.raises(Exception, match=rf"between step {last_good} .* and step {caught}\."):
        Trainer(agent, env, total_steps=total, check_every=10).run()
