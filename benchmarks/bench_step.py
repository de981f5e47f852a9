"""Per-step pipeline overhead against canvas width, and the patchmatch fill it sits beside.

The backend is ``PatternBackend`` (it answers at once), so a step's wall time is the
pipeline's own work; the backend's own time is measured and subtracted. The targets:
the overhead is flat in the canvas size (32k / 1k <= 1.5, since a step's cost should
follow ``L x N``, DESIGN.md §3) and small beside a real fill (< 5% of patchmatch).

Run: ``.venv/bin/python benchmarks/bench_step.py [--reps 5] [--widths 1024 8192 32768]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exquisite_store.backends.patchmatch import fill  # noqa: E402
from exquisite_store.geometry.rect import Rect  # noqa: E402
from exquisite_store.pipeline.step import run_step  # noqa: E402
from exquisite_store.store import Store, compose  # noqa: E402
from exquisite_store.store.canvas import iter_tiles  # noqa: E402
from tests.fakes.backends import PatternBackend  # noqa: E402

N = 1024  # canvas height
L = 512  # extension
PHASES = ("plan", "prompt", "request", "generate", "decode", "unframe", "seam", "validate")
OVERHEAD_RATIO_MAX = 1.5
PATCHMATCH_SHARE_MAX = 0.05


def smooth(height: int, width: int, chunk: int = 4096) -> np.ndarray:
    """Synthetic smooth pixels (no file needed), built in column chunks to bound memory."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    y = np.arange(height, dtype=np.float32)[:, None]
    for x0 in range(0, width, chunk):
        x = np.arange(x0, min(width, x0 + chunk), dtype=np.float32)[None, :]
        out[:, x0 : x0 + x.shape[1], 0] = 128 + 100 * np.sin(x / 97) * np.cos(y / 61)
        out[:, x0 : x0 + x.shape[1], 1] = 128 + 90 * np.cos(x / 173 + y / 89)
        out[:, x0 : x0 + x.shape[1], 2] = 128 + 80 * np.sin((x + y) / 131)
    return out


class TimedPattern(PatternBackend):
    """PatternBackend that remembers how long its own ``generate`` took."""

    def generate(self, request, cancel=None):
        t = time.perf_counter()
        try:
            return super().generate(request, cancel)
        finally:
            self.seconds = time.perf_counter() - t


def bench_width(root: Path, width: int, reps: int) -> dict:
    """Build a canvas of ``N x width`` once, then time ``reps`` steps grown from it."""
    store = Store.init(root / f"w{width}")
    t = time.perf_counter()
    _, start = store.create_session("bench", smooth(N, width))
    created = time.perf_counter() - t
    totals, backend_s, phases = [], [], {p: [] for p in (*PHASES, "other")}
    for i in range(reps + 1):  # the first step warms caches and imports; not counted
        backend = TimedPattern()
        t = time.perf_counter()
        out = run_step(
            store,
            "bench",
            parent=start,
            branch=f"r{i}",
            backend_impl=backend,
            extension_px=L,
            seed=i,
        )
        total = time.perf_counter() - t
        if i == 0:
            continue
        totals.append(total)
        backend_s.append(backend.seconds)
        got = store.step(out.step_ids[0]).timing.phases_ms
        for p in PHASES:
            phases[p].append(got.get(p, 0) / 1000)
        phases["other"].append(total - sum(got.values()) / 1000)
    med = statistics.median
    total, backend = med(totals), med(backend_s)
    # one compose of the context band (tiles cached): the pipeline does this several times
    canvas = store.canvas(store.step(start))
    t = time.perf_counter()
    for _ in range(20):
        compose(store.objects, canvas, Rect(width - L, 0, L, N))
    compose_s = (time.perf_counter() - t) / 20
    return {
        "width": width,
        "tiles": sum(1 for _ in iter_tiles(store.objects, store.canvas(store.step(start)))),
        "created": created,
        "total": total,
        "backend": backend,
        "overhead": med([a - b for a, b in zip(totals, backend_s, strict=True)]),
        "phases": {p: med(v) for p, v in phases.items()},
        "compose": compose_s,
    }


