"""DQN on CartPole-v1 (chapter 6): our agent against Stable-Baselines3's DQN, same seeds, same solve rule.

Writes ``results/06_dqn/dqn_cartpole.json``::

    python bench/dqn_cartpole.py --seeds 10              # both, one after the other per seed
    python bench/dqn_cartpole.py --seeds 10 --only ours  # or sb3; the other's entries in the file are kept

Solve rule (both agents): the mean return of the last 100 *training* episodes reaches 475 (our
``StopOnReward(475, 100)``; an SB3 callback applies the same rule to SB3's episodes), confirmed afterwards by
100 greedy episodes whose mean must also reach 475 (not timed). A run counts as solved only if both hold.
Seconds are the wall clock of the training loop from its first step (agent construction excluded).

Ours: ``DQNConfig.cartpole()`` on Gymnasium's NumPy-vectorised CartPole (``--envs`` copies, next-step
autoreset). SB3: RL Zoo's tuned CartPole-v1 hyperparameters (lr 2.3e-3, batch 64, buffer 100k, learning
starts 1000, gamma 0.99, target update every 10 steps, train_freq 256, gradient_steps 128, exploration
fraction 0.16 of 5e4 steps, final epsilon 0.04, net [256, 256]) on one env, with a larger step budget so it
can reach the same 100-episode rule. Both run with ``torch.set_num_threads(--threads)``.

A failed run is ``null`` in ``values`` and counts as its budget in the median (steps: the step budget;
seconds: the longest training time of that agent's runs).
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

from rlbook.agents.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlbook.evaluate import evaluate  # noqa: E402
from rlbook.results import repo_root, summarize, write_results  # noqa: E402
from rlbook.train import Plugin, StopOnReward, Trainer  # noqa: E402

RESULTS = "06_dqn/dqn_cartpole"
THRESHOLD, WINDOW = 475.0, 100
SB3_ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
               target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
               exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
SB3_ZOO_TIMESTEPS = 50_000  # the zoo's n_timesteps; the exploration fraction refers to it


def cartpole_vec(n: int) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")


def downsample(steps: list[int], returns: list[float], points: int = 150) -> dict[str, list]:
    """Episode end steps and returns, thinned to about ``points`` episodes (the last one always kept)."""
    n = len(steps)
    keep = np.unique(np.r_[np.linspace(0, n - 1, min(n, points)).round().astype(int), n - 1]) if n else []
    return {"steps": [int(steps[i]) for i in keep], "returns": [float(returns[i]) for i in keep],
            "episodes": n}


def steps_before_window(end_steps: list[int], solved: bool) -> int | None:
    """Steps taken when the episode just before the 100 solving episodes ended (0 if there was none): the
    old Gym leaderboard's way of counting ("episodes before solve"), here in environment steps."""
    if not solved:
        return None
    before = len(end_steps) - WINDOW - 1
    return int(end_steps[before]) if before >= 0 else 0


def confirm(policy_agent, seed: int) -> float:
    """Mean return of 100 greedy episodes on fresh CartPole envs."""
    return evaluate(policy_agent, cartpole_vec(10), n_episodes=100, seed=10_000 + seed).mean


