"""Steps run in background workers; their progress lives in the session's event log.

A job is announced with a ``queued`` event (naming this process: host, pid and start
time, and the step it grows from) before a worker picks it up, so a page reload finds
it; when a server starts, jobs queued by a process known to be gone (on this host: no
process with that pid and start time) and never finished are recorded as abandoned
attempts on that parent step. Another host's jobs are never taken for abandoned.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exquisite_store.authorship import recorded
from exquisite_store.core.steps import StepRequest, grow
from exquisite_store.errors import Busy, Cancelled, ExqError, TransientBackendError
from exquisite_store.manifests import Attempt
from exquisite_store.store import Store
from exquisite_store.store.process import ProcessStamp, this_process

TERMINAL = ("succeeded", "failed")
#: jobs that may wait for a worker; one more is refused (Busy: HTTP 429) before it is queued
MAX_WAITING = 16


class Jobs:
    """A small pool of step workers over one store, with a bounded queue.

    Two jobs never grow one branch head at once: the step itself waits for the
    branch's lock (``pipeline.step``), here or in any other process.
    """

    def __init__(self, store: Store, workers: int, max_waiting: int = MAX_WAITING) -> None:
        self.store = store
        self.workers = workers
        self.max_waiting = max_waiting
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exq-step")
        self.cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def submit(self, req: StepRequest) -> str:
        """Queue a step; returns its job id at once. Busy when the queue is full."""
        job = uuid.uuid4().hex[:12]
        with self._lock:
            if len(self.cancels) >= self.workers + self.max_waiting:
                raise Busy(
                    f"{len(self.cancels)} steps are running or waiting (at most "
                    f"{self.workers + self.max_waiting}); try again when one has finished"
                )
            self.cancels[job] = threading.Event()
        self.store.append_event(
            req.session,
            "queued",
            job=job,
            process=this_process().to_dict(),
            parent=req.target.parent,
            branch=req.target.branch,
            params=req.overrides,
        )
        # the worker thread records the submitter as the author (and what else it set)
        self.pool.submit(contextvars.copy_context().run, self._run, req, job)
        return job

    def _run(self, req: StepRequest, job: str) -> None:
        try:
            if self.cancels[job].is_set():  # cancelled while it waited: nothing was done
                exc = Cancelled("cancelled before it started; nothing was done")
                self.store.append_event(
                    req.session, "failed", job=job, kind=exc.kind, message=exc.message
                )
                return
            grow(self.store, req, job=job, cancel=self.cancels[job])
        except ExqError:
            pass  # recorded by the step as an attempt and a failed event
        except Exception as exc:  # a bug: still tell the page, never leave it waiting
            self.store.append_event(
                req.session,
                "failed",
                job=job,
                kind="InternalError",
                message=f"internal error: {type(exc).__name__}",
            )
        finally:
            with self._lock:
                self.cancels.pop(job, None)

    def cancel(self, job: str) -> bool:
        """Ask a waiting or running job to stop; False if this pool has no such job.

        A waiting job never starts; a running one stops at its next phase (a
        patchmatch fill is killed at once); a call already made to a paid backend is
        let finish, and its answer is kept in the job's attempt.
        """
        with self._lock:
            ev = self.cancels.get(job)
        if ev is not None:
            ev.set()
        return ev is not None


def job_states(store: Store, session: str) -> dict[str, dict[str, Any]]:
    """Each job of a session: its last phase, and its outcome once it has one."""
    jobs: dict[str, dict[str, Any]] = {}
    for ev in store.events(session):
        job = ev.data.get("job")
        if not job:
            continue
        state = jobs.setdefault(job, {"job": job, "state": "queued", "phase": "", "seq": 0})
        state["seq"] = ev.seq
        state["time_ms"] = ev.time_ms
        if ev.type == "queued" and "queue" in ev.data:
            # handed to RQ workers: no process here owns it (queue.reap watches its heartbeat)
            state.update(
                queue=ev.data["queue"], parent=ev.data.get("parent"), branch=ev.data.get("branch")
            )
        elif ev.type == "queued":
            # older events name only the pid: still understood (as this host's)
            owner = ev.data.get("process") or {"pid": ev.data.get("pid")}
            state.update(process=owner, parent=ev.data.get("parent"), branch=ev.data.get("branch"))
        elif ev.type == "started":
            state["state"] = "running"
            state.setdefault("parent", ev.data.get("parent"))
        elif ev.type == "progress":
            state["phase"] = ev.data.get("phase", "")
            if ev.data.get("candidate"):  # candidate k of n: each keeps its own last phase
                state.setdefault("candidates", {})[str(ev.data["candidate"])] = state["phase"]
                state["of"] = ev.data.get("of", 0)
        elif ev.type in TERMINAL:
            state["state"] = ev.type
            state["result"] = {k: v for k, v in ev.data.items() if k != "job"}
    return jobs


#: a job with no event for this long, and no server of this host known alive, is not shown
QUIET_MS = 20 * 60 * 1000


def live_jobs(store: Store, session: str) -> list[dict[str, Any]]:
    """The jobs of a session that are waiting or running now, oldest first.

    A job queued by a server that is gone is left out (that server's successor records
    it as abandoned), and so is a job (e.g. an ``exq step`` killed midway) that has said
    nothing for ``QUIET_MS``.
    """
    now = store.clock_ms()
    out = []
    for st in job_states(store, session).values():
        if st["state"] in TERMINAL:
            continue
        owner = st.get("process")
        stamp = ProcessStamp.from_dict(owner) if isinstance(owner, dict) else None
        if stamp is not None and not stamp.alive():
            continue
        if stamp is None and now - st["time_ms"] > QUIET_MS:
            continue
        out.append({**st, "from_server": stamp is not None})
    return sorted(out, key=lambda s: s["seq"])


def committed_by(store: Store, session: str, job: str) -> list[str]:
    """Steps whose branch move names ``job`` in its reflog line."""
    mark = f"(job {job})"
    return [
        e.new
        for ref in store.storage.list_refs(f"{session}/heads/")
        for e in store.refs.reflog(ref)
        if e.message.endswith(mark)
    ]


def mark_abandoned(store: Store) -> int:
    """Record jobs of processes known to be gone that never finished as abandoned attempts."""
    n = 0
    for session in store.refs.sessions():
        for job, st in job_states(store, session).items():
            if st["state"] in TERMINAL or "process" not in st:
                continue  # finished, or not queued by a server (an `exq step` job)
            owner = st["process"]
            stamp = ProcessStamp.from_dict(owner) if isinstance(owner, dict) else None
            if stamp is not None and stamp.alive():
                continue
            moved = committed_by(store, session, job)
            if moved:  # it died after its ref moved, before it could say so
                store.append_event(session, "succeeded", job=job, step_ids=moved, recovered=True)
                continue
            exc = TransientBackendError("abandoned: the viewer stopped while this step ran")
            attempt = Attempt(
                author=recorded(),
                session=session,
                parent=st.get("parent") or store.session(session).root,
                branch=st.get("branch") or "",
                created_ms=store.clock_ms(),
                failure_kind=exc.kind,
                message=exc.message,
                details={"job": job, "phase": st.get("phase", "")},
            )
            aid = store.record_attempt(attempt)
            store.append_event(
                session, "failed", job=job, attempt_id=aid, kind=exc.kind, message=exc.message
            )
            n += 1
    return n
