"""Exact-answer tests of rlbook.mdp: Markov chains, reward processes, policy evaluation, value iteration."""

import time

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbook.envs.toy import three_state_mdp
from rlbook.mdp import (
    FiniteMDP,
    greedy_policy,
    mrp_values,
    mrp_values_iterative,
    policy_evaluation,
    q_from_v,
    q_iteration,
    sample_chain,
    sample_chains,
    stationary_distribution,
    success_probability,
    value_iteration,
)

WEATHER = np.array([[0.8, 0.2], [0.1, 0.9]])  # sunny, rainy


def lake(env_id: str, gamma: float) -> tuple[FiniteMDP, np.ndarray]:
    env = gym.make(env_id)
    goal = env.unwrapped.desc.flatten() == b"G"
    return FiniteMDP.from_gym(env, gamma), goal


# ---------------------------------------------------------------------------------------------- chains and MRPs
def test_stationary_distribution_of_two_state_chain():
    # mu_sunny * 0.2 = mu_rainy * 0.1  ->  mu = (1/3, 2/3)
    np.testing.assert_allclose(stationary_distribution(WEATHER), [1 / 3, 2 / 3], atol=1e-12)


def test_sampled_chains_visit_states_at_the_stationary_rates():
    rng = np.random.default_rng(0)
    states = sample_chains(WEATHER, start=0, n_steps=2000, n_chains=200, rng=rng)
    assert states.shape == (200, 2001)
    rainy = (states[:, 1000:] == 1).mean()
    assert abs(rainy - 2 / 3) < 0.01
    single = sample_chain(WEATHER, 0, 50_000, np.random.default_rng(1))
    assert abs((single == 1).mean() - 2 / 3) < 0.02


def test_sample_chain_stops_at_terminal_and_is_seeded():
    P = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    a = sample_chain(P, 0, 1000, np.random.default_rng(3), terminal=[2])
    b = sample_chain(P, 0, 1000, np.random.default_rng(3), terminal=[2])
    np.testing.assert_array_equal(a, b)
    assert a[-1] == 2 and (a[:-1] != 2).all()


def test_mrp_values_closed_form_and_iteration_agree():
    rng = np.random.default_rng(0)
    P = rng.random((6, 6))
    P /= P.sum(axis=1, keepdims=True)
    r = rng.normal(size=6)
    V = mrp_values(P, r, 0.9)
    np.testing.assert_allclose(V, np.linalg.inv(np.eye(6) - 0.9 * P) @ r, atol=1e-12)
    V_it, history = mrp_values_iterative(P, r, 0.9, tol=1e-12)
    np.testing.assert_allclose(V_it, V, atol=1e-9)
    assert history.shape[1] == 6 and np.all(history[0] == 0)


def test_mrp_hand_solved_chain_with_gamma_one():
    # s0 -> s1 -> s2 (terminal), reward 1 per step: V = (2, 1, 0) without discounting.
    P = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 1.0]])
    np.testing.assert_allclose(mrp_values(P, [1, 1, 0], 1.0, terminal=[2]), [2, 1, 0])
    with pytest.raises(ValueError, match="singular"):
        mrp_values(P, [1, 1, 0], 1.0)


# ---------------------------------------------------------------------------------------------- validation
def test_rows_not_summing_to_one_name_the_row():
    P = np.full((2, 1, 2), 0.5)
    P[1, 0] = [0.5, 0.4]
    with pytest.raises(ValueError, match=r"P\[1, 0, :\] sum to 0.9"):
        FiniteMDP(P, 0.0 * P, 0.9)


def test_shape_mismatch_and_gamma_and_negative():
    P = np.full((2, 1, 2), 0.5)
    with pytest.raises(ValueError, match=r"R must have shape \(2, 1, 2\).*got \(3,\)"):
        FiniteMDP(P, np.zeros(3), 0.9)
    with pytest.raises(ValueError, match=r"P must have shape \(S, A, S\)"):
        FiniteMDP(np.full((2, 1, 3), 1 / 3), np.zeros((2, 1)), 0.9)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\], got 1.5"):
        FiniteMDP(P, np.zeros((2, 1)), 1.5)
    with pytest.raises(TypeError, match="gamma must be a number"):
        FiniteMDP(P, np.zeros((2, 1)), "0.9")
    bad = P.copy()
    bad[0, 0] = [1.5, -0.5]
    with pytest.raises(ValueError, match="negative transition probability"):
        FiniteMDP(bad, np.zeros((2, 1)), 0.9)
    with pytest.raises(ValueError, match="state 1 has no available action"):
        FiniteMDP(P, np.zeros((2, 1)), 0.9, available=[[0], []])


