"""Real photos for the seam figures: scikit-image's bundled sample images (no download).

``TUNING`` are the photos looked at while the registration, the colour fit and the
defect score were built; ``HELD_OUT`` were not looked at until the figures were made.
Each is cut to its central ``SIZE`` x ``SIZE`` (grey ones repeated to RGB).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SIZE = 320

TUNING = ("astronaut", "coffee", "rocket", "chelsea")
HELD_OUT = ("motorcycle", "camera", "immunohistochemistry", "hubble", "coins", "grass")


def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data  # dev extra: only the seam tests and benchmark need it

    return {
        "astronaut": data.astronaut,
        "coffee": data.coffee,
        "rocket": data.rocket,
        "chelsea": data.chelsea,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "camera": data.camera,
        "immunohistochemistry": data.immunohistochemistry,
        "hubble": data.hubble_deep_field,
        "coins": data.coins,
        "grass": data.grass,
    }


def photo(name: str, size: int = SIZE, width: int | None = None) -> np.ndarray:
    """The central ``size`` x ``width`` (default ``size``) of a sample photo, uint8 RGB."""
    arr = np.asarray(_loaders()[name]())
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    arr = arr[:, :, :3].astype(np.uint8)
    h, w = arr.shape[:2]
    width = size if width is None else width
    y, x = max(0, (h - size) // 2), max(0, (w - width) // 2)
    return np.ascontiguousarray(arr[y : y + size, x : x + width])
