"""Per-step pipeline overhead against canvas width, and PatchMatch fills, next to older code.

Overhead: the backend is ``PatternBackend`` (it answers at once) and its own time is
subtracted, so what is left is the pipeline's work: plan, frame, store the request,
decode, seam, validate, commit. Target (issue 12): <= 150 ms at 1024 x 1024 with
L = 512, and flat in the canvas size (32k / 1k <= 1.5).

Fills: ``n = 2`` candidates of a 512 x 512 frame (and a 128 x 128 one, where starting
a worker weighs more), through ``PatchMatchBackend`` as a step calls it: a cold pool
(the first step of a process), a warm one (every step after), and a warm pool of one
worker (the candidates one after another).

Each measurement runs in a fresh child process, once with this checkout and once with
the tree of each baseline commit (extracted with ``git archive``, as bench_scale.py
does): ``fb36a3f`` (before the warm workers: a new worker process per step, the
candidates in turn) and ``2c72265`` (before issue 12's cheaper step).

Run: ``.venv/bin/python benchmarks/bench_step.py [--reps 5] [--widths 1024 8192 32768]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: (label, revision): the code the figures are compared with
BASELINES = (("fb36a3f", "fb36a3f"), ("before #12", "2c72265"))
N = 1024  # canvas height
L = 512  # extension
PHASES = ("plan", "prompt", "request", "generate", "decode", "unframe", "seam", "validate")
OVERHEAD_MAX_S = 0.150
OVERHEAD_RATIO_MAX = 1.5
FILL_N = 2
#: (frame side, painted columns): a band of half the frame next to as much context
FILL_FRAMES = ((512, 256), (128, 64))


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


def bench_width(root: Path, width: int, reps: int) -> dict:
    """Build a canvas of ``N x width`` once, then time ``reps`` steps grown from it.

    Imports from whichever tree is first on ``sys.path`` (this checkout or a baseline's).
    """
    from exquisite_store.pipeline.step import run_step
    from exquisite_store.store import Store
    from tests.fakes.backends import PatternBackend

    class TimedPattern(PatternBackend):
        """PatternBackend that remembers how long its own ``generate`` took."""

        def generate(self, request, cancel=None):
            t = time.perf_counter()
            try:
                return super().generate(request, cancel)
            finally:
                self.seconds = time.perf_counter() - t

    store = Store.init(root / f"w{width}")
    _, start = store.create_session("bench", smooth(N, width))
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
    return {
        "width": width,
        "overhead": med([a - b for a, b in zip(totals, backend_s, strict=True)]),
        "phases": {p: med(v) for p, v in phases.items()},
    }


def bench_fills() -> dict:
    """Seconds of ``n = 2`` fills: cold pool, warm pool, warm pool of one (in turn).

    A baseline tree has no pool: each call starts its own worker and fills in turn,
    so it is timed twice (both cold).
    """
    import exquisite_store.backends.patchmatch as pm
    from exquisite_store.backends.base import BackendRequest

    pooled = hasattr(pm, "POOL")
    out: dict = {"pooled": pooled}
    sequential = pm.WorkerPool("patchmatch", task="fill", size=1) if pooled else None
    for side, paint in FILL_FRAMES:
        frame = smooth(side, side)
        frame[:, side - paint :] = frame[:, side - paint - 1 : side - paint]
        mask = np.full((side, side, 4), 255, np.uint8)
        mask[:, side - paint :, 3] = 0
        req = BackendRequest(
            image=frame, mask=mask, prompt="", n=FILL_N, seed=3, model="", request_id="b"
        )

        def timed(backend) -> float:
            t = time.perf_counter()
            backend.generate(req)  # noqa: B023 - called at once, in this iteration
            return time.perf_counter() - t

        row = {"cold": timed(pm.PatchMatchBackend()), "warm": timed(pm.PatchMatchBackend())}
        if pooled:
            pm.POOL.close()  # the next frame starts cold again
            timed(pm.PatchMatchBackend(pool=sequential))  # warm it
            row["sequential"] = timed(pm.PatchMatchBackend(pool=sequential))
        out[str(side)] = row
    if sequential is not None:
        sequential.close()
    return out


def baseline_tree(rev: str, tmp: Path) -> Path:
    """The baseline commit's files, extracted from this repository's history."""
    out = tmp / f"baseline-{rev}"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"cannot extract {rev}: {archive.stderr.decode()[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def child(tree: Path, *args: str) -> dict:
    """Run this file's ``--child`` mode with ``tree``'s code first on the path."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(tree), *args],
        capture_output=True,
        text=True,
        cwd=str(tree),
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({tree}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def run_child(tree: str, what: str, reps: int) -> None:
    sys.path.insert(0, tree)
    import exquisite_store

    here = str(Path(exquisite_store.__file__).resolve())
    assert here.startswith(str(Path(tree).resolve())), f"imported {here}, not {tree}"
    if what == "fills":
        print(json.dumps(bench_fills()))
        return
    with tempfile.TemporaryDirectory(prefix="exq-bench-") as tmp:
        print(json.dumps(bench_width(Path(tmp), int(what), reps)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--widths", type=int, nargs="+", default=[1024, 8192, 32768])
    ap.add_argument("--no-patchmatch", action="store_true", help="skip the fills")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # TREE WHAT: JSON out
    args = ap.parse_args()
    if args.child:
        run_child(*args.child, args.reps)
        return

    with tempfile.TemporaryDirectory() as tmp_s:
        trees = {"now": ROOT} | {label: baseline_tree(rev, Path(tmp_s)) for label, rev in BASELINES}
        # each width in a fresh process: building a 32k canvas in the same process leaves
        # the allocator and the image cache in another state, which skews the steps
        # the trees take turns at each width, so a load that comes and goes on this
        # shared machine weighs on each of them alike
        rows: dict[str, list[dict]] = {label: [] for label in trees}
        for w in args.widths:
            for label, tree in trees.items():
                rows[label].append(child(tree, str(w), "--reps", str(args.reps)))
        # the fills of the step before issue 12 are fb36a3f's (one worker per call, in turn)
        fill_trees = {k: trees[k] for k in ("now", BASELINES[0][0])}
        fills = (
            None if args.no_patchmatch else {k: child(t, "fills") for k, t in fill_trees.items()}
        )
    print(f"load average over the last 1/5/15 minutes: {os.getloadavg()} (2 cores)\n")
    report_overhead(rows, args.reps)
    if fills is not None:
        report_fills(fills)


def report_overhead(rows: dict[str, list[dict]], reps: int) -> None:
    print(f"step overhead: L={L}, N={N}, disk store, PatternBackend, median of {reps}\n")
    labels = list(rows)
    print("| canvas | " + " | ".join(f"{k} ms" for k in labels) + " | baseline / now |")
    print("|---" * (len(labels) + 2) + "|")
    for i, r in enumerate(rows["now"]):
        cells = " | ".join(f"{1000 * rows[k][i]['overhead']:.0f}" for k in labels)
        ratios = ", ".join(
            f"{rows[k][i]['overhead'] / r['overhead']:.2f}x" for k in labels if k != "now"
        )
        print(f"| {r['width']}x{N} | {cells} | {ratios} |")
    cols = ["plan", "prompt", "request", "decode", "unframe", "seam", "validate", "other"]
    print("\nnow, by phase (ms; other = request storage, target lookup, commit, events):\n")
    print("| canvas | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 1) + "|")
    for r in rows["now"]:
        ph = r["phases"]
        print(f"| {r['width']} | " + " | ".join(f"{1000 * ph[c]:.0f}" for c in cols) + " |")
    first, last = rows["now"][0], rows["now"][-1]
    flat = last["overhead"] / first["overhead"]
    ok = first["overhead"] <= OVERHEAD_MAX_S and flat <= OVERHEAD_RATIO_MAX
    was = "; ".join(f"{k} {1000 * v[0]['overhead']:.0f} ms" for k, v in rows.items() if k != "now")
    print(
        f"\nSUMMARY step overhead: {1000 * first['overhead']:.0f} ms at {first['width']} wide, "
        f"{1000 * last['overhead']:.0f} ms at {last['width']} (ratio {flat:.2f}); was: {was} "
        f"(target <= {1000 * OVERHEAD_MAX_S:.0f} ms, ratio <= {OVERHEAD_RATIO_MAX}: "
        f"{'ok' if ok else 'MISSED'})"
    )


def report_fills(fills: dict[str, dict]) -> None:
    print(f"\npatchmatch, n = {FILL_N} candidates, seconds per call (a fresh process each):\n")
    print(
        "| frame | code | first call (cold) | next call (warm) | warm, in turn | in turn / warm |"
    )
    print("|---|---|---|---|---|---|")
    for side, _paint in FILL_FRAMES:
        for label, f in fills.items():
            r = f[str(side)]
            seq = r.get("sequential")
            how = "pool" if f["pooled"] else "new worker per call, in turn"
            print(
                f"| {side}x{side} | {label} ({how}) | {r['cold']:.2f} | {r['warm']:.2f} | "
                + (f"{seq:.2f} | {seq / r['warm']:.2f}x |" if seq else "- | - |")
            )
    side = str(FILL_FRAMES[0][0])
    now, old = fills["now"][side], fills[BASELINES[0][0]][side]
    small = str(FILL_FRAMES[1][0])
    print(
        f"\nSUMMARY patchmatch n={FILL_N}, {side}x{side} frame: {now['warm']:.2f} s warm, "
        f"{now['cold']:.2f} s cold, {now['sequential']:.2f} s in turn; {BASELINES[0][0]} "
        f"{old['warm']:.2f} s: {old['warm'] / now['warm']:.2f}x faster "
        f"({small}x{small}: {fills[BASELINES[0][0]][small]['warm']:.2f} s -> "
        f"{fills['now'][small]['warm']:.2f} s)"
    )


if __name__ == "__main__":
    main()
