"""How pages are built (branch scope, windows, full canvases) and what they remember.

``PageOptions`` travels with the app (the viewer's, or an export's); ``StepsMemo``
remembers what never changes for a set of heads; ``RefsSnapshot`` lets an export read
a session's refs once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exquisite_store.manifests import Step
from exquisite_store.pipeline.cost import reachable_steps
from exquisite_store.store import Store

STEPS_MEMO = 32  # (session, branch heads) pairs whose reachable steps are remembered


class StepsMemo:
    """Reachable steps remembered per (session, branch heads).

    Manifests never change and refs are the only mutable state, so the same heads
    always reach the same steps. Thread-safe; a result must not be mutated.
    """

    def __init__(self, size: int = STEPS_MEMO) -> None:
        self.size = size
        self._items: OrderedDict[tuple, dict[str, Step]] = OrderedDict()
        self._others: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, session: str, branches: dict[str, str]) -> dict[str, Step]:
        """The steps reachable from ``branches``, computed once per set of heads."""
        key = (session, tuple(sorted(branches.items())))
        with self._lock:
            hit = self._items.get(key)
        if hit is None:
            hit = reachable_steps(store, list(branches.values()))
            with self._lock:
                self._items[key] = hit
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return hit

    def remember(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key`` (whose parts must name everything it reads)."""
        with self._lock:
            hit = self._others.get(key)
        if hit is None:
            hit = make()
            with self._lock:
                self._others[key] = hit
                while len(self._others) > self.size:
                    self._others.popitem(last=False)
        return hit


class RefsSnapshot:
    """A session's refs and attempt log, read once (an export's pages agree with each other).

    Without one, every page reads them again (the live viewer: they move).
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, what: str, session: str, read: Callable[[], Any]) -> Any:
        """``read()`` the first time ``what`` of ``session`` is asked for."""
        key = (what, session)
        with self._lock:
            if key in self._seen:
                return self._seen[key]
        value = read()
        with self._lock:
            return self._seen.setdefault(key, value)


@dataclass(frozen=True)
class PageOptions:
    """How pages are built.

    ``branches``: which branches are in scope (an export may pick some). ``window``:
    a step page shows its canvas only this far (px) around the step's new band, and a
    compare page only around where the steps differ (the export: pages stay small
    however wide the canvas); None shows whole canvases. ``full_canvases``: whether
    every step links a full-canvas PNG (the viewer, ``exq export --full-canvases``)
    or only branch heads do. ``off_branch``: whether a session's tree also shows steps
    no ref reaches now (the live viewer; an export shows what its refs reach).
    """

    branches: frozenset[str] = frozenset()
    memo: StepsMemo | None = field(default=None, compare=False)
    window: int | None = None
    full_canvases: bool = True
    snapshot: RefsSnapshot | None = field(default=None, compare=False)
    #: also show steps on no branch now (kept by the reflogs): the live viewer does
    off_branch: bool = False


def read_branches(store: Store, session: str, opts: PageOptions) -> dict[str, str]:
    """The session's branches (from the snapshot, when the options carry one)."""
    if opts.snapshot is None:
        return store.refs.branches(session)
    return opts.snapshot.get("branches", session, lambda: store.refs.branches(session))


def read_staged(store: Store, session: str, opts: PageOptions) -> dict[str, str]:
    """The session's staged candidates (from the snapshot, when there is one)."""
    if opts.snapshot is None:
        return store.refs.staged(session)
    return opts.snapshot.get("staged", session, lambda: store.refs.staged(session))


def read_current_branch(store: Store, session: str, opts: PageOptions) -> str:
    """The branch HEAD names (from the snapshot, when there is one)."""
    if opts.snapshot is None:
        return store.refs.current_branch(session)
    return opts.snapshot.get("current", session, lambda: store.refs.current_branch(session))


def read_attempt_ids(store: Store, session: str, opts: PageOptions) -> tuple[str, ...]:
    """The ids in the session's attempt log (from the snapshot, when there is one)."""

    def read() -> tuple[str, ...]:
        return tuple(line.id for line in store.attempts(session))

    return read() if opts.snapshot is None else opts.snapshot.get("attempts", session, read)


DEFAULT = PageOptions()
