"""Watching training: a progress bar, CSV files and TensorBoard, all as trainer plugins.

Agents return metrics from :meth:`~rlbook.agents.base.Agent.update` as floats or 0-dim tensors.
The loggers here add them up as they come (on the device, for tensors) and convert to Python floats
only when they write, every ``every_steps`` environment steps, so logging never forces a GPU sync
on each step.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlbook.config import check_int
from rlbook.train import Plugin, Trainer

logger = logging.getLogger("rlbook")


class _MetricAverager:
    """Running sums of metric values between two writes."""

    def __init__(self):
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if key in self.sums:
                self.sums[key] = self.sums[key] + value
                self.counts[key] += 1
            else:
                self.sums[key] = value
                self.counts[key] = 1

    def pop(self) -> dict[str, float]:
        out = {key: float(total) / self.counts[key] for key, total in self.sums.items()}
        self.sums.clear()
        self.counts.clear()
        return out


class _PeriodicMetrics(Plugin):
    """Shared by the loggers: average agent metrics and write them every ``every_steps`` env steps."""

    def __init__(self, every_steps: int):
        self.every_steps = check_int("every_steps", every_steps, 1)
        self._averager = _MetricAverager()
        self._next_write = every_steps

    def _schedule_after(self, step: int) -> None:
        # from the step count, so a vector step larger than every_steps never leaves it behind
        self._next_write = (step // self.every_steps + 1) * self.every_steps

    def after_step(self, trainer, transition, metrics):
        if metrics:
            self._averager.add(metrics)
        if trainer.step >= self._next_write:
            self._write(trainer)
            self._schedule_after(trainer.step)

    def _write(self, trainer: Trainer) -> None:
        raise NotImplementedError


class MetricsHistory(_PeriodicMetrics):
    """Keeps the agent's metrics in memory, averaged over every ``every_steps`` environment steps, for plots
    in a notebook (the CSV and TensorBoard loggers below write the same averages to disk).

    After training, :meth:`series` gives one metric as ``(steps, values)`` arrays."""

    def __init__(self, every_steps: int = 1_000):
        super().__init__(every_steps)
        #: One ``(step, {metric: mean since the previous row})`` per write.
        self.rows: list[tuple[int, dict[str, float]]] = []

    def before_training(self, trainer: Trainer) -> None:
        self._schedule_after(trainer.step)  # a resumed run, or a second run with the same plugin

    def _write(self, trainer: Trainer) -> None:
        averages = self._averager.pop()
        if averages:
            self.rows.append((int(trainer.step), averages))

    def after_training(self, trainer: Trainer) -> None:
        self._write(trainer)  # the last, partial period

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of metric ``name`` (the rows that have it); ``KeyError`` listing the metrics
        recorded when no row has it."""
        rows = [(step, m[name]) for step, m in self.rows if name in m]
        if not rows:
            known = sorted({k for _, m in self.rows for k in m})
            raise KeyError(f"no metric {name!r} was recorded; recorded: {known}")
        steps, values = zip(*rows)
        return np.array(steps), np.array(values, dtype=np.float64)


class ProgressBar(Plugin):
    """A tqdm progress bar over environment steps (or episodes when only an episode budget is set),
    showing the mean return of the last ``window`` episodes and steps per second.

    ``metrics`` adds the latest values of these agent metrics (``"loss"``; ``"fps"`` from
    :class:`~rlbook.regimens.FrameRate`) and, with ``"frames"``, the environment steps so far."""

    def __init__(self, window: int = 100, refresh_seconds: float = 0.5, metrics: Sequence[str] = (),
                 **tqdm_kwargs):
        self.window = window
        self.refresh_seconds = refresh_seconds
        self.metrics = tuple(metrics)
        self.tqdm_kwargs = tqdm_kwargs
        self.bar = None
        self._last_refresh = 0.0
        self._shown = 0

    def before_training(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        by_steps = trainer.total_steps is not None
        self._by_steps = by_steps
        total = trainer.total_steps if by_steps else trainer.total_episodes
        total = None if total >= 2**62 else total  # "until finished": no end to show
        self._shown = trainer.step if by_steps else trainer.episodes
        self.bar = tqdm(total=total, initial=self._shown, unit="step" if by_steps else "episode",
                        dynamic_ncols=True, **self.tqdm_kwargs)

    def after_step(self, trainer, transition, metrics):
        now = time.perf_counter()
        if now - self._last_refresh >= self.refresh_seconds:
            self._refresh(trainer)
            self._last_refresh = now

    def after_training(self, trainer):
        if self.bar is not None:
            self._refresh(trainer)
            self.bar.close()
            self.bar = None

    def on_error(self, trainer, error):
        self.after_training(trainer)

    def _refresh(self, trainer: Trainer) -> None:
        if self.bar is None:
            return
        current = trainer.step if self._by_steps else trainer.episodes
        self.bar.update(current - self._shown)
        self._shown = current
        mean = trainer.mean_return(self.window)
        postfix = {}
        if not math.isnan(mean):
            postfix.update(episodes=trainer.episodes, mean_return=f"{mean:.2f}")
        for name in self.metrics:
            value = trainer.step if name == "frames" else trainer.last_metrics.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                postfix[name] = f"{value:,}" if isinstance(value, int) else f"{value:.3g}"
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)


