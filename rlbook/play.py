"""Watch a trained agent: one greedy episode from a checkpoint (any agent) as frames, and as an animation file.

Defined in chapter 6 for DQN; chapter 12 made it work for every agent (``rlbook play`` calls it).
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from rlbook.agents.base import Agent


def play(checkpoint: str | os.PathLike | Agent, env: gym.Env | str, *, max_steps: int = 10_000,
         seed: int | None = None, device: str = "auto", path: str | os.PathLike | None = None,
         fps: float = 30) -> tuple[list[np.ndarray], float]:
    """Play one greedy episode with a trained agent and keep its frames.

    Args:
        checkpoint: a checkpoint file written by ``agent.save`` (or the Checkpoint plugin) for any agent, or
            an agent.
        env: a single env made with ``render_mode="rgb_array"``, or an env id (made so).
        max_steps: stop after this many steps.
        seed: seeds the episode's reset.
        device: where to load the networks.
        path: if given, also write the animation there (``.webp`` or ``.gif``).
        fps: playback speed of the written animation.

    Returns:
        ``(frames, total_reward)``; show the frames with ``rlbook.plot.animate_episode(frames)``.
    """
    from rlbook.envs import make
    from rlbook.plot import animate_episode, record_episode

    suffix = None if path is None else str(path).rsplit(".", 1)[-1].lower()
    if suffix is not None and suffix not in ("webp", "gif"):
        raise ValueError(f"path must end in .webp or .gif, got {str(path)!r}")
    if isinstance(env, str):
        env = make(env, render_mode="rgb_array")
    if isinstance(checkpoint, Agent):
        agent = checkpoint
    else:
        agent = Agent.from_checkpoint(checkpoint, env.observation_space, env.action_space, device=device)
    frames, total = record_episode(agent, env, max_steps=max_steps, seed=seed)
    if path is not None:
        animate_episode(frames, fps=fps, max_frames=len(frames), format=suffix).save(str(path))
    return frames, total


__all__ = ["play"]
