"""Solutions to the exercises of chapter 9.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import numpy as np


# [returns_to_go]
def my_returns_to_go(rewards, gamma):
    returns = np.zeros(len(rewards))
    g = 0.0
    for t in reversed(range(len(rewards))):  # G_t = r_t + gamma G_t+1
        g = rewards[t] + gamma * g
        returns[t] = g
    return returns
# [end returns_to_go]


# [score_function]
def my_score(logits, action):
    z = np.asarray(logits, dtype=np.float64)
    pi = np.exp(z - z.max())  # subtract the max: no overflow
    pi /= pi.sum()
    onehot = np.zeros_like(pi)
    onehot[action] = 1.0
    return onehot - pi
# [end score_function]
