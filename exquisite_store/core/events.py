"""Ref moves as session events, so every open page (and ``exq``) sees them as they happen.

A step's own commit is told by its ``succeeded`` event; every other move of a branch
or a staging ref (a new branch, set head, drop, rename, accept, keep, discard, undo)
is appended here as a ``moved`` event by the core function that made it.
"""

from __future__ import annotations

import contextlib

from exquisite_store.errors import ArtifactWriteError
from exquisite_store.store import Store


def ref_moved(
    store: Store, session: str, ref: str, old: str | None, new: str | None, why: str
) -> None:
    """Append a ``moved`` event: ``ref`` (``heads/B`` or ``staging/...``) went old -> new.

    The move is made already; an event that cannot be written costs a page one live
    update (it finds the move at its next refresh), never the move.
    """
    with contextlib.suppress(ArtifactWriteError):
        store.append_event(session, "moved", ref=ref, old=old, new=new or None, why=why)
