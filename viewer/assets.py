"""Objects, tiles and derived images, served with immutable caching (ETag = id).

Every file is sent from a descriptor opened without following a symbolic link, so a
link planted in the store never serves a file of this machine (410 names the link).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from flask import Blueprint, Response, request, send_file

from exquisite_store.manifests import Canvas
from viewer import derived_images
from viewer.web import get_store

bp = Blueprint("assets", __name__)
IMMUTABLE = "public, max-age=31536000, immutable"
MIMES = {"png": "image/png", "txt": "text/plain; charset=utf-8", "json": "application/json"}


def _send(file: BinaryIO, etag: str, mimetype: str) -> Response:
    """Send an open file whose content never changes for this URL; 304 when the client has it."""
    if request.if_none_match.contains(etag):
        file.close()
        resp = Response(status=304)
    else:
        resp = send_file(file, mimetype=mimetype, conditional=False, etag=False, max_age=31536000)
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = IMMUTABLE
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@bp.get("/-/objects/<oid:oid>")
def object_file(oid: str):
    """Any stored object, as it is on disk."""
    ext, file = get_store().storage.open_object(oid)  # NotFound -> 404, a link -> 410
    return _send(file, oid, MIMES[ext])


def _open(path: Path) -> BinaryIO:
    """A derived image's file, opened without following a link."""
    return derived_images.open_cached(get_store(), path)


def _canvas_of(step_id: str) -> tuple[str, Canvas]:
    store = get_store()
    step = store.step(step_id)
    return step.result.canvas_id, store.canvas(step)


@bp.get("/-/canvas/<oid:step_id>.png")
def canvas_png(step_id: str):
    """A step's whole canvas as one PNG."""
    cid, _ = _canvas_of(step_id)
    return _send(_open(derived_images.canvas_png(get_store(), cid)), cid, "image/png")


@bp.get("/-/thumb/<oid:step_id>.png")
def thumb_png(step_id: str):
    """A step's thumbnail."""
    store = get_store()
    step = store.step(step_id)
    cid = step.result.canvas_id
    parent = store.step(step.parent).result.canvas_id if step.parent else None
    return _send(_open(derived_images.thumb_png(store, cid, parent)), "t" + cid, "image/png")


@bp.get("/-/diff/<oid:a>/<oid:b>.png")
def diff_png(a: str, b: str):
    """The difference of two steps' canvases over their common rectangle."""
    ca_id, _ = _canvas_of(a)
    cb_id, _ = _canvas_of(b)
    path = derived_images.diff_png(get_store(), ca_id, cb_id)
    return _send(_open(path), f"d{ca_id[:32]}{cb_id[:32]}", "image/png")
