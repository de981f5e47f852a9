"""The Grow panel: start an ``exq grow`` plan from the page, follow it, pause, resume, stop.

Each running plan runs in a thread of this viewer (``core.plans.run``, which holds the
plan's lock: a plan run by another process is left to it). A plan's progress is read
off the store (its branch and its ``plan`` events), so every tab and a restarted
viewer see the same; on start the viewer resumes every plan left ``ready``.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, redirect, request

from exquisite_store.core import plans as pl
from exquisite_store.core.sessions import parse_budget
from exquisite_store.errors import Busy, ConfigError, ExqError, UserError
from exquisite_store.money import format_usd
from exquisite_store.pipeline.params import FIELDS
from exquisite_store.store import Store
from viewer.web import get_store, href, wants_json

bp = Blueprint("grow", __name__)


class PlanThreads:
    """One thread per plan this viewer is running."""

    def __init__(self, store: Store, logger) -> None:
        self.store, self.logger = store, logger
        self.threads: dict[tuple[str, str], threading.Thread] = {}
        self.lock = threading.Lock()

    def start(self, session: str, pid: str) -> bool:
        """Run a plan in the background unless this viewer runs it already."""
        with self.lock:
            t = self.threads.get((session, pid))
            if t is not None and t.is_alive():
                return False
            t = threading.Thread(
                target=self._run, args=(session, pid), name=f"exq-plan-{pid}", daemon=True
            )
            self.threads[(session, pid)] = t
            t.start()
            return True

    def running(self, session: str, pid: str) -> bool:
        """Whether this viewer's thread for the plan is alive."""
        t = self.threads.get((session, pid))
        return t is not None and t.is_alive()

    def _run(self, session: str, pid: str) -> None:
        try:
            # a resume that came while this thread was ending its paused run: run on
            while pl.run(self.store, session, pid).state == "ready":
                pass
        except Busy:
            pass  # another process runs it; its progress shows all the same
        except ExqError as exc:
            self.logger.warning("plan %s of %s stopped: %s", pid, session, exc.message)
        except Exception:  # a bug: keep the viewer up, say it in the log
            self.logger.exception("plan %s of %s failed", pid, session)


def init_app(app: Flask) -> None:
    """Start the plan threads and resume every plan left ready (killed, or the viewer stopped)."""
    store = app.extensions["exq_store"]
    threads = app.extensions["exq_plans"] = PlanThreads(store, app.logger)
    try:
        for session in store.refs.sessions():
            for st in pl.plans(store, session):
                if st.state == "ready":
                    threads.start(session, st.id)
    except ExqError as exc:  # an unreadable plan must not keep the viewer from starting
        app.logger.warning("plans were not resumed: %s", exc.message)


def _threads() -> PlanThreads:
    return current_app.extensions["exq_plans"]


def grow_panel(store: Store, session: str, threads: PlanThreads | None = None) -> list[dict]:
    """Each plan of the session: progress, spend, its choices and why, what can be done."""
    out = []
    for st in reversed(pl.plans(store, session)):
        p = st.plan
        spend = format_usd(st.spent_micro_usd)
        if p.budget_micro_usd is not None:
            spend += f" of {format_usd(p.budget_micro_usd)}"
        choices = [
            f"step {e['k'] + 1}: {e['step'][:8]}, {e['why']}"
            + (f" (seams {', '.join(f'{s / 1000:.2f}' for s in e.get('seams', []))})")
            for e in st.choices[-5:]
        ]
        choices += [f"step {e['k'] + 1}: seam repair {e['result']}: {e['why']}" for e in st.repairs]
        out.append(
            {
                "id": st.id,
                "branch": p.branch,
                "done": st.done,
                "total": p.steps or None,
                "size": f"{st.width}x{st.height}",
                "spend": spend,
                "state": st.state,
                "reason": st.reason,
                "running": threads.running(session, st.id) if threads else False,
                "choices": choices,
            }
        )
    return out


def _int(form: dict[str, Any], key: str, default: int | None = None) -> int | None:
    text = str(form.get(key) or "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise ConfigError(f"{key} is a whole number, not {text!r:.20}", field=key)
    return int(text)


def _seam(form: dict[str, Any], key: str) -> int | None:
    text = str(form.get(key) or "").strip()
    if not text:
        return None
    try:
        return round(float(text) * 1000)
    except ValueError:
        raise ConfigError(f"{key} is a number like 1.3, not {text!r:.20}", field=key) from None


def _done(session: str, payload: dict[str, Any], status: int = 200):
    if wants_json():
        return jsonify(payload), status, {"Location": href("session", session)}
    return redirect(href("session", session), code=303)


@bp.post("/s/<name:name>/grow")
def start(name: str):
    """Create a plan from the form and run it in the background."""
    form = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    if not isinstance(form, dict):
        raise UserError("the request body is not a JSON object")
    dirs = str(form.get("directions") or "right")
    directions = pl.SPIRAL if dirs == "spiral" else tuple(d.strip() for d in dirs.split(","))
    pid, _plan = pl.create_plan(
        get_store(),
        name,
        branch=str(form.get("branch") or "") or None,
        steps=_int(form, "steps", 0) or 0,
        directions=directions,
        candidates=_int(form, "candidates", 1) or 1,
        pick=str(form.get("pick") or "best"),
        budget_micro_usd=parse_budget(str(form.get("budget") or "") or None),
        max_seam_permille=_seam(form, "max_seam"),
        repair_above_permille=_seam(form, "repair_above"),
        params={k: form[k] for k in FIELDS if k in form and k not in ("direction", "n", "seed")},
        prompt=str(form.get("prompt") or ""),
    )
    _threads().start(name, pid)
    return _done(name, {"plan": pid, "session": name}, 202)


@bp.post("/s/<name:name>/plans/<pid>/<action>")
def control(name: str, pid: str, action: str):
    """Pause, resume or stop a plan (a paused or stopped one ends after its current step)."""
    st = pl.control(get_store(), name, pid, action)
    if action == "resume":
        _threads().start(name, pid)
    return _done(name, {"plan": pid, "state": st.state})
