"""Clean-up that explains itself: keep only starred branches; what gc would remove.

Dropping a branch removes only its ref: its steps stay reachable through its reflog
(and so in the store, and undoable) until gc's grace period lets go of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.core.annotations import session_notes
from exquisite_store.core.branches import HeadMove, drop_branch
from exquisite_store.errors import ExqError
from exquisite_store.manifests import Canvas, Step, decode
from exquisite_store.store import Store
from exquisite_store.store.gc import DEFAULT_GRACE_S, GcReport, gc


@dataclass(frozen=True)
class BranchVerdict:
    """Whether ``keep_starred`` keeps a branch, and why."""

    branch: str
    head: str
    keep: bool
    why: str


def starred_verdicts(store: Store, session: str) -> list[BranchVerdict]:
    """For each branch: kept if HEAD's, if its head is starred, or a step only it reaches is."""
    store.session(session)
    branches = store.refs.branches(session)
    current = store.refs.current_branch(session)
    starred = {sid for sid, n in session_notes(store, session).items() if n.starred}
    holders: dict[str, int] = {}
    chains: dict[str, list[str]] = {}
    for b, head in branches.items():
        chains[b] = [sid for sid, _ in store.history(head)]
    staged = {sid for h in store.refs.staged(session).values() for sid, _ in store.history(h)}
    for chain in chains.values():
        for sid in set(chain):
            holders[sid] = holders.get(sid, 0) + 1
    out = []
    for b in sorted(branches):
        own = [s for s in chains[b] if holders[s] == 1 and s not in staged]
        if b == current:
            out.append(BranchVerdict(b, branches[b], True, "HEAD's branch"))
        elif branches[b] in starred:
            out.append(BranchVerdict(b, branches[b], True, "its head is starred"))
        elif starred.intersection(own):
            out.append(BranchVerdict(b, branches[b], True, "a step only it reaches is starred"))
        else:
            out.append(BranchVerdict(b, branches[b], False, "nothing of its own is starred"))
    return out


def keep_starred(store: Store, session: str, *, dry_run: bool = False) -> list[HeadMove]:
    """Drop every branch ``starred_verdicts`` does not keep; the drops (or would-be drops)."""
    out = []
    for v in starred_verdicts(store, session):
        if v.keep:
            continue
        if dry_run:
            out.append(HeadMove(v.branch, v.head, ""))
        else:
            out.append(drop_branch(store, session, v.branch))
    return out


@dataclass(frozen=True)
class Doomed:
    """An object gc would remove: its id, extension, size, and what it is."""

    id: str
    ext: str
    bytes: int
    what: str
    #: for a step, attempt or canvas: the step whose thumbnail shows it ("" otherwise)
    step: str = ""


def gc_preview(store: Store, grace_s: float = DEFAULT_GRACE_S) -> tuple[GcReport, list[Doomed]]:
    """What ``gc`` would remove now (a dry run), each object with its size and kind."""
    rep = gc(store, grace_s=grace_s, dry_run=True)
    out = []
    for oid in rep.removed:
        try:
            ext, data = store.storage.get_object(oid)
        except ExqError:
            continue  # removed since: nothing to show
        what, step = {"png": "image", "txt": "text"}.get(ext, "record"), ""
        if ext == "json":
            try:
                obj = decode(data)
            except ExqError:
                obj = None
            what = type(obj).__name__.lower() if obj is not None else "damaged record"
            if isinstance(obj, Step):
                what, step = "step", oid
            elif isinstance(obj, Canvas):
                what = f"canvas {obj.width}x{obj.height}"
        out.append(Doomed(oid, ext, len(data), what, step))
    out.sort(key=lambda d: (-d.bytes, d.id))
    return rep, out
