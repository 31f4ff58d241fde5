"""Tests of rlbook.plot: the right artists, the right statistics, small decodable animations."""

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")

import gymnasium as gym  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import FancyArrow, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from rlbook.plot import (  # noqa: E402
    aggregate_runs,
    animate_episode,
    learning_curves,
    record_episode,
    rolling_mean,
    value_heatmap,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# --------------------------------------------------------------------------- learning curves
def test_rolling_mean_trailing_with_partial_start():
    np.testing.assert_allclose(rolling_mean(np.array([1.0, 2, 3, 4, 5]), 2), [1, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(rolling_mean(np.array([1.0, 2, 3]), 1), [1, 2, 3])
    with pytest.raises(ValueError, match="window"):
        rolling_mean(np.ones(3), 0)


def test_aggregate_quartiles_on_known_constant_runs():
    # five seeds with constant curves 1..5 on different grids: median 3, quartiles 2 and 4 everywhere
    runs = [(np.array([0.0, 50, 100]), np.full(3, float(k))) for k in range(1, 6)]
    runs[0] = (np.linspace(0, 100, 11), np.full(11, 1.0))
    x, med, q25, q75 = aggregate_runs(runs, n_points=21)
    assert len(x) == 21 and x[0] == 0 and x[-1] == 100
    np.testing.assert_allclose(med, 3.0)
    np.testing.assert_allclose(q25, 2.0)
    np.testing.assert_allclose(q75, 4.0)


def test_aggregate_interpolates_between_points():
    x, med, _, _ = aggregate_runs([(np.array([0.0, 10.0]), np.array([0.0, 100.0]))], n_points=11)
    np.testing.assert_allclose(med, np.arange(0, 101, 10))


def test_aggregate_drops_x_where_fewer_than_half_the_seeds_have_data():
    # seeds stop at 10, 20, 100: beyond x=20 only one of three seeds is left
    runs = [(np.array([0.0, 10]), np.zeros(2)), (np.array([0.0, 20]), np.zeros(2)), (np.array([0.0, 100]), np.ones(2))]
    x, med, _, _ = aggregate_runs(runs, n_points=101)
    assert x.max() == pytest.approx(20.0)
    x_all, _, _, _ = aggregate_runs(runs, n_points=101, min_fraction=0.3)
    assert x_all.max() == pytest.approx(100.0)


def test_aggregate_bare_y_uses_episode_numbers_and_smoothing():
    x, med, _, _ = aggregate_runs([np.array([0.0, 10, 0, 10])], n_points=4, smooth=2)
    np.testing.assert_allclose(x, [1, 2, 3, 4])
    np.testing.assert_allclose(med, [0, 5, 5, 5])


def test_aggregate_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        aggregate_runs([])
    with pytest.raises(ValueError, match="same length"):
        aggregate_runs([(np.arange(3), np.arange(4))])
    with pytest.raises(ValueError, match="non-decreasing"):
        aggregate_runs([(np.array([2.0, 1.0]), np.array([0.0, 0.0]))])


def test_learning_curves_artists_band_and_threshold():
    rng = np.random.default_rng(0)
    runs = [(np.sort(rng.uniform(0, 1000, 30)), rng.normal(k, 1, 30)) for k in range(4)]
    ax = learning_curves(runs, "environment steps", "episode return", title="t", label="A", threshold=475)
    assert len(ax.lines) == 2  # the median and the threshold
    assert ax.lines[1].get_ydata()[0] == 475
    bands = _bands(ax)
    assert len(bands) == 1
    # the band's polygon spans exactly q25..q75 of aggregate_runs
    x, med, q25, q75 = aggregate_runs(runs)
    verts = bands[0].get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(q25.min())
    assert verts[:, 1].max() == pytest.approx(q75.max())
    np.testing.assert_allclose(ax.lines[0].get_ydata(), med)
    assert ax.get_xlabel() == "environment steps" and ax.get_title() == "t"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["A (median and interquartile range of 4 seeds)", "threshold = 475"]


def test_learning_curves_compare_methods_on_one_ax():
    runs = [(np.arange(10.0), np.arange(10.0) + k) for k in range(3)]
    ax = learning_curves(runs, "x", "y", label="A", threshold=5)
    learning_curves(runs, "x", "y", label="B", threshold=5, ax=ax)
    assert len(ax.lines) == 3  # two medians, one threshold line (not duplicated)
    assert len(_bands(ax)) == 2
    assert len(ax.get_legend().get_texts()) == 3
    single = learning_curves([runs[0]], "x", "y")
    assert len(_bands(single)) == 0  # one seed: no band to draw


# --------------------------------------------------------------------------- value heatmap
def test_value_heatmap_frozenlake_arrows_marks_and_texts():
    env = gym.make("FrozenLake-v1")
    desc = env.unwrapped.desc
    values = np.linspace(0, 1, 16)
    policy = np.arange(16) % 4
    ax = value_heatmap(values, (4, 4), desc=desc, policy=policy, title="V")
    arrows = [p for p in ax.patches if isinstance(p, FancyArrow) and p.get_gid() == "policy-arrow"]
    letters = np.array([[c.decode() for c in row] for row in desc])
    n_terminal = int(np.isin(letters, ["H", "G"]).sum())
    assert n_terminal == 5
    assert len(arrows) == 16 - n_terminal
    holes = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == "hole"]
    goals = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == "goal"]
    assert len(holes) == 4 and len(goals) == 1
    texts = [t.get_text() for t in ax.texts]
    assert "1.00" in texts and "0.00" in texts and "0.47" in texts  # 7/15
    assert ax.get_title() == "V"


def _arrow_direction(arrow: FancyArrow) -> tuple[int, int]:
    """(dx, dy) signs of an arrow in data coordinates: its head (widest part) lies towards the tip."""
    v = arrow.get_xy()
    along = 0 if np.ptp(v[:, 0]) > np.ptp(v[:, 1]) else 1
    across = 1 - along
    width = np.abs(v[:, across] - np.median(v[:, across]))
    head = v[width >= width.max() - 1e-9, along].mean()
    middle = (v[:, along].max() + v[:, along].min()) / 2
    d = [0, 0]
    d[along] = int(np.sign(head - middle))
    return d[0], d[1]


def test_value_heatmap_arrow_direction_follows_action_order():
    # 2x3 grid S F F / F G H with actions left, down, right, up on the non-terminal cells;
    # rows grow downwards in the image, so "down" is +y in data coordinates
    desc = ["SFF", "FGH"]
    policy = [0, 1, 2, 3, 0, 0]
    ax = value_heatmap(np.zeros(6), (2, 3), desc=desc, policy=policy, colorbar=False)
    arrows = [p for p in ax.patches if p.get_gid() == "policy-arrow"]
    assert [_arrow_direction(a) for a in arrows] == [(-1, 0), (0, 1), (1, 0), (0, -1)]


def test_value_heatmap_accepts_q_table_and_no_desc():
    q = np.zeros((6, 4))
    q[:, 2] = 1.0
    ax = value_heatmap(q.max(axis=1), (2, 3), policy=q, colorbar=False)
    assert len([p for p in ax.patches if p.get_gid() == "policy-arrow"]) == 6


def test_value_heatmap_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="expected rows"):
        value_heatmap(np.zeros(5), (2, 3))
    with pytest.raises(ValueError, match="desc has shape"):
        value_heatmap(np.zeros(6), (2, 3), desc=["SFG"])
    with pytest.raises(ValueError, match="action 7"):
        value_heatmap(np.zeros(2), (1, 2), policy=[7, 0])


