"""Stale ref locks: list them, and clear those whose writer is dead (``exq unlock``)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from exquisite_store.store.files import pid_alive, read_lock_holder
from exquisite_store.store.refs import ReflogEntry
from exquisite_store.store.store import Store


@dataclass(frozen=True)
class LockReport:
    """One lock: where, whose, how old, and what was done with it."""

    ref: str
    pid: int | None
    age_s: int
    action: str


def unlock(store: Store, *, dry_run: bool = False) -> list[LockReport]:
    """Remove ref locks whose pid is dead; keep live ones; repair a reflog left behind.

    A writer holds a ref's lock from before the ref moves until its reflog line is
    written, so a dead writer's lock may sit on a ref that moved without a line:
    then a recovery line is appended (old = the last logged value).
    """
    root = store.root
    if root is None:
        return []
    out = []
    for lock in store.storage.list_locks():
        ref = lock.relative_to(root / "refs").as_posix()[: -len(".lock")]
        pid, age = read_lock_holder(lock)
        if pid_alive(pid):
            out.append(LockReport(ref, pid, age, "kept: its process is alive"))
            continue
        action = "removed"
        value = store.storage.read_ref(ref)
        log = store.refs.reflog(ref)
        if value and (not log or log[-1].new != value):
            action = "removed; reflog line recovered"
            if not dry_run:
                entry = ReflogEntry(
                    old=log[-1].new if log else None,
                    new=value,
                    time_ms=store.clock_ms(),
                    message=f"recovered by exq unlock: writer pid {pid} died before logging",
                )
                store.storage.append_log(f"refs/{ref}", msgspec.json.encode(entry))
        if not dry_run:
            lock.unlink(missing_ok=True)
        out.append(LockReport(ref, pid, age, action if not dry_run else f"would be {action}"))
    return out
