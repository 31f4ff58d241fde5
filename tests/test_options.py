"""rlbook.options: command-line options read off the config dataclasses (chapter 12, bench/ scripts)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from rlbook.agents.a2c import A2CConfig
from rlbook.agents.a3c import A3CConfig
from rlbook.agents.cem import CEMConfig
from rlbook.agents.dqn import DQNConfig
from rlbook.agents.pg import NStepPGConfig
from rlbook.config import AgentConfig
from rlbook.options import (
    ConfigOptionError,
    add_config_options,
    add_set_option,
    config_from_args,
    config_overrides,
    field_help,
    format_value,
    parse_field,
)
from rlbook.tabular import ModelBasedConfig, QLearningConfig


@dataclass(kw_only=True)
class ToyConfig(AgentConfig):
    """A config with one field of each annotation kind the command line handles."""

    level: Literal[1, 2, 3] = 1
    """Difficulty, one of three levels (50 % harder each)."""
    limit: int | None = None
    """Step limit (None: no limit)."""
    pair: tuple[int, float] = (1, 2.0)
    """An integer and a float."""
    name: str = "toy"
    """A name,
    written over two   lines."""
    undocumented: int = 0


@dataclass(kw_only=True)
class ToyChild(ToyConfig):
    """Overrides one inherited docstring."""

    name: str = "child"
    """The child's own name."""


def parser_for(config_class=DQNConfig, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlbook")
    add_config_options(parser, config_class, **kwargs)
    return parser


def build(argv, config_class=DQNConfig, **kwargs):
    return config_from_args(config_class, parser_for(config_class).parse_args(argv), **kwargs)


# ---------------------------------------------------------------------------------------------- docstrings
def test_field_help_reads_the_docstrings_of_dqn_config():
    docs = field_help(DQNConfig)
    assert list(docs) == [f.name for f in dataclasses.fields(DQNConfig)]
    assert docs["lr"] == "Adam learning rate (> 0)."
    assert docs["loss"] == 'TD loss: ``"huber"`` (smooth L1) or ``"mse"``.'
    assert docs["noisy"].startswith("Noisy networks: the fully connected layers carry learned noise, and the agent")
    assert all("\n" not in d and "  " not in d for d in docs.values())  # collapsed to one line
    assert docs["seed"].startswith("Seeds everything random inside the agent")  # AgentConfig's field
    assert all(docs.values())  # every DQN field is documented


def test_field_help_walks_the_bases_for_inherited_fields():
    docs = field_help(A3CConfig)
    assert docs["lr"] == field_help(A2CConfig)["lr"] == "Adam learning rate (> 0)."  # defined in A2CConfig
    assert docs["entropy_beta"] == "Weight of the entropy bonus."
    assert docs["workers"].startswith("Worker processes that play")  # A3CConfig's own
    assert docs["device"].startswith("Where the agent's networks live")  # AgentConfig's


def test_field_help_subclass_wins_missing_is_empty_and_result_is_a_copy():
    assert field_help(ToyConfig)["name"] == "A name, written over two lines."
    assert field_help(ToyChild)["name"] == "The child's own name."
    assert field_help(ToyChild)["level"] == "Difficulty, one of three levels (50 % harder each)."
    assert field_help(ToyConfig)["undocumented"] == ""
    field_help(ToyConfig)["level"] = "changed"
    assert field_help(ToyConfig)["level"].startswith("Difficulty")


# ---------------------------------------------------------------------------------------------- parse_field
@pytest.mark.parametrize("text", ["10000", "10_000", "1e4", "1E4", " 10000 ", "10000.0"])
def test_parse_int_accepts_exact_integers(text):
    value = parse_field(DQNConfig, "batch_size", text)
    assert value == 10_000 and type(value) is int


@pytest.mark.parametrize("text", ["1.5", "true", "abc", "", "inf", "nan", "1e-3"])
def test_parse_int_rejects_the_rest(text):
    with pytest.raises(ConfigOptionError, match=r"^batch_size must be an integer \(int\), got ") as info:
        parse_field(DQNConfig, "batch_size", text)
    assert repr(text) in str(info.value)


def test_parse_float():
    assert parse_field(DQNConfig, "lr", "1e-3") == 0.001
    assert parse_field(DQNConfig, "lr", "3") == 3.0 and type(parse_field(DQNConfig, "lr", "3")) is float
    with pytest.raises(ConfigOptionError, match=r"^lr must be a number \(float\), got 'abc'$"):
        parse_field(DQNConfig, "lr", "abc")
    with pytest.raises(ConfigOptionError, match="lr must be a finite number"):  # check_annotated's message
        parse_field(DQNConfig, "lr", "nan")


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("YES", True), ("1", True), ("on", True),
                                         ("false", False), ("No", False), ("0", False), ("OFF", False)])
