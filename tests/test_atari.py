"""Atari preprocessing: both vector paths, their agreement, lives, reward clipping, game scores."""

import numpy as np
import pytest

from rlbook.agents.random_agent import RandomAgent
from rlbook.envs.atari import (
    AtariEpisodes,
    area_resize,
    area_resize_weights,
    find_atari_episodes,
    game_rom_name,
    make_atari,
    make_atari_env,
)
from rlbook.logs import GameScores
from rlbook.train import Trainer


def run_actions(env, actions, seed):
    """Step ``env`` through ``actions`` (shape (T, n)); return stacked obs, rewards, terminated, truncated."""
    obs, _ = env.reset(seed=seed)
    out = {"obs": [obs], "reward": [], "terminated": [], "truncated": [], "lives": []}
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out["obs"].append(obs)
        out["reward"].append(reward)
        out["terminated"].append(terminated)
        out["truncated"].append(truncated)
        out["lives"].append(info["lives"])
    return {key: np.array(value) for key, value in out.items()}


@pytest.mark.parametrize("vectorized", ["ale", "sync"])
def test_observations_are_uint8_stacks_channel_first(vectorized):
    env = make_atari("Pong", 2, vectorized=vectorized)
    assert env.metadata["autoreset_mode"].value == "NextStep"
    assert env.single_observation_space.shape == (4, 84, 84)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    obs, reward, terminated, truncated, _ = env.step(np.array([0, 1]))
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert reward.shape == (2,) and terminated.dtype == bool and truncated.dtype == bool
    assert 40 < obs[:, -1].mean() < 200  # a real screen, not padding
    env.close()


def test_both_paths_give_the_same_pong_frames():
    """Same game, no random no-ops, same seed and actions: the C++ path and our wrappers agree exactly
    (area interpolation, max over the last two frames, fire reset, zero padding of the first stack)."""
    actions = np.random.default_rng(1).integers(0, 6, size=(150, 1))
    fast = run_actions(make_atari("Pong", 1, vectorized="ale", noop_max=0), actions, seed=5)
    gym_path = run_actions(make_atari("Pong", 1, vectorized="sync", noop_max=0), actions, seed=5)
    np.testing.assert_array_equal(fast["obs"], gym_path["obs"])
    np.testing.assert_array_equal(fast["reward"], gym_path["reward"])
    obs = fast["obs"][:, 0]  # (T + 1, 4, 84, 84)
    # the first observation holds the reset frame last and zero padding before it
    assert obs[0, :3].max() == 0 and obs[0, 3].max() > 0
    # stacking order: each step drops the oldest frame and appends the newest at the end
    np.testing.assert_array_equal(obs[1:, :3], obs[:-1, 1:])
    assert not np.array_equal(obs[-1, 3], obs[-2, 3])


def test_both_paths_agree_on_lives_rewards_and_scores():
    """Breakout has 5 lives: both paths end episodes on the same life losses and report the same games."""
    actions = np.random.default_rng(2).integers(0, 4, size=(500, 2))
    fast_env = make_atari("Breakout", 2, vectorized="ale", noop_max=0)
    gym_env = make_atari("Breakout", 2, vectorized="sync", noop_max=0)
    fast = run_actions(fast_env, actions, seed=3)
    slow = run_actions(gym_env, actions, seed=3)
    for key in ("reward", "terminated", "truncated", "lives"):
        np.testing.assert_array_equal(fast[key], slow[key], err_msg=key)
    assert fast_env.episode_scores == gym_env.episode_scores and len(fast_env.episode_scores) >= 2
    # rounding ties and the last frame of each game differ a little (see the module notes); all else is equal
    assert np.mean(fast["obs"] != slow["obs"]) < 1e-4


def test_episodic_life_terminates_on_each_life_loss_and_the_game_goes_on():
    env = make_atari("Breakout", 1, vectorized="ale", noop_max=0)
    actions = np.random.default_rng(0).integers(0, 4, size=(600, 1))
    out = run_actions(env, actions, seed=0)
    terminated, lives = out["terminated"][:, 0], out["lives"][:, 0]
    lives_before = np.concatenate([[5], lives[:-1]])
    life_lost = (lives < lives_before) & (lives > 0)
    assert life_lost.sum() >= 4
    np.testing.assert_array_equal(terminated[life_lost], True)
    # the step after a life loss is the emulated reset: reward 0, not terminated, lives unchanged
    after = np.flatnonzero(life_lost) + 1
    after = after[after < len(lives)]
    np.testing.assert_array_equal(out["reward"][after, 0], 0.0)
    np.testing.assert_array_equal(terminated[after], False)
    np.testing.assert_array_equal(lives[after], lives[after - 1])
    # five lives make one game: episodes end more often than games
    assert terminated.sum() >= 4 * len(env.episode_scores) and len(env.episode_scores) >= 1

    whole_games = make_atari("Breakout", 1, vectorized="ale", noop_max=0, episodic_life=False)
    out = run_actions(whole_games, actions, seed=0)
    assert out["terminated"].sum() == len(whole_games.episode_scores)


