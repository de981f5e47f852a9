"""File primitives every store write goes through: atomic writes and lock files."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from exquisite_store.errors import ArtifactWriteError, LockHeld


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
    path: Path, data: bytes, *, tmp_dir: Path, exclusive: bool = False, read_only: bool = False
) -> bool:
    """Write ``data`` to ``path`` so a crash leaves either nothing new or the whole file.

    A temp file in ``tmp_dir`` (same filesystem) is written and fsynced, then linked
    (``exclusive``: never replaces; returns False if ``path`` already exists) or renamed
    into place, and the directory is fsynced. Raises ArtifactWriteError on I/O failure.
    """
    tmp = tmp_dir / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        ensure_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
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
        fsync_dir(path.parent)
        return True
    except OSError as exc:
        raise ArtifactWriteError(
            f"cannot write {path.name}: {os.strerror(exc.errno or 0) or exc}",
            path=str(path),
            errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_lock_holder(lock: Path) -> tuple[int | None, int]:
    """The pid recorded in a lock file (None if unknown) and the lock's age in seconds."""
    try:
        st = lock.stat()
        text = lock.read_text(errors="replace")
    except FileNotFoundError:
        return None, 0
    pid = None
    if text.startswith("pid "):
        with contextlib.suppress(ValueError):
            pid = int(text.split()[1])
    return pid, max(0, int(time.time() - st.st_mtime))


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_held_error(lock: Path) -> LockHeld:
    """A LockHeld error describing who holds ``lock`` and for how long."""
    pid, age = read_lock_holder(lock)
    state = "alive" if pid_alive(pid) else "not running: a stale lock"
    who = f"pid {pid} ({state})" if pid is not None else "an unknown process"
    return LockHeld(
        f"{lock.name} is held by {who} for {age}s; it is never broken automatically "
        f"(remove it with `exq unlock` once you are sure no writer runs)",
        path=str(lock),
        pid=pid,
        age_s=age,
    )


class LockFile:
    """``<path>.lock``, created atomically holding ``pid <pid>``, held until exit.

    The lock is made by linking a finished temp file to ``<path>.lock`` (an exclusive
    create that never leaves an empty lock), so a stale lock always names its owner.
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
        # a lock whose recorded pid is dead is stale: report it at once.
        tmp = self.tmp_dir / f".lock.{os.getpid()}.{time.monotonic_ns()}"
        try:
            ensure_dir(self.path.parent)
            ensure_dir(self.tmp_dir)
            tmp.write_bytes(f"pid {os.getpid()}\n".encode())
            deadline = time.monotonic() + self.wait_s
            while True:
                try:
                    os.link(tmp, self.lock)
                    self._held = True
                    return self
                except FileExistsError:
                    pid, _age = read_lock_holder(self.lock)
                    if pid is None and not self.lock.exists():
                        continue  # released between our link and our look
                    if not pid_alive(pid) or time.monotonic() > deadline:
                        raise lock_held_error(self.lock) from None
                    time.sleep(0.002)
        except OSError as exc:
            raise ArtifactWriteError(f"cannot take lock {self.lock.name}: {exc}") from exc
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


@contextlib.contextmanager
def flocked(path: Path, exclusive: bool) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``path`` (released by the kernel if we die)."""
    import fcntl

    try:
        ensure_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a full disk cannot make the lock's folder or file
        raise ArtifactWriteError(
            f"cannot take lock {path.name}: {os.strerror(exc.errno or 0) or exc}", path=str(path)
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
