"""Benchmark of chapter 5: tabular agents on FrozenLake 4x4 and 8x8 -> results/05_tabular/*.json.

Usage (from the repository root)::

    python bench/tabular.py --seeds 10

What is measured, per seed:

* the learned-model agents (value iteration and its Q-iteration twin, 100 steps per iteration), with
  two exploration strategies: pure random play (epsilon 1) and epsilon-greedy play with respect to
  the last solve of the learned model (epsilon 0.3): iterations and seconds until the greedy
  policy's success probability within the time limit is within 0.02 of the optimal stationary
  policy's;
* tabular Q-learning: environment steps (and seconds) until the greedy policy succeeds with
  probability >= 0.70 (4x4) or >= 0.85 (8x8) within the time limit;
* exact value iteration on the known 8x8 model: seconds.

The frequent "is it solved yet?" checks use the exact success probability of the greedy policy,
computed from the known model (no sampling noise, no lucky passes). Their cost is timed and
subtracted from the training time. Each solve is confirmed with 2,000 real greedy episodes.
"""

from __future__ import annotations

import argparse
import itertools
import time

import gymnasium as gym
import numpy as np

from rlbook.evaluate import evaluate
from rlbook.mdp import FiniteMDP, success_probability, value_iteration
from rlbook.results import summarize, write_results
from rlbook.tabular import ModelBasedAgent, QLearningAgent
from rlbook.train import Plugin, Trainer

LAKES = {
    # env id, time limit, gamma whose optimal policy is the best stationary policy within the limit
    "frozenlake4x4": ("FrozenLake-v1", 100, 0.99),
    "frozenlake8x8": ("FrozenLake8x8-v1", 200, 0.995),
}
MODEL_SETTINGS = {"frozenlake4x4": dict(gamma=0.99, steps_per_iteration=100),
                  "frozenlake8x8": dict(gamma=0.995, steps_per_iteration=100)}
# Exploration of the learned-model agents. epsilon 0.3 was picked on 8x8 among 0.0, 0.05, 0.1, 0.2, 0.3,
# 0.4, 0.5 and a decay 1.0 -> 0.1 over 20,000 steps (seeds 0-5, 300 iterations): smaller values stop
# visiting the states off the greedy path, larger ones rarely get the greedy path to the goal.
EXPLORATION = {"random": dict(epsilon=1.0), "egreedy": dict(epsilon=0.3)}
MODEL_BUDGET_ITERATIONS = 1000
Q_SETTINGS = {"frozenlake4x4": dict(alpha=0.2, gamma=0.99, epsilon=0.2, initial_q=1.0),
              "frozenlake8x8": dict(alpha=0.2, gamma=0.99, epsilon=0.2, initial_q=1.0)}
Q_THRESHOLDS = {"frozenlake4x4": 0.70, "frozenlake8x8": 0.85}
Q_BUDGET_STEPS = {"frozenlake4x4": 50_000, "frozenlake8x8": 300_000}
Q_CHECK_EVERY = 100
EVAL_EPISODES = 2000


class ExactSuccess(Plugin):
    """Track the exact success probability of the agent's greedy policy; stop at ``threshold``.

    ``every_steps=None`` checks after every model re-solve (the update metrics are not empty),
    otherwise every ``every_steps`` environment steps. The time spent checking is kept in
    ``check_seconds`` so that it can be taken out of the training time."""

    def __init__(self, mdp, goal, horizon, threshold, every_steps=None):
        self.mdp, self.goal, self.horizon, self.threshold, self.every = mdp, goal, horizon, threshold, every_steps
        self.curve_x: list[int] = []
        self.curve_y: list[float] = []
        self.check_seconds = 0.0
        self.solved_at_step = None
        self.solved_at_seconds = None

    def after_step(self, trainer, transition, metrics):
        due = bool(metrics) if self.every is None else trainer.step % self.every == 0
        if not due:
            return
        start = time.perf_counter()
        p = success_probability(self.mdp, trainer.agent.greedy_policy(), self.goal, horizon=self.horizon)
        x = trainer.agent.iterations if self.every is None else trainer.step
        self.curve_x.append(int(x))
        self.curve_y.append(round(float(p), 4))
        if p >= self.threshold:
            self.solved_at_step = trainer.step
            self.solved_at_seconds = time.perf_counter() - trainer.start_time - self.check_seconds
            trainer.stop("solved")
        self.check_seconds += time.perf_counter() - start


