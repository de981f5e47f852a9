import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from exquisite_store.errors import ConfigError
from exquisite_store.geometry import (
    ANY,
    DIRECTIONS,
    Rect,
    StepPlan,
    apply_seam,
    build_frame,
    fixed,
    from_canonical,
    multiple_of,
    plan_step,
    to_canonical,
    unframe,
)

GPT_IMAGE_1_5 = fixed((1024, 1024), (1536, 1024), (1024, 1536))
POLICIES = [ANY, GPT_IMAGE_1_5, multiple_of(16)]


@st.composite
def step_args(draw: st.DrawFn) -> dict:
    direction = draw(st.sampled_from(DIRECTIONS))
    parent = Rect(
        draw(st.integers(-5000, 5000)),
        draw(st.integers(-5000, 5000)),
        draw(st.integers(8, 400)),
        draw(st.integers(8, 400)),
    )
    extent = parent.w if direction in ("right", "left") else parent.h
    policy = draw(st.sampled_from(["outside-seam", "all-old"]))
    length = draw(st.integers(1, 600))
    overlap_cap = min(extent - 1, length) if policy == "all-old" else extent - 1
    overlap = draw(st.integers(0, min(overlap_cap, 64)))
    context = draw(st.none() | st.integers(max(overlap, 1), 2 * extent))
    return {
        "parent_rect": parent,
        "direction": direction,
        "extension_px": length,
        "overlap_px": overlap,
        "context_px": context,
        "policy": draw(st.sampled_from(POLICIES)),
        "immutable_policy": policy,
    }


def _adjacent_side(outer: Rect, inner: Rect, direction: str) -> bool:
    """Whether ``inner`` touches ``outer``'s ``direction`` side from inside."""
    return {
        "right": inner.right == outer.right,
        "left": inner.x == outer.x,
        "up": inner.y == outer.y,
        "down": inner.bottom == outer.bottom,
    }[direction]


def _thickness(r: Rect, direction: str) -> int:
    return r.w if direction in ("right", "left") else r.h


@given(step_args())
def test_plan_geometry(args: dict) -> None:
    plan = plan_step(**args)
    p, d, length = plan.parent_rect, plan.direction, plan.extension_px
    horizontal = d in ("right", "left")
    # I1: exact size.
    assert (plan.new_rect.w, plan.new_rect.h) == (
        (p.w + length, p.h) if horizontal else (p.w, p.h + length)
    )
    assert plan.band_px == (p.h if horizontal else p.w)
    # Generation band: beside the parent on the extension side, disjoint, fills new_rect.
    gen = plan.gen_rect
    assert gen.area == length * plan.band_px
    assert gen.intersect(p).empty
    assert plan.new_rect.contains(gen) and plan.new_rect.contains(p)
    assert p.union(gen) == plan.new_rect
    assert plan.new_rect.area == p.area + gen.area
    assert {
        "right": gen.x == p.right,
        "left": gen.right == p.x,
        "up": gen.bottom == p.y,
        "down": gen.y == p.bottom,
    }[d]
    # Seam zone: inside the parent, on the seam, as thick as the policy allows.
    seam = plan.seam_rect
    assert p.contains(seam)
    assert _adjacent_side(p, seam, d)
    zone = plan.overlap_px if plan.immutable_policy == "outside-seam" else 0
    assert _thickness(seam, d) == zone == plan.seam_zone_px
    if zone:
        assert seam.area == zone * plan.band_px
    # Context band: inside the parent, on the seam, holds the seam zone.
    ctx = plan.context_rect
    assert p.contains(ctx) and ctx.contains(seam)
    assert _adjacent_side(p, ctx, d)
    assert _thickness(ctx, d) == plan.context_px
    assert ctx.area == plan.context_px * plan.band_px
    assert max(plan.overlap_px, 1) <= plan.context_px
    extent = p.w if horizontal else p.h
    requested = args["context_px"]
    cap = extent if requested is None else min(extent, requested)
    assert plan.context_px <= cap
    assert plan.changed_rect == seam.union(gen)
    # The frame holds the content, context beside generation.
    f = plan.frame
    assert Rect(0, 0, f.width, f.height).contains(f.content)
    assert f.context_w + f.gen_w == f.content.w
    assert f.context_w >= 1 and f.gen_w >= 1
    assert args["policy"].accepts(f.width, f.height)


def test_default_context() -> None:
    plan = plan_step(Rect(0, 0, 1000, 500), "right", 100, 40, None, ANY)
    assert plan.context_px == 100  # max(L, 2 * overlap, 64)
    plan = plan_step(Rect(0, 0, 1000, 500), "right", 10, 40, None, ANY)
    assert plan.context_px == 80
    plan = plan_step(Rect(0, 0, 1000, 500), "right", 10, 4, None, ANY)
    assert plan.context_px == 64
    plan = plan_step(Rect(0, 0, 30, 500), "right", 100, 4, None, ANY)
    assert plan.context_px == 30  # clipped to the canvas
    plan = plan_step(Rect(0, 0, 30, 500), "down", 100, 4, 9999, ANY)
    assert plan.context_px == 500


