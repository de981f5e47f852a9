"""Server-side render time of the viewer's pages for a 1,000-step session (and a 10-step one).

The sessions are built through the store, not a backend: each step's canvas is the
parent's grown by a band (``edit_canvas``), its Step manifest names its parent and a
recipe, and the branch ref is moved by compare-and-swap. The main chain grows right;
every ``--side-every`` main steps a side branch of ``--side-len`` steps leaves it; a
few failed attempts hang off main steps. Pages are rendered through Flask's test
client (no HTTP server, no browser): one warm-up, then ``--reps`` timed renders.

Target: the session page of the 1,000-step session in under 300 ms (median).

Run: ``.venv/bin/python benchmarks/bench_viewer.py [--steps 1000] [--reps 20] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exquisite_store.geometry.rect import Rect  # noqa: E402
from exquisite_store.manifests import (  # noqa: E402
    Attempt,
    Recipe,
    Response,
    Result,
    Scores,
    Step,
    Timing,
)
from exquisite_store.store import Store  # noqa: E402
from exquisite_store.store.canvas import canvas_rect, edit_canvas  # noqa: E402
from viewer import create_app  # noqa: E402

TARGET_MS = 300.0
START = (192, 256)  # height, width of the imported image
BAND = 32  # new pixels per step


@dataclass
class Built:
    """What a synthetic session holds."""

    name: str
    steps: int
    branches: int
    attempts: int
    head: str
    seconds: float


class Builder:
    """Commits synthetic steps to one session, through the store only."""

    def __init__(self, store: Store, name: str, seed: int) -> None:
        self.store, self.name = store, name
        self.rng = np.random.default_rng(seed)
        self.prompt_id = store.objects.put_text("a long quiet shoreline, evening light")
        self.count = 0

    def band(self, h: int, w: int) -> np.ndarray:
        # coarse noise, upscaled: looks like an image, and PNG neither drops nor balloons it
        coarse = self.rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        return np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:h, :w]

    def recipe(self, seed: int) -> Recipe:
        return Recipe(
            direction="right",
            extension_px=BAND,
            overlap_px=8,
            context_px=64,
            immutable_policy="outside-seam",
            seam="match",
            prompt_id=self.prompt_id,
            backend="patchmatch",
            model="",
            seed=seed,
        )

    def grow(self, branch: str, parent_id: str, old: str | None) -> str:
        """One step right from ``parent_id``; CAS ``branch`` from ``old`` to it."""
        store = self.store
        parent = store.canvas(store.step(parent_id))
        prect = canvas_rect(parent)
        patch_rect = Rect(prect.right, prect.y, BAND, prect.h)
        canvas = edit_canvas(
            store.objects, parent, prect.union(patch_rect), self.band(prect.h, BAND), patch_rect
        )
        self.count += 1
        seam = int(self.rng.integers(800, 2500))
        step = Step(
            session=self.name,
            parent=parent_id,
            created_ms=store.clock_ms(),
            recipe=self.recipe(self.count),
            recipe_id=store.objects.put_text(f"recipe {self.count}"),
            response=Response(cost_micro_usd=int(self.count % 3 == 0) * 40_000),
            result=Result(
                canvas_id=store.objects.put_json(canvas),
                width=canvas.width,
                height=canvas.height,
                scores=Scores(seam_permille=seam, parent_seam_permille=1000),
            ),
            timing=Timing(started_ms=store.clock_ms(), phases_ms={"generate": 500, "commit": 3}),
        )
        sid = store.objects.put_json(step)
        store.refs.update(self.name, branch, old, sid, f"bench step {self.count}")
        return sid

    def fail(self, parent_id: str, k: int) -> str:
        return self.store.record_attempt(
            Attempt(
                session=self.name,
                parent=parent_id,
                branch="main",
                created_ms=self.store.clock_ms(),
                failure_kind="DimensionMismatch",
                message=f"the backend returned 300x192, expected 288x192 (bench attempt {k})",
                recipe=self.recipe(10_000 + k),
            )
        )


def build_session(
    store: Store, name: str, steps: int, side_every: int, side_len: int, attempt_every: int
) -> Built:
    """A main chain with a side branch every ``side_every`` main steps; ``steps`` in all."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(len(name))
    _, root = store.create_session(
        name, rng.integers(0, 256, (*START, 3), dtype=np.uint8), title=f"bench {steps}"
    )
    b = Builder(store, name, seed=steps)
    head, main_steps, sides, attempts = root, 0, 0, 0
    with store.writing():
        while b.count < steps:
            head = b.grow("main", head, head)
            main_steps += 1
            if main_steps % attempt_every == 0:
                b.fail(head, attempts)
                attempts += 1
            if main_steps % side_every == 0 and b.count < steps:
                sides += 1
                branch, tip, old = f"side-{sides:03d}", head, None
                for _ in range(min(side_len, steps - b.count)):
                    tip = b.grow(branch, tip, old)
                    old = tip
    return Built(name, b.count, 1 + sides, attempts, head, time.perf_counter() - t0)


