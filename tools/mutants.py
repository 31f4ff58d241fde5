"""Mutation testing over the RL math: break the code on purpose, one small change at a time, and check
that some test goes red.

    python tools/mutants.py                       # every target (see TARGETS), 2 workers
    python tools/mutants.py --only replay dqn     # some targets
    python tools/mutants.py --list                # print the mutants without running them
    python tools/mutants.py --show ID             # print one mutant as a diff

Each *mutant* changes one spot inside one of the functions named in ``TARGETS``: an arithmetic or bitwise
operator swapped (``+``/``-``, ``*``/``/``, ``**``/``*``, ``&``/``|``), a comparison changed (``<``/``<=``,
``==``/``!=``, ...), ``and``/``or`` swapped, a ``not``, ``~`` or unary minus dropped, a number changed by
one, ``True``/``False`` flipped, ``max``/``min`` (``argmax``/``argmin``, ``maximum``/``minimum``) swapped,
or a statement that updates state (``x += ...``, a bare call) removed. Checks that only raise on bad input
(``if ...: raise``) are left alone: they have their own tests and are not RL math.

The runner imports NumPy, PyTorch, Gymnasium and pytest once, then forks one child per mutant. The child
serves the mutated module source through an import hook and runs the target's test files with ``-x``
(stop at the first failure). A mutant is *killed* when the tests fail (or time out), and *survives* when
they pass. Mutants listed in ``tools/mutants_equivalent.txt`` (with the reason they cannot change any
result) are reported apart and do not count against the kill rate.

The report goes to ``_build/mutants/report.json`` (``--report`` to change it); ``--summary FILE`` also
writes the kill rates and the survivors as a small JSON file for ``results/``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: target name -> (module file, function qualnames to mutate, test files that guard them)
TARGETS: dict[str, tuple[str, list[str], list[str]]] = {
    "replay": ("rlbook/replay.py",
               ["ReplayBuffer._allocate", "ReplayBuffer._add_chunk", "ReplayBuffer._valid", "ReplayBuffer._slot",
                "ReplayBuffer.sample_indices", "ReplayBuffer.batch_at", "ReplayBuffer.__len__",
                "NStepFolder.__init__", "NStepFolder.fold", "NStepFolder._flush",
                "SumTree.update", "SumTree.find", "PrioritizedReplayBuffer.add",
                "PrioritizedReplayBuffer.sample_indices", "PrioritizedReplayBuffer.sample",
                "PrioritizedReplayBuffer.update_priorities"],
               ["tests/test_replay.py", "tests/test_wiring.py"]),
    "dqn": ("rlbook/agents/dqn.py",
            ["categorical_projection", "EpsilonGreedy.actions", "DQNAgent.q_values",
             "DQNAgent.observe", "DQNAgent.update", "DQNAgent._to_device", "DQNAgent.compute_targets",
             "DQNAgent.compute_target_distribution", "DQNAgent.td_losses", "DQNAgent.distribution_losses",
             "DQNAgent.compute_loss", "DQNAgent.gradient_step", "DQNAgent.update_target"],
            ["tests/test_dqn.py", "tests/test_wiring.py", "tests/test_dqn_extensions.py"]),
    "nets": ("rlbook/nets.py", ["NoisyLinear.reset_parameters", "NoisyLinear.noise", "NoisyLinear.forward",
                                "QHead.forward", "Conv1dNet.__init__", "Conv1dNet.forward"],
             ["tests/test_nets.py"]),
    "trainer": ("rlbook/train.py", ["Trainer._loop", "Trainer._budget_spent"],
                ["tests/test_trainer.py", "tests/test_wiring.py", "tests/test_rollout.py"]),
    "mdp": ("rlbook/mdp.py",
            ["mrp_values", "mrp_values_iterative", "policy_evaluation", "q_from_v", "greedy_policy", "_solve"],
            ["tests/test_mdp.py"]),
    "tabular": ("rlbook/tabular.py",
                ["QLearningAgent.act_batch", "QLearningAgent.update", "QLearningAgent.alpha_at",
                 "ModelBasedAgent.observe", "ModelBasedAgent.model", "ModelBasedAgent.act_batch",
                 "_TabularAgent.epsilon_at"],
                ["tests/test_tabular.py", "tests/test_wiring.py"]),
    "stocks": ("rlbook/envs/stocks.py",
               ["Prices.relative", "StocksEnv.reset", "StocksEnv.step", "StocksEnv._observation", "backtest",
                "Backtest.max_drawdown", "BacktestCurve.after_step", "stocks_vector_env", "load_prices"],
               ["tests/test_stocks.py"]),
    "policy": ("rlbook/agents/base.py", ["sample_actions"],
               ["tests/test_pg.py", "tests/test_a2c.py", "tests/test_cem.py"]),
    "rollout": ("rlbook/rollout.py",
                ["RolloutBuffer.add", "gae_advantages", "returns_to_go", "EpisodeBuffer.add",
                 "EpisodeBuffer._ensure_capacity"],
                ["tests/test_rollout.py", "tests/test_cem.py"]),
    "pg": ("rlbook/agents/pg.py",
           ["ReinforceAgent.act_batch", "ReinforceAgent.observe", "ReinforceAgent.update", "ReinforceAgent.loss",
            "ReinforceAgent.learn_from", "ReinforceAgent.weights", "NStepPGAgent._emit", "NStepPGAgent.observe",
            "NStepPGAgent.update", "per_sample_gradients", "gradient_variance"],
           ["tests/test_pg.py"]),
    "a2c": ("rlbook/agents/a2c.py", ["A2CAgent.act_batch", "A2CAgent.observe", "A2CAgent.rollout_loss",
                                     "A2CAgent.rollout_gradients", "A2CAgent.learn_from_rollout"],
            ["tests/test_a2c.py"]),
    # the learner's side of A3C (the workers' side runs in spawned processes, out of the coverage map's sight;
    # the synchronous-equals-A2C test checks it end to end)
    "a3c": ("rlbook/agents/a3c.py", ["A3CAgent.apply_gradients", "gradients_vector"], ["tests/test_a3c.py"]),
    "parallel": ("rlbook/parallel.py", ["SharedWeights.publish", "SharedWeights.fetch", "A3CTrainer._learn",
                                        "A3CTrainer._episodes"],
                 # the in-process and learning tests plus one Ray run; the fault tests (subprocesses that wait
                 # for checkpoints) and the Pong bench guard plumbing, not this code, and would take minutes
                 [f"tests/test_a3c.py::{t}" for t in (
                     "test_shared_weights_publish_and_fetch_versions", "test_one_synchronous_worker_is_exactly_a2c",
                     "test_synchronous_workers_never_run_ahead_of_their_own_updates",
                     "test_both_variants_learn_cartpole", "test_policy_lag_is_recorded_and_bounded_by_the_queue",
                     "test_bad_arguments_are_named", "test_ray_actors_train_the_same_agent")]),
    # chapter 12: epochs and their checkpoints, offline learning from saved episodes, the episode saver
    "regimens": ("rlbook/regimens.py", ["_Hooks.after_episode", "Offline._replay", "SaveEpisodes.after_step"],
                 ["tests/test_cli.py"]),
    "schedules": ("rlbook/schedules.py", ["LinearSchedule.value_at", "ExponentialSchedule.value_at",
                                          "ExponentialSchedule.__init__"],
                  ["tests/test_core.py", "tests/test_nets.py", "tests/test_dqn.py"]),
}

BINOP_SWAPS = {ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.Div], ast.Div: [ast.Mult],
               ast.Pow: [ast.Mult], ast.FloorDiv: [ast.Div], ast.Mod: [ast.FloorDiv],
               ast.BitAnd: [ast.BitOr], ast.BitOr: [ast.BitAnd], ast.MatMult: []}
CMP_SWAPS = {ast.Lt: [ast.LtE, ast.Gt], ast.LtE: [ast.Lt, ast.GtE], ast.Gt: [ast.GtE, ast.Lt],
             ast.GtE: [ast.Gt, ast.LtE], ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.Is: [ast.IsNot],
             ast.IsNot: [ast.Is], ast.In: [ast.NotIn], ast.NotIn: [ast.In]}
NAME_SWAPS = {"max": "min", "min": "max", "argmax": "argmin", "argmin": "argmax", "maximum": "minimum",
              "minimum": "maximum", "any": "all", "all": "any"}


@dataclass
class Mutant:
    id: str
    target: str
    file: str
    function: str
    line: int
    description: str
    index: int  # position in the module's list of mutation points


# ---------------------------------------------------------------------- finding mutation points
class _Finder(ast.NodeVisitor):
    """Walks the target functions of one module and lists ``(node path, kind, replacement)`` points."""

    def __init__(self, wanted: set[str]):
        self.wanted = wanted
        self.stack: list[str] = []
        self.current: str | None = None
        self.points: list[tuple[str, ast.AST, str, object]] = []

    def visit_ClassDef(self, node):
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node):
        name = ".".join([*self.stack, node.name])
        if name in self.wanted and self.current is None:
            self.current = name
            for stmt in node.body:
                self._walk(stmt)
            self.current = None
        else:
            self.stack.append(node.name)
            self.generic_visit(node)
            self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _walk(self, node: ast.AST) -> None:
        if isinstance(node, (ast.Raise, ast.Assert)):
            return
        if isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body) and not node.orelse:
            return  # input validation, not RL math
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # docstrings
        if isinstance(node, ast.JoinedStr):
            return
        self._points_of(node)
        for child in ast.iter_child_nodes(node):
            self._walk(child)

    def _add(self, node, kind, replacement):
        self.points.append((self.current, node, kind, replacement))

    def _points_of(self, node: ast.AST) -> None:
        if isinstance(node, (ast.BinOp, ast.AugAssign)):
            for new in BINOP_SWAPS.get(type(node.op), []):
                self._add(node, "binop", new)
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for new in CMP_SWAPS.get(type(op), []):
                    self._add(node, "compare", (i, new))
        if isinstance(node, ast.BoolOp):
            self._add(node, "boolop", ast.Or if isinstance(node.op, ast.And) else ast.And)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert, ast.USub)):
            self._add(node, "unary", None)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                self._add(node, "const", not node.value)
            elif isinstance(node.value, (int, float)):
                self._add(node, "const", node.value + 1)
                if node.value == 1:
                    self._add(node, "const", 0 if isinstance(node.value, int) else 0.0)
        if isinstance(node, ast.Attribute) and node.attr in NAME_SWAPS:
            self._add(node, "attr", NAME_SWAPS[node.attr])
        if isinstance(node, ast.Name) and node.id in ("max", "min"):
            self._add(node, "name", NAME_SWAPS[node.id])
        if isinstance(node, ast.AugAssign) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            self._add(node, "delete", None)


def _describe(node: ast.AST, kind: str, replacement) -> str:
    if kind == "binop":
        return f"{type(node.op).__name__} -> {replacement.__name__}"
    if kind == "compare":
        i, new = replacement
        return f"{type(node.ops[i]).__name__} -> {new.__name__}"
    if kind == "boolop":
        return f"{type(node.op).__name__} -> {replacement.__name__}"
    if kind == "unary":
        return f"drop {type(node.op).__name__}"
    if kind == "const":
        return f"{node.value!r} -> {replacement!r}"
    if kind in ("attr", "name"):
        return f"{getattr(node, 'attr', getattr(node, 'id', '?'))} -> {replacement}"
    if kind == "delete":
        return "delete statement"
    return kind


def find_mutants(target: str) -> tuple[list[Mutant], str]:
    file, functions, _ = TARGETS[target]
    source = (ROOT / file).read_text()
    tree = ast.parse(source)
    finder = _Finder(set(functions))
    finder.visit(tree)
    found = {p[0] for p in finder.points}
    missing = set(functions) - found
    if missing:
        raise SystemExit(f"{file}: no mutation points in {sorted(missing)} (renamed or removed?)")
    starts = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            starts.setdefault(node.name, node.lineno)
    mutants = []
    for index, (function, node, kind, replacement) in enumerate(finder.points):
        first_line = _function_line(tree, function)
        rel = node.lineno - first_line
        desc = _describe(node, kind, replacement)
        mid = f"{target}:{function}:+{rel}:{node.col_offset}:{desc}"
        mutants.append(Mutant(mid, target, file, function, node.lineno, desc, index))
    # identical ids (two points on one node with the same description) get a suffix
    seen: dict[str, int] = {}
    for m in mutants:
        if m.id in seen:
            seen[m.id] += 1
            m.id = f"{m.id}#{seen[m.id]}"
        else:
            seen[m.id] = 0
    return mutants, source


def _function_line(tree: ast.AST, qualname: str) -> int:
    parts = qualname.split(".")
    body = tree.body
    node = None
    for part in parts:
        node = next(n for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and n.name == part)
        body = node.body
    return node.lineno


def mutated_source(target: str, index: int) -> str:
    file, functions, _ = TARGETS[target]
    tree = ast.parse((ROOT / file).read_text())
    finder = _Finder(set(functions))
    finder.visit(tree)
    _, node, kind, replacement = finder.points[index]
    _apply(tree, node, kind, replacement)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def _apply(tree: ast.AST, node: ast.AST, kind: str, replacement) -> None:
    if kind == "binop":
        node.op = replacement()
    elif kind == "compare":
        i, new = replacement
        node.ops[i] = new()
    elif kind == "boolop":
        node.op = replacement()
    elif kind == "const":
        node.value = replacement
    elif kind == "attr":
        node.attr = replacement
    elif kind == "name":
        node.id = replacement
    elif kind in ("unary", "delete"):
        new = node.operand if kind == "unary" else ast.Pass()
        for parent in ast.walk(tree):
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, new)
                    return
                if isinstance(value, list) and any(v is node for v in value):
                    setattr(parent, field, [new if v is node else v for v in value])
                    return
        raise RuntimeError("mutation point not found in the tree")


# ---------------------------------------------------------------------- running
class _SourceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``source`` as the module ``name`` (the mutant), ahead of the normal import system."""

    def __init__(self, name: str, path: Path, source: str):
        self.name, self.path, self.source = name, path, source

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=str(self.path))

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = str(self.path)
        exec(compile(self.source, str(self.path), "exec"), module.__dict__)


