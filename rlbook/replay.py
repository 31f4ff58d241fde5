"""Experience replay: a NumPy ring buffer that stores each observation once, and n-step folding.

Defined in chapter 6 (DQN); chapter 7 adds prioritized sampling on top of :class:`ReplayBuffer`.

How observations are stored
---------------------------
A transition ``(s, a, r, s')`` of one environment shares its ``s'`` with the next transition's ``s``.
Storing both doubles the memory, which matters for Atari (a stack of four 84x84 uint8 frames is
28,224 bytes). So the buffer keeps one *stream* per environment: a ring segment where slot ``p`` holds
the observation at position ``p`` of that environment's experience, and the row written at ``p``
(action, reward, flags) belongs to the transition that starts there. The next observation of a row
that folded ``m`` rewards (``m = 1`` for plain transitions, up to ``n`` for n-step rows) is the
observation at position ``p + m``. When an episode ends, its final observation takes one slot of its
own and the next episode starts after it, so episodes never share a slot.

Which rows can be sampled is decided by one window per environment: its ``quota`` newest row positions
(the quotas add up to ``capacity``). A segment has ``quota + n`` slots, so the next observation of every row
in the window is still stored; rows that fell out of the window, and slots that hold only a final
observation, are never sampled. The rule depends on nothing but the row's own slot and its environment's
head, so a sum tree (prioritized replay) can keep each slot's priority at zero exactly when it cannot be
sampled.

Memory per stored transition: ``obs.nbytes`` of one observation (not two) plus 25 bytes (action int64,
reward float32, folded steps int16, two flags, stream position int64, row flag), and one extra
observation per finished episode. For Atari frame stacks that is about 28.2 kB per transition:
1 M transitions take 28 GB, 100 k take 2.8 GB and 10 k take 282 MB. (A design that stores single
frames and rebuilds the stacks would need a quarter of that; it depends on how the frame-stack wrapper
pads episode starts, so we keep whole stacks.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlbook.config import check_float, check_int
from rlbook.transition import Transition


@dataclass
class ReplayBatch:
    """A sampled minibatch (``B`` rows).

    Attributes:
        obs: observations ``(B, *obs_shape)``.
        action: actions ``(B, *action_shape)``.
        reward: the (n-step) return folded into the row, ``(B,)`` float32.
        next_obs: the observation ``steps`` steps later (the final observation when the episode ended
            earlier), ``(B, *obs_shape)``.
        terminated: the episode terminated within the folded steps (no bootstrap), ``(B,)`` bool.
        truncated: the episode was truncated within the folded steps, ``(B,)`` bool.
        steps: rewards folded into ``reward`` (``m``); bootstrap with ``gamma ** steps``, ``(B,)`` int64.
        indices: the buffer slots of the rows (prioritized replay updates them), ``(B,)`` int64.
        weights: importance-sampling weights of prioritized replay, ``(B,)`` float32 (``None`` for uniform
            sampling, where every row weighs the same).
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    steps: np.ndarray
    indices: np.ndarray
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.reward)


