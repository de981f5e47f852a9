"""The viewer's Grow panel: plans started, paused, resumed and stopped from the page,
bad input refused with the reason, and a plan the viewer was running when it was
killed continued by the next viewer, with exactly the steps it asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from exquisite_store.core import plans as pl
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from viewer import create_app

from .helpers import rng_image
from .test_browser import free_port, wait_until_up
from .viewer_helpers import csrf_of


def _store(root: Path) -> Store:
    store = Store.init(root)
    store.create_session("g", rng_image(64, 96, seed=4), title="grow")
    return store


def _serve(root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-c", "from exquisite_store.cli import main; main()"]
    cmd += ["--store", str(root), "serve", "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/", proc, log)
    return proc, base


def _wait(cond, timeout: float = 300.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_grow_routes_refuse_bad_input_and_control_a_plan(tmp_path) -> None:
    store = _store(tmp_path / "store")
    app = create_app({"EXQ_STORE": str(tmp_path / "store"), "TESTING": True})
    client = app.test_client()
    token = csrf_of(client)
    page = client.get("/s/g").get_data(as_text=True)
    assert 'id="grow-panel"' in page and "Start growing" in page
    js = {"Accept": "application/json", "X-CSRF-Token": token}
    assert client.post("/s/g/grow", data={"steps": "2"}).status_code == 400  # no CSRF token
    for form, why in (
        ({"steps": "0"}, "--steps N"),
        ({"steps": "two"}, "whole number"),
        ({"steps": "2", "directions": "sideways"}, "directions must be"),
        ({"steps": "2", "candidates": "40"}, "candidates must be"),
        ({"steps": "2", "repair_above": "high"}, "a number like"),
        ({"steps": "2", "budget": "lots"}, "not a dollar amount"),
        ({"steps": "2", "extension_px": "-4"}, "extension_px"),
    ):
        r = client.post("/s/g/grow", data=form, headers=js)
        assert r.status_code == 400, (form, r.status_code)
        assert why in r.get_json()["error"], (form, r.get_json())
    assert pl.plans(store, "g") == []
    assert client.post("/s/nope/grow", data={"steps": "1"}, headers=js).status_code == 404
    r = client.post("/s/g/plans/0123456789abcdef/pause", headers=js)
    assert r.status_code == 404
    # a plan made elsewhere, paused: the panel shows it with Resume and Stop
    pid, _ = pl.create_plan(store, "g", steps=2, params={"extension_px": 16})
    pl.control(store, "g", pid, "pause")
    part = client.get("/s/g/live.json?parts=grow").get_json()["parts"]["grow"]
    assert f'data-plan="{pid}"' in part and "paused" in part and "step 0 of 2" in part
    assert 'data-action="resume"' in part and 'data-action="pause"' not in part
    r = client.post(f"/s/g/plans/{pid}/explode", headers=js)
    assert r.status_code == 400 and "paused, resumed or stopped" in r.get_json()["error"]
    r = client.post(f"/s/g/plans/{pid}/stop", headers=js)
    assert r.status_code == 200 and r.get_json()["state"] == "stopped"
    r = client.post(f"/s/g/plans/{pid}/resume", headers=js)
    assert r.status_code == 400 and "has ended" in r.get_json()["error"]


def test_a_viewer_killed_mid_plan_is_continued_by_the_next(tmp_path) -> None:
    root, log = tmp_path / "store", tmp_path / "serve.log"
    store = _store(root)
    proc, base = _serve(root, log)
    try:
        req = urllib.request.Request(base + "/")
        with urllib.request.urlopen(req) as resp:
            html = resp.read().decode()
            cookie = resp.headers["Set-Cookie"].split(";")[0]
        token = html.split('name="csrf-token" content="')[1].split('"')[0]
        body = b"steps=4&directions=right&extension_px=24&repair_above="
        post = urllib.request.Request(
            base + "/s/g/grow",
            data=body,
            headers={"Cookie": cookie, "X-CSRF-Token": token, "Accept": "application/json"},
        )
        with urllib.request.urlopen(post) as resp:
            assert resp.status == 202
            pid = json.loads(resp.read())["plan"]
        _wait(lambda: pl.state(store, "g", pid).done >= 1, what="the first step")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = pl.state(store, "g", pid).done
    assert done < 4, "the plan finished before the kill: nothing left to resume"
    proc, base = _serve(root, log)  # the new viewer resumes the plan on start
    try:
        try:
            _wait(lambda: pl.state(store, "g", pid).state == "finished", what="the resumed plan")
        except AssertionError:
            st = pl.state(store, "g", pid)
            raise AssertionError(f"{st.state} {st.done}/4 {st.reason}\n{log.read_text()}") from None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    st = pl.state(store, "g", pid)
    assert st.done == 4 and st.width == 96 + 4 * 24
    chain = list(store.history(store.refs.head("g", "main")))
    assert len(chain) == 5  # the root and exactly the four steps, none made twice
    assert fsck(store).ok
