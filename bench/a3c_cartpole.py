"""Chapter 11: A3C on CartPole-v1 under chapter 6's greedy solve rule, beside A2C. Writes
``results/11_a3c/a3c_cartpole.json``::

    python bench/a3c_cartpole.py --seeds 10                          # every agent, seeds 0..9
    python bench/a3c_cartpole.py --seeds 10 --agents a3c_data a2c    # some of them

**The rule** is ``bench/dqn_cartpole.py``'s (imported from it): every 2,000 environment steps (counted by the
learner: the steps in the messages it has used), 20 greedy episodes on fresh evaluation environments; solved when
their mean is at least 475 and 100 more fresh greedy episodes confirm it. Evaluation time is off the clock (the
workers may fill their bounded queues meanwhile: at most ``max_queued`` rollouts each); a run stops at its solve;
one that never solves is ``null`` and counts as its budget in the median.

**The agents**, 8 CartPoles in all: ``a2c`` -- ``A2CConfig.cartpole()`` in one process, 8 environments
(``bench/pg_cartpole.py``'s A2C, measured again here under the same conditions); ``a3c_data`` --
``A3CConfig.cartpole()`` (A2C's preset at half its learning rate, 0.001), data-parallel, 2 worker processes x 4
environments, the learner in the main process; ``a3c_gradients`` -- gradient-parallel, the same layout;
``a3c_data_sync`` -- data-parallel with ``synchronous=True`` (each worker waits for the weights that include its
rollout's update: only the other worker's updates can be missing), to isolate what the lag costs;
``a3c_data_ratio`` -- data-parallel with truncated importance weights (``importance_clip=1``);
``a3c_data_lr002`` -- data-parallel at A2C's learning rate, 0.002 (why the preset halves it). One PyTorch
thread per process; the machine's cores are in the provenance. A3C's seconds include starting its workers
(``startup_seconds`` in each run: new interpreters importing PyTorch). Options named after config fields
(``--lr 5e-4``, or ``--set lr=5e-4``) change every agent that runs, on top of what defines it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dqn_cartpole import CONFIRM, EPISODES, EVERY, THRESHOLD, cartpole_vec, eval_seed  # noqa: E402

from rlbook.agents.a2c import A2CAgent, A2CConfig  # noqa: E402
from rlbook.agents.a3c import A3CAgent, A3CConfig  # noqa: E402
from rlbook.evaluate import GreedySolve  # noqa: E402
from rlbook.options import ConfigOptionError, add_config_options, config_from_args, config_overrides  # noqa: E402
from rlbook.parallel import A3CTrainer  # noqa: E402
from rlbook.results import git_commit, merge_results, summarize  # noqa: E402
from rlbook.train import Trainer  # noqa: E402

AGENTS = ("a2c", "a3c_data", "a3c_gradients", "a3c_data_sync", "a3c_data_ratio", "a3c_data_lr002")
WORKERS, ENVS_PER_WORKER = 2, 4
#: What defines the A3C agents beyond mode and synchronous (the command line cannot change it).
CHANGES = {"a3c_data_ratio": {"importance_clip": 1.0}, "a3c_data_lr002": {"lr": 2e-3}}
#: Config fields the command line leaves alone: the script sets them (WORKERS, and the agents' definitions).
NOT_OPTIONS = ("seed", "device", "workers", "mode", "synchronous")


def a3c_config(kind: str, overrides: dict | None = None) -> A3CConfig:
    return A3CConfig.cartpole(workers=WORKERS, mode="gradients" if kind == "a3c_gradients" else "data",
                              synchronous=kind == "a3c_data_sync", **CHANGES.get(kind, {}), **(overrides or {}))


def our_config(kind: str, overrides: dict | None = None) -> A2CConfig:
    """Agent ``kind``'s config, with the command line's ``overrides`` (``--lr``, ``--set``)."""
    return A2CConfig.cartpole(**(overrides or {})) if kind == "a2c" else a3c_config(kind, overrides)


def run(kind: str, seed: int, budget: int, overrides: dict | None = None) -> dict:
    greedy = GreedySolve("CartPole-v1", THRESHOLD, every_steps=EVERY, episodes=EPISODES, confirm=CONFIRM,
                         seed=eval_seed(seed), stop=True)
    probe = cartpole_vec(WORKERS * ENVS_PER_WORKER)
    obs_space, act_space = probe.single_observation_space, probe.single_action_space
    out: dict = {"seed": seed}
    if kind == "a2c":
        agent = A2CAgent(obs_space, act_space, A2CConfig.cartpole(seed=seed, device="cpu", **(overrides or {})))
        trainer = Trainer(agent, probe, total_steps=budget, plugins=[greedy], seed=seed).run()
    else:
        probe.close()
        config = a3c_config(kind, overrides).replace(seed=seed, device="cpu")
        agent = A3CAgent(obs_space, act_space, config)
        trainer = A3CTrainer(agent, "CartPole-v1", envs_per_worker=ENVS_PER_WORKER, total_steps=budget,
                             plugins=[greedy], seed=seed).run()
        lags = np.array(trainer.policy_lags)
        out.update(startup_seconds=round(trainer.startup_seconds, 3),
                   policy_lag_mean=round(float(lags.mean()), 3), policy_lag_max=int(lags.max()),
                   policy_lag_counts=np.bincount(lags).tolist())
    out.update({"greedy_steps": greedy.solved_at_step, "greedy_seconds": greedy.solved_at_seconds,
                "confirm_mean": greedy.confirm_mean, "steps_run": trainer.step, "seconds_run": trainer.elapsed,
                "episodes": trainer.episodes, "updates": agent.num_updates,
                "checks": [[int(s), round(t, 3), round(m, 1)] for s, t, m in greedy.history]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS))
    p.add_argument("--budget", type=int, default=200_000, help="env steps per run")
    add_config_options(p, A3CConfig, exclude=NOT_OPTIONS, base=A3CConfig.cartpole(),
                       description="change every agent that runs (a2c: the A2CConfig fields only; the defaults "
                                   "shown are A3CConfig.cartpole()'s)")
    args = p.parse_args()
    overrides = {}  # agent -> the fields the command line changes
    for kind in args.agents:
        config_class = A2CConfig if kind == "a2c" else A3CConfig
        try:
            overrides[kind] = config_overrides(config_class, args, exclude=NOT_OPTIONS)
        except ConfigOptionError as e:
            p.error(f"{e} (agent {kind})")
        clash = sorted(set(overrides[kind]) & set(CHANGES.get(kind, {})))
        if clash:
            p.error(f"agent {kind} is defined by {clash[0]}={CHANGES[kind][clash[0]]:g}: leave the agent out with "
                    "--agents to change it")
        try:
            config_from_args(config_class, args, base=our_config(kind), exclude=NOT_OPTIONS)
        except ConfigOptionError as e:
            p.error(f"{e} (agent {kind})")
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/a3c_cartpole.py", *sys.argv[1:]])
    for kind in args.agents:
        runs = []
        for seed in seeds:
            r = run(kind, seed, args.budget, overrides[kind])
            runs.append(r)
            print(f"{kind} seed {seed}: greedy {r['greedy_steps']} steps {r['greedy_seconds']} s; ran "
                  f"{r['steps_run']} steps in {r['seconds_run']:.1f} s; lag {r.get('policy_lag_mean')}", flush=True)
        longest = round(max(r["seconds_run"] for r in runs), 3)
        metrics = {
            f"{kind}_cartpole_greedy_steps_to_solve": summarize([r["greedy_steps"] for r in runs], args.budget,
                                                                "env steps"),
            f"{kind}_cartpole_greedy_seconds_to_solve": summarize([r["greedy_seconds"] for r in runs], longest, "s"),
        }
        if kind != "a2c":
            metrics[f"{kind}_cartpole_policy_lag_mean"] = summarize([r["policy_lag_mean"] for r in runs], None,
                                                                    "updates")
        layout = ("1 process x 8 envs" if kind == "a2c" else
                  f"{WORKERS} worker processes x {ENVS_PER_WORKER} envs + the learner")
        config = our_config(kind, overrides[kind]).to_dict()
        entry = {"command": command, "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "budget": args.budget, "envs": f"CartPole-v1, {layout} (gymnasium vector_entry_point)",
                 "config": config, **({"overrides": overrides[kind]} if overrides[kind] else {}), "torch_threads": 1,
                 "runs": runs}
        rule = (f"greedy: every {EVERY:,} env steps, {EPISODES} greedy episodes on fresh envs; solved when their "
                f"mean >= {THRESHOLD:g} and {CONFIRM} more fresh greedy episodes confirm it; evaluation time not "
                "counted; a run stops at its solve")
        out = merge_results("11_a3c/a3c_cartpole", "agents", {kind: entry}, metrics,
                            owner=lambda k: k.split("_cartpole")[0], order=AGENTS, seeds=seeds, solve_rule=rule,
                            units="env steps (one step of one CartPole, counted by the learner); seconds of "
                                  "training, evaluation excluded; policy lag in learner updates")
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
