"""Who is doing this: the author every step, attempt, plan and ref move records.

A context variable, so each front end says it once: the CLI from ``EXQ_AUTHOR`` or the
store's ``user.name`` (``exq config user.name NAME``, like git), the viewer from the
signed-in user of each request, a queued job from what its enqueuer said. Code that
runs work on another thread carries it over (``contextvars.copy_context``). Pure: no
I/O.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

from msgspec import UNSET, UnsetType

from exquisite_store.errors import InvalidName

#: records made before authorship was kept (or by nobody said) read as this
UNKNOWN = "unknown"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,63}$")

_current: ContextVar[str] = ContextVar("exq_author", default="")


def check_author(name: str) -> str:
    """A user name as records keep it: letters, digits and . _ @ + - (at most 64)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(
            f"user name {name!r:.80} may hold only letters, digits and . _ @ + - "
            "(starting with a letter or digit, at most 64)",
            value=str(name)[:80],
        )
    return name


def author() -> str:
    """The current author ("" when nobody said who)."""
    return _current.get()


def recorded() -> str | UnsetType:
    """The author as a manifest field: UNSET (not encoded) when nobody said who."""
    return _current.get() or UNSET


def shown(name: str | None | UnsetType) -> str:
    """An author for people: the name, or ``unknown``."""
    return name if isinstance(name, str) and name else UNKNOWN


@contextlib.contextmanager
def as_author(name: str) -> Iterator[None]:
    """Run the body as ``name`` ("" for nobody in particular)."""
    token = _current.set(check_author(name) if name else "")
    try:
        yield
    finally:
        _current.reset(token)


def set_author(name: str):
    """Set the author until ``reset_author(token)``; returns the token (for request hooks)."""
    return _current.set(check_author(name) if name else "")


def reset_author(token) -> None:
    """Undo a ``set_author``."""
    _current.reset(token)
