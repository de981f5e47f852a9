"""Content-addressed objects: images (by pixels), texts and JSON manifests."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from exquisite_store import imageio, manifests
from exquisite_store.errors import (
    AmbiguousId,
    ImageRejected,
    IntegrityError,
    ManifestError,
    NotFound,
)
from exquisite_store.ids import (
    EXTENSIONS,
    ObjectId,
    check_id,
    check_prefix,
    hash_object,
    hash_parts,
    image_canonical_header,
)
from exquisite_store.store.storage import BaseStorage

M = TypeVar("M", bound=manifests.Manifest)
#: threads that encode and write images at once (Pillow's encoder releases the GIL)
ENCODE_THREADS = max(2, min(4, os.cpu_count() or 2))


@functools.cache
def _encoders() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="exq-encode")


_KIND_OF_EXT = {v: k for k, v in EXTENSIONS.items()}


def image_id(arr: np.ndarray) -> ObjectId:
    """The id of an image array: its mode, size and raw pixels, never its encoding."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = image_canonical_header(imageio.mode_of(arr), arr.shape[1], arr.shape[0])
    return hash_parts("image", header, memoryview(arr).cast("B"))


def id_of_bytes(kind: str, data: bytes) -> ObjectId:
    """The id of stored bytes of ``kind`` (images are decoded to their pixels first)."""
    if kind == "image":
        mode, width, height, raw = imageio.decode_pixels(data, what="stored image")
        return hash_parts("image", image_canonical_header(mode, width, height), raw)
    return hash_object(kind, data)


def kind_of_ext(ext: str) -> str:
    """The object kind stored under a file extension (``png`` -> ``image``)."""
    return _KIND_OF_EXT[ext]


def verify_bytes(oid: str, kind: str, data: bytes) -> None:
    """Rehash stored bytes of ``kind``; IntegrityError unless they are object ``oid``."""
    try:
        got = id_of_bytes(kind, data)
    except ImageRejected as exc:
        raise IntegrityError(
            f"object {oid} is damaged: {exc.message}", expected=oid, got="undecodable"
        ) from exc
    if got != oid:
        raise IntegrityError(
            f"object {oid} is damaged: its content hashes to {got}", expected=oid, got=got
        )


