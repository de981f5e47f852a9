"""Spending of a session: committed steps and billed attempts."""

from __future__ import annotations

from collections.abc import Mapping

from exquisite_store.errors import BudgetExceeded
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


def spending(store: Store, session: str) -> tuple[int, int | None]:
    """What the session spent and its budget (spent is only worked out under a budget)."""
    budget = store.session(session).budget_micro_usd
    return (session_spent(store, session) if budget is not None else 0), budget


def check_budget(estimate: int, spent: int, budget: int | None) -> None:
    """BudgetExceeded if ``estimate`` more would pass the budget; nothing has been called."""
    if estimate and budget is not None and spent + estimate > budget:
        raise BudgetExceeded(
            f"estimated ${estimate / 1e6:.4f} would pass the budget: "
            f"${spent / 1e6:.4f} of ${budget / 1e6:.4f} spent",
            estimate_micro_usd=estimate,
            spent_micro_usd=spent,
            budget_micro_usd=budget,
        )
