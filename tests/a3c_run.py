"""A short A3C run (two worker processes, two CartPoles each) with one fault injected, for tests/test_a3c.py
(run as a subprocess, because the faults end the process).

    python tests/a3c_run.py DIR --fault sigterm --at 1000 [--total 3000] [--mode data]

It trains with a Checkpoint in DIR (every 500 steps), resuming from it when present. At learner step ``--at`` a
plugin writes the workers' process ids to DIR/pids.json, then injects the fault:

  none          no fault (used to resume a run to its end)
  sigterm       SIGTERM to the learner (exit status 143 after the checkpoint is saved)
  sigint        Ctrl-C to the learner (the run returns, interrupted)
  kill_worker   SIGKILL to worker 1 (the run stops with a WorkerError naming it)
  worker_error  the workers' environments raise in step() (a WorkerError naming the first, with its traceback)

On a normal exit it prints one JSON line: the trainer's step, the agent's step count, updates, stop reason,
interrupted, and the step the checkpoint resumed from.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
from pathlib import Path

import gymnasium as gym

from rlbook.agents.a3c import A3CAgent, A3CConfig
from rlbook.envs import make_vec
from rlbook.parallel import A3CTrainer
from rlbook.train import Checkpoint, Plugin
from rlbook.workers import child_pids

FAULTS = ("none", "sigterm", "sigint", "kill_worker", "worker_error")


class RaiseAfter(gym.vector.VectorWrapper):
    """Raises in step() once the flag file exists (created by the learner's Fault plugin)."""

    def __init__(self, env, flag: str):
        super().__init__(env)
        self.flag = flag

    def step(self, actions):
        if os.path.exists(self.flag):
            raise RuntimeError("injected fault in a worker's env.step")
        return self.env.step(actions)


class Fault(Plugin):
    def __init__(self, folder: Path, fault: str, at: int):
        self.folder, self.fault, self.at, self.done = folder, fault, at, False

    def after_step(self, trainer, transition, metrics):
        if self.done or trainer.step < self.at:
            return
        self.done = True
        pids = child_pids()
        (self.folder / "pids.json").write_text(json.dumps(pids))
        if self.fault == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.fault == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        elif self.fault == "kill_worker":
            os.kill(max(pids), signal.SIGKILL)  # started last: worker 1
        elif self.fault == "worker_error":
            (self.folder / "fail").touch()


def make_env(folder: str) -> gym.vector.VectorEnv:
    """Two CartPoles that raise in step() once DIR/fail exists (created at step --at by worker_error)."""
    return RaiseAfter(make_vec("CartPole-v1", 2), os.path.join(folder, "fail"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path)
    p.add_argument("--fault", choices=FAULTS, default="none")
    p.add_argument("--at", type=int, default=1000)
    p.add_argument("--total", type=int, default=3000)
    p.add_argument("--mode", choices=("data", "gradients"), default="data")
    args = p.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    probe = make_vec("CartPole-v1", 2)
    agent = A3CAgent(probe.single_observation_space, probe.single_action_space,
                     A3CConfig.cartpole(seed=0, workers=2, mode=args.mode, device="cpu"))
    probe.close()
    checkpoint = Checkpoint(args.folder / "a3c.pt", every_steps=500)
    trainer = A3CTrainer(agent, functools.partial(make_env, str(args.folder)), total_steps=args.total, seed=0,
                         plugins=[checkpoint, Fault(args.folder, args.fault, args.at)])
    trainer.run()
    print(json.dumps({"step": trainer.step, "agent_steps": agent.num_steps, "updates": agent.num_updates,
                      "stop_reason": trainer.stop_reason, "interrupted": trainer.interrupted,
                      "resumed_from": checkpoint.resumed_from_step}))


if __name__ == "__main__":
    main()
