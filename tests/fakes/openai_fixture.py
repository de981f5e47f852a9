"""Pytest fixture for the fake OpenAI Images API (see ``openai_server``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .openai_server import FakeOpenAI


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started ``FakeOpenAI`` (any Bearer key accepted), stopped after the test."""
    with FakeOpenAI() as server:
        yield server
    assert not server.errors, f"the fake OpenAI server itself failed: {server.errors!r}"
