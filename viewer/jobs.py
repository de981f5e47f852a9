"""Steps run in background workers; their progress lives in the session's event log.

A job is announced with a ``queued`` event (naming this server's pid) before a worker
picks it up, so a page reload finds it; when a server starts, jobs queued by a server
that is no longer running and never finished are recorded as abandoned attempts.
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask, current_app

from exquisite_store.errors import ExqError, TransientBackendError
from exquisite_store.manifests import Attempt
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from exquisite_store.store.files import pid_alive

TERMINAL = ("succeeded", "failed")


class Jobs:
    """A small pool of step workers over one store."""

    def __init__(self, store: Store, workers: int) -> None:
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exq-step")
        self.cancels: dict[str, threading.Event] = {}

    def submit(
        self,
        session: str,
        *,
        parent: str | None,
        branch: str | None,
        prompt: str,
        params: dict[str, Any],
    ) -> str:
        """Queue a step; returns its job id at once."""
        job = uuid.uuid4().hex[:12]
        self.cancels[job] = threading.Event()
        self.store.append_event(
            session, "queued", job=job, pid=os.getpid(), parent=parent, branch=branch, params=params
        )
        self.pool.submit(self._run, session, job, parent, branch, prompt, params)
        return job

    def _run(self, session, job, parent, branch, prompt, params) -> None:
        try:
            run_step(
                self.store,
                session,
                parent=parent,
                branch=branch,
                prompt=prompt,
                job=job,
                cancel=self.cancels[job],
                **params,
            )
        except ExqError:
            pass  # recorded by run_step as an attempt and a failed event
        except Exception as exc:  # a bug: still tell the page, never leave it waiting
            self.store.append_event(
                session,
                "failed",
                job=job,
                kind="InternalError",
                message=f"internal error: {type(exc).__name__}",
            )
        finally:
            self.cancels.pop(job, None)

    def cancel(self, job: str) -> bool:
        """Ask a running job to stop (a patchmatch fill is killed)."""
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
        if ev.type == "queued":
            state.update(
                pid=ev.data.get("pid"), parent=ev.data.get("parent"), branch=ev.data.get("branch")
            )
        elif ev.type == "started":
            state["state"] = "running"
        elif ev.type == "progress":
            state["phase"] = ev.data.get("phase", "")
        elif ev.type in TERMINAL:
            state["state"] = ev.type
            state["result"] = {k: v for k, v in ev.data.items() if k != "job"}
    return jobs


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
    """Record jobs of dead servers that never finished as abandoned attempts."""
    n = 0
    for session in store.refs.sessions():
        for job, st in job_states(store, session).items():
            if st["state"] in TERMINAL or "pid" not in st or pid_alive(st.get("pid")):
                continue
            moved = committed_by(store, session, job)
            if moved:  # it died after its ref moved, before it could say so
                store.append_event(session, "succeeded", job=job, step_ids=moved, recovered=True)
                continue
            exc = TransientBackendError("abandoned: the viewer stopped while this step ran")
            attempt = Attempt(
                session=session,
                parent=st.get("parent"),
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


def init_app(app: Flask) -> None:
    """Start the worker pool and settle jobs a previous server left unfinished."""
    store = Store.open(app.config["EXQ_STORE"])
    app.extensions["exq_store"] = store
    mark_abandoned(store)
    app.extensions["exq_jobs"] = Jobs(store, app.config["JOB_WORKERS"])


def get_jobs() -> Jobs:
    """The app's job runner."""
    return current_app.extensions["exq_jobs"]
