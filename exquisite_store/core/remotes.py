"""Remotes: push, pull and clone sessions between stores, fast-forward only, like git.

A transfer walks from the refs being moved, copies what the other side lacks (children
first, each object rehashed: ``store.transfer``), and only then moves the other side's
refs by compare-and-swap. A branch moves only forward: the step it points at must be
an ancestor of the new one, else the move is refused with both ids (pull, or push from
a branch that contains the other side's work). A session's manifest (title, defaults,
budget) moves forward the same way, judged by its pointer's reflog. Remote-tracking
refs (``refs/SESSION/remotes/REMOTE/BRANCH``) record what was last seen there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exquisite_store.errors import AlreadyExists, BranchMoved, NotFound, StoreError, UserError
from exquisite_store.ids import short
from exquisite_store.store import Store
from exquisite_store.store.config import change_remotes, read_remotes
from exquisite_store.store.refs import check_name
from exquisite_store.store.transfer import Transfer, copy_closure

#: what a RefMove of the session pointer names as its branch
SESSION = "(session)"
#: called after each object copied with the running totals of the current copy
Progress = Callable[[Transfer], None]


@dataclass(frozen=True)
class RefMove:
    """One ref of a transfer: what it was on the receiving side and what it became.

    ``status``: ``created``, ``fast-forward``, ``up to date``, ``ahead`` (the receiving
    side already has more; nothing moved) or ``refused`` (with ``reason``).
    """

    session: str
    branch: str
    old: str | None
    new: str
    status: str
    reason: str = ""


@dataclass
class SyncReport:
    """What a push, pull or clone moved and copied."""

    moves: list[RefMove] = field(default_factory=list)
    transfer: Transfer = field(default_factory=Transfer)

    @property
    def refused(self) -> list[RefMove]:
        """The refs that were not moved because that would have lost work."""
        return [m for m in self.moves if m.status == "refused"]


# --- the remotes table ----------------------------------------------------------------


def open_url(url: str) -> Store:
    """The store a URL names: a folder, or ``s3://bucket/prefix``.

    An object store's endpoint comes from ``AWS_ENDPOINT_URL``, as for the AWS tools.
    """
    return Store.open(url if url.startswith("s3://") else Path(url))


def remotes(store: Store) -> dict[str, str]:
    """``{name: url}`` of the store's remotes."""
    return read_remotes(store)


def add_remote(store: Store, name: str, url: str) -> str:
    """Add remote ``name`` at ``url``, which must hold a store (not this one)."""
    check_name(name, "remote")
    if name in read_remotes(store):
        raise AlreadyExists(f"remote {name!r} already exists ({read_remotes(store)[name]})")
    if not url.startswith("s3://"):
        url = str(Path(url).absolute())
        if store.root is not None and Path(url).resolve() == store.root.resolve():
            raise UserError(f"{url} is this store; a remote is another one")
    open_url(url)
    change_remotes(store, name, url)
    return url


def remove_remote(store: Store, name: str) -> None:
    """Forget remote ``name`` (its tracking refs stay, as reflogs do)."""
    if name not in read_remotes(store):
        raise NotFound(f"no remote {name!r}")
    change_remotes(store, name, None)


def remote_store(store: Store, name: str) -> Store:
    """Open the store remote ``name`` points at."""
    table = read_remotes(store)
    if name not in table:
        known = ", ".join(sorted(table)) or "none (add one with `exq remote add NAME URL`)"
        raise NotFound(f"no remote {name!r}; remotes: {known}")
    return open_url(table[name])


def parse_target(target: str | None) -> tuple[str | None, str | None]:
    """``SESSION[:BRANCH]`` (or nothing: every session) as ``(session, branch)``."""
    if not target:
        return None, None
    session, _, branch = target.partition(":")
    return check_name(session, "session"), check_name(branch, "branch") if branch else None


# --- push, pull, clone -------------------------------------------------------------


