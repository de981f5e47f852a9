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
