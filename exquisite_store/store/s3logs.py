"""Append-only logs on object storage: one immutable object per numbered entry, plus segments.

A log ``NAME`` is the keys ``logs/NAME/e/<n:012d>``, each written once with
``If-None-Match: *``: the number is claimed by the write itself, so two writers never
share one and no lock is needed (Delta Lake's ``_delta_log`` does the same). Every
``SEGMENT`` entries the writer of the last one copies them into one segment object,
``logs/NAME/s/<first:012d>-<last:012d>``; a reader lists the segments and then only the
entries after them (``StartAfter``), so reading a long log lists few keys. Entries
are never deleted: a writer whose idea of the next number is old must still find its
number taken (if compaction removed entries, a stale writer could re-create one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from exquisite_store.store.s3client import Conflict, S3Bucket

SEGMENT = 64
_WIDTH = 12


def entry_key(name: str, n: int) -> str:
    """The key of entry ``n`` of log ``name``."""
    return f"logs/{name}/e/{n:0{_WIDTH}d}"


def log_name_of(key: str) -> str | None:
    """The log a key below ``logs/`` belongs to (None for anything else)."""
    head, kind, _ = key.rsplit("/", 2) if key.count("/") >= 3 else ("", "", "")
    return head[len("logs/") :] if kind in ("e", "s") and head.startswith("logs/") else None


def _number(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


class S3Logs:
    """The logs of one store prefix; thread-safe (the number cache is only a hint)."""

    def __init__(self, bucket: S3Bucket) -> None:
        self.bucket = bucket
        self._next: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="exq-s3-log")

    # --- writing -------------------------------------------------------------------

    def append(self, name: str, make_line: Callable[[int], bytes]) -> int:
        """Write ``make_line(n)`` as the next free entry ``n``; returns ``n``."""
        n = self._next.get(name) or self.last_number(name) + 1
        tries = 0
        while True:
            try:
                self.bucket.put(entry_key(name, n), make_line(n), create=True)
                break
            except Conflict:
                tries += 1  # taken: a neighbour's, or our hint is old
                n = n + 1 if tries < 3 else self.last_number(name) + 1
        self._next[name] = n + 1
        if n % SEGMENT == 0:
            self.compact(name, n)
        return n

    def put_entry(self, name: str, n: int, line: bytes) -> bool:
        """Write entry ``n`` if it is not there (refs number their reflog); True if new."""
        try:
            self.bucket.put(entry_key(name, n), line, create=True)
        except Conflict:
            return False
        if n % SEGMENT == 0:
            self.compact(name, n)
        return True

    def compact(self, name: str, last: int) -> None:
        """Copy entries ``last - SEGMENT + 1 .. last`` into one segment (if all are there)."""
        first = last - SEGMENT + 1
        keys = [
            i.key
            for i in self.bucket.list(f"logs/{name}/e/", start_after=entry_key(name, first - 1))
            if _number(i.key) <= last
        ]
        if len(keys) != SEGMENT:
            return  # a number not yet written (a ref's writer died): readers list them
        lines = self._get_many(keys)
        if any(line is None for line in lines):
            return
        rows = zip(keys, lines, strict=True)
        body = b"".join(b"%d %s\n" % (_number(k), ln) for k, ln in rows)
        seg = f"logs/{name}/s/{first:0{_WIDTH}d}-{last:0{_WIDTH}d}"
        with contextlib.suppress(Conflict):  # compacted by another writer already
            self.bucket.put(seg, body, create=True)

    # --- reading -------------------------------------------------------------------

    def read(self, name: str, after: int = 0) -> list[tuple[int, bytes]]:
        """``(n, line)`` of every entry numbered above ``after``, in order."""
        out: list[tuple[int, bytes]] = []
        segs, covered = self._segments(name, after)
        bodies = self._get_many([k for k, _, _ in segs])
        for body in bodies:
            for row in (body or b"").split(b"\n"):
                num, _, line = row.partition(b" ")
                if num.isdigit() and int(num) > after:
                    out.append((int(num), line))
        keys = [
            i.key
            for i in self.bucket.list(
                f"logs/{name}/e/", start_after=entry_key(name, max(covered, after))
            )
        ]
        for key, line in zip(keys, self._get_many(keys), strict=True):
            if line is not None:
                out.append((_number(key), line))
        return out

    def last_number(self, name: str) -> int:
        """The highest entry number of a log (0 if empty)."""
        _, covered = self._segments(name, 0)
        last = covered
        for i in self.bucket.list(f"logs/{name}/e/", start_after=entry_key(name, covered)):
            last = max(last, _number(i.key))
        return last

    def _segments(self, name: str, after: int) -> tuple[list[tuple[str, int, int]], int]:
        """Segments holding entries above ``after``, and where unbroken coverage ends.

        Coverage counts from ``after`` (or 0) through segments that follow each other
        without a gap; entries past it are read one by one.
        """
        segs = []
        for i in self.bucket.list(f"logs/{name}/s/"):
            a, _, b = i.key.rsplit("/", 1)[1].partition("-")
            if a.isdigit() and b.isdigit():
                segs.append((i.key, int(a), int(b)))
        segs.sort(key=lambda s: s[1])
        covered, use = 0, []
        for key, a, b in segs:
            if a > covered + 1 and a > after + 1:
                break  # a gap: what follows is read entry by entry
            covered = max(covered, b)
            if b > after:
                use.append((key, a, b))
        return use, covered

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        def one(key: str) -> bytes | None:
            got = self.bucket.get(key)
            return got[0] if got else None

        if len(keys) <= 2:
            return [one(k) for k in keys]
        return list(self._pool.map(one, keys))

    def names(self, prefix: str = "") -> list[str]:
        """Names of logs starting with ``prefix``, sorted (every key below is listed)."""
        base = prefix.rpartition("/")[0]
        start = f"logs/{base}/" if base else "logs/"
        found = set()
        for i in self.bucket.list(start):
            name = log_name_of(i.key)
            if name is not None and name.startswith(prefix):
                found.add(name)
        return sorted(found)
