"""Everything that changes the store, each a thin view over one core call."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import msgspec
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    request,
)

from exquisite_store import core
from exquisite_store.core import queue
from exquisite_store.errors import NotFound, UserError
from exquisite_store.pipeline.params import FIELDS
from exquisite_store.store.store import LogLine
from viewer.contexts import candidate_seed
from viewer.jobs import get_jobs, get_queue
from viewer.web import error_response, get_store, href, wants_json

bp = Blueprint("actions", __name__)
#: seconds a page refused a live stream waits before it asks again (it polls meanwhile)
SSE_RETRY_AFTER_S = 5


def _form() -> dict[str, Any]:
    """The request's fields, from a form or a JSON body (400 on malformed JSON)."""
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # nested deeper than the parser goes: not a form anyway
            body = None
        if not isinstance(body, dict):
            raise UserError("the request body is not a JSON object")
        return body
    return request.form.to_dict()


def _text(form: dict[str, Any], key: str) -> str | None:
    """A text field, or None when it is missing or empty."""
    value = form.get(key)
    return None if value in (None, "") else str(value)


def _step_request(name: str, form: dict[str, Any]) -> core.StepRequest:
    """The step a form (or JSON body, or query string) asks for, checked by the core."""
    return core.step_request(
        get_store(),
        name,
        {k: form[k] for k in FIELDS if k in form},
        prompt=str(form.get("prompt") or ""),
        parent=_text(form, "parent"),
        branch=_text(form, "branch"),
    )


def _done(location: str, payload: dict[str, Any], status: int = 200):
    if wants_json():  # a page's script: Location says where the form's result is
        return jsonify(payload), status, {"Location": location}
    return redirect(location, code=303)


@bp.post("/-/new")
def new_session():
    """A session from an uploaded start image or a fixture."""
    form = request.form
    max_px = int(current_app.config["MAX_UPLOAD_PIXELS"])
    upload = request.files.get("image")
    frame = core.parse_frame(form.get("frame"))
    if upload is not None and upload.filename:
        image = core.image_from_bytes(
            upload.read(), upload.filename, max_pixels=max_px, frame=frame
        )
    elif form.get("fixture"):
        image = core.image_from_fixture(form["fixture"], max_pixels=max_px, frame=frame)
    else:
        raise UserError("send a start image (field 'image') or a fixture name")
    start = core.new_session(
        form.get("name", ""), image, title=form.get("title", ""), budget=form.get("budget")
    )
    _, root = core.create_session(get_store(), start)
    return _done(href("session", start.name), {"session": start.name, "root": root}, 201)


@bp.post("/s/<name:name>/extend")
def extend(name: str):
    """Start a step in the background; progress arrives over SSE."""
    req = _step_request(name, _form())
    # what only the plan knows (overlap vs canvas, model, quality): a dry run writes nothing
    core.estimate(get_store(), req)
    job = get_jobs().submit(req)
    return _done(href("session", name) + f"?job={job}", {"job": job, "session": name}, 202)


@bp.post("/s/<name:name>/repair")
def repair(name: str):
    """Repaint a band around a step's seam in the background (a child step of it)."""
    form = _form()
    width = _text(form, "width")
    if width is not None and not width.isdigit():
        raise UserError(f"the repair width is a whole number of pixels, not {width!r:.20}")
    params = {k: form[k] for k in FIELDS if k in form}
    req = core.repair_request(
        get_store(),
        name,
        str(form.get("step", "")),
        params,
        width_px=None if width is None else int(width),
        prompt=str(form.get("prompt") or ""),
        branch=_text(form, "branch"),
    )
    core.estimate(get_store(), req)  # what only the plan knows, before anything is queued
    job = get_jobs().submit(req)
    return _done(href("session", name) + f"?job={job}", {"job": job, "session": name}, 202)


@bp.get("/s/<name:name>/estimate.json")
def estimate(name: str):
    """What a step would send and cost (a dry run: nothing called or written)."""
    return jsonify(core.estimate(get_store(), _step_request(name, request.args.to_dict())))


