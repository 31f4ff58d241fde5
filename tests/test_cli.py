"""The `rlbook` command line (rlbook.cli), the registry and the regimens, end to end in temporary folders:
init -> generate (each kind) -> train (built-in and generated agents) -> list -> play -> eval -> resume; the
templates pass ruff and train as they are; every bad argument gives status 2 and one line; Ctrl-C and SIGTERM
during `train` leave a loadable checkpoint."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlbook import cli, registry
from rlbook.agents.base import Agent
from rlbook.checkpoints import CheckpointError, read_checkpoint
from rlbook.cli import main
from rlbook.envs.counting import CountingEnv
from rlbook.regimens import NoProgress, Offline, Online, Regimen, SaveEpisodes
from rlbook.registry import RegistryError

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv) -> tuple[int, str, str]:
    """``rlbook argv`` in this process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path, monkeypatch, capsys) -> Path:
    folder = tmp_path / "proj"
    code, out, _ = run(capsys, "init", folder)
    assert code == 0, out
    monkeypatch.chdir(folder)
    return folder


# ---------------------------------------------------------------------- init and generate
def test_init_makes_the_project_and_never_overwrites(tmp_path, capsys):
    folder = tmp_path / "p"
    code, out, _ = run(capsys, "init", folder)
    assert code == 0 and "made in" in out and "next:" in out
    assert all((folder / k).is_dir() for k in registry.KINDS)
    assert registry.read_registry(folder) == {k: {} for k in registry.KINDS}
    (folder / "agents" / "mine.py").write_text("# my work\n")
    (folder / "rlbook.yaml").write_text("agents:\n  mine: agents/mine.py:Mine\n")
    code, out, _ = run(capsys, "init", folder)
    assert code == 0 and "already there" in out and "made in" not in out
    assert (folder / "agents" / "mine.py").read_text() == "# my work\n"
    assert registry.read_registry(folder)["agents"] == {"mine": "agents/mine.py:Mine"}
    (tmp_path / "afile").write_text("x")
    code, _, err = run(capsys, "init", tmp_path / "afile")
    assert code == 2 and "is not a folder" in err
    code, _, err = run(capsys, "init", "/proc/rlbook-project")  # a folder that cannot be made: one line, status 1
    assert code == 1 and err.strip() == "rlbook init: error: cannot write /proc/rlbook-project: No such file or " \
                                        "directory", err


