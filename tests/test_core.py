"""budget(), seeding, device choice, env making and the results schema."""

import json
import pkgutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlbook
from rlbook.agents.dqn import DQNAgent
from rlbook.envs import as_vector_env, make
from rlbook.results import load_results, summarize, write_results


def test_budget_follows_the_environment_variable(monkeypatch):
    monkeypatch.delenv("RLBOOK_QUICK", raising=False)
    assert rlbook.budget(full=1000, quick=10) == 1000
    for value in ("1", "true", "YES", "on"):
        monkeypatch.setenv("RLBOOK_QUICK", value)
        assert rlbook.budget(full=1000, quick=10) == 10
        assert rlbook.is_quick()
    for value in ("0", "false", "", "off"):
        monkeypatch.setenv("RLBOOK_QUICK", value)
        assert rlbook.budget(full=[1, 2, 3], quick=[1]) == [1, 2, 3]


def test_budget_rejects_a_value_it_does_not_understand(monkeypatch):
    monkeypatch.setenv("RLBOOK_QUICK", "maybe")
    with pytest.raises(ValueError, match="RLBOOK_QUICK='maybe'"):
        rlbook.budget(full=1, quick=0)


def test_seed_everything_makes_runs_repeat():
    rng1 = rlbook.seed_everything(7)
    a = (rng1.random(3), np.random.rand(2), torch.rand(2))
    rng2 = rlbook.seed_everything(7)
    b = (rng2.random(3), np.random.rand(2), torch.rand(2))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises((TypeError, ValueError), match="seed must be a non-negative integer"):
        rlbook.seed_everything(bad)


def test_resolve_device():
    assert rlbook.resolve_device("cpu") == torch.device("cpu")
    assert rlbook.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        rlbook.resolve_device("gpu0")
    assert rlbook.resolve_device(torch.device("cpu")) == torch.device("cpu")
    # a GPU that is not there is refused by name here, not by PyTorch at the first tensor
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match=f"device '{missing}' is not available"):
        rlbook.resolve_device(missing)
    with pytest.raises(ValueError, match=f"device '{missing}' is not available"):
        rlbook.resolve_device(torch.device(missing))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is not available"):
            DQNAgent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), device="cuda")


def test_make_gives_a_clear_error_for_unknown_ids():
    with pytest.raises(ValueError, match=r"unknown environment id 'CartPol-v1'.*did you mean 'CartPole-v1'"):
        make("CartPol-v1")
    with pytest.raises(TypeError, match="env_id must be a string"):
        make(42)


def test_as_vector_env_wraps_and_checks():
    venv = as_vector_env("CartPole-v1")
    assert venv.num_envs == 1
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (1, 4)
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="next-step autoreset"):
        as_vector_env(sync)
    with pytest.raises(TypeError, match="expected a gymnasium Env"):
        as_vector_env(3.0)


def test_one_env_vector_autoresets_on_the_next_step():
    venv = as_vector_env(gym.make("CartPole-v1"))
    obs, _ = venv.reset(seed=1)
    done = False
    while not done:
        obs, reward, terminated, truncated, _ = venv.step(np.array([0]))
        done = bool(terminated[0] or truncated[0])
    final = obs.copy()
    obs, reward, terminated, truncated, _ = venv.step(np.array([0]))  # the reset step
    assert reward[0] == 0 and not terminated[0] and not truncated[0]
    assert not np.allclose(obs, final)
    assert np.all(np.abs(obs) <= 0.05)  # CartPole starts near the origin


def test_summarize_counts_failures_as_the_budget():
    entry = summarize([10.0, None, 20.0, 30.0], budget=100.0, unit="s")
    assert entry["solved"] == 3 and entry["runs"] == 4
    assert entry["values"] == [10.0, None, 20.0, 30.0]
    assert entry["median"] == pytest.approx(np.median([10, 100, 20, 30]))
    assert entry["iqr"] == pytest.approx([np.percentile([10, 100, 20, 30], 25), np.percentile([10, 100, 20, 30], 75)])
    no_budget = summarize([1.0, 3.0, float("nan")])
    assert no_budget["median"] == 2.0 and no_budget["solved"] == 2


