"""Solutions to the exercises of chapter 2.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import gymnasium as gym
import numpy as np

# [robot_space]
arm = gym.spaces.Dict({
    "position": gym.spaces.Box(low=-1.0, high=1.0, shape=(2,)),
    "gripper": gym.spaces.Discrete(2),
})
# 2 for the position, plus a one-hot vector of length 2 for the gripper
arm_numbers = 4
# [end robot_space]


# [hand_written_policy]
def my_policy(obs):
    # push towards where the pole will soon be:
    # its angle plus some of its angular velocity
    return int(obs[2] + 0.5 * obs[3] > 0)
# [end hand_written_policy]


# [observation_wrapper]
class NoisyObservation(gym.ObservationWrapper):
    def __init__(self, env, sigma, seed=None):
        super().__init__(env)
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)

    def observation(self, obs):
        noise = self.rng.normal(0.0, self.sigma, size=obs.shape)
        return (obs + noise).astype(obs.dtype)
# [end observation_wrapper]
