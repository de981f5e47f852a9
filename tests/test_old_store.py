"""A store made by the flat-canvas code (schema 1, kept in tests/fixtures/store-v1)
reads, fscks, reproduces and grows with today's code; its first new step is a tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.manifests import CANVAS_TREE_SCHEMA, Canvas
from exquisite_store.pipeline.reproduce import reproduce
from exquisite_store.store import Store, compose_full
from exquisite_store.store.canvas import is_tree, same_pixels
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "store-v1"


@pytest.fixture
def old(tmp_path) -> Store:
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root)
    for sub in ("tmp", "cache"):  # git keeps no empty folders; `exq init` made them
        (root / sub).mkdir(exist_ok=True)
    return Store.open(root)


def test_it_reads_and_fscks_clean(old) -> None:
    rep = fsck(old)
    assert rep.ok and not rep.dangling and rep.objects == 74
    heads = old.refs.branches("old")
    assert set(heads) == {"main", "side", "side~2"}
    for sid in heads.values():
        canvas = old.canvas(old.step(sid))
        assert not is_tree(canvas) and canvas.schema_version == 1
        compose_full(old.objects, canvas)  # every tile is there, whole
    assert len(old.attempts("old")) == 1
    res = CliRunner().invoke(cli, ["--store", str(old.root), "log", "old"])
    assert res.exit_code == 0 and res.output.count("step ") == 4


def test_its_steps_reproduce_by_replay(old) -> None:
    """A re-run builds a tree; the same pixels as the recorded flat canvas are a match."""
    for sid, _ in old.history(old.refs.head("old", "main")):
        if old.step(sid).parent is None:
            continue
        rep = reproduce(old, sid, replay=True)
        assert rep.matches and rep.got != rep.expected, sid


def test_it_grows_and_the_new_step_is_a_tree(old) -> None:
    head = old.refs.head("old", "main")
    parent = old.canvas(old.step(head))
    req = core.step_request(
        old, "old", {"extension_px": 24, "overlap_px": 4, "seed": 3, "backend": "patchmatch"}
    )
    (sid,) = core.grow(old, req).step_ids
    child = old.canvas(old.step(sid))
    assert is_tree(child) and child.schema_version == CANVAS_TREE_SCHEMA
    assert child.width == parent.width + 24
    # the old pixels are there, bit for bit (the step's own I2 check passed too)
    grown = compose_full(old.objects, child)
    assert (grown[:, : parent.width] == compose_full(old.objects, parent))[:, :-4].all()
    # and a step from the tree grows it again, writing only the changed nodes
    (again,) = core.grow(old, core.step_request(old, "old", {"extension_px": 16})).step_ids
    assert is_tree(old.canvas(old.step(again)))
    rep = fsck(old)
    assert rep.ok and not rep.missing
    assert gc(old, grace_s=0, dry_run=True).removed == []


def test_a_flat_and_a_tree_canvas_of_the_same_pixels_are_the_same_picture(old) -> None:
    flat = old.canvas(old.step(old.refs.head("old", "main")))
    from exquisite_store.store import put_canvas

    tree = put_canvas(old.objects, compose_full(old.objects, flat), flat.x, flat.y, 64)
    assert isinstance(tree, Canvas) and is_tree(tree)
    assert same_pixels(old.objects, flat, tree)
