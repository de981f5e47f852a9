"""Unattended growth: a plan kept in the store, run step by step, resumed after any kill.

A plan is a manifest (``Plan``) and a ref (``refs/SESSION/plans/ID``). Its progress is
never kept anywhere that a kill could tear: it is read off the branch itself, as the
chain of steps from the plan's start to the branch's head. Step ``k`` runs as job
``ID + k + try`` with a seed fixed by the plan, so after a kill the same step sends the
same request and the run cache answers a call already made: nothing is paid twice.
With several candidates a step stages them, the plan picks one (the lowest seam score,
or the first) and accepts it; the others stay reachable through the staging reflogs.
Pause and stop are events in the session's log that the runner reads between steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exquisite_store.authorship import recorded
from exquisite_store.backends.base import Backend
from exquisite_store.core.plan_repairs import (
    REPAIR_SEED_OFFSET,
    is_repair,
    repair_due,
    run_repair,
)
from exquisite_store.core.staging import accept, staged
from exquisite_store.core.steps import StepRequest, estimate, grow, step_request
from exquisite_store.errors import (
    AlreadyExists,
    BranchMoved,
    BudgetExceeded,
    Busy,
    Cancelled,
    ConfigError,
    NotFound,
    StepFailure,
    UserError,
)
from exquisite_store.manifests import Plan, Step, StepParams
from exquisite_store.money import format_usd
from exquisite_store.params import DIRECTIONS
from exquisite_store.pipeline.job import Observer
from exquisite_store.pipeline.params import FIELDS, merge
from exquisite_store.store import Store
from exquisite_store.store.refs import check_name

#: step ``k`` calls with seed ``plan.seed + k * SEED_STRIDE + try``
SEED_STRIDE = 7919
#: a step that fails this many times stops the plan (each try is a new seed)
MAX_TRIES = 3
SPIRAL = ("right", "down", "left", "up")
#: plan ids are the first hex digits of the plan manifest's id
ID_LEN = 16


@dataclass(frozen=True)
class PlanState:
    """Where a plan is: steps done, spend, and whether it runs on."""

    id: str
    plan: Plan
    done: int
    spent_micro_usd: int
    width: int
    height: int
    #: ``ready`` (can run), ``paused``, ``stopped``, ``finished`` or ``failed``
    state: str
    reason: str = ""
    choices: list[dict[str, Any]] = field(default_factory=list)
    #: a committed step whose seam is above ``--repair-above`` and not yet repaired
    repair_due: str | None = None
    #: the plan's seam repairs (``repair`` events: accepted, discarded, failed)
    repairs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int | None:
        """The number of steps asked for (None: until a size)."""
        return self.plan.steps or None


def plan_ref(session: str, pid: str) -> str:
    """The ref that names a plan's manifest."""
    return f"{check_name(session, 'session')}/plans/{_check_pid(pid)}"


def _check_pid(pid: str) -> str:
    if len(pid) != ID_LEN or any(c not in "0123456789abcdef" for c in pid):
        raise NotFound(f"no plan {pid!r:.40} (a plan id is {ID_LEN} hex digits)")
    return pid