def test_left_and_up_go_negative() -> None:
    left = plan_step(Rect(0, 0, 100, 50), "left", 30, 8, 20, ANY)
    assert left.new_rect == Rect(-30, 0, 130, 50)
    assert left.gen_rect == Rect(-30, 0, 30, 50)
    assert left.context_rect == Rect(0, 0, 20, 50)
    assert left.seam_rect == Rect(0, 0, 8, 50)
    assert left.changed_rect == Rect(-30, 0, 38, 50)
    up = plan_step(Rect(-30, 0, 130, 50), "up", 25, 8, 20, ANY, "all-old")
    assert up.new_rect == Rect(-30, -25, 130, 75)
    assert up.gen_rect == Rect(-30, -25, 130, 25)
    assert up.seam_rect.empty
    assert up.changed_rect == up.gen_rect


BAD = [
    ({"extension_px": 0}, "extension_px"),
    ({"extension_px": -1}, "extension_px"),
    ({"extension_px": 16385}, "extension_px"),
    ({"extension_px": 2.5}, "extension_px"),
    ({"extension_px": True}, "extension_px"),
    ({"direction": "sideways"}, "direction"),
    ({"overlap_px": -1}, "overlap_px"),
    ({"overlap_px": 100}, "overlap_px"),  # == extent
    ({"overlap_px": 150}, "overlap_px"),  # > extent
    ({"overlap_px": 30, "context_px": 20}, "overlap_px"),  # > context
    ({"overlap_px": 30, "extension_px": 20, "immutable_policy": "all-old"}, "overlap_px"),
    ({"context_px": 0}, "context_px"),
    ({"immutable_policy": "nothing"}, "immutable_policy"),
    ({"parent_rect": Rect(0, 0, 0, 10)}, "parent_rect"),
    ({"policy": "any"}, "policy"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_parameters_name_their_field(change: dict, field: str) -> None:
    args = {
        "parent_rect": Rect(0, 0, 100, 60),
        "direction": "right",
        "extension_px": 50,
        "overlap_px": 8,
        "context_px": None,
        "policy": ANY,
    } | change
    with pytest.raises(ConfigError) as info:
        plan_step(**args)
    assert info.value.field == field


def _extend(canvas: np.ndarray, plan: StepPlan, seam: str) -> np.ndarray:
    """The pipeline's geometry with an identity backend: returns the new canvas."""
    p, new = plan.parent_rect, plan.new_rect
    band = canvas[plan.context_rect.slices(p)]
    canon = to_canonical(band, plan.direction)
    frame, _mask = build_frame(canon, plan)
    model_ctx, gen = unframe(frame, plan, channels=canvas.shape[2])
    result = apply_seam(seam, canon, model_ctx, gen, plan.overlap_px, plan.immutable_policy)
    out = np.zeros((new.h, new.w, canvas.shape[2]), dtype=np.uint8)
    out[p.slices(new)] = canvas
    out[plan.gen_rect.slices(new)] = from_canonical(result.gen, plan.direction)
    out[plan.seam_rect.slices(new)] = from_canonical(result.seam_zone, plan.direction)
    return out


@given(args=step_args(), seam=st.sampled_from(["hard", "feather", "match"]))
def test_one_code_path_for_four_directions(args: dict, seam: str) -> None:
    args = args | {"policy": ANY}
    p = args["parent_rect"]
    assume(p.w * p.h <= 40_000)
    plan = plan_step(**args)
    rng = np.random.default_rng(p.w * 1000 + p.h)
    canvas = rng.integers(0, 256, (p.h, p.w, 3), dtype=np.uint8)
    out = _extend(canvas, plan, seam)
    assert out.shape[:2] == (plan.new_rect.h, plan.new_rect.w)
    # I2: everything of the parent outside the seam zone is bit-identical.
    keep = np.ones((p.h, p.w), dtype=bool)
    keep[plan.seam_rect.slices(p)] = False
    np.testing.assert_array_equal(out[p.slices(plan.new_rect)][keep], canvas[keep])
    # The identity backend returns its own edge replication: the first new row/column
    # next to the seam repeats the parent's edge, which pins the orientation of every
    # rectangle and rotation together.
    edge = {
        "right": (np.s_[:, -1], np.s_[:, p.w]),
        "left": (np.s_[:, 0], np.s_[:, plan.extension_px - 1]),
        "up": (np.s_[0, :], np.s_[plan.extension_px - 1, :]),
        "down": (np.s_[-1, :], np.s_[p.h, :]),
    }[plan.direction]
    np.testing.assert_array_equal(out[edge[1]], canvas[edge[0]])
