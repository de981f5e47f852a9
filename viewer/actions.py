"""Everything that changes the store: new session, extend, branch, set head, retry."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    request,
    stream_with_context,
)

from exquisite_store import imageio
from exquisite_store.errors import AlreadyExists, BranchMoved, ConfigError, UserError
from exquisite_store.ids import check_id
from exquisite_store.manifests import Attempt
from exquisite_store.pipeline import config
from exquisite_store.pipeline.step import run_step
from exquisite_store.pipeline.targets import resolve_target
from exquisite_store.store.refs import check_name
from viewer.jobs import get_jobs, job_states
from viewer.web import get_store, href, wants_json

bp = Blueprint("actions", __name__)
INT_FIELDS = ("extension_px", "overlap_px", "context_px", "n", "seed")
STR_FIELDS = ("direction", "seam", "immutable_policy", "backend", "model", "quality")


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


def step_params(form: dict[str, Any]) -> dict[str, Any]:
    """Step parameters from a form; ConfigError names a malformed field."""
    out: dict[str, Any] = {}
    for name in INT_FIELDS:
        value = form.get(name)
        if value in (None, ""):
            continue
        try:
            out[name] = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                f"{name} must be a whole number, not {str(value)[:40]!r}", field=name
            ) from None
    for name in STR_FIELDS:
        value = form.get(name)
        if value not in (None, ""):
            out[name] = str(value)
    return out


def _prompt(form: dict[str, Any]) -> str:
    return config.check_prompt(str(form.get("prompt") or ""))


def _done(location: str, payload: dict[str, Any], status: int = 200):
    if wants_json():
        return jsonify(payload), status
    return redirect(location, code=303)


@bp.post("/-/new")
def new_session():
    """A session from an uploaded start image or a fixture."""
    store = get_store()
    form = request.form
    name = check_name(form.get("name", ""), "session")
    upload = request.files.get("image")
    max_px = int(current_app.config["MAX_UPLOAD_PIXELS"])
    if upload is not None and upload.filename:
        arr = imageio.load_file_bytes(upload.read(), max_pixels=max_px, what="the upload")
        source = upload.filename
    elif form.get("fixture"):
        fixture = check_name(form["fixture"], "fixture")
        from exquisite_store.cli_steps import FIXTURES

        path = FIXTURES / fixture
        if not path.is_file():
            raise UserError(f"no fixture {fixture!r}")
        arr = imageio.read_image_file(str(path), max_pixels=max_px)
        source = fixture
    else:
        raise UserError("send a start image (field 'image') or a fixture name")
    budget = None
    if form.get("budget"):
        from exquisite_store.cli_cost import usd_to_micro

        budget = usd_to_micro(form["budget"])
    _, root = store.create_session(
        name,
        arr,
        title=form.get("title", "")[:200],
        source_name=source[:200],
        budget_micro_usd=budget,
    )
    return _done(href("session", name), {"session": name, "root": root}, 201)


@bp.post("/s/<name:name>/extend")
def extend(name: str):
    """Start a step in the background; progress arrives over SSE."""
    store = get_store()
    form = _form()
    params = step_params(form)
    sess = store.session(name)
    config.merge(sess.defaults, params)  # 400 now, not later in the worker
    parent = form.get("parent") or None
    if parent:
        check_id(str(parent))
    branch = form.get("branch") or None
    resolve_target(store, name, parent, branch)
    prompt = _prompt(form)
    # what only the plan knows (overlap vs canvas, model, quality): a dry run writes nothing
    run_step(store, name, parent=parent, branch=branch, prompt=prompt, dry_run=True, **params)
    job = get_jobs().submit(name, parent=parent, branch=branch, prompt=prompt, params=params)
    return _done(href("session", name) + f"?job={job}", {"job": job, "session": name}, 202)


@bp.get("/s/<name:name>/estimate.json")
def estimate(name: str):
    """What a step would send and cost (a dry run: nothing called or written)."""
    store = get_store()
    form = request.args.to_dict()
    params = step_params(form)
    parent = form.get("parent") or None
    if parent:
        check_id(parent)
    out = run_step(
        store,
        name,
        parent=parent,
        branch=form.get("branch") or None,
        prompt=_prompt(form),
        dry_run=True,
        **params,
    )
    return jsonify(out.preview)


@bp.post("/s/<name:name>/branch")
def new_branch(name: str):
    """A new branch at a step."""
    store = get_store()
    form = _form()
    branch = check_name(str(form.get("branch", "")), "branch")
    step_id = check_id(str(form.get("step", "")))
    if store.step(step_id).session != name:
        raise UserError("that step belongs to another session")
    try:
        store.refs.update(name, branch, None, step_id, "branch: created in the viewer")
    except BranchMoved:
        raise AlreadyExists(f"branch {branch!r} already exists") from None
    return _done(href("step", step_id), {"branch": branch, "step": step_id}, 201)


@bp.post("/s/<name:name>/branch/delete")
def delete_branch(name: str):
    """Drop a branch (e.g. a candidate you did not pick); its steps stay in the reflog."""
    store = get_store()
    form = _form()
    branch = check_name(str(form.get("branch", "")), "branch")
    sid = store.refs.head(name, branch)
    store.refs.delete(name, branch, sid, "branch: dropped in the viewer")
    return _done(href("session", name), {"deleted": branch, "was": sid})


@bp.post("/s/<name:name>/head")
def set_head(name: str):
    """Move a branch to a step (its old value stays in the reflog) and make it HEAD's."""
    store = get_store()
    form = _form()
    branch = check_name(str(form.get("branch") or store.refs.current_branch(name)), "branch")
    step_id = check_id(str(form.get("step", "")))
    if store.step(step_id).session != name:
        raise UserError("that step belongs to another session")
    old = store.refs.branches(name).get(branch)
    if old != step_id:
        store.refs.update(name, branch, old, step_id, "set head in the viewer")
    store.refs.set_current_branch(name, branch)
    return _done(href("step", step_id), {"branch": branch, "step": step_id})


