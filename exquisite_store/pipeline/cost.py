"""Spending of a session: committed steps and billed attempts."""

from __future__ import annotations

from collections.abc import Mapping

from exquisite_store.manifests import Attempt, Step
from exquisite_store.store import Store


def reachable_steps(store: Store, heads: list[str]) -> dict[str, Step]:
    """Every step reachable from ``heads``, each read once."""
    steps: dict[str, Step] = {}
    for head in heads:
        for sid, step in store.history(head):
            if sid in steps:
                break
            steps[sid] = step
    return steps


def session_spent(store: Store, session: str, steps: Mapping[str, Step] | None = None) -> int:
    """Micro-dollars spent by every step reachable from the session's branches and attempts.

    :param steps: those steps, when the caller has them already (saves a walk).
    """
    if steps is None:
        steps = reachable_steps(store, list(store.refs.branches(session).values()))
    seen = steps.keys()
    total = sum(s.response.cost_micro_usd for s in steps.values() if s.response is not None)
    for line in store.attempts(session):
        att = store.objects.get_manifest(line.id, Attempt)
        if att.response is not None and att.step_id not in seen:
            total += att.response.cost_micro_usd
    return total
