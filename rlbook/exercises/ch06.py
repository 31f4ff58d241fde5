"""Checks for the exercises of chapter 6 (deep Q-networks).

Usage in the chapter: ``from rlbook.exercises import ch06``, then
``ch06.own_target.check(my_targets)``. Each check below is an :class:`~rlbook.exercises.Exercise`:
its ``check`` method prints or raises, and the function documented here returns the message of a
correct answer.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import Counter
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlbook.agents.dqn import DQNAgent, DQNConfig
from rlbook.envs.atari import make_atari
from rlbook.envs.counting import ChainEnv, CountingEnv
from rlbook.exercises import WrongAnswer, attempted, exercise
from rlbook.replay import ReplayBatch
from rlbook.train import Trainer

#: The environments of the vector in "Truncation matters", by tag, as (episode length, time limit or None).
TRUNCATION_SPECS = {0: (3, None),  # terminates after 3 steps
                    1: (6, 4),     # cut by its time limit after 4 steps
                    2: (7, 2),     # cut by its time limit after 2 steps
                    3: (5, 5)}     # the terminal state and the time limit coincide: terminated
#: Environment steps (summed over the vector) of each run in "Truncation matters".
TRUNCATION_STEPS = 400

#: The fields of the preset that the reader changes in "No target network".
NO_TARGET_CHANGED = ("target_update_interval", "tau")
#: Fields that may differ from the preset's freely.
NO_TARGET_FREE = ("seed", "device")
#: The length of the chain on which :func:`target_lag` watches the target network.
CHAIN_LENGTH = 5
#: Environment steps of that run.
CHAIN_STEPS = 160
#: The fields of the reader's config that the run replaces, so that learning starts at once.
CHAIN_SETTINGS = {"learning_starts": 32, "batch_size": 32, "buffer_size": 1_000, "train_freq": 16,
                  "gradient_steps": 2, "seed": 0, "device": "cpu"}

#: The batches tried in "Your own target", as (batch, actions, gamma, which rows terminated).
TARGET_CASES = ((6, 3, 0.9, "some"), (5, 4, 0.99, "all"), (7, 2, 0.5, "no"), (1, 3, 0.9, "no"),
                (16, 6, 0.0, "some"))
#: The Atari game of "One frame is not enough".
FRAME_GAME = "Pong"
#: The number of frames :func:`~rlbook.envs.atari.make_atari` stacks by default.
DEFAULT_FRAME_STACK = inspect.signature(make_atari).parameters["frame_stack"].default


def _integer(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise WrongAnswer(f"{name} should be a whole number, got {value!r}")
    if float(value) != int(value):
        raise WrongAnswer(f"{name} is {value!r}; count transitions: a whole number")
    return int(value)


# ---------------------------------------------------------------------------- Truncation matters
def truncation_config(**overrides: Any) -> DQNConfig:
    """The small one-step DQN config of the runs in "Truncation matters"."""
    base = DQNConfig(gamma=0.9, lr=1e-3, batch_size=16, buffer_size=10_000, learning_starts=64,
                     train_freq=16, gradient_steps=1, target_update_interval=10, hidden=(8,),
                     epsilon_decay_steps=0, n_step=1, double=False, device="cpu", seed=0)
    return base.replace(**overrides)


def counting_vector() -> gym.vector.SyncVectorEnv:
    """The counting environments of :data:`TRUNCATION_SPECS` side by side (observation ``[t, episode, tag]``)."""
    return gym.vector.SyncVectorEnv([lambda tag=tag, spec=spec: CountingEnv(spec[0], max_episode_steps=spec[1],
                                                                            tag=tag)
                                     for tag, spec in TRUNCATION_SPECS.items()])


def stored_rows(agent_class: type, steps: int = TRUNCATION_STEPS) -> tuple[DQNAgent, ReplayBatch | None]:
    """Train ``agent_class`` (a :class:`~rlbook.agents.dqn.DQNAgent` or a subclass) for ``steps`` steps on
    :func:`counting_vector` and return it with every row its replay buffer holds (``None`` when it
    stored nothing)."""
    venv = counting_vector()
    agent = agent_class(venv.single_observation_space, venv.single_action_space, truncation_config())
    Trainer(agent, venv, total_steps=steps, seed=0).run()
    buffer = agent.buffer
    if buffer is None or len(buffer) == 0:
        return agent, None
    slots = np.flatnonzero(buffer._valid(np.arange(buffer.segment * buffer.num_envs)))
    return agent, buffer.batch_at(slots)


def how_rows_end(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For one-step rows starting at observations ``obs`` ``(B, 3)`` of :func:`counting_vector`: whether
    each reached its terminal state and whether its time limit cut it, both ``(B,)`` bool, from the
    environments' definition."""
    t, tag = obs[:, 0].astype(int), obs[:, 2].astype(int)
    length = np.array([TRUNCATION_SPECS[g][0] for g in tag])
    limit = np.array([TRUNCATION_SPECS[g][1] or np.iinfo(np.int64).max for g in tag])
    terminal = (t + 1 == length) & (length <= limit)
    cut = (t + 1 == limit) & (limit < length)
    return terminal, cut


