"""Plots the book uses again and again: learning curves with seed bands, grid-world value maps with
policy arrows, and small inline animations of episodes.

Everything here draws with matplotlib on an ``ax`` you may pass in (a new figure is made otherwise)
and returns that ``ax``, so several calls can share one plot. Learning curves first appear in chapter 1,
episode animations in chapter 2, value maps with policy arrows in chapter 5.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# FrozenLake's action order: 0 left, 1 down, 2 right, 3 up, as (dx, dy) in image coordinates (y down).
GRID_ACTION_ARROWS: dict[int, tuple[float, float]] = {0: (-1.0, 0.0), 1: (0.0, 1.0), 2: (1.0, 0.0), 3: (0.0, -1.0)}


def _new_ax(ax, figsize=(7, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


# --------------------------------------------------------------------------- learning curves
def rolling_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing rolling mean of a 1-D array ``(n,)`` over ``window`` points; the first points average
    over what exists so far, so the output has the same length ``(n,)``."""
    y = np.asarray(y, dtype=float)
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    if window == 1 or len(y) == 0:
        return y
    c = np.concatenate([[0.0], np.cumsum(y)])
    idx = np.arange(1, len(y) + 1)
    start = np.maximum(idx - window, 0)
    return (c[idx] - c[start]) / (idx - start)