def downsample(x, y, n=100):
    """At most ``n`` evenly spaced points of a curve (first and last kept), to keep the results file small."""
    keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), n)).astype(int))
    return [np.asarray(x)[keep].tolist(), np.asarray(y)[keep].tolist()]


def lake(name):
    env_id, horizon, gamma_ref = LAKES[name]
    env = gym.make(env_id)
    goal = env.unwrapped.desc.flatten() == b"G"
    mdp = FiniteMDP.from_gym(env, 1.0)
    reference = value_iteration(mdp.with_gamma(gamma_ref), tol=1e-10).policy
    optimum = success_probability(mdp, reference, goal, horizon=horizon)
    reach = FiniteMDP(mdp.P, np.broadcast_to(goal.astype(float), mdp.P.shape), 1.0, terminal=mdp.terminal)
    nonstationary = float(value_iteration(reach, horizon=horizon).V[0])
    return env_id, env, mdp, goal, horizon, optimum, nonstationary


def real_success(agent, env_id, seed):
    venv = gym.make_vec(env_id, num_envs=32, vectorization_mode="sync")
    return evaluate(agent, venv, n_episodes=EVAL_EPISODES, seed=seed).mean


def run_model_based(name, method, exploration, seed):
    env_id, env, mdp, goal, horizon, optimum, _ = lake(name)
    agent = ModelBasedAgent(env.observation_space, env.action_space, method=method, seed=seed,
                            **MODEL_SETTINGS[name], **EXPLORATION[exploration])
    check = ExactSuccess(mdp, goal, horizon, optimum - 0.02)
    budget = MODEL_BUDGET_ITERATIONS * MODEL_SETTINGS[name]["steps_per_iteration"]
    trainer = Trainer(agent, env, total_steps=budget, plugins=[check], seed=seed).run()
    solved = check.solved_at_step is not None
    return {"iterations": agent.iterations if solved else None, "seconds": check.solved_at_seconds,
            "steps": check.solved_at_step, "exact": check.curve_y[-1],
            "run_seconds": trainer.elapsed - check.check_seconds,
            "real": real_success(agent, env_id, 10_000 + seed),
            "curve": downsample(check.curve_x, check.curve_y)}


