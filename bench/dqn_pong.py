"""DQN on Pong (chapter 6): steps and seconds until the mean game score of the last 100 games reaches 18.

Writes ``results/06_dqn/<results-name>.json``::

    python bench/dqn_pong.py --device cuda                                  # the full run (GPU), dqn_pong.json
    python bench/dqn_pong.py --device cpu --total-steps 300000 --max-minutes 25 \\
        --results-name dqn_pong_cpu_proof                                   # a short CPU proof run

Settings: ``DQNConfig.pong()`` (the old book's: replay 10k, learning after 10k steps, Adam 1e-4, target
sync every 1,000 gradient steps, epsilon 1.0 -> 0.02 over 100k steps, one gradient step per environment
step), or ``DQNConfig.rainbow()`` with ``--preset rainbow`` (chapter 7); command-line options override single
fields (``--train-freq 4`` is the usual CPU speed-up; chapter 7's switches: ``--n-step 2``, ``--double true``,
``--noisy true``, ``--prioritized true``, ``--dueling true``, ``--categorical true``).
Environment: ``rlbook.envs.atari.make_atari("Pong", num_envs, vectorized="ale")`` -- ale-py's C++ vector
env with the DQN preprocessing. Scores are real game scores (21 points to win), read by the
``GameScores`` plugin; the trainer's own episodes end at every lost life (none in Pong).

Time breakdown: timers around each phase of the loop -- stepping the environments, choosing actions
(forward pass), storing transitions, sampling minibatches from the replay, moving them to the device,
and the gradient steps (forward, backward, optimizer, target sync). On CUDA the timers synchronise the
device at their end points only, so the numbers are wall-clock time per phase; "other" is the trainer's
own bookkeeping and the plugins.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rlbook.agents.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlbook.core import resolve_device, seed_everything  # noqa: E402
from rlbook.envs.atari import make_atari  # noqa: E402
from rlbook.logs import GameScores  # noqa: E402
from rlbook.results import summarize, write_results  # noqa: E402
from rlbook.train import Checkpoint, Plugin, Trainer  # noqa: E402

FRAME_SKIP = 4
PHASES = ("env_step", "act", "store", "sample", "to_device", "learn")


class PhaseTimer:
    """Accumulates wall-clock seconds per phase. ``sync`` (CUDA) is called before a phase's clock stops."""

    def __init__(self, device: torch.device):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)
        self._sync = torch.cuda.synchronize if device.type == "cuda" else None

    def wrap(self, phase: str, fn, sync: bool = False):
        seconds, calls, device_sync = self.seconds, self.calls, self._sync if sync else None

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if device_sync is not None:
                device_sync()
            seconds[phase] += time.perf_counter() - start
            calls[phase] += 1
            return out

        return timed


class TimedEnv(gym.vector.VectorWrapper):
    """Times ``step`` of the wrapped vector env (the emulators and the preprocessing)."""

    def __init__(self, env, timer: PhaseTimer):
        super().__init__(env)
        self._step = timer.wrap("env_step", env.step)

    def step(self, actions):
        return self._step(actions)


def instrument(agent: DQNAgent, timer: PhaseTimer) -> None:
    """Put phase timers around the agent's methods (instance attributes shadow the class methods)."""
    agent.act_batch = timer.wrap("act", agent.act_batch)
    agent.observe = timer.wrap("store", agent.observe)
    build_buffer = agent.build_buffer  # the agent makes its buffer at the first observe

    def build_timed_buffer(*args, **kwargs):
        buffer = build_buffer(*args, **kwargs)
        buffer.sample = timer.wrap("sample", buffer.sample)
        return buffer

    agent.build_buffer = build_timed_buffer
    agent._to_device = timer.wrap("to_device", agent._to_device, sync=True)
    agent.gradient_step = timer.wrap("learn", agent.gradient_step, sync=True)


