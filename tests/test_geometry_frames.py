from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exquisite_store.errors import CompositeError, ConfigError, DimensionMismatch
from exquisite_store.geometry import (
    ANY,
    DIRECTIONS,
    FramePolicy,
    Rect,
    StepPlan,
    build_frame,
    fixed,
    multiple_of,
    plan_step,
    unframe,
)
from exquisite_store.geometry.frames import fit_frame

GPT_IMAGE_1_5 = fixed((1024, 1024), (1536, 1024), (1024, 1536))
GPT_IMAGE_2 = multiple_of(16)


def _canonical_plan(band: int, length: int, overlap: int, context: int, policy) -> StepPlan:
    """A right-extension plan whose canonical band is ``band`` rows tall."""
    return plan_step(
        Rect(0, 0, max(context, overlap + 1), band), "right", length, overlap, context, policy
    )


def _smooth(h: int, w: int, ch: int = 3) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [127 + 100 * np.sin(x / 37 + k) * np.cos(y / 53 - k) for k in range(ch)]
    return np.clip(np.stack(planes, axis=2), 0, 255).round().astype(np.uint8)


# --- fitting -------------------------------------------------------------------


def test_any_is_the_content() -> None:
    plan = _canonical_plan(300, 200, 16, 120, ANY)
    f = plan.frame
    assert (f.width, f.height) == (320, 300)
    assert (f.scale_num, f.scale_den) == (1, 1)
    assert f.content == Rect(0, 0, 320, 300)
    assert (f.context_w, f.gen_w) == (120, 200)


def test_fixed_picks_least_padding_without_scaling() -> None:
    plan = plan_step(Rect(0, 0, 1024, 1024), "right", 256, 32, 256, GPT_IMAGE_1_5)
    f = plan.frame
    assert (f.width, f.height, f.scale_num, f.scale_den) == (1024, 1024, 1, 1)
    # Content at the top-right corner; padding only to its left.
    assert f.content == Rect(512, 0, 512, 1024)
    assert plan.context_px == 256
    # Both 1024x1024 (context cut to 512) and 1536x1024 (all 1000 columns) fit unscaled:
    # the smaller frame wastes fewer pixels (and costs less), so it wins.
    cut = plan_step(Rect(0, 0, 2000, 900), "right", 512, 32, 1000, GPT_IMAGE_1_5)
    assert (cut.frame.width, cut.frame.height) == (1024, 1024)
    assert cut.context_px == 512
    # A band too wide for 1024 columns goes to the wide frame.
    wide = plan_step(Rect(0, 0, 2000, 900), "right", 1200, 32, 300, GPT_IMAGE_1_5)
    assert (wide.frame.width, wide.frame.height) == (1536, 1024)
    assert wide.frame.scale_num == wide.frame.scale_den == 1
    assert wide.context_px == 300


def test_fixed_context_takes_what_fits() -> None:
    plan = plan_step(Rect(0, 0, 3000, 1000), "right", 1000, 32, 3000, GPT_IMAGE_1_5)
    assert (plan.frame.width, plan.frame.height) == (1536, 1024)
    assert plan.frame.scale_num == plan.frame.scale_den == 1
    assert plan.context_px == 536


def test_fixed_scales_only_when_it_must() -> None:
    # A 2048-tall band: 1024x1536 needs 3/4, the others 1/2.
    plan = plan_step(Rect(0, 0, 4000, 2048), "right", 256, 32, None, GPT_IMAGE_1_5)
    f = plan.frame
    assert (f.width, f.height) == (1024, 1536)
    assert Fraction(f.scale_num, f.scale_den) == Fraction(3, 4)
    assert (f.content.h, f.gen_w, f.context_w) == (1536, 192, 192)


