"""Worker processes for parallel training (chapter 11): start them, hear from them, stop them, and never lose one.

A :class:`WorkerPool` runs ``target(index, *args, stop=stop, send=send)`` in each of ``n`` processes started with
the ``spawn`` method (a fresh interpreter per worker: safe with PyTorch and threads, the same on Linux, macOS and
Windows). A worker sends messages to the parent with ``send(message)`` and returns when ``stop.is_set()``. The
parent reads messages with :meth:`WorkerPool.get`, which also watches the workers:

* a worker that raises: its traceback travels to the parent, and :meth:`~WorkerPool.get` raises
  :class:`WorkerError` naming the worker;
* a worker that dies without a word (killed by a signal, out of memory): :class:`WorkerError` with its exit code;
* a worker killed in the middle of a message: its own pipe ends early, and :class:`WorkerError` names it;
* the parent stops (``with`` block left, an exception, Ctrl-C or SIGTERM handled by the caller):
  :meth:`WorkerPool.stop` sets the stop flag, closes its ends of the pipes so that no worker stays blocked on a
  full one, joins the workers, and terminates (then kills) any that do not leave in time;
* the parent dies without stopping them (killed): each worker's ``stop`` turns true and its sends fail, so it
  returns. No process outlives the pool.

Workers ignore Ctrl-C (SIGINT): the terminal sends it to the whole process group, and the parent, not each worker,
decides how to stop. The target and its arguments must be picklable: a function defined at module level, and
data or factories (``functools.partial`` of module-level functions) rather than lambdas or open environments.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import pickle
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

    def __init__(self, flag, parent: int):
        self.flag = flag
        self.parent = parent

    def is_set(self) -> bool:
        """True once the pool stops or the parent process is gone."""
        return bool(self.flag.value) or os.getppid() != self.parent

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until the stop; returns whether the stop has come."""
        end = time.monotonic() + timeout
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.02))
        return True


class Sender:
    """The ``send`` callable a worker gets: sends ``message`` to the parent through the worker's own pipe. It
    waits while the pipe is full; when the pool stops, the parent closes its end and a waiting send returns.
    Returns ``False`` when the message could not be delivered because the pool is stopping or the parent is
    gone. A message that cannot be pickled raises here, in the worker (and reaches the parent as its error)."""

    def __init__(self, conn, stop: StopSignal):
        self.conn, self.stop = conn, stop

    def __call__(self, message: Any) -> bool:
        if self.stop.is_set():
            return False
        data = pickle.dumps(("message", message))  # fails here, in the worker, if it cannot be pickled
        try:
            self.conn.send_bytes(data)
        except OSError:  # BrokenPipeError: the parent closed its end (stopping) or died
            return False
        return True


