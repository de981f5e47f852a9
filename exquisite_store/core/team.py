"""Who may use a shared viewer: users and roles, API tokens, expiring read-only links.

Kept in the store, like everything else: one ``Team`` manifest under the ref
``_team/users`` (no session can have that name), changed by compare-and-swap with a
reflog, so every viewer process sees a revocation on its next request. A token or a
link is shown once when it is made; the store keeps only its salted scrypt hash.
Tokens read ``exq_<id>_<secret>``, links ``<id>.<secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from exquisite_store.authorship import check_author
from exquisite_store.errors import AlreadyExists, BranchMoved, NotFound, UserError
from exquisite_store.manifests import Member, Secret, Team
from exquisite_store.store import Store
from exquisite_store.store.refs import TEAM_REF, check_name

ROLES = ("viewer", "editor", "admin")
#: scrypt's cost: about 30 ms a check here (a verified secret is remembered per process)
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_TOKEN = re.compile(r"^exq_([0-9a-f]{12})_([A-Za-z0-9_-]{20,64})$")
_LINK = re.compile(r"^([0-9a-f]{12})\.([A-Za-z0-9_-]{20,64})$")


def rank(role: str) -> int:
    """A role's place: viewer 0 < editor 1 < admin 2."""
    return ROLES.index(role)


def team(store: Store) -> tuple[str | None, Team]:
    """The team manifest's id (None: no team yet) and the team."""
    oid = store.storage.read_ref(TEAM_REF)
    return oid, (store.objects.get_manifest(oid, Team) if oid else Team())


def _change(store: Store, message: str, edit: Callable[[Team], Team]) -> Team:
    """Apply ``edit`` to the current team and CAS it in (again if someone else won)."""
    for _ in range(20):
        old, current = team(store)
        new = edit(current)
        with store.writing():
            oid = store.objects.put_json(new)
            try:
                store.refs.update_ref(TEAM_REF, old, oid, message)
            except BranchMoved:
                continue
        return new
    raise UserError("the team list kept changing under this edit; try again")


def _hash(secret: str, salt: str) -> str:
    return hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), **SCRYPT).hex()


def _new_secret(store: Store, **fields) -> tuple[Secret, str]:
    sid, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(24), secrets.token_hex(16)
    rec = Secret(id=sid, salt=salt, hash=_hash(secret, salt), created_ms=store.clock_ms(), **fields)
    return rec, secret


# --- users and tokens ------------------------------------------------------------------


def add_user(store: Store, name: str, role: str, budget_micro_usd: int | None = None) -> Member:
    """A new user with ``role`` (and a spending limit per session); AlreadyExists if taken."""
    check_author(name)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r:.20}")
    member = Member(
        name=name,
        role=role,  # type: ignore[arg-type]
        created_ms=store.clock_ms(),
        budget_micro_usd=budget_micro_usd,
    )

    def edit(t: Team) -> Team:
        if any(m.name == name for m in t.members):
            raise AlreadyExists(f"user {name!r} already exists")
        return msgspec.structs.replace(t, members=(*t.members, member))

    _change(store, f"team: add {name} as {role}", edit)
    return member


def users(store: Store) -> list[Member]:
    """Every user, in the order they were added."""
    return list(team(store)[1].members)


def member(store: Store, name: str) -> Member | None:
    """A user who may sign in (None: unknown or revoked)."""
    found = next((m for m in team(store)[1].members if m.name == name), None)
    return None if found is None or found.revoked else found


def set_user_budget(store: Store, name: str, budget_micro_usd: int | None) -> None:
    """The most ``name`` may spend in one session (None: only the session's budget)."""

    def edit(t: Team) -> Team:
        if not any(m.name == name for m in t.members):
            raise NotFound(f"no user {name!r}")
        return msgspec.structs.replace(
            t,
            members=tuple(
                msgspec.structs.replace(m, budget_micro_usd=budget_micro_usd)
                if m.name == name
                else m
                for m in t.members
            ),
        )

    _change(store, f"team: budget of {name}", edit)


def revoke_user(store: Store, name: str) -> None:
    """Revoke a user and every token of theirs, at once in every viewer."""

    def edit(t: Team) -> Team:
        if not any(m.name == name for m in t.members):
            raise NotFound(f"no user {name!r}")
        return msgspec.structs.replace(
            t,
            members=tuple(
                msgspec.structs.replace(m, revoked=True) if m.name == name else m for m in t.members
            ),
            tokens=tuple(
                msgspec.structs.replace(k, revoked=True) if k.user == name else k for k in t.tokens
            ),
        )

    _change(store, f"team: revoke {name}", edit)


