"""Property test of the step transaction: I1 and I2 for every direction, size and seam.

``PatternBackend`` paints a pattern known in frame coordinates, and with the ``ANY``
policy the frame is the plane region ``context ∪ band`` at scale 1, so every pixel of
the child canvas has one expected value: the parent's outside the seam zone, the
seam strategy applied to a known model rendering inside it, the pattern (colour
corrected by the recorded fit under ``match``) in the new band.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exquisite_store.geometry.orient import DIRECTIONS, from_canonical, to_canonical
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.seams import SEAMS, correct_colour
from exquisite_store.manifests import Validation
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

from .fakes.backends import PatternBackend, paint_area, pattern
from .helpers import TickClock, rng_image

SHIFT = (24, -16, 8)


def _round_div(num: np.ndarray, den: int) -> np.ndarray:
    return (2 * num + den) // (2 * den)


def expected_seam(
    seam: str,
    policy: str,
    true_ctx: np.ndarray,
    model_ctx: np.ndarray,
    band: np.ndarray,
    overlap: int,
    gain: tuple[int, ...],
    offset: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """(seam zone, band) in canonical orientation, from the documented formulas."""
    if seam == "match":
        model_ctx = correct_colour(model_ctx, gain, offset)
        band = correct_colour(band, gain, offset)
    else:
        assert gain == (1000,) * 3 and offset == (0,) * 3
    blend = seam != "hard" and overlap > 0
    width = true_ctx.shape[1]
    if policy == "all-old":
        if blend:
            diff = (true_ctx[:, -1].astype(np.int64) - model_ctx[:, -1].astype(np.int64))[:, None]
            j = np.arange(overlap)[None, :, None]
            band = band.copy()
            pulled = band[:, :overlap].astype(np.int64) + _round_div(diff * (overlap - j), overlap)
            band[:, :overlap] = np.clip(pulled, 0, 255)
        return true_ctx[:, width:], band
    true_zone = true_ctx[:, width - overlap :]
    if not blend:
        return true_zone, band
    j = np.arange(overlap)[None, :, None]
    mixed = true_zone.astype(np.int64) * (overlap - j) + model_ctx[:, width - overlap :] * j
    return _round_div(mixed, overlap).astype(np.uint8), band


def frame_origin(parent: Rect, direction: str, length: int, context: int) -> Rect:
    """The plane rectangle the (ANY, scale 1) frame covers: context + band."""
    x, y, w, h = parent
    return {
        "right": Rect(x + w - context, y, context + length, h),
        "left": Rect(x - length, y, context + length, h),
        "up": Rect(x, y - length, w, context + length),
        "down": Rect(x, y + h - context, w, context + length),
    }[direction]


def band_rect(parent: Rect, direction: str, length: int) -> Rect:
    x, y, w, h = parent
    return {
        "right": Rect(x + w, y, length, h),
        "left": Rect(x - length, y, length, h),
        "up": Rect(x, y - length, w, length),
        "down": Rect(x, y + h, w, length),
    }[direction]


def zone_rect(parent: Rect, direction: str, zone: int) -> Rect:
    x, y, w, h = parent
    return {
        "right": Rect(x + w - zone, y, zone, h),
        "left": Rect(x, y, zone, h),
        "up": Rect(x, y, w, zone),
        "down": Rect(x, y + h - zone, w, zone),
    }[direction]


@st.composite
def step_cases(draw: st.DrawFn) -> dict:
    h, w = draw(st.integers(16, 120)), draw(st.integers(16, 120))
    direction = draw(st.sampled_from(DIRECTIONS))
    length = draw(st.integers(1, 80))
    policy = draw(st.sampled_from(("outside-seam", "all-old")))
    extent = w if direction in ("right", "left") else h
    top = extent - 1 if policy == "outside-seam" else min(extent - 1, length)
    overlap = draw(st.integers(0, top))
    context = draw(st.none() | st.integers(max(overlap, 1), extent + 16))
    return {
        "h": h,
        "w": w,
        "seed": draw(st.integers(0, 2**16)),
        "direction": direction,
        "length": length,
        "overlap": overlap,
        "context": context,
        "seam": draw(st.sampled_from(SEAMS)),
        "policy": policy,
        "shift": draw(st.sampled_from(((0, 0, 0), SHIFT))),
        "n": draw(st.sampled_from((1, 1, 2))),
        "tile": draw(st.sampled_from((64, 256))),
        # a first step moves the parent off the origin (negative for left/up)
        "pre": draw(st.none() | st.tuples(st.sampled_from(DIRECTIONS), st.integers(1, 40))),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=step_cases())
def test_step_keeps_size_immutable_pixels_and_pattern(case: dict) -> None:
    store = Store.memory(tile_size=case["tile"], clock=TickClock())
    store.create_session("s", rng_image(case["h"], case["w"], case["seed"]))
    if case["pre"] is not None:
        pre_dir, pre_len = case["pre"]
        run_step(
            store,
            "s",
            backend_impl=PatternBackend(),
            direction=pre_dir,
            extension_px=pre_len,
            overlap_px=0,
            seam="hard",
            seed=3,
        )
    parent_step = store.step(store.refs.head("s", "main"))
    pc = store.canvas(parent_step)
    prect = Rect(pc.x, pc.y, pc.width, pc.height)
    parent = store.canvas_pixels(parent_step)
    d, length, ov = case["direction"], case["length"], case["overlap"]
    backend = PatternBackend(context_shift=case["shift"])

    out = run_step(
        store,
        "s",
        backend_impl=backend,
        retry_delays=(0.0, 0.0),
        direction=d,
        extension_px=length,
        overlap_px=ov,
        context_px=case["context"],
        seam=case["seam"],
        immutable_policy=case["policy"],
        n=case["n"],
        seed=case["seed"],
    )
    assert len(out.step_ids) == case["n"] and not out.attempt_ids and backend.calls == 1

    step = store.step(out.step_ids[0])
    c = step.recipe.context_px
    extent = prect.w if d in ("right", "left") else prect.h
    assert c == min(extent, case["context"] or max(length, 2 * ov, 64))
    frame_rect = frame_origin(prect, d, length, c)
    new_rect = prect.union(band_rect(prect, d, length))
    zone = zone_rect(prect, d, ov if case["policy"] == "outside-seam" else 0)

    # the request: the frame is the plane region, painted exactly over the band
    req = backend.requests[0]
    assert (req.height, req.width) == (frame_rect.h, frame_rect.w)
    gen_in_frame = band_rect(prect, d, length).relative_to(frame_rect)
    want_area = np.zeros((frame_rect.h, frame_rect.w), dtype=bool)
    want_area[gen_in_frame.slices(Rect(0, 0, frame_rect.w, frame_rect.h))] = True
    assert np.array_equal(paint_area(req), want_area)
    ctx_plane = frame_rect.intersect(prect)
    assert np.array_equal(req.image[~want_area], parent[ctx_plane.slices(prect)].reshape(-1, 3))

    for i, sid in enumerate(out.step_ids):
        s = store.step(sid)
        child = store.canvas_pixels(s)
        cv = store.canvas(s)
        # I1: exact size, and the plane origin moves for left / up only
        assert child.shape == (new_rect.h, new_rect.w, 3)
        assert (cv.x, cv.y, cv.width, cv.height) == tuple(new_rect)
        report = store.objects.get_manifest(s.result.validation_id, Validation)
        assert report.ok and report.immutable_mismatch_px == 0
        # I2: every parent pixel outside the seam zone is bit-identical
        old = child[prect.slices(new_rect)]
        keep = np.ones((prect.h, prect.w), dtype=bool)
        keep[zone.slices(prect)] = False
        assert np.array_equal(old[keep], parent[keep])
        if case["seam"] == "hard" or case["shift"] == (0, 0, 0):
            assert np.array_equal(old, parent)  # nothing to blend: the zone is kept too

        # every pixel has one expected value (canonical: old on the left, band right)
        salt = PatternBackend.salt(case["seed"], i)
        frame_pattern = to_canonical(pattern(frame_rect.h, frame_rect.w, salt), d)
        true_ctx = to_canonical(parent, d)[:, -c:]
        model_ctx = np.clip(true_ctx.astype(np.int64) + case["shift"], 0, 255).astype(np.uint8)
        scores = s.result.scores
        want_zone, want_band = expected_seam(
            case["seam"],
            case["policy"],
            true_ctx,
            model_ctx,
            frame_pattern[:, c:],
            ov,
            scores.gain_milli,
            scores.offset_milli,
        )
        canon = to_canonical(child, d)
        width = canon.shape[1] - length
        assert np.array_equal(canon[:, width:], want_band)
        assert np.array_equal(canon[:, width - want_zone.shape[1] : width], want_zone)
        assert np.array_equal(from_canonical(canon, d)[prect.slices(new_rect)][keep], parent[keep])
        pulled = case["policy"] == "all-old" and case["seam"] != "hard" and ov > 0
        if case["seam"] != "match" and not pulled:
            # in plane coordinates too: the band is the pattern at frame coordinates
            band = child[band_rect(prect, d, length).slices(new_rect)]
            plane_pattern = pattern(frame_rect.h, frame_rect.w, salt)
            frame_box = Rect(0, 0, frame_rect.w, frame_rect.h)
            assert np.array_equal(band, plane_pattern[gen_in_frame.slices(frame_box)])