def push(
    store: Store, name: str, target: str | None = None, progress: Progress | None = None
) -> SyncReport:
    """Send sessions (or one session, or one branch) to remote ``name``."""
    dst = remote_store(store, name)
    session, branch = parse_target(target)
    report = SyncReport()
    for s in [session] if session else store.refs.sessions():
        store.session(s)
        _send(store, dst, s, branch, report, progress)
        for m in report.moves:
            if m.session == s and m.branch != SESSION and m.status != "refused":
                seen = m.old if m.status == "ahead" and m.old else m.new
                store.refs.update_tracking(s, name, m.branch, seen)
    return report


def pull(
    store: Store, name: str, target: str | None = None, progress: Progress | None = None
) -> SyncReport:
    """Fetch sessions from remote ``name`` and fast-forward this store's branches."""
    return _receive(store, remote_store(store, name), name, target, progress)


def clone(url: str, folder: Path, progress: Progress | None = None) -> tuple[Store, SyncReport]:
    """A new store in ``folder`` holding every session of the store at ``url``."""
    src = open_url(url)
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty; clone into a new or empty folder")
    store = Store.init(folder, tile_size=src.tile_size)
    add_remote(store, "origin", url)
    return store, _receive(store, src, "origin", None, progress)


def _send(
    src: Store,
    dst: Store,
    session: str,
    only: str | None,
    report: SyncReport,
    progress: Progress | None,
) -> None:
    """Push one session's branches from ``src`` to ``dst``: objects, then refs."""
    local_sid = src.refs.session_pointer(session)
    remote_sid = dst.refs.session_pointer(session)
    pointer = _pointer_relation(src, dst, session, local_sid, remote_sid)
    if pointer == "refused":
        report.moves.append(_refused_pointer(session, remote_sid, local_sid))
        return
    heads = src.refs.branches(session)
    if only is not None and only not in heads:
        raise NotFound(f"session {session!r} has no branch {only!r}")
    theirs = dst.refs.branches(session)
    moves = [
        _decide(src, session, b, theirs.get(b), heads[b])
        for b in sorted(heads)
        if only is None or b == only
    ]
    roots = [m.new for m in moves if m.status in ("created", "fast-forward")]
    if pointer in ("created", "fast-forward"):
        roots.append(local_sid)
    with dst.writing():
        _copy(src, dst, roots, report, progress)
        for m in moves:
            report.moves.append(_apply(dst, m))
        if remote_sid is None:
            dst.refs.set_current_branch(session, _head_of(src, session, [m.branch for m in moves]))
        if pointer in ("created", "fast-forward"):
            _move_pointer(dst, session, remote_sid, local_sid, report)


def _receive(
    store: Store, src: Store, name: str, target: str | None, progress: Progress | None
) -> SyncReport:
    """Fetch from ``src`` into ``store`` (tracking refs), then fast-forward its branches."""
    session, only = parse_target(target)
    report = SyncReport()
    for s in [session] if session else src.refs.sessions():
        their_sid = src.refs.session_pointer(s)
        if their_sid is None:
            raise NotFound(f"the remote has no session {s!r}")
        heads = src.refs.branches(s)
        if only is not None and only not in heads:
            raise NotFound(f"the remote's session {s!r} has no branch {only!r}")
        wanted = {b: v for b, v in heads.items() if only is None or b == only}
        our_sid = store.refs.session_pointer(s)
        pointer = _pointer_relation(src, store, s, their_sid, our_sid)
        with store.writing():
            _copy(src, store, [*wanted.values(), their_sid], report, progress)
            for b, v in sorted(wanted.items()):
                store.refs.update_tracking(s, name, b, v)
            if pointer == "refused":
                report.moves.append(_refused_pointer(s, our_sid, their_sid))
                continue
            ours = store.refs.branches(s)
            for b, v in sorted(wanted.items()):
                report.moves.append(_apply(store, _decide(store, s, b, ours.get(b), v)))
            if our_sid is None:
                store.refs.set_current_branch(s, _head_of(src, s, sorted(wanted)))
            if pointer in ("created", "fast-forward"):
                _move_pointer(store, s, our_sid, their_sid, report)
    return report


