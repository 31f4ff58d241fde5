"""Bad input fails early and clearly: at construction, with the name of what was wrong.

Each case is a call that must raise ``TypeError`` or ``ValueError`` (never a traceback from deep inside NumPy
or PyTorch, and never silently accept the value), with a message that names the field or argument.
"""

from __future__ import annotations

from dataclasses import fields

import gymnasium as gym
import numpy as np
import pytest

from rlbook.agents import CEMAgent, CEMConfig, DQNAgent, DQNConfig, PolicyAgent, RandomAgent
from rlbook.config import AgentConfig
from rlbook.core import seed_everything
from rlbook.envs.counting import ChainEnv
from rlbook.evaluate import evaluate
from rlbook.logs import CSVLogger, TensorBoardLogger
from rlbook.nets import MLP
from rlbook.replay import NStepFolder, ReplayBuffer
from rlbook.results import write_results
from rlbook.schedules import ExponentialSchedule, LinearSchedule
from rlbook.tabular import ModelBasedAgent, ModelBasedConfig, QLearningAgent, QLearningConfig
from rlbook.train import Checkpoint, StopOnReward, Trainer

BOX = gym.spaces.Box(-1, 1, (4,), dtype=np.float32)
TWO = gym.spaces.Discrete(2)
S16 = gym.spaces.Discrete(16)
INF, NAN = float("inf"), float("nan")


def chain_trainer(**kwargs):
    env = ChainEnv(4)
    return Trainer(RandomAgent(env.observation_space, env.action_space), env, **{"total_steps": 10, **kwargs})


