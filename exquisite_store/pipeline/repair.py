"""A seam repair as a step: plan the band, build its frame, and join what comes back.

A repair is a step like any other (one transaction, an attempt if it fails, a child
step if it commits) whose recipe names the seam it repaints (``Recipe.repair``). Its
phases are the step's; only planning (``prepare_repair``) and joining
(``build_repair_candidate``) differ: the canvas keeps its size and every pixel
outside the band around the seam must stay bit-identical to the parent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from exquisite_store.backends.base import Backend, BackendRequest
from exquisite_store.errors import DimensionMismatch, ImmutableViolation, StepFailure, UserError
from exquisite_store.geometry import orient
from exquisite_store.geometry.repair import (
    DEFAULT_REPAIR_PX,
    RepairPlan,
    blend_repair,
    build_repair_frame,
    plan_repair,
    seam_of,
    unframe_repair,
)
from exquisite_store.geometry.scores import drift_scores, seam_score
from exquisite_store.ids import hash_object
from exquisite_store.manifests import (
    Canvas,
    Recipe,
    RepairOf,
    Request,
    Scores,
    StepParams,
    hash_input,
)
from exquisite_store.pipeline.candidate import Candidate
from exquisite_store.pipeline.framing import oriented_policy
from exquisite_store.pipeline.job import Job
from exquisite_store.pipeline.params import extra_params
from exquisite_store.pipeline.prepare import Prepared, request_id_of
from exquisite_store.pipeline.targets import Target
from exquisite_store.pipeline.validate import validate
from exquisite_store.prompt import build_repair_prompt
from exquisite_store.store import Store, compose, edit_canvas
from exquisite_store.store.canvas import canvas_rect
from exquisite_store.store.objects import ObjectStore, image_id

__all__ = ["DEFAULT_REPAIR_PX", "SeamAt", "build_repair_candidate", "prepare_repair", "seam_at"]


@dataclass(frozen=True)
class SeamAt:
    """A seam on a step's canvas: the step that made it, its direction and plane line."""

    step: str
    direction: str
    seam_at: int


def seam_at(store: Store, step_id: str) -> SeamAt:
    """The seam a step's repair repaints: the step's own, or (a repair) the one it repaired."""
    step = store.step(step_id)
    r = step.recipe
    if r is None or step.parent is None:
        raise UserError(f"step {step_id[:12]} is a root (an import): it has no seam to repair")
    if not isinstance(r.repair, RepairOf):
        canvas = store.objects.get_manifest(step.result.canvas_id, Canvas)
        return SeamAt(
            step_id, r.direction, seam_of(r.direction, canvas_rect(canvas), r.extension_px)
        )
    return SeamAt(r.repair.step, r.direction, r.repair.seam_at)


