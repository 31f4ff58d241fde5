"""Chapter 11: throughput against the number of workers, on the machine at hand. Writes
``results/11_a3c/a3c_throughput.json``::

    python bench/a3c_throughput.py                      # CartPole-v1 and Pong, 1, 2, 4 workers
    python bench/a3c_throughput.py --envs cartpole --workers 1 2

Each configuration trains for ``--seconds`` of wall-clock time after a warm-up (``--warmup`` seconds, which
also absorbs starting the workers) and reports the learner's rate: environment steps per second consumed by
learning (for Pong also frames per second, 4 frames per step). The configurations:

* ``a2c``: A2C in one process (CartPole: 8 envs; Pong: ``A2CConfig.pong()`` on 50 envs in ale-py's vector env,
  as in chapter 10);
* ``a3c_data`` / ``a3c_gradients``: A3C with W worker processes (CartPole: 4 envs each; Pong: 8 each, ale-py's
  vector env on one thread) and the learner in the main process;
* ``ray_data``: data-parallel A3C with the workers as Ray actors on a local Ray instance (``ray.init()``), each
  reserving ``min(1, cores / W)`` CPUs.

One PyTorch thread per process. Rates are single measurements (no seeds: throughput, not learning); the learning
itself is measured by ``bench/a3c_cartpole.py``. The machine's core count is in the provenance.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rlbook.agents.a2c import A2CAgent, A2CConfig  # noqa: E402
from rlbook.agents.a3c import A3CAgent, A3CConfig  # noqa: E402
from rlbook.envs import make_vec  # noqa: E402
from rlbook.envs.atari import make_atari  # noqa: E402
from rlbook.parallel import A3CTrainer  # noqa: E402
from rlbook.results import write_results  # noqa: E402
from rlbook.train import Plugin, Trainer  # noqa: E402

KINDS = ("a2c", "a3c_data", "a3c_gradients", "ray_data")
LAYOUT = {"cartpole": {"a2c_envs": 8, "worker_envs": 4, "frames_per_step": 1},
          "pong": {"a2c_envs": 50, "worker_envs": 8, "frames_per_step": 4}}


class Rate(Plugin):
    """Measures the learner's steps per second between ``warmup`` and ``warmup + seconds``, then stops."""

    def __init__(self, warmup: float, seconds: float):
        self.warmup, self.seconds = warmup, seconds
        self.start = self.t0 = self.s0 = None
        self.rate = None

    def before_training(self, trainer):
        self.start = time.perf_counter()

    def after_step(self, trainer, transition, metrics):
        now = time.perf_counter()
        if self.t0 is None:
            if now - self.start >= self.warmup:
                self.t0, self.s0 = now, trainer.step
        elif now - self.t0 >= self.seconds:
            self.rate = (trainer.step - self.s0) / (now - self.t0)
            trainer.stop("measured")


def cartpole_env(n: int):
    return make_vec("CartPole-v1", n)


def pong_env(n: int):
    return make_atari("Pong", n, vectorized="ale", num_threads=1)


def measure(env_name: str, kind: str, workers: int, warmup: float, seconds: float) -> dict:
    layout = LAYOUT[env_name]
    make = cartpole_env if env_name == "cartpole" else pong_env
    preset = A2CConfig.cartpole if env_name == "cartpole" else A2CConfig.pong
    rate = Rate(warmup, seconds)
    out = {"env": env_name, "kind": kind, "workers": workers}
    if kind == "a2c":
        env = make(layout["a2c_envs"])
        agent = A2CAgent(env.single_observation_space, env.single_action_space, preset(seed=0, device="cpu"))
        Trainer(agent, env, total_steps=10 ** 12, plugins=[rate], seed=0).run()
        env.close()
        out["envs"] = layout["a2c_envs"]
    else:
        probe = make(1)
        config = A3CConfig.from_dict({**preset(seed=0, device="cpu").to_dict(), "workers": workers,
                                      "mode": "gradients" if kind == "a3c_gradients" else "data"})
        agent = A3CAgent(probe.single_observation_space, probe.single_action_space, config)
        probe.close()
        cpus = min(1.0, (os.cpu_count() or 1) / workers)
        trainer = A3CTrainer(agent, functools.partial(make, layout["worker_envs"]), total_steps=10 ** 12,
                             plugins=[rate], seed=0, backend="ray" if kind == "ray_data" else "processes",
                             ray_cpus_per_worker=cpus).run()
        out.update(envs=workers * layout["worker_envs"], startup_seconds=round(trainer.startup_seconds, 2),
                   policy_lag_mean=round(sum(trainer.policy_lags) / max(1, len(trainer.policy_lags)), 2))
    out["steps_per_second"] = round(rate.rate, 1)
    out["frames_per_second"] = round(rate.rate * layout["frames_per_step"], 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", choices=tuple(LAYOUT), default=list(LAYOUT))
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=15.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    if "ray_data" in args.kinds:
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)
    rows, metrics = [], {}
    for env_name in args.envs:
        for kind in args.kinds:
            for workers in ([1] if kind == "a2c" else args.workers):
                row = measure(env_name, kind, workers, args.warmup, args.seconds)
                rows.append(row)
                print(row, flush=True)
                unit = "frames/s" if env_name == "pong" else "env steps/s"
                value = row["frames_per_second"] if env_name == "pong" else row["steps_per_second"]
                name = f"{kind}_{env_name}_{unit.split('/')[0].replace(' ', '_')}_per_second"
                if kind != "a2c":
                    name = f"{kind}_{workers}w_{env_name}_{unit.split('/')[0].replace(' ', '_')}_per_second"
                metrics[name] = {"value": value, "unit": unit}
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/a3c_throughput.py", *sys.argv[1:]])
    out = write_results("11_a3c/a3c_throughput", metrics, [0], command=command, rows=rows,
                        warmup_seconds=args.warmup, measured_seconds=args.seconds, cores=os.cpu_count(),
                        torch_threads=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
