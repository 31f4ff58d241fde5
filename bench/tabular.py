"""Benchmark of chapter 5: tabular agents on FrozenLake 4x4 and 8x8 -> results/05_tabular/*.json.

Usage (from the repository root)::

    python bench/tabular.py --sweep      # tune epsilon on seeds 100-105 -> results/05_tabular/epsilon_sweep.json
    python bench/tabular.py --seeds 10   # the benchmark on seeds 0-9 -> results/05_tabular/frozenlake.json

What is measured, per seed:

* the learned-model agents (value iteration and its Q-iteration twin, 100 steps per iteration), with
  two exploration strategies: pure random play (epsilon 1) and epsilon-greedy play with respect to
  the last solve of the learned model (the epsilon the sweep picked): iterations and seconds until the
  greedy policy's success probability within the time limit is within 0.02 of the optimal stationary
  policy's;
* tabular Q-learning with optimistic initial values: environment steps (and seconds) until the greedy
  policy succeeds with probability >= 0.70 (4x4) or >= 0.85 (8x8) within the time limit; and the old
  text's setting (random play, alpha 0.2, gamma 0.9) on the 4x4 lake, under the same rule;
* exact value iteration on the known 8x8 model: seconds.

The frequent "is it solved yet?" checks use the exact success probability of the greedy policy,
computed from the known model (no sampling noise, no lucky passes). A run counts as solved only when
the threshold *holds*: at ``HOLD`` consecutive checks (a single lucky spike does not count); it is solved
at the first of them. The checks' cost is timed and subtracted from the training time. Each final agent
is also played for 2,000 real greedy episodes.

The epsilon of the epsilon-greedy learned-model agents is tuned by ``--sweep`` on seeds the benchmark
never uses (100-105), on the 8x8 lake, and read from its results file by the benchmark.
"""

from __future__ import annotations

import argparse
import itertools
import time

import gymnasium as gym
import numpy as np

from rlbook.evaluate import evaluate
from rlbook.mdp import FiniteMDP, success_probability, value_iteration
from rlbook.results import load_results, summarize, write_results
from rlbook.tabular import ModelBasedAgent, QLearningAgent
from rlbook.train import Plugin, Trainer

LAKES = {
    # env id, time limit, gamma whose optimal policy is the best stationary policy within the limit
    "frozenlake4x4": ("FrozenLake-v1", 100, 0.99),
    "frozenlake8x8": ("FrozenLake8x8-v1", 200, 0.995),
}
MODEL_SETTINGS = {"frozenlake4x4": dict(gamma=0.99, steps_per_iteration=100),
                  "frozenlake8x8": dict(gamma=0.995, steps_per_iteration=100)}
MODEL_BUDGET_ITERATIONS = 1000
#: Consecutive checks at or above the threshold that make a run solved.
HOLD = 5
#: The epsilon sweep (``--sweep``): values tried, tuning seeds (never benchmark seeds), iterations per run.
SWEEP_EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
SWEEP_SEEDS = list(range(100, 106))
SWEEP_ITERATIONS = 400
SWEEP_RESULTS = "05_tabular/epsilon_sweep"
Q_SETTINGS = {"frozenlake4x4": dict(alpha=0.2, gamma=0.99, epsilon=0.2, initial_q=1.0),
              "frozenlake8x8": dict(alpha=0.2, gamma=0.99, epsilon=0.2, initial_q=1.0)}
#: The old text's Q-learning on the 4x4 lake: random play, alpha 0.2, gamma 0.9 (it reported about 1,860 steps).
Q_OLD_TEXT = dict(alpha=0.2, gamma=0.9, epsilon=1.0)
Q_THRESHOLDS = {"frozenlake4x4": 0.70, "frozenlake8x8": 0.85}
Q_BUDGET_STEPS = {"frozenlake4x4": 50_000, "frozenlake8x8": 300_000}
Q_CHECK_EVERY = 100
EVAL_EPISODES = 2000


