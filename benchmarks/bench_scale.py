"""Cost at scale: today's code next to the code before issue 12, in one run.

For each size the same work runs twice, in child processes (so each one's peak
memory is its own): once with this checkout, once with the tree of the baseline
commit (``--baseline``, by default the last commit before canvas trees, extracted
with ``git archive`` into a temp dir), each building its own store with its own code.

- canvas manifests' share of a 2,000-step, 20-branch session's object bytes;
- ``exq canvas`` of a 100,000 x 1,024 and a 20,000 x 20,000 canvas: peak memory, time;
- one 512-px step grown right on each of those canvases: peak memory, time
  (the backend answers with the frame it was sent: the pipeline's own cost).

Targets (issue 12): manifests <= 15% of the store's bytes; ``exq canvas`` <= 250 MB;
a 512-px step <= 400 MB.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE = "d3563be"  # main before canvas trees, streamed canvases and the cheaper step

#: builds a store (in the child's own code) and prints nothing
BUILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
    from bench_step import smooth
    from exquisite_store.geometry.rect import Rect
    from exquisite_store.store import Store
    from exquisite_store.store.canvas import canvas_rect, edit_canvas
    from exquisite_store.manifests import Result, Step
    kind, root = sys.argv[2], Path(sys.argv[3])
    st = Store.init(root)
    if kind == "wide":  # 100,000 x 1,024: 4,096 wide, then 24 bands of 4,000 to the right
        start, grow, n = smooth(1024, 4096), ("right", 4000), 24
    else:  # 20,000 x 20,000: 20,000 x 1,024, then 19 bands of 1,000 down (the last 976)
        start, grow, n = smooth(1024, 20000), ("down", 1000), 19
    _, sid = st.create_session("s", start)
    for i in range(n):
        parent = st.canvas(st.step(sid))
        r = canvas_rect(parent)
        if grow[0] == "right":
            patch = Rect(r.right, r.y, grow[1], r.h)
        else:
            patch = Rect(r.x, r.bottom, r.w, grow[1] if i < n - 1 else 20000 - r.h)
        wide = grow[0] == "right"
        band = smooth(patch.h, patch.w + r.w)[:, -patch.w:] if wide else smooth(patch.h, patch.w)
        child = edit_canvas(st.objects, parent, r.union(patch), band, patch)
        step = Step(session="s", parent=sid, result=Result(canvas_id=st.objects.put_json(child),
                    width=child.width, height=child.height))
        new = st.objects.put_json(step)
        st.refs.update("s", "main", sid, new, "bench band")
        sid = new
    """
)

#: one measurement in a fresh process; prints a JSON line with its own peak RSS
MEASURE = textwrap.dedent(
    """
    import io, json, resource, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    what, root = sys.argv[2], Path(sys.argv[3])
    t = time.perf_counter()
    if what == "canvas":
        from exquisite_store.cli import main
        sys.argv = ["exq", "--store", str(root), "canvas", "s:main", "-o", str(root / "out.png")]
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code
    else:
        from exquisite_store import imageio
        from exquisite_store.backends.base import BackendResult, LocalBackend
        from exquisite_store.pipeline.step import run_step
        from exquisite_store.store import Store
        encode = getattr(imageio, "png_bytes", None) or (
            lambda a: imageio.encode_png(imageio.from_array(a)))
        class Echo(LocalBackend):
            name = "echo"
            def generate(self, request, cancel=None):
                return BackendResult(images=[encode(request.image)])
        st = Store.open(root)
        run_step(st, "s", backend_impl=Echo(), extension_px=512, overlap_px=32, seed=1)
    print(json.dumps({"seconds": time.perf_counter() - t,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
    """
)

