"""fsck: rehash every object, check every reference and ref; report, never repair."""

from __future__ import annotations

from dataclasses import dataclass, field

from exquisite_store import manifests
from exquisite_store.errors import ExqError
from exquisite_store.ids import is_id
from exquisite_store.store.files import read_lock_holder
from exquisite_store.store.reach import reachable, root_ids
from exquisite_store.store.store import Store


@dataclass
class FsckReport:
    """What fsck found; ``ok`` is False on any damage (dangling objects are not damage)."""

    objects: int = 0
    damaged: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    bad_refs: list[str] = field(default_factory=list)
    locks: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged, missing or pointing nowhere."""
        return not (self.damaged or self.missing or self.bad_refs)


def fsck(store: Store) -> FsckReport:
    """Check the whole store."""
    rep = FsckReport()
    all_ids: set[str] = set()
    for oid, _ext in store.storage.list_objects():
        rep.objects += 1
        all_ids.add(oid)
        try:
            kind, data = store.objects.get_bytes(oid, verify=True)
            if kind == "json":
                manifests.decode(data)
        except ExqError as exc:
            rep.damaged.append(f"{oid}: {exc.message}")
    damaged_ids = {d.split(":", 1)[0] for d in rep.damaged}
    for name in store.storage.list_refs():
        value = store.storage.read_ref(name) or ""
        want = "step" if "/heads/" in name else "session" if name.endswith("/session") else None
        if want is None:
            if name.endswith("/HEAD") and value:
                session = name.rsplit("/", 1)[0]
                if store.storage.read_ref(f"{session}/heads/{value}") is None:
                    rep.bad_refs.append(f"{name}: names branch {value!r}, which does not exist")
            continue
        # a step committed while we rehashed is newer than our listing, not missing
        newer = is_id(value) and store.storage.has_object(value)
        if value not in all_ids and not newer:
            rep.bad_refs.append(f"{name}: points at {value[:80]!r}, which is not a stored object")
            continue
        if value in damaged_ids:
            continue
        try:
            obj = manifests.decode(store.storage.get_object(value)[1])
        except ExqError:
            rep.bad_refs.append(f"{name}: points at {value[:12]}, which is not a manifest")
            continue
        if type(obj).__name__.lower() != want:
            rep.bad_refs.append(f"{name}: points at a {type(obj).__name__.lower()}, not a {want}")
    live, missing = reachable(store, list(root_ids(store)))
    rep.missing = missing
    rep.dangling = sorted(all_ids - live)
    root = store.root
    if root is not None:
        for lock in store.storage.list_locks():
            pid, age = read_lock_holder(lock)
            rep.locks.append(f"{lock.relative_to(root)}: pid {pid}, age {age}s")
    return rep
