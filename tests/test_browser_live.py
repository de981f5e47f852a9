"""The live workspace in headless Chromium: other tabs, cancel, undo, short ids, 390 px."""

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

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from exquisite_store.errors import StepFailure  # noqa: E402
from exquisite_store.pipeline.step import run_step  # noqa: E402
from exquisite_store.store import Store  # noqa: E402

from .fakes.backends import PatternBackend, WrongSizeBackend  # noqa: E402

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
S = "live"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``exq serve`` on a store with session ``live`` (root + 2 steps on main, 1 attempt)."""
    tmp = tmp_path_factory.mktemp("browser-live")
    root = tmp / "store"
    store = Store.init(root)
    from .helpers import rng_image

    store.create_session(S, rng_image(96, 128, seed=5), title="live")
    steps = []
    for seed in (1, 2):
        out = run_step(
            store, S, backend_impl=PatternBackend(), extension_px=32, overlap_px=4, seed=seed
        )
        steps += out.step_ids
    try:
        run_step(store, S, backend_impl=WrongSizeBackend(), extension_px=8, overlap_px=2)
    except StepFailure as exc:
        attempt = exc.details["attempt_id"]
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
        yield {"base": base, "store": store, "steps": steps, "attempt": attempt}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Tab:
    """A page and what went wrong on it (JS errors, CSP reports, dialogs it was shown)."""

    def __init__(self, context, width: int = 1400) -> None:
        self.page: Page = context.new_page()
        self.page.set_viewport_size({"width": width, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(m.text) if m.type == "error" and "404" not in m.text else None
            ),
        )
        self.page.on("dialog", self._accept)

    def _accept(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()

    def mark(self) -> None:
        """Set a flag that a reload would wipe."""
        self.page.evaluate(
            """() => { window.__kept = 1; window.__changed = [];
              document.addEventListener("exq:changed",
                (e) => window.__changed.push(e.detail.event.type)); }"""
        )

    def not_reloaded(self) -> bool:
        return self.page.evaluate("() => window.__kept === 1")


@pytest.fixture
def tabs(chromium, served):
    made = []

    def new(width: int = 1400) -> Tab:
        context = chromium.new_context(base_url=served["base"])
        context.set_default_timeout(WAIT_MS)
        made.append(context)
        return Tab(context, width)

    yield new
    for c in made:
        c.close()


def tree_steps(page: Page) -> list[str]:
    return page.locator("#tree a.node[data-step]").evaluate_all("as => as.map(a => a.dataset.step)")


def start_extend(page: Page, **fields: str) -> str:
    """Fill and submit the Extend form; the job id (does not wait for the job)."""
    form = page.locator("form#extend")
    for name, value in fields.items():
        f = form.locator(f'[name="{name}"]')
        if f.evaluate("e => e.tagName") == "SELECT":
            f.select_option(value)
        else:
            f.fill(value)
    with page.expect_response(lambda r: r.url.endswith("/extend")) as posted:
        form.get_by_role("button", name="Extend").click()
    assert posted.value.status == 202, posted.value.text()
    return posted.value.json()["job"]


def branch_held(served, branch: str = "main"):
    """Hold a branch's lock as another writer would: a step on it waits (phase ``wait``)."""
    return served["store"].storage.branch_lock(f"{S}/heads/{branch}")


SMALL = {"backend": "patchmatch", "direction": "right", "extension_px": "32", "overlap_px": "4"}


# --- another tab sees a running job and its result ------------------------------------------


def test_a_second_tab_sees_a_running_job_and_its_result_without_reload(tabs, served) -> None:
    a, b = tabs(), tabs()
    a.page.goto(f"/s/{S}")
    b.page.goto(f"/s/{S}")
    b.mark()
    before = set(tree_steps(b.page))
    with branch_held(served):
        job = start_extend(a.page, **SMALL, n="1", seed="11")
        row = b.page.locator(f'#jobs-panel li[data-job="{job}"]')
        expect(row.locator(".phase")).to_have_text("wait")  # waiting for the branch, in tab B
        expect(row.get_by_role("button", name="Cancel")).to_be_visible()
    expect(row).to_have_count(0)  # finished: gone from the running list
    b.page.wait_for_function(
        "(n) => document.querySelectorAll('#tree a.node[data-step]').length > n", arg=len(before)
    )
    [new] = set(tree_steps(b.page)) - before
    # the branch list moved too, and the canvas was told
    expect(
        b.page.locator('[data-part="branches"] li', has_text="main").locator("code")
    ).to_have_text(new[:12])
    assert b.not_reloaded()
    assert "succeeded" in b.page.evaluate("() => window.__changed")
    a.page.locator("#progress li", has_text="done:").wait_for()
    assert a.errors == [] and b.errors == []