def create_token(store: Store, name: str) -> str:
    """A new API token for user ``name``; returned once, kept only as a hash."""
    if member(store, name) is None:
        raise NotFound(f"no user {name!r} (add one with `exq user add {name} --role editor`)")
    rec, secret = _new_secret(store, user=name)
    _change(store, f"team: token {rec.id} for {name}", lambda t: _add_token(t, rec))
    return f"exq_{rec.id}_{secret}"


def _add_token(t: Team, rec: Secret) -> Team:
    return msgspec.structs.replace(t, tokens=(*t.tokens, rec))


def revoke_token(store: Store, token_id: str) -> None:
    """Revoke one token (by its id, the 12 hex digits after ``exq_``)."""

    def edit(t: Team) -> Team:
        if not any(k.id == token_id for k in t.tokens):
            raise NotFound(f"no token {token_id!r:.20}")
        return msgspec.structs.replace(
            t,
            tokens=tuple(
                msgspec.structs.replace(k, revoked=True) if k.id == token_id else k
                for k in t.tokens
            ),
        )

    _change(store, f"team: revoke token {token_id}", edit)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a user and role, or a share link's reader."""

    name: str
    role: str
    #: a share link: the only session (and branch) it may read, and whether it shows
    #: prompts and costs
    session: str = ""
    branch: str = ""
    private: bool = False
    via: str = "token"
    #: a share link: when it stops working (ms since the epoch)
    expires_ms: int = 0

    @property
    def shared(self) -> bool:
        """Whether this is a read-only link, not a user."""
        return self.via == "share"


class Verifier:
    """Checks tokens and links against the current team; remembers what it verified.

    A secret is hashed once per process (scrypt is slow on purpose); a check is then a
    ref read and a lookup, and a revocation (a new team manifest) is seen at once.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ok: dict[tuple[str, str], bool] = {}

    def _matches(self, rec: Secret, secret: str) -> bool:
        key = (rec.id, secret)
        if key not in self._ok:
            self._ok[key] = hmac.compare_digest(_hash(secret, rec.salt), rec.hash)
        return self._ok[key]

    def token(self, text: str) -> Principal | None:
        """The user an API token belongs to (None: unknown, wrong or revoked)."""
        m = _TOKEN.match(text or "")
        if not m:
            return None
        _tid, t = team(self.store)
        rec = next((k for k in t.tokens if k.id == m.group(1)), None)
        if rec is None or rec.revoked or not self._matches(rec, m.group(2)):
            return None
        user = next((u for u in t.members if u.name == rec.user and not u.revoked), None)
        return Principal(user.name, user.role) if user else None

    def link(self, text: str) -> Principal | None:
        """The read-only reader a share link makes (None: unknown, expired or revoked)."""
        m = _LINK.match(text or "")
        if not m:
            return None
        _tid, t = team(self.store)
        rec = next((k for k in t.shares if k.id == m.group(1)), None)
        if rec is None or rec.revoked or rec.expires_ms <= self.store.clock_ms():
            return None
        if not self._matches(rec, m.group(2)):
            return None
        return Principal(
            f"link {rec.id}",
            "viewer",
            rec.session,
            rec.branch,
            rec.private,
            via="share",
            expires_ms=rec.expires_ms,
        )


# --- share links -----------------------------------------------------------------------


def create_share(
    store: Store, session: str, *, branch: str = "", expires_s: float, private: bool = False
) -> tuple[str, Secret]:
    """A read-only link to ``session`` (or one branch) until ``expires_s`` from now."""
    store.session(session)
    if branch:
        store.refs.head(session, check_name(branch, "branch"))
    if not 60 <= expires_s <= 366 * 86400:
        raise UserError("a link expires after a minute at least and a year at most")
    rec, secret = _new_secret(
        store,
        session=session,
        branch=branch,
        expires_ms=store.clock_ms() + int(expires_s * 1000),
        private=private,
    )
    _change(store, f"team: share {session} as {rec.id}", lambda t: _add_share(t, rec))
    return f"{rec.id}.{secret}", rec


def _add_share(t: Team, rec: Secret) -> Team:
    return msgspec.structs.replace(t, shares=(*t.shares, rec))


def shares(store: Store) -> list[Secret]:
    """Every share link made, newest last."""
    return list(team(store)[1].shares)


def revoke_share(store: Store, share_id: str) -> None:
    """Revoke a link: it gets 403 from the next request on."""

    def edit(t: Team) -> Team:
        if not any(k.id == share_id for k in t.shares):
            raise NotFound(f"no share link {share_id!r:.20}")
        return msgspec.structs.replace(
            t,
            shares=tuple(
                msgspec.structs.replace(k, revoked=True) if k.id == share_id else k
                for k in t.shares
            ),
        )

    _change(store, f"team: revoke share {share_id}", edit)
