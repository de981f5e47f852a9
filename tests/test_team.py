"""A viewer for a team: sign-in, roles on every route, throttling, authorship, share links."""

from __future__ import annotations

import hashlib
import math
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store.cli import cli
from exquisite_store.core import team
from exquisite_store.store import Store
from viewer import create_app
from viewer.auth import NEEDS, needs

from .viewer_helpers import BufferedClient, make_session

FETCH = {"X-Requested-With": "fetch"}


def snapshot(root: Path) -> dict[str, str]:
    """Every file of the store but derived caches and the viewer's secret, by content."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(("cache/", "tmp/")) and rel != "viewer.secret":
            out[rel] = hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
    return out


@pytest.fixture
def world(tmp_path):
    w = make_session(tmp_path / "store", steps=1)
    store: Store = w["store"]
    store.create_session("other", store.canvas_pixels(store.step(w["steps"][0])))
    tokens = {}
    for name, role in (("vera", "viewer"), ("ed", "editor"), ("ada", "admin"), ("rex", "editor")):
        team.add_user(store, name, role)
        tokens[name] = team.create_token(store, name)
    team.revoke_user(store, "rex")
    w["tokens"] = tokens
    return w


def client(root: Path, **config):
    app = create_app(
        {"EXQ_STORE": str(root), "TESTING": True, "AUTH_MODE": "tokens", "JOB_WORKERS": 1, **config}
    )
    app.test_client_class = BufferedClient
    return app, app.test_client()


def urls(app, w) -> list[tuple[str, str, str]]:
    """Every route of the viewer as ``(endpoint, method, url)``, with real arguments."""
    store: Store = w["store"]
    step = w["steps"][-1]
    canvas = store.step(step).result.canvas_id
    values = {
        "name": "garden", "step_id": step, "attempt_id": w["attempt"], "oid": canvas,
        "a": w["steps"][0], "b": step, "canvas_id": canvas, "other_id": canvas,
        "level": 0, "col": 0, "row": 0, "job": "0" * 12, "link": "x",
        "pid": "0" * 16, "action": "pause",
    }  # fmt: skip
    out, seen = [], set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("static", "short_ids.", "auth.")):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if (rule.endpoint, method) in seen:
                continue
            seen.add((rule.endpoint, method))
            path = rule.rule
            for arg in rule.arguments - set(rule.defaults or {}):
                path = re.sub(rf"<[^>]*:?{arg}>", str(values[arg]), path)
            out.append((rule.endpoint, method, path))
    return out


def call(c, method: str, url: str, token: str | None):
    headers = dict(FETCH)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return c.open(url, method=method, headers=headers, data={})


def test_every_route_against_every_role(world) -> None:
    root = world["store"].root
    app, c = client(root, AUTH_FAILURES=100_000)  # the revoked token's tries: not throttled here
    routes = urls(app, world)
    assert len(routes) >= 30
    tokens = world["tokens"]
    who = {"anonymous": None, "viewer": tokens["vera"], "editor": tokens["ed"],
           "admin": tokens["ada"], "revoked": tokens["rex"]}  # fmt: skip
    rank = {"viewer": 0, "editor": 1, "admin": 2}
    # refused first: nothing may change the store
    allowed = []
    before = snapshot(root)
    for endpoint, method, url in routes:
        need = team.rank(needs(endpoint, method))
        for label, token in who.items():
            if label in rank and rank[label] >= need:
                allowed.append((label, endpoint, method, url))
                continue
            resp = call(c, method, url, token)
            expected = 401 if label in ("anonymous", "revoked") else 403
            assert resp.status_code == expected, (label, method, url, resp.status_code)
            assert resp.get_json()["error"]
    assert snapshot(root) == before, "a refused request wrote to the store"
    # allowed: never 401 or 403 (some answer 400/404 for the made-up arguments)
    for label, endpoint, method, url in allowed:
        if endpoint == "actions.events":
            url += "?once=1"
        resp = call(c, method, url, who[label])
        assert resp.status_code not in (401, 403), (label, method, url, resp.get_json())


def test_the_role_matrix_of_writing_routes(world) -> None:
    assert NEEDS["actions.extend"] == "editor" and NEEDS["actions.delete_branch"] == "admin"
    _app, c = client(world["store"].root)
    tokens = world["tokens"]
    drop = ("POST", "/s/garden/branch/delete")
    assert call(c, *drop, tokens["ed"]).status_code == 403
    assert "needs admin" in call(c, *drop, tokens["ed"]).get_json()["error"]
    assert call(c, "POST", "/s/garden/extend", tokens["vera"]).status_code == 403


def test_serving_beyond_loopback_needs_sign_in(world) -> None:
    root = str(world["store"].root)
    res = CliRunner().invoke(cli, ["--store", root, "serve", "--host", "0.0.0.0"])
    assert res.exit_code == 1
    assert res.output.startswith("error: refusing to serve on 0.0.0.0 without sign-in")
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(
        cli, ["--store", root, "serve", "--host", "0.0.0.0", "--auth", "proxy"]
    )
    assert res.exit_code == 1 and "--trusted-proxy" in res.output


def test_sign_in_sets_an_httponly_lax_cookie_and_a_bad_token_is_401(world) -> None:
    _app, c = client(world["store"].root)
    page = c.get("/s/garden")
    assert page.status_code == 302 and "/-/signin" in page.headers["Location"]
    form = c.get("/-/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    bad = c.post("/-/signin", data={"token": "exq_000000000000_" + "x" * 32, "csrf_token": csrf})
    assert bad.status_code == 401
    ok = c.post(
        "/-/signin", data={"token": world["tokens"]["ed"], "csrf_token": csrf, "next": "/s/garden"}
    )
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/s/garden")
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert c.get("/s/garden").status_code == 200
    assert 'data-role="editor"' in c.get("/s/garden").get_data(as_text=True)


def test_a_thousand_wrong_tokens_are_throttled_and_the_right_one_works_after(world) -> None:
    _app, c = client(world["store"].root, AUTH_FAILURES=5, AUTH_WINDOW_S=2.0)
    form = c.get("/-/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    t0 = time.perf_counter()
    codes = []
    for i in range(1000):
        wrong = f"exq_{i:012x}_" + "y" * 32
        codes.append(
            c.post(
                "/-/signin", data={"token": wrong, "csrf_token": csrf}, headers=FETCH
            ).status_code
        )
    seconds = time.perf_counter() - t0
    checked, throttled = codes.count(401), codes.count(429)
    assert checked + throttled == 1000
    assert checked <= 5 * (math.ceil(seconds / 2.0) + 1)  # five tries per window, no more
    assert throttled >= 900
    print(f"FIGURE brute-force tries=1000 checked={checked} throttled={throttled} s={seconds:.2f}")
    time.sleep(2.1)
    right = c.post(
        "/-/signin", data={"token": world["tokens"]["ada"], "csrf_token": csrf}, headers=FETCH
    )
    assert right.status_code == 302


def test_a_revoked_token_stops_at_once_in_every_viewer(world) -> None:
    root = world["store"].root
    _a1, one = client(root)
    _a2, two = client(root)
    token = world["tokens"]["ed"]
    for c in (one, two):
        assert call(c, "GET", "/s/garden.json", token).status_code == 200
    team.revoke_token(world["store"], token.split("_")[1])
    for c in (one, two):
        assert call(c, "GET", "/s/garden.json", token).status_code == 401


def test_a_viewer_step_is_credited_to_its_user(world) -> None:
    root = world["store"].root
    _app, c = client(root)
    resp = c.post(
        "/s/garden/extend",
        json={"extension_px": 16, "overlap_px": 4},
        headers={"Authorization": f"Bearer {world['tokens']['ed']}"},
    )
    assert resp.status_code == 202, resp.get_json()
    job = resp.get_json()["job"]
    deadline = time.monotonic() + 120
    while True:
        state = call(c, "GET", "/-/jobs/garden.json", world["tokens"]["ed"]).get_json()[job]
        if state["state"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    store = Store.open(root)
    head = store.refs.head("garden", "main")
    assert store.step(head).author == "ed"
    assert store.refs.reflog("garden/heads/main")[-1].author == "ed"
    log = CliRunner().invoke(cli, ["--store", str(root), "log", "garden", "-n", "1"]).output
    assert "by ed" in log


def test_proxy_mode_believes_only_its_proxy(world) -> None:
    _app, c = client(world["store"].root, AUTH_MODE="proxy", TRUSTED_PROXIES=("127.0.0.1",))
    ok = c.get("/s/garden.json", headers={"X-Forwarded-User": "vera"})
    assert ok.status_code == 200
    assert (
        c.post("/s/garden/extend", headers={"X-Forwarded-User": "vera", **FETCH}).status_code == 403
    )
    far = c.get(
        "/s/garden.json",
        headers={"X-Forwarded-User": "ada", **FETCH},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert far.status_code == 401
    assert (
        c.get("/s/garden.json", headers={"X-Forwarded-User": "mallory", **FETCH}).status_code == 401
    )


def test_a_share_link_reads_one_session_without_prompts_until_revoked(world) -> None:
    store: Store = world["store"]
    link, rec = team.create_share(store, "garden", expires_s=3600)
    _app, c = client(store.root)
    landing = c.get(f"/-/share/{link}")
    assert landing.status_code == 302 and landing.headers["Location"].endswith("/s/garden")
    assert "HttpOnly" in landing.headers["Set-Cookie"]
    page = c.get("/s/garden")
    assert page.status_code == 200 and "data-shared" in page.get_data(as_text=True)
    step = c.get(f"/step/{world['steps'][-1]}").get_data(as_text=True)
    assert "step 0 &lt;script&gt;" not in step and "not shown by this link" in step
    assert c.get("/s/other", headers=FETCH).status_code == 403
    assert c.get("/s/garden.json", headers=FETCH).status_code == 403
    assert c.post("/s/garden/extend", headers=FETCH).status_code == 403
    prompt_id = store.step(world["steps"][-1]).recipe.prompt_id
    assert c.get(f"/-/objects/{prompt_id}", headers=FETCH).status_code == 403
    team.revoke_share(store, rec.id)
    assert c.get("/s/garden", headers=FETCH).status_code == 401
    assert c.get(f"/-/share/{link}").status_code == 403


def test_a_share_link_expires(world, monkeypatch) -> None:
    store: Store = world["store"]
    link, _ = team.create_share(store, "garden", expires_s=60)
    _app, c = client(store.root)
    assert c.get(f"/-/share/{link}").status_code == 302
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + 61 * 10**9)
    assert c.get("/s/garden", headers=FETCH).status_code == 401
    assert c.get(f"/-/share/{link}").status_code == 403


def test_users_tokens_and_links_from_the_cli(tmp_path) -> None:
    root = tmp_path / "store"
    make_session(root, steps=1)
    run = lambda *a: CliRunner().invoke(cli, ["--store", str(root), *a])  # noqa: E731
    assert run("user", "add", "kim", "--role", "editor").exit_code == 0
    assert run("user", "add", "kim").exit_code == 1
    assert "kim\teditor" in run("user", "list").output
    tok = run("token", "create", "kim").output.strip()
    assert re.fullmatch(r"exq_[0-9a-f]{12}_[A-Za-z0-9_-]+", tok)
    raw = (root / "objects").rglob("*.json")
    assert not any(tok.split("_", 2)[2] in p.read_text() for p in raw)  # only its hash is kept
    assert run("token", "create", "nobody").exit_code == 1
    out = run("share", "garden", "--expires", "2d").output
    assert out.startswith("/-/share/")
    assert "garden" in run("share", "--list").output
    assert run("user", "revoke", "kim").exit_code == 0
    assert "revoked" in run("user", "list").output
    assert run("user", "add", "x", "--role", "root").exit_code == 2


def test_a_users_own_budget_is_held_like_the_sessions(world, fake_openai, monkeypatch) -> None:
    from exquisite_store import core
    from exquisite_store.authorship import as_author
    from exquisite_store.errors import BudgetExceeded

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-team-0123456789abcdef")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    store: Store = world["store"]
    params = {"backend": "openai", "model": "gpt-image-2", "extension_px": 16,
              "overlap_px": 4, "quality": "low"}  # fmt: skip
    one = core.estimate(store, core.step_request(store, "garden", params))["estimate_micro_usd"]
    team.set_user_budget(store, "ed", one + one // 2)  # room for one step, not two
    with as_author("ed"):
        core.grow(store, core.step_request(store, "garden", params))
        with pytest.raises(BudgetExceeded, match="ed's own budget"):
            core.grow(store, core.step_request(store, "garden", params))
    assert len(fake_openai.calls) == 1  # refused before any call
    with as_author("ada"):  # no limit of her own: the session has no budget either
        core.grow(store, core.step_request(store, "garden", params))
    assert len(fake_openai.calls) == 2
