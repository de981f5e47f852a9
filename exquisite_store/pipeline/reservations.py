"""Budget reservations: a step's estimate is held against the budget while it runs.

Checking the budget and then calling is a race when steps run in parallel: six steps
started at once on a small budget all passed the check. So the check and the
reservation of the estimate happen together under the session's budget lock, and the
reservation is released only after the step or attempt that records the real cost is
written. A reservation of a process that died is not counted (its step, if it got
that far, recorded its cost).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import msgspec

from exquisite_store.authorship import author
from exquisite_store.pipeline.cost import check_budget, spending, user_budget, user_spent
from exquisite_store.store import Store
from exquisite_store.store.process import ProcessStamp, this_process
from exquisite_store.store.refs import check_name
from exquisite_store.store.store import LogLine

_decoder = msgspec.json.Decoder(LogLine)


def _log(session: str) -> str:
    return f"sessions/{check_name(session, 'session')}/reservations"


def held_micro_usd(store: Store, session: str, user: str | None = None) -> int:
    """Micro-dollars reserved by steps of the session that are still running (``user``'s)."""
    open_: dict[str, tuple[int, dict[str, Any]]] = {}
    for raw in store.storage.read_log(_log(session)):
        try:
            line = _decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        if line.type == "reserve":
            open_[line.id] = (int(line.data.get("micro_usd", 0)), line.data)
        elif line.type == "release":
            open_.pop(line.id, None)
    total = 0
    for micro, data in open_.values():
        if user is not None and data.get("author", "") != user:
            continue
        who = ProcessStamp.from_dict(data.get("process") or {})
        if who is None or who.alive():
            total += micro
    return total


@contextlib.contextmanager
def reserved(store: Store, session: str, job: str, estimate: int) -> Iterator[None]:
    """Check the budget and hold ``estimate`` against it until the block ends.

    BudgetExceeded (before anything is held) if the spend, what running steps hold
    and ``estimate`` together would pass the budget. Without a budget or an estimate
    nothing is held.
    """
    name = _log(session)
    user = author()
    with store.storage.log_lock(name):
        spent, budget = spending(store, session)
        mine = user_budget(store, user)
        if (budget is None and mine is None) or not estimate:
            hold = False
        else:
            if budget is not None:
                check_budget(estimate, spent + held_micro_usd(store, session), budget)
            if mine is not None:
                used = user_spent(store, session, user) + held_micro_usd(store, session, user)
                check_budget(estimate, used, mine, whose=f"{user}'s own budget")
            hold = True
            line = LogLine(
                time_ms=store.clock_ms(),
                type="reserve",
                id=job,
                data={
                    "micro_usd": estimate,
                    "process": this_process().to_dict(),
                    "author": user,
                },
            )
            store.storage.append_log(name, msgspec.json.encode(line))
    try:
        yield
    finally:
        if hold:
            line = LogLine(time_ms=store.clock_ms(), type="release", id=job)
            store.storage.append_log(name, msgspec.json.encode(line))
