"""Storage accounting: bytes per session and per branch, unique to it or shared.

Each branch head, and each session's other roots (its staged candidates, settings,
plans, annotations, reflogs and attempt log), is a group; an object's bytes are
unique to a group when no other group reaches it. A branch's unique bytes are what
no other ref of any session holds now (once its reflog lets go of them, gc frees
them); a session's unique bytes are what no other session reaches at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from exquisite_store import manifests
from exquisite_store.errors import ExqError, NotFound
from exquisite_store.ids import is_id
from exquisite_store.store import Store
from exquisite_store.store.reach import references
from exquisite_store.store.refs import check_name


@dataclass
class Usage:
    """The objects a branch or session reaches and their bytes."""

    objects: int = 0
    bytes: int = 0
    unique_objects: int = 0
    unique_bytes: int = 0

    @property
    def shared_bytes(self) -> int:
        """Bytes that some other branch (or session) also reaches."""
        return self.bytes - self.unique_bytes


@dataclass
class SessionUsage:
    """A session's usage and each of its branches'."""

    session: str
    usage: Usage = field(default_factory=Usage)
    branches: dict[str, Usage] = field(default_factory=dict)


class _Graph:
    """References and sizes of objects, each read once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.refs: dict[str, list[str]] = {}
        self.size: dict[str, int] = {}

    def closure(self, roots: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = [r for r in roots if is_id(r)]
        while stack:
            oid = stack.pop()
            if oid in seen:
                continue
            if oid not in self.refs and not self._read(oid):
                continue  # missing: fsck's finding, not a size
            seen.add(oid)
            stack.extend(r for r in self.refs[oid] if r not in seen)
        return seen

    def _read(self, oid: str) -> bool:
        """Size and references of ``oid``: only a manifest's bytes are read on disk."""
        storage = self.store.storage
        object_path = getattr(storage, "object_path", None)  # a store on disk
        try:
            if object_path is not None:
                path = object_path(oid)
                self.size[oid] = os.lstat(path).st_size
                ext = path.suffix.lstrip(".")
                data = storage.get_object(oid)[1] if ext == "json" else b""
            else:
                ext, data = storage.get_object(oid)
                self.size[oid] = len(data)
        except (NotFound, ExqError, OSError):
            return False
        refs: list[str] = []
        if ext == "json":
            try:
                refs = references(manifests.decode(data))
            except ExqError:
                refs = []
        self.refs[oid] = refs
        return True


def _live_roots(store: Store, session: str) -> list[str]:
    """What a session's refs other than its branches hold now: staged, settings, plans..."""
    storage = store.storage
    out = []
    for name in storage.list_refs(f"{session}/"):
        if not name.startswith(f"{session}/heads/"):
            value = storage.read_ref(name)
            if is_id(value):
                out.append(str(value))
    return out


def _history_roots(store: Store, session: str) -> list[str]:
    """What a session keeps only for its history: its reflogs and its attempt log."""
    out: list[str] = []
    for log in store.storage.list_logs(f"refs/{session}/"):
        for e in store.refs.reflog(log[len("refs/") :]):
            out.extend(v for v in (e.old, e.new) if is_id(v))
    out.extend(line.id for line in store.attempts(session) if is_id(line.id))
    return out


def disk_usage(store: Store, session: str | None = None) -> list[SessionUsage]:
    """Usage of every session (or one), with each branch's; objects shared or unique."""
    sessions = store.refs.sessions()
    if session is not None:
        store.session(check_name(session, "session"))
    graph = _Graph(store)
    # (session, branch) -> ids; branch "" is the session's other refs, "~" its history
    closures: dict[tuple[str, str], set[str]] = {}
    for s in sessions:
        for b, head in sorted(store.refs.branches(s).items()):
            closures[(s, b)] = graph.closure([head])
        closures[(s, "")] = graph.closure(_live_roots(store, s))
        closures[(s, "~")] = graph.closure(_history_roots(store, s))
    branch_holders: dict[str, int] = {}
    session_holders: dict[str, set[str]] = {}
    for (s, b), ids in closures.items():
        for oid in ids:
            session_holders.setdefault(oid, set()).add(s)
            if b not in ("", "~"):
                branch_holders[oid] = branch_holders.get(oid, 0) + 1
    live_refs = {oid for (s, b), ids in closures.items() if b == "" for oid in ids}
    out = []
    for s in sessions if session is None else [session]:
        row = SessionUsage(s)
        everything: set[str] = set()
        for (s2, b), ids in closures.items():
            if s2 != s:
                continue
            everything |= ids
            if b not in ("", "~"):
                u = row.branches[b] = Usage(len(ids), sum(graph.size[o] for o in ids))
                alone = [o for o in ids if branch_holders[o] == 1 and o not in live_refs]
                u.unique_objects, u.unique_bytes = len(alone), sum(graph.size[o] for o in alone)
        row.usage = Usage(len(everything), sum(graph.size[o] for o in everything))
        alone = [o for o in everything if session_holders[o] == {s}]
        row.usage.unique_objects = len(alone)
        row.usage.unique_bytes = sum(graph.size[o] for o in alone)
        out.append(row)
    return out
