"""The ``rlbook`` command: make a project, generate an agent, train it, watch it (chapter 12).

::

    rlbook init [DIR]        # agents/ environments/ objectives/ regimens/
                             # and the registry rlbook.yaml
    rlbook generate agent|environment|objective|regimen NAME
    rlbook train AGENT --env ID --episodes N [--epochs N] [--test]
                 [--resume] [--set key=value ...]
    rlbook list [agents|environments|objectives|regimens]
    rlbook play CHECKPOINT [--env ID] [--video out.webp]
    rlbook eval CHECKPOINT [--env ID] [--episodes N]

A bad argument ends the command with exit status 2 and one line naming it (argparse's convention); a
project module that fails to import, or training that fails, ends it with status 1 and the error. Training
stopped by Ctrl-C saves its checkpoint and exits with status 130 (SIGTERM: 143).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import string
import sys
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

from rlbook import registry
from rlbook.registry import KINDS, RegistryError, UnknownName

#: Exit status for a bad argument (argparse's).
USAGE = 2

_SINGULAR = {kind[:-1]: kind for kind in KINDS}


# ---------------------------------------------------------------------- parsers
class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (``rlbook train: error: --env: ...``) and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --ep is not --episodes (nor --epochs, nor --epsilon-end)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rlbook", description="Build, train and watch reinforcement-learning agents (the rlbook book, "
        "chapter 12).", epilog="`rlbook COMMAND --help` describes each command; `rlbook train AGENT --help` "
        "also lists the agent's hyperparameters.")
    parser.add_argument("--version", action="version", version=f"rlbook {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", help="make a project folder (agents/, environments/, objectives/, regimens/, "
                       "rlbook.yaml)", description="Make a project: the four folders and the registry file "
                       "rlbook.yaml. Never overwrites anything that exists.")
    p.add_argument("directory", nargs="?", default=".", help="the project folder (default: here)")

    p = sub.add_parser("generate", help="write a runnable agent, environment, objective or regimen from a "
                       "template", description="Write NAME.py into the project's folder for KIND, from a "
                       "template that runs as it is, and record it in rlbook.yaml.")
    p.add_argument("kind", choices=sorted(_SINGULAR), metavar="KIND",
                   help="agent, environment, objective or regimen")
    p.add_argument("name", metavar="NAME", help="a Python identifier (the file is KIND-folder/NAME.py)")
    p.add_argument("--project", type=Path, help="the project folder (default: the nearest one at or above here)")

    p = sub.add_parser("train", help="train an agent (built in or the project's own)", add_help=False,
                       description="Train AGENT on --env for --epochs epochs of --episodes episodes, with a "
                       "progress bar, CSV and TensorBoard logs and a checkpoint in the run folder. A checkpoint "
                       "found there is loaded first; it is saved after every epoch, at the end and on Ctrl-C.")
    add_train_options(p)

    p = sub.add_parser("list", help="list the agents, environments, objectives and regimens",
                       description="List what the names on the command line can be: the built-ins and the "
                       "project's own.")
    p.add_argument("kind", nargs="?", metavar="KIND", choices=sorted([*KINDS, *_SINGULAR]),
                   help="agents, environments, objectives or regimens (default: all)")
    p.add_argument("--project", type=Path, help="the project folder (default: the nearest one at or above here)")

    p = sub.add_parser("play", help="play greedy episodes with a trained agent (and record them)",
                       description="Load CHECKPOINT (any agent) and play greedy episodes: print their returns, "
                       "write an animation with --video, or open a window with --render.")
    _add_checkpoint_options(p)
    p.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    p.add_argument("--video", type=Path, metavar="FILE", help="write the first episode as an animation "
                   "(.webp or .gif)")
    p.add_argument("--render", action="store_true", help="show the episodes in a window (needs a display)")
    p.add_argument("--max-steps", type=int, default=10_000, help="the longest episode (default 10,000)")

    p = sub.add_parser("eval", help="measure a trained agent's greedy returns",
                       description="Load CHECKPOINT (any agent) and play --episodes greedy episodes without "
                       "learning; print the median, interquartile range, mean and extremes of their returns.")
    _add_checkpoint_options(p)
    p.add_argument("--episodes", type=int, default=20, help="episodes to play (default 20)")
    return parser


def _add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a checkpoint written by rlbook train "
                   "or agent.save")
    p.add_argument("--env", metavar="ID", help="the environment (default: the one it was trained on)")
    p.add_argument("--seed", type=int, default=0, help="seeds the episodes (default 0)")
    p.add_argument("--device", default="cpu", help="where to load the networks (default cpu)")
    p.add_argument("--project", type=Path, help="the project folder (default: the nearest one at or above here)")


def add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--help", action="store_true", help="show this help (with AGENT: also its options)")
    p.add_argument("agent", nargs="?", metavar="AGENT", help="an agent name (`rlbook list agents`)")
    p.add_argument("--env", metavar="ID", help="a Gymnasium id (CartPole-v1) or a project environment")
    p.add_argument("--episodes", type=int, metavar="N", help="episodes per epoch (summed over --num-envs)")
    p.add_argument("--epochs", type=int, default=1, metavar="N",
                   help="epochs (default 1); -1: until the regimen is finished")
    p.add_argument("--regimen", default="online", metavar="R", help="online (default), offline or a project "
                   "regimen")
    p.add_argument("--objective", metavar="O", help="a project objective (reward shaping); default: the "
                   "environment's reward")
    p.add_argument("--preset", metavar="P", help="a preset of the agent's config (`DQNConfig.cartpole`: "
                   "cartpole)")
    p.add_argument("--test", action="store_true", help="play greedily without learning (loads the checkpoint, "
                   "writes none)")
    p.add_argument("--render", action="store_true", help="show the environment in a window (needs a display)")
    p.add_argument("--seed", type=int, default=None, help="seeds the agent and the environments")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the config's)")
    p.add_argument("--num-envs", type=int, default=1, metavar="N", help="environment copies stepped together "
                   "(default 1)")
    p.add_argument("--resume", action="store_true", help="continue the run in the checkpoint: its episodes "
                   "and epochs count towards --epochs")
    p.add_argument("--fresh", action="store_true", help="ignore (and replace) a checkpoint in the run folder")
    p.add_argument("--run-dir", type=Path, metavar="DIR", help="where the checkpoint and logs go (default "
                   "runs/AGENT-ENV in the project)")
    p.add_argument("--save-episodes", action="store_true", help="write every episode to RUN_DIR/episodes "
                   "(what --regimen offline learns from)")
    p.add_argument("--episodes-from", type=Path, metavar="DIR", help="the saved episodes for --regimen offline "
                   "(default RUN_DIR/episodes)")
    p.add_argument("--video", action="store_true", help="record a greedy episode after every epoch into "
                   "RUN_DIR/videos")
    p.add_argument("--early-stop", type=int, metavar="EPISODES", help="stop when the mean return has not "
                   "improved for this many episodes")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (the default when the output is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--project", type=Path, help="the project folder (default: the nearest one at or above here)")
    from rlbook.options import add_set_option

    add_set_option(p, help="set a field of the agent's config (repeatable), e.g. --set lr=1e-3; `rlbook train "
                   "AGENT --help` lists the fields, each also an option of its own (--lr 1e-3)")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    args._argv = argv
    if args.command != "train" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    command = {"init": cmd_init, "generate": cmd_generate, "train": cmd_train, "list": cmd_list,
               "play": cmd_play, "eval": cmd_eval}[args.command]
    try:
        return command(args, rest, parser) or 0
    except RegistryError as exc:
        print(f"rlbook {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if args.command not in ("init", "generate"):  # (in training, the traceback shows where it happened)
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rlbook {args.command}: error: cannot write {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


def _fail(parser: argparse.ArgumentParser, command: str, message: str):
    """Exit with status 2 and one line, like argparse does for the subcommand."""
    sub = _subparser(parser, command)
    sub.error(message)


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser  # pragma: no cover


# ---------------------------------------------------------------------- init
def cmd_init(args, rest, parser) -> int:
    folder = Path(args.directory)
    if folder.exists() and not folder.is_dir():
        _fail(parser, "init", f"{folder} exists and is not a folder")
    made, kept = [], []
    folder.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        sub = folder / kind
        (kept if sub.exists() else made).append(f"{kind}/")
        sub.mkdir(exist_ok=True)
    if (folder / registry.REGISTRY_FILE).exists():
        kept.append(registry.REGISTRY_FILE)
        registry.read_registry(folder)  # an unreadable registry is reported now
    else:
        registry.write_registry(folder, {kind: {} for kind in KINDS})
        made.append(registry.REGISTRY_FILE)
    where = _show(folder)
    if made:
        print(f"made in {where}: {', '.join(made)}")
    if kept:
        print(f"already there (left as they were): {', '.join(kept)}")
    cd = "" if folder.resolve() == Path.cwd().resolve() else f"cd {args.directory} && "
    print(f"next: {cd}rlbook generate agent my_agent   (then: rlbook train my_agent --env CartPole-v1 "
          "--episodes 10)")
    return 0


# ---------------------------------------------------------------------- generate
def class_prefix(name: str) -> str:
    """The class-name stem for ``name``: ``my_dqn`` -> ``MyDqn``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "My"


