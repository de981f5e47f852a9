"""``exq serve`` as a network service: waitress's limits, live streams and their cap,
options that must be refused, and session names that would collide with JSON twins."""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.errors import UserError
from exquisite_store.store import Store
from viewer import create_app
from viewer.server import Limits, listen, make_server

from .fault_helpers import exq_cmd
from .helpers import FIXTURES, rng_image
from .viewer_helpers import make_session


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    return make_session(tmp_path_factory.mktemp("serve") / "store", steps=1)


@pytest.fixture
def world(template, tmp_path) -> dict:
    shutil.copytree(template["store"].root, tmp_path / "store")
    return {**template, "store": Store.open(tmp_path / "store")}


def make_app(world, **config):
    return create_app({"EXQ_STORE": str(world["store"].root), "TESTING": True, **config})


# --- live progress streams: a cap, a tail ---------------------------------------------------------


def test_streams_beyond_the_cap_get_503_and_a_way_to_poll(world) -> None:
    client = make_app(world, SSE_MAX_STREAMS=2).test_client()
    held = [client.get("/-/events/garden?for=30", buffered=False) for _ in range(2)]
    assert [r.status_code for r in held] == [200, 200]
    refused = client.get("/-/events/garden?for=30", headers={"Accept": "application/json"})
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "poll /-/jobs/garden.json" in refused.get_json()["error"]
    assert client.get("/-/jobs/garden.json").status_code == 200  # what the page polls
    held[0].close()  # the browser went away: its slot is free again
    again = client.get("/-/events/garden?for=30", buffered=False)
    assert again.status_code == 200
    for r in (again, held[1]):
        r.close()


def test_finished_streams_give_their_slot_back(world) -> None:
    client = make_app(world, SSE_MAX_STREAMS=1).test_client()
    for _ in range(20):  # ends by itself (once=1), read to the end
        resp = client.get("/-/events/garden?once=1", buffered=True)
        assert resp.status_code == 200 and "event: " in resp.get_data(as_text=True)


def test_a_stream_sends_new_events_once_each_in_order(world) -> None:
    store = world["store"]
    last = store.last_event_seq("garden")
    client = make_app(world).test_client()
    resp = client.get(f"/-/events/garden?after={last}&for=2", buffered=False)
    chunks = iter(resp.response)
    assert next(chunks).startswith(b"retry:")

    def add() -> None:
        for i in range(3):
            store.append_event("garden", "progress", job="live", phase=f"p{i}")
            time.sleep(0.4)

    writer = threading.Thread(target=add)
    writer.start()
    text = b"".join(chunks).decode()
    writer.join()
    resp.close()
    ids = [int(ln[4:]) for ln in text.splitlines() if ln.startswith("id: ")]
    assert ids == [last + 1, last + 2, last + 3]
    assert [ln for ln in text.splitlines() if '"phase"' in ln and "p1" in ln]


# --- waitress: limits per connection --------------------------------------------------------------


@contextlib.contextmanager
def served(app, limits: Limits):
    """The app under waitress in this process, on a free loopback port."""
    socks = listen("127.0.0.1", 0)
    port = socks[0].getsockname()[1]
    server = make_server(app, socks, limits)
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    try:
        yield port
    finally:
        server.close()
        server.task_dispatcher.shutdown(timeout=5)


