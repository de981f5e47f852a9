"""The bench's fill defect measures: they see a colour step, a copy, a seam, and not noise."""

from __future__ import annotations

import numpy as np
from skimage import data

from exquisite_store.geometry import fill_defects, scores


def photo(h: int = 128) -> np.ndarray:
    return np.ascontiguousarray(data.chelsea()[:h, : 2 * h])


def test_colour_step_sees_an_offset_band_and_not_the_uncut_photo() -> None:
    uncut = photo()
    step, inside = fill_defects.colour_step(uncut, 128)
    assert step < 12 and inside < 12  # the fur changes that much from column to column
    shifted = uncut.astype(np.int16)
    shifted[:, 128:] += 25
    step, _ = fill_defects.colour_step(np.clip(shifted, 0, 255).astype(np.uint8), 128)
    assert 18 < step < 32


def test_repeat_rate_counts_a_copy_of_the_context_and_not_new_texture() -> None:
    ctx = photo()[:, :128]
    hole = np.zeros((128, 256), bool)
    hole[:, 128:] = True
    copy = np.concatenate([ctx, ctx], axis=1)  # a second cat
    assert fill_defects.repeat_rate(copy, hole) > 0.9
    shifted = np.concatenate([ctx, np.roll(ctx, (5, 37), axis=(0, 1))], axis=1)
    assert fill_defects.repeat_rate(shifted, hole) > 0.6  # a copy at any offset
    rng = np.random.default_rng(0)
    noise = np.concatenate([ctx, rng.integers(0, 256, ctx.shape, dtype=np.uint8)], axis=1)
    assert fill_defects.repeat_rate(noise, hole) < 0.05
    assert fill_defects.repeat_rate(np.concatenate([ctx, ctx * 0], axis=1), hole) == 0.0


def test_context_seam_is_near_1000_uncut_and_high_at_a_step() -> None:
    uncut = photo()
    assert fill_defects.context_seam(uncut, 128) < 1600
    stepped = uncut.astype(np.int16)
    stepped[:, 128:] += 40
    stepped = np.clip(stepped, 0, 255).astype(np.uint8)
    assert fill_defects.context_seam(stepped, 128) > 3000
    # a flat band: today's seam_score divides by the band's lower texture too
    flat = uncut.copy()
    flat[:, 128:] = uncut[:, 127:128]
    assert fill_defects.context_seam(flat, 128) < scores.seam_score(flat, 128)
