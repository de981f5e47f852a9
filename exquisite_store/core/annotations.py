"""Stars, tags and notes on immutable steps, kept like git notes.

A session's annotations are one ``Annotations`` object under ``refs/SESSION/notes``;
a change stores a new object and moves the ref by compare-and-swap, whose reflog is
the annotations' log. Writers that race re-read and try again, so of any number of
people starring and tagging at once, nobody's change is lost.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass

import msgspec

from exquisite_store.core.branches import step_of_session
from exquisite_store.core.events import ref_moved
from exquisite_store.errors import BranchMoved, InvalidName, StoreError, UserError
from exquisite_store.ids import short
from exquisite_store.manifests import Annotations, StepNote
from exquisite_store.store import Store
from exquisite_store.store.refs import check_name

#: a tag: one word of letters, digits and . _ - (it is also a search term and a URL value)
TAG_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,31}"
_TAG = re.compile(f"^{TAG_PATTERN}$")
MAX_TAGS = 32
MAX_NOTE = 4000
#: how many times a change is tried again after another writer moved the ref first
RETRIES = 200


def check_tag(tag: str) -> str:
    """A tag as given, or InvalidName saying what a tag may hold."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise InvalidName(
            f"tag {tag!r:.40} may hold only letters, digits and . _ - (at most 32, "
            "starting with a letter or digit)",
            value=str(tag)[:40],
        )
    return tag


def session_notes(store: Store, session: str) -> dict[str, StepNote]:
    """``{step id: StepNote}`` of a session (empty if nothing was ever annotated)."""
    store.session(session)
    return dict(_current(store, session)[1].notes)


def note_of(store: Store, session: str, step: str) -> StepNote:
    """The annotations of one step (an empty StepNote if it has none)."""
    return session_notes(store, session).get(step, StepNote())


@dataclass(frozen=True)
class Annotated:
    """What a change did: the step, its annotations now, and the new annotations object."""

    step: str
    note: StepNote
    annotations_id: str


def annotate(
    store: Store,
    session: str,
    step: str,
    *,
    star: bool | None = None,
    add_tags: tuple[str, ...] = (),
    remove_tags: tuple[str, ...] = (),
    note: str | None = None,
) -> Annotated:
    """Star or unstar a step, add or remove tags, set (or with "" clear) its note.

    The change is applied to the newest annotations each time it is tried, so a
    writer that lost a race to another re-applies its own change on top of theirs.
    """
    sid = step_of_session(store, session, step)
    add = tuple(check_tag(t) for t in add_tags)
    remove = {check_tag(t) for t in remove_tags}
    if note is not None and len(note) > MAX_NOTE:
        raise UserError(f"a note holds at most {MAX_NOTE} characters, not {len(note)}")
    what = _describe(star, add, tuple(sorted(remove)), note)
    if not what:
        raise UserError("nothing to change: give a star, a tag or a note")
    for attempt in range(RETRIES):
        old_id, current = _current(store, session)
        was = current.notes.get(sid, StepNote())
        tags = tuple(dict.fromkeys([*(t for t in was.tags if t not in remove), *add]))
        if len(tags) > MAX_TAGS:
            raise UserError(f"a step holds at most {MAX_TAGS} tags")
        now = StepNote(
            starred=was.starred if star is None else star,
            tags=tags,
            note=was.note if note is None else note.strip(),
        )
        notes = dict(current.notes)
        if now == StepNote():
            notes.pop(sid, None)
        else:
            notes[sid] = now
        new = Annotations(session=session, notes=notes)
        try:
            with store.writing():
                new_id = store.objects.put_json(new)
                if new_id == old_id:
                    return Annotated(sid, now, new_id)
                store.refs.set_notes_pointer(session, old_id, new_id, f"{what} {short(sid)}")
        except BranchMoved:
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
            continue
        ref_moved(store, session, "notes", old_id, new_id, "annotate")
        return Annotated(sid, now, new_id)
    raise StoreError(f"the annotations of {session!r} kept moving; {what} was not saved, try again")


@dataclass(frozen=True)
class NoteChange:
    """One line of the annotations' log: when, what, and the objects before and after."""

    time_ms: int
    message: str
    old: str | None
    new: str


def annotation_log(store: Store, session: str) -> list[NoteChange]:
    """Every change of the session's annotations, newest first."""
    store.session(session)
    entries = store.refs.reflog(f"{check_name(session, 'session')}/notes")
    return [NoteChange(e.time_ms, e.message, e.old, e.new) for e in reversed(entries)]


def _current(store: Store, session: str) -> tuple[str | None, Annotations]:
    oid = store.refs.notes_pointer(session)
    if oid is None:
        return None, Annotations(session=session)
    return oid, store.objects.get_manifest(oid, Annotations)


def _describe(
    star: bool | None, add: tuple[str, ...], remove: tuple[str, ...], note: str | None
) -> str:
    parts = []
    if star is not None:
        parts.append("star" if star else "unstar")
    if add:
        parts.append("tag " + ",".join(add))
    if remove:
        parts.append("untag " + ",".join(remove))
    if note is not None:
        parts.append("note" if note.strip() else "clear note")
    return "; ".join(parts)


def to_dict(note: StepNote) -> dict:
    """A StepNote as plain data (for JSON twins)."""
    return msgspec.to_builtins(note)
