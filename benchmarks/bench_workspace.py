# ruff: noqa: E501  (table rows and the JavaScript it runs read better on one line)
"""The workspace's canvas in a real browser: first paint, a zoom change, bytes of the first view.

Two sessions in one store, served by ``exq serve`` and opened in headless Chromium:
a 100,000 x 1,024 canvas (one imported image) and the 1,000-step session of
``bench_viewer.py`` (its HEAD's canvas about 26,000 x 192, with ~800 bands). For each:

- first paint: from navigation to the first pyramid tile drawn (Leaflet's ``tileload``),
  with a cold pyramid cache (``cache/pyramid`` deleted) and a warm one;
- a zoom level change: from ``setZoom(z + 1)`` to every tile of the new level loaded;
- bytes of the first view (every response, from the Resource Timing entries), the largest
  one, and whether any whole composed canvas (``/-/canvas/``) was asked for.

Next to them, today's session page (the baseline commit's code, from ``git archive``, serving
the same store): its time to the load event and its bytes.

Run: ``.venv/bin/python benchmarks/bench_workspace.py [--baseline fb36a3f]``
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scale import baseline_tree  # noqa: E402
from bench_viewer import build_session  # noqa: E402

from exquisite_store.store import Store  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BYTES = """() => {
  const all = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  return { total: all.reduce((s, e) => s + (e.transferSize || e.encodedBodySize || 0), 0),
           largest: Math.max(...all.map((e) => e.encodedBodySize || 0)),
           urls: all.map((e) => e.name), count: all.length };
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(store: Path, tree: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from exquisite_store.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--store", str(store), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=str(tree),
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/", timeout=1)
            return proc, base
        except OSError:
            time.sleep(0.1)
    raise SystemExit("exq serve did not start")


def wide_canvas(width: int, height: int) -> np.ndarray:
    """A picture with texture everywhere (gradients and noise), cheap to make."""
    rng = np.random.default_rng(1)
    x = np.arange(width, dtype=np.uint32)
    y = np.arange(height, dtype=np.uint32)[:, None]
    arr = np.empty((height, width, 3), np.uint8)
    arr[:, :, 0] = (x // 7 + y // 3) % 256
    arr[:, :, 1] = (x // 13) % 256
    arr[:, :, 2] = rng.integers(0, 40, (height, width), dtype=np.uint8) + (y % 200).astype(np.uint8)
    return arr


def workspace_view(page, base: str, session: str) -> dict:
    page.goto(f"{base}/s/{session}", wait_until="commit", timeout=600_000)
    page.wait_for_function(
        "() => window.exqWorkspace && window.exqWorkspace.timings.firstTile !== null",
        timeout=600_000,
    )
    first = page.evaluate("window.exqWorkspace.timings.firstTile")
    page.wait_for_function("() => window.exqWorkspace.timings.loads.length > 0", timeout=600_000)
    shown = page.evaluate("window.exqWorkspace.timings.loads[0]")
    got = page.evaluate(BYTES)
    t0 = page.evaluate(
        """() => new Promise((done) => { const m = window.exqWorkspace.map; const n = window.exqWorkspace.timings.loads.length;
             const t0 = performance.now(); m.setZoom(m.getZoom() + 1, {animate: false});
             const wait = () => window.exqWorkspace.timings.loads.length > n ? done(performance.now() - t0) : setTimeout(wait, 5);
             wait(); })"""
    )
    return {
        "first_tile_ms": first,
        "view_loaded_ms": shown,
        "zoom_ms": t0,
        "bytes": got["total"],
        "largest": got["largest"],
        "requests": got["count"],
        "composed": sum("/-/canvas/" in u for u in got["urls"]),
    }


def baseline_view(page, base: str, session: str) -> dict:
    page.goto(f"{base}/s/{session}", wait_until="load", timeout=600_000)
    t = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    got = page.evaluate(BYTES)
    return {
        "load_ms": t,
        "bytes": got["total"],
        "largest": got["largest"],
        "requests": got["count"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="fb36a3f")
    ap.add_argument("--width", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-workspace-"))
    try:
        root = tmp / "store"
        store = Store.init(root)
        t0 = time.perf_counter()
        store.create_session("wide", wide_canvas(args.width, 1024), title="wide")
        build_session(store, "deep", args.steps, 25, 8, 120)
        print(
            f"built: {args.width:,} x 1,024 canvas and a {args.steps:,}-step session in {time.perf_counter() - t0:.1f} s"
        )
        old = baseline_tree(args.baseline, tmp)
        rows = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            proc, base = serve(root, ROOT)
            try:
                for session in ("wide", "deep"):
                    shutil.rmtree(root / "cache" / "pyramid", ignore_errors=True)
                    for cache in ("cold", "warm"):
                        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                        rows.append((session, cache, workspace_view(ctx.new_page(), base, session)))
                        ctx.close()
            finally:
                proc.terminate()
                proc.wait()
            proc, base = serve(root, old)
            try:
                before = {}
                for session in ("wide", "deep"):
                    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                    before[session] = baseline_view(ctx.new_page(), base, session)
                    ctx.close()
            finally:
                proc.terminate()
                proc.wait()
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "\n| session | pyramid cache | first tile ms | view loaded ms | zoom +1 ms | first view bytes | largest response | requests | whole canvases |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for session, cache, r in rows:
        print(
            f"| {session} | {cache} | {r['first_tile_ms']:.0f} | {r['view_loaded_ms']:.0f} | {r['zoom_ms']:.0f} | "
            f"{r['bytes']:,} | {r['largest']:,} | {r['requests']} | {r['composed']} |"
        )
    print(f"\ntoday's session page ({args.baseline}: the SVG tree of thumbnails, no canvas):")
    print("| session | load ms | bytes | largest response | requests |")
    print("| --- | --- | --- | --- | --- |")
    for session, r in before.items():
        print(
            f"| {session} | {r['load_ms']:.0f} | {r['bytes']:,} | {r['largest']:,} | {r['requests']} |"
        )
    warm = {s: r for s, c, r in rows if c == "warm"}
    cold = {s: r for s, c, r in rows if c == "cold"}
    print(
        f"SUMMARY workspace: first tile of the {args.width:,}-px canvas {warm['wide']['first_tile_ms']:.0f} ms warm / "
        f"{cold['wide']['first_tile_ms']:.0f} ms cold, zoom {warm['wide']['zoom_ms']:.0f} ms, first view "
        f"{warm['wide']['bytes'] / 1e3:.0f} kB (no whole canvas: {warm['wide']['composed'] == 0}); "
        f"{args.steps}-step session {warm['deep']['first_tile_ms']:.0f} ms, zoom {warm['deep']['zoom_ms']:.0f} ms; "
        f"today's page {before['deep']['load_ms']:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
