"""Solutions to the exercises of chapter 5.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import gymnasium as gym
import numpy as np

from rlbook.mdp import FiniteMDP, success_probability, value_iteration
from rlbook.tabular import ModelBasedAgent
from rlbook.train import Trainer

# The chapter's 4x4 lake, its MDP and its goal.
env4 = gym.make("FrozenLake-v1")
mdp4 = FiniteMDP.from_gym(env4, gamma=0.99)
goal4 = env4.unwrapped.desc.flatten() == b"G"

# [hand_made_policy]
# Right along the top row (states 0 to 3), down everywhere else.
my_policy = np.where(np.arange(16) < 4, 2, 1)
my_rate = success_probability(mdp4, my_policy, goal4, horizon=100)
# [end hand_made_policy]

# [non_slippery_lake]
ice = gym.make("FrozenLake-v1", is_slippery=False)
mdp_ice = FiniteMDP.from_gym(ice, gamma=0.9)
solved = value_iteration(mdp_ice)
rate_ice = success_probability(mdp_ice, solved.policy, goal4,
                               horizon=100)
# The reward 1 comes with the last move:
# V(start) = 0.9 ** (moves - 1).
path_length = round(np.log(solved.V[0]) / np.log(0.9)) + 1
# [end non_slippery_lake]


# [more_counts]
def largest_error(steps):
    # A fresh agent plays `steps` random steps on 16 lakes; it solves its
    # model only when asked (steps_per_iteration is never reached).
    envs = gym.make_vec("FrozenLake-v1", num_envs=16,
                        vectorization_mode="sync")
    agent = ModelBasedAgent(envs.single_observation_space,
                            envs.single_action_space, gamma=0.9,
                            steps_per_iteration=10**9, seed=0)
    Trainer(agent, envs, total_steps=steps, seed=0).run()
    agent.solve()
    exact = value_iteration(mdp4.with_gamma(0.9)).V
    return np.abs(agent.V - exact).max()


err_small = largest_error(2_000)
err_big = largest_error(20_000)
# [end more_counts]
