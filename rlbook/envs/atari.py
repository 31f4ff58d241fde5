"""Atari games with the standard DQN preprocessing, as vector environments the trainer accepts.

One function, :func:`make_atari`, and two ways to run the emulators behind it:

``"ale"`` (the fast path)
    ale-py's own ``AtariVectorEnv``: every emulator and its preprocessing run in C++ threads and a
    whole batch of observations comes back in one array.
``"sync"`` / ``"async"`` (the readable path)
    one Gymnasium ``ALE/<Game>-v5`` env per copy, wrapped in :class:`AtariFrames` (no-op and fire
    reset, frame skip with a max over the last two frames, 84x84 grayscale) and Gymnasium's
    ``FrameStackObservation``, inside a ``SyncVectorEnv`` or ``AsyncVectorEnv``.

Both paths give the same observations: ``uint8`` arrays of shape ``(num_envs, 4, 84, 84)``, channel
first, the newest frame last, the first stack of a game padded with zeros. The shrinking to 84x84 is
the "area" interpolation of OpenCV's ``INTER_AREA`` (what the fast path uses), written here in NumPy
so that the readable path needs no OpenCV. In Pong the two paths give identical frames. Elsewhere two
small differences remain: a pixel now and then is off by one where the area average falls on a
rounding tie (floating-point summation order), and the last observation of a game that ends in the
middle of a frame skip differs, because ale-py's C++ code max-pools in place into a buffer it then
reuses stale. Neither matters for learning (the last observation of a game is never bootstrapped).

Rewards and lives are handled once, for both paths, by :class:`AtariEpisodes` around the vector env:
it clips rewards to their sign and, with ``episodic_life``, ends an *episode* (``terminated``) when a
life is lost while the *game* goes on. The trainer then counts lives as episodes, so its returns are
neither game scores nor full games. :class:`AtariEpisodes` therefore also keeps the unclipped score of
every finished game in ``episode_scores``; :class:`rlbook.logs.GameScores` is the trainer plugin that reads them
(and can stop training once the mean game score reaches a threshold).
"""

from __future__ import annotations

import difflib
import math
import re

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

VECTORIZED = ("auto", "ale", "sync", "async")
NOOP, FIRE = 0, 1  # indices in the minimal action set of every game that has these actions
RAW_HEIGHT, RAW_WIDTH = 210, 160


# ---------------------------------------------------------------------------- game names
def _all_games() -> list[str]:
    from ale_py import roms

    return list(roms.get_all_rom_ids())


