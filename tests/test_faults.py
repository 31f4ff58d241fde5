"""Runs that survive faults, checkpoints that cannot lie.

Each fault is injected into a real training run in a subprocess (tests/fault_run.py: DQN on two CartPoles
with a checkpoint every 200 steps and CSV logs). Afterwards the checkpoint must load, its step counters
must agree, the logs must match it, and a resumed run must finish with one header, no lost and no
duplicated rows.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbook.agents import CEMAgent, DQNAgent, PolicyAgent, RandomAgent
from rlbook.agents.base import load_checkpoint
from rlbook.checkpoints import CheckpointError, read_checkpoint, write_checkpoint
from rlbook.envs.counting import ChainEnv
from rlbook.tabular import ModelBasedAgent, QLearningAgent
from rlbook.train import Checkpoint, Trainer, TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 1200
AT = 600


def fault_run(folder: Path, fault: str = "none", at: int = AT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tests" / "fault_run.py"), str(folder), "--fault", fault,
                           "--at", str(at), "--total", str(TOTAL)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def check_logs_match(folder: Path, trainer_state: dict, final: bool) -> None:
    header, rows = read_rows(folder / "logs" / "episodes.csv")
    assert header == ["step", "episode", "return", "length", "seconds"]
    assert all(len(r) == 5 for r in rows)  # no line cut short
    step = trainer_state["step"]
    upto = [r for r in rows if int(r[0]) <= step]
    # the rows up to the checkpoint's step are exactly the checkpoint's episodes, in order
    assert [int(r[1]) for r in upto] == list(range(1, len(upto) + 1))
    assert [float(r[2]) for r in upto] == pytest.approx(trainer_state["episode_returns"])
    assert [int(r[3]) for r in upto] == trainer_state["episode_lengths"]
    assert [int(r[0]) for r in upto] == trainer_state["episode_end_steps"]
    if final:
        assert len(upto) == len(rows)
    m_header, m_rows = read_rows(folder / "logs" / "metrics.csv")
    assert m_header[0] == "step" and "loss" in m_header
    m_steps = [int(r[0]) for r in m_rows]
    if final:
        assert m_steps == sorted(set(m_steps)), "a step logged twice or out of order"
        assert m_steps[-1] == trainer_state["step"]


#: fault -> (exit status, where the checkpoint must be: "at" the step the fault hit, "before" it (the last save
#: before the fault, due at step 400), "next reset" (the first episode end after the fault))
FAULTS = {
    "sigint": (0, "at"),
    "sigterm": (143, "at"),
    "sigint_in_update": (0, "at"),
    "double_sigint_in_observe": (0, "before"),  # the step was cut in half: the older checkpoint is kept
    "sigkill_in_save": (-9, "before"),
    "step_error": (1, "at"),
    "reset_error": (1, "next reset"),
    "plugin_error": (1, "at"),
    "nan_reward": (1, "at"),
}


@pytest.fixture(scope="module")
def fault_runs(tmp_path_factory):
    """Every fault run, then its resumption, two processes at a time: fault -> (folder, first run, state at
    the checkpoint after the fault, resumed run)."""
    from concurrent.futures import ThreadPoolExecutor

    folders = {fault: tmp_path_factory.mktemp(fault) for fault in FAULTS}
    with ThreadPoolExecutor(2) as pool:
        firsts = dict(zip(FAULTS, pool.map(lambda f: fault_run(folders[f], f), FAULTS)))
        states, logs = {}, {}
        for fault in FAULTS:
            try:
                states[fault] = load_checkpoint(folders[fault] / "run.pt")
            except (OSError, ValueError) as exc:
                states[fault] = exc
            logs[fault] = read_rows(folders[fault] / "logs" / "episodes.csv")[1]
        resumed = dict(zip(FAULTS, pool.map(lambda f: fault_run(folders[f]), FAULTS)))
    return {f: (folders[f], firsts[f], states[f], logs[f], resumed[f]) for f in FAULTS}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_leaves_a_loadable_checkpoint_consistent_logs_and_a_clean_resume(fault_runs, fault):
    status, where = FAULTS[fault]
    folder, first, payload, rows_before_resume, resumed = fault_runs[fault]
    assert first.returncode == status, first.stderr[-2000:]
    assert isinstance(payload, dict), payload  # the checkpoint after the fault loaded
    trainer_state = payload["extra"]["trainer"]
    step = trainer_state["step"]
    assert payload["agent"]["num_steps"] == step  # the agent's and the trainer's counters agree
    if where == "at":
        assert AT - 4 <= step <= AT + 2, step  # the env counts its own steps, the trainer real rows
    elif where == "before":  # a vector step may overshoot the save's step by one
        assert 400 <= step <= 402, step
    else:
        assert AT - 4 <= step <= AT + 500, step
    assert torch.isfinite(payload["agent"]["q_net"]["head.weight"]).all()
    # Episode rows reached the disk as episodes ended: every episode of the checkpoint is there, and when the
    # run went on past its checkpoint (killed, or a step cut in half), so are the later ones.
    logged_steps = [int(r[0]) for r in rows_before_resume]
    assert sum(s <= step for s in logged_steps) == len(trainer_state["episode_returns"])
    if where == "before":
        assert max(logged_steps) > step + 100
    if fault == "nan_reward":
        assert "non-finite reward (nan)" in first.stderr and "the agent did not see it" in first.stderr
    if fault in ("sigint", "sigterm", "sigint_in_update"):
        assert "checkpoint saved to" in first.stderr
    if fault == "double_sigint_in_observe":
        assert "interrupted in the middle of a step" in first.stderr
        assert f"the checkpoint of step {step} is kept" in first.stderr

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["step"] == result["agent_steps"] in (TOTAL, TOTAL + 1)  # a two-env step may overshoot by one
    final = load_checkpoint(folder / "run.pt")["extra"]["trainer"]
    assert final["step"] == result["step"] and len(final["episode_returns"]) == result["episodes"]
    assert final["episode_returns"][: len(trainer_state["episode_returns"])] == trainer_state["episode_returns"]
    check_logs_match(folder, final, final=True)


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run = fault_run(tmp_path, "diverge")
    assert run.returncode == 1
    assert "TrainingDiverged: training diverged" in run.stderr
    assert "lr=1e+30" in run.stderr and "between step" in run.stderr
    if (tmp_path / "run.pt").exists():  # written before learning went wrong, if at all
        assert DQNAgent.from_checkpoint(tmp_path / "run.pt").nonfinite() is None


def test_divergence_in_process_never_overwrites_a_good_checkpoint(tmp_path):
    env = ChainEnv(5)
    path = tmp_path / "chain.pt"
    config = dict(learning_starts=50, train_freq=4, batch_size=16, hidden=(8,), device="cpu", seed=0)
    good = DQNAgent(env.observation_space, env.action_space, lr=1e-3, **config)
    Trainer(good, env, total_steps=200, seed=0, plugins=[Checkpoint(path)]).run()
    before = path.read_bytes()
    bad = DQNAgent(env.observation_space, env.action_space, lr=1e-3, **config)
    with torch.no_grad():
        next(bad.q_net.parameters())[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"weights of q_net.*lr=0\.001"):
        Trainer(bad, env, total_steps=400, seed=0, plugins=[Checkpoint(tmp_path / "bad.pt", every_steps=50)],
                check_every=10**6).run()
    assert not (tmp_path / "bad.pt").exists()
    assert path.read_bytes() == before


def test_every_single_byte_change_in_a_checkpoint_is_detected(tmp_path):
    env = ChainEnv(5)
    agent = DQNAgent(env.observation_space, env.action_space, hidden=(4,), device="cpu", seed=0,
                     learning_starts=20, batch_size=8)
    agent.learn(env, total_steps=60, seed=0)
    path = agent.save(tmp_path / "a.pt")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    detected = 0
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(flipped))
        try:
            read_checkpoint(path)
        except CheckpointError:
            detected += 1
    assert detected == len(data) > 3000


def test_a_truncated_checkpoint_is_refused(tmp_path):
    env = ChainEnv(5)
    path = DQNAgent(env.observation_space, env.action_space, hidden=(4,), device="cpu").save(tmp_path / "a.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        DQNAgent(env.observation_space, env.action_space, hidden=(4,), device="cpu").load(path)


def snapshot(state: dict) -> bytes:
    """Every tensor and number of a state dict, as bytes (to compare two states exactly)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def state_snapshot(agent) -> bytes:
    return snapshot(agent.state_dict())


