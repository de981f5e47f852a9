"""fsck reads each object once and gc reads only manifests, and neither finds less.

A store of tree canvases (tiles hang off canvas nodes), side branches, a reflog-only
step, an attempt and unreachable junk; a storage that counts every object read.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as hyp

from exquisite_store import imageio
from exquisite_store.geometry.rect import Rect
from exquisite_store.ids import is_id
from exquisite_store.manifests import Attempt, Canvas, CanvasNode, Recipe, Result, Step
from exquisite_store.store import Store, edit_canvas
from exquisite_store.store.canvas import canvas_rect
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc, live_ids
from exquisite_store.store.reach import NOT_OBJECT_FIELDS, ids_in, ids_in_json, references, root_ids
from exquisite_store.store.storage import DiskStorage, MemoryStorage

from .helpers import rng_image

TILE = 64
DAY = 86400.0


class CountingDisk(DiskStorage):
    """The disk layout, counting each object read by id and by extension."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: collections.Counter[str] = collections.Counter()
        self.by_ext: collections.Counter[str] = collections.Counter()

    def _count(self, oid: str, ext: str) -> None:
        self.reads[oid] += 1
        self.by_ext[ext] += 1

    def get_object(self, oid: str) -> tuple[str, bytes]:
        ext, data = super().get_object(oid)
        self._count(oid, ext)
        return ext, data

    def get_objects(self, items):
        for oid, ext, data in super().get_objects(items):
            if isinstance(data, bytes):
                self._count(oid, ext)
            yield oid, ext, data


def grow(st: Store, session: str, branch: str, parent: str, old: str | None, seed: int) -> str:
    """One step right by a tile; CAS ``branch`` from ``old``; the new step's id."""
    canvas = st.canvas(st.step(parent))
    r = canvas_rect(canvas)
    patch = Rect(r.right, r.y, TILE, r.h)
    child = edit_canvas(st.objects, canvas, r.union(patch), rng_image(r.h, TILE, seed), patch)
    step = Step(
        session=session,
        parent=parent,
        result=Result(canvas_id=st.objects.put_json(child), width=child.width, height=child.height),
    )
    sid = st.objects.put_json(step)
    st.refs.update(session, branch, old, sid, f"test step {seed}")
    return sid


def build(st: Store) -> dict[str, object]:
    """A session of 24 steps on main (tree canvases), a side branch, a reflog-only step,
    an attempt, and junk: two old objects (past any grace) and one fresh."""
    _, head = st.create_session("s", rng_image(TILE, TILE, seed=1))
    for i in range(24):
        head = grow(st, "s", "main", head, head, seed=10 + i)
    side = old = None
    for i in range(3):
        side = grow(st, "s", "side", head, old, seed=100 + i)
        old = side
    # a step only the reflog still names: main moved on, then was set back
    lost = grow(st, "s", "main", head, head, seed=200)
    st.refs.update("s", "main", lost, head, "set back")
    attempt = st.record_attempt(
        Attempt(
            session="s",
            parent=head,
            branch="main",
            failure_kind="DimensionMismatch",
            message="test attempt",
            recipe=Recipe(
                direction="right",
                extension_px=TILE,
                overlap_px=8,
                context_px=TILE,
                immutable_policy="outside-seam",
                seam="match",
                prompt_id=st.objects.put_text("only the attempt names this prompt"),
                backend="patchmatch",
                model="",
            ),
        )
    )
    junk = [st.objects.put_text("unreachable text"), st.objects.put_image(rng_image(8, 8, 7))]
    ago = time.time() - 30 * DAY
    for oid in junk:
        path = st.storage.object_path(oid)
        os.utime(path, (ago, ago))
    fresh = st.objects.put_text("unreachable and fresh")
    return {
        "head": head,
        "side": side,
        "lost": lost,
        "attempt": attempt,
        "junk": junk,
        "fresh": fresh,
    }


def full_read_closure(st: Store) -> set[str]:
    """Reachability the slow way: every reachable object read, every manifest decoded."""
    seen: set[str] = set()
    stack = list(root_ids(st))
    while stack:
        oid = stack.pop()
        if oid in seen or not st.storage.has_object(oid):
            continue
        seen.add(oid)
        ext, data = st.storage.get_object(oid)
        if ext == "json":
            stack.extend(references(st.objects.get_manifest(oid)))
    return seen


