"""What the live workspace costs the server: the session page and the parts a tab refetches.

A 1,000-step session (``bench_viewer.build_session``) is built once; the session page is
then rendered by today's code and by the baseline commit's (``git archive`` of
``--baseline`` into a temp dir), each in its own process over the same store, through
Flask's test client. Today's code also renders the parts a tab fetches when an event
arrives (``live.json?parts=jobs`` on a progress event, every part on a commit or a
move), and the session page again once main is moved back 100 steps (those steps are
off-branch: found through the reflogs and drawn dimmed).

Run: ``.venv/bin/python benchmarks/bench_live.py [--steps 1000] [--reps 15]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_viewer import build_session  # noqa: E402

from exquisite_store.store import Store  # noqa: E402

# run in a fresh process by each tree: median and p95 ms, and bytes, of each URL
TIMER = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from viewer import create_app
app = create_app({"EXQ_STORE": sys.argv[2], "TESTING": True})
client = app.test_client()
out = {}
for url in json.loads(sys.argv[3]):
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.status_code)
    ms = []
    for _ in range(int(sys.argv[4])):
        t0 = time.perf_counter()
        resp = client.get(url)
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    out[url] = [statistics.median(ms), ms[round(0.95 * (len(ms) - 1))], len(resp.data)]
print(json.dumps(out))
"""


def run(tree: Path, store: Path, urls: list[str], reps: int) -> dict[str, list[float]]:
    """Time ``urls`` with the code of ``tree`` in a process of its own."""
    proc = subprocess.run(
        [sys.executable, "-c", TIMER, str(tree), str(store), json.dumps(urls), str(reps)],
        capture_output=True,
        text=True,
        cwd=tree,
    )
    if proc.returncode:
        raise SystemExit(f"timing with {tree} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_tree(rev: str, tmp: Path) -> Path:
    """The baseline commit's files in a temp dir."""
    out = tmp / "baseline"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"git archive {rev} failed: {archive.stderr.decode()[-400:]}")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--baseline", default="fb36a3f", help="the commit before the live workspace")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        root = tmp / "store"
        store = Store.init(root)
        built = build_session(store, "big", args.steps, 25, 4, 125)
        old = baseline_tree(args.baseline, tmp)
        page = f"/s/{built.name}"
        base = run(old, root, [page], args.reps)[page]
        live = f"/s/{built.name}/live.json"
        urls = [page, f"{live}?parts=jobs", f"{live}?parts=tree,branches,summary,attempts", live]
        now = run(ROOT, root, urls, args.reps)
        # main moved back 100 steps: those steps are on no branch now, still drawn
        back = [s for s, _ in store.history(built.head)][100]
        with store.writing():
            store.refs.update(built.name, "main", built.head, back, "bench: set head back 100")
        off = run(ROOT, root, [page], args.reps)[page]
    rows = [
        (f"session page, baseline {args.baseline}", base),
        ("session page, now (history and jobs panels)", now[page]),
        ("live.json?parts=jobs (each progress event)", now[urls[1]]),
        ("live.json tree, branches, summary, attempts", now[urls[2]]),
        ("live.json, every part (a commit or a move)", now[urls[3]]),
        ("session page, now, 100 steps off-branch", off),
    ]
    print(f"{built.steps} steps, {built.branches} branches, {built.attempts} failed attempts\n")
    print("| what | median ms | p95 ms | bytes |\n| --- | --- | --- | --- |")
    for label, (med, p95, size) in rows:
        print(f"| {label} | {med:.1f} | {p95:.1f} | {int(size):,} |")
    ratio = now[page][0] / base[0]
    print(
        f"\nSUMMARY live: session page of {built.steps} steps {now[page][0]:.1f} ms "
        f"({ratio:.2f}x the baseline's {base[0]:.1f}); a progress event costs a tab "
        f"{now[urls[1]][0]:.1f} ms (jobs part), a commit {now[urls[3]][0]:.1f} ms (every part); "
        f"100 steps off-branch: {off[0]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
