"""The film of a branch on its gallery: made on first request into ``cache/film/``, then served.

A film is named by the step it ends at (its chain to the root never changes) and by
how it is made, so a cached film is never stale and is served immutable, like
``/-/canvas/``. Two requests for a film not made yet make it once.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

from exquisite_store.core import film as films
from exquisite_store.store import Store
from viewer import derived_images

#: the gallery's film: WebM (VP9) plays in every current browser's <video>
GALLERY_FILM = films.FilmOptions(fmt="webm", size=(800, 450), fps=12, mode="pan")
#: bump when the rendering changes, so cached films are made again
FILM_VERSION = 1

_making: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def film_path(store: Store, step_id: str, options: films.FilmOptions = GALLERY_FILM) -> Path:
    """The cached film of the chain ending at ``step_id`` (made the first time)."""
    name = f"film/{step_id[:2]}/{step_id}-v{FILM_VERSION}-{options.name}"
    with _guard:
        lock = _making.setdefault(name, threading.Lock())
    with lock:  # a second request waits for the first's film instead of making its own

        def make() -> bytes:
            buf = io.BytesIO()
            films.write_film(store, step_id, options, buf)
            return buf.getvalue()

        return derived_images.cached_file(store, name, make)