_CLASS_SUFFIX = {"agents": "Agent", "environments": "Env", "objectives": "Objective", "regimens": "Regimen"}


def cmd_generate(args, rest, parser) -> int:
    kind = _SINGULAR[args.kind]
    project = _project(args, parser, "generate", required=True)
    try:
        name = registry.check_name(args.name, kind)
    except ValueError as exc:
        _fail(parser, "generate", f"NAME: {exc}")
    table = registry.read_registry(project)
    relative = f"{kind}/{name}.py"
    if name in table[kind]:
        _fail(parser, "generate", f"NAME: the project already has the {args.kind} {name!r} ({table[kind][name]}); "
              "choose another name or edit that file")
    if (project / relative).exists():
        _fail(parser, "generate", f"NAME: {relative} already exists in {project}; not overwriting it")
    template = resources.files("rlbook.templates").joinpath(f"{args.kind}.py.tmpl").read_text()
    text = string.Template(template).substitute(name=name, Class=class_prefix(name))
    (project / kind).mkdir(exist_ok=True)
    (project / relative).write_text(text)
    attribute = class_prefix(name) + _CLASS_SUFFIX[kind]
    table[kind][name] = f"{relative}:{attribute}"
    registry.write_registry(project, table)
    print(f"wrote {_show(project / relative)} ({attribute}) and recorded it in {registry.REGISTRY_FILE}")
    if name in registry.BUILTINS[kind]:
        print(f"note: inside this project {name!r} now means your {args.kind}, not the built-in one")
    print("next: " + {
        "agents": f"rlbook train {name} --env CartPole-v1 --episodes 10",
        "environments": f"rlbook train random --env {name} --episodes 5",
        "objectives": f"rlbook train dqn --env CartPole-v1 --episodes 10 --objective {name}",
        "regimens": f"rlbook train dqn --env CartPole-v1 --episodes 20 --epochs -1 --regimen {name}",
    }[kind])
    return 0


