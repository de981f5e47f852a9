"""Which part of a canvas a page shows: its tiles over a window, its step's bands.

Pure reads of the store (no Flask): the step and compare contexts place tiles and
bands with these, and an export keeps its pages small with a window around what
changed (``contexts.PageOptions.window``).
"""

from __future__ import annotations

from typing import Any

from exquisite_store.geometry.frames import ANY
from exquisite_store.geometry.plan import plan_step
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.repair import repaired_band
from exquisite_store.manifests import Canvas, Step
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect, iter_tiles
from viewer.derived_images import diff_rect


def plan_rects(store: Store, step: Step) -> tuple[Rect, Rect] | None:
    """The new band and the seam zone of a step, on the plane (None for a root)."""
    if step.recipe is None or step.parent is None:
        return None
    parent = store.canvas(store.step(step.parent))
    r = step.recipe
    if r.repair:  # the repaired band, on a canvas of the parent's size; no seam zone
        rect = canvas_rect(parent)
        band = repaired_band(r.direction, r.repair.seam_at, rect, r.repair.width_px)
        return band, Rect(band.x, band.y, 0, 0)
    plan = plan_step(
        canvas_rect(parent),
        r.direction,
        r.extension_px,
        r.overlap_px,
        r.context_px,
        ANY,
        r.immutable_policy,
    )
    return plan.gen_rect, plan.seam_rect


def bands(store: Store, step: Step, origin: Rect | None = None) -> dict[str, Any]:
    """Where the new band and the seam zone of a step lie, from ``origin`` (its canvas)."""
    rects = plan_rects(store, step)
    if rects is None:
        return {}
    origin = canvas_rect(store.canvas(step)) if origin is None else origin
    seam = rects[1]
    return {
        "gen": list(rects[0].relative_to(origin)),
        "seam": list(seam.relative_to(origin)) if seam.w and seam.h else [],
    }


def tiles(store: Store, canvas: Canvas, view: Rect) -> list[dict[str, Any]]:
    """The tiles meeting ``view``, each placed from the canvas's top-left corner."""
    t = canvas.tile_size
    return [
        {
            "id": oid,
            "x": col * t - canvas.x if col * t > canvas.x else 0,
            "y": row * t - canvas.y if row * t > canvas.y else 0,
        }
        for col, row, oid in iter_tiles(store.objects, canvas, view)
    ]


def grow(rect: Rect, by: int, inside: Rect) -> Rect:
    """``rect`` widened by ``by`` on every side, cut to ``inside``."""
    return Rect(rect.x - by, rect.y - by, rect.w + 2 * by, rect.h + 2 * by).intersect(inside)


#: how far (px) a compare page shows beyond where its steps differ, when windowed
COMPARE_CONTEXT = 128


def compare_window(store: Store, steps: list[Step], window: int | None = None) -> Rect:
    """The part of the plane a compare page shows, on the plane.

    All of the steps' canvases (``window`` None: the viewer); else only where they
    differ (the tiles whose ids differ, and each step's new band) and a margin.
    """
    canvases = [store.canvas(s) for s in steps]
    whole = Rect(0, 0, 0, 0)
    for c in canvases:
        whole = whole.union(canvas_rect(c))
    if window is None:
        return whole
    focus = Rect(0, 0, 0, 0)
    first = canvas_rect(canvases[0])
    ids = [s.result.canvas_id for s in steps]
    for c, cid in zip(canvases[1:], ids[1:], strict=True):
        focus = focus.union(diff_rect(store, ids[0], cid))
        focus = focus.union(outside(first, canvas_rect(c))).union(outside(canvas_rect(c), first))
    for s in steps:
        rects = plan_rects(store, s)
        if rects is not None:
            focus = focus.union(rects[0])
    if focus.empty:
        focus = Rect(whole.x, whole.y, min(whole.w, window), min(whole.h, window))
    return grow(focus, min(COMPARE_CONTEXT, window), whole)


def outside(r: Rect, other: Rect) -> Rect:
    """The bounding box of the pixels of ``r`` that ``other`` does not cover."""
    inner = r.intersect(other)
    if inner.empty:
        return r
    out = Rect(0, 0, 0, 0)
    for strip in (
        Rect(r.x, r.y, inner.x - r.x, r.h),
        Rect(inner.right, r.y, r.right - inner.right, r.h),
        Rect(r.x, r.y, r.w, inner.y - r.y),
        Rect(r.x, inner.bottom, r.w, r.bottom - inner.bottom),
    ):
        out = out.union(strip)
    return out
