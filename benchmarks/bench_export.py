"""Export time of a 200-step session: from scratch, unchanged, and after one more step.

The session is built through the store (bench_viewer.build_session: a main chain with
side branches and a few failed attempts). Baseline in the same run: the from-scratch
export; ratios say how much cheaper the incremental re-exports are.

Run: ``.venv/bin/python benchmarks/bench_export.py [--steps 200]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_viewer import Builder, build_session  # noqa: E402

from exquisite_store.store import Store  # noqa: E402
from viewer.export import export_session  # noqa: E402


def timed_export(root: Path, out: Path) -> tuple[float, object]:
    t0 = time.perf_counter()
    rep = export_session(root, "bench", out)
    return time.perf_counter() - t0, rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = Store.init(root)
        built = build_session(
            store, "bench", args.steps, side_every=20, side_len=5, attempt_every=40
        )
        print(
            f"session: {built.steps} steps, {built.branches} branches, "
            f"{built.attempts} attempts (built in {built.seconds:.1f} s)"
        )
        out = Path(tmp) / "site"
        rows = []
        t, rep = timed_export(root, out)
        rows.append(("from scratch", t, rep))
        t, rep = timed_export(root, out)
        rows.append(("re-export, unchanged", t, rep))
        b = Builder(store, "bench", seed=1)
        b.count = 10_000
        b.grow("main", built.head, built.head)
        t, rep = timed_export(root, out)
        rows.append(("re-export after 1 step", t, rep))
        base = rows[0][1]
        print(
            f"{'export':<24} {'seconds':>8} {'pages':>6} {'files':>6} {'written':>8} "
            f"{'unchanged':>9} {'vs scratch':>10}"
        )
        for label, secs, r in rows:
            print(
                f"{label:<24} {secs:8.2f} {r.pages:6d} {r.files:6d} {r.written:8d} "
                f"{r.unchanged:9d} {secs / base:9.2f}x"
            )
        print(
            f"SUMMARY export {built.steps} steps: scratch {rows[0][1]:.2f} s "
            f"({rows[0][2].written} files), unchanged {rows[1][1]:.2f} s (0 written: "
            f"{rows[1][2].written == 0}), +1 step {rows[2][1]:.2f} s "
            f"({rows[2][2].written} written)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
