"""Solutions to the exercises of chapter 6.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell. The blocks
[truncation_curves] and [target_curves] compare learning curves on
CartPole: they define functions, which the reader calls.
"""

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

import rlbook
from rlbook.agents.dqn import DQNAgent, DQNConfig
from rlbook.envs.atari import make_atari
from rlbook.plot import learning_curves
from rlbook.train import Trainer


# [truncation]
class TerminalAtTimeLimit(DQNAgent):
    def observe(self, transition):
        # store a cut by the time limit as if the episode had ended
        t = transition
        t.terminated = t.terminated | t.truncated
        super().observe(t)


# One: the last step of an episode cut by the time limit. Its next state
# is where the clock ran out. Every earlier step bootstraps from a state
# inside the episode, and its terminated flag is False either way.
wrong_per_truncated_episode = 1
# [end truncation]


# [truncation_curves]
CURVE_SEEDS = rlbook.budget(full=[0, 1, 2], quick=[0])
CURVE_STEPS = rlbook.budget(full=60_000, quick=2_000)


def cartpole_curves(agent_class, config, seeds=CURVE_SEEDS,
                    steps=CURVE_STEPS):
    """One run per seed on 8 CartPoles: (episode end steps, returns)."""
    runs = []
    for seed in seeds:
        env = gym.make_vec("CartPole-v1", num_envs=8,
                           vectorization_mode="vector_entry_point")
        agent = agent_class(env.single_observation_space,
                            env.single_action_space,
                            config.replace(seed=seed))
        trainer = Trainer(agent, env, total_steps=steps, seed=seed).run()
        runs.append((np.array(trainer.episode_end_steps),
                     np.array(trainer.episode_returns)))
    return runs


def compare(curves, title):
    """Median and interquartile band over seeds, one per label."""
    _, ax = plt.subplots(figsize=(7, 4))
    for label, runs in curves.items():
        learning_curves(runs, "environment steps",
                        "training episode return", ax=ax, label=label,
                        smooth=10, threshold=500,
                        threshold_label="time limit (500)")
    ax.set_title(title)
    return ax


def compare_truncation(seeds=CURVE_SEEDS, steps=CURVE_STEPS):
    preset = DQNConfig.cartpole()
    return compare({
        "time limit bootstraps (DQNAgent)":
            cartpole_curves(DQNAgent, preset, seeds, steps),
        "time limit as termination":
            cartpole_curves(TerminalAtTimeLimit, preset, seeds, steps),
    }, "CartPole-v1: the time limit as termination changes little")
# [end truncation_curves]


# [no_target_network]
# Update the target after every gradient step (interval 1), and update
# it by copying the online network whole (tau = 1), not by blending.
no_target = DQNConfig.cartpole(target_update_interval=1, tau=1.0)
# [end no_target_network]


# [target_curves]
def compare_target_networks(seeds=CURVE_SEEDS, steps=CURVE_STEPS):
    return compare({
        "target network (the preset)":
            cartpole_curves(DQNAgent, DQNConfig.cartpole(), seeds,
                            steps),
        "no target network":
            cartpole_curves(DQNAgent, no_target, seeds, steps),
    }, "CartPole-v1: without a target network the returns stay low")
# [end target_curves]


# [own_target]
def my_targets(reward, next_q, terminated, gamma):
    # the value of the best next action, row by row: max over actions
    best_next = next_q.max(dim=1).values
    # 1 where the episode goes on, 0 where it terminated
    goes_on = (~terminated).to(best_next.dtype)
    return reward + gamma * goes_on * best_next
# [end own_target]


# [one_frame]
pong_one = make_atari("Pong", num_envs=1, vectorized="sync",
                      frame_stack=1)
# one observation, without the vector's num_envs axis: (1, 84, 84)
single_frame_shape = pong_one.single_observation_space.shape
pong_one.close()
# One frame holds one position of the ball: not where it is going.
velocity_visible = False
# [end one_frame]
