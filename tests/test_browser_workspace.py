"""The workspace in headless Chromium: the canvas in deep zoom, extend by a side, the
staging area, compare on the plane, and the export's canvas view from ``file://``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from . import test_browser as tb
from .test_browser import (
    ARTIFACTS,
    Browsing,
    create_session,
    free_port,
    submit_extend,
    wait_until_up,
)

# the browser and a page that records what went wrong on it, as test_browser's journey has
browser = tb.browser
browsing = tb.browsing

pytestmark = pytest.mark.browser
EXQ = [sys.executable, "-c", "from exquisite_store.cli import main; main()"]


class Served(str):
    """The viewer's base URL, and the store it serves."""

    store: str


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``exq serve`` on a free loopback port over a store of its own."""
    tmp = tmp_path_factory.mktemp("workspace")
    port = free_port()
    log = tmp / "serve.log"
    cmd = [*EXQ, "--store", str(tmp / "store"), "serve", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    base = Served(f"http://127.0.0.1:{port}")
    base.store = str(tmp / "store")
    try:
        wait_until_up(base + "/", proc, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

# every tile the map shows has loaded (a tile layer's "load" event came after the last change)
TILES_SHOWN = """(canvas) => {
  const imgs = Array.from(document.querySelectorAll("#ws-map img.leaflet-tile"))
    .filter((i) => i.src.includes(canvas));
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


def view(page) -> dict:
    return page.evaluate("window.exqWorkspace.view()")


def fill(page, **fields: str) -> None:
    form = page.locator("form#extend")
    for name, value in fields.items():
        field = form.locator(f'[name="{name}"]')
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)


def wait_canvas(page, width: int, height: int) -> dict:
    page.wait_for_function(
        "([w, h]) => { const c = window.exqWorkspace.view().canvas;"
        " return c.width === w && c.height === h; }",
        arg=[width, height],
    )
    v = view(page)
    page.wait_for_function(TILES_SHOWN, arg=v["canvas"]["id"])
    return v


def journey_errors(b: Browsing) -> None:
    assert b.js_errors == [], b.js_errors
    assert b.bad_responses == [], b.bad_responses
    assert b.csp_violations == [], b.csp_violations


def test_extend_by_clicking_a_side_and_by_an_arrow_key(browsing: Browsing) -> None:
    page = browsing.page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    create_session(page, "ws", "photo.png")
    first = wait_canvas(page, 512, 384)
    assert first["bands"] == [] and first["following_head"]
    fill(page, backend="patchmatch", extension_px="48", overlap_px="8", n="1", seed="1")
    with page.expect_response(lambda r: r.url.endswith("/extend")) as posted:
        page.locator("path.ws-side-right").click()
    assert posted.value.status == 202
    sent = posted.value.request.post_data or ""
    assert 'name="direction"\r\n\r\nright\r\n' in sent  # the form's own post, side set
    v = wait_canvas(page, 560, 384)
    [band] = v["bands"]
    assert band["direction"] == "right" and band["rect"] == [512, 0, 48, 384]
    # an arrow key extends too (the form keeps its settings between steps)
    page.locator("#ws-map").click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowDown")
    v = wait_canvas(page, 560, 432)
    assert [b["direction"] for b in v["bands"]] == ["right", "down"]
    assert [b["rect"] for b in v["bands"]][1] == [0, 384, 560, 48]
    # hovering a band names its step; clicking it selects that step
    right = v["bands"][0]
    at = page.evaluate("([x, y]) => window.exqWorkspace.screenOf(x, y)", [536, 100])
    x, y = at["x"], at["y"]
    page.mouse.move(x, y)
    hover = page.locator("#ws-hover")
    assert right["short"] in hover.inner_text() and "right +48" in hover.inner_text()
    assert "seed 1" in hover.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#canvas-view").screenshot(path=str(ARTIFACTS / "workspace-canvas.png"))
    page.mouse.click(x, y)
    page.wait_for_function("(s) => window.exqWorkspace.view().step === s", arg=right["step"])
    assert f"step={right['step']}" in page.url
    selected = wait_canvas(page, 560, 384)
    assert not selected["following_head"]
    # the first view fetched tiles of the pyramid only, never a whole composed canvas
    assert not [u for u in requests if "/-/canvas/" in u]
    assert any("/-/pyramid/" in u for u in requests)
    journey_errors(browsing)


def staged_groups(page) -> list:
    return page.evaluate("fetch('/s/ws/staged.json').then((r) => r.json())")