def test_a_failed_load_leaves_the_agent_as_it_was(tmp_path):
    env = ChainEnv(5)
    config = dict(hidden=(8,), device="cpu", seed=0, learning_starts=20, batch_size=8)
    trained = DQNAgent(env.observation_space, env.action_space, **config).learn(env, total_steps=100, seed=0)
    path = trained.save(tmp_path / "trained.pt")
    target = DQNAgent(env.observation_space, env.action_space, **config)
    before = state_snapshot(target)
    # a checkpoint whose state is missing a part (sealed correctly, so only loading can find out)
    payload = read_checkpoint(path)
    del payload["agent"]["optimizer"]
    write_checkpoint(tmp_path / "partial.pt", payload)
    with pytest.raises(CheckpointError, match="the agent is unchanged"):
        target.load(tmp_path / "partial.pt")
    assert state_snapshot(target) == before and target.num_steps == 0
    # other spaces: refused before anything changes
    other = DQNAgent(ChainEnv(6).observation_space, env.action_space, **config)
    before = state_snapshot(other)
    with pytest.raises(CheckpointError, match=r"observation space Box.*\(5,\).*this agent has Box.*\(6,\)"):
        other.load(path)
    assert state_snapshot(other) == before
    # another config: refused, naming the field
    with pytest.raises(CheckpointError, match=r"lr: saved 0\.0001 vs 0\.01.*from_checkpoint"):
        DQNAgent(env.observation_space, env.action_space, lr=1e-2, **config).load(path)


