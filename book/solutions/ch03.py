"""Solutions to the exercises of chapter 3.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import torch
from torch import nn

from rlbook.exercises import ch03

# [gradient_by_hand]
# On paper: g'(x) = 3 x^2 + 2, so g'(2) = 3 * 4 + 2.
g_prime_by_hand = 3 * 2.0**2 + 2
x = torch.tensor(2.0, requires_grad=True)
g = x**3 + 2 * x
g.backward()
g_prime_autograd = x.grad.item()
# [end gradient_by_hand]


# [pairwise_distances]
def pairwise_sq_dist(a, b):
    # (n, 1, d) - (1, m, d) broadcasts to (n, m, d):
    # every difference a_i - b_j
    return ((a.unsqueeze(1) - b.unsqueeze(0)) ** 2).sum(dim=-1)
# [end pairwise_distances]


# [linear_regression]
xs, ys = ch03.line_data()
torch.manual_seed(0)
line = nn.Linear(1, 1)
loss_fn = nn.MSELoss()
optimizer = torch.optim.SGD(line.parameters(), lr=0.1)
for _ in range(300):
    loss = loss_fn(line(xs), ys)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
# [end linear_regression]
