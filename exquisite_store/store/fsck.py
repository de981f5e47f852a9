"""fsck: rehash every object, check every reference, ref and path; report, never repair.

Each object is read once (``scan``): hashed (an image decoded), and a manifest's
references kept; reachability is then walked in memory over that one listing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from exquisite_store import manifests
from exquisite_store.errors import ExqError, LayoutError, NotFound
from exquisite_store.ids import is_id
from exquisite_store.store import nofollow
from exquisite_store.store.files import holder_state, read_lock_holder
from exquisite_store.store.reach import root_ids, walk
from exquisite_store.store.scan import Scanned, check_bytes, scan
from exquisite_store.store.store import Store

#: the folders whose every entry fsck checks for links and other non-files
STORE_DIRS = ("objects", "refs", "logs", "tmp", "cache")


@dataclass
class FsckReport:
    """What fsck found; ``ok`` is False on any damage (dangling objects are not damage)."""

    objects: int = 0
    damaged: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    bad_refs: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    locks: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged, missing, pointing nowhere or a link."""
        return not (self.damaged or self.missing or self.bad_refs or self.unsafe)


def unsafe_paths(store: Store) -> list[str]:
    """Every symbolic link (never followed) or non-file in the store's folders, described."""
    root = store.root
    if root is None:
        return []
    found = nofollow.find_unsafe(root, STORE_DIRS)
    return [f"{rel}: {what}, never followed" for rel, what in found]


def fsck(store: Store) -> FsckReport:
    """Check the whole store, holding the writer lock shared so gc cannot run meanwhile.

    Writers hold the same lock shared and go on: an object or ref that appears during
    the check is newer than the listing, never damage.
    """
    with store.storage.writer_lock(exclusive=False):
        return _check(store)


def _check(store: Store) -> FsckReport:
    rep = FsckReport(unsafe=unsafe_paths(store))
    listing = list(store.storage.list_objects())
    found = scan(store.storage, listing, verify=True)
    rep.objects = len(found)
    rep.damaged = [s.damage for s in found.values() if s.damage]
    damaged_ids = {oid for oid, s in found.items() if s.damage}
    if store.root is not None:
        rep.bad_refs += [f"{r}: a directory where a ref belongs" for r in ref_dirs(store.root)]
    for name in store.storage.list_refs():
        try:
            problem = _check_ref(store, name, found, damaged_ids)
        except LayoutError as exc:
            problem = exc.message
        if problem:
            rep.bad_refs.append(f"{name}: {problem}")
    newer: dict[str, Scanned] = {}

    def recheck(oid: str) -> str | None:
        """An object written since the listing is read now; None if it is not stored."""
        if oid not in newer:
            got = _read_newer(store, oid)
            if got is None:
                return None
            newer[oid] = got
        return newer[oid].ext

    def links(oid: str) -> tuple[str, ...]:
        return (found.get(oid) or newer[oid]).refs

    live, rep.missing = walk(root_ids(store), {o: s.ext for o, s in found.items()}, links, recheck)
    rep.dangling = sorted(set(found) - live)
    root = store.root
    if root is not None:
        for lock in store.storage.list_locks():
            stamp, age = read_lock_holder(lock)
            who = f"pid {stamp.pid}, age {age}s, host {stamp.host}" if stamp else f"age {age}s"
            rep.locks.append(f"{lock.relative_to(root)}: {who} ({holder_state(stamp)})")
    return rep


def _read_newer(store: Store, oid: str) -> Scanned | None:
    """An object absent from the listing, read (not verified: it is newer than the check)."""
    try:
        ext, data = store.storage.get_object(oid)
    except (NotFound, LayoutError):  # a link in its place is no object (fsck names it)
        return None
    return check_bytes(oid, ext, data, verify=False)


def _check_ref(store: Store, name: str, found: dict[str, Scanned], damaged_ids: set[str]) -> str:
    """What is wrong with one ref ("" if nothing)."""
    value = store.storage.read_ref(name) or ""
    want = "step" if "/heads/" in name else "session" if name.endswith("/session") else None
    if want is None:
        if name.endswith("/HEAD") and value:
            session = name.rsplit("/", 1)[0]
            if store.storage.read_ref(f"{session}/heads/{value}") is None:
                return f"names branch {value!r}, which does not exist"
        return ""
    # a step committed while we rehashed is newer than our listing, not missing
    newer = is_id(value) and store.storage.has_object(value)
    if value not in found and not newer:
        return f"points at {value[:80]!r}, which is not a stored object"
    if value in damaged_ids:
        return ""
    kind = found[value].kind if value in found else ""
    if not kind:  # not a manifest, or written since the listing: read it
        try:
            kind = type(manifests.decode(store.storage.get_object(value)[1])).__name__.lower()
        except ExqError:
            return f"points at {value[:12]}, which is not a manifest"
    if kind != want:
        return f"points at a {kind}, not a {want}"
    return ""


def ref_dirs(root: Path) -> list[str]:
    """Refs that are directories: ``S/HEAD``, ``S/session`` or ``S/heads/B`` (never a folder)."""
    out = []
    refs = root / "refs"
    for session in _subdirs(refs):
        for name in ("HEAD", "session"):
            if _is_dir(refs / session / name):
                out.append(f"{session}/{name}")
        out += [f"{session}/heads/{b}" for b in _subdirs(refs / session / "heads")]
    return sorted(out)


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _subdirs(path: Path) -> list[str]:
    """Names of the real (not linked) directories in ``path``, if it is one."""
    if not _is_dir(path):
        return []
    return sorted(n for n in os.listdir(path) if _is_dir(path / n))