def policy(obs):
    return 0


AGENTS = {
    "random": lambda o, a: RandomAgent(o, a, seed=1),
    "policy": lambda o, a: PolicyAgent(o, a, policy_fn=policy, seed=1),
    "cem": lambda o, a: CEMAgent(o, a, seed=1, episodes_per_batch=4),
    "dqn": lambda o, a: DQNAgent(o, a, seed=1, device="cpu", learning_starts=20, batch_size=8, hidden=(8,)),
    "qlearning": lambda o, a: QLearningAgent(o, a, seed=1, epsilon=0.5),
    "model_based": lambda o, a: ModelBasedAgent(o, a, seed=1, steps_per_iteration=20),
}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_has_one_shape_and_from_checkpoint(tmp_path, name):
    tabular = name in ("qlearning", "model_based")
    env = gym.make("FrozenLake-v1") if tabular else ChainEnv(5)
    agent = AGENTS[name](env.observation_space, env.action_space)
    assert agent.config.seed == 1 and "device" in agent.config.to_dict()
    assert type(agent.config).from_dict(agent.config.to_dict()) == agent.config
    Trainer(agent, env, total_steps=120, seed=0).run()
    path = agent.save(tmp_path / f"{name}.pt")
    kwargs = {"policy_fn": policy} if name == "policy" else {}
    rebuilt = type(agent).from_checkpoint(path, **kwargs)
    assert rebuilt.config == agent.config and rebuilt.num_steps == agent.num_steps == 120
    mine, theirs = agent.state_dict(), rebuilt.state_dict()
    if name == "dqn":  # a rebuilt DQN has an empty replay buffer: it refills before learning again
        assert theirs.pop("next_train_at") == agent.num_steps + agent.config.learning_starts
        mine.pop("next_train_at")
    assert snapshot(theirs) == snapshot(mine)
    obs = np.stack([env.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(rebuilt.act(obs, explore=True), agent.act(obs, explore=True))
    with pytest.raises(CheckpointError, match="seed: saved 1 vs 2"):
        type(agent)(env.observation_space, env.action_space, type(agent.config).from_dict(
            {**agent.config.to_dict(), "seed": 2}), **kwargs).load(path)