def game_rom_name(game: str) -> str:
    """The ALE ROM name (snake case) of ``game``, given as ``"Pong"``, ``"pong"``, ``"SpaceInvaders"`` or
    ``"space_invaders"``. Raises ``ValueError`` for an unknown game, suggesting close names."""
    if not isinstance(game, str):
        raise TypeError(f"game must be a string such as 'Pong', got {type(game).__name__}")
    name = game.strip()
    if name.startswith("ALE/"):
        name = name[4:].split("-v")[0]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    games = _all_games()
    for candidate in (snake, name.lower()):
        if candidate in games:
            return candidate
    close = difflib.get_close_matches(snake, games, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown Atari game {game!r}{hint} (ale-py knows {len(games)} games, e.g. 'Pong', 'Breakout')")


def _gym_id(rom: str) -> str:
    return "ALE/" + "".join(part[:1].upper() + part[1:] for part in rom.split("_")) + "-v5"


# ---------------------------------------------------------------------------- area resize
def area_resize_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The area interpolation along one axis, as ``(index, weight)`` arrays of shape ``(n_out, k)``.

    Output pixel ``j`` covers the input interval ``[j s, (j+1) s)`` with ``s = n_in / n_out``; it is the
    average of the input pixels ``index[j]`` weighted by the part of each inside that interval,
    ``weight[j]`` (each row sums to 1). This is OpenCV's ``INTER_AREA`` for shrinking. The dense
    matrix would do as well, but a tiny BLAS product costs milliseconds when the BLAS threads fight
    over busy cores; the gather below takes a fraction of one."""
    if n_out <= 0 or n_in < n_out:
        raise ValueError(f"area resizing shrinks: need 0 < n_out <= n_in, got n_in={n_in}, n_out={n_out}")
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    k = math.ceil(scale) + 1  # an interval of length s touches at most ceil(s) + 1 pixels
    index = np.floor(lo).astype(np.int64) + np.arange(k)[None, :]
    overlap = np.clip(np.minimum(lo + scale, index + 1) - np.maximum(lo, index), 0.0, None)
    overlap[index >= n_in] = 0.0
    return np.minimum(index, n_in - 1), (overlap / scale).astype(np.float32)


def area_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Shrink a grayscale ``uint8`` frame of shape ``(H, W)`` to ``(height, width)`` by area interpolation."""
    rows, row_w = area_resize_weights(frame.shape[0], height)
    cols, col_w = area_resize_weights(frame.shape[1], width)
    return _area_resize(frame, rows, row_w, cols, col_w)


def _area_resize(frame, rows, row_w, cols, col_w) -> np.ndarray:
    tall = (frame[rows].astype(np.float32) * row_w[:, :, None]).sum(axis=1)  # (height, W)
    small = (tall[:, cols] * col_w[None]).sum(axis=2)  # (height, width)
    return np.rint(small).astype(np.uint8)


class AtariFrames(gym.Wrapper):
    """The per-frame part of the DQN preprocessing for one ALE env made with ``frameskip=1``.

    - reset: the emulator's reset, then ``k`` no-op frames with ``k`` uniform in ``1..noop_max``
      (one fewer when FIRE follows) and one FIRE frame in games that have FIRE (the fast path's order);
    - step: repeat the action for ``frame_skip`` frames, sum the rewards, take the pixel-wise max of
      the last two grayscale screens (Atari sprites flicker between frames);
    - shrink the 210x160 grayscale screen to ``screen_size`` x ``screen_size`` by area interpolation.

    Observations: ``uint8`` arrays of shape ``(screen_size, screen_size)``.
    """

    def __init__(self, env: gym.Env, *, noop_max: int = 30, frame_skip: int = 4, screen_size: int = 84,
                 fire_reset: bool = True):
        super().__init__(env)
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        if noop_max < 0:
            raise ValueError(f"noop_max must be >= 0, got {noop_max}")
        if getattr(env.unwrapped, "_frameskip", 1) != 1:
            raise ValueError("AtariFrames skips frames itself: make the env with frameskip=1")
        self.noop_max = noop_max
        self.frame_skip = frame_skip
        self.screen_size = screen_size
        meanings = env.unwrapped.get_action_meanings()
        self.fire_reset = fire_reset and len(meanings) > FIRE and meanings[FIRE] == "FIRE"
        self._rows = area_resize_weights(RAW_HEIGHT, screen_size)
        self._cols = area_resize_weights(RAW_WIDTH, screen_size)
        self._screens = np.zeros((2, RAW_HEIGHT, RAW_WIDTH), dtype=np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, (screen_size, screen_size), dtype=np.uint8)

    @property
    def ale(self):
        return self.env.unwrapped.ale

    def reset(self, *, seed=None, options=None):
        _, info = self.env.reset(seed=seed, options=options)
        noops = 0
        if self.noop_max > 0:
            noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1)) - int(self.fire_reset)
        for _ in range(noops):
            _, _, terminated, truncated, info = self.env.step(NOOP)
            if terminated or truncated:
                _, info = self.env.reset()
        if self.fire_reset:
            _, _, _, _, info = self.env.step(FIRE)
        self._screens[0] = 0
        self.ale.getScreenGrayscale(self._screens[1])
        return self._observation(), info

    def step(self, action):
        total, terminated, truncated, info = 0.0, False, False, {}
        for t in range(self.frame_skip):
            _, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if t >= self.frame_skip - 2:  # keep the last two screens for the max
                self.ale.getScreenGrayscale(self._screens[t - self.frame_skip + 2])
            if terminated or truncated:
                break
        return self._observation(), total, terminated, truncated, info

    def _observation(self) -> np.ndarray:
        screen = np.maximum(self._screens[0], self._screens[1])
        return _area_resize(screen, *self._rows, *self._cols)


