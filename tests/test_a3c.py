"""A3C (rlbook.agents.a3c, rlbook.parallel): one synchronous worker is exactly A2C, both variants learn
CartPole with their policy lag recorded and bounded, faults (SIGTERM, Ctrl-C, a killed or raising worker) stop
the run with a loadable checkpoint and no process left, runs resume, and the Ray path does the same with actors."""

import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
import worker_targets

from rlbook.agents.a2c import A2CAgent, A2CConfig
from rlbook.agents.a3c import A3CAgent, A3CConfig, gradients_vector
from rlbook.checkpoints import read_checkpoint
from rlbook.envs import make_vec
from rlbook.parallel import A3CTrainer, SharedWeights
from rlbook.train import StopOnReward, Trainer
from rlbook.workers import RayWorkerPool, WorkerError, child_pids

ROOT = Path(__file__).resolve().parent.parent


def cartpole_agent(**overrides) -> A3CAgent:
    env = make_vec("CartPole-v1", 2)
    agent = A3CAgent(env.single_observation_space, env.single_action_space,
                     A3CConfig.cartpole(seed=0, device="cpu", **overrides))
    env.close()
    return agent


@pytest.mark.parametrize("mode", ["data", "gradients"])
def test_one_synchronous_worker_is_exactly_a2c(mode):
    """Same seeds, same env numbers, same sampling stream: the learner's weights equal A2C's bit for bit (a
    worker that played with stale weights, sent the wrong rows or lost a step would break this)."""
    env = make_vec("CartPole-v1", 4)
    a3c = A3CAgent(env.single_observation_space, env.single_action_space,
                   A3CConfig.from_dict({**A2CConfig.cartpole(seed=3).to_dict(), "workers": 1,
                                        "synchronous": True, "mode": mode}))
    trainer = A3CTrainer(a3c, "CartPole-v1", envs_per_worker=4, total_steps=2_000, seed=7).run()
    # the learner stops after the message that crosses 2,000 steps: A2C runs to the end of the same rollout
    a2c = A2CAgent(env.single_observation_space, env.single_action_space, A2CConfig.cartpole(seed=3))
    a2c_run = Trainer(a2c, env, total_steps=trainer.step, seed=7).run()
    assert a2c_run.step == trainer.step == a3c.num_steps and a3c.num_updates == a2c.num_updates
    assert trainer.policy_lags == [0] * a3c.num_updates
    assert trainer.episode_returns == a2c_run.episode_returns
    for (name, p), q in zip(a2c.net.named_parameters(), a3c.net.parameters()):
        assert torch.equal(p, q), name
    assert child_pids() == []


@pytest.fixture(scope="module", params=["data", "gradients"])
def learned(request):
    agent = cartpole_agent(workers=2, mode=request.param)
    # asynchronous runs differ from one execution to the next: a generous budget, stopped at the goal
    trainer = A3CTrainer(agent, "CartPole-v1", envs_per_worker=4, total_steps=150_000, seed=0,
                         plugins=[StopOnReward(195, window=20)]).run()
    return request.param, agent, trainer


def test_both_variants_learn_cartpole(learned):
    mode, agent, trainer = learned
    returns = np.array(trainer.episode_returns)
    assert returns[:20].mean() < 60 and returns[-20:].mean() >= 195, (mode, returns[:20].mean(), trainer.step)
    assert trainer.stop_reason == "mean return of the last 20 episodes >= 195", trainer.stop_reason
    assert trainer.step < 150_000 and agent.num_steps == trainer.step
    assert {w for _, w, _ in trainer.messages} == {0, 1}  # both workers were heard
    # CartPole pays 1 per step: each episode's return is its length, and the learner records both
    assert trainer.episode_lengths == [int(r) for r in trainer.episode_returns]
    ends = np.array(trainer.episode_end_steps)  # the learner's step count when each episode's message arrived
    assert len(ends) == len(returns) and np.all(np.diff(ends) >= 0) and 0 < ends[-1] <= trainer.step
    assert np.all(np.cumsum(trainer.episode_lengths) <= ends)  # no episode is counted before its steps
    assert child_pids() == []


def test_policy_lag_is_recorded_and_bounded_by_the_queue(learned):
    mode, agent, trainer = learned
    lags = np.array(trainer.policy_lags)
    assert len(lags) == agent.num_updates
    # a worker has at most max_queued unread messages, and the learner reads the workers in turn: nearly every
    # message is behind at most that many of each worker's (a blocked send can let a few more through)
    bound = agent.config.workers * (agent.config.max_queued + 1)
    assert lags.min() >= 0 and np.mean(lags <= bound) >= 0.99 and lags.max() <= 2 * bound, np.bincount(lags)
    assert lags.mean() > 0.5  # asynchronous: most messages come from weights a few updates old
    if mode == "data":  # without max_queued the lag grows with the pipe's buffer: the bound is the queue's doing
        free = A3CTrainer(cartpole_agent(workers=2, max_queued=8), "CartPole-v1", envs_per_worker=4,
                          total_steps=6_000, seed=0).run()
        assert np.mean(free.policy_lags) > lags.mean() + 2


