"""What the pages show, read from the store: one context function per page.

Each takes the store and the page options as arguments (never Flask's app), so the
viewer, the static export and tests build the same contexts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exquisite_store.core.sessions import MAX_TITLE
from exquisite_store.errors import NotFound
from exquisite_store.fixtures import fixture_names
from exquisite_store.geometry.frames import ANY
from exquisite_store.geometry.plan import plan_step
from exquisite_store.geometry.rect import Rect
from exquisite_store.ids import short
from exquisite_store.manifests import Attempt, Canvas, Step, Validation, to_builtins
from exquisite_store.pipeline.cost import reachable_steps, session_spent
from exquisite_store.pipeline.params import SPECS
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect, iter_tiles
from viewer.derived_images import diff_rect
from viewer.tree import Node, build_tree, layout, walk

STEPS_MEMO = 32  # (session, branch heads) pairs whose reachable steps are remembered


class StepsMemo:
    """Reachable steps remembered per (session, branch heads).

    Manifests never change and refs are the only mutable state, so the same heads
    always reach the same steps. Thread-safe; a result must not be mutated.
    """

    def __init__(self, size: int = STEPS_MEMO) -> None:
        self.size = size
        self._items: OrderedDict[tuple, dict[str, Step]] = OrderedDict()
        self._others: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, session: str, branches: dict[str, str]) -> dict[str, Step]:
        """The steps reachable from ``branches``, computed once per set of heads."""
        key = (session, tuple(sorted(branches.items())))
        with self._lock:
            hit = self._items.get(key)
        if hit is None:
            hit = reachable_steps(store, list(branches.values()))
            with self._lock:
                self._items[key] = hit
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return hit

    def remember(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key`` (whose parts must name everything it reads)."""
        with self._lock:
            hit = self._others.get(key)
        if hit is None:
            hit = make()
            with self._lock:
                self._others[key] = hit
                while len(self._others) > self.size:
                    self._others.popitem(last=False)
        return hit


class RefsSnapshot:
    """A session's refs and attempt log, read once (an export's pages agree with each other).

    Without one, every page reads them again (the live viewer: they move).
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, what: str, session: str, read: Callable[[], Any]) -> Any:
        """``read()`` the first time ``what`` of ``session`` is asked for."""
        key = (what, session)
        with self._lock:
            if key in self._seen:
                return self._seen[key]
        value = read()
        with self._lock:
            return self._seen.setdefault(key, value)


@dataclass(frozen=True)
class PageOptions:
    """How pages are built.

    ``branches``: which branches are in scope (an export may pick some). ``window``:
    a step page shows its canvas only this far (px) around the step's new band, and a
    compare page only around where the steps differ (the export: pages stay small
    however wide the canvas); None shows whole canvases. ``full_canvases``: whether
    every step links a full-canvas PNG (the viewer, ``exq export --full-canvases``)
    or only branch heads do.
    """

    branches: frozenset[str] = frozenset()
    memo: StepsMemo | None = field(default=None, compare=False)
    window: int | None = None
    full_canvases: bool = True
    snapshot: RefsSnapshot | None = field(default=None, compare=False)


def _branches(store: Store, session: str, opts: PageOptions) -> dict[str, str]:
    if opts.snapshot is None:
        return store.refs.branches(session)
    return opts.snapshot.get("branches", session, lambda: store.refs.branches(session))


def _staged(store: Store, session: str, opts: PageOptions) -> dict[str, str]:
    if opts.snapshot is None:
        return store.refs.staged(session)
    return opts.snapshot.get("staged", session, lambda: store.refs.staged(session))


def _attempt_ids(store: Store, session: str, opts: PageOptions) -> tuple[str, ...]:
    def read() -> tuple[str, ...]:
        return tuple(line.id for line in store.attempts(session))

    return read() if opts.snapshot is None else opts.snapshot.get("attempts", session, read)


DEFAULT = PageOptions()


def branches_in_scope(store: Store, session: str, opts: PageOptions = DEFAULT) -> dict[str, str]:
    """The session's branches, or only those an export was asked for."""
    branches = _branches(store, session, opts)
    if not opts.branches:
        return branches
    return {b: s for b, s in branches.items() if b in opts.branches}


def session_steps(
    store: Store, session: str, opts: PageOptions = DEFAULT, scoped: bool = True
) -> dict[str, Step]:
    """Every step reachable from the session's branches and staged candidates.

    The branches are those in scope unless ``scoped`` is False.
    """
    branches = (
        branches_in_scope(store, session, opts) if scoped else _branches(store, session, opts)
    )
    heads = {**branches, **{f"staging/{k}": v for k, v in _staged(store, session, opts).items()}}
    if opts.memo is None:
        return reachable_steps(store, list(heads.values()))
    return opts.memo.get(store, session, heads)