# ---------------------------------------------------------------------------- lives, rewards, scores
class AtariEpisodes(gym.vector.VectorWrapper):
    """Reward clipping, episodic life and real game scores for either vector path.

    The inner vector env reports the unclipped reward, ``info["lives"]`` and the end of a *game*.
    This wrapper

    - clips each reward to its sign (``clip_rewards``): the agent sees -1, 0 or +1 in every game;
    - with ``episodic_life``, sets ``terminated`` when a life is lost while the game goes on. The step
      after such a row plays the role of the next-step autoreset: it presses NOOP whatever the agent
      chose and reports reward 0 and no termination, and the trainer drops it like any reset row;
    - adds up the unclipped rewards of every game and, when the game ends, appends its score to
      ``episode_scores`` (its length in agent steps to ``episode_lengths``) and reports it in
      ``info["game_score"]`` (NaN in rows where no game ended; mask ``info["_game_score"]``).
    """

    def __init__(self, env: gym.vector.VectorEnv, *, clip_rewards: bool = True, episodic_life: bool = True):
        super().__init__(env)
        self.clip_rewards = clip_rewards
        self.episodic_life = episodic_life
        n = env.num_envs
        self._score = np.zeros(n, dtype=np.float64)
        self._length = np.zeros(n, dtype=np.int64)
        self._lives = np.zeros(n, dtype=np.int64)
        self._life_lost = np.zeros(n, dtype=bool)  # rows whose next step is the emulated reset
        self._game_over = np.zeros(n, dtype=bool)  # rows whose next step is the inner env's autoreset
        self.episode_scores: list[float] = []
        self.episode_lengths: list[int] = []

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._score[:] = 0.0
        self._length[:] = 0
        self._lives[:] = info["lives"]
        self._life_lost[:] = False
        self._game_over[:] = False
        return obs, info

    def step(self, actions):
        actions = np.asarray(actions)
        pseudo_reset = self._life_lost
        if pseudo_reset.any():
            actions = np.where(pseudo_reset, NOOP, actions).astype(actions.dtype)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        reward = np.asarray(reward, dtype=np.float64)
        lives = np.asarray(info["lives"], dtype=np.int64)
        real_reset = self._game_over
        if real_reset.any():  # the inner env reset these rows: a new game starts
            self._score[real_reset] = 0.0
            self._length[real_reset] = 0
        playing = ~real_reset
        self._score[playing] += reward[playing]
        self._length[playing] += 1
        game_over = (np.asarray(terminated) | np.asarray(truncated)) & playing

        scores = np.full(self.num_envs, np.nan)
        if game_over.any():
            scores[game_over] = self._score[game_over]
            self.episode_scores.extend(self._score[game_over].tolist())
            self.episode_lengths.extend(self._length[game_over].tolist())
        info = dict(info)
        info["game_score"] = scores
        info["_game_score"] = game_over

        terminated = np.array(terminated, dtype=bool)
        truncated = np.array(truncated, dtype=bool)
        if self.clip_rewards:
            reward = np.sign(reward)
        if self.episodic_life:
            life_lost = (lives < self._lives) & playing & ~game_over & ~pseudo_reset
            terminated |= life_lost
            if pseudo_reset.any():  # the emulated reset row: nothing real happened for the agent
                reward = np.where(pseudo_reset, 0.0, reward)
                terminated &= ~pseudo_reset
                truncated &= ~pseudo_reset
            self._life_lost = life_lost
        self._lives = lives
        self._game_over = game_over
        return obs, reward, terminated, truncated, info


def find_atari_episodes(env) -> AtariEpisodes:
    """The :class:`AtariEpisodes` wrapper inside ``env`` (following ``.env``); ``ValueError`` if none."""
    current = env
    while current is not None:
        if isinstance(current, AtariEpisodes):
            return current
        current = getattr(current, "env", None)
    raise ValueError(f"{type(env).__name__} has no AtariEpisodes wrapper: make it with rlbook.envs.atari.make_atari")


# ---------------------------------------------------------------------------- the factory
def _make_one(rom: str, *, frame_skip: int, noop_max: int, screen_size: int, frame_stack: int,
              repeat_action_probability: float, max_episode_frames: int, fire_reset: bool,
              render_mode: str | None):
    from rlbook.envs import make

    env = make(_gym_id(rom), frameskip=1, repeat_action_probability=repeat_action_probability,
               obs_type="grayscale", full_action_space=False,
               max_num_frames_per_episode=max_episode_frames, render_mode=render_mode)
    env = AtariFrames(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size, fire_reset=fire_reset)
    return gym.wrappers.FrameStackObservation(env, frame_stack, padding_type="zero")


def make_atari_env(game: str = "Pong", *, frame_skip: int = 4, noop_max: int = 30, fire_reset: bool = True,
                   frame_stack: int = 4, screen_size: int = 84, repeat_action_probability: float = 0.0,
                   max_episode_frames: int = 108_000, render_mode: str | None = "rgb_array") -> gym.Env:
    """One Atari game (not a vector) with the frame preprocessing of :func:`make_atari`, for watching and
    recording a trained agent: observations ``(frame_stack, screen_size, screen_size)`` uint8, unclipped
    rewards, whole games (no episodic life), ``render()`` gives the full-colour screen."""
    return _make_one(game_rom_name(game), frame_skip=frame_skip, noop_max=noop_max, screen_size=screen_size,
                     frame_stack=frame_stack, repeat_action_probability=repeat_action_probability,
                     max_episode_frames=max_episode_frames, fire_reset=fire_reset, render_mode=render_mode)