# ---------------------------------------------------------------------- list
def cmd_list(args, rest, parser) -> int:
    project = _project(args, parser, "list", required=False)
    kinds = [_SINGULAR.get(args.kind, args.kind)] if args.kind else list(KINDS)
    failed = 0
    for i, kind in enumerate(kinds):
        rows = []
        for name, entry in sorted(registry.entries(kind, project).items()):
            if entry.builtin:
                rows.append((name, "built-in", entry.summary))
                continue
            try:
                obj = registry.resolve(entry)
                summary = (obj.__doc__ or "").strip().split("\n")[0]
            except RegistryError as exc:
                failed += 1
                summary = f"IMPORT FAILED: {exc}"
            rows.append((name, entry.target, summary))
        if kind == "environments":
            rows.append(("(any Gymnasium id)", "built-in", "CartPole-v1, LunarLander-v3, ALE/Pong-v5 ..."))
        print(("\n" if i else "") + f"{kind}:")
        width = max(len(r[0]) for r in rows)
        columns = max(shutil.get_terminal_size().columns - 2, 40)
        for name, where, summary in rows:
            text = summary if where == "built-in" else f"{summary} ({where})"
            print(textwrap.fill(text, columns, initial_indent=f"  {name:<{width}}  ",
                                subsequent_indent=" " * (width + 4), break_on_hyphens=False))
    if project is None:
        print("\n(no project here: `rlbook init` makes one)")
    if failed:
        print(f"rlbook list: error: {failed} project module(s) failed to import (above)", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------- train
def cmd_train(args, rest, parser) -> int:
    from rlbook.options import ConfigOptionError, add_config_options, config_from_args

    train_parser = _subparser(parser, "train")
    project = _project(args, parser, "train", required=False)
    if args.agent is None:
        if args.help:
            train_parser.print_help()
            return 0
        _fail(parser, "train", "AGENT is required (`rlbook list agents` shows the names)")
    try:
        cls, preset = registry.agent_class(args.agent, project)
    except UnknownName as exc:
        _fail(parser, "train", f"AGENT: {exc}")
    # A second parser that also knows the agent's hyperparameters (--lr, --set lr=...).
    full = Parser(prog=f"rlbook train {args.agent}", add_help=False, description=train_parser.description)
    add_train_options(full)
    add_config_options(full, cls.config_class, exclude=("seed", "device"))
    known = registry.presets(cls.config_class)
    for action in full._actions:
        if "--preset" in action.option_strings:
            action.help = (f"a preset of {cls.config_class.__name__}: {', '.join(known)}" if known else
                           f"{cls.config_class.__name__} has no presets")
    args = full.parse_args([a for a in _argv_after(args)])
    if args.help:
        full.print_help()
        return 0
    fail = full.error
    for option, value, low in (("--episodes", args.episodes, 1), ("--num-envs", args.num_envs, 1),
                               ("--early-stop", args.early_stop, 1)):
        if value is not None and value < low:
            fail(f"{option} must be >= {low}, got {value}")
    if args.epochs == 0 or args.epochs < -1:
        fail(f"--epochs must be >= 1, or -1 (until the regimen is finished), got {args.epochs}")
    if args.resume and args.fresh:
        fail("--resume and --fresh contradict each other")
    if args.render and not _has_display():
        fail("--render needs a display (none here: DISPLAY is not set); record episodes with --video instead")
    if args.render and args.num_envs > 1:
        fail(f"--render shows one environment in a window: drop --num-envs {args.num_envs} (or record episodes "
             "with --video)")
    if args.render and cls.trains_in_workers and not args.test:
        fail(f"--render: {args.agent} trains in worker processes, which cannot show a window; train without it, "
             "then watch with --test --render or `rlbook play CHECKPOINT --render`")
    if args.regimen != "offline":
        if args.env is None:
            fail("--env is required (a Gymnasium id such as CartPole-v1, or a project environment)")
        if args.episodes is None:
            fail("--episodes is required (episodes per epoch)")
    env_id = _env_id(args.env, project, fail) if args.env else None

    # The agent: the preset (if any), the checkpoint's config when there is one, then the user's options.
    run_dir = args.run_dir or (project or Path.cwd()) / "runs" / f"{args.agent}-{_slug(env_id or 'offline')}"
    checkpoint = run_dir / "checkpoint.pt"
    saved = _saved_payload(checkpoint, fail) if checkpoint.exists() and not args.fresh else None
    try:
        if saved is not None:
            if saved.get("agent_class") != cls.__name__:
                fail(f"AGENT: {checkpoint} holds a {saved.get('agent_class')}, not a {cls.__name__}; use another "
                     "--run-dir, or --fresh to replace it")
            base = cls.config_class.from_dict(saved["config"])
        else:
            base = registry.make_config(cls, args.preset or preset)
        if args.preset and saved is not None:
            base = registry.make_config(cls, args.preset)
        config = config_from_args(cls.config_class, args, base=base, exclude=("seed", "device"))
        fields = {}
        if args.seed is not None and not (args.test and saved is not None):
            fields["seed"] = args.seed  # (testing a saved agent: --seed seeds only the environments)
        if args.device is not None:
            fields["device"] = args.device
        config = config.replace(**fields) if fields else config
    except ConfigOptionError as exc:
        fail(str(exc))
    except RegistryError as exc:
        fail(f"--preset: {exc}")
    except (TypeError, ValueError) as exc:
        fail(f"--seed/--device: {exc}")

    if saved is not None:
        differ = config.differences(saved["config"])
        if differ:
            fail(f"the options differ from the checkpoint in {_show(run_dir)} ({'; '.join(differ)}): drop them, or "
                 "start over with --fresh, or train into another --run-dir")

    from rlbook.checkpoints import CheckpointError

    render_env = None
    if env_id is not None:
        try:
            probe = single_env(env_id, render_mode="human" if args.render else None)
        except Exception as exc:  # a display that is missing, an env that fails to build
            fail(f"--env {args.env}: {type(exc).__name__}: {exc}")
        try:
            cls.check_spaces(probe.observation_space, probe.action_space)
        except TypeError as exc:
            fail(f"--env {args.env}: {exc}")
        obs_space, act_space = probe.observation_space, probe.action_space
        if args.render:
            render_env = probe
        else:
            probe.close()
    else:
        obs_space, act_space = _spaces_of(saved, fail)
    try:
        agent = cls(obs_space, act_space, config)
    except (TypeError, ValueError) as exc:
        fail(f"{args.agent}: {exc}")

    regimen = _build_regimen(args, agent, env_id, render_env, run_dir, checkpoint, project, fail)
    if args.test and saved is None:
        print(f"note: no checkpoint at {_show(checkpoint)}: testing an untrained {args.agent}", file=sys.stderr)
    if saved is not None:
        state = "testing it" if args.test else "continuing its run" if args.resume else "loading its agent"
        print(f"found {_show(checkpoint)} ({saved['agent'].get('num_steps', 0):,} steps): {state}")
    try:
        regimen.run()
    except CheckpointError as exc:
        fail(f"checkpoint: {exc}")
    _report(args, regimen, checkpoint, run_dir)
    trainer = getattr(regimen, "trainer", None)
    return 130 if trainer is not None and trainer.interrupted else 0  # 128 + SIGINT, as shells report Ctrl-C


def _argv_after(args) -> list[str]:
    """The train command's own arguments (everything after ``train``), as typed."""
    argv = list(args._argv)
    return argv[argv.index("train") + 1:]


def _named(kind: str, name: str, option: str, project, fail):
    """What ``name`` stands for among the ``kind``; an unknown name is a bad ``option`` (status 2), while a
    project module that fails to import stays an error of the project (status 1)."""
    try:
        entry = registry.lookup(kind, name, project)
    except UnknownName as exc:
        fail(f"{option}: {exc}")
    return registry.resolve(entry)


def _build_regimen(args, agent, env_id, render_env, run_dir: Path, checkpoint: Path, project, fail):
    from rlbook.logs import CSVLogger, ProgressBar, TensorBoardLogger
    from rlbook.regimens import FrameRate, NoProgress, Offline, RecordVideo, Regimen, SaveEpisodes

    regimen_cls = _named("regimens", args.regimen, "--regimen", project, fail)
    if not (isinstance(regimen_cls, type) and issubclass(regimen_cls, Regimen)):
        raise RegistryError(f"the regimen {args.regimen!r} is not a rlbook.regimens.Regimen subclass")
    objective = None
    if args.objective:
        objective = _named("objectives", args.objective, "--objective", project, fail)()
    if args.fresh and checkpoint.exists():
        checkpoint.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--run-dir {_show(run_dir)}: cannot make the folder ({exc.strerror or exc})")
    if issubclass(regimen_cls, Offline):
        source = args.episodes_from or run_dir / "episodes"
        try:
            return regimen_cls(agent, source, epochs=args.epochs, checkpoint=None if args.test else checkpoint,
                               resume=args.resume, checkpoint_extra={"cli": {"env": env_id}})
        except ValueError as exc:
            fail(f"--regimen offline: {exc}")
    plugins: list[Any] = [FrameRate()]
    if args.progress or (args.progress is None and sys.stderr.isatty()):
        plugins.append(ProgressBar(window=args.episodes, metrics=("frames", "loss", "fps"),
                                   desc=f"{args.agent} on {env_id}"))
    if not args.test:
        logs = _log_dir(run_dir, continuing=args.resume and checkpoint.exists())
        plugins += [CSVLogger(logs), TensorBoardLogger(logs / "tensorboard")]
    if args.save_episodes:
        plugins.append(SaveEpisodes(run_dir / "episodes"))
    if args.video:
        plugins.append(RecordVideo(functools.partial(single_env, env_id, "rgb_array"), run_dir / "videos",
                                   every_episodes=args.episodes))
    if args.early_stop:
        plugins.append(NoProgress(patience=args.early_stop))
    env = render_env if render_env is not None else training_env(env_id, args.num_envs, project)
    return regimen_cls(agent, env, episodes=args.episodes, epochs=args.epochs,
                       num_envs=args.num_envs, plugins=plugins,
                       objective=objective, seed=args.seed, train=not args.test, checkpoint=checkpoint,
                       resume=args.resume, checkpoint_extra={"cli": {"env": env_id}})


def _log_dir(run_dir: Path, continuing: bool) -> Path:
    """``RUN_DIR/logs/<session>``: a new numbered session for every run that does not continue the last one
    (the CSV and TensorBoard loggers drop rows past the step a run starts from)."""
    sessions = sorted((int(p.name) for p in (run_dir / "logs").glob("*") if p.name.isdigit()), reverse=True)
    last = sessions[0] if sessions else 0
    return run_dir / "logs" / str(last if continuing and last else last + 1)


def _report(args, regimen, checkpoint: Path, run_dir: Path) -> None:
    import numpy as np

    trainer = getattr(regimen, "trainer", None)
    if trainer is None:  # offline
        print(f"{regimen.stop_reason}: {regimen.steps:,} saved steps learned from"
              + (f"; checkpoint: {_show(checkpoint)}" if not args.test else ""))
        return
    returns = np.array(trainer.episode_returns)
    done = f"{len(returns):,} episodes, {trainer.step:,} steps in {trainer.seconds():.1f} s"
    last = returns[-args.episodes:] if len(returns) else returns
    mean = f"; mean return of the last {len(last)}: {last.mean():.2f}" if len(last) else ""
    verb = "tested" if args.test else "trained"
    print(f"{verb} {args.agent} on {args.env}: {done}{mean} ({regimen.stop_reason})")
    if regimen.error is not None:
        print(f"the regimen swallowed an error: {type(regimen.error).__name__}: {regimen.error}")
    if not args.test:
        where = f"checkpoint: {_show(checkpoint)}; logs: {_show(run_dir / 'logs')}"
        if trainer.interrupted:
            where += " (interrupted: run the same command with --resume to continue)"
        print(where)


# ---------------------------------------------------------------------- play and eval
def cmd_play(args, rest, parser) -> int:
    from rlbook.plot import animate_episode, record_episode

    if args.episodes < 1:
        _fail(parser, "play", f"--episodes must be >= 1, got {args.episodes}")
    if args.render and not _has_display():
        _fail(parser, "play", "--render needs a display (none here: DISPLAY is not set); use --video FILE instead")
    if args.video is not None and args.video.suffix.lower() not in (".webp", ".gif"):
        _fail(parser, "play", f"--video: the file must end in .webp or .gif, got {str(args.video)!r}")
    if args.video is not None and not args.video.resolve().parent.is_dir():
        _fail(parser, "play", f"--video: the folder {_show(args.video.resolve().parent)} does not exist")
    agent, env_id = _load_for(args, parser, "play")
    mode = "human" if args.render else "rgb_array"
    try:
        env = single_env(env_id, render_mode=mode)
    except Exception as exc:
        _fail(parser, "play", f"--env {env_id}: {type(exc).__name__}: {exc}")
    try:
        for k in range(args.episodes):
            if args.render:
                total, steps = _play_visible(agent, env, args.seed + k, args.max_steps)
            else:
                frames, total = record_episode(agent, env, max_steps=args.max_steps, seed=args.seed + k)
                steps = len(frames) - 1
                if k == 0 and args.video is not None:
                    fmt = args.video.suffix.lower()[1:]
                    animate_episode(frames, max_frames=len(frames), format=fmt).save(str(args.video))
                    print(f"wrote {args.video} ({len(frames)} frames)")
            print(f"episode {k + 1}: return {total:.2f} in {steps} steps")
    finally:
        env.close()
    return 0


def _play_visible(agent, env, seed: int, max_steps: int) -> tuple[float, int]:
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    for steps in range(1, max_steps + 1):  # noqa: B007 - the count is returned
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs, explore=False))
        total += float(reward)
        if terminated or truncated:
            break
    return total, steps


