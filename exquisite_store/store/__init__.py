"""The store: the only code that writes files (objects, refs, logs, canvases)."""

from exquisite_store.store.canvas import compose, compose_full, edit_canvas, put_canvas
from exquisite_store.store.store import DEFAULT_TILE_SIZE, Store

__all__ = ["DEFAULT_TILE_SIZE", "Store", "compose", "compose_full", "edit_canvas", "put_canvas"]
