from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from exquisite_store import imageio
from exquisite_store.store import Store

pytest_plugins = ["tests.fakes.openai_fixture"]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_NAMES = ("photo.png", "flat.png", "odd.png", "alpha.png")


def fixture_array(name: str) -> np.ndarray:
    return imageio.read_image_file(str(FIXTURES / name))


class TickClock:
    """A deterministic clock: every call is one millisecond later."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self._it = itertools.count(start)

    def __call__(self) -> int:
        return next(self._it)


@pytest.fixture
def clock() -> TickClock:
    return TickClock()


@pytest.fixture
def store(tmp_path: Path, clock: TickClock) -> Store:
    return Store.init(tmp_path / "store", clock=clock)


@pytest.fixture
def photo() -> np.ndarray:
    return fixture_array("photo.png")


def rng_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
