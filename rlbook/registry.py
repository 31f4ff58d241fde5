"""Names for agents, environments, objectives and regimens: the book's built-ins and a project's own.

The command line (chapter 12), :func:`~rlbook.play.play`, :func:`~rlbook.evaluate.evaluate` and ``bench/`` refer
to agents by name (``dqn``, ``a2c``, a reader's ``mydqn``). A name resolves in two places:

* the built-ins below (``BUILTIN_AGENTS`` and friends), imported only when asked for;
* a **project**: a folder made by ``rlbook init`` with ``agents/``, ``environments/``, ``objectives/``,
  ``regimens/`` and a registry file ``rlbook.yaml`` that ``rlbook generate`` keeps up to date::

      agents:
        mydqn: agents/mydqn.py:MydqnAgent
      environments:
        corridor: environments/corridor.py:CorridorEnv

A project's entries win over built-ins of the same name inside that project. The YAML is read with a safe
loader (plain data only); project modules are imported from files inside the project folder only (an entry
that points outside it is refused); a module that fails to import raises :class:`RegistryError` with the
module's own error, never a silent skip.

Project code also reaches worker processes (A3C's, chapter 11), which know nothing of the project:
:func:`make_named_env` is a picklable factory that registers the environment there first, and an instance of a
project class (an objective) travels as "import this file of this project, then restore the attributes".
"""

from __future__ import annotations

import copyreg
import dataclasses
import difflib
import importlib
import importlib.util
import keyword
import os
import sys
from pathlib import Path
from typing import Any

KINDS = ("agents", "environments", "objectives", "regimens")
"""The four kinds of things a project holds (and ``rlbook generate`` writes), in the order they are listed."""

REGISTRY_FILE = "rlbook.yaml"
"""The name of a project's registry file."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered name."""

    kind: str
    """``"agents"``, ``"environments"``, ``"objectives"`` or ``"regimens"``."""
    name: str
    """The name on the command line."""
    target: str
    """Where the object lives: ``"package.module:Attribute"`` for built-ins, ``"folder/file.py:Attribute"`` for a
    project's own (relative to the project folder)."""
    preset: str | None = None
    """For agents: the config preset (a classmethod of the agent's config class) that the name stands for."""
    summary: str = ""
    """One line for ``rlbook list``."""
    project: Path | None = None
    """The project folder of a project entry; ``None`` for built-ins."""

    @property
    def builtin(self) -> bool:
        return self.project is None


def _builtin(kind: str, rows: list[tuple[str, str, str | None, str]]) -> dict[str, Entry]:
    return {name: Entry(kind, name, target, preset, summary) for name, target, preset, summary in rows}


BUILTIN_AGENTS = _builtin("agents", [
    ("random", "rlbook.agents.random_agent:RandomAgent", None, "uniformly random actions (chapter 2's baseline)"),
    ("cem", "rlbook.agents.cem:CEMAgent", None, "cross-entropy method on whole episodes (chapter 4)"),
    ("qlearning", "rlbook.tabular:QLearningAgent", None, "tabular Q-learning, discrete states (chapter 5)"),
    ("model-based", "rlbook.tabular:ModelBasedAgent", None,
     "counts a model, solves it by value iteration (chapter 5)"),
    ("dqn", "rlbook.agents.dqn:DQNAgent", None, "deep Q-network with replay and a target network (chapter 6)"),
    ("rainbow", "rlbook.agents.dqn:DQNAgent", "rainbow",
     "DQN with all of chapter 7's extensions (the rainbow preset)"),
    ("reinforce", "rlbook.agents.pg:ReinforceAgent", None, "REINFORCE on whole episodes (chapter 9)"),
    ("nstep-pg", "rlbook.agents.pg:NStepPGAgent", None, "policy gradient on n-step returns (chapter 9)"),
    ("a2c", "rlbook.agents.a2c:A2CAgent", None, "advantage actor-critic on (T, N) rollouts (chapter 10)"),
    ("a3c", "rlbook.agents.a3c:A3CAgent", None, "A2C with worker processes, asynchronous (chapter 11)"),
])
BUILTIN_ENVIRONMENTS = _builtin("environments", [
    ("counting", "rlbook.envs.counting:CountingEnv", None, "rewards 1, 2, 3, ... (exact tests of returns)"),
    ("chain", "rlbook.envs.counting:ChainEnv", None, "a chain of states for tabular agents"),
])
BUILTIN_OBJECTIVES = _builtin("objectives", [
    ("reward", "rlbook.train:Objective", None, "the environment's own reward (the default)"),
])
BUILTIN_REGIMENS = _builtin("regimens", [
    ("online", "rlbook.regimens:Online", None, "play and learn, epoch by epoch (the default)"),
    ("offline", "rlbook.regimens:Offline", None, "learn from episodes saved by an earlier run, without playing"),
])
BUILTINS = {"agents": BUILTIN_AGENTS, "environments": BUILTIN_ENVIRONMENTS, "objectives": BUILTIN_OBJECTIVES,
            "regimens": BUILTIN_REGIMENS}


