"""Worker functions for tests/test_workers.py (spawned processes import them by module name)."""

import os
import time


def count(index, n, *, stop, send):
    """Send (index, k) for k < n, then return."""
    for k in range(n):
        if not send((index, k)):
            return


def fail_after(index, n, *, stop, send):
    """Worker 1 raises after sending n messages; the others wait for the stop."""
    for k in range(n):
        send((index, k))
    if index == 1:
        raise ValueError(f"worker {index} found a bad value")
    while not stop.wait(0.05):
        pass


def flood(index, *, stop, send):
    """Send until stopped (blocks on the full queue when nobody reads)."""
    k = 0
    while not stop.is_set():
        send(k)
        k += 1


def report_pid_then_wait(index, *, stop, send):
    send(os.getpid())
    while not stop.wait(0.05):
        pass


def stubborn(index, *, stop, send):
    """Ignores the stop: only terminate() ends it."""
    send("started")
    while True:
        time.sleep(0.05)


def big_flood(index, *, stop, send):
    """Messages of 8 MB, far more than a pipe holds: a kill lands in the middle of one."""
    import numpy as np

    block = np.ones(1 << 20, dtype=np.float64)
    while send(block):
        pass


def exit_quietly(index, *, stop, send):
    send("about to leave")
    os._exit(0)


def flood_then_wait(index, *, stop, send):
    """Worker 0 floods; the others report their pid and wait."""
    if index == 0:
        while send("busy"):
            pass
    else:
        report_pid_then_wait(index, stop=stop, send=send)


if __name__ == "__main__":  # the parent that tests/test_workers.py kills: prints its workers' pids, then waits
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import worker_targets

    from rlbook.workers import WorkerPool

    pool = WorkerPool(worker_targets.flood, [(), ()]).start()
    print(" ".join(str(p.pid) for p in pool.processes), flush=True)
    time.sleep(600)
