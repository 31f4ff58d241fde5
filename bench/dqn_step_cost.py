"""Where a DQN gradient step's time goes on a CPU (chapter 6): writes ``results/06_dqn/dqn_step_cost.json``::

    python bench/dqn_step_cost.py

For the CartPole presets (plain DQN, ``DQNConfig.cartpole()``: a 128x128 MLP at batch 256; and the
fewest-steps configuration, ``DQNConfig.cartpole_few_steps()``), on one thread (``torch.set_num_threads(1)``), it times:

* a whole gradient step (``DQNAgent.gradient_step`` on a fixed minibatch: targets, loss, backward, clipping,
  Adam, target schedule), the median of ``--repeats`` blocks of ``--steps`` steps;
* its parts, each timed on its own in the same way: the target computation, the online forward pass with the
  loss, the backward pass, gradient clipping, the optimizer step;
* the pure matrix work of one step: the same matrix products (forward and backward of the online network,
  the target network's forward passes) on plain tensors, without autograd or optimizer;
* one vector step of 8 CartPoles: acting (one forward pass for the batch), stepping the NumPy-vectorised
  environments, and storing the transitions in the replay buffer.

Each figure is the median over ``--repeats`` blocks, with the interquartile range.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rlbook.agents.base import Transition  # noqa: E402
from rlbook.agents.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlbook.nets import clip_grad_norm  # noqa: E402
from rlbook.results import summarize, write_results  # noqa: E402

RESULTS = "06_dqn/dqn_step_cost"


def timed(fn, steps: int, repeats: int) -> dict:
    """Median and IQR over ``repeats`` blocks of the time per call of ``fn`` (in milliseconds)."""
    for _ in range(max(10, steps // 10)):
        fn()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        blocks.append(1000 * (time.perf_counter() - start) / steps)
    return summarize(blocks, unit="ms")


def gradient_step_costs(config: DQNConfig, steps: int, repeats: int) -> dict[str, dict]:
    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    agent = DQNAgent(space, gym.spaces.Discrete(2), config.replace(seed=0, device="cpu"))
    rng = np.random.default_rng(0)
    b = config.batch_size
    rows = Transition(obs=rng.normal(size=(b, 4)).astype(np.float32), action=rng.integers(2, size=b),
                      reward=np.ones(b, np.float32), next_obs=rng.normal(size=(b, 4)).astype(np.float32),
                      terminated=rng.random(b) < 0.05, truncated=np.zeros(b, bool), env_ids=np.arange(b))
    from rlbook.replay import ReplayBatch

    batch = agent._to_device(ReplayBatch(obs=rows.obs, action=rows.action, reward=rows.reward,
                                         next_obs=rows.next_obs, terminated=rows.terminated,
                                         truncated=rows.truncated, steps=np.ones(b, np.int64),
                                         indices=np.arange(b)))
    out = {"gradient_step": timed(lambda: agent.gradient_step(batch), steps, repeats)}
    out["targets"] = timed(lambda: agent.compute_targets(batch), steps, repeats)

    def forward_and_loss():
        return agent.compute_loss(batch)[0]

    out["forward_and_loss"] = timed(forward_and_loss, steps, repeats)

    def backward():
        agent.optimizer.zero_grad(set_to_none=True)
        forward_and_loss().backward()

    out["backward_incl_forward"] = timed(backward, steps, repeats)
    backward()
    params = list(agent.q_net.parameters())
    if config.max_grad_norm is not None:
        out["clip_grad_norm"] = timed(lambda: clip_grad_norm(params, config.max_grad_norm), steps, repeats)
    out["adam_step"] = timed(agent.optimizer.step, steps, repeats)
    out["zero_grad"] = timed(lambda: agent.optimizer.zero_grad(set_to_none=True), steps, repeats)

    # The same matrix products on plain tensors: what the arithmetic alone costs.
    linears = [layer.weight.detach().clone() for layer in agent.q_net.modules() if isinstance(layer, torch.nn.Linear)]
    # the head: one layer, or a dueling head's value and advantage layers, both fed by the torso's features
    torso, heads = (linears[:-2], linears[-2:]) if config.dueling else (linears[:-1], linears[-1:])
    x = batch["obs"]
    passes = 2 if config.double else 1

    def forward(inputs):
        acts = [inputs]
        for w in torso:
            acts.append(acts[-1] @ w.T)
        return acts, [acts[-1] @ w.T for w in heads]

    def matmuls():
        acts, outs = forward(x)
        grad = 0
        for w, out in zip(heads, outs):
            upstream = torch.ones_like(out)
            upstream.T @ acts[-1]  # the head's weight gradient
            grad = grad + upstream @ w  # its input gradient
        for w, a in zip(reversed(torso), reversed(acts[:-1])):
            grad.T @ a  # the weight's gradient
            grad = grad @ w  # the input's gradient
        for _ in range(passes):  # the target side's forward passes
            forward(batch["next_obs"])

    out["pure_matmuls"] = timed(matmuls, steps, repeats)
    return out


def vector_step_cost(config: DQNConfig, envs: int, steps: int, repeats: int) -> dict[str, dict]:
    env = gym.make_vec("CartPole-v1", num_envs=envs, vectorization_mode="vector_entry_point")
    agent = DQNAgent(env.single_observation_space, env.single_action_space,
                     config.replace(seed=0, device="cpu", epsilon_start=0.0, epsilon_end=0.0))
    state = {"obs": env.reset(seed=0)[0]}

    def act():
        return agent.act_batch(state["obs"], explore=True)

    def step():
        actions = act()
        nxt, reward, term, trunc, _ = env.step(actions)
        agent.observe(Transition(state["obs"], actions, reward.astype(np.float32), nxt, term, trunc,
                                 np.arange(envs)))
        state["obs"] = nxt

    return {"act": timed(act, steps, repeats), "act_step_store": timed(step, steps, repeats)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="calls per timed block")
    p.add_argument("--repeats", type=int, default=15, help="timed blocks per figure")
    p.add_argument("--envs", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    metrics, details = {}, {}
    for name, config in (("plain", DQNConfig.cartpole()), ("best", DQNConfig.cartpole_few_steps())):
        costs = gradient_step_costs(config, args.steps, args.repeats)
        costs.update(vector_step_cost(config, args.envs, args.steps * 3, args.repeats))
        for part, entry in costs.items():
            metrics[f"{name}_cartpole_{part}_ms"] = entry
        details[name] = {"config": config.to_dict(), "network": f"MLP {list(config.hidden)}",
                         "batch_size": config.batch_size, "double": config.double}
        print(name, {k: round(v["median"], 4) for k, v in costs.items()}, flush=True)
    out = write_results(RESULTS, metrics, [0], torch_threads=1, envs=args.envs, steps_per_block=args.steps,
                        repeats=args.repeats, configs=details,
                        notes="Milliseconds per call, median (IQR) over blocks. gradient_step is the whole step; "
                              "its parts are timed separately (backward_incl_forward includes the forward pass and "
                              "loss it differentiates). pure_matmuls: the same matrix products on plain tensors. "
                              "act_step_store: one vector step of the CartPoles (act, step, store), no learning.")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
