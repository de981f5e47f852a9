"""Steps run by RQ workers: queued in the store first, run elsewhere, never paid twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.core import queue as q
from exquisite_store.core.jobs import job_states
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck

from . import figures
from .helpers import TickClock, rng_image

HERE = Path(__file__).resolve().parent
WORKER = [sys.executable, str(HERE / "queue_worker_proc.py")]
SMALL = ["--px", "16", "--overlap", "4"]


@pytest.fixture
def st(tmp_path) -> Store:
    store = Store.init(tmp_path / "store", clock=TickClock())
    start = core.StartImage(rng_image(40, 64, seed=1), "start.png")
    core.create_session(store, core.new_session("s", start))
    return store


@pytest.fixture
def conn(redis_url):
    c = q.connect(redis_url)
    c.flushdb()
    return c


def exq(store: Store, *args: str, author: str = ""):
    return CliRunner().invoke(cli, ["--store", str(store.root), *args], env={"EXQ_AUTHOR": author})


def run_worker(url: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*WORKER, url, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_a_queued_step_runs_on_a_worker_and_its_events_stream(st, conn, redis_url) -> None:
    root = st.refs.head("s", "main")
    res = exq(st, "step", "s", *SMALL, "--queue", redis_url, author="quinn")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("queued job ") and " on cpu" in res.output
    job = res.output.split()[2]
    assert st.refs.head("s", "main") == root  # nothing ran here
    assert job_states(st, "s")[job]["state"] == "queued"

    proc = run_worker(redis_url, "--burst")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    head = st.refs.head("s", "main")
    assert head != root and st.step(head).parent == root
    assert st.step(head).author == "quinn"  # the enqueuer's name, carried to the worker
    assert st.refs.reflog("s/heads/main")[-1].author == "quinn"
    state = job_states(st, "s")[job]
    assert state["state"] == "succeeded" and state["result"]["step_ids"] == [head]
    # every event of the job is in the store and, in the same order, in the live stream
    in_store = [e for e in st.events("s") if e.data.get("job") == job]
    streamed, complete = q.read_stream(conn, str(st.root), "s", 0, block_ms=0)
    assert complete
    assert [e["seq"] for e in streamed] == [e.seq for e in in_store]
    assert [e["type"] for e in streamed][:2] == ["queued", "started"]
    assert streamed[-1]["type"] == "succeeded"
    # resuming from the middle gives the rest; from the end, nothing
    mid = in_store[3].seq
    rest, complete = q.read_stream(conn, str(st.root), "s", mid, block_ms=0)
    assert complete and [e["seq"] for e in rest] == [e.seq for e in in_store[4:]]
    assert q.read_stream(conn, str(st.root), "s", in_store[-1].seq, block_ms=10) == ([], True)
    assert fsck(st).ok


def test_a_gap_in_the_stream_sends_the_reader_to_the_store(st, conn, redis_url) -> None:
    st.on_event = q.StreamSink(conn, str(st.root))
    st.append_event("s", "note", job="x")  # published as seq 1
    st.on_event = None
    st.append_event("s", "note", job="x")  # not published: seq 2 is missing
    st.on_event = q.StreamSink(conn, str(st.root))
    st.append_event("s", "note", job="x")  # seq 3
    events, complete = q.read_stream(conn, str(st.root), "s", 0, block_ms=0)
    assert [e["seq"] for e in events] == [1] and not complete
    events, complete = q.read_stream(conn, str(st.root), "s", 2, block_ms=0)
    assert [e["seq"] for e in events] == [3] and complete


def test_running_a_committed_job_again_commits_nothing(st, conn, redis_url) -> None:
    req = core.step_request(st, "s", {"extension_px": 16, "overlap_px": 4})
    queued = q.enqueue(st, str(st.root), req, conn)
    proc = run_worker(redis_url, "--burst")
    proc.communicate(timeout=120)
    head = st.refs.head("s", "main")
    [payload] = [e.data["request"] for e in st.events("s") if e.type == "queued"]
    assert payload["params"]["seed"] is not None  # fixed when queued
    from rq import Queue

    again = Queue("cpu", connection=conn).enqueue("exquisite_store.core.queue.run", payload)
    proc = run_worker(redis_url, "--burst")
    proc.communicate(timeout=120)
    assert again.return_value() == {"step_ids": [head], "again": True}
    assert st.refs.head("s", "main") == head
    assert len(st.refs.branches("s")) == 1
    assert queued.job == payload["job"]


def test_a_viewer_started_while_a_step_waits_in_the_queue_leaves_it_be(st, conn, redis_url) -> None:
    # a server starting records the jobs of gone processes as abandoned; a queued job
    # belongs to no process here (a worker takes it later), so it must be left alone
    from viewer import create_app

    req = core.step_request(st, "s", {"extension_px": 16, "overlap_px": 4})
    job = q.enqueue(st, str(st.root), req, conn).job
    for queue_url in (redis_url, None):  # a queued viewer and an in-process one
        create_app({"EXQ_STORE": str(st.root), "TESTING": True, "QUEUE_URL": queue_url})
    assert job_states(st, "s")[job]["state"] == "queued"
    assert st.attempts("s") == []
    proc = run_worker(redis_url, "--burst")
    out, _ = proc.communicate(timeout=120)
    assert job_states(st, "s")[job]["state"] == "succeeded", out
    assert st.attempts("s") == []


def test_bad_queues_are_one_line_errors(st, redis_url) -> None:
    res = exq(st, "step", "s", "--queue", "http://127.0.0.1:1/")
    assert res.exit_code == 1
    assert res.output.strip() == "error: --queue takes a redis:// URL, not 'http://127.0.0.1:1/'"
    res = exq(st, "step", "s", "--queue", "redis://127.0.0.1:1/0")
    assert res.exit_code == 1 and res.output.startswith("error: cannot reach the queue at ")
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(cli, ["worker"])
    assert res.exit_code == 2 and "needs --queue" in res.output
    res = CliRunner().invoke(cli, ["worker", "--queue", redis_url, "--queues", "gpu"])
    assert res.exit_code == 1 and "unknown queue 'gpu'" in res.output
    assert [e.type for e in Store.open(st.root).events("s")] == []  # nothing was queued


def wait_line(proc: subprocess.Popen, word: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and line != word:
        line = proc.stdout.readline().strip()
    assert line == word, f"the worker never said {word!r}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["disk", "s3"])
def test_a_killed_worker_is_reaped_and_its_retry_pays_nothing(
    kind, request, tmp_path, conn, redis_url, fake_openai
) -> None:
    """A worker SIGKILLed between its paid answer and its commit: a queued viewer shows
    the step abandoned within 60 s, and the viewer's Retry sends the very same request,
    answered from the run cache (one call to the provider in all), nothing lost.

    On SeaweedFS the worker and the viewer use different S3 gateways of one store.
    """
    from viewer import create_app

    from .viewer_helpers import csrf_of

    if kind == "s3":
        weed, gateway = request.getfixturevalue("seaweedfs"), request.getfixturevalue("gateway")
        st = Store.init(weed.url(), endpoint=weed.endpoint)
        worker_env, viewer_endpoint = {"AWS_ENDPOINT_URL": weed.endpoint}, gateway.endpoint
    else:
        st, worker_env, viewer_endpoint = Store.init(tmp_path / "store"), {}, None
    env = {"OPENAI_API_KEY": "sk-test-queue-0123456789", "OPENAI_BASE_URL": fake_openai.base_url}
    os.environ.update(env)
    procs: list[subprocess.Popen] = []
    try:
        params = {"backend": "openai", "model": "gpt-image-2", "extension_px": 32,
                  "overlap_px": 8, "quality": "low"}  # fmt: skip
        st.create_session("big", rng_image(96, 128, seed=4))
        req = core.step_request(st, "big", params)
        queued = q.enqueue(st, st.location, req, conn)
        proc = run_worker(redis_url, "--slow-commit", "120", env={**env, **worker_env})
        procs.append(proc)
        wait_line(proc, "ready")
        wait_line(proc, "building")
        assert len(fake_openai.calls) == 1  # the call was made and its answer stored
        app = create_app(
            {"EXQ_STORE": st.location, "S3_ENDPOINT": viewer_endpoint, "TESTING": True,
             "QUEUE_URL": redis_url}
        )  # fmt: skip
        viewer = app.test_client()
        jobs = viewer.get("/-/jobs/big.json").get_json()
        assert jobs[queued.job]["state"] == "running"  # a starting viewer leaves it be

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        state = jobs[queued.job]
        while state["state"] == "running" and time.monotonic() - killed < 60:
            time.sleep(0.5)
            state = viewer.get("/-/jobs/big.json").get_json()[queued.job]
        seconds = time.monotonic() - killed
        assert state["state"] == "failed", "the step was not shown abandoned within 60 s"
        assert "abandoned" in state["result"]["message"]
        [attempt] = st.attempts("big")
        assert attempt.id == state["result"]["attempt_id"]
        figures.record("queue", {f"{kind}_abandoned_shown_s": round(seconds, 1)})

        resp = viewer.post(
            f"/attempt/{attempt.id}/retry",
            headers={"X-CSRF-Token": csrf_of(viewer), "X-Requested-With": "fetch"},
        )
        assert resp.status_code == 202, resp.get_data(as_text=True)
        again = resp.get_json()["job"]
        proc = run_worker(redis_url, "--burst", env={**env, **worker_env})
        procs.append(proc)
        out, _ = proc.communicate(timeout=120)
        assert job_states(st, "big")[again]["state"] == "succeeded", out
        assert len(fake_openai.calls) == 1  # answered from the run cache: not paid twice
        head = st.refs.head("big", "main")
        assert core.cached_response_of(st, head)
        assert st.step(head).response.cost_micro_usd == 0
        assert fsck(st).ok
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            p.stdout.close()
        for k in env:
            os.environ.pop(k, None)