def test_unavailable_action_in_policy_is_rejected():
    mdp = three_state_mdp(0.9)
    with pytest.raises(ValueError, match="action a1 .* in state s1"):
        policy_evaluation(mdp, np.array([0, 1, 1]))


def test_from_gym_needs_a_tabular_model():
    with pytest.raises(TypeError, match="no tabular model"):
        FiniteMDP.from_gym(gym.make("CartPole-v1"), 0.9)


def test_from_gym_marks_terminal_states():
    mdp, goal = lake("FrozenLake-v1", 0.9)
    assert sorted(np.flatnonzero(mdp.terminal)) == [5, 7, 11, 12, 15]
    cliff = FiniteMDP.from_gym(gym.make("CliffWalking-v1"), 1.0)
    assert np.flatnonzero(cliff.terminal).tolist() == [47]
    taxi = FiniteMDP.from_gym(gym.make("Taxi-v4"), 0.9)
    assert taxi.n_states == 500 and taxi.terminal.sum() == 4  # taxi and passenger at the destination


# ---------------------------------------------------------------------------------------------- the 3-state MDP
def test_three_state_optimal_action_in_s1_flips_with_gamma():
    for gamma, best_s1 in ((0.90, 0), (0.95, 2)):
        mdp = three_state_mdp(gamma)
        v = value_iteration(mdp, tol=1e-10)
        q = q_iteration(mdp, tol=1e-10)
        assert v.policy[1] == best_s1 and q.policy[1] == best_s1
        assert q.policy[0] == 0 and q.policy[2] == 1
        np.testing.assert_allclose(v.V, q.V, atol=1e-8)
        assert np.isneginf(q.Q[1, 1]) and np.isneginf(q.Q[2, 0])
    q90 = q_iteration(three_state_mdp(0.90), tol=1e-12).Q
    # Hand check of the fixed point for gamma 0.9: Q[s1, a0] = 0 (stay forever), and the Bellman equation holds.
    assert q90[1, 0] == pytest.approx(0.0, abs=1e-9)
    assert q90[2, 1] == pytest.approx(0.8 * (40 + 0.9 * q90[0].max()) + 0.1 * 0.9 * q90[1].max()
                                      + 0.1 * 0.9 * q90[2].max(), abs=1e-9)


# ---------------------------------------------------------------------------------------------- FrozenLake
def test_value_iteration_equals_policy_evaluation_on_frozenlake():
    for env_id in ("FrozenLake-v1", "FrozenLake8x8-v1"):
        mdp, _ = lake(env_id, 0.95)
        result = value_iteration(mdp, tol=1e-12)
        assert result.converged
        np.testing.assert_allclose(policy_evaluation(mdp, result.policy), result.V, atol=1e-9)
        np.testing.assert_allclose(q_iteration(mdp, tol=1e-12).V, result.V, atol=1e-9)
        # Stochastic policy form gives the same value.
        pi = np.eye(4)[result.policy]
        np.testing.assert_allclose(policy_evaluation(mdp, pi), result.V, atol=1e-9)


