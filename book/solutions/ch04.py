"""Solutions to the exercises of chapter 4.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import gymnasium as gym
import numpy as np

from rlbook.agents.cem import CEMAgent, CEMConfig
from rlbook.train import Trainer

# [elite_by_hand]
# Sorted: 1 2 3 5 6 8 8 8. The 50th percentile sits at position
# 0.5 * (8 - 1) = 3.5, halfway between 5 (position 3) and 6 (position 4).
my_boundary = 5.5
# The returns at or above 5.5: 8, 8, 8 and 6, at indices 1, 2, 5 and 7.
my_elite = [1, 2, 5, 7]
# [end elite_by_hand]

# [discounted_scores]
# The reward 1 of the last step arrives at t = T - 1 (t counts from 0),
# so a success after T steps scores 0.9 ** (T - 1).
score_6 = 0.9**5
score_10 = 0.9**9
# [end discounted_scores]


# [top_k]
def top_k_elite(returns, k):
    mask = np.zeros(len(returns), dtype=bool)
    # argsort sorts in increasing order: the k largest come last
    mask[np.argsort(returns)[len(returns) - k:]] = True
    return mask


def percentile_for_top_k(n, k):
    # position p / 100 * (n - 1) = n - k: the k-th largest return
    return 100.0 * (n - k) / (n - 1)
# [end top_k]


# The chapter's naive agent, on a shorter budget: the CartPole recipe
# on the slippery lake (the exercise "The boundary in the naive run").
_lake = gym.make_vec("FrozenLake-v1", num_envs=16, vectorization_mode="sync",
                     is_slippery=True)
naive = CEMAgent(_lake.single_observation_space, _lake.single_action_space,
                 CEMConfig.cartpole(one_hot=True, seed=0))
Trainer(naive, _lake, total_episodes=60 * 16, seed=0).run()

# [drowned_batches]
bounds = np.array([h["reward_bound"] for h in naive.history])
means = np.array([h["reward_mean"] for h in naive.history])
# boundary 0, yet the batch's success rate is above 0
drowned = np.mean((bounds == 0) & (means > 0))
# [end drowned_batches]
