"""Checks for the exercises of chapter 7 (the DQN extensions).

Usage in the chapter: ``from rlbook.exercises import ch07``, then
``ch07.double_target.check(my_double_targets)``. Each check below is an
:class:`~rlbook.exercises.Exercise`: its ``check`` method prints or raises, and the function documented here
returns the message of a correct answer.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlbook.agents.dqn import DQNAgent, DQNConfig, categorical_projection
from rlbook.exercises import WrongAnswer, attempted, exercise
from rlbook.replay import PrioritizedReplayBuffer

#: The batches of "Double DQN by hand", as (batch, actions, gamma ** m, which rows terminated).
DOUBLE_CASES = ((8, 3, 0.9, "some"), (6, 4, 0.99**3, "no"), (5, 2, 0.5, "all"), (12, 6, 0.99, "some"))

#: Replay sizes, alphas and betas of "Importance weights".
WEIGHT_CASES = ((50, 0.6, 0.4), (200, 0.6, 1.0), (64, 1.0, 0.7), (30, 0.0, 0.5))
#: Rows drawn per batch in "Importance weights".
WEIGHT_BATCH = 16

#: The supports of "Project it yourself", as (atoms, v_min, v_max).
PROJECTION_SUPPORTS = ((51, -10.0, 10.0), (11, 0.0, 100.0), (5, -2.0, 2.0))


def _tensor(value: Any, name: str, shape: tuple[int, ...], case: str) -> torch.Tensor:
    """The reader's result as a float64 tensor of ``shape`` (NumPy arrays accepted), or a WrongAnswer."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise WrongAnswer(f"{case}, {name} returned a {type(value).__name__}; return a tensor (or array) of "
                          f"shape {shape}.")
    if tuple(value.shape) != shape:
        raise WrongAnswer(f"{case}, {name} returned shape {tuple(value.shape)}, not {shape}.")
    return value.detach().to(torch.float64)