class RegistryError(ValueError):
    """A name that does not resolve, a registry file that cannot be read, or a project module that fails."""


class UnknownName(RegistryError):
    """No entry of that kind has that name (the message suggests close matches): a bad argument, where a
    :class:`RegistryError` of another kind is a broken project."""


# ---------------------------------------------------------------------- projects
def find_project(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) holding ``rlbook.yaml``."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / REGISTRY_FILE).is_file():
            return folder
    return None


def read_registry(project: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The project's registry as ``{kind: {name: target}}`` (every kind present, maybe empty).

    Read with ``yaml.safe_load``: tags that would build Python objects are refused."""
    import yaml

    path = Path(project) / REGISTRY_FILE
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{path} must hold a mapping of kinds ({', '.join(KINDS)}), got {type(data).__name__}")
    unknown = set(data) - set(KINDS)
    if unknown:
        raise RegistryError(f"{path}: unknown section(s) {', '.join(sorted(map(str, unknown)))}; "
                            f"the sections are {', '.join(KINDS)}")
    out: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        section = data.get(kind) or {}
        if not isinstance(section, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in section.items()):
            raise RegistryError(f"{path}: the {kind} section must map names to 'file.py:Attribute' strings")
        out[kind] = dict(section)
    return out


def write_registry(project: str | os.PathLike, registry: dict[str, dict[str, str]]) -> Path:
    """Write ``registry`` (as returned by :func:`read_registry`) to the project's ``rlbook.yaml``, atomically."""
    path = Path(project) / REGISTRY_FILE
    lines = ["# The rlbook project registry: what `rlbook generate` made. `rlbook list` shows it.",
             "# Each entry maps a name to file.py:Attribute, relative to this folder."]
    for kind in KINDS:
        entries = registry.get(kind, {})
        lines.append(f"{kind}:" + ("" if entries else " {}"))
        lines += [f"  {name}: {target}" for name, target in sorted(entries.items())]
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def check_name(name: str, kind: str = "agents") -> str:
    """``name`` if it can name a project module (a Python identifier, not a keyword, no path in it);
    ``ValueError`` saying why otherwise."""
    what = kind[:-1]
    article = "an" if what[0] in "aeiou" else "a"
    if not isinstance(name, str) or not name:
        raise ValueError(f"the {what} name must be a non-empty string")
    if "/" in name or "\\" in name or name.startswith(".") or os.path.isabs(name):
        raise ValueError(f"{name!r} is a path; {article} {what} name is a plain Python identifier such as my_{what}")
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"{name!r} is not a Python identifier (letters, digits and _, not starting with a digit); "
                         f"try {_identifier(name)!r}")
    if keyword.iskeyword(name):
        raise ValueError(f"{name!r} is a Python keyword; choose another {what} name")
    if name in sys.stdlib_module_names:
        raise ValueError(f"{name!r} is the name of a standard-library module; choose another {what} name")
    return name


def _identifier(name: str) -> str:
    out = "".join(c if c.isalnum() and c.isascii() else "_" for c in Path(str(name)).name).strip("_") or "my"
    return f"my_{out}" if out[0].isdigit() or keyword.iskeyword(out) else out


