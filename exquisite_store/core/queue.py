"""Steps run by RQ workers on other machines: enqueue, run, heartbeat, cancel, reap.

The queue only carries work; the store keeps the truth. A job is announced in the
session's event log (``queued``, naming its queue) before RQ sees it; its worker writes
every event to the store first and then publishes it to a Redis Stream for live pages;
its commit is the branch's compare-and-swap, whose reflog line names the job. RQ's own
job status is never believed: RQ takes minutes to call a killed worker's job
abandoned, and a killed worker's work horse has been seen to finish a job that RQ
listed as failed. So workers run jobs in their own process (RQ's ``SimpleWorker``: a
killed worker leaves no horse behind) and keep a heartbeat key in Redis with a short
expiry (Redis's clock, not ours); ``reap`` records a job that started and whose
heartbeat expired, and that never committed, as an abandoned attempt, within
``HEARTBEAT_TTL_S``. A job's seed is fixed when it is queued, so running it again
sends the very same request and the run cache answers it: a call already paid for
is never paid twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from msgspec import UNSET

from exquisite_store.authorship import as_author, author
from exquisite_store.core.jobs import TERMINAL, committed_by, job_states
from exquisite_store.core.remotes import open_url
from exquisite_store.core.steps import StepRequest, grow, repair_request, step_request
from exquisite_store.errors import Busy, Cancelled, ExqError, TransientBackendError, UserError
from exquisite_store.manifests import Attempt
from exquisite_store.store import Store

#: the queues, by the kind of work: paid calls wait on the network, fills use the cores
QUEUES = ("openai", "cpu")
#: a running job renews its heartbeat this often; one not renewed for the TTL is gone
HEARTBEAT_S = 3.0
HEARTBEAT_TTL_S = 15
#: how long RQ may keep a job: a fill's deadline is 15 minutes, a paid call's less
JOB_TIMEOUT_S = 20 * 60
#: events kept in a session's live stream (older ones are read from the store)
STREAM_MAXLEN = 10_000


def connect(url: str):
    """A Redis connection for ``redis://HOST:PORT/DB``; UserError when it cannot be reached."""
    import redis

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise UserError(f"--queue takes a redis:// URL, not {url!r:.80}")
    try:
        conn = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        conn.ping()
    except (redis.RedisError, ValueError) as exc:
        raise UserError(f"cannot reach the queue at {url}: {exc}") from None
    return conn


def queue_of(backend: str) -> str:
    """The queue a step waits on: ``openai`` for paid calls, ``cpu`` for local fills."""
    return "openai" if backend == "openai" else "cpu"


def store_key(store_url: str) -> str:
    """A short name of a store for its keys in a Redis shared by several stores."""
    return hashlib.blake2b(store_url.encode(), digest_size=6).hexdigest()


def _keys(store_url: str, job: str = "", session: str = "") -> dict[str, str]:
    base = f"exq:{store_key(store_url)}"
    return {
        "alive": f"{base}:alive:{job}",
        "cancel": f"{base}:cancel:{job}",
        "stream": f"{base}:events:{session}",
    }


@dataclass(frozen=True)
class Queued:
    """A step waiting in (or taken from) the queue."""

    job: str
    queue: str
    session: str


def payload_of(store_url: str, req: StepRequest, job: str) -> dict[str, Any]:
    """What a worker needs to run ``req`` again exactly: its seed is fixed here."""
    params = dict(req.overrides)
    if req.params.seed is None:
        params["seed"] = secrets.randbelow(2**31)
    return {
        "store": store_url,
        "session": req.session,
        "job": job,
        "params": params,
        "prompt": req.prompt,
        "parent": req.parent,
        "branch": req.branch,
        "stage": req.stage,
        "fresh": req.fresh,
        "author": author(),
        **({"repair": req.repair_px} if req.repair_px else {}),
    }


def enqueue(store: Store, store_url: str, req: StepRequest, conn, job: str | None = None) -> Queued:
    """Announce the step in the store, then hand it to RQ; returns at once."""
    from rq import Queue

    job = job or uuid.uuid4().hex[:12]
    payload = payload_of(store_url, req, job)
    if store.on_event is None:  # this store's events go to the live stream too
        store.on_event = StreamSink(conn, store_url)
    name = queue_of(req.params.backend)
    store.append_event(
        req.session,
        "queued",
        job=job,
        queue=name,
        parent=req.target.parent,
        branch=req.target.branch,
        params=payload["params"],
        request=payload,
    )
    Queue(name, connection=conn).enqueue(
        "exquisite_store.core.queue.run",
        payload,
        job_id=job,
        job_timeout=JOB_TIMEOUT_S,
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
    )
    return Queued(job, name, req.session)