class CSVLogger(_PeriodicMetrics):
    """Write ``episodes.csv`` (one row per finished episode) and ``metrics.csv`` (agent metrics averaged
    over every ``every_steps`` environment steps) into ``directory``.

    Episode rows reach the disk as each episode ends (a killed run loses none that finished). The logs always
    describe the run the trainer is continuing: when training starts (after a :class:`~rlbook.train.Checkpoint`
    has restored its step), rows logged *after* that step -- by a run that went on past its last checkpoint
    and then died -- are dropped, so a resumed run appends to a file with one header and no duplicated or
    missing steps. A fresh run starts at step 0 and so starts the files afresh."""

    def __init__(self, directory: str | os.PathLike, every_steps: int = 1000):
        super().__init__(every_steps)
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a folder path, got {type(directory).__name__}")
        self.directory = Path(directory)
        self._metric_names: list[str] | None = None
        self._episodes_file = None
        self._metrics_file = None

    EPISODE_COLUMNS = ["step", "episode", "return", "length", "seconds"]

    def before_training(self, trainer):
        self.directory.mkdir(parents=True, exist_ok=True)
        episodes = self.directory / "episodes.csv"
        kept = _truncate_after(episodes, trainer.step, self.EPISODE_COLUMNS)
        if kept is not None and kept != trainer.episodes:
            logger.warning("rlbook: %s holds %d episodes up to step %s, the run being continued has %d; "
                           "it probably belongs to another run", episodes, kept, f"{trainer.step:,}", trainer.episodes)
        new = kept is None
        self._episodes_file = episodes.open("a", newline="")
        self._episodes = csv.writer(self._episodes_file)
        if new:
            self._episodes.writerow(self.EPISODE_COLUMNS)
            self._episodes_file.flush()
        self._metrics_path = self.directory / "metrics.csv"
        self._metric_names = None
        if self._metrics_path.exists():
            _truncate_after(self._metrics_path, trainer.step, None)
            header = _header(self._metrics_path)
            self._metric_names = header[1:] if header else None
        self._metrics_file = None
        self._schedule_after(trainer.step)

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        self._episodes.writerow([trainer.step, trainer.episodes, f"{episode_return:.6g}", episode_length,
                                 f"{trainer.seconds():.3f}"])
        self._episodes_file.flush()

    def _write(self, trainer: Trainer) -> None:
        values = self._averager.pop()
        if not values:
            return
        if self._metrics_file is None:
            new = not self._metrics_path.exists() or self._metric_names is None
            self._metrics_file = self._metrics_path.open("w" if new else "a", newline="")
            self._metrics = csv.writer(self._metrics_file)
            if new:
                self._metric_names = sorted(values)
                self._metrics.writerow(["step", *self._metric_names])
        self._metrics.writerow([trainer.step, *(f"{values.get(k, np.nan):.6g}" for k in self._metric_names)])
        self._metrics_file.flush()

    def after_training(self, trainer):
        if self._episodes_file is None:
            return
        self._write(trainer)
        for f in (self._episodes_file, self._metrics_file):
            if f is not None:
                f.close()
        self._episodes_file = self._metrics_file = None

    def on_error(self, trainer, error):
        # Ctrl-C ends the run normally (after_training follows); any other error ends it here.
        if isinstance(error, KeyboardInterrupt):
            for f in (self._episodes_file, self._metrics_file):
                if f is not None:
                    f.flush()
        else:
            self.after_training(trainer)


def _header(path: Path) -> list[str] | None:
    with path.open(newline="") as f:
        return next(csv.reader(f), None)