@pytest.fixture
def world(tmp_path: Path) -> tuple[Store, dict[str, object]]:
    st = Store.init(tmp_path / "store", tile_size=TILE)
    return st, build(st)


def counting(st: Store) -> tuple[Store, CountingDisk]:
    assert st.root is not None
    disk = CountingDisk(st.root)
    return Store(disk, tile_size=st.tile_size), disk


def node_and_tile(st: Store) -> tuple[str, str]:
    """A reachable canvas node of level 1 and one of its tiles."""
    live = full_read_closure(st)
    for oid, ext in st.storage.list_objects():
        if ext == "json" and oid in live:
            obj = st.objects.get_manifest(oid)
            if isinstance(obj, CanvasNode) and obj.level == 1:
                return oid, obj.children[0][2]
    raise AssertionError("the store holds no canvas node")


def test_the_store_has_what_the_tests_need(world) -> None:
    st, w = world
    kinds = collections.Counter(
        type(st.objects.get_manifest(o)).__name__
        for o, e in st.storage.list_objects()
        if e == "json"
    )
    assert kinds["CanvasNode"] >= 3 and kinds["Canvas"] >= 28 and kinds["Attempt"] == 1
    assert w["lost"] in full_read_closure(st)  # only the reflog names it


def test_fsck_reads_every_object_exactly_once(world) -> None:
    st, _ = world
    cst, disk = counting(st)
    rep = fsck(cst)
    assert rep.ok, rep
    listed = {oid for oid, _ in st.storage.list_objects()}
    assert set(disk.reads) == listed
    assert set(disk.reads.values()) == {1}, disk.reads.most_common(3)


def test_gc_dry_run_reads_no_image_and_no_text(world) -> None:
    st, w = world
    cst, disk = counting(st)
    rep = gc(cst, dry_run=True)
    assert disk.by_ext["png"] == 0 and disk.by_ext["txt"] == 0, disk.by_ext
    manifests = {oid for oid, ext in st.storage.list_objects() if ext == "json"}
    assert set(disk.reads) == manifests and set(disk.reads.values()) == {1}
    junk = w["junk"]
    assert sorted(rep.removed) == sorted(junk) and rep.young == 1
    assert rep.bytes_removed == sum(st.storage.object_path(j).stat().st_size for j in junk)
    assert all(st.objects.has(j) for j in junk)  # a dry run


def test_reachability_is_what_a_full_read_finds(world) -> None:
    st, w = world
    slow = full_read_closure(st)
    listed = dict(st.storage.list_objects())
    assert live_ids(st, listed) == slow
    rep = fsck(st)
    assert set(rep.dangling) == set(listed) - slow
    prompt = st.objects.get_manifest(w["attempt"], Attempt).recipe.prompt_id
    assert {w["lost"], w["attempt"], w["side"], prompt} <= slow
    assert set(w["junk"]) | {w["fresh"]} <= set(rep.dangling)


def test_a_damaged_image_is_found(world) -> None:
    """A tile whose file now holds other pixels (still a valid PNG) and one cut short."""
    st, _ = world
    node, tile = node_and_tile(st)
    other = next(c[2] for c in st.objects.get_manifest(node, CanvasNode).children if c[2] != tile)
    for oid, data in (
        (tile, imageio.png_bytes(rng_image(TILE, TILE, seed=999))),
        (other, st.storage.get_object(other)[1][:200]),
    ):
        path = st.storage.object_path(oid)
        os.chmod(path, 0o644)
        path.write_bytes(data)
    rep = fsck(st)
    assert not rep.ok
    damaged = {line.split(":", 1)[0]: line for line in rep.damaged}
    assert set(damaged) == {tile, other}
    assert "hashes to" in damaged[tile] and "cannot be decoded" in damaged[other]
    assert not rep.missing and tile not in rep.dangling


def test_a_damaged_manifest_is_found_and_its_references_still_walked(world) -> None:
    st, _ = world
    node, tile = node_and_tile(st)
    path = st.storage.object_path(node)
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b'"level":1', b'"level":1 '))
    rep = fsck(st)
    assert [d.split(":", 1)[0] for d in rep.damaged] == [node]
    assert tile not in rep.dangling  # still reachable through the damaged node