def _head_of(src: Store, session: str, sent: list[str]) -> str:
    """HEAD's branch for a session new on the receiving side: the sender's, if it came."""
    current = src.refs.current_branch(session)
    return current if current in sent or not sent else sent[0]


def _copy(
    src: Store, dst: Store, roots: list[str], report: SyncReport, progress: Progress | None
) -> None:
    t = copy_closure(src, dst, roots, progress)
    report.transfer.copied += t.copied
    report.transfer.bytes += t.bytes
    report.transfer.present += t.present


def _is_ancestor(store: Store, old: str, new: str) -> bool:
    """Whether step ``old`` is ``new`` or one of its ancestors (walked in ``store``)."""
    return any(sid == old for sid, _step in store.history(new))


def _decide(store: Store, session: str, branch: str, old: str | None, new: str) -> RefMove:
    """How the receiving side's ``branch`` at ``old`` may move to ``new``.

    ``store`` holds ``new``'s history: the sender on a push, the receiver (after the
    fetch) on a pull.
    """
    if old is None:
        return RefMove(session, branch, None, new, "created")
    if old == new:
        return RefMove(session, branch, old, new, "up to date")
    if store.objects.has(old) and _is_ancestor(store, old, new):
        return RefMove(session, branch, old, new, "fast-forward")
    if store.objects.has(old) and _is_ancestor(store, new, old):
        return RefMove(session, branch, old, new, "ahead")
    return RefMove(
        session,
        branch,
        old,
        new,
        "refused",
        f"{session}:{branch} has diverged: here {short(new)}, there {short(old)} "
        "(neither contains the other; pull and branch, or push to a new branch)",
    )


def _apply(dst: Store, move: RefMove) -> RefMove:
    """Move one branch on the receiving side by CAS; a branch moved meanwhile is refused."""
    if move.status not in ("created", "fast-forward"):
        return move
    how = "created" if move.old is None else f"fast-forward from {short(move.old)}"
    try:
        dst.refs.update(move.session, move.branch, move.old, move.new, f"transfer: {how}")
    except BranchMoved as exc:
        return RefMove(
            move.session, move.branch, move.old, move.new, "refused",
            f"{move.session}:{move.branch} moved while this transfer ran ({exc.message}); "
            "run it again",
        )  # fmt: skip
    return move


def _pointer_relation(
    sender: Store, receiver: Store, session: str, new: str | None, old: str | None
) -> str:
    """How the receiver's session pointer (``old``) may move to the sender's (``new``)."""
    if new is None:
        raise NotFound(f"no session {session!r}")
    if old is None:
        return "created"
    if old == new:
        return "up to date"
    ours = sender.objects.get_manifest(new)
    theirs = receiver.objects.get_manifest(old)
    if getattr(ours, "root", None) != getattr(theirs, "root", None):
        raise StoreError(
            f"session {session!r} there is another session of the same name "
            f"(its root is {short(getattr(theirs, 'root', '') or '?')}); "
            "rename one of them before transferring"
        )
    if old in _pointer_history(sender, session):
        return "fast-forward"
    if new in _pointer_history(receiver, session):
        return "ahead"
    return "refused"


def _pointer_history(store: Store, session: str) -> set[str]:
    return {v for e in store.refs.reflog(f"{session}/session") for v in (e.old, e.new) if v}


def _refused_pointer(session: str, old: str | None, new: str | None) -> RefMove:
    return RefMove(
        session, SESSION, old, new or "", "refused",
        f"session {session!r}: its settings (title, defaults, budget) were changed on both "
        f"sides (here {short(new or '')}, there {short(old or '')}); set them again on one side",
    )  # fmt: skip


def _move_pointer(dst: Store, session: str, old: str | None, new: str, report: SyncReport) -> None:
    """Move the session pointer last: on a new session, what makes it exist."""
    try:
        dst.refs.set_session_pointer(session, old, new, "transfer: session")
    except BranchMoved:
        report.moves.append(_refused_pointer(session, dst.refs.session_pointer(session), new))
        return
    status = "created" if old is None else "fast-forward"
    report.moves.append(RefMove(session, SESSION, old, new, status))
