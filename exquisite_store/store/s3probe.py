"""The start-up probe: refuse a server that only looks S3-compatible.

Run on the store's own bucket and prefix (``probe/<uuid>/``), since a gateway, a
bucket policy or a proxy may treat the headers differently from another bucket:

1. ``create-twice``: a second PUT with ``If-None-Match: *`` must get 412;
2. ``if-match-stale`` and ``if-match-current``: a PUT with ``If-Match`` on an old
   ETag must fail and one on the ETag exactly as the server gave it must succeed;
3. ``create-race``: 8 threads creating one key: exactly one wins;
4. ``conditional-delete``: a DELETE with a stale ``If-Match`` must leave the key.
   A server that ignores it is not refused: removed refs then stay as tombstones.

The result is written to the store (``probe.json``); a failing check raises
``ProbeFailed`` naming it.
"""

from __future__ import annotations

import threading
import time
import uuid

import msgspec

from exquisite_store.errors import StoreError
from exquisite_store.store.s3client import Conflict, S3Bucket

RACERS = 8


class ProbeFailed(StoreError):
    """The server ignored a conditional write the store relies on."""


class ProbeResult(msgspec.Struct, frozen=True):
    """What the probe found, as recorded in ``probe.json``."""

    endpoint: str
    time_ms: int
    checks: dict[str, str]
    race_winners: int
    conditional_delete: bool


def probe(bucket: S3Bucket) -> ProbeResult:
    """Run every check; ProbeFailed on the first that fails (cleaning up after itself)."""
    base = f"probe/{uuid.uuid4().hex}/"
    checks: dict[str, str] = {}
    try:
        return _run(bucket, base, checks)
    finally:
        for item in list(bucket.list(base)):
            bucket.delete(item.key)


def _refuse(bucket: S3Bucket, check: str, what: str) -> ProbeFailed:
    return ProbeFailed(
        f"{bucket.endpoint or 'the S3 server'} fails the store's probe ({check}): {what}; "
        "use a server that honours If-None-Match and If-Match (SeaweedFS, MinIO, AWS S3)",
        check=check,
    )


def _run(bucket: S3Bucket, base: str, checks: dict[str, str]) -> ProbeResult:
    key = base + "create"
    first = bucket.put(key, b"1", create=True)
    try:
        bucket.put(key, b"2", create=True)
        raise _refuse(bucket, "create-twice", "a second If-None-Match: * PUT was accepted")
    except Conflict:
        checks["create-twice"] = "ok"
    second = bucket.put(key, b"3", if_match=first)  # the ETag exactly as the server gave it
    checks["if-match-current"] = "ok"
    try:
        bucket.put(key, b"4", if_match=first)
        raise _refuse(bucket, "if-match-stale", "a PUT with a stale If-Match was accepted")
    except Conflict:
        checks["if-match-stale"] = "ok"
    got = bucket.get(key)
    if got is None or got[0] != b"3":
        raise _refuse(bucket, "if-match-stale", "the stale PUT changed the object")
    winners = _race(bucket, base + "race")
    if winners != 1:
        raise _refuse(bucket, "create-race", f"{winners} of {RACERS} racing creates won")
    checks["create-race"] = "ok"
    cond_delete = True
    try:
        bucket.delete(key, if_match=first)
        cond_delete = bucket.get(key) is not None  # ignored the header: the key is gone
    except Conflict:
        pass
    checks["conditional-delete"] = "ok" if cond_delete else "ignored (tombstones)"
    if cond_delete:
        bucket.delete(key, if_match=second)
    return ProbeResult(
        endpoint=bucket.endpoint or "",
        time_ms=time.time_ns() // 1_000_000,
        checks=checks,
        race_winners=winners,
        conditional_delete=cond_delete,
    )


def _race(bucket: S3Bucket, key: str) -> int:
    """How many of RACERS threads creating ``key`` at once succeed."""
    barrier = threading.Barrier(RACERS)
    wins = []

    def racer(i: int) -> None:
        barrier.wait()
        try:
            bucket.put(key, str(i).encode(), create=True)
            wins.append(i)
        except Conflict:
            pass

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(wins)