def test_parse_bool_words(text, value):
    assert parse_field(DQNConfig, "double", text) is value


@pytest.mark.parametrize("text", ["maybe", "2", "", "t"])
def test_parse_bool_rejects_other_words(text):
    with pytest.raises(ConfigOptionError, match=r"^double must be true or false"):
        parse_field(DQNConfig, "double", text)


def test_parse_str_is_taken_as_is():
    assert parse_field(ToyConfig, "name", " spaced out ") == " spaced out "
    assert parse_field(DQNConfig, "device", "cpu") == "cpu"


def test_parse_literal_of_strings_and_of_ints():
    assert parse_field(DQNConfig, "loss", "mse") == "mse"
    assert parse_field(DQNConfig, "network", "nature_cnn") == "nature_cnn"
    with pytest.raises(ConfigOptionError, match=r"^loss must be one of 'huber', 'mse', got 'l1'$"):
        parse_field(DQNConfig, "loss", "l1")
    value = parse_field(ToyConfig, "level", "2")
    assert value == 2 and type(value) is int
    with pytest.raises(ConfigOptionError, match="level must be one of 1, 2, 3, got '4'"):
        parse_field(ToyConfig, "level", "4")


@pytest.mark.parametrize("text", ["none", "None", "null", "NONE"])
def test_parse_optional_none_words(text):
    assert parse_field(DQNConfig, "max_grad_norm", text) is None
    assert parse_field(ToyConfig, "limit", text) is None


def test_parse_optional_value_and_bad_value():
    assert parse_field(DQNConfig, "max_grad_norm", "5") == 5.0
    assert parse_field(ToyConfig, "limit", "1e3") == 1000
    with pytest.raises(ConfigOptionError, match=r"^limit must be an integer \(int\) or none, got '1.5'$"):
        parse_field(ToyConfig, "limit", "1.5")
    assert parse_field(DQNConfig, "device", "none") == "none"  # not optional: the word stays a string
    with pytest.raises(TypeError, match="text must be the command line's string"):
        parse_field(DQNConfig, "lr", 1e-3)


@pytest.mark.parametrize("text, value", [("64,64", (64, 64)), ("64, 32 ,16", (64, 32, 16)), ("64", (64,)),
                                         ("64,", (64,)), ("(32, 16)", (32, 16)), ("[8]", (8,)), ("", ()),
                                         ("()", ()), ("1e2,2", (100, 2))])
def test_parse_tuple_of_ints(text, value):
    assert parse_field(DQNConfig, "hidden", text) == value


@pytest.mark.parametrize("text", ["64,x", "64,,64", "1.5", "true"])
def test_parse_tuple_rejects_bad_items(text):
    with pytest.raises(ConfigOptionError, match=r"^hidden must be comma-separated values, each an integer"):
        parse_field(DQNConfig, "hidden", text)


def test_parse_fixed_tuple_and_nested_literal():
    assert parse_field(ToyConfig, "pair", "3,0.5") == (3, 0.5)
    with pytest.raises(ConfigOptionError, match="pair must be 2 comma-separated values"):
        parse_field(ToyConfig, "pair", "3")
    mask = parse_field(QLearningConfig, "action_mask", "((True, False), [True, True])")
    assert mask == ((True, False), (True, True))
    assert parse_field(QLearningConfig, "action_mask", "none") is None
    with pytest.raises(ConfigOptionError, match=r"action_mask\[0\]\[1\] must be True or False"):
        parse_field(QLearningConfig, "action_mask", "((True, 2),)")


@pytest.mark.parametrize("config", [DQNConfig.cartpole(), DQNConfig.rainbow(), A3CConfig.pong(), NStepPGConfig(),
                                    CEMConfig(), QLearningConfig(action_mask=((True, False), (True, True))),
                                    ModelBasedConfig(), ToyConfig(pair=(2, 0.5), limit=7)])
def test_every_value_as_shown_in_help_parses_back(config):
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        assert parse_field(type(config), f.name, format_value(value)) == value, f.name


def test_parse_unknown_field_suggests_close_names():
    with pytest.raises(ConfigOptionError, match=r"^DQNConfig has no field 'lrr' \(did you mean 'lr'\?\)$"):
        parse_field(DQNConfig, "lrr", "1e-3")
    with pytest.raises(ConfigOptionError, match="did you mean 'batch_size'"):
        parse_field(DQNConfig, "batchsize", "3")
    assert parse_field(DQNConfig, "batch-size", "3") == 3  # dashes as on the command line