def test_write_and_load_results_round_trip(tmp_path, monkeypatch):
    (tmp_path / "rlbook").mkdir()
    (tmp_path / "results").mkdir()
    monkeypatch.chdir(tmp_path)
    path = write_results("test/demo", {"x": summarize([1.0, 2.0])}, seeds=[0, 1], command="python demo.py",
                         curve=np.arange(3))
    data = json.loads(path.read_text())
    assert path == tmp_path / "results" / "test" / "demo.json"
    prov = data["provenance"]
    assert prov["command"] == "python demo.py" and prov["seeds"] == [0, 1] and prov["curve"] == [0, 1, 2]
    for key in ("commit", "date", "versions", "hardware"):
        assert key in prov
    assert load_results("test/demo")["metrics"]["x"]["median"] == 1.5
    with pytest.raises(FileNotFoundError, match="run the bench script"):
        load_results("test/missing")


def test_results_files_are_strict_json_and_stay_inside_results(tmp_path, monkeypatch):
    (tmp_path / "rlbook").mkdir()
    (tmp_path / "results").mkdir()
    monkeypatch.chdir(tmp_path)
    metrics = {"x": {"unit": "s", "values": [1.0, float("nan")], "median": float("inf"), "iqr": [0.5, -np.inf]}}
    path = write_results("demo/nan", metrics, seeds=[0], command="python demo.py", curve=np.array([1.0, np.nan]))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["metrics"]["x"]["values"] == [1.0, None] and data["metrics"]["x"]["median"] is None
    assert data["nonfinite"] == {"metrics.x.values[1]": "nan", "metrics.x.median": "inf",
                                 "metrics.x.iqr[1]": "-inf", "provenance.curve[1]": "nan"}
    for name in ("../../x", "../x", "a/../../x", "/tmp/x", "", "a//b", "a b", "./x"):
        with pytest.raises(ValueError, match="results name"):
            write_results(name, {}, seeds=[])
    assert not (tmp_path / "x.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["results", "rlbook"]


def test_every_module_imports_on_its_own():
    """Each module must import first thing in a fresh interpreter (no import cycles between them)."""
    names = sorted(m.name for m in pkgutil.walk_packages(rlbook.__path__, "rlbook."))
    assert "rlbook.replay" in names and "rlbook.agents.dqn" in names
    code = ("import importlib, sys\nfailed = []\nfor name in sys.argv[1:]:\n"
            "    for loaded in [m for m in sys.modules if m.startswith('rlbook')]:\n        del sys.modules[loaded]\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception as error:\n        failed.append(f'{name}: {error!r}')\n"
            "print('\\n'.join(failed))\nsys.exit(1 if failed else 0)")
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schedules_at_their_edges():
    """A linear schedule of one step is at its start before that step and at its end after it; an
    exponential schedule accepts any positive half-life, shorter than one step too."""
    from rlbook.schedules import ExponentialSchedule, LinearSchedule

    one = LinearSchedule(1.0, 0.0, 1)
    assert one.value_at(0) == 1.0 and one.value_at(1) == 0.0
    assert LinearSchedule(1.0, 0.0, 0).value_at(0) == 0.0  # no duration: the end at once
    fast = ExponentialSchedule(1.0, 0.0, 0.5)
    assert fast.value_at(1) == pytest.approx(0.25)  # two half-lives in one step


def test_merge_results_keeps_the_other_parts_and_derives_from_the_merged_set(tmp_path, monkeypatch):
    from rlbook.results import load_results, merge_results, summarize

    (tmp_path / "rlbook").mkdir()
    (tmp_path / "results").mkdir()
    monkeypatch.chdir(tmp_path)
    owner = lambda k: k.split("_x")[0]  # noqa: E731
    derive = lambda m: {"ratio": {"value": m["b_x"]["median"] / m["a_x"]["median"]}} if "a_x" in m and "b_x" in m \
        else {}  # noqa: E731
    merge_results("t/m", "parts", {"b": {"seeds": [1, 2]}}, {"b_x": summarize([4.0, 4.0])}, owner, order=("a", "b"),
                  derive=derive)
    merge_results("t/m", "parts", {"a": {"seeds": [0]}}, {"a_x": summarize([2.0])}, owner, order=("a", "b"),
                  derive=derive, note="second")
    out = load_results("t/m")
    assert list(out["provenance"]["parts"]) == ["a", "b"]  # in the given order, both kept
    assert out["provenance"]["seeds"] == [0, 1, 2] and out["provenance"]["note"] == "second"
    assert out["metrics"]["ratio"]["value"] == 2.0
    merge_results("t/m", "parts", {"a": {"seeds": [0]}}, {"a_x": summarize([1.0])}, owner, derive=derive)
    out = load_results("t/m")
    assert out["metrics"]["a_x"]["median"] == 1.0 and out["metrics"]["b_x"]["median"] == 4.0
    assert out["metrics"]["ratio"]["value"] == 4.0  # re-derived from the new medians
