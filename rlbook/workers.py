"""Worker processes for parallel training (chapter 11): start them, hear from them, stop them, and never lose one.

A :class:`WorkerPool` runs ``target(index, *args, stop=stop, send=send)`` in each of ``n`` processes started with
the ``spawn`` method (a fresh interpreter per worker: safe with PyTorch and threads, the same on Linux, macOS and
Windows). A worker sends messages to the parent with ``send(message)`` and returns when ``stop.is_set()``. The
parent reads messages with :meth:`WorkerPool.get`, which also watches the workers:

* a worker that raises: its traceback travels to the parent, and :meth:`~WorkerPool.get` raises
  :class:`WorkerError` naming the worker;
* a worker that dies without a word (killed by a signal, out of memory): :class:`WorkerError` with its exit code;
* the parent stops (``with`` block left, an exception, Ctrl-C or SIGTERM handled by the caller):
  :meth:`WorkerPool.stop` sets the stop event, drains the queue so that no worker stays blocked on a full one,
  joins the workers, and terminates (then kills) any that do not leave in time. No process outlives the pool.

Workers ignore Ctrl-C (SIGINT): the terminal sends it to the whole process group, and the parent, not each worker,
decides how to stop. The target and its arguments must be picklable: a function defined at module level, and
data or factories (``functools.partial`` of module-level functions) rather than lambdas or open environments.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

#: Seconds between two checks of the workers' health while waiting for a message.
POLL_SECONDS = 0.2


class WorkerError(RuntimeError):
    """A worker failed: it raised (the message holds its traceback) or died (the message holds its exit code)."""

    def __init__(self, worker: str, reason: str):
        super().__init__(f"{worker} failed: {reason}")
        #: The worker's name, ``"<name>-<index>"``.
        self.worker = worker


class StopSignal:
    """What a worker's ``stop`` is: set when the pool stops, and also when the parent process is gone (a worker
    never outlives a parent that was killed without a chance to stop it).

    The flag is a lock-free shared byte, not a ``multiprocessing.Event``: an event's ``set`` waits for every
    process sleeping in ``wait`` to wake, and a worker killed while it slept would make it wait forever."""

    def __init__(self, flag):
        self.flag = flag
        self.parent = os.getppid()

    def is_set(self) -> bool:
        return bool(self.flag.value) or os.getppid() != self.parent

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until the stop; returns :meth:`is_set`."""
        end = time.monotonic() + timeout
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.02))
        return True


