"""The seam badge measures defects: 1.00 on an uncut photo, high for a cast or a broken edge."""

from __future__ import annotations

import numpy as np
import pytest

from exquisite_store.errors import DimensionMismatch
from exquisite_store.geometry.defects import defect_score, detail_ratio
from exquisite_store.geometry.scores import seam_score
from exquisite_store.geometry.seams import apply_seam

from .fakes.photos import HELD_OUT, photo

C, L, OV = 64, 64, 32


def _cuts(seed: int = 0, per_photo: int = 20):
    rng = np.random.default_rng(seed)
    for name in HELD_OUT:
        img = photo(name)
        for _ in range(per_photo):
            seam = int(rng.integers(C + 4, img.shape[1] - L))
            yield img[:, seam - C : seam + L]


def test_an_uncut_photo_scores_invisible_at_any_cut() -> None:
    badges, jumps = [], []
    for strip in _cuts():
        ctx = strip[:, :C]
        badges.append(defect_score(ctx, ctx, strip, C).score_permille / 1000)
        jumps.append(seam_score(strip, C) / 1000)
    assert np.median(badges) <= 1.02 and max(badges) <= 1.5, (np.median(badges), max(badges))
    # the jump score it replaces saw the photo's own content at the cut
    assert np.median(jumps) > 1.2 and max(jumps) > 2.5


@pytest.mark.parametrize("cast", [8, 22])
def test_a_colour_cast_under_feather_scores_high(cast) -> None:
    for strip in list(_cuts(seed=1, per_photo=3)):
        ctx, band = strip[:, :C], strip[:, C:]
        model = np.clip(strip.astype(int) + cast, 0, 255).astype(np.uint8)  # the model's cast
        seam = apply_seam("feather", ctx, model[:, :C], model[:, C:], OV)
        joined = np.concatenate([ctx[:, : C - OV], seam.seam_zone, seam.gen], axis=1)
        score = defect_score(ctx, model[:, :C], joined, C)
        assert score.colour_milli > 0.6 * cast * 1000, score
        assert score.score_permille > 1000 + 40 * cast, score  # even on the busiest texture
        # the same band with its cast taken off is invisible again
        assert defect_score(ctx, ctx, strip, C).score_permille < 1100
        assert band.shape[1] == L


def test_a_band_redrawn_displaced_breaks_structure_at_the_seam() -> None:
    img = photo("coins")
    strip = img[:, 100 : 100 + C + L]
    moved = strip.copy()
    moved[:, C:] = np.roll(img, (5, 0), axis=(0, 1))[:, 100 + C : 100 + C + L]
    ctx = strip[:, :C]
    assert defect_score(ctx, ctx, moved, C).edge_milli > 1000
    assert defect_score(ctx, ctx, strip, C).edge_milli == 0


def test_detail_ratio_measures_blur() -> None:
    from PIL import Image, ImageFilter

    img = photo("grass")
    soft = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.8)))
    assert detail_ratio(img, img) == 1000
    assert 200 < detail_ratio(img, soft) < 800
    flat = np.full((16, 16, 3), 9, np.uint8)
    assert detail_ratio(flat, flat) == 1000


def test_shapes_must_agree() -> None:
    a = np.zeros((20, 10, 3), np.uint8)
    with pytest.raises(DimensionMismatch):
        defect_score(a, a[:, :9], np.zeros((20, 20, 3), np.uint8), 10)
    with pytest.raises(DimensionMismatch):
        defect_score(a, a, np.zeros((20, 20, 3), np.uint8), 1)
