"""The search for a CartPole DQN that needs few environment steps (chapters 6 and 7): candidate
configurations on tuning seeds that the benchmark never uses. Writes ``results/06_dqn/dqn_cartpole_tuning.json``::

    python bench/dqn_cartpole_tuning.py                  # every candidate, seeds 100-102
    python bench/dqn_cartpole_tuning.py --only utd1_64   # some candidates (the others' entries are kept)

Each run stops at the book's greedy solve rule (``rlbook.evaluate.GreedySolve``: every 2,000 environment steps,
20 greedy episodes on fresh environments, solved when their mean reaches 475 and 100 more confirm it) or at the
budget. It records the environment steps and gradient steps at the solve; seconds are recorded too but the
tuning runs share the machine with other jobs, so ``bench/dqn_cartpole.py`` is where seconds are measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rlbook.agents.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlbook.evaluate import GreedySolve  # noqa: E402
from rlbook.results import results_path, summarize, write_results  # noqa: E402
from rlbook.train import Trainer  # noqa: E402

RESULTS = "06_dqn/dqn_cartpole_tuning"
TUNING_SEEDS = [100, 101, 102]
FAST = dict(epsilon_decay_steps=5_000, learning_starts=500, target_update_interval=250)
#: name -> (what it tries, the config)
CANDIDATES = {
    "plain": ("chapter 6's plain DQN preset", DQNConfig.cartpole()),
    "n3_double": ("the preset with 3-step returns and Double DQN (the earlier preset)",
                  DQNConfig.cartpole(n_step=3, double=True)),
    "utd1_64": ("one gradient step per env step, 64x64 MLP, batch 64, 3-step Double DQN",
                DQNConfig.cartpole(n_step=3, double=True, hidden=(64, 64), batch_size=64, train_freq=4,
                                   gradient_steps=4, **FAST)),
    "utd1_128_dueling": ("one gradient step per env step, 128x128, batch 128, 3-step Double dueling DQN "
                         "(became DQNConfig.cartpole_few_steps())",
                         DQNConfig.cartpole(n_step=3, double=True, dueling=True, batch_size=128, train_freq=4,
                                            gradient_steps=4, **FAST)),
    "utd_half_64_dueling_per": ("a gradient step per 2 env steps, 64x64, batch 128, 3-step Double dueling DQN "
                                "with prioritized replay",
                                DQNConfig.cartpole(n_step=3, double=True, dueling=True, prioritized=True,
                                                   priority_beta_steps=30_000, hidden=(64, 64), batch_size=128,
                                                   train_freq=8, gradient_steps=4, **FAST)),
    "utd_quarter_128_dueling": ("a gradient step per 4 env steps, 128x128, batch 256, 3-step Double dueling DQN",
                                DQNConfig.cartpole(n_step=3, double=True, dueling=True, batch_size=256,
                                                   train_freq=64, gradient_steps=16, target_update_interval=128,
                                                   epsilon_decay_steps=5_000)),
}


def run(config: DQNConfig, seed: int, budget: int, envs: int) -> dict:
    env = gym.make_vec("CartPole-v1", num_envs=envs, vectorization_mode="vector_entry_point")
    agent = DQNAgent(env.single_observation_space, env.single_action_space, config.replace(seed=seed, device="cpu"))
    solve = GreedySolve("CartPole-v1", 475, seed=10_000_000 + 1000 * seed)
    trainer = Trainer(agent, env, total_steps=budget, plugins=[solve], seed=seed).run()
    return {"seed": seed, "steps": solve.solved_at_step, "seconds": solve.solved_at_seconds,
            "gradient_steps": agent.gradient_steps_done, "steps_run": trainer.step,
            "last_checks": [round(h[2], 1) for h in solve.history[-5:]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=sorted(CANDIDATES))
    p.add_argument("--budget", type=int, default=60_000)
    p.add_argument("--envs", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    path = results_path(RESULTS)
    old = json.loads(path.read_text()) if path.exists() else {"metrics": {}, "provenance": {}}
    metrics = dict(old["metrics"])
    details = dict(old["provenance"].get("candidates", {}))
    for name in args.only or list(CANDIDATES):
        what, config = CANDIDATES[name]
        runs = [run(config, seed, args.budget, args.envs) for seed in TUNING_SEEDS]
        metrics[f"{name}_greedy_steps_to_solve"] = summarize([r["steps"] for r in runs], args.budget, "env steps")
        metrics[f"{name}_gradient_steps_at_solve"] = summarize(
            [r["gradient_steps"] if r["steps"] is not None else None for r in runs], None, "gradient steps")
        details[name] = {"what": what, "config": config.to_dict(), "budget": args.budget, "runs": runs}
        print(name, [r["steps"] for r in runs], flush=True)
        write_results(RESULTS, metrics, TUNING_SEEDS, candidates=details, envs=args.envs, notes=NOTES)


NOTES = ("Tuning runs: seeds 100-102, never used by the benchmark. Steps are environment steps at the greedy "
         "solve (null: not solved within the budget, counted as the budget in the median). The machine was shared "
         "during tuning: seconds are not compared here.")


if __name__ == "__main__":
    main()
