"""Spending of a session: committed steps and billed attempts."""

from __future__ import annotations

from exquisite_store.manifests import Attempt
from exquisite_store.store import Store


def session_spent(store: Store, session: str) -> int:
    """Micro-dollars spent by every step reachable from the session's branches and attempts."""
    seen: set[str] = set()
    total = 0
    for head in store.refs.branches(session).values():
        for sid, step in store.history(head):
            if sid in seen:
                break
            seen.add(sid)
            if step.response is not None:
                total += step.response.cost_micro_usd
    for line in store.attempts(session):
        att = store.objects.get_manifest(line.id, Attempt)
        if att.response is not None and att.step_id not in seen:
            total += att.response.cost_micro_usd
    return total