def test_three_candidates_cycled_by_keyboard_and_one_accepted(browsing: Browsing) -> None:
    page = browsing.page
    if page.goto("/s/ws").status != 200:
        create_session(page, "ws", "photo.png")
    before = view(page)
    head = page.evaluate("fetch('/s/ws.json').then((r) => r.json())")["branches"]["main"]
    submit_extend(
        page,
        backend="patchmatch",
        direction="up",
        extension_px="32",
        overlap_px="8",
        n="3",
        seed="5",
    )
    bar = page.locator("#ws-staging")
    bar.wait_for(state="visible")
    what = page.locator("#ws-staged-what")
    [group] = view(page)["staged"]
    cands = group["candidates"]
    assert [c["k"] for c in cands] == [1, 2, 3]
    assert [c["seed"] for c in cands] == [5, 6, 7]  # each candidate shows its own seed
    assert what.inner_text().startswith("candidate 1 (1 of 3 waiting) for main")
    page.wait_for_function(TILES_SHOWN, arg=cands[0]["canvas"]["id"])
    page.keyboard.press("ArrowRight")
    assert what.inner_text().startswith("candidate 2 ")
    assert "seed 6" in what.inner_text()
    page.wait_for_function(TILES_SHOWN, arg=cands[1]["canvas"]["id"])
    page.keyboard.press("3")
    assert what.inner_text().startswith("candidate 3 ") and "seed 7" in what.inner_text()
    page.wait_for_function(TILES_SHOWN, arg=cands[2]["canvas"]["id"])
    page.keyboard.press("ArrowRight")  # wraps round
    assert what.inner_text().startswith("candidate 1 ")
    page.keyboard.press("ArrowLeft")
    assert what.inner_text().startswith("candidate 3 ")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#canvas-view").screenshot(path=str(ARTIFACTS / "workspace-staging.png"))
    # nothing moved yet: main is where it was
    assert page.evaluate("fetch('/s/ws.json').then((r) => r.json())")["branches"]["main"] == head
    with page.expect_response(lambda r: r.url.endswith("/accept")) as accepted:
        page.keyboard.press("Enter")
    assert accepted.value.status == 200
    expect_text(page, "#ws-staged-outcome", "accepted on main")
    page.wait_for_function("(s) => window.exqWorkspace.view().step === s", arg=cands[2]["step"])
    assert bar.is_hidden()
    after = page.evaluate("fetch('/s/ws.json').then((r) => r.json())")["branches"]["main"]
    assert after == cands[2]["step"]
    assert staged_groups(page) == []
    assert view(page)["canvas"]["height"] == before["canvas"]["height"] + 32
    journey_errors(browsing)


def expect_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s).textContent.includes(t)", arg=[selector, text]
    )


def test_discard_drops_candidates_and_moves_nothing(browsing: Browsing) -> None:
    page = browsing.page
    if page.goto("/s/ws").status != 200:
        create_session(page, "ws", "photo.png")
    head = page.evaluate("fetch('/s/ws.json').then((r) => r.json())")["branches"]["main"]
    submit_extend(
        page,
        backend="patchmatch",
        direction="left",
        extension_px="32",
        overlap_px="8",
        n="2",
        seed="9",
    )
    page.locator("#ws-staging").wait_for(state="visible")
    [group] = view(page)["staged"]
    first, second = group["candidates"]
    with page.expect_response(lambda r: r.url.endswith("/discard")) as dropped:
        page.keyboard.press("Delete")
    assert dropped.value.status == 200
    expect_text(page, "#ws-staged-outcome", f"discarded {first['short']}")
    page.wait_for_function("() => window.exqWorkspace.view().staged[0].candidates.length === 1")
    assert page.locator("#ws-staged-what").inner_text().startswith("candidate 2 (1 of 1 waiting)")
    page.locator("[data-stage=discard]").click()
    page.locator("#ws-staging").wait_for(state="hidden")
    assert staged_groups(page) == []
    assert page.evaluate("fetch('/s/ws.json').then((r) => r.json())")["branches"]["main"] == head
    assert view(page)["step"] == head
    # the dropped steps stay in the reflog of their staging places: undo brings one back
    journal = page.evaluate(
        "(ref) => fetch(`/s/ws/history.json?ref=${ref}`).then((r) => r.json())",
        second["step"] and f"staging/main/{group['job']}/2",
    )
    assert journal["moves"][0]["old"] == second["step"]
    journey_errors(browsing)


