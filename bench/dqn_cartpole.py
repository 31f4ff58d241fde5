"""DQN on CartPole-v1 (chapters 6 and 7): plain DQN, the configuration that needs the fewest steps, and
Stable-Baselines3's DQN, under one solve rule, on the same machine. Writes ``results/06_dqn/dqn_cartpole.json``::

    python bench/dqn_cartpole.py --seeds 10                      # plain, best and sb3, seeds 0..9
    python bench/dqn_cartpole.py --seeds 10 --agents plain sb3   # some of them; the others' entries are kept

**The solve rule (headline): the greedy policy solves.** Every 2,000 environment steps, 20 greedy episodes on
fresh evaluation environments; solved when their mean is at least 475 and 100 more fresh greedy episodes confirm
it (mean at least 475). The evaluation time is not counted as training time. It is the same code for every
agent: :class:`rlbook.evaluate.GreedySolve` for ours, a Stable-Baselines3 callback that calls the same
:func:`rlbook.evaluate.evaluate` on SB3's deterministic policy for theirs, with the same evaluation seeds.

**Secondary: the training window.** The mean return of the last 100 *training* episodes reaches 475 (the old Gym
rule; it needs at least 47,500 steps by construction and measures exploration noise as much as learning). Every
run goes on after its greedy solve until this rule holds too, or its budget ends.

Units: environment steps (one step of one CartPole; a vector step of 8 copies is 8 steps) and seconds of
training (the training loop's wall clock from its first step, evaluation excluded, agent construction
excluded). A run that never solves is ``null`` in ``values`` and counts as its budget in the median.

The agents:

* ``plain`` -- ``DQNConfig.cartpole()``, chapter 6's plain DQN (1-step targets, no Double DQN), on
  Gymnasium's NumPy-vectorised CartPole (8 copies);
* ``best`` -- ``DQNConfig.cartpole_few_steps()``, the fewest-steps configuration of chapters 6-7 (see its
  docstring: fewer steps, but more gradient steps per step);
* ``sb3`` -- Stable-Baselines3's DQN with RL Zoo's tuned CartPole-v1 hyperparameters (``SB3_ZOO``) on one env,
  the zoo's epsilon schedule kept (16 % of its 50,000 steps).

All run with ``torch.set_num_threads(--threads)`` (1 by default: fastest for these small networks). Options named
after ``DQNConfig`` fields (``--lr 3e-4``, or ``--set lr=3e-4``) change both of our presets (not SB3's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rlbook.agents import PolicyAgent  # noqa: E402
from rlbook.agents.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlbook.evaluate import GreedySolve, evaluate  # noqa: E402
from rlbook.options import ConfigOptionError, add_config_options, config_from_args, config_overrides  # noqa: E402
from rlbook.results import results_path, summarize, write_results  # noqa: E402
from rlbook.train import Plugin, Trainer  # noqa: E402

RESULTS = "06_dqn/dqn_cartpole"
THRESHOLD, WINDOW = 475.0, 100
EVERY, EPISODES, CONFIRM = 2_000, 20, 100
SB3_ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
               target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
               exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
SB3_ZOO_TIMESTEPS = 50_000  # the zoo's n_timesteps; its exploration fraction refers to it
PREFIX = {"plain": "dqn_cartpole", "best": "best_cartpole", "sb3": "sb3_dqn_cartpole"}
NOT_OPTIONS = ("seed", "device")  # DQNConfig fields that the script sets itself
PRESETS = {"plain": DQNConfig.cartpole, "best": DQNConfig.cartpole_few_steps}


def our_config(which: str, overrides: dict | None = None) -> DQNConfig:
    """Our agent ``which``'s config: its preset, with the command line's ``overrides`` (``--lr``, ``--set``)."""
    return PRESETS[which](device="cpu", **(overrides or {}))


def eval_seed(seed: int) -> int:
    """Evaluation seeds, apart from every training seed: check k of run ``seed`` uses ``eval_seed(seed) + 1000 k``."""
    return 1_000_000 + 100_000 * seed


def cartpole_vec(n: int) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")


class TrainingWindow(Plugin):
    """The secondary rule: records when the mean return of the last 100 training episodes first reaches 475,
    and stops the run once both it and the greedy rule have been met."""

    def __init__(self, greedy: GreedySolve, measure: bool = True):
        self.greedy, self.measure = greedy, measure
        self.solved_at_step = self.solved_at_seconds = None

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        if self.solved_at_step is None and trainer.episodes >= WINDOW and trainer.mean_return(WINDOW) >= THRESHOLD:
            self.solved_at_step, self.solved_at_seconds = trainer.step, trainer.seconds()

    def after_step(self, trainer, transition, metrics):
        if self.greedy.solved_at_step is not None and (self.solved_at_step is not None or not self.measure):
            trainer.stop("both rules met" if self.measure else "greedy rule met (window rule not measured)")


def run_ours(which: str, seed: int, budget: int, envs: int, window_rule: bool = True,
             overrides: dict | None = None) -> dict:
    env = cartpole_vec(envs)
    agent = DQNAgent(env.single_observation_space, env.single_action_space,
                     our_config(which, overrides).replace(seed=seed))
    greedy = GreedySolve("CartPole-v1", THRESHOLD, every_steps=EVERY, episodes=EPISODES, confirm=CONFIRM,
                         seed=eval_seed(seed), stop=False)
    window = TrainingWindow(greedy, measure=window_rule)
    trainer = Trainer(agent, env, total_steps=budget, plugins=[greedy, window], seed=seed).run()
    return {"seed": seed, "greedy_steps": greedy.solved_at_step, "greedy_seconds": greedy.solved_at_seconds,
            "confirm_mean": greedy.confirm_mean, "window_steps": window.solved_at_step,
            "window_seconds": window.solved_at_seconds, "steps_run": trainer.step, "seconds_run": trainer.elapsed,
            "gradient_steps": agent.gradient_steps_done,
            "checks": [[int(s), round(t, 3), round(m, 1)] for s, t, m in greedy.history]}


def sb3_rules(seed: int, window_rule: bool = True):
    """The greedy rule and the training window as a Stable-Baselines3 callback, with the evaluation time taken
    off the clock: the same :func:`rlbook.evaluate.evaluate` on SB3's deterministic policy, with the same
    evaluation seeds as :class:`rlbook.evaluate.GreedySolve` gets for our agents (``bench/pg_cartpole.py`` uses
    it too)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Rules(BaseCallback):
        """The greedy rule and the training window on SB3, with the evaluation time taken off the clock."""

        def __init__(self):
            super().__init__()
            self.returns = []
            self.checks = []
            self.greedy_steps = self.greedy_seconds = self.confirm_mean = None
            self.window_steps = self.window_seconds = None
            self.paused = 0.0
            self.next_check = EVERY
            self.eval_count = 0
            self.venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 10)
            space = self.venv.single_observation_space
            self.policy = PolicyAgent(space, self.venv.single_action_space, vectorized=True,
                                      policy_fn=lambda obs: self.model.predict(obs, deterministic=True)[0])

        def seconds(self) -> float:
            return time.perf_counter() - self.start - self.paused

        def _on_training_start(self):
            self.start = time.perf_counter()

        def _mean(self, n: int) -> float:
            result = evaluate(self.policy, self.venv, n_episodes=n, seed=eval_seed(seed) + 1000 * self.eval_count)
            self.eval_count += 1
            return result.mean

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
                    if (self.window_steps is None and len(self.returns) >= WINDOW
                            and np.mean(self.returns[-WINDOW:]) >= THRESHOLD):
                        self.window_steps, self.window_seconds = int(self.num_timesteps), self.seconds()
            if self.num_timesteps >= self.next_check and self.greedy_steps is None:
                self.next_check += EVERY
                seconds = self.seconds()
                pause = time.perf_counter()
                mean = self._mean(EPISODES)
                self.checks.append([int(self.num_timesteps), round(seconds, 3), round(mean, 1)])
                if mean >= THRESHOLD:
                    confirm = self._mean(CONFIRM)
                    if confirm >= THRESHOLD:
                        self.greedy_steps, self.greedy_seconds, self.confirm_mean = (
                            int(self.num_timesteps), seconds, confirm)
                self.paused += time.perf_counter() - pause
            return not (self.greedy_steps is not None and (self.window_steps is not None or not window_rule))

    return Rules()


