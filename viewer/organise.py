"""Annotate, search and clean up: star/tag/note a step, the tree's filter, the clean-up page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from exquisite_store.core import annotations as notes
from exquisite_store.core import cleanup, search, usage
from exquisite_store.errors import UserError
from exquisite_store.manifests import to_builtins
from viewer.contexts import session_steps
from viewer.web import get_store, href, page_options, wants_json

bp = Blueprint("organise", __name__)

_YES, _NO = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


def _fields() -> dict[str, Any]:
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise UserError("the request body is not a JSON object")
        return body
    return request.form.to_dict()


def _words(value: Any) -> tuple[str, ...]:
    return tuple(w for w in str(value or "").replace(",", " ").split() if w)


def _done(location: str, payload: dict[str, Any]):
    if wants_json():
        return jsonify(payload), 200, {"Location": location}
    return redirect(location, code=303)


@bp.post("/s/<name:name>/annotate")
def annotate(name: str):
    """Star or unstar a step (``star`` 1/0), add ``tag`` / remove ``untag`` words, set ``note``."""
    form = _fields()
    star = str(form.get("star", "")).lower()
    if star and star not in _YES + _NO:
        raise UserError(f"star must be 1 or 0, not {star!r:.20}")
    done = notes.annotate(
        get_store(),
        name,
        str(form.get("step", "")),
        star=None if not star else star in _YES,
        add_tags=_words(form.get("tag")),
        remove_tags=_words(form.get("untag")),
        note=str(form["note"]) if "note" in form else None,
    )
    payload = {"step": done.step, **to_builtins(done.note)}
    return _done(href("step", done.step), payload)


def parse_args(args: Any) -> search.Query:
    """The tree filter's query string as a search Query (UserError names a bad field)."""
    return search.parse_query(
        prompt=args.get("prompt"),
        tag=args.get("tag"),
        starred=str(args.get("starred", "")).lower() in _YES,
        backend=args.get("backend"),
        seam_above=args.get("seam_above"),
        cost_above=args.get("cost_above"),
        author=args.get("author"),
    )


@bp.get("/s/<name:name>/find.json")
def find(name: str):
    """The ids of the steps on the session's branches (and staged) that match the query.

    The same steps as ``exq find`` searches: off-branch steps are never a match.
    """
    store = get_store()
    query = parse_args(request.args)
    steps = session_steps(store, name, page_options())
    found = search.find(store, name, query, steps=steps)
    return jsonify(
        {"session": name, "ids": [f.id for f in found], "count": len(found), "of": len(steps)}
    )


def cleanup_context(name: str) -> dict[str, Any]:
    """What the clean-up page shows: bytes per branch, keep-starred's verdicts, gc's list."""
    store = get_store()
    store.session(name)
    (row,) = usage.disk_usage(store, name)
    verdicts = cleanup.starred_verdicts(store, name)
    rep, doomed = cleanup.gc_preview(store)
    return {
        "session": name,
        "usage": {"bytes": row.usage.bytes, "unique": row.usage.unique_bytes},
        "branches": [
            {
                "branch": v.branch,
                "head": v.head,
                "keep": v.keep,
                "why": v.why,
                "bytes": row.branches[v.branch].bytes,
                "unique": row.branches[v.branch].unique_bytes,
                "shared": row.branches[v.branch].shared_bytes,
            }
            for v in verdicts
        ],
        "drop": [v.branch for v in verdicts if not v.keep],
        "gc": {
            "reachable": rep.reachable,
            "young": rep.young,
            "bytes": rep.bytes_removed,
            "objects": [
                {"id": d.id, "ext": d.ext, "bytes": d.bytes, "what": d.what, "step": d.step}
                for d in doomed
            ],
        },
    }


@bp.get("/s/<name:name>/cleanup")
def cleanup_page(name: str, json: bool = False):
    """Before anything is deleted: what each branch holds, what would go, with thumbnails."""
    ctx = cleanup_context(name)
    return jsonify(ctx) if json else render_template("cleanup.html", **ctx)


@bp.get("/s/<name:name>/cleanup.json")
def cleanup_json(name: str):
    """The clean-up page's JSON twin."""
    return cleanup_page(name, json=True)


@bp.post("/s/<name:name>/keep-starred")
def keep_starred(name: str):
    """Drop the branches with nothing of their own starred (their reflogs keep the steps)."""
    dropped = cleanup.keep_starred(get_store(), name)
    return _done(
        url_for("organise.cleanup_page", name=name),
        {"dropped": [{"branch": m.branch, "was": m.old} for m in dropped]},
    )
