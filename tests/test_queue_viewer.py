"""exq serve --queue: viewers hand steps to RQ workers and stream their progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exquisite_store import core
from exquisite_store.core import queue as q
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from viewer import create_app

from . import figures
from .viewer_helpers import BufferedClient, csrf_of, make_session

HERE = Path(__file__).resolve().parent
BRANCHES = ("main", "b1", "b2", "b3")


@pytest.fixture(params=["disk", pytest.param("s3", marks=pytest.mark.slow)])
def world(request, tmp_path):
    """The store on disk, or on SeaweedFS: then viewers and workers use its two gateways."""
    if request.param == "s3":
        seaweedfs = request.getfixturevalue("seaweedfs")
        gateway = request.getfixturevalue("gateway")
        store = Store.init(seaweedfs.url(), endpoint=seaweedfs.endpoint)
        endpoints = [seaweedfs.endpoint, gateway.endpoint]
    else:
        store, endpoints = tmp_path / "store", [None, None]
    world = make_session(store, steps=1)
    for b in BRANCHES[1:]:
        core.create_branch(world["store"], "garden", b, "main")
    world["location"] = world["store"].location
    world["kind"] = request.param
    world["endpoints"] = endpoints
    return world


@pytest.fixture
def conn(redis_url):
    c = q.connect(redis_url)
    c.flushdb()
    return c


def viewer(world: dict, redis_url: str, endpoint: str | None = None, **config):
    app = create_app(
        {"EXQ_STORE": world["location"], "S3_ENDPOINT": endpoint, "TESTING": True,
         "QUEUE_URL": redis_url, **config}
    )  # fmt: skip
    app.test_client_class = BufferedClient
    return app.test_client()


def workers(redis_url: str, n: int, endpoints=(None,)) -> list[subprocess.Popen]:
    """``n`` workers, worker ``i`` on ``endpoints[i % len]`` (an S3 gateway, or None)."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "queue_worker_proc.py"), redis_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **endpoint_env(endpoints[i % len(endpoints)])},
        )  # fmt: skip
        for i in range(n)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def endpoint_env(endpoint: str | None) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint} if endpoint else {}


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait(timeout=10)
        p.stdout.close()


def test_two_viewers_two_workers_twenty_steps(world, conn, redis_url) -> None:
    ends = world["endpoints"]
    viewers = [viewer(world, redis_url, ends[i], JOB_QUEUE=32) for i in range(2)]
    tokens = [csrf_of(v) for v in viewers]
    before = world["store"].last_event_seq("garden")
    procs = workers(redis_url, 2, ends)
    started = time.monotonic()
    try:
        jobs = []
        for i in range(20):
            v, token = viewers[i % 2], tokens[i % 2]
            resp = v.post(
                "/s/garden/extend",
                json={"extension_px": 16, "overlap_px": 4, "branch": BRANCHES[i % 4]},
                headers={"X-CSRF-Token": token},
            )
            assert resp.status_code == 202, resp.get_json()
            jobs.append(resp.get_json()["job"])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            states = viewers[0].get("/-/jobs/garden.json").get_json()
            if all(states.get(j, {}).get("state") in ("succeeded", "failed") for j in jobs):
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"not every job ended: {states}")
        seconds = time.monotonic() - started
    finally:
        stop(procs)
    figures.record("queue", {f"{world['kind']}_20_steps_2_workers_s": round(seconds, 1)})
    store = world["store"]
    assert [states[j]["state"] for j in jobs] == ["succeeded"] * 20
    # five steps on each branch, one after another: one job per head at a time
    for b in BRANCHES:
        depth = sum(1 for _ in store.history(store.refs.head("garden", b)))
        assert depth == 2 + 5, b
    # both viewers' live streams show every phase of every job
    for v in viewers:
        stream = v.get("/-/events/garden?once=1", headers={"Last-Event-ID": str(before)}).get_data(
            as_text=True
        )
        for job in jobs:
            lines = [json.loads(ln[5:]) for ln in stream.splitlines() if ln.startswith("data:")]
            mine = [e for e in lines if e.get("job") == job]
            kinds = [e["type"] for e in mine]
            assert kinds[0] == "queued" and kinds[-1] == "succeeded", kinds
            # a job whose branch another worker was still growing waits first, then starts
            before_start = mine[1 : kinds.index("started")]
            assert all(e.get("phase") == "wait" for e in before_start), before_start
            phases = {e["phase"] for e in mine if "phase" in e}
            assert {"plan", "generate", "validate", "commit"} <= phases
    assert fsck(store).ok


def test_cancel_reaches_a_queued_job(world, conn, redis_url) -> None:
    v = viewer(world, redis_url, world["endpoints"][0])
    token = csrf_of(v)
    resp = v.post(
        "/s/garden/extend",
        json={"extension_px": 16, "overlap_px": 4},
        headers={"X-CSRF-Token": token},
    )
    job = resp.get_json()["job"]
    resp = v.post(
        f"/-/jobs/garden/{job}/cancel",
        headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"},
    )
    assert resp.status_code == 202, resp.get_json()
    procs = workers(redis_url, 1, world["endpoints"][1:])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = v.get("/-/jobs/garden.json").get_json().get(job, {})
            if state.get("state") in ("succeeded", "failed"):
                break
            time.sleep(0.2)
    finally:
        stop(procs)
    # a waiting job that was cancelled never runs: its worker says so, nothing moves
    assert state["state"] == "failed" and "before it started" in state["result"]["message"]
    assert world["store"].refs.head("garden", "main") == world["steps"][-1]


def test_a_full_queue_is_429(world, conn, redis_url) -> None:
    v = viewer(world, redis_url, world["endpoints"][0], JOB_QUEUE=2)
    token = csrf_of(v)
    codes = [
        v.post(
            "/s/garden/extend",
            json={"extension_px": 16, "overlap_px": 4},
            headers={"X-CSRF-Token": token},
        ).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 429]
