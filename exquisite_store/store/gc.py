"""gc: delete objects unreachable from refs, reflogs and attempt logs, past a grace period."""

from __future__ import annotations

from dataclasses import dataclass, field

from exquisite_store.store.reach import reachable, root_ids
from exquisite_store.store.store import Store

DEFAULT_GRACE_S = 14 * 24 * 3600


@dataclass
class GcReport:
    """What gc kept and removed (or would remove, on a dry run)."""

    reachable: int = 0
    young: int = 0
    removed: list[str] = field(default_factory=list)
    bytes_removed: int = 0
    dry_run: bool = False


def gc(store: Store, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False) -> GcReport:
    """Sweep unreachable objects older than ``grace_s`` under the exclusive store lock."""
    rep = GcReport(dry_run=dry_run)
    with store.storage.writer_lock(exclusive=True):
        live, _missing = reachable(store, list(root_ids(store)))
        rep.reachable = len(live)
        for oid, _ext in list(store.storage.list_objects()):
            if oid in live:
                continue
            if store.storage.object_age_s(oid) < grace_s:
                rep.young += 1
                continue
            rep.removed.append(oid)
            rep.bytes_removed += len(store.storage.get_object(oid)[1])
            if not dry_run:
                store.storage.delete_object(oid)
    return rep
