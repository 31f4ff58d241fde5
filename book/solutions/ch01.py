"""Solutions to the exercises of chapter 1.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import numpy as np

from rlbook.envs.toy import three_state_mdp
from rlbook.mdp import q_iteration

# [values_by_hand]
# Sunny: V_s = 1 + 0.5 (0.8 V_s + 0.2 V_r).
# Rainy: V_r = 0 + 0.5 (0.1 V_s + 0.9 V_r).
# The rainy equation gives 0.55 V_r = 0.05 V_s, so V_r = V_s / 11.
# Put that into the sunny one: V_s (1 - 0.4 - 0.1 / 11) = 1,
# so V_s = 11 / 6.5.
V_hand = np.array([11 / 6.5, 1 / 6.5])
# [end values_by_hand]

# [fire_threshold]
# Bisection: keep lo where a0 is best in s1 and hi where a2 is,
# and halve the gap.
lo, hi = 0.90, 0.95
while hi - lo > 1e-6:
    mid = (lo + hi) / 2
    if q_iteration(three_state_mdp(mid), tol=1e-10).policy[1] == 2:
        hi = mid
    else:
        lo = mid
gamma_flip = round(hi, 3)
# [end fire_threshold]

# [step_size]
# Start with a larger step and let it shrink ten times more slowly.
my_alpha = 0.1
my_alpha_decay = 0.0005
# [end step_size]
