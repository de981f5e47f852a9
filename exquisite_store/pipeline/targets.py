"""Which step a new step grows from and which branch it moves (or creates)."""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.errors import ConfigError, NotFound
from exquisite_store.store import Store
from exquisite_store.store.refs import check_name


@dataclass(frozen=True)
class Target:
    """The parent step, the branch to move, and the value the branch must have now."""

    parent: str
    branch: str
    expected: str | None


def resolve_target(store: Store, session: str, parent: str | None, branch: str | None) -> Target:
    """Resolve ``--from`` / ``--branch`` the way ``exq step`` documents it.

    - only a branch (or nothing: HEAD's branch): grow its head, move it;
    - a step and a branch: the branch must point at the step (it moves) or not exist
      (it is created at the new step);
    - only a step: move the branch whose head it is (HEAD's first), else create
      ``branch-N``.
    """
    branches = store.refs.branches(session)
    current = store.refs.current_branch(session)
    if parent is None:
        name = check_name(branch or current, "branch")
        if name not in branches:
            _not_listed(store, session, name)
            raise NotFound(f"session {session!r} has no branch {name!r}", branch=name)
        return Target(branches[name], name, branches[name])
    pid = store.resolve_step(parent, session)
    if not store.belongs(pid, session):
        raise ConfigError(f"step {pid[:12]} belongs to another session", field="parent")
    if branch is not None:
        name = check_name(branch, "branch")
        if name not in branches:
            _not_listed(store, session, name)
        if name in branches and branches[name] != pid:
            raise ConfigError(
                f"branch {name!r} points at {branches[name][:12]}, not at {pid[:12]}; "
                "name a new branch to grow from an earlier step",
                field="branch",
            )
        return Target(pid, name, pid if name in branches else None)
    heads = sorted(b for b, sid in branches.items() if sid == pid)
    if heads:
        name = current if current in heads else heads[0]
        return Target(pid, name, pid)
    return Target(pid, free_name(branches, "branch-", 1), None)


def _not_listed(store: Store, session: str, name: str) -> None:
    """A branch the listing lacks may be a damaged ref (a directory): that is the error."""
    store.storage.read_ref(store.refs.branch_ref(session, name))  # LayoutError names it


def free_name(branches: dict[str, str], stem: str, start: int) -> str:
    """``stem + k`` for the first ``k >= start`` not taken."""
    k = start
    while f"{stem}{k}" in branches:
        k += 1
    return f"{stem}{k}"
