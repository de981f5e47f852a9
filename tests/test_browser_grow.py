"""The Grow panel in headless Chromium: start a 3-step plan, watch it, pause, resume."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .test_browser import CHROMIUM, LAUNCH_ARGS, WAIT_MS, free_port, wait_until_up

if CHROMIUM is None:
    pytest.skip("browser tests need a system Chromium", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from exquisite_store.core import plans as pl  # noqa: E402
from exquisite_store.store import Store  # noqa: E402

from .helpers import rng_image  # noqa: E402

pytestmark = pytest.mark.browser
#: a plan's step is a patchmatch fill: about a second alone, far more on a busy machine
SLOW_MS = 180_000


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "store"
    store = Store.init(root)
    store.create_session("g", rng_image(96, 128, seed=6), title="grow")
    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-c", "from exquisite_store.cli import main; main()"]
    cmd += ["--store", str(root), "serve", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/", proc, log)
        yield {"base": base, "store": store}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_grow_panel_starts_shows_pauses_and_resumes_a_plan(served) -> None:
    store = served["store"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(base_url=served["base"])
        page.set_default_timeout(WAIT_MS * 2)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/s/g")
        panel = page.locator("#grow-panel")
        form = panel.locator("form.grow-start")
        form.locator('[name="steps"]').fill("3")
        form.locator('[name="extension_px"]').fill("64")
        with page.expect_response(lambda r: r.url.endswith("/grow")) as posted:
            form.get_by_role("button", name="Start growing").click()
        assert posted.value.status == 202, posted.value.text()
        pid = posted.value.json()["plan"]
        row = panel.locator(f'li[data-plan="{pid}"]')
        # the panel shows the plan at once (a plan event refreshes it), then pause it
        # while its first step runs: it stops after that step
        row.get_by_role("button", name="Pause").click()
        expect(row).to_have_attribute("data-state", "paused", timeout=SLOW_MS)
        expect(row.get_by_role("button", name="Resume")).to_be_visible()
        # the step that was running when Pause was pressed may still commit: wait until
        # the runner has let the plan go (it holds the plan's lock while it runs)
        deadline = time.monotonic() + SLOW_MS / 1000
        while True:
            with store.storage.branch_lock(pl.plan_ref("g", pid), wait=False) as free:
                if free:
                    break
            assert time.monotonic() < deadline, "the plan kept running after Pause"
            time.sleep(0.1)
        paused_at = pl.state(store, "g", pid).done
        assert paused_at < 3
        page.wait_for_timeout(1500)  # paused means paused: no step is added meanwhile
        assert pl.state(store, "g", pid).done == paused_at
        row.get_by_role("button", name="Resume").click()
        expect(row.locator(".progress")).to_have_text("step 3 of 3", timeout=SLOW_MS)
        expect(row).to_have_attribute("data-state", "finished", timeout=SLOW_MS)
        expect(row.locator(".choices li")).to_have_count(3)
        expect(row.locator(".choices li").first).to_contain_text("the only candidate")
        # the tree and the branch list followed without a reload
        expect(page.locator("#tree a.node[data-step]")).to_have_count(4)
        assert not errors, errors
        browser.close()
    st = pl.state(store, "g", pid)
    assert st.state == "finished" and st.done == 3 and st.width == 128 + 3 * 64
