"""Seam repair: how much a repair mends a bad seam, and what a repair step costs.

Quality, where the truth is known: a band of fixtures/photo.png is cut off and grown
back as a deliberately bad seam (a hard paste of the true pixels shifted by
+40/-30/+25 levels); then the seam is repaired (a 48 px band) by TruthBackend
(the true pixels after a gpt-image-like drift: gain 1.08/0.95/1.05, offset
+10/-6/+4, blur 0.8) with each seam strategy, and by the offline PatchMatch. For
each: the seam score before, the repair's own score after (the worst of the band's
two edges and the old seam line), and the old seam line after, next to the photo's
own score at the same place.

Cost: everything of a repair step but the backend call (an instant fake backend),
against an ordinary step in the same process and on the same 1024 x 1024 canvas
(L = 256 and a 64 px repair band), median of 7 each, the two taking turns.

Run: ``.venv/bin/python benchmarks/bench_repair.py``
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from exquisite_store import core, imageio  # noqa: E402
from exquisite_store.backends.patchmatch import PatchMatchBackend  # noqa: E402
from exquisite_store.geometry.frames import ANY  # noqa: E402
from exquisite_store.geometry.orient import DIRECTIONS, to_canonical  # noqa: E402
from exquisite_store.geometry.rect import Rect  # noqa: E402
from exquisite_store.geometry.repair import plan_repair  # noqa: E402
from exquisite_store.geometry.scores import seam_score  # noqa: E402
from exquisite_store.pipeline.repair import seam_at  # noqa: E402
from exquisite_store.pipeline.step import run_step  # noqa: E402
from exquisite_store.store import Store  # noqa: E402
from tests.fakes.backends import (  # noqa: E402
    PatternBackend,
    RepairTruthBackend,
    TruthBackend,
    cut,
)

L, WIDTH = 96, 48


def bad_seam(photo: np.ndarray, direction: str):
    start, origin = cut(photo, direction, L)
    store = Store.memory()
    store.create_session("s", start)
    drift = TruthBackend(
        photo, parent_rect=Rect(0, 0, start.shape[1], start.shape[0]), direction=direction,
        origin=origin, gain=(1.0, 1.0, 1.0), offset=(40.0, -30.0, 25.0), blur=0.0,
    )  # fmt: skip
    out = run_step(
        store, "s", backend_impl=drift, direction=direction, extension_px=L, seam="hard", seed=1
    )
    return store, out.step_ids[0], origin


def repair_once(photo, direction: str, seam: str, offline: bool):
    store, bad, origin = bad_seam(photo, direction)
    c = store.canvas(store.step(bad))
    canvas = Rect(c.x, c.y, c.width, c.height)
    plan = plan_repair(canvas, direction, seam_at(store, bad).seam_at, WIDTH, 16, None, ANY)
    backend = (
        PatchMatchBackend()
        if offline
        else RepairTruthBackend(photo, plan.strip_rect, origin=origin)
    )
    req = core.repair_request(
        store, "s", bad, {"seam": seam, "overlap_px": 16, "seed": 3}, width_px=WIDTH
    )
    sid = core.grow(store, req, backend=backend).step_ids[0]
    sc = store.step(sid).result.scores
    after = to_canonical(store.canvas_pixels(store.step(sid)), direction)
    want = to_canonical(photo, direction)
    col = after.shape[1] - L
    line = seam_score(after[:, col - 64 : col + 64], 64)
    own = seam_score(want[:, col - 64 : col + 64], 64)
    return sc.seam_before_permille / 1000, sc.seam_permille / 1000, line / 1000, own / 1000


def quality(photo) -> list[str]:
    print(
        f"\n### Repairing a bad seam ({WIDTH} px band; before / after / seam line / photo's own)\n"
    )
    print("| repair | " + " | ".join(DIRECTIONS) + " | worst after |")
    print("| --- |" + " --- |" * (len(DIRECTIONS) + 1))
    summary = []
    for label, seam, offline in (
        ("truth fake, match", "match", False),
        ("truth fake, feather", "feather", False),
        ("truth fake, hard", "hard", False),
        ("patchmatch, match", "match", True),
    ):
        cells, worst = [], 0.0
        for d in DIRECTIONS:
            before, after, line, own = repair_once(photo, d, seam, offline)
            cells.append(f"{before:.2f} / {after:.2f} / {line:.2f} / {own:.2f}")
            worst = max(worst, after)
        print(f"| {label} | " + " | ".join(cells) + f" | {worst:.2f} |")
        summary.append(f"{label} {worst:.2f}")
    return summary


def overhead() -> tuple[float, float]:
    store = Store.memory()
    rng = np.random.default_rng(1)
    store.create_session("t", rng.integers(0, 256, (1024, 768, 3), dtype=np.uint8))
    fake = PatternBackend()
    grown = run_step(store, "t", backend_impl=fake, extension_px=256, overlap_px=32, seed=1)
    base = grown.step_ids[0]  # a 1024 x 1024 canvas
    steps, repairs = [], []
    for i in range(7):
        t0 = time.perf_counter()
        run_step(store, "t", parent=base, branch=f"s{i}", backend_impl=fake, extension_px=256,
                 overlap_px=32, seed=10 + i)  # fmt: skip
        steps.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        req = core.repair_request(store, "t", base, {"seed": 20 + i}, width_px=64, branch=f"r{i}")
        core.grow(store, req, backend=fake)
        repairs.append(time.perf_counter() - t0)
    return statistics.median(steps) * 1000, statistics.median(repairs) * 1000


def main() -> None:
    photo = imageio.read_image_file(str(ROOT / "exquisite_store" / "fixtures" / "photo.png"))
    photo = np.ascontiguousarray(photo[:, :, :3])
    summary = quality(photo)
    step_ms, repair_ms = overhead()
    print("\n### Cost of a step without its backend call, 1024 x 1024 canvas (median of 7)\n")
    print("| step | ms |\n| --- | --- |")
    print(f"| grow right +256 px (baseline) | {step_ms:.0f} |")
    print(f"| repair a 64 px band around its seam | {repair_ms:.0f} |")
    print(f"\nrepair / step = {repair_ms / step_ms:.2f}")
    print(
        "SUMMARY seam repair, worst seam after (before 6.9-9.6): "
        + ", ".join(summary)
        + f"; repair {repair_ms:.0f} ms vs step {step_ms:.0f} ms ({repair_ms / step_ms:.2f}x)"
    )


if __name__ == "__main__":
    main()