def test_a_missing_tile_of_a_tree_node_is_found(world) -> None:
    st, _ = world
    node, tile = node_and_tile(st)
    st.storage.delete_object(tile)
    rep = fsck(st)
    assert not rep.ok and (node, tile) in rep.missing
    assert not rep.damaged
    gone = gc(st, dry_run=True)
    assert gone.reachable == len(full_read_closure(st))


def test_a_missing_node_of_a_canvas_is_found(world) -> None:
    st, w = world
    canvas_id = st.step(w["head"]).result.canvas_id
    canvas = st.objects.get_manifest(canvas_id, Canvas)
    st.storage.delete_object(canvas.root)
    rep = fsck(st)
    assert (canvas_id, canvas.root) in rep.missing


def test_a_step_written_after_the_listing_is_not_missing(world, monkeypatch) -> None:
    """fsck runs beside writers: a step and its objects newer than the listing are no damage."""
    st, w = world
    real = DiskStorage.list_objects
    made: list[str] = []

    def listing_then_a_new_step(self, fan: str = ""):
        items = list(real(self, fan))
        if not made:
            made.append(grow(st, "s", "main", w["head"], w["head"], seed=500))
        yield from items

    monkeypatch.setattr(DiskStorage, "list_objects", listing_then_a_new_step)
    rep = fsck(st)
    assert made and st.refs.head("s", "main") == made[0]
    assert rep.ok and not rep.missing and not rep.bad_refs, rep


def test_gc_removes_only_old_unreachable_objects_and_fsck_stays_clean(world) -> None:
    st, w = world
    before = {oid for oid, _ in st.storage.list_objects()}
    rep = gc(st)
    after = {oid for oid, _ in st.storage.list_objects()}
    assert before - after == set(w["junk"]) and sorted(rep.removed) == sorted(w["junk"])
    assert w["fresh"] in after
    check = fsck(st)
    assert check.ok and not check.missing


def test_on_memory_storage_too() -> None:
    st = Store(MemoryStorage(), tile_size=TILE)
    _, head = st.create_session("m", rng_image(TILE, TILE, seed=3))
    for i in range(10):
        head = grow(st, "m", "main", head, head, seed=i)
    junk = st.objects.put_text("junk in memory")
    rep = fsck(st)
    assert rep.ok and rep.dangling == [junk]
    dry = gc(st, dry_run=True, grace_s=0)
    assert dry.removed == [junk] and dry.bytes_removed == len(b"junk in memory")
    assert dry.reachable == rep.objects - 1


# --- references: the walk of a manifest's decoded JSON -----------------------------------------

