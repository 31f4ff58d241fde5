"""rlbook.workers: messages from spawned workers, a failing or killed worker named in the error, shutdown that
leaves no process behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import worker_targets

from rlbook.workers import WorkerError, WorkerPool, child_pids


def test_messages_from_every_worker_then_done_and_no_children_left():
    with WorkerPool(worker_targets.count, [(5,), (5,), (5,)]) as pool:
        got = [pool.get(timeout=60) for _ in range(15)]
        with pytest.raises(RuntimeError, match="every worker has finished"):
            pool.get(timeout=10)
    assert sorted(m for _, m in got) == [(i, k) for i in range(3) for k in range(5)]
    assert all(index == m[0] for index, m in got)  # the index travels with each message
    assert pool.stop() == [0, 0, 0]
    assert child_pids() == []


def test_a_worker_that_raises_is_named_with_its_traceback_and_the_rest_stop():
    with pytest.raises(WorkerError, match=r"(?s)worker-1 failed: it raised an exception.*ValueError: worker 1 "
                                          r"found a bad value") as info:
        with WorkerPool(worker_targets.fail_after, [(2,), (2,), (2,)]) as pool:
            while True:
                pool.get(timeout=60)
    assert info.value.worker == "worker-1"
    assert child_pids() == []


def test_a_killed_worker_is_reported_with_its_signal():
    with WorkerPool(worker_targets.report_pid_then_wait, [(), ()], name="actor") as pool:
        pids = dict(pool.get(timeout=60) for _ in range(2))
        os.kill(pids[0], signal.SIGKILL)
        with pytest.raises(WorkerError, match=r"actor-0 failed: the process \(pid \d+\) died with exit code -9 "
                                              r"\(SIGKILL\)"):
            pool.get(timeout=30)
    assert child_pids() == []


def test_stop_frees_workers_blocked_on_a_full_queue_and_kills_stubborn_ones():
    pool = WorkerPool(worker_targets.flood, [(), ()]).start()
    time.sleep(2.0)  # nobody reads: both workers block on their full pipes
    started = time.monotonic()
    assert pool.stop() == [0, 0]
    assert time.monotonic() - started < 10
    stubborn = WorkerPool(worker_targets.stubborn, [()]).start()
    assert stubborn.get(timeout=60) == (0, "started")
    codes = stubborn.stop(timeout=0.5)
    assert codes == [-signal.SIGTERM]
    assert child_pids() == []


def test_bad_arguments_are_refused_before_any_process_starts():
    with pytest.raises(TypeError, match="the target must be picklable"):
        WorkerPool(lambda index, stop, send: None, [()])
    with pytest.raises(TypeError, match="the args must be picklable"):
        WorkerPool(worker_targets.count, [(lambda: 1,)])
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool(worker_targets.count, [])
    with pytest.raises(RuntimeError, match="before reading"):
        WorkerPool(worker_targets.count, [(1,)]).get()
    assert child_pids() == []


def test_a_worker_killed_in_the_middle_of_a_big_message_is_reported_not_waited_for():
    with WorkerPool(worker_targets.big_flood, [()]) as pool:
        index, block = pool.get(timeout=60)
        assert block.shape == (1 << 20,)
        time.sleep(0.5)  # nobody reads: the worker is stuck half-way through its next message
        os.kill(pool.processes[0].pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(WorkerError, match="worker-0 failed: the process .* died with exit code -9"):
            while True:
                pool.get(timeout=30)
        assert time.monotonic() - started < 30
    assert child_pids() == []


def test_a_dead_worker_is_found_while_a_busy_one_keeps_talking():
    with WorkerPool(worker_targets.flood_then_wait, [(), ()]) as pool:
        pid = next(m for i, m in iter(lambda: pool.get(timeout=60), None) if i == 1)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match="worker-1 failed"):
            for _ in range(100_000):
                pool.get(timeout=30)
    assert child_pids() == []


def test_a_worker_that_leaves_without_finishing_is_reported():
    with WorkerPool(worker_targets.exit_quietly, [()]) as pool:
        assert pool.get(timeout=60) == (0, "about to leave")
        with pytest.raises(WorkerError, match="ended without finishing its target"):
            pool.get(timeout=30)
    assert child_pids() == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_leave_when_their_parent_is_killed():
    script = Path(__file__).with_name("worker_targets.py")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        time.sleep(1.0)  # both workers are now blocked on full pipes
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "a worker outlived its killed parent"
