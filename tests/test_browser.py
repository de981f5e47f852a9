"""The viewer in headless Chromium, driven like a user, against a real ``exq serve``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
if CHROMIUM is None and os.environ.get("EXQ_REQUIRE_BROWSER"):
    raise RuntimeError("EXQ_REQUIRE_BROWSER is set (CI) but Debian's chromium is not installed")
if CHROMIUM is None:
    pytest.skip(
        "browser tests need a system Chromium (/usr/bin/chromium or `chromium` on PATH)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from viewer import SSE_MAX_STREAMS  # noqa: E402

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 30_000  # one patchmatch step takes about a second; this is only a ceiling
# every <img> of a page decoded (a broken or empty image has naturalWidth 0)
ALL_IMAGES_LOADED = """(sel) => {
  const imgs = Array.from(document.querySelectorAll(sel));
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exq serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise AssertionError(f"exq serve did not answer {url} in {timeout:.0f}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``exq --store <tmp> serve`` on a free loopback port; yields its base URL."""
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    log = tmp / "serve.log"
    cmd = [
        sys.executable,
        "-c",
        "from exquisite_store.cli import main; main()",
        "--store",
        str(tmp / "store"),
        "serve",
        "--port",
        str(port),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    base = f"http://127.0.0.1:{port}"
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


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@dataclass
class Browsing:
    """A page and what went wrong on it: JS errors and responses of 400 or more."""

    page: Page
    js_errors: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)


@pytest.fixture
def browsing(browser, server):
    context = browser.new_context(base_url=server, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    b = Browsing(context.new_page())
    b.page.on("pageerror", lambda exc: b.js_errors.append(str(exc)))
    # Chromium reports what the Content-Security-Policy blocked on the console
    b.page.on(
        "console",
        lambda m: b.csp_violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    b.page.on(
        "response",
        lambda r: b.bad_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    yield b
    context.close()


# --- what a user does -------------------------------------------------------------------


def create_session(page: Page, name: str, fixture: str) -> None:
    page.goto("/")
    form = page.locator('form[action="/-/new"]')
    form.locator('input[name="name"]').fill(name)
    form.locator('select[name="fixture"]').select_option(fixture)
    form.get_by_role("button", name="Create").click()
    page.wait_for_url(f"**/s/{name}")


def submit_extend(page: Page, **fields: str) -> str:
    """Fill the Extend form, submit it, follow the progress list to "done"; the job id."""
    form = page.locator("form#extend")
    for name, value in fields.items():
        field = form.locator(f'[name="{name}"]')
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    with page.expect_response(lambda r: r.url.endswith("/extend")) as posted:
        form.get_by_role("button", name="Extend").click()
    assert posted.value.status == 202, posted.value.text()
    job = posted.value.json()["job"]
    # the page puts the job in its URL and clears the list before it follows the job
    page.wait_for_function("(job) => location.search === `?job=${job}`", arg=job)
    page.locator("#progress li", has_text="done:").wait_for()
    return job


def progress_lines(page: Page) -> list[str]:
    return page.locator("#progress li").all_inner_texts()


def tree_steps(page: Page) -> list[str]:
    return page.locator("#tree a.node[data-step]").evaluate_all(
        "as => as.map((a) => a.dataset.step)"
    )


def candidate_ids(page: Page) -> list[str]:
    hrefs = page.locator("#candidates a[href^='/step/']").evaluate_all(
        "as => as.map((a) => a.getAttribute('href'))"
    )
    return [h.removeprefix("/step/") for h in hrefs]


def wait_images(page: Page, selector: str) -> int:
    page.wait_for_function(ALL_IMAGES_LOADED, arg=selector)
    return page.locator(selector).count()


# --- the journey ------------------------------------------------------------------------


@pytest.mark.browser
def test_grow_branch_compare_and_inspect(browsing: Browsing) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "failure.png").unlink(missing_ok=True)
    try:
        journey(browsing.page)
    except Exception:
        browsing.page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        raise
    assert browsing.js_errors == []
    assert browsing.bad_responses == []
    assert browsing.csp_violations == []


def journey(page: Page) -> None:
    """Create, extend twice, branch with two candidates, compare, inspect a step."""
    name = "walk"
    first = page.goto("/")
    assert first is not None and "script-src 'self'" in first.headers["content-security-policy"]
    create_session(page, name, "photo.png")
    assert page.locator("h1").inner_text() == name
    [root] = tree_steps(page)

    # extend twice on main with patchmatch, watching the progress list
    step_ids = []
    for seed in ("1", "2"):
        submit_extend(
            page,
            backend="patchmatch",
            direction="right",
            extension_px="48",
            overlap_px="8",
            seed=seed,
            n="1",
        )
        lines = progress_lines(page)
        assert lines[0] == "queued" and "started" in lines, lines
        assert {"plan", "generate", "validate", "commit"} <= set(lines), lines
        assert lines[-1] == "done: 1 candidate(s)", lines
        assert lines.index("generate") < lines.index("commit")
        [sid] = candidate_ids(page)
        step_ids.append(sid)
    page.goto(f"/s/{name}")
    assert set(tree_steps(page)) == {root, *step_ids}
    assert "3 steps" in page.locator("main p.muted").first.inner_text()

    # branch from the first extension step: its page, "Extend from here…", two candidates
    first = step_ids[0]
    page.locator(f'#tree a.node[data-step="{first}"]').click()
    page.wait_for_url(f"**/step/{first}")
    page.get_by_role("link", name="Extend from here…").click()
    page.wait_for_url(f"**/s/{name}?from={first}")
    assert page.locator('form#extend input[name="parent"]').input_value() == first
    assert page.locator(f'#tree a.node.selected[data-step="{first}"]').count() == 1
    submit_extend(
        page,
        branch="alt",
        backend="patchmatch",
        direction="down",
        extension_px="48",
        overlap_px="8",
        seed="3",
        n="2",
    )
    assert progress_lines(page)[-1] == "done: 2 candidate(s)"
    alt = candidate_ids(page)
    assert len(alt) == 2
    # two candidates wait in the staging area: keep the second as a branch, accept the first
    labels = page.locator("#candidates li.staged b").all_inner_texts()
    assert labels == ["alt candidate 1", "alt candidate 2"]
    second = page.locator("#candidates li.staged").nth(1)
    second.get_by_role("button", name="Keep as branch").click()
    expect(second.locator(".outcome")).to_have_text(" kept as alt~2")
    first_candidate = page.locator("#candidates li.staged").nth(0)
    first_candidate.get_by_role("button", name="Accept").click()
    expect(first_candidate.locator(".outcome")).to_have_text(" accepted on alt")

    # compare the candidates: every image decodes, the slider wipes, the flip-book flips
    page.get_by_role("link", name="compare the candidates").click()
    page.wait_for_url("**/compare?ids=*")
    assert page.url.endswith(f"/compare?ids={alt[0]},{alt[1]}")
    # on the plane, in deep zoom (tests/test_browser_workspace.py checks the alignment)
    page.wait_for_function("() => document.querySelector('#cmp').dataset.mode === 'slider'")
    wait_images(page, "#cmp img.leaflet-tile")
    page.locator("[data-cmp-mode=flip]").click()
    page.wait_for_function(
        "(s) => document.querySelector('#cmp-label').textContent.startsWith(s)", arg=alt[1][:12]
    )
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    # a step page: its tiles decode and the new band is outlined over the canvas
    page.goto(f"/step/{alt[0]}")
    page.locator(".canvas").scroll_into_view_if_needed()
    assert wait_images(page, "img.tile") >= 4  # photo.png is 512x384: 2x2 tiles of 256
    band = page.locator(".band.gen").bounding_box()
    canvas = page.locator(".canvas").bounding_box()
    assert band and canvas and band["width"] > 0 and band["height"] > 0
    assert abs(band["y"] + band["height"] - canvas["y"] - canvas["height"]) <= 1  # down: bottom
    assert page.locator(".band.seam").count() == 1  # overlap 8: the seam zone is drawn too
    assert page.locator(".canvas").evaluate("e => e.style.height") == "432px"  # 384 + 48
    # long ids (the recipe's prompt_id) wrap inside their panel: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(ARTIFACTS / "step.png"), full_page=True)

    # the session's tree now has both branches
    page.goto(f"/s/{name}")
    assert set(tree_steps(page)) == {root, *step_ids, *alt}
    panel = page.locator("aside section", has=page.locator("h2", has_text="Branches"))
    branches = panel.locator("li > a").all_inner_texts()
    assert branches == ["alt", "alt~2", "main"]
    page.locator(".tree-panel").screenshot(path=str(ARTIFACTS / "session.png"))


# --- live progress when the server has no stream to spare ---------------------------------


@contextmanager
def streams_held(base: str, count: int) -> Iterator[None]:
    """Hold ``count`` live progress streams open (as other tabs would), then let go."""
    host, port = base.removeprefix("http://").split(":")
    socks = []
    try:
        # a closed tab's stream is let go when the server next writes to it (within a second)
        deadline = time.monotonic() + 5
        while len(socks) < count:
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(f"GET /-/events/walk?for=60 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                socks.append(s)
                continue
            s.close()
            assert time.monotonic() < deadline, "a stream within the cap refused"
            time.sleep(0.2)
        yield
    finally:
        for s in socks:
            s.close()


@pytest.mark.browser
def test_progress_falls_back_to_polling_when_streams_run_out(browsing: Browsing, server) -> None:
    """Every stream slot taken: the page gets 503 for its stream and polls the job instead."""
    page = browsing.page
    if page.goto("/s/walk").status != 200:  # the journey made it; alone, make it here
        create_session(page, "walk", "photo.png")
    page.goto("/")  # a session page holds a stream of its own: leave it before taking them all
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if "/-/jobs/walk.json" in r.url else None)
    with streams_held(server, SSE_MAX_STREAMS):
        page.goto("/s/walk")
        submit_extend(
            page, backend="patchmatch", direction="left", extension_px="32", overlap_px="8", n="1"
        )
        lines = progress_lines(page)
    assert lines[-1] == "done: 1 candidate(s)", lines
    assert polled, "the page never polled its job"
    [refused] = [r for r in browsing.bad_responses if "/-/events/walk" in r]
    assert refused.startswith("503 ")
    assert browsing.js_errors == [] and browsing.csp_violations == []
