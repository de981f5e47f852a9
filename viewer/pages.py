"""The pages and their ``.json`` twins, each built from one context function."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, render_template, request

from exquisite_store.errors import NotFound
from exquisite_store.ids import check_id
from viewer import canvas_view, contexts, grow, panels, short_ids
from viewer.web import get_store, page_options

bp = Blueprint("pages", __name__)
MAX_COMPARE = 8


def _page(template: str, ctx: dict, json: bool):
    return jsonify(ctx) if json else render_template(template, **ctx)


@bp.get("/")
def index(json: bool = False):
    """Sessions with thumbnails, branch and step counts, spend."""
    return _page("sessions.html", contexts.sessions_context(get_store(), page_options()), json)


@bp.get("/s/<name:name>")
def session_page(name: str, json: bool = False):
    """The step tree of a session and the canvas of the selected step (HEAD's by default).

    Live (not in an export): with its running jobs and history.
    """
    ctx = contexts.session_context(get_store(), name, page_options())
    if not current_app.config.get("EXPORT"):
        ctx.update(panels.live_panels(get_store(), name))
        ctx["plans"] = grow.grow_panel(get_store(), name, current_app.extensions.get("exq_plans"))
    if not json:
        ctx["canvas_view"] = _canvas_view(name)
    return _page("session.html", ctx, json)


def _canvas_view(name: str) -> dict:
    export = bool(current_app.config.get("EXPORT"))
    step = None if export else request.args.get("step") or None
    return canvas_view.canvas_context(get_store(), name, step, page_options(), staged=not export)


@bp.get("/s/<name:name>/canvas.json")
def canvas_json(name: str):
    """The canvas view of a step (``?step=``; HEAD's by default): pyramid, bands, staging."""
    return jsonify(_canvas_view(name))


@bp.get("/step/<oid:step_id>")
def step_page(step_id: str, json: bool = False):
    """One step: canvas, prompt, recipe, scores, cost, report, parent and children."""
    return _page("step.html", contexts.step_context(get_store(), step_id, page_options()), json)


@bp.get("/attempt/<oid:attempt_id>")
def attempt_page(attempt_id: str, json: bool = False):
    """A failed attempt and its reason."""
    return _page("attempt.html", contexts.attempt_context(get_store(), attempt_id), json)


def parse_ids(text: str) -> list[str]:
    """Step ids from ``a,b,c`` (validated, at most MAX_COMPARE, no duplicates)."""
    ids = [s for s in (text or "").split(",") if s]
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise NotFound(f"compare takes 2 to {MAX_COMPARE} step ids")
    out = []
    for s in ids:
        if not short_ids.SHORT_RE.match(s):
            check_id(s)
        if s not in out:
            out.append(s)
    return out


@bp.get("/compare")
def compare_page(json: bool = False):
    """Two or more steps side by side, slider, flip-book, diff."""
    ids = parse_ids(request.args.get("ids", ""))
    expanded = short_ids.compare_query(ids)
    if expanded is not None:  # a short id: the page of the full ids
        return redirect(f"{request.path}?{expanded}", code=302)
    ctx = contexts.compare_context(get_store(), ids, page_options())
    if not json and not current_app.config.get("EXPORT"):
        ctx.update(canvas_view.compare_zoom(get_store(), ctx["items"]))
    return _page("compare.html", ctx, json)


@bp.get("/s/<name:name>/gallery")
def gallery_page(name: str, json: bool = False):
    """Each branch head's final canvas, big."""
    return _page("gallery.html", contexts.gallery_context(get_store(), name, page_options()), json)


# Each page's JSON twin: same view, same context, its own endpoint (so url_for of the
# page never builds the twin).
for rule, view in (
    ("/index.json", index),
    ("/s/<name:name>.json", session_page),
    ("/step/<oid:step_id>.json", step_page),
    ("/attempt/<oid:attempt_id>.json", attempt_page),
    ("/compare.json", compare_page),
    ("/s/<name:name>/gallery.json", gallery_page),
):
    bp.add_url_rule(rule, f"{view.__name__}_json", view, defaults={"json": True})
