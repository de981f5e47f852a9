"""Spending of a session (committed steps and billed attempts) and the budget rule."""

from __future__ import annotations

from collections.abc import Mapping

from exquisite_store.errors import BudgetExceeded
from exquisite_store.manifests import Attempt, Step, Team
from exquisite_store.money import format_usd
from exquisite_store.store import Store
from exquisite_store.store.refs import TEAM_REF


def reachable_steps(store: Store, heads: list[str]) -> dict[str, Step]:
    """Every step reachable from ``heads``, each read once."""
    steps: dict[str, Step] = {}
    for head in heads:
        for sid, step in store.history(head):
            if sid in steps:
                break
            steps[sid] = step
    return steps


def billed_attempts(store: Store, session: str) -> list[tuple[str, Attempt]]:
    """Attempts of a session that carry a cost (a call was made and billed)."""
    out = []
    for line in store.attempts(session):
        att = store.objects.get_manifest(line.id, Attempt)
        if att.response is not None and att.response.cost_micro_usd:
            out.append((line.id, att))
    return out


def session_spent(store: Store, session: str, steps: Mapping[str, Step] | None = None) -> int:
    """Micro-dollars spent by every step reachable from the session's branches and attempts.

    :param steps: those steps, when the caller has them already (saves a walk).
    """
    if steps is None:
        steps = reachable_steps(store, list(store.refs.branches(session).values()))
    total = sum(s.response.cost_micro_usd for s in steps.values() if s.response is not None)
    for _aid, att in billed_attempts(store, session):
        if att.step_id not in steps:  # a whole step that lost its branch race: counted once
            total += att.response.cost_micro_usd  # type: ignore[union-attr]
    return total


def user_spent(store: Store, session: str, user: str) -> int:
    """Micro-dollars the steps and billed attempts ``user`` made in the session cost."""
    steps = reachable_steps(store, list(store.refs.branches(session).values()))
    total = sum(
        s.response.cost_micro_usd for s in steps.values() if s.response and s.author == user
    )
    for _aid, att in billed_attempts(store, session):
        if att.author == user and att.step_id not in steps:
            total += att.response.cost_micro_usd  # type: ignore[union-attr]
    return total


def user_budget(store: Store, user: str) -> int | None:
    """The most ``user`` may spend in one session (None: no limit of their own)."""
    if not user:
        return None
    oid = store.storage.read_ref(TEAM_REF)
    if oid is None:
        return None
    team = store.objects.get_manifest(oid, Team)
    member = next((m for m in team.members if m.name == user), None)
    return None if member is None else member.budget_micro_usd


def spending(store: Store, session: str) -> tuple[int, int | None]:
    """What the session spent and its budget (spent is only worked out under a budget)."""
    budget = store.session(session).budget_micro_usd
    return (session_spent(store, session) if budget is not None else 0), budget


def would_exceed(estimate: int, spent: int, budget: int | None) -> bool:
    """The budget rule: a step whose estimate would take the spend past the budget is refused."""
    return bool(estimate) and budget is not None and spent + estimate > budget


def check_budget(estimate: int, spent: int, budget: int | None, whose: str = "the budget") -> None:
    """BudgetExceeded if ``estimate`` more would pass the budget; nothing has been called."""
    if would_exceed(estimate, spent, budget):
        raise BudgetExceeded(
            f"estimated {format_usd(estimate)} would pass {whose}: "
            f"{format_usd(spent)} of {format_usd(budget)} spent",
            estimate_micro_usd=estimate,
            spent_micro_usd=spent,
            budget_micro_usd=budget,
        )