def session_attempts(
    store: Store, session: str, opts: PageOptions = DEFAULT, steps: dict[str, Step] | None = None
) -> dict[str, Attempt]:
    """Every attempt of the session whose parent step is in scope, by id."""
    steps = session_steps(store, session, opts) if steps is None else steps
    out = {}
    for aid in _attempt_ids(store, session, opts):
        att = store.objects.get_manifest(aid, Attempt)
        if att.parent in steps:
            out[aid] = att
    return out


@dataclass(frozen=True)
class Family:
    """Who hangs off whom in a session, indexed once: children, failed tries, heads."""

    children: dict[str, list[dict[str, str]]]
    failed: dict[str, list[dict[str, str]]]
    heads: dict[str, list[str]]


def session_family(store: Store, session: str, opts: PageOptions = DEFAULT) -> Family:
    """The children, failed attempts and branch names of every step in scope.

    Built once per set of heads and attempts (remembered in ``opts.memo``), so a step
    page costs its own children, not a walk over the session.
    """
    branches = branches_in_scope(store, session, opts)
    staged = _staged(store, session, opts)
    tried = _attempt_ids(store, session, opts)

    def make() -> Family:
        steps = session_steps(store, session, opts)
        children: dict[str, list[dict[str, str]]] = {}
        for sid, st in steps.items():
            if st.parent is not None:
                what = f"{st.recipe.direction} +{st.recipe.extension_px}" if st.recipe else ""
                children.setdefault(st.parent, []).append({"id": sid, "what": what})
        failed: dict[str, list[dict[str, str]]] = {}
        for aid, a in session_attempts(store, session, opts, steps).items():
            failed.setdefault(a.parent or "", []).append(
                {"id": aid, "kind": a.failure_kind, "message": a.message}
            )
        heads: dict[str, list[str]] = {}
        for b, sid in sorted(branches.items()):
            heads.setdefault(sid, []).append(b)
        return Family(children, failed, heads)

    if opts.memo is None:
        return make()
    key = ("family", session, tuple(sorted(branches.items())), tuple(sorted(staged.items())), tried)
    return opts.memo.remember(key, make)


def spent(store: Store, session: str, opts: PageOptions = DEFAULT) -> int:
    """What the whole session spent (every branch, even outside an export's scope)."""
    return session_spent(store, session, session_steps(store, session, opts, scoped=False))


