"""Turn a plane-oriented array so that any extension side becomes the right side.

Every step is planned and composited as "extend right" (DESIGN.md §4.1): one code path
for four directions. Only quarter turns are used, never a mirror, so a model always
sees the canvas the right way round (text stays readable, handedness is kept), and no
pixel is resampled.
"""

from __future__ import annotations

import numpy as np

from exquisite_store.errors import ConfigError
from exquisite_store.params import DIRECTIONS

# Counter-clockwise quarter turns (np.rot90's ``k``) that bring each side to the right:
# "up" turns clockwise (top -> right), "down" counter-clockwise (bottom -> right).
_TURNS = {"right": 0, "left": 2, "up": -1, "down": 1}


def check_direction(direction: str) -> str:
    """Return ``direction`` if it is one of ``DIRECTIONS``, else raise ConfigError."""
    if direction not in _TURNS:
        raise ConfigError(
            f"unknown direction {direction!r}; expected one of {', '.join(DIRECTIONS)}",
            field="direction",
        )
    return direction


def to_canonical(arr: np.ndarray, direction: str) -> np.ndarray:
    """Rotate a plane-oriented ``H x W [x C]`` array so the ``direction`` side is on the right."""
    turns = _TURNS[check_direction(direction)]
    return np.ascontiguousarray(np.rot90(arr, turns, axes=(0, 1)))


def from_canonical(arr: np.ndarray, direction: str) -> np.ndarray:
    """Undo ``to_canonical``: rotate a canonical array back to plane orientation."""
    turns = _TURNS[check_direction(direction)]
    return np.ascontiguousarray(np.rot90(arr, -turns, axes=(0, 1)))


def vector_from_canonical(dy: int, dx: int, direction: str) -> tuple[int, int]:
    """A canonical displacement ``(dy, dx)`` as the plane's ``(dy, dx)``."""
    for _ in range(_TURNS[check_direction(direction)] % 4):
        dy, dx = dx, -dy  # undo one counter-clockwise quarter turn
    return dy, dx
