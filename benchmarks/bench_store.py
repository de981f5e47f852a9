"""Cost of a step as the canvas grows: tiled store vs one full PNG per step.

    python benchmarks/bench_store.py [--steps 100] [--tile-sizes 128,256,512]
        [--band 512x1024] [--baseline-every-step]

A canvas starts as one band (512 wide x 1024 tall by default) and grows to the right by
one band per step. Each band is smooth noise (low-frequency noise plus fine grain, so PNG
can neither drop it nor shrink it to nothing), made before the clock starts.

ours: a temp Store per tile size; a timed step is the whole commit: ``edit_canvas``,
the canvas and step manifests, the CAS of the branch. Bytes = growth of ``objects/``.

baseline: the whole canvas encoded as one PNG (Pillow, compress_level=1 like the store),
written and fsynced (as the store fsyncs its objects). It keeps no state, so its cost
at step k depends only on the canvas at step k: by default it runs at the table's steps
only (``--baseline-every-step`` runs it at all of them, about 5 minutes for 100 steps).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Result, Step
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect, edit_canvas

SESSION, BRANCH = "bench", "main"
TABLE_STEPS = (1, 10, 50, 100)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int = 16) -> np.ndarray:
    """RGB noise that is smooth at ``cell`` px with a little per-pixel grain."""
    coarse = rng.integers(0, 256, (h // cell + 2, w // cell + 2, 3), dtype=np.uint8)
    big = Image.fromarray(coarse).resize(((w // cell + 2) * cell, (h // cell + 2) * cell))
    arr = np.asarray(big, dtype=np.int16)[:h, :w]
    grain = rng.integers(-6, 7, (h, w, 3), dtype=np.int16)
    return np.clip(arr + grain, 0, 255).astype(np.uint8)


def dir_bytes(path: Path) -> tuple[int, int]:
    """Total size of the files under ``path`` and of its ``.json`` files."""
    total = json_ = 0
    for d, _, names in os.walk(path):
        for n in names:
            size = os.path.getsize(os.path.join(d, n))
            total += size
            if n.endswith(".json"):
                json_ += size
    return total, json_


@dataclass
class Run:
    """Per-step time (ms) and bytes of one side of the comparison."""

    ms: dict[int, float] = field(default_factory=dict)
    bytes: dict[int, int] = field(default_factory=dict)
    json_bytes: dict[int, int] = field(default_factory=dict)


def commit_band(store: Store, band: np.ndarray) -> None:
    """One step: the head's canvas grown right by ``band``, committed to the branch."""
    with store.writing():
        head = store.refs.head(SESSION, BRANCH)
        parent = store.canvas(store.step(head))
        prect = canvas_rect(parent)
        patch_rect = Rect(prect.right, prect.y, band.shape[1], band.shape[0])
        canvas = edit_canvas(store.objects, parent, prect.union(patch_rect), band, patch_rect)
        step = Step(
            session=SESSION,
            parent=head,
            created_ms=store.clock_ms(),
            result=Result(
                canvas_id=store.objects.put_json(canvas), width=canvas.width, height=canvas.height
            ),
        )
        store.refs.update(SESSION, BRANCH, head, store.objects.put_json(step), "bench step")


def run_ours(tmp: Path, tile: int, start: np.ndarray, bands: list[np.ndarray]) -> Run:
    store = Store.init(tmp / f"store-{tile}", tile_size=tile)
    store.create_session(SESSION, start)
    objects = tmp / f"store-{tile}" / "objects"
    run = Run()
    before, before_json = dir_bytes(objects)
    for k, band in enumerate(bands, 1):
        t0 = time.perf_counter()
        commit_band(store, band)
        run.ms[k] = (time.perf_counter() - t0) * 1000
        after, after_json = dir_bytes(objects)
        run.bytes[k], run.json_bytes[k] = after - before, after_json - before_json
        before, before_json = after, after_json
    return run


