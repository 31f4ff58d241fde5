"""Finite Markov decision processes as arrays, and the exact methods that solve them.

A finite MDP with ``S`` states and ``A`` actions is two arrays and a number:

* ``P[s, a, s']``: the probability of landing in ``s'`` after taking action ``a`` in state ``s``;
* ``R[s, a, s']``: the reward received on that transition;
* ``gamma``: the discount factor in ``[0, 1]``.

Some states allow only some actions (the three-state MDP of chapter 1), so a boolean mask
``available[s, a]`` says which ones exist; unavailable actions never win a maximum. Terminal states
are absorbing with zero reward, so their value is 0 under every policy.

Everything here is exact and vectorised with NumPy: Markov chains and reward processes (chapter 1),
policy evaluation by a linear solve, value iteration and Q-iteration (chapters 1 and 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Tolerance used when checking that transition rows sum to one.
ROW_SUM_ATOL = 1e-6


# ---------------------------------------------------------------------------------------------- the MDP
class FiniteMDP:
    """A finite MDP ``(P, R, gamma)`` with optional per-state action sets. Introduced in chapter 1.

    Args:
        P: transition probabilities, shape ``(S, A, S)``; ``P[s, a]`` must sum to 1 for every
            available action ``a`` of ``s`` (rows of unavailable actions are ignored and stored as 0).
        R: rewards, shape ``(S, A, S)`` (per next state) or ``(S, A)`` (broadcast over next states).
        gamma: discount factor in ``[0, 1]``.
        available: which actions each state allows: a boolean mask ``(S, A)`` or a list of ``S``
            lists of action indices. ``None`` allows every action everywhere.
        terminal: boolean mask ``(S,)`` of terminal states. Their rows are made absorbing with zero
            reward. ``None`` detects them: states whose every available action loops back to
            themselves with probability 1 and reward 0.
        state_names / action_names: labels for printing and plots (default ``s0, s1, ...`` and
            ``a0, a1, ...``).

    Attributes:
        P, R: float64 arrays ``(S, A, S)``. ``r_sa``: expected reward ``(S, A)``.
        available: bool ``(S, A)``. ``terminal``: bool ``(S,)``. ``gamma``: float.
    """

    def __init__(self, P: Any, R: Any, gamma: float, available: Any = None, terminal: Any = None,
                 state_names: Sequence[str] | None = None, action_names: Sequence[str] | None = None):
        P = np.array(P, dtype=np.float64)
        R = np.array(R, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"P must have shape (S, A, S), got {P.shape}")
        n_states, n_actions, _ = P.shape
        if R.shape == (n_states, n_actions):
            R = np.broadcast_to(R[:, :, None], P.shape).copy()
        elif R.shape != P.shape:
            raise ValueError(f"R must have shape {P.shape} (S, A, S) or {(n_states, n_actions)} (S, A), "
                             f"got {R.shape}")
        self.gamma = check_gamma(gamma)
        self.available = _available_mask(available, n_states, n_actions)
        if np.any(P < 0):
            s, a, s2 = np.argwhere(P < 0)[0]
            raise ValueError(f"negative transition probability P[{s}, {a}, {s2}] = {P[s, a, s2]:g}")
        sums = P.sum(axis=2)
        bad = self.available & ~np.isclose(sums, 1.0, rtol=0.0, atol=ROW_SUM_ATOL)
        if bad.any():
            s, a = np.argwhere(bad)[0]
            raise ValueError(f"transition probabilities P[{s}, {a}, :] sum to {sums[s, a]:.6g}, expected 1 "
                             f"({int(bad.sum())} bad row(s) in all)")
        if not np.all(np.isfinite(R)):
            s, a, s2 = np.argwhere(~np.isfinite(R))[0]
            raise ValueError(f"reward R[{s}, {a}, {s2}] = {R[s, a, s2]} is not finite")
        P[~self.available] = 0.0
        R[~self.available] = 0.0
        if terminal is None:
            idx = np.arange(n_states)
            loops = np.where(self.available, P[idx, :, idx] == 1.0, True).all(axis=1)
            silent = np.where(self.available[:, :, None], R == 0.0, True).all(axis=(1, 2))
            terminal = loops & silent
        terminal = np.asarray(terminal, dtype=bool)
        if terminal.shape != (n_states,):
            raise ValueError(f"terminal must be a boolean mask of shape ({n_states},), got {terminal.shape}")
        # Terminal states are absorbing with zero reward, whatever the input said.
        t = np.flatnonzero(terminal)
        P[t] = 0.0
        P[t, :, t] = self.available[t].astype(np.float64)
        R[t] = 0.0
        self.terminal = terminal
        self.P, self.R = P, R
        self.r_sa = np.einsum("sat,sat->sa", P, R)
        self.state_names = _names(state_names, n_states, "s", "state_names")
        self.action_names = _names(action_names, n_actions, "a", "action_names")

    # -------------------------------------------------------------------------------------------- basics
    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def __repr__(self) -> str:
        return (f"FiniteMDP(states={self.n_states}, actions={self.n_actions}, gamma={self.gamma:g}, "
                f"terminal={int(self.terminal.sum())})")

    def with_gamma(self, gamma: float) -> FiniteMDP:
        """The same MDP with another discount factor."""
        return FiniteMDP(self.P, self.R, gamma, self.available, self.terminal, self.state_names, self.action_names)

    def check_policy(self, policy: Any) -> np.ndarray:
        """Return ``policy`` as a stochastic matrix ``pi[s, a]`` of shape ``(S, A)``.

        ``policy`` is either deterministic (shape ``(S,)`` of action indices) or stochastic (shape
        ``(S, A)``, rows summing to 1). Choosing an unavailable action raises ``ValueError``."""
        policy = np.asarray(policy)
        S, A = self.n_states, self.n_actions
        if policy.shape == (S,):
            if not np.issubdtype(policy.dtype, np.integer):
                raise TypeError(f"a deterministic policy holds integer actions, got dtype {policy.dtype}")
            if policy.min() < 0 or policy.max() >= A:
                raise ValueError(f"policy actions must lie in [0, {A}), got {policy.min()}..{policy.max()}")
            pi = np.zeros((S, A))
            pi[np.arange(S), policy] = 1.0
        elif policy.shape == (S, A):
            pi = policy.astype(np.float64)
            if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0, atol=ROW_SUM_ATOL):
                raise ValueError("a stochastic policy needs non-negative rows pi[s, :] summing to 1")
        else:
            raise ValueError(f"policy must have shape ({S},) (deterministic) or ({S}, {A}) (stochastic), "
                             f"got {policy.shape}")
        bad = (pi > 0) & ~self.available & ~self.terminal[:, None]
        if bad.any():
            s, a = np.argwhere(bad)[0]
            raise ValueError(f"the policy takes action {self.action_names[a]} ({a}) in state "
                             f"{self.state_names[s]} ({s}), where it is not available")
        return pi

    # -------------------------------------------------------------------------------------------- gym
    @classmethod
    def from_gym(cls, env: Any, gamma: float) -> FiniteMDP:
        """Build the MDP of a Gymnasium toy-text env from its model ``env.unwrapped.P``.

        Works for FrozenLake, FrozenLake8x8, Taxi and CliffWalking, whose ``P[s][a]`` is a list of
        ``(probability, next_state, reward, terminated)`` tuples. Every state entered by a
        terminating transition is made terminal (absorbing, zero reward afterwards). The env's time
        limit is not part of the model (see :func:`policy_evaluation` with ``horizon``).
        Introduced in chapter 5.
        """
        import gymnasium as gym

        model = getattr(getattr(env, "unwrapped", env), "P", None)
        if not isinstance(model, dict) or not isinstance(env.observation_space, gym.spaces.Discrete) \
                or not isinstance(env.action_space, gym.spaces.Discrete):
            raise TypeError(f"{env} has no tabular model: FiniteMDP.from_gym needs a toy-text env with Discrete "
                            f"spaces and a model dict env.unwrapped.P (FrozenLake, Taxi, CliffWalking)")
        S, A = int(env.observation_space.n), int(env.action_space.n)
        P = np.zeros((S, A, S))
        R = np.zeros((S, A, S))
        terminal = np.zeros(S, dtype=bool)
        for s, row in model.items():
            for a, outcomes in row.items():
                for prob, s2, reward, done in outcomes:
                    P[s, a, s2] += prob
                    R[s, a, s2] = reward  # one reward per (s, a, s') in these envs
                    terminal[s2] |= bool(done)
        return cls(P, R, gamma, terminal=terminal)


def check_gamma(gamma: Any) -> float:
    """Validate a discount factor: a number in ``[0, 1]``."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise TypeError(f"gamma must be a number in [0, 1], got {type(gamma).__name__}")
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return float(gamma)


