"""File primitives every store write goes through: atomic writes and lock files.

Errors name paths relative to the store (the parent of its ``tmp/``), never this
machine's absolute paths: they end up in attempt records, and from there in exports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from exquisite_store.errors import ArtifactWriteError, LockHeld, StoreError
from exquisite_store.store.process import ProcessStamp, host_name, this_process

#: errors of a store that cannot be written at all (a read-only mount, no permission)
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def os_reason(exc: OSError) -> str:
    """The reason of an OS error without the path the OS put into its text."""
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


def store_relative(path: Path, tmp_dir: Path) -> str:
    """``path`` relative to the store whose ``tmp/`` is ``tmp_dir`` (else its name alone)."""
    try:
        return path.relative_to(tmp_dir.parent).as_posix()
    except ValueError:
        return path.name


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename or link in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing, flushing the parent's entry."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write(
    path: Path,
    data: bytes,
    *,
    tmp_dir: Path,
    exclusive: bool = False,
    read_only: bool = False,
    durable: bool = True,
) -> bool:
    """Write ``data`` to ``path`` so a crash leaves either nothing new or the whole file.

    A temp file in ``tmp_dir`` (same filesystem) is written and fsynced, then linked
    (``exclusive``: never replaces; returns False if ``path`` already exists) or renamed
    into place, and the directory is fsynced. Raises ArtifactWriteError on I/O failure,
    naming the path relative to the store (``tmp_dir``'s parent). ``durable=False``
    skips both fsyncs (derived files in ``cache/``: a crash may leave an empty file,
    which their reader takes for a missing one, never a torn one in a running system).
    """
    tmp = tmp_dir / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        ensure_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if read_only:
            os.chmod(tmp, 0o444)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
        return True
    except OSError as exc:
        raise ArtifactWriteError(
            f"cannot write {path.name}: {os_reason(exc)}",
            path=store_relative(path, tmp_dir),
            errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
        ) from exc
    finally:
        with contextlib.suppress(OSError):  # absent (never made, or linked and gone) or EROFS
            tmp.unlink()


def read_lock_holder(lock: Path) -> tuple[ProcessStamp | None, int]:
    """Who holds a lock (None if its file names nobody) and the lock's age in seconds.

    Older locks hold only ``pid N``: they are taken for this host's (ProcessStamp.parse).
    """
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, 0
    except OSError:  # a link or no file: it names nobody
        return None, 0
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        text = f.read(4096).decode("utf-8", "replace")
    return ProcessStamp.parse(text), max(0, int(time.time() - st.st_mtime))


def holder_state(stamp: ProcessStamp | None) -> str:
    """Whether the holder runs, in words: alive, not running, or on another host."""
    if stamp is None:
        return "names no process: a stale lock"
    if stamp.host != host_name():
        return f"on host {stamp.host}, which this machine cannot check: never removed here"
    return "alive" if stamp.alive() else "not running: a stale lock"


def lock_held_error(lock: Path, tmp_dir: Path) -> LockHeld:
    """A LockHeld error describing who holds ``lock`` and for how long."""
    stamp, age = read_lock_holder(lock)
    who = f"pid {stamp.pid} ({holder_state(stamp)})" if stamp else "an unknown process"
    return LockHeld(
        f"{lock.name} is held by {who} for {age}s; it is never broken automatically "
        f"(remove it with `exq unlock` once you are sure no writer runs)",
        path=store_relative(lock, tmp_dir),
        pid=stamp.pid if stamp else None,
        age_s=age,
        host=stamp.host if stamp else "",
    )


class LockFile:
    """``<path>.lock``, created atomically holding its owner's stamp, held until exit.

    The lock is made by linking a finished temp file to ``<path>.lock`` (an exclusive
    create that never leaves an empty lock), so a stale lock always names its owner:
    pid, host, boot and the process's start time (``process.this_process``), so a
    reused pid or a process on another host is never taken for the owner's death.
    ``commit`` writes the new content with ``atomic_write`` while the lock is still
    held: whatever the caller does next under the lock (the reflog line) happens
    before any other writer can take it.
    """

    def __init__(self, path: Path, *, tmp_dir: Path, wait_s: float = 5.0) -> None:
        self.path = path
        self.lock = path.with_name(path.name + ".lock")
        self.tmp_dir = tmp_dir
        self.wait_s = wait_s
        self._held = False

    def __enter__(self) -> LockFile:
        # A live holder keeps a ref lock for milliseconds, so wait for it a little;
        # a lock whose owner is known to be gone is stale: report it at once.
        tmp = self.tmp_dir / f".lock.{os.getpid()}.{time.monotonic_ns()}"
        try:
            ensure_dir(self.path.parent)
            ensure_dir(self.tmp_dir)
            tmp.write_bytes(this_process().text().encode())
            deadline = time.monotonic() + self.wait_s
            while True:
                try:
                    os.link(tmp, self.lock)
                    self._held = True
                    return self
                except FileExistsError:
                    stamp, _age = read_lock_holder(self.lock)
                    if stamp is None and not os.path.lexists(self.lock):
                        continue  # released between our link and our look
                    if stamp is None or not stamp.alive() or time.monotonic() > deadline:
                        raise lock_held_error(self.lock, self.tmp_dir) from None
                    time.sleep(0.002)
        except OSError as exc:
            raise ArtifactWriteError(
                f"cannot take lock {self.lock.name}: {os_reason(exc)}",
                path=store_relative(self.lock, self.tmp_dir),
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def commit(self, data: bytes) -> None:
        """Replace the target with ``data`` atomically; the lock stays held until exit."""
        assert self._held, "lock not held"
        atomic_write(self.path, data, tmp_dir=self.tmp_dir)

    def release(self) -> None:
        """Give the lock up."""
        if self._held:
            self._held = False
            with contextlib.suppress(FileNotFoundError):
                self.lock.unlink()

    def __exit__(self, *exc: object) -> None:
        self.release()


#: the flocks each thread holds: path -> exclusive (so a nested take is no deadlock)
_HELD = threading.local()


@contextlib.contextmanager
def flocked(path: Path, exclusive: bool, *, wait: bool = True) -> Iterator[bool]:
    """Hold an advisory ``flock`` on ``path`` (released by the kernel if we die).

    Yields True once held; with ``wait=False`` a lock held elsewhere yields False at
    once (and nothing is held). Threads and processes exclude each other as ``flock``
    says; a thread that holds the lock already (e.g. exclusively, to check the store in
    a quiet moment, then calls fsck, which takes it shared) holds it on, and only
    asking exclusively inside a shared hold is an error (it would wait for itself
    forever). On a store that cannot be written (a read-only mount) the lock file is
    opened read-only (``flock`` needs no write access); if it does not exist and cannot
    be made, no writer can run either, and nothing is locked.
    """
    import fcntl

    held: dict[str, bool] = _HELD.__dict__.setdefault("locks", {})
    key = os.path.realpath(path)
    if key in held:
        if exclusive and not held[key]:
            raise StoreError(f"{path.name} is held shared here: it cannot be taken exclusively")
        yield True
        return
    try:
        ensure_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno not in READ_ONLY_ERRNOS:
            raise ArtifactWriteError(
                f"cannot open lock {path.name}: {os_reason(exc)}", path=path.name
            ) from exc
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            yield True
            return
    try:
        flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        held[key] = exclusive
        yield True
    finally:
        held.pop(key, None)
        os.close(fd)
