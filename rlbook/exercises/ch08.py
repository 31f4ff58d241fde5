"""Checks for the exercises of chapter 8 (trading).

Usage in the chapter: ``from rlbook.exercises import ch08``, then ``ch08.trade_rewards.check(my_trade_rewards)``.
Each check computes the expected answer with :class:`~rlbook.envs.stocks.StocksEnv` or
:class:`~rlbook.envs.stocks.Backtest` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbook.envs.stocks import Backtest, Prices, StocksEnv
from rlbook.exercises import WrongAnswer, attempted, exercise

#: The trades of "A trade's rewards": (closes from the buy bar to the sell bar, commission in percent).
TRADE_CASES = (([100.0, 102.0, 101.0, 105.0], 0.1), ([50.0, 45.0, 48.0], 0.1), ([20.0, 20.5], 0.0),
               ([10.0, 11.0, 12.1, 13.31, 12.0, 12.5], 0.25))


def _numbers(value: Any, name: str, length: int, case: str) -> np.ndarray:
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise WrongAnswer(f"{case}, {name} returned {type(value).__name__}; return a list or array of "
                          "numbers.") from None
    if out.shape != (length,):
        raise WrongAnswer(f"{case}, {name} returned shape {out.shape}; expected {length} numbers (one per step).")
    return out


def env_trade_rewards(closes: list[float], commission: float) -> np.ndarray:
    """The rewards :class:`StocksEnv` gives for Buy at ``closes[0]``, Skip while holding, Close at
    ``closes[-1]`` (window of one bar, per-bar rewards)."""
    closes = np.asarray(closes, float)
    opens = np.r_[closes[0], closes[:-1]]
    prices = Prices(opens, np.maximum(opens, closes), np.minimum(opens, closes), closes, np.ones(len(closes)))
    # one more bar after the sale, so that the close is not the end of the data
    prices = Prices(*(np.r_[a, a[-1:]] for a in (prices.open, prices.high, prices.low, prices.close,
                                                 prices.volume)))
    env = StocksEnv(prices, bars=1, commission=commission, random_offset=False)
    env.reset(seed=0)
    actions = [StocksEnv.BUY] + [StocksEnv.SKIP] * (len(closes) - 2) + [StocksEnv.CLOSE]
    return np.array([env.step(a)[1] for a in actions])


@exercise("A trade's rewards", fill=("my_trade_rewards",))
def trade_rewards(my_trade_rewards: Any) -> str:
    """Check ``my_trade_rewards(closes, commission)``: the reward of each step of one trade in
    :class:`~rlbook.envs.stocks.StocksEnv` (buy at ``closes[0]``, hold, close at ``closes[-1]``), per-bar
    rewards in percent with ``commission`` percent per side; one number per step, ``len(closes)`` in all."""
    for closes, commission in TRADE_CASES:
        case = f"For closes {closes} and commission {commission:g} %"
        expected = env_trade_rewards(closes, commission)
        mine = _numbers(attempted(my_trade_rewards(list(closes), commission)), "my_trade_rewards", len(closes),
                        case)
        if np.allclose(mine, expected, atol=1e-9):
            continue
        c = np.asarray(closes)
        whole = 100 * (c[-1] - c[0]) / c[0] - 2 * commission
        if np.isclose(mine.sum(), whole) and not np.isclose(expected.sum(), whole):
            raise WrongAnswer(f"{case}, your rewards add up to the whole trade's return, "
                              f"{whole:.4f} %. StocksEnv pays each bar's change relative to the previous "
                              "close, and such percentages do not add up to the trade's return.")
        wrong = int(np.argmax(~np.isclose(mine, expected, atol=1e-9)))
        hint = ""
        if wrong == 0 or wrong == len(closes) - 1:
            hint = (" The buy step pays one commission and earns the next bar's change; the close step pays "
                    "the other and earns nothing (the position is gone when the next bar comes).")
        raise WrongAnswer(f"{case}, step {wrong}'s reward is {mine[wrong]:.4f}, expected "
                          f"{expected[wrong]:.4f}.{hint}")
    return (f"your rewards match StocksEnv's, step by step, on {len(TRADE_CASES)} trades "
            "(with and without commission)")


#: The reward sequences of "Max drawdown", as (length, seed, drift).
DRAWDOWN_CASES = ((50, 0, 0.0), (200, 1, 0.05), (30, 2, -0.2), (1, 3, 0.0))


@exercise("Max drawdown", fill=("my_max_drawdown",))
def max_drawdown(my_max_drawdown: Any) -> str:
    """Check ``my_max_drawdown(rewards)``: the largest fall of the cumulative reward below its running peak,
    counting the start (0) as a peak; compared with :attr:`~rlbook.envs.stocks.Backtest.max_drawdown`."""
    for length, seed, drift in DRAWDOWN_CASES:
        rewards = np.random.default_rng(seed).normal(drift, 1.0, length)
        if length == 1:
            rewards = np.array([-0.7])
        expected = Backtest(rewards, [], np.zeros(0)).max_drawdown
        mine = attempted(my_max_drawdown(rewards.copy()))
        case = f"For {length} rewards (seed {seed})"
        try:
            mine = float(mine)
        except (TypeError, ValueError):
            raise WrongAnswer(f"{case}, my_max_drawdown returned {type(mine).__name__}; return a number.") from None
        if np.isclose(mine, expected, atol=1e-9):
            continue
        equity = np.cumsum(rewards)
        late = float(np.max(np.maximum.accumulate(equity) - equity))
        if np.isclose(mine, late):
            raise WrongAnswer(f"{case}, you got {mine:.4f}, expected {expected:.4f}: a fall right from the start "
                              "counts too (the equity starts at 0 before the first reward).")
        if np.isclose(mine, -expected):
            raise WrongAnswer(f"{case}, you got {mine:.4f}: the drawdown is reported as a positive number.")
        raise WrongAnswer(f"{case}, you got {mine:.4f}, expected {expected:.4f}. Track the running maximum of the "
                          "cumulative reward and the largest gap below it.")
    return f"your drawdowns match Backtest.max_drawdown on {len(DRAWDOWN_CASES)} reward sequences"


__all__ = ["max_drawdown", "trade_rewards"]
