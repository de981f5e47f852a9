"""The OpenAI key is written nowhere and shown nowhere, after a whole session of steps.

A session grows through ``exq step --backend openai`` and the viewer against the local
fake server: successes, ``n=3`` candidates, a branch, a 401, a refusal, a billed
wrong-size answer, garbage, three 500s, a dry run, a replay. The fake is made to echo
the key back in every place a provider's answer can carry a string (a provider may):
error messages (whole, and without its ``sk-`` prefix), an error's ``code``, the
moderation details, the ``x-request-id`` header of a success and of an error, and the
fields of a successful body; so the scrubbing of each is exercised too.
Then the key, and its random part alone, is looked for in every file of the store
(event log included), every viewer page and ``.json`` twin, every file of an
``exq export``, every log record, and the output of every ``exq`` command run on the
session. The test fails loudly first if the key never reached the server: only then
is finding nothing worth anything.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from exquisite_store.cli import cli
from exquisite_store.manifests import Attempt
from exquisite_store.store import Store
from viewer import create_app

from .fakes import openai_server
from .fakes.openai_server import Behaviour, FakeOpenAI
from .viewer_helpers import BufferedClient, wait_job

SECRET = secrets.token_hex(16)
KEY = "sk-test-SECRET-" + SECRET
S = "s"
STEP = ("step", S, "--backend", "openai", "--model", "gpt-image-2", "--quality", "low")
FAST = {"retry-after-ms": "1"}


def files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    # the provider echoes the key in its errors, as some do: it must be scrubbed
    monkeypatch.setattr(openai_server, "BAD_KEY", f"Incorrect API key provided: {KEY}.")
    moderated = f"Rejected by the safety system (key {KEY}); include the request ID {{}}."
    monkeypatch.setattr(openai_server, "MODERATED", moderated)
    return fake_openai


def test_the_key_is_nowhere(tmp_path: Path, fake: FakeOpenAI, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "store"
    outputs: dict[str, str] = {}  # what each exq command printed

    def exq(*args: str, code: int = 0) -> str:
        res = CliRunner().invoke(cli, ["--store", str(root), *args])
        assert res.exit_code == code, (args[:4], res.output[-2000:], res.exception)
        outputs[" ".join(args)[:200]] = res.output
        return res.output

    start = tmp_path / "start.png"
    arr = np.random.default_rng(3).integers(0, 256, (96, 128, 3), np.uint8)
    Image.fromarray(arr).save(start)
    exq("new", S, str(start), "--title", "secrets", "--budget", "50")

    # --- a whole session through the CLI: successes and every kind of failure ----------------
    grow = (*STEP, "--px", "32", "--overlap", "8")
    exq(*grow, "--seed", "1", "--prompt", "a quiet garden")
    exq(*grow, "--seed", "2", "-n", "3", "--prompt", "three candidates")
    staged = Store.open(root).refs.staged(S)
    one, two, three = (staged[place] for place in sorted(staged))
    exq("keep", S, two[:12])  # the staging verbs see the key nowhere either
    exq("keep", S, three[:12])
    exq("accept", S, one[:12])
    first = Store.open(root).refs.head(S, "main")
    fake.script("unauthorized")
    assert "PermanentBackendError" in exq(*grow, "--seed", "3", code=1)
    fake.script("moderation")
    assert "SafetyRefusal" in exq(*grow, "--seed", "4", "--prompt", "something forbidden", code=1)
    fake.script("wrong_size")
    assert "DimensionMismatch" in exq(*grow, "--seed", "5", code=1)
    fake.script("garbage_b64")
    assert "DecodeError" in exq(*grow, "--seed", "6", code=1)
    fake.script(*[Behaviour("server_error", headers=FAST)] * 3)
    assert "TransientBackendError" in exq(*grow, "--seed", "7", code=1)
    exq(*grow, "--seed", "8", "--from", first[:12], "--branch", "alt", "--direction", "down")
    # --- the key echoed in every other place an answer can carry a string --------------------
    fake.script(Behaviour("unauthorized", code=KEY))
    assert "PermanentBackendError" in exq(*grow, "--seed", "10", code=1)
    fake.script(Behaviour("unauthorized", message=f"Incorrect API key provided: {KEY[3:]}"))
    assert "PermanentBackendError" in exq(*grow, "--seed", "11", code=1)
    fake.script(Behaviour("moderation", categories=("violence", KEY, KEY[3:])))
    assert "SafetyRefusal" in exq(*grow, "--seed", "12", code=1)
    fake.script(*[Behaviour("server_error", headers=FAST | {"x-request-id": KEY})] * 3)
    assert "TransientBackendError" in exq(*grow, "--seed", "13", code=1)
    echo = {"x-request-id": KEY[3:]}
    fake.script(Behaviour(headers=echo, body={"quality": KEY, "output_format": KEY[3:]}))
    exq(*grow, "--seed", "14", "--prompt", "an answer that echoes the key")
    echoed_step = Store.open(root).refs.head(S, "main")
    assert "dry run" in exq(*grow, "--seed", "9", "--dry-run", "--prompt", "only a preview")

    # --- and through the viewer: a step and a 401 in background jobs ----------------------------
    app = create_app({"EXQ_STORE": str(root), "TESTING": True})
    app.test_client_class = BufferedClient
    client = app.test_client()
    token = "csrf-of-the-secrets-test"
    with client.session_transaction() as sess:
        sess["csrf"] = token
    body = {"backend": "openai", "model": "gpt-image-2", "quality": "low", "extension_px": 16}
    body |= {"overlap_px": 4, "direction": "left", "prompt": "from the viewer"}
    for script, outcome in ((None, "succeeded"), ("unauthorized", "failed")):
        if script:
            fake.script(script)
        resp = client.post(f"/s/{S}/extend", json=body, headers={"X-CSRF-Token": token})
        assert resp.status_code == 202, resp.get_data()
        assert wait_job(client, S, resp.get_json()["job"])["state"] == outcome

    # --- the key really went over the wire, on every request ------------------------------------
    calls = fake.calls
    assert len(calls) >= 11, f"only {len(calls)} requests reached the fake server"
    sent = {c.headers.get("authorization") for c in calls}
    assert sent == {f"Bearer {KEY}"}, (
        "THE KEY NEVER REACHED THE FAKE SERVER (or not on every request): "
        f"{sent!r}; finding no key below would prove nothing"
    )
    # and the server's answers carried it back (so scrubbing, not luck, keeps it out)
    store = Store.open(root)
    attempts = [store.objects.get_manifest(line.id, Attempt) for line in store.attempts(S)]
    kinds = sorted(a.failure_kind for a in attempts)
    assert kinds == sorted(
        ["PermanentBackendError"] * 4
        + ["SafetyRefusal"] * 2
        + ["DimensionMismatch", "DecodeError"]
        + ["TransientBackendError"] * 2
    )
    echoed = [
        a.message for a in attempts if a.failure_kind in ("PermanentBackendError", "SafetyRefusal")
    ]
    assert all("Incorrect API key provided" in m or "safety system" in m for m in echoed)
    assert all("[key]" in m for m in echoed), echoed
    # ... and the other places did carry it back: the code, the details, the header
    details = [a.details for a in attempts]
    assert any(d.get("code") == "[key]" for d in details), details
    assert any("[key]" in d.get("moderation_details", "") for d in details), details
    assert any(d.get("request_id") == "[key]" for d in details), details
    echoed_ok = store.step(echoed_step)
    assert echoed_ok.response.provider_request_id == "[key]", echoed_ok.response

    # --- every exq command on the session ---------------------------------------------------------
    branches = sorted(store.refs.branches(S))
    assert {"main", "main~2", "main~3", "alt"} <= set(branches)
    for b in branches:
        exq("log", S, "--branch", b)
    exq("branches", S)
    exq("attempts", S)
    assert "billed" in exq("cost", S)
    exq("fsck")
    every_object = sorted(oid for oid, _ in store.storage.list_objects())
    assert len(every_object) > 50
    for oid in every_object:
        exq("show", oid)
    exq("reproduce", f"{S}:main", "--replay")
    site = tmp_path / "site"
    exq("export", S, str(site), "--layout", "steps")
    exported = files_under(site)
    canvases = sorted(site.glob("canvas/*.png"))
    assert canvases and len(exported) > 30
    for png in canvases:
        exq("inspect", str(png))

    # --- every viewer page and its .json twin -----------------------------------------------------
    steps = json.loads(exported["export.json"])["branches"]
    nodes = client.get(f"/s/{S}.json").get_json()["nodes"]
    step_ids = [n["id"] for n in nodes if not n["failed"]]
    attempt_ids = [n["id"] for n in nodes if n["failed"]]
    assert len(attempt_ids) == len(attempts) and set(steps.values()) <= set(step_ids)
    urls = ["/", "/index.json", f"/s/{S}", f"/s/{S}.json", f"/s/{S}/gallery"]
    urls += [f"/s/{S}/gallery.json", f"/-/jobs/{S}.json", f"/-/events/{S}?once=1"]
    urls += [f"/s/{S}/estimate.json?backend=openai&model=gpt-image-2&prompt=x"]
    urls += [f"/step/{sid}{ext}" for sid in step_ids for ext in ("", ".json")]
    urls += [f"/attempt/{aid}{ext}" for aid in attempt_ids for ext in ("", ".json")]
    family = ",".join(store.refs.head(S, b) for b in ("main", "main~2", "main~3"))
    urls += [f"/compare?ids={family}", f"/compare.json?ids={family}"]
    pages: dict[str, bytes] = {}
    for url in urls:
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)
        pages[url] = resp.get_data()

    # --- nothing anywhere -------------------------------------------------------------------------
    stored = files_under(root)
    events = [json.dumps(e.data) for e in store.events(S)]
    assert any("PermanentBackendError" in e for e in events)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    places = {
        **{f"store:{k}": v for k, v in stored.items()},
        **{f"event:{i}": e.encode() for i, e in enumerate(events)},
        **{f"page:{k}": v for k, v in pages.items()},
        **{f"export:{k}": v for k, v in exported.items()},
        **{f"exq {k}": v.encode() for k, v in outputs.items()},
        "log records": logged.encode(),
    }
    assert len(outputs) > 60 and len(pages) > 30
    for needle in (KEY, SECRET):
        hits = [where for where, data in places.items() if needle.encode() in data]
        assert hits == [], f"the key ({needle[:12]}...) is in: {hits[:20]}"
    # the place a raw dump would most likely land: the attempt records of the 401s
    assert not any(KEY in json.dumps(a.details) for a in attempts)


def test_no_key_is_a_clear_error_that_names_no_key(tmp_path: Path, monkeypatch) -> None:
    """Without OPENAI_API_KEY the step fails before any request, and says what is missing."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(buf, format="PNG")
    (tmp_path / "start.png").write_bytes(buf.getvalue())
    run = CliRunner().invoke
    store = ["--store", str(tmp_path / "store")]
    assert run(cli, [*store, "new", S, str(tmp_path / "start.png")]).exit_code == 0
    res = run(cli, [*store, *STEP, "--px", "32", "--overlap", "8"])
    assert res.exit_code == 1 and "needs OPENAI_API_KEY" in res.output, res.output
    assert "Traceback" not in res.output
