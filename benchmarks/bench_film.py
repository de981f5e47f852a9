"""Peak memory and time of ``exq film`` on a 100-step branch of a 20,000-pixel-wide canvas.

The branch is built through the store (no backend): a 1024 x 1024 start grown right by
190 pixels a step, 100 times (20,024 x 1024 at the head). Each run is a child process
of its own, and its peak memory is its ``ru_maxrss``:

- ``idle``: the interpreter with the project, PyAV and the store opened (the floor);
- ``ours``: the whole film, every frame read from the level tiles it needs;
- ``naive``: the baseline that composes the whole canvas of each frame at full size and
  then crops and resizes it (the same frames, the same encoder); it is run on the
  film's last ``--naive-frames`` frames only (the largest canvases, so its peak is the
  film's), since every frame of it costs a whole canvas.

Run: ``.venv/bin/python benchmarks/bench_film.py [--steps 100] [--band 190] [--mode pan]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exquisite_store.core import film as films  # noqa: E402
from exquisite_store.store import Store  # noqa: E402

SIZE = "1280x720"


def build(root: Path, steps: int, band: int) -> str:
    from tests.film_helpers import grow_branch

    store = Store.init(root)
    ids = grow_branch(store, "wide", (1024, 1024), ["right"] * steps, band, seed=1)
    return ids[-1]


class NaiveRenderer:
    """The baseline: each frame composes its whole canvas at full size, then crops it."""

    def __init__(self, store: Store, canvas_ids: list[str], size: tuple[int, int]) -> None:
        self.store, self.canvas_ids, self.size = store, canvas_ids, size

    def render(self, frame) -> np.ndarray:
        from PIL import Image

        from exquisite_store.manifests import Canvas
        from exquisite_store.store.canvas import canvas_rect, compose_full

        canvas = self.store.objects.get_manifest(self.canvas_ids[frame.canvas], Canvas)
        full = compose_full(self.store.objects, canvas)  # the whole canvas, every frame
        rect = canvas_rect(canvas)
        w, h = self.size
        out = np.zeros((h, w, 3), np.uint8)
        cam, vis = frame.camera, frame.clip.intersect(rect)
        sx, sy = w / cam.w, h / cam.h
        u0, u1 = max(0, round((vis.x - cam.x) * sx)), min(w, round((vis.right - cam.x) * sx))
        v0, v1 = max(0, round((vis.y - cam.y) * sy)), min(h, round((vis.bottom - cam.y) * sy))
        box = (
            max(vis.x, cam.x + u0 / sx) - rect.x,
            max(vis.y, cam.y + v0 / sy) - rect.y,
            min(vis.right, cam.x + u1 / sx) - rect.x,
            min(vis.bottom, cam.y + v1 / sy) - rect.y,
        )
        img = Image.fromarray(full).resize((u1 - u0, v1 - v0), Image.Resampling.BILINEAR, box=box)
        out[v0:v1, u0:u1] = np.asarray(img)[:, :, :3]
        return out


def child(args: argparse.Namespace) -> None:
    import io

    from exquisite_store.film import encoders

    store = Store.open(Path(args.store))
    options = films.film_options("x.mp4", size=SIZE, mode=args.mode)
    t0 = time.perf_counter()
    frames = 0
    if args.child == "ours":
        made = films.write_film(store, args.head, options, io.BytesIO())
        frames = made.frames
    elif args.child == "naive":
        canvas_ids, plan = films.film_plan(store, args.head, options)
        plan = plan[-args.naive_frames :]
        r = NaiveRenderer(store, canvas_ids, options.size)
        encoders.encode((r.render(f) for f in plan), io.BytesIO(), "mp4", options.fps, len(plan))
        frames = len(plan)
    else:
        import av  # noqa: F401  (the floor includes FFmpeg's libraries)
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    print(json.dumps({"seconds": secs, "frames": frames, "maxrss_mb": rss / 1024}))


def run_child(kind: str, store: Path, head: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--store", str(store), "--head", head]
    cmd += ["--mode", args.mode, "--naive-frames", str(args.naive_frames)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--band", type=int, default=190)
    p.add_argument("--mode", default="pan", choices=["pan", "zoom-out", "reveal"])
    p.add_argument("--naive-frames", type=int, default=24)
    p.add_argument("--child", default=None)
    p.add_argument("--store", default=None)
    p.add_argument("--head", default=None)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        t0 = time.perf_counter()
        head = build(root, args.steps, args.band)
        store = Store.open(root)
        c = store.canvas(store.step(head))
        print(f"built {args.steps} steps in {time.perf_counter() - t0:.1f} s: {c.width}x{c.height}")
        idle = run_child("idle", root, head, args)
        rows = {}
        for mode in ("pan", "zoom-out", "reveal"):
            args.mode = mode
            rows[mode] = run_child("ours", root, head, args)
        args.mode = "pan"
        naive = run_child("naive", root, head, args)
    print(f"\n{args.steps}-step branch, {c.width:,} x {c.height:,} at the head, MP4 {SIZE}\n")
    print("| run | frames | seconds | ms / frame | peak MB | peak above idle MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| idle (imports, store) | - | - | - | {idle['maxrss_mb']:.0f} | 0 |")
    for mode, r in rows.items():
        per = 1000 * r["seconds"] / r["frames"]
        print(
            f"| ours, {mode} | {r['frames']} | {r['seconds']:.1f} | {per:.1f} | "
            f"{r['maxrss_mb']:.0f} | {r['maxrss_mb'] - idle['maxrss_mb']:.0f} |"
        )
    nper = 1000 * naive["seconds"] / naive["frames"]
    print(
        f"| naive (whole canvas per frame), pan, last {naive['frames']} frames | "
        f"{naive['frames']} | {naive['seconds']:.1f} | {nper:.1f} | {naive['maxrss_mb']:.0f} | "
        f"{naive['maxrss_mb'] - idle['maxrss_mb']:.0f} |"
    )
    pan = rows["pan"]
    pan_per = 1000 * pan["seconds"] / pan["frames"]
    over_ours = pan["maxrss_mb"] - idle["maxrss_mb"]
    over_naive = naive["maxrss_mb"] - idle["maxrss_mb"]
    print(
        f"\nSUMMARY film: {args.steps}-step {c.width:,}-wide branch, pan MP4 {SIZE}: "
        f"{pan['frames']} frames in {pan['seconds']:.1f} s ({pan_per:.1f} ms/frame), peak "
        f"{pan['maxrss_mb']:.0f} MB ({over_ours:.0f} above idle); naive whole-canvas frames "
        f"{nper:.0f} ms/frame ({nper / pan_per:.1f}x), peak {naive['maxrss_mb']:.0f} MB "
        f"({over_naive:.0f} above idle, {over_naive / max(1, over_ours):.1f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
