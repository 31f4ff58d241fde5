"""A short DQN training run with one fault injected, for tests/test_faults.py (run as a subprocess).

    python tests/fault_run.py DIR --fault sigterm --at 600 [--total 1200]

It trains on two CartPoles with a Checkpoint (every 200 steps) and a CSVLogger (every 100 steps) in DIR,
resuming from DIR's checkpoint when there is one, and injects the fault at environment step ``--at``:

  none                      no fault (used to resume a run to its end)
  sigint / sigterm          the signal, sent to this process from a plugin after the step
  sigint_in_update          Ctrl-C arrives while the agent is inside update()
  double_sigint_in_observe  two Ctrl-C while the agent is inside observe(), after it counted the rows
  sigkill_in_save           SIGKILL while the checkpoint of step --at is half written
  step_error / reset_error  the environment raises in step() / in the reset after step --at
  plugin_error              a plugin raises after the step
  nan_reward                the environment returns a NaN reward
  diverge                   the learning rate is 1e30 from the start (weights overflow)

On a normal exit it prints one JSON line: the trainer's step, the agent's step count, the episodes, the
stop reason and whether the run was interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlbook import checkpoints
from rlbook.agents.dqn import DQNAgent, DQNConfig
from rlbook.logs import CSVLogger
from rlbook.train import Checkpoint, Plugin, Trainer

FAULTS = ("none", "sigint", "sigterm", "sigint_in_update", "double_sigint_in_observe", "sigkill_in_save",
          "step_error", "reset_error", "plugin_error", "nan_reward", "diverge")


class FaultyEnv(gym.Wrapper):
    def __init__(self, env, fault: str, at: int, counter: list[int]):
        super().__init__(env)
        self.fault, self.at, self.counter = fault, at, counter

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.counter[0] += 1
        if self.counter[0] >= self.at:
            if self.fault == "step_error":
                raise RuntimeError("injected fault in env.step")
            if self.fault == "nan_reward":
                reward = float("nan")
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.fault == "reset_error" and self.counter[0] >= self.at:
            raise RuntimeError("injected fault in env.reset")
        return self.env.reset(**kwargs)


class Injector(Plugin):
    def __init__(self, fault: str, at: int):
        self.fault, self.at, self.fired = fault, at, False

    def after_step(self, trainer, transition, metrics):
        if self.fired or trainer.step < self.at:
            return
        self.fired = True
        if self.fault == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        elif self.fault == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.fault == "plugin_error":
            raise RuntimeError("injected fault in a plugin")


def inject_into_agent(agent: DQNAgent, fault: str, at: int) -> None:
    """Wrap the agent's update/observe (on the instance: the checkpoint still names a DQNAgent)."""
    update, observe = agent.update, agent.observe
    fired = []

    def faulty_update():
        if fault == "sigint_in_update" and agent.num_steps >= at and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, inside update()
        return update()

    def faulty_observe(transition):
        observe(transition)  # counts the rows first
        if fault == "double_sigint_in_observe" and agent.num_steps >= at and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second one raises KeyboardInterrupt right here

    agent.update, agent.observe = faulty_update, faulty_observe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--fault", choices=FAULTS, default="none")
    parser.add_argument("--at", type=int, default=10**9)
    parser.add_argument("--total", type=int, default=1200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    fault, at = args.fault, args.at

    if fault == "sigkill_in_save":
        original = checkpoints.torch.save

        def dying_save(payload, f):
            original(payload, f)
            if payload["extra"]["trainer"]["step"] >= at:
                real_open = open
                tmp = Path(args.dir) / "run.pt"
                with real_open(tmp.with_name(f".run.pt.{os.getpid()}.tmp"), "wb") as half:
                    half.write(f.getvalue()[: len(f.getvalue()) // 2])
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoints.torch.save = dying_save

    counter = [0]
    venv = gym.vector.SyncVectorEnv([lambda: FaultyEnv(gym.make("CartPole-v1"), fault, at, counter)] * 2)
    config = DQNConfig.cartpole(seed=0, device="cpu", learning_starts=200, train_freq=32, gradient_steps=4,
                                hidden=(16,), lr=1e30 if fault == "diverge" else 1e-3)
    agent = DQNAgent(venv.single_observation_space, venv.single_action_space, config)
    inject_into_agent(agent, fault, at)
    checkpoint = Checkpoint(args.dir / "run.pt", every_steps=200)
    plugins = [CSVLogger(args.dir / "logs", every_steps=100), Injector(fault, at), checkpoint]
    trainer = Trainer(agent, venv, total_steps=args.total, seed=0, plugins=plugins, check_every=100)
    trainer.run()
    print(json.dumps({"step": trainer.step, "agent_steps": agent.num_steps, "episodes": trainer.episodes,
                      "stop_reason": trainer.stop_reason, "interrupted": trainer.interrupted,
                      "saved_at_step": checkpoint.saved_at_step,
                      "returns_sum": float(np.sum(trainer.episode_returns))}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