def sessions_context(store: Store, opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """The sessions list."""
    rows = []
    for name in store.refs.sessions():
        sess = store.session(name)
        branches = store.refs.branches(name)
        head = branches.get(store.refs.current_branch(name)) or next(iter(branches.values()), None)
        rows.append(
            {
                "name": name,
                "title": sess.title,
                "created_ms": sess.created_ms,
                "branches": len(branches),
                "steps": len(steps := session_steps(store, name, opts)),
                "attempts": len(session_attempts(store, name, opts, steps)),
                "spent_micro_usd": spent(store, name, opts),
                "budget_micro_usd": sess.budget_micro_usd,
                "head": head,
            }
        )
    return {"sessions": rows, "fixtures": fixture_names(), "max_title": MAX_TITLE}


def session_context(store: Store, session: str, opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """The session page: its tree laid out, branches, attempts, spend."""
    sess = store.session(session)
    steps = session_steps(store, session, opts)
    attempts = session_attempts(store, session, opts, steps)
    branches = branches_in_scope(store, session, opts)
    heads: dict[str, list[str]] = {}
    for name, sid in sorted(branches.items()):
        heads.setdefault(sid, []).append(name)
    for place, sid in sorted(_staged(store, session, opts).items()):
        branch, _job, k = place.split("/")
        heads.setdefault(sid, []).append(f"{branch} · staged {k}")
    nodes = []
    for sid, st in steps.items():
        r = st.recipe
        nodes.append(
            Node(
                sid,
                st.parent,
                st.created_ms,
                label={
                    "size": f"{st.result.width}x{st.result.height}",
                    "what": "root" if r is None else f"{r.direction} +{r.extension_px}",
                    "seam": st.result.scores.seam_permille,
                    "cost": st.response.cost_micro_usd if st.response else 0,
                    "heads": heads.get(sid, []),
                },
            )
        )
    for aid, att in attempts.items():
        if att.parent in steps:
            nodes.append(
                Node(
                    aid,
                    att.parent,
                    att.created_ms,
                    failed=True,
                    label={
                        "kind": att.failure_kind,
                        "message": att.message[:200],
                        "cost": att.response.cost_micro_usd if att.response else 0,
                    },
                )
            )
    root = build_tree(nodes)
    cols, rows = layout(root) if root else (0, 0)
    return {
        "session": session,
        "title": sess.title,
        "defaults": to_builtins(sess.defaults),
        "budget_micro_usd": sess.budget_micro_usd,
        "spent_micro_usd": spent(store, session, opts),
        "current_branch": store.refs.current_branch(session),
        "last_event": store.last_event_seq(session),
        "branches": dict(sorted(branches.items())),
        "nodes": [
            {
                "id": n.id,
                "parent": n.parent,
                "failed": n.failed,
                "x": n.x,
                "depth": n.depth,
                **n.label,
            }
            for n in (walk(root) if root else [])
        ],
        "columns": cols,
        "rows": rows,
        "steps": len(steps),
        "attempts": [
            {"id": aid, "parent": a.parent, "kind": a.failure_kind, "message": a.message}
            for aid, a in attempts.items()
        ],
        "step_fields": step_fields(),
    }


def step_fields() -> list[dict[str, Any]]:
    """What the Extend form offers for each step parameter: choices and limits (StepParams)."""
    return [
        {
            "name": spec.name,
            "kind": spec.kind,
            "choices": list(spec.choices),
            "min": spec.minimum,
            "max": spec.maximum,
            "max_length": spec.max_length,
            "optional": spec.optional,
        }
        for spec in SPECS.values()
    ]


def _plan_rects(store: Store, step: Step) -> tuple[Rect, Rect] | None:
    """The new band and the seam zone of a step, on the plane (None for a root)."""
    if step.recipe is None or step.parent is None:
        return None
    parent = store.canvas(store.step(step.parent))
    r = step.recipe
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


def _bands(store: Store, step: Step, origin: Rect | None = None) -> dict[str, Any]:
    """Where the new band and the seam zone of a step lie, from ``origin`` (its canvas)."""
    rects = _plan_rects(store, step)
    if rects is None:
        return {}
    origin = canvas_rect(store.canvas(step)) if origin is None else origin
    return {
        "gen": list(rects[0].relative_to(origin)),
        "seam": list(rects[1].relative_to(origin)),
    }


def _tiles(store: Store, canvas: Canvas, view: Rect) -> list[dict[str, Any]]:
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


def _grow(rect: Rect, by: int, inside: Rect) -> Rect:
    """``rect`` widened by ``by`` on every side, cut to ``inside``."""
    return Rect(rect.x - by, rect.y - by, rect.w + 2 * by, rect.h + 2 * by).intersect(inside)


def step_context(store: Store, step_id: str, opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """The step page: canvas tiles, prompt, recipe, scores, cost, report, family."""
    step = store.step(step_id)
    canvas = store.canvas(step)
    crect = canvas_rect(canvas)
    family = session_family(store, step.session, opts)
    view = crect
    if opts.window is not None:
        rects = _plan_rects(store, step)
        view = _grow(rects[0] if rects else crect, opts.window, crect)
    heads = family.heads.get(step_id, [])
    ctx: dict[str, Any] = {
        "id": step_id,
        "short": short(step_id),
        "session": step.session,
        "manifest": to_builtins(step),
        "parent": step.parent,
        "children": family.children.get(step_id, []),
        "failed_children": family.failed.get(step_id, []),
        "heads": heads,
        "full_png": opts.full_canvases or bool(heads),
        "canvas": {
            "id": step.result.canvas_id,
            "x": canvas.x,
            "y": canvas.y,
            "width": canvas.width,
            "height": canvas.height,
            "tile_size": canvas.tile_size,
            "tiles": _tiles(store, canvas, view),
            "view": list(view.relative_to(crect)),
            "whole": view == crect,
        },
        "bands": _bands(store, step),
        "prompt": "",
        "final_prompt": "",
        "validation": None,
    }
    if step.recipe is not None:
        ctx["prompt"] = store.objects.get_text(step.recipe.prompt_id)
    if step.request is not None:
        ctx["final_prompt"] = store.objects.get_text(step.request.final_prompt_id)
    if step.result.validation_id:
        ctx["validation"] = to_builtins(
            store.objects.get_manifest(step.result.validation_id, Validation)
        )
    return ctx


def attempt_context(store: Store, attempt_id: str) -> dict[str, Any]:
    """The attempt page: why it failed, and what was asked."""
    att = store.objects.get_manifest(attempt_id, Attempt)
    ctx: dict[str, Any] = {
        "id": attempt_id,
        "short": short(attempt_id),
        "session": att.session,
        "manifest": to_builtins(att),
        "parent": att.parent,
        "kind": att.failure_kind,
        "message": att.message,
        "prompt": "",
        "validation": None,
        "output_id": att.response.output_id if att.response else "",
    }
    if att.recipe is not None and store.objects.has(att.recipe.prompt_id):
        ctx["prompt"] = store.objects.get_text(att.recipe.prompt_id)
    if att.validation_id and store.objects.has(att.validation_id):
        ctx["validation"] = to_builtins(store.objects.get_manifest(att.validation_id, Validation))
    return ctx


#: how far (px) a compare page shows beyond where its steps differ, when windowed
COMPARE_CONTEXT = 128


def compare_window(store: Store, steps: list[Step], opts: PageOptions = DEFAULT) -> Rect:
    """The part of the plane a compare page shows, on the plane.

    All of the steps' canvases in the viewer; in the export (``opts.window``) only where
    they differ (the tiles whose ids differ, and each step's new band) and a margin.
    """
    canvases = [store.canvas(s) for s in steps]
    whole = Rect(0, 0, 0, 0)
    for c in canvases:
        whole = whole.union(canvas_rect(c))
    if opts.window is None:
        return whole
    focus = Rect(0, 0, 0, 0)
    first = canvas_rect(canvases[0])
    ids = [s.result.canvas_id for s in steps]
    for c, cid in zip(canvases[1:], ids[1:], strict=True):
        focus = focus.union(diff_rect(store, ids[0], cid))
        focus = focus.union(_outside(first, canvas_rect(c))).union(_outside(canvas_rect(c), first))
    for s in steps:
        rects = _plan_rects(store, s)
        if rects is not None:
            focus = focus.union(rects[0])
    if focus.empty:
        focus = Rect(whole.x, whole.y, min(whole.w, opts.window), min(whole.h, opts.window))
    return _grow(focus, min(COMPARE_CONTEXT, opts.window), whole)


def _outside(r: Rect, other: Rect) -> Rect:
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


def compare_context(store: Store, ids: list[str], opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """Two or more steps side by side over one window of the plane, with their new bands."""
    if len(ids) < 2:
        raise NotFound("compare needs at least two steps")
    steps = [store.step(sid) for sid in ids]
    window = compare_window(store, steps, opts)
    items = []
    for sid, step in zip(ids, steps, strict=True):
        canvas = store.canvas(step)
        crect = canvas_rect(canvas)
        part = crect.intersect(window)
        items.append(
            {
                "id": sid,
                "short": short(sid),
                "session": step.session,
                "width": step.result.width,
                "height": step.result.height,
                "x": canvas.x,
                "y": canvas.y,
                "bands": _bands(store, step, window),
                # the canvas's part of the window, its tiles placed from the window's corner
                "part": list(part.relative_to(window)),
                "tiles": [
                    {
                        "id": t["id"],
                        "x": t["x"] + crect.x - window.x,
                        "y": t["y"] + crect.y - window.y,
                    }
                    for t in _tiles(store, canvas, part)
                ],
                "prompt": store.objects.get_text(step.recipe.prompt_id) if step.recipe else "",
                "seam": step.result.scores.seam_permille,
                "cost": step.response.cost_micro_usd if step.response else 0,
                "recipe": to_builtins(step.recipe) if step.recipe else None,
            }
        )
    diff = None
    if len(steps) == 2:
        d = diff_rect(store, steps[0].result.canvas_id, steps[1].result.canvas_id)
        diff = list(d.relative_to(window)) if not d.empty else None
    return {
        "items": items,
        "ids": ids,
        "window": list(window),
        "whole": window == compare_window(store, steps, DEFAULT),
        "diff": diff,
    }


def gallery_context(store: Store, session: str, opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """Each branch head, big."""
    sess = store.session(session)
    heads = []
    for name, sid in sorted(branches_in_scope(store, session, opts).items()):
        step = store.step(sid)
        heads.append(
            {
                "branch": name,
                "id": sid,
                "width": step.result.width,
                "height": step.result.height,
                "steps": sum(1 for _ in store.history(sid)) - 1,
            }
        )
    return {"session": session, "title": sess.title, "heads": heads}