class Progress(Plugin):
    """Every ``every`` steps: record one row (``columns``: step, seconds, epsilon, games, mean score of the
    last 10 games, loss) and print it; stop once ``max_seconds`` of training have passed. Other benches
    (bench/a2c_pong.py) override ``columns``, :meth:`row` and :meth:`line`."""

    columns = ["step", "seconds", "epsilon", "games", "mean10", "loss"]

    def __init__(self, scores: GameScores, every: int, max_seconds: float, quiet: bool = False):
        self.scores, self.every, self.max_seconds, self.quiet = scores, every, max_seconds, quiet
        self.rows: list[list[float]] = []
        self._next = every

    def row(self, trainer, seconds: float) -> list[float]:
        loss = trainer.last_metrics.get("loss")
        loss = float(loss) if loss is not None else math.nan
        return [trainer.step, round(seconds, 1), round(trainer.agent.epsilon, 4), len(self.scores.scores),
                round(self.scores.mean(10), 2), round(loss, 5)]

    def line(self, row: list[float], rate: float) -> str:
        return (f"step {row[0]:>8}  {row[1]:>7.0f} s  {rate:6.0f} steps/s  eps {row[2]:.3f}  games {row[3]:>4}  "
                f"mean10 {row[4]:6.2f}  loss {row[5]:.4f}")

    def before_training(self, trainer):
        self._next = (trainer.step // self.every + 1) * self.every  # a resumed run starts past 0

    def after_step(self, trainer, transition, metrics):
        if trainer.step < self._next:
            return
        self._next = (trainer.step // self.every + 1) * self.every
        seconds = trainer.seconds()
        row = self.row(trainer, seconds)
        self.rows.append(row)
        if not self.quiet:
            print(self.line(row, trainer.step / max(seconds, 1e-9)), flush=True)
        if seconds >= self.max_seconds:
            trainer.stop(f"time limit of {self.max_seconds:.0f} s")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


#: DQNConfig fields that the command line can override, with their parsers.
OVERRIDES = {"train_freq": int, "gradient_steps": int, "buffer_size": int, "learning_starts": int,
             "epsilon_decay_steps": int, "target_update_interval": int, "lr": float, "epsilon_end": float,
             "batch_size": int, "n_step": int, "double": _bool, "loss": str, "max_grad_norm": _optional_float,
             "dueling": _bool, "noisy": _bool, "prioritized": _bool, "categorical": _bool, "epsilon_start": float}
#: ``--preset``: the DQNConfig constructor the overrides apply to.
PRESETS = {"pong": DQNConfig.pong, "rainbow": DQNConfig.rainbow}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--preset", choices=sorted(PRESETS), default="pong",
                   help="DQNConfig.pong() (chapter 6) or DQNConfig.rainbow() (chapter 7); overrides apply on top")
    p.add_argument("--results-folder", default="06_dqn", help="folder under results/ (chapter 7: 07_dqn_ext)")
    p.add_argument("--metric-prefix", default="dqn_pong", help="metric names start with this (chapter 7: the variant)")
    p.add_argument("--total-steps", type=int, default=2_000_000, help="budget in agent steps (x4 frames)")
    p.add_argument("--max-minutes", type=float, default=math.inf, help="stop training after this wall time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=1, help="Pong copies in ale-py's vector env")
    p.add_argument("--threshold", type=float, default=18.0, help="mean score of the last --window games")
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--results-name", default=None,
                   help="file name under results/06_dqn (default dqn_pong on CUDA, dqn_pong_cpu otherwise)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--log-every", type=int, default=10_000, help="steps between progress rows")
    p.add_argument("--checkpoint", default=None, help="save the agent here at the end (e.g. /tmp/pong.pt)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--env-threads", type=int, default=1, help="C++ threads stepping the emulators (0: one per core)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="also save every this many steps")
    for field, kind in OVERRIDES.items():
        p.add_argument("--" + field.replace("_", "-"), type=kind, default=None, help=f"override DQNConfig.{field}")
    return p.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    name = args.results_name or ("dqn_pong" if device.type == "cuda" else "dqn_pong_cpu")
    overrides = {k: v for k, v in vars(args).items() if k in OVERRIDES and v is not None}
    config = PRESETS[args.preset](device=str(device), seed=args.seed, **overrides)

    seed_everything(args.seed)
    env = make_atari("Pong", args.num_envs, vectorized="ale", num_threads=args.env_threads)
    timer = PhaseTimer(device)
    agent = DQNAgent(env.single_observation_space, env.single_action_space, config)
    instrument(agent, timer)
    scores = GameScores(threshold=args.threshold, window=args.window)
    progress = Progress(scores, args.log_every, args.max_minutes * 60, quiet=args.quiet)
    plugins = [scores, progress]
    if args.checkpoint:
        plugins.append(Checkpoint(args.checkpoint, every_steps=args.checkpoint_every, resume=False))
    trainer = Trainer(agent, TimedEnv(env, timer), total_steps=args.total_steps, plugins=plugins,
                      seed=args.seed).run()
    env.close()

    elapsed = trainer.elapsed
    phase_seconds = {k: round(v, 2) for k, v in timer.seconds.items()}
    phase_seconds["other"] = round(elapsed - sum(timer.seconds.values()), 2)
    solved = scores.solved_at_step is not None
    pre = args.metric_prefix
    last = scores.scores[-args.window:]
    metrics = {
        f"{pre}_steps_to_solve": summarize([scores.solved_at_step], budget=trainer.step, unit="steps"),
        f"{pre}_frames_to_solve": summarize(
            [None if not solved else FRAME_SKIP * scores.solved_at_step], budget=FRAME_SKIP * trainer.step,
            unit="frames"),
        f"{pre}_seconds_to_solve": summarize([scores.solved_at_seconds], budget=round(elapsed, 1), unit="s"),
        f"{pre}_steps_per_second": summarize([trainer.step / elapsed], unit="steps/s"),
        f"{pre}_frames_per_second": summarize([FRAME_SKIP * trainer.step / elapsed], unit="frames/s"),
        f"{pre}_final_mean_score": summarize([float(np.mean(last)) if last else None],
                                               unit=f"mean score of the last {len(last)} games"),
    }
    path = write_results(
        f"{args.results_folder}/{name}", metrics, seeds=[args.seed],
        settings={"preset": args.preset, "overrides": overrides, "config": config.to_dict(),
                  "num_envs": args.num_envs, "total_steps": args.total_steps,
                  "max_minutes": None if math.isinf(args.max_minutes) else args.max_minutes,
                  "threshold": args.threshold, "window": args.window, "frame_skip": FRAME_SKIP,
                  "torch_threads": torch.get_num_threads(), "device": str(device), "env": "make_atari('Pong', "
                  f"{args.num_envs}, vectorized='ale', num_threads={args.env_threads})"},
        run={"steps": trainer.step, "seconds": round(elapsed, 1), "stop_reason": trainer.stop_reason,
             "games": len(scores.scores), "gradient_steps": agent.gradient_steps_done, "solved": solved},
        time_breakdown_seconds=phase_seconds,
        time_breakdown_calls=dict(timer.calls),
        curve={"game_end_steps": scores.end_steps, "game_end_seconds": [round(s, 1) for s in scores.end_seconds],
               "game_scores": [round(s) for s in scores.scores]},
        progress={"columns": Progress.columns, "rows": progress.rows},
    )
    if not args.quiet:
        print(f"{trainer.stop_reason}: {trainer.step} steps in {elapsed:.0f} s "
              f"({trainer.step / elapsed:.0f} steps/s), {len(scores.scores)} games, "
              f"mean of the last {len(last)}: {np.mean(last) if last else float('nan'):.2f}")
        print("time per phase (s):", phase_seconds)
        print("wrote", path)
    return path


if __name__ == "__main__":
    main()
