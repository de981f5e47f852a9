import numpy as np
import pytest

from exquisite_store.errors import ConfigError
from exquisite_store.geometry import apply_seam, drift_scores, seam_score


def _photo(h: int, w: int, seed: int = 0, amp: float = 40, period: float = 120) -> np.ndarray:
    """Smooth colour gradients plus fine, slightly correlated texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack(
        [120 + amp * np.sin(x / period + k) * np.cos(y / (0.7 * period) + 2 * k) for k in range(3)],
        axis=2,
    )
    noise = rng.normal(0, 5, (h, w, 3))
    noise = (noise + np.roll(noise, 1, axis=0) + np.roll(noise, 1, axis=1)) / 2
    return np.clip(base + noise, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uncut_image_scores_about_1000(seed: int) -> None:
    img = _photo(256, 384, seed)
    scores = [seam_score(img, col) for col in range(40, 360, 23)]
    assert all(500 <= s <= 2000 for s in scores), scores
    assert 700 <= np.median(scores) <= 1400, scores


def test_flat_image_scores_1000() -> None:
    flat = np.full((64, 64, 3), 90, dtype=np.uint8)
    assert seam_score(flat, 32) == 1000


def test_colour_step_scores_high_even_feathered() -> None:
    img = _photo(256, 384)
    seam, ov = 192, 16
    stepped = np.clip(img.astype(int) + [40, -30, 25], 0, 255).astype(np.uint8)
    pasted = np.concatenate([img[:, :seam], stepped[:, seam:]], axis=1)
    assert seam_score(pasted, seam) > 3000
    feathered = apply_seam("feather", img[:, :seam], stepped[:, :seam], stepped[:, seam:], ov)
    strip = np.concatenate([img[:, : seam - ov], feathered.seam_zone, feathered.gen], axis=1)
    assert seam_score(strip, seam) > 3000
    # Whereas the same strip scored at an uncut column stays low.
    assert seam_score(strip, 100) < 2000


def test_seam_score_narrow_strips() -> None:
    img = _photo(6, 5)
    assert seam_score(img, 1) >= 0
    assert seam_score(img, 4) >= 0
    with pytest.raises(ConfigError):
        seam_score(img, 0)
    with pytest.raises(ConfigError):
        seam_score(img, 5)


def test_drift_zero_for_identical() -> None:
    img = _photo(40, 50)
    d = drift_scores(img, img.copy())
    assert (d.mean_abs_milli, d.changed_permille) == (0, 0)
    assert (d.corrected_mean_abs_milli, d.corrected_changed_permille) == (0, 0)


def test_drift_measures_and_correction_removes_offset() -> None:
    img = _photo(40, 50)
    shifted = np.clip(img.astype(int) + 5, 0, 255).astype(np.uint8)
    d = drift_scores(img, shifted, gain_milli=(1000,) * 3, offset_milli=(-5000,) * 3)
    assert 4900 <= d.mean_abs_milli <= 5000
    assert d.changed_permille >= 990
    assert d.corrected_mean_abs_milli <= 50
    assert d.corrected_changed_permille == 0
    assert all(isinstance(v, int) for v in vars(d).values())


def test_changed_needs_more_than_two_levels() -> None:
    img = np.full((10, 10, 3), 100, dtype=np.uint8)
    other = img.copy()
    other[:5, :, 1] = 102  # within tolerance
    other[0, :5, 2] = 103  # 5 pixels changed
    d = drift_scores(img, other)
    assert d.changed_permille == 50
    assert d.mean_abs_milli == round(1000 * (50 * 2 + 5 * 3) / 300)


def _reference_seam_score(strip: np.ndarray, seam_col: int) -> int:
    """The score's definition, read plainly: block sums of the whole strip, no window."""
    from exquisite_store.geometry.scores import (
        LEVEL_FLOOR,
        NEIGHBOUR_PAIRS,
        PHASES,
        SCORE_SCALES,
    )

    height, width, ch = strip.shape
    worst = 0.0
    for block in SCORE_SCALES:
        for lag in range(0, block, max(1, block // PHASES)):
            boundary = seam_col - lag
            left, right, rows = boundary // block, (width - boundary) // block, height // block
            if block > 1 and (left < 2 or right < 2 or rows < 1):
                continue
            a = strip[: rows * block, boundary - left * block : boundary + right * block]
            sums = a.astype(np.int64).reshape(rows, block, left + right, block, ch).sum(axis=(1, 3))
            diffs = np.abs(np.diff(sums, axis=1)).sum(axis=(0, 2)) / (block * block * rows * ch)
            pair = left - 1
            lo, hi = max(0, pair - NEIGHBOUR_PAIRS), pair + 1 + NEIGHBOUR_PAIRS
            near = np.concatenate([diffs[lo:pair], diffs[pair + 1 : hi]])
            texture = float(np.median(near)) if near.size else 0.0
            worst = max(worst, max(float(diffs[pair]), LEVEL_FLOOR) / max(texture, LEVEL_FLOOR))
    return int(np.floor(1000.0 * worst + 0.5))


def test_seam_score_equals_its_plain_definition_on_random_strips() -> None:
    """The windowed integer sums give exactly what the whole strip's block sums give."""
    rng = np.random.default_rng(12)
    for i in range(60):
        h, w = int(rng.integers(2, 160)), int(rng.integers(2, 1200))
        ch = 4 if i % 5 == 0 else 3
        if i % 3 == 0:  # a photo-like strip with a colour step: ratios far from 1
            strip = _photo(h, w, seed=i)
            if ch == 4:
                strip = np.dstack([strip, np.full((h, w), 255, np.uint8)])
            cut = int(rng.integers(1, w)) if w > 1 else 1
            strip[:, cut:] = np.clip(strip[:, cut:].astype(int) + 30, 0, 255)
        else:
            strip = rng.integers(0, 256, (h, w, ch), dtype=np.uint8)
        seam = int(rng.integers(1, w)) if w > 1 else 1
        if w < 2:
            continue
        assert seam_score(strip, seam) == _reference_seam_score(strip, seam), (h, w, ch, seam)