def _available_mask(available: Any, n_states: int, n_actions: int) -> np.ndarray:
    if available is None:
        return np.ones((n_states, n_actions), dtype=bool)
    if isinstance(available, np.ndarray) and available.dtype == bool:
        mask = available
        if mask.shape != (n_states, n_actions):
            raise ValueError(f"available must have shape (S, A) = {(n_states, n_actions)}, got {mask.shape}")
        mask = mask.copy()
    else:
        if len(available) != n_states:
            raise ValueError(f"available needs one list of actions per state ({n_states}), got {len(available)}")
        mask = np.zeros((n_states, n_actions), dtype=bool)
        for s, actions in enumerate(available):
            for a in actions:
                if not 0 <= int(a) < n_actions:
                    raise ValueError(f"available action {a} of state {s} is outside [0, {n_actions})")
                mask[s, int(a)] = True
    empty = ~mask.any(axis=1)
    if empty.any():
        raise ValueError(f"state {int(np.flatnonzero(empty)[0])} has no available action; every state needs one "
                         f"(make a terminal state absorbing instead)")
    return mask


def _names(names: Sequence[str] | None, n: int, prefix: str, what: str) -> list[str]:
    if names is None:
        return [f"{prefix}{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{what} needs {n} names, got {len(names)}")
    return [str(x) for x in names]


