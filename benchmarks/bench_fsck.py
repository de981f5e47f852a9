"""fsck and gc --dry-run on a store of about 53,000 objects: the baseline's code and today's.

One store is built through the store's API (sessions of synthetic steps, as
``bench_viewer`` builds them: tiles, canvas manifests and tree nodes, steps, prompts,
attempts; plus unreachable objects, some past the grace period and some not). Then, in
child processes on that SAME store, ``fsck`` and ``gc --dry-run`` run with the tree of
the baseline commit (``--baseline``, extracted with ``git archive``) and with this
checkout, alternately, ``--reps`` times each; the best time of each is compared (wall
clock, and CPU seconds of the process with its threads and workers, less disturbed by a
busy machine). Their
reports must agree (objects, damage, dangling, what gc would remove): faster must not
mean finding less.

Target (issue 12): each at least 2x faster than the baseline.

Run: ``.venv/bin/python benchmarks/bench_fsck.py [--sessions 16] [--steps 1000] [--reps 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_scale import baseline_tree, run  # noqa: E402

BASELINE = "fb36a3f"  # main before fsck and gc read each object once
TARGET = 2.0

#: builds the store with the child's code; prints the number of objects
BUILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
    # durability is not what is measured: the store's bytes are the same without fsync
    os.fsync = lambda fd: None
    from bench_viewer import build_session
    from exquisite_store.store import Store
    root, sessions, steps, junk = Path(sys.argv[2]), *map(int, sys.argv[3:6])
    st = Store.init(root)
    for i in range(sessions):
        # each session its own pixels (build_session seeds its bands with the step count)
        build_session(st, f"s{i:03d}", steps + i, side_every=50, side_len=5, attempt_every=100)
    old = time.time() - 30 * 86400
    with st.writing():  # unreachable: half of it past the 14-day grace period
        for k in range(junk):
            if k % 2:
                oid = st.objects.put_text(f"unreachable prompt {k}")
                ext = "txt"
            else:
                import numpy as np
                arr = np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8)
                oid = st.objects.put_image(arr)
                ext = "png"
            if k % 4 < 2:
                os.utime(root / "objects" / oid[:2] / f"{oid}.{ext}", (old, old))
    print(sum(1 for _ in st.storage.list_objects()))
    """
)

#: one fsck or gc --dry-run in a fresh process; a JSON line: seconds and the report
MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from exquisite_store.store import Store
    from exquisite_store.store.fsck import fsck
    from exquisite_store.store.gc import gc
    what, root = sys.argv[2], Path(sys.argv[3])
    st = Store.open(root)
    def cpu_s():  # this process's threads and its finished children (forked workers)
        return sum(u.ru_utime + u.ru_stime for u in (
            resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))
    cpu0 = cpu_s()
    t = time.perf_counter()
    if what == "fsck":
        r = fsck(st)
        seen = {"objects": r.objects, "damaged": len(r.damaged), "missing": len(r.missing),
                "bad_refs": len(r.bad_refs), "unsafe": len(r.unsafe),
                "dangling": len(r.dangling), "ok": r.ok}
    else:
        r = gc(st, dry_run=True)
        seen = {"reachable": r.reachable, "young": r.young, "removed": len(r.removed),
                "bytes_removed": r.bytes_removed}
    seconds = time.perf_counter() - t
    cpu = cpu_s() - cpu0
    print(json.dumps({"seconds": seconds, "cpu": cpu, "report": seen}))
    """
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    ap.add_argument("--sessions", type=int, default=16, help="sessions in the store")
    ap.add_argument("--steps", type=int, default=1000, help="steps per session")
    ap.add_argument("--junk", type=int, default=2000, help="unreachable objects")
    ap.add_argument("--reps", type=int, default=3, help="runs of each (the best counts)")
    ap.add_argument("--store", type=Path, help="reuse (or keep) the store built here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        trees = {"before": baseline_tree(args.baseline, tmp), "now": ROOT}
        store = args.store or tmp / "store"
        if not (store / "store.toml").exists():
            t0 = time.perf_counter()
            n = run(BUILD, ROOT, str(store), str(args.sessions), str(args.steps), str(args.junk))
            built = f"built in {time.perf_counter() - t0:.0f} s"
        else:
            n = str(sum(len(os.listdir(d)) for d in (store / "objects").iterdir()))
            built = "reused"
        objects = int(n)
        print(f"store: {objects:,} objects, {args.sessions} sessions ({built})", flush=True)
        best: dict[tuple[str, str], float] = {}
        cpu: dict[tuple[str, str], float] = {}
        reports: dict[tuple[str, str], dict] = {}
        for rep in range(args.reps):
            for what in ("fsck", "gc"):
                for label, tree in trees.items():
                    r = json.loads(run(MEASURE, tree, what, str(store)))
                    key = (what, label)
                    best[key] = min(best.get(key, float("inf")), r["seconds"])
                    cpu[key] = min(cpu.get(key, float("inf")), r["cpu"])
                    reports[key] = r["report"]
                    print(
                        f"run {rep + 1}: {what:<4} {label:>6} {r['seconds']:6.2f} s "
                        f"({r['cpu']:.2f} s CPU)",
                        flush=True,
                    )
    print(
        f"\n| {objects:,} objects | before s | now s | before / now | CPU s before | CPU s now "
        "| CPU before / now |\n|---|---|---|---|---|---|---|"
    )
    ratios = {}
    names = {"fsck": "fsck", "gc": "gc --dry-run"}
    for what in ("fsck", "gc"):
        b, n_ = best[(what, "before")], best[(what, "now")]
        cb, cn = cpu[(what, "before")], cpu[(what, "now")]
        ratios[what] = b / max(n_, 1e-9)
        print(
            f"| {names[what]} | {b:.2f} | {n_:.2f} | {ratios[what]:.1f}x | {cb:.2f} | {cn:.2f} "
            f"| {cb / max(cn, 1e-9):.1f}x |"
        )
    same = all(reports[(w, "before")] == reports[(w, "now")] for w in ("fsck", "gc"))
    for what in ("fsck", "gc"):
        print(f"{names[what]} report: {json.dumps(reports[(what, 'now')])}")
        if reports[(what, "before")] != reports[(what, "now")]:
            print(f"  DIFFERS from the baseline's: {json.dumps(reports[(what, 'before')])}")
    ok = same and all(r >= TARGET for r in ratios.values())
    print(
        f"SUMMARY fsck: {objects:,} objects: fsck {best[('fsck', 'now')]:.2f} s "
        f"(baseline {best[('fsck', 'before')]:.2f} s, {ratios['fsck']:.1f}x), gc --dry-run "
        f"{best[('gc', 'now')]:.2f} s (baseline {best[('gc', 'before')]:.2f} s, "
        f"{ratios['gc']:.1f}x); reports {'identical' if same else 'DIFFER'} "
        f"(target >= {TARGET:.0f}x each: {'ok' if ok else 'MISSED'})"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
