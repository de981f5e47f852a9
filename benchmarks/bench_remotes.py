"""Push and pull between stores: what one new step costs on a 1,000-step session.

A 1,000-step session is built through the store (as bench_viewer.py does) and pushed
to a second store (the baseline: every object copied), then one step is added and
pushed, then nothing new is pushed. Both to a store on disk (counting the calls made
to its storage) and to one on SeaweedFS (``weed mini`` on loopback, counting HTTP
requests), with the bytes copied and the time.

Run: ``.venv/bin/python benchmarks/bench_remotes.py [--steps 1000]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_viewer import Builder, build_session  # noqa: E402

from exquisite_store.core import remotes as rem  # noqa: E402
from exquisite_store.store import Store  # noqa: E402
from exquisite_store.store.storage import BaseStorage  # noqa: E402
from tests.s3_helpers import start_seaweedfs  # noqa: E402


class Counting(BaseStorage):
    """Counts every public call made to the storage it wraps."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str):
        if name in ("inner", "calls", "__class__", "__dict__"):
            return object.__getattribute__(self, name)
        attr = getattr(object.__getattribute__(self, "inner"), name)
        if callable(attr) and not name.startswith("_"):
            object.__getattribute__(self, "calls")[name] += 1
        return attr


def push_counted(local: Store, remote: Store, session: str) -> tuple[dict, float, int, Counter]:
    """Push ``session`` to ``remote``: what moved, seconds, requests (S3) and calls."""
    dst = Store(Counting(remote.storage))
    bucket = getattr(remote.storage, "bucket", None)
    before = bucket.requests if bucket is not None else 0
    report = rem.SyncReport()
    t0 = time.perf_counter()
    rem._send(local, dst, session, None, report, None)
    seconds = time.perf_counter() - t0
    calls = dst.storage.calls
    requests = (bucket.requests - before) if bucket is not None else sum(calls.values())
    return (
        {"copied": report.transfer.copied, "bytes": report.transfer.bytes},
        seconds,
        requests,
        calls,
    )


def run(local: Store, remote: Store, kind: str, rows: list) -> dict:
    b = Builder(local, "s", seed=len(rows) + 7)
    full = push_counted(local, remote, "s")
    head = local.refs.head("s", "main")
    with local.writing():
        b.grow("main", head, head)
    one = push_counted(local, remote, "s")
    none = push_counted(local, remote, "s")
    for label, (t, sec, req, _calls) in (
        ("first push", full),
        ("1 new step", one),
        ("nothing new", none),
    ):
        rows.append((kind, label, t["copied"], t["bytes"], req, sec))
    return {"one": one, "none": none, "full": full}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        local = Store.init(base / "local")
        built = build_session(local, "s", args.steps, 50, 10, 100)
        print(f"built {built.steps} steps, {built.branches} branches in {built.seconds:.1f} s")
        rows: list = []
        disk = run(local, Store.init(base / "remote"), "disk", rows)
        server = start_seaweedfs(base / "weed")
        try:
            s3 = run(local, Store.init(server.url(), endpoint=server.endpoint), "SeaweedFS", rows)
        finally:
            server.stop()
        print("| remote | push | objects | bytes | requests | seconds |")
        print("| --- | --- | --- | --- | --- | --- |")
        for kind, label, n, size, req, sec in rows:
            print(f"| {kind} | {label} | {n:,} | {size:,} | {req:,} | {sec:.3f} |")
        print("calls of the 1-step push to disk:", dict(disk["one"][3]))
        one, none = s3["one"], s3["none"]
        print(
            f"SUMMARY: push of 1 new step on a {built.steps}-step session to SeaweedFS: "
            f"{one[2]} requests, {one[0]['bytes']:,} bytes, {one[1] * 1000:.0f} ms (first push "
            f"{s3['full'][1]:.1f} s, {s3['full'][2]:,} requests); nothing new: {none[2]} "
            f"requests; to disk: {disk['one'][1] * 1000:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