def test_frozenlake_optimal_success_probabilities():
    # The numbers quoted for FrozenLake are success probabilities within the time limit
    # (100 steps on 4x4, 200 on 8x8). Computed exactly here:
    # 4x4: the optimal stationary policy (gamma >= 0.98) reaches the goal within 100 steps with
    #      probability 0.74016; the best non-stationary (finite-horizon) policy 0.74419; without a
    #      time limit the same stationary policy succeeds with probability 14/17 = 0.82353.
    mdp, goal = lake("FrozenLake-v1", 0.99)
    policy = value_iteration(mdp).policy
    assert 0.7400 < success_probability(mdp, policy, goal, horizon=100) < 0.7403
    assert success_probability(mdp, policy, goal) == pytest.approx(14 / 17, abs=1e-9)
    reach = FiniteMDP(mdp.P, np.broadcast_to(goal.astype(float), mdp.P.shape), 1.0, terminal=mdp.terminal)
    assert 0.7441 < value_iteration(reach, horizon=100).V[0] < 0.7443
    # 8x8: the finite-horizon optimum within 200 steps is 0.91322 (the "about 0.91"); the stationary
    # greedy policy of gamma 0.995 gets 0.89357 within 200 steps.
    mdp8, goal8 = lake("FrozenLake8x8-v1", 0.995)
    reach8 = FiniteMDP(mdp8.P, np.broadcast_to(goal8.astype(float), mdp8.P.shape), 1.0, terminal=mdp8.terminal)
    assert 0.9131 < value_iteration(reach8, horizon=200).V[0] < 0.9133
    assert 0.8935 < success_probability(mdp8, value_iteration(mdp8).policy, goal8, horizon=200) < 0.8937


def test_horizon_policy_evaluation_matches_monte_carlo():
    mdp, goal = lake("FrozenLake-v1", 1.0)
    policy = value_iteration(mdp.with_gamma(0.99)).policy
    exact = success_probability(mdp, policy, goal, horizon=100)
    env = gym.make_vec("FrozenLake-v1", num_envs=32, vectorization_mode="sync")
    obs, _ = env.reset(seed=0)
    wins, episodes = 0.0, 0
    done_prev = np.zeros(32, dtype=bool)
    while episodes < 2000:
        obs, reward, term, trunc, _ = env.step(policy[obs])
        ended = (term | trunc) & ~done_prev
        wins += reward[ended].sum()
        episodes += int(ended.sum())
        done_prev = term | trunc
    assert abs(wins / episodes - exact) < 3 * np.sqrt(exact * (1 - exact) / episodes)


def test_exact_value_iteration_on_8x8_is_fast():
    mdp, _ = lake("FrozenLake8x8-v1", 0.99)
    value_iteration(mdp, keep_history=False)  # warm up
    start = time.perf_counter()
    result = value_iteration(mdp, tol=1e-8, keep_history=False)
    assert time.perf_counter() - start < 0.1
    assert result.converged


def test_history_records_convergence():
    mdp = three_state_mdp(0.9)
    result = value_iteration(mdp)
    assert result.history.shape == (result.iterations + 1, 3)
    assert len(result.deltas) == result.iterations and result.deltas[-1] <= 1e-8
    assert q_iteration(mdp).history.shape[1:] == (3, 3)
    with pytest.raises(ValueError, match="exactly one of V"):
        greedy_policy(mdp)


# ---------------------------------------------------------------------------------------------- properties
@st.composite
def random_mdps(draw):
    S = draw(st.integers(2, 6))
    A = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gamma = draw(st.floats(0.0, 0.97))
    rng = np.random.default_rng(seed)
    P = rng.random((S, A, S)) ** 3
    P /= P.sum(axis=2, keepdims=True)
    available = rng.random((S, A)) < 0.7
    available[np.arange(S), rng.integers(A, size=S)] = True
    return FiniteMDP(P, rng.normal(size=(S, A, S)), gamma, available=available)