class ReplayBuffer:
    """Uniform experience replay over a preallocated NumPy ring, one stream segment per environment.

    Args:
        capacity: the most rows the buffer holds (at least ``num_envs``). Each environment keeps its newest
            ``capacity // num_envs`` row positions (the first ``capacity % num_envs`` environments one more),
            so the buffer never holds more than ``capacity`` rows; a finished episode's final observation
            takes one of those positions.
        obs_shape: shape of one observation.
        obs_dtype: storage dtype of observations (keep Atari frames ``np.uint8``).
        action_shape: shape of one action (``()`` for discrete actions).
        action_dtype: storage dtype of actions.
        num_envs: environments whose rows are interleaved; ``None`` fixes it at the first :meth:`add`
            from the largest env id in it (so that first batch must hold a row of the last environment,
            as a trainer's first step does; give ``num_envs`` when adding n-step rows).
        n_step: the most rewards one row may fold (the lookahead of :class:`NStepFolder`).

    Rows of one environment must arrive in the order they happened (as the trainer and
    :class:`NStepFolder` give them). If an environment's stream breaks without an episode end (a new
    training run resets the environments), :meth:`add` notices that a row's observation differs from
    the next observation stored before it and starts a fresh stretch of the stream.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype=np.float32,
                 action_shape: tuple[int, ...] = (), action_dtype=np.int64, num_envs: int | None = None,
                 n_step: int = 1):
        capacity = check_int("capacity", capacity, 2)
        n_step = check_int("n_step", n_step, 1)
        self.capacity = capacity
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.action_shape = tuple(int(d) for d in action_shape)
        self.action_dtype = np.dtype(action_dtype)
        self.n_step = int(n_step)
        self.num_envs: int | None = None
        if num_envs is not None:
            self._allocate(num_envs)

    # ------------------------------------------------------------------ storage
    def _allocate(self, num_envs: int) -> None:
        self.num_envs = check_int("num_envs", num_envs, 1)
        if self.capacity < self.num_envs:
            raise ValueError(f"capacity ({self.capacity}) must be at least the number of environments "
                             f"({self.num_envs}): each environment keeps at least one row")
        # Each env keeps its `quota` newest row positions (the quotas sum to `capacity`), plus the n slots ahead
        # that hold the newest rows' next observations.
        self._quota = np.full(self.num_envs, self.capacity // self.num_envs, np.int64)
        self._quota[: self.capacity % self.num_envs] += 1
        per_env = int(self._quota.max())
        self.segment = per_env + self.n_step
        size = self.segment * self.num_envs
        self._obs = np.zeros((size, *self.obs_shape), self.obs_dtype)
        self._action = np.zeros((size, *self.action_shape), self.action_dtype)
        self._reward = np.zeros(size, np.float32)
        self._steps = np.zeros(size, np.int16)
        self._terminated = np.zeros(size, bool)
        self._truncated = np.zeros(size, bool)
        self._is_row = np.zeros(size, bool)
        self._position = np.full(size, -1, np.int64)  # stream position each slot was last written at
        self._head = np.zeros(self.num_envs, np.int64)  # stream position of each env's next row
        self._frontier = np.zeros(self.num_envs, np.int64)  # one past the furthest position written
        self._touched: list[np.ndarray] | None = None  # slots written by the current add (prioritized replay)

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays (0 before they exist)."""
        if self.num_envs is None:
            return 0
        return sum(a.nbytes for a in (self._obs, self._action, self._reward, self._steps, self._terminated,
                                      self._truncated, self._is_row, self._position))

    def _slot(self, env: np.ndarray, position: np.ndarray) -> np.ndarray:
        return env * self.segment + position % self.segment

    # ------------------------------------------------------------------ adding
    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, env_ids: np.ndarray | None = None,
            steps: np.ndarray | None = None) -> None:
        """Store a batch of ``k`` rows.

        Args:
            obs, next_obs: ``(k, *obs_shape)``; ``next_obs`` is the observation ``steps`` steps later
                (the true final observation when the episode ended).
            action: ``(k, *action_shape)``.
            reward: ``(k,)``, the reward (or folded n-step return) of each row.
            terminated, truncated: ``(k,)`` bool.
            env_ids: ``(k,)`` environment of each row; default ``0..k-1`` (one row per environment).
            steps: ``(k,)`` rewards folded per row, 1..``n_step``; default 1.
        """
        # In the buffer's dtype from here on: the check that a row continues its env's stream compares it with
        # the stored next observation, and float64 input would never equal its float32 copy.
        obs = np.asarray(obs, dtype=self.obs_dtype)
        next_obs = np.asarray(next_obs, dtype=self.obs_dtype)
        k = len(obs)
        if k == 0:
            return
        if obs.shape != (k, *self.obs_shape) or next_obs.shape != obs.shape:
            raise ValueError(f"obs and next_obs must have shape (k, {self.obs_shape}), got {obs.shape} and "
                             f"{np.shape(next_obs)}")
        env_ids = np.arange(k) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        steps = np.ones(k, np.int64) if steps is None else np.asarray(steps, dtype=np.int64)
        arrays = {"action": np.asarray(action), "reward": np.asarray(reward), "terminated": np.asarray(terminated),
                  "truncated": np.asarray(truncated), "env_ids": env_ids, "steps": steps}
        for name, value in arrays.items():
            if len(value) != k:
                raise ValueError(f"{name} has {len(value)} rows but obs has {k}")
        if arrays["action"].shape[1:] != self.action_shape:
            raise ValueError(f"actions must have shape (k, {self.action_shape}), got {arrays['action'].shape}")
        if steps.min() < 1 or steps.max() > self.n_step:
            raise ValueError(f"steps must lie in 1..{self.n_step} (the buffer's n_step), got {steps}")
        if self.num_envs is None:
            self._allocate(int(env_ids.max()) + 1)
        if env_ids.min() < 0 or env_ids.max() >= self.num_envs:
            raise ValueError(f"env_ids must lie in 0..{self.num_envs - 1} (the buffer's num_envs), got {env_ids}")
        # Fancy assignment with repeated slots has no defined order: split batches that could wrap a segment.
        chunk = max(1, (self.segment - self.n_step - 1) // 2)
        for start in range(0, k, chunk):
            part = slice(start, start + chunk)
            self._add_chunk(obs[part], arrays["action"][part], arrays["reward"][part], np.asarray(next_obs)[part],
                            arrays["terminated"][part].astype(bool), arrays["truncated"][part].astype(bool),
                            env_ids[part], steps[part])

    def _add_chunk(self, obs, action, reward, next_obs, terminated, truncated, env_ids, steps) -> None:
        k = len(obs)
        done = terminated | truncated
        # A row that ends its episode (done and folding one step: the last row) is followed by the slot
        # of the final observation, so the next row sits two positions on.
        advance = 1 + (done & (steps == 1))
        if k == 1 or np.all(env_ids[1:] > env_ids[:-1]):  # the usual batch: one row per env, in order
            order = np.arange(k)
            env = env_ids
            first = np.ones(k, bool)
            starts = lasts = order
            position = self._head[env].copy()
        else:
            order = np.argsort(env_ids, kind="stable")  # group rows by env, keeping their order
            env = env_ids[order]
            steps, done, advance = steps[order], done[order], advance[order]
            first = np.ones(k, bool)
            first[1:] = env[1:] != env[:-1]
            starts = np.flatnonzero(first)
            lasts = np.r_[starts[1:] - 1, k - 1]
            group = np.cumsum(first) - 1
            before = np.cumsum(advance) - advance
            position = self._head[env] + before - before[starts][group]

        # Continuity: a pending next observation at a group's first position must equal the row's obs.
        p0 = position[starts]
        e0 = env[starts]
        s0 = self._slot(e0, p0)
        pending = self._position[s0] == p0
        if pending.any():
            stored = self._obs[s0[pending]].reshape(int(pending.sum()), -1)
            incoming = obs[order[starts[pending]]].reshape(int(pending.sum()), -1)
            broken = np.zeros(len(starts), bool)
            broken[pending] = np.any(stored != incoming, axis=1)
            if broken.any():
                shift = np.zeros(self.num_envs, np.int64)
                shift[e0[broken]] = self._frontier[e0[broken]] - self._head[e0[broken]]
                position += shift[env]

        next_position = position + steps
        # Inside one batch, a row that starts where the previous row of its env ended must continue it.
        follows = ~first[1:] & (position[1:] == next_position[:-1])
        if follows.any():
            i = np.flatnonzero(follows)
            a = next_obs[order[i]].reshape(len(i), -1)
            b = obs[order[i + 1]].reshape(len(i), -1)
            if np.any(a != b):
                raise ValueError("the rows of one environment in this batch are not a continuous stream: a row's "
                                 "obs differs from the previous row's next_obs")
        slots = self._slot(env, position)
        next_slots = self._slot(env, next_position)
        if self._touched is not None:  # prioritized replay keeps its sum tree in step with these slots
            self._touched += [slots, next_slots]
        # Next observations first, rows second: a slot that is both keeps its row flag.
        self._obs[next_slots] = next_obs[order]
        self._position[next_slots] = next_position
        self._is_row[next_slots] = False
        self._obs[slots] = obs[order]
        self._action[slots] = action[order]
        self._reward[slots] = reward[order]
        self._steps[slots] = steps
        self._terminated[slots] = terminated[order]
        self._truncated[slots] = truncated[order]
        self._position[slots] = position
        self._is_row[slots] = True

        last_env = env[lasts]
        self._frontier[last_env] = np.maximum(self._frontier[last_env], next_position[lasts] + 1)
        head = position[lasts] + advance[lasts]
        # After an episode end the next episode starts past every observation written so far.
        self._head[last_env] = np.where(done[lasts], np.maximum(head, self._frontier[last_env]), head)

    def add_transition(self, transition: Transition) -> None:
        """Store a trainer :class:`~rlbook.transition.Transition` (one-step rows)."""
        self.add(transition.obs, transition.action, transition.reward, transition.next_obs,
                 transition.terminated, transition.truncated, transition.env_ids)

    # ------------------------------------------------------------------ sampling
    def _valid(self, slots: np.ndarray) -> np.ndarray:
        """True where ``slots`` hold a row among its environment's ``quota`` newest row positions (so at most
        ``capacity`` rows are ever valid).

        That one window is the whole rule: a row at position ``p >= head - quota`` has its next observation at
        ``p + m <= head - 1 + n``, and nothing past ``head + n - 1`` has been written yet, so with
        ``quota + n`` slots per environment no newer write can have reused the next observation's slot."""
        env = slots // self.segment
        return self._is_row[slots] & (self._position[slots] >= self._head[env] - self._quota[env])

    def __len__(self) -> int:
        """Rows that can be sampled now."""
        if self.num_envs is None:
            return 0
        return int(np.count_nonzero(self._valid(np.arange(self.segment * self.num_envs))))

    def sample_indices(self, size: int | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Slots of ``size`` rows drawn uniformly (with replacement) among the rows that can be sampled."""
        if self.num_envs is None or not self._frontier.any():
            raise ValueError("cannot sample from an empty replay buffer")
        filled = np.minimum(self._frontier, self.segment)
        cumulative = np.cumsum(filled)
        total = int(cumulative[-1])

        def draw(n):
            u = rng.integers(total, size=n)
            if self.num_envs == 1:
                return u
            env = np.searchsorted(cumulative, u, side="right")
            return env * self.segment + u - (cumulative[env] - filled[env])

        slots = draw(size)
        flat = slots.reshape(-1)
        # Rejection: the few slots without a sampleable row (final observations, rows waiting for their
        # successor) are drawn again, which keeps the draw uniform over the valid rows.
        for _ in range(8):
            bad = np.flatnonzero(~self._valid(flat))
            if len(bad) == 0:
                return slots
            flat[bad] = draw(len(bad))
        bad = np.flatnonzero(~self._valid(flat))
        if len(bad):
            valid = np.flatnonzero(self._valid(np.arange(self.segment * self.num_envs)))
            if len(valid) == 0:
                raise ValueError("the replay buffer holds no complete transition yet")
            flat[bad] = valid[rng.integers(len(valid), size=len(bad))]
        return slots

    def batch_at(self, slots: np.ndarray) -> ReplayBatch:
        """The rows at ``slots`` (any shape ``S``; arrays come back with leading shape ``S``)."""
        slots = np.asarray(slots, dtype=np.int64)
        steps = self._steps[slots].astype(np.int64)
        next_slots = self._slot(slots // self.segment, self._position[slots] + steps)
        return ReplayBatch(obs=self._obs[slots], action=self._action[slots], reward=self._reward[slots],
                           next_obs=self._obs[next_slots], terminated=self._terminated[slots],
                           truncated=self._truncated[slots], steps=steps, indices=slots)

    def sample(self, batch_size: int | tuple[int, ...], rng: np.random.Generator) -> ReplayBatch:
        """``batch_size`` rows drawn uniformly with replacement; a tuple such as ``(G, B)`` draws ``G``
        minibatches at once (arrays then have leading shape ``(G, B)``)."""
        return self.batch_at(self.sample_indices(batch_size, rng))

    def __repr__(self) -> str:
        return (f"ReplayBuffer(capacity={self.capacity}, obs_shape={self.obs_shape}, obs_dtype={self.obs_dtype}, "
                f"num_envs={self.num_envs}, n_step={self.n_step}, rows={len(self)})")


# ---------------------------------------------------------------------- prioritized replay
class SumTree:
    """Non-negative priorities of ``capacity`` items in an array-backed binary tree (chapter 7).

    Leaf ``i`` of the tree holds item ``i``'s priority; every inner node holds the sum of its two children,
    so the root holds the total. Drawing an item with probability proportional to its priority is one walk
    from the root: at each node go left if the target prefix sum lies within the left child's sum, else
    subtract that sum and go right. Both operations are vectorised over many items at once: an update
    rewrites the leaves, then recomputes the parents level by level (``log2`` levels, each one NumPy call);
    a draw walks all its targets down together.

    ``tree`` has ``2 * size`` entries (``size``: ``capacity`` rounded up to a power of two); the leaves are
    ``tree[size:size + capacity]`` and the root is ``tree[1]``.
    """

    def __init__(self, capacity: int):
        self.capacity = check_int("capacity", capacity, 1)
        self.size = 1 << (self.capacity - 1).bit_length()
        self.depth = self.size.bit_length() - 1
        self.tree = np.zeros(2 * self.size, np.float64)

    @property
    def total(self) -> float:
        """The sum of all priorities."""
        return float(self.tree[1])

    def __getitem__(self, items) -> np.ndarray:
        return self.tree[self.size + np.asarray(items)]

    def update(self, items: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities of ``items`` (``(k,)`` ints, the last value wins for a repeated item)."""
        items = np.asarray(items, np.int64).reshape(-1)
        priorities = np.asarray(priorities, np.float64).reshape(-1)
        if len(items) == 0:
            return
        if items.min() < 0 or items.max() >= self.capacity:
            raise IndexError(f"items must lie in 0..{self.capacity - 1}")
        if not np.all(np.isfinite(priorities)) or priorities.min() < 0:
            raise ValueError("priorities must be finite and non-negative")
        nodes = items + self.size
        self.tree[nodes] = priorities  # NumPy keeps the last of repeated indices
        nodes = np.unique(nodes >> 1)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes >> 1)

    def find(self, targets: np.ndarray) -> np.ndarray:
        """The items where the running sum of priorities passes each target in ``[0, total)``: item ``i`` is
        found for targets in ``[sum of priorities before i, that + priority i)``. Items with priority 0 are
        never returned (while the total is positive)."""
        targets = np.array(targets, np.float64)
        node = np.ones(targets.shape, np.int64)
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self.tree[left]
            # go right when the target is past the left sum -- unless rounding left nothing on the right
            right = (targets >= left_sum) & (self.tree[left + 1] > 0)
            right |= left_sum <= 0
            targets = np.where(right, targets - left_sum, targets)
            node = np.where(right, left + 1, left)
        return node - self.size


class PrioritizedReplayBuffer(ReplayBuffer):
    """Prioritized experience replay (Schaul et al., 2016), chapter 7: rows are drawn with probability
    ``P(i) = p_i / sum_k p_k``, where ``p_i = (|delta_i| + eps) ** alpha`` comes from the row's last TD error.

    Rows the agent got most wrong come back most often. That changes the distribution the loss is averaged
    over, so each sampled row carries an importance-sampling weight ``w_i = (N P(i)) ** -beta``, divided by the
    largest weight of the batch; ``beta`` rises from 0.4 to 1 during training (a schedule the agent owns),
    when the correction matters most.

    New rows get the largest priority seen so far, so each is replayed at least about once. The sum tree has
    one leaf per buffer slot and keeps a slot's priority at 0 exactly when the slot holds no row that can be
    sampled (see the class docstring of :class:`ReplayBuffer`), so no invalid row is ever drawn. Draws are
    stratified: the total is cut into ``B`` equal segments and one row is drawn in each.

    Args (beyond :class:`ReplayBuffer`'s):
        alpha: how strongly priorities shape the draw (0: uniform, 1: proportional).
        eps: added to every ``|delta|`` so that no row's priority is 0.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype=np.float32,
                 action_shape: tuple[int, ...] = (), action_dtype=np.int64, num_envs: int | None = None,
                 n_step: int = 1, alpha: float = 0.6, eps: float = 1e-6):
        super().__init__(capacity, obs_shape, obs_dtype, action_shape, action_dtype, num_envs, n_step)
        self.alpha = check_float("alpha", alpha, 0.0)
        self.eps = check_float("eps", eps, 0.0, low_open=True)
        self.max_priority = 1.0

    def _allocate(self, num_envs: int) -> None:
        super()._allocate(num_envs)
        self.tree = SumTree(self.segment * self.num_envs)

    def add(self, *args, **kwargs) -> None:
        """Store rows (as :meth:`ReplayBuffer.add`); new rows get the largest priority so far, and every slot
        whose row can no longer be sampled gets priority 0."""
        if self.num_envs is None:
            super().add(*args, **kwargs)  # allocates; the empty tree catches up below
            old_head = np.zeros(self.num_envs, np.int64)
            touched = [np.arange(self.segment * self.num_envs)]
        else:
            old_head = self._head.copy()
            self._touched = []
            try:
                super().add(*args, **kwargs)
                touched = self._touched
            finally:
                self._touched = None
        # Rows that left their env's window: positions [old head - quota, new head - quota).
        start = np.maximum(old_head - self._quota, self._head - self._quota - self.segment)
        stop = self._head - self._quota
        leaving = [self._slot(np.full(b - a, e), np.arange(a, b)) for e, (a, b) in enumerate(zip(start, stop)) if b > a]
        slots = np.unique(np.concatenate(touched + leaving)) if touched or leaving else np.zeros(0, np.int64)
        valid = self._valid(slots)
        self.tree.update(slots, np.where(valid, self.max_priority, 0.0))

    def sample_indices(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` slots drawn in proportion to their priorities, one per equal segment of the total."""
        if self.num_envs is None or self.tree.total <= 0:
            raise ValueError("cannot sample from an empty replay buffer")
        total = self.tree.total
        targets = (np.arange(size) + rng.random(size)) * (total / size)
        return self.tree.find(np.minimum(targets, np.nextafter(total, 0)))

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 0.4) -> ReplayBatch:
        """``batch_size`` rows drawn by priority, with importance weights ``(N P(i)) ** -beta / max``."""
        if not isinstance(batch_size, (int, np.integer)):
            raise TypeError("prioritized replay draws one minibatch at a time (its priorities change after each)")
        slots = self.sample_indices(int(batch_size), rng)
        batch = self.batch_at(slots)
        probabilities = self.tree[slots] / self.tree.total
        weights = (len(self) * probabilities) ** -check_float("beta", beta, 0.0, 1.0)
        batch.weights = (weights / weights.max()).astype(np.float32)
        return batch

    def update_priorities(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        """Set the priorities of the rows at ``slots`` from their TD errors (``(|delta| + eps) ** alpha``)."""
        priorities = (np.abs(np.asarray(td_errors, np.float64)) + self.eps) ** self.alpha
        slots = np.asarray(slots, np.int64)
        valid = self._valid(slots)  # a row that left the window since it was drawn stays at 0
        self.tree.update(slots[valid], priorities[valid])
        if len(priorities):
            self.max_priority = max(self.max_priority, float(priorities.max()))

    def __repr__(self) -> str:
        base = super().__repr__().replace("ReplayBuffer(", "PrioritizedReplayBuffer(", 1)
        return f"{base[:-1]}, alpha={self.alpha:g})"


# ---------------------------------------------------------------------- n-step returns
@dataclass
class NStepRows(Transition):
    """Rows made by :class:`NStepFolder` (``k`` rows): a :class:`~rlbook.transition.Transition` whose
    ``reward`` is the folded return ``R = sum_{i<m} gamma**i * r_{t+i}`` and whose ``next_obs`` is
    ``s_{t+m}`` (the final observation when the episode ended within the ``m`` steps), plus:

    Attributes:
        steps: ``m``, the rewards folded (``n``, or fewer at an episode end), ``(k,)`` int64.
        discount: ``gamma**m``, the factor of the bootstrap value, ``(k,)`` float32.
    """

    steps: np.ndarray
    discount: np.ndarray


class NStepFolder:
    """Turns one-step transitions into n-step rows, with one queue per environment.

    A row for ``s_t`` leaves the queue once ``s_{t+n}`` is known. When an episode ends (terminated or
    truncated) the queue of that environment is flushed: the rows of its last ``m < n`` steps fold only
    the rewards up to the end and carry the end's flags, so a truncated row bootstraps from the final
    observation with ``gamma**m`` and a terminated one does not bootstrap. If a row's observation is not
    the previous row's next observation (the stream broke: a new run reset the environments), the
    pending rows are flushed as truncated at the last observation seen.

    Args:
        n: steps to fold (1 gives back one-step rows).
        gamma: discount factor.
        num_envs: number of environments (``None``: fixed at the first :meth:`fold` from the env ids).
    """

    def __init__(self, n: int, gamma: float, num_envs: int | None = None):
        self.n = check_int("n", n, 1)
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)
        self.num_envs = num_envs
        k = np.arange(self.n)
        # fold[j, i] = gamma**(i - j) for i >= j: row j of a queue folds the rewards from j on.
        self._fold = np.where(k[None, :] >= k[:, None], self.gamma ** np.maximum(k[None, :] - k[:, None], 0), 0.0)
        self._allocated = False

    def _allocate(self, transition: Transition) -> None:
        if self.num_envs is None:
            self.num_envs = int(np.max(transition.env_ids)) + 1
        e, n = self.num_envs, self.n
        obs, action = np.asarray(transition.obs), np.asarray(transition.action)
        self._obs = np.zeros((e, n, *obs.shape[1:]), obs.dtype)
        self._action = np.zeros((e, n, *action.shape[1:]), action.dtype)
        self._reward = np.zeros((e, n), np.float64)
        self._start = np.zeros(e, np.int64)  # queue slot of the oldest pending step
        self._count = np.zeros(e, np.int64)  # pending steps
        self._last_next = np.zeros((e, *obs.shape[1:]), obs.dtype)
        self._allocated = True

    def reset(self) -> None:
        """Forget every pending step."""
        if self._allocated:
            self._count[:] = 0
            self._start[:] = 0

    @property
    def pending(self) -> int:
        """Steps waiting in the queues for their future."""
        return int(self._count.sum()) if self._allocated else 0

    def fold(self, transition: Transition) -> NStepRows:
        """Push a batch of one-step transitions (at most one row per env) and return the rows completed."""
        if not self._allocated:
            self._allocate(transition)
        env = np.asarray(transition.env_ids, dtype=np.int64)
        if len(np.unique(env)) != len(env):
            raise ValueError(f"fold takes at most one row per environment per call, got env_ids {env}")
        if len(env) and (env.min() < 0 or env.max() >= self.num_envs):
            raise ValueError(f"env_ids must lie in 0..{self.num_envs - 1}, got {env}")
        parts: list[NStepRows] = []
        obs = np.asarray(transition.obs)
        waiting = self._count[env] > 0
        if waiting.any():
            same = np.all((obs[waiting] == self._last_next[env[waiting]]).reshape(int(waiting.sum()), -1), axis=1)
            if not same.all():
                cut = env[waiting][~same]
                parts.append(self._flush(cut, self._last_next[cut], np.zeros(len(cut), bool), np.ones(len(cut), bool)))

        slot = (self._start[env] + self._count[env]) % self.n
        self._obs[env, slot] = obs
        self._action[env, slot] = transition.action
        self._reward[env, slot] = transition.reward
        self._count[env] += 1
        self._last_next[env] = transition.next_obs
        terminated = np.asarray(transition.terminated, bool)
        truncated = np.asarray(transition.truncated, bool)
        done = terminated | truncated

        full = ~done & (self._count[env] == self.n)
        if full.any():
            e = env[full]
            idx = (self._start[e][:, None] + np.arange(self.n)) % self.n
            ret = self._reward[e[:, None], idx] @ self._fold[0]
            first = idx[:, 0]
            parts.append(NStepRows(
                obs=self._obs[e, first].copy(), action=self._action[e, first].copy(),
                reward=ret.astype(np.float32), next_obs=np.asarray(transition.next_obs)[full],
                terminated=np.zeros(len(e), bool), truncated=np.zeros(len(e), bool), env_ids=e,
                steps=np.full(len(e), self.n, np.int64),
                discount=np.full(len(e), self.gamma**self.n, np.float32)))
            self._start[e] = (self._start[e] + 1) % self.n
            self._count[e] -= 1
        if done.any():
            parts.append(self._flush(env[done], np.asarray(transition.next_obs)[done], terminated[done],
                                     truncated[done]))
        if not parts:
            return self._empty(obs, np.asarray(transition.action))
        if len(parts) == 1:
            return parts[0]
        return NStepRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in NStepRows.__dataclass_fields__))

    def _flush(self, envs: np.ndarray, final_obs: np.ndarray, terminated: np.ndarray,
               truncated: np.ndarray) -> NStepRows:
        """Emit every pending row of ``envs`` (in time order), ending at ``final_obs``."""
        n = self.n
        idx = (self._start[envs][:, None] + np.arange(n)) % n  # (D, n), oldest first
        count = self._count[envs]
        mask = np.arange(n)[None, :] < count[:, None]
        rewards = np.where(mask, self._reward[envs[:, None], idx], 0.0)
        returns = rewards @ self._fold.T  # returns[d, j] = sum_{i >= j} gamma**(i-j) r[d, i]
        steps = count[:, None] - np.arange(n)[None, :]
        reps = count
        rows = NStepRows(
            obs=self._obs[envs[:, None], idx][mask], action=self._action[envs[:, None], idx][mask],
            reward=returns[mask].astype(np.float32), next_obs=np.repeat(final_obs, reps, axis=0),
            terminated=np.repeat(terminated, reps), truncated=np.repeat(truncated, reps),
            env_ids=np.repeat(envs, reps), steps=steps[mask].astype(np.int64),
            discount=(self.gamma ** steps[mask]).astype(np.float32))
        self._count[envs] = 0
        self._start[envs] = 0
        return rows

    def _empty(self, obs: np.ndarray, action: np.ndarray) -> NStepRows:
        return NStepRows(obs=obs[:0], action=action[:0], reward=np.zeros(0, np.float32), next_obs=obs[:0],
                         terminated=np.zeros(0, bool), truncated=np.zeros(0, bool), env_ids=np.zeros(0, np.int64),
                         steps=np.zeros(0, np.int64), discount=np.zeros(0, np.float32))
