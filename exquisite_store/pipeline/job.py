"""One call's bookkeeping: what it produced, its events and its phase timings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exquisite_store.errors import StepFailure
from exquisite_store.manifests import Timing
from exquisite_store.store import Store

Observer = Callable[[str, dict[str, Any]], None]


@dataclass
class StepOutcome:
    """What one call produced: committed steps, recorded attempts, moved branches."""

    session: str
    job: str
    step_ids: list[str] = field(default_factory=list)
    attempt_ids: list[str] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    #: staging names (``<branch>/<job>/<k>``) of candidates waiting for a decision
    staged: dict[str, str] = field(default_factory=dict)
    failures: list[StepFailure] = field(default_factory=list)
    canvas_ids: list[str] = field(default_factory=list)
    request_id: str = ""
    calls: int = 0
    preview: dict[str, Any] = field(default_factory=dict)


class Job:
    """Events and phase timings of one call."""

    def __init__(
        self,
        store: Store,
        session: str,
        job: str,
        emit: bool = True,
        observer: Observer | None = None,
    ) -> None:
        self.store, self.session, self.job, self.emit = store, session, job, emit
        self.observer = observer
        self.started_ms = store.clock_ms()
        self.phases: dict[str, int] = {}
        self._last = self.started_ms
        #: ``(k, n)`` while candidate k of n is built and committed: its phases say so
        self.candidate: tuple[int, int] | None = None

    def event(self, type_: str, **data: Any) -> None:
        """Append an event to the session's log (unless silent) and tell the observer."""
        if self.emit:
            self.store.append_event(self.session, type_, job=self.job, **data)
        if self.observer is not None:
            self.observer(type_, data)

    def phase(self, name: str) -> None:
        """A phase starts."""
        now = self.store.clock_ms()
        if self.candidate is None:
            self.event("progress", phase=name)
        else:
            self.event("progress", phase=name, candidate=self.candidate[0], of=self.candidate[1])
        self._last = now

    def done(self, name: str) -> None:
        """A phase ends: its time is added to the phase's total."""
        now = self.store.clock_ms()
        self.phases[name] = self.phases.get(name, 0) + now - self._last
        self._last = now

    def timing(self) -> Timing:
        """When the call started and how long each phase took."""
        return Timing(started_ms=self.started_ms, phases_ms=dict(self.phases))
