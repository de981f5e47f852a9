"""A store seen through an overlay: new objects stay in memory, reads fall through.

``exq reproduce`` re-runs a step to compare canvases and must write nothing, so it
works on ``overlay(store)``: every object the re-run makes lives in memory, every
read of an object, ref or log falls through to the real store, and nothing takes the
store's writer lock. It works on a read-only store.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from exquisite_store.errors import StoreError
from exquisite_store.store.storage import BaseStorage, MemoryStorage
from exquisite_store.store.store import Store


class OverlayStorage(BaseStorage):
    """Objects written to memory over a base storage; refs and logs only read."""

    def __init__(self, base: BaseStorage) -> None:
        self.base = base
        self.new = MemoryStorage()
        self._mutex = threading.RLock()

    def put_object(self, oid: str, ext: str, data: bytes) -> bool:
        if self.base.has_object(oid):
            return False  # stored already: not even its mtime is touched
        return self.new.put_object(oid, ext, data)

    def touch_object(self, oid: str) -> bool:
        return self.has_object(oid)  # nothing of the store is touched, not even an mtime

    def get_object(self, oid: str) -> tuple[str, bytes]:
        if self.new.has_object(oid):
            return self.new.get_object(oid)
        return self.base.get_object(oid)

    def has_object(self, oid: str) -> bool:
        return self.new.has_object(oid) or self.base.has_object(oid)

    def list_objects(self, fan: str = "") -> Iterator[tuple[str, str]]:
        seen = dict(self.base.list_objects(fan))
        seen.update(self.new.list_objects(fan))
        yield from sorted(seen.items())

    def object_age_s(self, oid: str) -> float:
        if self.new.has_object(oid):
            return self.new.object_age_s(oid)
        return self.base.object_age_s(oid)

    def read_ref(self, name: str) -> str | None:
        return self.base.read_ref(name)

    def list_refs(self, prefix: str = "") -> list[str]:
        return self.base.list_refs(prefix)

    def read_log(self, name: str, after: int = 0) -> list[bytes]:
        return self.base.read_log(name, after)

    def last_log_line(self, name: str) -> bytes | None:
        return self.base.last_log_line(name)

    def list_logs(self, prefix: str = "") -> list[str]:
        return self.base.list_logs(prefix)

    def writer_lock(self, exclusive: bool = False) -> contextlib.AbstractContextManager[None]:
        return self._mutex  # nothing reaches the store: no lock of the store is needed

    def log_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self._mutex

    def _refuse(self, what: str) -> StoreError:
        return StoreError(f"an overlay store writes nothing: cannot {what}")

    def delete_object(self, oid: str) -> None:
        raise self._refuse(f"delete object {oid}")

    def cas_ref(self, name: str, old: str | None, new: str, log: bytes | None = None) -> None:
        raise self._refuse(f"move ref {name}")

    def delete_ref(self, name: str, old: str, log: bytes | None = None) -> None:
        raise self._refuse(f"delete ref {name}")

    def append_log(self, name: str, line: bytes, *, durable: bool = True) -> int:
        raise self._refuse(f"append to log {name}")


def overlay(store: Store) -> Store:
    """A store over ``store`` whose new objects stay in memory and which writes nothing."""
    return Store(OverlayStorage(store.storage), tile_size=store.tile_size, clock=store.clock_ms)
