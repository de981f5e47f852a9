"""The staging area: a step's candidates wait here until someone decides.

A step asked for several candidates does not move its branch: candidate ``k`` of job
``J`` growing branch ``B`` is held by the ref ``staging/B/J/k`` (so a reload or a
second tab sees the same staging area, and nothing is lost if nobody ever decides).
Accept moves ``B`` to one candidate (a logged compare-and-swap) and clears the others
from the staging area; keep makes a candidate a branch of its own; discard drops it.
Every ref removed keeps its reflog: a dropped candidate stays reachable, and undo
brings it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exquisite_store.core.events import ref_moved
from exquisite_store.errors import BranchMoved, NotFound, UserError
from exquisite_store.ids import ObjectId, short
from exquisite_store.pipeline.targets import free_name
from exquisite_store.store import Store
from exquisite_store.store.refs import parse_staging_name


@dataclass(frozen=True)
class Staged:
    """One staged candidate: where it waits, its step and its parent."""

    name: str  # the staging place, ``<branch>/<job>/<k>``
    branch: str
    job: str
    candidate: int
    step: ObjectId
    parent: ObjectId


@dataclass
class StagedGroup:
    """The candidates of one job, waiting for a decision about ``branch``."""

    branch: str
    job: str
    parent: ObjectId
    candidates: list[Staged] = field(default_factory=list)


def staged(store: Store, session: str) -> list[StagedGroup]:
    """Every group of staged candidates of a session, oldest job first."""
    store.session(session)
    groups: dict[tuple[str, str], StagedGroup] = {}
    for name, sid in store.refs.staged(session).items():
        branch, job, k = parse_staging_name(name)
        parent = store.step(sid).parent
        item = Staged(name, branch, job, k, ObjectId(sid), ObjectId(parent or ""))
        group = groups.setdefault((branch, job), StagedGroup(branch, job, item.parent))
        group.candidates.append(item)
    for group in groups.values():
        group.candidates.sort(key=lambda c: c.candidate)
    return sorted(groups.values(), key=lambda g: store.step(g.candidates[0].step).created_ms)


def find_staged(store: Store, session: str, step: str) -> Staged:
    """The staged candidate that is ``step`` (an id or a unique prefix)."""
    sid = store.resolve_step(step, session)
    for group in staged(store, session):
        for item in group.candidates:
            if item.step == sid:
                return item
    raise NotFound(f"step {short(sid)} is not waiting in the staging area of {session!r}")


@dataclass(frozen=True)
class Decision:
    """What a decision moved: the branch (if any), the places cleared, the job."""

    branch: str
    step: ObjectId
    cleared: list[str]
    job: str


def accept(store: Store, session: str, step: str) -> Decision:
    """Move the candidate's branch to it and clear its group from the staging area.

    The branch must still point at the candidates' parent (or not exist: it is made);
    if another step moved it meanwhile, BranchMoved says so and nothing changes (keep
    the candidate as a branch instead).
    """
    item = find_staged(store, session, step)
    group = next(g for g in staged(store, session) if (g.branch, g.job) == (item.branch, item.job))
    with store.writing():
        current = store.refs.branches(session).get(item.branch)
        if current not in (None, item.parent):
            raise BranchMoved(
                f"branch {item.branch!r} moved to {short(current or '')} since these candidates "
                f"grew from {short(item.parent)}; keep the candidate as a branch instead",
                ref=f"{session}/heads/{item.branch}",
                expected=item.parent,
                actual=current,
            )
        store.refs.update(
            session,
            item.branch,
            current,
            item.step,
            f"accept candidate {item.candidate} of job {item.job}",
        )
        cleared = []
        for other in group.candidates:
            message = (
                "accepted" if other.step == item.step else f"cleared: {short(item.step)} accepted"
            )
            store.refs.delete_staging(session, other.name, other.step, message)
            cleared.append(other.name)
    ref_moved(store, session, f"heads/{item.branch}", current, item.step, "accept")
    for other in group.candidates:
        ref_moved(store, session, f"staging/{other.name}", other.step, None, "accept")
    return Decision(item.branch, item.step, cleared, item.job)


def discard(store: Store, session: str, step: str) -> Decision:
    """Drop a candidate from the staging area (its step stays in the reflog)."""
    item = find_staged(store, session, step)
    with store.writing():
        store.refs.delete_staging(session, item.name, item.step, "discarded")
    ref_moved(store, session, f"staging/{item.name}", item.step, None, "discard")
    return Decision("", item.step, [item.name], item.job)


def keep(store: Store, session: str, step: str, name: str | None = None) -> Decision:
    """Make a candidate a branch of its own (``<branch>~<k>`` unless named)."""
    item = find_staged(store, session, step)
    with store.writing():
        branches = store.refs.branches(session)
        branch = name or free_name(branches, f"{item.branch}~", 2)
        if branch in branches:
            raise UserError(f"branch {branch!r} already exists in {session}")
        store.refs.update(session, branch, None, item.step, f"kept candidate {item.candidate}")
        store.refs.delete_staging(session, item.name, item.step, f"kept as {branch}")
    ref_moved(store, session, f"heads/{branch}", None, item.step, "keep")
    ref_moved(store, session, f"staging/{item.name}", item.step, None, "keep")
    return Decision(branch, item.step, [item.name], item.job)