@pytest.mark.parametrize("kind", ["agent", "environment", "objective", "regimen"])
def test_generate_writes_a_file_that_passes_ruff_and_records_it(project, capsys, kind):
    code, out, _ = run(capsys, "generate", kind, f"my_{kind}")
    folder = kind + "s"
    path = project / folder / f"my_{kind}.py"
    assert code == 0 and f"wrote {folder}/my_{kind}.py" in out and "next: rlbook train" in out
    suffix = {"agent": "Agent", "environment": "Env", "objective": "Objective", "regimen": "Regimen"}[kind]
    attribute = "My" + kind.capitalize() + suffix
    assert registry.read_registry(project)[folder] == {f"my_{kind}": f"{folder}/my_{kind}.py:{attribute}"}
    ruff = [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated"]
    for extra in ([], ["--select", "E,F,W,I,B,UP,RUF", "--line-length", "77"]):
        done = subprocess.run([*ruff, *extra, str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
    cls = registry.resolve(registry.lookup(folder, f"my_{kind}", project))
    assert cls.__name__ == attribute


def test_generate_refuses_bad_names_paths_and_duplicates(project, capsys):
    assert run(capsys, "generate", "agent", "mine")[0] == 0
    cases = {"../x": "is a path", "/tmp/x": "is a path", "a/b": "is a path", "3d": "not a Python identifier",
             "my-agent": "not a Python identifier", "class": "Python keyword", "os": "standard-library module",
             "mine": "already has the agent 'mine'", "": "non-empty"}
    for name, message in cases.items():
        code, out, err = run(capsys, "generate", "agent", name)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (name, err)
    (project / "agents" / "stray.py").write_text("# not in the registry\n")
    code, _, err = run(capsys, "generate", "agent", "stray")
    assert code == 2 and "already exists" in err and (project / "agents" / "stray.py").read_text() == \
        "# not in the registry\n"
    assert not (project.parent / "x.py").exists() and not Path("/tmp/x.py").exists()
    assert set(registry.read_registry(project)["agents"]) == {"mine"}


def test_generate_outside_a_project_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "generate", "agent", "mine")
    assert code == 2 and "no rlbook project here" in err and "rlbook init" in err


# ---------------------------------------------------------------------- train, list, play, eval
def test_generated_agent_trains_lists_plays_evaluates_and_resumes(project, capsys, tmp_path):
    assert run(capsys, "generate", "agent", "mine")[0] == 0
    code, out, err = run(capsys, "train", "mine", "--env", "CartPole-v1", "--episodes", 3, "--epochs", 2,
                         "--seed", 0, "--no-progress")
    assert code == 0, err
    assert "trained mine on CartPole-v1: 6 episodes" in out
    checkpoint = project / "runs" / "mine-CartPole-v1" / "checkpoint.pt"
    payload = read_checkpoint(checkpoint)
    assert payload["agent_class"] == "MineAgent" and payload["extra"]["cli"] == {"env": "CartPole-v1"}
    assert len(payload["extra"]["trainer"]["episode_returns"]) == 6
    logs = project / "runs" / "mine-CartPole-v1" / "logs" / "1"
    assert len((logs / "episodes.csv").read_text().splitlines()) == 1 + 6
    assert any((logs / "tensorboard").iterdir())

    code, out, _ = run(capsys, "list", "agents")
    assert code == 0 and "mine" in out and "agents/mine.py:MineAgent" in out and "dqn" in out

    video = tmp_path / "mine.webp"
    code, out, err = run(capsys, "play", checkpoint, "--video", video, "--episodes", 2)
    assert code == 0, err
    assert video.stat().st_size > 0 and out.count("episode ") == 2
    code, out, err = run(capsys, "eval", checkpoint, "--episodes", 4)
    assert code == 0 and "MineAgent on CartPole-v1, 4 greedy episodes" in out and "median return" in out, err

    # --resume: the run in the checkpoint goes on, its 2 epochs count towards --epochs 3
    code, out, _ = run(capsys, "train", "mine", "--env", "CartPole-v1", "--episodes", 3, "--epochs", 3,
                       "--resume", "--no-progress")
    assert code == 0 and "continuing its run" in out and "9 episodes" in out
    assert len(read_checkpoint(checkpoint)["extra"]["trainer"]["episode_returns"]) == 9
    assert len((logs / "episodes.csv").read_text().splitlines()) == 1 + 9  # the same log, continued
    # without --resume: the agent's state is loaded and 1 more epoch runs, logged as a new session
    steps = read_checkpoint(checkpoint)["agent"]["num_steps"]
    code, out, _ = run(capsys, "train", "mine", "--env", "CartPole-v1", "--episodes", 3, "--no-progress")
    assert code == 0 and "loading its agent" in out and ": 3 episodes" in out
    assert read_checkpoint(checkpoint)["agent"]["num_steps"] > steps
    assert (logs.parent / "2" / "episodes.csv").exists()
    # --test: greedy, no learning, no checkpoint written
    before = checkpoint.read_bytes()
    code, out, _ = run(capsys, "train", "mine", "--env", "CartPole-v1", "--episodes", 2, "--test",
                       "--no-progress")
    assert code == 0 and "tested mine" in out and checkpoint.read_bytes() == before
    # --video: a greedy episode recorded after every epoch (and none at the end that repeats the last)
    code, out, err = run(capsys, "train", "mine", "--env", "CartPole-v1", "--episodes", 2, "--epochs", 2,
                         "--video", "--no-progress", "--run-dir", tmp_path / "video-run")
    videos = sorted((tmp_path / "video-run" / "videos").glob("step-*.webp"))
    assert code == 0 and len(videos) == 2 and all(v.stat().st_size > 0 for v in videos), err
    # --fresh: starts over
    code, out, _ = run(capsys, "train", "mine", "--env", "CartPole-v1", "--episodes", 2, "--fresh", "--no-progress")
    assert code == 0 and read_checkpoint(checkpoint)["agent"]["num_steps"] < steps


def test_test_mode_neither_explores_nor_learns(project, capsys):
    """--test plays greedily and never calls update: the old framework still learned under --test."""
    code, _, err = run(capsys, "train", "dqn", "--env", "CartPole-v1", "--episodes", 5, "--seed", 0,
                       "--set", "learning_starts=50", "--no-progress")
    assert code == 0, err
    checkpoint = project / "runs" / "dqn-CartPole-v1" / "checkpoint.pt"
    agent = Agent.from_checkpoint(checkpoint)
    weights = [p.detach().clone() for p in agent.q_net.parameters()]
    code, out, _ = run(capsys, "train", "dqn", "--env", "CartPole-v1", "--episodes", 3, "--test", "--no-progress")
    assert code == 0 and "tested dqn" in out
    after = Agent.from_checkpoint(checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(weights, after.q_net.parameters()))
    from rlbook.regimens import Online as OnlineRegimen

    calls = []
    agent.update = lambda: calls.append(1) or {}
    agent.act_batch_explore = []
    original = agent.act_batch
    agent.act_batch = lambda obs, explore=True: (agent.act_batch_explore.append(explore), original(obs, explore))[1]
    OnlineRegimen(agent, "CartPole-v1", episodes=2, train=False).run()
    assert calls == [] and agent.act_batch_explore and not any(agent.act_batch_explore)


def test_builtin_agents_train_from_the_command_line(project, capsys):
    for name, env, extra in [("random", "CartPole-v1", []), ("qlearning", "FrozenLake-v1", []),
                             ("cem", "CartPole-v1", ["--set", "episodes_per_batch=4"]),
                             ("reinforce", "CartPole-v1", []), ("a2c", "CartPole-v1", ["--num-envs", 2])]:
        code, out, err = run(capsys, "train", name, "--env", env, "--episodes", 4, "--seed", 1, "--no-progress",
                             *extra)
        assert code == 0, (name, err)
        assert f"trained {name} on {env}" in out
        assert Agent.from_checkpoint(project / "runs" / f"{name}-{env}" / "checkpoint.pt").num_steps > 0


def test_atari_ids_get_the_books_preprocessing(project, capsys):
    """ALE/Pong-v5 trains on stacked 84x84 frames (a raw ALE env would not fit the Nature CNN), and eval plays
    whole games with their real scores."""
    code, out, err = run(capsys, "train", "dqn", "--env", "ALE/Pong-v5", "--preset", "pong", "--episodes", 1,
                         "--set", "buffer_size=2000", "--seed", 0, "--no-progress")
    assert code == 0 and "trained dqn on ALE/Pong-v5: 1 episodes" in out, err
    checkpoint = project / "runs" / "dqn-ALE-Pong-v5" / "checkpoint.pt"
    assert read_checkpoint(checkpoint)["spaces"]["observation"]["shape"] == [4, 84, 84]
    code, out, err = run(capsys, "eval", checkpoint, "--episodes", 1)
    assert code == 0, err
    score = float(out.split("median return ")[1].split()[0])
    assert -21 <= score <= 21 and score == int(score)


def test_generated_environment_objective_and_regimen_work(project, capsys):
    for kind, name in [("environment", "corridor"), ("objective", "costly"), ("regimen", "patient")]:
        assert run(capsys, "generate", kind, name)[0] == 0
    # the regimen: finished at once when its target is below any return
    path = project / "regimens" / "patient.py"
    path.write_text(path.read_text().replace("target = 150.0", "target = -1e9"))
    code, out, err = run(capsys, "train", "random", "--env", "corridor", "--episodes", 2, "--epochs", -1,
                         "--regimen", "patient", "--objective", "costly", "--save-episodes", "--seed", 0,
                         "--no-progress")
    assert code == 0, err
    assert "epoch 0: mean return" in out and "the regimen is finished after 1 epoch(s)" in out
    episodes = sorted((project / "runs" / "random-corridor" / "episodes").glob("episode-*.npz"))
    assert len(episodes) == 2
    with np.load(episodes[0]) as data:
        # the corridor costs 0.01 a step and the objective 0.01 more: the agent saw -0.02 (or 1 - 0.01 at the end)
        rewards = data["reward"]
        assert np.allclose(rewards[:-1], -0.02) or np.allclose(rewards, -0.02)
        assert data["obs"].shape == (len(rewards), 1) and data["truncated"][-1] or data["terminated"][-1]


def test_project_code_reaches_worker_processes(project, capsys):
    """A3C's workers are fresh processes that know nothing of the project: its environment travels as a factory
    that registers it there, an objective as "import this file of the project, restore the attributes"."""
    for kind, name in [("environment", "corridor"), ("objective", "costly")]:
        assert run(capsys, "generate", kind, name)[0] == 0
    objective = registry.resolve(registry.lookup("objectives", "costly", project))(step_cost=0.5)
    objective.steps = 7
    factory = cli.training_env("corridor", 2, project)
    probe = "import pickle, sys; objective, factory = pickle.load(sys.stdin.buffer); env = factory(); " \
            "print(type(objective).__name__, objective.step_cost, objective.steps, env.num_envs, env.spec.id)"
    done = subprocess.run([sys.executable, "-c", probe], input=pickle.dumps((objective, factory)),
                          capture_output=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["CostlyObjective", "0.5", "7", "2", "corridor"]
    code, out, err = run(capsys, "train", "a3c", "--env", "corridor", "--objective", "costly", "--episodes", 3,
                         "--num-envs", 2, "--seed", 0, "--no-progress", "--set", "workers=2")
    assert code == 0, err
    assert "trained a3c on corridor: 3 episodes" in out
    for command in ("play", "eval"):  # a device that is not there, for a checkpoint that is
        code, _, err = run(capsys, command, project / "runs" / "a3c-corridor" / "checkpoint.pt", "--device", "cuda:99")
        assert code == 2 and len(err.strip().splitlines()) == 1 and "device 'cuda:99' is not available" in err, err


def test_offline_regimen_learns_from_saved_episodes(project, capsys):
    code, _, err = run(capsys, "train", "dqn", "--env", "CartPole-v1", "--episodes", 4, "--seed", 0,
                       "--save-episodes", "--set", "learning_starts=20", "--no-progress")
    assert code == 0, err
    run_dir = project / "runs" / "dqn-CartPole-v1"
    saved = sorted((run_dir / "episodes").glob("*.npz"))
    steps = sum(len(np.load(p)["reward"]) for p in saved)
    before = Agent.from_checkpoint(run_dir / "checkpoint.pt")
    code, out, err = run(capsys, "train", "dqn", "--regimen", "offline", "--episodes-from", run_dir / "episodes",
                         "--env", "CartPole-v1", "--run-dir", project / "offline", "--epochs", 2,
                         "--set", "learning_starts=20", "--seed", 0)
    assert code == 0, err
    assert f"{2 * steps:,} saved steps learned from" in out
    after = Agent.from_checkpoint(project / "offline" / "checkpoint.pt")
    assert after.num_steps == 2 * steps
    assert not all(torch.equal(a, b) for a, b in zip(before.q_net.parameters(), after.q_net.parameters()))
    code, _, err = run(capsys, "train", "a2c", "--regimen", "offline", "--episodes-from", run_dir / "episodes",
                       "--run-dir", project / "offline-a2c", "--env", "CartPole-v1")
    assert code == 2 and "on-policy" in err


# ---------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("argv, message", [
    (["train", "dqm", "--env", "CartPole-v1", "--episodes", "2"], "unknown agent 'dqm'; did you mean dqn"),
    (["train", "dqn", "--env", "CartPol-v1", "--episodes", "2"], "unknown environment id 'CartPol-v1'"),
    (["train", "dqn", "--env", "Pendulum-v1", "--episodes", "2"], "DQNAgent needs an action space of type Discrete"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--set", "lrr=1e-3"], "no field 'lrr'"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--set", "lr=fast"], "lr"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--lr", "-1"], "lr"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--set", "lr"], "KEY=VALUE"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "0"], "--episodes must be >= 1"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "dqn", "--episodes", "2"], "--env is required"),
    (["train", "dqn", "--env", "CartPole-v1"], "--episodes is required"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--preset", "fast"], "no preset 'fast'"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--regimen", "onlin"], "unknown regimen 'onlin'"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--objective", "x"], "unknown objective 'x'"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--device", "gpu"], "device"),
    (["train"], "AGENT is required"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--render"], "--render needs a display"),
    (["play", "x.pt", "--render"], "--render needs a display"),
    (["play", "nothing.pt"], "nothing.pt does not exist"),
    (["play", "x.pt", "--video", "/no-such-folder/x.webp"], "--video: the folder /no-such-folder does not exist"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--device", "cuda:99"],
     "device 'cuda:99' is not available"),
    (["train", "dqn", "--env", "CartPole-v1", "--episodes", "2", "--run-dir", "/proc/rlbook-run"],
     "--run-dir /proc/rlbook-run: cannot make the folder"),
    (["eval", "nothing.pt"], "nothing.pt does not exist"),
    (["list", "agnets"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line_naming_them(project, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not (project / "runs").exists() or not any((project / "runs").rglob("checkpoint.pt"))


def test_render_shows_the_environment_in_a_window(project, capsys, monkeypatch):
    """--render with a display (SDL's dummy video driver stands in for a screen): training and playing draw every
    step of one environment in human mode; what cannot be shown is refused in one line."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    drawn = []
    original = CartPoleEnv.render

    def render(self):
        drawn.append(self.render_mode)
        return original(self)

    monkeypatch.setattr(CartPoleEnv, "render", render)
    code, out, err = run(capsys, "train", "dqn", "--env", "CartPole-v1", "--episodes", 2, "--render", "--seed", 0,
                         "--no-progress")
    assert code == 0, err
    steps = Agent.from_checkpoint(project / "runs" / "dqn-CartPole-v1" / "checkpoint.pt").num_steps
    assert set(drawn) == {"human"} and len(drawn) >= steps  # every step (and every reset) drawn
    drawn.clear()
    code, out, err = run(capsys, "play", project / "runs" / "dqn-CartPole-v1" / "checkpoint.pt", "--render")
    assert code == 0, err
    played = int(out.split(" in ")[1].split()[0])
    assert set(drawn) == {"human"} and len(drawn) >= played
    for argv, message in [(["dqn", "--num-envs", 2], "--render shows one environment"),
                          (["a3c"], "a3c trains in worker processes")]:
        code, _, err = run(capsys, "train", argv[0], "--env", "CartPole-v1", "--episodes", 2, "--render",
                           "--run-dir", project / "refused", *argv[1:])
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (project / "refused").exists()
    drawn.clear()  # a greedy test run of A3C happens in this process: it can be shown
    code, out, err = run(capsys, "train", "a3c", "--env", "CartPole-v1", "--episodes", 1, "--render", "--test",
                         "--no-progress")
    assert code == 0 and set(drawn) == {"human"}, err


def test_options_that_differ_from_the_checkpoint_are_refused(project, capsys):
    assert run(capsys, "train", "dqn", "--env", "CartPole-v1", "--episodes", 2, "--no-progress")[0] == 0
    code, _, err = run(capsys, "train", "dqn", "--env", "CartPole-v1", "--episodes", 2, "--lr", "0.5")
    assert code == 2 and "lr: saved 0.0001 vs 0.5" in err and "--fresh" in err
    checkpoint = project / "runs" / "dqn-CartPole-v1" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-10])
    code, _, err = run(capsys, "eval", checkpoint)
    assert code == 2 and "CHECKPOINT" in err and len(err.strip().splitlines()) == 1


def test_project_modules_that_fail_to_import_are_reported(project, capsys):
    assert run(capsys, "generate", "agent", "broken")[0] == 0
    path = project / "agents" / "broken.py"
    path.write_text(path.read_text() + "\nraise RuntimeError('half-written agent')\n")
    code, out, err = run(capsys, "list", "agents")
    assert code == 1 and "IMPORT FAILED" in out and "half-written agent" in out and "failed to import" in err
    code, _, err = run(capsys, "train", "broken", "--env", "CartPole-v1", "--episodes", 1)
    assert code == 1 and "agents/broken.py failed to import: RuntimeError: half-written agent" in err


def test_the_registry_is_read_safely_and_points_inside_the_project(project, tmp_path):
    (project / "rlbook.yaml").write_text("agents:\n  evil: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        registry.read_registry(project)
    outside = tmp_path / "outside.py"
    outside.write_text("class X: pass\n")
    (project / "rlbook.yaml").write_text("agents:\n  out: ../outside.py:X\n")
    with pytest.raises(RegistryError, match="outside the project"):
        registry.agent_class("out", project)
    (project / "rlbook.yaml").write_text("agents: [1, 2]\n")
    with pytest.raises(RegistryError, match="must map names"):
        registry.read_registry(project)
    (project / "rlbook.yaml").write_text("agentz: {}\n")
    with pytest.raises(RegistryError, match="unknown section"):
        registry.read_registry(project)


# ---------------------------------------------------------------------- one shape for every agent
def _spaces(name):
    env = gym.make("FrozenLake-v1" if name in ("qlearning", "model-based") else "CartPole-v1")
    return env.observation_space, env.action_space


@pytest.mark.parametrize("name", sorted(registry.BUILTIN_AGENTS))
def test_every_builtin_agent_has_one_shape_and_loads_from_a_checkpoint(tmp_path, name):
    cls, preset = registry.agent_class(name)
    # the rainbow preset holds the Pong settings: a Nature CNN, here an MLP for CartPole
    config = registry.make_config(cls, preset, seed=3, device="cpu", **({"network": "mlp"} if preset else {}))
    assert config.seed == 3 and config.device == "cpu"
    assert type(config).from_dict(config.to_dict()) == config
    agent = cls(*_spaces(name), config)
    obs = agent.observation_space.sample()
    agent.act(obs)
    path = agent.save(tmp_path / f"{name}.pt")
    loaded = Agent.from_checkpoint(path)
    assert type(loaded) is cls and loaded.config == agent.config
    assert loaded.act(obs, explore=False) == agent.act(obs, explore=False)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CheckpointError):
        Agent.from_checkpoint(path)


def test_from_checkpoint_on_the_base_class_names_an_unknown_agent_class(tmp_path):
    from rlbook.agents import RandomAgent

    env = CountingEnv()
    path = RandomAgent(env.observation_space, env.action_space).save(tmp_path / "r.pt")
    payload_class = read_checkpoint(path)["agent_class"]
    assert type(Agent.from_checkpoint(path)).__name__ == payload_class == "RandomAgent"
    with pytest.raises(RegistryError, match="no agent class 'NoSuchAgent'"):
        registry.agent_class_named("NoSuchAgent")


# ---------------------------------------------------------------------- regimens in-process
class _Fails(gym.Wrapper):
    def __init__(self, env, at: int):
        super().__init__(env)
        self.count, self.at = 0, at

    def step(self, action):
        self.count += 1
        if self.count == self.at:
            raise RuntimeError("the environment broke")
        return self.env.step(action)


class _Swallow(Online):
    seen: list = []

    def on_error(self, error):
        self.seen.append(str(error))
        return True


def _random_agent():
    from rlbook.agents import RandomAgent

    env = gym.make("CartPole-v1")
    return RandomAgent(env.observation_space, env.action_space, seed=0)


def test_regimen_hooks_epochs_and_a_swallowed_error(tmp_path):
    calls = []

    class Recorder(Regimen):
        def before_training(self): calls.append("before_training")
        def after_training(self): calls.append("after_training")
        def before_epoch(self, epoch): calls.append(f"before_epoch {epoch}")
        def after_epoch(self, epoch): calls.append(f"after_epoch {epoch} {len(self.epoch_returns(epoch))}")
        def after_episode(self, env_id, episode_return, episode_length):
            calls.append(f"episode {episode_return == episode_length}")

    Recorder(_random_agent(), "CartPole-v1", episodes=3, epochs=2, seed=0).run()
    episodes = ["episode True"] * 3
    assert calls == ["before_training", "before_epoch 0", *episodes, "after_epoch 0 3", "before_epoch 1",
                     *episodes, "after_epoch 1 3", "after_training"]

    checkpoint = tmp_path / "c.pt"
    regimen = _Swallow(_random_agent(), _Fails(gym.make("CartPole-v1"), at=50), episodes=100,
                       checkpoint=checkpoint).run()
    assert isinstance(regimen.error, RuntimeError) and "swallowed" in regimen.stop_reason
    assert _Swallow.seen == ["the environment broke"] and checkpoint.exists()
    with pytest.raises(RuntimeError, match="the environment broke"):
        Online(_random_agent(), _Fails(gym.make("CartPole-v1"), at=50), episodes=100).run()


def test_epochs_end_where_they_should_and_finished_is_asked_only_without_a_count():
    calls = []

    class Eager(Regimen):
        def before_epoch(self, epoch): calls.append(f"before_epoch {epoch}")
        def after_epoch(self, epoch): calls.append(f"after_epoch {epoch}")
        def after_episode(self, env_id, episode_return, episode_length): calls.append("episode")
        def finished(self): return True  # finished at once -- if anyone asks

    Eager(_random_agent(), "CartPole-v1", episodes=2, epochs=1, seed=0).run()
    assert calls == ["before_epoch 0", "episode", "episode", "after_epoch 0"]  # no epoch 1 begins
    calls.clear()
    regimen = Eager(_random_agent(), "CartPole-v1", episodes=2, epochs=3, seed=0).run()
    assert calls.count("episode") == 6 and calls[-1] == "after_epoch 2" and regimen.epoch == 3
    assert regimen.stop_reason == "3 epoch(s) done"
    calls.clear()
    regimen = Eager(_random_agent(), "CartPole-v1", episodes=2, epochs=-1, seed=0).run()
    assert calls == ["before_epoch 0", "episode", "episode", "after_epoch 0"]
    assert regimen.stop_reason == "the regimen is finished after 1 epoch(s)"


class _OffPolicyRecorder(Agent):
    """Records every row it observes and counts updates (an off-policy learner's view of the data)."""

    def __init__(self, observation_space, action_space, config=None, **overrides):
        super().__init__(observation_space, action_space, config, **overrides)
        self.rows, self.updates = [], 0

    def act_batch(self, obs, explore=True):
        return np.zeros(len(obs), dtype=np.int64)

    def observe(self, transition):
        super().observe(transition)
        self.rows.append(transition)

    def update(self):
        self.updates += 1
        return {"loss": float(self.updates)}


def test_offline_replays_every_saved_row_in_order_through_observe_and_update(tmp_path):
    from rlbook.agents import RandomAgent

    env = CountingEnv(episode_length=(3, 6))
    player = RandomAgent(env.observation_space, env.action_space, seed=0)
    Online(player, env, episodes=4, plugins=[SaveEpisodes(tmp_path)], seed=0).run()
    saved = [dict(np.load(f)) for f in sorted(tmp_path.glob("episode-*.npz"))]
    assert len(saved) == 4
    learner = _OffPolicyRecorder(env.observation_space, env.action_space)
    hooks = []

    class Watch(Offline):
        def before_episode(self, env_id): hooks.append(("begin", env_id))
        def after_episode(self, env_id, episode_return, episode_length):
            hooks.append(("end", env_id, episode_return, episode_length))
        def before_step(self): hooks.append(("before",))
        def after_step(self, transition, metrics): hooks.append(("step", metrics["loss"]))

    regimen = Watch(learner, tmp_path, epochs=2).run()
    rows = sum(len(e["reward"]) for e in saved)
    assert regimen.steps == learner.num_steps == learner.updates == len(learner.rows) == 2 * rows
    expected = [(e, t) for _ in range(2) for e in saved for t in range(len(e["reward"]))]
    for row, (episode, t) in zip(learner.rows, expected):
        assert len(row) == 1 and row.env_ids.tolist() == [0] and row.reward.dtype == np.float32
        for key in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(row, key)[0], episode[key][t], err_msg=key)
    ends = [h for h in hooks if h[0] == "end"]
    assert [h for h in hooks if h[0] == "begin"] == [("begin", 0)] * 8
    assert ends == [("end", 0, float(e["reward"].sum()), len(e["reward"])) for _ in range(2) for e in saved]
    assert [h[1] for h in hooks if h[0] == "step"] == [float(k) for k in range(1, 2 * rows + 1)]
    assert hooks.count(("before",)) == 2 * rows and regimen.last_metrics == {"loss": float(2 * rows)}


def test_saved_episodes_of_an_on_policy_run_leave_out_the_autoreset_rows(tmp_path):
    """A2C sees every row, autoreset rows marked invalid; the saver must keep only the valid ones."""
    from rlbook.agents import A2CAgent
    from rlbook.envs import make_vec

    env = make_vec("CartPole-v1", 3)
    agent = A2CAgent(env.single_observation_space, env.single_action_space, seed=0, device="cpu")
    trainer = Online(agent, env, episodes=9, plugins=[SaveEpisodes(tmp_path)], seed=0).run().trainer
    files = sorted(tmp_path.glob("episode-*.npz"))
    assert len(files) >= 9
    for f in files:
        data = np.load(f)
        assert np.all(data["reward"] == 1.0)  # an autoreset row has reward 0
        assert np.array_equal(data["obs"][1:], data["next_obs"][:-1])
        assert data["terminated"][-1] or data["truncated"][-1]
    assert sum(len(np.load(f)["reward"]) for f in files) <= trainer.step


def test_epoch_checkpoints_and_no_progress_stopping(tmp_path):
    saved = []
    checkpoint = tmp_path / "c.pt"

    class Watch(Online):
        def after_epoch(self, epoch):
            saved.append(len(read_checkpoint(checkpoint)["extra"]["trainer"]["episode_returns"]))

    Watch(_random_agent(), "CartPole-v1", episodes=2, epochs=3, checkpoint=checkpoint, seed=0).run()
    assert saved == [2, 4, 6]  # the checkpoint is written before after_epoch runs
    regimen = Online(_random_agent(), "CartPole-v1", episodes=10_000, plugins=[NoProgress(patience=30, window=5)],
                     seed=0).run()
    assert "no progress" in regimen.stop_reason and len(regimen.trainer.episode_returns) < 10_000


def test_save_episodes_skips_autoreset_rows_of_a_vector_env(tmp_path):
    from rlbook.agents import RandomAgent
    from rlbook.envs import make_vec

    env = make_vec("CartPole-v1", 3)
    agent = RandomAgent(env.single_observation_space, env.single_action_space, seed=0)
    trainer = Online(agent, env, episodes=9, plugins=[SaveEpisodes(tmp_path)], seed=0).run().trainer
    files = sorted(tmp_path.glob("episode-*.npz"))
    assert len(files) >= 9
    lengths = sorted(len(np.load(f)["reward"]) for f in files[:9])
    assert sum(lengths) <= trainer.step and all(np.load(f)["terminated"][-1] for f in files)
    for f in files:
        data = np.load(f)
        assert np.array_equal(data["obs"][1:], data["next_obs"][:-1])  # one episode, no reset row inside


# ---------------------------------------------------------------------- help, and signals in a real process
def test_every_help_is_complete(capsys):
    for argv in [["--help"], ["init", "--help"], ["generate", "--help"], ["train", "--help"], ["list", "--help"],
                 ["play", "--help"], ["eval", "--help"], ["train", "dqn", "--help"], ["train", "a2c", "--help"]]:
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "usage: rlbook" in out, argv
        if argv[0] == "train":
            for option in ("--env", "--episodes", "--epochs", "--regimen", "--test", "--resume", "--set",
                           "--render", "--seed", "--device"):
                assert option in out, (argv, option)
    code, out, _ = run(capsys, "train", "dqn", "--help")
    assert "--lr FLOAT" in out and "Adam" in out and "cartpole" in out  # the field docstring and the presets


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_train_leaves_a_loadable_checkpoint(tmp_path, sig, status):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlbook", "train", "dqn", "--env", "CartPole-v1", "--episodes", "100000",
           "--no-progress", "--run-dir", str(run_dir), "--seed", "0"]
    process = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    episodes = run_dir / "logs" / "1" / "episodes.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not episodes.exists() or len(episodes.read_text().splitlines()) < 4):
        time.sleep(0.2)
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == status, (out, err)
    agent = Agent.from_checkpoint(run_dir / "checkpoint.pt")
    extra = read_checkpoint(run_dir / "checkpoint.pt")["extra"]
    assert agent.num_steps == extra["trainer"]["step"] > 0 and len(extra["trainer"]["episode_returns"]) >= 3
    if sig == signal.SIGINT:
        assert "--resume to continue" in out


def test_frame_rate_is_measured_and_reaches_the_metrics():
    from rlbook.regimens import FrameRate
    from rlbook.train import Trainer

    rate = FrameRate(seconds=0.01)
    trainer = Trainer(_random_agent(), "CartPole-v1", total_steps=3_000, plugins=[rate], seed=0).run()
    assert np.isfinite(rate.fps) and rate.fps > 100  # a random agent on CartPole: thousands of steps a second
    assert trainer.last_metrics["fps"] == rate.fps
