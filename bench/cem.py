"""Benchmark of the cross-entropy method (chapter 4): CartPole-v1 and FrozenLake-v1.

Writes ``results/04_cem/cem_cartpole.json``, ``cem_frozenlake.json`` and ``cem_frozenlake_slippery.json``::

    python bench/cem.py --seeds 10                 # everything
    python bench/cem.py --seeds 10 --only cartpole # or frozenlake, slippery

CartPole: seconds and batches until the mean return of the last 100 training episodes reaches 475
(wall clock of the training run from its start), confirmed afterwards by 100 greedy episodes whose
mean must also reach 475 (the confirmation is not timed). A run counts as solved only if both hold.

FrozenLake (4x4): the naive settings on the slippery lake (greedy success after the budget); the
fixes added one at a time on the non-slippery lake (episodes until the greedy policy reaches the
goal); the non-slippery lake with the old text's fixes (batches until the greedy policy reaches the
goal, and until 80 % of 100 consecutive training episodes succeed, the old text's criterion); the
slippery lake with the old text's fixes and with our settings (batches and training seconds until
the greedy success over 1000 episodes reaches the target). Greedy evaluations are not timed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rlbook.agents.cem import CEMAgent, CEMConfig  # noqa: E402
from rlbook.evaluate import evaluate  # noqa: E402
from rlbook.results import summarize, write_results  # noqa: E402
from rlbook.train import Plugin, StopOnReward, Trainer  # noqa: E402

CARTPOLE_MAX_BATCHES = 300
SLIPPERY_TARGET = 0.6  # greedy success over 1000 episodes the slippery lake must reach
SLIPPERY_MAX_BATCHES = 600
OLD_FIXES_MAX_BATCHES = 300  # the old text's fixes on the slippery lake (they do not reach the target)
SLIPPERY_EVAL_EVERY = 20  # batches between greedy evaluations on the slippery lake
NON_SLIPPERY_MAX_EPISODES = 30_000
ABLATION_MAX_EPISODES = 10_000
NAIVE_BATCHES = 500


def cartpole_vec(n: int = 16) -> gym.vector.VectorEnv:
    """Gymnasium's NumPy-vectorised CartPole-v1 (next-step autoreset), far faster than n Python envs."""
    return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")


def lake_vec(slippery: bool, n: int = 16) -> gym.vector.VectorEnv:
    return gym.make_vec("FrozenLake-v1", num_envs=n, vectorization_mode="sync", is_slippery=slippery)


class GreedyCheck(Plugin):
    """Every ``every`` batches, evaluate the greedy policy; stop once its success reaches ``target``.

    The evaluation time is taken out of the trainer's clock, so ``trainer.elapsed`` is training only."""

    def __init__(self, env, episodes: int, target: float, every: int = 1, seed: int = 0):
        self.env, self.episodes, self.target, self.every, self.seed = env, episodes, target, every, seed
        self.curve: list[tuple[int, float]] = []
        self.solved_at_batch: int | None = None
        self.solved_at_seconds: float | None = None
        self._next = every

    def after_step(self, trainer, transition, metrics):
        agent = trainer.agent
        if agent.num_batches < self._next:
            return
        self._next = agent.num_batches + self.every
        start = time.perf_counter()
        success = evaluate(agent, self.env, self.episodes, seed=self.seed + agent.num_batches).mean
        trainer.start_time += time.perf_counter() - start  # do not time the evaluation
        self.curve.append((agent.num_batches, round(success, 4)))
        if success >= self.target and self.solved_at_batch is None:
            self.solved_at_batch = agent.num_batches
            self.solved_at_seconds = trainer._elapsed_before + time.perf_counter() - trainer.start_time
            trainer.stop(f"greedy success {success:.3f} >= {self.target}")


def curve(agent: CEMAgent, key: str, digits: int = 2) -> list[float]:
    return [round(h[key], digits) for h in agent.history]


