"""Chapter 7: each DQN extension switched on alone on top of chapter 6's plain DQN, then all of them together,
on CartPole-v1 under chapter 6's greedy solve rule. Writes ``results/07_dqn_ext/dqn_extensions_cartpole.json``::

    python bench/dqn_extensions.py --seeds 10                          # every variant, seeds 0..9
    python bench/dqn_extensions.py --seeds 10 --variants noisy c51     # some; the others' entries are kept
    python bench/dqn_extensions.py --diagnostics                       # the chapter's diagnostic curves

**The rule** is ``bench/dqn_cartpole.py``'s (imported from it, not copied): every 2,000 environment steps, 20
greedy episodes on fresh evaluation environments; solved when their mean is at least 475 and 100 more fresh
greedy episodes confirm it. Evaluation time is off the clock. A run stops at its greedy solve; one that never
solves within the budget is ``null`` and counts as its budget in the median.

**The variants** all start from ``DQNConfig.cartpole()`` (8 CartPole copies in a NumPy vector env, 32 gradient
steps on minibatches of 256 every 256 env steps, Adam lr 1e-3, target copied every 64 gradient steps) and change
only the fields in ``VARIANTS``. CartPole's returns lie in [0, 100] with gamma 0.99 (one reward per step), so
C51's 51 atoms span [0, 100] instead of the [-10, 10] meant for clipped Atari rewards; noisy networks replace
epsilon-greedy (epsilon is 0). Nothing was tuned per variant: the chapter measures each switch, not the best
configuration it allows.

**Diagnostics** (``--diagnostics``, seeds 0-2, a fixed budget of 60,000 steps, no stop at the solve): the mean
max-Q on 200 held-out states against the true discounted return of the greedy policy from the same states
(plain vs Double DQN), the noisy layers' signal-to-noise, prioritized replay's priority and weight quantiles,
and C51's value distribution of three states. Writes ``results/07_dqn_ext/dqn_extensions_diagnostics.json``.
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

from rlbook.agents.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlbook.diagnostics import CartPoleGreedyValue, HeldOutQ, NoisySNR, PriorityStats, cartpole_states  # noqa: E402
from rlbook.evaluate import GreedySolve  # noqa: E402
from rlbook.results import git_commit, merge_results, summarize, write_results  # noqa: E402
from rlbook.train import Trainer  # noqa: E402

RESULTS = "07_dqn_ext/dqn_extensions_cartpole"
DIAGNOSTICS = "07_dqn_ext/dqn_extensions_diagnostics"
NO_EPSILON = dict(epsilon_start=0.0, epsilon_end=0.0, epsilon_decay_steps=0)
CARTPOLE_SUPPORT = dict(v_min=0.0, v_max=100.0)

#: variant -> the fields it changes in ``DQNConfig.cartpole()``
VARIANTS: dict[str, dict] = {
    "dqn": {},
    "nstep": dict(n_step=3),
    "double": dict(double=True),
    "noisy": dict(noisy=True, **NO_EPSILON),
    "prioritized": dict(prioritized=True),
    "dueling": dict(dueling=True),
    "c51": dict(categorical=True, **CARTPOLE_SUPPORT),
    "rainbow": dict(n_step=3, double=True, dueling=True, noisy=True, prioritized=True, categorical=True,
                    **NO_EPSILON, **CARTPOLE_SUPPORT),
}


def config(variant: str, seed: int | None = None) -> DQNConfig:
    return DQNConfig.cartpole(device="cpu", seed=seed, **VARIANTS[variant])


def greedy_rule(seed: int, stop: bool) -> GreedySolve:
    """Chapter 6's greedy solve rule for run ``seed`` (its evaluation seeds apart from the training seeds)."""
    return GreedySolve("CartPole-v1", THRESHOLD, every_steps=EVERY, episodes=EPISODES, confirm=CONFIRM,
                       seed=eval_seed(seed), stop=stop)


def run_variant(variant: str, seed: int, budget: int, envs: int) -> dict:
    env = cartpole_vec(envs)
    agent = DQNAgent(env.single_observation_space, env.single_action_space, config(variant, seed))
    greedy = greedy_rule(seed, stop=True)
    trainer = Trainer(agent, env, total_steps=budget, plugins=[greedy], seed=seed).run()
    return {"seed": seed, "greedy_steps": greedy.solved_at_step, "greedy_seconds": greedy.solved_at_seconds,
            "confirm_mean": greedy.confirm_mean, "steps_run": trainer.step, "seconds_run": trainer.elapsed,
            "gradient_steps": agent.gradient_steps_done,
            "checks": [[int(s), round(t, 3), round(m, 1)] for s, t, m in greedy.history]}


def summarize_variant(variant: str, runs: list[dict], budget: int) -> dict:
    longest = round(max(r["seconds_run"] for r in runs), 3)
    speeds = [r["steps_run"] / r["seconds_run"] for r in runs]
    return {
        f"{variant}_cartpole_greedy_steps_to_solve": summarize([r["greedy_steps"] for r in runs], budget,
                                                               "env steps"),
        f"{variant}_cartpole_greedy_seconds_to_solve": summarize([r["greedy_seconds"] for r in runs], longest, "s"),
        f"{variant}_cartpole_training_steps_per_second": summarize(speeds, None, "env steps / s"),
    }


