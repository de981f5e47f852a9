"""The viewer through Flask's test client: every page and its .json twin, and bad input."""

from __future__ import annotations

import io

import pytest

from exquisite_store.errors import StepFailure
from exquisite_store.manifests import Attempt
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from viewer import create_app

from .fakes.backends import WrongSizeBackend
from .viewer_helpers import BufferedClient, csrf_of, make_session, png_bytes, wait_job


@pytest.fixture
def world(tmp_path):
    return make_session(tmp_path / "store")


@pytest.fixture
def app(world):
    app = create_app({"EXQ_STORE": str(world["store"].root), "TESTING": True})
    app.test_client_class = BufferedClient
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def test_create_app_needs_a_store(monkeypatch) -> None:
    monkeypatch.delenv("EXQ_STORE", raising=False)
    with pytest.raises(RuntimeError, match="EXQ_STORE"):
        create_app({})


def test_sessions_page_and_twin(client, world) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "A &lt;b&gt;garden&lt;/b&gt;" in html  # escaped, never raw
    data = client.get("/index.json").get_json()
    [row] = data["sessions"]
    assert row["name"] == "garden" and row["steps"] == 5 and row["branches"] == 3
    assert row["attempts"] == 1


def test_session_page_draws_the_tree(client, world) -> None:
    html = client.get("/s/garden").get_data(as_text=True)
    assert html.count('class="node') == 6  # 5 steps + 1 failed attempt
    assert 'class="node failed"' in html and "DimensionMismatch" in html
    for sid in world["steps"] + world["side"]:
        assert f"/-/thumb/{sid}.png" in html
    data = client.get("/s/garden.json").get_json()
    assert data["steps"] == 5 and set(data["branches"]) == {"main", "side", "side~2"}
    assert len(data["attempts"]) == 1 and data["attempts"][0]["kind"] == "DimensionMismatch"
    assert {n["id"] for n in data["nodes"] if not n["failed"]} >= set(world["steps"])


def test_step_page_and_twin(client, world) -> None:
    sid = world["steps"][1]
    html = client.get(f"/step/{sid}").get_data(as_text=True)
    assert "step 1 &lt;script&gt;" in html and "<script>x</script>" not in html
    assert 'class="band gen"' in html and "seam score" in html
    data = client.get(f"/step/{sid}.json").get_json()
    assert data["id"] == sid and data["parent"] == world["steps"][0]
    assert data["manifest"]["recipe"]["direction"] == "right"
    tiles = data["canvas"]["tiles"]
    assert tiles and all(f"/-/objects/{t['id']}" in html for t in tiles)
    assert data["validation"]["ok"] is True
    assert data["bands"]["gen"] == [64 + 16, 0, 16, 48]


def test_attempt_page_and_twin(client, world) -> None:
    aid = world["attempt"]
    html = client.get(f"/attempt/{aid}").get_data(as_text=True)
    assert "DimensionMismatch" in html and "No branch moved" in html
    assert client.get(f"/attempt/{aid}.json").get_json()["kind"] == "DimensionMismatch"


def test_compare_page_and_twin(client, world) -> None:
    a, b = world["side"]
    html = client.get(f"/compare?ids={a},{b}").get_data(as_text=True)
    store = world["store"]
    for sid in (a, b):  # the live page shows each step's canvas in deep zoom, from its pyramid
        assert f"/-/pyramid/{store.step(sid).result.canvas_id}" in html
    data = client.get(f"/compare.json?ids={a},{b}").get_json()
    assert data["ids"] == [a, b]
    # the context (the export's compare page) draws each canvas from its tiles
    for it in data["items"]:
        assert it["tiles"] and all(store.objects.has(t["id"]) for t in it["tiles"])
    assert client.get(f"/-/diff/{a}/{b}.png").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/compare?ids=",
        "/compare?ids=abc,def",
        "/compare.json?ids=" + "a" * 64,
        "/step/../../etc/passwd",
        "/step/" + "a" * 64,
        "/step/" + "A" * 64,
        "/step/abc",
        "/step/" + "a" * 64 + ".json",
        "/attempt/" + "0" * 64,
        "/s/nope",
        "/s/..%2F..",
        "/-/objects/" + "a" * 64,
        "/-/objects/../store.toml",
        "/-/canvas/" + "a" * 64 + ".png",
        "/-/jobs/nope.json",
        "/-/events/nope",
    ],
)
def test_unknown_and_malformed_ids_are_404(client, url) -> None:
    resp = client.get(url)
    assert resp.status_code == 404, (url, resp.status_code)
    assert b"Traceback" not in resp.data


