"""One pass over listed objects: each read once, rehashed, its manifest's references kept.

fsck verifies every object this way and gc reads its manifests this way; both then
walk reachability in memory (``reach.walk``) from what the pass kept, so no object is
read twice and no image is read to learn what it refers to (an image refers to nothing).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import NamedTuple

import msgspec

from exquisite_store import manifests
from exquisite_store.errors import ExqError, NotFound
from exquisite_store.ids import check_id, hash_object
from exquisite_store.store.objects import kind_of_ext, verify_bytes
from exquisite_store.store.reach import ids_in, ids_in_json
from exquisite_store.store.storage import BaseStorage

#: threads reading and hashing at once, one per core (reads, Pillow's decoder and
#: blake3 free the GIL)
SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))
#: worker processes decoding images, one per core: most of an image's check holds the
#: GIL (Pillow's Python side), so threads barely overlap; forked workers do
PROCESSES = max(1, min(4, os.cpu_count() or 1))
#: fewer images than this are checked in this process (a fork costs more than it saves;
#: for manifests it always does: sending their references back costs what reading them
#: does)
PROCESS_MIN_IMAGES = 2000
#: ids per task: each task opens the fan-out folders of its run of ids once
CHUNK = 256

#: the storage a forked worker reads through (inherited by fork, never pickled)
_forked_storage: BaseStorage | None = None


class Scanned(NamedTuple):
    """What one read of an object showed."""

    ext: str
    #: why the object is damaged ("" when it is whole)
    damage: str
    #: the manifest's type name (``step``, ``canvasnode``...); "" if it is none
    kind: str
    #: the ids a manifest refers to (also read from a damaged one that still decodes)
    refs: tuple[str, ...]


def scan(
    storage: BaseStorage,
    items: Sequence[tuple[str, str]],
    *,
    verify: bool,
    threads: int = SCAN_THREADS,
    processes: int | None = None,
) -> dict[str, Scanned]:
    """Read each listed ``(oid, ext)`` once; what it showed, by id in listing order.

    ``verify`` rehashes every object (an image: decoded, its pixels hashed) as fsck
    does; without it only manifests are decoded, as gc needs. Objects gone since the
    listing are left out. When verifying, images are checked in ``processes`` forked
    workers while this process checks the rest (None: PROCESSES when there are
    PROCESS_MIN_IMAGES images or more and this process can fork safely, having one
    thread; 0: none); otherwise everything is read in ``threads`` threads.
    """
    images = [i for i in items if i[1] == "png"] if verify else []
    if processes is None:
        many = len(images) >= PROCESS_MIN_IMAGES and PROCESSES > 1
        processes = PROCESSES if many and _can_fork() else 0
    if processes > 0 and images:
        rest = [i for i in items if i[1] != "png"]
        parts = _scan_forked(storage, images, rest, processes, verify)
    else:
        parts = _scan_threads(storage, items, verify, threads)
    found: dict[str, Scanned] = {}
    for part in parts:
        for oid, got in part:
            found.setdefault(oid, got)  # an id listed twice (two extensions): read once
    return {oid: found[oid] for oid, _ in items if oid in found}


def _chunks(items: Sequence[tuple[str, str]]) -> list[Sequence[tuple[str, str]]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def _scan_threads(
    storage: BaseStorage, items: Sequence[tuple[str, str]], verify: bool, threads: int
) -> list[list[tuple[str, Scanned]]]:
    chunks = _chunks(items)
    work = functools.partial(_scan_chunk, storage, verify=verify)
    if threads <= 1 or len(chunks) <= 1:
        return [work(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="exq-scan") as pool:
        return list(pool.map(work, chunks))


def _can_fork() -> bool:
    """Whether a fork is safe here: the start method exists and no other thread runs."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def _scan_forked(
    storage: BaseStorage,
    forked: Sequence[tuple[str, str]],
    here: Sequence[tuple[str, str]],
    processes: int,
    verify: bool,
) -> list[list[tuple[str, Scanned]]]:
    """``forked`` checked in forked workers, ``here`` in this process meanwhile."""
    global _forked_storage
    _forked_storage = storage
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
            work = functools.partial(_forked_chunk, verify=verify)
            checked = pool.map(work, _chunks(forked))  # all submitted at once
            parts = [_scan_chunk(storage, c, verify=verify) for c in _chunks(here)]
            parts.extend(checked)
    finally:
        _forked_storage = None
    return parts


def _forked_chunk(items: Sequence[tuple[str, str]], *, verify: bool) -> list[tuple[str, Scanned]]:
    assert _forked_storage is not None, "a scan worker runs only in a fork of scan()"
    return _scan_chunk(_forked_storage, items, verify=verify)


def _scan_chunk(
    storage: BaseStorage, items: Sequence[tuple[str, str]], *, verify: bool
) -> list[tuple[str, Scanned]]:
    out: list[tuple[str, Scanned]] = []
    valid = []
    for oid, ext in items:
        try:
            check_id(oid)
        except ExqError as exc:  # a stray file named like no id: never read
            out.append((oid, Scanned(ext, f"{oid}: {exc.message}", "", ())))
            continue
        valid.append((oid, ext))
    for oid, ext, data in storage.get_objects(valid):
        if isinstance(data, NotFound):
            continue  # removed since the listing: not this store's object any more
        if isinstance(data, ExqError):
            out.append((oid, Scanned(ext, f"{oid}: {data.message}", "", ())))
            continue
        out.append((oid, check_bytes(oid, ext, data, verify=verify)))
    return out


def check_bytes(oid: str, ext: str, data: bytes, *, verify: bool) -> Scanned:
    """What stored bytes show: damage (with ``verify``), and a manifest's kind and refs.

    With ``verify`` (fsck) references are kept only of a valid manifest, as a damaged
    one has none to check. Without it (gc) every JSON object's ids count, valid
    manifest or not: gc may keep more, never less. References are read from the bytes
    when that is sure (``ids_in_json``), else from the decoded value.
    """
    kind = kind_of_ext(ext)
    damage = ""
    if kind != "json":
        if verify:
            try:
                verify_bytes(oid, kind, data)
            except ExqError as exc:
                damage = f"{oid}: {exc.message}"
        return Scanned(ext, damage, "", ())
    refs = ids_in_json(data)
    if not verify:
        return Scanned(ext, "", "", tuple(refs if refs is not None else _ids_decoded(data)))
    if hash_object("json", data) != oid:
        try:
            verify_bytes(oid, kind, data)
        except ExqError as exc:
            damage = f"{oid}: {exc.message}"
    try:
        obj = manifests.decode(data)
    except ExqError as exc:
        return Scanned(ext, damage or f"{oid}: {exc.message}", "", ())
    if refs is None:
        refs = _ids_decoded(data)
    return Scanned(ext, damage, type(obj).__name__.lower(), tuple(refs))


def _ids_decoded(data: bytes) -> list[str]:
    try:
        return ids_in(msgspec.json.decode(data))
    except msgspec.DecodeError:
        return []
