"""rlbook.workers: messages from spawned workers, a failing or killed worker named in the error, shutdown that
leaves no process behind."""

import os
import signal
import time

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
    pool = WorkerPool(worker_targets.flood, [(), ()], queue_size=2).start()
    time.sleep(1.0)  # nobody reads: both workers block on the full queue
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
