"""The storage primitives behind one small interface, on disk and in memory.

Everything above this module speaks only these verbs, so the object-storage backend
(``s3storage``, with ``If-None-Match: *`` / ``If-Match``) slots in beside them:
put-if-absent for objects, compare-and-swap for refs, list, read, append for logs.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from exquisite_store.errors import ArtifactWriteError, BranchMoved, LayoutError, NotFound
from exquisite_store.store import nofollow
from exquisite_store.store.files import (
    LockFile,
    _write_all,
    atomic_write,
    ensure_dir,
    flocked,
    fsync_dir,
    os_reason,
)

EXTS = ("json", "png", "txt")


def _names(oid: str) -> tuple[str, ...]:
    """The file names an object may have, one per extension."""
    return tuple(f"{oid}.{ext}" for ext in EXTS)


def branch_moved(name: str, old: str | None, current: str | None) -> BranchMoved:
    """The error of a compare-and-swap that found ``current`` where ``old`` was expected."""
    return BranchMoved(
        f"{name} moved: expected {old or 'nothing'}, found {current or 'nothing'}",
        ref=name,
        expected=old,
        actual=current,
    )


class BaseStorage:
    """The verbs the store needs; names are already validated by the caller."""

    def put_object(self, oid: str, ext: str, data: bytes) -> bool:
        """Store bytes under ``oid`` unless present (then freshen it); True if new."""
        raise NotImplementedError

    def get_object(self, oid: str) -> tuple[str, bytes]:
        """The extension and bytes of an object; NotFound if absent."""
        raise NotImplementedError

    def touch_object(self, oid: str) -> bool:
        """Freshen a stored object for gc, as ``put_object`` would; False if absent."""
        raise NotImplementedError

    def has_object(self, oid: str) -> bool:
        """Whether an object is stored."""
        raise NotImplementedError

    def list_objects(self, fan: str = "") -> Iterator[tuple[str, str]]:
        """Every stored ``(oid, ext)``; ``fan`` (2 hex chars) limits it to one fan-out."""
        raise NotImplementedError

    def object_age_s(self, oid: str) -> float:
        """Seconds since the object was written or last freshened."""
        raise NotImplementedError

    def delete_object(self, oid: str) -> None:
        """Remove an object (gc only)."""
        raise NotImplementedError

    def read_ref(self, name: str) -> str | None:
        """A ref's value, or None if it does not exist."""
        raise NotImplementedError

    def cas_ref(self, name: str, old: str | None, new: str, log: bytes | None = None) -> None:
        """Set ``name`` to ``new`` if it is ``old`` now, appending ``log`` to its reflog."""
        raise NotImplementedError

    def delete_ref(self, name: str, old: str, log: bytes | None = None) -> None:
        """Remove ``name`` if it is ``old`` now (its reflog stays, with ``log`` appended)."""
        raise NotImplementedError

    def list_refs(self, prefix: str = "", depth: int | None = None) -> list[str]:
        """Names of refs starting with ``prefix``, sorted.

        Only the folder the prefix names is read (``garden/heads/`` lists one session's
        branches, not every ref of the store); ``depth`` keeps names of at most that many
        ``/``-separated parts (``depth=2``: ``garden/session``, not ``garden/heads/main``).
        """
        raise NotImplementedError

    def append_log(self, name: str, line: bytes, *, durable: bool = True) -> int:
        """Append one line to a log; returns its position (``read_log(after=)`` takes it).

        A position is the storage's own number, increasing: the byte offset after the
        line on disk, the line count in memory, the entry number on object storage
        (which the storage assigns: no lock is needed to append).
        ``durable=False`` skips the flush to disk (a progress note whose loss in a crash
        costs nothing).
        """
        raise NotImplementedError

    def append_numbered(
        self,
        name: str,
        make_line: Callable[[int], bytes],
        last_number: Callable[[], int],
        *,
        durable: bool = True,
    ) -> int:
        """Append ``make_line(n)`` for the next number ``n`` of a numbered log; returns ``n``.

        Numbers are 1, 2, ...; here they are found by ``last_number`` under the log's lock,
        object storage uses its entry numbers instead (claimed by the write itself).
        """
        with self.log_lock(name):
            n = last_number() + 1
            self.append_log(name, make_line(n), durable=durable)
        return n

    def read_log(self, name: str, after: int = 0) -> list[bytes]:
        """The lines of a log after position ``after`` (0: all; empty if none)."""
        raise NotImplementedError

    def read_numbered(
        self, name: str, after: int, number_of: Callable[[bytes], int]
    ) -> list[bytes]:
        """The lines of a numbered log (``append_numbered``) whose number is above ``after``.

        Here every line is read and ``number_of`` filters them; object storage reads
        only the entries after ``after`` (its entry numbers are the lines' numbers).
        """
        return [ln for ln in self.read_log(name) if number_of(ln) > after]

    def read_log_from(self, name: str, cursor: int = 0) -> tuple[list[bytes], int]:
        """The whole lines appended to a log since ``cursor``, and the cursor after them.

        A cursor is opaque (a byte offset on disk, a line index in memory); 0 is the
        start. A line still being written is left for the next call.
        """
        raise NotImplementedError

    def list_logs(self, prefix: str = "") -> list[str]:
        """Names of logs starting with ``prefix``, sorted."""
        raise NotImplementedError

    def last_log_line(self, name: str) -> bytes | None:
        """The last whole line of a log (None if empty)."""
        lines = self.read_log(name)
        return lines[-1] if lines else None

    def writer_lock(self, exclusive: bool = False) -> contextlib.AbstractContextManager[None]:
        """Shared for writers, exclusive for gc."""
        raise NotImplementedError

    def log_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive while a log is read, numbered and appended to."""
        raise NotImplementedError

    def branch_lock(self, ref: str, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """Held by the one job growing a branch head; yields False if busy and not ``wait``."""
        raise NotImplementedError


class DiskStorage(BaseStorage):
    """The on-disk layout of DESIGN.md §3; no symbolic link below the root is ever followed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.refs = root / "refs"
        self.logs = root / "logs"
        self.tmp = root / "tmp"

    def _object_path(self, oid: str, ext: str) -> Path:
        return self.objects / oid[:2] / f"{oid}.{ext}"

    def _find(self, oid: str) -> Path | None:
        found = nofollow.find_first(self.root, f"objects/{oid[:2]}", _names(oid))
        return self.objects / oid[:2] / found[0] if found else None

    def put_object(self, oid: str, ext: str, data: bytes) -> bool:
        path = self._object_path(oid, ext)
        if nofollow.find_first(self.root, f"objects/{oid[:2]}", (f"{oid}.{ext}",)):
            with contextlib.suppress(OSError):
                os.utime(path)  # a concurrent gc sees it as fresh
            return False
        new = atomic_write(path, data, tmp_dir=self.tmp, exclusive=True, read_only=True)
        if not new:
            with contextlib.suppress(OSError):
                os.utime(path)
        return new

    def get_object(self, oid: str) -> tuple[str, bytes]:
        ext, f = self.open_object(oid)
        with f:
            return ext, f.read()

    def open_object(self, oid: str) -> tuple[str, BinaryIO]:
        """The extension of an object and its file, open for reading (never through a link)."""
        found = nofollow.open_first(self.root, f"objects/{oid[:2]}", _names(oid))
        if found is None:
            raise NotFound(f"no object {oid}", id=oid)
        name, fd = found
        return name.rpartition(".")[2], os.fdopen(fd, "rb")

    def touch_object(self, oid: str) -> bool:
        path = self._find(oid)
        if path is None:
            return False
        with contextlib.suppress(OSError):
            os.utime(path)  # a concurrent gc sees it as fresh
        return True

    def has_object(self, oid: str) -> bool:
        return self._find(oid) is not None

    def object_path(self, oid: str) -> Path:
        """The file of a stored object, checked to be no link and below no link."""
        path = self._find(oid)
        if path is None:
            raise NotFound(f"no object {oid}", id=oid)
        return path

    def list_objects(self, fan: str = "") -> Iterator[tuple[str, str]]:
        # links are skipped, never descended into: fsck reports them
        for rel in nofollow.walk_files(self.root, f"objects/{fan}" if fan else "objects"):
            d, _, name = rel.rpartition("/")
            stem, _, ext = name.partition(".")
            if ext in EXTS and (fan or d == stem[:2]):
                yield stem, ext

    def object_age_s(self, oid: str) -> float:
        path = self._find(oid)
        return time.time() - os.lstat(path).st_mtime if path else 0.0

    def delete_object(self, oid: str) -> None:
        path = self._find(oid)
        if path is not None:
            path.unlink()

    def read_ref(self, name: str) -> str | None:
        data = nofollow.read_bytes(self.root, f"refs/{name}")  # LayoutError names the path
        if data is None:
            return None
        # garbage stays garbage (fsck names it) rather than a UnicodeDecodeError
        return data.decode("utf-8", "replace").strip() or None

    def cas_ref(self, name: str, old: str | None, new: str, log: bytes | None = None) -> None:
        path = self.refs / name
        reflog = f"refs/{name}"
        with LockFile(path, tmp_dir=self.tmp) as lock:
            current = self.read_ref(name)
            if current != old:
                raise branch_moved(name, old, current)
            if current is not None and log is not None:
                self._close_reflog_gap(reflog, current, log)
            try:
                lock.commit(new.encode() + b"\n")
            except ArtifactWriteError:
                if self.read_ref(name) != new:
                    raise  # the ref did not move: a clean failure
                # renamed into place, only the directory's fsync failed: the ref has moved
            if log is not None:
                # the rename is the commit point: a reflog line lost to the disk does not
                # make the update a failure; the next update of this ref writes it
                with contextlib.suppress(ArtifactWriteError):
                    self.append_log(reflog, log)

    def _close_reflog_gap(self, reflog: str, current: str, log: bytes) -> None:
        """Log the move whose line a failed append left out (old = the last logged value).

        Reflog lines are JSON objects with ``old``/``new`` (refs.ReflogEntry); the
        recovery line reuses the new line's other fields.
        """
        last = self.last_log_line(reflog)
        try:
            prev = msgspec.json.decode(last) if last else None
            entry = msgspec.json.decode(log)
        except msgspec.DecodeError:
            return
        if not (isinstance(prev, dict) and "new" in prev and isinstance(entry, dict)):
            return  # not a reflog of ours
        if prev["new"] != current:
            entry.update(old=prev["new"], new=current, message="recovered: its line was lost")
            self.append_log(reflog, msgspec.json.encode(entry))

    def delete_ref(self, name: str, old: str, log: bytes | None = None) -> None:
        path = self.refs / name
        with LockFile(path, tmp_dir=self.tmp):
            current = self.read_ref(name)
            if current != old:
                raise branch_moved(name, old, current)
            try:
                path.unlink()
                fsync_dir(path.parent)
            except OSError as exc:
                reason = os_reason(exc)
                raise ArtifactWriteError(f"cannot remove {name}: {reason}", ref=name) from exc
            if log is not None:
                with contextlib.suppress(ArtifactWriteError):
                    self.append_log(f"refs/{name}", log)

    def list_refs(self, prefix: str = "", depth: int | None = None) -> list[str]:
        folder = prefix.rpartition("/")[0]
        start = f"refs/{folder}" if folder else "refs"
        try:  # the prefix's folder must be a real folder, with no link on the way
            st = nofollow.lstat(self.root, start)
        except LayoutError:
            return []
        if st is None or not stat.S_ISDIR(st.st_mode):
            return []
        out = []
        todo = [(self.root / start, folder)]
        while todo:
            path, rel = todo.pop()
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                parts = name.count("/") + 1
                if entry.is_dir(follow_symlinks=False):
                    # into a folder only if it can hold a match within ``depth`` parts
                    fits = (name + "/").startswith(prefix) or prefix.startswith(name + "/")
                    if fits and (depth is None or parts < depth):
                        todo.append((Path(entry.path), name))
                elif (
                    entry.is_file(follow_symlinks=False)
                    and not entry.name.endswith(".lock")
                    and name.startswith(prefix)
                ):
                    out.append(name)
        return sorted(out)

    def list_locks(self) -> list[Path]:
        """Every ``*.lock`` file under refs/ (stale ones are reported, never broken)."""
        names = sorted(nofollow.walk_files(self.root, "refs"))
        return [self.refs / n for n in names if n.endswith(".lock")]

    def append_log(self, name: str, line: bytes, *, durable: bool = True) -> int:
        path = self.logs / name
        nofollow.lstat(self.root, f"logs/{name}")  # LayoutError on a link on the way
        try:
            ensure_dir(path.parent)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                data = line.rstrip(b"\n") + b"\n"
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a line torn by a crash stays torn, alone
                _write_all(fd, data)  # a short write (a filling disk) goes on or raises
                end = os.lseek(fd, 0, os.SEEK_CUR)  # after our line (O_APPEND wrote at the end)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = os_reason(exc)
            raise ArtifactWriteError(f"cannot append to log {name}: {reason}", log=name) from exc
        return end

    def read_log(self, name: str, after: int = 0) -> list[bytes]:
        if after:
            return self.read_log_from(name, after)[0]
        data = nofollow.read_bytes(self.root, f"logs/{name}")
        if data is None:
            return []
        # a torn last line (crash mid-append) is not a line
        return (
            [ln for ln in data.split(b"\n") if ln]
            if data.endswith(b"\n")
            else [ln for ln in data.split(b"\n")[:-1] if ln]
        )

    def read_log_from(self, name: str, cursor: int = 0) -> tuple[list[bytes], int]:
        fd = nofollow.open_fd(self.root, f"logs/{name}")
        if fd is None:
            return [], 0
        try:
            if os.fstat(fd).st_size < cursor:
                cursor = 0  # not the file the cursor was made on: read it from the start
            chunks, pos = [], cursor
            while chunk := os.pread(fd, 1 << 20, pos):
                chunks.append(chunk)
                pos += len(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        whole = data[: data.rfind(b"\n") + 1]  # a torn or unfinished last line waits
        return [ln for ln in whole.split(b"\n") if ln], cursor + len(whole)

    def last_log_line(self, name: str) -> bytes | None:
        # read backwards from the end: appending an event must not cost the whole log
        fd = nofollow.open_fd(self.root, f"logs/{name}")
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            chunk, pos, tail = 4096, end, b""
            while pos > 0:
                step = min(chunk, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
                lines = tail.split(b"\n")
                whole = lines[:-1] if not tail.endswith(b"\n") else lines
                whole = [ln for ln in whole if ln]
                if len(whole) >= 2 or (whole and pos == 0):
                    return whole[-1]
                chunk *= 2
        return None

    def list_logs(self, prefix: str = "") -> list[str]:
        names = nofollow.walk_files(self.root, "logs")
        return sorted(n for n in names if n.startswith(prefix) and not n.endswith(".lock"))

    def writer_lock(self, exclusive: bool = False) -> contextlib.AbstractContextManager[None]:
        return flocked(self.root / "store.lock", exclusive)

    def log_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive advisory lock for read-modify-append of one log."""
        return flocked(self.logs / (name + ".lock"), True)

    def branch_lock(self, ref: str, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """``locks/heads/<ref>``, flocked (released by the kernel if the holder dies)."""
        return flocked(self.root / "locks" / "heads" / ref, True, wait=wait)


class MemoryStorage(BaseStorage):
    """Everything in dicts; for tests and as the model of the interface's contract."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[str, bytes, float]] = {}
        self._refs: dict[str, str] = {}
        self._logs: dict[str, list[bytes]] = {}
        self._mutex = threading.RLock()  # the dicts' consistency, held briefly
        self._writers = threading.RLock()  # the store lock and log locks (held long)
        self._branch_locks: dict[str, threading.Lock] = {}

    def put_object(self, oid: str, ext: str, data: bytes) -> bool:
        with self._mutex:
            if oid in self._objects:
                e, d, _ = self._objects[oid]
                self._objects[oid] = (e, d, time.time())
                return False
            self._objects[oid] = (ext, bytes(data), time.time())
            return True

    def get_object(self, oid: str) -> tuple[str, bytes]:
        try:
            ext, data, _ = self._objects[oid]
        except KeyError:
            raise NotFound(f"no object {oid}", id=oid) from None
        return ext, data

    def touch_object(self, oid: str) -> bool:
        with self._mutex:
            if oid not in self._objects:
                return False
            ext, data, _ = self._objects[oid]
            self._objects[oid] = (ext, data, time.time())
            return True

    def has_object(self, oid: str) -> bool:
        return oid in self._objects

    def list_objects(self, fan: str = "") -> Iterator[tuple[str, str]]:
        with self._mutex:
            items = sorted((k, v[0]) for k, v in self._objects.items() if k.startswith(fan))
        yield from items

    def object_age_s(self, oid: str) -> float:
        return time.time() - self._objects[oid][2] if oid in self._objects else 0.0

    def delete_object(self, oid: str) -> None:
        with self._mutex:
            self._objects.pop(oid, None)

    def read_ref(self, name: str) -> str | None:
        return self._refs.get(name)

    def cas_ref(self, name: str, old: str | None, new: str, log: bytes | None = None) -> None:
        with self._mutex:
            current = self._refs.get(name)
            if current != old:
                raise branch_moved(name, old, current)
            self._refs[name] = new
            if log is not None:
                self.append_log(f"refs/{name}", log)

    def delete_ref(self, name: str, old: str, log: bytes | None = None) -> None:
        with self._mutex:
            current = self._refs.get(name)
            if current != old:
                raise branch_moved(name, old, current)
            del self._refs[name]
            if log is not None:
                self.append_log(f"refs/{name}", log)

    def list_refs(self, prefix: str = "", depth: int | None = None) -> list[str]:
        return sorted(
            n
            for n in self._refs
            if n.startswith(prefix) and (depth is None or n.count("/") < depth)
        )

    def append_log(self, name: str, line: bytes, *, durable: bool = True) -> int:
        with self._mutex:
            lines = self._logs.setdefault(name, [])
            lines.append(line.rstrip(b"\n"))
            return len(lines)

    def read_log(self, name: str, after: int = 0) -> list[bytes]:
        with self._mutex:
            return list(self._logs.get(name, [])[after:])

    def read_log_from(self, name: str, cursor: int = 0) -> tuple[list[bytes], int]:
        with self._mutex:
            lines = self._logs.get(name, [])
            return list(lines[cursor:]), len(lines)

    def list_logs(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self._logs if n.startswith(prefix))

    def writer_lock(self, exclusive: bool = False) -> contextlib.AbstractContextManager[None]:
        # not the data mutex: a writer holds this while other threads (the image
        # encoders) store objects for it
        return self._writers

    def log_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock for read-modify-append of one log."""
        return self._writers

    @contextlib.contextmanager
    def branch_lock(self, ref: str, wait: bool = True) -> Iterator[bool]:
        """A lock per branch ref, in this process."""
        with self._mutex:
            lock = self._branch_locks.setdefault(ref, threading.Lock())
        got = lock.acquire(blocking=wait)
        try:
            yield got
        finally:
            if got:
                lock.release()
