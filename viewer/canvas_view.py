"""The workspace's canvas view: a step's canvas as a pyramid, its steps' bands, the staging area.

A context like the pages' (the store and the page options as arguments, never Flask's
app): the session page embeds it and ``/s/NAME/canvas.json`` serves it, so the script
that draws the canvas gets every number from the server.
"""

from __future__ import annotations

from typing import Any

from exquisite_store import core
from exquisite_store.authorship import shown
from exquisite_store.core.annotations import session_notes
from exquisite_store.errors import NotFound
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.repair import recipe_label, repaired_band
from exquisite_store.ids import short
from exquisite_store.manifests import Canvas, Step
from exquisite_store.money import format_usd
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect
from viewer.auth import show_private
from viewer.contexts import DEFAULT, PageOptions, branches_in_scope
from viewer.pyramid import top_level
from viewer.web import href

#: a band's prompt is shown up to this many characters (the step page has it whole)
PROMPT_SHOWN = 240


def canvas_info(store: Store, canvas_id: str) -> dict[str, Any]:
    """Where a canvas lies on the plane and where its pyramid's tiles are."""
    canvas = store.objects.get_manifest(canvas_id, Canvas)
    rect = canvas_rect(canvas)
    return {
        "id": canvas_id,
        "x": rect.x,
        "y": rect.y,
        "width": rect.w,
        "height": rect.h,
        "tile_size": canvas.tile_size,
        "top": top_level(rect, canvas.tile_size),
        "tiles": href("pyramid", canvas_id),
    }


def band_rect(parent: Rect, child: Rect, direction: str) -> Rect:
    """The pixels a step added: its canvas minus its parent's, on the plane."""
    if direction == "right":
        return Rect(parent.right, child.y, child.right - parent.right, child.h)
    if direction == "left":
        return Rect(child.x, child.y, parent.x - child.x, child.h)
    if direction == "down":
        return Rect(child.x, parent.bottom, child.w, child.bottom - parent.bottom)
    return Rect(child.x, child.y, child.w, parent.y - child.y)


def describe(store: Store, sid: str, step: Step, parent: Canvas, canvas: Canvas) -> dict[str, Any]:
    """What hovering a step's band shows, and where the band is."""
    r = step.recipe
    assert r is not None
    private = show_private()  # a share link made without --private shows neither
    prompt = store.objects.get_text(r.prompt_id) if private else ""
    cost = step.response.cost_micro_usd if step.response else 0
    return {
        "step": sid,
        "short": short(sid),
        "href": href("step", sid),
        "rect": list(
            repaired_band(r.direction, r.repair.seam_at, canvas_rect(canvas), r.repair.width_px)
            if r.repair
            else band_rect(canvas_rect(parent), canvas_rect(canvas), r.direction)
        ),
        "direction": r.direction,
        "px": r.extension_px,
        "prompt": prompt[:PROMPT_SHOWN] + ("…" if len(prompt) > PROMPT_SHOWN else ""),
        # candidate i of a step was asked with seed + i
        "seed": r.seed + (step.response.candidate if step.response else 0),
        "backend": r.backend,
        "cost": format_usd(cost) if private else "",
        "seam": step.result.scores.seam_permille,
        "author": shown(step.author),
    }


def bands(store: Store, step_id: str) -> list[dict[str, Any]]:
    """The band of every step that made a canvas, oldest first."""
    chain = [(sid, st, store.canvas(st)) for sid, st in store.history(step_id)]
    out = []
    for (sid, st, canvas), (_, _, parent) in zip(chain, chain[1:], strict=False):
        out.append(describe(store, sid, st, parent, canvas))
    return out[::-1]


def staging(store: Store, session: str) -> list[dict[str, Any]]:
    """Each job's staged candidates, with the canvas and band of each."""
    groups = []
    for g in core.staged(store, session):
        parent = store.canvas(store.step(g.parent))
        items = []
        for c in g.candidates:
            st = store.step(c.step)
            items.append(
                {
                    "k": c.candidate,
                    **describe(store, c.step, st, parent, store.canvas(st)),
                    "canvas": canvas_info(store, st.result.canvas_id),
                }
            )
        groups.append({"branch": g.branch, "job": g.job, "parent": g.parent, "candidates": items})
    return groups


def canvas_context(
    store: Store,
    session: str,
    step: str | None = None,
    opts: PageOptions = DEFAULT,
    *,
    staged: bool = True,
) -> dict[str, Any]:
    """The canvas of ``step`` (HEAD's by default), its bands, and the staging area."""
    store.session(session)
    branches = branches_in_scope(store, session, opts)
    current = store.refs.current_branch(session)
    following = step is None
    if step is None:
        sid = branches.get(current) or next(iter(sorted(branches.values())), None)
        if sid is None:
            raise NotFound(f"session {session!r} has no branch to show")
    else:
        sid = store.resolve_step(step, session)
    st = store.step(sid)
    if st.session != session and not store.belongs(sid, session):
        raise NotFound(f"step {short(sid)} is not a step of {session!r}")
    r = st.recipe
    return {
        "session": session,
        "step": sid,
        "short": short(sid),
        "href": href("step", sid),
        "following_head": following,
        "current_branch": current,
        "heads": sorted(b for b, s in branches.items() if s == sid),
        "what": recipe_label(r),
        "canvas": canvas_info(store, st.result.canvas_id),
        "bands": bands(store, sid),
        "staged": staging(store, session) if staged else [],
        "starred": bool(getattr(session_notes(store, session).get(sid), "starred", False)),
    }


def compare_zoom(store: Store, items: list[dict[str, Any]]) -> dict[str, Any]:
    """What the deep-zoom compare adds: each step's pyramid, the recipe fields, HEAD's branch."""
    session = items[0]["session"]
    current = store.refs.current_branch(session)
    keys: list[str] = []
    for it in items:
        for k in it["recipe"] or {}:
            if k not in keys and k != "params":
                keys.append(k)
    return {
        "zoom_items": [
            {
                "id": it["id"],
                "short": it["short"],
                "canvas": canvas_info(store, store.step(it["id"]).result.canvas_id),
            }
            for it in items
        ],
        "recipe_keys": keys,
        "current_branch": current,
        "current_head": store.refs.branches(session).get(current, ""),
    }
