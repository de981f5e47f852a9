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


def exq(store: Store, *args: str):
    return CliRunner().invoke(cli, ["--store", str(store.root), *args])


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
    res = exq(st, "step", "s", *SMALL, "--queue", redis_url)
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


@pytest.mark.slow
def test_a_killed_worker_is_reaped_and_its_retry_pays_nothing(
    st, conn, redis_url, fake_openai
) -> None:
    env = {"OPENAI_API_KEY": "sk-test-queue-0123456789", "OPENAI_BASE_URL": fake_openai.base_url}
    os.environ.update(env)
    try:
        params = {"backend": "openai", "model": "gpt-image-2", "extension_px": 32,
                  "overlap_px": 8, "quality": "low"}  # fmt: skip
        st2 = Store.open(st.root)
        st2.create_session("big", rng_image(96, 128, seed=4))
        req = core.step_request(st2, "big", params)
        queued = q.enqueue(st2, str(st2.root), req, conn)
        proc = run_worker(redis_url, "--slow-commit", "120", env=env)
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and line != "building":
            line = proc.stdout.readline().strip()
        assert line == "building"
        assert len(fake_openai.calls) == 1  # the call was made and its answer stored
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        killed = time.monotonic()
        reaped = 0
        while not reaped and time.monotonic() - killed < 60:
            reaped = q.reap(st2, str(st2.root), conn)
            time.sleep(0.5)
        seconds = time.monotonic() - killed
        assert reaped == 1, "the killed worker's job was not recorded as abandoned in 60 s"
        state = job_states(st2, "big")[queued.job]
        assert state["state"] == "failed"
        [attempt] = [a for a in st2.attempts("big")]
        assert "abandoned" in attempt.message
        print(f"FIGURE queue-reap seconds={seconds:.1f}")

        again = q.requeue(st2, str(st2.root), attempt.id, conn)
        proc = run_worker(redis_url, "--burst", env=env)
        out, _ = proc.communicate(timeout=120)
        assert job_states(st2, "big")[again.job]["state"] == "succeeded", out
        assert len(fake_openai.calls) == 1  # answered from the run cache: not paid twice
        head = st2.refs.head("big", "main")
        assert core.cached_response_of(st2, head)
        assert st2.step(head).response.cost_micro_usd == 0
        assert fsck(st2).ok
    finally:
        for k in env:
            os.environ.pop(k, None)
