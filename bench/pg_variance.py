"""Chapters 9-10: how noisy is the policy gradient, and how much do baselines help? Writes
``results/10_a2c/gradient_variance.json``::

    python bench/pg_variance.py                     # seeds 0..4, checkpoints at 0, 5k, 10k and 20k env steps

For each seed, ``A2CConfig.cartpole()`` trains on 8 CartPole-v1 copies; at each checkpoint (training paused)
the current policy plays fresh episodes until at least ``--steps`` steps are collected, and every step ``t``
gets four weights for its term ``-log pi(a_t | s_t) * w_t`` of the policy-gradient loss:

- ``returns``: the discounted return-to-go ``G_t`` (REINFORCE);
- ``mean_baseline``: ``G_t`` minus the mean ``G`` of the batch (chapter 9's constant baseline);
- ``value_baseline``: ``G_t - V(s_t)`` with the critic trained alongside (chapter 10's learned baseline);
- ``a2c_advantage``: the 5-step return bootstrapped from ``V`` minus ``V(s_t)`` (a fixed 5-step advantage, close
  to what A2C uses: the preset's GAE 0.95 on rollouts cut every 5 steps).

For each weighting, the per-step gradients (``rlbook.agents.pg.per_sample_gradients``) give the total variance
(the trace of their covariance) and the squared norm of their mean (``gradient_variance``); the file holds
them and the ratio of the REINFORCE variance to each.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dqn_cartpole import cartpole_vec  # noqa: E402

from rlbook.agents.a2c import A2CAgent, A2CConfig  # noqa: E402
from rlbook.agents.pg import per_sample_gradients  # noqa: E402
from rlbook.results import summarize, write_results  # noqa: E402
from rlbook.rollout import returns_to_go  # noqa: E402
from rlbook.train import Plugin, Trainer  # noqa: E402

WEIGHTINGS = ("returns", "mean_baseline", "value_baseline", "a2c_advantage")
N_STEP = 5


class PolicyLogits(nn.Module):
    """The actor of an :class:`~rlbook.nets.ActorCritic` as a module from observations to logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def play_episodes(agent: A2CAgent, min_steps: int, seed: int) -> list[dict]:
    """Whole episodes of the sampling policy on a fresh CartPole-v1, until ``min_steps`` steps."""
    env = gym.make("CartPole-v1")
    episodes, total, k = [], 0, 0
    while total < min_steps:
        obs, _ = env.reset(seed=seed + k)
        k += 1
        states, actions, rewards = [], [], []
        while True:
            action = int(agent.act_batch(obs[None])[0])
            states.append(obs)
            actions.append(action)
            obs, r, terminated, truncated, _ = env.step(action)
            rewards.append(float(r))
            if terminated or truncated:
                break
        episodes.append({"obs": np.array(states, np.float32), "actions": np.array(actions), "rewards": rewards,
                         "final_obs": obs.astype(np.float32), "terminated": terminated})
        total += len(rewards)
    env.close()
    return episodes


def weights_of(agent: A2CAgent, episodes: list[dict], gamma: float) -> dict[str, np.ndarray]:
    g_all, v_all, adv_all = [], [], []
    for e in episodes:
        g = returns_to_go(e["rewards"], gamma)
        v = agent.values(np.concatenate([e["obs"], e["final_obs"][None]]))
        v[-1] = 0.0 if e["terminated"] else v[-1]  # never bootstrap through termination
        r, steps = np.asarray(e["rewards"]), len(e["rewards"])
        adv = np.empty(steps)
        for t in range(steps):
            m = min(N_STEP, steps - t)
            adv[t] = sum(gamma ** k * r[t + k] for k in range(m)) + gamma ** m * v[t + m] - v[t]
        g_all.append(g)
        v_all.append(v[:-1])
        adv_all.append(adv)
    g, v = np.concatenate(g_all), np.concatenate(v_all)
    return {"returns": g, "mean_baseline": g - g.mean(), "value_baseline": g - v,
            "a2c_advantage": np.concatenate(adv_all)}


