"""``exq export`` and first-visit thumbnails: today's code next to the baseline commit's.

A session of ``--steps`` steps and 20 branches is built once through the store
(bench_viewer.build_session: synthetic pixels, no backend; the same shape as
bench_scale.py's). Each code tree then works on its own copy of that store, in a
child process, with an empty ``cache/``:

- export from scratch, again with nothing changed, and again after one more step on
  ``main`` (seconds, pages rendered, files written);
- the export's bytes against the store's object bytes;
- first-visit thumbnails: a fresh viewer asked for every step's thumbnail, in the
  session page's order.

The baseline (``--baseline``, by default fb36a3f, the commit before this work) is
extracted with ``git archive``. Its export grows as n^1.8 (485 s at 2,000 steps
measured in issue 12), so it runs at ``--baseline-steps`` (200) only, where today's
code runs too; today's code alone runs at ``--steps``.

Targets (issue 12, 2,000 steps, 20 branches): scratch <= 40 s, one new step <= 1 s,
export <= 3x the store's object bytes, first-visit thumbnails <= 3 s.

Run: ``.venv/bin/python benchmarks/bench_export.py [--steps 2000] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_scale import baseline_tree, run  # noqa: E402

BASELINE = "fb36a3f"  # main before the linear export

#: builds the session with this checkout's code (the store format is the baseline's too)
BUILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
    from bench_viewer import build_session
    from exquisite_store.store import Store
    steps = int(sys.argv[3])
    st = Store.init(Path(sys.argv[2]))
    b = build_session(st, "bench", steps, side_every=max(1, steps // 20), side_len=5,
                      attempt_every=200)
    total = sum(len(st.storage.get_object(oid)[1]) for oid, _ in st.storage.list_objects())
    print(json.dumps({"steps": b.steps, "branches": b.branches, "attempts": b.attempts,
                      "head": b.head, "object_bytes": total}))
    """
)

#: one tree's export runs (scratch, unchanged, +1 step) and first-visit thumbnails
MEASURE = textwrap.dedent(
    """
    import json, shutil, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
    from bench_viewer import Builder
    from exquisite_store.store import Store
    from viewer import create_app
    from viewer.export import export_session
    what, root, out = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    shutil.rmtree(root / "cache", ignore_errors=True)
    res = {}
    if what == "thumbs":
        client = create_app({"EXQ_STORE": str(root), "TESTING": True}).test_client()
        nodes = client.get("/s/bench.json").get_json()["nodes"]
        ids = [n["id"] for n in nodes if not n["failed"]]
        t, c = time.perf_counter(), time.process_time()
        for sid in ids:
            assert client.get(f"/-/thumb/{sid}.png").status_code == 200
        res = {"seconds": time.perf_counter() - t, "cpu": time.process_time() - c,
               "thumbs": len(ids)}
    else:
        def export(label):
            t, c = time.perf_counter(), time.process_time()
            rep = export_session(root, "bench", out)
            cpu = time.process_time() - c
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            res[label] = {"seconds": time.perf_counter() - t, "cpu": cpu, "pages": rep.pages,
                          "files": rep.files, "written": rep.written, "bytes": size,
                          "canvas_bytes": sum(p.stat().st_size for p in out.glob("canvas/*"))}
        export("scratch")
        export("unchanged")
        st = Store.open(root)
        b = Builder(st, "bench", seed=1)
        b.count = 100_000
        head = st.refs.head("bench", "main")
        b.grow("main", head, head)
        export("one more step")
    print(json.dumps(res))
    """
)