class WallClockLimit(Plugin):
    """Stop a run after ``seconds`` of training (an unsolved run then counts as a failure)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds

    def after_step(self, trainer, transition, metrics):
        if self.seconds is not None and time.perf_counter() - trainer.start_time > self.seconds:
            trainer.stop(f"wall-clock limit of {self.seconds:g} s")


def run_ours(seed: int, budget: int, envs: int, max_seconds: float | None) -> dict:
    env = cartpole_vec(envs)
    config = DQNConfig.cartpole(seed=seed, device="cpu")
    agent = DQNAgent(env.single_observation_space, env.single_action_space, config)
    stop = StopOnReward(THRESHOLD, WINDOW)
    trainer = Trainer(agent, env, total_steps=budget, plugins=[stop, WallClockLimit(max_seconds)], seed=seed).run()
    greedy = confirm(agent, seed)
    solved = stop.solved_at_step is not None and greedy >= THRESHOLD
    return {"seed": seed, "solved": solved, "steps": stop.solved_at_step if solved else None,
            "steps_before_window": steps_before_window(trainer.episode_end_steps, solved),
            "seconds": stop.solved_at_seconds if solved else None, "elapsed": trainer.elapsed,
            "steps_run": trainer.step,
            "greedy_mean_return": greedy, "gradient_steps": agent.gradient_steps_done,
            "curve": downsample(trainer.episode_end_steps, trainer.episode_returns)}


class SB3Greedy:
    """Our Agent-like view of an SB3 model for :func:`rlbook.evaluate.evaluate` (deterministic actions)."""

    def __init__(self, model):
        self.model = model

    def act_batch(self, obs, explore=False):
        return self.model.predict(obs, deterministic=not explore)[0]


def run_sb3(seed: int, budget: int, max_seconds: float | None) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class SolveRule(BaseCallback):
        """Our StopOnReward rule on SB3's training episodes (from the Monitor's ``episode`` infos)."""

        def __init__(self):
            super().__init__()
            self.returns, self.end_steps = [], []
            self.solved_at_step = self.solved_at_seconds = None

        def _on_training_start(self):
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            if max_seconds is not None and time.perf_counter() - self.start > max_seconds:
                return False
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
                    self.end_steps.append(int(self.num_timesteps))
                    if len(self.returns) >= WINDOW and np.mean(self.returns[-WINDOW:]) >= THRESHOLD:
                        self.solved_at_step = int(self.num_timesteps)
                        self.solved_at_seconds = time.perf_counter() - self.start
                        return False
            return True

    zoo = dict(SB3_ZOO)
    # the zoo decays epsilon over 16 % of its 5e4 steps; keep that schedule under the larger budget
    zoo["exploration_fraction"] = SB3_ZOO["exploration_fraction"] * SB3_ZOO_TIMESTEPS / budget
    model = DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", verbose=0, **zoo)
    rule = SolveRule()
    start = time.perf_counter()
    model.learn(total_timesteps=budget, callback=rule)
    elapsed = time.perf_counter() - rule.start if hasattr(rule, "start") else time.perf_counter() - start
    greedy = confirm(SB3Greedy(model), seed)
    solved = rule.solved_at_step is not None and greedy >= THRESHOLD
    return {"seed": seed, "solved": solved, "steps": rule.solved_at_step if solved else None,
            "steps_before_window": steps_before_window(rule.end_steps, solved),
            "seconds": rule.solved_at_seconds if solved else None, "elapsed": elapsed,
            "steps_run": int(model.num_timesteps),
            "greedy_mean_return": greedy, "gradient_steps": int(model._n_updates),
            "curve": downsample(rule.end_steps, rule.returns)}


def summarize_runs(prefix: str, runs: list[dict], budget: int) -> dict:
    longest = max(r["elapsed"] for r in runs)
    return {
        f"{prefix}_seconds_to_solve": summarize([r["seconds"] for r in runs], budget=round(longest, 3), unit="s"),
        f"{prefix}_steps_to_solve": summarize([r["steps"] for r in runs], budget=budget, unit="steps"),
        f"{prefix}_steps_before_window": summarize([r["steps_before_window"] for r in runs], budget=budget,
                                                   unit="steps"),
        f"{prefix}_greedy_mean_return": summarize([r["greedy_mean_return"] for r in runs], unit="return"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--only", choices=("ours", "sb3"), default=None, help="run one agent, keep the other's results")
    p.add_argument("--budget", type=int, default=150_000, help="our step budget per run")
    p.add_argument("--sb3-budget", type=int, default=200_000, help="SB3's step budget per run")
    p.add_argument("--envs", type=int, default=8, help="CartPole copies in our vector env")
    p.add_argument("--threads", type=int, default=1, help="torch threads (both agents)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock cap per training run, both agents (an unsolved run is a failure)")
    p.add_argument("--sb3-max-minutes", type=float, default=None, help="SB3's own cap (default: --max-minutes)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    sb3_minutes = args.max_minutes if args.sb3_max_minutes is None else args.sb3_max_minutes
    sb3_max_seconds = None if sb3_minutes is None else 60 * sb3_minutes

    metrics, details = {}, {}
    for who in ("ours", "sb3"):
        if args.only not in (None, who):
            continue
        runs = []
        for seed in seeds:
            run = (run_ours(seed, args.budget, args.envs, max_seconds) if who == "ours"
                   else run_sb3(seed, args.sb3_budget, sb3_max_seconds))
            runs.append(run)
            print(f"{who} seed {seed}: solved={run['solved']} steps={run['steps']} seconds={run['seconds']} "
                  f"greedy={run['greedy_mean_return']:.1f} elapsed={run['elapsed']:.1f}", flush=True)
        budget = args.budget if who == "ours" else args.sb3_budget
        metrics.update(summarize_runs("dqn_cartpole" if who == "ours" else "sb3_dqn_cartpole", runs, budget))
        details[who] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seeds": seeds,
                        "budget": budget, "runs": runs,
                        "max_minutes": args.max_minutes if who == "ours" else sb3_minutes,
                        "config": (DQNConfig.cartpole(device="cpu").to_dict() if who == "ours"
                                   else {**SB3_ZOO, "exploration_fraction_of": SB3_ZOO_TIMESTEPS})}
        if who == "ours":
            details[who]["envs"] = f"CartPole-v1 x{args.envs} (gymnasium vector_entry_point)"

    # With --only, keep the other agent's entries from the file as it is now (read at the end, so two
    # processes, one per agent, can run side by side).
    path = repo_root() / "results" / f"{RESULTS}.json"
    if args.only is not None and path.exists():
        old = json.loads(path.read_text())
        other = "sb3_" if args.only == "ours" else "dqn_"
        metrics.update({k: v for k, v in old["metrics"].items() if k.startswith(other)})
        for who, entry in old["provenance"].get("runs", {}).items():
            details.setdefault(who, entry)
        seeds = sorted(set(seeds) | set(old["provenance"].get("seeds", [])))
    ours = metrics.get("dqn_cartpole_seconds_to_solve")
    theirs = metrics.get("sb3_dqn_cartpole_seconds_to_solve")
    if ours and theirs and ours["median"] and theirs["median"]:
        # An unsolved SB3 run counts as its cap, so once half or more of them fail the ratio is a lower bound.
        censored = theirs["runs"] - theirs["solved"] >= theirs["runs"] / 2
        metrics["ratio"] = {"unit": "x", "value": theirs["median"] / ours["median"], "lower_bound": censored,
                            "definition": "median sb3_dqn_cartpole_seconds_to_solve / median "
                                          "dqn_cartpole_seconds_to_solve (failures counted as budget)"}
    out = write_results(RESULTS, metrics, seeds, solved_when=f"mean of the last {WINDOW} training episodes >= "
                        f"{THRESHOLD:g}, confirmed by 100 greedy episodes with mean >= {THRESHOLD:g}",
                        torch_threads=args.threads, runs=details, extra_versions=("stable-baselines3",))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
