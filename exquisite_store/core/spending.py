"""What a session spent: in all, per branch (to reach its head, and only on it), per attempt."""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.ids import ObjectId
from exquisite_store.pipeline.cost import billed_attempts, session_spent
from exquisite_store.store import Store


@dataclass(frozen=True)
class BranchCost:
    """One branch: its head, how many steps lead to it, and what they cost."""

    branch: str
    head: ObjectId
    steps: int
    to_reach_micro_usd: int
    only_here_micro_usd: int


@dataclass(frozen=True)
class BilledAttempt:
    """A failed attempt that was paid for."""

    id: str
    kind: str
    cost_micro_usd: int


@dataclass(frozen=True)
class Spending:
    """A session's spending: per branch, billed attempts, the total and the budget."""

    branches: list[BranchCost]
    attempts: list[BilledAttempt]
    spent_micro_usd: int
    budget_micro_usd: int | None


def spending(store: Store, session: str) -> Spending:
    """Cost to reach each branch head, the part only on that branch, billed attempts."""
    sess = store.session(session)
    chains = {
        name: list(store.history(head))
        for name, head in sorted(store.refs.branches(session).items())
    }
    on_paths: dict[str, int] = {}  # step id -> how many branch paths hold it
    for chain in chains.values():
        for sid, _ in chain:
            on_paths[sid] = on_paths.get(sid, 0) + 1
    rows = []
    for name, chain in chains.items():
        costs = [(sid, step.response.cost_micro_usd if step.response else 0) for sid, step in chain]
        rows.append(
            BranchCost(
                branch=name,
                head=chain[0][0],
                steps=len(chain) - 1,
                to_reach_micro_usd=sum(c for _, c in costs),
                only_here_micro_usd=sum(c for sid, c in costs if on_paths[sid] == 1),
            )
        )
    attempts = [
        BilledAttempt(aid, att.failure_kind, att.response.cost_micro_usd)  # type: ignore[union-attr]
        for aid, att in billed_attempts(store, session)
    ]
    return Spending(rows, attempts, session_spent(store, session), sess.budget_micro_usd)