# ---------------------------------------------------------------------------------------------- options
def test_option_and_set_both_give_the_value_and_nothing_else_changes():
    expected = DQNConfig().replace(lr=0.001)
    assert build(["--lr", "1e-3"]) == expected
    assert build(["--set", "lr=1e-3"]) == expected
    assert build(["--set", "lr=1e-3"]).lr == 0.001
    assert build([]) == DQNConfig()
    args = parser_for().parse_args(["--lr", "1e-3"])
    assert config_overrides(DQNConfig, args) == {"lr": 0.001}
    assert config_overrides(DQNConfig, parser_for().parse_args([])) == {}


def test_set_accepts_dashes_repeats_and_several_keys():
    config = build(["--set", "batch-size=64", "--set", "hidden=64,64", "--double", "yes", "--max-grad-norm", "none"])
    assert config == DQNConfig(batch_size=64, hidden=(64, 64), double=True, max_grad_norm=None)
    # the same field twice with the same value is fine
    assert build(["--lr", "1e-3", "--set", "lr=0.001"]).lr == 0.001


def test_preset_base_keeps_its_values_for_fields_not_given():
    preset = DQNConfig.cartpole()
    config = build(["--batch-size", "64", "--set", "double=true"], base=preset)
    assert config == preset.replace(batch_size=64, double=True)
    assert config.lr == preset.lr == 1e-3 != DQNConfig().lr
    assert build([], base=preset) == preset
    with pytest.raises(TypeError, match="base must be a DQNConfig"):
        build([], base=A2CConfig())


def test_unknown_set_key_names_the_option_and_suggests():
    with pytest.raises(ConfigOptionError) as info:
        build(["--set", "lrr=1e-3"])
    assert str(info.value) == "--set lrr=1e-3: DQNConfig has no field 'lrr' (did you mean 'lr'?)"


def test_bad_value_message_names_the_option_text_and_type():
    with pytest.raises(ConfigOptionError) as info:
        build(["--lr", "abc"])
    assert str(info.value) == "--lr abc: lr must be a number (float), got 'abc'"
    with pytest.raises(ConfigOptionError, match=r"^--set batch_size=1.5: batch_size must be an integer"):
        build(["--set", "batch_size=1.5"])


@pytest.mark.parametrize("pair", ["lr", "=3", " =3"])
def test_malformed_set_pair(pair):
    with pytest.raises(ConfigOptionError, match=r"expected KEY=VALUE"):
        build(["--set", pair])


def test_a_field_given_twice_with_different_values():
    with pytest.raises(ConfigOptionError, match=r"^--set lr=0.01: lr is already set to 0.001 by --lr 1e-3$"):
        build(["--lr", "1e-3", "--set", "lr=0.01"])
    with pytest.raises(ConfigOptionError, match="already set"):
        build(["--set", "gamma=0.9", "--set", "gamma=0.8"])


def test_validation_failure_names_the_option():
    with pytest.raises(ConfigOptionError) as info:
        build(["--lr", "-1"])
    assert str(info.value) == "--lr -1: lr must be > 0, got -1"
    with pytest.raises(ConfigOptionError, match=r"^--set conv_kernel=4: conv_kernel must be odd"):
        build(["--set", "conv_kernel=4"])
    # a check across fields names the options involved
    with pytest.raises(ConfigOptionError, match=r"^--batch-size 64: buffer_size \(10\) must be at least batch_size"):
        build(["--batch-size", "64", "--gamma", "0.9"], base=DQNConfig(buffer_size=10, batch_size=8))
    with pytest.raises(ConfigOptionError, match=r"^--set hidden=64,-1: hidden\[1\] must be >= 1, got -1$"):
        build(["--set", "hidden=64,-1"])


def test_parser_error_exits_2_with_one_line_naming_the_option(capsys):
    parser = parser_for(exclude=("seed", "device"))

    def main(argv):
        args = parser.parse_args(argv)
        try:
            return config_from_args(DQNConfig, args, exclude=("seed", "device"))
        except ConfigOptionError as e:
            parser.error(str(e))

    for argv, text in [(["--set", "lrr=1e-3"], "--set lrr=1e-3: DQNConfig has no field 'lrr' (did you mean 'lr'?)"),
                       (["--lr", "abc"], "--lr abc: lr must be a number (float), got 'abc'"),
                       (["--set", "seed=3"], "--set seed=3: seed cannot be set here"),
                       (["--lr", "-1"], "--lr -1: lr must be > 0, got -1")]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: rlbook")
        last = err.rstrip("\n").splitlines()[-1]
        assert last.startswith(f"rlbook: error: {text}")
        assert err.count("error:") == 1 and "\n" not in err.split("error: ", 1)[1].rstrip("\n")
    assert main(["--lr", "1e-3"]).lr == 0.001


