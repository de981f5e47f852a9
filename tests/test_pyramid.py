"""The deep-zoom tile pyramid: what each level shows, what it shares, how it is served."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from exquisite_store.geometry.rect import Rect
from exquisite_store.store import Store, compose_full, edit_canvas, put_canvas
from exquisite_store.store.canvas import canvas_rect
from viewer import create_app, pyramid

from .helpers import rng_image
from .viewer_helpers import BufferedClient, make_session

T = 64


def reference_level(full: np.ndarray, rect: Rect, level: int) -> tuple[np.ndarray, Rect]:
    """The whole canvas at a level, halved ``level`` times as one image (no tiles)."""
    img, part = full, Rect(rect.x, rect.y, rect.w, rect.h)
    for _ in range(level):
        # place the image in a block starting at an even plane coordinate, then halve
        ox, oy = part.x - (part.x % 2), part.y - (part.y % 2)
        block = np.zeros((part.bottom - oy + 1, part.right - ox + 1, img.shape[2]), np.uint8)
        block[part.y - oy : part.bottom - oy, part.x - ox : part.right - ox] = img
        img, where = pyramid.halve(block, Rect(part.x - ox, part.y - oy, part.w, part.h))
        part = Rect(where.x + ox // 2, where.y + oy // 2, where.w, where.h)
    return img, part


def test_halve_is_a_box_filter_and_keeps_edge_pixels() -> None:
    block = np.zeros((4, 4, 3), np.uint8)
    block[0:2, 0:2] = [[[0, 0, 0], [4, 8, 12]], [[8, 16, 24], [12, 24, 36]]]
    block[1:4, 3] = 200  # a column cut by the edge at x = 3
    out, where = pyramid.halve(block, Rect(0, 0, 4, 4))
    assert where == Rect(0, 0, 2, 2)
    assert out[0, 0].tolist() == [6, 12, 18]  # the mean of the 2 x 2 block, rounded
    # an odd part: the pixel pair cut by its edge repeats the edge pixel
    out, where = pyramid.halve(block, Rect(3, 1, 1, 3))
    assert where == Rect(1, 0, 1, 2)
    assert out[:, 0].tolist() == [[200] * 3, [200] * 3]


@pytest.mark.parametrize(
    ("x", "y", "w", "h", "channels"),
    [(0, 0, 200, 130, 3), (-300, -77, 333, 190, 3), (37, -5, 129, 257, 4), (-1, -1, 1, 1, 3)],
)
def test_every_level_is_the_canvas_halved_and_tiles_only_where_it_is(
    tmp_path, x, y, w, h, channels
) -> None:
    store = Store.init(tmp_path / "store", tile_size=T)
    arr = rng_image(h, w, seed=w, channels=channels)
    canvas = put_canvas(store.objects, arr, x, y, T)
    cid = store.objects.put_json(canvas)
    index = pyramid.read_index(store, cid)
    rect = canvas_rect(canvas)
    assert (T << index.top) >= max(w, h) and (index.top == 0 or (T << (index.top - 1)) < max(w, h))
    for level in range(index.top + 1):
        ref, part = reference_level(arr, rect, level)
        cells = list(index.cells(level))
        assert len(cells) <= (4 if level == index.top else 10**6)
        for col, row in cells:
            tile = pyramid.tile_pixels(store, index, level, col, row)
            assert tile.shape[:2] == (T, T)
            cell = Rect(col * T, row * T, T, T)
            inside = cell.intersect(part)
            assert not inside.empty
            got = tile[inside.slices(cell)][:, :, :channels]
            want = ref[inside.slices(part)]
            assert np.array_equal(got, want), (level, col, row)
            if tile.shape[2] == 4 and channels == 3:  # a part of a cell: transparent elsewhere
                alpha = tile[:, :, 3].copy()
                assert (alpha[inside.slices(cell)] == 255).all()
                alpha[inside.slices(cell)] = 0
                assert (alpha == 0).all()


def test_a_child_canvas_reuses_its_parents_pyramid_except_along_its_band(tmp_path) -> None:
    store = Store.init(tmp_path / "store", tile_size=T)
    parent = put_canvas(store.objects, rng_image(300, 1000, seed=1), 0, 0, T)
    pid = store.objects.put_json(parent)
    band = rng_image(300, 100, seed=2)
    child = edit_canvas(store.objects, parent, Rect(0, 0, 1100, 300), band, Rect(1000, 0, 100, 300))
    cid = store.objects.put_json(child)
    a, b = pyramid.read_index(store, pid), pyramid.read_index(store, cid)
    for level in range(a.top + 1):
        span = T << level
        for col, row in a.cells(level):
            same = a.key(level, col, row) == b.key(level, col, row)
            # a cell wholly left of the old right edge's tile keeps its key; the rest change
            assert same == ((col + 1) * span <= (1000 // T) * T), (level, col, row)
    # made once for the parent, the child's view makes only the tiles over its band
    list(pyramid.all_tiles(store, a))
    before = set((store.root / "cache" / "pyramid").rglob("*.png"))
    list(pyramid.all_tiles(store, b))
    made = set((store.root / "cache" / "pyramid").rglob("*.png")) - before
    changed = {
        (lv, c, r)
        for lv in range(b.top + 1)
        for c, r in b.cells(lv)
        if lv > 0 or not b.full(0, c, r)
        if lv > a.top or (c, r) not in set(a.cells(lv)) or a.key(lv, c, r) != b.key(lv, c, r)
    }
    every = sum(1 for lv in range(b.top + 1) for c, r in b.cells(lv) if lv or not b.full(0, c, r))
    assert len(made) == len(changed) and 0 < len(made) < every / 2


@pytest.fixture
def client(tmp_path):
    world = make_session(tmp_path / "store")
    app = create_app({"EXQ_STORE": str(world["store"].root), "TESTING": True})
    app.test_client_class = BufferedClient
    return app.test_client(), world


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_tiles_are_served_immutable_and_bad_cells_are_404(client) -> None:
    c, world = client
    store = world["store"]
    step = store.step(world["steps"][-1])
    cid = step.result.canvas_id
    index = pyramid.read_index(store, cid)
    full = compose_full(store.objects, store.canvas(step))
    for level in range(index.top + 1):
        for col, row in index.cells(level):
            resp = c.get(f"/-/pyramid/{cid}/{level}/{col}/{row}.png")
            assert resp.status_code == 200
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            again = c.get(
                f"/-/pyramid/{cid}/{level}/{col}/{row}.png",
                headers={"If-None-Match": resp.headers["ETag"]},
            )
            assert again.status_code == 304
    # the top level shows the canvas whole: its mean colour is the canvas's
    top = [
        decode(c.get(f"/-/pyramid/{cid}/{index.top}/{col}/{row}.png").data)
        for col, row in index.cells(index.top)
    ]
    assert len(top) == 1
    part = index.valid(index.top, 0, 0)
    shown = top[0][part.y : part.bottom, part.x : part.right, :3].reshape(-1, 3).mean(axis=0)
    assert np.allclose(shown, full[:, :, :3].reshape(-1, 3).mean(axis=0), atol=3)
    for url in (
        f"/-/pyramid/{cid}/0/99/0.png",  # outside the canvas
        f"/-/pyramid/{cid}/{index.top + 1}/0/0.png",  # past the top level
        f"/-/pyramid/{world['steps'][0]}/0/0/0.png",  # a step's id, not a canvas's
        f"/-/pyramid/{'0' * 64}/0/0/0.png",  # no such object
        f"/-/pyramid/{cid}/-1/0/0.png",
        f"/-/pyramid/{cid}/0/x/0.png",
    ):
        assert c.get(url).status_code == 404, url
    assert not list((store.root / "objects").rglob("*pyramid*"))
    assert (store.root / "cache" / "pyramid").is_dir()


def test_diff_tiles_are_black_where_the_canvases_agree(client) -> None:
    c, world = client
    store = world["store"]
    a, b = (store.step(s).result.canvas_id for s in world["side"])
    index = pyramid.read_index(store, a)
    seen = set()
    for col, row in index.cells(0):
        resp = c.get(f"/-/pyramid-diff/{b}/{a}/0/{col}/{row}.png")
        assert resp.status_code == 200
        d = decode(resp.data)
        seen.add(bool(d[:, :, :3].any()))
    assert seen == {True}  # the two candidates differ in their new band, and only there
    same = c.get(f"/-/pyramid-diff/{a}/{a}/0/0/0.png")
    assert not decode(same.data)[:, :, :3].any()


def test_the_canvas_view_names_its_pyramid_bands_and_selection(client) -> None:
    c, world = client
    store = world["store"]
    html = c.get("/s/garden").get_data(as_text=True)
    assert 'id="canvas-view"' in html and "/-/pyramid/" in html
    head = c.get("/s/garden/canvas.json").get_json()
    assert head["following_head"] and head["step"] == world["steps"][-1]
    assert head["canvas"]["tiles"] == f"/-/pyramid/{store.step(head['step']).result.canvas_id}"
    # each step on the way to this canvas: its band on the plane, its direction and seed
    assert [(b["step"], b["direction"], b["seed"]) for b in head["bands"]] == [
        (world["steps"][0], "right", 0),
        (world["steps"][1], "right", 1),
    ]
    assert [b["rect"] for b in head["bands"]] == [[64, 0, 16, 48], [80, 0, 16, 48]]
    assert "<script>" not in html.split('id="canvas-view"')[1].split(">")[0]  # escaped prompts
    first = c.get(f"/s/garden/canvas.json?step={world['steps'][0][:10]}").get_json()
    assert first["step"] == world["steps"][0] and not first["following_head"]
    assert c.get("/s/garden/canvas.json?step=zz").status_code == 404
    assert c.get(f"/s/garden/canvas.json?step={'0' * 64}").status_code == 404
    assert c.get("/s/nope/canvas.json").status_code == 404