class ExactSuccess(Plugin):
    """Track the exact success probability of the agent's greedy policy; stop at ``threshold``.

    ``every_steps=None`` checks after every model re-solve (the update metrics are not empty),
    otherwise every ``every_steps`` environment steps. The time spent checking is kept in
    ``check_seconds`` so that it can be taken out of the training time."""

    def __init__(self, mdp, goal, horizon, threshold, every_steps=None, hold=HOLD):
        self.mdp, self.goal, self.horizon, self.threshold, self.every = mdp, goal, horizon, threshold, every_steps
        self.hold = hold
        self.curve_x: list[int] = []
        self.curve_y: list[float] = []
        self.check_seconds = 0.0
        self.solved_at_step = None
        self.solved_at_seconds = None
        self.solved_at_x = None
        self._streak = []  # (x, step, seconds) of the current run of passing checks

    def after_step(self, trainer, transition, metrics):
        due = bool(metrics) if self.every is None else trainer.step % self.every == 0
        if not due:
            return
        with trainer.pause_clock():
            seconds = trainer.seconds()
            p = success_probability(self.mdp, trainer.agent.greedy_policy(), self.goal, horizon=self.horizon)
            x = trainer.agent.iterations if self.every is None else trainer.step
            self.curve_x.append(int(x))
            self.curve_y.append(round(float(p), 4))
            self._streak = self._streak + [(int(x), trainer.step, seconds)] if p >= self.threshold else []
            if len(self._streak) >= self.hold:
                self.solved_at_x, self.solved_at_step, self.solved_at_seconds = self._streak[0]
                trainer.stop(f"solved: {self.hold} consecutive checks at or above {self.threshold:g}")


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


def run_model_based(name, method, epsilon, seed, iterations=MODEL_BUDGET_ITERATIONS, real=True):
    env_id, env, mdp, goal, horizon, optimum, _ = lake(name)
    agent = ModelBasedAgent(env.observation_space, env.action_space, method=method, seed=seed, epsilon=epsilon,
                            **MODEL_SETTINGS[name])
    check = ExactSuccess(mdp, goal, horizon, optimum - 0.02)
    budget = iterations * MODEL_SETTINGS[name]["steps_per_iteration"]
    trainer = Trainer(agent, env, total_steps=budget, plugins=[check], seed=seed).run()
    return {"iterations": check.solved_at_x, "seconds": check.solved_at_seconds,
            "steps": check.solved_at_step, "exact": check.curve_y[-1], "run_seconds": trainer.elapsed,
            "real": real_success(agent, env_id, 10_000 + seed) if real else None,
            "curve": downsample(check.curve_x, check.curve_y)}


def run_qlearning(name, seed, settings, budget):
    env_id, env, mdp, goal, horizon, _, _ = lake(name)
    agent = QLearningAgent(env.observation_space, env.action_space, seed=seed, **settings)
    check = ExactSuccess(mdp, goal, horizon, Q_THRESHOLDS[name], every_steps=Q_CHECK_EVERY)
    trainer = Trainer(agent, env, total_steps=budget, plugins=[check], seed=seed).run()
    return {"steps": check.solved_at_step, "seconds": check.solved_at_seconds, "exact": check.curve_y[-1],
            "run_seconds": trainer.elapsed,
            "real": real_success(agent, env_id, 10_000 + seed), "curve": downsample(check.curve_x, check.curve_y)}


def sweep() -> None:
    """Tune the learned-model agents' epsilon on the 8x8 lake, on seeds the benchmark never uses."""
    table = {}
    for epsilon in SWEEP_EPSILONS:
        runs = [run_model_based("frozenlake8x8", "values", epsilon, s, SWEEP_ITERATIONS, real=False)
                for s in SWEEP_SEEDS]
        table[f"{epsilon:g}"] = summarize([r["iterations"] for r in runs], SWEEP_ITERATIONS, "iterations")
        print("sweep epsilon", epsilon, [r["iterations"] for r in runs], flush=True)
    best = min(table, key=lambda e: (table[e]["median"], -table[e]["solved"]))
    metrics = {f"vi_egreedy_frozenlake8x8_iterations_eps_{e}": entry for e, entry in table.items()}
    write_results(SWEEP_RESULTS, metrics, SWEEP_SEEDS, chosen_epsilon=float(best), epsilons=list(SWEEP_EPSILONS),
                  iterations_budget=SWEEP_ITERATIONS, hold_checks=HOLD,
                  notes="Value iteration on the learned model, 8x8 lake, epsilon-greedy play with respect to the "
                        "last solve; iterations until the greedy policy's exact success holds within 0.02 of the "
                        "optimum for HOLD consecutive checks. The benchmark uses chosen_epsilon: the smallest "
                        "median, then the most solved runs.")


