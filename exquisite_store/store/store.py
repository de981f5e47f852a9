"""The store facade: one root directory, its objects, refs and logs (DESIGN.md §3)."""

from __future__ import annotations

import contextlib
import os
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from exquisite_store import imageio
from exquisite_store.authorship import recorded
from exquisite_store.errors import (
    AlreadyExists,
    ArtifactWriteError,
    BranchMoved,
    NotFound,
    StoreError,
)
from exquisite_store.ids import ObjectId, check_id, is_id
from exquisite_store.manifests import Attempt, Canvas, Result, Session, Step, StepParams
from exquisite_store.store import s3store
from exquisite_store.store.canvas import compose_full, put_canvas
from exquisite_store.store.files import atomic_write, ensure_dir
from exquisite_store.store.objects import ObjectStore
from exquisite_store.store.refs import Refs, check_name
from exquisite_store.store.storage import BaseStorage, DiskStorage, MemoryStorage

FORMAT_VERSION = 1
DEFAULT_TILE_SIZE = 256
TILE_SIZES = (64, 128, 256, 512, 1024)
Clock = Callable[[], int]


def _request_shard(request_id: str) -> str:
    """The log of the store's response index that lists ``request_id``."""
    return f"requests/{check_id(request_id)[:2]}"


def wall_clock_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class LogLine(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of an attempt or event log (not hashed, so free-form fields are fine)."""

    seq: int = 0
    time_ms: int = 0
    type: str = ""
    id: str = ""
    kind: str = ""
    message: str = ""
    data: dict[str, Any] = {}


_log_decoder = msgspec.json.Decoder(LogLine)


def _seq_of(line: bytes) -> int:
    """The sequence number of an event line (-1 if unreadable: such a line is skipped)."""
    try:
        return _log_decoder.decode(line).seq
    except (msgspec.ValidationError, msgspec.DecodeError):
        return -1


class Store:
    """Objects, refs and logs of one store; every path derives from ``storage``."""

    def __init__(
        self,
        storage: BaseStorage,
        *,
        tile_size: int = DEFAULT_TILE_SIZE,
        clock: Clock | None = None,
    ) -> None:
        self.storage = storage
        self.tile_size = tile_size
        self.clock_ms: Clock = clock or wall_clock_ms
        self.objects = ObjectStore(storage)
        self.refs = Refs(storage, self.clock_ms)
        #: told of each event once it is in the log: ``(session, seq, line)`` (live feeds)
        self.on_event: Callable[[str, int, bytes], None] | None = None

    # --- opening -----------------------------------------------------------------

    @classmethod
    def init(
        cls,
        root: Path | str,
        *,
        tile_size: int = DEFAULT_TILE_SIZE,
        clock: Clock | None = None,
        endpoint: str | None = None,
    ) -> Store:
        """Create a store at ``root`` (folder or s3:// address); AlreadyExists if one is."""
        if tile_size not in TILE_SIZES:
            raise StoreError(f"tile size must be one of {TILE_SIZES}, not {tile_size}")
        text = f"# exquisite-store\nformat_version = {FORMAT_VERSION}\ntile_size = {tile_size}\n"
        if s3store.is_s3(root):
            storage = s3store.connect(str(root), endpoint)
            s3store.write_config(storage, text)
            return cls(storage, tile_size=tile_size, clock=clock)
        root = Path(root).absolute()
        if (root / "store.toml").exists():
            raise AlreadyExists(f"a store already exists at {root}", path=str(root))
        try:
            for sub in ("objects", "refs", "logs", "tmp", "cache"):
                ensure_dir(root / sub)
        except OSError as exc:  # a full disk: one line, and a rerun finishes the job
            raise ArtifactWriteError(
                f"cannot create the store at {root}: {os.strerror(exc.errno or 0) or exc}",
                path=str(root),
            ) from exc
        atomic_write(root / "store.toml", text.encode(), tmp_dir=root / "tmp", exclusive=True)
        return cls(DiskStorage(root), tile_size=tile_size, clock=clock)

    @classmethod
    def open(
        cls, root: Path | str, *, clock: Clock | None = None, endpoint: str | None = None
    ) -> Store:
        """Open the store at ``root`` (a folder or ``s3://bucket/prefix``).

        StoreError if there is none or it is newer; on S3, ProbeFailed if the server
        ignores the conditional writes the store relies on.
        """
        storage: BaseStorage
        if s3store.is_s3(root):
            storage = s3store.connect(str(root), endpoint)
            conf = s3store.read_config(storage)
        else:
            root = Path(root).absolute()
            storage = DiskStorage(root)
            try:
                conf = tomllib.loads((root / "store.toml").read_text())
            except FileNotFoundError:
                raise StoreError(f"no store at {root} (create one with `exq init`)") from None
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise StoreError(f"{root / 'store.toml'} is damaged: {exc}") from exc
        if conf.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"store format {conf.get('format_version')!r} is not supported")
        tile = conf.get("tile_size")
        if tile not in TILE_SIZES:
            raise StoreError(f"store.toml has an invalid tile_size {tile!r}")
        return cls(storage, tile_size=tile, clock=clock)

    @classmethod
    def memory(cls, *, tile_size: int = DEFAULT_TILE_SIZE, clock: Clock | None = None) -> Store:
        """A store that lives in memory (tests, benchmarks)."""
        return cls(MemoryStorage(), tile_size=tile_size, clock=clock)

    @property
    def root(self) -> Path | None:
        """The store directory (None for a memory or an object-storage store)."""
        return getattr(self.storage, "root", None)

    @property
    def location(self) -> str:
        """Where the store is (for people and ``Store.open``): its folder or ``s3://`` address."""
        root = self.root
        return str(root) if root is not None else getattr(self.storage, "url", "memory")

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Held by every writer of a step; gc takes it exclusively."""
        return self.storage.writer_lock(exclusive=False)

    # --- sessions ------------------------------------------------------------------

    def create_session(
        self,
        name: str,
        image: np.ndarray,
        *,
        title: str = "",
        source_name: str = "",
        defaults: StepParams | None = None,
        budget_micro_usd: int | None = None,
        import_notes: tuple[str, ...] = (),
    ) -> tuple[Session, ObjectId]:
        """Import ``image`` as the root step of a new session on branch ``main``.

        Objects first, then branch ``main`` and HEAD, and last the session pointer,
        which is what makes a session exist: a failure at any write leaves no session
        (a rerun succeeds) or a whole one. A ``main`` without a session pointer is the
        remains of such a failure and is moved to the new root (its reflog keeps the
        old one). Creations of one name are serialised by a per-session lock.
        """
        check_name(name, "session")
        if self.refs.session_pointer(name) is not None:  # before the lock: write nothing
            raise AlreadyExists(f"session {name!r} already exists", session=name)
        if imageio.mode_of(image) not in imageio.CANVAS_MODES:
            raise StoreError(f"start image must be RGB or RGBA, not {imageio.mode_of(image)}")
        with self.storage.log_lock(f"sessions/{name}/create"):
            if self.refs.session_pointer(name) is not None:  # created while we waited
                raise AlreadyExists(f"session {name!r} already exists", session=name)
            now = self.clock_ms()
            with self.writing():
                canvas = put_canvas(self.objects, image, 0, 0, self.tile_size)
                canvas_id = self.objects.put_json(canvas)
                root = Step(
                    author=recorded(),
                    session=name,
                    created_ms=now,
                    source_name=source_name,
                    result=Result(canvas_id=canvas_id, width=canvas.width, height=canvas.height),
                    import_notes=tuple(import_notes) if import_notes else msgspec.UNSET,
                )
                root_id = self.objects.put_json(root)
                session = Session(
                    name=name,
                    title=title or name,
                    created_ms=now,
                    root=root_id,
                    defaults=defaults or StepParams(),
                    budget_micro_usd=budget_micro_usd,
                )
                sid = self.objects.put_json(session)
                leftover = self.storage.read_ref(Refs.branch_ref(name, "main"))
                message = "root: import start image"
                if leftover is not None:
                    message += " (replacing the remains of a failed creation)"
                self.refs.update(name, "main", leftover, root_id, message)
                self.refs.set_current_branch(name, "main")
                try:
                    self.refs.set_session_pointer(name, None, sid, "create session")
                except BranchMoved:  # not through this method: it holds the lock
                    raise AlreadyExists(f"session {name!r} already exists", session=name) from None
        return session, root_id

    def session(self, name: str) -> Session:
        """The current session manifest; NotFound if there is no such session."""
        sid = self.refs.session_pointer(name)
        if sid is None:
            raise NotFound(f"no session {name!r}", session=name)
        return self.objects.get_manifest(sid, Session)

    def update_session(self, name: str, message: str, **changes: Any) -> Session:
        """Store a new version of the session manifest and CAS its pointer."""
        old_id = self.refs.session_pointer(name)
        if old_id is None:
            raise NotFound(f"no session {name!r}", session=name)
        new = msgspec.structs.replace(self.objects.get_manifest(old_id, Session), **changes)
        with self.writing():
            self.refs.set_session_pointer(name, old_id, self.objects.put_json(new), message)
        return new

    # --- steps -----------------------------------------------------------------------

    def step(self, step_id: str) -> Step:
        """A step manifest by full id."""
        return self.objects.get_manifest(step_id, Step)

    def resolve_step(self, ref: str, session: str | None = None) -> ObjectId:
        """A step id from an id prefix, or ``BRANCH`` / ``SESSION:BRANCH`` name."""
        if session is not None and ref in self.refs.branches(session):
            return ObjectId(self.refs.head(session, ref))
        if ":" in ref:
            s, b = ref.split(":", 1)
            return ObjectId(self.refs.head(s, b))
        oid = self.objects.resolve(ref)
        self.objects.get_manifest(oid, Step)
        return oid

    def canvas(self, step: Step) -> Canvas:
        """The canvas manifest of a step."""
        return self.objects.get_manifest(step.result.canvas_id, Canvas)

    def canvas_pixels(self, step: Step) -> np.ndarray:
        """The whole canvas of a step as an array."""
        return compose_full(self.objects, self.canvas(step))

    def history(self, step_id: str) -> Iterator[tuple[ObjectId, Step]]:
        """A step and its ancestors, newest first."""
        current: str | None = step_id
        while current is not None:
            step = self.step(current)
            yield ObjectId(current), step
            current = step.parent

    # --- logs ---------------------------------------------------------------------------

    def record_attempt(self, attempt: Attempt) -> ObjectId:
        """Store an attempt manifest and list it in its session's attempt log."""
        aid = self.objects.put_json(attempt)
        line = LogLine(
            time_ms=self.clock_ms(),
            type="attempt",
            id=aid,
            kind=attempt.failure_kind,
            message=attempt.message[:500],
        )
        self.storage.append_log(
            f"sessions/{check_name(attempt.session, 'session')}/attempts", msgspec.json.encode(line)
        )
        return aid

    def attempts(self, session: str) -> list[LogLine]:
        """The attempt log of a session, oldest first."""
        return self._read_log(f"sessions/{check_name(session, 'session')}/attempts")

    def record_response(self, session: str, request_id: str, response_id: str) -> None:
        """List a backend response under its request id: for replay, and the run cache.

        The session's log serves replay; the store's index (``logs/requests/<ab>``, by
        the request id's first two hex digits) lets any later step find it in one read.
        """
        line = LogLine(
            time_ms=self.clock_ms(),
            type="response",
            id=response_id,
            kind=request_id,
            message=check_name(session, "session"),
        )
        raw = msgspec.json.encode(line)
        self.storage.append_log(f"sessions/{session}/responses", raw)
        self.storage.append_log(_request_shard(request_id), raw)

    def find_cached_response(self, request_id: str) -> str | None:
        """The newest response recorded in this store (any session) to ``request_id``."""
        for line in reversed(self._read_log(_request_shard(request_id))):
            if line.kind == request_id and is_id(line.id):
                return line.id
        return None

    def find_response(self, session: str, request_id: str) -> str | None:
        """The newest recorded response to ``request_id`` in a session."""
        for line in reversed(
            self._read_log(f"sessions/{check_name(session, 'session')}/responses")
        ):
            if line.kind == request_id:
                return line.id
        return None

    def append_event(self, session: str, type_: str, **data: Any) -> int:
        """Append an event with the next sequence number; returns it.

        Every event but ``progress`` is flushed to disk: a phase note lost in a crash
        costs nothing, and a step has nine of them.
        """
        name = f"sessions/{check_name(session, 'session')}/events"

        def make_line(seq: int) -> bytes:
            line = LogLine(seq=seq, time_ms=self.clock_ms(), type=type_, data=data)
            made.append(msgspec.json.encode(line))  # object storage may ask again
            return made[-1]

        made: list[bytes] = []
        seq = self.storage.append_numbered(
            name, make_line, lambda: self._last_seq(name), durable=type_ != "progress"
        )
        if self.on_event is not None:
            self.on_event(session, seq, made[-1])
        return seq

    def last_event_seq(self, session: str) -> int:
        """The sequence number of a session's newest event (0 if none)."""
        return self._last_seq(f"sessions/{check_name(session, 'session')}/events")

    def _last_seq(self, name: str) -> int:
        last = self.storage.last_log_line(name)
        if last is None:
            return 0
        try:
            return _log_decoder.decode(last).seq
        except (msgspec.ValidationError, msgspec.DecodeError):
            return len(self.storage.read_log(name))  # a damaged last line: count instead

    def events(self, session: str, after: int = 0) -> list[LogLine]:
        """Events of a session with a sequence number above ``after``."""
        name = f"sessions/{check_name(session, 'session')}/events"
        lines = self.storage.read_numbered(name, after, _seq_of)
        return [e for e in self._decode(lines) if e.seq > after]

    def tail_events(
        self, session: str, cursor: int = 0, after: int = 0
    ) -> tuple[list[LogLine], int]:
        """Events appended since ``cursor`` (0: the whole log) numbered above ``after``.

        Returns them and the cursor to pass next time: a follower reads each line once,
        never the whole log again (the viewer's live progress polls this).
        """
        name = f"sessions/{check_name(session, 'session')}/events"
        lines, cursor = self.storage.read_log_from(name, cursor)
        return [e for e in self._decode(lines) if e.seq > after], cursor

    def _read_log(self, name: str) -> list[LogLine]:
        return self._decode(self.storage.read_log(name))

    @staticmethod
    def _decode(lines: list[bytes]) -> list[LogLine]:
        out = []
        for raw in lines:
            try:
                out.append(_log_decoder.decode(raw))
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
        return out
