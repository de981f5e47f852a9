"""Reading a store's files without ever following a symbolic link below its root.

A store may come from elsewhere (a copy, an archive, a shared disk), and a symbolic
link put into it would make the store read, serve or export a file of this machine.
So every path below the root is walked one component at a time: files are opened
with ``O_NOFOLLOW`` relative to their directory's descriptor (``dir_fd``), and a
symbolic link, a directory where a file belongs (or the reverse), or anything that
is no regular file raises ``LayoutError`` naming the store-relative path. The root
itself may be a link (a store kept on another disk); nothing below it may.
Listings never descend into a linked directory and skip linked files: ``find_unsafe``
lists them for fsck, which reports each.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from exquisite_store.errors import LayoutError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: a FIFO planted in the store would block a plain open: O_NONBLOCK opens it at once,
#: and fstat then refuses it (it means nothing for a regular file)
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WHAT = {
    stat.S_IFLNK: "a symbolic link; the store never follows one",
    stat.S_IFDIR: "a directory where a file belongs",
    stat.S_IFREG: "a file where a directory belongs",
}


def layout_error(rel: str, mode: int) -> LayoutError:
    """The error for ``rel``, which is of file type ``mode`` where something else belongs."""
    what = _WHAT.get(stat.S_IFMT(mode), "not a regular file")
    return LayoutError(f"{rel} is {what} (run `exq fsck`)", path=rel)


def open_fd(root: Path, rel: str) -> int | None:
    """A read-only descriptor of the regular file ``root/rel``, or None if it is absent.

    Raises LayoutError when any component below ``root`` is a symbolic link or of the
    wrong type. The caller closes the descriptor.
    """
    folder, _, name = rel.rpartition("/")
    found = open_first(root, folder, (name,))
    return found[1] if found else None


def open_first(root: Path, folder: str, names: tuple[str, ...]) -> tuple[str, int] | None:
    """The first of ``names`` in ``root/folder`` that exists, opened for reading.

    The folder is walked once (each component ``O_NOFOLLOW`` relative to the last);
    then each name is tried in it. None if the folder or every name is absent.
    """
    fd = os.open(root, _DIR)
    parts = folder.split("/") if folder else []
    try:
        for i, part in enumerate(parts):
            nxt = _open_at(fd, part, _DIR | os.O_NOFOLLOW, parts[: i + 1])
            if nxt is None:
                return None
            os.close(fd)
            fd = nxt
        for name in names:
            found = _open_at(fd, name, _FILE, [*parts, name])
            if found is None:
                continue
            mode = os.fstat(found).st_mode
            if not stat.S_ISREG(mode):
                os.close(found)
                raise layout_error("/".join([*parts, name]), mode)
            return name, found
        return None
    finally:
        os.close(fd)


def _open_at(dir_fd: int, name: str, flags: int, rel: list[str]) -> int | None:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise layout_error("/".join(rel), os.lstat(name, dir_fd=dir_fd).st_mode) from None


def read_many(
    root: Path, items: Iterable[tuple[str, str]]
) -> Iterator[tuple[str, str, bytes | LayoutError | None]]:
    """``(folder, name, bytes)`` of each regular file ``root/folder/name``, in order.

    For reading many files of few folders: each folder is walked (``O_NOFOLLOW``) once
    while the names that follow it are in it, then every file is opened relative to it.
    The bytes are None for a file (or folder) that is absent, and the LayoutError that
    ``open_fd`` would raise for a link or a wrong type (the next items are still read).
    """
    folder_fd: int | None = None
    current: str | None = None
    try:
        for folder, name in items:
            if folder != current:
                if folder_fd is not None:
                    os.close(folder_fd)
                    folder_fd = None
                current = folder
                try:
                    folder_fd = _open_folder(root, folder)
                except LayoutError as exc:
                    folder_fd, current = None, None
                    yield folder, name, exc
                    continue
            if folder_fd is None:
                yield folder, name, None
                continue
            yield folder, name, _read_at(folder_fd, folder, name)
    finally:
        if folder_fd is not None:
            os.close(folder_fd)


def _open_folder(root: Path, folder: str) -> int | None:
    """A descriptor of the real directory ``root/folder`` (None if absent); LayoutError."""
    fd = os.open(root, _DIR)
    parts = folder.split("/") if folder else []
    for i, part in enumerate(parts):
        try:
            nxt = _open_at(fd, part, _DIR | os.O_NOFOLLOW, parts[: i + 1])
        finally:
            os.close(fd)
        if nxt is None:
            return None
        fd = nxt
    return fd


def _read_at(folder_fd: int, folder: str, name: str) -> bytes | LayoutError | None:
    rel = f"{folder}/{name}" if folder else name
    try:
        fd = _open_at(folder_fd, name, _FILE, rel.split("/"))
    except LayoutError as exc:
        return exc
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return layout_error(rel, st.st_mode)
        chunks = []
        while chunk := os.read(fd, max(st.st_size, 1 << 16)):
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def read_bytes(root: Path, rel: str) -> bytes | None:
    """The bytes of the regular file ``root/rel`` (None if absent); LayoutError as open_fd."""
    fd = open_fd(root, rel)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def lstat(root: Path, rel: str) -> os.stat_result | None:
    """The ``lstat`` of ``root/rel`` (None if absent), refusing a link or a wrong type on the way.

    Components before the last must be directories; the last may be a file or a directory.
    """
    folder, _, name = rel.rpartition("/")
    found = find_first(root, folder, (name,), leaf_dirs=True)
    return found[1] if found else None


def find_first(
    root: Path, folder: str, names: tuple[str, ...], *, leaf_dirs: bool = False
) -> tuple[str, os.stat_result] | None:
    """The first of ``names`` in ``root/folder`` that exists, and its ``lstat``.

    Every folder component must be a real directory and a found name a regular file
    (or, with ``leaf_dirs``, a directory): anything else raises LayoutError.
    """
    path = os.fspath(root)
    done: list[str] = []
    for part in folder.split("/") if folder else []:
        path = f"{path}/{part}"
        done.append(part)
        st = _lstat(path, done)
        if st is None:
            return None
        if not stat.S_ISDIR(st.st_mode):
            raise layout_error("/".join(done), st.st_mode)
    for name in names:
        st = _lstat(f"{path}/{name}", [*done, name])
        if st is None:
            continue
        if not (stat.S_ISREG(st.st_mode) or (leaf_dirs and stat.S_ISDIR(st.st_mode))):
            raise layout_error("/".join([*done, name]), st.st_mode)
        return name, st
    return None


def _lstat(path: str, rel: list[str]) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # raced with a change of an earlier component
        raise layout_error("/".join(rel[:-1]), stat.S_IFREG) from None


def walk_files(root: Path, rel: str) -> Iterator[str]:
    """Paths (relative to ``root/rel``, ``/``-separated) of the regular files below it.

    Never descends into a linked directory and never yields a link (fsck reports them);
    if ``rel`` is itself a link or lies below one, nothing is yielded. Entries vanishing
    during the walk are skipped.
    """
    try:
        st = lstat(root, rel)
    except LayoutError:
        return
    if st is not None and stat.S_ISDIR(st.st_mode):
        yield from _walk(root / rel, "")


def _walk(base: Path, rel: str) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(base / rel if rel else base), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        name = f"{rel}/{entry.name}" if rel else entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(base, name)
            elif entry.is_file(follow_symlinks=False):
                yield name
        except FileNotFoundError:
            continue


def find_unsafe(root: Path, subdirs: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(store-relative path, what it is)`` of every link or non-regular file in ``subdirs``."""
    out = []
    for sub in subdirs:
        try:
            st = os.lstat(root / sub)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            if not stat.S_ISREG(st.st_mode):
                out.append((sub, _unsafe_kind(st.st_mode)))
            continue
        stack = [sub]
        while stack:  # the directory entries' types come with the listing: no stat each
            rel = stack.pop()
            try:
                entries = list(os.scandir(root / rel))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                name = f"{rel}/{entry.name}"
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(name)
                    elif not entry.is_file(follow_symlinks=False):
                        out.append((name, _unsafe_kind(entry.stat(follow_symlinks=False).st_mode)))
                except FileNotFoundError:
                    continue
    return sorted(out)


def _unsafe_kind(mode: int) -> str:
    return "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
