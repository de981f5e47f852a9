"""Branches: create, drop, rename, and set a head; each a logged compare-and-swap.

Every move is made under the store's writer lock (gc waits for it) and checks that
the step belongs to the session; a branch that moved meanwhile is a BranchMoved.
"""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.core.events import ref_moved
from exquisite_store.errors import AlreadyExists, BranchMoved, UserError
from exquisite_store.ids import ObjectId, short
from exquisite_store.store import Store
from exquisite_store.store.refs import check_name


@dataclass(frozen=True)
class HeadMove:
    """Where a branch pointed before and after a move (``old`` None: it was created)."""

    branch: str
    old: str | None
    new: str


def step_of_session(store: Store, session: str, ref: str) -> ObjectId:
    """A step of ``session`` named by an id, a unique id prefix or a branch name."""
    store.session(session)
    sid = store.resolve_step(ref, session)
    if store.step(sid).session != session:
        raise UserError(f"step {short(sid)} belongs to another session")
    return sid


def create_branch(store: Store, session: str, name: str, at: str) -> HeadMove:
    """A new branch ``name`` at the step ``at``; AlreadyExists if the name is taken."""
    check_name(name, "branch")
    sid = step_of_session(store, session, at)
    with store.writing():
        try:
            store.refs.update(session, name, None, sid, f"branch: created from {short(sid)}")
        except BranchMoved:
            raise AlreadyExists(f"branch {name!r} already exists in {session}") from None
    ref_moved(store, session, f"heads/{name}", None, sid, "branch")
    return HeadMove(name, None, sid)


def drop_branch(store: Store, session: str, name: str) -> HeadMove:
    """Remove a branch (not HEAD's); its steps stay reachable through the reflog."""
    store.session(session)
    sid = store.refs.head(session, check_name(name, "branch"))
    with store.writing():
        store.refs.delete(session, name, sid, f"branch: deleted at {short(sid)}")
    ref_moved(store, session, f"heads/{name}", sid, None, "drop")
    return HeadMove(name, sid, "")


def rename_branch(store: Store, session: str, old: str, new: str) -> HeadMove:
    """Give a branch another name (HEAD follows it); the old name's reflog stays."""
    check_name(new, "branch")
    sid = store.refs.head(session, check_name(old, "branch"))
    current = store.refs.current_branch(session)
    with store.writing():
        try:
            store.refs.update(session, new, None, sid, f"branch: renamed from {old}")
        except BranchMoved:
            raise AlreadyExists(f"branch {new!r} already exists in {session}") from None
        if current == old:
            store.refs.set_current_branch(session, new)
        store.refs.delete(session, old, sid, f"branch: renamed to {new}")
    ref_moved(store, session, f"heads/{new}", None, sid, "rename")
    ref_moved(store, session, f"heads/{old}", sid, None, "rename")
    return HeadMove(new, sid, sid)


def set_head(store: Store, session: str, step: str, branch: str | None = None) -> HeadMove:
    """Move ``branch`` (default: HEAD's) to ``step`` and make it HEAD's branch.

    The branch's old value stays in its reflog; a branch that does not exist yet is
    created at the step.
    """
    sid = step_of_session(store, session, step)
    name = check_name(branch or store.refs.current_branch(session), "branch")
    with store.writing():
        old = store.refs.branches(session).get(name)
        if old != sid:
            store.refs.update(session, name, old, sid, f"set head to {short(sid)}")
        store.refs.set_current_branch(session, name)
    ref_moved(store, session, f"heads/{name}", old, sid, "head")
    return HeadMove(name, old, sid)
