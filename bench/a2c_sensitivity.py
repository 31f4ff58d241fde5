"""Chapter 10: how A2C on CartPole-v1 reacts to its hyperparameters, one at a time around ``A2CConfig.cartpole()``.

Writes ``results/10_a2c/a2c_sensitivity.json``::

    python bench/a2c_sensitivity.py                                   # every factor, tuning seeds 100..104
    python bench/a2c_sensitivity.py --factors lr entropy_beta         # some of them (merged into the file)

Each setting changes one thing of the preset on 8 CartPole copies: the learning rate, the entropy bonus,
GAE's lambda, the number of environments, or the rollout length ``n_steps`` (with the environments, it sets
the batch: ``n_steps x envs`` rows per gradient step). Every run is judged by ``bench/dqn_cartpole.py``'s
greedy rule (the chapters' benchmark rule) with a budget of ``--budget`` env steps; a run that does not solve
counts as its budget in the medians. The seeds are the tuning seeds (100 and up), apart from the benchmark's
0-9, so the preset's choice and its benchmark do not share seeds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dqn_cartpole import CONFIRM, EPISODES, EVERY, THRESHOLD, cartpole_vec, eval_seed  # noqa: E402

from rlbook.agents.a2c import A2CAgent, A2CConfig  # noqa: E402
from rlbook.evaluate import GreedySolve  # noqa: E402
from rlbook.results import git_commit, merge_results, summarize  # noqa: E402
from rlbook.train import Trainer  # noqa: E402

#: factor -> the values tried (the preset's value among them); "envs" is the number of CartPole copies
FACTORS = {"lr": [7e-4, 2e-3, 5e-3], "entropy_beta": [0.0, 0.01, 0.05], "gae_lambda": [0.9, 0.95, 1.0],
           "envs": [4, 8, 16, 32], "n_steps": [5, 10, 20]}
PRESET_ENVS = 8


def run(setting: dict, seed: int, budget: int) -> dict:
    setting = dict(setting)
    envs = setting.pop("envs", PRESET_ENVS)
    env = cartpole_vec(envs)
    agent = A2CAgent(env.single_observation_space, env.single_action_space,
                     A2CConfig.cartpole(seed=seed, device="cpu", **setting))
    greedy = GreedySolve("CartPole-v1", THRESHOLD, every_steps=EVERY, episodes=EPISODES, confirm=CONFIRM,
                         seed=eval_seed(seed), stop=True)
    trainer = Trainer(agent, env, total_steps=budget, plugins=[greedy], seed=seed).run()
    return {"seed": seed, "greedy_steps": greedy.solved_at_step, "greedy_seconds": greedy.solved_at_seconds,
            "steps_run": trainer.step, "seconds_run": round(trainer.elapsed, 3), "updates": agent.num_updates}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--factors", nargs="+", choices=sorted(FACTORS), default=list(FACTORS))
    p.add_argument("--seeds", type=int, default=5, help="seeds --first-seed .. --first-seed + N - 1")
    p.add_argument("--first-seed", type=int, default=100)
    p.add_argument("--budget", type=int, default=100_000, help="env steps per run")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/a2c_sensitivity.py", *sys.argv[1:]])
    preset = A2CConfig.cartpole()
    for factor in args.factors:
        entries, metrics = {}, {}
        for value in FACTORS[factor]:
            runs = [run({factor: value}, seed, args.budget) for seed in seeds]
            name = f"{factor}={value:g}"
            is_preset = value == (PRESET_ENVS if factor == "envs" else getattr(preset, factor))
            steps = summarize([r["greedy_steps"] for r in runs], args.budget, "env steps")
            seconds = summarize([r["greedy_seconds"] for r in runs], max(r["seconds_run"] for r in runs), "s")
            metrics[f"a2c_sensitivity_{name}_steps_to_solve"] = steps
            metrics[f"a2c_sensitivity_{name}_seconds_to_solve"] = seconds
            entries[name] = {"factor": factor, "value": value, "preset": is_preset, "command": command,
                             "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                             "runs": runs}
            print(f"{name:>20}: solved {steps['solved']}/{len(runs)}, median {steps['median']} steps, "
                  f"{seconds['median']} s", flush=True)
        merge_results("10_a2c/a2c_sensitivity", "settings", entries, metrics,
                      owner=lambda k: k[len("a2c_sensitivity_"):].rsplit("_", 3)[0],
                      order=[f"{f}={v:g}" for f in FACTORS for v in FACTORS[f]], seeds=seeds,
                      preset={**preset.to_dict(), "envs": PRESET_ENVS}, budget=args.budget,
                      solve_rule=f"bench/dqn_cartpole.py's greedy rule: every {EVERY:,} env steps, {EPISODES} "
                                 f"greedy episodes; solved at mean >= {THRESHOLD:g}, confirmed by {CONFIRM} more",
                      units="env steps (one step of one CartPole); seconds of training, evaluation excluded")


if __name__ == "__main__":
    main()