def timed(fn: Callable[[], None], reps: int) -> tuple[float, float, list[float]]:
    """Median and p95 (ms) of ``reps`` calls after one warm-up."""
    fn()
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return statistics.median(ms), p95, ms


def getter(client, url: str) -> tuple[Callable[[], None], dict]:
    info: dict = {}

    def fetch() -> None:
        resp = client.get(url, buffered=True)
        assert resp.status_code == 200, (url, resp.status_code, resp.get_data(as_text=True)[:300])
        info["bytes"] = len(resp.data)

    return fetch, info


def pages(built: Built) -> list[tuple[str, str]]:
    return [
        ("session page", f"/s/{built.name}"),
        ("session .json", f"/s/{built.name}.json"),
        ("step page (head)", f"/step/{built.head}"),
        ("sessions index", "/"),
    ]


def build_many(store: Store, sessions: int, branches: int) -> None:
    """``sessions`` sessions of ``branches`` branches each (every branch at the root)."""
    image = np.random.default_rng(7).integers(0, 256, (*START, 3), dtype=np.uint8)
    for i in range(sessions):
        name = f"s{i:03d}"
        _, root = store.create_session(name, image)
        for b in range(branches - 1):
            store.refs.update(name, f"b{b:02d}", None, root, "bench: a branch")


def cold_ms(root: Path, url: str) -> float:
    """One render by a fresh app (empty manifest cache): the first visit after a restart."""
    client = create_app({"EXQ_STORE": str(root), "TESTING": True}).test_client()
    t0 = time.perf_counter()
    resp = client.get(url, buffered=True)
    assert resp.status_code == 200
    return (time.perf_counter() - t0) * 1000


def thumbs_first_visit(client, session: str) -> tuple[int, float]:
    """Every thumbnail the session page's tree asks for, made the first time (seconds)."""
    nodes = client.get(f"/s/{session}.json").get_json()["nodes"]
    ids = [n["id"] for n in nodes if not n["failed"]]
    t0 = time.perf_counter()
    for sid in ids:
        assert client.get(f"/-/thumb/{sid}.png", buffered=True).status_code == 200
    return len(ids), time.perf_counter() - t0