def _row_keys(batch: ReplayBatch) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in o) for o in batch.obs]


def wrong_targets_per_episode(plain: DQNAgent, plain_rows: ReplayBatch, rows: ReplayBatch) -> list[int]:
    """For each episode cut by its time limit in ``plain_rows``: how many of its rows get a different
    target (with ``plain``'s networks) when their flags are those of ``rows``."""
    def targets(batch):
        tensors = plain._to_device(batch)
        return dict(zip(_row_keys(batch), plain.compute_targets(tensors).cpu().numpy()))

    theirs, ours = targets(rows), targets(plain_rows)
    cut_episodes = {(e, g) for (_, e, g), cut in zip(_row_keys(plain_rows), plain_rows.truncated) if cut}
    differ = Counter((e, g) for (t, e, g), y in ours.items()
                     if (e, g) in cut_episodes and (t, e, g) in theirs
                     and not np.isclose(theirs[(t, e, g)], y, rtol=1e-6, atol=1e-6))
    return [differ[ep] for ep in sorted(cut_episodes)]


def _example(obs: np.ndarray, mask: np.ndarray) -> str:
    t, episode, tag = (int(v) for v in obs[np.flatnonzero(mask)[0]])
    length, limit = TRUNCATION_SPECS[tag]
    about = f"length {length}" + (f" and time limit {limit}" if limit is not None else " and no time limit")
    return f"the step from t = {t} to t = {t + 1} of an episode of {about}"


@exercise("Truncation matters", fill=("TerminalAtTimeLimit", "wrong_per_truncated_episode"))
def truncation(TerminalAtTimeLimit: Any, wrong_per_truncated_episode: Any) -> str:
    """Check ``TerminalAtTimeLimit``, a subclass of :class:`~rlbook.agents.dqn.DQNAgent` that stores a
    cut by the time limit as a termination, by training it on counting environments with and without
    time limits and reading its replay buffer; and ``wrong_per_truncated_episode``, how many
    transitions of an episode cut by the time limit then get a wrong one-step target."""
    if not (isinstance(TerminalAtTimeLimit, type) and issubclass(TerminalAtTimeLimit, DQNAgent)):
        raise WrongAnswer(f"TerminalAtTimeLimit should be a class derived from DQNAgent "
                          f"(class TerminalAtTimeLimit(DQNAgent): ...), got {TerminalAtTimeLimit!r}")
    agent, rows = stored_rows(TerminalAtTimeLimit)
    if rows is None:
        raise WrongAnswer(f"after {TRUNCATION_STEPS} steps the agent's replay buffer holds nothing: end "
                          f"your observe with super().observe(transition), which stores the rows.")
    plain, plain_rows = stored_rows(DQNAgent)
    if sorted(_row_keys(rows)) != sorted(_row_keys(plain_rows)):
        raise WrongAnswer(f"your agent stored {len(rows)} rows in {TRUNCATION_STEPS} steps where DQNAgent "
                          f"stores {len(plain_rows)}: pass every row of the transition on to "
                          f"super().observe(transition), changing only the terminated flags.")
    terminal, cut = how_rows_end(rows.obs)
    flagged = rows.terminated.astype(bool)
    problems = []
    if (cut & ~flagged).any():
        missed, total = int((cut & ~flagged).sum()), int(cut.sum())
        share = "all" if missed == total else f"{missed} of the"
        problems.append(f"{share} {total} rows cut by the time limit "
                        f"(such as {_example(rows.obs, cut & ~flagged)}) are stored with terminated False: "
                        f"set transition.terminated = transition.terminated | transition.truncated "
                        f"before calling super().observe(transition)")
    if (terminal & ~flagged).any():
        problems.append(f"{int((terminal & ~flagged).sum())} rows that reached the terminal state (such as "
                        f"{_example(rows.obs, terminal & ~flagged)}) are stored with terminated False: "
                        f"keep the environment's own terminations and add the time-limit cuts to them "
                        f"with |")
    middle = ~terminal & ~cut
    if (middle & flagged).any():
        problems.append(f"{int((middle & flagged).sum())} rows in the middle of an episode (such as "
                        f"{_example(rows.obs, middle & flagged)}) are stored as terminated: only a row "
                        f"whose episode ended there, by its terminal state or its time limit, should be")
    if problems:
        raise WrongAnswer("; ".join(problems) + ".")
    counts = set(wrong_targets_per_episode(plain, plain_rows, rows))
    if len(counts) != 1:
        raise RuntimeError(f"episodes cut by the time limit differ in their wrong targets: {sorted(counts)}")
    (expected,) = counts
    number = _integer(wrong_per_truncated_episode, "wrong_per_truncated_episode")
    if number != expected:
        cuts = " or ".join(str(limit) for length, limit in TRUNCATION_SPECS.values()
                           if limit is not None and limit < length)
        if number < 0:
            hint = "a number of transitions cannot be negative"
        elif number < expected:
            hint = ("a target does change: the last step's, whose next state is where the clock ran out, "
                    "now adds nothing for that state's future")
        else:
            hint = (f"in the run above each episode cut by its time limit (after {cuts} steps) had "
                    f"{expected} row whose target changed. The other rows bootstrap from a state inside "
                    f"the episode, and their terminated flag is False with or without your change")
        raise WrongAnswer(f"wrong_per_truncated_episode is {number}; {hint}.")
    return (f"all {int(cut.sum())} rows cut by a time limit are stored as terminated, every other row as "
            f"the environment said, and each cut episode has {expected} wrong target (with n-step "
            f"returns, the last n rows would all be wrong).")