def _as_run(run: Any) -> tuple[np.ndarray, np.ndarray]:
    """A run is ``(x, y)``; a bare 1-D ``y`` means x = 1, 2, ... (episode numbers)."""
    if isinstance(run, tuple) and len(run) == 2:
        x, y = (np.asarray(a, dtype=float).ravel() for a in run)
    else:
        y = np.asarray(run, dtype=float).ravel()
        x = np.arange(1, len(y) + 1, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"a run's x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) == 0:
        raise ValueError("a run is empty; every run needs at least one point")
    if np.any(np.diff(x) < 0):
        raise ValueError("a run's x values must be non-decreasing (e.g. episode end steps)")
    return x, y


def aggregate_runs(
    runs: Sequence[Any], n_points: int = 200, smooth: int = 1, min_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Put per-seed curves on one grid and take their median and quartiles.

    Each run is a pair ``(x, y)`` of 1-D arrays (``x`` non-decreasing, e.g. the step at which each
    episode ended and its return) or a bare ``y`` (x = episode number). A run is first smoothed with a
    trailing rolling mean of ``smooth`` points, then linearly interpolated onto ``n_points`` evenly
    spaced x values spanning all runs. A run has no value outside its own x range (a seed that
    stopped early, e.g. because it solved the task, says nothing about later x). A grid point is kept
    only where at least ``min_fraction`` of the runs have data, so the tail of the plot is never the
    median of one lucky seed.

    Returns:
        ``(x, median, q25, q75)``, four arrays of equal length ``(m,)`` with ``m <= n_points``.
    """
    if len(runs) == 0:
        raise ValueError("runs is empty; pass at least one (x, y) curve")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    parsed = [_as_run(r) for r in runs]
    parsed = [(x, rolling_mean(y, smooth)) for x, y in parsed]
    lo = min(x[0] for x, _ in parsed)
    hi = max(x[-1] for x, _ in parsed)
    grid = np.linspace(lo, hi, n_points) if hi > lo else np.array([lo])
    table = np.full((len(parsed), len(grid)), np.nan)
    for i, (x, y) in enumerate(parsed):
        inside = (grid >= x[0]) & (grid <= x[-1])
        table[i, inside] = np.interp(grid[inside], x, y)
    count = np.sum(~np.isnan(table), axis=0)
    keep = count >= math.ceil(min_fraction * len(parsed))
    table, grid = table[:, keep], grid[keep]
    if grid.size == 0:
        empty = np.array([])
        return empty, empty, empty, empty
    q25, med, q75 = np.nanpercentile(table, [25, 50, 75], axis=0)
    return grid, med, q25, q75


def learning_curves(
    runs: Sequence[Any],
    x_label: str,
    y_label: str,
    title: str | None = None,
    ax=None,
    label: str | None = None,
    smooth: int = 1,
    threshold: float | None = None,
    threshold_label: str | None = None,
    n_points: int = 200,
    min_fraction: float = 0.5,
    color: str | None = None,
):
    """Median learning curve over seeds with its interquartile band (25 to 75 %).

    Args:
        runs: one curve per seed, each ``(x, y)`` with 1-D arrays of equal length (e.g. the step
            at which each episode ended and the episode's return), or a bare ``y``. Curves may have
            different x grids and lengths; see :func:`aggregate_runs` for how they are combined
            (only x where at least ``min_fraction`` of the seeds have data is drawn).
        x_label, y_label: axis labels (with units).
        title: the plot title (state the finding).
        ax: draw on this matplotlib Axes; a new ``(7, 4)`` figure otherwise.
        label: legend entry of this method; call the function again on the same ``ax`` with
            another ``label`` to compare methods.
        smooth: rolling-mean window over points (episodes) applied to each run before combining.
        threshold: draw a dashed horizontal line at this value (e.g. 475, "solved").
        threshold_label: the legend text of the threshold line (default ``"threshold = <value>"``).
        n_points: size of the common x grid.
        min_fraction: share of seeds that must have data at an x for it to be drawn.
        color: colour of the line and band (next in the colour cycle by default).

    Returns:
        the Axes.
    """
    ax = _new_ax(ax)
    x, med, q25, q75 = aggregate_runs(runs, n_points=n_points, smooth=smooth, min_fraction=min_fraction)
    n = len(runs)
    name = label
    if n > 1:  # the legend names the band, not just the line
        band = f"median and interquartile range of {n} seeds"
        name = f"{label} ({band})" if label is not None else band
    (line,) = ax.plot(x, med, color=color, label=name)
    if n > 1:
        ax.fill_between(x, q25, q75, color=line.get_color(), alpha=0.25, linewidth=0)
    if threshold is not None:
        already = any(getattr(a, "get_gid", lambda: None)() == f"threshold:{threshold}" for a in ax.lines)
        if not already:
            text = threshold_label if threshold_label is not None else f"threshold = {threshold:g}"
            ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1, label=text, gid=f"threshold:{threshold}")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if title is not None:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    return ax


# --------------------------------------------------------------------------- grid worlds
def _desc_letters(desc: Any, shape: tuple[int, int]) -> np.ndarray:
    """A map (``env.unwrapped.desc`` bytes array, or a list of strings) as a ``shape`` array of str."""
    rows = [[c.decode() if isinstance(c, bytes) else str(c) for c in row] for row in desc]
    letters = np.array(rows, dtype="<U1")
    if letters.shape != tuple(shape):
        raise ValueError(f"desc has shape {letters.shape}, expected {tuple(shape)} to match the values")
    return letters


def value_heatmap(
    values: Any,
    shape: tuple[int, int],
    desc: Any = None,
    policy: Any = None,
    ax=None,
    title: str | None = None,
    fmt: str = "{:.2f}",
    cmap: str = "viridis",
    colorbar: bool = True,
):
    """State values of a grid world as a heatmap, with the value printed in each cell.

    Args:
        values: one value per state, ``(rows * cols,)`` in row-major order (FrozenLake's state
            numbering) or already ``shape``.
        shape: ``(rows, cols)`` of the grid.
        desc: the map, e.g. FrozenLake's ``env.unwrapped.desc`` (letters S start, F frozen, H hole,
            G goal; bytes or str). Holes and the goal get a marked border and their letter; they are
            terminal, so no arrow is drawn on them.
        policy: greedy actions, ``(rows * cols,)`` ints in FrozenLake's order (0 left, 1 down,
            2 right, 3 up), or a Q-table ``(rows * cols, 4)`` whose row-wise argmax is used. One arrow
            is drawn per non-terminal cell.
        ax: the Axes to draw on (a new figure otherwise).
        title: the plot title.
        fmt: format of the printed values.
        cmap: matplotlib colormap name.
        colorbar: add a colour bar.

    Returns:
        the Axes. Arrows are ``FancyArrow`` patches with gid ``"policy-arrow"``; the terminal-cell
        borders are ``Rectangle`` patches with gid ``"hole"`` or ``"goal"``.
    """
    from matplotlib.patches import Rectangle

    rows, cols = int(shape[0]), int(shape[1])
    v = np.asarray(values, dtype=float)
    if v.size != rows * cols:
        raise ValueError(f"values has {v.size} entries, expected rows * cols = {rows * cols} for shape {shape}")
    v = v.reshape(rows, cols)
    letters = _desc_letters(desc, (rows, cols)) if desc is not None else np.full((rows, cols), "F")
    terminal = np.isin(letters, ["H", "G"])

    ax = _new_ax(ax, figsize=(1.2 * cols + 1.5, 1.2 * rows))
    image = ax.imshow(v, cmap=cmap)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="value")
    cm = image.get_cmap()
    norm = image.norm
    for r in range(rows):
        for c in range(cols):
            # dark text on light cells, light text on dark cells
            lum = np.dot(cm(norm(v[r, c]))[:3], [0.299, 0.587, 0.114])
            ink = "black" if lum > 0.5 else "white"
            letter = letters[r, c]
            if letter in ("H", "G"):
                ax.add_patch(Rectangle((c - 0.45, r - 0.45), 0.9, 0.9, fill=False, linewidth=2.5,
                                       edgecolor="crimson" if letter == "H" else "deepskyblue",
                                       gid="hole" if letter == "H" else "goal"))
                ax.text(c, r - 0.22, "hole" if letter == "H" else "goal", ha="center", va="center",
                        fontsize=8, color=ink)
            elif letter == "S":
                ax.text(c, r - 0.3, "start", ha="center", va="center", fontsize=7, color=ink)
            ax.text(c, r + (0.28 if policy is not None and not terminal[r, c] else 0.0), fmt.format(v[r, c]),
                    ha="center", va="center", fontsize=8, color=ink)

    if policy is not None:
        p = np.asarray(policy)
        if p.ndim == 2:
            if p.shape[0] != rows * cols:
                raise ValueError(f"a Q-table policy needs {rows * cols} rows, got shape {p.shape}")
            p = p.argmax(axis=1)
        p = p.reshape(-1)
        if p.size != rows * cols:
            raise ValueError(f"policy has {p.size} entries, expected {rows * cols}")
        p = p.reshape(rows, cols)
        for r in range(rows):
            for c in range(cols):
                if terminal[r, c]:
                    continue
                a = int(p[r, c])
                if a not in GRID_ACTION_ARROWS:
                    raise ValueError(f"action {a} at cell ({r}, {c}) is not one of 0 left, 1 down, 2 right, 3 up")
                dx, dy = GRID_ACTION_ARROWS[a]
                ax.arrow(c - 0.17 * dx, r - 0.05 - 0.17 * dy, 0.3 * dx, 0.3 * dy, width=0.02,
                         head_width=0.13, head_length=0.1, length_includes_head=True,
                         color="white", ec="black", linewidth=0.6, gid="policy-arrow")

    ax.set_xticks(np.arange(cols))
    ax.set_yticks(np.arange(rows))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    if title is not None:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- animations
@dataclass
class EpisodeAnimation:
    """An encoded animation that shows itself inline in Jupyter (``_repr_html_``).

    Attributes:
        data: the encoded file (animated WebP or GIF bytes).
        format: ``"webp"`` or ``"gif"``.
        n_frames: frames in the animation.
        size: ``(width, height)`` in pixels.
        fps: frames per second of playback.
    """

    data: bytes = field(repr=False)
    format: str
    n_frames: int
    size: tuple[int, int]
    fps: float

    @property
    def nbytes(self) -> int:
        """Size of the encoded file in bytes (the base64 HTML is about 4/3 of this)."""
        return len(self.data)

    def __repr__(self) -> str:
        return (f"EpisodeAnimation({self.n_frames} frames, {self.size[0]}x{self.size[1]} px, "
                f"{self.format}, {self.nbytes / 1024:.0f} KiB)")

    def to_html(self) -> str:
        """An ``<img>`` tag with the animation inlined as a base64 data URI."""
        b64 = base64.b64encode(self.data).decode("ascii")
        alt = html.escape(f"episode animation, {self.n_frames} frames")
        return f'<img src="data:image/{self.format};base64,{b64}" alt="{alt}" width="{self.size[0]}"/>'

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path: str) -> None:
        """Write the encoded file (use a ``.webp`` or ``.gif`` name matching :attr:`format`)."""
        with open(path, "wb") as fh:
            fh.write(self.data)


def _encode(images: list, fmt: str, duration_ms: int, lossless: bool) -> bytes:
    buf = io.BytesIO()
    if fmt == "webp":
        # lossy WebP leaves faint ghosts of moving objects on flat backgrounds; lossless stays sharp
        # and is still small for simple renders (quality is the compression effort when lossless)
        images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=duration_ms,
                       loop=0, lossless=lossless, quality=50 if lossless else 80, method=4, minimize_size=True)
    elif fmt == "gif":
        # one shared palette keeps GIFs small; simple renders have few colours
        pal = [im.convert("P", palette=1, colors=64) for im in images]  # 1 = Image.Palette.ADAPTIVE
        pal[0].save(buf, format="GIF", save_all=True, append_images=pal[1:], duration=duration_ms, loop=0,
                    optimize=True, disposal=1)
    else:
        raise ValueError(f"format must be 'webp', 'gif' or 'auto', got {fmt!r}")
    return buf.getvalue()


def animate_episode(
    frames: Sequence[np.ndarray],
    fps: float = 30,
    scale: float = 0.5,
    every: int = 1,
    max_frames: int = 300,
    format: str = "auto",
    lossless: bool = True,
) -> EpisodeAnimation:
    """Turn ``rgb_array`` frames into a small animation that displays inline in a notebook.

    Args:
        frames: a sequence of ``(height, width, 3)`` uint8 images (``env.render()`` output).
        fps: playback speed in frames per second (of the kept frames).
        scale: resize factor applied to each frame (0.5 halves width and height).
        every: keep one frame in ``every`` (2 halves the file size and the length).
        max_frames: keep at most this many frames (the first ones) after subsampling.
        format: ``"webp"`` (small, supported by every current browser), ``"gif"`` or ``"auto"``
            (WebP when Pillow can write it, GIF otherwise).
        lossless: encode WebP without loss (sharp; the default) or lossy (smaller for photographic
            frames such as Atari screens with many colours).

    Returns:
        an :class:`EpisodeAnimation`; put it last in a cell to see it. A 200-frame CartPole episode
        at the default settings is about 100 KB (lossless WebP, 300 x 200 pixels).
    """
    from PIL import Image, features

    if len(frames) == 0:
        raise ValueError("frames is empty; record at least one rgb_array frame")
    if not 0.0 < scale <= 4.0:
        raise ValueError(f"scale must be in (0, 4], got {scale}")
    if every < 1 or max_frames < 1:
        raise ValueError(f"every and max_frames must be >= 1, got every={every}, max_frames={max_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if format == "auto":
        format = "webp" if features.check("webp") else "gif"
    kept = list(frames)[::every][:max_frames]
    first = np.asarray(kept[0])
    if first.ndim != 3 or first.shape[2] not in (3, 4):
        raise ValueError(f"frames must be (height, width, 3) RGB arrays, got shape {first.shape}")
    h, w = first.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)[..., :3]).resize(size, Image.BILINEAR) for f in kept]
    data = _encode(images, format, duration_ms=max(1, round(1000 / fps)), lossless=lossless)
    return EpisodeAnimation(data=data, format=format, n_frames=len(images), size=size, fps=fps)


def record_episode(agent, env, max_steps: int = 1000, seed: int | None = None) -> tuple[list[np.ndarray], float]:
    """Play one episode with ``agent`` acting greedily (``explore=False``) and keep every frame.

    Args:
        agent: any :class:`~rlbook.agents.base.Agent` (or object with ``act(obs, explore)``).
        env: a single Gymnasium env made with ``render_mode="rgb_array"``, or an env id (then made so).
        max_steps: stop after this many steps even if the episode goes on.
        seed: passed to ``env.reset``.

    Returns:
        ``(frames, total_reward)``: the frames ``(height, width, 3)`` from the reset state to the last
        step (``steps + 1`` frames) and the sum of rewards.
    """
    owned = isinstance(env, str)
    if owned:
        from rlbook.envs import make

        env = make(env, render_mode="rgb_array")
    if env.render_mode != "rgb_array":
        raise ValueError(f"record_episode needs an env made with render_mode='rgb_array', got {env.render_mode!r}")
    try:
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
        total = 0.0
        for _ in range(max_steps):
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, explore=False))
            total += float(reward)
            frames.append(env.render())
            if terminated or truncated:
                break
    finally:
        if owned:
            env.close()
    return frames, total