def merge_and_write(name: str, metrics: dict, entries: dict, **provenance) -> Path:
    """Write ``metrics`` and ``entries`` (per variant) over the file's current contents (two processes measuring
    different variants can share one file)."""
    return merge_results(name, "variants", entries, metrics, owner=lambda k: k.split("_cartpole_")[0],
                         order=list(VARIANTS), **provenance)


def measure(variants: list[str], seeds: list[int], budget: int, envs: int, threads: int) -> None:
    for variant in variants:
        runs = []
        for seed in seeds:
            run = run_variant(variant, seed, budget, envs)
            runs.append(run)
            print(f"{variant} seed {seed}: greedy {run['greedy_steps']} steps {run['greedy_seconds']} s; ran "
                  f"{run['steps_run']} steps in {run['seconds_run']:.1f} s", flush=True)
        command = "python " + " ".join(shlex.quote(a) for a in ["bench/dqn_extensions.py", *sys.argv[1:]])
        entry = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
                 "commit": git_commit(), "seeds": seeds, "budget": budget,
                 "changes": VARIANTS[variant], "config": config(variant).to_dict(), "runs": runs,
                 "envs": f"CartPole-v1 x{envs} (gymnasium vector_entry_point)", "torch_threads": threads}
        out = merge_and_write(
            RESULTS, summarize_variant(variant, runs, budget), {variant: entry},
            solve_rule=(f"greedy: every {EVERY:,} env steps, {EPISODES} greedy episodes on fresh envs; solved when "
                        f"their mean >= {THRESHOLD:g} and {CONFIRM} more fresh greedy episodes confirm it; "
                        "evaluation time not counted; a run stops at its solve"),
            units="env steps (one step of one CartPole); seconds of training, evaluation excluded",
            base_config="DQNConfig.cartpole()")
        print(f"wrote {out}", flush=True)


def diagnose(seeds: list[int], budget: int, envs: int, every: int) -> None:
    """The chapter's diagnostic curves: one run per (variant, seed) to a fixed budget, with the plugins on."""
    states = cartpole_states(200, seed=12_345)
    probe = states[[0, 1, 2]]
    entries = {}
    for variant in ("dqn", "double", "noisy", "prioritized", "c51"):
        runs = []
        for seed in seeds:
            env = cartpole_vec(envs)
            agent = DQNAgent(env.single_observation_space, env.single_action_space, config(variant, seed))
            plugins = [greedy_rule(seed, stop=False)]
            if variant in ("dqn", "double"):
                plugins += [HeldOutQ(states, every_steps=every),
                            CartPoleGreedyValue(states, gamma=agent.config.gamma, every_steps=every)]
            if variant == "noisy":
                plugins.append(NoisySNR(every_steps=every))
            if variant == "prioritized":
                plugins.append(PriorityStats(every_steps=every, batch_size=agent.config.batch_size, seed=seed))
            Trainer(agent, env, total_steps=budget, plugins=plugins, seed=seed).run()
            greedy = plugins[0]
            run = {"seed": seed, "greedy_steps": greedy.solved_at_step,
                   "greedy_checks": [[int(s), round(m, 1)] for s, _, m in greedy.history]}
            for plugin in plugins[1:]:
                key = type(plugin).__name__
                run[key] = {"steps": plugin.steps}
                if isinstance(plugin, PriorityStats):
                    run[key].update(priority_quantiles=plugin.priority_quantiles,
                                    weight_quantiles=plugin.weight_quantiles, beta=plugin.beta,
                                    quantiles=list(PriorityStats.QUANTILES))
                else:
                    run[key]["values"] = plugin.values
            if variant == "c51":
                run["value_distribution"] = {"states": probe.tolist(),
                                             "support": agent.support.tolist(),
                                             "probs": agent.value_distribution(probe).tolist()}
            runs.append(run)
            print(f"diagnostics {variant} seed {seed}: greedy solve at {greedy.solved_at_step}", flush=True)
        entries[variant] = {"seeds": seeds, "budget": budget, "every": every, "changes": VARIANTS[variant],
                            "runs": runs}
    out = write_results(DIAGNOSTICS, {}, seeds, variants=entries, held_out_states=len(states),
                        held_out_states_seed=12_345,
                        what=("one run per variant and seed to a fixed budget (no stop at the solve); HeldOutQ: mean "
                              "max_a Q over the held-out states; CartPoleGreedyValue: mean true discounted return "
                              "of the greedy policy from the same states; NoisySNR: per-layer signal-to-noise; "
                              "PriorityStats: quantiles of priorities / their mean and of one batch's importance "
                              "weights; value_distribution: C51's probabilities over the support for 3 states"))
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (diagnostics: 0..2 unless given)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--budget", type=int, default=150_000, help="env steps per run")
    p.add_argument("--envs", type=int, default=8, help="CartPole copies in the vector env")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small nets)")
    p.add_argument("--diagnostics", action="store_true", help="record the diagnostic curves instead")
    p.add_argument("--diagnostics-budget", type=int, default=60_000)
    p.add_argument("--every", type=int, default=5_000, help="diagnostics: env steps between measurements")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.diagnostics:
        seeds = list(range(args.seeds if "--seeds" in sys.argv else 3))
        diagnose(seeds, args.diagnostics_budget, args.envs, args.every)
    else:
        measure(args.variants, list(range(args.seeds)), args.budget, args.envs, args.threads)


if __name__ == "__main__":
    main()