def test_cancel_from_another_tab(tabs, served) -> None:
    a, b = tabs(), tabs()
    a.page.goto(f"/s/{S}")
    b.page.goto(f"/s/{S}")
    b.mark()
    failed_before = b.page.locator("#tree a.node.failed").count()
    with branch_held(served):
        job = start_extend(a.page, **SMALL, n="1")
        row = b.page.locator(f'#jobs-panel li[data-job="{job}"]')
        expect(row.locator(".phase")).to_have_text("wait")
        row.get_by_role("button", name="Cancel").click()
        b.page.wait_for_function("() => true")  # the POST is answered before the lock goes
        expect(b.page.locator(f'#jobs-panel li[data-job="{job}"] .form-error')).to_have_text("")
    assert b.dialogs and b.dialogs[-1].startswith(f"Cancel the step on main (job {job})")
    expect(a.page.locator("#progress li.fail").last).to_contain_text("failed: Cancelled")
    expect(b.page.locator("#tree a.node.failed")).to_have_count(failed_before + 1)
    assert b.not_reloaded() and a.errors == [] and b.errors == []


# --- history: set head asks first, undo brings it back -------------------------------------


def test_undo_of_a_set_head(tabs, served) -> None:
    t = tabs()
    page = t.page
    page.goto(f"/s/{S}.json")
    head = page.evaluate("() => JSON.parse(document.body.innerText).branches.main")
    first = served["steps"][0]
    page.goto(f"/step/{first}")
    with page.expect_navigation():  # done: the page shows the step as main's head
        page.get_by_role("button", name="Set head here").click()
    expect(page.locator("h1 .badge", has_text="main")).to_have_count(1)
    assert t.dialogs[-1].startswith(
        f"Set head: move branch main from {head[:12]} to {first[:12]} and make it HEAD's branch?"
    )
    page.goto(f"/s/{S}")
    t.mark()
    # the old head is on no branch now: still in the tree, dimmed
    expect(page.locator(f'#tree a.node.off[data-step="{head}"]')).to_have_count(1)
    main = page.locator('#history-panel .history[data-ref="heads/main"]')
    expect(main.locator(".moves li").first).to_contain_text(f"set head to {first[:12]}")
    main.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#history-panel").screenshot(path=str(ARTIFACTS / "history.png"))
    main.get_by_role("button", name="Undo").click()
    expect(page.locator('[data-part="branches"] li', has_text="main").locator("code")).to_have_text(
        head[:12]
    )
    assert t.dialogs[-1].startswith(f"Undo: move branch main from {first[:12]} back to {head[:12]}")
    expect(page.locator(f'#tree a.node.off[data-step="{head}"]')).to_have_count(0)
    expect(main.locator(".moves li").first).to_contain_text(f"undo: back to {head[:12]}")
    assert t.not_reloaded() and t.errors == []


def test_a_refused_confirmation_moves_nothing(tabs, served) -> None:
    t = tabs()
    page = t.page
    page.remove_listener("dialog", t._accept)
    page.on("dialog", lambda d: d.dismiss())
    first = served["steps"][0]
    before = served["store"].refs.branches(S)
    page.goto(f"/step/{first}")
    page.get_by_role("button", name="Set head here").click()
    page.wait_for_timeout(300)
    assert served["store"].refs.branches(S) == before


# --- short ids, patterns, inline errors, settings kept, keys ------------------------------------


def test_a_short_id_url_opens_the_page_of_the_full_id(tabs, served) -> None:
    t = tabs()
    sid = served["steps"][0]
    t.page.goto(f"/step/{sid[:8]}")
    assert t.page.url.endswith(f"/step/{sid}")
    expect(t.page.locator("h1 code")).to_have_text(sid[:12])
    t.page.goto(f"/s/{S}?from={sid[:10]}")
    expect(t.page.locator(f'#tree a.node.selected[data-step="{sid}"]')).to_have_count(1)
    expect(t.page.locator("#estimate")).not_to_contain_text("cannot run")
    expect(t.page.locator("#estimate")).to_contain_text("frame")
    assert t.errors == []


def test_form_patterns_work_under_chromium(tabs) -> None:
    t = tabs()
    t.page.goto(f"/s/{S}")
    mismatch = "(sel) => document.querySelector(sel).validity.patternMismatch"
    for sel, bad, good in (
        ('#extend input[name="branch"]', "no spaces", "a-b_c.d~2"),
        ('#extend input[name="parent"]', "xyz", "0123abcd"),
    ):
        t.page.fill(sel, bad)
        assert t.page.evaluate(mismatch, sel), (sel, bad)
        t.page.fill(sel, good)
        assert not t.page.evaluate(mismatch, sel), (sel, good)
    assert not [e for e in t.errors if "pattern" in e.lower()]


