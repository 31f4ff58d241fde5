"""Stock prices and a trading environment that cannot see the future (chapter 8).

* :class:`Prices` -- open, high, low, close and volume of consecutive bars, with :meth:`Prices.relative`, the
  (high, low, close) of each bar relative to its open, which is what the agent sees.
* :func:`load_prices` -- reads a bar file in the old book's format (``<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,
  <VOL>``) or the common ``Date,Open,High,Low,Close,Volume`` form. Bars whose four prices are all equal (no
  trade happened) are dropped and counted. A malformed file gets a :class:`PriceFileError` naming the file, the
  line and the column -- never a NumPy traceback.
* :func:`msft_daily` -- a real series shipped with the package: Microsoft's daily bars from 1986 to 2017
  (public domain; see the function for the source).
* :func:`synthetic_prices` / :func:`write_prices` -- a seeded generator with an optional planted signal (mean
  reversion of a known strength), written in the same file format, so that the chapter can show an agent find
  a signal that exists and fail to find one that does not.
* :class:`StocksEnv` -- the Gymnasium environment (see its docstring).
"""

from __future__ import annotations

import csv
import datetime as _dt
import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlbook.config import check_bool, check_float, check_int
from rlbook.train import Plugin

OLD_HEADER = ("<DATE>", "<TIME>", "<OPEN>", "<HIGH>", "<LOW>", "<CLOSE>", "<VOL>")
COMMON_HEADER = ("Date", "Open", "High", "Low", "Close", "Volume")


class PriceFileError(ValueError):
    """A bar file that cannot be read; the message names the file, the line and the column."""


