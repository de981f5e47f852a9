import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exquisite_store.errors import ConfigError, DimensionMismatch
from exquisite_store.geometry import SEAMS, apply_seam, correct_colour, fit_colour

H, C, L, OV = 96, 128, 80, 16


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus fine texture, kept inside 40..200 (no clipping)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack(
        [120 + 40 * np.sin(x / 41 + k) * np.cos(y / 29 + 2 * k) for k in range(3)], axis=2
    )
    noise = rng.normal(0, 6, (h, w, 3))
    noise = (noise + np.roll(noise, 1, axis=0) + np.roll(noise, 1, axis=1)) / 2
    return np.clip(base + noise, 40, 200).round().astype(np.uint8)


def _blur(a: np.ndarray) -> np.ndarray:
    f = a.astype(np.float64)
    p = np.pad(f, ((1, 1), (1, 1), (0, 0)), mode="edge")
    return (
        sum(p[dy : dy + a.shape[0], dx : dx + a.shape[1]] for dy in range(3) for dx in range(3)) / 9
    )


def _drift(a: np.ndarray, gain: float = 1.1, offset: float = 12) -> np.ndarray:
    return np.clip(gain * _blur(a) + offset, 0, 255).round().astype(np.uint8)


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(context, model context, generated band, true continuation)`` with a colour drift."""
    full = _photo(H, C + L)
    context, truth = full[:, :C], full[:, C:]
    return context, _drift(context), _drift(truth), truth


def test_hard_keeps_seam_zone(scene) -> None:
    context, model_ctx, gen, _ = scene
    r = apply_seam("hard", context, model_ctx, gen, OV)
    np.testing.assert_array_equal(r.seam_zone, context[:, C - OV :])
    np.testing.assert_array_equal(r.gen, gen)
    assert r.gain_milli == (1000,) * 3 and r.offset_milli == (0,) * 3


def test_feather_ramps_from_truth_to_model(scene) -> None:
    context, model_ctx, gen, _ = scene
    r = apply_seam("feather", context, model_ctx, gen, OV)
    assert r.seam_zone.shape == (H, OV, 3) and r.seam_zone.dtype == np.uint8
    np.testing.assert_array_equal(r.seam_zone[:, 0], context[:, C - OV])
    np.testing.assert_array_equal(r.gen, gen)
    # Column j is (true * (OV - j) + model * j) / OV, rounded half up.
    j = 11
    true, model = context[:, C - OV + j].astype(int), model_ctx[:, C - OV + j].astype(int)
    expect = (true * (OV - j) + model * j) / OV
    np.testing.assert_array_equal(r.seam_zone[:, j], np.floor(expect + 0.5).astype(np.uint8))
    # The last zone column is nearly all model: within 1/OV of the drift of the truth.
    last = r.seam_zone[:, -1].astype(int)
    assert np.abs(last - model_ctx[:, -1]).max() <= np.ceil(
        np.abs(context[:, -1].astype(int) - model_ctx[:, -1]).max() / OV
    )


def test_match_undoes_drift(scene) -> None:
    context, model_ctx, gen, truth = scene
    hard = apply_seam("hard", context, model_ctx, gen, OV)
    match = apply_seam("match", context, model_ctx, gen, OV)
    mean_truth = truth.reshape(-1, 3).mean(axis=0)
    hard_err = np.abs(hard.gen.reshape(-1, 3).mean(axis=0) - mean_truth)
    match_err = np.abs(match.gen.reshape(-1, 3).mean(axis=0) - mean_truth)
    assert (match_err < 2).all(), match_err
    assert (hard_err > 5).all(), hard_err
    # gain ~ 1/1.1, offset ~ -12/1.1, in milli units.
    assert all(880 <= g <= 940 for g in match.gain_milli), match.gain_milli
    assert all(-13000 <= o <= -9000 for o in match.offset_milli), match.offset_milli
    np.testing.assert_array_equal(match.seam_zone[:, 0], context[:, C - OV])
    # The corrected band is continuous with the truth across the seam.
    jump = np.abs(match.gen[:, 0].astype(int) - match.seam_zone[:, -1]).mean()
    assert jump < 8


@pytest.mark.parametrize("strategy", SEAMS)
def test_all_old_never_touches_the_parent(scene, strategy: str) -> None:
    context, model_ctx, gen, _ = scene
    r = apply_seam(strategy, context, model_ctx, gen, OV, immutable_policy="all-old")
    assert r.seam_zone.shape == (H, 0, 3)
    assert r.gen.shape == gen.shape and r.gen.dtype == np.uint8
    if strategy == "feather":
        # Beyond the blend the band is as generated; the first column carries the
        # whole per-row difference between the true and the model's edge.
        np.testing.assert_array_equal(r.gen[:, OV:], gen[:, OV:])
        shift = context[:, -1].astype(int) - model_ctx[:, -1]
        np.testing.assert_array_equal(r.gen[:, 0], np.clip(gen[:, 0] + shift, 0, 255))
    if strategy == "hard":
        np.testing.assert_array_equal(r.gen, gen)


def test_zero_overlap(scene) -> None:
    context, model_ctx, gen, _ = scene
    for strategy in SEAMS:
        r = apply_seam(strategy, context, model_ctx, gen, 0)
        assert r.seam_zone.shape == (H, 0, 3)


@given(
    gain=st.floats(0.6, 1.6),
    offset=st.floats(-30, 30),
    seed=st.integers(0, 1000),
)
def test_fit_colour_inverts_a_linear_drift(gain: float, offset: float, seed: int) -> None:
    truth = _photo(32, 32, seed)
    drifted = np.clip(truth * gain + offset, 0, 255).round().astype(np.uint8)
    g, o = fit_colour(drifted, truth)
    restored = correct_colour(drifted, g, o)
    unclipped = (truth * gain + offset > 1) & (truth * gain + offset < 254)
    err = np.abs(restored.astype(int) - truth)[unclipped.all(axis=2)]
    assert err.mean() < 1.5


def test_fit_colour_flat_source_is_identity_gain() -> None:
    flat = np.full((8, 8, 3), 100, dtype=np.uint8)
    target = np.full((8, 8, 3), 110, dtype=np.uint8)
    g, o = fit_colour(flat, target)
    assert g == (1000,) * 3 and o == (10_000,) * 3


def test_gain_is_clipped() -> None:
    src = _photo(16, 16)
    g, _ = fit_colour(src, (src // 8).astype(np.uint8))
    assert g == (500,) * 3


def test_four_channels_alike() -> None:
    full = np.concatenate([_photo(H, C + L), _photo(H, C + L, 1)[:, :, :1]], axis=2)
    context, gen = full[:, :C], full[:, C:]
    r = apply_seam("match", context, context, gen, OV)
    assert r.gain_milli == (1000,) * 4 and r.offset_milli == (0,) * 4
    np.testing.assert_array_equal(r.gen, gen)
    np.testing.assert_array_equal(r.seam_zone, context[:, C - OV :])


def test_bad_inputs(scene) -> None:
    context, model_ctx, gen, _ = scene
    with pytest.raises(ConfigError) as info:
        apply_seam("blur", context, model_ctx, gen, OV)
    assert info.value.field == "seam"
    with pytest.raises(ConfigError) as info:
        apply_seam("hard", context, model_ctx, gen, C + 1)
    assert info.value.field == "overlap_px"
    with pytest.raises(ConfigError) as info:
        apply_seam("hard", context, model_ctx, gen, L + 1, immutable_policy="all-old")
    assert info.value.field == "overlap_px"
    with pytest.raises(ConfigError) as info:
        apply_seam("hard", context, model_ctx, gen, OV, immutable_policy="some")
    assert info.value.field == "immutable_policy"
    with pytest.raises(DimensionMismatch):
        apply_seam("hard", context, model_ctx[:, 1:], gen, OV)
    with pytest.raises(DimensionMismatch):
        apply_seam("hard", context, model_ctx, gen[1:], OV)
