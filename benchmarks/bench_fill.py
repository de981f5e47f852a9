"""Old and new offline fill side by side: `patchmatch` (full scale) vs `patchmatch-fast`.

Real photos (scikit-image's bundled samples), each as a right extension: an H x H
context (the photo scaled to H rows, its left H columns) and H new columns, at
H = 256 (256x512 frames) and H = 512 (512x1024). Old and new take turns on each photo,
in this process, one fill at a time (one core each), so the machine's load hits both
alike; the load average is printed with every row.

Per fill: seconds; today's seam score (geometry/scores.seam_score, x1000, at the seam
column); the colour step across the seam (levels) next to the same step inside the
context; the repeat rate (fill_defects.repeat_rate: share of the band's textured blocks
that are copies of context blocks); the seam jump over the context's texture only
(fill_defects.context_seam). With --images, writes docs/fill/side-by-side-<H>.png
(a row per photo: context | old band | new band).

    .venv/bin/python benchmarks/bench_fill.py [--sizes 256,512] [--images]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exquisite_store.backends import coarse_fill  # noqa: E402
from exquisite_store.backends import patchmatch as pm  # noqa: E402
from exquisite_store.geometry import fill_defects, scores  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "fill"
PANEL = 160


def frame(name: str, h: int) -> tuple[np.ndarray, np.ndarray]:
    photo = Image.fromarray(getattr(data, name)())
    w = max(h, round(photo.width * h / photo.height))
    ctx = np.asarray(photo.resize((w, h), Image.LANCZOS))[:, :h]
    image = np.zeros((h, 2 * h, 3), np.uint8)
    image[:, :h] = ctx
    hole = np.zeros((h, 2 * h), np.uint8)
    hole[:, h:] = 255
    return image, hole


def measure(fill, image: np.ndarray, hole: np.ndarray, seed: int) -> dict:
    t0 = time.perf_counter()
    out = fill(image, hole, seed)
    secs = time.perf_counter() - t0
    h = hole.shape[0]
    step, inside = fill_defects.colour_step(out, h)
    return {
        "secs": secs,
        "seam": scores.seam_score(out, h),
        "ctx": fill_defects.context_seam(out, h),
        "step": step,
        "inside": inside,
        "repeat": fill_defects.repeat_rate(out, hole != 0),
        "load": os.getloadavg()[0],
        "out": out,
    }


def side_by_side(h: int, image: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """One photo's row: context | old band | new band, each PANEL px square."""
    gap = np.full((PANEL, 4, 3), 255, np.uint8)
    panels = []
    for a in (image[:, :h], old[:, h:], new[:, h:]):
        panels += [np.asarray(Image.fromarray(a).resize((PANEL, PANEL), Image.LANCZOS)), gap]
    return np.concatenate(panels[:-1], axis=1)


def save_side_by_side(h: int, rows: list[np.ndarray]) -> Path:
    """docs/fill/side-by-side-<h>.png: the photos' rows, a 256-colour palette (small)."""
    DOCS.mkdir(parents=True, exist_ok=True)
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    sheet = np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0)
    path = DOCS / f"side-by-side-{h}.png"
    Image.fromarray(sheet).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--images", action="store_true", help="write docs/fill/*.png")
    ap.add_argument("--photos", default=",".join(PHOTOS))
    args = ap.parse_args()
    fills = {"old": pm.fill, "new": coarse_fill.fill}
    coarse_fill.fill(*frame("coffee", 64), 0)  # load the native library before timing
    print(f"cores {os.cpu_count()}, load at start {os.getloadavg()[0]:.1f}")
    print(
        "| frame | photo | fill | s | seam x1000 | context seam x1000 "
        "| colour step (inside) | repeat | load |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for h in (int(s) for s in args.sizes.split(",")):
        rows: dict[str, list[dict]] = {"old": [], "new": []}
        sheet: list[np.ndarray] = []
        for i, name in enumerate(args.photos.split(",")):
            image, hole = frame(name, h)
            order = ("old", "new") if i % 2 == 0 else ("new", "old")  # interleaved
            got = {k: measure(fills[k], image, hole, seed=1) for k in order}
            for k in ("old", "new"):
                r = got[k]
                rows[k].append(r)
                print(
                    f"| {h}x{2 * h} | {name} | {k} | {r['secs']:.2f} | {r['seam']} | {r['ctx']} | "
                    f"{r['step']:.1f} ({r['inside']:.1f}) | {r['repeat']:.2f} | {r['load']:.1f} |",
                    flush=True,
                )
            sheet.append(side_by_side(h, image, got["old"]["out"], got["new"]["out"]))
        if args.images:
            path = save_side_by_side(h, sheet)
            print(f"wrote {path.relative_to(DOCS.parents[1])} ({path.stat().st_size:,} bytes)")
        med = {
            k: {
                m: statistics.median(r[m] for r in v)
                for m in ("secs", "seam", "ctx", "step", "repeat")
            }
            for k, v in rows.items()
        }
        worst = {k: max(r["seam"] for r in v) for k, v in rows.items()}
        o, n = med["old"], med["new"]
        print(
            f"median {h}x{2 * h}: old {o['secs']:.2f} s, new {n['secs']:.2f} s "
            f"({o['secs'] / n['secs']:.1f}x); seam {o['seam']:.0f} -> {n['seam']:.0f} "
            f"(worst {worst['old']} -> {worst['new']}); context seam {o['ctx']:.0f} -> "
            f"{n['ctx']:.0f}; colour step {o['step']:.1f} -> "
            f"{n['step']:.1f}; repeat {o['repeat']:.2f} -> {n['repeat']:.2f}"
        )
        summary.append(
            f"{h}x{2 * h}: {o['secs']:.2f} s -> {n['secs']:.2f} s, seam {o['seam']:.0f} -> "
            f"{n['seam']:.0f}, repeat {o['repeat']:.2f} -> {n['repeat']:.2f}"
        )
    print(
        f"\nSUMMARY offline fill old -> new (median of {len(args.photos.split(','))} photos): "
        + "; ".join(summary)
        + f" (load {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