def request_of(store: Store, payload: dict[str, Any]) -> StepRequest:
    """The step a payload describes, checked again against the store as it is now."""
    if payload.get("repair"):
        return repair_request(
            store,
            payload["session"],
            payload["parent"],
            payload["params"],
            width_px=int(payload["repair"]),
            prompt=payload.get("prompt") or "",
            branch=payload.get("branch"),
            stage=payload.get("stage"),
            fresh=bool(payload.get("fresh")),
        )
    return step_request(
        store,
        payload["session"],
        payload["params"],
        prompt=payload.get("prompt") or "",
        parent=payload.get("parent"),
        branch=payload.get("branch"),
        stage=payload.get("stage"),
        fresh=bool(payload.get("fresh")),
    )


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """The RQ job: run one queued step in this worker (``exq worker``)."""
    from rq import get_current_job

    conn = get_current_job().connection
    store = open_url(payload["store"])
    session, job = payload["session"], payload["job"]
    done = committed_by(store, session, job)
    if done:  # run before (a retry of a job that did commit): nothing to do again
        return {"step_ids": done, "again": True}
    keys = _keys(payload["store"], job, session)
    store.on_event = StreamSink(conn, payload["store"])
    if conn.exists(keys["cancel"]):  # cancelled while it waited: nothing was done
        exc = Cancelled("cancelled before it started; nothing was done")
        store.append_event(session, "failed", job=job, kind=exc.kind, message=exc.message)
        return {"failed": exc.kind, "message": exc.message}
    cancel = threading.Event()
    with heartbeat(conn, keys, cancel):
        try:
            with as_author(payload.get("author") or ""):
                out = grow(store, request_of(store, payload), job=job, cancel=cancel)
        except ExqError as exc:  # recorded by the step as an attempt and a failed event
            return {"failed": exc.kind, "message": exc.message}
    return {"step_ids": out.step_ids, "attempt_ids": out.attempt_ids, "staged": out.staged}


