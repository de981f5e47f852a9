"""What refers to what: manifest references and reachability from refs and logs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from exquisite_store import manifests
from exquisite_store.errors import ExqError, LayoutError, NotFound
from exquisite_store.ids import is_id
from exquisite_store.store.store import Store

#: Fields holding hashes that are names, not stored objects (and free text: a note or
#: a tag may happen to look like an id).
NOT_OBJECT_FIELDS = frozenset({"recipe_id", "request_id", "provider_request_id", "note", "tags"})


def references(obj: manifests.Manifest) -> list[str]:
    """Every object id a manifest points at (any 64-hex string outside name-hash fields)."""
    out: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if key in NOT_OBJECT_FIELDS:
            return
        if isinstance(value, str):
            if is_id(value):
                out.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, key)

    walk(manifests.to_builtins(obj))
    return out


def root_ids(store: Store) -> Iterator[str]:
    """Ids named by refs, reflogs and attempt logs: the roots of reachability."""
    storage = store.storage
    for name in storage.list_refs():
        value = storage.read_ref(name)
        if is_id(value):
            yield value
    for log in storage.list_logs("refs/"):
        for entry in store.refs.reflog(log[len("refs/") :]):
            for v in (entry.old, entry.new):
                if is_id(v):
                    yield v
    for log in storage.list_logs("sessions/"):
        if log.endswith("/attempts"):
            for line in store._read_log(log):
                if is_id(line.id):
                    yield line.id


def reachable(store: Store, roots: Iterable[str]) -> tuple[set[str], list[tuple[str, str]]]:
    """Ids reachable from ``roots`` and the ``(from, missing)`` references found."""
    seen: set[str] = set()
    missing: list[tuple[str, str]] = []
    stack = [("(root)", r) for r in roots]
    while stack:
        parent, oid = stack.pop()
        if oid in seen:
            continue
        try:
            ext, data = store.storage.get_object(oid)
        except (NotFound, LayoutError):  # a link in its place is no object (fsck names it)
            missing.append((parent, oid))
            continue
        seen.add(oid)
        if ext != "json":
            continue
        try:
            obj = manifests.decode(data)
        except ExqError:  # a damaged manifest is fsck's finding, not a crash here
            continue
        stack.extend((oid, ref) for ref in references(obj) if ref not in seen)
    return seen, missing