# ---------------------------------------------------------------------------------------------- Markov chains
def check_transition_matrix(P: Any) -> np.ndarray:
    """Validate a Markov chain's transition matrix ``P[s, s']`` (square, non-negative, rows sum to 1)."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"a transition matrix must be square (S, S), got shape {P.shape}")
    if np.any(P < 0):
        raise ValueError("a transition matrix cannot hold negative probabilities")
    sums = P.sum(axis=1)
    bad = ~np.isclose(sums, 1.0, rtol=0.0, atol=ROW_SUM_ATOL)
    if bad.any():
        s = int(np.flatnonzero(bad)[0])
        raise ValueError(f"row {s} of the transition matrix sums to {sums[s]:.6g}, expected 1")
    return P


def sample_chain(P: Any, start: int, n_steps: int, rng: np.random.Generator,
                 terminal: Sequence[int] = ()) -> np.ndarray:
    """Sample one trajectory of a Markov chain. Introduced in chapter 1.

    Args:
        P: transition matrix ``(S, S)``.
        start: the first state.
        n_steps: the most transitions to take.
        rng: a seeded NumPy ``Generator``.
        terminal: states that end the trajectory when reached.

    Returns:
        the visited states, shape ``(T + 1,)`` with ``T <= n_steps`` (shorter if a terminal state is hit).
    """
    P = check_transition_matrix(P)
    cumulative = np.cumsum(P, axis=1)
    stops = np.zeros(len(P), dtype=bool)
    stops[list(terminal)] = True
    u = rng.random(n_steps)  # one draw per step, all at once
    states = [int(start)]
    for t in range(n_steps):
        if stops[states[-1]]:
            break
        states.append(int(min(np.searchsorted(cumulative[states[-1]], u[t], side="right"), len(P) - 1)))
    return np.asarray(states, dtype=np.int64)


def sample_chains(P: Any, start: int, n_steps: int, n_chains: int, rng: np.random.Generator) -> np.ndarray:
    """Sample ``n_chains`` trajectories in parallel (vectorised over chains). Introduced in chapter 1.

    Returns the states, shape ``(n_chains, n_steps + 1)``."""
    P = check_transition_matrix(P)
    cumulative = np.cumsum(P, axis=1)
    cumulative[:, -1] = 1.0
    states = np.empty((n_chains, n_steps + 1), dtype=np.int64)
    states[:, 0] = start
    for t in range(n_steps):
        u = rng.random(n_chains)
        states[:, t + 1] = (cumulative[states[:, t]] <= u[:, None]).sum(axis=1)
    return states


def stationary_distribution(P: Any) -> np.ndarray:
    """The distribution ``mu`` with ``mu P = mu``, ``sum(mu) = 1`` (shape ``(S,)``). Introduced in chapter 1.

    Solved as a least-squares linear system; it is unique when the chain is irreducible."""
    P = check_transition_matrix(P)
    S = len(P)
    A = np.vstack([P.T - np.eye(S), np.ones((1, S))])
    b = np.zeros(S + 1)
    b[-1] = 1.0
    mu, *_ = np.linalg.lstsq(A, b, rcond=None)
    return np.clip(mu, 0.0, None) / np.clip(mu, 0.0, None).sum()


# ---------------------------------------------------------------------------------------------- reward processes
def _check_mrp(P: Any, r: Any, gamma: float, terminal: Any) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Validated ``(P, r, gamma, keep)`` of a reward process; ``keep`` masks the non-terminal states."""
    P = check_transition_matrix(P)
    gamma = check_gamma(gamma)
    r = np.asarray(r, dtype=np.float64)
    if r.shape != (len(P),):
        raise ValueError(f"r must have shape ({len(P)},) to match P {P.shape}, got {r.shape}")
    return P, r, gamma, ~_terminal_mask(terminal, len(P))


