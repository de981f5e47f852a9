"""History and undo: every ref move is in its reflog; undo is one more logged move back."""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.core.events import ref_moved
from exquisite_store.errors import NotFound, UserError
from exquisite_store.ids import short
from exquisite_store.store import Store
from exquisite_store.store.refs import ReflogEntry, check_name, parse_staging_name


@dataclass(frozen=True)
class Move:
    """One line of a ref's history: from ``old`` to ``new`` (either None: made, removed)."""

    old: str | None
    new: str | None
    time_ms: int
    message: str
    #: who moved it ("" on lines from before authorship was kept: shown as unknown)
    author: str = ""


def _moves(entries: list) -> list[Move]:
    """A reflog's lines as moves, newest first."""
    return [Move(e.old, e.new or None, e.time_ms, e.message, e.author) for e in reversed(entries)]


def _ref(session: str, ref: str) -> str:
    """The full ref name of ``heads/<branch>`` or ``staging/<place>`` in a session."""
    kind, _, rest = ref.partition("/")
    if kind == "heads":
        check_name(rest, "branch")
    elif kind == "staging":
        parse_staging_name(rest)
    else:
        raise UserError(f"not a branch or staging ref: {ref!r:.80} (heads/NAME or staging/...)")
    return f"{check_name(session, 'session')}/{ref}"


def history(store: Store, session: str, ref: str) -> list[Move]:
    """The moves of ``heads/<branch>`` (or a staging ref), newest first."""
    store.session(session)
    entries = store.refs.reflog(_ref(session, ref))
    if not entries:
        raise NotFound(f"{ref!r} of {session!r} has no history")
    return _moves(entries)


@dataclass(frozen=True)
class Undone:
    """What undo did: the ref, and where it pointed before and after."""

    ref: str
    was: str | None
    now: str | None


def undo(store: Store, session: str, ref: str) -> Undone:
    """Move a ref back to where its last move took it from (itself a logged CAS).

    A ref its last move made is removed again, one its last move removed is made
    again; undoing twice redoes. HEAD's branch is never removed.
    """
    full = _ref(session, ref)
    with store.writing():
        entries = store.refs.reflog(full)
        if not entries:
            raise NotFound(f"{ref!r} of {session!r} has no history to undo")
        last: ReflogEntry = entries[-1]
        current = store.storage.read_ref(full)
        if (last.new or None) != current:
            raise UserError(
                f"{ref} was moved outside its history (it is at {short(current or 'nothing')}); "
                "nothing was undone"
            )
        message = (
            f"undo: back to {short(last.old or 'nothing')} (was {short(current or 'nothing')})"
        )
        kind, _, name = ref.partition("/")
        if last.old is None:  # made by its last move: remove it
            if kind == "heads":
                store.refs.delete(session, name, str(current), message)
            else:
                store.refs.delete_staging(session, name, str(current), message)
        elif kind == "heads":
            store.refs.update(session, name, current, last.old, message)
        else:
            store.refs.update_staging(session, name, current, last.old, message)
    ref_moved(store, session, ref, current, last.old, "undo")
    return Undone(ref, current, last.old)


@dataclass(frozen=True)
class RefHistory:
    """One branch's moves, newest first, and where it points now (None: dropped)."""

    ref: str
    branch: str
    now: str | None
    moves: list[Move]


def histories(store: Store, session: str) -> list[RefHistory]:
    """Every branch that ever had a reflog (dropped ones too), HEAD's first, then by name."""
    store.session(session)
    prefix = f"refs/{check_name(session, 'session')}/heads/"
    current = store.refs.current_branch(session)
    branches = store.refs.branches(session)
    out = []
    for log in store.storage.list_logs(prefix):
        branch = log[len(prefix) :]
        entries = store.refs.reflog(log.removeprefix("refs/"))
        moves = _moves(entries)
        out.append(RefHistory(f"heads/{branch}", branch, branches.get(branch), moves))
    return sorted(out, key=lambda h: (h.branch != current, h.now is None, h.branch))


def ever_held(store: Store, session: str) -> set[str]:
    """Every step a branch or staging ref of the session has pointed at (from the reflogs).

    Steps that are on no branch now stay reachable from here (gc keeps them too), so
    the viewer shows them, dimmed, instead of letting them vanish.
    """
    out: set[str] = set()
    for log in store.storage.list_logs(f"refs/{check_name(session, 'session')}/"):
        kind = log.split("/")[2] if log.count("/") >= 3 else ""
        if kind not in ("heads", "staging"):
            continue
        for e in store.refs.reflog(log.removeprefix("refs/")):
            out.update(v for v in (e.old, e.new) if v)
    return out