# ---------------------------------------------------------------------- CartPole
def bench_cartpole(seeds: list[int]) -> None:
    cfg = CEMConfig.cartpole()
    seconds, batches, greedy, per_seed = [], [], [], []
    for seed in seeds:
        env = cartpole_vec()
        agent = CEMAgent(env.single_observation_space, env.single_action_space, replace(cfg, seed=seed))
        stop = StopOnReward(475, window=100)
        trainer = Trainer(agent, env, total_episodes=CARTPOLE_MAX_BATCHES * cfg.episodes_per_batch,
                          plugins=[stop], seed=seed).run()
        result = evaluate(agent, cartpole_vec(), 100, seed=10_000 + seed)
        solved = stop.solved_at_step is not None and result.mean >= 475
        seconds.append(stop.solved_at_seconds if solved else None)
        batches.append(agent.num_batches if solved else None)
        greedy.append(result.mean)
        per_seed.append({"seed": seed, "reward_mean": curve(agent, "reward_mean", 1),
                         "reward_bound": curve(agent, "reward_bound", 1), "steps": trainer.step,
                         "elapsed": round(trainer.elapsed, 3)})
        print(f"cartpole seed {seed}: batches {agent.num_batches} steps {trainer.step} "
              f"seconds {trainer.elapsed:.2f} greedy {result.mean:.1f}", flush=True)
    budget_s = max(r["elapsed"] for r in per_seed)
    metrics = {
        "cem_cartpole_seconds_to_solve": summarize(seconds, budget=budget_s, unit="s"),
        "cem_cartpole_batches_to_solve": summarize(batches, budget=CARTPOLE_MAX_BATCHES, unit="batches"),
        "cem_cartpole_greedy_mean_return": summarize(greedy, unit="return"),
    }
    path = write_results("04_cem/cem_cartpole", metrics, seeds, config=cfg.to_dict(), env="CartPole-v1 x16 "
                         "(gymnasium vector_entry_point)", solved_when="mean of last 100 training episodes "
                         ">= 475, confirmed by 100 greedy episodes with mean >= 475", torch_threads=1,
                         max_batches=CARTPOLE_MAX_BATCHES, curves=per_seed)
    print(f"wrote {path}", flush=True)


# ---------------------------------------------------------------------- FrozenLake
def naive_config() -> CEMConfig:
    """The CartPole recipe applied unchanged (states one-hot, as the network needs a vector)."""
    return CEMConfig.cartpole(one_hot=True)


def ablation_configs() -> dict[str, CEMConfig]:
    """The FrozenLake fixes added one at a time, then our slippery-lake settings."""
    naive = naive_config()
    filtered = replace(naive, gamma=0.9, strict=True)
    kept = replace(filtered, keep_elite=500, percentile=30.0)
    return {"naive": naive, "+ discounted, strict filter": filtered, "+ kept elite (500), 30th percentile": kept,
            "+ batch 100, lr 0.001 (all fixes)": CEMConfig.frozenlake(),
            "successes only (slippery preset)": CEMConfig.frozenlake_slippery()}


def run_non_slippery(cfg: CEMConfig, seed: int, max_episodes: int, until_train_success: bool) -> dict:
    """Train on the non-slippery lake, checking the greedy policy after every batch (one greedy
    episode decides: the lake and the greedy policy are deterministic)."""
    env = lake_vec(False)
    agent = CEMAgent(env.single_observation_space, env.single_action_space, replace(cfg, seed=seed))
    check = GreedyCheck(gym.make("FrozenLake-v1", is_slippery=False), 1, 1.0, every=1)
    plugins: list[Plugin] = [check]
    stop = None
    if until_train_success:
        stop = StopOnReward(0.8, window=100)
        check.target = 2.0  # only record the greedy curve; the training criterion stops the run
        plugins.append(stop)
    trainer = Trainer(agent, env, total_episodes=max_episodes, plugins=plugins, seed=seed).run()
    return {"greedy_solved_batch": next((b for b, s in check.curve if s >= 1.0), None),
            "train_solved_batch": agent.num_batches if stop is not None and stop.solved_at_step else None,
            "train_solved_seconds": stop.solved_at_seconds if stop is not None else None,
            "elapsed": trainer.elapsed, "agent": agent}


