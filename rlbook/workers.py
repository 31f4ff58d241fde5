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
    waits while ``max_queued`` of its messages are still unread (or the pipe is full); when the pool stops, the
    parent closes its end and a waiting send returns. Returns ``False`` when the message could not be delivered
    because the pool is stopping or the parent is gone. A message that cannot be pickled raises here, in the
    worker (and reaches the parent as its error).

    The count of unread messages lives in two shared integers per worker, one written only by the worker
    (messages sent) and one only by the parent (messages read): no lock, so no lock a killed process could
    leave held."""

    def __init__(self, conn, stop: StopSignal, counters=None, index: int = 0, max_queued: int | None = None):
        self.conn, self.stop = conn, stop
        self.counters, self.index, self.max_queued = counters, index, max_queued

    def __call__(self, message: Any) -> bool:
        if self.stop.is_set():
            return False
        data = pickle.dumps(("message", message))  # fails here, in the worker, if it cannot be pickled
        if self.max_queued is not None:
            sent, read = 2 * self.index, 2 * self.index + 1
            while self.counters[sent] - self.counters[read] >= self.max_queued:
                if self.stop.wait(0.0002):
                    return False
            self.counters[sent] += 1  # before the message can be read: the parent's count never runs ahead
        try:
            self.conn.send_bytes(data)
        except OSError:  # BrokenPipeError: the parent closed its end (stopping) or died
            return False
        return True


def _worker_main(target: Callable, index: int, args: tuple, conn, flag, parent: int, counters=None,
                 max_queued: int | None = None) -> None:
    """The body of every worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    stop = StopSignal(flag, parent)
    send = Sender(conn, stop, counters, index, max_queued)
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


class _Pool:
    """What both pools share: one tuple of arguments per worker, the workers' names, and the ``with`` block
    that starts them and always stops them. Subclasses give :meth:`start` and ``stop``."""

    def __init__(self, target: Callable, args: Sequence[tuple], name: str):
        if not args:
            raise ValueError(f"{type(self).__name__} needs at least one worker: args is empty")
        self.target, self.args, self.name = target, [tuple(a) for a in args], name
        self._finished: set[int] = set()
        self._stopped = False
        self._turn = 0  # the worker whose message is read first when several are waiting

    def __len__(self) -> int:
        return len(self.args)

    def worker_name(self, index: int) -> str:
        """``"<name>-<index>"``."""
        return f"{self.name}-{index}"

    def start(self):  # pragma: no cover - every pool defines it
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - every pool defines it
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class WorkerPool(_Pool):
    """``n`` worker processes running ``target``; see the module docstring.

    Args:
        target: a picklable function ``target(index, *args, stop, send)``.
        args: one tuple of arguments per worker (their number is the number of workers).
        name: workers are called ``"<name>-<index>"`` in errors and process titles.
        start_method: ``"spawn"`` (default) or another ``multiprocessing`` start method.
        max_queued: a worker's send waits while this many of its messages are unread (``None``: only the
            pipe's own buffer limits it). Bounds how far a worker runs ahead of the parent.

    Each worker has its own pipe to the parent, so a worker that dies in the middle of a message breaks only
    its own pipe (the parent sees the end of it and reports the worker), and a worker blocked on a full pipe
    is freed when the parent closes it. Use the pool as a context manager, so that the workers stop however
    the block is left::

        with WorkerPool(play, [(env_fn, seed) for seed in range(4)]) as pool:
            for _ in range(100):
                index, rollout = pool.get()
    """

    def __init__(self, target: Callable, args: Sequence[tuple], name: str = "worker", start_method: str = "spawn",
                 max_queued: int | None = None):
        super().__init__(target, args, name)
        for what, obj in (("target", target), ("args", list(args))):
            try:
                pickle.dumps(obj)
            except Exception as error:  # noqa: BLE001 -- pickling can fail in many ways
                raise TypeError(f"WorkerPool: the {what} must be picklable to reach a spawned process (use a "
                                f"function defined at module level and data or functools.partial factories, "
                                f"not lambdas or open resources): {error}") from None
        self._ctx = mp.get_context(start_method)
        #: A shared byte; 1 asks every worker to return (see :class:`StopSignal`).
        self.stop_flag = self._ctx.RawValue("b", 0)
        if max_queued is not None and (isinstance(max_queued, bool) or not isinstance(max_queued, int)
                                       or max_queued < 1):
            raise ValueError(f"max_queued must be a positive integer or None, got {max_queued!r}")
        self.max_queued = max_queued
        #: Messages sent and read, two per worker (see :class:`Sender`).
        self.counters = self._ctx.RawArray("q", 2 * len(args))
        self.processes: list[Any] = []
        self._conns: list[Any] = []

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
                                            args=(self.target, index, args, writer, self.stop_flag, os.getpid(),
                                                  self.counters, self.max_queued))
                process.start()
                writer.close()  # the worker holds the only writer: its death ends the pipe
                self.processes.append(process)
                self._conns.append(reader)
        except BaseException:
            self.stop()
            raise
        return self

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
                        self.counters[2 * i + 1] += 1
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