def make_atari(
    game: str = "Pong",
    num_envs: int = 1,
    *,
    vectorized: str = "auto",
    frame_skip: int = 4,
    noop_max: int = 30,
    fire_reset: bool = True,
    episodic_life: bool = True,
    clip_rewards: bool = True,
    frame_stack: int = 4,
    screen_size: int = 84,
    repeat_action_probability: float = 0.0,
    max_episode_frames: int = 108_000,
    num_threads: int = 0,
    render_mode: str | None = None,
) -> AtariEpisodes:
    """An Atari game as a vector env with the preprocessing of the DQN paper (chapter 6).

    Args:
        game: the game, ``"Pong"`` or ``"pong"`` (see ``ale_py.roms.get_all_rom_ids()``).
        num_envs: copies of the game stepped together.
        vectorized: ``"ale"`` (ale-py's C++ vector env, fast), ``"sync"`` / ``"async"`` (Gymnasium
            vector envs of wrapped ``ALE/<Game>-v5`` envs) or ``"auto"`` (``"ale"``, unless
            ``render_mode`` asks for frames, which only the Gymnasium path can render).
        frame_skip: emulator frames per agent step (the action repeats; rewards add up).
        noop_max: at reset, up to this many no-op frames so that games start in different states.
        fire_reset: press FIRE once at reset in games that have it (Pong and Breakout wait for it).
        episodic_life: signal ``terminated`` when a life is lost; the game itself goes on.
        clip_rewards: give the agent the sign of the reward.
        frame_stack: observations stack this many frames, the newest last.
        screen_size: frames are shrunk to ``screen_size`` x ``screen_size`` grayscale.
        repeat_action_probability: sticky actions (0 as in the DQN paper; 0.25 is ALE v5's default).
        max_episode_frames: truncate a game after this many emulator frames, reset frames included
            (108,000 frames, 30 minutes of play, is the usual limit).
        num_threads: C++ threads of the ``"ale"`` path (0: one per core).
        render_mode: passed to the Gymnasium envs (``"rgb_array"`` for videos).

    Returns:
        an :class:`AtariEpisodes` vector env with next-step autoreset and observations of shape
        ``(num_envs, frame_stack, screen_size, screen_size)``, dtype ``uint8``. Its ``episode_scores``
        list holds the unclipped score of every finished game.
    """
    rom = game_rom_name(game)
    if vectorized not in VECTORIZED:
        raise ValueError(f"vectorized must be one of {VECTORIZED}, got {vectorized!r}")
    for name, value, low in (("num_envs", num_envs, 1), ("frame_skip", frame_skip, 1), ("noop_max", noop_max, 0),
                             ("frame_stack", frame_stack, 1), ("screen_size", screen_size, 1),
                             ("max_episode_frames", max_episode_frames, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0.0 <= repeat_action_probability <= 1.0:
        raise ValueError(f"repeat_action_probability must be in [0, 1], got {repeat_action_probability}")
    if vectorized == "auto":
        vectorized = "sync" if render_mode is not None else "ale"
    if vectorized == "ale":
        if render_mode is not None:
            raise ValueError("the 'ale' vector env cannot render; use vectorized='sync' for videos")
        from ale_py.vector_env import AtariVectorEnv

        inner = AtariVectorEnv(
            game=rom, num_envs=num_envs, num_threads=num_threads, frameskip=frame_skip, stack_num=frame_stack,
            img_height=screen_size, img_width=screen_size, grayscale=True, maxpool=True,
            noop_max=noop_max, use_fire_reset=fire_reset, repeat_action_probability=repeat_action_probability,
            max_num_frames_per_episode=max_episode_frames,
            # lives and rewards are AtariEpisodes' job, the same for both paths
            episodic_life=False, life_loss_info=False, reward_clipping=False,
            autoreset_mode=AutoresetMode.NEXT_STEP,
        )
    else:
        def factory():
            return _make_one(rom, frame_skip=frame_skip, noop_max=noop_max, screen_size=screen_size,
                             frame_stack=frame_stack, repeat_action_probability=repeat_action_probability,
                             max_episode_frames=max_episode_frames, fire_reset=fire_reset, render_mode=render_mode)

        vector_cls = gym.vector.SyncVectorEnv if vectorized == "sync" else gym.vector.AsyncVectorEnv
        inner = vector_cls([factory] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)
    return AtariEpisodes(inner, clip_rewards=clip_rewards, episodic_life=episodic_life)

