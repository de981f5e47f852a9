"""The whole store on SeaweedFS: the probe, the CLI, steps, the viewer, kills and gc."""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
import numpy as np
import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.errors import BranchMoved
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc
from exquisite_store.store.leases import StoreBusy
from exquisite_store.store.s3client import Conflict, S3Bucket
from exquisite_store.store.s3probe import ProbeFailed, probe

from . import figures
from . import writer_proc as wp
from .helpers import fixture_array, rng_image
from .s3_helpers import BUCKET

WRITER = Path(wp.__file__)
STRIPPED = ("if-none-match", "if-match")


class StrippingProxy(ThreadingHTTPServer):
    """Forwards every request to an S3 server without its conditional headers (like s3rver)."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in STRIPPED}
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(moto_s3):
    # in front of moto, which does not check signatures (SeaweedFS does: a header
    # removed in flight breaks the signed request before the probe could judge it)
    server = StrippingProxy(moto_s3.endpoint)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def s3_store(seaweedfs) -> Store:
    return Store.init(seaweedfs.url(), endpoint=seaweedfs.endpoint, tile_size=64)


# --- the probe -------------------------------------------------------------------------


def test_the_probe_passes_seaweedfs_and_moto_and_is_recorded(seaweedfs, moto_s3) -> None:
    for server in (seaweedfs, moto_s3):
        url = server.url()
        Store.init(url, endpoint=server.endpoint)
        bucket = S3Bucket(BUCKET, url.split("/", 3)[3], endpoint=server.endpoint)
        got = bucket.get("probe.json")
        assert got is not None, server.name
        rec = msgspec.json.decode(got[0])
        assert rec["race_winners"] == 1 and rec["conditional_delete"] is True
        assert set(rec["checks"]) == {
            "create-twice",
            "if-match-current",
            "if-match-stale",
            "create-race",
            "conditional-delete",
        }
        assert not list(bucket.list("probe/"))  # the probe cleaned up after itself


def test_the_probe_refuses_a_server_that_ignores_conditional_headers(proxy) -> None:
    bucket = S3Bucket(BUCKET, "stripped", endpoint=proxy.endpoint)
    with pytest.raises(ProbeFailed) as err:
        probe(bucket)
    assert err.value.details["check"] == "create-twice"
    assert "If-None-Match" in err.value.message
    assert not list(bucket.list("probe/"))


def test_the_cli_refuses_such_a_server_in_one_line(proxy) -> None:
    res = CliRunner().invoke(
        cli, ["--store", f"s3://{BUCKET}/refused", "--s3-endpoint", proxy.endpoint, "init"]
    )
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "create-twice" in res.output, res.output


# --- the same commands and ids as on disk ------------------------------------------------


def _grow_four_ways(store: Store) -> list[str]:
    store.create_session("g", fixture_array("photo.png")[:96, :128].copy(), title="g")
    ids = []
    for i, d in enumerate(("right", "down", "left", "up")):
        params = {"direction": d, "px": 32, "overlap": 8, "seed": 7 + i, "seam": "feather"}
        req = core.step_request(store, "g", params, prompt="more")
        ids += list(core.grow(store, req).branches.values())
    return ids


def test_steps_on_seaweedfs_have_the_ids_of_steps_on_disk(s3_store: Store, tmp_path) -> None:
    disk = Store.init(tmp_path / "disk", tile_size=64, clock=lambda: 1)
    s3 = Store(s3_store.storage, tile_size=64, clock=lambda: 1)
    assert _grow_four_ways(s3) == _grow_four_ways(disk)
    assert s3.refs.branches("g") == disk.refs.branches("g")
    rep = fsck(s3)
    assert rep.ok and rep.objects == sum(1 for _ in disk.storage.list_objects())
    assert [e.type for e in s3.events("g")] == [e.type for e in disk.events("g")]
    assert [e.new for e in s3.refs.reflog("g/heads/main")] == [
        e.new for e in disk.refs.reflog("g/heads/main")
    ]


def test_the_cli_on_an_s3_store(seaweedfs, tmp_path: Path) -> None:
    url = seaweedfs.url()
    image = tmp_path / "start.png"
    from PIL import Image

    Image.fromarray(rng_image(64, 64)).save(image)
    runner = CliRunner()

    def run(*args: str) -> str:
        res = runner.invoke(cli, ["--store", url, "--s3-endpoint", seaweedfs.endpoint, *args])
        assert res.exit_code == 0, res.output
        return res.output

    assert "created store at " + url in run("init")
    run("new", "garden", str(image))
    out = run("step", "garden", "--px", "32", "--seed", "3")
    assert "committed" in out
    assert run("log", "garden").count("\nstep ") + 1 == 2  # the root and one step
    assert "main" in run("branches", "garden")
    run("fsck")
    assert "reachable" in run("gc", "--dry-run")


def test_the_viewer_serves_an_s3_store(s3_store: Store, seaweedfs) -> None:
    from viewer import create_app

    s3_store.create_session("v", rng_image(64, 96))
    app = create_app(
        {"EXQ_STORE": s3_store.location, "S3_ENDPOINT": seaweedfs.endpoint, "TESTING": True}
    )
    client = app.test_client()
    assert client.get("/").status_code == 200
    page = client.get("/s/v")
    assert page.status_code == 200
    head = s3_store.refs.head("v", "main")
    assert client.get(f"/step/{head}").status_code == 200
    from exquisite_store.store.canvas import iter_tiles

    _, _, tile = next(iter_tiles(s3_store.objects, s3_store.canvas(s3_store.step(head))))
    with client.get(f"/-/objects/{tile}") as got:
        assert got.status_code == 200 and got.data == s3_store.storage.get_object(tile)[1]
    with client.get(f"/-/thumb/{head}.png") as thumb:  # derived: cached outside the store
        assert thumb.status_code == 200 and thumb.data.startswith(b"\x89PNG")


def test_two_writers_on_one_branch_exactly_one_wins(s3_store: Store) -> None:
    root = s3_store.create_session("race", rng_image(48, 64))[1]
    rng = np.random.default_rng(1)
    steps = [wp.fake_step(s3_store, "race", root, rng, tag=str(i)) for i in range(8)]
    results: list[str] = []
    barrier = threading.Barrier(8)

    def racer(sid: str) -> None:
        barrier.wait()
        try:
            s3_store.refs.update("race", "main", root, sid, "race")
            results.append("won")
        except BranchMoved:
            results.append("moved")

    threads = [threading.Thread(target=racer, args=(s,)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["moved"] * 7 + ["won"]
    assert len(s3_store.refs.reflog("race/heads/main")) == 2


# --- kills and gc ----------------------------------------------------------------------


def _spawn(
    store: Store, endpoint: str, report: Path, session: str, *extra: str, count: int = 100000
) -> subprocess.Popen:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    cmd = [sys.executable, str(WRITER), store.location, session, "main", str(count)]
    return subprocess.Popen(
        [*cmd, "--report", str(report), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _reported(report: Path) -> list[str]:
    if not report.exists():
        return []
    text = report.read_text()
    lines = text.split("\n")
    return [ln for ln in (lines if text.endswith("\n") else lines[:-1]) if ln]


def _wait_begin(proc: subprocess.Popen, n: int) -> None:
    assert proc.stdout is not None
    seen = 0
    while seen < n:
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=10)[1]
        seen += line.strip() == "begin"


@pytest.mark.slow
def test_a_writer_sigkilled_mid_commit_leaves_a_store_that_fscks_clean(
    s3_store: Store, seaweedfs, tmp_path: Path
) -> None:
    s3_store.create_session("kill", rng_image(48, 64))
    report = tmp_path / "report"
    rand = random.Random(5)
    for _ in range(4):
        proc = _spawn(s3_store, seaweedfs.endpoint, report, "kill")
        _wait_begin(proc, rand.randint(1, 3))
        time.sleep(rand.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    rep = fsck(s3_store)
    assert rep.ok, (rep.damaged, rep.missing, rep.bad_refs)
    history = {sid for sid, _ in s3_store.history(s3_store.refs.head("kill", "main"))}
    assert set(_reported(report)) <= history  # nothing reported committed was lost
    logged = [e.new for e in s3_store.refs.reflog("kill/heads/main")]
    assert logged[-1] == s3_store.refs.head("kill", "main")  # the newest move is logged


@pytest.mark.slow
def test_gc_racing_writers_deletes_nothing_reachable(
    s3_store: Store, seaweedfs, gateway, tmp_path: Path
) -> None:
    """4 writer processes and gc (grace 0) in a loop, both over two S3 gateways."""
    s3_store.create_session("gc", rng_image(48, 64))
    junk = [s3_store.objects.put_text(f"unreachable {i}") for i in range(20)]
    report = tmp_path / "report"
    ends = (seaweedfs.endpoint, gateway.endpoint)
    writers = [_spawn(s3_store, ends[i % 2], report, "gc") for i in range(4)]
    gcs = [s3_store, Store.open(s3_store.location, endpoint=gateway.endpoint)]
    runs = busy = removed = 0
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            try:
                rep = gc(gcs[(runs + busy) % 2], grace_s=0)
                runs += 1
                removed += len(rep.removed)
            except StoreBusy:
                busy += 1
            time.sleep(0.02)
    finally:
        for p in writers:
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=30)
    committed = _reported(report)
    assert runs >= 1 and len(committed) >= 4, (runs, busy, committed)
    assert removed >= len(junk) and not any(s3_store.storage.has_object(j) for j in junk)
    rep = fsck(s3_store)
    assert rep.ok and not rep.missing, (rep.missing[:3], rep.damaged[:3])
    history = {sid for sid, _ in s3_store.history(s3_store.refs.head("gc", "main"))}
    assert set(committed) <= history
    figures.record(
        "s3-load",
        {"gc_race": {"writers": 4, "gateways": 2, "gc_runs": runs, "gc_busy": busy,
                     "removed": removed, "committed": len(committed), "reachable_lost": 0}},
    )  # fmt: skip


def test_a_missing_bucket_or_store_is_one_line(seaweedfs) -> None:
    runner = CliRunner()
    ep = ["--s3-endpoint", seaweedfs.endpoint]
    res = runner.invoke(cli, ["--store", "s3://no-such-bucket/x", *ep, "log", "g"])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "bucket" in res.output.lower()
    res = runner.invoke(cli, ["--store", seaweedfs.url(), *ep, "log", "g"])
    assert res.exit_code == 1 and "no store at s3://" in res.output, res.output


@pytest.mark.slow
def test_writer_processes_racing_lose_no_update_and_log_every_move(
    s3_store: Store, seaweedfs, tmp_path: Path
) -> None:
    s3_store.create_session("load", rng_image(48, 64))
    report = tmp_path / "report"
    procs = [
        _spawn(s3_store, seaweedfs.endpoint, report, "load", "--mode", "cas", count=10)
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    moves = [tuple(ln.split()) for ln in _reported(report)]
    assert len(moves) == 40
    log = s3_store.refs.reflog("load/heads/main")
    assert len(log) == 41  # the root and every move, none lost
    assert all(a.new == b.old for a, b in zip(log, log[1:], strict=False))  # one chain
    assert {(e.old, e.new) for e in log[1:]} == set(moves)
    assert log[-1].new == s3_store.refs.head("load", "main")


def test_conditional_writes_hold_across_two_gateways(seaweedfs, gateway) -> None:
    """8 threads over two gateways of one SeaweedFS: one create and one CAS win per race.

    The probe races on one gateway; a team behind a load balancer writes through several.
    """
    prefix = seaweedfs.url().split("/", 3)[3]
    buckets = [S3Bucket(BUCKET, prefix, endpoint=e) for e in (seaweedfs.endpoint, gateway.endpoint)]
    for trial in range(10):
        key = f"race/{trial}"
        for round_ in ("create", "cas"):
            etag = "" if round_ == "create" else buckets[1].head(key)[0]
            wins: list[int] = []
            barrier = threading.Barrier(8)

            def go(i: int, key=key, etag=etag, wins=wins, barrier=barrier, r=round_) -> None:
                barrier.wait()
                try:
                    # distinct bytes per round: an ETag is the content's MD5, so a
                    # writer putting the very bytes already there would match it again
                    data = b"%s %d" % (r.encode(), i)
                    buckets[i % 2].put(key, data, create=not etag, if_match=etag)
                    wins.append(i)
                except Conflict:
                    pass

            threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(wins) == 1, (trial, round_, wins)
            got = buckets[(wins[0] + 1) % 2].get(key)  # read through the other gateway
            assert got is not None and got[0] == b"%s %d" % (round_.encode(), wins[0])
