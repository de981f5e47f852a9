import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exquisite_store.errors import ConfigError
from exquisite_store.geometry.orient import DIRECTIONS, from_canonical, to_canonical


def _image(h: int, w: int, ch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, ch), dtype=np.uint8)


@given(
    direction=st.sampled_from(DIRECTIONS),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    ch=st.sampled_from([3, 4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_is_exact(direction: str, h: int, w: int, ch: int, seed: int) -> None:
    arr = _image(h, w, ch, seed)
    canon = to_canonical(arr, direction)
    assert canon.flags["C_CONTIGUOUS"]
    back = from_canonical(canon, direction)
    assert back.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(back, arr)
    # And the other way round: from_canonical is a two-sided inverse.
    np.testing.assert_array_equal(to_canonical(from_canonical(arr, direction), direction), arr)


def test_right_is_identity() -> None:
    arr = _image(5, 7, 3, 1)
    np.testing.assert_array_equal(to_canonical(arr, "right"), arr)
    np.testing.assert_array_equal(from_canonical(arr, "right"), arr)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_extension_side_becomes_last_column(direction: str) -> None:
    h, w = 5, 8
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    # A marker in the middle of the extension side, away from corners.
    row, col = {"right": (2, w - 1), "left": (2, 0), "up": (0, 3), "down": (h - 1, 3)}[direction]
    arr[row, col] = 255
    canon = to_canonical(arr, direction)
    ys, xs = np.nonzero(canon[:, :, 0])
    assert list(xs) == [canon.shape[1] - 1]
    assert canon.shape[0] == (h if direction in ("right", "left") else w)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_no_mirroring(direction: str) -> None:
    # A quarter turn keeps handedness: the determinant of the pixel map is +1, so the
    # triangle (0,0) -> (0,1) -> (1,0) keeps its winding.
    arr = np.zeros((4, 4, 3), dtype=np.uint8)
    arr[0, 0, 0], arr[0, 1, 0], arr[1, 0, 0] = 1, 2, 3
    canon = to_canonical(arr, direction)
    pts = [tuple(np.argwhere(canon[:, :, 0] == v)[0]) for v in (1, 2, 3)]
    (y0, x0), (y1, x1), (y2, x2) = pts
    cross = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    assert cross > 0


def test_unknown_direction() -> None:
    with pytest.raises(ConfigError) as info:
        to_canonical(_image(2, 2, 3, 0), "sideways")
    assert info.value.field == "direction"