def cmd_eval(args, rest, parser) -> int:
    import numpy as np

    from rlbook.evaluate import evaluate

    if args.episodes < 1:
        _fail(parser, "eval", f"--episodes must be >= 1, got {args.episodes}")
    agent, env_id = _load_for(args, parser, "eval")
    env = evaluation_env(env_id, min(args.episodes, 8))
    try:
        result = evaluate(agent, env, args.episodes, seed=args.seed)
    finally:
        env.close()
    r = result.returns
    q1, median, q3 = np.percentile(r, [25, 50, 75])
    print(f"{type(agent).__name__} on {env_id}, {len(r)} greedy episodes (seed {args.seed}): median return "
          f"{median:.2f} [IQR {q1:.2f}, {q3:.2f}], mean {r.mean():.2f}, min {r.min():.2f}, max {r.max():.2f}; "
          f"mean length {result.lengths.mean():.1f}")
    return 0


def _load_for(args, parser, command: str):
    from rlbook.agents.base import Agent
    from rlbook.checkpoints import CheckpointError
    from rlbook.core import resolve_device

    project = _project(args, parser, command, required=False)
    fail = _subparser(parser, command).error
    saved = _saved_payload(args.checkpoint, fail)
    if project is not None:
        for entry in registry.entries("agents", project).values():
            if not entry.builtin:
                registry.resolve(entry)  # a project's agent classes, so the checkpoint's class is known
    env_id = args.env or saved.get("extra", {}).get("cli", {}).get("env")
    if env_id is None:
        fail("--env is required: the checkpoint does not say which environment it was trained on")
    env_id = _env_id(env_id, project, fail)
    try:
        resolve_device(args.device)
    except ValueError as exc:
        fail(f"--device: {exc}")
    try:
        agent = Agent.from_checkpoint(args.checkpoint, device=args.device)
    except CheckpointError as exc:
        fail(f"CHECKPOINT: {exc}")
    return agent, env_id


