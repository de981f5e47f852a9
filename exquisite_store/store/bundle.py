"""The bundle file: a session's refs and objects in one tar stream, like ``git bundle``.

A bundle is an uncompressed POSIX tar: ``bundle.json`` first (the refs, reflogs and
attempts it carries), then one member per object, ``objects/<id>.<ext>``, each after
everything it points at (the order ``transfer.copy_closure`` writes them in). So
``tar tf`` lists it, it is written and read as a stream (one object in memory at a
time), and a reader can check each object and store it the moment it is read while
the receiving store still holds only whole closures.

Nothing read from a bundle is trusted: member names must be exactly those above,
every object is rehashed against its name, every manifest decoded and its references
found already stored (or earlier in the stream).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from exquisite_store import manifests
from exquisite_store.errors import ExqError, IntegrityError, ManifestError, StoreError
from exquisite_store.ids import EXTENSIONS, ID_PATTERN
from exquisite_store.store.objects import id_of_bytes
from exquisite_store.store.reach import references
from exquisite_store.store.storage import BaseStorage

FORMAT = "exquisite-store bundle"
VERSION = 1
HEADER = "bundle.json"
MAX_HEADER = 64 * 1024 * 1024
#: the largest object a bundle may carry (a 40-megapixel PNG is far below)
MAX_OBJECT = 1024 * 1024 * 1024
_KIND_OF_EXT = {ext: kind for kind, ext in EXTENSIONS.items()}
_MEMBER = re.compile(f"^objects/({ID_PATTERN})\\.(png|txt|json)$")


class BundleHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a bundle carries besides objects."""

    format: str
    version: int
    session: str
    session_pointer: str
    head: str
    branches: dict[str, str]
    #: each branch's reflog lines (JSON, as the store wrote them), oldest first
    reflogs: dict[str, list[str]] = {}
    #: the session pointer's reflog values: what a receiver's settings may have been
    pointer_history: list[str] = []
    #: the attempt log's lines (JSON) whose attempts the bundle carries
    attempts: list[str] = []
    tile_size: int = 256


_header_decoder = msgspec.json.Decoder(BundleHeader)


class BundleWriter(BaseStorage):
    """A write-only storage that appends each object put into it to a tar stream.

    ``transfer.copy_closure`` into a Store over this writes the bundle's objects in
    the order they must be read: children first.
    """

    def __init__(self, out: IO[bytes], header: BundleHeader) -> None:
        # a stream (no seeking back), closed by close()
        self._tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._written: set[str] = set()
        self._add(HEADER, msgspec.json.encode(header))

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o444
        self._tar.addfile(info, io.BytesIO(data))

    def has_object(self, oid: str) -> bool:
        """Whether the bundle holds ``oid`` already."""
        return oid in self._written

    def put_object(self, oid: str, ext: str, data: bytes) -> bool:
        """Append one object (once)."""
        if oid in self._written:
            return False
        self._add(f"objects/{oid}.{ext}", data)
        self._written.add(oid)
        return True

    def close(self) -> None:
        """End the tar stream."""
        self._tar.close()


@dataclass(frozen=True)
class BundleObject:
    """One object read from a bundle and checked: its id, kind and bytes."""

    id: str
    kind: str
    data: bytes


def read_bundle(f: IO[bytes], have: Any) -> tuple[BundleHeader, Iterator[BundleObject]]:
    """The header of the bundle in ``f`` and an iterator over its checked objects.

    ``have(oid)`` says whether the receiving side holds an object; a manifest whose
    references are neither there nor earlier in the bundle is refused (a bundle in the
    wrong order, or one missing part of a closure). Every failure is a StoreError
    naming the member or the id that failed.
    """
    try:
        tar = tarfile.open(fileobj=f, mode="r|")  # noqa: SIM115 (read on by the iterator)
        first = tar.next()
    except tarfile.TarError as exc:
        raise StoreError(f"not a bundle: {exc}") from None
    if first is None or first.name != HEADER or not first.isfile() or first.size > MAX_HEADER:
        raise StoreError(f"not a bundle: its first member must be {HEADER}")
    try:
        header = _header_decoder.decode(_read(tar, first))
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise StoreError(f"not a bundle: {HEADER}: {exc}") from None
    if header.format != FORMAT or header.version != VERSION:
        raise StoreError(f"not a bundle this version reads ({header.format} {header.version})")
    return header, _objects(tar, have)


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    src = tar.extractfile(member)
    if src is None:
        raise StoreError(f"bundle member {member.name!r:.80} is not a file")
    data = src.read()
    if len(data) != member.size:
        raise StoreError(f"bundle member {member.name!r:.80} is cut short")
    return data


def _objects(tar: tarfile.TarFile, have: Any) -> Iterator[BundleObject]:
    try:
        yield from _members(tar, have)
    finally:
        tar.close()


def _members(tar: tarfile.TarFile, have: Any) -> Iterator[BundleObject]:
    seen: set[str] = set()
    while True:
        try:
            member = tar.next()
        except tarfile.TarError as exc:
            raise StoreError(f"the bundle is damaged after {len(seen)} objects: {exc}") from None
        if member is None:
            return
        m = _MEMBER.match(member.name)
        if m is None or not member.isfile():
            raise StoreError(f"not a bundle member: {member.name!r:.80}")
        if member.size > MAX_OBJECT:
            raise StoreError(f"bundle object {m.group(1)} is larger than {MAX_OBJECT} bytes")
        oid, kind = m.group(1), _KIND_OF_EXT[m.group(2)]
        try:
            data = _read(tar, member)
        except tarfile.TarError as exc:
            raise StoreError(f"the bundle is damaged at object {oid}: {exc}") from None
        yield BundleObject(oid, kind, _check(oid, kind, data, seen, have))
        seen.add(oid)


def _check(oid: str, kind: str, data: bytes, seen: set[str], have: Any) -> bytes:
    """``data`` if it hashes to ``oid`` and (a manifest) all it points at is there."""
    try:
        got = id_of_bytes(kind, data)
    except ExqError as exc:  # an image that does not decode
        raise IntegrityError(
            f"refusing the bundle: object {oid} is damaged: {exc.message}",
            expected=oid,
            got="undecodable",
        ) from None
    if got != oid:
        raise IntegrityError(
            f"refusing the bundle: object {oid} is damaged: its content hashes to {got}",
            expected=oid,
            got=got,
        )
    if kind == "json":
        try:
            obj = manifests.decode(data)
        except ManifestError as exc:
            raise IntegrityError(
                f"refusing the bundle: object {oid} is no manifest: {exc.message}",
                expected=oid,
                got="?",
            ) from None
        for ref in references(obj):
            if ref not in seen and not have(ref):
                raise StoreError(
                    f"refusing the bundle: object {oid} points at {ref}, "
                    "which is neither in the bundle before it nor in this store"
                )
    return data