def test_rewards_are_clipped_but_game_scores_are_not():
    actions = np.random.default_rng(0).integers(0, 6, size=(400, 2))
    clipped_env = make_atari("SpaceInvaders", 2, vectorized="ale", noop_max=0, episodic_life=False,
                             max_episode_frames=600)
    raw_env = make_atari("SpaceInvaders", 2, vectorized="ale", noop_max=0, episodic_life=False,
                         clip_rewards=False, max_episode_frames=600)
    clipped = run_actions(clipped_env, actions, seed=4)["reward"]
    raw = run_actions(raw_env, actions, seed=4)["reward"]
    assert raw.max() > 1  # Space Invaders pays 5 to 30 points per alien
    assert set(np.unique(clipped)) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(clipped, np.sign(raw))
    # games are truncated after 600 frames (150 steps); their scores are the unclipped sums
    assert clipped_env.episode_scores == raw_env.episode_scores
    assert len(raw_env.episode_scores) == 2 * 2 and max(raw_env.episode_scores) > 1
    np.testing.assert_array_equal(clipped_env.episode_lengths, 150)


def test_game_scores_plugin_counts_games_not_lives():
    env = make_atari("Breakout", 2, vectorized="ale", noop_max=0)
    agent = RandomAgent(env.single_observation_space, env.single_action_space, seed=0)
    scores = GameScores()
    trainer = Trainer(agent, env, total_steps=1200, plugins=[scores], seed=0).run()
    assert find_atari_episodes(trainer.env) is env
    assert scores.scores == env.episode_scores and len(scores.scores) >= 2
    assert trainer.episodes >= 4 * len(scores.scores)  # the trainer's episodes are lives
    assert scores.end_steps == sorted(scores.end_steps) and scores.end_steps[-1] <= trainer.step
    assert scores.mean() == pytest.approx(np.mean(scores.scores))

    stopper = GameScores(threshold=-1.0, window=1)  # any finished game reaches it
    trainer = Trainer(agent, make_atari("Breakout", 2, vectorized="ale"), total_steps=5000, plugins=[stopper]).run()
    assert stopper.solved_at_step == trainer.step and trainer.stop_reason.startswith("mean game score")


def test_area_resize_matches_block_means_and_keeps_constants():
    frame = np.random.default_rng(0).integers(0, 256, size=(8, 6)).astype(np.uint8)
    expected = np.rint(frame.reshape(4, 2, 3, 2).astype(np.float64).mean(axis=(1, 3)))
    np.testing.assert_array_equal(area_resize(frame, 4, 3), expected)
    np.testing.assert_array_equal(area_resize(np.full((210, 160), 77, np.uint8), 84, 84), 77)
    index, weight = area_resize_weights(210, 84)
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, rtol=1e-6)
    dense = np.zeros((84, 210))
    np.add.at(dense, (np.arange(84)[:, None].repeat(index.shape[1], 1), index), weight)
    np.testing.assert_allclose(dense.sum(axis=0), 84 / 210, rtol=1e-5)  # every input pixel counts equally
    with pytest.raises(ValueError, match="shrinks"):
        area_resize_weights(10, 20)


def test_game_names_and_bad_arguments():
    assert game_rom_name("Pong") == "pong"
    assert game_rom_name("SpaceInvaders") == "space_invaders"
    assert game_rom_name("ms_pacman") == "ms_pacman"
    assert game_rom_name("ALE/Breakout-v5") == "breakout"
    with pytest.raises(ValueError, match="unknown Atari game 'Pongg'.*'pong'"):
        make_atari("Pongg")
    with pytest.raises(ValueError, match="vectorized"):
        make_atari("Pong", vectorized="threads")
    with pytest.raises(ValueError, match="num_envs"):
        make_atari("Pong", 0)
    with pytest.raises(TypeError, match="string"):
        game_rom_name(3)
    with pytest.raises(ValueError, match="AtariEpisodes"):
        find_atari_episodes(object())
    assert isinstance(make_atari("Pong", 1, vectorized="ale"), AtariEpisodes)


def test_single_env_for_recording_renders_colour_and_keeps_real_rewards():
    env = make_atari_env("Pong", noop_max=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.render().shape == (210, 160, 3)
    obs, reward, terminated, truncated, _ = env.step(0)
    assert obs.shape == (4, 84, 84) and reward in (-1.0, 0.0, 1.0)