def chosen_epsilon() -> float:
    try:
        return float(load_results(SWEEP_RESULTS)["provenance"]["chosen_epsilon"])
    except FileNotFoundError:
        raise SystemExit("run `python bench/tabular.py --sweep` first: it tunes epsilon on its own seeds") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--lakes", nargs="+", default=list(LAKES))
    parser.add_argument("--sweep", action="store_true", help="tune epsilon on seeds 100-105 and exit")
    args = parser.parse_args()
    if args.sweep:
        sweep()
        return
    seeds = list(range(args.seeds))
    exploration = {"random": 1.0, "egreedy": chosen_epsilon()}
    metrics, curves, references = {}, {}, {}
    for name in args.lakes:
        env_id, _, mdp, goal, horizon, optimum, nonstationary = lake(name)
        references[name] = {"env_id": env_id, "time_limit": horizon, "gamma_reference": LAKES[name][2],
                            "optimal_stationary_success": round(optimum, 5),
                            "optimal_nonstationary_success": round(nonstationary, 5),
                            "model_solve_threshold": round(optimum - 0.02, 5),
                            "qlearning_threshold": Q_THRESHOLDS[name]}
        for (method, short), explore in itertools.product((("values", "vi"), ("q", "qi")), exploration):
            prefix = f"{short}_{explore}"
            runs = [run_model_based(name, method, exploration[explore], s) for s in seeds]
            budget = MODEL_BUDGET_ITERATIONS
            metrics[f"{prefix}_{name}_iterations_to_solve"] = summarize([r["iterations"] for r in runs], budget,
                                                                        "iterations")
            metrics[f"{prefix}_{name}_seconds_to_solve"] = summarize(
                [r["seconds"] for r in runs], max(r["run_seconds"] for r in runs), "s")
            metrics[f"{prefix}_{name}_eval_success"] = summarize([r["real"] for r in runs], unit="success rate")
            metrics[f"{prefix}_{name}_exact_success"] = summarize([r["exact"] for r in runs], unit="probability")
            if method == "values":  # curves of value iteration only, to keep the results file small
                curves[f"{prefix}_{name}"] = [r["curve"] for r in runs]
            print(name, method, explore, [r["iterations"] for r in runs], flush=True)
        if name == "frozenlake4x4":  # the old text's setting, under the same rule
            runs = [run_qlearning(name, s, Q_OLD_TEXT, Q_BUDGET_STEPS[name]) for s in seeds]
            metrics[f"qlearning_oldtext_{name}_steps_to_solve"] = summarize(
                [r["steps"] for r in runs], Q_BUDGET_STEPS[name], "env steps")
            metrics[f"qlearning_oldtext_{name}_exact_success"] = summarize([r["exact"] for r in runs],
                                                                           unit="probability")
            curves[f"qlearning_oldtext_{name}"] = [r["curve"] for r in runs]
            print(name, "qlearning old text", [r["steps"] for r in runs], flush=True)
        runs = [run_qlearning(name, s, Q_SETTINGS[name], Q_BUDGET_STEPS[name]) for s in seeds]
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
        settings={"model_based": MODEL_SETTINGS,
                  "model_exploration": {k: {"epsilon": v} for k, v in exploration.items()},
                  "model_budget_iterations": MODEL_BUDGET_ITERATIONS, "hold_checks": HOLD,
                  "epsilon_from": f"results/{SWEEP_RESULTS}.json",
                  "qlearning": Q_SETTINGS, "qlearning_old_text": Q_OLD_TEXT, "qlearning_budget_steps": Q_BUDGET_STEPS,
                  "qlearning_check_every_steps": Q_CHECK_EVERY, "eval_episodes": EVAL_EPISODES},
        notes=("Solved = the exact success probability (from the known model) of the greedy policy within the "
               f"time limit is at or above the threshold at {HOLD} consecutive checks (solved at the first of "
               "them); checked after every model re-solve (model-based) or every 100 "
               "env steps (Q-learning). Seconds are the training run's wall clock with the checking time "
               "subtracted. eval_success is the success rate over 2,000 real greedy episodes of the final "
               "agent. A run that never solves counts as the budget (iterations / steps) or as the "
               "longest full run (seconds). vi_exact: value iteration to tol 1e-8 with gamma 0.99 on the known "
               "8x8 model. Learned-model keys: vi/qi = value iteration / Q-iteration on the learned model; "
               "random = exploration by pure random play (epsilon 1), egreedy = epsilon-greedy play (epsilon "
               "from the sweep) with respect to the last solve. qlearning_oldtext: random play, alpha 0.2, gamma "
               "0.9. Curves (exact success after each check) are stored for "
               "value iteration and Q-learning only."),
        curves=curves)


if __name__ == "__main__":
    main()