def _saved_payload(path: Path, fail) -> dict[str, Any]:
    from rlbook.checkpoints import CheckpointError, read_checkpoint

    if not path.exists():
        fail(f"CHECKPOINT: {path} does not exist")
    try:
        return read_checkpoint(path)
    except CheckpointError as exc:
        fail(f"CHECKPOINT: {exc}")


def _spaces_of(saved, fail):
    from rlbook.checkpoints import space_from_dict

    if saved is None:
        fail("--env is required (or a checkpoint in the run folder that says which spaces the agent has)")
    return space_from_dict(saved["spaces"]["observation"]), space_from_dict(saved["spaces"]["action"])


# ---------------------------------------------------------------------- helpers
def _project(args, parser, command: str, *, required: bool) -> Path | None:
    if getattr(args, "project", None) is not None:
        if not (args.project / registry.REGISTRY_FILE).is_file():
            _fail(parser, command, f"--project: {args.project} is not an rlbook project (no "
                  f"{registry.REGISTRY_FILE}; `rlbook init {args.project}` makes one)")
        return args.project.resolve()
    project = registry.find_project()
    if project is None and required:
        _fail(parser, command, f"no rlbook project here (no {registry.REGISTRY_FILE} in this folder or above); "
              "`rlbook init` makes one")
    return project


