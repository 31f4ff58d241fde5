"""Checks for the exercises of chapter 2 (the Gymnasium API).

Usage in the chapter: ``from rlbook.exercises import ch02``, then ``ch02.robot_space.check(arm,
arm_numbers)``. Each check below is an :class:`~rlbook.exercises.Exercise`: its ``check`` method
prints or raises, and the function documented here returns the message of a correct answer.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlbook.agents import RandomAgent
from rlbook.agents.policy_agent import PolicyAgent
from rlbook.envs import make
from rlbook.evaluate import evaluate
from rlbook.exercises import WrongAnswer, attempted, exercise

#: Episodes and seed of the evaluation in "A better hand-written policy" (the bar is CartPole-v0's threshold).
POLICY_EPISODES = 20
POLICY_SEED = 0

#: Noise levels at which "An observation wrapper" measures the lean rule, and its episodes per level.
NOISE_LEVELS = (0.0, 0.05, 0.5)
NOISE_EPISODES = 50


@exercise("A space for a robot", fill=("arm", "arm_numbers"))
def robot_space(arm: Any, arm_numbers: Any) -> str:
    """Check ``arm``, a ``Dict`` space with a ``"position"`` (``Box`` of shape ``(2,)`` in
    ``[-1, 1]``) and a ``"gripper"`` (``Discrete(2)``), and ``arm_numbers``, the length of one
    flattened element."""
    if not isinstance(arm, gym.spaces.Dict):
        raise WrongAnswer(f"arm should be a gym.spaces.Dict, got {type(arm).__name__}")
    if set(arm.spaces) != {"position", "gripper"}:
        raise WrongAnswer(f"arm has the keys {sorted(arm.spaces)}; it needs exactly 'position' and 'gripper'")
    position, gripper = arm["position"], arm["gripper"]
    if not isinstance(position, gym.spaces.Box) or position.shape != (2,):
        raise WrongAnswer(f"arm['position'] is {position}; it should be a Box of shape (2,)")
    if not (np.all(position.low == -1.0) and np.all(position.high == 1.0)):
        raise WrongAnswer(f"arm['position'] has bounds {position.low} to {position.high}; both numbers "
                          f"should lie in [-1, 1]")
    if not isinstance(gripper, gym.spaces.Discrete) or gripper.n != 2 or gripper.start != 0:
        raise WrongAnswer(f"arm['gripper'] is {gripper}; it should be Discrete(2): open (0) or closed (1)")
    if isinstance(arm_numbers, bool) or not isinstance(arm_numbers, (int, np.integer)):
        raise WrongAnswer(f"arm_numbers should be a whole number, got {arm_numbers!r}")
    expected = gym.spaces.flatdim(arm)
    if arm_numbers != expected:
        raise WrongAnswer(f"arm_numbers is {arm_numbers}, but a flattened element has another length. "
                          f"Count what each part becomes: a Box gives one number per element, and a "
                          f"Discrete(n) becomes a one-hot vector of length n.")
    return f"arm is the right space, and a flattened element has {expected} numbers."


@exercise("A better hand-written policy", fill=("my_policy",))
def hand_written_policy(my_policy: Any) -> str:
    """Check ``my_policy(obs)``, a CartPole rule that must reach a mean return of at least the old
    CartPole-v0 threshold over 20 episodes (seed 0)."""
    env = make("CartPole-v1")
    obs, _ = env.reset(seed=POLICY_SEED)
    action = attempted(my_policy(obs))
    if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or action not in (0, 1):
        raise WrongAnswer(f"my_policy returned {action!r} for an observation; it must return the integer "
                          f"0 (push left) or 1 (push right)")
    agent = PolicyAgent(env.observation_space, env.action_space, policy_fn=my_policy)
    mean = evaluate(agent, env, n_episodes=POLICY_EPISODES, seed=POLICY_SEED).mean
    threshold = gym.spec("CartPole-v0").reward_threshold
    if mean >= threshold:
        return f"the mean return over {POLICY_EPISODES} episodes is {mean:.1f}, at least {threshold:g}."
    raise WrongAnswer(f"the mean return over {POLICY_EPISODES} episodes is {mean:.1f}, below {threshold:g}. "
                      f"A rule that reads the angle alone reacts only once the pole already leans; add "
                      f"the angular velocity obs[3] to push towards where the pole is going.")


def lean_rule_under_noise(wrapper: Any, sigmas: tuple[float, ...] = NOISE_LEVELS,
                          n_episodes: int = NOISE_EPISODES) -> dict[str, float]:
    """Mean return of the lean rule (push towards the side the pole leans to) on CartPole seen
    through ``wrapper(env, sigma=..., seed=0)`` at each noise level, and of a random agent.

    Returns:
        ``{"sigma=0.05": mean return, ..., "random": mean return of random actions}``.
    """
    env = make("CartPole-v1")
    lean = PolicyAgent(env.observation_space, env.action_space, policy_fn=lambda obs: int(obs[2] > 0))
    means = {f"sigma={sigma:g}": evaluate(lean, wrapper(make("CartPole-v1"), sigma=sigma, seed=0),
                                          n_episodes=n_episodes, seed=0).mean for sigma in sigmas}
    random_agent = RandomAgent(env.observation_space, env.action_space, seed=0)
    means["random"] = evaluate(random_agent, env, n_episodes=n_episodes, seed=0, explore=True).mean
    return means


def _lockstep(wrapper: Any, sigma: float, seed: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations of plain CartPole and of ``wrapper`` around it, driven by the same actions."""
    plain, noisy = make("CartPole-v1"), wrapper(make("CartPole-v1"), sigma=sigma, seed=seed)
    rng = np.random.default_rng(0)
    clean_obs, noisy_obs = [], []
    episode, done = 0, True
    for _ in range(n_steps):
        if done:
            a, _ = plain.reset(seed=episode)
            b, _ = noisy.reset(seed=episode)
            episode, done = episode + 1, False
        else:
            action = int(rng.integers(2))
            a, _, terminated, truncated, _ = plain.step(action)
            b, *_ = noisy.step(action)
            done = terminated or truncated
        clean_obs.append(a)
        noisy_obs.append(np.asarray(b))
    return np.array(clean_obs), np.array(noisy_obs)


