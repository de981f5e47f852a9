"""What search needs of each step, remembered in ``cache/`` so a search reads no manifest twice.

A step never changes, so what is known of it (parent, time, backend, seam score, cost,
user prompt) is true for ever: ``cache/search/<session>.msgpack`` keeps it, keyed by
step id, and a search walks the session's branches through it, reading only the
manifests of steps it has not seen before. Derived data, like every file in
``cache/``: safe to delete, never followed through a link, rebuilt when unreadable,
and not written at all on a store that cannot be written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import msgspec

from exquisite_store.errors import ExqError
from exquisite_store.manifests import Step
from exquisite_store.store import nofollow
from exquisite_store.store.files import atomic_write
from exquisite_store.store.refs import check_name
from exquisite_store.store.store import Store

VERSION = 2  # 2: the author


class StepFacts(msgspec.Struct, frozen=True, array_like=True):
    """One step as search sees it (``backend`` is empty for a root)."""

    parent: str | None
    created_ms: int
    backend: str
    seam_permille: int
    cost_micro_usd: int
    prompt: str
    author: str = ""


class _Index(msgspec.Struct):
    version: int
    facts: dict[str, StepFacts]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Index)


def facts_of(step: Step, prompt_text: Callable[[str], str]) -> StepFacts:
    """The facts of a step (``prompt_text`` reads a prompt id's text)."""
    r = step.recipe
    return StepFacts(
        parent=step.parent,
        created_ms=step.created_ms,
        backend=r.backend if r is not None else "",
        seam_permille=step.result.scores.seam_permille if r is not None else 0,
        cost_micro_usd=step.response.cost_micro_usd if step.response is not None else 0,
        prompt=prompt_text(r.prompt_id) if r is not None and r.prompt_id else "",
        author=step.author if isinstance(step.author, str) else "",
    )


def _rel(session: str) -> str:
    return f"cache/search/{check_name(session, 'session')}.msgpack"


def load(store: Store, session: str) -> dict[str, StepFacts]:
    """The remembered facts of a session's steps (empty when there is no usable index)."""
    if store.root is None:
        return {}
    try:
        data = nofollow.read_bytes(store.root, _rel(session))
        index = _decoder.decode(data) if data else None
    except (ExqError, OSError, msgspec.DecodeError, msgspec.ValidationError):
        return {}  # a link, a damaged or foreign file: search as if there were none
    return index.facts if index is not None and index.version == VERSION else {}


def save(store: Store, session: str, facts: dict[str, StepFacts]) -> None:
    """Remember ``facts`` (atomically); a store that cannot be written is left alone."""
    if store.root is None:
        return
    with contextlib.suppress(ExqError, OSError):
        path = store.root / _rel(session)
        # LayoutError (suppressed: nothing written) if cache/ or cache/search is a link
        if nofollow.lstat(store.root, "cache/search") is None:
            path.parent.mkdir(exist_ok=True)
        atomic_write(path, _encoder.encode(_Index(VERSION, facts)), tmp_dir=store.root / "tmp")


def reachable_facts(
    store: Store, session: str, heads: Iterable[str], prompt_text: Callable[[str], str]
) -> dict[str, StepFacts]:
    """The facts of every step reachable from ``heads``, each manifest read at most once ever."""
    known = load(store, session)
    out: dict[str, StepFacts] = {}
    added = False
    for head in heads:
        sid: str | None = head
        while sid is not None and sid not in out:
            f = known.get(sid)
            if f is None:
                f = known[sid] = facts_of(store.step(sid), prompt_text)
                added = True
            out[sid] = f
            sid = f.parent
    if added:
        save(store, session, known)
    return out