def create_plan(
    store: Store,
    session: str,
    *,
    branch: str | None = None,
    steps: int = 0,
    until: tuple[int, int] | None = None,
    directions: tuple[str, ...] = ("right",),
    candidates: int = 1,
    pick: str = "best",
    budget_micro_usd: int | None = None,
    max_seam_permille: int | None = None,
    repair_above_permille: int | None = None,
    params: Mapping[str, Any] | None = None,
    prompt: str = "",
    seed: int | None = None,
) -> tuple[str, Plan]:
    """Check and store a plan for ``branch`` (HEAD's by default); returns its id."""
    import secrets

    sess = store.session(session)
    branch = check_name(branch or store.refs.current_branch(session), "branch")
    start = store.refs.head(session, branch)
    if steps < 0 or (not steps and until is None):
        raise ConfigError("a plan needs --steps N (at least 1) or --until WxH", field="steps")
    bad = [d for d in directions if d not in DIRECTIONS]
    if not directions or bad:
        raise ConfigError(
            f"directions must be some of {', '.join(DIRECTIONS)}, not {bad or 'none'}",
            field="directions",
        )
    if pick not in ("best", "first"):
        raise ConfigError(f"pick is best or first, not {pick!r:.20}", field="pick")
    if not 1 <= candidates <= 10:
        raise ConfigError("candidates must be from 1 to 10", field="candidates")
    overrides = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    for fixed in ("direction", "n", "seed"):
        if fixed in overrides:
            raise ConfigError(f"a plan sets {fixed} itself", field=fixed)
    step_params = merge(StepParams(), overrides)  # checks every field, names the bad one
    merge(sess.defaults, overrides)
    w, h = _size(store, start)
    if until is not None:
        uw, uh = until
        if uw > w and not {"right", "left"} & set(directions):
            raise ConfigError(f"--until {uw}x{uh} needs a wider canvas: add left or right")
        if uh > h and not {"up", "down"} & set(directions):
            raise ConfigError(f"--until {uw}x{uh} needs a taller canvas: add up or down")
    plan = Plan(
        author=recorded(),
        session=session,
        branch=branch,
        start=start,
        created_ms=store.clock_ms(),
        steps=steps,
        until_width=until[0] if until else 0,
        until_height=until[1] if until else 0,
        directions=tuple(directions),  # type: ignore[arg-type]
        candidates=candidates,
        pick=pick,  # type: ignore[arg-type]
        budget_micro_usd=budget_micro_usd,
        max_seam_permille=max_seam_permille,
        **(
            {}
            if repair_above_permille is None
            else {"repair_above_permille": repair_above_permille}
        ),
        params=step_params,
        prompt_id=store.objects.put_text(prompt) if prompt else "",
        seed=secrets.randbelow(2**31) if seed is None else seed,
    )
    with store.writing():
        oid = store.objects.put_json(plan)
        pid = oid[:ID_LEN]
        try:
            store.refs.create_ref(plan_ref(session, pid), oid, f"plan: created for {branch}")
        except BranchMoved:
            raise AlreadyExists(f"plan {pid} already exists") from None
    store.append_event(session, "plan", plan=pid, action="created", branch=branch)
    return pid, plan


def load(store: Store, session: str, pid: str) -> Plan:
    """A plan of ``session`` by id; NotFound if there is none."""
    oid = store.storage.read_ref(plan_ref(session, pid))
    if oid is None:
        raise NotFound(f"session {session!r} has no plan {pid}")
    return store.objects.get_manifest(oid, Plan)


def plan_ids(store: Store, session: str) -> list[str]:
    """The ids of a session's plans, oldest first."""
    prefix = f"{check_name(session, 'session')}/plans/"
    names = [n[len(prefix) :] for n in store.storage.list_refs(prefix)]
    plans = {pid: load(store, session, pid) for pid in names}
    return sorted(plans, key=lambda p: (plans[p].created_ms, p))


def plans(store: Store, session: str) -> list[PlanState]:
    """Every plan of a session and where it is."""
    return [state(store, session, pid) for pid in plan_ids(store, session)]


def control(store: Store, session: str, pid: str, action: str) -> PlanState:
    """``pause``, ``resume`` or ``stop`` a plan (the runner obeys between steps)."""
    if action not in ("pause", "resume", "stop"):
        raise UserError(f"a plan can be paused, resumed or stopped, not {action!r:.20}")
    st = state(store, session, pid)
    if st.state in ("finished", "stopped", "failed") and action != "stop":
        raise UserError(f"plan {pid} has ended ({st.state}: {st.reason})")
    store.append_event(session, "plan", plan=pid, action=action)
    return state(store, session, pid)