def run_sb3(seed: int, budget: int, window_rule: bool = True) -> dict:
    from stable_baselines3 import DQN

    zoo = dict(SB3_ZOO)
    # the zoo decays epsilon over 16 % of its 5e4 steps; keep that schedule under the larger budget
    zoo["exploration_fraction"] = SB3_ZOO["exploration_fraction"] * SB3_ZOO_TIMESTEPS / budget
    model = DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", verbose=0, **zoo)
    rules = sb3_rules(seed, window_rule)
    model.learn(total_timesteps=budget, callback=rules)
    rules.venv.close()
    return {"seed": seed, "greedy_steps": rules.greedy_steps, "greedy_seconds": rules.greedy_seconds,
            "confirm_mean": rules.confirm_mean, "window_steps": rules.window_steps,
            "window_seconds": rules.window_seconds, "steps_run": int(model.num_timesteps),
            "seconds_run": rules.seconds(), "gradient_steps": int(model._n_updates), "checks": rules.checks}


def summarize_runs(prefix: str, runs: list[dict], budget: int, window_rule: bool = True) -> dict:
    """The summary metrics of one agent's runs (the window rule's only when it was measured)."""
    longest = round(max(r["seconds_run"] for r in runs), 3)
    out = {
        f"{prefix}_greedy_steps_to_solve": summarize([r["greedy_steps"] for r in runs], budget, "env steps"),
        f"{prefix}_greedy_seconds_to_solve": summarize([r["greedy_seconds"] for r in runs], longest, "s"),
    }
    if window_rule:
        out[f"{prefix}_window_steps_to_solve"] = summarize([r["window_steps"] for r in runs], budget, "env steps")
        out[f"{prefix}_window_seconds_to_solve"] = summarize([r["window_seconds"] for r in runs], longest, "s")
    return out


