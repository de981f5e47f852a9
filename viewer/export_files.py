"""The files of a static export: where it may go, atomic writes, the manifest, safe prune.

An export's root holds ``.exquisite-export.json``: the session and every file the
exporter wrote, with its size and id (the blake3 of its bytes, the store file it was
copied from, or the step whose canvas it is). A directory holding one is an export.
The manifest decides three things: a file is "unchanged" only when the manifest lists
it with the same id and it still has that size on disk; ``--prune`` removes only files
a previous export listed (and only while they still have the listed size); and a
non-empty directory without one is not written into unless forced. The store itself
is never an export target. The manifest also records each page's inputs (a hash of
everything its bytes depend on) and the links it made: a page whose inputs are the
same and whose file is whole is not rendered again, and its links are followed from
the record. Every file is written to a temp file and renamed into
place, so a full disk leaves the old file or none, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import msgspec

from exquisite_store.errors import UserError
from exquisite_store.store.process import ProcessStamp, host_name

MANIFEST = ".exquisite-export.json"
TMP_DIR = ".exquisite-export.tmp"
FORMAT = 1
OURS = (MANIFEST, TMP_DIR)


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One file an export wrote: its size in bytes and the id of what it holds."""

    size: int
    id: str


class PageRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True, array_like=True):
    """A rendered page: the hash of its inputs, and its links (indexes into ``links``)."""

    inputs: str
    links: list[int]


#: a link a page made: ``(path, kind, value, params)`` as ``href`` recorded it
Link = tuple[str, str, str, dict[str, Any]]