def state(store: Store, session: str, pid: str) -> PlanState:
    """Where plan ``pid`` is, read off its branch and the session's plan events."""
    plan = load(store, session, pid)
    events = [
        e.data for e in store.events(session) if e.type == "plan" and e.data.get("plan") == pid
    ]
    chain = _chain(store, plan)
    choices = [e for e in events if e.get("action") == "step"]
    last_control = next(
        (e["action"] for e in reversed(events) if e.get("action") in ("pause", "resume", "stop")),
        "",
    )
    ended = next((e for e in reversed(events) if e.get("action") in ("finished", "failed")), None)
    if chain is None:
        chain, status, why = [], "stopped", f"branch {plan.branch} no longer grows from the plan"
    elif last_control == "stop":
        status, why = "stopped", "stopped by request"
    elif ended is not None:
        status, why = ended["action"], ended.get("reason", "")
    elif last_control == "pause":
        status, why = "paused", "paused by request"
    else:
        status, why = "ready", ""
    head = chain[0][1] if chain else store.step(plan.start)
    spent = sum(s.response.cost_micro_usd for _sid, s in chain if s.response is not None)
    grown = sum(1 for _sid, s in chain if not is_repair(s))  # repairs are not steps of the goal
    due = repair_due(plan, chain, events) if status == "ready" else None
    repairs = [e for e in events if e.get("action") == "repair"]
    w, h = head.result.width, head.result.height
    return PlanState(pid, plan, grown, spent, w, h, status, why, choices, due, repairs)


