"""Chapters 9-10: REINFORCE and A2C on CartPole-v1 under chapter 6's greedy solve rule. Writes
``results/09_pg/pg_cartpole.json`` (REINFORCE) and ``results/10_a2c/a2c_cartpole.json`` (A2C)::

    python bench/pg_cartpole.py --seeds 10                       # both agents, seeds 0..9
    python bench/pg_cartpole.py --seeds 10 --agents reinforce     # one of them

**The rule** is ``bench/dqn_cartpole.py``'s (imported from it): every 2,000 environment steps, 20 greedy episodes
(the policy's most likely action) on fresh evaluation environments; solved when their mean is at least 475 and
100 more fresh greedy episodes confirm it. Evaluation time is off the clock; a run stops at its greedy solve;
one that never solves is ``null`` and counts as its budget in the median.

**The agents**: ``reinforce`` -- ``PGConfig.cartpole()`` (the old text's REINFORCE: lr 0.01, 4 episodes per
update) on ``--reinforce-envs`` CartPole copies; ``a2c`` -- ``A2CConfig.cartpole()`` on ``--a2c-envs`` copies.
Both on Gymnasium's NumPy-vectorised CartPole, one PyTorch thread.
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
from rlbook.agents.pg import PGConfig, ReinforceAgent  # noqa: E402
from rlbook.evaluate import GreedySolve  # noqa: E402
from rlbook.results import git_commit, summarize, write_results  # noqa: E402
from rlbook.train import Trainer  # noqa: E402

RESULTS = {"reinforce": "09_pg/pg_cartpole", "a2c": "10_a2c/a2c_cartpole"}


def make_agent(kind: str, env, seed: int):
    if kind == "reinforce":
        return ReinforceAgent(env.single_observation_space, env.single_action_space,
                              PGConfig.cartpole(seed=seed, device="cpu"))
    return A2CAgent(env.single_observation_space, env.single_action_space, A2CConfig.cartpole(seed=seed, device="cpu"))


def run(kind: str, seed: int, budget: int, envs: int) -> dict:
    env = cartpole_vec(envs)
    agent = make_agent(kind, env, seed)
    greedy = GreedySolve("CartPole-v1", THRESHOLD, every_steps=EVERY, episodes=EPISODES, confirm=CONFIRM,
                         seed=eval_seed(seed), stop=True)
    trainer = Trainer(agent, env, total_steps=budget, plugins=[greedy], seed=seed).run()
    out = {"seed": seed, "greedy_steps": greedy.solved_at_step, "greedy_seconds": greedy.solved_at_seconds,
           "confirm_mean": greedy.confirm_mean, "steps_run": trainer.step, "seconds_run": trainer.elapsed,
           "episodes": trainer.episodes, "updates": agent.num_updates,
           "checks": [[int(s), round(t, 3), round(m, 1)] for s, t, m in greedy.history]}
    if kind == "reinforce":
        out["dropped_steps"] = agent.dropped_steps
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--agents", nargs="+", choices=("reinforce", "a2c"), default=["reinforce", "a2c"])
    p.add_argument("--budget", type=int, default=200_000, help="env steps per run")
    p.add_argument("--reinforce-envs", type=int, default=1, help="CartPole copies for REINFORCE")
    p.add_argument("--a2c-envs", type=int, default=8, help="CartPole copies for A2C")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/pg_cartpole.py", *sys.argv[1:]])
    for kind in args.agents:
        envs = args.reinforce_envs if kind == "reinforce" else args.a2c_envs
        runs = []
        for seed in seeds:
            r = run(kind, seed, args.budget, envs)
            runs.append(r)
            print(f"{kind} seed {seed}: greedy {r['greedy_steps']} steps {r['greedy_seconds']} s; ran "
                  f"{r['steps_run']} steps in {r['seconds_run']:.1f} s", flush=True)
        longest = round(max(r["seconds_run"] for r in runs), 3)
        metrics = {
            f"{kind}_cartpole_greedy_steps_to_solve": summarize([r["greedy_steps"] for r in runs], args.budget,
                                                                "env steps"),
            f"{kind}_cartpole_greedy_seconds_to_solve": summarize([r["greedy_seconds"] for r in runs], longest, "s"),
        }
        config = (PGConfig.cartpole() if kind == "reinforce" else A2CConfig.cartpole()).to_dict()
        out = write_results(RESULTS[kind], metrics, seeds, command=command, budget=args.budget,
                            envs=f"CartPole-v1 x{envs} (gymnasium vector_entry_point)", config=config,
                            torch_threads=args.threads, runs=runs, entry_commit=git_commit(),
                            entry_date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            solve_rule=(f"greedy: every {EVERY:,} env steps, {EPISODES} greedy episodes on fresh envs; "
                                        f"solved when their mean >= {THRESHOLD:g} and {CONFIRM} more fresh greedy "
                                        "episodes confirm it; evaluation time not counted; a run stops at its solve"),
                            units="env steps (one step of one CartPole); seconds of training, evaluation excluded")
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
