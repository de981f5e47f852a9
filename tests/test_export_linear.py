"""The linear export: what it writes per step, what a re-export renders again, and the
thumbnails and diffs it is made of (levels built from reduced tiles, diffs over the
tiles that differ)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from exquisite_store.cli import cli
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Canvas
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store, compose
from exquisite_store.store.canvas import canvas_rect, cell_rect, edit_canvas, iter_tiles, put_canvas
from viewer import canvas_levels, derived_images, export
from viewer.contexts import PageOptions, step_context
from viewer.export import export_session
from viewer.export_files import MANIFEST
from viewer.web import export_path

from .fakes.backends import PatternBackend
from .test_export import links_of
from .viewer_helpers import make_session


@pytest.fixture
def world(tmp_path):
    return make_session(tmp_path / "store")


def grow(store: Store, **kw) -> str:
    """One patterned step on main."""
    kw = {"extension_px": 8, "overlap_px": 2, "seed": 99, **kw}
    return run_step(store, "garden", backend_impl=PatternBackend(), **kw).step_ids[0]


def no_broken_links(out) -> None:
    for page in out.rglob("*.html"):
        for ref in links_of(page):
            path = ref.split("#")[0]
            if path:
                assert (page.parent / path).resolve().is_file(), (page, ref)


# --- what is written ---------------------------------------------------------------------


def test_full_canvas_pngs_only_for_branch_heads_unless_asked(world, tmp_path) -> None:
    store = world["store"]
    heads = set(store.refs.branches("garden").values())
    out = tmp_path / "site"
    export_session(store.root, "garden", out)
    assert {p.stem for p in (out / "canvas").glob("*.png")} == heads
    not_head = world["steps"][0]
    page = (out / "step" / f"{not_head}.html").read_text()
    assert "../canvas/" not in page and "exq canvas" in page  # says how to get one
    for sid in heads:  # a head's page offers its PNG, which carries the recipe
        assert f"../canvas/{sid}.png" in (out / "step" / f"{sid}.html").read_text()
        res = CliRunner().invoke(cli, ["inspect", str(out / "canvas" / f"{sid}.png")])
        assert res.exit_code == 0 and json.loads(res.output)["step"] == sid
    no_broken_links(out)
    full = tmp_path / "full"
    res = CliRunner().invoke(
        cli, ["--store", str(store.root), "export", "garden", str(full), "--full-canvases"]
    )
    assert res.exit_code == 0, res.output
    steps = {p.stem for p in (full / "step").glob("*.html")}
    assert {p.stem for p in (full / "canvas").glob("*.png")} == steps
    assert f"../canvas/{not_head}.png" in (full / "step" / f"{not_head}.html").read_text()


def test_compare_pages_draw_tiles_and_link_no_full_canvas(world, tmp_path) -> None:
    out = tmp_path / "site"
    export_session(world["store"].root, "garden", out)
    for page in (out / "compare").glob("*.html"):
        refs = links_of(page)
        assert not [r for r in refs if r.startswith("../canvas/")], page
        assert [r for r in refs if r.startswith("../objects/")]


def wide_store(tmp_path) -> tuple[Store, str, str]:
    """A 64-px-tile store whose root is 48 x 1,600: a step right sees 25 tile columns."""
    store = Store.init(tmp_path / "wide", tile_size=64)
    rng = np.random.default_rng(1)
    store.create_session("garden", rng.integers(0, 256, (48, 1600, 3), dtype=np.uint8))
    first = grow(store, extension_px=16, overlap_px=4)
    return store, store.step(first).parent, first


def test_an_exported_step_page_shows_the_canvas_around_its_band(tmp_path) -> None:
    store, _, sid = wide_store(tmp_path)
    whole = step_context(store, sid)
    assert whole["canvas"]["whole"] and len(whole["canvas"]["tiles"]) == 26
    near = step_context(store, sid, PageOptions(window=128))
    view = Rect(*near["canvas"]["view"])
    gen = Rect(*near["bands"]["gen"])
    assert not near["canvas"]["whole"] and view.contains(gen)
    assert view == Rect(1600 - 128, 0, 16 + 128, 48)  # the band and 128 px before it
    tiles = near["canvas"]["tiles"]
    assert {t["x"] for t in tiles} == {1472, 1536, 1600}  # only the tiles meeting the view
    out = tmp_path / "site"
    export_session(store.root, "garden", out)
    page = (out / "step" / f"{sid}.html").read_text()
    assert page.count('class="tile"') == len(
        step_context(store, sid, PageOptions(window=512))["canvas"]["tiles"]
    )
    assert page.count('class="tile"') < 26 and "showing" in page


# --- a re-export renders only what changed -------------------------------------------------


def test_a_new_step_renders_only_the_pages_it_changes(world, tmp_path) -> None:
    store = world["store"]
    out = tmp_path / "site"
    first = export_session(store.root, "garden", out)
    assert first.skipped == 0 and first.rendered
    again = export_session(store.root, "garden", out)
    assert again.rendered == {"index.html", "gallery.html"}  # these show every head
    assert again.written == 0 and again.skipped == first.pages - 2
    parent = store.refs.head("garden", "main")
    new = grow(Store.open(store.root))
    third = export_session(store.root, "garden", out)
    compare = export_path("compare", ids=[parent, new])
    assert third.rendered == {
        "index.html",
        "gallery.html",
        f"step/{new}.html",
        f"step/{parent}.html",  # its children and its branch label changed
        compare,
    }
    assert (out / "canvas" / f"{new}.png").is_file()  # main's new head
    no_broken_links(out)
    # every skipped page is byte for byte what rendering it afresh gives
    fresh = tmp_path / "fresh"
    export_session(store.root, "garden", fresh)
    for page in fresh.rglob("*.html"):
        rel = page.relative_to(fresh)
        assert (out / rel).read_bytes() == page.read_bytes(), rel


def test_a_damaged_page_or_new_code_renders_again(world, tmp_path, monkeypatch) -> None:
    store = world["store"]
    out = tmp_path / "site"
    first = export_session(store.root, "garden", out)
    victim = out / "step" / f"{world['steps'][0]}.html"
    whole = victim.read_bytes()
    victim.write_bytes(whole[:100])  # cut short: not the listed size
    again = export_session(store.root, "garden", out)
    assert f"step/{world['steps'][0]}.html" in again.rendered
    assert victim.read_bytes() == whole
    monkeypatch.setattr(export, "code_key", lambda: "another exporter")
    third = export_session(store.root, "garden", out)
    assert third.pages == first.pages and third.skipped == 0 and third.written == 0


def test_an_export_written_before_page_records_is_rendered_and_then_skipped(
    world, tmp_path
) -> None:
    out = tmp_path / "site"
    first = export_session(world["store"].root, "garden", out)
    man = json.loads((out / MANIFEST).read_text())
    old = {"format": man["format"], "session": man["session"], "files": man["files"]}
    (out / MANIFEST).write_text(json.dumps(old))  # what the exporter before this wrote
    again = export_session(world["store"].root, "garden", out)
    assert again.pages == first.pages and again.written == 0
    assert export_session(world["store"].root, "garden", out).skipped == first.pages - 2


# --- thumbnails from levels ----------------------------------------------------------------


def tile_by_tile_thumbnail(store: Store, canvas: Canvas, box=(240, 160)) -> np.ndarray:
    """The thumbnail as the viewer made it before levels: every tile resized into place."""
    scale = min(box[0] / canvas.width, box[1] / canvas.height, 1.0)
    w, h = max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))
    out = Image.new("RGBA" if canvas.mode == "RGBA" else "RGB", (w, h))
    for col, row, oid in iter_tiles(store.objects, canvas):
        cell = cell_rect(canvas, col, row)
        x0, y0 = int((cell.x - canvas.x) * scale), int((cell.y - canvas.y) * scale)
        x1 = max(x0 + 1, int((cell.right - canvas.x) * scale))
        y1 = max(y0 + 1, int((cell.bottom - canvas.y) * scale))
        tile = Image.fromarray(store.objects.get_image(oid))
        out.paste(tile.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR), (x0, y0))
    return np.asarray(out)


def smooth(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    """A picture-like image: broad gradients and soft blobs (what thumbnails are of)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, channels))
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02), rng.uniform(0, 6)
        out[:, :, c] = 128 + 100 * np.sin(xx * fx + ph) * np.cos(yy * fy)
    if channels == 4:
        out[:, :, 3] = 255
    return np.clip(out, 0, 255).astype(np.uint8)


