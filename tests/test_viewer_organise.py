"""The viewer's annotations, tree filter and clean-up page, through the test client."""

from __future__ import annotations

import pytest

from exquisite_store import core
from exquisite_store.core import annotations as notes
from viewer import create_app

from .viewer_helpers import csrf_of, make_session


@pytest.fixture
def site(tmp_path):
    made = make_session(tmp_path / "store")
    app = create_app({"EXQ_STORE": str(tmp_path / "store"), "TESTING": True})
    client = app.test_client()
    return made, client, csrf_of(client)


def post(client, csrf, url, **data):
    return client.post(url, data=data, headers={"X-CSRF-Token": csrf, "Accept": "application/json"})


def test_star_tag_note_from_the_viewer(site) -> None:
    made, client, csrf = site
    store, sid = made["store"], made["steps"][1]
    r = post(client, csrf, "/s/garden/annotate", step=sid[:10], star="1", tag="sky, blue")
    assert (
        r.status_code == 200 and r.get_json()["starred"] and r.get_json()["tags"] == ["sky", "blue"]
    )
    assert r.headers["Location"].endswith(f"/step/{sid}")
    post(client, csrf, "/s/garden/annotate", step=sid, untag="blue", note="<b>keep</b>")
    assert notes.note_of(store, "garden", sid).tags == ("sky",)
    page = client.get(f"/step/{sid}").get_data(as_text=True)
    assert "&lt;b&gt;keep&lt;/b&gt;" in page and "#sky" in page and "Unstar" in page
    tree = client.get("/s/garden").get_data(as_text=True)
    assert f'class="node starred" data-step="{sid}"' in tree or "node head starred" in tree
    assert "★" in tree
    assert client.get("/s/garden/canvas.json").get_json()["starred"] is True  # HEAD's step
    # bad input: 4xx with the reason, nothing written
    before = store.refs.notes_pointer("garden")
    for bad, why in (
        ({"step": sid, "tag": "a/b"}, "tag 'a/b'"),
        ({"step": sid, "star": "maybe"}, "star must be"),
        ({"step": "zz", "star": "1"}, ""),
        ({"step": sid}, "nothing to change"),
    ):
        r = post(client, csrf, "/s/garden/annotate", **bad)
        assert 400 <= r.status_code < 500 and why in r.get_json()["error"], (bad, r.get_json())
    assert client.post("/s/garden/annotate", data={"step": sid, "star": "0"}).status_code == 400
    assert store.refs.notes_pointer("garden") == before
    assert store.events("garden")[-1].data["ref"] == "notes"  # every tab hears of it


def test_find_json_filters_the_tree(site) -> None:
    made, client, csrf = site
    store = made["store"]
    a, b = made["steps"]
    notes.annotate(store, "garden", b, star=True, add_tags=("fav",))
    j = client.get("/s/garden/find.json?starred=1").get_json()
    assert j["ids"] == [b] and j["count"] == 1 and j["of"] >= 5
    assert client.get("/s/garden/find.json?prompt=STEP%200").get_json()["ids"] == [a]
    assert client.get("/s/garden/find.json?tag=fav&prompt=step").get_json()["ids"] == [b]
    everything = client.get("/s/garden/find.json").get_json()
    assert everything["count"] == everything["of"]
    for q, why in (
        ("seam_above=x", "seam-above"),
        ("cost_above=-1", "cost-above"),
        ("tag=%2F", "tag"),
    ):
        r = client.get(f"/s/garden/find.json?{q}")
        assert r.status_code == 400 and why in r.get_json()["error"]
    assert client.get("/s/nobody/find.json").status_code == 404


def test_cleanup_page_and_keep_starred(site) -> None:
    made, client, csrf = site
    store = made["store"]
    for i, sid in enumerate(made["side"][1:]):  # a branch per candidate but the first
        core.create_branch(store, "garden", f"cand{i}", sid)
    notes.annotate(store, "garden", made["side"][1], star=True)
    orphan = store.objects.put_text("orphan")
    page = client.get("/s/garden/cleanup").get_data(as_text=True)
    assert "Keep starred only" in page and "thumb" in page
    ctx = client.get("/s/garden/cleanup.json").get_json()
    rows = {b["branch"]: b for b in ctx["branches"]}
    assert rows["main"]["keep"] and rows["cand0"]["keep"]
    assert ctx["drop"] == [b for b, r in sorted(rows.items()) if not r["keep"]] and ctx["drop"]
    assert all(r["bytes"] == r["unique"] + r["shared"] for r in rows.values())
    assert ctx["gc"]["young"] >= 1 and orphan not in [o["id"] for o in ctx["gc"]["objects"]]
    r = post(client, csrf, "/s/garden/keep-starred")
    assert r.status_code == 200
    assert {d["branch"] for d in r.get_json()["dropped"]} == set(ctx["drop"])
    kept = {b for b, r in rows.items() if r["keep"]}
    assert set(store.refs.branches("garden")) == kept and {"main", "cand0"} <= kept
    assert store.objects.has(rows[ctx["drop"][0]]["head"])  # the reflog keeps it