def variance_in_chunks(policy: nn.Module, obs: torch.Tensor, actions: torch.Tensor, w: torch.Tensor,
                       chunk: int = 1_000) -> dict[str, float]:
    """``gradient_variance`` of all rows without holding every per-step gradient at once."""
    total, total_sq, n = None, 0.0, 0
    for start in range(0, len(obs), chunk):
        g = per_sample_gradients(policy, obs[start:start + chunk], actions[start:start + chunk],
                                 w[start:start + chunk]).double()
        total = g.sum(0) if total is None else total + g.sum(0)
        total_sq += float((g ** 2).sum())
        n += len(g)
    mean = total / n
    signal = float((mean ** 2).sum())
    variance = total_sq / n - signal
    return {"variance": variance, "mean_sq_norm": signal, "snr": signal / variance if variance > 0 else math.inf}


class Measure(Plugin):
    def __init__(self, marks: list[int], min_steps: int, seed: int):
        self.marks, self.min_steps, self.seed, self.rows = sorted(marks), min_steps, seed, []

    def measure(self, agent: A2CAgent, step: int) -> None:
        episodes = play_episodes(agent, self.min_steps, seed=10_000 * (self.seed + 1) + step)
        weights = weights_of(agent, episodes, agent.config.gamma)
        obs = torch.as_tensor(np.concatenate([e["obs"] for e in episodes]))
        actions = torch.as_tensor(np.concatenate([e["actions"] for e in episodes]))
        policy = PolicyLogits(agent.net)
        row = {"step": step, "episodes": len(episodes), "steps": len(obs),
               "mean_episode_length": float(np.mean([len(e["rewards"]) for e in episodes]))}
        for name in WEIGHTINGS:
            w = torch.as_tensor(weights[name], dtype=torch.float32)
            row[name] = {**variance_in_chunks(policy, obs, actions, w), "weight_std": float(w.std()),
                         "weight_mean": float(w.mean())}
        self.rows.append(row)
        print(f"seed {self.seed} step {step:>6}: episodes {len(episodes)} (mean length "
              f"{row['mean_episode_length']:.0f}); variance " + ", ".join(
                  f"{n} {row[n]['variance']:.3g}" for n in WEIGHTINGS), flush=True)

    def before_training(self, trainer) -> None:
        if self.marks and self.marks[0] == 0:
            self.measure(trainer.agent, 0)

    def after_step(self, trainer, transition, metrics) -> None:
        for mark in self.marks:
            if mark > 0 and trainer.step >= mark and not any(r["step"] == mark for r in self.rows):
                with trainer.pause_clock():
                    self.measure(trainer.agent, mark)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--marks", type=int, nargs="+", default=[0, 5_000, 10_000, 20_000],
                   help="env steps of training at which to measure")
    p.add_argument("--steps", type=int, default=4_000, help="steps of play per measurement (whole episodes)")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    runs = []
    for seed in seeds:
        env = cartpole_vec(8)
        agent = A2CAgent(env.single_observation_space, env.single_action_space,
                         A2CConfig.cartpole(seed=seed, device="cpu"))
        measure = Measure(args.marks, args.steps, seed)
        Trainer(agent, env, total_steps=max(args.marks) + 1, plugins=[measure], seed=seed).run()
        runs.append({"seed": seed, "rows": measure.rows})
    metrics = {}
    for mark in args.marks:
        rows = [r for run in runs for r in run["rows"] if r["step"] == mark]
        for name in WEIGHTINGS:
            metrics[f"pg_variance_{name}_at_{mark}"] = summarize([r[name]["variance"] for r in rows],
                                                                 unit="total variance of per-step gradients")
            if name != "returns":
                metrics[f"pg_variance_drop_{name}_at_{mark}"] = summarize(
                    [r["returns"]["variance"] / r[name]["variance"] for r in rows],
                    unit="variance with returns / variance with this weighting")
        metrics[f"pg_variance_episode_length_at_{mark}"] = summarize(
            [r["mean_episode_length"] for r in rows], unit="steps")
    path = write_results("10_a2c/gradient_variance", metrics, seeds, marks=args.marks,
                         steps_per_measurement=args.steps, n_step=N_STEP, config=A2CConfig.cartpole().to_dict(),
                         envs="CartPole-v1 x8 (gymnasium vector_entry_point) for training; one CartPole-v1 "
                              "for the measured episodes", runs=runs)
    print("wrote", path)


if __name__ == "__main__":
    main()
