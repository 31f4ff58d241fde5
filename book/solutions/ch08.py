"""Solutions to the exercises of chapter 8.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import numpy as np


# [trade_rewards]
def my_trade_rewards(closes, commission):
    rewards = []
    for t in range(len(closes)):
        if t == len(closes) - 1:  # Close: pay, and the position is gone
            rewards.append(-commission)
            continue
        change = 100 * (closes[t + 1] - closes[t]) / closes[t]
        paid = commission if t == 0 else 0.0  # Buy pays at step 0
        rewards.append(change - paid)
    return rewards
# [end trade_rewards]


# [max_drawdown]
def my_max_drawdown(rewards):
    equity = np.concatenate([[0.0], np.cumsum(rewards)])  # start at 0
    peak = np.maximum.accumulate(equity)
    return float(np.max(peak - equity))
# [end max_drawdown]
