"""Refs, the only mutable state: branch heads, HEAD and the session pointer, by CAS."""

from __future__ import annotations

import re

import msgspec

from exquisite_store.authorship import author
from exquisite_store.errors import InvalidName, NotFound, UserError
from exquisite_store.ids import check_id
from exquisite_store.store.storage import BaseStorage

NAME_MAX = 64
#: the store's users, tokens and share links (``core.team``); no session can be called
#: ``_team``, so this ref is never a session's
TEAM_REF = "_team/users"
#: a session or branch name; also the viewer's URL rule and its forms' ``pattern``
#: (the ``-`` is escaped: browsers compile ``pattern`` with the ``v`` flag)
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._~\-]{0,63}"
_NAME = re.compile(f"^{NAME_PATTERN}$")


def check_name(value: str, what: str = "name") -> str:
    """Validate a session or branch name: it becomes one path component, nothing more."""
    if not isinstance(value, str) or not value:
        raise InvalidName(f"{what} must not be empty", value=value)
    if len(value) > NAME_MAX:
        raise InvalidName(f"{what} is longer than {NAME_MAX} characters", value=value[:80])
    if not _NAME.match(value) or ".." in value or value.endswith((".lock", ".")):
        raise InvalidName(
            f"{what} {value!r:.80} may hold only letters, digits and . _ ~ - "
            "(starting with a letter or digit, no '..', not ending in '.lock')",
            value=value,
        )
    return value


class ReflogEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of a reflog (``author``: who moved the ref; older lines have none)."""

    old: str | None
    new: str
    time_ms: int
    message: str
    author: str = ""


_reflog_decoder = msgspec.json.Decoder(ReflogEntry)


_JOB = re.compile(r"^[0-9a-f]{1,32}$")


def staging_name(branch: str, job: str, candidate: int) -> str:
    """``<branch>/<job>/<k>``: where candidate ``k`` of a job that grows ``branch`` waits."""
    if not _JOB.match(job) or not 1 <= candidate <= 99:
        raise InvalidName(f"not a staging place: job {job!r:.40}, candidate {candidate}")
    return f"{check_name(branch, 'branch')}/{job}/{candidate}"


def parse_staging_name(name: str) -> tuple[str, str, int]:
    """``(branch, job, candidate)`` of a staging name; InvalidName if it is none."""
    parts = name.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        raise InvalidName(f"not a staging place: {name!r:.80}")
    staging_name(parts[0], parts[1], int(parts[2]))
    return parts[0], parts[1], int(parts[2])


class Refs:
    """Branch heads of sessions over a storage backend."""

    def __init__(self, storage: BaseStorage, clock_ms: object) -> None:
        self.storage = storage
        self._clock_ms = clock_ms

    @staticmethod
    def branch_ref(session: str, branch: str) -> str:
        """The ref name of a branch."""
        return f"{check_name(session, 'session')}/heads/{check_name(branch, 'branch')}"

    def sessions(self) -> list[str]:
        """Names of every session with a session pointer (only the top of ``refs/`` is read)."""
        refs = self.storage.list_refs(depth=2)
        return sorted(r.split("/")[0] for r in refs if r.endswith("/session"))

    def branches(self, session: str) -> dict[str, str]:
        """``{branch: step id}`` of a session."""
        return self._values_under(f"{check_name(session, 'session')}/heads/")

    def head(self, session: str, branch: str) -> str:
        """The step id a branch points at; NotFound if no such branch."""
        value = self.storage.read_ref(self.branch_ref(session, branch))
        if value is None:
            raise NotFound(f"session {session!r} has no branch {branch!r}", branch=branch)
        return check_id(value)

    def update(self, session: str, branch: str, old: str | None, new: str, message: str) -> None:
        """Compare-and-swap a branch from ``old`` (None: must not exist) to ``new``."""
        self._cas(self.branch_ref(session, branch), old, check_id(new), message)

    def delete(self, session: str, branch: str, old: str, message: str) -> None:
        """Remove a branch that points at ``old``; HEAD's branch cannot be removed.

        Its steps stay reachable through the reflog (a gc root): nothing is lost.
        """
        if branch == self.current_branch(session):
            raise UserError(f"{branch!r} is HEAD's branch; point HEAD elsewhere first")
        name = self.branch_ref(session, branch)
        entry = ReflogEntry(
            old=old, new="", time_ms=self._clock_ms(), message=message, author=author()
        )  # type: ignore[operator]
        self.storage.delete_ref(name, check_id(old), msgspec.json.encode(entry))

    def staged(self, session: str) -> dict[str, str]:
        """``{staging name: step id}``: candidates waiting for someone to decide."""
        return self._values_under(f"{check_name(session, 'session')}/staging/")

    def _values_under(self, prefix: str) -> dict[str, str]:
        """``{name below prefix: value}`` of every ref under ``prefix`` that holds one."""
        out = {}
        for name in self.storage.list_refs(prefix):
            value = self.storage.read_ref(name)
            if value:
                out[name[len(prefix) :]] = value
        return out

    def tracking(self, session: str, remote: str) -> dict[str, str]:
        """``{branch: step id}`` as last fetched from (or pushed to) ``remote``."""
        prefix = f"{check_name(session, 'session')}/remotes/{check_name(remote, 'remote')}/"
        return self._values_under(prefix)

    def update_tracking(self, session: str, remote: str, branch: str, new: str) -> None:
        """Record that ``remote``'s ``branch`` was seen at ``new`` (a logged CAS)."""
        name = f"{check_name(session, 'session')}/remotes/{check_name(remote, 'remote')}/"
        name += check_name(branch, "branch")
        old = self.storage.read_ref(name)
        if old != new:
            self._cas(name, old, check_id(new), f"remote: {remote} had {branch} at {new[:12]}")

    def update_staging(
        self, session: str, name: str, old: str | None, new: str, message: str
    ) -> None:
        """Compare-and-swap a staging ref (``staging_name``)."""
        parse_staging_name(name)
        self._cas(f"{check_name(session, 'session')}/staging/{name}", old, check_id(new), message)

    def delete_staging(self, session: str, name: str, old: str, message: str) -> None:
        """Remove a staging ref; its step stays reachable through its reflog."""
        parse_staging_name(name)
        ref = f"{check_name(session, 'session')}/staging/{name}"
        entry = ReflogEntry(
            old=old, new="", time_ms=self._clock_ms(), message=message, author=author()
        )  # type: ignore[operator]
        self.storage.delete_ref(ref, check_id(old), msgspec.json.encode(entry))

    def current_branch(self, session: str) -> str:
        """The branch HEAD names (``main`` if HEAD is missing)."""
        value = self.storage.read_ref(f"{check_name(session, 'session')}/HEAD")
        return value or "main"

    def set_current_branch(self, session: str, branch: str) -> None:
        """Point HEAD at a branch."""
        name = f"{check_name(session, 'session')}/HEAD"
        self._cas(name, self.storage.read_ref(name), check_name(branch, "branch"), "checkout")

    def session_pointer(self, session: str) -> str | None:
        """The id of the session's current session manifest."""
        return self.storage.read_ref(f"{check_name(session, 'session')}/session")

    def set_session_pointer(self, session: str, old: str | None, new: str, message: str) -> None:
        """CAS the session manifest pointer."""
        self._cas(f"{check_name(session, 'session')}/session", old, check_id(new), message)

    def create_ref(self, name: str, new: str, message: str) -> None:
        """Create ref ``name`` (a path under the session, e.g. ``S/plans/ID``) at ``new``.

        BranchMoved if it exists already.
        """
        check_name(name.split("/", 1)[0], "session")
        self._cas(name, None, check_id(new), message)

    def update_ref(self, name: str, old: str | None, new: str, message: str) -> None:
        """Compare-and-swap any ref from ``old`` (None: must not exist) to ``new``, logged."""
        self._cas(name, old, check_id(new), message)

    def reflog(self, ref: str) -> list[ReflogEntry]:
        """The reflog of a ref, oldest first (unreadable lines skipped)."""
        out = []
        for line in self.storage.read_log(f"refs/{ref}"):
            try:
                out.append(_reflog_decoder.decode(line))
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
        return out

    def _cas(self, name: str, old: str | None, new: str, message: str) -> None:
        entry = ReflogEntry(
            old=old, new=new, time_ms=self._clock_ms(), message=message, author=author()
        )  # type: ignore[operator]
        self.storage.cas_ref(name, old, new, msgspec.json.encode(entry))
