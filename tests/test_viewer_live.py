"""The live workspace through Flask's test client: short ids, names, moves, history, jobs."""

from __future__ import annotations

import re

import pytest

from exquisite_store import core
from exquisite_store.core import jobs as core_jobs
from exquisite_store.pipeline.step import run_step
from viewer import create_app

from .fakes.backends import PatternBackend
from .viewer_helpers import BufferedClient, csrf_of, make_session


@pytest.fixture
def world(tmp_path):
    return make_session(tmp_path / "store")


@pytest.fixture
def client(world):
    app = create_app({"EXQ_STORE": str(world["store"].root), "TESTING": True})
    app.test_client_class = BufferedClient
    return app.test_client()


def post(client, url: str, **fields):
    """A POST as the page's script sends it (token header, JSON answer)."""
    headers = {"X-CSRF-Token": csrf_of(client), "X-Requested-With": "fetch"}
    return client.post(url, data=fields, headers=headers)


def moved_events(store, session: str = "garden") -> list[dict]:
    return [e.data for e in store.events(session) if e.type == "moved"]


# --- short ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "suffix"),
    [
        ("/step/{}", ""),
        ("/step/{}.json", ""),
        ("/-/thumb/{}.png", ""),
        ("/-/canvas/{}.png", ""),
        ("/-/objects/{}", ""),
        ("/step/{}", "?from=x&y=1"),
    ],
)
def test_a_short_id_redirects_to_the_full_one(client, world, template, suffix) -> None:
    sid = world["steps"][0]
    resp = client.get(template.format(sid[:8]) + suffix)
    assert resp.status_code == 302
    assert resp.headers["Location"] == template.format(sid) + suffix  # query string kept
    assert client.get(resp.headers["Location"]).status_code == 200


def test_short_ids_in_attempt_diff_and_compare_urls(client, world) -> None:
    a, b = world["side"]
    att = world["attempt"]
    assert client.get(f"/attempt/{att[:9]}").headers["Location"] == f"/attempt/{att}"
    # one short id and one full: still redirected, each to its full id
    assert client.get(f"/-/diff/{a}/{b[:10]}.png").headers["Location"] == f"/-/diff/{a}/{b}.png"
    resp = client.get(f"/compare?ids={a[:8]},{b[:12]}")
    assert resp.status_code == 302 and resp.headers["Location"] == f"/compare?ids={a},{b}"
    assert client.get(resp.headers["Location"]).status_code == 200


def test_a_short_id_that_matches_nothing_or_several_is_a_clear_error(client, world) -> None:
    resp = client.get("/step/00000000", headers={"Accept": "application/json"})
    assert resp.status_code == 404 and "no object starts with 00000000" in resp.get_json()["error"]
    objects = world["store"].root / "objects" / "ab"
    objects.mkdir(exist_ok=True)
    for last in "01":  # two objects sharing their first 60 characters
        (objects / ("abcdef01" + "0" * 55 + last + ".json")).write_bytes(b"{}")
    resp = client.get("/step/abcdef0100", headers={"Accept": "application/json"})
    assert resp.status_code == 400 and "ambiguous: 2 objects" in resp.get_json()["error"]
    # shorter than 8, upper case, or not hex: no rule takes it, nothing is read
    for bad in ("abcdef0", "ABCDEF01", "abcdefgh", "abcdef01/../../x"):
        assert client.get(f"/step/{bad}").status_code == 404, bad


def test_the_from_step_field_takes_a_short_id(client, world) -> None:
    first = world["steps"][0]
    html = client.get("/s/garden").get_data(as_text=True)
    assert re.search(r'name="parent"[^>]*pattern="\[0-9a-f\]\{8,64\}"', html)
    est = client.get(f"/s/garden/estimate.json?parent={first[:8]}&extension_px=8&overlap_px=2")
    assert est.status_code == 200, est.get_json()


# --- names ----------------------------------------------------------------------------------


def test_a_bad_name_is_a_400_with_its_reason_and_an_unknown_one_a_404(client) -> None:
    for url in ("/s/bad%20name", "/s/garden.lock", "/s/" + "x" * 80, "/-/jobs/%2e%2e.json"):
        resp = client.get(url, headers={"Accept": "application/json"})
        assert resp.status_code == 400, url
        assert re.search(r"may hold only letters|longer than 64", resp.get_json()["error"])
    assert client.get("/s/nope").status_code == 404
    resp = post(client, "/s/garden/branch", branch="no spaces", step="main")
    assert resp.status_code == 400 and "may hold only letters" in resp.get_json()["error"]


# --- moves are events; history; undo; off-branch ----------------------------------------


