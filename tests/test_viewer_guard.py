"""Who may talk to the viewer: Host names (DNS rebinding), origins of writes, protective
headers, pages the CSP leaves whole, and a signing secret that survives a restart."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from html.parser import HTMLParser
from pathlib import Path

import pytest

from exquisite_store.store import Store, secret_file
from exquisite_store.store.canvas import iter_tiles
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc
from viewer import create_app
from viewer.export import export_session

from .viewer_helpers import BufferedClient, csrf_of, make_session

REBOUND = "rebind.attacker.example:5000"  # a domain its owner points at 127.0.0.1


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    return make_session(tmp_path_factory.mktemp("guard") / "store")


@pytest.fixture
def world(template, tmp_path) -> dict:
    """A fresh copy of one session's store (steps, a 2-candidate branch, an attempt)."""
    shutil.copytree(template["store"].root, tmp_path / "store")
    return {**template, "store": Store.open(tmp_path / "store")}


def make_app(world, **config):
    app = create_app({"EXQ_STORE": str(world["store"].root), "TESTING": True, **config})
    app.test_client_class = BufferedClient
    return app


@pytest.fixture
def client(world):
    return make_app(world).test_client()


def some_tile(world) -> str:
    st = world["store"]
    return next(iter_tiles(st.objects, st.canvas(st.step(world["steps"][0]))))[2]


# --- DNS rebinding: the Host header ------------------------------------------------------------


def test_a_rebound_domain_reads_nothing_and_starts_nothing(world, client) -> None:
    root = world["store"].root
    before = files(root)
    step = world["steps"][0]
    reads = ["/", "/index.json", "/s/garden", "/s/garden.json", f"/step/{step}"]
    reads += [f"/step/{step}.json", f"/attempt/{world['attempt']}"]
    reads += [f"/-/objects/{some_tile(world)}", "/-/jobs/garden.json", "/-/events/garden?once=1"]
    reads += ["/static/app.js", "/s/garden/estimate.json?extension_px=16"]
    for url in reads:
        resp = client.get(url, headers={"Host": REBOUND})
        body = resp.get_data(as_text=True)
        assert resp.status_code == 400, (url, resp.status_code)
        assert "is not served here" in body and "127.0.0.1" in body, body
        assert step not in body and "garden" not in body.replace("/garden", "")
        assert "csrf" not in body.lower() and "Set-Cookie" not in resp.headers
    with client.session_transaction() as sess:  # even holding a valid token
        sess["csrf"] = "token"
    for url, body in (
        ("/s/garden/extend", {"extension_px": 16, "overlap_px": 4}),
        ("/s/garden/branch", {"branch": "stolen", "step": step}),
        ("/-/new", {"name": "planted", "fixture": "flat.png"}),
    ):
        resp = client.post(url, json=body, headers={"Host": REBOUND, "X-CSRF-Token": "token"})
        assert resp.status_code == 400 and "is not served here" in resp.get_data(as_text=True)
    assert files(root) == before, "a refused request wrote to the store"
    assert set(world["store"].refs.branches("garden")) == {"main", "side", "side~2"}


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:5000", "127.0.0.1", "localhost:5000", "LOCALHOST", "localhost.:5000", "[::1]:5000"],
)
def test_loopback_names_are_served(client, host: str) -> None:
    assert client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1.nip.io:5000",
        "localhost.attacker.example",
        "evil:5000",
        "[::2]:5000",
        "0.0.0.0:5000",
        "192.168.1.5:5000",
        "[::1",
        "",
    ],
)
def test_other_names_are_refused(client, host: str) -> None:
    resp = client.get("/index.json", headers={"Host": host})
    assert resp.status_code == 400
    assert "is not served here" in resp.get_json()["error"]


def test_the_bound_name_is_served_too(world) -> None:
    client = make_app(world, SERVE_HOST="viewer.lan").test_client()
    assert client.get("/", headers={"Host": "viewer.lan:5000"}).status_code == 200
    assert client.get("/", headers={"Host": "localhost:5000"}).status_code == 200
    assert client.get("/", headers={"Host": "other.lan:5000"}).status_code == 400