def entries(kind: str, project: str | os.PathLike | None = None) -> dict[str, Entry]:
    """Every name of ``kind``: the built-ins, then the project's own (which win over a built-in's name)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out = dict(BUILTINS[kind])
    if project is not None:
        project = Path(project).resolve()
        for name, target in read_registry(project)[kind].items():
            out[name] = Entry(kind, name, target, None, "", project)
    return out


def lookup(kind: str, name: str, project: str | os.PathLike | None = None) -> Entry:
    """The entry called ``name``; :class:`RegistryError` naming close matches when there is none."""
    known = entries(kind, project)
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; the {kind} are {', '.join(sorted(known))}"
    raise UnknownName(f"unknown {kind[:-1]} {name!r}{hint}")


def resolve(entry: Entry) -> Any:
    """Import what ``entry`` names and return it (a class, usually)."""
    location, _, attribute = entry.target.rpartition(":")
    if not location or not attribute:
        raise RegistryError(f"the {entry.kind[:-1]} {entry.name!r} points to {entry.target!r}; "
                            "expected 'file.py:Attribute'")
    module = importlib.import_module(location) if entry.builtin else import_project_file(entry.project, location)
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise RegistryError(f"{location} defines no {attribute!r} (the {entry.kind[:-1]} {entry.name!r} of the "
                            "registry points there)") from None
    if not entry.builtin and isinstance(found, type):
        # a worker process cannot import ``rlbook_project.*`` by name: its instances pickle as "import this file
        # of this project, then restore the attributes" instead
        _PROJECT_CLASSES[found] = (str(entry.project), location, attribute)
        copyreg.pickle(found, _reduce_project_object)
    return found


_PROJECT_CLASSES: dict[type, tuple[str, str, str]] = {}


def _reduce_project_object(obj: Any):
    # pickle's own protocol restores the state (``__setstate__``, the ``__dict__`` or the slots)
    return _new_project_object, _PROJECT_CLASSES[type(obj)], obj.__getstate__()


def _new_project_object(project: str, location: str, attribute: str) -> Any:
    """An empty instance of a project class, in whichever process unpickles it (the other half of
    :func:`resolve`'s pickling)."""
    cls = getattr(import_project_file(project, location), attribute)
    return cls.__new__(cls)


def register_environment(entry: Entry) -> str:
    """Register the environment class ``entry`` names as a Gymnasium id, ``entry.name`` (a project's
    environment of a Gymnasium name replaces Gymnasium's inside the project); returns the id."""
    import gymnasium as gym

    cls = resolve(entry)
    if entry.name in gym.registry and gym.registry[entry.name].entry_point is not cls:
        del gym.registry[entry.name]
    if entry.name not in gym.registry:
        gym.register(id=entry.name, entry_point=cls, max_episode_steps=getattr(cls, "max_episode_steps", None))
    return entry.name


def make_named_env(name: str, num_envs: int = 1, project: str | os.PathLike | None = None):
    """The environment registered as ``name`` (built in, or the project's): one env, or a vector env of
    ``num_envs`` copies. A module-level function, so ``functools.partial(make_named_env, name, 4, project)`` is
    a picklable factory that works in a worker process too (it registers the id there before making the env)."""
    from rlbook.envs import make, make_vec

    env_id = register_environment(lookup("environments", name, project))
    return make(env_id) if num_envs == 1 else make_vec(env_id, num_envs)


def import_project_file(project: str | os.PathLike, relative: str):
    """Import ``relative`` (``"agents/mydqn.py"``) from the project folder, as module ``rlbook_project.agents.mydqn``.

    The file must lie inside the project folder (after resolving links); an error raised while importing it is
    re-raised as :class:`RegistryError` carrying the original message (and chained, so its traceback shows)."""
    project = Path(project).resolve()
    path = (project / relative).resolve()
    if not path.is_relative_to(project):
        raise RegistryError(f"{relative!r} lies outside the project folder {project}; entries must point inside it")
    if path.suffix != ".py":
        raise RegistryError(f"{relative!r} is not a Python file")
    if not path.is_file():
        raise RegistryError(f"{relative} does not exist in {project} (the registry names it)")
    name = "rlbook_project." + ".".join(path.relative_to(project).with_suffix("").parts)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise RegistryError(f"{relative} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


# ---------------------------------------------------------------------- agents
def agent_class(name: str, project: str | os.PathLike | None = None) -> tuple[type, str | None]:
    """The agent class called ``name`` and the config preset the name stands for (``None``: the defaults)."""
    from rlbook.agents.base import Agent

    entry = lookup("agents", name, project)
    cls = resolve(entry)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise RegistryError(f"{entry.target} is not an rlbook Agent class (the agent {name!r} points there)")
    return cls, entry.preset


def presets(config_class: type) -> dict[str, str]:
    """The presets of a config class (classmethods returning a config, such as ``DQNConfig.cartpole``):
    name -> the first line of its docstring."""
    out = {}
    for klass in reversed(config_class.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, classmethod) and not attr.startswith("_") and attr not in ("from_dict", "build"):
                doc = (value.__func__.__doc__ or "").strip().split("\n")[0]
                out[attr] = doc
    return out


def make_config(cls: type, preset: str | None = None, **overrides: Any):
    """``cls.config_class`` built from ``preset`` (or its defaults) with ``overrides``."""
    config_class = cls.config_class
    if preset is None:
        return config_class(**overrides)
    known = presets(config_class)
    if preset not in known:
        raise RegistryError(f"{config_class.__name__} has no preset {preset!r}; its presets are "
                            f"{', '.join(sorted(known)) or 'none'}")
    return getattr(config_class, preset)(**overrides)


def agent_class_named(class_name: str) -> type:
    """The :class:`~rlbook.agents.base.Agent` subclass whose ``__name__`` is ``class_name``, among the built-ins
    and every agent class imported so far (a project's agents, once the project is loaded)."""
    from rlbook.agents.base import Agent

    for entry in BUILTIN_AGENTS.values():
        if entry.target.rpartition(":")[2] == class_name:
            return resolve(entry)
    found, stack = [], list(Agent.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls.__name__ == class_name:
            found.append(cls)
        stack += cls.__subclasses__()
    if len(found) == 1:
        return found[0]
    if not found:
        raise RegistryError(f"no agent class {class_name!r} is known: it is neither built in nor imported (a "
                            "project's agent: run inside the project, or import its module first)")
    raise RegistryError(f"{len(found)} agent classes are called {class_name!r}; load with that class's "
                        "from_checkpoint")


__all__ = ["BUILTINS", "BUILTIN_AGENTS", "Entry", "KINDS", "REGISTRY_FILE", "RegistryError", "UnknownName",
           "agent_class", "agent_class_named", "check_name", "entries", "find_project", "import_project_file", "lookup",
           "make_config", "make_named_env", "presets", "read_registry", "register_environment", "resolve",
           "write_registry"]
