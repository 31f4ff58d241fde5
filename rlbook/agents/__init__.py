"""Agents: one module per family, all implementing :class:`rlbook.agents.base.Agent`.

The agent classes load on first use (``from rlbook.agents import DQNAgent`` works as usual), so that
modules the agents build on, such as :mod:`rlbook.replay`, can import :mod:`rlbook.agents.base`
without importing every agent first.
"""

from importlib import import_module

from rlbook.agents.base import Agent, Transition

_LAZY = {"CEMAgent": "cem", "CEMConfig": "cem", "DQNAgent": "dqn", "DQNConfig": "dqn",
         "PolicyAgent": "policy_agent", "RandomAgent": "random_agent"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"rlbook.agents.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rlbook.agents' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Agent", "CEMAgent", "CEMConfig", "DQNAgent", "DQNConfig", "PolicyAgent", "RandomAgent", "Transition"]