#: (what is tried, the call, the error type, words the message must contain)
CASES = [
    # DQN's config: types (bool is not an int, strings are not numbers), finiteness, ranges, choices
    ("DQN lr as a string", lambda: DQNConfig(lr="1e-3"), TypeError, "lr must be a number"),
    ("DQN lr infinite", lambda: DQNConfig(lr=INF), ValueError, "lr must be a finite number"),
    ("DQN lr NaN", lambda: DQNConfig(lr=NAN), ValueError, "lr must be a finite number"),
    ("DQN lr zero", lambda: DQNConfig(lr=0.0), ValueError, "lr must be > 0"),
    ("DQN batch_size True", lambda: DQNConfig(batch_size=True), TypeError, "batch_size must be an integer"),
    ("DQN batch_size 32.0", lambda: DQNConfig(batch_size=32.0), TypeError, "batch_size must be an integer"),
    ("DQN buffer_size 1e5", lambda: DQNConfig(buffer_size=1e5), TypeError, "write 100_000"),
    ("DQN batch_size 0", lambda: DQNConfig(batch_size=0), ValueError, "batch_size must be >= 1"),
    ("DQN buffer smaller than a batch", lambda: DQNConfig(buffer_size=16, batch_size=32), ValueError, "buffer_size"),
    ("DQN gamma 1.5", lambda: DQNConfig(gamma=1.5), ValueError, "gamma must lie in [0, 1]"),
    ("DQN gamma NaN", lambda: DQNConfig(gamma=NAN), ValueError, "gamma must be a finite number"),
    ("DQN tau 0", lambda: DQNConfig(tau=0.0), ValueError, "tau must lie in (0, 1]"),
    ("DQN epsilon_start -0.1", lambda: DQNConfig(epsilon_start=-0.1), ValueError, "epsilon_start"),
    ("DQN learning_starts -1", lambda: DQNConfig(learning_starts=-1), ValueError, "learning_starts must be >= 0"),
    ("DQN n_step 0", lambda: DQNConfig(n_step=0), ValueError, "n_step must be >= 1"),
    ("DQN target_update_interval 0", lambda: DQNConfig(target_update_interval=0), ValueError,
     "target_update_interval"),
    ("DQN loss l1", lambda: DQNConfig(loss="l1"), ValueError, "loss must be one of 'huber', 'mse'"),
    ("DQN network cnn", lambda: DQNConfig(network="cnn"), ValueError, "network must be one of"),
    ("DQN hidden with a bool", lambda: DQNConfig(hidden=(128, True)), TypeError, "hidden[1] must be an integer"),
    ("DQN hidden as a string", lambda: DQNConfig(hidden="128"), TypeError, "hidden must be a sequence"),
    ("DQN hidden 0 units", lambda: DQNConfig(hidden=(0,)), ValueError, "hidden[0] must be >= 1"),
    ("DQN double 1", lambda: DQNConfig(double=1), TypeError, "double must be True or False"),
    ("DQN max_grad_norm 0", lambda: DQNConfig(max_grad_norm=0.0), ValueError, "max_grad_norm must be > 0"),
    ("DQN max_grad_norm inf", lambda: DQNConfig(max_grad_norm=INF), ValueError, "max_grad_norm"),
    ("DQN seed -1", lambda: DQNConfig(seed=-1), ValueError, "seed must be"),
    ("DQN seed '0'", lambda: DQNConfig(seed="0"), TypeError, "seed must be"),
    ("DQN seed 1.5", lambda: DQNConfig(seed=1.5), TypeError, "seed must be"),
    ("DQN device gpu", lambda: DQNConfig(device="gpu"), ValueError, "device must be"),
    ("DQN unknown override", lambda: DQNAgent(BOX, TWO, lrr=1e-3), TypeError, "unknown DQNConfig field(s) ['lrr']"),
    ("DQN config of another agent", lambda: DQNAgent(BOX, TWO, CEMConfig()), TypeError,
     "config must be a DQNConfig"),
    ("DQN from_dict unknown field", lambda: DQNConfig.from_dict({"lrr": 1}), ValueError, "unknown DQNConfig"),
    ("DQN override lr=inf", lambda: DQNAgent(BOX, TWO, DQNConfig(), lr=INF), ValueError, "lr must be a finite"),
    ("DQN act on a wrong shape", lambda: DQNAgent(BOX, TWO, device="cpu").act(np.zeros(3)), ValueError,
     "obs has shape (3,)"),
    ("DQN act explore='no'", lambda: DQNAgent(BOX, TWO, device="cpu").act(np.zeros(4), explore="no"), TypeError,
     "explore must be True or False"),
    ("agent with a space that is not a space", lambda: DQNAgent((4,), TWO), TypeError, "observation_space must be"),
    # CEM
    ("CEM percentile 150", lambda: CEMConfig(percentile=150), ValueError, "percentile must lie in [0, 100]"),
    ("CEM episodes_per_batch 0", lambda: CEMConfig(episodes_per_batch=0), ValueError, "episodes_per_batch"),
    ("CEM gamma 0", lambda: CEMConfig(gamma=0.0), ValueError, "gamma must lie in (0, 1]"),
    ("CEM keep_elite -1", lambda: CEMConfig(keep_elite=-1), ValueError, "keep_elite must be >= 0"),
    ("CEM lr inf", lambda: CEMConfig(lr=INF), ValueError, "lr must be a finite"),
    ("CEM one_hot 'yes'", lambda: CEMConfig(one_hot="yes"), TypeError, "one_hot"),
    ("CEM strict 1", lambda: CEMConfig(strict=1), TypeError, "strict must be True or False"),
    ("CEM hidden_size True", lambda: CEMConfig(hidden_size=True), TypeError, "hidden_size must be an integer"),
    ("CEM override unknown", lambda: CEMAgent(BOX, TWO, lrate=0.1), TypeError, "unknown CEMConfig field(s)"),
    # tabular
    ("Q-learning alpha NaN", lambda: QLearningConfig(alpha=NAN), ValueError, "alpha must be a finite"),
    ("Q-learning alpha 0", lambda: QLearningConfig(alpha=0.0), ValueError, "alpha must lie in (0, 1]"),
    ("Q-learning alpha_decay -1", lambda: QLearningConfig(alpha_decay=-1.0), ValueError, "alpha_decay"),
    ("Q-learning epsilon 1.5", lambda: QLearningConfig(epsilon=1.5), ValueError, "epsilon must lie in [0, 1]"),
    ("Q-learning epsilon_end 2", lambda: QLearningConfig(epsilon_end=2.0), ValueError, "epsilon_end"),
    ("Q-learning epsilon_decay_steps -1", lambda: QLearningConfig(epsilon_decay_steps=-1), ValueError,
     "epsilon_decay_steps must be >= 0"),
    ("Q-learning initial_q inf", lambda: QLearningConfig(initial_q=INF), ValueError, "initial_q must be a finite"),
    ("Q-learning gamma 1.1", lambda: QLearningConfig(gamma=1.1), ValueError, "gamma must lie in [0, 1]"),
    ("Q-learning action_mask of the wrong shape", lambda: QLearningAgent(S16, TWO, action_mask=[[True, True]]),
     ValueError, "action_mask must have shape (S, A) = (16, 2)"),
    ("Q-learning action_mask of strings", lambda: QLearningConfig(action_mask=[["y", "n"]]), TypeError,
     "action_mask[0][0] must be True or False"),
    ("Q-learning acts in state -1", lambda: QLearningAgent(S16, TWO).act(-1), ValueError,
     "state -1 is not in the observation space Discrete(16)"),
    ("Q-learning acts in state 3.7", lambda: QLearningAgent(S16, TWO).act(3.7), ValueError, "state 3.7 is not in"),
    ("Q-learning acts in state 16", lambda: QLearningAgent(S16, TWO).act(16), ValueError, "state 16 is not in"),
    ("Q-learning acts on a batch with state 99", lambda: QLearningAgent(S16, TWO).act(np.array([0, 99])),
     ValueError, "state 99 is not in"),
    ("model-based greedy act in state -1", lambda: ModelBasedAgent(S16, TWO).act(-1, explore=False), ValueError,
     "state -1 is not in"),
    ("model-based method x", lambda: ModelBasedConfig(method="x"), ValueError, "method must be one of"),
    ("model-based steps_per_iteration 0", lambda: ModelBasedConfig(steps_per_iteration=0), ValueError,
     "steps_per_iteration"),
    ("model-based sweeps 0", lambda: ModelBasedConfig(sweeps=0), ValueError, "sweeps must be >= 1"),
    ("model-based tol NaN", lambda: ModelBasedConfig(tol=NAN), ValueError, "tol must be a finite"),
    # other agents
    ("random agent seed '0'", lambda: RandomAgent(BOX, TWO, seed="0"), TypeError, "seed must be"),
    ("policy agent without a function", lambda: PolicyAgent(BOX, TWO, policy_fn=3), TypeError,
     "policy_fn must be a function"),
    ("policy agent vectorized 'yes'", lambda: PolicyAgent(BOX, TWO, policy_fn=len, vectorized="yes"), TypeError,
     "vectorized must be True or False"),
    # the trainer and its plugins
    ("Trainer seed '0'", lambda: chain_trainer(seed="0"), TypeError, "seed must be"),
    ("Trainer total_steps True", lambda: chain_trainer(total_steps=True), TypeError, "total_steps must be an integer"),
    ("Trainer total_steps 0", lambda: chain_trainer(total_steps=0), ValueError, "total_steps must be >= 1"),
    ("Trainer total_episodes 1.5", lambda: chain_trainer(total_episodes=1.5), TypeError, "total_episodes"),
    ("Trainer train 'yes'", lambda: chain_trainer(train="yes"), TypeError, "train must be True or False"),
    ("Trainer check_every 0", lambda: chain_trainer(check_every=0), ValueError, "check_every must be >= 1"),
    ("Trainer plugins not a list", lambda: chain_trainer(plugins=Checkpoint("x.pt")), TypeError,
     "plugins must be a list"),
    ("Trainer plugin of the wrong kind", lambda: chain_trainer(plugins=[print]), TypeError, "every plugin must be"),
    ("Trainer objective 5", lambda: chain_trainer(objective=5), TypeError, "objective must be"),
    ("Trainer agent 'dqn'", lambda: Trainer("dqn", ChainEnv(4), total_steps=5), TypeError,
     "agent must be an rlbook Agent"),
    ("Checkpoint every_steps 0", lambda: Checkpoint("x.pt", every_steps=0), ValueError, "every_steps must be >= 1"),
    ("Checkpoint path 5", lambda: Checkpoint(5), TypeError, "path must be a file path"),
    ("Checkpoint resume 'yes'", lambda: Checkpoint("x.pt", resume="yes"), TypeError, "resume must be True or False"),
    ("CSVLogger every_steps 0", lambda: CSVLogger("logs", every_steps=0), ValueError, "every_steps must be >= 1"),
    ("TensorBoardLogger every_steps 2.5", lambda: TensorBoardLogger("tb", every_steps=2.5), TypeError,
     "every_steps must be an integer"),
    ("StopOnReward threshold NaN", lambda: StopOnReward(NAN), ValueError, "threshold must be a finite"),
    ("StopOnReward window 0", lambda: StopOnReward(1.0, window=0), ValueError, "window must be >= 1"),
    ("evaluate n_episodes True", lambda: evaluate(RandomAgent(BOX, TWO), ChainEnv(4), n_episodes=True), TypeError,
     "n_episodes must be an integer"),
    ("evaluate seed -3", lambda: evaluate(RandomAgent(BOX, TWO), ChainEnv(4), seed=-3), ValueError, "seed must be"),
    # building blocks
    ("ReplayBuffer capacity True", lambda: ReplayBuffer(True, (1,)), TypeError, "capacity must be an integer"),
    ("ReplayBuffer capacity 1", lambda: ReplayBuffer(1, (1,)), ValueError, "capacity must be >= 2"),
    ("ReplayBuffer capacity below num_envs", lambda: ReplayBuffer(4, (1,), num_envs=8), ValueError,
     "capacity (4) must be at least the number of environments (8)"),
    ("ReplayBuffer n_step 0", lambda: ReplayBuffer(10, (1,), n_step=0), ValueError, "n_step must be >= 1"),
    ("NStepFolder n 0", lambda: NStepFolder(0, 0.9), ValueError, "n must be >= 1"),
    ("NStepFolder gamma NaN", lambda: NStepFolder(3, NAN), ValueError, "gamma must be a finite"),
    ("LinearSchedule start NaN", lambda: LinearSchedule(NAN, 0.0, 10), ValueError, "start must be a finite"),
    ("LinearSchedule duration True", lambda: LinearSchedule(1.0, 0.0, True), TypeError, "duration must be"),
    ("ExponentialSchedule half_life 0", lambda: ExponentialSchedule(1.0, 0.1, 0), ValueError, "half_life must be > 0"),
    ("MLP in_dim True", lambda: MLP(True, 2), TypeError, "in_dim must be an integer"),
    ("seed_everything '0'", lambda: seed_everything("0"), TypeError, "seed must be"),
    ("write_results outside results/", lambda: write_results("../../x", {}, []), ValueError, "no '..'"),
    ("write_results absolute name", lambda: write_results("/tmp/x", {}, []), ValueError, "results name"),
]