# ---------------------------------------------------------------------------- No target network
def target_lag(config: DQNConfig, steps: int = CHAIN_STEPS) -> list[float]:
    """Train on ``ChainEnv(CHAIN_LENGTH)`` with ``config`` (its learning schedule shortened by
    :data:`CHAIN_SETTINGS`) and return, after each gradient step, the largest absolute difference
    between a weight of the target network and the same weight of the online network."""
    env = ChainEnv(CHAIN_LENGTH)
    agent = DQNAgent(env.observation_space, env.action_space, config.replace(**CHAIN_SETTINGS))
    lags: list[float] = []
    step = agent.gradient_step

    def watched_step(batch):
        result = step(batch)
        with torch.no_grad():
            lags.append(max(float((t - o).abs().max()) for t, o in
                            zip(agent.target_net.parameters(), agent.q_net.parameters())))
        return result

    agent.gradient_step = watched_step
    agent.learn(env, total_steps=steps, seed=0)
    return lags


@exercise("No target network", fill=("no_target",))
def no_target_network(no_target: Any) -> str:
    """Check ``no_target``, the CartPole preset ``DQNConfig.cartpole()`` changed so that the target
    network is the online network after every gradient step: by its fields, and by a short run on a
    chain that compares the two networks' weights after each gradient step."""
    if not isinstance(no_target, DQNConfig):
        raise WrongAnswer(f"no_target should be a DQNConfig, made with DQNConfig.cartpole(...), got "
                          f"{type(no_target).__name__}.")
    preset = DQNConfig.cartpole()
    ignore = NO_TARGET_CHANGED + NO_TARGET_FREE
    changed = [f"{f.name} ({getattr(no_target, f.name)!r} instead of {getattr(preset, f.name)!r})"
               for f in dataclasses.fields(preset)
               if f.name not in ignore and getattr(no_target, f.name) != getattr(preset, f.name)]
    if changed:
        raise WrongAnswer(f"no_target differs from DQNConfig.cartpole() in {', '.join(changed)}. Start from "
                          f"DQNConfig.cartpole(...) and change only how the target network follows the "
                          f"online one ({' and '.join(NO_TARGET_CHANGED)}), so that the comparison with "
                          f"the preset changes one thing.")
    lags = target_lag(no_target)
    late = [i for i, lag in enumerate(lags) if lag > 0.0]
    if late:
        reasons = []
        if no_target.target_update_interval != 1:
            reasons.append(f"target_update_interval is {no_target.target_update_interval}: the target "
                           f"is updated only every {no_target.target_update_interval} gradient steps")
        if no_target.tau != 1.0:
            reasons.append(f"tau is {no_target.tau:g}: each update moves the target only that fraction "
                           f"of the way to the online network (tau = 1.0 copies it)")
        raise WrongAnswer(f"after gradient step {late[0] + 1} of a short run the target network's weights "
                          f"differ from the online network's by up to {lags[late[0]]:.2g}; "
                          + "; ".join(reasons) + ".")
    preset_lags = target_lag(preset)
    lagging = sum(lag > 0.0 for lag in preset_lags)
    return (f"after each of {len(lags)} gradient steps the target network equalled the online one "
            f"(with the preset it differed after {lagging} of them).")