def run(
    store: Store,
    session: str,
    pid: str,
    *,
    backend: Backend | None = None,
    observer: Observer | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> PlanState:
    """Run (or resume) a plan until it finishes, stops, fails or is paused.

    ``report`` is told of each plan event this run appends (a step chosen, a failure).

    Busy if another process is running it (a plan is held by a lock the kernel
    releases when its holder dies).
    """
    with store.storage.branch_lock(plan_ref(session, pid), wait=False) as free:
        if not free:
            raise Busy(f"plan {pid} is running in another process")
        while True:
            st = state(store, session, pid)
            if st.state != "ready":
                return st
            seen = store.last_event_seq(session)
            if st.repair_due is not None:
                k = st.done - 1
                seed = (st.plan.seed + k * SEED_STRIDE + REPAIR_SEED_OFFSET) % 2**31
                run_repair(
                    store, session, pid, st.plan, k, st.repair_due, st.spent_micro_usd, seed,
                    backend=backend, observer=observer,
                )  # fmt: skip
                _report(store, session, pid, seen, report)
                continue
            why = _done_because(store, st)
            if why:
                store.append_event(session, "plan", plan=pid, action="finished", reason=why)
                continue
            _one_step(store, session, st, backend, observer)
            _report(store, session, pid, seen, report)


def _report(
    store: Store,
    session: str,
    pid: str,
    seen: int,
    report: Callable[[dict[str, Any]], None] | None,
) -> None:
    if report is not None:
        for e in store.events(session, after=seen):
            if e.type == "plan" and e.data.get("plan") == pid:
                report(e.data)


def _done_because(store: Store, st: PlanState) -> str:
    plan = st.plan
    if plan.steps and st.done >= plan.steps:
        return f"{st.done} steps done"
    sized = plan.until_width or plan.until_height
    if sized and st.width >= plan.until_width and st.height >= plan.until_height:
        return f"the canvas is {st.width}x{st.height}"
    return ""


def _one_step(
    store: Store, session: str, st: PlanState, backend: Backend | None, observer: Observer | None
) -> None:
    plan, k = st.plan, st.done
    tries = sum(
        1
        for e in _events(store, session, st.id)
        if e.get("action") == "try-failed" and e.get("k") == k
    )
    if tries >= MAX_TRIES:
        store.append_event(
            session,
            "plan",
            plan=st.id,
            action="failed",
            reason=f"step {k + 1} failed {tries} times",
        )
        return
    job = f"{st.id}{k:03x}{tries:x}"
    req = _request(store, session, plan, k, tries)
    if not _staged(store, session, job):  # not run yet, or killed before its candidates waited
        if plan.budget_micro_usd is not None:
            cost = estimate(store, req)["estimate_micro_usd"]
            if st.spent_micro_usd + cost > plan.budget_micro_usd:
                store.append_event(
                    session, "plan", plan=st.id, action="finished",
                    reason=f"the plan's budget: spent {format_usd(st.spent_micro_usd)} of "
                    f"{format_usd(plan.budget_micro_usd)}, the next step needs {format_usd(cost)}",
                )  # fmt: skip
                return
        try:
            out = grow(store, req, job=job, backend=backend, observer=observer)
        except BudgetExceeded as exc:
            store.append_event(session, "plan", plan=st.id, action="finished", reason=exc.message)
            return
        except Cancelled:
            store.append_event(session, "plan", plan=st.id, action="pause")
            return
        except StepFailure as exc:
            _failed(store, session, st.id, k, tries, exc.kind, exc.message)
            return
        if plan.candidates == 1:
            sid = out.step_ids[0]
            _chose(store, session, st.id, k, sid, "the only candidate", [_seam(store, sid)])
            return
    _pick(store, session, st, job, k, tries)


def _request(store: Store, session: str, plan: Plan, k: int, tries: int) -> StepRequest:
    params: dict[str, Any] = {
        f: getattr(plan.params, f)
        for f in FIELDS
        if getattr(plan.params, f) != getattr(StepParams(), f)
    }
    params.update(
        direction=plan.directions[k % len(plan.directions)],
        n=plan.candidates,
        seed=(plan.seed + k * SEED_STRIDE + tries) % 2**31,
    )
    prompt = store.objects.get_text(plan.prompt_id) if plan.prompt_id else ""
    return step_request(
        store, session, params, prompt=prompt, branch=plan.branch, stage=plan.candidates > 1
    )


def _staged(store: Store, session: str, job: str) -> list:
    return [c for g in staged(store, session) if g.job == job for c in g.candidates]


def _pick(store: Store, session: str, st: PlanState, job: str, k: int, tries: int) -> None:
    """Accept the best (or first) staged candidate under the plan's seam limit."""
    cands = sorted(_staged(store, session, job), key=lambda c: c.candidate)
    seams = {c.step: _seam(store, c.step) for c in cands}
    limit = st.plan.max_seam_permille
    ok = [c for c in cands if limit is None or seams[c.step] <= limit]
    if not ok:
        _failed(
            store, session, st.id, k, tries, "SeamTooVisible",
            f"no candidate's seam is under {limit / 1000:.2f}: "
            + ", ".join(f"{seams[c.step] / 1000:.2f}" for c in cands)
            + " (they stay staged)",
        )  # fmt: skip
        return
    best = (
        ok[0]
        if st.plan.pick == "first"
        else min(ok, key=lambda c: (seams[c.step], _jump(store, c.step), c.candidate))
    )
    why = (
        "the first candidate"
        if st.plan.pick == "first"
        else f"the lowest seam score of {len(ok)} under the limit"
        if limit is not None
        else f"the lowest seam score of {len(cands)}"
    )
    accept(store, session, best.step)
    _chose(store, session, st.id, k, best.step, why, [seams[c.step] for c in cands])


def _seam(store: Store, sid: str) -> int:
    return store.step(sid).result.scores.seam_permille


def _jump(store: Store, sid: str) -> int:
    """The jump score: breaks a tie of defect scores (fills that keep the context read 1.00)."""
    check = store.step(sid).result.scores.seam
    return check.jump_permille if check else 0


def _chose(
    store: Store, session: str, pid: str, k: int, sid: str, why: str, seams: list[int]
) -> None:
    store.append_event(
        session, "plan", plan=pid, action="step", k=k, step=sid, why=why, seams=seams
    )


def _failed(store: Store, session: str, pid: str, k: int, t: int, kind: str, msg: str) -> None:
    store.append_event(
        session, "plan", plan=pid, action="try-failed", k=k, t=t, kind=kind, reason=msg
    )


def _events(store: Store, session: str, pid: str) -> list[dict[str, Any]]:
    return [e.data for e in store.events(session) if e.type == "plan" and e.data.get("plan") == pid]


def _size(store: Store, sid: str) -> tuple[int, int]:
    r = store.step(sid).result
    return r.width, r.height


def _chain(store: Store, plan: Plan) -> list[tuple[str, Step]] | None:
    """The plan's steps on its branch, newest first; None if the branch left the plan."""
    try:
        head = store.refs.head(plan.session, plan.branch)
    except NotFound:
        return None
    chain: list[tuple[str, Step]] = []
    for sid, step in store.history(head):
        if sid == plan.start:
            return chain
        chain.append((sid, step))
    return None