def test_bound_to_every_interface_ip_literals_are_served(world) -> None:
    client = make_app(world, SERVE_HOST="0.0.0.0").test_client()
    for host in ("10.1.2.3:5000", "[fe80::1]:5000", "127.0.0.1:5000", "localhost"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    # a domain name can be re-pointed at any address: still refused
    assert client.get("/", headers={"Host": REBOUND}).status_code == 400


# --- writes come from the viewer's own pages ------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of localhost is same-site
        {"Origin": "http://attacker.example"},
        {"Origin": "http://localhost:3000"},
        {"Origin": "https://localhost"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://attacker.example"},
    ],
)
def test_a_write_from_another_origin_is_refused(world, client, headers: dict[str, str]) -> None:
    root = world["store"].root
    before = files(root)
    token = csrf_of(client)
    resp = client.post(
        "/s/garden/branch",
        json={"branch": "forged", "step": world["steps"][0]},
        headers={"X-CSRF-Token": token, **headers},
    )
    assert resp.status_code == 403
    assert "may not change this store" in resp.get_json()["error"]
    assert files(root) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Origin": "http://localhost"},
        {},  # no browser headers at all (curl, scripts): the CSRF token still decides
    ],
)
def test_a_write_from_the_viewer_itself_goes_through(world, client, headers) -> None:
    token = csrf_of(client)
    resp = client.post(
        "/s/garden/branch",
        json={"branch": "mine", "step": world["steps"][0]},
        headers={"X-CSRF-Token": token, **headers},
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert "mine" in world["store"].refs.branches("garden")


# --- headers on every answer; pages that need nothing the CSP forbids -----------------------------


def test_every_answer_carries_the_protective_headers(world, client) -> None:
    step = world["steps"][0]
    urls = ["/", "/s/garden", "/s/garden.json", f"/step/{step}", f"/-/objects/{some_tile(world)}"]
    urls += ["/static/app.js", "/static/style.css", "/nope", "/-/events/garden?once=1"]
    urls += [f"/-/thumb/{step}.png", "/compare?ids=zz"]
    for url in urls:
        h = client.get(url).headers
        csp = h.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, url
        assert "style-src 'self'" in csp and "default-src 'self'" in csp, url
        assert h.get("X-Content-Type-Options") == "nosniff", url
        assert h.get("Referrer-Policy") == "same-origin", url
        assert h.get("X-Frame-Options") == "DENY", url


class PageScan(HTMLParser):
    """What a page asks of the CSP: inline scripts, style elements, handlers, outside URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and not a.get("src"):
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"handler {name}= on <{tag}>")
            if name in ("src", "href", "action") and value and re.match(r"\w+:", value):
                self.problems.append(f"{name}={value[:60]} leaves the viewer")


def test_pages_need_nothing_the_csp_forbids(world, client) -> None:
    step, side = world["steps"][0], world["side"]
    urls = ["/", "/s/garden", f"/step/{step}", f"/attempt/{world['attempt']}"]
    urls += [f"/compare?ids={side[0]},{side[1]}", "/s/garden/gallery", "/nope"]
    for url in urls:
        scan = PageScan()
        scan.feed(client.get(url).get_data(as_text=True))
        assert scan.problems == [], (url, scan.problems)


# --- the signing secret -----------------------------------------------------------------------


def test_a_page_opened_before_a_restart_can_still_write(world) -> None:
    """The CSRF token of an open page stays valid when the viewer restarts."""
    root = world["store"].root
    first = make_app(world).test_client()
    token = csrf_of(first)
    cookie = first.get_cookie("session")
    assert cookie is not None
    secret_before = (root / "viewer.secret").read_bytes()

    restarted = make_app(world).test_client()  # a new process: a new app on the same store
    restarted.set_cookie("session", cookie.value, domain=cookie.domain)
    resp = restarted.post(
        "/s/garden/branch",
        json={"branch": "after-restart", "step": world["steps"][0]},
        headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"},
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert "after-restart" in world["store"].refs.branches("garden")
    assert (root / "viewer.secret").read_bytes() == secret_before  # written once


def test_the_secret_file_is_private_and_outside_the_stores_data(world, tmp_path: Path) -> None:
    root = world["store"].root
    make_app(world)
    path = root / "viewer.secret"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert re.fullmatch(rb"[0-9a-f]{64}\n", path.read_bytes())
    st = Store.open(root)
    assert fsck(st).ok
    gc(st, grace_s=0)
    assert path.exists(), "gc removed the viewer's secret"
    out = tmp_path / "export"
    export_session(root, "garden", out)
    exported = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert path.read_bytes().strip() not in exported
    assert not list(out.rglob("viewer.secret"))


class ReadOnlyFs:
    """``os`` for secret_file, on a file system that refuses to create files."""

    def __getattr__(self, name: str):
        return getattr(os, name)

    @staticmethod
    def open(path, flags, mode=0o777):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return os.open(path, flags, mode)


def test_a_store_that_cannot_be_written_gets_a_process_secret(world, monkeypatch, caplog) -> None:
    monkeypatch.setattr(secret_file, "os", ReadOnlyFs())
    app = make_app(world)
    assert not (world["store"].root / "viewer.secret").exists()
    assert "Read-only file system" in caplog.text and "secret of this process" in caplog.text
    client = app.test_client()
    token = csrf_of(client)
    resp = client.post(
        "/s/garden/branch",
        json={"branch": "ro", "step": world["steps"][0]},
        headers={"X-CSRF-Token": token},
    )
    assert resp.status_code == 201


@pytest.mark.parametrize(
    ("content", "mode", "said"),
    [
        (b"not a secret\n", 0o600, "not a viewer secret"),
        (b"ab" * 32 + b"\n", 0o644, "can be read by other users"),
    ],
)
def test_an_unusable_secret_file_is_left_alone_and_said(
    world, caplog, content: bytes, mode: int, said: str
) -> None:
    path = world["store"].root / "viewer.secret"
    path.write_bytes(content)
    path.chmod(mode)
    app = make_app(world)
    assert said in caplog.text and "secret of this process" in caplog.text
    assert app.config["SECRET_KEY"] != content.strip().decode(errors="replace")
    assert path.read_bytes() == content and stat.S_IMODE(path.stat().st_mode) == mode
    assert app.test_client().get("/").status_code == 200