def _truncate_after(path: Path, step: int, columns: list[str] | None) -> int | None:
    """Drop the rows of ``path`` logged after ``step`` (and a last line cut short by a killed process);
    return the number of rows kept, or ``None`` when there is no usable file (missing, empty, no header)."""
    if not path.exists():
        return None
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or (columns is not None and rows[0] != columns):
        if rows:
            raise ValueError(f"{path} is not an rlbook log (its header is {rows[0]}, expected {columns}); "
                             "log into another folder")
        path.unlink()
        return None
    header, body = rows[0], rows[1:]
    kept = []
    for row in body:
        try:
            if len(row) == len(header) and int(row[0]) <= step:
                kept.append(row)
        except ValueError:  # a partial line from a killed process
            pass
    if len(kept) != len(body):
        dropped = len(body) - len(kept)
        logger.warning("rlbook: %s: dropped %d row(s) logged after step %s, where this run continues",
                       path, dropped, f"{step:,}")
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows([header, *kept])
        os.replace(tmp, path)
    return len(kept)


class TensorBoardLogger(_PeriodicMetrics):
    """Log episode returns and lengths (``episode/return``, ``episode/length``) and agent metrics
    (``train/<name>``, averaged every ``every_steps`` steps) to TensorBoard under ``logdir``.

    Open it with ``tensorboard --logdir <logdir>``."""

    def __init__(self, logdir: str | os.PathLike = "runs", every_steps: int = 1000):
        super().__init__(every_steps)
        self.logdir = Path(logdir)
        self.writer = None

    def before_training(self, trainer):
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run discards what an earlier run logged after the checkpoint's step.
        purge = trainer.step + 1 if trainer.step > 0 else None
        self.writer = SummaryWriter(log_dir=str(self.logdir), purge_step=purge)
        self._schedule_after(trainer.step)

    def after_episode(self, trainer, env_id, episode_return, episode_length):
        self.writer.add_scalar("episode/return", episode_return, trainer.step)
        self.writer.add_scalar("episode/length", episode_length, trainer.step)

    def _write(self, trainer: Trainer) -> None:
        for key, value in self._averager.pop().items():
            self.writer.add_scalar(f"train/{key}", value, trainer.step)
        if trainer.elapsed or trainer.step:
            seconds = trainer.seconds()
            if seconds > 0:
                self.writer.add_scalar("time/steps_per_second", trainer.step / seconds, trainer.step)

    def after_training(self, trainer):
        if self.writer is not None:
            self._write(trainer)
            self.writer.close()
            self.writer = None

    def on_error(self, trainer, error):
        if self.writer is None:
            return
        if isinstance(error, KeyboardInterrupt):
            self.writer.flush()  # after_training follows and closes it
        else:
            self.writer.close()
            self.writer = None


class GameScores(Plugin):
    """Trainer plugin that collects the scores of finished *games* (not lives) from
    :class:`rlbook.envs.atari.AtariEpisodes` (Atari envs end an episode at every lost life; a game
    lasts until the last life).

    ``scores`` holds the unclipped game scores, ``end_steps`` the trainer step at which each game ended
    and ``end_seconds`` the training time. With ``threshold`` set, it stops training once the mean of
    the last ``window`` games reaches it and records ``solved_at_step`` / ``solved_at_seconds``.
    """

    def __init__(self, threshold: float | None = None, window: int = 100):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.threshold = threshold
        self.window = int(window)
        self.scores: list[float] = []
        self.end_steps: list[int] = []
        self.end_seconds: list[float] = []
        self.solved_at_step: int | None = None
        self.solved_at_seconds: float | None = None
        self._source = None  # the AtariEpisodes wrapper of the trainer's env
        self._seen = 0

    def before_training(self, trainer) -> None:
        from rlbook.envs.atari import find_atari_episodes

        # an A3CTrainer's games come from its workers' envs
        self._source = getattr(trainer, "atari_games", None) or find_atari_episodes(trainer.env)
        self._seen = len(self._source.episode_scores)

    def after_step(self, trainer, transition, metrics) -> None:
        new = self._source.episode_scores[self._seen:]
        if not new:
            return
        self._seen += len(new)
        seconds = trainer.seconds()
        self.scores.extend(new)
        self.end_steps.extend([trainer.step] * len(new))
        self.end_seconds.extend([seconds] * len(new))
        if self.threshold is not None and len(self.scores) >= self.window and self.mean() >= self.threshold:
            if self.solved_at_step is None:
                self.solved_at_step = trainer.step
                self.solved_at_seconds = seconds
            trainer.stop(f"mean game score of the last {self.window} games >= {self.threshold:g}")

    def mean(self, window: int | None = None) -> float:
        """Mean score of the last ``window`` games (NaN before the first)."""
        if not self.scores:
            return math.nan
        return float(np.mean(self.scores[-(window or self.window):]))
