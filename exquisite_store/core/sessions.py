"""Sessions: start one from an image (file, upload, packaged fixture); defaults; budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exquisite_store import imageio
from exquisite_store.errors import ConfigError, UserError
from exquisite_store.fixtures import read_fixture
from exquisite_store.ids import ObjectId
from exquisite_store.manifests import Session
from exquisite_store.money import format_usd, parse_usd
from exquisite_store.pipeline.params import change_defaults
from exquisite_store.store import Store
from exquisite_store.store.refs import check_name

MAX_TITLE = 200
MAX_SOURCE_NAME = 200
#: a session may not be named like a page's JSON twin (``/s/NAME.json``)
JSON_SUFFIX = ".json"


@dataclass(frozen=True)
class StartImage:
    """The pixels a session starts from, where they came from, what the import did."""

    pixels: np.ndarray
    source_name: str
    notes: tuple[str, ...] = ()


def parse_frame(value: str | int | None) -> int | None:
    """The frame of an animated image to start from: a whole number from 0; None if unset."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise ConfigError(f"frame must be a whole number from 0, not {text[:40]!r}", field="frame")
    return int(text)


def _start(imported: imageio.Imported, name: str) -> StartImage:
    return StartImage(imported.pixels, name[:MAX_SOURCE_NAME], imported.notes)


def image_from_file(
    path: str, *, max_pixels: int = imageio.MAX_PIXELS, frame: int | None = None
) -> StartImage:
    """A start image read from a file (as a viewer shows it: upright, sRGB, one frame)."""
    return _start(imageio.import_file(path, max_pixels=max_pixels, frame=frame), Path(path).name)


def image_from_bytes(
    data: bytes, name: str, *, max_pixels: int = imageio.MAX_PIXELS, frame: int | None = None
) -> StartImage:
    """A start image from uploaded bytes."""
    imported = imageio.import_bytes(data, max_pixels=max_pixels, what="the upload", frame=frame)
    return _start(imported, name)


def image_from_fixture(
    name: str, *, max_pixels: int = imageio.MAX_PIXELS, frame: int | None = None
) -> StartImage:
    """A start image shipped with the package (``photo.png``, ...)."""
    data = read_fixture(name)
    return _start(imageio.import_bytes(data, max_pixels=max_pixels, what=name, frame=frame), name)


def parse_budget(value: str | None) -> int | None:
    """A budget as micro-dollars: dollars as text ("2.50"), ``none``/empty for no budget."""
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    return parse_usd(str(value))


@dataclass(frozen=True)
class NewSession:
    """Everything a new session needs, checked before any store is touched."""

    name: str
    image: StartImage
    title: str = ""
    budget_micro_usd: int | None = None


def new_session(
    name: str, image: StartImage, *, title: str = "", budget: str | None = None
) -> NewSession:
    """Check a new session's name, title and budget (a refusal writes nothing)."""
    check_name(name, "session")
    if name.lower().endswith(JSON_SUFFIX):
        # only new names: a session made before this rule stays readable everywhere
        raise UserError(
            f"session name {name!r} ends in {JSON_SUFFIX!r}, which names a page's JSON twin "
            f"in the viewer (/s/{name} would be the JSON of session {name[:-5]!r}); "
            "choose another name",
            field="name",
        )
    if len(title) > MAX_TITLE:
        raise ConfigError(f"title must be at most {MAX_TITLE} characters", field="title")
    return NewSession(name, image, title, parse_budget(budget))


def create_session(store: Store, new: NewSession) -> tuple[Session, ObjectId]:
    """Import the start image as the root step of the session, on branch ``main``."""
    return store.create_session(
        new.name,
        new.image.pixels,
        title=new.title,
        source_name=new.image.source_name,
        budget_micro_usd=new.budget_micro_usd,
        import_notes=new.image.notes,
    )


def set_defaults(store: Store, session: str, changes: Mapping[str, Any]) -> Session:
    """Change a session's step defaults (``"none"`` clears an optional one)."""
    sess = store.session(session)
    if not changes:
        return sess
    merged = change_defaults(sess.defaults, changes)
    message = "defaults: " + " ".join(f"{k}={v}" for k, v in changes.items())
    return store.update_session(session, message[:500], defaults=merged)


def set_budget(store: Store, session: str, budget: str | None) -> Session:
    """Set (or with ``none`` remove) a session's budget."""
    value = parse_budget(budget)
    return store.update_session(session, f"budget: {format_usd(value)}", budget_micro_usd=value)
