"""A team's viewer in headless Chromium: sign in with a token, run a step, see who made it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .test_browser import CHROMIUM, LAUNCH_ARGS, WAIT_MS, free_port, wait_until_up

if CHROMIUM is None:  # test_browser already skipped (or, in CI, failed) without it
    pytest.skip("browser tests need a system Chromium", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

from exquisite_store.core import team  # noqa: E402
from exquisite_store.store import Store  # noqa: E402

from .helpers import rng_image  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "store"
    store = Store.init(root)
    store.create_session("team", rng_image(96, 128, seed=5), title="team")
    team.add_user(store, "ed", "editor")
    team.add_user(store, "vera", "viewer")
    tokens = {n: team.create_token(store, n) for n in ("ed", "vera")}
    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-c", "from exquisite_store.cli import main; main()"]
    cmd += ["--store", str(root), "serve", "--port", str(port), "--auth", "tokens"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/-/signin", proc, log)
        yield {"base": base, "store": store, "tokens": tokens}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sign_in(page, base: str, token: str) -> None:
    page.goto(base + "/s/team")
    assert "/-/signin" in page.url  # sent to sign in first
    page.fill('input[name="token"]', token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/s/team")


def test_sign_in_run_a_step_and_see_its_author(served) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        sign_in(page, served["base"], served["tokens"]["ed"])
        form = page.locator("form#extend")
        form.locator('[name="extension_px"]').fill("32")
        form.locator('[name="overlap_px"]').fill("4")
        with page.expect_response(lambda r: r.url.endswith("/extend")) as posted:
            form.get_by_role("button", name="Extend").click()
        assert posted.value.status == 202, posted.value.text()
        # the history panel credits the move to ed, live, without a reload
        page.locator("#history-panel .who", has_text="by ed").first.wait_for()
        # and hovering the new band on the canvas names ed
        page.wait_for_function("() => window.exqWorkspace.view().bands.length === 1")
        band = page.evaluate("() => window.exqWorkspace.view().bands[0]")
        assert band["author"] == "ed"
        x, y, w, h = band["rect"]
        # near the band's inner edge: its outer edge is under the "extend right" handle
        point = [x + 3, y + h // 2]
        page.locator("#ws-map").scroll_into_view_if_needed()  # the Extend button scrolled
        at = page.evaluate("([x, y]) => window.exqWorkspace.screenOf(x, y)", point)
        page.mouse.move(at["x"], at["y"])
        page.locator("#ws-hover", has_text="by ed").wait_for()
        store = Store.open(served["store"].root)
        assert store.step(store.refs.head("team", "main")).author == "ed"

        # a viewer signs in and is offered nothing that writes
        other = browser.new_context().new_page()
        other.set_default_timeout(WAIT_MS)
        sign_in(other, served["base"], served["tokens"]["vera"])
        assert other.locator("body").get_attribute("data-role") == "viewer"
        assert not other.locator("#extend-panel").is_visible()
        refused = other.evaluate(
            """async () => (await fetch('/s/team/extend', {method: 'POST',
                 headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content,
                           'X-Requested-With': 'fetch'}})).status"""
        )
        assert refused == 403
        browser.close()
