"""The session page's live panels (history, running jobs), read from the store.

Like ``contexts``, each takes the store (never Flask's app), so the page, its JSON
twin and the live refresh (``viewer/live.py``) build the same panels.
"""

from __future__ import annotations

import datetime
from typing import Any

from exquisite_store import core
from exquisite_store.authorship import shown
from exquisite_store.core import plans
from exquisite_store.ids import short
from exquisite_store.store import Store

#: moves listed per branch in the history panel (the rest: ``exq history`` or history.json)
HISTORY_SHOWN = 6


def when(ms: int) -> str:
    """A reflog time as the viewer's local clock shows it."""
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def undo_text(branch: str, now: str | None, back: str | None) -> str:
    """What an undo of a branch's last move would move, said before it is done."""
    if back is None:
        return f"Undo: remove branch {branch} (at {short(now or '')}); its steps stay in the tree"
    if now is None:
        return f"Undo: bring back branch {branch} at {short(back)}"
    return (
        f"Undo: move branch {branch} from {short(now)} back to {short(back)}; "
        f"{short(now)} stays in the tree and in {branch}'s history"
    )


def history_panel(store: Store, session: str) -> list[dict[str, Any]]:
    """Each branch (dropped ones too): where it is, its latest moves, what undo would do."""
    out = []
    for h in core.histories(store, session):
        last = h.moves[0] if h.moves else None
        can_undo = last is not None and last.new == h.now
        out.append(
            {
                "ref": h.ref,
                "branch": h.branch,
                "now": h.now,
                "moves": [
                    {
                        "old": m.old,
                        "new": m.new,
                        "time_ms": m.time_ms,
                        "when": when(m.time_ms),
                        "message": m.message,
                        "author": shown(m.author),
                    }
                    for m in h.moves[:HISTORY_SHOWN]
                ],
                "more": max(0, len(h.moves) - HISTORY_SHOWN),
                "undo": undo_text(h.branch, h.now, last.old) if can_undo and last else None,
            }
        )
    return out


def jobs_panel(store: Store, session: str) -> list[dict[str, Any]]:
    """The jobs waiting or running now: phase, each candidate's phase, who runs it."""
    out = []
    plan_ids = set(plans.plan_ids(store, session))
    for st in core.live_jobs(store, session):
        owner = st.get("process") or {}
        candidates = st.get("candidates") or {}
        out.append(
            {
                "job": st["job"],
                "state": st["state"],
                "phase": st.get("phase") or st["state"],
                "branch": st.get("branch") or "",
                "parent": st.get("parent") or "",
                "candidates": [
                    {"k": int(k), "phase": p}
                    for k, p in sorted(candidates.items(), key=lambda kv: int(kv[0]))
                ],
                "of": st.get("of", 0),
                "from_server": st["from_server"],
                "pid": owner.get("pid"),
                # a plan's step k runs as job ID + k (3 hex) + its try (or "ee", a repair)
                "plan": st["job"][:16] if st["job"][:16] in plan_ids else "",
            }
        )
    return out


def live_panels(store: Store, session: str) -> dict[str, Any]:
    """What the live session page adds to the session context."""
    return {"history": history_panel(store, session), "jobs": jobs_panel(store, session)}
