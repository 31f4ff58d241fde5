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