def bench_frozenlake(seeds: list[int]) -> None:
    """Naive settings, the fixes one at a time, and the non-slippery lake -> cem_frozenlake.json."""
    metrics: dict[str, dict] = {}
    details: dict[str, object] = {}

    # 1. Naive settings on the slippery lake.
    success, zero_bound, no_success = [], [], []
    for seed in seeds:
        env = lake_vec(True)
        cfg = naive_config()
        agent = CEMAgent(env.single_observation_space, env.single_action_space, replace(cfg, seed=seed))
        Trainer(agent, env, total_episodes=NAIVE_BATCHES * cfg.episodes_per_batch, seed=seed).run()
        success.append(evaluate(agent, lake_vec(True), 1000, seed=10_000 + seed).mean)
        zero_bound.append(float(np.mean([h["reward_bound"] == 0 for h in agent.history])))
        no_success.append(float(np.mean([h["reward_mean"] == 0 for h in agent.history])))
        print(f"naive seed {seed}: greedy success {success[-1]:.3f}, boundary 0 in {zero_bound[-1]:.0%} "
              f"of batches, no success in {no_success[-1]:.0%}", flush=True)
    metrics["cem_frozenlake_naive_greedy_success"] = summarize(success, unit="fraction of 1000 episodes")
    metrics["cem_frozenlake_naive_zero_boundary_fraction"] = summarize(zero_bound, unit="fraction of batches")
    metrics["cem_frozenlake_naive_no_success_fraction"] = summarize(no_success, unit="fraction of batches")
    details["naive"] = {"config": naive_config().to_dict(), "batches": NAIVE_BATCHES, "slippery": True}

    # 2. The fixes one at a time, on the non-slippery lake: episodes until the greedy policy solves it.
    ablation = {}
    for name, cfg in ablation_configs().items():
        episodes = []
        for seed in seeds:
            b = run_non_slippery(cfg, seed, ABLATION_MAX_EPISODES, until_train_success=False)["greedy_solved_batch"]
            episodes.append(None if b is None else b * cfg.episodes_per_batch)
            print(f"ablation {name!r} seed {seed}: greedy solved after {episodes[-1]} episodes", flush=True)
        ablation[name] = {"config": cfg.to_dict(), "episodes_to_greedy_solve": summarize(
            episodes, budget=ABLATION_MAX_EPISODES, unit="episodes")}
    details["ablation_non_slippery"] = ablation

    # 3. Non-slippery lake with the old text's fixes and its stopping rule (80 % training success).
    greedy_b, train_b, train_s, lake_curves = [], [], [], []
    for seed in seeds:
        run = run_non_slippery(CEMConfig.frozenlake(), seed, NON_SLIPPERY_MAX_EPISODES, until_train_success=True)
        greedy_b.append(run["greedy_solved_batch"])
        train_b.append(run["train_solved_batch"])
        train_s.append(run["train_solved_seconds"])
        lake_curves.append({"seed": seed, "reward_mean": curve(run["agent"], "reward_mean"),
                            "elapsed": round(run["elapsed"], 2)})
        print(f"non-slippery seed {seed}: greedy solved at batch {greedy_b[-1]}, 80% training success at "
              f"batch {train_b[-1]} ({train_s[-1]} s)", flush=True)
    max_batches = NON_SLIPPERY_MAX_EPISODES // CEMConfig.frozenlake().episodes_per_batch
    metrics["cem_frozenlake_nonslippery_batches_to_greedy_solve"] = summarize(greedy_b, budget=max_batches,
                                                                             unit="batches")
    metrics["cem_frozenlake_nonslippery_batches_to_train_success"] = summarize(train_b, budget=max_batches,
                                                                              unit="batches")
    metrics["cem_frozenlake_nonslippery_seconds_to_train_success"] = summarize(
        train_s, budget=max(c["elapsed"] for c in lake_curves), unit="s")
    details["non_slippery"] = {"config": CEMConfig.frozenlake().to_dict(), "train_success_threshold": 0.8,
                               "train_success_window": 100, "max_episodes": NON_SLIPPERY_MAX_EPISODES,
                               "curves": lake_curves}
    path = write_results("04_cem/cem_frozenlake", metrics, seeds, torch_threads=1, **details)
    print(f"wrote {path}", flush=True)