class Manifest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The manifest of an export (not hashed: free to change with the exporter)."""

    format: int = FORMAT
    session: str
    files: dict[str, Entry] = {}
    links: list[Link] = []
    pages: dict[str, PageRecord] = {}


_decoder = msgspec.json.Decoder(Manifest)
_encoder = msgspec.json.Encoder(order="sorted")


@dataclass
class ExportReport:
    """What an export did."""

    pages: int = 0
    files: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    paths: set[str] = field(default_factory=set)
    rendered: set[str] = field(default_factory=set)


def _strerror(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def safe_rel(rel: str) -> bool:
    """Whether ``rel`` is a plain relative path inside an export (not one of its own files)."""
    if not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts) and parts[0] not in OURS


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def read_manifest(out: Path) -> Manifest | None:
    """The manifest of the export in ``out`` (None if there is none); UserError if damaged."""
    try:
        data = (out / MANIFEST).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read {out / MANIFEST}: {_strerror(exc)}") from None
    try:
        man = _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise UserError(
            f"{out / MANIFEST} is damaged: pass --force to write the export over it "
            "(then --prune removes nothing)"
        ) from None
    man.files = {k: v for k, v in man.files.items() if safe_rel(k) and v.size >= 0}
    return man


def open_target(out: Path, store_root: Path, session: str, *, force: bool) -> Manifest | None:
    """Check that ``out`` may receive the export of ``session``; make it; the old manifest.

    Refused always: the store's directory or anything inside it, and a directory that
    holds a store. Refused unless ``force``: a non-empty directory that is not an export,
    a damaged manifest, and the export of another session. A new export's manifest is
    written before any other file, so a failed first export is still an export.
    """
    real = out.resolve()
    store_real = store_root.resolve()
    if _inside(real, store_real):
        raise UserError(
            f"refusing to export into the store ({store_real}): choose a directory outside it"
        )
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is not a directory")
    if (out / "store.toml").exists():
        raise UserError(f"{out} holds a store (store.toml): export into a directory of its own")
    try:
        previous = read_manifest(out)
    except UserError:
        if not force:
            raise
        previous = None
    if previous is None and not force and out.is_dir() and _has_others(out):
        raise UserError(
            f"{out} is not empty and holds no export ({MANIFEST}): choose an empty or "
            "new directory, or pass --force to write into it (nothing there is removed; "
            "--prune removes only files an export wrote)"
        )
    if previous is not None and previous.session != session and not force:
        raise UserError(
            f"{out} holds the export of session {previous.session!r}, not {session!r}: "
            "pass --force to replace it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the export to {out}: {_strerror(exc)}") from None
    _remove_dead_temp_files(out / TMP_DIR)
    if previous is None:
        write_manifest(out, Manifest(session=session))
    return previous


def _has_others(out: Path) -> bool:
    return any(p.name not in OURS for p in out.iterdir())


def _remove_dead_temp_files(tmp: Path) -> None:
    """Temp files of exports that were killed (named ``<pid>-<n>.part``)."""
    if not tmp.is_dir():
        return
    for p in tmp.iterdir():
        pid = p.name.split("-", 1)[0]
        if not (pid.isdigit() and ProcessStamp(host_name(), int(pid)).alive()):
            with contextlib.suppress(OSError):
                p.unlink()


class ExportWriter:
    """Writes a file only when it is new or changed, atomically; keeps the manifest."""

    def __init__(
        self,
        out: Path,
        report: ExportReport,
        previous: Manifest | None,
        store_root: Path | None = None,
        path_of: Callable[[str, str, dict[str, Any]], str] | None = None,
    ) -> None:
        self.out, self.report = out, report
        # where a link's file goes, from its kind, value and params: a record whose
        # path is that one keeps "" instead (the manifest stays about half as large)
        self.path_of = path_of
        self.real = out.resolve()
        self.store_root = store_root
        self.old: dict[str, Entry] = dict(previous.files) if previous else {}
        self.new: dict[str, Entry] = {}
        self.old_pages: dict[str, PageRecord] = dict(previous.pages) if previous else {}
        self.old_links: list[Link] = list(previous.links) if previous else []
        self.pages: dict[str, list[Link]] = {}  # this export's page records, links unpacked
        self.inputs: dict[str, str] = {}
        self.removed: set[str] = set()
        self.tmp = out / TMP_DIR
        self._dirs: set[Path] = set()
        self._n = itertools.count()

    # --- files ---------------------------------------------------------------------

    def put(self, rel: str, data: bytes, eid: str | None = None) -> None:
        """Bytes made by the exporter (a page, a JSON file, a canvas PNG)."""
        dest = self._dest(rel)
        entry = Entry(len(data), eid or "blake3:" + blake3.blake3(data).hexdigest())
        if self._listed(rel, dest, entry) or (rel not in self.old and _holds(dest, data)):
            self._unchanged(rel, entry)
            return
        self._commit(rel, dest, entry, lambda tmp: _write_bytes(tmp, data))

    def link(self, rel: str, src: Path, eid: str | None = None) -> None:
        """A file of the store (named by id, or listed as ``eid``): hard-link it, or copy it."""
        dest = self._dest(rel)
        try:
            st = os.stat(src, follow_symlinks=False)
        except OSError as exc:
            raise UserError(f"cannot read {src}: {_strerror(exc)}") from None
        entry = Entry(st.st_size, eid or self._source_id(src))
        if self._listed(rel, dest, entry) or _same_inode(dest, st):
            self._unchanged(rel, entry)
            return
        self._commit(rel, dest, entry, lambda tmp: _link_or_copy(src, tmp))

    def known(self, rel: str, eid: str) -> bool:
        """Whether the previous export wrote ``rel`` from ``eid`` and it is still whole."""
        dest = self._dest(rel)
        old = self.old.get(rel)
        if old is None or old.id != eid or _size(dest) != old.size:
            return False
        self._unchanged(rel, old)
        return True

    def page_known(self, rel: str, inputs: str) -> list[Link] | None:
        """The links of a page the previous export rendered from the same inputs, if whole.

        None when the page must be rendered: no record, other inputs, or its file is
        not the listed size any more.
        """
        rec, old = self.old_pages.get(rel), self.old.get(rel)
        if rec is None or old is None or rec.inputs != inputs or not self.known(rel, old.id):
            return None
        try:
            links = [self._unpack(self.old_links[i]) for i in rec.links]
        except IndexError:
            return None
        self.report.skipped += 1
        self.pages[rel], self.inputs[rel] = links, inputs
        return links

    def record_page(self, rel: str, inputs: str, links: list[Link]) -> None:
        """Remember what a rendered page was made from and what it links to."""
        self.pages[rel], self.inputs[rel] = links, inputs

    def _page_records(self, files: dict[str, Entry]) -> tuple[list[Link], dict[str, PageRecord]]:
        """This export's page records (and the earlier ones of pages still listed)."""
        table: list[Link] = []
        index: dict[tuple, int] = {}
        pages: dict[str, PageRecord] = {}

        def number(link: Link) -> int:
            link = self._pack(link)
            path, kind, value, params = link
            key = (path, kind, value, _encoder.encode(params) if params else b"")
            if key not in index:
                index[key] = len(table)
                table.append(link)
            return index[key]

        for rel, rec in self.old_pages.items():
            if rel in files and rel not in self.pages:
                with contextlib.suppress(IndexError):
                    pages[rel] = PageRecord(
                        rec.inputs, [number(self.old_links[i]) for i in rec.links]
                    )
        for rel, links in self.pages.items():
            pages[rel] = PageRecord(self.inputs[rel], [number(link) for link in links])
        return table, pages

    def _pack(self, link: Link) -> Link:
        path, kind, value, params = link
        if self.path_of is None or not path:
            return link
        try:
            derived = self.path_of(kind, value, params)
        except (KeyError, TypeError):  # a kind it cannot place: the path is kept
            return link
        return ("", kind, value, params) if derived == path else link

    def _unpack(self, link: Link) -> Link:
        path, kind, value, params = link
        if not path and self.path_of is not None:
            return (self.path_of(kind, value, params), kind, value, params)
        return link

    def _listed(self, rel: str, dest: Path, entry: Entry) -> bool:
        return self.old.get(rel) == entry and _size(dest) == entry.size

    def _unchanged(self, rel: str, entry: Entry) -> None:
        self.new[rel] = entry
        self.report.unchanged += 1

    def _source_id(self, src: Path) -> str:
        if self.store_root is not None:
            with contextlib.suppress(ValueError):
                return src.relative_to(self.store_root).as_posix()
        return src.name

    def _commit(self, rel: str, dest: Path, entry: Entry, fill) -> None:
        """Fill a temp file, rename it over ``dest``; a failure leaves ``dest`` as it was."""
        tmp = self.tmp / f"{os.getpid()}-{next(self._n)}.part"
        try:
            self.tmp.mkdir(exist_ok=True)
            fill(tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise UserError(f"cannot write {rel} into the export: {_strerror(exc)}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.new[rel] = entry
        self.report.written += 1

    def _dest(self, rel: str) -> Path:
        if not safe_rel(rel):
            raise UserError(f"refusing to write outside the export: {rel!r}")
        self.report.paths.add(rel)
        dest = self.out / rel
        parent = dest.parent
        if parent not in self._dirs:
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot write {rel} into the export: {_strerror(exc)}") from None
            if not _inside(parent.resolve(), self.real):
                raise UserError(f"refusing to write {rel}: its folder leads outside the export")
            self._dirs.add(parent)
        return dest

    # --- the manifest and prune ------------------------------------------------------

    def prune(self) -> None:
        """Remove files an earlier export listed and this one did not write or keep."""
        store = self.store_root.resolve() if self.store_root is not None else None
        for rel in sorted(set(self.old) - set(self.new)):
            path = self.out / rel
            try:
                st = path.lstat()
                parent = path.parent.resolve()
            except OSError:
                self.removed.add(rel)  # already gone
                continue
            if (
                not _inside(parent, self.real)
                or (store is not None and _inside(parent, store))
                or not path.is_file()
                or path.is_symlink()
                or st.st_size != self.old[rel].size
            ):
                continue  # not the file we wrote: keep it
            try:
                path.unlink()
            except OSError as exc:
                raise UserError(f"cannot remove {rel} from the export: {_strerror(exc)}") from None
            self.removed.add(rel)
            self.report.removed += 1
            _remove_empty_parents(path.parent, self.out)

    def finish(self, session: str) -> None:
        """Write the manifest: this export's files and earlier ones still on disk."""
        files = dict(self.new)
        for rel, entry in self.old.items():
            gone = rel in files or rel in self.removed
            if not gone and _size(self.out / rel) == entry.size:
                files[rel] = entry
        links, pages = self._page_records(files)
        write_manifest(self.out, Manifest(session=session, files=files, links=links, pages=pages))
        with contextlib.suppress(OSError):
            self.tmp.rmdir()


def write_manifest(out: Path, manifest: Manifest) -> None:
    """Write an export's manifest atomically (through its temp folder)."""
    tmp = out / TMP_DIR / f"{os.getpid()}-manifest.part"
    try:
        tmp.parent.mkdir(exist_ok=True)
        _write_bytes(tmp, _encoder.encode(manifest))
        os.replace(tmp, out / MANIFEST)
    except OSError as exc:
        raise UserError(f"cannot write {MANIFEST} into the export: {_strerror(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _holds(path: Path, data: bytes) -> bool:
    """Whether ``path`` holds exactly ``data`` (a file of an export without a manifest)."""
    if _size(path) != len(data):
        return False
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def _same_inode(dest: Path, st: os.stat_result) -> bool:
    try:
        d = dest.stat()
    except OSError:
        return False
    return (d.st_ino, d.st_dev, d.st_size) == (st.st_ino, st.st_dev, st.st_size)


def _write_bytes(path: Path, data: bytes) -> None:
    """Write a new file whole (a short write goes on; a full disk raises)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _link_or_copy(src: Path, tmp: Path) -> None:
    """Hard-link (or copy) a store file that was checked to have no link on its way."""
    try:
        os.link(src, tmp, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
        # another filesystem, or links not allowed: copy, never through a link
        with open(os.open(src, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f, open(tmp, "wb") as d:
            shutil.copyfileobj(f, d)


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