@bp.post("/s/<name:name>/branch")
def new_branch(name: str):
    """A new branch at a step."""
    form = _form()
    move = core.create_branch(
        get_store(), name, str(form.get("branch", "")), str(form.get("step", ""))
    )
    return _done(href("step", move.new), {"branch": move.branch, "step": move.new}, 201)


@bp.post("/s/<name:name>/branch/delete")
def delete_branch(name: str):
    """Drop a branch (e.g. a candidate you did not pick); its steps stay in the reflog."""
    move = core.drop_branch(get_store(), name, str(_form().get("branch", "")))
    return _done(href("session", name), {"deleted": move.branch, "was": move.old})


@bp.post("/s/<name:name>/head")
def set_head(name: str):
    """Move a branch to a step (its old value stays in the reflog) and make it HEAD's."""
    form = _form()
    move = core.set_head(get_store(), name, str(form.get("step", "")), _text(form, "branch"))
    return _done(href("step", move.new), {"branch": move.branch, "step": move.new})


@bp.post("/s/<name:name>/accept")
def accept(name: str):
    """Move a staged candidate's branch to it; the others of its job leave the staging area."""
    decision = core.accept(get_store(), name, str(_form().get("step", "")))
    get_jobs().cancel(decision.job)  # what the job has not committed yet is not wanted
    payload = {"branch": decision.branch, "step": decision.step, "cleared": decision.cleared}
    return _done(href("session", name), payload)


@bp.post("/s/<name:name>/keep")
def keep(name: str):
    """Make a staged candidate a branch of its own."""
    form = _form()
    decision = core.keep(get_store(), name, str(form.get("step", "")), _text(form, "name"))
    return _done(href("session", name), {"branch": decision.branch, "step": decision.step})


@bp.post("/s/<name:name>/discard")
def discard(name: str):
    """Drop a staged candidate (its step stays in the reflog; undo brings it back)."""
    decision = core.discard(get_store(), name, str(_form().get("step", "")))
    return _done(href("session", name), {"discarded": decision.step, "place": decision.cleared})


@bp.post("/s/<name:name>/undo")
def undo(name: str):
    """Move a ref (``heads/BRANCH`` or a staging place) back where its last move took it from."""
    store = get_store()
    form = _form()
    ref = _text(form, "ref") or f"heads/{store.refs.current_branch(name)}"
    u = core.undo(store, name, ref)
    return _done(href("session", name), {"ref": u.ref, "was": u.was, "now": u.now})


@bp.get("/s/<name:name>/staged.json")
def staged(name: str):
    """The staging area: each job's candidates waiting for a decision."""
    store = get_store()
    groups = core.staged(store, name)
    return jsonify(
        [
            {
                "branch": g.branch,
                "job": g.job,
                "parent": g.parent,
                "candidates": [
                    {"k": c.candidate, "step": c.step, "seed": candidate_seed(store.step(c.step))}
                    for c in g.candidates
                ],
            }
            for g in groups
        ]
    )


@bp.get("/s/<name:name>/history.json")
def history(name: str):
    """A ref's moves, newest first (``?ref=heads/BRANCH``; HEAD's branch by default)."""
    store = get_store()
    ref = request.args.get("ref") or f"heads/{store.refs.current_branch(name)}"
    moves = core.history(store, name, ref)
    return jsonify(
        {
            "ref": ref,
            "moves": [
                {"old": m.old, "new": m.new, "time_ms": m.time_ms, "message": m.message}
                for m in moves
            ],
        }
    )


@bp.post("/attempt/<oid:attempt_id>/retry")
def retry(attempt_id: str):
    """Run a failed attempt's recipe again from its parent (a fresh seed).

    An abandoned queued job (its worker died) goes back to the queue with the very same
    request, so a call its worker had paid for is answered from the run cache.
    """
    jobs = get_jobs()
    queued = jobs.retry(attempt_id) if isinstance(jobs, queue.QueueJobs) else None
    if queued is not None:
        link = href("session", queued.session) + f"?job={queued.job}"
        return _done(link, {"job": queued.job, "session": queued.session}, 202)
    req = core.retry_request(get_store(), attempt_id)
    job = get_jobs().submit(req)
    return _done(
        href("session", req.session) + f"?job={job}", {"job": job, "session": req.session}, 202
    )