def profile(client, url: str, top: int) -> str:
    client.get(url, buffered=True)  # warm, as the timed renders are
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        client.get(url, buffered=True)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--baseline-steps", type=int, default=10)
    ap.add_argument("--side-every", type=int, default=20)
    ap.add_argument("--side-len", type=int, default=4)
    ap.add_argument("--attempt-every", type=int, default=100)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="Profile even when the target is met.")
    ap.add_argument("--top", type=int, default=25, help="Rows of each profile listing.")
    ap.add_argument("--no-thumbs", action="store_true", help="Skip the first-visit thumbnails.")
    ap.add_argument("--tmp", type=Path, default=None, help="Directory for the temp store.")
    ap.add_argument("--many", default="50x20", help="SESSIONSxBRANCHES for the index case.")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-viewer-", dir=args.tmp) as tmp_s:
        # one store per session, so the sessions index of each lists only its own
        roots = {"small": Path(tmp_s) / "small", "big": Path(tmp_s) / "big"}
        n_sessions, n_branches = (int(x) for x in args.many.split("x"))
        many = Path(tmp_s) / "many"
        build_many(Store.init(many), n_sessions, n_branches)
        index_many, index_many_p95, _ = timed(
            getter(create_app({"EXQ_STORE": str(many), "TESTING": True}).test_client(), "/")[0],
            max(5, args.reps // 4),
        )
        small = build_session(
            Store.init(roots["small"]),
            "small",
            args.baseline_steps,
            args.side_every,
            args.side_len,
            args.attempt_every,
        )
        big = build_session(
            Store.init(roots["big"]),
            "big",
            args.steps,
            args.side_every,
            args.side_len,
            args.attempt_every,
        )
        for s in (small, big):
            print(
                f"built {s.name}: {s.steps} steps, {s.branches} branches, {s.attempts} attempts "
                f"in {s.seconds:.1f}s"
            )
        clients = {
            k: create_app({"EXQ_STORE": str(r), "TESTING": True}).test_client()
            for k, r in roots.items()
        }
        cold = {k: cold_ms(roots[k], f"/s/{k}") for k in roots}

        print(f"\nwarm renders through the Flask test client: median and p95 of {args.reps}")
        print(
            f"{'page':<18} | {small.steps:>5}-step ms {'p95':>6} | {big.steps:>5}-step ms "
            f"{'p95':>6} {'KB':>6} | {'ratio':>6}"
        )
        results = {}
        for (label, url_big), (_, url_small) in zip(pages(big), pages(small), strict=True):
            fetch_small, _ = getter(clients["small"], url_small)
            fetch_big, info = getter(clients["big"], url_big)
            s_med, s_p95, _ = timed(fetch_small, args.reps)
            b_med, b_p95, _ = timed(fetch_big, args.reps)
            results[label] = b_med
            print(
                f"{label:<18} | {s_med:14.1f} {s_p95:6.1f} | {b_med:14.1f} {b_p95:6.1f} "
                f"{info['bytes'] / 1024:6.0f} | {b_med / s_med:5.1f}x"
            )
        print(
            f"{'session page, cold':<18} | {cold['small']:14.1f} {'':>6} | {cold['big']:14.1f} "
            f"{'':>6} {'':>6} | {cold['big'] / cold['small']:5.1f}x   (1 render, fresh app)"
        )
        print(
            f"{'index ' + args.many:<18} | {index_many:14.1f} {index_many_p95:6.1f} |"
            f"   ({n_sessions} sessions of {n_branches} branches: the index reads each "
            "session's folder, never every ref)"
        )
        results[f"index of {n_sessions} sessions x {n_branches} branches"] = index_many
        client = clients["big"]
        if not args.no_thumbs:
            n, secs = thumbs_first_visit(client, big.name)
            print(
                f"then the browser asks for the tree's {n} thumbnails: {secs:.1f} s of server "
                f"time to make them the first time ({secs / n * 1000:.1f} ms each), cached after"
            )

        met = results["session page"] < TARGET_MS
        print(
            f"\nTARGET session page of {big.steps} steps < {TARGET_MS:.0f} ms: "
            f"median {results['session page']:.1f} ms -> {'met' if met else 'MISSED'}"
        )
        print(
            f"SUMMARY viewer: session page of {big.steps} steps {results['session page']:.1f} ms "
            f"median (target < {TARGET_MS:.0f}: {'ok' if met else 'MISSED'}); "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in results.items() if k != "session page")
        )
        if args.profile or not met:
            print(f"\nprofile of 5 warm renders of /s/{big.name}:")
            print(profile(client, f"/s/{big.name}", args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
