"""Tiled canvases: round trips, regions, and edits that keep untouched tiles."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exquisite_store.errors import CompositeError
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Canvas, CanvasNode
from exquisite_store.store import Store, compose, compose_full, edit_canvas, put_canvas
from exquisite_store.store.canvas import iter_tiles

from .helpers import FIXTURE_NAMES, fixture_array, rng_image


@pytest.mark.parametrize("name", FIXTURE_NAMES)
@pytest.mark.parametrize("tile", [64, 256])
def test_fixture_round_trip(name: str, tile: int) -> None:
    store = Store.memory(tile_size=tile)
    arr = fixture_array(name)
    canvas = put_canvas(store.objects, arr, 0, 0, tile)
    assert np.array_equal(compose_full(store.objects, canvas), arr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 150),
    w=st.integers(1, 150),
    x=st.integers(-300, 300),
    y=st.integers(-300, 300),
    channels=st.sampled_from([3, 4]),
    tile=st.sampled_from([64, 128]),
    seed=st.integers(0, 2**16),
)
def test_random_round_trip(h, w, x, y, channels, tile, seed) -> None:
    store = Store.memory(tile_size=tile)
    arr = rng_image(h, w, seed, channels)
    canvas = put_canvas(store.objects, arr, x, y, tile)
    assert np.array_equal(compose_full(store.objects, canvas), arr)
    # every tile lies in one grid cell anchored at the origin, and every cell has one
    tiles = list(iter_tiles(store.objects, canvas))
    cols = range(x // tile, (x + w - 1) // tile + 1)
    rows = range(y // tile, (y + h - 1) // tile + 1)
    assert [(c, r) for c, r, _ in tiles] == [(c, r) for r in rows for c in cols]
    for col, row, oid in tiles:
        t = store.objects.get_image(oid)
        assert t.shape[0] <= tile and t.shape[1] <= tile
        assert Rect(col * tile, row * tile, tile, tile).intersect(Rect(x, y, w, h)).area > 0


@settings(max_examples=40, deadline=None)
@given(
    x=st.integers(-100, 100),
    y=st.integers(-100, 100),
    rx=st.integers(0, 99),
    ry=st.integers(0, 79),
    rw=st.integers(1, 100),
    rh=st.integers(1, 80),
)
def test_compose_region(x, y, rx, ry, rw, rh) -> None:
    store = Store.memory(tile_size=64)
    arr = rng_image(80, 100, 5)
    canvas = put_canvas(store.objects, arr, x, y, 64)
    rw, rh = min(rw, 100 - rx), min(rh, 80 - ry)
    region = compose(store.objects, canvas, Rect(x + rx, y + ry, rw, rh))
    assert np.array_equal(region, arr[ry : ry + rh, rx : rx + rw])


def test_compose_outside_is_an_error() -> None:
    store = Store.memory(tile_size=64)
    canvas = put_canvas(store.objects, rng_image(10, 10), 0, 0, 64)
    with pytest.raises(CompositeError):
        compose(store.objects, canvas, Rect(5, 5, 10, 10))


@pytest.mark.parametrize("direction", ["right", "left", "up", "down"])
def test_edit_keeps_untouched_tiles_and_pixels(direction: str) -> None:
    t = 64
    store = Store.memory(tile_size=t)
    base = rng_image(200, 300, 1)
    parent = put_canvas(store.objects, base, 0, 0, t)
    L = 100
    prect = Rect(0, 0, 300, 200)
    new_rect, patch_rect = {
        "right": (Rect(0, 0, 300 + L, 200), Rect(300, 0, L, 200)),
        "left": (Rect(-L, 0, 300 + L, 200), Rect(-L, 0, L, 200)),
        "up": (Rect(0, -L, 300, 200 + L), Rect(0, -L, 300, L)),
        "down": (Rect(0, 0, 300, 200 + L), Rect(0, 200, 300, L)),
    }[direction]
    patch = rng_image(patch_rect.h, patch_rect.w, 2)
    child = edit_canvas(store.objects, parent, new_rect, patch, patch_rect)
    full = compose_full(store.objects, child)
    assert full.shape[:2] == (new_rect.h, new_rect.w)
    assert np.array_equal(full[prect.slices(new_rect)], base)
    assert np.array_equal(full[patch_rect.slices(new_rect)], patch)
    old = {(c, r): oid for c, r, oid in iter_tiles(store.objects, parent)}
    new = {(c, r): oid for c, r, oid in iter_tiles(store.objects, child)}
    assert old and new
    for key, oid in old.items():
        cell = Rect(key[0] * t, key[1] * t, t, t)
        if cell.intersect(patch_rect).empty and cell.intersect(new_rect) == cell.intersect(prect):
            assert new[key] == oid, f"untouched tile {key} changed id"
    changed = sum(1 for k, v in new.items() if old.get(k) != v)
    # only the tiles along the new band are stored
    assert changed <= (-(-L // t) + 1) * (-(-max(new_rect.w, new_rect.h) // t) + 1)


def test_edit_rejects_holes_and_mismatched_patches() -> None:
    store = Store.memory(tile_size=64)
    parent = put_canvas(store.objects, rng_image(50, 50), 0, 0, 64)
    with pytest.raises(CompositeError):
        edit_canvas(
            store.objects, parent, Rect(0, 0, 80, 50), rng_image(50, 10), Rect(50, 0, 10, 50)
        )
    with pytest.raises(CompositeError):
        edit_canvas(
            store.objects, parent, Rect(0, 0, 60, 50), rng_image(40, 10), Rect(50, 0, 10, 50)
        )
    with pytest.raises(CompositeError):
        edit_canvas(
            store.objects,
            parent,
            Rect(0, 0, 60, 50),
            rng_image(50, 10, channels=4),
            Rect(50, 0, 10, 50),
        )


def test_a_missing_tile_is_an_error_not_garbage() -> None:
    store = Store.memory(tile_size=64)
    canvas = put_canvas(store.objects, rng_image(100, 100), 0, 0, 64)
    tiles = list(iter_tiles(store.objects, canvas))
    flat = Canvas(x=0, y=0, width=100, height=100, mode="RGB", tile_size=64, tiles=tiles[:-1])
    with pytest.raises(CompositeError, match="no tile"):
        compose_full(store.objects, flat)
    # a tree whose node lost a child
    root = store.objects.get_manifest(canvas.root, CanvasNode)
    holed_root = store.objects.put_json(msgspec.structs.replace(root, children=root.children[:-1]))
    holed = msgspec.structs.replace(canvas, root=holed_root)
    with pytest.raises(CompositeError, match=r"no tile at \(1, 1\)"):
        compose_full(store.objects, holed)