@bp.post("/-/jobs/<name:name>/<job>/cancel")
def cancel_job(name: str, job: str):
    """Cancel a waiting or running job of this viewer (a paid answer is still kept)."""
    get_store().session(name)
    if not get_jobs().cancel(job):
        raise NotFound(f"no waiting or running job {job[:40]!r} in this viewer")
    return _done(href("session", name) + f"?job={job}", {"job": job, "cancelled": True}, 202)


@bp.get("/-/jobs/<name:name>.json")
def jobs(name: str):
    """Every job of a session and its state (survives reloads: read from the event log)."""
    store = get_store()
    store.session(name)
    return jsonify(core.job_states(store, name))


@bp.get("/-/events/<name:name>")
def events(name: str):
    """Server-Sent Events from the session's event log; resumes at ``Last-Event-ID``.

    Each stream holds a server thread, so only ``SSE_MAX_STREAMS`` run at once; beyond
    that the answer is 503 with ``Retry-After`` and the page polls ``/-/jobs/NAME.json``.
    """
    store = get_store()
    store.session(name)
    try:
        after = int(request.headers.get("Last-Event-ID") or request.args.get("after") or 0)
    except ValueError:
        after = 0
    once = request.args.get("once") == "1"
    try:
        limit_s = float(request.args.get("for", 25))
    except ValueError:
        limit_s = math.nan
    if math.isnan(limit_s):  # nan never passes the deadline: the stream would never end
        raise UserError("'for' must be a number of seconds")
    slot = StreamSlot(current_app.extensions["exq_sse_slots"])
    if not slot.taken:
        busy = make_response(
            error_response(
                503,
                f"too many live progress streams at once; poll /-/jobs/{name}.json instead",
                retry_after_s=SSE_RETRY_AFTER_S,
            )
        )
        busy.headers["Retry-After"] = str(SSE_RETRY_AFTER_S)
        return busy

    conn, url = get_queue(), current_app.config["EXQ_STORE"]

    def stream():
        nonlocal after
        try:
            yield "retry: 1000\n\n"
            deadline = time.monotonic() + min(max(limit_s, 0.0), 60.0)
            cursor = 0  # the first read takes the whole log, each later one only what is new
            while True:
                if conn is not None:  # workers elsewhere: their events arrive on Redis
                    new = queued_events(conn, url, store, name, after, block_ms=0 if once else 1000)
                else:
                    new, cursor = store.tail_events(name, cursor, after)
                for ev in new:
                    after = ev.seq
                    payload = {"seq": ev.seq, "type": ev.type, "time_ms": ev.time_ms, **ev.data}
                    yield f"id: {ev.seq}\nevent: {ev.type}\ndata: {json.dumps(payload)}\n\n"
                if once or time.monotonic() > deadline:
                    return
                yield ": keep-alive\n\n"
                if conn is None:
                    time.sleep(0.3)
        finally:
            slot.release()

    # a plain generator: it needs no request context (everything it uses is bound above)
    resp = Response(stream(), mimetype="text/event-stream")
    resp.call_on_close(slot.release)  # a stream closed before it started
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


def queued_events(conn, url: str, store, name: str, after: int, block_ms: int) -> list[LogLine]:
    """Events above ``after`` from the session's Redis Stream, or the store after a gap."""
    got, complete = queue.read_stream(conn, url, name, after, block_ms)
    if not complete:  # trimmed, lost or out of order: the store has every event
        return store.events(name, after)
    return [msgspec.convert(e, LogLine) for e in got]


class StreamSlot:
    """One of the app's live-stream slots, taken without waiting, given back exactly once."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self.taken = slots.acquire(blocking=False)

    def release(self) -> None:
        """Give the slot back (a second call does nothing)."""
        with self._lock:
            if self.taken:
                self.taken = False
                self._slots.release()