class RayWorkerPool(_Pool):
    """The same workers as :class:`WorkerPool`, as Ray actors: on this machine after ``ray.init()``, on every
    machine of a Ray cluster after ``ray.init(address=...)``. Needs the ``scale`` extra
    (``pip install "rlbook[scale]"``).

    Same ``target(index, *args, stop, send)``, same :meth:`get` and :meth:`stop`, same :class:`WorkerError`
    for a worker that raises (with its traceback) or whose actor dies (its process killed, its machine lost).
    Inside each actor the target runs in a thread; ``send`` puts messages in the actor's own outbox (at most
    ``max_queued``, then it waits), and the pool keeps one request per worker in flight that takes the next
    message out, so a message travels once, from the worker to the parent, with no queue process in between.
    ``stop`` is a local flag the pool sets with one call per worker. :meth:`broadcast` delivers a value to every
    worker's inbox (:func:`ray_inbox`): how the learner hands out new weights. Ray ends the actors when the pool
    stops (``ray.kill``) or the driver exits.

    Args:
        target, args, name, max_queued: as for :class:`WorkerPool` (default ``max_queued``: 2).
        cpus_per_worker: the CPUs Ray reserves for each worker actor (fractions allowed: 0.5 runs two workers
            per core when there are more workers than cores).
    """

    def __init__(self, target: Callable, args: Sequence[tuple], name: str = "worker", max_queued: int | None = 2,
                 cpus_per_worker: float = 1.0):
        super().__init__(target, args, name)
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError('RayWorkerPool needs Ray: pip install "rlbook[scale]" (or pip install ray)') from None
        if not (isinstance(cpus_per_worker, int | float) and cpus_per_worker > 0):
            raise ValueError(f"cpus_per_worker must be a positive number, got {cpus_per_worker!r}")
        self.max_queued = 2 if max_queued is None else int(max_queued)
        self.cpus_per_worker = float(cpus_per_worker)
        self.actors: list[Any] = []
        self._runs: list[Any] = []
        self._requests: dict[int, Any] = {}

    def start(self) -> RayWorkerPool:
        """Start the worker actors (Ray must be initialised: ``ray.init()``)."""
        import ray

        if self.actors:
            raise RuntimeError("this RayWorkerPool was started already")
        if not ray.is_initialized():
            raise RuntimeError("start Ray first: ray.init() on this machine, ray.init(address=...) for a cluster")
        try:
            worker_class = ray.remote(_RayWorker)
            for index, args in enumerate(self.args):
                # three threads: the target, the requests for its messages, and deliveries and stop
                actor = worker_class.options(num_cpus=self.cpus_per_worker, max_concurrency=3).remote(self.max_queued)
                self.actors.append(actor)
                self._runs.append(actor.run.remote(self.target, index, args))
                self._requests[index] = actor.next.remote(POLL_SECONDS)
        except BaseException:
            self.stop()
            raise
        return self

    def broadcast(self, key: str, value: Any) -> None:
        """Deliver ``value`` under ``key`` to every worker's :func:`ray_inbox` (not waited for; calls from the
        parent to one worker arrive in order). Put large values in Ray's object store first and broadcast
        ``[ref]``: the reference travels, and each worker reads the data once."""
        for i, actor in enumerate(self.actors):
            if i not in self._finished:
                actor.deliver.remote(key, value)

    def _check_workers(self) -> None:
        import ray

        pending = [self._runs[i] for i in range(len(self._runs)) if i not in self._finished]
        if not pending:
            return
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        for ref in ready:
            index = self._runs.index(ref)
            if self._requests.get(index) is not None:
                ray.wait([self._requests[index]], timeout=1.0)  # messages sent before the end still count
                continue
            self._finished.add(index)
            self._result(index, ref)

    def _result(self, index: int, ref) -> Any:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as error:
            self._finished.add(index)
            raise WorkerError(self.worker_name(index), f"its Ray actor died: {error}") from None
        except ray.exceptions.RayTaskError as error:
            self._finished.add(index)
            raise WorkerError(self.worker_name(index), f"it raised an exception:\n{error}") from None

    def get(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next message as ``(worker index, message)``; errors as in :meth:`WorkerPool.get`."""
        import ray

        if not self.actors:
            raise RuntimeError("start the RayWorkerPool (or use it in a with block) before reading from it")
        if self._stopped:
            raise RuntimeError("this RayWorkerPool has been stopped")
        deadline = None if timeout is None else time.monotonic() + timeout
        n = len(self.actors)
        while True:
            self._check_workers()  # a failed worker is reported even while the others keep the parent busy
            live = [i for i in sorted(self._requests, key=lambda k: (k - self._turn) % n)]
            if not live:
                raise RuntimeError("every worker has finished; there is nothing more to read")
            waiting = min(POLL_SECONDS, max(0.0, deadline - time.monotonic())) if deadline else POLL_SECONDS
            ready, _ = ray.wait([self._requests[i] for i in live], num_returns=1, timeout=waiting)
            for i in live:
                if self._requests[i] in ready:
                    outcome = self._result(i, self._requests[i])
                    if outcome is _ENDED or outcome == ("ended",):
                        del self._requests[i]
                        self._finished.add(i)
                        self._result(i, self._runs[i])  # raises if the target raised
                        break
                    self._requests[i] = self.actors[i].next.remote(POLL_SECONDS)
                    if outcome is not None:
                        self._turn = i + 1
                        return i, outcome[1]
                    break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no message from the workers within {timeout} s")

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Ask every worker to return, wait up to ``timeout`` seconds, then end every actor (``ray.kill``).
        Safe to call more than once. Returns each worker's outcome: ``"done"`` or ``"killed"``."""
        import ray

        if self._stopped:
            return self._outcomes
        self._stopped = True
        for actor in self.actors:
            actor.stop.remote()
        if self._runs:
            ray.wait(self._runs, num_returns=len(self._runs), timeout=timeout)
        outcomes = []
        for index, actor in enumerate(self.actors):
            ready, _ = ray.wait([self._runs[index]], timeout=0)
            outcomes.append("done" if ready else "killed")
            ray.kill(actor)
        self._outcomes = outcomes
        return outcomes


#: What a Ray worker's ``next`` returns once its target has returned and its outbox is empty.
_ENDED = ("ended",)
_INBOX: dict[str, Any] = {}


def ray_inbox() -> dict[str, Any]:
    """Inside a :class:`RayWorkerPool` worker: the values the parent delivered with
    :meth:`RayWorkerPool.broadcast`, by key (the newest of each)."""
    return _INBOX


class _EventStop:
    """A Ray worker's ``stop``: a flag in the worker's own process, set by the pool."""

    def __init__(self, event):
        self.event = event

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)