IDS = ["a" * 64, "0123456789abcdef" * 4, "f" * 64]
LEAVES = [*IDS, "a" * 65, "A" * 64, "g" * 64, f'"{IDS[0]}"', "", "text"]
KEYS = ["recipe_id", "request_id", "provider_request_id", "tiles", "x", *IDS]
json_values = hyp.recursive(
    hyp.none() | hyp.booleans() | hyp.integers(-5, 5) | hyp.sampled_from(LEAVES),
    lambda inner: (
        hyp.lists(inner, max_size=4) | hyp.dictionaries(hyp.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)


def recursive_walk(value, key: str = "") -> list[str]:
    """The walk ``references`` did before (recursive): the definition ``ids_in`` keeps."""
    if key in NOT_OBJECT_FIELDS:
        return []
    if isinstance(value, str):
        return [value] if is_id(value) else []
    if isinstance(value, dict):
        return [i for k, v in value.items() for i in recursive_walk(v, k)]
    if isinstance(value, list | tuple):
        return [i for v in value for i in recursive_walk(v, key)]
    return []


@settings(max_examples=300, deadline=None)
@given(json_values)
@example({"recipe_id": [IDS[0], {"x": IDS[1]}], "x": [IDS[2], {IDS[0]: None}]})
@example({"tiles": [[0, 1, IDS[1]], [1, 1, IDS[1]]], "request_id": IDS[2]})
def test_ids_in_finds_what_the_recursive_walk_found(value) -> None:
    decoded = msgspec.json.decode(msgspec.json.encode(value, order="sorted"))
    assert sorted(ids_in(decoded)) == sorted(recursive_walk(decoded))


# --- images checked in forked workers ---------------------------------------------------------

FORKED_FSCK = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from exquisite_store import imageio
from exquisite_store.store import Store, scan
from exquisite_store.store.fsck import fsck
from tests.helpers import rng_image
from tests.test_fsck_gc import TILE, build, node_and_tile

st = Store.init(Path(sys.argv[2]), tile_size=TILE)
build(st)
node, tile = node_and_tile(st)
path = st.storage.object_path(tile)
os.chmod(path, 0o644)
path.write_bytes(imageio.png_bytes(rng_image(TILE, TILE, seed=998)))
gone = st.objects.put_image(rng_image(8, 8, seed=997))
real = scan._forked_chunk
pids = Path(sys.argv[2]) / "cache" / "pids"

def forked_chunk(items, *, verify):  # a worker: notes its pid; one image vanishes first
    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\\n")
    if any(oid == gone for oid, _ in items):
        st.storage.delete_object(gone)
    return real(items, verify=verify)

scan._forked_chunk = forked_chunk
scan.PROCESS_MIN_IMAGES, scan.PROCESSES = 1, 2
forked = scan._can_fork()
rep = fsck(st)
print(json.dumps({
    "forked": forked,
    "workers": sorted(set(pids.read_text().split()) - {str(os.getpid())}),
    "damaged": [d.split(":", 1)[0] for d in rep.damaged],
    "tile": tile,
    "gone_counted": gone not in rep.dangling,
    "objects": rep.objects,
    "listed": sum(1 for _ in st.storage.list_objects()),
    "missing": rep.missing,
}))
"""


def test_images_checked_in_forked_workers_are_still_found_damaged(tmp_path: Path) -> None:
    """A large store's images are checked in forked workers (a clean process here, so
    the fork is safe): a damaged one is named, one gone since the listing is skipped."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", FORKED_FSCK, str(root), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["forked"] and len(got["workers"]) >= 1, got
    assert got["damaged"] == [got["tile"]]
    assert got["gone_counted"] and got["objects"] == got["listed"] and not got["missing"]


NASTY = [
    *IDS,
    *(f'","{i}"]' for i in IDS),
    *(f'"{i}"' for i in IDS),
    *(f'"{i}":' for i in IDS),
    *(f'{{"recipe_id":"{i}"}}' for i in IDS),
    *(f'"recipe_id": "{i}' for i in IDS),
    "plain, text: [with] {brackets}",
    "é ü",
    "\\",
]
NASTY_KEYS = [*KEYS, 'x"recipe_id', "a,", "é"]
nasty_values = hyp.recursive(
    hyp.none() | hyp.integers(-5, 5) | hyp.sampled_from(NASTY),
    lambda inner: (
        hyp.lists(inner, max_size=4)
        | hyp.dictionaries(hyp.sampled_from(NASTY_KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(hyp.dictionaries(hyp.sampled_from(NASTY_KEYS), nasty_values, max_size=6), hyp.booleans())
@example({"recipe_id": IDS[0], "x": [IDS[0], {IDS[1]: IDS[0]}], "tiles": [[0, 1, IDS[2]]]}, False)
@example({"request_id": IDS[1], "provider_request_id": IDS[1], "y": IDS[1]}, True)
def test_ids_read_from_the_bytes_are_those_of_the_decoded_value(value, spaced) -> None:
    """Canonical bytes, or any JSON with whitespace between tokens: the same ids, each as
    often; None (then the caller decodes) only where a backslash or a name container is."""
    import json

    data = (
        json.dumps(value, indent=1, ensure_ascii=False).encode()
        if spaced
        else msgspec.json.encode(value, order="sorted")
    )
    fast = ids_in_json(data)
    slow = ids_in(msgspec.json.decode(data))
    if fast is None:
        assert b"\\" in data or _holds_a_named_container(value)
    else:
        assert sorted(fast) == sorted(slow)


def _holds_a_named_container(value) -> bool:
    if isinstance(value, dict):
        return any(
            (k in NOT_OBJECT_FIELDS and isinstance(v, dict | list)) or _holds_a_named_container(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_holds_a_named_container(v) for v in value)
    return False