def test_a_step_id_of_another_kind_is_404_not_500(client, world) -> None:
    canvas_id = world["store"].step(world["steps"][0]).result.canvas_id
    assert client.get(f"/step/{canvas_id}").status_code == 404
    assert client.get(f"/attempt/{world['steps'][0]}.json").status_code == 404


def test_objects_are_served_immutable_with_etag_and_304(client, world) -> None:
    sid = world["steps"][0]
    tile = client.get(f"/step/{sid}.json").get_json()["canvas"]["tiles"][0]["id"]
    resp = client.get(f"/-/objects/{tile}")
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert resp.headers["ETag"] == f'"{tile}"'
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    again = client.get(f"/-/objects/{tile}", headers={"If-None-Match": f'"{tile}"'})
    assert again.status_code == 304 and again.data == b""
    for path in (f"/-/canvas/{sid}.png", f"/-/thumb/{sid}.png"):
        first = client.get(path)
        assert first.status_code == 200 and "immutable" in first.headers["Cache-Control"]
        assert client.get(path, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


# --- POSTs -----------------------------------------------------------------------------


def test_post_without_or_with_wrong_csrf_is_refused(client, world) -> None:
    before = world["store"].refs.branches("garden")
    url = "/s/garden/branch"
    form = {"branch": "x", "step": world["steps"][0]}
    assert client.post(url, data=form).status_code == 400
    csrf_of(client)
    assert client.post(url, data={**form, "csrf_token": "forged"}).status_code == 403
    assert client.post(url, data=form, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert Store.open(world["store"].root).refs.branches("garden") == before


def test_branch_and_set_head(client, world) -> None:
    token = csrf_of(client)
    sid = world["steps"][0]
    resp = client.post(
        "/s/garden/branch", data={"branch": "mine", "step": sid, "csrf_token": token}
    )
    assert resp.status_code == 303
    store = Store.open(world["store"].root)
    assert store.refs.branches("garden")["mine"] == sid
    dup = client.post(
        "/s/garden/branch",
        data={"branch": "mine", "step": sid},
        headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"},
    )
    assert dup.status_code == 400 and "already exists" in dup.get_json()["error"]
    resp = client.post(
        "/s/garden/head", json={"branch": "main", "step": sid}, headers={"X-CSRF-Token": token}
    )
    assert resp.status_code == 200
    assert store.refs.head("garden", "main") == sid
    assert store.refs.reflog("garden/heads/main")[-1].message == f"set head to {sid[:12]}"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"extension_px": "0"}, "extension_px"),
        ({"extension_px": "ten"}, "extension_px"),
        ({"overlap_px": "-1"}, "overlap_px"),
        ({"direction": "sideways"}, "direction"),
        ({"seam": "glue"}, "seam"),
        ({"backend": "magic"}, "backend"),
        ({"n": "99"}, "n"),
        ({"parent": "../../x"}, "not an id or id prefix"),
        ({"branch": "../x"}, "branch"),
        ({"prompt": "x" * 40_000}, "prompt"),
    ],
)
def test_invalid_step_parameters_are_400_with_the_reason(client, world, form, message) -> None:
    token = csrf_of(client)
    resp = client.post(
        "/s/garden/extend", data=form, headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"}
    )
    assert resp.status_code in (400, 404), resp.get_json()
    assert message in resp.get_json()["error"]


def test_malformed_json_body_is_400(client) -> None:
    token = csrf_of(client)
    resp = client.post(
        "/s/garden/extend",
        data="{not json",
        content_type="application/json",
        headers={"X-CSRF-Token": token},
    )
    assert resp.status_code == 400 and "JSON" in resp.get_json()["error"]


