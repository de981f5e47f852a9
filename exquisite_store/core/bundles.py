"""Bundles: a session (or some of its branches) in one file, and back into any store.

Making a bundle is a transfer into a file: ``copy_closure`` walks from the chosen
branches, their reflogs, the attempts and the session's settings, each object read
and rehashed once, children first. Importing is the same transfer out of it: each
object is rehashed and stored the moment it is read if the store lacks it, then the
branches move by the remotes' fast-forward rule (a branch that moved here is refused
with both ids) and, last, the session pointer (on a new session, what makes it exist).
A graft moves a branch of one session into another copy of it in the same store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from exquisite_store.core.events import ref_moved
from exquisite_store.core.remotes import RefMove, SyncReport, apply_move, decide_move
from exquisite_store.errors import NotFound, StoreError, UserError
from exquisite_store.ids import EXTENSIONS, check_id, is_id, short
from exquisite_store.manifests import Attempt, Session, Step
from exquisite_store.store import Store
from exquisite_store.store.bundle import FORMAT, VERSION, BundleHeader, BundleWriter, read_bundle
from exquisite_store.store.refs import ReflogEntry, check_name
from exquisite_store.store.store import LogLine
from exquisite_store.store.transfer import Transfer, copy_closure

Progress = Callable[[Transfer], None]
_reflog = msgspec.json.Decoder(ReflogEntry)
_logline = msgspec.json.Decoder(LogLine)


@dataclass(frozen=True)
class BundleMade:
    """What ``create_bundle`` wrote."""

    path: Path
    session: str
    branches: dict[str, str]
    transfer: Transfer = field(default_factory=Transfer)
    attempts: int = 0


def create_bundle(
    store: Store,
    session: str,
    path: Path,
    branches: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> BundleMade:
    """Write ``session`` (or only ``branches``) into the bundle file ``path``.

    The file appears whole or not at all (written beside it, then renamed).
    """
    store.session(session)
    pointer = store.refs.session_pointer(session)
    heads = store.refs.branches(session)
    for b in branches:
        if b not in heads:
            raise NotFound(f"session {session!r} has no branch {check_name(b, 'branch')!r}")
    chosen = {b: heads[b] for b in (branches or sorted(heads))}
    reflogs = {
        b: [msgspec.json.encode(e).decode() for e in store.refs.reflog(f"{session}/heads/{b}")]
        for b in chosen
    }
    attempts = []
    for line in store.attempts(session):
        if not is_id(line.id) or not store.objects.has(line.id):
            continue
        if branches and store.objects.get_manifest(line.id, Attempt).branch not in chosen:
            continue
        attempts.append(line)
    roots = [*chosen.values(), str(pointer)]
    for lines in reflogs.values():
        for raw in lines:
            e = _reflog.decode(raw)
            roots.extend(v for v in (e.old, e.new) if is_id(v))
    roots.extend(line.id for line in attempts)
    current = store.refs.current_branch(session)
    header = BundleHeader(
        format=FORMAT,
        version=VERSION,
        session=session,
        session_pointer=str(pointer),
        head=current if current in chosen else next(iter(chosen), "main"),
        branches=chosen,
        reflogs=reflogs,
        pointer_history=sorted(
            {v for e in store.refs.reflog(f"{session}/session") for v in (e.old, e.new) if v}
        ),
        attempts=[msgspec.json.encode(line).decode() for line in attempts],
        tile_size=store.tile_size,
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            writer = BundleWriter(f, header)
            try:
                t = copy_closure(store, Store(writer), roots, progress)
            finally:
                writer.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return BundleMade(path, session, chosen, t, len(attempts))


def import_bundle(
    store: Store, path: Path, as_name: str | None = None, progress: Progress | None = None
) -> SyncReport:
    """Store what the bundle at ``path`` holds that this store lacks; add its refs.

    Every object is rehashed as it is read: the first that fails stops the import
    (IntegrityError naming its id) before any ref moves. A branch here that is not an
    ancestor of the bundle's is refused (the report's ``refused``), the others move.
    """
    report = SyncReport()
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; a clear error if it is missing)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        header, objects = read_bundle(f, store.storage.has_object)
        name = check_name(as_name or header.session, "session")
        for v in [header.session_pointer, *header.branches.values()]:
            check_id(v)
        for b in header.branches:
            check_name(b, "branch")
        with store.writing():
            for obj in objects:
                if store.storage.put_object(obj.id, EXTENSIONS[obj.kind], obj.data):
                    report.transfer.copied += 1
                    report.transfer.bytes += len(obj.data)
                else:
                    report.transfer.present += 1
                if progress is not None:
                    progress(report.transfer)
            _apply_refs(store, header, name, report)
    return report


def _apply_refs(store: Store, header: BundleHeader, name: str, report: SyncReport) -> None:
    """Move the refs a bundle carries; every object they need is stored by now."""
    for b, v in header.branches.items():
        if not store.objects.has(v):
            raise StoreError(f"the bundle lacks step {v} that its branch {b} points at")
        store.objects.get_manifest(v, Step)
    if not store.objects.has(header.session_pointer):
        raise StoreError(f"the bundle lacks its session manifest {header.session_pointer}")
    theirs = store.objects.get_manifest(header.session_pointer, Session)
    our_sid = store.refs.session_pointer(name)
    if our_sid is not None:
        ours = store.objects.get_manifest(our_sid, Session)
        if ours.root != theirs.root:
            raise StoreError(
                f"this store's session {name!r} is another session (its root is "
                f"{short(ours.root)}, the bundle's {short(theirs.root)}); import it with --as NEW"
            )
    new_sid = header.session_pointer
    if theirs.name != name:  # imported under another name: the same settings, its own name
        new_sid = store.objects.put_json(msgspec.structs.replace(theirs, name=name))
    branches = store.refs.branches(name)
    for b, v in sorted(header.branches.items()):
        old = branches.get(b)
        if old is None and not store.refs.reflog(f"{name}/heads/{b}"):
            _copy_reflog(store, name, b, header.reflogs.get(b, []))
        move = apply_move(store, decide_move(store, name, b, old, v))
        if move.status == "refused" and "diverged" in move.reason:
            move = RefMove(
                name, b, old, v, "refused",
                f"{name}:{b} has diverged: in the bundle {short(v)}, here {short(old or '')} "
                "(neither contains the other; import with --as NEW, or graft it to a new branch)",
            )  # fmt: skip
        report.moves.append(move)
        if move.status in ("created", "fast-forward"):
            ref_moved(store, name, f"heads/{b}", old, v, "bundle")
    _copy_attempts(store, name, header.attempts)
    if our_sid is None:
        head = header.head if header.head in header.branches else sorted(header.branches)[0]
        store.refs.set_current_branch(name, head)
        store.refs.set_session_pointer(name, None, new_sid, "bundle: session")
        report.moves.append(RefMove(name, "(session)", None, new_sid, "created"))
    elif our_sid != new_sid and our_sid in header.pointer_history and theirs.name == name:
        store.refs.set_session_pointer(name, our_sid, new_sid, "bundle: session")
        report.moves.append(RefMove(name, "(session)", our_sid, new_sid, "fast-forward"))


def _copy_reflog(store: Store, session: str, branch: str, lines: list[str]) -> None:
    """Give a branch new here the history it had where the bundle was made."""
    for raw in lines:
        try:
            e = _reflog.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        if (e.old is None or is_id(e.old)) and (e.new == "" or is_id(e.new)):
            line = msgspec.structs.replace(e, message=f"(before the bundle) {e.message}"[:500])
            store.storage.append_log(f"refs/{session}/heads/{branch}", msgspec.json.encode(line))


def _copy_attempts(store: Store, session: str, lines: list[str]) -> None:
    """List the bundle's attempts in this session's attempt log (each once)."""
    listed = {line.id for line in store.attempts(session)}
    for raw in lines:
        try:
            line = _logline.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        if is_id(line.id) and line.id not in listed and store.objects.has(line.id):
            line = msgspec.structs.replace(line, message=line.message[:500], data={})
            store.storage.append_log(f"sessions/{session}/attempts", msgspec.json.encode(line))
            listed.add(line.id)


def graft(store: Store, session: str, source: str, as_branch: str | None = None) -> RefMove:
    """Bring branch ``OTHER:BRANCH`` of another session of this store into ``session``.

    The two must be copies of one session (the same root: a bundle imported with
    ``--as``, say); the branch is created, or fast-forwarded, never moved back.
    """
    other, _, branch = source.partition(":")
    check_name(other, "session")
    if not branch:
        raise UserError(f"--from takes OTHER:BRANCH, not {source!r:.80}")
    check_name(branch, "branch")
    if other == session:
        raise UserError(f"{source} is a branch of {session} already")
    store.session(session)
    store.session(other)
    head = store.refs.head(other, branch)
    if not store.belongs(head, session):
        raise UserError(
            f"{source} shares no history with {session!r} (its steps grow from another root); "
            "a graft joins copies of one session, e.g. a bundle imported with --as"
        )
    name = check_name(as_branch or branch, "branch")
    with store.writing():
        old = store.refs.branches(session).get(name)
        move = apply_move(store, decide_move(store, session, name, old, head))
    if move.status == "refused" and "diverged" in move.reason:
        move = RefMove(
            session, name, old, head, "refused",
            f"{session}:{name} has diverged: {source} is at {short(head)}, "
            f"{session}:{name} at {short(old or '')}; graft it as another branch (--as NAME)",
        )  # fmt: skip
    if move.status in ("created", "fast-forward"):
        ref_moved(store, session, f"heads/{name}", old, head, "graft")
    return move
