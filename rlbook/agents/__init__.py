"""Agents: one module per family, all implementing :class:`rlbook.agents.base.Agent`."""

from rlbook.agents.base import Agent, Transition
from rlbook.agents.cem import CEMAgent, CEMConfig
from rlbook.agents.dqn import DQNAgent, DQNConfig
from rlbook.agents.policy_agent import PolicyAgent
from rlbook.agents.random_agent import RandomAgent

__all__ = ["Agent", "CEMAgent", "CEMConfig", "DQNAgent", "DQNConfig", "PolicyAgent", "RandomAgent", "Transition"]
