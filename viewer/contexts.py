"""What the pages show, read from the store: one context function per page.

Each takes the store and the page options as arguments (never Flask's app), so the
viewer, the static export and tests build the same contexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exquisite_store.core.annotations import session_notes
from exquisite_store.core.history import ever_held
from exquisite_store.core.sessions import MAX_TITLE
from exquisite_store.errors import NotFound
from exquisite_store.fixtures import fixture_names
from exquisite_store.geometry.repair import recipe_label
from exquisite_store.ids import short
from exquisite_store.manifests import Attempt, Step, StepNote, Validation, to_builtins
from exquisite_store.pipeline.cost import reachable_steps, session_spent
from exquisite_store.pipeline.params import SPECS
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect
from viewer import canvas_views
from viewer.derived_images import diff_rect
from viewer.page_options import (  # noqa: F401 - PageOptions, StepsMemo: imported from here too
    DEFAULT,
    PageOptions,
    RefsSnapshot,
    StepsMemo,
    read_attempt_ids,
    read_branches,
    read_current_branch,
    read_staged,
)
from viewer.tree import Node, build_tree, layout, walk


def branches_in_scope(store: Store, session: str, opts: PageOptions = DEFAULT) -> dict[str, str]:
    """The session's branches, or only those an export was asked for."""
    branches = read_branches(store, session, opts)
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
        branches_in_scope(store, session, opts) if scoped else read_branches(store, session, opts)
    )
    heads = {
        **branches,
        **{f"staging/{k}": v for k, v in read_staged(store, session, opts).items()},
    }
    if opts.memo is None:
        return reachable_steps(store, list(heads.values()))
    return opts.memo.get(store, session, heads)


def off_branch_steps(store: Store, session: str, on: dict[str, Step]) -> dict[str, Step]:
    """Steps a branch or staging ref once held that no ref reaches now (nor their parents)."""
    off: dict[str, Step] = {}
    for sid in sorted(ever_held(store, session) - on.keys()):
        for aid, step in store.history(sid):
            if aid in on or aid in off:
                break
            off[aid] = step
    return off


def session_attempts(
    store: Store, session: str, opts: PageOptions = DEFAULT, steps: dict[str, Step] | None = None
) -> dict[str, Attempt]:
    """Every attempt of the session whose parent step is in scope, by id."""
    steps = session_steps(store, session, opts) if steps is None else steps
    out = {}
    for aid in read_attempt_ids(store, session, opts):
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
    staged = read_staged(store, session, opts)
    tried = read_attempt_ids(store, session, opts)

    def make() -> Family:
        steps = session_steps(store, session, opts)
        children: dict[str, list[dict[str, str]]] = {}
        for sid, st in steps.items():
            if st.parent is not None:
                what = recipe_label(st.recipe) if st.recipe else ""
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
    on_branch = session_steps(store, session, opts)
    off = off_branch_steps(store, session, on_branch) if opts.off_branch else {}
    steps = {**on_branch, **off}
    attempts = session_attempts(store, session, opts, steps)
    branches = branches_in_scope(store, session, opts)
    heads: dict[str, list[str]] = {}
    for name, sid in sorted(branches.items()):
        heads.setdefault(sid, []).append(name)
    for place, sid in sorted(read_staged(store, session, opts).items()):
        branch, _job, k = place.split("/")
        heads.setdefault(sid, []).append(f"{branch} · staged {k}")
    marks = session_notes(store, session)
    nodes = []
    for sid, st in steps.items():
        r = st.recipe
        mark = marks.get(sid)
        nodes.append(
            Node(
                sid,
                st.parent,
                st.created_ms,
                label={
                    "size": f"{st.result.width}x{st.result.height}",
                    "what": recipe_label(r),
                    "seam": st.result.scores.seam_permille,
                    "cost": st.response.cost_micro_usd if st.response else 0,
                    "heads": heads.get(sid, []),
                    "seed": candidate_seed(st),
                    "off_branch": sid in off,
                    "starred": bool(mark and mark.starred),
                    "tags": list(mark.tags) if mark else [],
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
        "steps": len(on_branch),
        "off_branch": len(off),
        "attempts": [
            {"id": aid, "parent": a.parent, "kind": a.failure_kind, "message": a.message}
            for aid, a in attempts.items()
        ],
        "step_fields": step_fields(),
    }


def candidate_seed(step: Step) -> int | None:
    """The seed candidate ``k`` of a call ran with: the recipe's seed + k."""
    if step.recipe is None:
        return None
    return step.recipe.seed + (step.response.candidate if step.response else 0)


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


def step_context(store: Store, step_id: str, opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """The step page: canvas tiles, prompt, recipe, scores, cost, report, family."""
    step = store.step(step_id)
    canvas = store.canvas(step)
    crect = canvas_rect(canvas)
    family = session_family(store, step.session, opts)
    view = crect
    if opts.window is not None:
        rects = canvas_views.plan_rects(store, step)
        view = canvas_views.grow(rects[0] if rects else crect, opts.window, crect)
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
            "tiles": canvas_views.tiles(store, canvas, view),
            "view": list(view.relative_to(crect)),
            "whole": view == crect,
        },
        "bands": canvas_views.bands(store, step),
        "seed": candidate_seed(step),
        "branches": branches_in_scope(store, step.session, opts),
        "current_branch": read_current_branch(store, step.session, opts),
        "prompt": "",
        "final_prompt": "",
        "validation": None,
        "note": to_builtins(session_notes(store, step.session).get(step_id) or StepNote()),
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


def compare_context(store: Store, ids: list[str], opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """Two or more steps side by side over one window of the plane, with their new bands."""
    if len(ids) < 2:
        raise NotFound("compare needs at least two steps")
    steps = [store.step(sid) for sid in ids]
    window = canvas_views.compare_window(store, steps, opts.window)
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
                "bands": canvas_views.bands(store, step, window),
                # the canvas's part of the window, its tiles placed from the window's corner
                "part": list(part.relative_to(window)),
                "tiles": [
                    {
                        "id": t["id"],
                        "x": t["x"] + crect.x - window.x,
                        "y": t["y"] + crect.y - window.y,
                    }
                    for t in canvas_views.tiles(store, canvas, part)
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
        "whole": window == canvas_views.compare_window(store, steps),
        "diff": diff,
    }


def gallery_context(store: Store, session: str, opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """Each branch head, big."""
    sess = store.session(session)
    steps = session_steps(store, session, opts)
    depth: dict[str | None, int] = {None: -1}

    def depth_of(sid: str) -> int:
        chain = []
        while sid not in depth:  # walk up to a step whose depth is known (iteratively)
            chain.append(sid)
            sid = steps[sid].parent if sid in steps else store.step(sid).parent
        for up in reversed(chain):
            parent = steps[up].parent if up in steps else store.step(up).parent
            depth[up] = depth[parent] + 1
        return depth[chain[0]] if chain else depth[sid]

    heads = []
    for name, sid in sorted(branches_in_scope(store, session, opts).items()):
        step = store.step(sid)
        heads.append(
            {
                "branch": name,
                "id": sid,
                "width": step.result.width,
                "height": step.result.height,
                "steps": depth_of(sid),
            }
        )
    return {"session": session, "title": sess.title, "heads": heads}