# ---------------------------------------------------------------------------- Double DQN by hand
def _double_batch(size: int, actions: int, discount: float, which: str, seed: int) -> tuple[DQNAgent, dict]:
    """A Double DQN agent whose online and target networks differ, and a random batch for it."""
    box = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
    agent = DQNAgent(box, gym.spaces.Discrete(actions),
                     DQNConfig(hidden=(16,), double=True, seed=seed, device="cpu"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # as after some learning: the online network has moved away from the target
        for p in agent.q_net.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    terminated = {"all": torch.ones(size, dtype=torch.bool), "no": torch.zeros(size, dtype=torch.bool),
                  "some": torch.arange(size) % 3 == 1}[which]
    return agent, {"reward": torch.randn(size, generator=gen), "next_obs": torch.randn(size, 4, generator=gen),
                   "terminated": terminated, "discount": torch.full((size,), discount)}


@exercise("Double DQN by hand", fill=("my_double_targets",))
def double_target(my_double_targets: Any) -> str:
    """Check ``my_double_targets(reward, next_q_online, next_q_target, terminated, discount)``: Double DQN's
    targets ``(batch,)``, where the online network's values of the next state pick the action and the target
    network's values score it; compared with :meth:`~rlbook.agents.dqn.DQNAgent.compute_targets` of an agent
    with ``double=True``."""
    for seed, (size, actions, discount, which) in enumerate(DOUBLE_CASES):
        agent, batch = _double_batch(size, actions, discount, which, seed)
        expected = agent.compute_targets(batch).double()
        with torch.no_grad():
            online, target = agent.q_net(batch["next_obs"]), agent.target_net(batch["next_obs"])
        reward, terminated, disc = batch["reward"], batch["terminated"], batch["discount"]
        case = f"for a batch of {size} rows, {actions} actions, discount {discount:.4g}, {which} rows terminated"
        mine = _tensor(attempted(my_double_targets(reward.clone(), online.clone(), target.clone(),
                                                   terminated.clone(), disc.clone())),
                       "my_double_targets", (size,), case)
        if torch.allclose(mine, expected, rtol=1e-5, atol=1e-5):
            continue
        keep = (~terminated).double()
        guesses = {
            "that is plain DQN's target (the target network both picks and scores the next action); let "
            "next_q_online pick it with argmax, then read its value from next_q_target":
                reward + disc * keep * target.max(dim=1).values,
            "the online network scores the action as well as picking it; read the value of the picked action "
            "from next_q_target (gather)": reward + disc * keep * online.max(dim=1).values,
            "the roles are swapped: next_q_online picks the action (argmax), next_q_target scores it":
                reward + disc * keep * online.gather(1, target.argmax(dim=1, keepdim=True)).squeeze(1),
            "terminated rows still bootstrap; a terminated episode has no next state, so multiply the "
            "bootstrap by (~terminated)": reward + disc * target.gather(1, online.argmax(dim=1,
                                                                                     keepdim=True)).squeeze(1),
        }
        hint = next((h for h, g in guesses.items() if torch.allclose(mine, g.double(), rtol=1e-5, atol=1e-5)),
                    "compare row by row with reward + discount * (~terminated) * next_q_target[row, a*], where "
                    "a* = argmax over next_q_online[row]")
        bad = int((~torch.isclose(mine, expected, rtol=1e-5, atol=1e-5)).nonzero()[0])
        raise WrongAnswer(f"{case}, row {bad} should be {float(expected[bad]):.4g}, not {float(mine[bad]):.4g}: "
                          f"{hint}.")
    return (f"my_double_targets agrees with DQNAgent.compute_targets (double=True) on {len(DOUBLE_CASES)} "
            "batches, with some, all and no terminated rows.")


# ---------------------------------------------------------------------------- Importance weights
def weights_case(size: int, alpha: float, beta: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A prioritized buffer of ``size`` rows with random TD errors: the priorities of its rows ``(size,)``, the
    positions of one drawn batch in that array ``(WEIGHT_BATCH,)``, and the buffer's importance weights for
    them."""
    rng = np.random.default_rng(seed)
    buffer = PrioritizedReplayBuffer(size + 1, (2,), num_envs=1, alpha=alpha)
    obs = rng.random((1, 2), np.float32)
    for _ in range(size):  # one environment, one row at a time, no episode ends
        next_obs = rng.random((1, 2), np.float32)
        buffer.add(obs, np.zeros(1), np.ones(1), next_obs, np.zeros(1, bool), np.zeros(1, bool),
                   np.zeros(1, np.int64))
        obs = next_obs
    slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment * buffer.num_envs)))
    buffer.update_priorities(slots, rng.standard_exponential(len(slots)) * rng.choice([0.1, 1, 10], len(slots)))
    batch = buffer.sample(WEIGHT_BATCH, rng, beta=beta)
    return buffer.tree[slots], np.searchsorted(slots, batch.indices), batch.weights


@exercise("Importance weights", fill=("my_weights",))
def importance_weights(my_weights: Any) -> str:
    """Check ``my_weights(priorities, drawn, beta)``: the importance-sampling weights ``(len(drawn),)`` of
    the rows at positions ``drawn`` of a prioritized replay buffer whose rows have ``priorities`` (already
    raised to ``alpha``), normalised by the largest weight of the batch; compared with
    :meth:`~rlbook.replay.PrioritizedReplayBuffer.sample`."""
    for seed, (size, alpha, beta) in enumerate(WEIGHT_CASES):
        priorities, drawn, expected = weights_case(size, alpha, beta, seed)
        case = f"for {size} rows, alpha {alpha:g} and beta {beta:g}"
        mine = _tensor(attempted(my_weights(priorities.copy(), drawn.copy(), beta)), "my_weights",
                       (WEIGHT_BATCH,), case).numpy()
        if np.allclose(mine, expected, rtol=1e-4, atol=1e-6):
            continue
        p = priorities / priorities.sum()
        raw = (size * p[drawn]) ** -beta
        guesses = {
            "divide by the largest weight of the batch, so that no weight exceeds 1": raw,
            "the weight falls as the probability rises: (N * P(i)) ** -beta, with the minus sign":
                (size * p[drawn]) ** beta / ((size * p[drawn]) ** beta).max(),
            "normalise by the largest weight of the drawn batch, not of every row in the buffer":
                raw / ((size * p) ** -beta).max(),
        }
        hint = next((h for h, g in guesses.items() if np.allclose(mine, g, rtol=1e-4, atol=1e-6)),
                    "w_i = (N * P(i)) ** -beta with P(i) = p_i / sum_k p_k, then w / max(w) over the batch")
        raise WrongAnswer(f"{case}, the weights should be {[round(float(x), 4) for x in expected[:3]]}..., not "
                          f"{[round(float(x), 4) for x in mine[:3]]}...: {hint}.")
    return (f"my_weights agrees with PrioritizedReplayBuffer.sample on {len(WEIGHT_CASES)} buffers "
            "(alpha 0 to 1, beta 0.4 to 1).")


# ---------------------------------------------------------------------------- Project it yourself
def projection_cases(atoms: int, v_min: float, v_max: float, seed: int) -> dict[str, torch.Tensor]:
    """Rows that probe the projection: ordinary ones, a terminal row (discount 0), a reward that lands every
    atom exactly on a support point, and rewards that push atoms beyond both ends of the support."""
    gen = torch.Generator().manual_seed(seed)
    support = torch.linspace(v_min, v_max, atoms, dtype=torch.float64)
    delta = (v_max - v_min) / (atoms - 1)
    rows = 7
    probs = torch.softmax(2 * torch.randn(rows, atoms, generator=gen, dtype=torch.float64), dim=1)
    reward = torch.randn(rows, generator=gen, dtype=torch.float64) * delta * 3
    discount = torch.full((rows,), 0.9, dtype=torch.float64)
    discount[1] = 0.0                       # terminal: one atom at the reward
    reward[2], discount[2] = 2 * delta, 1.0  # every atom moves exactly two support points up
    reward[3] = v_max + 5 * delta           # everything beyond the top
    reward[4] = v_min - 5 * delta           # everything beyond the bottom
    reward[5], discount[5] = 0.0, 0.99**3   # an n-step discount
    return {"probs": probs, "reward": reward, "discount": discount, "support": support}


@exercise("Project it yourself", fill=("my_projection",))
def own_projection(my_projection: Any) -> str:
    """Check ``my_projection(probs, reward, discount, support)``: C51's projection of ``reward + discount * Z``
    onto ``support`` (``(B, K)`` probabilities), compared with
    :func:`~rlbook.agents.dqn.categorical_projection` on three supports, with a terminal row, atoms landing
    exactly on support points and atoms beyond both ends."""
    names = {1: "the terminal row (discount 0)", 2: "the row whose atoms land exactly on support points",
             3: "the row pushed beyond v_max", 4: "the row pushed below v_min"}
    for seed, (atoms, v_min, v_max) in enumerate(PROJECTION_SUPPORTS):
        case = projection_cases(atoms, v_min, v_max, seed)
        expected = categorical_projection(**case)
        where = f"with {atoms} atoms on [{v_min:g}, {v_max:g}]"
        mine = _tensor(attempted(my_projection(**{k: v.clone() for k, v in case.items()})), "my_projection",
                       tuple(expected.shape), where)
        sums = mine.sum(dim=1)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-6):
            row = int((~torch.isclose(sums, torch.ones_like(sums), atol=1e-6)).nonzero()[0])
            hint = (" An atom that lands exactly on a support point has floor == ceil: give it all of its "
                    "probability once, not twice (or not zero times)." if row == 2 else "")
            raise WrongAnswer(f"{where}, row {row} ({names.get(row, 'an ordinary row')}) sums to "
                              f"{float(sums[row]):.6g}, not 1: the projection must keep every bit of "
                              f"probability.{hint}")
        if not torch.allclose(mine, expected, atol=1e-6):
            row = int((~torch.isclose(mine, expected, atol=1e-6)).any(dim=1).nonzero()[0])
            hints = {1: "a terminal row has no next state: all its probability sits at the reward (split "
                        "between the two support points around it)",
                     3: "atoms beyond the support are clipped to v_max before they are split",
                     4: "atoms below the support are clipped to v_min before they are split"}
            hint = hints.get(row, "each shifted atom r + discount * z_j is split between the support points "
                                  "just below and just above it, in proportion to how close it is to each")
            raise WrongAnswer(f"{where}, row {row} ({names.get(row, 'an ordinary row')}) differs from the "
                              f"reference (largest gap {float((mine - expected)[row].abs().max()):.3g}): {hint}.")
    return (f"my_projection agrees with categorical_projection on {len(PROJECTION_SUPPORTS)} supports, "
            "including terminal rows, atoms on support points and atoms beyond both ends.")