def _module_name(file: str) -> str:
    return file[:-3].replace("/", ".")


class _CoverageMap:
    """A pytest plugin for the baseline run: which tests call which target functions, and how long each takes."""

    def __init__(self, file: str, functions: list[str]):
        self.file = str(ROOT / file)
        self.functions = set(functions)
        self.current: str | None = None
        self.calls: dict[str, set[str]] = {}
        self.durations: dict[str, float] = {}

    def _profile(self, frame, event, arg):
        if event == "call" and self.current is not None:
            code = frame.f_code
            if code.co_filename == self.file and code.co_qualname in self.functions:
                self.calls.setdefault(code.co_qualname, set()).add(self.current)

    def pytest_runtest_setup(self, item):
        self.current = item.nodeid
        sys.setprofile(self._profile)
        import threading

        threading.setprofile(self._profile)

    def pytest_runtest_teardown(self, item):
        sys.setprofile(None)

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.durations[report.nodeid] = report.duration


#: Tests that are not run for mutants: the DQN test that trains every combination of switches (a minute and a
#: half) guards plumbing that faster tests cover switch by switch.
EXCLUDE = "not every_combination_of_switches"


def _run_child(target: str, source: str | None, tests: list[str], log: Path, coverage: Path | None = None) -> int:
    """In a forked child: import the mutant (if any) and run the tests; returns pytest's exit code. With
    ``coverage``, record which tests call which target function (and their durations) into that JSON file."""
    import pytest

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if source is not None:
        file = TARGETS[target][0]
        sys.meta_path.insert(0, _SourceFinder(_module_name(file), ROOT / file, source))
    os.environ["RLBOOK_QUICK"] = "1"
    args = [*tests, "-q", "-p", "no:cacheprovider", "--no-header", "-W", "ignore", "-k", EXCLUDE]
    if coverage is None:
        return int(pytest.main([*args, "-x"]))
    plugin = _CoverageMap(TARGETS[target][0], TARGETS[target][1])
    code = int(pytest.main(args, plugins=[plugin]))
    coverage.write_text(json.dumps({"calls": {k: sorted(v) for k, v in plugin.calls.items()},
                                    "durations": plugin.durations}))
    return code


