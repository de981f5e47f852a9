"""Canvas trees: path copying, shared nodes, lookups that read only what they touch."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import CanvasNode
from exquisite_store.store import Store, compose, compose_full, edit_canvas, put_canvas
from exquisite_store.store.canvas import canvas_rect, differing_tiles, iter_tiles, same_pixels
from exquisite_store.store.canvas_tree import (
    FANOUT,
    OFFSET,
    RECENT_LIMIT,
    recent_of,
    root_position,
)
from exquisite_store.store.storage import MemoryStorage

from .helpers import rng_image


class CountingStorage(MemoryStorage):
    """A memory storage that counts what is read and written."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.new: list[tuple[str, str, int]] = []

    def get_object(self, oid: str) -> tuple[str, bytes]:
        self.reads.append(oid)
        return super().get_object(oid)

    def put_object(self, oid: str, ext: str, data: bytes) -> bool:
        fresh = super().put_object(oid, ext, data)
        if fresh:
            self.new.append((oid, ext, len(data)))
        return fresh


def grown(store: Store, canvas, direction: str, length: int, seed: int):
    """``canvas`` grown by ``length`` on one side with random pixels."""
    r = canvas_rect(canvas)
    patch_rect = {
        "right": Rect(r.right, r.y, length, r.h),
        "left": Rect(r.x - length, r.y, length, r.h),
        "down": Rect(r.x, r.bottom, r.w, length),
        "up": Rect(r.x, r.y - length, r.w, length),
    }[direction]
    patch = rng_image(patch_rect.h, patch_rect.w, seed)
    return edit_canvas(store.objects, canvas, r.union(patch_rect), patch, patch_rect), patch


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    moves=st.lists(
        st.tuples(st.sampled_from(["right", "left", "up", "down"]), st.integers(1, 150)),
        min_size=1,
        max_size=8,
    ),
    x=st.integers(-300, 300),
    y=st.integers(-300, 300),
)
def test_random_growth_matches_a_plain_array(moves, x, y) -> None:
    """Grow in random directions, across the origin: the tree composes to exactly the
    array grown the same way, and a canvas built at once from it has the same tiles."""
    store = Store.memory(tile_size=16)
    arr = rng_image(20, 30, seed=1)
    canvas = put_canvas(store.objects, arr, x, y, 16)
    plane = {"x": x, "y": y, "a": arr}
    for i, (direction, length) in enumerate(moves):
        canvas, patch = grown(store, canvas, direction, length, seed=i + 2)
        a = plane["a"]
        if direction == "right":
            plane["a"] = np.concatenate([a, patch], axis=1)
        elif direction == "left":
            plane["a"], plane["x"] = np.concatenate([patch, a], axis=1), plane["x"] - length
        elif direction == "down":
            plane["a"] = np.concatenate([a, patch], axis=0)
        else:
            plane["a"], plane["y"] = np.concatenate([patch, a], axis=0), plane["y"] - length
        assert (canvas.x, canvas.y) == (plane["x"], plane["y"])
    assert np.array_equal(compose_full(store.objects, canvas), plane["a"])
    again = put_canvas(store.objects, plane["a"], plane["x"], plane["y"], 16)
    assert same_pixels(store.objects, again, canvas)
    assert list(iter_tiles(store.objects, again)) == list(iter_tiles(store.objects, canvas))
    assert len(recent_of(canvas)) <= RECENT_LIMIT


def test_a_step_writes_only_the_nodes_above_its_tiles() -> None:
    """A long canvas (1,600 tiles) grown by one tile column: the new objects are the
    tiles of that column and one node per level, not the canvas's tile list."""
    storage = CountingStorage()
    store = Store(storage, tile_size=16)
    canvas = put_canvas(store.objects, rng_image(64, 16 * 400, seed=1), 0, 0, 16)
    level, _ = root_position(canvas_rect(canvas), 16)
    assert level == 4  # 400 x 4 tiles, the origin at 4/7 of its blocks
    storage.new.clear()
    storage.reads.clear()
    child, _ = grown(store, canvas, "right", 16, seed=2)
    tiles = [n for n in storage.new if n[1] == "png"]
    nodes = [n for n in storage.new if n[1] == "json"]
    assert len(tiles) == 4  # the new column: 64 px high = 4 tiles
    assert len(nodes) <= level  # at most one node per level above them
    assert sum(size for _, _, size in nodes) < level * 64 * 90  # children lists only
    # and it read only the nodes on the way (not the 400 columns)
    assert len(set(storage.reads)) <= 2 * level


