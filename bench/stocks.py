"""Chapter 8: a DQN trader trained on one stretch of prices and judged on the stretch that follows (walk-forward),
with and without commission, against buy-and-hold, random trading and staying flat. Writes
``results/08_stocks/stocks_dqn.json``::

    python bench/stocks.py --seeds 5                              # every experiment, seeds 0..4
    python bench/stocks.py --seeds 5 --experiments planted msft   # some; the others' entries are kept

**The data.** Synthetic series (``synthetic_prices``, 1 % volatility per bar) of 120,000 bars: the first 100,000
train, the last 20,000 validate. Seed ``s`` draws the same shocks with and without the planted signal, so
"planted" and "nosignal" differ only by the mean reversion (``SIGNAL`` of the gap to the 20-bar average closed
per bar). ``msft``: the shipped Microsoft daily bars, trained on 1986-2009 and validated on 2010-2017, one data
set for every seed (the seed changes the agent only).

**The agent** is ``DQNConfig.stocks()`` (dueling Double DQN, 2-step returns) on 8 copies of ``StocksEnv``
(random starts, episodes end on close, per-bar rewards), trained for a fixed number of environment steps. The
``_free`` experiments train without commission (the old text's trader); every agent is then backtested
greedily, with and without the 0.1 % commission, on the validation stretch and on the last 20,000 bars of its
training stretch (the same length, so the two totals compare; for ``msft``, the training stretch's last 1,987
days, as many as the validation has). During training
the validation backtest (with commission) is recorded every ``--every`` steps: the chapter's curves.

**The baselines** on the same stretches: buy-and-hold (buy at the first bar, sell at the last), always flat, a
random trader (seeded), and, on the synthetic series only, a hand-written reversion rule that knows how the
signal was planted (buy after a fall of more than 2 % over 5 bars, sell after any rise): what knowing the
generator is worth.

Metrics (median and IQR over seeds, additive percent of the price, commission 0.1 % per side unless ``_free``):
``<experiment>_<stretch>_total_percent``, ``..._trades``, ``..._profit_per_trade_percent``,
``..._max_drawdown_percent``, and ``<experiment>_validation_excess_over_buy_and_hold`` (the paired difference
per seed).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rlbook.agents.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlbook.envs.stocks import (  # noqa: E402
    BacktestCurve,
    Prices,
    StocksEnv,
    always_flat,
    backtest,
    buy_and_hold,
    msft_daily,
    random_trader,
    stocks_vector_env,
    synthetic_prices,
)
from rlbook.results import git_commit, merge_results, summarize  # noqa: E402
from rlbook.train import Trainer  # noqa: E402

RESULTS = "08_stocks/stocks_dqn"
SIGNAL = 0.1
VOLATILITY = 0.01
TRAIN_BARS, VALIDATION_BARS = 100_000, 20_000
MSFT_SPLIT = "2010-01-01"
COMMISSION = 0.1
ENVS = 8

#: experiment -> data ("planted", "nosignal", "msft"), training commission, observation layout
EXPERIMENTS: dict[str, dict] = {
    "planted": dict(data="planted", commission=COMMISSION, layout="flat"),
    "planted_free": dict(data="planted", commission=0.0, layout="flat"),
    "nosignal": dict(data="nosignal", commission=COMMISSION, layout="flat"),
    "nosignal_free": dict(data="nosignal", commission=0.0, layout="flat"),
    "planted_conv": dict(data="planted", commission=COMMISSION, layout="conv"),
    "msft": dict(data="msft", commission=COMMISSION, layout="flat"),
}
BARS = {"flat": 10, "conv": 50}


def split(data: str, seed: int) -> tuple[Prices, Prices]:
    """The (training, validation) stretches of ``data`` for seed ``seed``."""
    if data == "msft":
        prices = msft_daily()
        cut = next(i for i, stamp in enumerate(prices.timestamps) if stamp >= MSFT_SPLIT)
        return prices.slice(0, cut), prices.slice(cut, len(prices))
    signal = SIGNAL if data == "planted" else 0.0
    prices = synthetic_prices(TRAIN_BARS + VALIDATION_BARS, seed=seed, signal=signal, volatility=VOLATILITY)
    return prices.slice(0, TRAIN_BARS), prices.slice(TRAIN_BARS, TRAIN_BARS + VALIDATION_BARS)


def reversion_rule(bars: int = 10, fall: float = 2.0, window: int = 5):
    """The hand-written rule that knows the planted signal: buy after the closes fell more than ``fall`` percent
    over the last ``window`` bars, sell as soon as that sum turns positive (flat observations)."""
    def act(obs):
        move = float(np.sum(obs[2:3 * bars:3][-window:]))  # each bar's close vs its open (percent), summed
        long = obs[3 * bars] > 0.5
        if not long and move < -fall:
            return StocksEnv.BUY
        if long and move > 0:
            return StocksEnv.CLOSE
        return StocksEnv.SKIP
    return act


def report(result) -> dict:
    profits = result.trade_profits
    return {"total": round(result.total, 3), "trades": len(result.trades),
            "profit_per_trade": round(float(profits.mean()), 4) if len(profits) else None,
            "max_drawdown": round(result.max_drawdown, 3)}


def run(experiment: str, seed: int, steps: int, every: int) -> dict:
    spec = EXPERIMENTS[experiment]
    train, validation = split(spec["data"], seed)
    bars = BARS[spec["layout"]]
    env = stocks_vector_env(train, ENVS, bars=bars, commission=spec["commission"], layout=spec["layout"])
    network = "mlp" if spec["layout"] == "flat" else "conv1d"
    agent = DQNAgent(env.single_observation_space, env.single_action_space,
                     DQNConfig.stocks(network=network, seed=seed, device="cpu", epsilon_decay_steps=steps // 2))
    curve = BacktestCurve(validation, every, bars=bars, commission=COMMISSION, layout=spec["layout"])
    trainer = Trainer(agent, env, total_steps=steps, plugins=[curve], seed=seed).run()
    out = {"seed": seed, "seconds": round(trainer.elapsed, 2), "episodes": trainer.episodes,
           "curve": [[s, round(total, 3), trades, round(mean, 4)] for s, total, trades, mean in curve.points]}
    # the training stretch's last VALIDATION_BARS bars: the same length as the validation stretch, just before it
    recent = train.slice(max(0, len(train) - VALIDATION_BARS), len(train))
    for stretch, prices in (("train", recent), ("validation", validation)):
        for commission in (COMMISSION, 0.0):
            key = stretch + ("" if commission else "_free")
            out[key] = report(backtest(prices, agent, bars=bars, commission=commission, layout=spec["layout"]))
    return out


def baselines(data: str, seed: int) -> dict:
    """The baselines on the validation stretch of ``data`` for ``seed`` (with and without commission)."""
    _, validation = split(data, seed)
    policies = {"buy_and_hold": buy_and_hold, "always_flat": always_flat,
                "random": lambda: random_trader(seed)}
    if data != "msft":
        policies["reversion_rule"] = reversion_rule
    out = {}
    for name, policy in policies.items():
        for commission in (COMMISSION, 0.0):
            pick = policy() if name in ("random", "reversion_rule") else policy
            key = name + ("" if commission else "_free")
            out[key] = report(backtest(validation, pick, bars=10, commission=commission))
    return out


def metrics_for(experiment: str, runs: list[dict], base: list[dict]) -> dict:
    out = {}
    for stretch in ("train", "validation", "train_free", "validation_free"):
        for field, unit in (("total", "percent"), ("trades", "trades"), ("profit_per_trade", "percent"),
                            ("max_drawdown", "percent")):
            name = f"{experiment}_{stretch}_{field}" + ("" if field == "trades" else "_percent")
            out[name] = summarize([r[stretch][field] for r in runs], None, unit)
    excess = [r["validation"]["total"] - b["buy_and_hold"]["total"] for r, b in zip(runs, base)]
    out[f"{experiment}_validation_excess_over_buy_and_hold"] = summarize(excess, None, "percent")
    out[f"{experiment}_training_seconds"] = summarize([r["seconds"] for r in runs], None, "s")
    return out


def merge_and_write(metrics: dict, entries: dict, seeds: list[int], **details) -> Path:
    """Write over the file's current contents (two processes may run different experiments)."""
    return merge_results(RESULTS, "experiments", entries, metrics, owner=_experiment_of, order=list(EXPERIMENTS),
                         seeds=seeds, **details)