def measure(tree: Path, what: str, store: Path, tmp: Path, label: str) -> dict:
    """Run one measurement with ``tree``'s code on a fresh copy of ``store``."""
    copy = tmp / f"store-{label}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy, symlinks=True)
    out = tmp / f"site-{label}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        return json.loads(run(MEASURE, tree, what, str(copy), str(out)))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--baseline-steps", type=int, default=200)
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    ap.add_argument("--quick", action="store_true", help="only --baseline-steps")
    args = ap.parse_args(argv)
    sizes = [args.baseline_steps] + ([] if args.quick else [args.steps])
    rows: list[tuple[int, str, dict, dict]] = []
    thumbs: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        trees = {"before": baseline_tree(args.baseline, tmp), "now": ROOT}
        for steps in sizes:
            store = tmp / f"built-{steps}"
            built = json.loads(run(BUILD, ROOT, str(store), str(steps)))
            print(
                f"session: {built['steps']} steps, {built['branches']} branches, "
                f"{built['attempts']} attempts, {built['object_bytes'] / 1e6:.1f} MB of objects",
                flush=True,
            )
            for label, tree in trees.items():
                th = measure(tree, "thumbs", store, tmp, f"{label}-{steps}-t")
                print(
                    f"  {label:>6} {steps:5d} steps: first-visit thumbnails "
                    f"{th['seconds']:.2f} s, {th['cpu']:.2f} s CPU ({th['thumbs']})",
                    flush=True,
                )
                thumbs[(steps, label)] = th
                if label == "before" and steps != args.baseline_steps:
                    continue  # the baseline's export at this size: n^1.8 (see above)
                exp = measure(tree, "export", store, tmp, f"{label}-{steps}")
                rows.append((steps, label, exp, {**th, "object_bytes": built["object_bytes"]}))
                for run_label, r in exp.items():
                    print(
                        f"  {label:>6} {steps:5d} steps: {run_label:<14} {r['seconds']:7.2f} s "
                        f"({r['cpu']:6.2f} s CPU), {r['pages']:5d} pages rendered, "
                        f"{r['written']:5d} files written, {r['bytes'] / 1e6:7.1f} MB",
                        flush=True,
                    )
            shutil.rmtree(store, ignore_errors=True)
    print(
        "\n| steps | code | scratch s | unchanged s | +1 step s (written) | export MB "
        "(full PNGs) | x store | thumbs s |\n|---|---|---|---|---|---|---|---|"
    )
    for steps, label, exp, th in rows:
        s, u, o = exp["scratch"], exp["unchanged"], exp["one more step"]
        ratio = s["bytes"] / th["object_bytes"]
        print(
            f"| {steps:,} | {label} | {s['seconds']:.1f} | {u['seconds']:.2f} | "
            f"{o['seconds']:.2f} ({o['written']}) | {s['bytes'] / 1e6:.1f} "
            f"({s['canvas_bytes'] / 1e6:.1f}) | {ratio:.1f}x "
            f"({(s['bytes'] - s['canvas_bytes']) / th['object_bytes']:.1f}x without) | "
            f"{th['seconds']:.2f} |"
        )
    now = {(steps, label): (exp, th) for steps, label, exp, th in rows}
    small_b, small_n = now[(args.baseline_steps, "before")], now[(args.baseline_steps, "now")]
    big = now[(sizes[-1], "now")]
    s, o = big[0]["scratch"], big[0]["one more step"]
    ratio = s["bytes"] / big[1]["object_bytes"]
    pages_ratio = (s["bytes"] - s["canvas_bytes"]) / big[1]["object_bytes"]
    ok = s["seconds"] <= 40 and o["seconds"] <= 1 and ratio <= 3 and big[1]["seconds"] <= 3
    print(
        f"SUMMARY export {sizes[-1]} steps: scratch {s['seconds']:.1f} s (target 40), "
        f"+1 step {o['seconds']:.2f} s (target 1), size {ratio:.1f}x the store "
        f"({pages_ratio:.1f}x without the heads' full PNGs; target 3x), thumbnails "
        f"{big[1]['seconds']:.2f} s (target 3); at {args.baseline_steps} steps scratch "
        f"{small_b[0]['scratch']['seconds']:.1f} -> {small_n[0]['scratch']['seconds']:.1f} s, "
        f"thumbnails {small_b[1]['seconds']:.2f} -> {small_n[1]['seconds']:.2f} s: "
        f"{'ok' if ok else 'MISSED'}"
    )
    if (sizes[-1], "before") in thumbs:
        tb, tn = thumbs[(sizes[-1], "before")], thumbs[(sizes[-1], "now")]
        print(
            f"first-visit thumbnails at {sizes[-1]} steps: {tb['seconds']:.1f} s -> "
            f"{tn['seconds']:.1f} s ({tb['seconds'] / tn['seconds']:.1f}x; CPU "
            f"{tb['cpu']:.1f} -> {tn['cpu']:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