@exercise("An observation wrapper", fill=("NoisyObservation",))
def observation_wrapper(NoisyObservation: Any) -> str:
    """Check ``NoisyObservation(env, sigma, seed)``, an observation wrapper that adds Gaussian noise
    of standard deviation ``sigma``, drawn from a generator seeded with ``seed``."""
    try:
        wrapped = NoisyObservation(make("CartPole-v1"), sigma=0.0, seed=0)
    except TypeError as error:
        raise WrongAnswer(f"NoisyObservation(env, sigma=0.0, seed=0) failed: {error}") from None
    if not isinstance(wrapped, gym.Env):
        raise WrongAnswer(f"NoisyObservation(...) made a {type(wrapped).__name__}; it should be a "
                          f"gym.ObservationWrapper around the env")
    clean, same = _lockstep(NoisyObservation, 0.0, 0, 200)
    if same.dtype != clean.dtype:
        raise WrongAnswer(f"the observations come out as {same.dtype}; CartPole's are {clean.dtype}: cast "
                          f"the noisy observation back with .astype(obs.dtype)")
    if not np.array_equal(clean, same):
        step = int(np.flatnonzero(np.any(clean != same, axis=1))[0])
        raise WrongAnswer(f"with sigma=0 the observations must not change, but step {step} differs")
    sigma = 0.1
    clean, noisy = _lockstep(NoisyObservation, sigma, 0, 1000)
    noise = noisy - clean
    if not abs(noise.std() - sigma) < 0.15 * sigma or not abs(noise.mean()) < 0.2 * sigma:
        raise WrongAnswer(f"with sigma={sigma} the added noise has mean {noise.mean():.3f} and standard "
                          f"deviation {noise.std():.3f}; it should have mean 0 and deviation {sigma}")
    again = _lockstep(NoisyObservation, sigma, 0, 50)[1]
    other = _lockstep(NoisyObservation, sigma, 1, 50)[1]
    if not np.array_equal(again, noisy[:50]):
        raise WrongAnswer("two wrappers made with the same seed add different noise: draw it from a "
                          "generator made from seed, such as np.random.default_rng(seed)")
    if np.array_equal(other, again):
        raise WrongAnswer("wrappers made with seeds 0 and 1 add the same noise: seed the generator with seed")
    means = lean_rule_under_noise(NoisyObservation)
    levels = ", ".join(f"{v:.1f} at {k}" for k, v in means.items() if k != "random")
    return (f"the noise has the right size and is reproducible. The lean rule's mean return over "
            f"{NOISE_EPISODES} episodes is {levels}; a random agent's is {means['random']:.1f}.")