@dataclass
class Prices:
    """Consecutive bars of one instrument (float64 arrays of equal length).

    Attributes:
        open, high, low, close, volume: one entry per bar.
        timestamps: one string per bar, as in the file (``YYYYMMDD HHMMSS`` or the date).
        dropped_flat: bars dropped by the loader because open, high, low and close were all equal.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timestamps: list[str] = field(default_factory=list)
    dropped_flat: int = 0

    def __post_init__(self):
        arrays = [np.asarray(a, np.float64) for a in (self.open, self.high, self.low, self.close, self.volume)]
        if len({len(a) for a in arrays}) != 1:
            raise ValueError("open, high, low, close and volume must have the same length")
        self.open, self.high, self.low, self.close, self.volume = arrays
        if len(self.open) and (not np.all(np.isfinite(np.stack(arrays[:4]))) or self.open.min() <= 0):
            raise ValueError("prices must be finite and positive")

    def __len__(self) -> int:
        return len(self.open)

    def relative(self) -> np.ndarray:
        """``(n, 3)``: each bar's high, low and close as a fraction of its open (``(x - open) / open``)."""
        return np.stack([(p - self.open) / self.open for p in (self.high, self.low, self.close)], axis=1)

    def slice(self, start: int, stop: int) -> Prices:
        """A copy of bars ``start`` to ``stop - 1`` (for a train/validation split by time)."""
        ts = self.timestamps[start:stop] if self.timestamps else []
        part = slice(start, stop)
        return Prices(*(a[part].copy() for a in (self.open, self.high, self.low, self.close, self.volume)), ts)


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PriceFileError(f"{path}, line {line}, column {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise PriceFileError(f"{path}, line {line}, column {column}: {text!r} is not a finite number")
    return value


def load_prices(path: str | os.PathLike) -> Prices:
    """Read a bar file (either header, see the module docstring) into :class:`Prices`.

    Checks, each failing with a :class:`PriceFileError` that names the file, the line and the column: a
    known header with every column present, numbers where numbers belong, positive prices, ``low <= high``,
    open and close within ``[low, high]``, timestamps strictly increasing, at least one bar. Bars whose open,
    high, low and close are all equal are dropped and counted in ``dropped_flat``. A name ending in ``.gz`` is
    read through gzip."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise PriceFileError(f"{path}: cannot read the file ({e})") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not rows:
        raise PriceFileError(f"{path}, line 1: the file is empty (expected a header such as "
                             f"{','.join(COMMON_HEADER)})")
    header_line, header = rows[0]
    header = tuple(c.strip() for c in header)
    if header[:len(OLD_HEADER)] == OLD_HEADER:
        names, old = OLD_HEADER, True
    elif tuple(h.lower() for h in header[:len(COMMON_HEADER)]) == tuple(h.lower() for h in COMMON_HEADER):
        names, old = COMMON_HEADER, False
    else:
        raise PriceFileError(f"{path}, line {header_line}: unknown header {','.join(header)!r}; expected "
                             f"{','.join(OLD_HEADER)} or {','.join(COMMON_HEADER)}")
    if len(rows) == 1:
        raise PriceFileError(f"{path}, line {header_line + 1}: no bars after the header")
    cols = {"open": names.index("<OPEN>" if old else "Open"), "high": names.index("<HIGH>" if old else "High"),
            "low": names.index("<LOW>" if old else "Low"), "close": names.index("<CLOSE>" if old else "Close"),
            "volume": names.index("<VOL>" if old else "Volume")}
    kept: list[dict] = []
    stamps: list[str] = []
    last_key, last_stamp = None, None
    dropped = 0
    for line, row in rows[1:]:
        row = [c.strip() for c in row]
        if len(row) < len(names):
            missing = names[len(row)]
            raise PriceFileError(f"{path}, line {line}, column {missing}: missing (the line has {len(row)} of "
                                 f"{len(names)} columns)")
        bar = {k: _number(row[c], path, line, names[c]) for k, c in cols.items()}
        for k in ("open", "high", "low", "close"):
            if bar[k] <= 0:
                raise PriceFileError(f"{path}, line {line}, column {names[cols[k]]}: price {row[cols[k]]} is not "
                                     "positive")
        if bar["low"] > bar["high"]:
            raise PriceFileError(f"{path}, line {line}, column {names[cols['low']]}: low {row[cols['low']]} is "
                                 f"above high {row[cols['high']]}")
        for k in ("open", "close"):
            if not bar["low"] <= bar[k] <= bar["high"]:
                raise PriceFileError(f"{path}, line {line}, column {names[cols[k]]}: {k} {row[cols[k]]} lies "
                                     f"outside [low, high] = [{row[cols['low']]}, {row[cols['high']]}]")
        if old:
            date, time = row[0], row[1]
            if not (date.isdigit() and len(date) == 8):
                raise PriceFileError(f"{path}, line {line}, column <DATE>: {date!r} is not a date YYYYMMDD")
            if not (time.isdigit() and len(time) <= 6):
                raise PriceFileError(f"{path}, line {line}, column <TIME>: {time!r} is not a time HHMMSS")
            key, stamp, column = (int(date), int(time)), f"{date} {time.zfill(6)}", "<TIME>"
        else:
            key, stamp, column = (row[0],), row[0], "Date"
        if last_key is not None and key <= last_key:
            raise PriceFileError(f"{path}, line {line}, column {column}: timestamp {stamp!r} does not come after "
                                 f"the previous bar's {last_stamp!r}")
        last_key, last_stamp = key, stamp
        if bar["open"] == bar["high"] == bar["low"] == bar["close"]:
            dropped += 1
            continue
        kept.append(bar)
        stamps.append(stamp)
    if not kept:
        raise PriceFileError(f"{path}: every bar is flat (open = high = low = close): no bar is left")
    arrays = {k: np.array([bar[k] for bar in kept]) for k in cols}
    return Prices(arrays["open"], arrays["high"], arrays["low"], arrays["close"], arrays["volume"], stamps,
                  dropped)


def msft_daily() -> Prices:
    """Microsoft (MSFT) daily bars, 13 March 1986 to 10 November 2017: 7,983 days, of which the loader drops
    the flat ones (the early years, quoted in ticks too coarse for the split-adjusted prices of a few cents).

    Prices are adjusted for splits and dividends. Source: the "Huge Stock Market Dataset" by Boris Marjanovic on
    Kaggle (kaggle.com/datasets/borismarjanovic/price-volume-data-for-all-us-stocks-etfs), released under CC0
    (public domain), as redistributed by the pmdarima package (MIT licence, ``pmdarima.datasets.load_msft``).
    Stored as ``rlbook/envs/data/msft_daily.csv.gz`` (``Date,Open,High,Low,Close,Volume``, the prices written
    with six significant digits, which is every digit they had).

    One stock that is still famous today is a survivor: chapter 8 uses it to show how a single series flatters
    buy-and-hold."""
    return load_prices(Path(__file__).parent / "data" / "msft_daily.csv.gz")


def synthetic_prices(n: int, seed: int = 0, signal: float = 0.0, volatility: float = 0.01,
                     flat_fraction: float = 0.02, start: float = 100.0) -> Prices:
    """``n`` bars of a seeded synthetic price with an optional planted signal.

    The log price follows ``x_t = x_{t-1} - signal * (x_{t-1} - m_{t-1}) + volatility * e_t`` where ``m`` is an
    exponential moving average of ``x`` (span 20) and ``e`` is standard Gaussian noise: with ``signal > 0`` the
    price reverts towards its recent mean, a pattern a trader can exploit; with ``signal = 0`` it is a random
    walk, and no strategy can beat the market on average. Each bar's open is the previous close, its high and
    low lie beyond open and close by a random fraction of ``volatility``; ``flat_fraction`` of the bars are flat
    (as in real minute data, where some minutes see no trade)."""
    n = check_int("n", n, 2)
    signal = check_float("signal", signal, 0.0, 1.0)
    volatility = check_float("volatility", volatility, 0.0, low_open=True)
    flat_fraction = check_float("flat_fraction", flat_fraction, 0.0, 0.5)
    rng = np.random.default_rng(seed)
    x = np.empty(n + 1)
    x[0] = math.log(start)
    mean, alpha = x[0], 2.0 / 21.0
    noise = rng.standard_normal(n) * volatility
    for t in range(1, n + 1):
        x[t] = x[t - 1] - signal * (x[t - 1] - mean) + noise[t - 1]
        mean += alpha * (x[t] - mean)
    prices = np.exp(x)
    open_, close = prices[:-1], prices[1:]
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = top * (1 + rng.uniform(0, 0.5, n) * volatility)
    low = bottom * (1 - rng.uniform(0, 0.5, n) * volatility)
    flat = rng.random(n) < flat_fraction
    close = np.where(flat, open_, close)
    high = np.where(flat, open_, high)
    low = np.where(flat, open_, low)
    volume = np.where(flat, 0.0, rng.integers(1, 1000, n).astype(np.float64))
    first = _dt.datetime(2020, 1, 1)  # one bar per minute from here (the date means nothing)
    stamps = [(first + _dt.timedelta(minutes=t)).strftime("%Y%m%d %H%M%S") for t in range(n)]
    return Prices(open_, high, low, close, volume, stamps)


def write_prices(prices: Prices, path: str | os.PathLike) -> Path:
    """Write ``prices`` in the old book's format (``<DATE>,<TIME>,...``), readable by :func:`load_prices`."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(OLD_HEADER)
        for k in range(len(prices)):
            if prices.timestamps and len(prices.timestamps[k].split()) == 2:
                date, time = prices.timestamps[k].split()
            else:
                date, time = (_dt.datetime(2020, 1, 1) + _dt.timedelta(minutes=k)).strftime("%Y%m%d %H%M%S").split()
            w.writerow([date, time, *(repr(float(a[k])) for a in (prices.open, prices.high, prices.low,
                                                                   prices.close)), f"{prices.volume[k]:g}"])
    return path


class StocksEnv(gym.Env):
    """Trade one instrument, one share at most: actions Skip (0), Buy (1), Close (2).

    At step ``t`` the agent sees the bars up to and including bar ``t`` (which has closed) and acts at that
    bar's close. Buying when flat opens a position at the close and pays the commission; closing when long sells
    at the close and pays it again; every other combination (Buy while long, Close while flat, Skip) does
    nothing. Then the clock moves to bar ``t + 1``.

    Observation (``layout="flat"``, for an MLP): the last ``bars`` bars' (high, low, close) relative to their
    open in percent, oldest first, then the position flag (1 when long) and the unrealised profit of the
    position in percent (the close relative to the buy price, 0 when flat): ``3 * bars + 2`` float32 numbers.
    Percent rather than fractions puts the inputs on the scale of 1 that networks learn from best (a bar's
    move is a fraction of a percent; as fractions the inputs would be a hundred times smaller than the
    position flag). ``layout="conv"`` gives
    the same as ``(5, bars)`` channels for a Conv1d network (the flag and the profit repeated along time).

    Reward, in percent of the price: with ``reward_on_close=False`` (default) each bar's change of the close
    while long, ``100 * (c_{t+1} - c_t) / c_t``; with ``True`` only the whole trade's profit, at the close,
    ``100 * (c_sell - c_buy) / c_buy``. Both subtract ``commission`` (percent, per side) on the step that
    pays it. An episode starts at a random bar (``random_offset``) or at the first with a full window; it
    terminates when a position is closed (``reset_on_close``) and is truncated at the end of the data.

    Args:
        prices: the bars (:class:`Prices`), at least ``bars + 1`` of them.
        bars: bars in the window.
        commission: percent of the price paid on each side of a trade (0.1 = 0.1 %).
        reset_on_close, reward_on_close, random_offset: see above.
        layout: ``"flat"`` or ``"conv"``.
        render_mode: ``None`` or ``"rgb_array"`` (:meth:`render` draws the closes with the trades).

    ``trades`` lists the current episode's trades as ``(buy bar, close bar)`` (``None`` while still open).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    SKIP, BUY, CLOSE = 0, 1, 2

    def __init__(self, prices: Prices, bars: int = 10, commission: float = 0.1, reset_on_close: bool = True,
                 reward_on_close: bool = False, random_offset: bool = True, layout: str = "flat",
                 render_mode: str | None = None):
        if not isinstance(prices, Prices):
            raise TypeError(f"prices must be a rlbook.envs.stocks.Prices, got {type(prices).__name__}")
        self.bars = check_int("bars", bars, 1)
        if len(prices) < self.bars + 1:
            raise ValueError(f"prices has {len(prices)} bars; a window of {self.bars} needs at least {self.bars + 1}")
        self.prices = prices
        self.commission = check_float("commission", commission, 0.0, 100.0)
        self.reset_on_close = check_bool("reset_on_close", reset_on_close)
        self.reward_on_close = check_bool("reward_on_close", reward_on_close)
        self.random_offset = check_bool("random_offset", random_offset)
        if layout not in ("flat", "conv"):
            raise ValueError(f"layout must be 'flat' or 'conv', got {layout!r}")
        self.layout = layout
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._relative = (100.0 * prices.relative()).astype(np.float32)  # percent, like the profit
        shape = (3 * self.bars + 2,) if layout == "flat" else (5, self.bars)
        # relative prices are above -1 and the profit of a long position is above -100 %: finite bounds
        self.observation_space = gym.spaces.Box(-100.0, np.finfo(np.float32).max, shape, np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self._t = self.bars - 1
        self._long = False
        self._buy_price = 0.0
        self._start = self._t
        #: The trades of the current episode: ``(buy bar, close bar or None while open)``.
        self.trades: list[tuple[int, int | None]] = []

    # ------------------------------------------------------------------ the API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        first, last = self.bars - 1, len(self.prices) - 2  # at least one step before the data ends
        self._t = int(self.np_random.integers(first, last + 1)) if self.random_offset else first
        self._long = False
        self._buy_price = 0.0
        self._start = self._t
        self.trades = []
        return self._observation(), {"bar": self._t}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (skip), 1 (buy) or 2 (close), got {action!r}")
        action = int(action)
        close = self.prices.close
        reward, terminated = 0.0, False
        if action == self.BUY and not self._long:
            self._long, self._buy_price = True, float(close[self._t])
            self.trades.append((self._t, None))
            reward -= self.commission
        elif action == self.CLOSE and self._long:
            reward -= self.commission
            if self.reward_on_close:
                reward += 100.0 * (close[self._t] - self._buy_price) / self._buy_price
            self._long, self._buy_price = False, 0.0
            self.trades[-1] = (self.trades[-1][0], self._t)
            terminated = self.reset_on_close
        self._t += 1
        if self._long and not self.reward_on_close:
            reward += 100.0 * (close[self._t] - close[self._t - 1]) / close[self._t - 1]
        truncated = not terminated and self._t >= len(self.prices) - 1
        return self._observation(), float(reward), terminated, truncated, {"bar": self._t}

    def render(self):
        """The closes of the episode so far with its trades (``render_mode="rgb_array"``): an ``(H, W, 3)``
        uint8 image, buys as green triangles up, closes as red triangles down."""
        if self.render_mode is None:
            gym.logger.warn("render() needs render_mode='rgb_array' (StocksEnv(..., render_mode='rgb_array'))")
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3), dpi=80)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        bars = np.arange(max(0, self._start - self.bars + 1), self._t + 1)
        ax.plot(bars, self.prices.close[bars], color="0.3", linewidth=1)
        for buy, sell in self.trades:
            ax.plot(buy, self.prices.close[buy], "^", color="tab:green", markersize=8)
            if sell is not None:
                ax.plot(sell, self.prices.close[sell], "v", color="tab:red", markersize=8)
        ax.set(xlabel="bar", ylabel="close")
        fig.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()

    # ------------------------------------------------------------------ the observation
    def _observation(self) -> np.ndarray:
        window = self._relative[self._t - self.bars + 1:self._t + 1]  # bars t - bars + 1 .. t, nothing later
        profit = 0.0
        if self._long:
            profit = 100.0 * (self.prices.close[self._t] - self._buy_price) / self._buy_price
        if self.layout == "flat":
            return np.concatenate([window.reshape(-1), [float(self._long), profit]]).astype(np.float32)
        extra = np.tile(np.array([[float(self._long)], [profit]], np.float32), (1, self.bars))
        return np.concatenate([window.T, extra]).astype(np.float32)


@dataclass
class Backtest:
    """What a policy did over one stretch of prices, traded from its first full window to its last bar.

    Attributes:
        rewards: the reward of every step (percent; :class:`StocksEnv`'s per-bar rewards with commission).
        trades: ``(buy bar, close bar)`` of every trade; a position still open at the end is closed at the
            last bar, paying the commission (so buy-and-hold pays both sides too).
        trade_profits: each trade's profit in percent, both commissions included (the sum of its rewards).
    """

    rewards: np.ndarray
    trades: list[tuple[int, int]]
    trade_profits: np.ndarray

    @property
    def total(self) -> float:
        """The summed reward, the percent gained (or lost) over the stretch, in simple (additive) percent."""
        return float(self.rewards.sum())

    @property
    def max_drawdown(self) -> float:
        """The largest fall of the cumulative reward from its running peak (percent points, >= 0)."""
        equity = np.concatenate([[0.0], np.cumsum(self.rewards)])
        return float(np.max(np.maximum.accumulate(equity) - equity))

    def __repr__(self) -> str:
        mean = float(self.trade_profits.mean()) if len(self.trade_profits) else float("nan")
        return (f"Backtest(total={self.total:.2f} %, trades={len(self.trades)}, profit_per_trade={mean:.3f} %, "
                f"max_drawdown={self.max_drawdown:.2f} %)")


def backtest(prices: Prices, policy, bars: int = 10, commission: float = 0.1, layout: str = "flat") -> Backtest:
    """Trade ``prices`` once from the first full window to the end with ``policy`` (a function from one
    observation to an action, or an rlbook agent, which then acts greedily) and report what happened.

    The environment runs without resets on close and with per-bar rewards, so the summed reward is the
    return of the whole stretch; a position open at the end is closed at the last bar."""
    from rlbook.agents.base import Agent

    env = StocksEnv(prices, bars=bars, commission=commission, reset_on_close=False, reward_on_close=False,
                    random_offset=False, layout=layout)
    act = (lambda obs: int(policy.act(obs, explore=False))) if isinstance(policy, Agent) else policy
    obs, _ = env.reset(seed=0)
    rewards = []
    while True:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        rewards.append(reward)
        if terminated or truncated:
            break
    trades = list(env.trades)
    if trades and trades[-1][1] is None:  # liquidate at the last bar
        rewards[-1] -= commission
        trades[-1] = (trades[-1][0], env._t)
    rewards = np.asarray(rewards)
    first = env.bars - 1
    # step k acts at bar first + k: a trade's rewards run from its buy step to its close step (inclusive); a
    # position liquidated at the end closes at bar first + len(rewards), after the last step
    profits = np.array([rewards[b - first:c - first + 1].sum() for b, c in trades])
    return Backtest(rewards, trades, profits)


def stocks_vector_env(prices: Prices, num_envs: int = 8, **env_kwargs) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of ``StocksEnv(prices, **env_kwargs)`` stepped together (each starts at its own random
    bar), the shape the :class:`~rlbook.train.Trainer` trains on."""
    num_envs = check_int("num_envs", num_envs, 1)

    def make() -> StocksEnv:
        return StocksEnv(prices, **env_kwargs)
    return gym.vector.SyncVectorEnv([make] * num_envs)


class BacktestCurve(Plugin):
    """A :class:`~rlbook.train.Plugin` that backtests the greedy agent on ``prices`` every ``every_steps``
    environment steps (off the training clock) and records ``(step, total percent, trades, mean return of the
    last 100 training episodes)`` in ``points``: the learning curve on data the agent does not train on."""

    def __init__(self, prices: Prices, every_steps: int, bars: int = 10, commission: float = 0.1,
                 layout: str = "flat"):
        self.prices = prices
        self.every_steps = check_int("every_steps", every_steps, 1)
        self.bars, self.commission, self.layout = bars, commission, layout
        self.points: list[tuple[int, float, int, float]] = []
        self._next = self.every_steps

    def after_step(self, trainer, transition, metrics) -> None:
        if trainer.step < self._next:
            return
        self._next += self.every_steps
        with trainer.pause_clock():
            result = backtest(self.prices, trainer.agent, bars=self.bars, commission=self.commission,
                              layout=self.layout)
        self.points.append((trainer.step, result.total, len(result.trades), trainer.mean_return()))


def buy_and_hold(obs) -> int:
    """Baseline policy: buy at the first bar and hold (:func:`backtest` closes at the end)."""
    return StocksEnv.BUY


def always_flat(obs) -> int:
    """Baseline policy: never trade."""
    return StocksEnv.SKIP


def random_trader(seed: int = 0):
    """Baseline policy: a uniformly random action at every bar (seeded)."""
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(3))


__all__ = ["COMMON_HEADER", "OLD_HEADER", "Backtest", "BacktestCurve", "PriceFileError", "Prices", "StocksEnv",
           "always_flat", "backtest", "buy_and_hold", "load_prices", "msft_daily", "random_trader",
           "stocks_vector_env", "synthetic_prices", "write_prices"]
