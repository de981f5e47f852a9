"""Warm worker processes for CPU-bound backend work: started lazily, reused, replaced.

A pool keeps up to ``size`` idle processes (``spawn``ed, so a threaded server can
use it) that have already imported what the work needs. ``run`` hands a call's jobs
to as many workers as there are jobs (at most ``size``) and waits for them all,
watching a cancel event and a deadline: a cancelled, late or failing call kills the
workers still busy with it, and a killed or dead worker is never handed out again.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from exquisite_store.errors import Cancelled, PermanentBackendError, TransientBackendError

#: how often a waiting call looks at its cancel event and deadline (seconds)
POLL_S = 0.05


def _serve(conn: Connection, warm: Callable[[], None] | None) -> None:  # pragma: no cover
    """The worker's loop: run ``(func, args)`` jobs until the pipe closes or says stop.

    A worker whose warm-up failed answers every job with that failure (a permanent
    error with its reason, not a worker that keeps dying).
    """
    broken = ""
    try:
        if warm is not None:
            warm()
    except BaseException as exc:
        broken = f"{type(exc).__name__}: {exc}"
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if job is None:
            return
        func, args = job
        try:
            if broken:
                raise RuntimeError(f"the worker could not start: {broken}")
            reply = ("ok", func(*args))
        except BaseException as exc:  # report every failure to the parent
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


@dataclass(eq=False)  # hashed by identity: busy workers are kept in a set
class _Worker:
    """One worker process and the parent's end of its two-way pipe."""

    proc: Any  # multiprocessing.context.SpawnProcess
    conn: Connection

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return int(self.proc.pid)

    def kill(self) -> None:
        """Stop it now (its work is abandoned) and reap it."""
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        """Ask it to exit when idle; kill it if it does not."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """Up to ``size`` warm workers (default ``os.cpu_count()``), shared by every thread.

    ``name`` and ``task`` name the work in errors ("cancelled during the patchmatch fill").
    """

    def __init__(
        self,
        name: str,
        *,
        task: str = "work",
        warm: Callable[[], None] | None = None,
        size: int | None = None,
    ) -> None:
        self.name, self.task = name, task
        self.warm = warm
        self.size = max(1, size or os.cpu_count() or 1)
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._owner = os.getpid()

    def run(
        self,
        func: Callable[..., Any],
        jobs: Sequence[tuple],
        *,
        cancel: threading.Event | None = None,
        deadline_s: float,
    ) -> list[Any]:
        """``[func(*job) for job in jobs]``, computed in parallel by the pool's workers.

        Raises ``Cancelled`` when ``cancel`` is set, ``TransientBackendError`` past the
        deadline or when a worker dies, ``PermanentBackendError`` when ``func`` raised;
        in each case every worker still busy with this call is killed first.
        """
        end = time.monotonic() + deadline_s
        results: list[Any] = [None] * len(jobs)
        pending = collections.deque(range(len(jobs)))
        busy: dict[Connection, tuple[_Worker, int]] = {}
        try:
            while pending and len(busy) < self.size:
                i = pending.popleft()
                worker = self._dispatch(func, jobs[i])
                busy[worker.conn] = (worker, i)
            while busy:
                for conn in wait(list(busy), timeout=POLL_S):
                    worker, i = busy.pop(conn)
                    try:
                        status, payload = conn.recv()
                    except (EOFError, OSError):
                        worker.proc.join(timeout=1)
                        self._forget(worker, kill=True)
                        raise self._died(worker) from None
                    if status != "ok":
                        self._checkin(worker)
                        raise PermanentBackendError(f"{self.name} failed: {payload}")
                    results[i] = payload
                    if pending:
                        i = pending.popleft()
                        self._send(worker, func, jobs[i])
                        busy[worker.conn] = (worker, i)
                    else:
                        self._checkin(worker)
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"cancelled during the {self.name} {self.task}")
                if time.monotonic() > end:
                    raise TransientBackendError(
                        f"the {self.name} {self.task} took longer than {deadline_s:g}s; stopped"
                    )
                for worker, _i in busy.values():
                    if not worker.proc.is_alive() and not worker.conn.poll(0):
                        raise self._died(worker)
        finally:
            for worker, _i in busy.values():  # abandoned work: never handed out again
                self._forget(worker, kill=True)
        return results

    def idle_pids(self) -> list[int]:
        """Process ids of the idle workers (oldest first)."""
        with self._lock:
            return [w.pid for w in self._idle]

    def busy_pids(self) -> list[int]:
        """Process ids of the workers running a call's jobs now."""
        with self._lock:
            return [w.pid for w in self._busy]

    def close(self) -> None:
        """Stop the idle workers (busy ones are killed by their call when it ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def _dispatch(self, func: Callable[..., Any], job: tuple) -> _Worker:
        """Send a job to an idle worker, or a new one; a worker that died idle is replaced."""
        worker = self._checkout()
        try:
            self._send(worker, func, job)
        except (BrokenPipeError, OSError):
            self._forget(worker, kill=True)
            worker = self._start()
            self._send(worker, func, job)
        return worker

    def _send(self, worker: _Worker, func: Callable[..., Any], job: tuple) -> None:
        worker.conn.send((func, job))

    def _checkout(self) -> _Worker:
        with self._lock:
            if os.getpid() != self._owner:  # a forked child: the workers are the parent's
                self._idle, self._busy, self._owner = [], set(), os.getpid()
            while self._idle:
                worker = self._idle.pop()  # the most recently used
                if worker.proc.is_alive():
                    self._busy.add(worker)
                    return worker
                worker.conn.close()
                worker.proc.join(timeout=1)
        return self._start()

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_serve, args=(child, self.warm), daemon=True)
        proc.start()
        child.close()
        worker = _Worker(proc, parent)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            keep = os.getpid() == self._owner and len(self._idle) < self.size
            if keep:
                self._idle.append(worker)
        if not keep:
            worker.stop()

    def _forget(self, worker: _Worker, *, kill: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
        if kill:
            worker.kill()

    def _died(self, worker: _Worker) -> TransientBackendError:
        return TransientBackendError(f"{self.name} worker died (exit code {worker.proc.exitcode})")
