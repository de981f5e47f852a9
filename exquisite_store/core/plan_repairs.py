"""``exq grow --repair-above X``: repair a plan's committed step whose seam scores above X.

After the plan commits step ``k`` with a seam score above the plan's limit, the next
thing it does is a seam repair of that step, staged as job ``ID + k + "ee"`` with a
seed fixed by the plan (so a resume after a kill sends the same request and the run
cache answers it). The repair is accepted onto the branch only if its seam scores
lower than the step's; otherwise it is discarded (it stays in the staging reflog).
Either way a ``repair`` plan event records the outcome, so it is decided once:
a repair is due while the branch's head is a plan step above the limit with no
``repair`` event of its own.
"""

from __future__ import annotations

from typing import Any

from exquisite_store.backends.base import Backend
from exquisite_store.core.staging import accept, discard, staged
from exquisite_store.core.steps import estimate, grow, repair_request
from exquisite_store.errors import BudgetExceeded, Cancelled, ExqError, StepFailure
from exquisite_store.geometry.repair import DEFAULT_REPAIR_PX
from exquisite_store.manifests import Plan, Step, StepParams
from exquisite_store.money import format_usd
from exquisite_store.pipeline.job import Observer
from exquisite_store.pipeline.params import FIELDS
from exquisite_store.store import Store

#: a repair of step ``k`` calls with the seed of its step's try 4001 (never a real try)
REPAIR_SEED_OFFSET = 4001


def is_repair(step: Step) -> bool:
    """Whether a step repaints a seam rather than growing the canvas."""
    return step.recipe is not None and bool(step.recipe.repair)


def repair_due(
    plan: Plan, chain: list[tuple[str, Step]], events: list[dict[str, Any]]
) -> str | None:
    """The step the plan must repair next (the head, above the limit, undecided), or None."""
    limit = plan.repair_above_permille
    if not isinstance(limit, int) or not chain:
        return None
    sid, head = chain[0]
    if is_repair(head) or head.result.scores.seam_permille <= limit:
        return None
    if any(e.get("action") == "repair" and e.get("step") == sid for e in events):
        return None
    return sid


def run_repair(
    store: Store,
    session: str,
    pid: str,
    plan: Plan,
    k: int,
    sid: str,
    spent: int,
    seed: int,
    *,
    backend: Backend | None = None,
    observer: Observer | None = None,
) -> None:
    """Repair step ``k`` (``sid``), keep the repair if its seam is lower, record the outcome."""
    job = f"{pid}{k:03x}ee"  # hex, and longer than any step's own job id
    seam = store.step(sid).result.scores.seam_permille

    def outcome(result: str, why: str, repair: str = "", after: int | None = None) -> None:
        store.append_event(
            session, "plan", plan=pid, action="repair", k=k, step=sid, result=result,
            why=why, repair=repair, seam_before=seam, seam_after=after,
        )  # fmt: skip

    mine = [c for g in staged(store, session) if g.job == job for c in g.candidates]
    if not mine:  # not run yet, or killed before its candidate was staged
        try:
            req = _request(store, session, plan, sid, seed)
        except ExqError as exc:  # e.g. no band fits around this seam: nothing to repair
            outcome("failed", f"{exc.kind}: {exc.message}")
            return
        if plan.budget_micro_usd is not None:
            cost = estimate(store, req)["estimate_micro_usd"]
            if spent + cost > plan.budget_micro_usd:
                outcome("skipped", f"the plan's budget: the repair needs {format_usd(cost)}")
                return
        try:
            grow(store, req, job=job, backend=backend, observer=observer)
        except (BudgetExceeded, Cancelled, StepFailure) as exc:
            outcome("failed", f"{exc.kind}: {exc.message}")
            return
        mine = [c for g in staged(store, session) if g.job == job for c in g.candidates]
    cand = mine[0]
    after = store.step(cand.step).result.scores.seam_permille
    if after < seam:
        accept(store, session, cand.step)
        outcome("accepted", f"seam {seam / 1000:.2f} -> {after / 1000:.2f}", cand.step, after)
    else:
        discard(store, session, cand.step)
        why = f"seam {after / 1000:.2f} after the repair is not lower than {seam / 1000:.2f}"
        outcome("discarded", why, cand.step, after)


def _request(store: Store, session: str, plan: Plan, sid: str, seed: int):
    params: dict[str, Any] = {
        f: getattr(plan.params, f)
        for f in FIELDS
        if f not in ("direction", "extension_px")
        and getattr(plan.params, f) != getattr(StepParams(), f)
    }
    params.update(n=1, seed=seed)
    prompt = store.objects.get_text(plan.prompt_id) if plan.prompt_id else ""
    # the default band, narrowed to what the step's new band leaves of context beyond it
    width = max(2, min(DEFAULT_REPAIR_PX, 2 * (store.step(sid).recipe.extension_px - 1)))
    return repair_request(
        store, session, sid, params, width_px=width, prompt=prompt, branch=plan.branch, stage=True
    )
