"""Shared test helpers: fixture images, deterministic clocks, random images."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from exquisite_store import imageio

FIXTURES = Path(__file__).resolve().parent.parent / "exquisite_store" / "fixtures"
FIXTURE_NAMES = ("photo.png", "flat.png", "odd.png", "alpha.png")


def fixture_array(name: str) -> np.ndarray:
    return imageio.read_image_file(str(FIXTURES / name))


class TickClock:
    """A deterministic clock: every call is one millisecond later."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self._it = itertools.count(start)

    def __call__(self) -> int:
        return next(self._it)


class FixedClock:
    """A clock that never moves: ids do not depend on how often it is read."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def rng_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