def _env_id(name: str, project: Path | None, fail) -> str:
    """A Gymnasium id for ``name``: a project or built-in environment is registered under its name first."""
    from rlbook.envs import make

    known = registry.entries("environments", project)
    if name in known:
        return registry.register_environment(known[name])
    try:
        make(name).close()
    except ValueError as exc:
        fail(f"--env: {exc}")
    except Exception as exc:  # noqa: BLE001 - a missing dependency (Box2D, ale-py), a bad install
        fail(f"--env {name}: {type(exc).__name__}: {exc}")
    return name


def atari_game(env_id: str) -> str | None:
    """The game of an Atari id (``ALE/Pong-v5`` or ``PongNoFrameskip-v4``: ``"Pong"``), else ``None``."""
    match = re.fullmatch(r"ALE/(\w+)-v\d+|(\w+)NoFrameskip-v\d+", env_id)
    return None if match is None else match.group(1) or match.group(2)


def single_env(env_id: str, render_mode: str | None = None):
    """One environment for ``env_id``; Atari games get the book's frame preprocessing (chapter 6) and are
    played as whole games with their real scores, as when watching or testing an agent."""
    from rlbook.envs import make

    game = atari_game(env_id)
    if game is None:
        return make(env_id, render_mode=render_mode)
    from rlbook.envs.atari import make_atari_env

    return make_atari_env(game, render_mode=render_mode or "rgb_array")


