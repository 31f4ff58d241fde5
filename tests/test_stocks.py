"""The stock-trading environment of chapter 8: the loader's errors, the synthetic generator, no look-ahead,
and the reward and commission arithmetic by hand."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlbook.envs.stocks import (
    PriceFileError,
    Prices,
    StocksEnv,
    always_flat,
    backtest,
    buy_and_hold,
    load_prices,
    random_trader,
    synthetic_prices,
    write_prices,
)

OLD = "<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>\n"
COMMON = "Date,Open,High,Low,Close,Volume\n"


def write(tmp_path, text, name="bars.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_both_formats_load_and_flat_bars_are_dropped_and_counted(tmp_path):
    old = write(tmp_path, OLD + "20160104,100100,10,11,9,10.5,100\n20160104,100200,10.5,10.5,10.5,10.5,0\n"
                                "20160104,100300,10.5,12,10,11,50\n", "old.csv")
    prices = load_prices(old)
    assert len(prices) == 2 and prices.dropped_flat == 1
    np.testing.assert_allclose(prices.close, [10.5, 11])
    assert prices.timestamps == ["20160104 100100", "20160104 100300"]
    np.testing.assert_allclose(prices.relative()[0], [0.1, -0.1, 0.05])  # (high, low, close) vs open 10
    common = write(tmp_path, COMMON + "2020-01-02,10,11,9,10.5,100\n2020-01-03,10.5,12,10,11,50\n", "c.csv")
    assert len(load_prices(common)) == 2


@pytest.mark.parametrize(("body", "words"), [
    ("", "line 1: the file is empty"),
    ("Day,Price\n1,2\n", "line 1: unknown header"),
    (OLD, "line 2: no bars after the header"),
    (OLD + "20160104,100100,10,11,9\n", "line 2, column <CLOSE>: missing"),
    (OLD + "20160104,100100,10,eleven,9,10,1\n", "line 2, column <HIGH>: 'eleven' is not a number"),
    (OLD + "20160104,100100,10,9,11,10,1\n", "line 2, column <LOW>: low 11 is above high 9"),
    (OLD + "20160104,100100,10,11,9,12,1\n", "line 2, column <CLOSE>: close 12 lies outside"),
    (OLD + "20160104,100100,10,11,9,10,1\n20160104,100100,10,11,9,10,1\n", "line 3, column <TIME>: timestamp"),
    (OLD + "20160104,100200,10,11,9,10,1\n20160104,100100,10,11,9,10,1\n", "does not come after"),
    (OLD + "2016014,100100,10,11,9,10,1\n", "column <DATE>: '2016014' is not a date"),
    (OLD + "20160104,100100,-1,11,-2,10,1\n", "column <OPEN>: price -1 is not positive"),
    (OLD + "20160104,100100,10,10,10,10,1\n", "every bar is flat"),
    (COMMON + "2020-01-02,10,11,9,nan,1\n", "column Close: 'nan' is not a finite number"),
])
def test_malformed_files_name_the_file_line_and_column(tmp_path, body, words):
    path = write(tmp_path, body)
    with pytest.raises(PriceFileError, match=words) as info:
        load_prices(path)
    assert str(path) in str(info.value)


def test_synthetic_prices_round_trip_through_the_file_format(tmp_path):
    prices = synthetic_prices(500, seed=3, signal=0.2, flat_fraction=0.05)
    assert np.all(prices.low <= np.minimum(prices.open, prices.close))
    assert np.all(prices.high >= np.maximum(prices.open, prices.close))
    flat = int(np.sum((prices.open == prices.high) & (prices.low == prices.close) & (prices.open == prices.close)))
    assert flat > 0
    back = load_prices(write_prices(prices, tmp_path / "s.csv"))
    assert len(back) == 500 - flat and back.dropped_flat == flat
    keep = ~((prices.open == prices.high) & (prices.open == prices.low) & (prices.open == prices.close))
    np.testing.assert_array_equal(back.close, prices.close[keep])
    # the same seed gives the same prices; the signal changes them
    np.testing.assert_array_equal(synthetic_prices(500, seed=3, signal=0.2).close, synthetic_prices(
        500, seed=3, signal=0.2).close)
    assert not np.array_equal(synthetic_prices(500, seed=3).close, prices.close)


def test_mean_reversion_is_planted_only_when_asked():
    def lag1(prices):
        r = np.diff(np.log(prices.close))
        return np.corrcoef(r[:-1], r[1:])[0, 1]

    assert lag1(synthetic_prices(20_000, seed=1, signal=0.3, flat_fraction=0.0)) < -0.05
    assert abs(lag1(synthetic_prices(20_000, seed=1, signal=0.0, flat_fraction=0.0))) < 0.03


def test_the_environment_passes_the_gymnasium_checker():
    for layout in ("flat", "conv"):
        env = StocksEnv(synthetic_prices(300, seed=0), bars=10, layout=layout)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env, skip_render_check=True)  # render: its own test below
        obs, _ = env.reset(seed=0)
        assert obs.shape == ((32,) if layout == "flat" else (5, 10))


def hand_prices(closes):
    closes = np.asarray(closes, float)
    opens = np.r_[closes[0], closes[:-1]]
    return Prices(opens, np.maximum(opens, closes) + 1, np.minimum(opens, closes) - 1, closes,
                  np.ones(len(closes)))


def test_rewards_and_commission_by_hand():
    # closes 100, 102, 101, 105, 104 with a window of 1: the episode starts at bar 0
    env = StocksEnv(hand_prices([100, 102, 101, 105, 104]), bars=1, commission=0.1, random_offset=False)
    env.reset(seed=0)
    _, r, term, trunc, _ = env.step(StocksEnv.SKIP)  # flat: nothing
    assert (r, term, trunc) == (0.0, False, False)
    _, r, *_ = env.step(StocksEnv.CLOSE)  # close while flat: nothing
    assert r == 0.0
    obs, r, *_ = env.step(StocksEnv.BUY)  # buy at 101 (bar 2), pay 0.1 %; bar 3 closes at 105
    assert r == pytest.approx(-0.1 + 100 * (105 - 101) / 101)
    assert obs[-2] == 1.0 and obs[-1] == pytest.approx(100 * (105 - 101) / 101)
    _, r, term, trunc, _ = env.step(StocksEnv.BUY)  # buy while long: nothing but the bar's change
    assert r == pytest.approx(100 * (104 - 105) / 105) and (term, trunc) == (False, True)  # the data ends
    # reward only on close: the whole trade at once, both commissions
    env = StocksEnv(hand_prices([100, 102, 101, 105, 104]), bars=1, reward_on_close=True, random_offset=False)
    env.reset(seed=0)
    _, r, *_ = env.step(StocksEnv.BUY)  # buy at 100
    assert r == pytest.approx(-0.1)
    _, r, *_ = env.step(StocksEnv.SKIP)
    assert r == 0.0
    obs, r, term, trunc, _ = env.step(StocksEnv.CLOSE)  # sell at 101
    assert r == pytest.approx(-0.1 + 1.0) and term and not trunc
    assert obs[-2] == 0.0 and obs[-1] == 0.0


def test_observations_by_hand_in_percent_oldest_bar_first():
    prices = Prices([100, 102, 101], [104, 103, 106], [99, 100, 100], [102, 101, 105], [1, 1, 1])
    env = StocksEnv(prices, bars=2, random_offset=False, commission=0.0)
    obs, info = env.reset(seed=0)
    assert info["bar"] == 1  # the first bar with a full window of 2
    bar0 = [4.0, -1.0, 2.0]  # (104, 99, 102) vs open 100, in percent
    bar1 = [100 * (103 - 102) / 102, 100 * (100 - 102) / 102, 100 * (101 - 102) / 102]
    np.testing.assert_allclose(obs, [*bar0, *bar1, 0.0, 0.0], rtol=1e-6)
    obs, *_ = env.step(StocksEnv.BUY)  # buy at 101; bar 2 closes at 105
    bar2 = [100 * 5 / 101, 100 * -1 / 101, 100 * 4 / 101]
    np.testing.assert_allclose(obs, [*bar1, *bar2, 1.0, 100 * 4 / 101], rtol=1e-6)
    conv = StocksEnv(prices, bars=2, random_offset=False, layout="conv")
    conv.reset(seed=0)
    obs_c, *_ = conv.step(StocksEnv.BUY)
    np.testing.assert_allclose(obs_c, [[bar1[0], bar2[0]], [bar1[1], bar2[1]], [bar1[2], bar2[2]], [1.0, 1.0],
                                       [100 * 4 / 101] * 2], rtol=1e-6)


def test_no_look_ahead_changing_any_future_bar_leaves_every_observation_unchanged():
    base = synthetic_prices(80, seed=5)
    rng = np.random.default_rng(0)
    for layout in ("flat", "conv"):
        for _ in range(30):
            actions = rng.integers(3, size=60)
            t_cut = int(rng.integers(12, 70))  # bars after t_cut are replaced
            changed = base.slice(0, len(base))
            later = slice(t_cut + 1, None)
            k = len(base) - t_cut - 1
            scale = rng.uniform(0.5, 2.0, k)  # new price levels, and new shapes of the bars
            for a in ("open", "high", "low", "close"):
                getattr(changed, a)[later] *= scale
            changed.high[later] *= 1 + rng.uniform(0.01, 0.1, k)
            changed.close[later] = changed.low[later] + rng.uniform(0, 1, k) * (changed.high[later]
                                                                                - changed.low[later])
            runs = []
            for prices in (base, changed):
                env = StocksEnv(prices, bars=10, random_offset=False, layout=layout, reset_on_close=False)
                obs, info = env.reset(seed=0)
                seen = [(info["bar"], obs)]
                for a in actions:
                    obs, _, term, trunc, info = env.step(int(a))
                    seen.append((info["bar"], obs))
                    if term or trunc:
                        break
                runs.append(seen)
            for (bar, a), (_, b) in zip(*runs):
                if bar <= t_cut:
                    np.testing.assert_array_equal(a, b)


def test_bad_settings_are_refused():
    prices = synthetic_prices(20, seed=0)
    with pytest.raises(ValueError, match="needs at least"):
        StocksEnv(prices, bars=20)
    with pytest.raises(ValueError, match="layout"):
        StocksEnv(prices, layout="image")
    with pytest.raises(TypeError, match="Prices"):
        StocksEnv(prices.close)
    with pytest.raises(ValueError, match="commission"):
        StocksEnv(prices, commission=-1)
    env = StocksEnv(prices)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(3)


def test_trades_are_recorded_and_rendered():
    env = StocksEnv(hand_prices([100, 102, 101, 105, 104, 103]), bars=1, random_offset=False,
                    reset_on_close=False, render_mode="rgb_array")
    env.reset(seed=0)
    for action in (StocksEnv.BUY, StocksEnv.SKIP, StocksEnv.CLOSE, StocksEnv.BUY):
        env.step(action)
    assert env.trades == [(0, 2), (3, None)]
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    green = (image[:, :, 1] > 100) & (image[:, :, 0] < 100) & (image[:, :, 2] < 100)
    red = (image[:, :, 0] > 150) & (image[:, :, 1] < 100) & (image[:, :, 2] < 100)
    assert green.sum() > 20 and red.sum() > 20  # two buys and one close drawn
    env.reset(seed=0)
    assert env.trades == []
    with pytest.raises(ValueError, match="render_mode"):
        StocksEnv(hand_prices([1, 2, 3]), bars=1, render_mode="human")


def test_backtest_by_hand_and_the_baselines():
    prices = hand_prices([100, 102, 101, 105, 104, 103])
    hold = backtest(prices, buy_and_hold, bars=1, commission=0.1)
    # buy at 100, hold to 103, close there: 3 % of price moves (per bar, additive) minus two commissions
    moves = 100 * np.diff([100, 102, 101, 105, 104, 103]) / np.array([100, 102, 101, 105, 104])
    assert hold.total == pytest.approx(moves.sum() - 0.2)
    assert hold.trades == [(0, 5)] and hold.trade_profits.tolist() == pytest.approx([hold.total])
    flat = backtest(prices, always_flat, bars=1)
    assert flat.total == 0.0 and flat.trades == [] and flat.max_drawdown == 0.0
    # the equity peaks after bar 3 (105) and ends at 103 less the closing commission
    assert hold.max_drawdown == pytest.approx(-(moves[3] + moves[4]) + 0.1)
    # a scripted trade: buy at bar 1 (102), close at bar 3 (105)
    script = iter([StocksEnv.SKIP, StocksEnv.BUY, StocksEnv.SKIP, StocksEnv.CLOSE, StocksEnv.SKIP])
    one = backtest(prices, lambda obs: next(script), bars=1, commission=0.1)
    assert one.trades == [(1, 3)]
    assert one.trade_profits[0] == pytest.approx(moves[1] + moves[2] - 0.2) == pytest.approx(one.total)


def test_random_trading_loses_two_commissions_per_round_trip_on_a_random_walk():
    # the old text: random trading loses about 0.2 % per round trip with 0.1 % per side; on a walk with no
    # drift the price moves average out and the commissions remain
    prices = synthetic_prices(60_000, seed=2, signal=0.0, volatility=0.002, flat_fraction=0.0)
    result = backtest(prices, random_trader(seed=0), bars=10, commission=0.1)
    assert len(result.trades) > 9_000  # one round trip every 6 bars or so
    assert np.mean(result.trade_profits) == pytest.approx(-0.2, abs=0.03)


def test_random_starts_cover_every_bar_that_leaves_one_step():
    env = StocksEnv(hand_prices([100, 101, 102, 103, 104, 105]), bars=2)  # windows end at bars 1..4
    starts = {env.reset(seed=s)[1]["bar"] for s in range(200)}
    assert starts == {1, 2, 3, 4}


def test_reward_on_close_is_the_trade_profit_in_percent():
    env = StocksEnv(hand_prices([100, 105, 110]), bars=1, reward_on_close=True, random_offset=False)
    env.reset(seed=0)
    env.step(StocksEnv.BUY)  # at 100
    _, r, *_ = env.step(StocksEnv.CLOSE)  # at 105
    assert r == pytest.approx(5.0 - 0.1)


def test_backtest_liquidates_the_last_open_trade_on_the_last_step():
    prices = hand_prices([100, 102, 101, 105, 104, 103])
    script = iter([StocksEnv.BUY, StocksEnv.CLOSE, StocksEnv.BUY, StocksEnv.SKIP, StocksEnv.SKIP])
    result = backtest(prices, lambda obs: next(script), bars=1, commission=0.1)
    assert result.trades == [(0, 1), (2, 5)]
    assert result.rewards[-1] == pytest.approx(100 * (103 - 104) / 104 - 0.1)  # the last bar pays the exit
    np.testing.assert_allclose(result.trade_profits, [result.rewards[:2].sum(), result.rewards[2:].sum()])


def test_backtest_lets_an_agent_act_greedily():
    from rlbook.agents.dqn import DQNAgent

    prices = synthetic_prices(200, seed=1)
    env = StocksEnv(prices)
    agent = DQNAgent(env.observation_space, env.action_space, hidden=(8,), device="cpu", seed=0)  # epsilon 1
    greedy = backtest(prices, agent)
    again = backtest(prices, lambda obs: int(agent.act(obs, explore=False)))
    np.testing.assert_array_equal(greedy.rewards, again.rewards)


def test_gzipped_files_load_and_a_broken_gzip_is_a_clear_error(tmp_path):
    import gzip

    path = tmp_path / "bars.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(COMMON + "2020-01-02,10,11,9,10.5,100\n2020-01-03,10.5,12,10,11,50\n")
    prices = load_prices(path)
    np.testing.assert_allclose(prices.close, [10.5, 11])
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(path.read_bytes()[:20])
    with pytest.raises(PriceFileError, match="broken.csv.gz: cannot read"):
        load_prices(broken)


def test_the_shipped_msft_series_loads_whole():
    from rlbook.envs.stocks import msft_daily

    prices = msft_daily()
    assert len(prices) + prices.dropped_flat == 7_983  # every row of the file, flat ones counted
    assert prices.dropped_flat == 248
    assert (prices.timestamps[0], prices.timestamps[-1]) == ("1986-03-13", "2017-11-10")
    assert prices.close[-1] == pytest.approx(83.87)
    StocksEnv(prices)  # usable as it is


def test_stocks_vector_env_and_the_backtest_curve_during_training():
    from rlbook.agents.dqn import DQNAgent, DQNConfig
    from rlbook.envs.stocks import BacktestCurve, stocks_vector_env
    from rlbook.train import Trainer

    prices = synthetic_prices(400, seed=0, signal=0.1)
    env = stocks_vector_env(prices, 3, bars=5, commission=0.2)
    assert env.num_envs == 3 and env.single_observation_space.shape == (17,)
    assert all(e.commission == 0.2 and e.bars == 5 for e in env.envs)
    with pytest.raises(ValueError, match="layout"):
        stocks_vector_env(prices, 2, layout="image")
    with pytest.raises(ValueError, match="num_envs"):
        stocks_vector_env(prices, 0)
    assert stocks_vector_env(prices, 1).num_envs == 1
    agent = DQNAgent(env.single_observation_space, env.single_action_space,
                     DQNConfig.stocks(hidden=(8,), learning_starts=30, batch_size=16, train_freq=16,
                                      gradient_steps=2, seed=0, device="cpu"))
    validation = synthetic_prices(60, seed=1, signal=0.1)
    curve = BacktestCurve(validation, every_steps=50, bars=5, commission=0.3)
    trainer = Trainer(agent, env, total_steps=150, plugins=[curve], seed=0).run()
    assert trainer.step == 150
    # one point at the first vector step at or past each multiple of 50 (3 envs: within 3 steps of it)
    assert len(curve.points) == 3
    assert all(50 * k <= p[0] < 50 * k + 3 for k, p in enumerate(curve.points, 1))
    # the last point is the trained agent's backtest, with the curve's commission
    step, total, trades, mean_return = curve.points[-1]
    final = backtest(validation, agent, bars=5, commission=0.3)
    assert (total, trades) == (final.total, len(final.trades))
    assert mean_return == trainer.mean_return()