def test_a_region_reads_only_the_nodes_over_it() -> None:
    storage = CountingStorage()
    store = Store(storage, tile_size=16)
    arr = rng_image(16 * 20, 16 * 300, seed=3)
    canvas = put_canvas(store.objects, arr, 0, 0, 16)
    store.objects._manifests.clear()  # cold: every node read is counted
    storage.reads.clear()
    region = Rect(16 * 150 + 5, 16 * 10 + 3, 20, 20)
    out = compose(store.objects, canvas, region)
    assert np.array_equal(out, arr[region.y : region.bottom, region.x : region.right])
    nodes = [oid for oid in set(storage.reads) if storage.get_object(oid)[0] == "json"]
    level, _ = root_position(canvas_rect(canvas), 16)
    assert len(nodes) <= level + 1  # one path down (two level-1 nodes if it straddles)


def test_differing_tiles_skips_shared_subtrees_and_matches_brute_force() -> None:
    storage = CountingStorage()
    store = Store(storage, tile_size=16)
    canvas = put_canvas(store.objects, rng_image(48, 16 * 200, seed=4), 0, 0, 16)
    child, _ = grown(store, canvas, "right", 40, seed=5)
    old = dict(((c, r), o) for c, r, o in iter_tiles(store.objects, canvas))
    brute = [(c, r, o) for c, r, o in iter_tiles(store.objects, child) if old.get((c, r)) != o]
    store.objects._manifests.clear()
    storage.reads.clear()
    assert list(differing_tiles(store.objects, canvas, child)) == brute
    assert len(brute) == 3 * 3  # 3 rows of tiles x (the cut column + 2 new columns)
    assert len(set(storage.reads)) < 12  # a handful of nodes, not 200 columns of them


def test_the_origin_sits_inside_blocks_not_on_their_edges() -> None:
    """A small canvas straddling the origin needs one level more, not all of them."""
    for k in range(1, 6):
        span = FANOUT**k
        assert 0 < OFFSET % span < span  # never a block edge at any level
    assert root_position(Rect(-16, -16, 32, 32), 16)[0] == 1
    assert root_position(Rect(-1000, 0, 2000, 16), 16)[0] <= 3


def test_nodes_are_small_and_sorted() -> None:
    store = Store.memory(tile_size=16)
    canvas = put_canvas(store.objects, rng_image(160, 160, seed=6), -40, -40, 16)
    stack = [canvas.root]
    while stack:
        node = store.objects.get_manifest(stack.pop(), CanvasNode)
        assert len(node.children) <= FANOUT * FANOUT
        keys = [(v, u) for u, v, _ in node.children]
        assert keys == sorted(keys)
        if node.level > 1:
            stack.extend(c for _, _, c in node.children)


def test_most_steps_write_no_node_and_every_few_fold_the_recent_tiles_in() -> None:
    """A band one tile high grown tile by tile: the changed tiles ride in the canvas's
    ``recent`` list, and the tree is written again only when more than RECENT_LIMIT have
    gathered; the metadata a step writes stays far below the canvas's tile count."""
    storage = CountingStorage()
    store = Store(storage, tile_size=16)
    canvas = put_canvas(store.objects, rng_image(16, 16 * 50, seed=7), 0, 0, 16)
    node_writes, canvas_bytes = [], []
    for i in range(40):
        storage.new.clear()
        canvas, _ = grown(store, canvas, "right", 16, seed=100 + i)
        nodes = [n for n in storage.new if n[1] == "json"]
        node_writes.append(len(nodes))
        canvas_bytes.append(len(store.objects.get_bytes(store.objects.put_json(canvas))[1]))
        assert len(recent_of(canvas)) <= RECENT_LIMIT
    assert node_writes.count(0) >= 30  # most steps: no node at all
    level, _ = root_position(canvas_rect(canvas), 16)
    assert max(node_writes) <= level + 1  # a fold: one path (two level-1 nodes at most)
    assert max(canvas_bytes) < 1000  # never a list of the 90 tiles
    full = put_canvas(store.objects, compose_full(store.objects, canvas), 0, 0, 16)
    assert same_pixels(store.objects, full, canvas)
