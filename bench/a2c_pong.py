"""A2C on Pong (chapter 10), and A3C with ``--workers`` (chapter 11): env steps and seconds until the mean score
of the last 100 games reaches 18.

Writes ``results/10_a2c/<results-name>.json`` (A3C: ``results/11_a3c/``)::

    python bench/a2c_pong.py --device cuda                               # the full run (a GPU), a2c_pong.json
    python bench/a2c_pong.py --device cpu --max-minutes 25 \\
        --results-name a2c_pong_cpu_proof                                # a short CPU proof run
    python bench/a2c_pong.py --device cuda --workers 15 --num-envs 8     # A3C: 15 worker processes x 8 games,
                                                                         # the learner on the GPU (a3c_pong.json)

With ``--workers N`` (N > 0) the run is A3C (``A3CConfig.pong()``, ``--mode data`` or ``gradients``): N worker
processes each play ``--num-envs`` games in their own ale-py vector env on the CPU and the learner trains on
``--device``.

Settings: ``A2CConfig.pong()`` (the old text's: 4-step returns, Adam lr 0.001 with eps 1e-3, entropy bonus 0.01,
gradient clipping at 0.1, one Nature CNN shared by actor and critic) on ``--num-envs`` (50) copies of Pong in
ale-py's C++ vector env (``rlbook.envs.atari.make_atari("Pong", n, vectorized="ale")``: the DQN
preprocessing, rewards clipped to their sign for learning). Command-line options override single fields
(``--lr 0.003`` is the old text's tuned rate, which collapsed our network's features on CPU), and
``--set KEY=VALUE`` any other field of the config (``--set normalize_advantage=true``; with ``--workers``,
``--set importance_clip=1``).
Scores are real game scores (21 points wins), read by the
``GameScores`` plugin. One env step is 4 emulator frames; the file gives both.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dqn_pong  # noqa: E402

from rlbook.agents.a2c import A2CAgent, A2CConfig  # noqa: E402
from rlbook.agents.a3c import A3CAgent, A3CConfig  # noqa: E402
from rlbook.core import resolve_device, seed_everything  # noqa: E402
from rlbook.envs.atari import make_atari  # noqa: E402
from rlbook.logs import GameScores  # noqa: E402
from rlbook.options import ConfigOptionError, add_set_option, config_from_args, config_overrides  # noqa: E402
from rlbook.parallel import A3CTrainer  # noqa: E402
from rlbook.results import summarize, write_results  # noqa: E402
from rlbook.train import Checkpoint, Trainer  # noqa: E402

FRAME_SKIP = 4
#: A2CConfig fields that the command line can override, with their parsers.
OVERRIDES = {"lr": float, "adam_eps": float, "n_steps": int, "entropy_beta": float, "value_coef": float,
             "max_grad_norm": float, "gae_lambda": float, "gamma": float}
#: Config fields that --set leaves alone: the script's own options set them.
NOT_SET = ("seed", "device", "workers", "mode", *OVERRIDES)


def feature_health(agent: A2CAgent, steps: int = 100, seed: int = 12_345) -> dict:
    """Does the network still look at the screen? Play ``steps`` vector steps of 8 fresh Pong games with the
    agent's sampling policy and report, over the states of the last 25 of those steps (200 states): how many
    distinct feature vectors the shared body gives (1 means every screen looks the same to it), the share of
    active (> 0) features, and how much the action probabilities and values vary between states. A network
    whose ReLU features have all died, or become constant, gives 1 distinct row and zero spread: its policy
    ignores the screen."""
    env = make_atari("Pong", 8, vectorized="ale", num_threads=1)
    obs, _ = env.reset(seed=seed)
    seen = []
    for _ in range(steps):
        obs, *_ = env.step(agent.act_batch(obs))
        seen.append(obs.copy())
    env.close()
    x = torch.as_tensor(np.concatenate(seen[-25:]), device=agent.device)
    with torch.no_grad():
        features = agent.net.actor_body(x)
        logits, values = agent.net(x)
        probs = torch.softmax(logits, dim=1)
    return {"states": len(x), "distinct_feature_rows": len(torch.unique(features.round(decimals=4), dim=0)),
            "active_features": float((features > 0).float().mean()),
            "policy_std_over_states": float(probs.std(dim=0).mean()), "value_std_over_states": float(values.std())}


class Progress(dqn_pong.Progress):
    """bench/dqn_pong.py's progress rows with A2C's columns: (step, seconds, games, mean score of the last 10
    games, loss, entropy)."""

    columns = ["step", "seconds", "games", "mean10", "loss", "entropy"]

    def row(self, trainer, seconds: float) -> list[float]:
        m = trainer.last_metrics
        loss, entropy = (float(m[k]) if k in m else math.nan for k in ("loss", "entropy"))
        return [trainer.step, round(seconds, 1), len(self.scores.scores), round(self.scores.mean(10), 2),
                round(loss, 4), round(entropy, 4)]

    def line(self, row: list[float], rate: float) -> str:
        return (f"step {row[0]:>9,}  {row[1]:>7.0f} s  {rate:6.0f} steps/s  games {row[2]:>5}  "
                f"mean10 {row[3]:6.2f}  loss {row[4]:.4f}  entropy {row[5]:.3f}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--num-envs", type=int, default=50, help="Pong copies in ale-py's vector env (per worker "
                                                             "with --workers)")
    p.add_argument("--workers", type=int, default=0, help="A3C worker processes (0: A2C in one process)")
    p.add_argument("--mode", choices=("data", "gradients"), default="data", help="A3C's variant")
    p.add_argument("--total-steps", type=int, default=10_000_000, help="budget in env steps (x4 frames)")
    p.add_argument("--max-minutes", type=float, default=math.inf, help="stop training after this wall time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=18.0, help="mean score of the last --window games")
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--results-name", default=None,
                   help="file name under results/10_a2c (default a2c_pong on CUDA, a2c_pong_cpu otherwise)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--env-threads", type=int, default=0, help="C++ threads stepping the emulators (0: one per core)")
    p.add_argument("--log-every", type=int, default=50_000, help="env steps between progress rows")
    p.add_argument("--checkpoint", default=None, help="save the agent here (and resume from it when present)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="also save every this many env steps")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--inspect", metavar="CHECKPOINT", default=None,
                   help="only load this checkpoint, check its features (feature_health) and write them to "
                        "results/10_a2c/<results-name>.json")
    for field, kind in OVERRIDES.items():
        p.add_argument("--" + field.replace("_", "-"), type=kind, default=None, help=f"override A2CConfig.{field}")
    add_set_option(p, help="set another field of the config (repeatable), e.g. --set normalize_advantage=true; "
                           "not one that has its own option here")
    args = p.parse_args(argv)
    config_class = A3CConfig if args.workers > 0 else A2CConfig
    try:  # the --set fields, checked against the preset they change
        args.set_overrides = config_overrides(config_class, args, exclude=NOT_SET)
        if args.set_overrides:
            config_from_args(config_class, args, base=config_class.pong(), exclude=NOT_SET)
    except ConfigOptionError as e:
        p.error(str(e))
    return args


def main(argv=None) -> Path:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    algo, folder = ("a3c", "11_a3c") if args.workers > 0 else ("a2c", "10_a2c")
    name = args.results_name or (f"{algo}_pong" if device.type == "cuda" else f"{algo}_pong_cpu")
    if args.inspect:
        agent = (A3CAgent if args.workers > 0 else A2CAgent).from_checkpoint(args.inspect, device=str(device))
        health = feature_health(agent)
        name = args.results_name or f"{name}_features"  # never the run's own results file
        path = write_results(f"{folder}/{name}", {}, seeds=[agent.config.seed], checkpoint=Path(args.inspect).name,
                             env_steps=agent.num_steps, updates=agent.num_updates, config=agent.config.to_dict(),
                             feature_health=health)
        print(health, "\nwrote", path)
        return path
    overrides = {k: v for k, v in vars(args).items() if k in OVERRIDES and v is not None}
    overrides.update(args.set_overrides)
    if args.workers > 0:
        config = A3CConfig.pong(device=str(device), seed=args.seed, workers=args.workers, mode=args.mode,
                                **overrides)
    else:
        config = A2CConfig.pong(device=str(device), seed=args.seed, **overrides)

    seed_everything(args.seed)
    make_env = functools.partial(make_atari, "Pong", args.num_envs, vectorized="ale", num_threads=args.env_threads)
    env = make_env()
    agent = (A3CAgent if args.workers > 0 else A2CAgent)(env.single_observation_space, env.single_action_space,
                                                         config)
    scores = GameScores(threshold=args.threshold, window=args.window)
    progress = Progress(scores, args.log_every, args.max_minutes * 60, quiet=args.quiet)
    plugins = [scores, progress]
    if args.checkpoint:
        plugins.append(Checkpoint(args.checkpoint, every_steps=args.checkpoint_every))
    if args.workers > 0:
        env.close()  # each worker makes its own
        trainer = A3CTrainer(agent, make_env, total_steps=args.total_steps, plugins=plugins, seed=args.seed).run()
    else:
        trainer = Trainer(agent, env, total_steps=args.total_steps, plugins=plugins, seed=args.seed).run()
        env.close()

    elapsed = trainer.elapsed
    solved = scores.solved_at_step is not None
    last = scores.scores[-args.window:]
    first = scores.scores[:args.window]
    metrics = {
        f"{algo}_pong_steps_to_solve": summarize([scores.solved_at_step], budget=trainer.step, unit="env steps"),
        f"{algo}_pong_frames_to_solve": summarize([None if not solved else FRAME_SKIP * scores.solved_at_step],
                                              budget=FRAME_SKIP * trainer.step, unit="frames"),
        f"{algo}_pong_seconds_to_solve": summarize([scores.solved_at_seconds], budget=round(elapsed, 1), unit="s"),
        f"{algo}_pong_frames_per_second": summarize([FRAME_SKIP * trainer.step / elapsed], unit="frames/s"),
        f"{algo}_pong_first_mean_score": summarize([float(np.mean(first)) if first else None],
                                               unit=f"mean score of the first {len(first)} games"),
        f"{algo}_pong_final_mean_score": summarize([float(np.mean(last)) if last else None],
                                               unit=f"mean score of the last {len(last)} games"),
    }
    if device.type != "cuda":  # the seconds-to-solve metric is the GPU run's
        del metrics[f"{algo}_pong_seconds_to_solve"]
    path = write_results(
        f"{folder}/{name}", metrics, seeds=[args.seed],
        settings={"overrides": overrides, "config": config.to_dict(), "num_envs": args.num_envs,
                  "workers": args.workers,
                  "total_steps": args.total_steps,
                  "max_minutes": None if math.isinf(args.max_minutes) else args.max_minutes,
                  "threshold": args.threshold, "window": args.window, "frame_skip": FRAME_SKIP,
                  "torch_threads": torch.get_num_threads(), "device": str(device),
                  "env": f"make_atari('Pong', {args.num_envs}, vectorized='ale', num_threads={args.env_threads})"},
        run={"steps": trainer.step, "seconds": round(elapsed, 1), "stop_reason": trainer.stop_reason,
             "games": len(scores.scores), "updates": agent.num_updates, "solved": solved,
             **({"policy_lag_mean": float(np.mean(trainer.policy_lags)),
                 "startup_seconds": round(trainer.startup_seconds, 2)} if args.workers > 0 else {})},
        feature_health=feature_health(agent),
        curve={"game_end_steps": scores.end_steps, "game_end_seconds": [round(s, 1) for s in scores.end_seconds],
               "game_scores": [round(s) for s in scores.scores]},
        progress={"columns": Progress.columns, "rows": progress.rows},
    )
    if not args.quiet:
        print(f"{trainer.stop_reason}: {trainer.step:,} env steps in {elapsed:.0f} s "
              f"({FRAME_SKIP * trainer.step / elapsed:.0f} frames/s), {len(scores.scores)} games, "
              f"mean of the last {len(last)}: {np.mean(last) if last else float('nan'):.2f}")
        print("wrote", path)
    return path


if __name__ == "__main__":
    main()