def write_png_file(path: Path, arr: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return len(data)


def run_baseline(tmp: Path, start: np.ndarray, bands: list[np.ndarray], steps: set[int]) -> Run:
    run = Run()
    canvas = start
    out = tmp / "baseline.png"
    for k, band in enumerate(bands, 1):
        canvas = np.concatenate([canvas, band], axis=1)
        if k not in steps:
            continue
        t0 = time.perf_counter()
        run.bytes[k] = write_png_file(out, canvas)
        run.ms[k] = (time.perf_counter() - t0) * 1000
    return run


def around(values: dict[int, float], k: int, half: int = 2) -> float:
    """The median of the steps within ``half`` of ``k`` (one fsync stall is not a trend)."""
    return statistics.median(v for j, v in values.items() if abs(j - k) <= half)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def print_table(tile: int, ours: Run, base: Run, table_steps: list[int], band: tuple[int, int]):
    w, h = band
    print(f"\ntile {tile}: canvas {w}x{h} + one {w}x{h} band per step")
    print("(ours ms: median of steps k-2..k+2; base/ours: its time at step k over that median)")
    print(
        f"{'step':>5} {'canvas':>11} | {'ours ms':>8} {'ours bytes':>12} {'(json)':>9} | "
        f"{'base ms':>8} {'base bytes':>12} | {'base/ours ms':>12} {'bytes':>8}"
    )
    for k in table_steps:
        ms = around(ours.ms, k)
        b_ms, b_bytes = base.ms.get(k), base.bytes.get(k)
        base_cols = (
            f"{b_ms:8.1f} {b_bytes:12,d} | {ratio(b_ms, ms):>12} {ratio(b_bytes, ours.bytes[k]):>8}"
            if b_ms is not None and b_bytes is not None
            else f"{'-':>8} {'-':>12} | {'-':>12} {'-':>8}"
        )
        print(
            f"{k:>5} {f'{w * (k + 1)}x{h}':>11} | {ms:8.1f} {ours.bytes[k]:12,d} "
            f"{ours.json_bytes[k]:9,d} | {base_cols}"
        )


def summary(tile: int, ours: Run, base: Run, first: int, last: int) -> str:
    total_mb = sum(ours.bytes.values()) / 1e6
    med = statistics.median(ours.ms.values())
    line = (
        f"SUMMARY tile {tile}: ours {len(ours.ms)} steps, median {med:.1f} ms/step, "
        f"{total_mb:.1f} MB written; step{last}/step{first}: "
        f"time {ratio(around(ours.ms, last), around(ours.ms, first))}, "
        f"bytes {ratio(ours.bytes[last], ours.bytes[first])}"
    )
    if last in base.ms:
        line += (
            f"; baseline/ours at step {last}: time {ratio(base.ms[last], around(ours.ms, last))}, "
            f"bytes {ratio(base.bytes[last], ours.bytes[last])}"
        )
    return line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--tile-sizes", default="128,256,512")
    ap.add_argument("--band", default="512x1024", help="WIDTHxHEIGHT of each step's band")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-every-step", action="store_true")
    ap.add_argument("--tmp", type=Path, default=None, help="Directory for the temp stores.")
    args = ap.parse_args(argv)
    tiles = [int(t) for t in args.tile_sizes.split(",")]
    w, h = (int(v) for v in args.band.lower().split("x"))
    table_steps = sorted({k for k in TABLE_STEPS if k <= args.steps} | {args.steps})

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    start = smooth_noise(rng, h, w)
    bands = [smooth_noise(rng, h, w) for _ in range(args.steps)]
    print(f"generated {args.steps + 1} bands of {w}x{h} in {time.perf_counter() - t0:.1f}s")

    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=args.tmp) as tmp_s:
        tmp = Path(tmp_s)
        run_ours(tmp / "warm-up", tiles[0], start, bands[:2])  # imports, encoder, caches
        steps = set(range(1, args.steps + 1)) if args.baseline_every_step else set(table_steps)
        t0 = time.perf_counter()
        base = run_baseline(tmp, start, bands, steps)
        print(f"baseline: {len(base.ms)} full PNGs in {time.perf_counter() - t0:.1f}s")
        lines = []
        for tile in tiles:
            t0 = time.perf_counter()
            ours = run_ours(tmp, tile, start, bands)
            print(f"ours, tile {tile}: {args.steps} steps in {time.perf_counter() - t0:.1f}s")
            print_table(tile, ours, base, table_steps, (w, h))
            lines.append(summary(tile, ours, base, table_steps[0], table_steps[-1]))
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
