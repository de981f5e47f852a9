"""The static export opened from file:// in headless Chromium: pages, links and images work."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from viewer.export import export_session

from .viewer_helpers import make_session

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
if CHROMIUM is None and os.environ.get("EXQ_REQUIRE_BROWSER"):
    raise RuntimeError("EXQ_REQUIRE_BROWSER is set (CI) but Debian's chromium is not installed")
if CHROMIUM is None:
    pytest.skip("browser tests need a system Chromium (/usr/bin/chromium)", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

pytestmark = pytest.mark.browser
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ALL_IMAGES_LOADED = """() => {
  const imgs = Array.from(document.querySelectorAll("img"));
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# the flip-book shows its second canvas, alone, under that canvas's label
FLIPPED_TO = """(want) => {
  const frames = Array.from(document.querySelectorAll("[data-flip] > [data-label]"));
  const label = document.querySelector("[data-flip-label]").textContent;
  return label === want && frames[0].hidden && !frames[1].hidden;
}"""


def test_export_works_from_file_urls(tmp_path) -> None:
    world = make_session(tmp_path / "store")
    out = tmp_path / "site"
    export_session(world["store"].root, "garden", out)
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((out / "index.html").as_uri())
            page.wait_for_function("() => document.querySelectorAll('svg image').length > 0")
            assert page.locator("svg .node").count() == 6
            # into a step: click its node in the tree
            first = world["steps"][0]
            page.locator(f'a[data-step="{first}"]').click()
            page.wait_for_url(f"**/step/{first}.html")
            page.wait_for_function(ALL_IMAGES_LOADED)
            assert page.locator("img.tile").count() >= 1
            assert page.locator("form").count() == 0  # read-only
            # the step with its parent: each canvas's tiles are sent once, side by side;
            # app.js fills the slider and the flip-book with copies of them
            page.get_by_text("compare with the parent").click()
            page.wait_for_url("**/compare/*.html")
            page.wait_for_function(ALL_IMAGES_LOADED)
            sent = page.locator("#side img.tile").count()
            assert sent >= 2 and page.locator("#side figure").count() == 2
            assert page.locator("[data-slider] img.tile").count() == sent
            assert page.locator("[data-flip] img.tile").count() == sent
            over = page.locator("[data-slider] .over")
            assert "50%" in over.evaluate("e => e.style.clipPath")
            page.locator("[data-slider-input]").fill("20")
            assert "20%" in over.evaluate("e => e.style.clipPath")
            labels = page.locator("[data-flip] > [data-label]").evaluate_all(
                "es => es.map(e => e.dataset.label)"
            )
            page.wait_for_function(FLIPPED_TO, arg=labels[1])  # one check: no race with 900 ms
            page.go_back()
            page.wait_for_url(f"**/step/{first}.html")
            # into a compare page: the first step's children are the two side candidates
            page.get_by_text("compare the children").click()
            page.wait_for_url("**/compare/*.html")
            page.wait_for_function(ALL_IMAGES_LOADED)
            natural = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
            assert natural and all(w > 0 for w in natural)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "export-compare.png"), full_page=True)
            # back to the gallery through a relative link
            page.goto((out / "gallery.html").as_uri())
            page.wait_for_function(ALL_IMAGES_LOADED)
        finally:
            browser.close()
    assert not errors, errors
    assert requests and all(u.startswith("file://") for u in requests), [
        u for u in requests if not u.startswith("file://")
    ]
