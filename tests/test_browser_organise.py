"""Stars, tags and the tree's filter in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_browser import CHROMIUM, LAUNCH_ARGS, WAIT_MS, free_port, wait_until_up

if CHROMIUM is None:  # test_browser already skipped (or, in CI, failed) without it
    pytest.skip("browser tests need a system Chromium", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from exquisite_store import core  # noqa: E402
from exquisite_store.core import annotations as notes  # noqa: E402
from exquisite_store.pipeline.step import run_step  # noqa: E402
from exquisite_store.store import Store  # noqa: E402

from .fakes.backends import PatternBackend  # noqa: E402

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
S = "meadow"
PROMPTS = ["a red barn", "blue sky", "red sky at dusk", "green hills"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``exq serve`` on a session of 4 prompted steps on main and a 2-step branch."""
    tmp = tmp_path_factory.mktemp("browser-organise")
    root = tmp / "store"
    store = Store.init(root)
    from .helpers import rng_image

    store.create_session(S, rng_image(96, 128, seed=5), title="meadow")
    steps = []
    for i, prompt in enumerate(PROMPTS):
        out = run_step(
            store, S, backend_impl=PatternBackend(), extension_px=32, overlap_px=4, seed=i,
            direction="right" if i % 2 == 0 else "down", prompt=prompt,
        )  # fmt: skip
        steps += out.step_ids
    core.create_branch(store, S, "side", steps[0])
    side = []
    for i in range(2):
        out = run_step(
            store, S, backend_impl=PatternBackend(), branch="side", extension_px=24,
            overlap_px=4, seed=10 + i, direction="up", prompt="side path",
        )  # fmt: skip
        side += out.step_ids
    port = free_port()
    log = tmp / "serve.log"
    cmd = [sys.executable, "-c", "from exquisite_store.cli import main; main()"]
    cmd += ["--store", str(root), "serve", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/", proc, log)
        yield {"base": base, "store": store, "steps": steps, "side": side}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def page(served):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(base_url=served["base"])
        context.set_default_timeout(WAIT_MS)
        pg = context.new_page()
        pg.set_viewport_size({"width": 1400, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))

        # a 404 is the browser's own favicon request, a 400 a refusal the test asks for
        # (and checks is shown next to its form)
        def console(m) -> None:
            if m.type == "error" and not ("404" in m.text or "400 (BAD REQUEST)" in m.text):
                errors.append(m.text)

        pg.on("console", console)
        pg.on("dialog", lambda d: d.accept())
        yield pg
        assert errors == []
        browser.close()


def node(page, sid: str):
    return page.locator(f'#tree a.node[data-step="{sid}"]')


def test_s_stars_the_canvas_step_and_the_tree_shows_it_live(page, served) -> None:
    head = served["steps"][-1]
    page.goto(f"/s/{S}")
    page.locator("#ws-map img.leaflet-tile").first.wait_for()
    expect(page.locator("#ws-star")).to_have_text("☆ star")
    page.locator("body").press("s")
    expect(page.locator("#ws-star")).to_have_text("★ starred")
    expect(node(page, head)).to_have_class("node head starred")  # the tree was refreshed live
    assert notes.note_of(served["store"], S, head).starred
    page.locator("body").press("s")  # and off again
    expect(page.locator("#ws-star")).to_have_text("☆ star")
    expect(node(page, head)).to_have_class("node head")


def test_tag_and_star_on_the_step_page(page, served) -> None:
    sid = served["steps"][2]
    page.goto(f"/step/{sid}")
    page.locator("#tag-form input[name=tag]").fill("fav dusk")
    page.locator("#tag-form").get_by_role("button", name="Tag").click()
    expect(page.locator("#notes .tags")).to_contain_text("#fav")
    page.locator("body").press("s")
    expect(page.locator("#star-form button")).to_have_text("☆ Unstar")
    page.locator("#note-form textarea").fill("the best sky so far")
    page.locator("#note-form").get_by_role("button", name="Save note").click()
    expect(page.locator("#notes .note")).to_have_text("the best sky so far")
    bad = page.locator("#tag-form input[name=tag]")
    bad.fill("no/slashes")
    page.locator("#tag-form").get_by_role("button", name="Tag").click()
    expect(page.locator("#tag-form .form-error")).to_contain_text("may hold only")
    got = notes.note_of(served["store"], S, sid)
    assert got.starred and got.tags == ("fav", "dusk") and got.note == "the best sky so far"


def test_filter_highlights_matches_and_dims_the_rest(page, served) -> None:
    steps, side = served["steps"], served["side"]
    notes.annotate(served["store"], S, steps[2], star=True, add_tags=("fav",))
    notes.annotate(served["store"], S, side[1], add_tags=("fav",))
    page.goto(f"/s/{S}")
    f = page.locator("#tree-filter")
    f.locator("[name=prompt]").fill("red")
    f.get_by_role("button", name="filter").click()
    total = page.locator("#tree a.node[data-step]").count()
    expect(page.locator("#tree-filter-out")).to_have_text(f"2 of {total} steps match")
    expect(page.locator("#tree a.node.match")).to_have_count(2)
    matched = page.locator("#tree a.node.match").evaluate_all("as => as.map(a => a.dataset.step)")
    assert set(matched) == {steps[0], steps[2]}
    expect(page.locator("#tree a.node.dim")).to_have_count(total - 2)
    f.locator("[name=prompt]").fill("")
    f.locator("[name=tag]").fill("fav")
    f.get_by_role("button", name="filter").click()
    expect(page.locator("#tree-filter-out")).to_have_text(f"2 of {total} steps match")
    f.locator("[name=starred]").check()
    f.get_by_role("button", name="filter").click()
    expect(page.locator("#tree-filter-out")).to_have_text(f"1 of {total} steps match")
    expect(page.locator("#tree a.node.match")).to_have_count(1)
    f.locator("[name=starred]").uncheck()
    f.locator("[name=seam_above]").fill("nope")
    f.get_by_role("button", name="filter").click()
    expect(page.locator("#tree-filter-out")).to_contain_text("seam-above")
    f.locator("[name=seam_above]").fill("")
    f.get_by_role("button", name="filter").click()  # tag=fav again, for the picture
    expect(page.locator("#tree-filter-out")).to_have_text(f"2 of {total} steps match")
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 760, "height": 1000})
    page.locator(".tree-panel").screenshot(path=str(ARTIFACTS / "tree-filter.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})
    if SHOTS.is_dir() and os.environ.get("EXQ_UPDATE_SCREENSHOTS"):
        shutil.copyfile(ARTIFACTS / "tree-filter.png", SHOTS / "tree-filter.png")
    # a live refresh (someone tags a step elsewhere) re-runs the filter
    notes.annotate(served["store"], S, steps[1], add_tags=("fav",))
    expect(page.locator("#tree-filter-out")).to_have_text(f"3 of {total} steps match")
    f.get_by_role("button", name="clear").click()
    expect(page.locator("#tree a.node.dim")).to_have_count(0)
    expect(page.locator("#tree a.node.match")).to_have_count(0)
