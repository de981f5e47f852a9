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


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """One SeaweedFS (``weed mini``) for the session, on free loopback ports."""
    from .s3_helpers import start_seaweedfs

    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(seaweedfs):
    """A second S3 gateway (``weed s3``) on the session's SeaweedFS: the same store."""
    from .s3_helpers import start_gateway

    server = start_gateway(seaweedfs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server in a thread, for the session."""
    from .s3_helpers import start_moto

    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def clock() -> TickClock:
    return TickClock()


@pytest.fixture
def store(tmp_path: Path, clock: TickClock) -> Store:
    return Store.init(tmp_path / "store", clock=clock)


@pytest.fixture
def photo() -> np.ndarray:
    return fixture_array("photo.png")