def get(port: int, path: str = "/index.json") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def closed_by_server(sock: socket.socket, within_s: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (sending ``drip`` every 0.3 s), or None."""
    sock.settimeout(0.3)
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        try:
            if drip:
                sock.sendall(drip)
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:  # reset, broken pipe: closed
            return time.monotonic() - start
    return None


def test_a_client_dripping_its_headers_is_dropped(world) -> None:
    limits = Limits(header_timeout_s=1, idle_timeout_s=60, cleanup_interval_s=1)
    with served(make_app(world), limits) as port:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # a byte now and then keeps the connection "active": only the header deadline ends it
        took = closed_by_server(sock, within_s=10, drip=b"X-Slow: 1\r\n")
        sock.close()
        assert took is not None, "a slowloris client kept its connection for 10 s"
        assert get(port) == 200


def test_a_silent_connection_is_closed_when_idle(world) -> None:
    limits = Limits(idle_timeout_s=2, cleanup_interval_s=1)
    with served(make_app(world), limits) as port:
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        assert get(port) == 200  # they hold no worker thread meanwhile
        took = [closed_by_server(s, within_s=10) for s in silent]
        for s in silent:
            s.close()
        assert None not in took, "a silent connection stayed open"


def test_events_reach_the_client_as_they_happen(world) -> None:
    """waitress writes each chunk as the app yields it: no buffer to fill first."""
    store = world["store"]
    with served(make_app(world), Limits()) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        last = store.last_event_seq("garden")
        sock.sendall(
            f"GET /-/events/garden?after={last}&for=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        got = b""
        while b"retry:" not in got:
            got += sock.recv(4096)
        store.append_event("garden", "progress", job="now", phase="generate")
        deadline = time.monotonic() + 10  # the stream runs for 30 s
        while b'"now"' not in got and time.monotonic() < deadline:
            got += sock.recv(4096)
        sock.close()
        assert b"event: progress" in got and b'"now"' in got


# --- exq serve's options --------------------------------------------------------------------------


def run_exq(store: Path, *args: str) -> subprocess.CompletedProcess:
    # a real process with a timeout: a refused option must never start serving
    return subprocess.run(
        exq_cmd("--store", str(store), *args), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--workers", "0"), "'--workers': 0 is not in the range 1<=x<=32"),
        (("--workers", "-3"), "'--workers': -3 is not in the range"),
        (("--workers", "1000"), "'--workers': 1000 is not in the range"),
        (("--port", "99999"), "'--port': 99999 is not in the range 1<=x<=65535"),
        (("--port", "0"), "'--port': 0 is not in the range"),
        (("--port", "-1"), "'--port': -1 is not in the range"),
    ],
)
def test_serve_refuses_options_out_of_range(world, args: tuple[str, ...], said: str) -> None:
    res = run_exq(world["store"].root, "serve", *args)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stdout == ""
    last = res.stderr.splitlines()[-1]  # click's usage error: one "Error:" line
    assert last.startswith(f"Error: Invalid value for {said}"), res.stderr


def test_serve_on_a_taken_port_says_so_in_one_line(world) -> None:
    root = world["store"].root
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_exq(root, "serve", "--port", str(port))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another exq serve?); choose another with --port"
    ]
    assert res.stdout == ""  # it never said "serving"
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_serve_on_a_host_that_does_not_resolve_says_so(world) -> None:
    # with sign-in, as a host beyond loopback needs (else that refusal comes first)
    res = run_exq(
        world["store"].root,
        *("serve", "--host", "no-such-host.invalid", "--port", "5999", "--auth", "tokens"),
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: cannot listen on no-such-host.invalid:5999: ")


# --- session names that end in .json --------------------------------------------------------------


@pytest.mark.parametrize("name", ["g.json", "G.JSON", "notes.v2.json"])
def test_the_core_refuses_new_session_names_ending_in_json(name: str) -> None:
    start = core.StartImage(rng_image(16, 16, seed=1), "x.png")
    with pytest.raises(UserError, match=r"ends in '\.json'.*JSON twin.*choose another name"):
        core.new_session(name, start)
    assert core.new_session("g.jsonl", start).name == "g.jsonl"  # only the exact suffix


def test_a_session_made_before_the_rule_stays_readable(tmp_path: Path) -> None:
    """Names are checked when a session is made, never when it is read."""
    st = Store.init(tmp_path / "store")
    st.create_session("g.json", rng_image(16, 16, seed=3))  # as an older version could
    runner = CliRunner()
    for args in (("log", "g.json"), ("branches", "g.json"), ("cost", "g.json")):
        res = runner.invoke(cli, ["--store", str(st.root), *args])
        assert res.exit_code == 0, (args, res.output)
    res = runner.invoke(cli, ["--store", str(st.root), "new", "h.json", str(FIXTURES / "flat.png")])
    assert res.exit_code == 1 and res.output.splitlines()[-1].startswith("error: session name")
