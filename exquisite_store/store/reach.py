"""What refers to what: manifest references and reachability from refs and logs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from exquisite_store import manifests
from exquisite_store.ids import is_id
from exquisite_store.store.store import Store

#: Fields holding hashes that are names, not stored objects (and free text: a note or
#: a tag may happen to look like an id).
NOT_OBJECT_FIELDS = frozenset({"recipe_id", "request_id", "provider_request_id", "note", "tags"})

_NAMES = b"|".join(re.escape(k.encode()) for k in sorted(NOT_OBJECT_FIELDS))
#: In JSON without a backslash no quote is escaped, so every quote opens or closes a
#: string: a quote, 64 hex digits and a quote are a whole string, a key if ``:`` follows.
_ID_STRING = re.compile(rb'"([0-9a-f]{64})"(?!\s*:)')
_NAME_VALUE = re.compile(rb'"(?:' + _NAMES + rb')"\s*:\s*"([0-9a-f]{64})"')
_NAME_CONTAINER = re.compile(rb'"(?:' + _NAMES + rb')"\s*:\s*[\[{]')


def references(obj: manifests.Manifest) -> list[str]:
    """Every object id a manifest points at (any 64-hex string outside name-hash fields)."""
    return ids_in(manifests.to_builtins(obj))


def ids_in(value: Any) -> list[str]:
    """The object ids in decoded JSON (dicts, lists, strings), as ``references`` counts them.

    A value under a key of NOT_OBJECT_FIELDS (and everything inside it) is a name, not
    a reference; dictionary keys are never references.
    """
    if isinstance(value, str):
        return [value] if is_id(value) else []
    if not isinstance(value, dict | list | tuple):
        return []
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            v = [x for k, x in v.items() if k not in NOT_OBJECT_FIELDS]
        for x in v:
            if isinstance(x, str):
                if len(x) == 64 and is_id(x):
                    out.append(x)
            elif isinstance(x, dict | list | tuple):
                stack.append(x)
    return out


def ids_in_json(data: bytes) -> list[str] | None:
    """``ids_in`` of JSON text read from its bytes, when that is sure; else None.

    Sure when the text holds no backslash (no escaped quote, so the quotes alone
    delimit every string) and no name field holds a list or an object. Decoding and
    walking costs several times more; the bytes of a manifest rarely hold a backslash.
    """
    if b"\\" in data or _NAME_CONTAINER.search(data):
        return None
    found = _ID_STRING.findall(data)
    names = _NAME_VALUE.findall(data)
    for name in names:  # one occurrence each: the same id may be a reference elsewhere
        found.remove(name)
    return [oid.decode("ascii") for oid in found]


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


def walk(
    roots: Iterable[str],
    listed: Mapping[str, str],
    links: Callable[[str], Sequence[str]],
    recheck: Callable[[str], str | None],
) -> tuple[set[str], list[tuple[str, str]]]:
    """Ids reachable from ``roots`` and the ``(from, missing)`` references found.

    ``listed`` (id -> extension) is one listing of the store: its existence is taken
    from there, and only manifests (``json``) are followed, through ``links`` (their
    references; empty for a damaged one). An id absent from the listing is asked of
    ``recheck`` (its extension if it is stored now, None if not): an object written
    after the listing is present, not missing.
    """
    seen: set[str] = set()
    missing: list[tuple[str, str]] = []
    stack = [("(root)", r) for r in roots]
    while stack:
        parent, oid = stack.pop()
        if oid in seen:
            continue
        ext = listed.get(oid)
        if ext is None:
            ext = recheck(oid)
            if ext is None:
                missing.append((parent, oid))
                continue
        seen.add(oid)
        if ext == "json":
            stack.extend((oid, ref) for ref in links(oid) if ref not in seen)
    return seen, missing
