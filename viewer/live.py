"""The session page's parts, rendered by the server for a page that refreshes itself.

A page following the session's event stream asks for the parts an event changed
(``/s/NAME/live.json?parts=tree,branches``) and swaps them in: the numbers, labels and
layout come from the same templates and contexts as the page itself.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request

from exquisite_store.errors import UserError
from viewer import contexts, grow, panels
from viewer.web import get_store, page_options

bp = Blueprint("live", __name__)

#: the parts of the session page, each a template, and which context it needs
PARTS = {
    "summary": "page",
    "tree": "page",
    "branches": "page",
    "attempts": "page",
    "jobs": "jobs",
    "history": "history",
    "grow": "grow",
}


def parse_parts(text: str) -> list[str]:
    """The parts asked for (all when none); 400 naming an unknown one."""
    names = [p for p in (text or "").split(",") if p] or list(PARTS)
    unknown = [p for p in names if p not in PARTS]
    if unknown:
        raise UserError(f"no part {unknown[0]!r:.40} (parts: {', '.join(PARTS)})")
    return list(dict.fromkeys(names))


@bp.get("/s/<name:name>/live.json")
def live(name: str):
    """The session's newest event number and the asked-for parts of its page, as HTML."""
    store = get_store()
    names = parse_parts(request.args.get("parts", ""))
    seq = store.last_event_seq(name)  # read first: a later event makes the page ask again
    ctx: dict = {}
    needs = {PARTS[p] for p in names}
    if "page" in needs:
        ctx.update(contexts.session_context(store, name, page_options()))
    else:
        store.session(name)
        ctx["session"] = name
    if "jobs" in needs:
        ctx["jobs"] = panels.jobs_panel(store, name)
    if "grow" in needs:
        ctx["plans"] = grow.grow_panel(store, name, current_app.extensions.get("exq_plans"))
        ctx.setdefault("current_branch", store.refs.current_branch(name))
    if "history" in needs:
        ctx["history"] = panels.history_panel(store, name)
    parts = {p: render_template(f"_{p}.html", **ctx) for p in names}
    extra = {"attempts": len(ctx["attempts"])} if "attempts" in ctx else {}
    return jsonify({"session": name, "seq": seq, "parts": parts, **extra})