def run_qlearning(name, seed):
    env_id, env, mdp, goal, horizon, _, _ = lake(name)
    agent = QLearningAgent(env.observation_space, env.action_space, seed=seed, **Q_SETTINGS[name])
    check = ExactSuccess(mdp, goal, horizon, Q_THRESHOLDS[name], every_steps=Q_CHECK_EVERY)
    trainer = Trainer(agent, env, total_steps=Q_BUDGET_STEPS[name], plugins=[check], seed=seed).run()
    return {"steps": check.solved_at_step, "seconds": check.solved_at_seconds, "exact": check.curve_y[-1],
            "run_seconds": trainer.elapsed - check.check_seconds,
            "real": real_success(agent, env_id, 10_000 + seed), "curve": downsample(check.curve_x, check.curve_y)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--lakes", nargs="+", default=list(LAKES))
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    metrics, curves, references = {}, {}, {}
    for name in args.lakes:
        env_id, _, mdp, goal, horizon, optimum, nonstationary = lake(name)
        references[name] = {"env_id": env_id, "time_limit": horizon, "gamma_reference": LAKES[name][2],
                            "optimal_stationary_success": round(optimum, 5),
                            "optimal_nonstationary_success": round(nonstationary, 5),
                            "model_solve_threshold": round(optimum - 0.02, 5),
                            "qlearning_threshold": Q_THRESHOLDS[name]}
        for (method, short), exploration in itertools.product((("values", "vi"), ("q", "qi")), EXPLORATION):
            prefix = f"{short}_{exploration}"
            runs = [run_model_based(name, method, exploration, s) for s in seeds]
            budget = MODEL_BUDGET_ITERATIONS
            metrics[f"{prefix}_{name}_iterations_to_solve"] = summarize([r["iterations"] for r in runs], budget,
                                                                        "iterations")
            metrics[f"{prefix}_{name}_seconds_to_solve"] = summarize(
                [r["seconds"] for r in runs], max(r["run_seconds"] for r in runs), "s")
            metrics[f"{prefix}_{name}_eval_success"] = summarize([r["real"] for r in runs], unit="success rate")
            metrics[f"{prefix}_{name}_exact_success"] = summarize([r["exact"] for r in runs], unit="probability")
            if method == "values":  # curves of value iteration only, to keep the results file small
                curves[f"{prefix}_{name}"] = [r["curve"] for r in runs]
            print(name, method, exploration, [r["iterations"] for r in runs], flush=True)
        runs = [run_qlearning(name, s) for s in seeds]
        metrics[f"qlearning_{name}_steps_to_solve"] = summarize([r["steps"] for r in runs], Q_BUDGET_STEPS[name],
                                                                "env steps")
        metrics[f"qlearning_{name}_seconds_to_solve"] = summarize(
            [r["seconds"] for r in runs], max(r["run_seconds"] for r in runs), "s")
        metrics[f"qlearning_{name}_eval_success"] = summarize([r["real"] for r in runs], unit="success rate")
        metrics[f"qlearning_{name}_exact_success"] = summarize([r["exact"] for r in runs], unit="probability")
        curves[f"qlearning_{name}"] = [r["curve"] for r in runs]
        print(name, "qlearning", [r["steps"] for r in runs], flush=True)

    # Exact value iteration on the known 8x8 model (gamma 0.99, tol 1e-8), one timing per seed slot.
    mdp8 = FiniteMDP.from_gym(gym.make("FrozenLake8x8-v1"), 0.99)
    value_iteration(mdp8, keep_history=False)
    timings = []
    for _ in seeds:
        start = time.perf_counter()
        value_iteration(mdp8, tol=1e-8, keep_history=False)
        timings.append(time.perf_counter() - start)
    metrics["vi_exact_frozenlake8x8_seconds"] = summarize(timings, unit="s")

    write_results(
        "05_tabular/frozenlake", metrics, seeds, references=references,
        settings={"model_based": MODEL_SETTINGS, "model_exploration": EXPLORATION,
                  "model_budget_iterations": MODEL_BUDGET_ITERATIONS,
                  "qlearning": Q_SETTINGS, "qlearning_budget_steps": Q_BUDGET_STEPS,
                  "qlearning_check_every_steps": Q_CHECK_EVERY, "eval_episodes": EVAL_EPISODES},
        notes=("Solved = the exact success probability (from the known model) of the greedy policy within the "
               "time limit reaches the threshold; checked after every model re-solve (model-based) or every 100 "
               "env steps (Q-learning). Seconds are the training run's wall clock with the checking time "
               "subtracted. eval_success is the success rate over 2,000 real greedy episodes of the final "
               "agent. A run that never solves counts as the budget (iterations / steps) or as the "
               "longest full run (seconds). vi_exact: value iteration to tol 1e-8 with gamma 0.99 on the known "
               "8x8 model. Learned-model keys: vi/qi = value iteration / Q-iteration on the learned model; "
               "random = exploration by pure random play (epsilon 1), egreedy = epsilon-greedy play (epsilon "
               "0.3) with respect to the last solve. Curves (exact success after each check) are stored for "
               "value iteration and Q-learning only."),
        curves=curves)


if __name__ == "__main__":
    main()
