"""What the pages show, read from the store: one context function per page.

Each takes the store and the page options as arguments (never Flask's app), so the
viewer, the static export and tests build the same contexts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from exquisite_store.core.history import ever_held
from exquisite_store.core.sessions import MAX_TITLE
from exquisite_store.errors import NotFound
from exquisite_store.fixtures import fixture_names
from exquisite_store.geometry.frames import ANY
from exquisite_store.geometry.plan import plan_step
from exquisite_store.geometry.repair import recipe_label, repaired_band
from exquisite_store.ids import short
from exquisite_store.manifests import Attempt, Step, Validation, to_builtins
from exquisite_store.pipeline.cost import reachable_steps, session_spent
from exquisite_store.pipeline.params import SPECS
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect, iter_tiles
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


@dataclass(frozen=True)
class PageOptions:
    """How pages are built: which branches are in scope (an export may pick some)."""

    branches: frozenset[str] = frozenset()
    memo: StepsMemo | None = field(default=None, compare=False)
    #: also show steps on no branch now (kept by the reflogs): the live viewer does
    off_branch: bool = False


DEFAULT = PageOptions()


def branches_in_scope(store: Store, session: str, opts: PageOptions = DEFAULT) -> dict[str, str]:
    """The session's branches, or only those an export was asked for."""
    branches = store.refs.branches(session)
    if not opts.branches:
        return branches
    return {b: s for b, s in branches.items() if b in opts.branches}


def session_steps(
    store: Store, session: str, opts: PageOptions = DEFAULT, scoped: bool = True
) -> dict[str, Step]:
    """Every step reachable from the session's branches and staged candidates.

    The branches are those in scope unless ``scoped`` is False.
    """
    branches = branches_in_scope(store, session, opts) if scoped else store.refs.branches(session)
    heads = {**branches, **{f"staging/{k}": v for k, v in store.refs.staged(session).items()}}
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
    for line in store.attempts(session):
        att = store.objects.get_manifest(line.id, Attempt)
        if att.parent in steps:
            out[line.id] = att
    return out


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
    for place, sid in sorted(store.refs.staged(session).items()):
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
                    "what": recipe_label(r),
                    "seam": st.result.scores.seam_permille,
                    "cost": st.response.cost_micro_usd if st.response else 0,
                    "heads": heads.get(sid, []),
                    "seed": candidate_seed(st),
                    "off_branch": sid in off,
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


def _bands(store: Store, step: Step) -> dict[str, Any]:
    """Where the new band and the seam zone of a step lie on its canvas."""
    if step.recipe is None or step.parent is None:
        return {}
    parent = store.canvas(store.step(step.parent))
    r = step.recipe
    if r.repair:  # the repaired band, on a canvas of the parent's size
        rect = canvas_rect(parent)
        band = repaired_band(r.direction, r.repair.seam_at, rect, r.repair.width_px)
        return {"gen": list(band.relative_to(rect)), "seam": []}
    plan = plan_step(
        canvas_rect(parent),
        r.direction,
        r.extension_px,
        r.overlap_px,
        r.context_px,
        ANY,
        r.immutable_policy,
    )
    origin = plan.new_rect
    return {
        "gen": list(plan.gen_rect.relative_to(origin)),
        "seam": list(plan.seam_rect.relative_to(origin)),
    }


def step_context(store: Store, step_id: str, opts: PageOptions = DEFAULT) -> dict[str, Any]:
    """The step page: canvas tiles, prompt, recipe, scores, cost, report, family."""
    step = store.step(step_id)
    canvas = store.canvas(step)
    t = canvas.tile_size
    steps = session_steps(store, step.session, opts)
    children = [
        {"id": sid, "what": recipe_label(st.recipe) if st.recipe else ""}
        for sid, st in steps.items()
        if st.parent == step_id
    ]
    failed = [
        {"id": aid, "kind": a.failure_kind, "message": a.message}
        for aid, a in session_attempts(store, step.session, opts, steps).items()
        if a.parent == step_id
    ]
    ctx: dict[str, Any] = {
        "id": step_id,
        "short": short(step_id),
        "session": step.session,
        "manifest": to_builtins(step),
        "parent": step.parent,
        "children": children,
        "failed_children": failed,
        "heads": sorted(
            b for b, s in branches_in_scope(store, step.session, opts).items() if s == step_id
        ),
        "canvas": {
            "id": step.result.canvas_id,
            "x": canvas.x,
            "y": canvas.y,
            "width": canvas.width,
            "height": canvas.height,
            "tile_size": t,
            "tiles": [
                {
                    "id": oid,
                    "x": col * t - canvas.x if col * t > canvas.x else 0,
                    "y": row * t - canvas.y if row * t > canvas.y else 0,
                }
                for col, row, oid in iter_tiles(store.objects, canvas)
            ],
        },
        "bands": _bands(store, step),
        "seed": candidate_seed(step),
        "branches": branches_in_scope(store, step.session, opts),
        "current_branch": store.refs.current_branch(step.session),
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


def compare_context(store: Store, ids: list[str]) -> dict[str, Any]:
    """Two or more steps side by side, with their new bands."""
    if len(ids) < 2:
        raise NotFound("compare needs at least two steps")
    items = []
    for sid in ids:
        step = store.step(sid)
        items.append(
            {
                "id": sid,
                "short": short(sid),
                "session": step.session,
                "width": step.result.width,
                "height": step.result.height,
                "x": store.canvas(step).x,
                "y": store.canvas(step).y,
                "bands": _bands(store, step),
                "prompt": store.objects.get_text(step.recipe.prompt_id) if step.recipe else "",
                "seam": step.result.scores.seam_permille,
                "cost": step.response.cost_micro_usd if step.response else 0,
                "recipe": to_builtins(step.recipe) if step.recipe else None,
            }
        )
    return {"items": items, "ids": ids}


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
