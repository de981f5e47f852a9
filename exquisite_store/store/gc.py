"""gc: delete objects unreachable from refs, reflogs and attempt logs, past a grace period.

Existence comes from one listing; reachability from reading the listed manifests once
(images refer to nothing, so none is read); an unreachable object's size and age from
a stat, just before it is removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from exquisite_store.errors import LayoutError, NotFound
from exquisite_store.store.fsck import unsafe_paths
from exquisite_store.store.reach import root_ids, walk
from exquisite_store.store.scan import check_bytes, scan
from exquisite_store.store.store import Store

DEFAULT_GRACE_S = 14 * 24 * 3600
#: temp files of writers killed mid-write; a live writer's are seconds old
TMP_GRACE_S = 3600


@dataclass
class GcReport:
    """What gc kept and removed (or would remove, on a dry run)."""

    reachable: int = 0
    young: int = 0
    removed: list[str] = field(default_factory=list)
    bytes_removed: int = 0
    dry_run: bool = False
    tmp_removed: int = 0


def gc(store: Store, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False) -> GcReport:
    """Sweep unreachable objects older than ``grace_s`` under the exclusive store lock.

    Refuses to run (even a dry run) while the store holds a symbolic link or another
    non-file where a file or folder belongs: a linked folder hides what it holds from
    the listings, so its objects would look unreachable.
    """
    rep = GcReport(dry_run=dry_run)
    with store.storage.writer_lock(exclusive=True):
        unsafe = unsafe_paths(store)
        if unsafe:
            more = f" and {len(unsafe) - 1} more" if len(unsafe) > 1 else ""
            raise LayoutError(
                f"gc refuses to run while the store holds links: {unsafe[0]}{more} "
                "(see `exq fsck`; replace each with the file or folder it stands for)",
                path=unsafe[0].split(":", 1)[0],
            )
        listed: dict[str, str] = {}
        for oid, ext in store.storage.list_objects():
            listed.setdefault(oid, ext)  # an id under two extensions: as get_object reads it
        live = live_ids(store, listed)
        rep.reachable = len(live)
        for oid in listed:
            if oid in live:
                continue
            info = store.storage.object_info(oid)  # a stat: size and age, never the bytes
            if info is None:
                continue  # gone since the listing
            if info.age_s < grace_s:
                rep.young += 1
                continue
            if not dry_run:
                store.storage.delete_object(oid)
            rep.removed.append(oid)
            rep.bytes_removed += info.size
        rep.tmp_removed = _sweep_tmp(store, dry_run)
    return rep


def live_ids(store: Store, listed: dict[str, str]) -> set[str]:
    """Ids reachable from the roots, reading only the listed manifests (never an image)."""
    manifests_listed = [(oid, ext) for oid, ext in listed.items() if ext == "json"]
    found = scan(store.storage, manifests_listed, verify=False)
    newer: dict[str, tuple[str, tuple[str, ...]]] = {}

    def recheck(oid: str) -> str | None:
        # the exclusive lock keeps writers out: this is an object the listing missed
        try:
            ext, data = store.storage.get_object(oid)
        except (NotFound, LayoutError):
            return None
        newer[oid] = (ext, check_bytes(oid, ext, data, verify=False).refs)
        return ext

    def links(oid: str) -> tuple[str, ...]:
        got = found.get(oid)
        return got.refs if got is not None else newer.get(oid, ("", ()))[1]

    live, _missing = walk(root_ids(store), listed, links, recheck)
    return live


def _sweep_tmp(store: Store, dry_run: bool) -> int:
    """Remove temp files older than TMP_GRACE_S left by writers that were killed."""
    root = store.root
    if root is None or not (root / "tmp").is_dir():
        return 0
    now, n = time.time(), 0
    for f in (root / "tmp").iterdir():
        try:
            if f.is_file() and now - f.stat().st_mtime > TMP_GRACE_S:
                n += 1
                if not dry_run:
                    f.unlink()
        except FileNotFoundError:
            continue
    return n
