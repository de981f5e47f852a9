"""Load: eight step processes on one session, the viewer under concurrent requests
while steps run, and the viewer under half-open connections and many live streams.

One ``FIGURES:`` line for the whole module (also appended to tests/artifacts/figures.jsonl).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exquisite_store.errors import StepFailure
from exquisite_store.manifests import Attempt
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from exquisite_store.store.canvas import iter_tiles
from exquisite_store.store.fsck import fsck

from . import fault_helpers as fh
from . import figures
from . import net_helpers as net
from .fakes.backends import PatternBackend, WrongSizeBackend
from .helpers import rng_image

# the fault, load and crash suites run in `make test-all` (CI), not in the fast loop
pytestmark = pytest.mark.slow
FIG: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if FIG:
        figures.record("load", FIG)


# --- 5. eight processes, shared and own branches -------------------------------------------------


def many_writers(
    tmp_path: Path,
    procs: int,
    steps: int,
    shared: int,
    store: Store | None = None,
    envs: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """``shared`` drivers grow ``main``, the others each their own branch; all checked.

    On a fresh disk store, or on ``store`` (an S3 one: driver ``i`` runs with ``envs[i]``
    added to its environment, e.g. its gateway's ``AWS_ENDPOINT_URL``).
    """
    st = store or Store.init(tmp_path / "store", tile_size=64)
    _, root = st.create_session("load", rng_image(48, 64, seed=8))
    branches = ["main"] * shared + [f"solo-{i}" for i in range(procs - shared)]
    for b in set(branches) - {"main"}:
        st.refs.update("load", b, None, root, "branch for a load driver")
    barrier = tmp_path / "go"
    reports = [tmp_path / f"driver-{i}.txt" for i in range(procs)]
    drivers = [
        subprocess.Popen(
            fh.driver_cmd(st.location, "load", b, steps)
            + ["--backend", "pattern", "--seed", str(10_000 * i), "--px", "8", "--overlap", "2"]
            + ["--report", str(rep), "--barrier", str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **envs[i]} if envs else None,
        )
        for i, (b, rep) in enumerate(zip(branches, reports, strict=True))
    ]
    try:
        fh.start_together(tmp_path, barrier, drivers)
        started = time.monotonic()
        results = [d.communicate(timeout=600) for d in drivers]
        seconds = time.monotonic() - started
    finally:
        for d in drivers:
            if d.poll() is None:
                fh.kill9(d)
    for d, (out, err) in zip(drivers, results, strict=True):
        assert d.returncode == 0, f"driver failed ({d.returncode}): {out[-500:]}\n{err[-2000:]}"
    summaries = [json.loads(out.splitlines()[-1]) for out, _ in results]

    attempts = {a.id: a for a in st.attempts("load")}
    per_branch: dict[str, list[str]] = {}
    moved = Counter()
    for b, rep, summary in zip(branches, reports, summaries, strict=True):
        lines = fh.report_lines(rep)
        assert not [ln for ln in lines if ln[0] == "failed"], "a loser failed otherwise"
        commits = [ln[1] for ln in lines if ln[0] == "commit"]
        assert len(commits) == steps == summary["commits"]
        per_branch.setdefault(b, []).extend(commits)
        for ln in lines:
            if ln[0] != "moved":
                continue
            # every loser got BranchMoved, and its step stays whole, named by its attempt
            moved[b] += 1
            _, step_id, attempt_id = ln
            assert attempts[attempt_id].kind == "BranchMoved"
            att = st.objects.get_manifest(attempt_id, Attempt)
            assert att.step_id == step_id and att.branch == b
            st.canvas_pixels(st.step(step_id))
        assert summary["moved"] == sum(1 for ln in lines if ln[0] == "moved")
    for b in set(branches) - {"main"}:
        assert moved[b] == 0, "a branch with one writer lost a race"

    heads = fh.check_heads_whole(st, "load")
    for b, commits in per_branch.items():
        hist = fh.history(st, heads[b])
        # no lost update: every reported commit is in its branch's history, nothing else is
        assert set(commits) == set(hist) - {root}, f"{b}: lost or foreign steps"
        assert len(hist) == len(commits) + 1 and hist[-1] == root
        # the reflog is complete: a chain from the branch's creation to its head
        ref = f"load/heads/{b}"
        assert not fh.reflog_chain_problems(st, ref), fh.reflog_chain_problems(st, ref)
        log = st.refs.reflog(ref)
        assert len(log) == len(commits) + 1
        assert [e.new for e in log[1:]] == list(reversed(hist[:-1]))

    # events are numbered without a gap or a repeat, and every job ended
    events = st.events("load")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    ends = Counter(e.type for e in events if e.type in ("started", "succeeded", "failed"))
    assert ends["started"] == ends["succeeded"] + ends["failed"]
    assert ends["succeeded"] == procs * steps
    assert ends["failed"] == sum(moved.values())

    rep = fsck(st)
    assert rep.ok and not rep.locks, (rep.damaged, rep.missing, rep.bad_refs, rep.locks)
    tries = sum(s["tries"] for s in summaries)
    return {
        "procs": procs,
        "shared_main": shared,
        "own_branch": procs - shared,
        "steps_each": steps,
        "commits": procs * steps,
        "tries": tries,
        "branch_moved": sum(moved.values()),
        "waited_for_branch": sum(s["waits"] for s in summaries),
        "lost": 0,
        "events": len(events),
        "seconds": round(seconds, 1),
        "commits_per_s": round(procs * steps / seconds, 1),
    }


def test_eight_writers_fifty_steps(tmp_path: Path) -> None:
    """8 processes x 50 committed steps: 4 race on main, 4 each grow their own branch."""
    figs = many_writers(tmp_path, procs=8, steps=50, shared=4)
    FIG["writers_8x50"] = figs
    # writers of one head queue behind each other (the branch lock) instead of racing:
    # no step is paid for and then lost to BranchMoved, and there was contention
    assert figs["branch_moved"] == 0
    assert figs["waited_for_branch"] >= 1, "no writer waited: the test did not test contention"


# --- 6. the viewer under concurrent load while steps run ----------------------------------------


def viewer_session(root: Path) -> tuple[Store, dict[str, list[str]]]:
    """A session with steps on two branches and an attempt; the URLs to fetch."""
    st = Store.init(root, tile_size=64)
    st.create_session("load", rng_image(64, 80, seed=9), title="viewer <load>")
    ids = []
    for i in range(10):
        out = run_step(
            st,
            "load",
            backend_impl=PatternBackend(),
            direction=("right", "down", "left", "up")[i % 4],
            extension_px=16,
            overlap_px=4,
            seed=i,
        )
        ids.append(out.step_ids[0])
    side = run_step(
        st, "load", parent=ids[3], branch="side", backend_impl=PatternBackend(), n=2, seed=5
    ).step_ids
    with pytest.raises(StepFailure):  # recorded as an attempt
        run_step(st, "load", backend_impl=WrongSizeBackend(), extension_px=8, overlap_px=2)
    attempt = st.attempts("load")[-1].id
    steps = [*ids, *side]
    tiles = sorted({t[2] for s in steps for t in iter_tiles(st.objects, st.canvas(st.step(s)))})
    urls = {
        "page": ["/", "/s/load", f"/attempt/{attempt}"]
        + [f"/step/{s}" for s in steps]
        + [f"/compare?ids={ids[0]},{ids[-1]}", f"/compare?ids={side[0]},{side[1]},{ids[3]}"],
        "json": ["/index.json", "/s/load.json", f"/attempt/{attempt}.json"]
        + [f"/step/{s}.json" for s in steps]
        + [f"/compare.json?ids={ids[1]},{ids[2]}"],
        "tile": [f"/-/objects/{t}" for t in tiles],
    }
    return st, urls


def test_viewer_under_load_while_steps_run(tmp_path: Path) -> None:
    threads_n, per_thread = 4, 200
    st, urls = viewer_session(tmp_path / "store")
    kinds = list(urls)
    results: list[tuple[str, str, int, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    jobs: list[str] = []
    with fh.serving(st.root, workers=2, log=tmp_path / "serve.log") as srv:

        def keep_two_steps_running() -> None:
            # two steps in flight at any time: one on main, one on side
            deadline = time.monotonic() + 120
            in_flight: dict[str, str] = {}
            seed = 0
            while not stop.is_set() and time.monotonic() < deadline and len(jobs) < 400:
                states = srv.jobs("load")
                for b in ("main", "side"):
                    job = in_flight.get(b)
                    if job is None or states[job]["state"] in ("succeeded", "failed"):
                        seed += 1
                        job = srv.extend(
                            "load",
                            branch=b,
                            backend="patchmatch",
                            extension_px=16,
                            overlap_px=4,
                            direction="right",
                            seed=seed,
                        )
                        in_flight[b] = job
                        jobs.append(job)
                time.sleep(0.02)

        def client(i: int) -> None:
            rnd = random.Random(i)
            try:
                for n in range(per_thread):
                    kind = kinds[n % len(kinds)]
                    if kind == "json" and rnd.random() < 0.25:
                        # a step committed during the run: follow it from the session's tree
                        nodes = srv.get_json("/s/load.json")["nodes"]
                        node = rnd.choice([x for x in nodes if not x["failed"]])
                        path = f"/step/{node['id']}" + rnd.choice(("", ".json"))
                    else:
                        path = rnd.choice(urls[kind])
                    t0 = time.perf_counter()
                    status, _, body = srv.request("GET", path, timeout=60)
                    dt = time.perf_counter() - t0
                    with lock:
                        results.append((kind, path, status, dt))
                    if status != 200:
                        with lock:
                            errors.append(f"{status} {path}: {body[:200]!r}")
            except Exception as exc:  # the assertion below names it
                with lock:
                    errors.append(f"client {i}: {type(exc).__name__}: {exc}")

        stepper = threading.Thread(target=keep_two_steps_running, daemon=True)
        stepper.start()
        while len(jobs) < 2:
            time.sleep(0.01)
        clients = [threading.Thread(target=client, args=(i,)) for i in range(threads_n)]
        started = time.monotonic()
        for t in clients:
            t.start()
        for t in clients:
            t.join(timeout=300)
        seconds = time.monotonic() - started
        stop.set()
        stepper.join(timeout=30)
        assert not stepper.is_alive() and not any(t.is_alive() for t in clients)
        states = srv.wait_jobs("load", jobs, timeout=60)

    server_errors = [r for r in results if r[2] >= 500]
    outcomes = Counter(s["state"] for s in states.values())
    failed = Counter(s["result"].get("kind") for s in states.values() if s["state"] == "failed")
    lat = [r[3] * 1000 for r in results]
    by_kind = {k: [r[3] * 1000 for r in results if r[0] == k] for k in kinds}
    FIG["viewer"] = {
        "threads": threads_n,
        "requests": len(results),
        "5xx": len(server_errors),
        "non_200": sum(1 for r in results if r[2] != 200),
        "p50_ms": round(fh.percentile(lat, 50), 1),
        "p95_ms": round(fh.percentile(lat, 95), 1),
        "max_ms": round(max(lat), 1),
        **{
            f"{k}_p50_p95_ms": f"{fh.percentile(v, 50):.1f}/{fh.percentile(v, 95):.1f}"
            for k, v in by_kind.items()
            if v
        },
        "steps_during_load": len(jobs),
        "steps_succeeded": outcomes["succeeded"],
        "steps_failed": dict(failed),
        "req_per_s": round(len(results) / seconds, 1),
        "seconds": round(seconds, 1),
    }
    assert not errors, errors[:10]
    assert len(results) == threads_n * per_thread and not server_errors
    assert outcomes["succeeded"] >= 2 and not failed, failed
    rep = fsck(st)
    assert rep.ok and not rep.locks


# --- 7. the viewer as a network service: half-open connections and many live streams ---------


def test_viewer_under_half_open_connections_and_live_streams(tmp_path: Path) -> None:
    """1,000 half-open connections and 200 live streams: pages still answer, p95 < 250 ms.

    Against a real ``exq serve``: the half-open connections completed the handshake and
    sent half a request; 200 tabs open a live progress stream each (the first
    ``SSE_MAX_STREAMS`` stay open and are read, the others get 503 with Retry-After);
    meanwhile pages, JSON twins and tiles are fetched. Then the viewer recovers without a
    restart: it closes the idle half-open connections itself, frees every stream slot,
    and answers a burst of 300 quick ``GET /``.
    """
    half_n, streams_n, requests_n = 1000, 200, 300
    net.allow_descriptors(half_n + streams_n + 512)
    st, urls = viewer_session(tmp_path / "store")
    for k in range(3000):  # a session that has run a while: a long event log to follow
        st.append_event("load", "progress", job="earlier", phase=f"phase-{k}")
    pages = urls["page"] + urls["json"] + urls["tile"][:5]
    with fh.serving(st.root, workers=1, log=tmp_path / "serve.log") as srv:
        pid = srv.proc.pid
        idle = [srv.request("GET", p)[0] for p in pages]
        assert set(idle) == {200}

        t0 = time.monotonic()
        half = net.half_open(srv.port, half_n)
        open_half_s = time.monotonic() - t0
        streams = [net.open_stream(srv.port, "/-/events/load?for=60") for _ in range(streams_n)]
        live = [s for s, status, _ in streams if status == 200]
        refused = [(status, h) for _, status, h in streams if status != 200]
        for s, status, _ in streams:
            if status != 200:
                s.close()
        drain = net.Drain(live)

        lat: list[float] = []
        statuses: Counter = Counter()
        for i in range(requests_n):
            path = pages[i % len(pages)]
            t1 = time.perf_counter()
            status, _, _ = srv.request("GET", path, timeout=30)
            lat.append((time.perf_counter() - t1) * 1000)
            statuses[status] += 1
        streamed = drain.bytes
        drain.stop()

        # recovery, nobody restarting anything: the idle half-open connections are closed
        # by the server itself, the streams' slots come back when their tabs go away
        for s in live:
            s.close()
        reclaimed_s = net.wait_closed_by_server(half, timeout=90)
        for s in half:
            s.close()
        time.sleep(1)  # a closed stream notices at its next keep-alive (0.3 s)
        again = [net.open_stream(srv.port, "/-/events/load?for=1") for _ in range(len(live))]
        for s, _, _ in again:
            s.close()
        results: list[int] = []
        t2 = time.monotonic()
        burst = [
            threading.Thread(target=lambda: results.append(srv.request("GET", "/", timeout=60)[0]))
            for _ in range(300)
        ]
        for t in burst:
            t.start()
        for t in burst:
            t.join(timeout=120)
        burst_s = time.monotonic() - t2
        after = [srv.request("GET", p)[0] for p in pages]
        assert srv.proc.poll() is None and srv.proc.pid == pid  # the same server throughout

    p95 = fh.percentile(lat, 95)
    FIG["network"] = {
        "half_open": half_n,
        "opened_half_open_s": round(open_half_s, 2),
        "streams_asked": streams_n,
        "streams_live": len(live),
        "streams_503": len(refused),
        "stream_bytes_during_load": streamed,
        "requests": requests_n,
        "non_200": sum(v for k, v in statuses.items() if k != 200),
        "p50_ms": round(fh.percentile(lat, 50), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(max(lat), 1),
        "half_open_closed_by_server_s": round(reclaimed_s, 1) if reclaimed_s else None,
        "slots_back": sum(1 for _, status, _ in again if status == 200),
        "burst_300_get_s": round(burst_s, 2),
    }
    assert statuses == Counter({200: requests_n}), statuses
    assert p95 < 250, f"p95 {p95:.0f} ms under load"
    assert 0 < len(live) < streams_n and streamed > 0
    assert all(status == 503 and h.get("retry-after") for status, h in refused), refused[:3]
    assert reclaimed_s is not None, "half-open connections outlived the idle timeout"
    assert [status for _, status, _ in again] == [200] * len(live), "a stream slot leaked"
    assert results == [200] * 300 and set(after) == {200}