# ---------------------------------------------------------------------------- Your own target
def _target_batch(batch: int, actions: int, gamma: float, which: str, seed: int) -> tuple[DQNAgent, dict]:
    """A plain one-step DQN agent and a random batch for it (observations of 4 numbers)."""
    box = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
    agent = DQNAgent(box, gym.spaces.Discrete(actions), DQNConfig(network="mlp", hidden=(16,), n_step=1,
                                                                   double=False, seed=seed, device="cpu"))
    gen = torch.Generator().manual_seed(seed)
    terminated = {"all": torch.ones(batch, dtype=torch.bool), "no": torch.zeros(batch, dtype=torch.bool),
                  "some": torch.arange(batch) % 3 == 0}[which]
    return agent, {"reward": torch.randn(batch, generator=gen), "next_obs": torch.randn(batch, 4, generator=gen),
                   "terminated": terminated, "discount": torch.full((batch,), gamma)}


def _diagnose(mine: torch.Tensor, reward: torch.Tensor, next_q: torch.Tensor, terminated: torch.Tensor,
              gamma: float, expected: torch.Tensor) -> str:
    """What a wrong target vector most likely got wrong (``mine`` has the right shape)."""
    def same(a, rows):
        return bool(torch.allclose(mine[rows], a[rows], rtol=1e-5, atol=1e-6))

    best = next_q.max(dim=1).values
    end, cont = terminated, ~terminated
    bad = (~torch.isclose(mine, expected, rtol=1e-5, atol=1e-6)).nonzero().flatten()
    i = int(bad[0])
    row = (f"row {i} (reward {float(reward[i]):.4g}, terminated {bool(terminated[i])}, largest next_q "
           f"{float(best[i]):.4g}) should be {float(expected[i]):.4g}, not {float(mine[i]):.4g}")
    if end.any() and same(reward + gamma * best, end):
        hint = ("on terminated rows you still add gamma times the next state's value; a terminated "
                "episode has no next state, so there the target is the reward alone")
        if cont.any() and same(reward, cont):
            hint = ("the mask is inverted: you bootstrap on the terminated rows and not on the others; "
                    "multiply by (~terminated), which is 1 where the episode goes on")
        return f"{row}: {hint}"
    if end.any() and same(gamma * reward, end):
        return (f"{row}: on terminated rows the target is the reward itself; gamma discounts only the "
                f"next state's value, not the reward of this step")
    if cont.any() and same(reward, cont):
        return (f"{row}: rows that did not terminate must add gamma times the largest next_q; multiply "
                f"by (~terminated), which is 1 where the episode goes on")
    if cont.any() and same(reward + best, cont):
        return f"{row}: the next state's value is missing its discount gamma"
    if cont.any() and same(gamma * (reward + best), cont):
        return f"{row}: gamma discounts only the next state's value, not the reward of this step"
    if cont.any() and same(reward + gamma * next_q.mean(dim=1), cont):
        return f"{row}: take the largest next_q of each row (max over the actions), not the mean"
    if cont.any() and same(reward + gamma**2 * best, cont):
        return f"{row}: the next state's value is discounted twice; once by gamma is enough"
    return (f"{row}. The target is reward + gamma * (1 - terminated) * (largest next_q of the row), with "
            f"the max over the actions (dim=1)")


