"""The validation gate: exact size (I1) and bit-identical immutable pixels (I2)."""

from __future__ import annotations

import msgspec
import numpy as np

from exquisite_store.geometry import orient
from exquisite_store.geometry.defects import defect_score, detail_ratio
from exquisite_store.geometry.plan import StepPlan
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.register import MAX_COLS, MAX_ROWS, UPSAMPLE, Registration
from exquisite_store.geometry.scores import drift_scores, seam_score
from exquisite_store.geometry.seams import correct_colour, fit_colour
from exquisite_store.manifests import Canvas, Check, Scores, SeamCheck, Validation
from exquisite_store.store.canvas import canvas_rect, compose, differing_tiles
from exquisite_store.store.objects import ObjectStore


def immutable_mismatches(objects: ObjectStore, parent: Canvas, child: Canvas, changed: Rect) -> int:
    """Pixels of the parent outside ``changed`` that differ in ``child``.

    A tile with the parent's id holds the parent's pixels (ids name content), so only
    tiles whose id changed are compared pixel by pixel, and in canvas trees a shared
    subtree is not even read: the cost follows the band.
    """
    prect, crect = canvas_rect(parent), canvas_rect(child)
    if not crect.contains(prect):
        return prect.area - prect.intersect(crect).area
    t = child.tile_size
    bad = 0
    for col, row, _oid in differing_tiles(objects, parent, child):
        region = Rect(col * t, row * t, t, t).intersect(prect)
        if region.empty:
            continue
        before = compose(objects, parent, region)
        after = compose(objects, child, region)
        differs = np.any(before != after, axis=2)
        keep = np.ones(differs.shape, dtype=bool)
        inner = region.intersect(changed)
        if not inner.empty:
            keep[inner.slices(region)] = False
        bad += int(np.count_nonzero(differs & keep))
    return bad


def validate(
    objects: ObjectStore, parent: Canvas, child: Canvas, plan: StepPlan, scores: Scores
) -> Validation:
    """Run every check; the report says which failed and why."""
    want = plan.new_rect
    got = canvas_rect(child)
    size_ok = (got.w, got.h) == (want.w, want.h)
    place_ok = got == want
    mode_ok = child.mode == parent.mode
    mismatches = immutable_mismatches(objects, parent, child, plan.changed_rect)
    checks = (
        Check(name="decode", ok=True, detail="backend output decoded to pixels"),
        Check(
            name="size",
            ok=size_ok,
            detail=f"canvas is {got.w}x{got.h}, expected {want.w}x{want.h} (I1)",
        ),
        Check(name="placement", ok=place_ok, detail=f"canvas at {tuple(got)}, plan {tuple(want)}"),
        Check(name="mode", ok=mode_ok, detail=f"{child.mode} (parent {parent.mode})"),
        Check(
            name="immutable",
            ok=mismatches == 0,
            detail=f"{mismatches} immutable pixels differ from the parent (I2)",
        ),
    )
    return Validation(
        ok=all(c.ok for c in checks),
        checks=checks,
        expected_width=want.w,
        expected_height=want.h,
        immutable_mismatch_px=mismatches,
        scores=scores,
    )


def failed_report(name: str, detail: str, plan: StepPlan | None) -> Validation:
    """A report for a candidate that failed before a canvas could be built."""
    return Validation(
        ok=False,
        checks=(Check(name=name, ok=False, detail=detail),),
        expected_width=plan.new_rect.w if plan else 0,
        expected_height=plan.new_rect.h if plan else 0,
    )


def _window(shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The middle MAX_ROWS rows and the last MAX_COLS columns of a context."""
    h, w = shape[0], shape[1]
    top = max(0, (h - MAX_ROWS) // 2)
    return slice(top, top + MAX_ROWS), slice(max(0, w - MAX_COLS), w)


def band_mean(band: np.ndarray) -> tuple[int, ...]:
    """Mean level per channel x 1000, exact integers."""
    n = band.shape[0] * band.shape[1]
    if n == 0:
        return ()
    sums = band.reshape(-1, band.shape[2]).sum(axis=0, dtype=np.int64)
    return tuple((2000 * int(v) + n) // (2 * n) for v in sums)


def step_scores(
    objects: ObjectStore,
    child: Canvas,
    plan: StepPlan,
    context_rgb: np.ndarray,
    model_context: np.ndarray,
    gain: tuple[int, ...],
    offset: tuple[int, ...],
    reg: Registration | None = None,
) -> Scores:
    """Seam score (defects) of the new canvas, how the model moved, its drift and its detail.

    ``model_context`` is the model's rendering of the context as registered (before
    the seam's colour correction, which ``gain`` / ``offset`` describe).
    """
    d = plan.direction
    strip = orient.to_canonical(compose(objects, child, plan.context_rect.union(plan.gen_rect)), d)
    c = plan.context_px
    drift = drift_scores(context_rgb, model_context, gain, offset)
    joined = correct_colour(model_context, gain, offset)
    jump = seam_score(strip[:, :, :3], c)
    seam = jump
    check = SeamCheck(jump_permille=jump)
    if reg is not None:
        dy, dx = orient.vector_from_canonical(reg.dy_16, reg.dx_16, d)
        # the detail kept, judged after a colour fit (a gain scales detail too), on the
        # part of the context registration looks at (its cost stays flat)
        win = _window(context_rgb.shape)
        truth_part, model_part = context_rgb[win], model_context[win]
        fitted = correct_colour(model_part, *fit_colour(model_part, truth_part))
        check = SeamCheck(
            shift_x_milli=dx * 1000 // UPSAMPLE,
            shift_y_milli=dy * 1000 // UPSAMPLE,
            scale_ppm=reg.scale_ppm,
            registered=reg.measured,
            detail_permille=detail_ratio(truth_part, fitted),
            jump_permille=jump,
            band_mean_milli=band_mean(strip[:, c:, :3]),
        )
        if 3 <= c <= strip.shape[1] - 2:
            defects = defect_score(context_rgb, joined, strip, c)
            seam = defects.score_permille
            check = msgspec.structs.replace(
                check,
                colour_milli=defects.colour_milli,
                structure_milli=defects.structure_milli,
                edge_milli=defects.edge_milli,
                texture_milli=defects.texture_milli,
            )
    return Scores(
        seam_permille=seam,
        parent_seam_permille=seam_score(context_rgb, c // 2) if c >= 8 else 0,
        drift_mean_abs_milli=drift.mean_abs_milli,
        drift_changed_permille=drift.changed_permille,
        corrected_drift_mean_abs_milli=drift.corrected_mean_abs_milli,
        corrected_drift_changed_permille=drift.corrected_changed_permille,
        gain_milli=gain,
        offset_milli=offset,
        seam=check if reg is not None else msgspec.UNSET,
    )