# --------------------------------------------------------------------------- animation
def _decode(html: str) -> Image.Image:
    m = re.search(r'src="data:image/(\w+);base64,([^"]+)"', html)
    assert m is not None
    return Image.open(io.BytesIO(base64.b64decode(m.group(2))))


def _played_frames(img: Image.Image, fps: float) -> int:
    """Frames shown at ``fps``: encoders merge identical consecutive frames into one longer frame."""
    total_ms = 0
    for i in range(img.n_frames):
        img.seek(i)
        img.load()  # WebP fills in the frame's duration on load
        total_ms += img.info["duration"]
    return round(total_ms / round(1000 / fps))


@pytest.mark.parametrize("fmt", ["webp", "gif"])
def test_animate_episode_frame_count_size_and_decodable(fmt):
    rng = np.random.default_rng(0)
    frames = [np.full((40, 60, 3), 255, np.uint8) for _ in range(10)]
    for i, f in enumerate(frames):
        f[10:20, 5 * i : 5 * i + 8] = rng.integers(0, 255, 3)
    anim = animate_episode(frames, fps=10, scale=0.5, format=fmt)
    img = _decode(anim._repr_html_())
    assert img.format.lower() == fmt
    assert img.n_frames == 10 and anim.n_frames == 10 and _played_frames(img, 10) == 10
    assert img.size == (30, 20)
    assert "10 frames" in repr(anim) and len(repr(anim)) < 100  # no bytes in the text/plain output
    sub = animate_episode(frames, every=3, max_frames=3, format=fmt)
    assert _decode(sub.to_html()).n_frames == 3


def test_cartpole_episode_animation_is_small():
    env = gym.make("CartPole-v1", render_mode="rgb_array")

    class Lean:
        def act(self, obs, explore=False):
            return int(obs[2] + obs[3] > 0)

    frames, total = record_episode(Lean(), env, max_steps=199, seed=0)
    env.close()
    assert len(frames) == int(total) + 1 and frames[0].shape == (400, 600, 3)
    anim = animate_episode(frames)
    html = anim._repr_html_()
    assert len(html) < 300_000
    lossy = animate_episode(frames, lossless=False)
    assert lossy.nbytes < anim.nbytes
    img = _decode(html)
    assert img.n_frames <= len(frames) and _played_frames(img, 30) == len(frames)


def test_record_episode_counts_steps_and_needs_rgb_array():
    class Left:
        def act(self, obs, explore=False):
            assert explore is False
            return 0

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    frames, total = record_episode(Left(), env, seed=1)
    assert 5 <= total < 30 and len(frames) == total + 1
    frames, total = record_episode(Left(), "CartPole-v1", max_steps=3, seed=1)
    assert total == 3 and len(frames) == 4
    with pytest.raises(ValueError, match="rgb_array"):
        record_episode(Left(), gym.make("CartPole-v1"))


def test_animate_episode_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        animate_episode([])
    with pytest.raises(ValueError, match="RGB"):
        animate_episode([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="format"):
        animate_episode([np.zeros((4, 4, 3), np.uint8)], format="mp4")