def shot(page, selector: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"))


def test_compare_of_a_left_step_lines_up_with_its_parent(browsing: Browsing) -> None:
    page = browsing.page
    create_session(page, "cmpleft", "photo.png")
    parent = view(page)["step"]
    submit_extend(
        page,
        backend="patchmatch",
        direction="left",
        extension_px="64",
        overlap_px="8",
        n="1",
        seed="2",
    )
    page.wait_for_function("() => window.exqWorkspace.view().canvas.width === 576")
    child = view(page)["step"]
    assert view(page)["canvas"]["x"] == -64
    page.goto(f"/compare?ids={parent},{child}")
    page.wait_for_function("() => document.querySelector('#cmp').dataset.mode === 'slider'")
    # 1:1, the view centred on the seam at plane x = 0
    page.evaluate("window.exqCompare.overlay.setView(L.latLng(-192, 0), 0, {animate: false})")
    slider = page.locator("#cmp-slider")

    def at(value: str) -> np.ndarray:
        slider.fill(value)
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll('#cmp-map img.leaflet-tile'))
                 .filter((i) => i.closest('.leaflet-layer').style.display !== 'none')
                 .every((i) => i.complete && i.naturalWidth > 0)"""
        )
        page.wait_for_timeout(200)
        return shot(page, "#cmp-map")

    only_parent, only_child = at("100"), at("0")
    # where the seam x = 0 sits on the screen, and a strip well inside the parent's old pixels
    sx, _ = page.evaluate(
        "() => { const p = window.exqCompare.overlay.latLngToContainerPoint(L.latLng(-192, 0));"
        " return [Math.round(p.x), Math.round(p.y)]; }"
    )
    inside = (slice(100, 280), slice(sx + 16, sx + 200))  # 16 px past the 8-px seam zone
    assert only_parent[inside].std() > 5  # real picture there, not the empty background
    assert np.array_equal(only_parent[inside], only_child[inside])  # aligned, pixel for pixel
    # the new band is the child's alone: left of the seam the parent shows no picture
    band = (slice(100, 280), slice(sx - 60, sx - 4))
    assert not np.array_equal(only_parent[band], only_child[band])
    # half and half: the wipe's two sides meet without a shift
    half = at("50")
    mid = half.shape[1] // 2
    assert np.array_equal(half[:, mid + 2 : mid + 60], only_child[:, mid + 2 : mid + 60])
    assert np.array_equal(half[:, mid - 60 : mid - 2], only_parent[:, mid - 60 : mid - 2])
    # the flip-book steps with the keys once paused; the diff shows the common part
    page.locator("[data-cmp-mode=flip]").click()
    page.locator("#cmp-map").click()  # the keys go to the page, not the button
    page.keyboard.press(" ")
    page.wait_for_function("() => document.querySelector('#cmp-pause').textContent === 'play'")
    at_now = page.evaluate("() => document.querySelector('#cmp').dataset.flipAt")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.querySelector('#cmp').dataset.flipAt") != at_now
    page.locator("[data-cmp-mode=diff]").click()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#cmp-map img.leaflet-tile')).some((i) =>"
        " i.src.includes('/-/pyramid-diff/') && i.complete && i.naturalWidth > 0)"
    )
    # the recipe differences: direction and seed differ, the table says so
    diffs = page.locator(".cmp-table tr:has(td.differs) th").all_inner_texts()
    assert "direction" in diffs and "seed" in diffs
    page.locator("[data-cmp-mode=slider]").click()
    slider.fill("50")
    page.wait_for_timeout(300)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workspace-compare.png"), full_page=True)
    # "use this one" asks first, then moves HEAD's branch
    page.once("dialog", lambda d: d.dismiss())
    page.locator(f"[data-use='{parent}']").click()
    assert (
        page.evaluate("fetch('/s/cmpleft.json').then((r) => r.json())")["branches"]["main"] == child
    )
    messages: list[str] = []
    page.once("dialog", lambda d: (messages.append(d.message), d.accept()))
    page.locator(f"[data-use='{parent}']").click()
    expect_text(page, f"[data-use='{parent}'] + span", "main is now at")
    assert "Move branch main" in messages[0]
    assert (
        page.evaluate("fetch('/s/cmpleft.json').then((r) => r.json())")["branches"]["main"]
        == parent
    )
    journey_errors(browsing)


def test_the_exports_canvas_view_works_from_file(browsing: Browsing, server, tmp_path) -> None:
    page = browsing.page
    if page.goto("/s/ws").status != 200:
        create_session(page, "ws", "photo.png")
        fill(page, backend="patchmatch", extension_px="48", overlap_px="8", n="1")
        page.locator("path.ws-side-right").click()
        page.wait_for_function("() => window.exqWorkspace.view().bands.length === 1")
    live = view(page)
    out = tmp_path / "site"
    subprocess.run(
        [*EXQ, "--store", server.store, "export", "ws", str(out)], check=True, capture_output=True
    )
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "index.html").as_uri())
    page.wait_for_function(
        "() => window.exqWorkspace && window.exqWorkspace.timings.firstTile !== null"
    )
    exported = view(page)
    assert exported["canvas"]["id"] == live["canvas"]["id"]
    page.wait_for_function(TILES_SHOWN, arg=live["canvas"]["id"])
    assert page.locator("path.ws-band").count() == len(live["bands"]) > 0
    assert page.locator("path.ws-side").count() == 0  # no extend handles in the export
    assert page.locator("#ws-staging").count() == 0 and page.locator("form#extend").count() == 0
    page.evaluate("window.exqWorkspace.map.setZoom(0, {animate: false})")
    page.wait_for_function(TILES_SHOWN, arg=live["canvas"]["id"])
    assert requests and all(u.startswith("file://") for u in requests), [
        u for u in requests if not u.startswith("file://")
    ]
    assert browsing.js_errors == []