def _worker_main(target: Callable, index: int, args: tuple, conn, flag, parent: int) -> None:
    """The body of every worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    stop = StopSignal(flag, parent)
    send = Sender(conn, stop)
    try:
        target(index, *args, stop=stop, send=send)
        outcome = ("done", None)
    except SystemExit as exit_:
        outcome = ("done", None) if exit_.code in (None, 0) else ("error", traceback.format_exc())
    except BaseException:  # noqa: BLE001 -- every failure goes to the parent, with its traceback
        outcome = ("error", traceback.format_exc())
    try:
        conn.send_bytes(pickle.dumps(outcome))
    except OSError:
        pass  # the parent is gone or stopping: nobody to tell
    conn.close()
    if outcome[0] == "error":
        raise SystemExit(1)


class WorkerPool:
    """``n`` worker processes running ``target``; see the module docstring.

    Args:
        target: a picklable function ``target(index, *args, stop, send)``.
        args: one tuple of arguments per worker (their number is the number of workers).
        name: workers are called ``"<name>-<index>"`` in errors and process titles.
        start_method: ``"spawn"`` (default) or another ``multiprocessing`` start method.

    Each worker has its own pipe to the parent, so a worker that dies in the middle of a message breaks only
    its own pipe (the parent sees the end of it and reports the worker), and a worker blocked on a full pipe
    is freed when the parent closes it. Use the pool as a context manager, so that the workers stop however
    the block is left::

        with WorkerPool(play, [(env_fn, seed) for seed in range(4)]) as pool:
            for _ in range(100):
                index, rollout = pool.get()
    """

    def __init__(self, target: Callable, args: Sequence[tuple], name: str = "worker", start_method: str = "spawn"):
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
        #: A shared byte; 1 asks every worker to return (see :class:`StopSignal`).
        self.stop_flag = self._ctx.RawValue("b", 0)
        self.processes: list[Any] = []
        self._conns: list[Any] = []
        self._finished: set[int] = set()
        self._stopped = False
        self._turn = 0  # the worker whose message is read first when several are waiting

    def __len__(self) -> int:
        return len(self.args)

    def worker_name(self, index: int) -> str:
        """``"<name>-<index>"``."""
        return f"{self.name}-{index}"

    def start(self) -> WorkerPool:
        """Start the workers (once). If starting one fails, the ones already started are stopped."""
        if self.processes:
            raise RuntimeError("this WorkerPool was started already")
        atexit.register(self.stop)  # runs before multiprocessing's own exit handler, which would wait for them
        try:
            for index, args in enumerate(self.args):
                reader, writer = self._ctx.Pipe(duplex=False)
                # not daemonic: a worker may start processes of its own (an AsyncVectorEnv); stop() and the
                # exit handler above see that it ends
                process = self._ctx.Process(target=_worker_main, name=self.worker_name(index),
                                            args=(self.target, index, args, writer, self.stop_flag, os.getpid()))
                process.start()
                writer.close()  # the worker holds the only writer: its death ends the pipe
                self.processes.append(process)
                self._conns.append(reader)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _died(self, index: int, said_done: bool = False) -> WorkerError:
        self._finished.add(index)
        process = self.processes[index]
        process.join(timeout=1.0)
        code = process.exitcode
        if code == 0:
            return WorkerError(self.worker_name(index), f"the process (pid {process.pid}) ended without finishing "
                                                        "its target (did something call os._exit?)")
        reason = f"the process (pid {process.pid}) died with exit code {code}"
        if code is not None and code < 0:
            try:
                reason += f" ({signal.Signals(-code).name})"
            except ValueError:
                pass
        return WorkerError(self.worker_name(index), reason)

    def get(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next message as ``(worker index, message)``. Raises :class:`WorkerError` when a worker failed
        (once per worker), ``TimeoutError`` after ``timeout`` seconds without a message, and ``RuntimeError``
        when every worker has finished and nothing is left to read."""
        if not self.processes:
            raise RuntimeError("start the WorkerPool (or use it in a with block) before reading from it")
        if self._stopped:
            raise RuntimeError("this WorkerPool has been stopped")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            live = [i for i in range(len(self.processes)) if i not in self._finished]
            if not live:
                raise RuntimeError("every worker has finished; there is nothing more to read")
            waiting = min(POLL_SECONDS, max(0.0, deadline - time.monotonic())) if deadline else POLL_SECONDS
            ready = set(mp_connection.wait([self._conns[i] for i in live] +
                                           [self.processes[i].sentinel for i in live], timeout=waiting))
            # workers that have ended go first (a busy neighbour must not hide a dead worker), then the others
            # in turn, starting after the last one heard from (a busy worker must not starve a quiet one)
            n = len(self.processes)
            turn = self._turn
            for i in sorted(live, key=lambda k: (self.processes[k].sentinel not in ready, (k - turn) % n)):
                conn = self._conns[i]
                if conn in ready:
                    try:
                        # the pipe's only writer is the worker this pool spawned (the parent closed its copy of
                        # the write end): these bytes are what our own _worker_main pickled, never user data
                        kind, payload = pickle.loads(conn.recv_bytes())
                    except (EOFError, OSError):  # its end of the pipe closed without a last word
                        raise self._died(i) from None
                    if kind == "message":
                        self._turn = i + 1
                        return i, payload
                    self._finished.add(i)
                    if kind == "error":
                        raise WorkerError(self.worker_name(i), "it raised an exception:\n" + payload)
                elif self.processes[i].sentinel in ready and not conn.poll():
                    raise self._died(i)  # ended, and nothing is left in its pipe
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no message from the workers within {timeout} s")

    def stop(self, timeout: float = 10.0) -> list[int | None]:
        """Ask every worker to return, wait up to ``timeout`` seconds, then terminate and, if need be, kill the
        stragglers. Safe to call more than once. Returns the workers' exit codes."""
        if self._stopped:
            return [p.exitcode for p in self.processes]
        self._stopped = True
        atexit.unregister(self.stop)
        self.stop_flag.value = 1
        for conn in self._conns:  # a worker blocked on a full pipe gets a broken pipe and returns
            conn.close()
        deadline = time.monotonic() + timeout
        for p in self.processes:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.processes:
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=2.0)
        return [p.exitcode for p in self.processes]


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