class _OutboxSender:
    """A Ray worker's ``send``: puts the message in the worker's outbox, waiting while it is full."""

    def __init__(self, outbox, stop: _EventStop):
        self.outbox, self.stop = outbox, stop

    def __call__(self, message: Any) -> bool:
        import queue

        while not self.stop.is_set():
            try:
                self.outbox.put(("message", message), timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False


class _RayWorker:
    """The actor behind one :class:`RayWorkerPool` worker."""

    def __init__(self, max_queued: int):
        import queue
        import threading

        self.outbox = queue.Queue(maxsize=max_queued)
        self.event = threading.Event()
        self.ended = False

    def run(self, target: Callable, index: int, args: tuple) -> None:
        stop = _EventStop(self.event)
        try:
            target(index, *args, stop=stop, send=_OutboxSender(self.outbox, stop))
        finally:
            self.ended = True

    def next(self, timeout: float):
        """The next message as ``("message", m)``, ``None`` when none came within ``timeout``, or ``_ENDED``."""
        import queue

        try:
            return self.outbox.get(timeout=timeout)
        except queue.Empty:
            return _ENDED if self.ended and self.outbox.empty() else None

    def deliver(self, key: str, value: Any) -> None:
        _INBOX[key] = value

    def stop(self) -> None:
        self.event.set()


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


__all__ = ["RayWorkerPool", "Sender", "ray_inbox", "StopSignal", "WorkerError", "WorkerPool", "child_pids"]