@bp.post("/attempt/<oid:attempt_id>/retry")
def retry(attempt_id: str):
    """Run a failed attempt's recipe again from its parent (a fresh seed)."""
    store = get_store()
    att = store.objects.get_manifest(attempt_id, Attempt)
    if att.recipe is None or att.parent is None:
        raise UserError("this attempt failed before it had a recipe; start a new step instead")
    r = att.recipe
    params = {
        "direction": r.direction,
        "extension_px": r.extension_px,
        "overlap_px": r.overlap_px,
        "immutable_policy": r.immutable_policy,
        "seam": r.seam,
        "backend": r.backend,
        "model": r.model,
        "quality": r.quality,
        "n": r.n,
    }
    branches = store.refs.branches(att.session)
    branch = att.branch if branches.get(att.branch) == att.parent else None
    prompt = store.objects.get_text(r.prompt_id) if store.objects.has(r.prompt_id) else ""
    job = get_jobs().submit(
        att.session, parent=att.parent, branch=branch, prompt=prompt, params=params
    )
    return _done(
        href("session", att.session) + f"?job={job}", {"job": job, "session": att.session}, 202
    )


@bp.get("/-/jobs/<name:name>.json")
def jobs(name: str):
    """Every job of a session and its state (survives reloads: read from the event log)."""
    store = get_store()
    store.session(name)
    return jsonify(job_states(store, name))


@bp.get("/-/events/<name:name>")
def events(name: str):
    """Server-Sent Events from the session's event log; resumes at ``Last-Event-ID``."""
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

    def stream():
        nonlocal after
        yield "retry: 1000\n\n"
        deadline = time.monotonic() + min(max(limit_s, 0.0), 60.0)
        while True:
            for ev in store.events(name, after):
                after = ev.seq
                payload = {"seq": ev.seq, "type": ev.type, "time_ms": ev.time_ms, **ev.data}
                yield f"id: {ev.seq}\nevent: {ev.type}\ndata: {json.dumps(payload)}\n\n"
            if once or time.monotonic() > deadline:
                return
            yield ": keep-alive\n\n"
            time.sleep(0.3)

    resp = Response(stream_with_context(stream()), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