#: the share of canvas manifests in a 2,000-step session built by bench_viewer's Builder
SHARE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
    from bench_viewer import build_session
    from exquisite_store.store import Store
    steps = int(sys.argv[3])
    st = Store.init(Path(sys.argv[2]))
    build_session(st, "bench", steps, side_every=steps // 20, side_len=5, attempt_every=200)
    total = canvas = 0
    for oid, ext in st.storage.list_objects():
        data = st.storage.get_object(oid)[1]
        total += len(data)
        if ext == "json" and (b'"kind":"canvas"' in data or b'"kind":"canvas_node"' in data):
            canvas += len(data)
    print(json.dumps({"total": total, "canvas": canvas,
                      "branches": len(st.refs.branches("bench"))}))
    """
)


def run(code: str, tree: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tree), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tree),
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({tree}): {proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def baseline_tree(rev: str, tmp: Path) -> Path:
    """The baseline commit's files, extracted from this repository's history."""
    out = tmp / f"baseline-{rev}"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"cannot extract {rev}: {archive.stderr.decode()[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    ap.add_argument("--quick", action="store_true", help="200 steps, no 20,000 x 20,000")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        trees = {"before": baseline_tree(args.baseline, tmp), "now": ROOT}
        steps = 200 if args.quick else 2000
        results: dict[str, dict] = {}
        for label, tree in trees.items():
            share = json.loads(run(SHARE, tree, str(tmp / f"share-{label}"), str(steps)))
            results[f"share/{label}"] = share
            print(
                f"{label:>6}: {steps} steps, {share['branches']} branches: canvas manifests "
                f"{share['canvas'] / 1e6:.1f} MB of {share['total'] / 1e6:.1f} MB "
                f"({100 * share['canvas'] / share['total']:.1f}%)",
                flush=True,
            )
        kinds = ["wide"] if args.quick else ["wide", "square"]
        for kind in kinds:
            for label, tree in trees.items():
                root = tmp / f"{kind}-{label}"
                run(BUILD, tree, kind, str(root))
                for what in ("canvas", "step"):
                    r = json.loads(run(MEASURE, tree, what, str(root)))
                    results[f"{kind}/{what}/{label}"] = r
                    print(
                        f"{label:>6}: {kind:<6} {what:<6} {r['seconds']:7.1f} s "
                        f"{r['peak_mb']:6d} MB peak",
                        flush=True,
                    )
                import shutil

                shutil.rmtree(root)
    print("\n| measure | before | now | before / now |\n|---|---|---|---|")
    b, n = results["share/before"], results["share/now"]
    pb, pn = 100 * b["canvas"] / b["total"], 100 * n["canvas"] / n["total"]
    print(f"| canvas manifests, {steps} steps | {pb:.1f}% | {pn:.1f}% | {pb / pn:.1f}x |")
    names = {"wide": "100,000 x 1,024", "square": "20,000 x 20,000"}
    for kind in kinds:
        for what, label in (("canvas", "exq canvas"), ("step", "512-px step")):
            rb, rn = results[f"{kind}/{what}/before"], results[f"{kind}/{what}/now"]
            print(
                f"| {label}, {names[kind]}: peak MB | {rb['peak_mb']} | {rn['peak_mb']} | "
                f"{rb['peak_mb'] / rn['peak_mb']:.1f}x |"
            )
            print(
                f"| {label}, {names[kind]}: seconds | {rb['seconds']:.1f} | {rn['seconds']:.1f} | "
                f"{rb['seconds'] / max(rn['seconds'], 1e-9):.1f}x |"
            )
    canvas_peak = max(results[f"{k}/canvas/now"]["peak_mb"] for k in kinds)
    step_peak = max(results[f"{k}/step/now"]["peak_mb"] for k in kinds)
    ok = pn <= 15 and canvas_peak <= 250 and step_peak <= 400
    print(
        f"SUMMARY scale: canvas manifests {pn:.1f}% of the store (was {pb:.1f}%, target <= 15%); "
        f"exq canvas peak {canvas_peak} MB (target <= 250); 512-px step peak {step_peak} MB "
        f"(target <= 400): {'ok' if ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