@pytest.mark.parametrize("what,call,error,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(what, call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value), str(info.value)


def test_every_config_field_is_checked_by_type():
    """Each field of each agent config refuses a value of the wrong type (a string where a number belongs,
    a number where a flag or a name belongs), naming the field."""
    tried = 0
    for cls in (AgentConfig, DQNConfig, CEMConfig, QLearningConfig, ModelBasedConfig):
        for f in fields(cls):
            default = getattr(cls(), f.name)
            wrong = "not a number" if not isinstance(default, str) else 12
            if f.name == "action_mask":
                wrong = "yes"
            with pytest.raises((TypeError, ValueError)) as info:
                cls(**{f.name: wrong})
            assert f.name in str(info.value), (cls.__name__, f.name, str(info.value))
            tried += 1
    assert tried > 50


def test_configs_round_trip_and_replace_checks_again():
    config = DQNConfig.cartpole(seed=3)
    assert DQNConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["hidden"] == [128, 128]  # plain lists for JSON
    with pytest.raises(ValueError, match="lr must be > 0"):
        config.replace(lr=-1.0)
    with pytest.raises(TypeError, match=r"unknown DQNConfig field\(s\) \['lrr'\]"):
        config.replace(lrr=1.0)
    assert config.replace(lr=0.5).lr == 0.5 and config.lr != 0.5
    assert config.differences(config.replace(lr=0.5)) == ["lr: saved 0.5 vs 0.001"]
    assert config.differences(config.replace(device="cuda")) == []  # the device may differ


def test_printed_configs_fit_a_book_column():
    text = str(DQNConfig.rainbow(seed=3))
    assert text.startswith("DQNConfig(seed=3, device='auto',") and text.endswith(")")
    assert max(len(line) for line in text.splitlines()) <= 76
    assert eval(text.replace("\n", " "), {"DQNConfig": DQNConfig}) == DQNConfig.rainbow(seed=3)