SHAPES = [  # (height, width, x, y, tile, today's has gaps): small, wide, tall, off the grid
    (40, 60, 0, 0, 64, False),
    (200, 3000, 0, 0, 256, False),
    (2500, 150, -37, -900, 64, True),
    (700, 900, -130, 17, 128, False),
    (96, 12_000, 5, 0, 256, True),
]


@pytest.mark.parametrize(("h", "w", "x", "y", "tile", "gaps"), SHAPES)
@pytest.mark.parametrize("channels", [3, 4])
def test_a_thumbnail_from_levels_matches_todays_and_the_exact_one(
    h, w, x, y, tile, gaps, channels
) -> None:
    """Against the whole canvas box-filtered to the thumbnail's size (exact), and
    against today's tile-by-tile thumbnail: as close to it as it is to the exact one,
    or closer (today's leaves unpainted rows or columns where a tile's share of the
    thumbnail rounds down: those shapes are compared with the exact one only)."""
    store = Store.memory(tile_size=tile)
    pixels = smooth(h, w, seed=w, channels=channels)
    canvas = put_canvas(store.objects, pixels, x, y, tile)
    ours = derived_images.thumbnail(store, store.objects.put_json(canvas)).astype(int)
    today = tile_by_tile_thumbnail(store, canvas).astype(int)
    size = (ours.shape[1], ours.shape[0])
    exact = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX)).astype(int)
    assert ours.shape == today.shape == exact.shape
    to_exact = np.abs(ours - exact)
    assert to_exact.mean() <= 3.0 and np.percentile(to_exact, 99) <= 8, to_exact.mean()
    today_to_exact = np.abs(today - exact).mean()
    assert to_exact.mean() <= today_to_exact + 0.05
    if not gaps:
        to_today = np.abs(ours - today)
        assert to_today.mean() <= 3.0 and np.percentile(to_today, 99) <= 16, to_today.mean()


