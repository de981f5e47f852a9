"""Growing a session: a step request parsed once, run, estimated, or retried."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exquisite_store.backends.base import Backend
from exquisite_store.errors import ConfigError, UserError
from exquisite_store.geometry.frames import ANY
from exquisite_store.geometry.repair import DEFAULT_REPAIR_PX, plan_repair
from exquisite_store.ids import ObjectId
from exquisite_store.manifests import Attempt, BackendResponse, Canvas, StepParams
from exquisite_store.money import format_usd
from exquisite_store.pipeline.cost import would_exceed
from exquisite_store.pipeline.job import Observer, StepOutcome
from exquisite_store.pipeline.params import ALIASES, FIELDS, check_prompt, merge, recipe_params
from exquisite_store.pipeline.repair import seam_at
from exquisite_store.pipeline.step import run_step
from exquisite_store.pipeline.targets import Target, resolve_target
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect


@dataclass(frozen=True)
class StepRequest:
    """A checked request to grow a session by one step."""

    session: str
    #: where it grows now: the parent step and the branch that moves
    target: Target
    params: StepParams
    prompt: str = ""
    #: what the caller set (typed), over the session's defaults; kept in the events
    overrides: dict[str, Any] = field(default_factory=dict)
    #: the parent step the caller named (full id), or None: a branch head grows
    parent: ObjectId | None = None
    #: the branch the caller named, or None (HEAD's, or the parent's)
    branch: str | None = None
    #: several candidates wait in the staging area instead of moving the branch
    stage: bool = False
    #: call the backend even if this store has answered the same request before
    fresh: bool = False
    #: a seam repair: the width (px) of the band repainted around the parent's seam
    repair_px: int | None = None


def step_request(
    store: Store,
    session: str,
    params: Mapping[str, Any],
    *,
    prompt: str = "",
    parent: str | None = None,
    branch: str | None = None,
    stage: bool | None = None,
    fresh: bool = False,
) -> StepRequest:
    """Check a step before it runs: parameters (strings welcome), prompt, parent, branch.

    ``parent`` may be an id, a unique id prefix or a branch name. ConfigError names the
    first bad field; nothing is written. ``stage`` (by default: when more than one
    candidate is asked for) puts the candidates in the staging area. ``fresh`` skips
    the run cache.
    """
    sess = store.session(session)
    given = {ALIASES.get(k, k): v for k, v in params.items() if v is not None and v != ""}
    merged = merge(sess.defaults, given)
    check_prompt(prompt)
    target = resolve_target(store, session, parent or None, branch or None)
    overrides = {k: getattr(merged, k) for k in given if k in FIELDS}
    return StepRequest(
        session,
        target,
        merged,
        prompt,
        overrides,
        parent=ObjectId(target.parent) if parent else None,
        branch=target.branch if branch else None,
        stage=merged.n > 1 if stage is None else stage,
        fresh=fresh,
    )


def repair_request(
    store: Store,
    session: str,
    step: str,
    params: Mapping[str, Any],
    *,
    width_px: int | None = None,
    prompt: str = "",
    branch: str | None = None,
    stage: bool | None = None,
    fresh: bool = False,
) -> StepRequest:
    """Check a seam repair of ``step`` before it runs: its seam, the band, the parameters.

    The repair is a child of ``step``: it moves the branch whose head ``step`` is (or
    ``branch``), else a new one, as a step from there would. ConfigError names a band
    that does not fit around the seam; UserError a root, which has no seam. Nothing
    is written.
    """
    if "direction" in params and params["direction"] not in (None, ""):
        raise ConfigError("a repair keeps the direction of the step it repairs", field="direction")
    req = step_request(
        store, session, params, prompt=prompt, parent=step, branch=branch, stage=stage, fresh=fresh
    )
    width = DEFAULT_REPAIR_PX if width_px is None else width_px
    seam = seam_at(store, req.target.parent)
    canvas = store.objects.get_manifest(store.step(req.target.parent).result.canvas_id, Canvas)
    # plan it once here so a band that does not fit is refused before anything runs
    plan_repair(
        canvas_rect(canvas), seam.direction, seam.seam_at, width, req.params.overlap_px, None, ANY
    )
    return dataclasses.replace(req, repair_px=width)


def _run_args(req: StepRequest) -> dict[str, Any]:
    # the target is resolved again when the step runs, as the caller named it: a
    # branch head that moved meanwhile grows from where it is now
    return {
        "parent": req.parent,
        "branch": req.branch,
        "prompt": req.prompt,
        "fresh": req.fresh,
        "repair": req.repair_px,
        **req.overrides,
    }


def grow(
    store: Store,
    req: StepRequest,
    *,
    job: str | None = None,
    cancel: threading.Event | None = None,
    observer: Observer | None = None,
    backend: Backend | None = None,
) -> StepOutcome:
    """Run the step (one transaction, ``n`` candidates); raises if none committed."""
    return run_step(
        store,
        req.session,
        job=job,
        cancel=cancel,
        observer=observer,
        backend_impl=backend,
        stage=req.stage,
        **_run_args(req),
    )


def estimate(store: Store, req: StepRequest) -> dict[str, Any]:
    """What the step would send and cost against the budget: nothing called or written."""
    out = run_step(store, req.session, dry_run=True, **_run_args(req))
    p = dict(out.preview)
    p["over_budget"] = would_exceed(
        p["estimate_micro_usd"], p["spent_micro_usd"], p["budget_micro_usd"]
    )
    for key in ("estimate", "spent", "budget"):
        p[f"{key}_usd"] = format_usd(p[f"{key}_micro_usd"])
    return p


def cached_response_of(store: Store, step_id: str) -> str | None:
    """The earlier response a step was answered from by the run cache (None: a real call)."""
    step = store.step(step_id)
    if step.response is None or not step.response.response_id:
        return None
    rec = store.objects.get_manifest(step.response.response_id, BackendResponse)
    return rec.metadata.get("cached_response") or None


def retry_request(store: Store, attempt_id: ObjectId) -> StepRequest:
    """A failed attempt's recipe again, from its parent, with a fresh seed.

    It grows the attempt's branch if that still points at the parent, else a new one.
    """
    att = store.objects.get_manifest(attempt_id, Attempt)
    if att.recipe is None or att.parent is None:
        raise UserError("this attempt failed before it had a recipe; start a new step instead")
    params = recipe_params(att.recipe)
    params.pop("seed")  # a retry is a new draw
    branches = store.refs.branches(att.session)
    branch = att.branch if branches.get(att.branch) == att.parent else None
    r = att.recipe
    prompt = store.objects.get_text(r.prompt_id) if store.objects.has(r.prompt_id) else ""
    if r.repair:  # a failed repair is retried as the same repair
        for fixed in ("direction", "extension_px"):
            params.pop(fixed)
        return repair_request(
            store, att.session, att.parent, params, width_px=r.repair.width_px,
            prompt=prompt, branch=branch,
        )  # fmt: skip
    return step_request(store, att.session, params, prompt=prompt, parent=att.parent, branch=branch)
