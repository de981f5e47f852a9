"""The storage verbs on an S3-compatible bucket: keys mirror the disk layout (DESIGN.md §9).

- Objects: ``objects/ab/<id>.<ext>``, PUT with ``If-None-Match: *``; a 412 means
  stored already, and the object is freshened for gc by a self-copy.
- Refs: ``refs/<name>``, one small JSON object ``{value, seq, line}`` (the value, how
  many times it moved, the reflog line of its newest move), replaced by
  compare-and-swap with ``If-Match: <etag>``. Its reflog is the log ``refs/<name>``
  whose entry ``seq`` is that line: before a move the writer writes the current
  line's entry (``If-None-Match``: usually there already), after the move its own; so
  a writer killed between its move and its line loses nothing, the next move (or a
  reader, from the ref itself) supplies it. The sequence number also keeps an ABA
  move (A -> B -> A) from matching an old ETag.
- Logs: numbered immutable entries, compacted into segments (``s3logs``).
- Locks: leases (``leases``), judged by the server's clock.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

import msgspec

from exquisite_store.errors import NotFound
from exquisite_store.store.leases import Leases
from exquisite_store.store.s3client import Conflict, S3Bucket
from exquisite_store.store.s3logs import S3Logs
from exquisite_store.store.storage import EXTS, BaseStorage, branch_moved


class RefRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a ref object holds; ``value`` None is a tombstone (a removed ref)."""

    value: str | None
    seq: int
    line: bytes = b""


_ref_decoder = msgspec.json.Decoder(RefRecord)