def _experiment_of(metric: str) -> str:
    """The experiment a metric name belongs to (the longest experiment name it starts with)."""
    return max((e for e in EXPERIMENTS if metric.startswith(e + "_")), key=len, default="")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    p.add_argument("--steps", type=int, default=100_000, help="env steps per training run")
    p.add_argument("--every", type=int, default=20_000, help="env steps between validation backtests")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    for experiment in args.experiments:
        spec = EXPERIMENTS[experiment]
        runs, base = [], []
        for seed in seeds:
            r = run(experiment, seed, args.steps, args.every)
            runs.append(r)
            base.append(baselines(spec["data"], seed))
            print(f"{experiment} seed {seed}: validation {r['validation']}; buy-and-hold "
                  f"{base[-1]['buy_and_hold']['total']}; {r['seconds']} s", flush=True)
        baseline_metrics = {}
        for name in base[0]:
            for field in ("total", "trades", "profit_per_trade", "max_drawdown"):
                metric = f"{experiment}_baseline_{name}_{field}" + ("" if field == "trades" else "_percent")
                baseline_metrics[metric] = summarize([b[name][field] for b in base], None,
                                                     "trades" if field == "trades" else "percent")
        command = "python " + " ".join(shlex.quote(a) for a in ["bench/stocks.py", *sys.argv[1:]])
        entry = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command, "commit": git_commit(),
                 "seeds": seeds, "steps": args.steps,
                 "every": args.every, **spec, "bars": BARS[spec["layout"]],
                 "config": DQNConfig.stocks(network="mlp" if spec["layout"] == "flat" else "conv1d",
                                            epsilon_decay_steps=args.steps // 2).to_dict(),
                 "runs": runs, "baselines": base}
        out = merge_and_write({**metrics_for(experiment, runs, base), **baseline_metrics}, {experiment: entry},
                              seeds, signal=SIGNAL, volatility=VOLATILITY, train_bars=TRAIN_BARS,
                              validation_bars=VALIDATION_BARS, msft_split=MSFT_SPLIT, commission=COMMISSION,
                              envs=f"StocksEnv x{ENVS} (SyncVectorEnv)", torch_threads=args.threads,
                              units="additive percent of the price (sum of per-bar rewards); trades per stretch")
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
