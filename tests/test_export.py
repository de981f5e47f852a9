"""exq export: a static site that works from file://, incremental, with the seed's layout."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner

from exquisite_store import imageio
from exquisite_store.cli import cli
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from viewer.contexts import session_attempts, session_steps
from viewer.export import export_session

from .fakes.backends import PatternBackend
from .helpers import TickClock, rng_image
from .viewer_helpers import make_session


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)


def links_of(path: Path) -> list[str]:
    p = Links()
    p.feed(path.read_text())
    return p.refs


@pytest.fixture
def world(tmp_path):
    return make_session(tmp_path / "store")


@pytest.fixture
def site(world, tmp_path):
    out = tmp_path / "site"
    rep = export_session(world["store"].root, "garden", out)
    return out, rep


def test_every_step_and_attempt_has_a_page(world, site) -> None:
    out, rep = site
    store = world["store"]
    steps = session_steps(store, "garden")
    assert len(steps) == 5
    for sid in steps:
        assert (out / "step" / f"{sid}.html").is_file()
    for aid in session_attempts(store, "garden"):
        assert (out / "attempt" / f"{aid}.html").is_file()
    assert (out / "index.html").is_file() and (out / "gallery.html").is_file()
    a, b = world["side"]
    compares = list((out / "compare").glob("*.html"))
    assert compares, "compare pages for siblings"
    assert any(a in p.read_text() and b in p.read_text() for p in compares)
    assert rep.pages == len(list(out.rglob("*.html")))


def test_no_absolute_url_and_no_broken_relative_link(site) -> None:
    out, _ = site
    for f in out.rglob("*"):
        # a vendored library names its home page and the SVG namespace, and requests neither
        # (test_browser_workspace opens the export from file:// and sees no other request)
        if f.suffix in (".html", ".css", ".js", ".json") and "vendor" not in f.parts:
            text = f.read_text()
            assert "http://" not in text and "https://" not in text, f
            assert not re.search(r'(?:href|src)="/', text), f"absolute path in {f}"
    checked = 0
    for page in out.rglob("*.html"):
        for ref in links_of(page):
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, (page, ref)
            if not parts.path:
                continue  # an in-page anchor
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page.relative_to(out)} links to missing {ref}"
            assert out.resolve() in target.parents
            checked += 1
    assert checked > 50


def test_no_forms_or_live_endpoints_in_the_export(site) -> None:
    out, _ = site
    for page in out.rglob("*.html"):
        text = page.read_text()
        assert "<form" not in text and "csrf" not in text and "/-/" not in text


def test_user_text_is_escaped(site) -> None:
    out, _ = site
    texts = "".join(p.read_text() for p in out.rglob("*.html"))
    assert "<script>x</script>" not in texts and "&lt;script&gt;x&lt;/script&gt;" in texts


def test_reexport_is_incremental(world, site, tmp_path) -> None:
    out, first = site
    assert first.written > 0
    again = export_session(world["store"].root, "garden", out)
    assert again.written == 0 and again.unchanged == first.written
    store = Store.open(world["store"].root)
    new = run_step(
        store, "garden", backend_impl=PatternBackend(), extension_px=8, overlap_px=2, seed=99
    ).step_ids[0]
    third = export_session(world["store"].root, "garden", out)
    assert (out / "step" / f"{new}.html").is_file()
    # the new step's page, canvas, thumb and new objects, plus the pages that list it
    assert 0 < third.written < first.written / 2, third


def test_prune_removes_what_is_no_longer_linked_and_nothing_else(world, site) -> None:
    """Prune removes files an earlier export wrote, never a file someone else put there."""
    out, _ = site
    stray = out / "objects" / "zz" / "stray.png"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    side_pages = [out / "step" / f"{sid}.html" for sid in world["side"]]
    assert all(p.is_file() for p in side_pages)
    kept = export_session(world["store"].root, "garden", out, branches=["main"])
    assert kept.removed == 0 and all(p.is_file() for p in side_pages)
    pruned = export_session(world["store"].root, "garden", out, branches=["main"], prune=True)
    assert not any(p.exists() for p in side_pages), "the exporter's own stale pages go"
    assert pruned.removed >= len(side_pages)
    assert stray.read_bytes() == b"x", "a file the exporter did not write stays"
    # what is left is exactly what the last export wrote, plus the stray file
    listed = json.loads((out / ".exquisite-export.json").read_text())["files"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(listed) | {".exquisite-export.json", "objects/zz/stray.png"}


def test_one_branch(world, tmp_path) -> None:
    out = tmp_path / "one"
    export_session(world["store"].root, "garden", out, branches=["main"])
    pages = {p.stem for p in (out / "step").glob("*.html")}
    assert set(world["steps"]) <= pages
    assert not set(world["side"]) & pages
    index = (out / "index.html").read_text()
    assert "side~2" not in index


def test_unknown_branch_is_a_clear_error(world, tmp_path) -> None:
    res = CliRunner().invoke(
        cli,
        [
            "--store",
            str(world["store"].root),
            "export",
            "garden",
            str(tmp_path / "x"),
            "--branch",
            "nope",
        ],
    )
    assert res.exit_code == 1 and "no branch 'nope'" in res.output


def test_canvas_pngs_carry_their_recipe_and_inspect_reads_it(world, site) -> None:
    out, _ = site
    sid = world["steps"][1]
    png = out / "canvas" / f"{sid}.png"
    meta = json.loads(imageio.read_png_text(str(png))[imageio.ITXT_KEY])
    assert meta["step"] == sid and meta["parent"] == world["steps"][0]
    assert meta["recipe"]["direction"] == "right" and meta["recipe"]["seed"] == 1
    res = CliRunner().invoke(cli, ["inspect", str(png)])
    assert res.exit_code == 0 and json.loads(res.output) == meta
    # the pixels are the canvas's, whatever chunks ride along
    store = world["store"]
    assert (imageio.read_image_file(str(png)) == store.canvas_pixels(store.step(sid))).all()


def test_inspect_refuses_pngs_without_a_record(tmp_path) -> None:
    plain = tmp_path / "plain.png"
    imageio.write_png(str(plain), rng_image(4, 4))
    res = CliRunner().invoke(cli, ["inspect", str(plain)])
    assert res.exit_code == 1 and "carries no exquisite-store record" in res.output
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    assert CliRunner().invoke(cli, ["inspect", str(junk)]).exit_code == 1


SEED_NAMES = {
    "input_canvas.png",
    "context.png",
    "mask.png",
    "api_output.png",
    "output_canvas.png",
    "step.json",
    "validation.json",
    "failure.txt",
}


def deterministic_store(root: Path) -> Store:
    store = Store.init(root, tile_size=64, clock=TickClock())
    store.create_session("det", rng_image(40, 48, seed=5), source_name="det.png")
    backend = PatternBackend()
    first = run_step(
        store, "det", backend_impl=backend, extension_px=16, overlap_px=4, seed=1
    ).step_ids[0]
    run_step(
        store, "det", backend_impl=backend, direction="down", extension_px=8, overlap_px=2, seed=2
    )
    from .fakes.backends import WrongSizeBackend

    with pytest.raises(Exception):  # noqa: B017 - any failure kind: it becomes an attempt
        run_step(store, "det", backend_impl=WrongSizeBackend(), extension_px=8, seed=3)
    run_step(
        store,
        "det",
        parent=first,
        branch="alt",
        backend_impl=backend,
        direction="up",
        extension_px=8,
        overlap_px=2,
        seed=4,
    )
    return store


def test_seed_layout_names_and_listing_snapshot(tmp_path, snapshot) -> None:
    store = deterministic_store(tmp_path / "store")
    out = tmp_path / "site"
    export_session(store.root, "det", out, layout_steps=True)
    assert (out / "session.json").is_file() and (out / "canvas_latest.png").is_file()
    for d in (out / "steps").iterdir():
        assert set(f.name for f in d.iterdir()) <= SEED_NAMES
    failed = [d for d in (out / "steps").iterdir() if (d / "failure.txt").exists()]
    assert len(failed) == 1 and not (failed[0] / "output_canvas.png").exists()
    assert "DimensionMismatch" in (failed[0] / "failure.txt").read_text()
    listing = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file()
        and (
            p.relative_to(out).parts[0] in ("steps", "branches")
            or p.name in ("session.json", "canvas_latest.png")
        )
    )
    assert listing == snapshot