def bench_slippery(seeds: list[int], old_fix_seeds: int) -> None:
    """The slippery lake: the old text's fixes and our settings -> cem_frozenlake_slippery.json.

    Every ``SLIPPERY_EVAL_EVERY`` batches the greedy policy plays 1000 episodes; a run stops when
    their success rate reaches ``SLIPPERY_TARGET``. Seconds are training time (evaluations excluded).
    The old text's fixes never reach the target and each run costs its whole budget, so they run on
    the first ``old_fix_seeds`` seeds only, with a smaller budget."""
    metrics: dict[str, dict] = {}
    details: dict[str, object] = {"target": SLIPPERY_TARGET, "eval_episodes": 1000,
                                  "eval_every_batches": SLIPPERY_EVAL_EVERY}
    old_seeds = seeds[:old_fix_seeds]
    runs = (("oldfixes", CEMConfig.frozenlake(), old_seeds, OLD_FIXES_MAX_BATCHES),
            ("successes", CEMConfig.frozenlake_slippery(), seeds, SLIPPERY_MAX_BATCHES))
    for key, cfg, key_seeds, max_batches in runs:
        batches, seconds, final, best, curves = [], [], [], [], []
        for seed in key_seeds:
            env = lake_vec(True)
            agent = CEMAgent(env.single_observation_space, env.single_action_space, replace(cfg, seed=seed))
            check = GreedyCheck(lake_vec(True), 1000, SLIPPERY_TARGET, every=SLIPPERY_EVAL_EVERY,
                                seed=100_000 * (seed + 1))
            trainer = Trainer(agent, env, total_episodes=max_batches * cfg.episodes_per_batch,
                              plugins=[check], seed=seed).run()
            batches.append(check.solved_at_batch)
            seconds.append(check.solved_at_seconds)
            final.append(check.curve[-1][1])
            best.append(max(s for _, s in check.curve))
            curves.append({"seed": seed, "greedy_success": check.curve,
                           "reward_mean": curve(agent, "reward_mean"), "elapsed": round(trainer.elapsed, 2)})
            print(f"slippery {key} seed {seed}: target reached at batch {batches[-1]} ({seconds[-1]} s); "
                  f"last greedy success {final[-1]:.3f}; {trainer.elapsed:.1f} s", flush=True)
        prefix = f"cem_frozenlake_slippery_{key}"
        metrics[f"{prefix}_batches_to_target"] = summarize(batches, budget=max_batches, unit="batches")
        metrics[f"{prefix}_seconds_to_target"] = summarize(seconds, budget=max(c["elapsed"] for c in curves),
                                                           unit="s")
        metrics[f"{prefix}_last_greedy_success"] = summarize(final, unit="fraction of 1000 episodes")
        metrics[f"{prefix}_best_greedy_success"] = summarize(best, unit="fraction of 1000 episodes")
        details[key] = {"config": cfg.to_dict(), "seeds": key_seeds, "max_batches": max_batches, "curves": curves}
    path = write_results("04_cem/cem_frozenlake_slippery", metrics, seeds, torch_threads=1, **details)
    print(f"wrote {path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (0..N-1)")
    parser.add_argument("--old-fix-seeds", type=int, default=5,
                        help="seeds for the old text's fixes on the slippery lake (slow: they never reach the target)")
    parser.add_argument("--only", choices=["cartpole", "frozenlake", "slippery"], help="run one part only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny networks: one thread is faster (much faster on a shared CPU)
    seeds = list(range(args.seeds))
    if args.only in (None, "cartpole"):
        bench_cartpole(seeds)
    if args.only in (None, "frozenlake"):
        bench_frozenlake(seeds)
    if args.only in (None, "slippery"):
        bench_slippery(seeds, args.old_fix_seeds)


if __name__ == "__main__":
    main()