class ObjectStore:
    """put/get/has over a storage backend, with a small cache of decoded images."""

    #: decoded images larger than this are never cached (a frame, a mask, a big import)
    CACHE_IMAGE_MAX_BYTES = 4 * 1024 * 1024
    #: the cache holds at most this many bytes of pixels (about 680 RGB 256x256 tiles)
    CACHE_MAX_BYTES = 128 * 1024 * 1024

    def __init__(self, storage: BaseStorage, *, cache_items: int = 512) -> None:
        self.storage = storage
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_items = cache_items
        self._cache_bytes = 0
        self._manifests: OrderedDict[str, manifests.Manifest] = OrderedDict()
        self._mutex = threading.Lock()

    # --- writing ---------------------------------------------------------------

    def put_image(self, arr: np.ndarray, png: bytes | None = None) -> ObjectId:
        """Store an image array as PNG under its pixel id.

        Pixels already stored are not encoded again (only freshened for gc). ``png``,
        when given, is stored as it is: it must decode to exactly ``arr`` (a backend's
        answer kept as returned, see ``pipeline.outputs``).
        """
        arr = np.ascontiguousarray(arr, dtype=np.uint8)
        oid = image_id(arr)
        if self.storage.touch_object(oid):
            return oid
        data = png if png is not None else imageio.png_bytes(arr)
        if self.storage.put_object(oid, "png", data) and arr.nbytes <= self.CACHE_IMAGE_MAX_BYTES:
            frozen = arr.copy()
            frozen.flags.writeable = False
            self._remember(oid, frozen)
        return oid

    def put_images(self, arrays: list[np.ndarray]) -> list[ObjectId]:
        """Store several images at once; their ids, in order.

        PNG encoding (which frees the GIL) and the writes run in parallel threads.
        """
        if len(arrays) < 2:
            return [self.put_image(a) for a in arrays]
        return list(_encoders().map(self.put_image, arrays))

    def put_text(self, text: str) -> ObjectId:
        """Store UTF-8 text."""
        data = text.encode("utf-8")
        oid = hash_object("text", data)
        self.storage.put_object(oid, "txt", data)
        return oid

    def put_json(self, obj: manifests.Manifest) -> ObjectId:
        """Store a manifest as canonical JSON."""
        data = manifests.encode(obj)
        oid = hash_object("json", data)
        self.storage.put_object(oid, "json", data)
        return oid

    def _remember(self, oid: str, arr: np.ndarray) -> None:
        if arr.nbytes > self.CACHE_IMAGE_MAX_BYTES:
            return  # a whole frame or import: used once, never worth its memory
        with self._mutex:
            if oid in self._cache:
                self._cache.move_to_end(oid)
                return
            self._cache[oid] = arr
            self._cache_bytes += arr.nbytes
            while len(self._cache) > self._cache_items or self._cache_bytes > self.CACHE_MAX_BYTES:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes

    # --- reading ---------------------------------------------------------------

    def has(self, oid: str) -> bool:
        """Whether an object with this (validated) id is stored."""
        return self.storage.has_object(check_id(oid))

    def get_bytes(self, oid: str, *, verify: bool = False) -> tuple[str, bytes]:
        """Kind and raw stored bytes; ``verify`` rehashes and raises IntegrityError."""
        oid = check_id(oid)
        ext, data = self.storage.get_object(oid)
        kind = kind_of_ext(ext)
        if verify:
            verify_bytes(oid, kind, data)
        return kind, data

    def get_image(self, oid: str, *, verify: bool = False, remember: bool = True) -> np.ndarray:
        """An image's pixels (read-only array).

        ``remember=False`` leaves the decoded-image cache alone: for work that reads
        each tile once (a whole canvas, band by band), which would only evict the tiles
        a step will use again.
        """
        if not verify:
            with self._mutex:
                hit = self._cache.get(oid)
            if hit is not None:
                return hit
        kind, data = self.get_bytes(oid, verify=verify)
        if kind != "image":
            raise NotFound(f"object {oid} is a {kind}, not an image", id=oid)
        arr = imageio.to_array(imageio.decode(data, what=f"object {oid[:12]}"))
        arr.flags.writeable = False
        if remember:
            self._remember(oid, arr)
        return arr

    def get_text(self, oid: str, *, verify: bool = False) -> str:
        """A text object."""
        kind, data = self.get_bytes(oid, verify=verify)
        if kind != "text":
            raise NotFound(f"object {oid} is a {kind}, not a text", id=oid)
        return data.decode("utf-8")

    def get_manifest(self, oid: str, kind: type[M] | None = None, *, verify: bool = False) -> M:
        """Decode a manifest; ``kind`` asserts its type (NotFound otherwise)."""
        with self._mutex:
            obj = None if verify else self._manifests.get(oid)
        if obj is None:
            obj = self._load_manifest(oid, verify)
        if kind is not None and not isinstance(obj, kind):
            want = kind.__struct_config__.tag
            raise NotFound(f"object {oid} is a {type(obj).__name__.lower()}, not a {want}", id=oid)
        return obj  # type: ignore[return-value]

    def _load_manifest(self, oid: str, verify: bool) -> manifests.Manifest:
        k, data = self.get_bytes(oid, verify=verify)
        if k != "json":
            raise NotFound(f"object {oid} is a {k}, not a manifest", id=oid)
        got = hash_object("json", data)  # cheap for a manifest: never trust an edited one
        if got != oid:
            raise IntegrityError(
                f"object {oid} is damaged (its content hashes to {got[:12]}); run `exq fsck`",
                expected=oid,
                got=got,
            )
        try:
            obj = manifests.decode(data)
        except ManifestError as exc:
            raise ManifestError(f"object {oid} is not a valid manifest: {exc}", id=oid) from exc
        with self._mutex:  # manifests are immutable: a decoded one stays right forever
            self._manifests[oid] = obj
            self._manifests.move_to_end(oid)
            while len(self._manifests) > 8 * self._cache_items:
                self._manifests.popitem(last=False)
        return obj

    def resolve(self, prefix: str) -> ObjectId:
        """Expand a unique id prefix (>= 8 hex chars) to the full id."""
        prefix = check_prefix(prefix)
        if len(prefix) == 64:
            if not self.storage.has_object(prefix):
                raise NotFound(f"no object {prefix}", id=prefix)
            return ObjectId(prefix)
        matches = [
            oid for oid, _ in self.storage.list_objects(prefix[:2]) if oid.startswith(prefix)
        ]
        if not matches:
            raise NotFound(f"no object starts with {prefix}", id=prefix)
        if len(matches) > 1:
            raise AmbiguousId(
                f"{prefix} is ambiguous: {len(matches)} objects start with it", id=prefix
            )
        return ObjectId(matches[0])
