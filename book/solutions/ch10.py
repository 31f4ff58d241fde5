"""Solutions to the exercises of chapter 10.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import numpy as np


# [nstep_advantage]
def my_advantages(rewards, values, terminated, gamma):
    advantages = np.zeros(len(rewards))
    ret = values[-1]  # bootstrap from the state after the rollout
    for t in reversed(range(len(rewards))):
        if terminated[t]:
            ret = 0.0  # the episode ended here: nothing follows
        ret = rewards[t] + gamma * ret
        advantages[t] = ret - values[t]
    return advantages
# [end nstep_advantage]


# [entropy]
def my_entropy(probs):
    p = np.asarray(probs, dtype=np.float64)
    p = p[p > 0]  # 0 log 0 counts as 0
    return float(-(p * np.log(p)).sum())
# [end entropy]
