from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exquisite_store.store import Store

from .helpers import TickClock, fixture_array

pytest_plugins = ["tests.fakes.openai_fixture", "tests.redis_helpers"]


def pytest_terminal_summary(terminalreporter) -> None:
    """The long suites' measured figures, one line per suite (see tests/figures.py)."""
    from . import figures

    figures.flush(terminalreporter.write_line)


@pytest.fixture
def clock() -> TickClock:
    return TickClock()


@pytest.fixture
def store(tmp_path: Path, clock: TickClock) -> Store:
    return Store.init(tmp_path / "store", clock=clock)


@pytest.fixture
def photo() -> np.ndarray:
    return fixture_array("photo.png")