def bench_patchmatch(band_w: int, height: int) -> float:
    """Seconds for one fill of a ``band_w x height`` band next to as much context."""
    ctx = smooth(height, band_w)
    frame = np.concatenate([ctx, np.repeat(ctx[:, -1:], band_w, axis=1)], axis=1)
    hole = np.zeros(frame.shape[:2], dtype=np.uint8)
    hole[:, band_w:] = 255
    t = time.perf_counter()
    fill(frame, hole, seed=0)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--widths", type=int, nargs="+", default=[1024, 8192, 32768])
    ap.add_argument("--no-patchmatch", action="store_true", help="skip the fills")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one width, JSON out
    args = ap.parse_args()

    if args.one:
        with tempfile.TemporaryDirectory(prefix="exq-bench-") as tmp:
            print(json.dumps(bench_width(Path(tmp), args.one, args.reps)))
        return
    # Each width runs in a fresh process: building a 32k canvas in the same process
    # leaves the allocator and the image cache in another state, which skews the steps.
    rows = [
        json.loads(
            subprocess.run(
                [sys.executable, __file__, "--one", str(w), "--reps", str(args.reps)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.splitlines()[-1]
        )
        for w in args.widths
    ]

    print(f"step: L={L}, N={N}, disk store, PatternBackend, median of {args.reps}\n")
    cols = ["plan", "request", "generate", "decode", "seam", "validate", "other"]
    print(
        "| canvas | tiles | import s | step ms | backend ms | overhead ms | "
        + " | ".join(f"{c} ms" for c in cols)
        + " | compose ctx ms |"
    )
    print("|---" * (7 + len(cols)) + "|")
    for r in rows:
        ph = r["phases"]
        cells = " | ".join(f"{1000 * ph[c]:.0f}" for c in cols)
        print(
            f"| {r['width']}x{N} | {r['tiles']} | {r['created']:.1f} | {1000 * r['total']:.0f} | "
            f"{1000 * r['backend']:.0f} | {1000 * r['overhead']:.0f} | {cells} | "
            f"{1000 * r['compose']:.1f} |"
        )
    print("\n(generate includes the fake backend; other = session/target lookup + commit + events)")

    first, last = rows[0], rows[-1]
    flat = last["overhead"] / first["overhead"]
    verdict = "ok" if flat <= OVERHEAD_RATIO_MAX else "OVER TARGET"
    print(
        f"\noverhead {last['width']} / {first['width']}: {flat:.2f} "
        f"(target <= {OVERHEAD_RATIO_MAX}: {verdict})"
    )
    print(
        f"SUMMARY step overhead: {1000 * first['overhead']:.0f} ms at {first['width']} wide, "
        f"{1000 * last['overhead']:.0f} ms at {last['width']}; ratio {flat:.2f} "
        f"(target <= {OVERHEAD_RATIO_MAX}: {verdict})"
    )
    if args.no_patchmatch:
        return
    big, small = bench_patchmatch(512, 1024), bench_patchmatch(256, 512)
    print("\n| patchmatch fill | frame | seconds |\n|---|---|---|")
    print(f"| band 512x1024 + context 512 | 1024x1024 | {big:.2f} |")
    print(f"| band 256x512 + context 256 | 512x512 | {small:.2f} |")
    worst = max(r["overhead"] for r in rows)
    share = worst / big
    verdict = "ok" if share < PATCHMATCH_SHARE_MAX else "OVER TARGET"
    print(
        f"\nworst overhead / patchmatch fill (same geometry): {100 * share:.1f}% "
        f"(target < {100 * PATCHMATCH_SHARE_MAX:.0f}%: {verdict})"
    )
    print(
        f"SUMMARY patchmatch fill: {big:.1f} s (512x1024 band), {small:.1f} s (256x512); "
        f"overhead is {100 * share:.1f}% of it (target < {100 * PATCHMATCH_SHARE_MAX:.0f}%: "
        f"{verdict})"
    )


if __name__ == "__main__":
    main()