def mrp_values(P: Any, r: Any, gamma: float, terminal: Any = None) -> np.ndarray:
    """Exact values of a Markov reward process, ``V = (I - gamma P)^-1 r``. Introduced in chapter 1.

    Args:
        P: transition matrix ``(S, S)``.
        r: expected reward on leaving each state, ``(S,)``.
        gamma: discount in ``[0, 1]``; ``gamma = 1`` needs every state to reach a terminal state.
        terminal: optional boolean mask ``(S,)`` or list of terminal states: their value is fixed at 0
            and the system is solved on the other states.
    """
    P, r, gamma, keep = _check_mrp(P, r, gamma, terminal)
    V = np.zeros(len(P))
    Pk = P[np.ix_(keep, keep)]
    matrix = np.eye(len(Pk)) - gamma * Pk
    try:
        V[keep] = np.linalg.solve(matrix, r[keep])
    except np.linalg.LinAlgError as exc:
        raise ValueError("I - gamma P is singular: with gamma = 1 some states never reach a terminal state; "
                         "use gamma < 1 or mark the terminal states") from exc
    return V


def mrp_values_iterative(P: Any, r: Any, gamma: float, tol: float = 1e-10, max_iter: int = 100_000,
                         terminal: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Values of a Markov reward process by repeated Bellman backups ``V <- r + gamma P V``.
    Introduced in chapter 1.

    Returns ``(V, history)``: the values ``(S,)`` and the values after each sweep ``(iterations + 1, S)``
    (row 0 is the all-zero start). Stops when no value changes by more than ``tol``."""
    P, r, gamma, keep = _check_mrp(P, r, gamma, terminal)
    V = np.zeros(len(P))
    history = [V]
    for _ in range(max_iter):
        new = np.where(keep, r + gamma * P @ V, 0.0)
        history.append(new)
        if np.max(np.abs(new - V)) <= tol:
            return new, np.array(history)
        V = new
    raise RuntimeError(f"MRP evaluation did not converge to {tol:g} in {max_iter} sweeps")


def _terminal_mask(terminal: Any, n: int) -> np.ndarray:
    if terminal is None:
        return np.zeros(n, dtype=bool)
    terminal = np.asarray(terminal)
    if terminal.dtype == bool:
        if terminal.shape != (n,):
            raise ValueError(f"terminal mask must have shape ({n},), got {terminal.shape}")
        return terminal
    mask = np.zeros(n, dtype=bool)
    mask[terminal.astype(np.int64)] = True
    return mask


# ---------------------------------------------------------------------------------------------- policies
def policy_evaluation(mdp: FiniteMDP, policy: Any, horizon: int | None = None) -> np.ndarray:
    """The exact value ``V_pi`` (shape ``(S,)``) of a policy. Introduced in chapter 1.

    Args:
        mdp: the MDP.
        policy: deterministic ``(S,)`` action indices or stochastic ``(S, A)`` probabilities.
        horizon: ``None`` for the infinite-horizon value, by one linear solve of
            ``(I - gamma P_pi) V = r_pi`` on the non-terminal states (terminal values are 0, which makes
            ``gamma = 1`` well posed when the policy reaches a terminal state surely). An integer ``T``
            gives the expected discounted return of the first ``T`` steps only, the value of an
            episode cut by a time limit of ``T`` steps (FrozenLake: 100 steps, 8x8: 200).
    """
    pi = mdp.check_policy(policy)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = np.einsum("sa,sa->s", pi, mdp.r_sa)
    if horizon is not None:
        if not isinstance(horizon, (int, np.integer)) or horizon < 0:
            raise ValueError(f"horizon must be a non-negative integer or None, got {horizon!r}")
        V = np.zeros(mdp.n_states)
        for _ in range(horizon):
            V = r_pi + mdp.gamma * P_pi @ V
        return V
    return mrp_values(P_pi, r_pi, mdp.gamma, terminal=mdp.terminal)


def q_from_v(mdp: FiniteMDP, V: np.ndarray) -> np.ndarray:
    """One-step lookahead ``Q[s, a] = sum_s' P[s, a, s'] (R[s, a, s'] + gamma V[s'])``, shape ``(S, A)``;
    unavailable actions get ``-inf``. Introduced in chapter 1."""
    Q = mdp.r_sa + mdp.gamma * np.einsum("sat,t->sa", mdp.P, V)
    return np.where(mdp.available, Q, -np.inf)


def greedy_policy(mdp: FiniteMDP, V: np.ndarray | None = None, Q: np.ndarray | None = None) -> np.ndarray:
    """The greedy deterministic policy ``(S,)`` for state values ``V`` (by one-step lookahead) or for
    Q-values ``Q`` ``(S, A)``. Unavailable actions are never chosen; ties go to the lowest index.
    Introduced in chapter 1."""
    if (V is None) == (Q is None):
        raise ValueError("give exactly one of V (state values) or Q (action values)")
    if Q is None:
        Q = q_from_v(mdp, np.asarray(V, dtype=np.float64))
    Q = np.asarray(Q, dtype=np.float64)
    if Q.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(f"Q must have shape {(mdp.n_states, mdp.n_actions)}, got {Q.shape}")
    return np.argmax(np.where(mdp.available, Q, -np.inf), axis=1)


def success_probability(mdp: FiniteMDP, policy: Any, goal: Any, start: int | np.ndarray = 0,
                        horizon: int | None = None) -> float:
    """The probability that ``policy`` reaches a ``goal`` state from ``start`` (within ``horizon`` steps).

    ``goal`` is a state index, a list of them or a boolean mask; ``start`` a state or a start
    distribution ``(S,)``. Exact (no sampling): the value of the policy in a copy of the MDP whose only
    reward is 1 on entering a goal state, with ``gamma = 1``. Introduced in chapter 5."""
    goal_mask = _terminal_mask(goal, mdp.n_states)
    if not np.all(mdp.terminal[goal_mask]):
        raise ValueError("goal states must be terminal states of the MDP")
    reach = FiniteMDP(mdp.P, np.broadcast_to(goal_mask.astype(float), mdp.P.shape), 1.0, mdp.available,
                      mdp.terminal, mdp.state_names, mdp.action_names)
    V = policy_evaluation(reach, policy, horizon=horizon)
    if np.ndim(start) == 0:
        return float(V[int(start)])
    return float(np.asarray(start, dtype=np.float64) @ V)


# ---------------------------------------------------------------------------------------------- solving
@dataclass
class SolveResult:
    """What :func:`value_iteration` and :func:`q_iteration` return.

    Attributes:
        V: optimal state values ``(S,)``.
        Q: optimal action values ``(S, A)`` (``-inf`` for unavailable actions).
        policy: a greedy optimal policy ``(S,)``.
        iterations: sweeps done.
        converged: whether the last sweep changed no value by more than ``tol``.
        deltas: the largest value change of each sweep, ``(iterations,)``.
        history: values after each sweep: ``(iterations + 1, S)`` for value iteration or
            ``(iterations + 1, S, A)`` for Q-iteration (row 0 is the start); ``None`` if not kept.
    """

    V: np.ndarray
    Q: np.ndarray
    policy: np.ndarray
    iterations: int
    converged: bool
    deltas: np.ndarray
    history: np.ndarray | None = field(default=None, repr=False)


def value_iteration(mdp: FiniteMDP, tol: float = 1e-8, max_iter: int = 100_000, horizon: int | None = None,
                    V0: np.ndarray | None = None, keep_history: bool = True) -> SolveResult:
    """Solve ``mdp`` by value iteration, ``V <- max_a sum_s' P (R + gamma V)``. Introduced in chapter 1.

    Each sweep is one vectorised backup of every state (an ``einsum`` over ``P``). Unavailable
    actions get ``-inf`` and never win the max. Stops when the largest change is at most ``tol``
    (or after ``max_iter`` sweeps, with ``converged=False``).

    ``horizon=T`` instead does exactly ``T`` sweeps from ``V = 0``: ``V`` is then the optimal value of
    the first ``T`` steps and ``policy`` the optimal *first* action with ``T`` steps to go (finite-horizon
    optimal policies change with the steps left).
    """
    return _solve(mdp.P, mdp.r_sa, mdp.gamma, mdp.available, "v", tol, max_iter, horizon, V0, keep_history)


def q_iteration(mdp: FiniteMDP, tol: float = 1e-8, max_iter: int = 100_000, horizon: int | None = None,
                Q0: np.ndarray | None = None, keep_history: bool = True) -> SolveResult:
    """Solve ``mdp`` by Q-iteration, ``Q[s, a] <- sum_s' P (R + gamma max_a' Q[s', a'])``.
    Introduced in chapter 1.

    The same fixed point as :func:`value_iteration`, iterated on the ``(S, A)`` table; ``history`` holds
    Q-tables. Arguments as for :func:`value_iteration`."""
    return _solve(mdp.P, mdp.r_sa, mdp.gamma, mdp.available, "q", tol, max_iter, horizon, Q0, keep_history)


def solve_arrays(P: np.ndarray, r_sa: np.ndarray, gamma: float, available: np.ndarray | None = None,
                 method: str = "v", tol: float = 1e-8, max_iter: int = 100_000, start: np.ndarray | None = None,
                 keep_history: bool = False) -> SolveResult:
    """Value iteration (``method="v"``) or Q-iteration (``"q"``) on raw arrays.

    Unlike :class:`FiniteMDP` the rows ``P[s, a]`` may sum to less than 1 (a learned model whose
    unvisited pairs have no data: their rows are 0, so their value is their mean reward, 0).
    ``start`` warm-starts ``V`` ``(S,)`` or ``Q`` ``(S, A)``. Introduced in chapter 5."""
    if available is None:
        available = np.ones(r_sa.shape, dtype=bool)
    return _solve(P, r_sa, gamma, available, method, tol, max_iter, None, start, keep_history)


def _solve(P, r_sa, gamma, available, method, tol, max_iter, horizon, start, keep_history) -> SolveResult:
    S, A = r_sa.shape
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if horizon is not None and (not isinstance(horizon, (int, np.integer)) or horizon < 0):
        raise ValueError(f"horizon must be a non-negative integer or None, got {horizon!r}")
    sweeps = max_iter if horizon is None else int(horizon)
    neg_inf = np.where(available, 0.0, -np.inf)  # added to Q: masks unavailable actions out of the max
    if method == "v":
        X = np.zeros(S) if start is None else np.array(start, dtype=np.float64)
    elif method == "q":
        X = np.zeros((S, A)) if start is None else np.where(available, np.array(start, dtype=np.float64), 0.0)
    else:
        raise ValueError(f"method must be 'v' (value iteration) or 'q' (Q-iteration), got {method!r}")
    history = [X] if keep_history else None
    deltas = []
    converged = False
    previous = X
    for _ in range(sweeps):
        previous = X
        if method == "v":
            new = (r_sa + gamma * np.einsum("sat,t->sa", P, X) + neg_inf).max(axis=1)
        else:
            v_next = (X + neg_inf).max(axis=1)
            new = np.where(available, r_sa + gamma * np.einsum("sat,t->sa", P, v_next), 0.0)
        delta = float(np.max(np.abs(new - X)))
        deltas.append(delta)
        X = new
        if keep_history:
            history.append(X)
        if horizon is None and delta <= tol:
            converged = True
            break
    if horizon is not None:
        converged = True
    if method == "v":
        V = X
        # With a horizon, the first action with T steps to go looks ahead on the (T - 1)-step values.
        Q = r_sa + gamma * np.einsum("sat,t->sa", P, previous if horizon is not None else V) + neg_inf
    else:
        Q = X + neg_inf
        V = Q.max(axis=1)
    policy = np.argmax(Q, axis=1)
    return SolveResult(V=V, Q=Q, policy=policy, iterations=len(deltas), converged=converged,
                       deltas=np.asarray(deltas), history=None if history is None else np.array(history))