def test_wrong_method_is_405(client) -> None:
    assert client.get("/s/garden/extend").status_code == 405
    assert client.post("/s/garden.json").status_code in (400, 405)


def test_extend_runs_in_the_background_and_streams_events(client, world) -> None:
    token = csrf_of(client)
    resp = client.post(
        "/s/garden/extend",
        json={"extension_px": 16, "overlap_px": 4, "seed": 5, "n": 2, "prompt": "more"},
        headers={"X-CSRF-Token": token},
    )
    assert resp.status_code == 202
    job = resp.get_json()["job"]
    state = wait_job(client, "garden", job)
    assert state["state"] == "succeeded", state
    assert len(state["result"]["step_ids"]) == 2
    stream = client.get("/-/events/garden?once=1").get_data(as_text=True)
    phases = [line for line in stream.splitlines() if line.startswith("data:") and job in line]
    kinds = [p.split('"type": "')[1].split('"')[0] for p in phases]
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "succeeded"
    assert "progress" in kinds
    # resume after the last event we saw: nothing repeats
    last = int([ln for ln in stream.splitlines() if ln.startswith("id:")][-1].split()[1])
    again = client.get("/-/events/garden?once=1", headers={"Last-Event-ID": str(last)})
    assert "data:" not in again.get_data(as_text=True)


def test_a_failing_backend_shows_the_attempt_and_moves_no_head(client, world) -> None:
    token = csrf_of(client)
    store = Store.open(world["store"].root)
    before = store.refs.branches("garden")
    resp = client.post(
        "/s/garden/extend",
        json={"backend": "replay", "extension_px": 8},
        headers={"X-CSRF-Token": token},
    )
    state = wait_job(client, "garden", resp.get_json()["job"])
    assert state["state"] == "failed"
    assert state["result"]["kind"] == "PermanentBackendError"
    assert store.refs.branches("garden") == before
    aid = state["result"]["attempt_id"]
    html = client.get(f"/attempt/{aid}").get_data(as_text=True)
    assert "replay has no recorded response" in html
    assert aid in client.get("/s/garden").get_data(as_text=True)


def test_retry_of_an_unknown_backend_is_refused_with_the_field(client, world) -> None:
    token = csrf_of(client)
    before = world["store"].refs.branches("garden")
    resp = client.post(
        f"/attempt/{world['attempt']}/retry",
        headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"},
    )
    # the attempt's recipe names the fake backend, which this installation does not know
    assert resp.status_code == 400
    assert resp.get_json()["error"].startswith(
        "backend must be one of patchmatch, patchmatch-fast, replay, openai"
    )
    assert world["store"].refs.branches("garden") == before


class PatchmatchNamedWrongSize(WrongSizeBackend):
    """Records its attempts as patchmatch's, so that a retry runs the real fill."""

    name = "patchmatch"


def test_retry_that_succeeds_grows_the_attempts_branch(client, world) -> None:
    store = world["store"]
    head = store.refs.head("garden", "main")
    with pytest.raises(StepFailure) as info:  # a patchmatch step whose output was refused
        run_step(
            store,
            "garden",
            backend_impl=PatchmatchNamedWrongSize(),
            extension_px=8,
            overlap_px=2,
            seed=5,
        )
    aid = info.value.details["attempt_id"]
    token = csrf_of(client)
    resp = client.post(
        f"/attempt/{aid}/retry", headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"}
    )
    assert resp.status_code == 202, resp.get_json()
    state = wait_job(client, "garden", resp.get_json()["job"])
    assert state["state"] == "succeeded", state
    new = state["result"]["branches"]["main"]
    step = store.step(new)
    assert step.parent == head
    recipe = store.objects.get_manifest(aid, Attempt).recipe
    assert (step.recipe.backend, step.recipe.extension_px) == ("patchmatch", recipe.extension_px)