def test_gradients_vector_lays_out_every_parameter_in_order_with_zeros_for_missing_grads():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    net(torch.ones(1, 3)).sum().backward()
    net[1].bias.grad = None  # a parameter the loss did not reach
    flat = gradients_vector(net)
    expected = np.concatenate([net[0].weight.grad.numpy().ravel(), net[0].bias.grad.numpy().ravel(),
                               net[1].weight.grad.numpy().ravel(), [0.0]])
    assert flat.dtype == np.float32 and flat.shape == (11,)
    np.testing.assert_array_equal(flat, expected.astype(np.float32))
    agent = cartpole_agent(workers=1)  # and apply_gradients reads the same layout back
    before = agent.weights_vector()
    grad = np.zeros(before.numel(), np.float32)
    grad[0] = 1.0
    agent.apply_gradients(grad)
    changed = (agent.weights_vector() != before).numpy()
    assert changed[0] and not changed[1:].any()


def test_shared_weights_publish_and_fetch_versions():
    board = SharedWeights(torch.zeros(3), workers=2)
    assert board.version() == -1 and board.fetch(-1) is None  # nothing published yet
    board.publish(torch.tensor([1.0, 2.0, 3.0]), 0, [0, 0])
    version, vector, applied = board.fetch(-1)
    assert version == 0 and vector.tolist() == [1.0, 2.0, 3.0] and applied == [0, 0]
    assert board.fetch(0) is None  # nothing newer
    board.publish(torch.tensor([4.0, 5.0, 6.0]), 1, [0, 1])
    vector[0] = 99.0  # a fetched vector is a copy
    version, vector, applied = board.fetch(0)
    assert version == 1 and vector.tolist() == [4.0, 5.0, 6.0] and applied == [0, 1]
    board.state[0] += 1  # a write under way: fetch waits for it to end rather than copy half of it
    threading.Timer(0.2, lambda: board.state[0].add_(1)).start()
    assert board.fetch(0)[0] == 1 and int(board.state[0]) % 2 == 0
    # a learner killed in the middle of a write leaves the number odd for good: a stopping worker gives up
    board.state[0] += 1
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.perf_counter()
    assert board.fetch(0, stop) is None and 0.15 < time.perf_counter() - start < 5


def lags_beyond_other_workers(trainer) -> int:
    """How many messages are staler than the other workers' messages since the same worker's previous one
    (a synchronous worker's weights include its own previous update, so only others' updates can be missing)."""
    last: dict[int, int] = {}
    beyond = 0
    for j, ((_, worker, _), lag) in enumerate(zip(trainer.messages, trainer.policy_lags)):
        others = sum(1 for _, w, _ in trainer.messages[last.get(worker, -1) + 1:j] if w != worker)
        beyond += lag > others
        last[worker] = j
    return beyond


def test_synchronous_workers_never_run_ahead_of_their_own_updates():
    agent = cartpole_agent(workers=2, synchronous=True)
    trainer = A3CTrainer(agent, "CartPole-v1", envs_per_worker=4, total_steps=4_000, seed=0).run()
    assert lags_beyond_other_workers(trainer) == 0 and max(trainer.policy_lags) >= 1
    free = A3CTrainer(cartpole_agent(workers=2), "CartPole-v1", envs_per_worker=4, total_steps=4_000, seed=0).run()
    assert lags_beyond_other_workers(free) > len(free.messages) // 2  # the check can fail: running ahead does
    assert child_pids() == []


def test_bad_arguments_are_named():
    agent = cartpole_agent(workers=1)
    with pytest.raises(ValueError, match="workers"):
        A3CConfig(workers=0)
    with pytest.raises(ValueError, match="mode"):
        A3CConfig(mode="hogwild")
    with pytest.raises(TypeError, match="picklable function"):
        A3CTrainer(agent, make_vec("CartPole-v1", 2), total_steps=10)
    with pytest.raises(ValueError, match="backend"):
        A3CTrainer(agent, "CartPole-v1", total_steps=10, backend="mpi")
    with pytest.raises(TypeError, match="A3CAgent"):
        A3CTrainer(A2CAgent(agent.observation_space, agent.action_space), "CartPole-v1", total_steps=10)
    with pytest.raises(TypeError, match="picklable"):  # a lambda cannot reach a spawned worker
        A3CTrainer(agent, lambda: make_vec("CartPole-v1", 2), total_steps=100).run()
    with pytest.raises(ValueError, match="expected a flat gradient of 9155"):
        agent.apply_gradients(np.zeros(5, np.float32))
    assert child_pids() == []