@settings(max_examples=40, deadline=None)
@given(random_mdps())
def test_value_iteration_is_the_value_of_its_greedy_policy(mdp):
    result = value_iteration(mdp, tol=1e-11)
    assert mdp.available[np.arange(mdp.n_states), result.policy].all()
    np.testing.assert_allclose(policy_evaluation(mdp, result.policy), result.V, atol=1e-7)
    # Greedy one-step lookahead on V gives back the same policy (policy improvement finds nothing new).
    np.testing.assert_allclose(greedy_policy(mdp, V=result.V), result.policy)
    np.testing.assert_allclose(q_iteration(mdp, tol=1e-11).V, result.V, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(random_mdps(), st.integers(0, 30))
def test_finite_horizon_evaluation_is_truncated_sum(mdp, horizon):
    rng = np.random.default_rng(horizon)
    pi = rng.random((mdp.n_states, mdp.n_actions)) * mdp.available
    pi /= pi.sum(axis=1, keepdims=True)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = np.einsum("sa,sa->s", pi, mdp.r_sa)
    expected = sum(mdp.gamma**t * np.linalg.matrix_power(P_pi, t) @ r_pi for t in range(horizon))
    np.testing.assert_allclose(policy_evaluation(mdp, pi, horizon=horizon), expected + 0 * r_pi, atol=1e-9)


def test_iterative_mrp_values_with_terminal_states_match_the_linear_solve():
    # A chain 0 -> 1 -> 2 (terminal) with a self-loop on 0: the terminal state keeps value 0, and the
    # iteration must not stop early because the terminal state's value never changes.
    P = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    r = np.array([1.0, 2.0, 5.0])
    exact = mrp_values(P, r, 0.9, terminal=[2])
    V, history = mrp_values_iterative(P, r, 0.9, tol=1e-12, terminal=[2])
    np.testing.assert_allclose(V, exact, atol=1e-9)
    assert V[2] == 0.0 and exact[2] == 0.0
    np.testing.assert_array_equal(history[0], 0.0)
    np.testing.assert_array_equal(history[-1], V)
    assert len(history) > 20  # one row per sweep: the self-loop converges slowly


def test_q_from_v_masks_unavailable_actions_with_minus_infinity():
    mdp = three_state_mdp(0.9)
    Q = q_from_v(mdp, np.zeros(3))
    assert np.all(Q[~mdp.available] == -np.inf)
    np.testing.assert_allclose(Q[mdp.available], mdp.r_sa[mdp.available])


@pytest.mark.parametrize("solver", [value_iteration, q_iteration])
def test_solvers_report_convergence_honestly(solver):
    mdp = three_state_mdp(0.95)
    cut = solver(mdp, tol=1e-12, max_iter=3)
    assert not cut.converged and cut.iterations == 3
    assert solver(mdp, tol=1e-8).converged
    assert solver(mdp, horizon=2).converged  # a finite horizon is done when its sweeps are


def test_finite_horizon_q_looks_ahead_on_the_shorter_horizon():
    mdp = three_state_mdp(0.9)
    for T in (1, 2, 5):
        result = value_iteration(mdp, horizon=T)
        shorter = value_iteration(mdp, horizon=T - 1).V if T > 1 else np.zeros(3)
        expected = q_from_v(mdp, shorter)
        np.testing.assert_allclose(result.Q[mdp.available], expected[mdp.available])
        np.testing.assert_array_equal(result.policy, np.argmax(expected, axis=1))


def test_q_iteration_history_keeps_unavailable_entries_at_zero():
    mdp = three_state_mdp(0.9)
    result = q_iteration(mdp, Q0=np.full((3, 3), 7.0))
    assert all(np.all(Q[~mdp.available] == 0.0) for Q in result.history)
    np.testing.assert_allclose(result.V, value_iteration(mdp).V, atol=1e-6)


def test_solvers_stop_at_the_first_sweep_that_changes_nothing_by_more_than_tol():
    """A chain s0 -> s1 -> end (reward 1 on leaving s1), gamma 0.5: the sweeps change the values by 1, then by
    exactly 0.5, then by 0. With tol 0.5 the second sweep already counts as converged ("no value changed by
    more than tol"), so both solvers stop after two sweeps, not three."""
    P = np.zeros((3, 1, 3))
    P[0, 0, 1] = P[1, 0, 2] = P[2, 0, 2] = 1.0
    R = np.zeros((3, 1, 3))
    R[1, 0, 2] = 1.0
    mdp = FiniteMDP(P, R, 0.5, terminal=np.array([False, False, True]))
    result = value_iteration(mdp, tol=0.5)
    assert result.converged and result.iterations == 2 and list(result.deltas) == [1.0, 0.5]
    V, history = mrp_values_iterative(P[:, 0], np.array([0.0, 1.0, 0.0]), 0.5, tol=0.5,
                                      terminal=np.array([False, False, True]))
    assert len(history) == 3 and V.tolist() == [0.5, 1.0, 0.0]