def test_new_session_from_upload_and_fixture(client) -> None:
    token = csrf_of(client)
    resp = client.post(
        "/-/new",
        data={
            "name": "up",
            "csrf_token": token,
            "image": (io.BytesIO(png_bytes(40, 30)), "start.png"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/s/up")
    resp = client.post("/-/new", data={"name": "fx", "fixture": "odd.png", "csrf_token": token})
    assert resp.status_code == 303
    names = [s["name"] for s in client.get("/index.json").get_json()["sessions"]]
    assert {"up", "fx"} <= set(names)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"image": (io.BytesIO(b"not an image at all"), "x.png")}, 400, "not an image"),
        ({"image": (io.BytesIO(png_bytes(8, 8)[:-30]), "t.png")}, 400, "cannot be decoded"),
        ({"fixture": "../../etc/passwd"}, 400, "no fixture"),
        ({"fixture": "nope.png"}, 400, "no fixture"),
        ({}, 400, "start image"),
    ],
)
def test_bad_uploads(client, data, status, message) -> None:
    token = csrf_of(client)
    resp = client.post(
        "/-/new",
        data={"name": "bad", "csrf_token": token, **data},
        content_type="multipart/form-data",
        headers={"X-Requested-With": "fetch"},
    )
    assert resp.status_code == status, resp.get_json()
    assert message in resp.get_json()["error"]
    assert "bad" not in [s["name"] for s in client.get("/index.json").get_json()["sessions"]]


def test_upload_over_the_size_and_pixel_limits(world) -> None:
    app = create_app(
        {
            "EXQ_STORE": str(world["store"].root),
            "TESTING": True,
            "MAX_CONTENT_LENGTH": 10_000,
            "MAX_UPLOAD_PIXELS": 100,
        }
    )
    client = app.test_client()
    token = csrf_of(client)
    big = client.post(
        "/-/new",
        data={"name": "big", "csrf_token": token, "image": (io.BytesIO(b"\0" * 20_000), "big.png")},
        content_type="multipart/form-data",
    )
    assert big.status_code == 413
    many = client.post(
        "/-/new",
        data={
            "name": "many",
            "csrf_token": token,
            "image": (io.BytesIO(png_bytes(20, 20)), "p.png"),
        },
        content_type="multipart/form-data",
        headers={"X-Requested-With": "fetch"},
    )
    assert many.status_code == 400 and "limit" in many.get_json()["error"]


def test_estimate_is_a_dry_run(client, world) -> None:
    files_before = sorted(p.name for p in (world["store"].root / "objects").rglob("*"))
    data = client.get("/s/garden/estimate.json?extension_px=32&backend=patchmatch").get_json()
    assert data["frame"] and data["estimate_micro_usd"] == 0 and data["ignores_prompt"] is True
    assert sorted(p.name for p in (world["store"].root / "objects").rglob("*")) == files_before


def test_restart_marks_unfinished_jobs_abandoned(world) -> None:
    store = world["store"]
    store.append_event(
        "garden",
        "queued",
        job="deadbeef0001",
        pid=999999,
        parent=world["steps"][-1],
        branch="main",
        params={},
    )
    store.append_event("garden", "started", job="deadbeef0001")
    app = create_app({"EXQ_STORE": str(store.root), "TESTING": True})
    state = app.test_client().get("/-/jobs/garden.json").get_json()["deadbeef0001"]
    assert state["state"] == "failed" and "abandoned" in state["result"]["message"]
    kinds = [a.message for a in Store.open(store.root).attempts("garden")]
    assert any("abandoned" in m for m in kinds)


def test_drop_a_candidate_branch(client, world) -> None:
    token = csrf_of(client)
    store = Store.open(world["store"].root)
    dropped = store.refs.head("garden", "side~2")
    html = client.get(f"/step/{dropped}").get_data(as_text=True)
    assert "Drop branch side~2" in html
    resp = client.post("/s/garden/branch/delete", data={"branch": "side~2", "csrf_token": token})
    assert resp.status_code == 303
    assert "side~2" not in store.refs.branches("garden")
    assert store.step(dropped)  # the step itself is kept
    again = client.post(
        "/s/garden/branch/delete", json={"branch": "side~2"}, headers={"X-CSRF-Token": token}
    )
    assert again.status_code == 404
    head = client.post(
        "/s/garden/branch/delete", json={"branch": "main"}, headers={"X-CSRF-Token": token}
    )
    assert head.status_code == 400 and "HEAD" in head.get_json()["error"]
    assert client.post("/s/garden/branch/delete", data={"branch": "side"}).status_code == 400
