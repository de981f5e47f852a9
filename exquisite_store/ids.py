"""Object ids: blake3 over a typed canonical form, and validation at the boundary."""

from __future__ import annotations

import re
from typing import NewType

import blake3

from exquisite_store.errors import InvalidId

ObjectId = NewType("ObjectId", str)

KINDS = ("image", "text", "json")
EXTENSIONS = {"image": "png", "text": "txt", "json": "json"}
ID_LEN = 64
MIN_PREFIX = 8
#: a full id; also the viewer's URL rule and the form's pattern
ID_PATTERN = "[0-9a-f]{64}"
#: a full id or a unique prefix of at least MIN_PREFIX characters
PREFIX_PATTERN = "[0-9a-f]{8,64}"
_FULL = re.compile(f"^{ID_PATTERN}$")
_PREFIX = re.compile(f"^{PREFIX_PATTERN}$")


def hash_object(kind: str, canonical: bytes) -> ObjectId:
    r"""``blake3(kind + "\\0" + canonical bytes)`` as 64 lowercase hex chars."""
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}")
    h = blake3.blake3(kind.encode("ascii") + b"\0")
    h.update(canonical)
    return ObjectId(h.hexdigest())


def hash_parts(kind: str, *parts: bytes | memoryview) -> ObjectId:
    """``hash_object(kind, b"".join(parts))`` without joining them (no copy of a big image)."""
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}")
    h = blake3.blake3(kind.encode("ascii") + b"\0")
    for part in parts:
        h.update(part)
    return ObjectId(h.hexdigest())


def image_canonical_header(mode: str, width: int, height: int) -> bytes:
    """The header hashed in front of an image's raw pixel buffer."""
    return f"{mode} {width} {height}\n".encode("ascii")


def is_id(value: object) -> bool:
    """Whether ``value`` is a full object id."""
    return isinstance(value, str) and _FULL.match(value) is not None


def check_id(value: str) -> ObjectId:
    """Return ``value`` as an ObjectId, or raise InvalidId if it is not 64 hex chars."""
    if not is_id(value):
        raise InvalidId(f"not an object id (64 lowercase hex chars): {value!r:.80}", value=value)
    return ObjectId(value)


def check_prefix(value: str) -> str:
    """Validate an abbreviated id (8 to 64 hex chars, like git)."""
    if not isinstance(value, str) or not _PREFIX.match(value.lower()):
        raise InvalidId(
            f"not an id or id prefix (at least {MIN_PREFIX} hex chars): {value!r:.80}",
            value=value,
        )
    return value.lower()


def short(oid: str) -> str:
    """The 12-character form shown to people."""
    return oid[:12]