def prepare_repair(
    store: Store,
    session: str,
    params: StepParams,
    target: Target,
    user_prompt: str,
    backend: Backend,
    run: Job,
    width_px: int,
) -> Prepared:
    """Plan the repair of the parent step's seam and name its request (reads only)."""
    run.phase("plan")
    model = backend.resolve_model(params.model)
    seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
    seam = seam_at(store, target.parent)
    parent_canvas_id = store.step(target.parent).result.canvas_id
    parent_canvas = store.objects.get_manifest(parent_canvas_id, Canvas)
    d = seam.direction
    policy = oriented_policy(backend.frame_policy(model), d)
    plan = plan_repair(
        canvas_rect(parent_canvas),
        d,
        seam.seam_at,
        width_px,
        params.overlap_px,
        params.context_px,
        policy,
    )
    strip = compose(store.objects, parent_canvas, plan.strip_rect)
    strip_canon = orient.to_canonical(strip, d)
    strip_rgb = np.ascontiguousarray(strip_canon[:, :, :3])
    run.done("plan")

    run.phase("prompt")
    frame_c, mask_c = build_repair_frame(strip_rgb, plan)
    frame, mask = orient.from_canonical(frame_c, d), orient.from_canonical(mask_c, d)
    final_prompt = build_repair_prompt(
        user_prompt,
        direction=d,
        width_px=plan.width_px,
        band_px=plan.band_px,
        frame_width=frame.shape[1],
        frame_height=frame.shape[0],
    )
    run.done("prompt")

    run.phase("request")
    extra = extra_params(params)
    recipe = Recipe(
        direction=d,
        extension_px=plan.width_px,
        overlap_px=plan.overlap_px,
        context_px=plan.context_px,
        immutable_policy=params.immutable_policy,
        seam=params.seam,
        prompt_id=hash_object("text", user_prompt.encode()),
        backend=backend.name,
        model=model,
        quality=params.quality,
        seed=seed,
        n=params.n,
        params=extra,
        repair=RepairOf(step=seam.step, seam_at=seam.seam_at, width_px=plan.width_px),
    )
    final_id = hash_object("text", final_prompt.encode())
    frame_id, mask_id = image_id(frame), image_id(mask)
    request_id = request_id_of(model, frame_id, mask_id, final_id, params.n, seed, recipe)
    backend_request = BackendRequest(
        image=frame,
        mask=mask,
        prompt=final_prompt,
        n=params.n,
        seed=seed,
        model=model,
        request_id=request_id,
        quality=params.quality,
        params=extra,
    )
    prepared = Prepared(
        session=session,
        target=target,
        params=params,
        user_prompt=user_prompt,
        final_prompt=final_prompt,
        parent_canvas_id=parent_canvas_id,
        parent_canvas=parent_canvas,
        plan=plan,  # type: ignore[arg-type]  # a RepairPlan reads as a StepPlan where shared
        context=strip,
        context_canon=strip_canon,
        context_rgb=strip_rgb,
        recipe=recipe,
        recipe_id=hash_object("json", hash_input("recipe", recipe, parent_canvas_id)),
        request=Request(
            request_id=request_id,
            context_id=image_id(strip),
            frame_id=frame_id,
            mask_id=mask_id,
            final_prompt_id=final_id,
            frame_width=frame.shape[1],
            frame_height=frame.shape[0],
            scale_num=plan.frame.scale_num,
            scale_den=plan.frame.scale_den,
        ),
        backend_request=backend_request,
        estimate_micro_usd=backend.estimate_cost(backend_request),
        ignores_prompt=backend.ignores_prompt,
    )
    run.done("request")
    return prepared


def build_repair_candidate(
    objects: ObjectStore, prepared: Prepared, output: np.ndarray | StepFailure, run: Job
) -> Candidate:
    """Write the regenerated band into the parent canvas and check it (raises if it fails)."""
    if isinstance(output, StepFailure):
        raise output
    plan: RepairPlan = prepared.plan  # type: ignore[assignment]
    d = plan.direction
    run.phase("unframe")
    model_old, band, model_new = unframe_repair(orient.to_canonical(output, d), plan)
    del output
    run.done("unframe")
    run.phase("seam")
    strip = prepared.context_rgb
    a, w = plan.old_context_px, plan.width_px
    old, new = strip[:, :a], strip[:, a + w :]
    joined = blend_repair(
        prepared.params.seam, old, new, model_old, band, model_new, plan.overlap_px
    )
    patch = joined.band
    ctx = prepared.context_canon
    if ctx.shape[2] == 4:  # an RGBA canvas keeps its alpha under the band
        patch = np.dstack([patch, ctx[:, a : a + w, 3]])
    patch = orient.from_canonical(patch, d)
    child = edit_canvas(objects, prepared.parent_canvas, plan.canvas_rect, patch, plan.band_rect)
    run.done("seam")
    run.phase("validate")
    after = orient.to_canonical(compose(objects, child, plan.strip_rect), d)[:, :, :3]
    edges = (a, plan.seam_col, a + w)
    drift = drift_scores(
        np.concatenate([old, new], axis=1),
        np.concatenate([model_old, model_new], axis=1),
        joined.gain_milli,
        joined.offset_milli,
    )
    scores = Scores(
        seam_permille=max(seam_score(after, col) for col in edges),
        parent_seam_permille=seam_score(old, a // 2) if a >= 8 else 0,
        drift_mean_abs_milli=drift.mean_abs_milli,
        drift_changed_permille=drift.changed_permille,
        corrected_drift_mean_abs_milli=drift.corrected_mean_abs_milli,
        corrected_drift_changed_permille=drift.corrected_changed_permille,
        gain_milli=joined.gain_milli,
        offset_milli=joined.offset_milli,
        seam_before_permille=seam_score(strip, plan.seam_col),
    )
    report = validate(objects, prepared.parent_canvas, child, plan, scores)  # type: ignore[arg-type]
    validation_id = objects.put_json(report)
    if not report.ok:
        bad = next(c for c in report.checks if not c.ok)
        cls = ImmutableViolation if bad.name == "immutable" else DimensionMismatch
        raise cls(f"validation failed: {bad.detail}", validation_id=validation_id)
    run.done("validate")
    return Candidate(child, objects.put_json(child), scores, validation_id)
