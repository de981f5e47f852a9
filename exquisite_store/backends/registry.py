"""Backends by name."""

from __future__ import annotations

from exquisite_store.backends.base import Backend
from exquisite_store.errors import ConfigError
from exquisite_store.store import Store


def make_backend(name: str, store: Store, session: str) -> Backend:
    """A backend instance for ``name`` working on ``session`` of ``store``."""
    if name == "patchmatch":
        from exquisite_store.backends.patchmatch import PatchMatchBackend

        return PatchMatchBackend()
    if name == "patchmatch-fast":
        from exquisite_store.backends.patchmatch import FastPatchMatchBackend

        return FastPatchMatchBackend()
    if name == "replay":
        from exquisite_store.backends.replay import ReplayBackend

        return ReplayBackend(store.objects, lambda rid: store.find_response(session, rid))
    if name == "openai":
        from exquisite_store.backends.openai_backend import OpenAIBackend

        return OpenAIBackend()
    raise ConfigError(f"unknown backend {name!r}", field="backend")
