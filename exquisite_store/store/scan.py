"""One pass over listed objects: each read once, rehashed, its manifest's references kept.

fsck verifies every object this way and gc reads its manifests this way; both then
walk reachability in memory (``reach.walk``) from what the pass kept, so no object is
read twice and no image is read to learn what it refers to (an image refers to nothing).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import msgspec

from exquisite_store import manifests
from exquisite_store.errors import ExqError, NotFound
from exquisite_store.ids import check_id, hash_object
from exquisite_store.store.objects import kind_of_ext, verify_bytes
from exquisite_store.store.reach import ids_in
from exquisite_store.store.storage import BaseStorage

#: threads reading and hashing at once, one per core (reads, Pillow's decoder and
#: blake3 free the GIL)
SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))
#: ids per task: each task opens the fan-out folders of its run of ids once
CHUNK = 256


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
) -> dict[str, Scanned]:
    """Read each listed ``(oid, ext)`` once; what it showed, by id (gone ones left out).

    ``verify`` rehashes every object (an image: decoded, its pixels hashed) as fsck
    does; without it only manifests are decoded, as gc needs.
    """
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    work = functools.partial(_scan_chunk, storage, verify=verify)
    out: dict[str, Scanned] = {}
    if threads <= 1 or len(chunks) <= 1:
        results: Iterator[list[tuple[str, Scanned]]] = map(work, chunks)
    else:
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="exq-scan")
        results = pool.map(work, chunks)
    try:
        for part in results:
            for oid, found in part:
                out.setdefault(oid, found)  # an id listed twice (two extensions): read once
    finally:
        if threads > 1 and len(chunks) > 1:
            pool.shutdown(cancel_futures=True)
    return out


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
    manifest or not: gc may keep more, never less.
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
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        value = None
    if not verify:
        return Scanned(ext, "", "", tuple(ids_in(value)))
    if hash_object("json", data) != oid:
        try:
            verify_bytes(oid, kind, data)
        except ExqError as exc:
            damage = f"{oid}: {exc.message}"
    try:
        obj = manifests.decode(data)
    except ExqError as exc:
        return Scanned(ext, damage or f"{oid}: {exc.message}", "", ())
    return Scanned(ext, damage, type(obj).__name__.lower(), tuple(ids_in(value)))
