"""Phases unframe, seam, validate and commit of one candidate."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from exquisite_store.authorship import recorded
from exquisite_store.errors import (
    ArtifactWriteError,
    BranchMoved,
    DimensionMismatch,
    ImmutableViolation,
    LockHeld,
    MisregisteredOutput,
    StepFailure,
)
from exquisite_store.geometry import orient
from exquisite_store.geometry.plan import unframe
from exquisite_store.geometry.register import Registration, beyond_limits, register, unshift
from exquisite_store.geometry.seams import apply_seam
from exquisite_store.ids import ObjectId
from exquisite_store.manifests import Canvas, Response, Result, Scores, Step
from exquisite_store.pipeline.job import Job
from exquisite_store.pipeline.prepare import Prepared
from exquisite_store.pipeline.targets import free_name
from exquisite_store.pipeline.validate import failed_report, step_scores, validate
from exquisite_store.store import Store, edit_canvas
from exquisite_store.store.objects import ObjectStore
from exquisite_store.store.refs import staging_name


@dataclass(frozen=True)
class Candidate:
    """A validated new canvas, stored, not yet committed to any branch."""

    canvas: Canvas
    canvas_id: ObjectId
    scores: Scores
    validation_id: ObjectId


def build_candidate(
    objects: ObjectStore, prepared: Prepared, output: np.ndarray | StepFailure, run: Job
) -> Candidate:
    """Join one output onto the parent canvas and check it; raises the failure if it fails.

    The output (or why it could not be decoded) is let go once unframed: the caller
    hands it over without keeping a reference.
    """
    if isinstance(output, StepFailure):
        raise output
    p, plan = prepared.params, prepared.plan
    run.phase("unframe")
    model_ctx, gen = unframe(orient.to_canonical(output, p.direction), plan, channels=3)
    del output
    reg = register(prepared.context_rgb, model_ctx)
    if reason := beyond_limits(reg):
        report = failed_report("registration", reason, plan)
        raise MisregisteredOutput(
            f"validation failed: {reason}",
            validation_id=objects.put_json(report),
            shift_px=f"{reg.shift_px:.2f}",
            scale_ppm=reg.scale_ppm,
        )
    model_ctx, gen = _unshift(model_ctx, gen, reg)
    run.done("unframe")
    run.phase("seam")
    seam = apply_seam(
        p.seam, prepared.context_rgb, model_ctx, gen, plan.overlap_px, p.immutable_policy
    )
    zone, new = seam.seam_zone, seam.gen
    ctx = prepared.context_canon
    if ctx.shape[2] == 4:  # RGBA canvas: old alpha kept, new band opaque
        k = zone.shape[1]
        zone = np.dstack([zone, ctx[:, ctx.shape[1] - k :, 3]])
        new = np.dstack([new, np.full(new.shape[:2], 255, np.uint8)])
    patch = orient.from_canonical(np.concatenate([zone, new], axis=1), p.direction)
    child = edit_canvas(objects, prepared.parent_canvas, plan.new_rect, patch, plan.changed_rect)
    run.done("seam")
    run.phase("validate")
    scores = step_scores(
        objects,
        child,
        plan,
        prepared.context_rgb,
        model_ctx,
        seam.gain_milli,
        seam.offset_milli,
        reg,
    )
    report = validate(objects, prepared.parent_canvas, child, plan, scores)
    validation_id = objects.put_json(report)
    if not report.ok:
        bad = next(c for c in report.checks if not c.ok)
        cls = ImmutableViolation if bad.name == "immutable" else DimensionMismatch
        raise cls(f"validation failed: {bad.detail}", validation_id=validation_id)
    run.done("validate")
    return Candidate(child, objects.put_json(child), scores, validation_id)


def _unshift(
    model_ctx: np.ndarray, gen: np.ndarray, reg: Registration
) -> tuple[np.ndarray, np.ndarray]:
    """The model's context and band moved back into register (as one strip: no edge between)."""
    if not reg.applies:
        return model_ctx, gen
    both = unshift(np.concatenate([model_ctx, gen], axis=1), reg)
    c = model_ctx.shape[1]
    return np.ascontiguousarray(both[:, :c]), np.ascontiguousarray(both[:, c:])


def commit_candidate(
    store: Store,
    prepared: Prepared,
    candidate: Candidate,
    response: Response,
    run: Job,
    committed: dict[str, str],
    stage: bool = False,
) -> tuple[str, ObjectId]:
    """Write the step and move its ref; returns ``(ref name in the session, step id)``.

    The first candidate to commit moves the target branch (compare-and-swap from the
    value it had when the step started); later ones get the next free ``B~k``. With
    ``stage``, no branch moves: candidate ``k`` is held by the staging ref
    ``staging/<branch>/<job>/<k>`` until someone accepts, keeps or discards it.
    """
    run.phase("commit")
    step = Step(
        author=recorded(),
        session=prepared.session,
        parent=prepared.target.parent,
        created_ms=store.clock_ms(),
        recipe=prepared.recipe,
        recipe_id=prepared.recipe_id,
        request=prepared.request,
        response=response,
        result=Result(
            canvas_id=candidate.canvas_id,
            width=candidate.canvas.width,
            height=candidate.canvas.height,
            validation_id=candidate.validation_id,
            scores=candidate.scores,
        ),
        timing=run.timing(),
    )
    step_id = store.objects.put_json(step)
    target = prepared.target
    r = prepared.recipe
    if r.repair:  # UNSET is falsy
        message = f"repair: the seam of {r.repair.step[:12]}, {r.repair.width_px}px (job {run.job})"
    else:
        message = (
            f"step: {prepared.params.direction} +{prepared.plan.extension_px}px (job {run.job})"
        )
    if stage:
        name = staging_name(target.branch, run.job, response.candidate + 1)
        move = functools.partial(store.refs.update_staging, prepared.session, name, None)
    elif not committed:
        name = target.branch
        move = functools.partial(store.refs.update, prepared.session, name, target.expected)
    else:
        branches = store.refs.branches(prepared.session)
        name = free_name(branches, f"{target.branch}~", len(committed) + 1)
        move = functools.partial(store.refs.update, prepared.session, name, None)
    try:
        move(step_id, message)
    except BranchMoved as exc:
        exc.details["step_id"] = step_id
        raise
    except LockHeld as exc:  # a stale lock: the step is whole; keep it as an attempt
        raise ArtifactWriteError(
            exc.message,
            step_id=step_id,
            lock=exc.path,
            pid=exc.pid,
            host=exc.host,
            age_s=exc.age_s,
        ) from exc
    run.done("commit")
    return name, step_id