class S3Storage(BaseStorage):
    """Objects, refs, logs and locks of a store below ``s3://bucket/prefix``."""

    root = None  # no directory: derived files go to the cache outside the store

    def __init__(self, bucket: S3Bucket, *, conditional_delete: bool = True) -> None:
        self.bucket = bucket
        self.url = bucket.url
        self.logs = S3Logs(bucket)
        self.leases = Leases(bucket)
        self.conditional_delete = conditional_delete
        self._ext: dict[str, str] = {}  # extension of objects seen (ids never change)

    # --- objects ---------------------------------------------------------------------

    @staticmethod
    def _key(oid: str, ext: str) -> str:
        return f"objects/{oid[:2]}/{oid}.{ext}"

    def put_object(self, oid: str, ext: str, data: bytes) -> bool:
        key = self._key(oid, ext)
        for _ in range(5):
            try:
                self.bucket.put(key, data, create=True)
                self._ext[oid] = ext
                return True
            except Conflict:
                if self.bucket.touch(key):  # a concurrent gc sees it as fresh
                    self._ext[oid] = ext
                    return False
                # removed between the two requests (gc): create it again
        raise Conflict(key)

    def _find(self, oid: str) -> str | None:
        """The extension of a stored object (one listing of its name), or None."""
        for item in self.bucket.list(f"objects/{oid[:2]}/{oid}."):
            ext = item.key.rpartition(".")[2]
            if ext in EXTS:
                self._ext[oid] = ext
                return ext
        return None

    def get_object(self, oid: str) -> tuple[str, bytes]:
        ext = self._ext.get(oid)
        got = self.bucket.get(self._key(oid, ext)) if ext else None
        if got is None:
            ext = self._find(oid)
            got = self.bucket.get(self._key(oid, ext)) if ext else None
        if got is None or ext is None:
            self._ext.pop(oid, None)
            raise NotFound(f"no object {oid}", id=oid)
        return ext, got[0]

    def open_object(self, oid: str) -> tuple[str, BinaryIO]:
        """The extension of an object and a file of its bytes (the viewer streams it)."""
        ext, data = self.get_object(oid)
        return ext, io.BytesIO(data)

    def touch_object(self, oid: str) -> bool:
        ext = self._ext.get(oid) or self._find(oid)
        return ext is not None and self.bucket.touch(self._key(oid, ext))

    def has_object(self, oid: str) -> bool:
        return self._find(oid) is not None

    def list_objects(self, fan: str = "") -> Iterator[tuple[str, str]]:
        for item in self.bucket.list(f"objects/{fan}/" if fan else "objects/"):
            d, _, name = item.key[len("objects/") :].rpartition("/")
            stem, _, ext = name.partition(".")
            if ext in EXTS and d == stem[:2]:
                yield stem, ext

    def object_age_s(self, oid: str) -> float:
        ext = self._ext.get(oid) or self._find(oid)
        head = self.bucket.head(self._key(oid, ext)) if ext else None
        return head[1] if head else 0.0

    def delete_object(self, oid: str) -> None:
        ext = self._ext.pop(oid, None) or self._find(oid)
        if ext is not None:
            self.bucket.delete(self._key(oid, ext))
            self._ext.pop(oid, None)

    # --- refs ------------------------------------------------------------------------

    def _read(self, name: str) -> tuple[RefRecord | None, str]:
        got = self.bucket.get(f"refs/{name}")
        if got is None:
            return None, ""
        try:
            return _ref_decoder.decode(got[0]), got[1]
        except (msgspec.DecodeError, msgspec.ValidationError):
            # garbage stays garbage (fsck names it), as on disk
            return RefRecord(value=got[0].decode("utf-8", "replace").strip() or None, seq=0), got[1]

    def read_ref(self, name: str) -> str | None:
        rec = self._read(name)[0]
        return rec.value if rec else None

    def _swap(self, name: str, old: str | None, new: str | None, log: bytes | None) -> RefRecord:
        """Move ``name`` from ``old`` to ``new`` (None: a tombstone) by If-Match."""
        reflog = f"refs/{name}"
        while True:
            rec, etag = self._read(name)
            current = rec.value if rec else None
            if current != old:
                raise branch_moved(name, old, current)
            if rec is not None and rec.line:
                self.logs.put_entry(reflog, rec.seq, rec.line)  # the last move's line, if lost
            seq = (rec.seq if rec else self.logs.last_number(reflog)) + 1
            nxt = RefRecord(value=new, seq=seq, line=log or b"")
            body = msgspec.json.encode(nxt)
            try:
                if rec is None:
                    self.bucket.put(f"refs/{name}", body, create=True)
                else:
                    self.bucket.put(f"refs/{name}", body, if_match=etag)
            except Conflict:
                continue  # moved, created or removed meanwhile: re-read
            if log is not None:
                self.logs.put_entry(reflog, seq, log)
            return nxt

    def cas_ref(self, name: str, old: str | None, new: str, log: bytes | None = None) -> None:
        self._swap(name, old, new, log)

    def delete_ref(self, name: str, old: str, log: bytes | None = None) -> None:
        self._swap(name, old, None, log)  # the tombstone is the commit point
        if not self.conditional_delete:
            return  # the server ignores If-Match on DELETE: the tombstone stays
        rec, etag = self._read(name)
        if rec is not None and rec.value is None:
            with contextlib.suppress(Conflict):  # re-created meanwhile: keep it
                self.bucket.delete(f"refs/{name}", if_match=etag)

    def list_refs(self, prefix: str = "", depth: int | None = None) -> list[str]:
        out = []
        for item in self.bucket.list(f"refs/{prefix}"):
            name = item.key[len("refs/") :]
            if depth is None or name.count("/") < depth:
                out.append(name)
        return sorted(out)

    # --- logs ------------------------------------------------------------------------

    def append_log(self, name: str, line: bytes, *, durable: bool = True) -> int:
        data = line.rstrip(b"\n")
        return self.logs.append(name, lambda _n: data)

    def append_numbered(
        self,
        name: str,
        make_line: Callable[[int], bytes],
        last_number: Callable[[], int],
        *,
        durable: bool = True,
    ) -> int:
        # the entry number is the line's number: claimed by the write, no lock needed
        return self.logs.append(name, lambda n: make_line(n).rstrip(b"\n"))

    def read_numbered(
        self, name: str, after: int, number_of: Callable[[bytes], int]
    ) -> list[bytes]:
        return [ln for ln in self.read_log(name, after) if number_of(ln) > after]

    def read_log(self, name: str, after: int = 0) -> list[bytes]:
        return self.read_log_from(name, after)[0]

    def read_log_from(self, name: str, cursor: int = 0) -> tuple[list[bytes], int]:
        rows = self.logs.read(name, after=cursor)
        if name.startswith("refs/"):
            rows = self._with_ref_line(name[len("refs/") :], rows, cursor)
        return [ln for _, ln in rows], max([cursor] + [n for n, _ in rows])

    def _with_ref_line(self, ref: str, rows: list[tuple[int, bytes]], after: int) -> list:
        """A reflog's rows plus the ref's own newest line if its writer died before logging it."""
        rec, _ = self._read(ref)
        if rec is None or not rec.line or rec.seq <= after:
            return rows
        if not any(n == rec.seq for n, _ in rows):
            rows = [*rows, (rec.seq, rec.line)]
        return rows

    def last_log_line(self, name: str) -> bytes | None:
        last = self.logs.last_number(name)
        if name.startswith("refs/"):
            rec, _ = self._read(name[len("refs/") :])
            last = max(last, rec.seq if rec and rec.line else 0)
        lines = self.read_log(name, after=max(0, last - 1)) if last else []
        return lines[-1] if lines else None

    def list_logs(self, prefix: str = "") -> list[str]:
        return self.logs.names(prefix)

    # --- locks -----------------------------------------------------------------------

    def writer_lock(self, exclusive: bool = False) -> contextlib.AbstractContextManager[None]:
        return self.leases.store_lease(exclusive)

    def log_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return _no_flag(self.leases.named(f"locks/logs/{name}"))

    def branch_lock(self, ref: str, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        return self.leases.named(f"locks/heads/{ref}", wait=wait)


@contextlib.contextmanager
def _no_flag(cm: contextlib.AbstractContextManager[bool]) -> Iterator[None]:
    with cm:
        yield
