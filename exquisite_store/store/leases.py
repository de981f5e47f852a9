"""Leases on object storage: restic's lock protocol where there is no ``flock``.

A lease is an object ``locks/...`` holding who took it (host, boot id, pid, start
time: ``process.ProcessStamp``) and what for. Its holder refreshes it (a self-copy,
which moves its LastModified) every ``timeout / 4``; a lease not refreshed for
``timeout`` seconds is stale. Ages come from the server's clock (LastModified against
the ``Date`` of the same answer), never this machine's, and a lease is never judged
by a pid: its holder may be another machine.

- The store lease (``writer_lock``): writers each hold a shared one
  (``locks/store/writer-<uuid>``, one per process, counted), gc an exclusive one
  (``locks/store/gc-<uuid>``); the kind is in the key, so one listing tells them apart. Each party
  writes its lease first and lists the others second, so of two that race, at least one
  sees the other: a writer that finds a live exclusive lease withdraws and waits; gc
  that finds any other live lease withdraws and fails (``StoreBusy``).
- A named lease (``branch_lock``, ``log_lock``): one key created with
  ``If-None-Match: *``; a stale one is removed with ``If-Match`` on its ETag (so a lease
  refreshed meanwhile is not removed) and the create tried again.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import msgspec

from exquisite_store.errors import StoreError
from exquisite_store.store.process import this_process
from exquisite_store.store.s3client import Conflict, S3Bucket

LEASE_TIMEOUT_S = 60.0
WAIT_STEP_S = 0.05


class StoreBusy(StoreError):
    """gc found a live lease of a writer (or of another gc)."""


def lease_body(kind: str) -> bytes:
    """What a lease records: kind and the holder's process stamp (host first)."""
    return msgspec.json.encode({"kind": kind, **this_process().to_dict()})


class _Refresher:
    """Keeps the leases of this process fresh from one daemon thread."""

    def __init__(self, bucket: S3Bucket, period_s: float) -> None:
        self.bucket = bucket
        self.period_s = period_s
        self.keys: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, key: str) -> None:
        with self._lock:
            self.keys.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="exq-lease")
                self._thread.start()

    def remove(self, key: str) -> None:
        with self._lock:
            self.keys.discard(key)

    def _run(self) -> None:
        while True:
            time.sleep(self.period_s)
            with self._lock:
                keys = list(self.keys)
            for key in keys:
                with contextlib.suppress(StoreError):
                    self.bucket.touch(key)


class Leases:
    """The store lease and named leases of one store prefix."""

    def __init__(self, bucket: S3Bucket, timeout_s: float = LEASE_TIMEOUT_S) -> None:
        self.bucket = bucket
        self.timeout_s = timeout_s
        self._refresh = _Refresher(bucket, timeout_s / 4)
        self._mutex = threading.Lock()
        self._shared_key: str | None = None
        self._shared_count = 0
        self._exclusive = threading.local()
        self._named = threading.local()

    # --- the store lease -----------------------------------------------------------

    def live(self, prefix: str) -> list[str]:
        """Keys of the leases under ``prefix`` not yet stale, by the server's clock."""
        items, now = self.bucket.list_with_time(prefix)
        return [
            i.key
            for i in items
            if now is None or (now - i.modified).total_seconds() <= self.timeout_s
        ]

    def holder(self, key: str) -> str:
        """Who holds a lease, for an error message."""
        got = self.bucket.get(key)
        try:
            b = msgspec.json.decode(got[0]) if got else {}
        except msgspec.DecodeError:
            b = {}
        return f"host {b.get('host', '?')} pid {b.get('pid', '?')}"

    @contextlib.contextmanager
    def store_lease(self, exclusive: bool, wait_s: float = 600.0) -> Iterator[None]:
        """Shared (writers) or exclusive (gc) hold of the store."""
        if getattr(self._exclusive, "held", False):
            yield  # gc's own thread (fsck inside gc) holds it already
            return
        if exclusive:
            with self._exclusive_lease():
                yield
            return
        self._take_shared(wait_s)
        try:
            yield
        finally:
            self._release_shared()

    def _take_shared(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            with self._mutex:
                if self._shared_key is not None:
                    self._shared_count += 1
                    return
                key = f"locks/store/writer-{uuid.uuid4().hex}"
                self.bucket.put(key, lease_body("writer"), create=True)
                gc = self.live("locks/store/gc-")
                if not gc:
                    self._shared_key, self._shared_count = key, 1
                    self._refresh.add(key)
                    return
                self.bucket.delete(key)  # gc runs: withdraw and wait for it
            if time.monotonic() > deadline:
                raise StoreBusy(f"gc holds the store ({gc[0]}); try again when it is done")
            time.sleep(WAIT_STEP_S * 4)

    def _release_shared(self) -> None:
        with self._mutex:
            self._shared_count -= 1
            if self._shared_count == 0 and self._shared_key is not None:
                key, self._shared_key = self._shared_key, None
                self._refresh.remove(key)
                self.bucket.delete(key)

    @contextlib.contextmanager
    def _exclusive_lease(self) -> Iterator[None]:
        key = f"locks/store/gc-{uuid.uuid4().hex}"
        self.bucket.put(key, lease_body("gc"), create=True)
        try:
            others = [k for k in self.live("locks/store/") if k != key]
            if others:
                k = others[0]
                raise StoreBusy(
                    f"the store is in use ({k}, {self.holder(k)}); gc needs it to itself",
                    lease=k,
                )
            self._refresh.add(key)
            self._exclusive.held = True
            try:
                yield
            finally:
                self._exclusive.held = False
                self._refresh.remove(key)
        finally:
            self.bucket.delete(key)

    # --- named leases --------------------------------------------------------------

    @contextlib.contextmanager
    def named(self, key: str, wait: bool = True, wait_s: float = 600.0) -> Iterator[bool]:
        """Hold ``key`` alone; yields False at once if busy and not ``wait``.

        Re-entrant in one thread (a session's creation lock around an event append).
        """
        held: set[str] = self._named.__dict__.setdefault("keys", set())
        if key in held:
            yield True
            return
        deadline = time.monotonic() + wait_s
        while True:
            try:
                etag = self.bucket.put(key, lease_body("lock"), create=True)
                break
            except Conflict:
                pass
            head = self.bucket.head(key)
            if head is not None and head[1] > self.timeout_s:
                with contextlib.suppress(Conflict):  # refreshed meanwhile: not stale
                    self.bucket.delete(key, if_match=head[0])
                continue
            if not wait:
                yield False
                return
            if time.monotonic() > deadline:
                raise StoreBusy(f"{key} is held by another process")
            time.sleep(WAIT_STEP_S)
        held.add(key)
        self._refresh.add(key)
        try:
            yield True
        finally:
            held.discard(key)
            self._refresh.remove(key)
            with contextlib.suppress(Conflict):
                self.bucket.delete(key, if_match=etag)