def _tests(target: str) -> list[str]:
    """The target's test files (or ``file::test`` ids) whose files exist (an older checkout may lack some)."""
    return [t for t in TARGETS[target][2] if (ROOT / t.split("::")[0]).exists()]


def _forget_project_modules() -> None:
    """Drop rlbook's modules and the test modules from ``sys.modules`` (third-party ones stay imported)."""
    for name in list(sys.modules):
        if name == "rlbook" or name.startswith(("rlbook.", "tests", "test_", "conftest", "fault_run")):
            del sys.modules[name]


def _spawn(target: str, source: str | None, tests: list[str], log: Path, coverage: Path | None = None) -> int:
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            code = _run_child(target, source, tests, log, coverage)
        finally:
            os._exit(code)
    return pid


def run(mutants: list[Mutant], jobs: int, timeout_factor: float, log_dir: Path) -> dict[str, str]:
    """Run every mutant; returns id -> 'killed' | 'survived' | 'timeout'."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # Baseline: the unmutated code must pass each target's tests. The run also records which tests call each
    # target function: a mutant then runs only those (fastest first), and a mutant in a function no test calls
    # survives at once. The baseline time sets the timeout.
    baseline: dict[str, float] = {}
    selection: dict[tuple[str, str], list[str]] = {}
    for target in sorted({m.target for m in mutants}):
        tests = _tests(target)
        start = time.perf_counter()
        coverage = log_dir / f"coverage-{target}.json"
        pid = _spawn(target, None, tests, log_dir / f"baseline-{target}.log", coverage)
        _, status = os.waitpid(pid, 0)
        baseline[target] = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"the unmutated tests of {target} fail; see {log_dir / f'baseline-{target}.log'}")
        data = json.loads(coverage.read_text())
        for function in TARGETS[target][1]:
            ids = data["calls"].get(function, [])
            selection[target, function] = sorted(ids, key=lambda i: data["durations"].get(i, 0.0))
        print(f"baseline {target}: tests pass in {baseline[target]:.1f} s; tests per function: "
              + ", ".join(f"{f} {len(selection[target, f])}" for f in TARGETS[target][1]), flush=True)

    outcome: dict[str, str] = {}
    queue = list(mutants)
    running: dict[int, tuple[Mutant, float]] = {}
    if not queue:
        return outcome
    done = 0
    while queue or running:
        while queue and len(running) < jobs:
            m = queue.pop(0)
            tests = selection[m.target, m.function]
            if not tests:  # no test calls the mutated function: nothing can kill it
                outcome[m.id] = "survived"
                done += 1
                print(f"[{done}/{len(mutants)}] SURVIVED {m.id} (no test calls {m.function})", flush=True)
                continue
            source = mutated_source(m.target, m.index)
            pid = _spawn(m.target, source, tests, log_dir / f"{m.target}-{m.index}.log")
            running[pid] = (m, time.perf_counter())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            time.sleep(0.05)
            now = time.perf_counter()
            for p, (m, started) in list(running.items()):
                if now - started > timeout_factor * baseline[m.target] + 10:
                    os.kill(p, signal.SIGKILL)
                    os.waitpid(p, 0)
                    outcome[m.id] = "timeout"
                    del running[p]
                    done += 1
            continue
        m, _ = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        outcome[m.id] = "survived" if code == 0 else "killed"
        done += 1
        mark = "SURVIVED" if code == 0 else "killed"
        print(f"[{done}/{len(mutants)}] {mark:8s} {m.id}", flush=True)
    return outcome


def load_equivalent(path: Path) -> dict[str, str]:
    """``id  # reason`` lines of mutants shown to be equivalent (they cannot change any result)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            mid, _, reason = line.partition("  # ")
            out[mid.strip()] = reason.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(TARGETS), help="targets to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--show", metavar="ID", help="print one mutant as a diff and exit")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--timeout-factor", type=float, default=4.0,
                        help="a mutant times out after this many times the baseline test time, plus 10 s")
    parser.add_argument("--report", type=Path, default=ROOT / "_build" / "mutants" / "report.json")
    parser.add_argument("--summary", type=Path, help="also write kill rates and survivors here (for results/)")
    parser.add_argument("--equivalent", type=Path, default=ROOT / "tools" / "mutants_equivalent.txt")
    parser.add_argument("--survivors-of", type=Path, metavar="REPORT",
                        help="run only the mutants that survived in this earlier report (after adding tests)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)

    targets = args.only or sorted(TARGETS)
    mutants: list[Mutant] = []
    for t in targets:
        mutants += find_mutants(t)[0]
    earlier_outcome: dict[str, str] = {}
    if args.survivors_of:
        earlier = json.loads(args.survivors_of.read_text())["mutants"]
        earlier_outcome = {m["id"]: m["outcome"] for m in earlier}
        current = {m.id for m in mutants}
        if set(earlier_outcome) != current:
            raise SystemExit("the mutants differ from the earlier report's (a target function changed): run them all")
        everything = mutants
        mutants = [m for m in mutants if earlier_outcome[m.id] == "survived"]
    if args.show:
        m = next((m for m in mutants if m.id == args.show), None)
        if m is None:
            raise SystemExit(f"no mutant {args.show!r}")
        original = ast.unparse(ast.parse((ROOT / m.file).read_text())).splitlines()
        changed = mutated_source(m.target, m.index).splitlines()
        print("\n".join(difflib.unified_diff(original, changed, m.file, m.file + " (mutant)", lineterm="", n=2)))
        return 0
    if args.list:
        for m in mutants:
            print(m.id)
        print(f"{len(mutants)} mutants", file=sys.stderr)
        return 0

    # Heavy imports once, before forking, so that each child starts quickly: PyTorch and friends, pytest's
    # plugins, and everything the test files import (a collect-only pass imports them all). The project's own
    # modules and the test modules are then dropped again: each child imports them afresh, the mutant included.
    import pytest
    import torch

    torch.set_num_threads(1)
    files = sorted({t for target in targets for t in _tests(target)})
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        pytest.main([*files, "--collect-only", "-q", "-p", "no:cacheprovider"])
    _forget_project_modules()

    equivalent = load_equivalent(args.equivalent)
    start = time.perf_counter()
    outcome = run(mutants, args.jobs, args.timeout_factor, args.report.parent / "logs")
    elapsed = time.perf_counter() - start
    if earlier_outcome:  # the report covers every mutant: earlier outcomes, updated by this run
        outcome = {**earlier_outcome, **outcome}
        mutants = everything
        elapsed += json.loads(args.survivors_of.read_text())["summary"].get("seconds", 0.0)  # both runs' time

    per_target = {}
    survivors = []
    for t in targets:
        ms = [m for m in mutants if m.target == t]
        eq = [m for m in ms if outcome[m.id] == "survived" and m.id in equivalent]
        alive = [m for m in ms if outcome[m.id] == "survived" and m.id not in equivalent]
        killed = [m for m in ms if outcome[m.id] in ("killed", "timeout")]
        counted = len(ms) - len(eq)
        per_target[t] = {"mutants": len(ms), "killed": len(killed), "equivalent": len(eq),
                         "survived": len(alive), "kill_rate": round(len(killed) / counted, 4) if counted else None}
        survivors += alive
    total = sum(v["mutants"] for v in per_target.values())
    killed = sum(v["killed"] for v in per_target.values())
    eq = sum(v["equivalent"] for v in per_target.values())
    summary = {"mutants": total, "killed": killed, "equivalent": eq, "survived": total - killed - eq,
               "kill_rate": round(killed / (total - eq), 4) if total > eq else None,
               "seconds": round(elapsed, 1), "targets": per_target,
               "survivors": [{"id": m.id, "line": m.line} for m in survivors],
               "equivalent_mutants": {m: equivalent[m] for m in equivalent if outcome.get(m) == "survived"}}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps({"summary": summary, "mutants": [
        {**asdict(m), "outcome": outcome[m.id]} for m in mutants]}, indent=1) + "\n")
    if args.summary:
        sys.path.insert(0, str(ROOT))
        from rlbook.results import provenance

        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps({"provenance": provenance([]), "summary": summary}, indent=1) + "\n")
    print()
    for t, v in per_target.items():
        print(f"{t:10s} {v['killed']:4d} killed / {v['mutants'] - v['equivalent']:4d}"
              f"  ({v['equivalent']} equivalent)  kill rate {v['kill_rate']}")
    print(f"{'all':10s} {killed:4d} killed / {total - eq:4d}  kill rate {summary['kill_rate']}  "
          f"({elapsed / 60:.1f} min)")
    for m in survivors:
        print(f"  survived: {m.id}  ({m.file}:{m.line})")
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