def training_env(env_id: str, num_envs: int, project: Path | None = None):
    """What the trainer steps: the id itself (``num_envs`` copies are made from it); for an environment of the
    registry (the project's own, say) a picklable function that registers it before making it, as A3C's worker
    processes must; for an Atari game a picklable function making the preprocessed vector env of the DQN paper
    (lives as episodes, clipped rewards; the games' real scores are kept in its ``episode_scores``)."""
    if env_id in registry.entries("environments", project):
        return functools.partial(registry.make_named_env, env_id, num_envs, project)
    game = atari_game(env_id)
    if game is None:
        return env_id
    from rlbook.envs.atari import make_atari

    return functools.partial(make_atari, game, num_envs)


def evaluation_env(env_id: str, num_envs: int):
    """``num_envs`` copies for greedy evaluation: whole Atari games with their real scores."""
    game = atari_game(env_id)
    if game is None:
        from rlbook.envs import make_vec

        return make_vec(env_id, num_envs)
    from rlbook.envs.atari import make_atari

    return make_atari(game, num_envs, episodic_life=False, clip_rewards=False)


def _has_display() -> bool:
    """Whether a window can open: always on Windows and macOS, with an X or Wayland display elsewhere."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _show(path: Path) -> str:
    """``path`` as the user would type it: relative to the working directory when it lies below it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "env"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rlbook")
    except PackageNotFoundError:
        return "unknown"


__all__ = ["build_parser", "class_prefix", "main"]