def test_every_ref_move_is_an_event_other_tabs_can_see(client, world) -> None:
    store = world["store"]
    first, second = world["steps"]
    assert post(client, "/s/garden/head", step=first).status_code == 200
    assert post(client, "/s/garden/branch", branch="b2", step=first[:8]).status_code == 201
    assert post(client, "/s/garden/undo", ref="heads/main").status_code == 200
    moves = moved_events(store)
    assert [(m["ref"], m["why"]) for m in moves] == [
        ("heads/main", "head"),
        ("heads/b2", "branch"),
        ("heads/main", "undo"),
    ]
    assert moves[0]["old"] == second and moves[0]["new"] == first
    assert moves[2]["old"] == first and moves[2]["new"] == second
    # the live stream carries them like job events
    body = client.get("/-/events/garden?once=1").get_data(as_text=True)
    assert body.count("event: moved") == 3


def test_staging_decisions_are_events(world) -> None:
    store = world["store"]
    out = run_step(
        store,
        "garden",
        backend_impl=PatternBackend(),
        extension_px=8,
        overlap_px=2,
        n=3,
        stage=True,
    )
    one, two, three = out.step_ids
    core.discard(store, "garden", three)
    core.keep(store, "garden", two)
    core.accept(store, "garden", one)
    whys = [(m["ref"].split("/")[0], m["why"]) for m in moved_events(store)]
    assert whys == [
        ("staging", "discard"),
        ("heads", "keep"),
        ("staging", "keep"),
        ("heads", "accept"),
        ("staging", "accept"),
    ]


def test_steps_on_no_branch_stay_in_the_tree_dimmed(client, world) -> None:
    store = world["store"]
    root = store.session("garden").root
    first, second = world["steps"]
    before = client.get("/s/garden.json").get_json()
    assert before["off_branch"] == 0
    assert post(client, "/s/garden/head", step=root).status_code == 200  # main back to the root
    after = client.get("/s/garden.json").get_json()
    nodes = {n["id"]: n for n in after["nodes"]}
    assert set(nodes) == {n["id"] for n in before["nodes"]}  # nothing vanished
    assert nodes[second]["off_branch"] and not nodes[first]["off_branch"]  # side grows on first
    assert after["off_branch"] == 1 and after["steps"] == before["steps"] - 1
    html = client.get("/s/garden").get_data(as_text=True)
    assert f'class="node off" data-step="{second}"' in html
    assert "(+1 off-branch)" in html
    # dropping a branch: its steps stay too
    assert post(client, "/s/garden/branch/delete", branch="side").status_code == 200
    nodes = {n["id"]: n for n in client.get("/s/garden.json").get_json()["nodes"]}
    assert set(nodes) == {n["id"] for n in before["nodes"]}


def test_history_panel_lists_moves_and_undo_names_what_moves(client, world) -> None:
    first, second = world["steps"]
    post(client, "/s/garden/head", step=first)
    html = client.get("/s/garden").get_data(as_text=True)
    panel = html[html.index('id="history-panel"') :]
    assert f"set head to {first[:12]}" in panel
    confirm = re.search(r'data-ref="heads/main">.*?data-confirm="([^"]+)"', panel, re.S).group(1)
    assert confirm.startswith(f"Undo: move branch main from {first[:12]} back to {second[:12]}")
    resp = post(client, "/s/garden/undo", ref="heads/main")
    assert resp.status_code == 200 and resp.headers["Location"] == "/s/garden"
    assert client.get("/s/garden.json").get_json()["branches"]["main"] == second
    history = client.get("/s/garden.json").get_json()["history"]
    main = next(h for h in history if h["branch"] == "main")
    assert main["moves"][0]["message"].startswith(f"undo: back to {second[:12]}")
    # a dropped branch stays listed, and its undo brings it back
    post(client, "/s/garden/branch/delete", branch="side")
    side = next(
        h for h in client.get("/s/garden.json").get_json()["history"] if h["branch"] == "side"
    )
    assert side["now"] is None and side["undo"].startswith("Undo: bring back branch side")
    assert post(client, "/s/garden/undo", ref="heads/side").status_code == 200
    assert "side" in client.get("/s/garden.json").get_json()["branches"]


def test_an_undo_that_cannot_be_done_says_why(client, world) -> None:
    resp = post(client, "/s/garden/undo", ref="heads/nope")
    assert resp.status_code == 404 and "has no history" in resp.get_json()["error"]
    resp = post(client, "/s/garden/undo", ref="tags/x")
    assert resp.status_code == 400 and "not a branch or staging ref" in resp.get_json()["error"]


# --- the live parts ----------------------------------------------------------------------------


