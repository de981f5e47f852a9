"""``exq export``: the viewer's pages as a static site, rendered by the app itself.

Pages are rendered through the app's own test client with ``EXPORT=True``: every
link a page makes goes through ``href``, which records it, and the exporter renders
or copies each recorded path until nothing new is linked. So the export never drifts
from the viewer and never has a dangling link. Files are named by id: a re-export
writes only what is new or changed. Where an export may go, how each file is written
and what ``--prune`` may remove: ``export_files``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from exquisite_store import imageio
from exquisite_store.errors import ExqError, StoreError, UserError
from exquisite_store.manifests import to_builtins
from exquisite_store.store import Store
from viewer import create_app, derived_images, films, pyramid
from viewer.contexts import session_steps
from viewer.export_files import ExportReport, ExportWriter, open_target
from viewer.export_folders import seed_layout
from viewer.web import live_url

PAGES = ("index", "session", "gallery", "step", "attempt", "compare")
STATIC = Path(__file__).resolve().parent / "static"


def count_pages(store: Store, session: str) -> int:
    """About how many pages an export of the whole session renders (for a progress bar)."""
    store.session(session)
    return len(session_steps(store, session)) + len(store.attempts(session)) + 2


def export_session(
    store_root: Path,
    session: str,
    out: Path,
    *,
    branches: list[str] | None = None,
    layout_steps: bool = False,
    prune: bool = False,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Write SESSION as a static site into ``out`` (see ``export_files.open_target``)."""
    if store_root is None or str(store_root).startswith("s3://"):
        raise UserError("exq export reads a store on disk, not yet one on object storage")
    store = Store.open(store_root)
    sess = store.session(session)
    known = store.refs.branches(session)
    for b in branches or []:
        if b not in known:
            raise UserError(f"session {session!r} has no branch {b!r}")
    previous = open_target(out, store.root or store_root, session, force=force)
    app = create_app(
        {
            "EXQ_STORE": str(store_root),
            "EXPORT": True,
            "TESTING": True,
            "EXPORT_BRANCHES": set(branches or []),
        }
    )
    client = app.test_client()
    report = ExportReport()
    w = ExportWriter(out, report, previous, store.root)
    try:
        links: dict = app.extensions.setdefault("export_links", {})
        links["index.html"] = ("session", session, {})
        links["gallery.html"] = ("gallery", session, {})
        done: set[str] = set()
        while len(done) < len(links):
            for path, (kind, value, params) in list(links.items()):
                if path in done:
                    continue
                done.add(path)
                if kind in PAGES:
                    with app.test_request_context():
                        url = live_url(kind, value, **params)
                    resp = client.get(url, headers={"X-Export-Depth": str(path.count("/"))})
                    if resp.status_code != 200:  # the viewer's own reason, asked for as JSON
                        again = client.get(url, headers={"Accept": "application/json"})
                        why = again.get_json(silent=True) or {}
                        reason = why.get("error") or f"status {resp.status_code}"
                        raise StoreError(f"cannot export {url}: {reason}")
                    w.put(path, resp.get_data())
                    report.pages += 1
                    if progress:
                        progress(path)
                else:
                    _file(store, w, path, kind, value, params)
                    report.files += 1
        if layout_steps:
            names = branches or sorted(known)
            seed_layout(store, session, names, store.refs.current_branch(session), w.put)
        w.put(
            "export.json",
            json.dumps(
                {
                    "session": to_builtins(sess),
                    "branches": {b: known[b] for b in branches or known},
                },
                indent=2,
                sort_keys=True,
            ).encode(),
        )
        if prune:
            w.prune()
    except BaseException:
        with contextlib.suppress(ExqError):  # keep what was written listed, if the disk lets us
            w.finish(session)
        raise
    w.finish(session)
    return report


def _file(store: Store, w: ExportWriter, path: str, kind: str, value: str, params: dict) -> None:
    if kind == "object":  # object_path refuses a link anywhere below the store's root
        w.link(path, store.storage.object_path(value))
    elif kind == "canvas":
        # composing a whole canvas is the export's dearest work: skip it when the file
        # the previous export wrote from this step is still there, whole
        if not w.known(path, f"step:{value}"):
            w.put(path, canvas_png_with_recipe(store, value), eid=f"step:{value}")
    elif kind == "thumb":
        w.link(path, derived_images.thumb_png(store, store.step(value).result.canvas_id))
    elif kind == "diff":
        a, b = store.step(value), store.step(params["b"])
        w.link(
            path,
            derived_images.diff_png(
                store, store.canvas(a), store.canvas(b), a.result.canvas_id, b.result.canvas_id
            ),
        )
    elif kind == "pyramid":  # a canvas's deep zoom: every tile of every level, by cell
        for (level, col, row), src in pyramid.all_tiles(store, pyramid.read_index(store, value)):
            at = f"{path}/{level}/{col}/{row}.png"
            w.link(at, store.storage.object_path(src) if isinstance(src, str) else src)
    elif kind == "film":  # a branch's film on the gallery, made once into the store's cache
        w.link(path, films.film_path(store, value))
    elif kind == "static":
        w.put(path, (STATIC / value).read_bytes())
    else:
        raise ExqError(f"cannot export a {kind}")


def canvas_png_with_recipe(store: Store, step_id: str) -> bytes:
    """A step's full canvas as PNG, with its step id, parent and recipe in an iTXt chunk."""
    step = store.step(step_id)
    meta = {
        "step": step_id,
        "session": step.session,
        "parent": step.parent,
        "canvas": step.result.canvas_id,
        "recipe": to_builtins(step.recipe) if step.recipe else None,
        "recipe_id": step.recipe_id,
        "prompt": store.objects.get_text(step.recipe.prompt_id) if step.recipe else "",
    }
    pixels = store.canvas_pixels(step)
    return imageio.encode_png(
        imageio.from_array(pixels),
        compress_level=6,
        text={imageio.ITXT_KEY: json.dumps(meta, sort_keys=True)},
    )
