"""Solutions to the exercises of chapter 7.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""

import torch


# [double_target]
def my_double_targets(reward, next_q_online, next_q_target, terminated,
                      discount):
    # the online network picks the next action ...
    best = next_q_online.argmax(dim=1, keepdim=True)
    # ... and the target network says what it is worth
    value = next_q_target.gather(1, best).squeeze(1)
    return reward + discount * (~terminated).float() * value
# [end double_target]


# [importance_weights]
def my_weights(priorities, drawn, beta):
    probability = priorities / priorities.sum()  # P(i) of every row
    n = len(priorities)
    w = (n * probability[drawn]) ** -beta
    return torch.as_tensor(w / w.max())  # the largest weight is 1
# [end importance_weights]


# [own_projection]
def my_projection(probs, reward, discount, support):
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (len(support) - 1)
    # where each atom of the next state's distribution lands, clipped
    atoms = reward[:, None] + discount[:, None] * support[None, :]
    atoms = atoms.clamp(v_min, v_max)
    b = (atoms - v_min) / delta  # fractional position on the support
    low, high = b.floor().long(), b.ceil().long()
    out = torch.zeros_like(probs)
    # split each atom between its neighbours; on a point, low == high and
    # b - low == 0, so all of it goes to `low`
    out.scatter_add_(1, low, probs * (1 - (b - low)))
    out.scatter_add_(1, high, probs * (b - low))
    return out
# [end own_projection]