@contextlib.contextmanager
def heartbeat(conn, keys: dict[str, str], cancel: threading.Event) -> Iterator[None]:
    """Keep ``alive`` set while the body runs; a ``cancel`` key sets ``cancel``."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a lost beat is retried; reap waits a TTL
                conn.set(keys["alive"], "1", ex=HEARTBEAT_TTL_S)
                if conn.exists(keys["cancel"]):
                    cancel.set()
            stop.wait(HEARTBEAT_S)

    conn.set(keys["alive"], "1", ex=HEARTBEAT_TTL_S)
    thread = threading.Thread(target=beat, name="exq-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        with contextlib.suppress(Exception):
            conn.delete(keys["alive"])


def cancel(conn, store_url: str, job: str) -> None:
    """Ask a queued job to stop, wherever it is.

    A waiting one never starts (its worker says so in the store); a running one stops
    at its next phase (its heartbeat sees the request).
    """
    conn.set(_keys(store_url, job)["cancel"], "1", ex=24 * 3600)


class StreamSink:
    """Publishes each event, once it is in the store, to the session's Redis Stream.

    The entry's id is the event's sequence number (``<seq>-0``), so a reader resumes
    from the store's numbering; an event published out of order (two writers on one
    session) is refused by Redis and shows as a gap, which readers fill from the store.
    """

    def __init__(self, conn, store_url: str) -> None:
        self.conn, self.store_url = conn, store_url

    def __call__(self, session: str, seq: int, line: bytes) -> None:
        """XADD the event as the store holds it; a lost publish costs only liveness."""
        with contextlib.suppress(Exception):
            self.conn.xadd(
                _keys(self.store_url, session=session)["stream"],
                {"line": line},
                id=f"{seq}-0",
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )


def read_stream(
    conn, store_url: str, session: str, after: int, block_ms: int
) -> tuple[list[dict[str, Any]], bool]:
    """Events numbered above ``after`` from the session's stream, waiting up to ``block_ms``.

    Returns the events (decoded store lines, in order) and whether they follow on
    from ``after`` without a gap; after a gap (a trimmed stream, a lost publish, a
    restarted Redis) read the rest from the store.
    """
    key = _keys(store_url, session=session)["stream"]
    got = conn.xread({key: f"{after}-0"}, block=block_ms, count=1000)
    out: list[dict[str, Any]] = []
    expect = after + 1
    for _key, entries in got or []:
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[0])
            if seq != expect:
                return out, False
            out.append(json.loads(fields[b"line"]))
            expect += 1
    return out, True


def reap(store: Store, store_url: str, conn) -> int:
    """Record queued jobs that started, stopped beating and never finished as abandoned."""
    n = 0
    for session in store.refs.sessions():
        for job, st in job_states(store, session).items():
            if st["state"] != "running" or not _queued(store, session, job):
                continue
            if conn.exists(_keys(store_url, job)["alive"]):
                continue
            moved = committed_by(store, session, job)
            if moved:  # its ref moved before it died: it committed
                store.append_event(session, "succeeded", job=job, step_ids=moved, recovered=True)
                continue
            n += _abandon(store, session, job, st)
    return n


def _queued(store: Store, session: str, job: str) -> dict[str, Any] | None:
    for ev in store.events(session):
        if ev.type == "queued" and ev.data.get("job") == job and "queue" in ev.data:
            return ev.data
    return None


def _abandon(store: Store, session: str, job: str, st: dict[str, Any]) -> int:
    queued = _queued(store, session, job) or {}
    exc = TransientBackendError("abandoned: the worker running this step stopped beating")
    attempt = Attempt(
        author=(queued.get("request") or {}).get("author") or UNSET,  # whose job it was
        session=session,
        parent=st.get("parent") or store.session(session).root,
        branch=st.get("branch") or "",
        created_ms=store.clock_ms(),
        failure_kind=exc.kind,
        message=exc.message,
        details={
            "job": job,
            "phase": st.get("phase", ""),
            "queue_request": json.dumps(queued.get("request") or {}, sort_keys=True),
        },
    )
    aid = store.record_attempt(attempt)
    store.append_event(
        session, "failed", job=job, attempt_id=aid, kind=exc.kind, message=exc.message
    )
    return 1


def requeue(store: Store, store_url: str, attempt_id: str, conn) -> Queued:
    """Run an abandoned queued job again, with the same seed: a paid answer is reused."""
    att = store.objects.get_manifest(attempt_id, Attempt)
    raw = att.details.get("queue_request")
    if not raw:
        raise UserError(f"attempt {attempt_id[:12]} was not a queued job")
    payload = json.loads(raw)
    req = request_of(store, payload)
    return enqueue(store, store_url, req, conn)


class QueueJobs:
    """The viewer's job runner when steps go to RQ workers (``exq serve --queue``).

    The same verbs as ``core.Jobs``: ``submit`` (Busy beyond ``max_waiting`` steps
    waiting in the queue) and ``cancel``.
    """

    def __init__(self, store: Store, store_url: str, conn, max_waiting: int = 16) -> None:
        self.store, self.store_url, self.conn = store, store_url, conn
        self.max_waiting = max_waiting
        store.on_event = StreamSink(conn, store_url)

    def submit(self, req: StepRequest) -> str:
        """Queue a step for a worker; returns its job id at once."""
        from rq import Queue

        waiting = Queue(queue_of(req.params.backend), connection=self.conn).count
        if waiting >= self.max_waiting:
            raise Busy(
                f"{waiting} steps are waiting for a worker (at most {self.max_waiting}); "
                "try again when one has started"
            )
        return enqueue(self.store, self.store_url, req, self.conn).job

    def retry(self, attempt_id: str) -> Queued | None:
        """An abandoned queued job's very same request, queued again (None: not one)."""
        att = self.store.objects.get_manifest(attempt_id, Attempt)
        if not att.details.get("queue_request"):
            return None
        return requeue(self.store, self.store_url, attempt_id, self.conn)

    def cancel(self, job: str) -> bool:
        """Ask a queued job to stop, wherever it runs; False if this store never queued it."""
        known = any(
            ev.type == "queued" and ev.data.get("job") == job
            for session in self.store.refs.sessions()
            for ev in self.store.events(session)
        )
        if known:
            cancel(self.conn, self.store_url, job)
        return known


def worker(conn, queues: list[str], *, burst: bool = False, name: str | None = None) -> None:
    """Run queued steps until stopped (``burst``: until the queues are empty)."""
    from rq import Queue, SimpleWorker

    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        raise UserError(f"unknown queue {unknown[0]!r}: the queues are {', '.join(QUEUES)}")
    qs = [Queue(q, connection=conn) for q in queues]
    SimpleWorker(qs, connection=conn, name=name).work(burst=burst, with_scheduler=False)


def is_terminal(state: str) -> bool:
    """Whether a job state is final."""
    return state in TERMINAL
