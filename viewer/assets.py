"""Objects, tiles and derived images, served with immutable caching (ETag = id).

Every file is sent from a descriptor opened without following a symbolic link, so a
link planted in the store never serves a file of this machine (410 names the link).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from flask import Blueprint, Response, current_app, request, send_file

from exquisite_store.manifests import Canvas
from viewer import derived_images, films, pyramid
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


@bp.get("/-/film/<oid:step_id>.webm")
def film_webm(step_id: str):
    """The film of the chain ending at a step (a branch head on the gallery), made once."""
    store = get_store()
    store.step(step_id)  # 404 for an id that is no step
    path = films.film_path(store, step_id)
    return _send(_open(path), "f" + path.stem, films.GALLERY_FILM.mimetype)


# --- deep zoom: a canvas's tile pyramid (viewer/pyramid.py) ----------------------------------

TILE_RULE = "<oid:canvas_id>/<int:level>/<int(signed=True):col>/<int(signed=True):row>.png"


def pyramid_index(canvas_id: str) -> pyramid.Index:
    """A canvas's pyramid index, remembered by the app (a canvas never changes)."""
    memo = current_app.extensions.setdefault("exq_pyramids", pyramid.IndexMemo())
    return memo.get(get_store(), canvas_id)


@bp.get(f"/-/pyramid/{TILE_RULE}")
def pyramid_tile(canvas_id: str, level: int, col: int, row: int):
    """One tile of a canvas's pyramid: level 0 is 1:1, each level above is half the size."""
    index = pyramid_index(canvas_id)
    if level == 0 and (oid := pyramid.store_tile(index, col, row)) is not None:
        return object_file(oid)  # a whole tile of the store is sent as it is stored
    path = pyramid.tile_path(get_store(), index, level, col, row)
    return _send(_open(path), "p" + path.stem, "image/png")


@bp.get(f"/-/pyramid-diff/<oid:other_id>/{TILE_RULE}")
def pyramid_diff_tile(other_id: str, canvas_id: str, level: int, col: int, row: int):
    """Where two canvases differ, on one tile of the pyramid (x4, black is identical)."""
    store = get_store()
    path = pyramid.diff_path(
        store, pyramid_index(other_id), pyramid_index(canvas_id), level, col, row
    )
    return _send(_open(path), "q" + path.stem, "image/png")
