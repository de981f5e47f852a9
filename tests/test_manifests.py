"""Manifests: canonical bytes, round trips, golden ids, no floats."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exquisite_store import manifests as m
from exquisite_store.errors import ManifestError
from exquisite_store.store import Store

from .helpers import FIXTURE_NAMES, TickClock, fixture_array

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def _fixture_manifests() -> dict[str, bytes]:
    store = Store.memory(tile_size=256, clock=TickClock())
    out: dict[str, bytes] = {}
    for name in FIXTURE_NAMES:
        session_name = name.removesuffix(".png")
        session, root = store.create_session(
            session_name, fixture_array(name), title=f"from {name}", source_name=name
        )
        step = store.step(root)
        canvas = store.canvas(step)
        out[f"{session_name}/canvas"] = store.objects.get_bytes(step.result.canvas_id)[1]
        out[f"{session_name}/canvas-root-node"] = store.objects.get_bytes(canvas.root)[1]
        out[f"{session_name}/root-step"] = store.objects.get_bytes(root)[1]
        out[f"{session_name}/session"] = m.encode(session)
    return out


def test_golden_manifest_bytes(snapshot) -> None:
    assert _fixture_manifests() == snapshot


def test_golden_ids(snapshot) -> None:
    from exquisite_store.ids import hash_object

    ids = {k: hash_object("json", v) for k, v in _fixture_manifests().items()}
    assert ids == snapshot


def test_every_manifest_round_trips_to_the_same_bytes() -> None:
    for data in _fixture_manifests().values():
        assert m.encode(m.decode(data)) == data


def test_keys_are_sorted_and_there_is_a_schema_version() -> None:
    for data in _fixture_manifests().values():
        obj = msgspec.json.decode(data)
        assert list(obj) == sorted(obj)
        tree = obj["kind"] in ("canvas", "canvas_node")
        assert obj["schema_version"] == (m.CANVAS_TREE_SCHEMA if tree else m.SCHEMA_VERSION)


def test_flat_canvas_manifests_of_older_stores_keep_their_bytes_and_ids() -> None:
    """The golden manifests of the flat-canvas format (schema 1), as the code before
    canvas trees wrote them: they still decode, re-encode to the same bytes and keep
    their ids."""
    from exquisite_store.ids import hash_object

    golden = json.loads((FIXTURES_DIR / "golden-v1.json").read_text())
    assert len(golden) == 12
    for name, entry in golden.items():
        data = entry["bytes"].encode()
        obj = m.decode(data)
        assert m.encode(obj) == data, name
        assert hash_object("json", data) == entry["id"], name
        if name.endswith("/canvas"):
            assert obj.schema_version == 1 and obj.tiles and obj.root is msgspec.UNSET


def test_floats_and_unknown_fields_are_refused() -> None:
    with pytest.raises(ManifestError):
        m.decode(
            b'{"kind":"canvas","x":0.5,"y":0,"width":1,"height":1,"mode":"RGB",'
            b'"tile_size":256,"tiles":[]}'
        )
    with pytest.raises(ManifestError):
        m.decode(b'{"kind":"session","name":"a","root":"' + b"a" * 64 + b'","evil":1}')
    with pytest.raises(ManifestError):
        m.decode(b'{"kind":"nope"}')


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decoder_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        m.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_decoder_fuzz_mutated_manifests(data) -> None:
    blobs = list(_CACHED.values())
    blob = bytearray(data.draw(st.sampled_from(blobs)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ManifestError):
        m.decode(bytes(blob))


_CACHED = _fixture_manifests()
