"""A deterministic 6-step session: its whole manifest chain is pinned by a snapshot."""

from __future__ import annotations

import msgspec
import pytest
from click.testing import CliRunner

from exquisite_store import manifests as m
from exquisite_store.backends.patchmatch import PatchMatchBackend
from exquisite_store.cli import cli
from exquisite_store.pipeline.reproduce import reproduce
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

from .helpers import FixedClock, fixture_array

PLAN = [  # (parent: None = main's head, or an index into earlier steps), direction, L, seam
    (None, "right", 48, "match"),
    (None, "down", 40, "feather"),
    (None, "left", 32, "hard"),
    (None, "up", 24, "match"),
    (0, "right", 40, "match"),  # a branch from the first step
    (None, "down", 16, "match"),
]


def build(tmp_path) -> tuple[Store, list[str]]:
    # a constant clock: the ids do not change when the pipeline reads the clock once more
    store = Store.init(tmp_path / "store", tile_size=64, clock=FixedClock())
    store.create_session("six", fixture_array("odd.png")[:96, :128], source_name="odd.png")
    backend = PatchMatchBackend(in_process=True)
    ids: list[str] = []
    for i, (parent, direction, px, seam) in enumerate(PLAN):
        out = run_step(
            store,
            "six",
            parent=ids[parent] if parent is not None else None,
            branch="side" if parent is not None else None,
            backend_impl=backend,
            direction=direction,
            extension_px=px,
            overlap_px=8,
            seam=seam,
            seed=100 + i,
            prompt=f"step {i}",
        )
        ids.append(out.step_ids[0])
    return store, ids


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    return build(tmp_path_factory.mktemp("six"))


def _chain(store: Store, sid: str) -> list[dict]:
    return [msgspec.json.decode(m.encode(step)) | {"id": i} for i, step in store.history(sid)]


def test_manifest_chain_snapshot(six, snapshot) -> None:
    store, ids = six
    branches = store.refs.branches("six")
    assert set(branches) == {"main", "side"}
    assert branches["side"] == ids[4]
    chains = {name: _chain(store, sid) for name, sid in sorted(branches.items())}
    assert chains == snapshot


def test_same_inputs_same_ids(six, tmp_path) -> None:
    _, ids = six
    _, again = build(tmp_path)
    assert again == ids


def test_every_step_reproduces(six) -> None:
    store, ids = six
    for sid in ids:
        assert reproduce(store, sid).matches, sid
        assert reproduce(store, sid, replay=True).matches, sid


def test_cli_reproduce_reports_match(six) -> None:
    store, ids = six
    res = CliRunner().invoke(
        cli, ["--store", str(store.root), "reproduce", ids[1][:10], "--replay"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("match:")


def test_session_log_and_directions(six) -> None:
    store, ids = six
    steps = [store.step(s) for s in ids]
    assert [s.recipe.direction for s in steps] == [p[1] for p in PLAN]
    sizes = [(s.result.width, s.result.height) for s in steps]
    assert sizes[0] == (128 + 48, 96)
    assert sizes[4] == (128 + 48 + 40, 96)


def test_reproduce_reports_a_mismatch(six) -> None:
    store, ids = six
    other = PatchMatchBackend(in_process=True, patch_size=3)
    assert not reproduce(store, ids[0], backend=other).matches