@exercise("Your own target", fill=("my_targets",))
def own_target(my_targets: Any) -> str:
    """Check ``my_targets(reward, next_q, terminated, gamma)``: the one-step DQN targets ``(batch,)`` from
    the rewards ``(batch,)``, the target network's next-state values ``next_q`` ``(batch, actions)`` and
    the ``terminated`` flags ``(batch,)``, compared with :meth:`~rlbook.agents.dqn.DQNAgent.compute_targets`
    on random batches with some, all and no terminated rows."""
    for seed, (size, actions, gamma, which) in enumerate(TARGET_CASES):
        agent, batch = _target_batch(size, actions, gamma, which, seed)
        expected = agent.compute_targets(batch)
        with torch.no_grad():
            next_q = agent.target_net(batch["next_obs"])
        reward, terminated = batch["reward"], batch["terminated"]
        mine = attempted(my_targets(reward.clone(), next_q.clone(), terminated.clone(), gamma))
        case = (f"for a batch of {size} rows and {actions} actions with gamma = {gamma:g} and {which} "
                f"rows terminated")
        if not isinstance(mine, torch.Tensor):
            raise WrongAnswer(f"{case}, my_targets returned a {type(mine).__name__}; return a torch tensor "
                              f"of shape ({size},), computed from the tensors it is given.")
        if tuple(mine.shape) != (size,):
            hint = ""
            if tuple(mine.shape) in ((size, 1), (size, size)):
                hint = (" A max with keepdim=True keeps a column (batch, 1), and adding it to the "
                        "rewards (batch,) broadcasts to (batch, batch).")
            elif tuple(mine.shape) == (actions,):
                hint = " The max must run over the actions (dim=1), not over the batch (dim=0)."
            raise WrongAnswer(f"{case}, my_targets returned shape {tuple(mine.shape)}, not ({size},): one "
                              f"target per row.{hint}")
        if not torch.allclose(mine.detach().float(), expected, rtol=1e-5, atol=1e-6):
            raise WrongAnswer(f"{case}, " + _diagnose(mine.detach().float(), reward, next_q, terminated,
                                                       gamma, expected) + ".")
    return (f"my_targets agrees with DQNAgent.compute_targets on {len(TARGET_CASES)} batches, with some, "
            f"all and no terminated rows.")


# ---------------------------------------------------------------------------- One frame is not enough
def single_observation_shape(frame_stack: int = 1) -> tuple[int, ...]:
    """The shape of one observation of ``make_atari(FRAME_GAME, frame_stack=frame_stack)``."""
    env = make_atari(FRAME_GAME, num_envs=1, vectorized="sync", frame_stack=frame_stack)
    try:
        return tuple(int(n) for n in env.single_observation_space.shape)
    finally:
        env.close()


@exercise("One frame is not enough", fill=("single_frame_shape", "velocity_visible"))
def one_frame(single_frame_shape: Any, velocity_visible: Any) -> str:
    """Check ``single_frame_shape``, the shape of one observation of Pong made with ``frame_stack=1``,
    and ``velocity_visible``, whether such an observation shows which way the ball moves."""
    shape = single_observation_shape(1)
    try:
        mine = tuple(int(n) for n in single_frame_shape)
    except (TypeError, ValueError):
        raise WrongAnswer(f"single_frame_shape should be a tuple of whole numbers, such as env.single_"
                          f"observation_space.shape, got {single_frame_shape!r}.") from None
    if mine != shape:
        if mine == (1, *shape):
            hint = ("that is the shape of a batch from the vector env, with num_envs first; one "
                    "observation is env.single_observation_space.shape")
        elif mine == shape[1:]:
            hint = ("the frame axis stays even with a single frame: observations are (frames, height, "
                    "width) whatever frame_stack is")
        elif mine[1:] == shape[1:] and mine[0] == DEFAULT_FRAME_STACK:
            hint = (f"with frame_stack=1 the first axis holds {shape[0]} frame; {mine} is the shape with "
                    f"make_atari's default, frame_stack={DEFAULT_FRAME_STACK}")
        elif mine[1:] == shape[1:]:
            hint = f"with frame_stack=1 the first axis holds {shape[0]} frame, not {mine[0]}"
        else:
            hint = "read it from env.single_observation_space.shape"
        raise WrongAnswer(f"single_frame_shape is {mine}, not the shape of one observation; {hint}.")
    if not isinstance(velocity_visible, (bool, np.bool_)):
        raise WrongAnswer(f"velocity_visible should be True or False, got {velocity_visible!r}.")
    frames = shape[0]
    visible = frames >= 2  # a velocity is a change of position: it takes two frames to see one
    if bool(velocity_visible) != visible:
        raise WrongAnswer(f"velocity_visible is {bool(velocity_visible)}, but an observation of shape "
                          f"{shape} holds {frames} frame: one position of the ball. A velocity is the "
                          f"change of position from one frame to the next, and the same picture comes "
                          f"from a ball moving left and from one moving right.")
    return (f"one observation is {shape}, a single frame: it shows where the ball is, not where it is "
            f"going. make_atari's default stack of {DEFAULT_FRAME_STACK} frames shows both.")
