"""The viewer's signing secret: one small file in the store root, made once, owner-only.

It signs the viewer's session cookie (and so its CSRF tokens); keeping it across restarts
keeps every open page's token valid. It is not an object, a ref or a log: fsck, gc,
export and remotes never see it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
from pathlib import Path

from exquisite_store.errors import ArtifactWriteError, StoreError
from exquisite_store.store.files import _write_all, fsync_dir

SECRET_FILE = "viewer.secret"
_SECRET = re.compile(rb"[0-9a-f]{64}")


def read_secret(path: Path) -> str | None:
    """The secret in ``path`` (None if there is none); StoreError if it is unusable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {os.strerror(exc.errno or 0)}") from None
    try:
        st = os.fstat(fd)
        data = os.read(fd, 256)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode) or not _SECRET.fullmatch(data.strip()):
        raise StoreError(f"{path} is not a viewer secret (64 hex digits); delete it for a new one")
    if st.st_mode & 0o077:
        raise StoreError(
            f"{path} can be read by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            "run `chmod 600` on it or delete it"
        )
    return data.strip().decode()


def load_or_create_secret(root: Path) -> str:
    """The store's viewer secret, made on first use: mode 0600, linked into place atomically.

    Two viewers starting at once agree on one secret (the second link fails, it reads the
    first's). Raises StoreError (or ArtifactWriteError) when there is none and the store
    cannot be written, or the file is unusable.
    """
    path = Path(root) / SECRET_FILE
    found = read_secret(path)
    if found is not None:
        return found
    tmp = Path(root) / "tmp" / f".{SECRET_FILE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            _write_all(fd, secrets.token_hex(32).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another viewer made it first: use that
            os.link(tmp, path)
            fsync_dir(path.parent)
    except OSError as exc:
        raise ArtifactWriteError(
            f"cannot write {path}: {os.strerror(exc.errno or 0)}", path=str(path)
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    found = read_secret(path)
    if found is None:
        raise StoreError(f"{path} vanished as it was made")
    return found