def test_a_childs_level_from_its_parents_is_the_level_built_from_scratch() -> None:
    """Grown in every direction, off the grid: parent's level + new tiles == scratch."""
    store = Store.memory(tile_size=64)
    rng = np.random.default_rng(4)
    canvas = put_canvas(store.objects, smooth(90, 130, seed=1), -20, 7, 64)
    cid = store.objects.put_json(canvas)
    for factor in (1, 2, 4, 16):
        canvas_levels.canvas_level(store, cid, factor)
    grows = [("right", 70), ("down", 33), ("left", 150), ("up", 5), ("right", 300)]
    for direction, n in grows:
        r = canvas_rect(canvas)
        patch = {
            "right": Rect(r.right, r.y, n, r.h),
            "left": Rect(r.x - n, r.y, n, r.h),
            "down": Rect(r.x, r.bottom, r.w, n),
            "up": Rect(r.x, r.y - n, r.w, n),
        }[direction]
        band = rng.integers(0, 256, (patch.h, patch.w, 3), dtype=np.uint8)
        child = edit_canvas(store.objects, canvas, r.union(patch), band, patch)
        child_id = store.objects.put_json(child)
        for factor in (1, 2, 4, 16):
            got = canvas_levels.canvas_level(store, child_id, factor, cid)
            want = canvas_levels.level_region(store, child, factor)
            assert got.rect == want.rect and np.array_equal(got.pixels, want.pixels)
        full = compose(store.objects, child, canvas_rect(child))
        one = canvas_levels.canvas_level(store, child_id, 1, cid)
        assert np.array_equal(one.pixels, full)  # level 1 is the canvas itself
        canvas, cid = child, child_id


# --- diffs over the tiles that differ -------------------------------------------------------


def test_a_diff_covers_the_tiles_that_differ_and_nothing_else_differs(world) -> None:
    store = world["store"]
    parent, child = world["steps"]
    a, b = store.step(parent).result.canvas_id, store.step(child).result.canvas_id
    ca, cb = store.canvas(store.step(parent)), store.canvas(store.step(child))
    rect = derived_images.diff_rect(store, a, b)
    common = canvas_rect(ca).intersect(canvas_rect(cb))
    assert not rect.empty and common.contains(rect)
    pa = compose(store.objects, ca, common)[:, :, :3].astype(int)
    pb = compose(store.objects, cb, common)[:, :, :3].astype(int)
    full = np.clip(np.abs(pa - pb) * 4, 0, 255)
    inside = np.zeros(full.shape[:2], bool)
    inside[rect.slices(common)] = True
    assert not full[~inside].any(), "every differing pixel lies in the diff's rectangle"
    png = derived_images.diff_png(store, a, b)
    got = np.asarray(Image.open(png))
    assert np.array_equal(got, full[rect.slices(common)])
    assert derived_images.diff_rect(store, a, a).empty


# --- the store: tiles of a canvas that does not start on a grid line ------------------------


def test_differing_tiles_finds_the_first_row_of_a_canvas_off_the_grid() -> None:
    """A canvas at y=7 (it grew up, say): its first row's cell corner is outside it.

    Changed tiles there were missed by ``differing_tiles`` (and so by the immutable-pixel
    check of a step, and by incremental levels); ``tile_at`` raised for them.
    """
    from exquisite_store.pipeline.validate import immutable_mismatches
    from exquisite_store.store.canvas import differing_tiles, tile_at

    store = Store.memory(tile_size=64)
    rng = np.random.default_rng(2)
    parent = put_canvas(
        store.objects, rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), -20, 7, 64
    )
    r = canvas_rect(parent)
    assert tile_at(store.objects, parent, -1, 0)  # the top-left cell: (-64, 0) is outside
    # a patch that repaints the last 20 old columns too, and a new band of 70
    patch = Rect(r.right - 20, r.y, 90, r.h)
    band = rng.integers(0, 256, (patch.h, patch.w, 3), dtype=np.uint8)
    child = edit_canvas(store.objects, parent, r.union(patch), band, patch)
    cells = {(c, row) for c, row, _ in differing_tiles(store.objects, parent, child)}
    assert cells == {(1, 0), (1, 1), (2, 0), (2, 1)}
    old_part = Rect(r.right - 20, r.y, 20, r.h)
    before = compose(store.objects, parent, old_part)
    after = compose(store.objects, child, old_part)
    want = int(np.count_nonzero(np.any(before != after, axis=2)))
    new_band = Rect(r.right, r.y, 70, r.h)
    assert want > 0 and immutable_mismatches(store.objects, parent, child, new_band) == want