@given(
    band=st.integers(1, 5000),
    length=st.integers(1, 5000),
    overlap=st.integers(0, 64),
    extra=st.integers(0, 3000),
)
def test_fixed_sizes_obeyed(band: int, length: int, overlap: int, extra: int) -> None:
    min_ctx = max(overlap, 1)
    f, ctx = fit_frame(band, length, min_ctx + extra, min_ctx, GPT_IMAGE_1_5)
    assert (f.width, f.height) in GPT_IMAGE_1_5.sizes
    assert Rect(0, 0, f.width, f.height).contains(f.content)
    assert min_ctx <= ctx <= min_ctx + extra
    fits_unscaled = any(band <= h and length + min_ctx <= w for w, h in GPT_IMAGE_1_5.sizes)
    scale = Fraction(f.scale_num, f.scale_den)
    assert (scale == 1) == fits_unscaled
    assert scale <= 1
    assert f.content.h == max(1, band * scale // 1)
    assert f.gen_w == max(1, length * scale // 1)


@given(
    band=st.integers(1, 6000),
    length=st.integers(1, 6000),
    overlap=st.integers(0, 64),
    extra=st.integers(0, 4000),
)
def test_multiple_of_16_obeyed(band: int, length: int, overlap: int, extra: int) -> None:
    min_ctx = max(overlap, 1)
    f, ctx = fit_frame(band, length, min_ctx + extra, min_ctx, GPT_IMAGE_2)
    assert f.width % 16 == 0 and f.height % 16 == 0
    assert 333 * f.height <= 1000 * f.width <= 3000 * f.height
    assert f.width <= 3840 and f.height <= 3840 and f.width * f.height <= 3840 * 2160
    assert Rect(0, 0, f.width, f.height).contains(f.content)
    assert f.content.right == f.width and f.content.y == 0
    assert min_ctx <= ctx <= min_ctx + extra
    scale = Fraction(f.scale_num, f.scale_den)
    if band <= 2000 and length + min_ctx <= 2000:
        assert scale == 1
    if band > 3840 or length + min_ctx > 3840:
        assert scale < 1
    # Padding up to the multiple is under one multiple, except where the aspect needs it.
    if scale == 1 and 3 * band >= f.width and 3 * f.width >= band:
        assert f.height - f.content.h < 16


def test_multiple_drops_context_before_padding_below() -> None:
    # 200 rows: L + 32 fits 3:1 in 208 rows, so context stops at 624 - 256 columns.
    f, ctx = fit_frame(200, 256, 1024, 32, GPT_IMAGE_2)
    assert (f.width, f.height, f.scale_num, f.scale_den) == (624, 208, 1, 1)
    assert ctx == 368
    # Too wide even with the minimum context: padded below, context kept minimal-ish.
    f, ctx = fit_frame(8, 3000, 100, 2, GPT_IMAGE_2)
    assert f.scale_num == f.scale_den == 1
    assert (f.width, f.height) == (3024, 1008)
    assert ctx == 24


def test_multiple_scales_by_smallest_factor() -> None:
    f, ctx = fit_frame(5000, 300, 300, 32, GPT_IMAGE_2)
    assert f.height == 3840 and f.content.h == 3840
    assert Fraction(f.scale_num, f.scale_den) == Fraction(3840, 5000)
    assert ctx == 300


def test_min_pixels_pads() -> None:
    policy = multiple_of(16, min_pixels=1024 * 1024)
    f, _ = fit_frame(100, 100, 100, 8, policy)
    assert f.width * f.height >= 1024 * 1024
    assert f.scale_num == f.scale_den == 1


def test_nothing_fits() -> None:
    with pytest.raises(CompositeError):
        fit_frame(100, 50, 10, 10, fixed((1, 16)))  # no room beside the context
    with pytest.raises(CompositeError):
        fit_frame(100, 100, 10, 10, multiple_of(16, max_w=8))


def test_bad_policies() -> None:
    for kwargs in ({"kind": "nope"}, {"kind": "fixed"}, {"kind": "multiple", "multiple": 0}):
        with pytest.raises(ConfigError):
            FramePolicy(**kwargs)
    with pytest.raises(ConfigError):
        fixed((0, 10))


# --- build_frame / unframe ------------------------------------------------------


@given(
    direction=st.sampled_from(DIRECTIONS),
    w=st.integers(8, 120),
    h=st.integers(8, 120),
    length=st.integers(1, 150),
    overlap=st.integers(0, 7),
    ch=st.sampled_from([3, 4]),
    policy=st.sampled_from([ANY, multiple_of(16), fixed((128, 128), (256, 128))]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_exact_at_scale_one(
    direction: str, w: int, h: int, length: int, overlap: int, ch: int, policy, seed: int
) -> None:
    try:
        plan = plan_step(Rect(0, 0, w, h), direction, length, overlap, None, policy)
    except CompositeError:
        return
    context = np.random.default_rng(seed).integers(
        0, 256, (plan.band_px, plan.context_px, ch), dtype=np.uint8
    )
    frame, mask = build_frame(context, plan)
    f = plan.frame
    assert frame.shape == (f.height, f.width, ch) and frame.dtype == np.uint8
    assert mask.shape == (f.height, f.width, 4) and mask.dtype == np.uint8
    # Mask: white, alpha 0 exactly over the generation area.
    assert (mask[:, :, :3] == 255).all()
    paint = np.zeros((f.height, f.width), dtype=bool)
    c = f.content
    paint[c.y : c.bottom, c.x + f.context_w : c.right] = True
    np.testing.assert_array_equal(mask[:, :, 3] == 0, paint)
    assert set(np.unique(mask[:, :, 3])) <= {0, 255}
    model_ctx, gen = unframe(frame, plan, channels=ch)
    assert model_ctx.shape == context.shape
    assert gen.shape == (plan.band_px, plan.extension_px, ch)
    if f.scale_num == f.scale_den:
        np.testing.assert_array_equal(model_ctx, context)
        # The generation area was filled by replicating the context's last column.
        np.testing.assert_array_equal(gen, np.repeat(context[:, -1:], plan.extension_px, axis=1))


def test_round_trip_close_when_scaled() -> None:
    plan = plan_step(Rect(0, 0, 4000, 2048), "right", 256, 32, 700, GPT_IMAGE_1_5)
    assert plan.frame.scale_num != plan.frame.scale_den
    context = _smooth(plan.band_px, plan.context_px)
    frame, _ = build_frame(context, plan)
    model_ctx, gen = unframe(frame, plan)
    assert model_ctx.shape == context.shape
    assert gen.shape == (2048, 256, 3)
    diff = np.abs(model_ctx.astype(int) - context.astype(int))
    assert diff.mean() < 3


def test_unframe_converts_channels() -> None:
    plan = plan_step(Rect(0, 0, 40, 30), "right", 20, 4, None, ANY)
    rgb = np.full((30, 60, 3), 7, dtype=np.uint8)
    ctx, gen = unframe(rgb, plan, channels=4)
    assert ctx.shape[2] == gen.shape[2] == 4 and (gen[:, :, 3] == 255).all()
    rgba = np.full((30, 60, 4), 9, dtype=np.uint8)
    ctx, gen = unframe(rgba, plan)
    assert ctx.shape[2] == 3 and (ctx == 9).all()
    gray = np.full((30, 60), 5, dtype=np.uint8)
    ctx, gen = unframe(gray, plan)
    assert gen.shape == (30, 20, 3) and (gen == 5).all()


@pytest.mark.parametrize("shape", [(30, 61, 3), (31, 60, 3), (60, 30, 3), (30, 60, 3, 1)])
def test_unframe_rejects_wrong_size(shape: tuple[int, ...]) -> None:
    plan = plan_step(Rect(0, 0, 40, 30), "right", 20, 4, None, ANY)
    with pytest.raises(DimensionMismatch):
        unframe(np.zeros(shape, dtype=np.uint8), plan)


def test_build_frame_rejects_wrong_context() -> None:
    plan = plan_step(Rect(0, 0, 40, 30), "right", 20, 4, None, ANY)
    with pytest.raises(DimensionMismatch):
        build_frame(np.zeros((30, 39, 3), dtype=np.uint8), plan)


def test_fit_frame_rejects_empty_bands() -> None:
    for args in ((0, 10, 5, 1), (10, 0, 5, 1), (10, 10, 5, 6), (10, 10, 5, 0)):
        with pytest.raises(ConfigError):
            fit_frame(*args, ANY)
