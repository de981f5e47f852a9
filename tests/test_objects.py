"""Objects: ids name content, writes are atomic and read-only, reads verify."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from exquisite_store import imageio
from exquisite_store.errors import IntegrityError, InvalidId, NotFound
from exquisite_store.ids import check_id, hash_object
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.objects import image_id

from .helpers import FIXTURE_NAMES, FIXTURES, rng_image


def _png(arr: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    imageio.from_array(arr).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_compression_level_never_changes_an_id(store: Store, name: str) -> None:
    arr = imageio.read_image_file(str(FIXTURES / name))
    encodings = {level: _png(arr, level) for level in (0, 1, 6, 9)}
    assert len(set(encodings.values())) > 1, "the encodings should differ as bytes"
    ids = {image_id(imageio.load_file_bytes(data)) for data in encodings.values()}
    assert len(ids) == 1
    stored = {store.objects.put_image(imageio.load_file_bytes(d)) for d in encodings.values()}
    assert stored == ids
    assert sum(1 for _ in store.storage.list_objects()) == 1


def test_image_id_depends_on_mode_and_shape() -> None:
    flat = np.zeros((4, 6, 3), np.uint8)
    assert image_id(flat) != image_id(flat.reshape(6, 4, 3))
    rgba = np.zeros((4, 6, 4), np.uint8)
    assert image_id(rgba) != image_id(np.zeros((4, 8, 3), np.uint8))


def test_typed_ids_differ_by_kind() -> None:
    assert hash_object("text", b"{}") != hash_object("json", b"{}")
    assert len(hash_object("text", b"x")) == 64


def test_put_get_round_trip(store: Store) -> None:
    arr = rng_image(37, 53, seed=1)
    oid = store.objects.put_image(arr)
    store.objects._cache.clear()
    assert np.array_equal(store.objects.get_image(oid, verify=True), arr)
    tid = store.objects.put_text("a prompt ✓")
    assert store.objects.get_text(tid, verify=True) == "a prompt ✓"
    assert store.objects.has(oid) and store.objects.has(tid)


def test_objects_are_read_only_and_fanned_out(store: Store) -> None:
    oid = store.objects.put_text("hello")
    path = store.root / "objects" / oid[:2] / f"{oid}.txt"
    assert path.exists()
    assert not os.stat(path).st_mode & 0o222
    assert list((store.root / "tmp").iterdir()) == []


def test_dedup_hit_freshens_mtime(store: Store) -> None:
    oid = store.objects.put_text("same")
    path = store.root / "objects" / oid[:2] / f"{oid}.txt"
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert store.objects.put_text("same") == oid
    assert path.stat().st_mtime > old + 3000


def test_flipped_byte_is_named_by_fsck_and_verified_read_raises(store: Store) -> None:
    arr = rng_image(20, 30, seed=2)
    oid = store.objects.put_image(arr)
    tid = store.objects.put_text("untouched")
    path = store.root / "objects" / oid[:2] / f"{oid}.png"
    data = bytearray(path.read_bytes())
    # flip a byte inside the compressed pixel data (after the IHDR chunk)
    data[len(data) // 2] ^= 0x40
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    store.objects._cache.clear()
    with pytest.raises(IntegrityError) as err:
        store.objects.get_image(oid, verify=True)
    assert err.value.expected == oid
    rep = fsck(store)
    assert not rep.ok
    assert [d.split(":")[0] for d in rep.damaged] == [oid]
    assert store.objects.get_text(tid, verify=True) == "untouched"


def test_tampered_text_reports_expected_and_got(store: Store) -> None:
    oid = store.objects.put_text("original")
    path = store.root / "objects" / oid[:2] / f"{oid}.txt"
    os.chmod(path, 0o644)
    path.write_text("tampered")
    with pytest.raises(IntegrityError) as err:
        store.objects.get_text(oid, verify=True)
    assert err.value.got == hash_object("text", b"tampered")


@pytest.mark.parametrize(
    "bad",
    ["../../x", "../../config", "abc", "g" * 64, "A" * 64, "a" * 63, "a" * 65, "", "a\0" * 32],
)
def test_hostile_ids_never_become_paths(store: Store, bad: str) -> None:
    with pytest.raises(InvalidId):
        check_id(bad)
    with pytest.raises(InvalidId):
        store.objects.get_bytes(bad)
    # as an abbreviation, upper case and shorter hex are fine, but still find nothing
    with pytest.raises((InvalidId, NotFound)):
        store.objects.resolve(bad)


def test_prefix_resolution(store: Store) -> None:
    oid = store.objects.put_text("x")
    assert store.objects.resolve(oid[:8]) == oid
    assert store.objects.resolve(oid.upper()[:10]) == oid
    with pytest.raises(NotFound):
        store.objects.resolve("0" * 8 if not oid.startswith("0" * 8) else "f" * 8)


def test_png_written_is_a_plain_png_a_browser_can_show(store: Store) -> None:
    arr = rng_image(10, 10, seed=3, channels=4)
    oid = store.objects.put_image(arr)
    path = store.root / "objects" / oid[:2] / f"{oid}.png"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGBA" and img.size == (10, 10)