class Sender:
    """The ``send`` callable a worker gets: puts ``message`` on the pool's queue, waiting while it is full but
    giving up as soon as the pool is stopping (so a worker never blocks its own shutdown). Returns ``False``
    when the message was dropped because of the stop."""

    def __init__(self, index: int, queue, stop):
        self.index, self.queue, self.stop = index, queue, stop

    def __call__(self, message: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(("message", self.index, message), timeout=POLL_SECONDS)
                return True
            except queue_module.Full:
                continue
        return False


def _worker_main(target: Callable, index: int, args: tuple, queue, flag) -> None:
    """The body of every worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    stop = StopSignal(flag)
    send = Sender(index, queue, stop)
    try:
        target(index, *args, stop=stop, send=send)
    except BaseException:  # noqa: BLE001 -- every failure goes to the parent, with its traceback
        try:
            queue.put(("error", index, traceback.format_exc()), timeout=5.0)
        except queue_module.Full:
            pass
        raise SystemExit(1) from None
    queue.put(("done", index, None))


class WorkerPool:
    """``n`` worker processes running ``target``; see the module docstring.

    Args:
        target: a picklable function ``target(index, *args, stop, send)``.
        args: one tuple of arguments per worker (their number is the number of workers).
        name: workers are called ``"<name>-<index>"`` in errors and process titles.
        queue_size: messages that may wait in the queue before workers block.
        start_method: ``"spawn"`` (default) or another :mod:`multiprocessing` start method.

    Use it as a context manager, so that the workers stop however the block is left::

        with WorkerPool(play, [(env_fn, seed) for seed in range(4)]) as pool:
            for _ in range(100):
                index, rollout = pool.get()
    """

    def __init__(self, target: Callable, args: Sequence[tuple], name: str = "worker", queue_size: int = 16,
                 start_method: str = "spawn"):
        if not args:
            raise ValueError("WorkerPool needs at least one worker: args is empty")
        for what, obj in (("target", target), ("args", list(args))):
            try:
                pickle.dumps(obj)
            except Exception as error:  # noqa: BLE001 -- pickling can fail in many ways
                raise TypeError(f"WorkerPool: the {what} must be picklable to reach a spawned process (use a "
                                f"function defined at module level and data or functools.partial factories, "
                                f"not lambdas or open resources): {error}") from None
        self.target, self.args, self.name = target, [tuple(a) for a in args], name
        self._ctx = mp.get_context(start_method)
        self._queue = self._ctx.Queue(maxsize=queue_size)
        #: A shared byte; 1 asks every worker to return (see :class:`StopSignal`).
        self.stop_flag = self._ctx.RawValue("b", 0)
        self.processes: list[Any] = []
        self._finished: set[int] = set()
        self._stopped = False

    def __len__(self) -> int:
        return len(self.args)

    def worker_name(self, index: int) -> str:
        """``"<name>-<index>"``."""
        return f"{self.name}-{index}"

    def start(self) -> WorkerPool:
        """Start the workers (once)."""
        if self.processes:
            raise RuntimeError("this WorkerPool was started already")
        for index, args in enumerate(self.args):
            # not daemonic: a worker may start processes of its own (an AsyncVectorEnv); the finalizer below and
            # stop() see that it ends
            process = self._ctx.Process(target=_worker_main, name=self.worker_name(index),
                                        args=(self.target, index, args, self._queue, self.stop_flag))
            process.start()
            self.processes.append(process)
        atexit.register(self.stop)  # runs before multiprocessing's own exit handler, which would wait for them
        return self

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _dead_worker(self) -> int | None:
        for index, process in enumerate(self.processes):
            if index not in self._finished and not process.is_alive() and process.exitcode != 0:
                return index
        return None

    def _died(self, index: int) -> WorkerError:
        process = self.processes[index]
        reason = f"the process (pid {process.pid}) died with exit code {process.exitcode}"
        if process.exitcode is not None and process.exitcode < 0:
            reason += f" ({signal.Signals(-process.exitcode).name})"
        return WorkerError(self.worker_name(index), reason)

    def get(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next message as ``(worker index, message)``. Raises :class:`WorkerError` when a worker failed,
        ``TimeoutError`` after ``timeout`` seconds without a message, and ``RuntimeError`` when every worker
        has finished and nothing is left to read."""
        if not self.processes:
            raise RuntimeError("start the WorkerPool (or use it in a with block) before reading from it")
        deadline = None if timeout is None else time.monotonic() + timeout
        dead = None
        while True:
            try:
                kind, index, payload = self._queue.get(timeout=POLL_SECONDS if dead is None else 1.0)
            except queue_module.Empty:
                if dead is not None:  # nothing more came from it: it died without a word
                    raise self._died(dead) from None
                if len(self._finished) == len(self.processes):
                    raise RuntimeError("every worker has finished; there is nothing more to read") from None
                dead = self._dead_worker()  # read what it may have sent before dying, then report it
                if dead is None and deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"no message from the workers within {timeout} s") from None
                continue
            if kind == "message":
                return index, payload
            if kind == "error":
                self._finished.add(index)
                raise WorkerError(self.worker_name(index), "it raised an exception:\n" + payload)
            self._finished.add(index)  # "done"

    def stop(self, timeout: float = 10.0) -> list[int | None]:
        """Ask every worker to return, wait up to ``timeout`` seconds, then terminate and, if need be, kill the
        stragglers. Safe to call more than once. Returns the workers' exit codes."""
        if self._stopped or not self.processes:
            self._stopped = True
            return [p.exitcode for p in self.processes]
        self._stopped = True
        atexit.unregister(self.stop)
        self.stop_flag.value = 1
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in self.processes) and time.monotonic() < deadline:
            self._drain()  # a worker blocked on a full queue must be able to finish its put
            for p in self.processes:
                p.join(timeout=0.05)
        for p in self.processes:
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=2.0)
        self._drain()
        self._queue.close()
        self._queue.cancel_join_thread()
        return [p.exitcode for p in self.processes]

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except (queue_module.Empty, OSError, ValueError):
                return


def child_pids() -> list[int]:
    """Process ids of this process's living children (Linux; ``[]`` where ``/proc`` is missing), apart from
    multiprocessing's resource tracker: what a test counts to prove that no worker outlived its pool."""
    from multiprocessing import resource_tracker

    me = os.getpid()
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)  # multiprocessing's own helper
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if parent == me and state != "Z" and int(entry) != tracker:
            out.append(int(entry))
    return out


__all__ = ["Sender", "StopSignal", "WorkerError", "WorkerPool", "child_pids"]
