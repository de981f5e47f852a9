"""Stale ref locks: list them, and clear those whose writer is gone (``exq unlock``)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from exquisite_store.store.files import holder_state, read_lock_holder
from exquisite_store.store.process import host_name
from exquisite_store.store.refs import ReflogEntry
from exquisite_store.store.store import Store


@dataclass(frozen=True)
class LockReport:
    """One lock: where, whose (pid and host), how old, and what was done with it."""

    ref: str
    pid: int | None
    age_s: int
    action: str
    host: str = ""


def unlock(store: Store, *, dry_run: bool = False) -> list[LockReport]:
    """Remove ref locks whose owner is known to be gone; keep the others.

    An owner is gone when its lock names this host and no process with its pid and
    start time runs (a reused pid is not the owner), or this host rebooted since. A
    lock of another host is never removed here: this machine cannot see its processes.
    A writer holds a ref's lock from before the ref moves until its reflog line is
    written, so a dead writer's lock may sit on a ref that moved without a line: then a
    recovery line is appended (old = the last logged value).
    """
    root = store.root
    if root is None:
        return []
    out = []
    for lock in store.storage.list_locks():
        ref = lock.relative_to(root / "refs").as_posix()[: -len(".lock")]
        stamp, age = read_lock_holder(lock)
        pid, host = (stamp.pid, stamp.host) if stamp else (None, "")
        if stamp is not None and stamp.host != host_name():
            out.append(LockReport(ref, pid, age, f"kept: {holder_state(stamp)}", host))
            continue
        if stamp is not None and stamp.alive():
            out.append(LockReport(ref, pid, age, "kept: its process is alive", host))
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
        report = action if not dry_run else f"would be {action}"
        out.append(LockReport(ref, pid, age, report, host))
    return out
