"""Search, du and bundles on big sessions: how long a find, a du and a bundle take.

A 5,000-step session (and a 1,000-step one for bundles) is built through the store by
``bench_viewer.build_session``; 100 steps are starred and 300 tagged. Measured, each
against a baseline run in the same process:

- ``find`` through the viewer (``/s/NAME/find.json``, the session's steps held in
  memory by the viewer's memo) and as ``exq find`` does it (a fresh Store, walking the
  branches through the step-facts index in ``cache/``), against the baseline of
  reading every step's manifest again per query: median of ``--reps`` queries.
- ``du`` of the 1,000-step session (every branch's closure, sizes by ``stat``).
- a bundle of the 1,000-step session written and imported into an empty store,
  against ``exq clone``'s transfer of the same session (``copy_closure`` store to store).

Target (issue 16): a find on a 5,000-step session under 200 ms.

Run: ``.venv/bin/python benchmarks/bench_organise.py [--steps 5000] [--reps 15]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_viewer import build_session  # noqa: E402

from exquisite_store.core import annotations as notes  # noqa: E402
from exquisite_store.core import bundles, remotes, search, usage  # noqa: E402
from exquisite_store.pipeline.cost import reachable_steps  # noqa: E402
from exquisite_store.store import Store  # noqa: E402
from viewer import create_app  # noqa: E402

TARGET_MS = 200.0
QUERIES = [
    {"starred": "1"},
    {"tag": "sky"},
    {"prompt": "shoreline", "seam_above": "2.0"},
    {"cost_above": "0.01", "backend": "patchmatch"},
]


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def annotate(store: Store, name: str) -> None:
    ids = [sid for sid, _ in store.history(store.refs.head(name, "main"))]
    for k, sid in enumerate(ids[:300]):
        notes.annotate(store, name, sid, add_tags=("sky",), star=True if k % 3 == 0 else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--bundle-steps", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = Store.init(root)
        built = build_session(store, "big", args.steps, 25, 4, 200)
        annotate(store, "big")
        print(f"built {built.steps} steps, {built.branches} branches in {built.seconds:.1f} s")

        client = create_app({"EXQ_STORE": str(root), "TESTING": True}).test_client()
        print(f"\nfind on {built.steps} steps (median of {args.reps}, ms)")
        print("| query | matches | viewer find.json | exq find (fresh store, index) | "
              "baseline: read every step | ratio (baseline / slower of ours) |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- |")
        worst = 0.0
        for q in QUERIES:
            url = "/s/big/find.json?" + "&".join(f"{k}={v}" for k, v in q.items())
            count = client.get(url).get_json()["count"]
            viewer_ms = median_ms(lambda u=url: client.get(u), args.reps)
            query = search.parse_query(**{k: v for k, v in q.items() if k != "starred"},
                                       starred="starred" in q)  # fmt: skip

            def cold(query=query) -> None:
                fresh = Store.open(root)  # exq find: a new process, the step-facts index
                search.find(fresh, "big", query)

            def baseline(query=query) -> None:
                fresh = Store.open(root)  # what find did before the index: read every step
                heads = [*fresh.refs.branches("big").values(), *fresh.refs.staged("big").values()]
                search.find(fresh, "big", query, steps=reachable_steps(fresh, heads))

            cold_ms = median_ms(cold, args.reps)
            base_ms = median_ms(baseline, max(3, args.reps // 5))
            worst = max(worst, viewer_ms, cold_ms)
            label = " ".join(f"{k}={v}" for k, v in q.items())
            print(f"| {label} | {count} | {viewer_ms:.1f} | {cold_ms:.1f} | {base_ms:.1f} | "
                  f"{base_ms / max(viewer_ms, cold_ms):.1f}x |")  # fmt: skip

        small = Store.init(Path(tmp) / "small")
        bbuilt = build_session(small, "mid", args.bundle_steps, 25, 4, 200)
        t0 = time.perf_counter()
        (row,) = usage.disk_usage(small, "mid")
        du_s = time.perf_counter() - t0
        print(f"\ndu of {bbuilt.steps} steps, {bbuilt.branches} branches: {du_s * 1000:.0f} ms, "
              f"{row.usage.bytes:,} bytes in {row.usage.objects:,} objects")  # fmt: skip

        path = Path(tmp) / "mid.bundle"
        t0 = time.perf_counter()
        made = bundles.create_bundle(small, "mid", path)
        create_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = bundles.import_bundle(Store.init(Path(tmp) / "dst"), path)
        import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        remotes.clone(str(Path(tmp) / "small"), Path(tmp) / "cloned")
        clone_s = time.perf_counter() - t0
        print(f"\nbundle of {bbuilt.steps} steps ({made.transfer.copied:,} objects, "
              f"{path.stat().st_size:,} bytes on disk)")  # fmt: skip
        print("| what | seconds | vs clone |")
        print("| --- | --- | --- |")
        print(f"| bundle create | {create_s:.2f} | {create_s / clone_s:.2f}x |")
        print(f"| bundle import (every object rehashed) | {import_s:.2f} | "
              f"{import_s / clone_s:.2f}x |")  # fmt: skip
        print(f"| baseline: exq clone (store to store) | {clone_s:.2f} | 1.00x |")
        assert report.transfer.copied == made.transfer.copied
    ok = "ok" if worst < TARGET_MS else "MISSED"
    print(f"\nSUMMARY: find on {built.steps} steps {worst:.1f} ms worst median, viewer or CLI "
          f"(target < "
          f"{TARGET_MS:.0f}: {ok}); bundle {bbuilt.steps} steps create {create_s:.2f} s + import "
          f"{import_s:.2f} s vs clone {clone_s:.2f} s; du {du_s * 1000:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
