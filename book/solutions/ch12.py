"""Solutions to the exercises of chapter 12.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""


# [epsilon]
def my_epsilon(step):
    fraction = min(step / 10_000, 1.0)  # how far along the decay
    return 1.0 + fraction * (0.1 - 1.0)
# [end epsilon]


# [target]
def my_target(reward, next_q, terminated, truncated, gamma):
    # truncated: cut by a time limit, the next state still has a value
    if terminated:
        return reward
    return reward + gamma * next_q
# [end target]