def test_help_shows_docstring_default_and_metavar():
    parser = parser_for()
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    assert "DQNConfig options:" in text
    assert "--lr FLOAT Adam learning rate (> 0). (default: 0.0001)" in text
    assert "--batch-size INT Transitions per gradient step. (default: 32)" in text
    assert "--loss {huber,mse} TD loss: \"huber\" (smooth L1) or \"mse\". (default: huber)" in text
    assert "--max-grad-norm FLOAT|none" in text and "(default: 10.0)" in text
    assert "--hidden INT,... " in text and "(default: 128,128)" in text
    assert "--double BOOL" in text and "(default: false)" in text
    assert "--set KEY=VALUE" in text
    preset = " ".join(parser_for(base=DQNConfig.cartpole(), title="plain").format_help().split())
    assert "plain:" in preset and "--lr FLOAT Adam learning rate (> 0). (default: 0.001)" in preset
    toy = " ".join(parser_for(ToyConfig).format_help().split())  # '%' in a docstring, '{1,2,3}', no docstring
    assert "--level {1,2,3} Difficulty, one of three levels (50 % harder each). (default: 1)" in toy
    assert "--undocumented INT (default: 0)" in toy
    assert "--pair INT,FLOAT" in toy


def test_exclude_removes_seed_and_device():
    parser = parser_for(exclude=("seed", "device"))
    options = parser._option_string_actions
    assert "--seed" not in options and "--device" not in options and "--lr" in options
    assert "--seed" in parser_for()._option_string_actions
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", "1"])
    args = parser.parse_args(["--set", "device=cpu"])
    with pytest.raises(ConfigOptionError, match=r"^--set device=cpu: device cannot be set here"):
        config_overrides(DQNConfig, args, exclude=("seed", "device"))


def test_dests_do_not_clash_with_the_scripts_options():
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning-rate", dest="lr", default="the script's")
    parser.add_argument("--seeds", type=int, default=3)
    add_config_options(parser, DQNConfig, exclude=("seed",))
    args = parser.parse_args(["--lr", "0.5", "--seeds", "2"])
    assert args.lr == "the script's" and args.seeds == 2
    assert config_from_args(DQNConfig, args).lr == 0.5
    assert not hasattr(args, "gamma") and not hasattr(args, "config__gamma")  # absent unless given


def test_clashing_option_is_refused_and_set_added_once():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    with pytest.raises(ValueError, match="--lr clash"):
        add_config_options(parser, DQNConfig)
    assert "--gamma" not in parser._option_string_actions  # nothing was added
    add_config_options(parser, DQNConfig, exclude=("lr",))
    add_config_options(parser, QLearningConfig, exclude=("seed", "device", "gamma", "epsilon_end",
                                                         "epsilon_decay_steps"))
    assert add_set_option(parser) is None  # --set is there once
    args = parser.parse_args(["--lr", "0.1", "--alpha", "0.5", "--set", "gamma=0.5"])
    assert config_overrides(QLearningConfig, args) == {"alpha": 0.5, "gamma": 0.5}


def test_an_option_of_another_config_class_is_an_error():
    parser = parser_for(A3CConfig, exclude=("seed", "device"))
    args = parser.parse_args(["--lr", "1e-3", "--max-queued", "4"])
    assert config_overrides(A3CConfig, args) == {"lr": 1e-3, "max_queued": 4}
    with pytest.raises(ConfigOptionError, match=r"^--max-queued 4: A2CConfig has no field 'max_queued'"):
        config_overrides(A2CConfig, args)


def test_add_set_option_alone():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=None)  # the script's own option
    assert add_set_option(parser, help="change our agents' presets") is not None
    assert "--set KEY=VALUE change our agents' presets" in " ".join(parser.format_help().split())
    with pytest.raises(ConfigOptionError, match=r"^--set workers=3: workers cannot be set here"):
        config_overrides(A2CConfig, parser.parse_args(["--set", "workers=3"]), exclude=("workers",))
    with pytest.raises(ConfigOptionError, match=r"^--set =oops: expected KEY=VALUE"):
        config_overrides(A2CConfig, parser.parse_args(["--set==oops"]))
    args = parser.parse_args(["--set", "lr=0.25", "--set", "n_steps=8"])
    assert config_from_args(A2CConfig, args, base=A2CConfig.cartpole()) == A2CConfig.cartpole(lr=0.25, n_steps=8)
    assert config_overrides(A2CConfig, parser.parse_args([])) == {}
