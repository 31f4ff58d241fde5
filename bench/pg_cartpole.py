"""Chapters 9-10: REINFORCE and A2C on CartPole-v1 under chapter 6's greedy solve rule. Writes
``results/09_pg/pg_cartpole.json`` (REINFORCE) and ``results/10_a2c/a2c_cartpole.json`` (A2C)::

    python bench/pg_cartpole.py --seeds 10                       # both agents, seeds 0..9
    python bench/pg_cartpole.py --seeds 10 --agents reinforce     # one of them

**The rule** is ``bench/dqn_cartpole.py``'s (imported from it): every 2,000 environment steps, 20 greedy episodes
(the policy's most likely action) on fresh evaluation environments; solved when their mean is at least 475 and
100 more fresh greedy episodes confirm it. Evaluation time is off the clock; a run stops at its greedy solve;
one that never solves is ``null`` and counts as its budget in the median.

**The agents**: ``reinforce`` -- ``PGConfig.cartpole()`` (the old text's REINFORCE: lr 0.01, 4 episodes per
update) on ``--reinforce-envs`` CartPole copies; ``pg`` -- ``NStepPGConfig.cartpole()`` (the old text's policy
gradient: 10-step rewards, running-mean baseline, entropy 0.01, batches of 8 steps, lr 0.001) on as many;
``a2c`` -- ``A2CConfig.cartpole()`` on ``--a2c-envs`` copies.
Both on Gymnasium's NumPy-vectorised CartPole, one PyTorch thread. ``sb3_a2c`` and ``sb3_ppo`` --
Stable-Baselines3's A2C and PPO with RL Zoo's CartPole-v1 hyperparameters (``SB3_ZOO``: 8 environments in SB3's
own ``make_vec_env``; PPO's linear schedules refer to the zoo's 100,000 steps, which is then its budget), judged
by the same rule through ``bench/dqn_cartpole.py``'s SB3 callback (same evaluation code and seeds). Results go
beside ours in ``results/10_a2c/a2c_cartpole.json`` with the ratios of the medians. ``--set KEY=VALUE`` changes a
field of the presets of our agents that run (``--set lr=0.005 --agents a2c``; not SB3's).
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

from dqn_cartpole import CONFIRM, EPISODES, EVERY, THRESHOLD, cartpole_vec, eval_seed, ratio, sb3_rules  # noqa: E402

from rlbook.agents.a2c import A2CAgent, A2CConfig  # noqa: E402
from rlbook.agents.pg import NStepPGAgent, NStepPGConfig, PGConfig, ReinforceAgent  # noqa: E402
from rlbook.evaluate import GreedySolve  # noqa: E402
from rlbook.options import SET_DEST, ConfigOptionError, add_set_option, config_from_args, config_overrides  # noqa: E402
from rlbook.results import git_commit, merge_results, summarize  # noqa: E402
from rlbook.train import Trainer  # noqa: E402

RESULTS = {"reinforce": "09_pg/pg_cartpole", "pg": "09_pg/pg_cartpole", "a2c": "10_a2c/a2c_cartpole",
           "sb3_a2c": "10_a2c/a2c_cartpole", "sb3_ppo": "10_a2c/a2c_cartpole"}
#: RL Zoo's CartPole-v1 settings (rl-baselines3-zoo hyperparams/a2c.yml and ppo.yml); "lin_x" is a linear
#: schedule from x to 0 over the zoo's n_timesteps
SB3_ZOO = {"sb3_a2c": dict(n_envs=8, n_timesteps=500_000, ent_coef=0.0),
           "sb3_ppo": dict(n_envs=8, n_timesteps=100_000, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                           n_epochs=20, ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2")}
#: Our agents' config classes (their ``cartpole()`` presets), and the fields that --set leaves alone.
CONFIGS = {"reinforce": PGConfig, "pg": NStepPGConfig, "a2c": A2CConfig}
NOT_SET = ("seed", "device")


def run_sb3(kind: str, seed: int) -> dict:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env

    zoo = dict(SB3_ZOO[kind])
    n_envs, budget = zoo.pop("n_envs"), zoo.pop("n_timesteps")
    for key in ("learning_rate", "clip_range"):
        if isinstance(zoo.get(key), str):  # lin_x: x * progress_remaining
            start = float(zoo[key].split("_")[1])
            zoo[key] = lambda progress, start=start: start * progress
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    model = (A2C if kind == "sb3_a2c" else PPO)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **zoo)
    rules = sb3_rules(seed, window_rule=False)
    model.learn(total_timesteps=budget, callback=rules)
    rules.venv.close()
    return {"seed": seed, "greedy_steps": rules.greedy_steps, "greedy_seconds": rules.greedy_seconds,
            "confirm_mean": rules.confirm_mean, "steps_run": int(model.num_timesteps), "seconds_run": rules.seconds(),
            "budget": budget, "checks": rules.checks}


def make_agent(kind: str, env, seed: int, overrides: dict | None = None):
    overrides = overrides or {}
    if kind == "reinforce":
        return ReinforceAgent(env.single_observation_space, env.single_action_space,
                              PGConfig.cartpole(seed=seed, device="cpu", **overrides))
    if kind == "pg":
        return NStepPGAgent(env.single_observation_space, env.single_action_space,
                            NStepPGConfig.cartpole(seed=seed, device="cpu", **overrides))
    return A2CAgent(env.single_observation_space, env.single_action_space,
                    A2CConfig.cartpole(seed=seed, device="cpu", **overrides))


def run(kind: str, seed: int, budget: int, envs: int, overrides: dict | None = None) -> dict:
    env = cartpole_vec(envs)
    agent = make_agent(kind, env, seed, overrides)
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--agents", nargs="+", choices=("reinforce", "pg", "a2c", "sb3_a2c", "sb3_ppo"),
                   default=["reinforce", "pg", "a2c", "sb3_a2c", "sb3_ppo"])
    p.add_argument("--budget", type=int, default=200_000, help="env steps per run")
    p.add_argument("--reinforce-envs", type=int, default=1, help="CartPole copies for REINFORCE")
    p.add_argument("--a2c-envs", type=int, default=8, help="CartPole copies for A2C")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    add_set_option(p, help="set a field of the config of each of our agents that runs (repeatable), e.g. --set "
                           "lr=0.005; a field that one of them lacks is an error (choose them with --agents)")
    args = p.parse_args()
    overrides = {}  # our agent -> the fields --set changes
    for kind in args.agents:
        if kind in CONFIGS:
            try:
                overrides[kind] = config_overrides(CONFIGS[kind], args, exclude=NOT_SET)
                config_from_args(CONFIGS[kind], args, base=CONFIGS[kind].cartpole(), exclude=NOT_SET)
            except ConfigOptionError as e:
                p.error(f"{e} (agent {kind})")
    if hasattr(args, SET_DEST) and not overrides:
        p.error("--set changes our agents' configs (reinforce, pg, a2c), and none of them runs")
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/pg_cartpole.py", *sys.argv[1:]])
    for kind in args.agents:
        envs = args.reinforce_envs if kind in ("reinforce", "pg") else args.a2c_envs
        runs = []
        for seed in seeds:
            r = run_sb3(kind, seed) if kind.startswith("sb3") else run(kind, seed, args.budget, envs, overrides[kind])
            runs.append(r)
            print(f"{kind} seed {seed}: greedy {r['greedy_steps']} steps {r['greedy_seconds']} s; ran "
                  f"{r['steps_run']} steps in {r['seconds_run']:.1f} s", flush=True)
        budget = SB3_ZOO[kind]["n_timesteps"] if kind.startswith("sb3") else args.budget
        longest = round(max(r["seconds_run"] for r in runs), 3)
        metrics = {
            f"{kind}_cartpole_greedy_steps_to_solve": summarize([r["greedy_steps"] for r in runs], budget,
                                                                "env steps"),
            f"{kind}_cartpole_greedy_seconds_to_solve": summarize([r["greedy_seconds"] for r in runs], longest, "s"),
        }
        if kind.startswith("sb3"):
            config = dict(SB3_ZOO[kind])
            envs_text = f"CartPole-v1 x{config['n_envs']} (stable_baselines3 make_vec_env)"
        else:
            config = CONFIGS[kind].cartpole(**overrides[kind]).to_dict()
            envs_text = f"CartPole-v1 x{envs} (gymnasium vector_entry_point)"
        entry = {"command": command, "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "budget": budget, "envs": envs_text, "config": config,
                 **({"overrides": overrides[kind]} if overrides.get(kind) else {}), "torch_threads": args.threads,
                 "runs": runs}
        out = merge_and_write(RESULTS[kind], metrics, {kind: entry}, seeds)
        print(f"wrote {out}", flush=True)


def sb3_ratios(metrics: dict) -> dict:
    """The SB3 agents' medians over our A2C's, where both are measured."""
    out = {}
    for peer in ("sb3_a2c", "sb3_ppo"):
        for unit in ("seconds", "steps"):
            r = ratio(metrics, f"{peer}_cartpole_greedy_{unit}_to_solve", f"a2c_cartpole_greedy_{unit}_to_solve",
                      f"{peer} over our A2C, {unit} to the greedy solve")
            if r:
                out[f"{peer}_over_a2c_cartpole_greedy_{unit}_ratio"] = r
    return out


def merge_and_write(name: str, metrics: dict, entries: dict, seeds: list[int]):
    """Write over the file's current contents (the agents of one file may run in two processes), with the SB3
    ratios recomputed from the merged medians."""
    rule = (f"greedy: every {EVERY:,} env steps, {EPISODES} greedy episodes on fresh envs; solved when their "
            f"mean >= {THRESHOLD:g} and {CONFIRM} more fresh greedy episodes confirm it; evaluation time not "
            "counted; a run stops at its solve")
    return merge_results(name, "agents", entries, metrics, owner=lambda k: k.split("_cartpole")[0],
                         order=("reinforce", "pg", "a2c", "sb3_a2c", "sb3_ppo"), seeds=seeds, derive=sb3_ratios,
                         solve_rule=rule,
                         units="env steps (one step of one CartPole); seconds of training, evaluation excluded")


if __name__ == "__main__":
    main()