def test_live_json_renders_the_asked_parts_with_the_newest_event(client, world) -> None:
    store = world["store"]
    data = client.get("/s/garden/live.json?parts=tree,branches").get_json()
    assert set(data["parts"]) == {"tree", "branches"} and data["seq"] == store.last_event_seq(
        "garden"
    )
    assert data["parts"]["tree"].count('class="node') == 6
    post(client, "/s/garden/branch", branch="fresh", step="main")
    data = client.get("/s/garden/live.json?parts=branches").get_json()
    assert ">fresh</a>" in data["parts"]["branches"] and data["seq"] == store.last_event_seq(
        "garden"
    )
    everything = client.get("/s/garden/live.json").get_json()["parts"]
    assert set(everything) == {
        "summary", "tree", "branches", "attempts", "jobs", "history", "grow"
    }  # fmt: skip
    resp = client.get("/s/garden/live.json?parts=tree,secrets")
    assert resp.status_code == 400 and "no part 'secrets'" in resp.get_json()["error"]
    assert client.get("/s/nope/live.json").status_code == 404


def test_the_page_is_made_of_the_same_parts(client) -> None:
    html = client.get("/s/garden").get_data(as_text=True)
    parts = client.get("/s/garden/live.json").get_json()["parts"]
    for name in ("tree", "branches", "history", "jobs"):
        assert parts[name] in html, name
    assert 'id="shortcuts"' in html and "<kbd>?</kbd>" in html


# --- jobs of every process; progress per candidate ----------------------------------------


def test_running_jobs_of_any_process_are_listed_until_they_end(world, monkeypatch) -> None:
    store = world["store"]
    store.append_event("garden", "started", job="cli1", parent="p", branch="main")
    store.append_event("garden", "progress", job="cli1", phase="generate")
    dead = {"host": core_jobs.this_process().host, "pid": 2**22 + 7, "boot": "", "started": 1}
    store.append_event("garden", "queued", job="gone", process=dead, parent="p", branch="x")
    store.append_event("garden", "queued", job="srv", process=core_jobs.this_process().to_dict())
    shown = {j["job"]: j for j in core.live_jobs(store, "garden")}
    assert set(shown) == {"cli1", "srv"}  # a dead server's job is not running
    assert shown["cli1"]["phase"] == "generate" and not shown["cli1"]["from_server"]
    store.append_event("garden", "failed", job="srv", kind="Cancelled", message="x")
    assert [j["job"] for j in core.live_jobs(store, "garden")] == ["cli1"]
    monkeypatch.setattr(core_jobs, "QUIET_MS", -1)  # a killed `exq step` says nothing more
    assert core.live_jobs(store, "garden") == []


def test_progress_is_per_candidate(client, world) -> None:
    store = world["store"]
    out = run_step(
        store, "garden", backend_impl=PatternBackend(), extension_px=8, overlap_px=2, n=2, seed=40
    )
    events = [e.data for e in store.events("garden") if e.data.get("job") == out.job]
    phases = [(d.get("candidate"), d["phase"]) for d in events if "phase" in d]
    assert (None, "generate") in phases  # the call is the job's, before any candidate
    assert phases[-4:] == [(2, "unframe"), (2, "seam"), (2, "validate"), (2, "commit")]
    assert (1, "commit") in phases and all(d.get("of") == 2 for d in events if "candidate" in d)
    state = core.job_states(store, "garden")[out.job]
    assert state["candidates"] == {"1": "commit", "2": "commit"} and state["of"] == 2
    # each candidate shows its own seed (the call's seed + k)
    seeds = [
        n["seed"]
        for n in client.get("/s/garden.json").get_json()["nodes"]
        if n["id"] in out.step_ids
    ]
    assert sorted(seeds) == [40, 41]
    html = client.get(f"/step/{out.step_ids[1]}").get_data(as_text=True)
    assert "seed 41 (candidate 2 of 2; the call's seed 40)" in html


def test_staged_json_gives_each_candidate_its_seed(client, world) -> None:
    run_step(
        world["store"],
        "garden",
        backend_impl=PatternBackend(),
        extension_px=8,
        overlap_px=2,
        n=2,
        seed=7,
        stage=True,
    )
    [group] = client.get("/s/garden/staged.json").get_json()
    assert [c["seed"] for c in group["candidates"]] == [7, 8]


def test_step_page_confirmations_name_what_moves(client, world) -> None:
    first, second = world["steps"]
    html = client.get(f"/step/{second}").get_data(as_text=True)
    assert "data-confirm-head=" in html and f'data-step="{second}"' in html
    assert "Drop branch main (at" in html and "Undo in the session" in html
    assert 'class="form-error"' in html  # errors land next to the form