# ------------------------------------------------------------------ faults, in a subprocess (tests/a3c_run.py)
def a3c_run(folder: Path, fault: str = "none", mode: str = "data") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tests" / "a3c_run.py"), str(folder), "--fault", fault,
                           "--at", "1000", "--total", "3000", "--mode", mode],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("fault, mode, status, message", [
    ("sigterm", "data", 143, "stopped by SIGTERM"),
    ("sigint", "gradients", 0, "Ctrl-C received"),
    ("kill_worker", "data", 1, r"WorkerError: a3c-worker-1 failed: the process \(pid \d+\) died with exit code -9 "
                               r"\(SIGKILL\)"),
    ("worker_error", "gradients", 1, r"(?s)WorkerError: a3c-worker-\d failed: it raised an exception.*"
                                     r"RuntimeError: injected fault in a worker's env.step"),
])
def test_a_fault_stops_the_run_with_a_checkpoint_and_no_process_left_then_it_resumes(tmp_path, fault, mode,
                                                                                    status, message):
    first = a3c_run(tmp_path, fault, mode)
    assert first.returncode == status, first.stderr[-3000:]
    assert __import__("re").search(message, first.stderr), first.stderr[-3000:]
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)  # the two workers are gone
    saved = read_checkpoint(tmp_path / "a3c.pt")["extra"]["trainer"]["step"]
    assert 1_000 <= saved < 3_000
    (tmp_path / "fail").unlink(missing_ok=True)
    second = a3c_run(tmp_path, "none", mode)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert result["resumed_from"] == saved and result["step"] >= 3_000 and result["agent_steps"] == result["step"]
    assert result["stop_reason"] == "total_steps" and not result["interrupted"]


def test_pong_bench_runs_a3c_with_workers_and_counts_their_games(tmp_path):
    """bench/a2c_pong.py --workers: the full Pong A3C run is one command; here two workers play long enough
    for games to end (a random Pong game lasts about 800 steps), and their scores reach the learner."""
    import importlib.util

    from rlbook.results import results_path

    spec = importlib.util.spec_from_file_location("a2c_pong", ROOT / "bench" / "a2c_pong.py")
    a2c_pong = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(a2c_pong)
    name = f"_test_a3c_pong_{os.getpid()}"
    try:
        path = a2c_pong.main(["--device", "cpu", "--workers", "2", "--num-envs", "2", "--total-steps", "4000",
                              "--threads", "1", "--env-threads", "1", "--results-name", name, "--quiet",
                              "--checkpoint", str(tmp_path / "a3c_pong.pt")])
        data = json.loads(path.read_text())
    finally:
        results_path(f"11_a3c/{name}").unlink(missing_ok=True)
    run = data["provenance"]["run"]
    assert path.parent.name == "11_a3c" and run["steps"] >= 4000 and run["policy_lag_mean"] >= 0
    assert run["games"] >= 2 and all(-21 <= s <= 21 for s in data["provenance"]["curve"]["game_scores"])
    assert data["provenance"]["settings"]["config"]["workers"] == 2
    assert data["metrics"]["a3c_pong_frames_per_second"]["median"] > 0
    assert A3CAgent.from_checkpoint(tmp_path / "a3c_pong.pt").num_steps == run["steps"]
    assert child_pids() == []


# ------------------------------------------------------------------ Ray (last in the file: while the module's Ray
# instance runs, its own processes are children of this one, so the tests above count children before it starts)
@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}})
    yield
    ray.shutdown()


@pytest.mark.parametrize("mode", ["data", "gradients"])
def test_ray_actors_train_the_same_agent(local_ray, mode):
    agent = cartpole_agent(workers=2, mode=mode)
    # a fixed short budget left the outcome to chance (CI once saw the last 20 episodes average 17.4 after 6,000
    # steps, the first 20 19.1): a generous budget, stopped at a modest goal (reached in 4,700-12,800 steps in 10
    # runs here)
    trainer = A3CTrainer(agent, functools.partial(make_vec, "CartPole-v1", 4), total_steps=40_000, seed=0,
                         backend="ray", ray_cpus_per_worker=0.5, plugins=[StopOnReward(100, window=20)]).run()
    assert trainer.stop_reason == "mean return of the last 20 episodes >= 100", (trainer.stop_reason, trainer.step)
    assert np.mean(trainer.episode_returns[:20]) < 60
    assert agent.num_steps == trainer.step and agent.num_updates == len(trainer.messages)
    assert {w for _, w, _ in trainer.messages} == {0, 1}
    # new weights reach the actors asynchronously, so the bound of the process pool is not strict here (actors that
    # never got new weights would lag by every update so far: hundreds); the largest lag seen in 18 runs here was 19
    assert np.median(trainer.policy_lags) <= 2 * (agent.config.max_queued + 1)
    assert np.percentile(trainer.policy_lags, 99) < 40


def test_ray_pool_names_a_raising_worker(local_ray):
    with pytest.raises(WorkerError, match=r"(?s)actor-1 failed: it raised an exception.*worker 1 found a bad value"):
        with RayWorkerPool(worker_targets.fail_after, [(2,), (2,)], name="actor", cpus_per_worker=0.5) as pool:
            while True:
                pool.get(timeout=60)


def test_ray_pool_delivers_every_message_then_ends(local_ray):
    with RayWorkerPool(worker_targets.count, [(5,), (5,)], cpus_per_worker=0.5) as pool:
        got = [pool.get(timeout=60) for _ in range(10)]
        with pytest.raises(RuntimeError, match="every worker has finished"):
            pool.get(timeout=30)
    assert sorted(m for _, m in got) == [(i, k) for i in range(2) for k in range(5)]
    assert pool.stop() == ["done", "done"]

