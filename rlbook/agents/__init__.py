"""Agents: one module per family, all implementing :class:`rlbook.agents.base.Agent`.

Every agent is built the same way, ``Agent(observation_space, action_space, config=None, **overrides)``,
from a config dataclass derived from :class:`~rlbook.config.AgentConfig`."""

from rlbook.agents.a2c import A2CAgent, A2CConfig
from rlbook.agents.base import Agent, Transition
from rlbook.agents.cem import CEMAgent, CEMConfig
from rlbook.agents.dqn import DQNAgent, DQNConfig
from rlbook.agents.pg import (
           NStepPGAgent,
           NStepPGConfig,
           PGConfig,
           ReinforceAgent,
           gradient_variance,
           per_sample_gradients,
)
from rlbook.agents.policy_agent import PolicyAgent, PolicyConfig
from rlbook.agents.random_agent import RandomAgent
from rlbook.config import AgentConfig

__all__ = ["A2CAgent", "A2CConfig", "Agent", "AgentConfig", "CEMAgent", "CEMConfig", "DQNAgent", "DQNConfig",
           "NStepPGAgent", "NStepPGConfig", "PGConfig", "PolicyAgent", "PolicyConfig",
           "RandomAgent", "ReinforceAgent", "Transition",
           "gradient_variance", "per_sample_gradients"]