def test_an_error_shows_next_to_the_form_and_keeps_what_was_typed(tabs) -> None:
    t = tabs()
    t.page.goto(f"/s/{S}")
    t.mark()
    t.page.fill('#extend textarea[name="prompt"]', "a lighthouse")
    t.page.fill('#extend input[name="parent"]', "deadbeef00")
    t.page.locator("#extend").get_by_role("button", name="Extend").click()
    expect(t.page.locator("#extend .form-error")).to_contain_text(
        "no object starts with deadbeef00"
    )
    assert t.page.input_value('#extend textarea[name="prompt"]') == "a lighthouse"
    assert t.not_reloaded() and t.page.url.endswith(f"/s/{S}")


def test_a_step_page_error_is_inline_too(tabs, served) -> None:
    t = tabs()
    t.page.goto(f"/step/{served['steps'][0]}")
    t.mark()
    form = t.page.locator("form", has=t.page.get_by_role("button", name="New branch here"))
    form.locator('input[name="branch"]').fill("main")
    form.get_by_role("button", name="New branch here").click()
    expect(form.locator(".form-error")).to_contain_text("already exists")
    assert form.locator('input[name="branch"]').input_value() == "main"
    assert t.not_reloaded()


def test_form_settings_persist_per_session(tabs) -> None:
    t = tabs()
    t.page.goto(f"/s/{S}")
    t.page.fill('#extend input[name="extension_px"]', "40")
    t.page.select_option('#extend select[name="seam"]', "feather")
    t.page.fill('#extend textarea[name="prompt"]', "towers")
    t.page.reload()
    assert t.page.input_value('#extend input[name="extension_px"]') == "40"
    assert t.page.input_value('#extend select[name="seam"]') == "feather"
    assert t.page.input_value('#extend textarea[name="prompt"]') == "towers"
    t.page.evaluate("() => localStorage.clear()")


def test_question_mark_lists_the_shortcuts(tabs) -> None:
    t = tabs()
    t.page.goto(f"/s/{S}")
    t.page.locator("h1").click()
    t.page.keyboard.press("?")
    dialog = t.page.locator("dialog#shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("show or hide this list")
    t.page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


# --- layout ---------------------------------------------------------------------------------

NO_OVERFLOW = """() => {
  const wide = document.documentElement.scrollWidth > window.innerWidth;
  const out = Array.from(document.querySelectorAll("button, .button, input, select, textarea"))
    .filter((e) => e.offsetParent !== null && !e.closest("dialog:not([open])"))
    .filter((e) => {
      const r = e.getBoundingClientRect();
      return r.left < 0 || r.right > window.innerWidth;
    })
    .map((e) => e.outerHTML.slice(0, 80));
  return { wide, out };
}"""


@pytest.mark.parametrize("width", [390, 1920])
def test_every_page_fits_the_screen(tabs, served, width) -> None:
    t = tabs(width)
    a, b = served["steps"]
    pages = {
        "sessions": "/",
        "session": f"/s/{S}",
        "step": f"/step/{b}",
        "attempt": f"/attempt/{served['attempt']}",
        "compare": f"/compare?ids={a},{b}",
        "gallery": f"/s/{S}/gallery",
    }
    for name, url in pages.items():
        assert t.page.goto(url).status == 200, name
        t.page.wait_for_load_state("load")
        found = t.page.evaluate(NO_OVERFLOW)
        assert not found["wide"], (name, width, "the page scrolls sideways")
        assert found["out"] == [], (name, width, found["out"])
    assert t.errors == []


def test_root_label_and_long_failure_labels_are_not_clipped(tabs, served) -> None:
    t = tabs()
    t.page.goto(f"/s/{S}")
    svg = t.page.locator("#tree svg").bounding_box()
    for text in t.page.locator("#tree svg text").all():
        box = text.bounding_box()
        assert box and box["y"] >= svg["y"] - 0.5 and box["x"] >= svg["x"] - 0.5, text.inner_html()
    # a node's label stays within its column (150 px)
    widths = t.page.locator("#tree svg text").evaluate_all("ts => ts.map(t => t.getBBox().width)")
    assert max(widths) <= 150, max(widths)


@pytest.fixture(scope="module", autouse=True)
def copy_history_screenshot():
    """The README's history screenshot is the one this run took."""
    yield
    shot = ARTIFACTS / "history.png"
    docs = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if shot.exists() and docs.is_dir() and os.environ.get("EXQ_UPDATE_SCREENSHOTS"):
        shutil.copyfile(shot, docs / "history.png")