def ratio(metrics: dict, numerator: str, denominator: str, what: str) -> dict | None:
    a, b = metrics.get(numerator), metrics.get(denominator)
    if not a or not b or not a["median"] or not b["median"]:
        return None
    return {"unit": "x", "value": a["median"] / b["median"], "definition": f"median {numerator} / median {denominator}",
            # an unsolved run counts as its budget: once half or more fail, the median (and the ratio) is a bound
            "lower_bound": a["runs"] - a["solved"] >= a["runs"] / 2, "what": what}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--agents", nargs="+", choices=("plain", "best", "sb3"), default=["plain", "best", "sb3"])
    p.add_argument("--budget", type=int, default=150_000, help="our step budget per run")
    p.add_argument("--sb3-budget", type=int, default=200_000, help="SB3's step budget per run")
    p.add_argument("--envs", type=int, default=8, help="CartPole copies in our vector env")
    p.add_argument("--threads", type=int, default=1, help="torch threads (all agents)")
    p.add_argument("--no-window", dest="window", action="store_false",
                   help="stop each run at its greedy solve (the window rule's row stays empty: not measured)")
    add_config_options(p, DQNConfig, exclude=NOT_OPTIONS, base=DQNConfig.cartpole(),
                       description="change both of our presets, plain's and best's (defaults shown: plain's)")
    args = p.parse_args()
    try:
        overrides = config_overrides(DQNConfig, args, exclude=NOT_OPTIONS)
    except ConfigOptionError as e:
        p.error(str(e))
    if overrides and not {"plain", "best"} & set(args.agents):
        p.error("the DQNConfig options change our agents (plain, best), and neither of them runs")
    for who in PRESETS:
        if who in args.agents:  # each preset that runs must accept the values
            try:
                config_from_args(DQNConfig, args, base=our_config(who), exclude=NOT_OPTIONS)
            except ConfigOptionError as e:
                p.error(f"{e} ({who}'s preset)")
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))

    metrics, runs_by_agent = {}, {}
    for who in args.agents:
        runs = []
        budget = args.sb3_budget if who == "sb3" else args.budget
        for seed in seeds:
            run = run_sb3(seed, budget, args.window) if who == "sb3" else run_ours(who, seed, budget, args.envs,
                                                                                   args.window, overrides)
            runs.append(run)
            print(f"{who} seed {seed}: greedy {run['greedy_steps']} steps {run['greedy_seconds']} s; window "
                  f"{run['window_steps']} steps; ran {run['steps_run']} steps in {run['seconds_run']:.1f} s",
                  flush=True)
        metrics.update(summarize_runs(PREFIX[who], runs, budget, args.window))
        runs_by_agent[who] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seeds": seeds,
                              "budget": budget, "runs": runs,
                              "config": (our_config(who, overrides).to_dict() if who != "sb3"
                                         else {**SB3_ZOO, "exploration_fraction_of": SB3_ZOO_TIMESTEPS}),
                              **({"overrides": overrides} if overrides and who != "sb3" else {}),
                              "envs": (f"CartPole-v1 x{args.envs} (gymnasium vector_entry_point)" if who != "sb3"
                                       else "CartPole-v1 x1 (SB3's DummyVecEnv)"),
                              "window_rule_measured": args.window}
    # merge with the other agents' entries as they are in the file now (another process may have written it)
    path = results_path(RESULTS)
    old = json.loads(path.read_text()) if path.exists() else {"metrics": {}, "provenance": {}}
    for who, entry in old["provenance"].get("runs", {}).items():
        if who in PREFIX and who not in args.agents:
            runs_by_agent[who] = entry
            metrics.update({k: v for k, v in old["metrics"].items() if k.startswith(PREFIX[who] + "_")})
    for key, (num, den, what) in {
            "ratio_sb3_over_plain_greedy_seconds": ("sb3_dqn_cartpole_greedy_seconds_to_solve",
                                                    "dqn_cartpole_greedy_seconds_to_solve", "SB3 DQN vs plain DQN"),
            "ratio_sb3_over_plain_greedy_steps": ("sb3_dqn_cartpole_greedy_steps_to_solve",
                                                  "dqn_cartpole_greedy_steps_to_solve", "SB3 DQN vs plain DQN"),
            "ratio_plain_over_best_greedy_seconds": ("dqn_cartpole_greedy_seconds_to_solve",
                                                     "best_cartpole_greedy_seconds_to_solve",
                                                     "plain DQN vs the fewest-steps configuration")}.items():
        entry = ratio(metrics, num, den, what)
        if entry is not None:
            metrics[key] = entry
    all_seeds = sorted({s for entry in runs_by_agent.values() for s in entry["seeds"]})
    out = write_results(
        RESULTS, metrics, all_seeds, torch_threads=args.threads, runs=runs_by_agent,
        extra_versions=("stable-baselines3",),
        solve_rule=(f"greedy: every {EVERY:,} env steps, {EPISODES} greedy episodes on fresh envs; solved when their "
                    f"mean >= {THRESHOLD:g} and {CONFIRM} more fresh greedy episodes confirm it; evaluation time "
                    "not counted"),
        secondary_rule=f"window: mean return of the last {WINDOW} training episodes >= {THRESHOLD:g}",
        units="env steps (one step of one CartPole); seconds of training, evaluation excluded")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
