"""Registration of a model's output on its context: shifts to 1/16 px, scales, undoing them."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from exquisite_store.errors import DimensionMismatch
from exquisite_store.geometry.orient import DIRECTIONS, to_canonical, vector_from_canonical
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.register import (
    MAX_SCALE_PPM,
    Registration,
    beyond_limits,
    cubic_weights,
    register,
    unshift,
)

from .fakes.backends import TruthBackend
from .fakes.photos import HELD_OUT, photo

SHIFTS = [(1.5, -1.0), (0.0, 2.0), (-0.75, 0.5), (1.25, 1.75), (0.0, 0.0)]


def _moved(img: np.ndarray, shift: tuple[float, float], **drift) -> np.ndarray:
    fake = TruthBackend(img, parent_rect=Rect(0, 0, 1, 1), direction="right", shift=shift, **drift)
    return fake.drift(img)


@pytest.mark.parametrize("name", HELD_OUT)
def test_shift_found_to_a_sixteenth_through_blur_and_colour_drift(name) -> None:
    context = photo(name)[:, :96]
    for dx, dy in SHIFTS:
        reg = register(context, _moved(context, (dx, dy)))
        assert reg.measured
        assert abs(reg.dx_16 / 16 - dx) <= 1 / 8, (name, dx, reg)
        assert abs(reg.dy_16 / 16 - dy) <= 1 / 8, (name, dy, reg)
        assert reg.scale_ppm < MAX_SCALE_PPM / 2  # noise of the halves, well under the limit


def test_agrees_with_scikit_image() -> None:
    context = photo("motorcycle")[:, :128]
    for dx, dy in SHIFTS:
        moved = _moved(context, (dx, dy), blur=0, gain=(1, 1, 1), offset=(0, 0, 0))
        reg = register(context, moved)
        theirs = phase_cross_correlation(
            context.mean(axis=2), moved.mean(axis=2), upsample_factor=16
        )[0]
        # scikit-image gives the shift that brings the moved image back: ours negated
        assert abs(reg.dy_16 / 16 + theirs[0]) <= 1 / 8
        assert abs(reg.dx_16 / 16 + theirs[1]) <= 1 / 8


def test_a_scaled_output_is_beyond_the_limits() -> None:
    context = photo("camera")[:, :128]
    small = register(context, _moved(context, (0.0, 0.0), scale=1.002))
    assert not beyond_limits(small)
    big = register(context, _moved(context, (0.0, 0.0), scale=1.03))
    assert big.scale_ppm > MAX_SCALE_PPM
    assert "scaled its picture" in beyond_limits(big)
    far = Registration(dy_16=0, dx_16=16 * 6, scale_ppm=0, measured=True)
    assert "moved its picture by 6.00 px" in beyond_limits(far)


def test_unshift_undoes_a_whole_pixel_shift_exactly() -> None:
    img = photo("coins")[:, :100]
    moved = np.roll(img, (2, -3), axis=(0, 1))  # content 2 down, 3 left
    reg = register(img, moved)
    assert (reg.dy_16, reg.dx_16) == (32, -48)
    back = unshift(moved, reg)
    assert np.array_equal(back[6:-6, 6:-6], img[6:-6, 6:-6])


def test_no_shift_leaves_the_pixels_alone() -> None:
    img = photo("grass")[:, :64]
    reg = register(img, img)
    assert (reg.dy_16, reg.dx_16) == (0, 0) and not reg.applies
    assert unshift(img, reg) is img
    tiny = Registration(dy_16=1, dx_16=-1, scale_ppm=0, measured=True)
    assert unshift(img, tiny) is img  # under 1/8 px: not worth resampling


def test_a_flat_context_is_not_measured() -> None:
    flat = np.full((64, 64, 3), 120, np.uint8)
    reg = register(flat, flat)
    assert not reg.measured and not reg.applies


def test_shapes_must_agree() -> None:
    with pytest.raises(DimensionMismatch):
        register(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11, 3), np.uint8))


def test_cubic_weights_sum_to_one_and_keep_a_flat_image_flat() -> None:
    for frac in range(16):
        assert sum(cubic_weights(frac)) == 1024
    flat = np.full((20, 20, 3), 77, np.uint8)
    assert np.all(unshift(flat, Registration(5, -11, 0, True)) == 77)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_canonical_vectors_turn_back_to_the_plane(direction) -> None:
    plane = np.zeros((9, 9), np.uint8)
    plane[4, 4] = 1
    plane[5, 7] = 2  # one down, three right of the first
    canon = to_canonical(plane, direction)
    (y1, x1), (y2, x2) = (np.argwhere(canon == k)[0] for k in (1, 2))
    assert vector_from_canonical(int(y2 - y1), int(x2 - x1), direction) == (1, 3)
