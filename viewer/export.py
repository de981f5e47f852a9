"""``exq export``: the viewer's pages as a static site, rendered by the app itself.

Pages are rendered through the app's own test client with ``EXPORT=True``: every
link a page makes goes through ``href``, which records it, and the exporter renders
or copies each recorded path until nothing new is linked. So the export never drifts
from the viewer and never has a dangling link. Files are named by id: a re-export
writes only what is new or changed. Where an export may go, how each file is written
and what ``--prune`` may remove: ``export_files``.

What keeps it linear in the session: step pages draw the canvas from the store's tiles
(linked once, shared by every page) around the step's new band, compare pages only
where their steps differ; full-canvas PNGs are written for branch heads only (every
step with ``full_canvases``); a page whose inputs (``page_inputs``) are what the last
export rendered it from is not rendered again, its links followed from the record.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import blake3

from exquisite_store import imageio
from exquisite_store.errors import ExqError, StoreError, UserError
from exquisite_store.manifests import to_builtins
from exquisite_store.store import Store
from exquisite_store.store.canvas import write_canvas_png
from viewer import create_app, derived_images, films, pyramid
from viewer.contexts import PageOptions, session_family, session_steps
from viewer.export_files import ExportReport, ExportWriter, open_target
from viewer.export_folders import seed_layout
from viewer.web import export_path, live_url

PAGES = ("index", "session", "gallery", "step", "attempt", "compare")
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
#: how far (px) around a step's new band its exported page shows the canvas
WINDOW = 512
#: zlib level of exported full-canvas PNGs: a head's PNG is written again whenever its
#: branch moves, and 1 is about 1.4x faster than 6 (a little larger on photographs)
PNG_LEVEL = 1


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
    full_canvases: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Write SESSION as a static site into ``out`` (see ``export_files.open_target``).

    ``full_canvases``: a full-canvas PNG of every step, not only of branch heads.
    """
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
            "EXPORT_WINDOW": WINDOW,
            "EXPORT_FULL_CANVASES": full_canvases,
        }
    )
    client = app.test_client()
    report = ExportReport()
    w = ExportWriter(out, report, previous, store.root, path_of=_path_of)
    canvases = _Canvases(store, w)
    try:
        opts: PageOptions = app.extensions["exq_page_options"]
        inputs = functools.partial(page_inputs, store, session, opts)
        links: dict[str, tuple[str, str, dict]] = {
            "index.html": ("session", session, {}),
            "gallery.html": ("gallery", session, {}),
        }
        queue = list(links)
        files: list[str] = []
        for path in queue:  # grows as pages link new paths
            kind, value, params = links[path]
            if kind not in PAGES:
                files.append(path)  # written once every page is known (see _write_files)
                continue
            key = inputs(path, kind, value, params)
            made = w.page_known(path, key) if key else None
            if made is None:
                made = _render(app, client, w, path, kind, value, params)
                if key:
                    w.record_page(path, key, made)
                report.pages += 1
                report.rendered.add(path)
            if progress:
                progress(path)
            for target, *link in made:
                if target not in links:
                    links[target] = tuple(link)
                    queue.append(target)
                    if link[0] == "canvas":  # start encoding it now, beside the pages
                        canvases.want(target, link[1])
            canvases.flush()
        _write_files(store, w, session, opts, {p: links[p] for p in files}, canvases)
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
        canvases.close()
        with contextlib.suppress(ExqError):  # keep what was written listed, if the disk lets us
            w.finish(session)
        raise
    canvases.close()
    w.finish(session)
    return report


def _path_of(kind: str, value: str, params: dict) -> str:
    """Where ``href`` (or ``static_href``) puts a link's file in the export."""
    return f"static/{value}" if kind == "static" else export_path(kind, value, **params)


def _render(app, client, w: ExportWriter, path: str, kind: str, value: str, params: dict) -> list:
    """Render one page through the app into the export; the links it made."""
    made: dict[str, tuple[str, str, dict]] = {}
    app.extensions["export_links"] = made  # href() records this page's links here
    with app.test_request_context():
        url = live_url(kind, value, **params)
    resp = client.get(url, headers={"X-Export-Depth": str(path.count("/"))})
    if resp.status_code != 200:  # the viewer's own reason, asked for as JSON
        again = client.get(url, headers={"Accept": "application/json"})
        why = again.get_json(silent=True) or {}
        reason = why.get("error") or f"status {resp.status_code}"
        raise StoreError(f"cannot export {url}: {reason}")
    w.put(path, resp.get_data())
    return [(target, *link) for target, link in made.items()]


@functools.cache
def code_key() -> str:
    """A hash of the code that renders pages: a new exporter renders every page again."""
    h = blake3.blake3()
    roots = (HERE, HERE.parent / "exquisite_store")
    for f in sorted(p for r in roots for p in r.rglob("*") if p.suffix in (".py", ".html")):
        h.update(f.as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def page_inputs(
    store: Store, session: str, opts: PageOptions, path: str, kind: str, value: str, params: dict
) -> str | None:
    """A hash of everything a page's bytes depend on; None for pages always rendered.

    Steps and attempts never change (their id names their content); what can is a
    step's family (children, failed tries, the branches at it), and the options of
    the export. The session page and the gallery show every head: always rendered.
    """
    if kind == "step":
        fam = session_family(store, session, opts)
        what = [fam.children.get(value, []), fam.failed.get(value, []), fam.heads.get(value, [])]
    elif kind == "attempt":
        what = []
    elif kind == "compare":
        what = list(params.get("ids", []))
    else:
        return None
    flags = [sorted(opts.branches), opts.window, opts.full_canvases]
    blob = json.dumps([code_key(), path, kind, value, flags, what], sort_keys=True)
    return blake3.blake3(blob.encode()).hexdigest(length=16)


class _Canvases:
    """Full-canvas PNGs, encoded on a thread beside the rest of the export.

    zlib and PNG decoding let go of the GIL, so a head's canvas is encoded while pages
    render; the results are written by the export's own thread, in order.
    """

    def __init__(self, store: Store, w: ExportWriter) -> None:
        self.store, self.w = store, w
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-png")
        self.pending: deque[tuple[str, str, Future]] = deque()

    def want(self, path: str, step_id: str) -> None:
        """Encode a step's canvas into ``path``, unless the last export's file is still whole."""
        # the export's dearest work: skipped when the file the previous export wrote
        # from this step is still there, whole
        if not self.w.known(path, f"step:{step_id}"):
            fut = self.pool.submit(canvas_png_with_recipe, self.store, step_id)
            self.pending.append((path, step_id, fut))

    def flush(self, wait: bool = False) -> None:
        """Write the PNGs that are done (all of them, waiting, with ``wait``)."""
        while self.pending and (wait or self.pending[0][2].done()):
            path, step_id, fut = self.pending.popleft()
            try:
                data = fut.result()
            except UserError:
                raise
            except ExqError as exc:  # the store could not give it (a link, a damaged object)
                raise StoreError(f"cannot export {path}: {exc.message}") from None
            self.w.put(path, data, eid=f"step:{step_id}")

    def close(self) -> None:
        """Stop: what has not started is dropped (a failed export), the rest finishes."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def _write_files(
    store: Store,
    w: ExportWriter,
    session: str,
    opts: PageOptions,
    files: dict[str, tuple],
    canvases: _Canvases,
) -> None:
    """Write the files the pages link to, in an order that decodes each tile once.

    Thumbnails and diffs go step by step in the order the steps were made (a step's
    thumbnail reduces its new tiles, its diff with its parent reads the same tiles
    again while they are remembered). Full-canvas PNGs were started as the pages
    linked them (``_Canvases``); they are written as they finish.
    """
    steps = session_steps(store, session, opts)
    made = {sid: i for i, sid in enumerate(sorted(steps, key=lambda s: (steps[s].created_ms, s)))}
    rank = {"static": 0, "object": 1, "thumb": 2, "diff": 2}

    def order(path: str) -> tuple:
        kind, value, params = files[path]
        sid = params.get("b", value)
        return rank.get(kind, 3), made.get(sid, len(made)), kind != "thumb", path

    heads = set(session_family(store, session, opts).heads)
    for path in sorted(files, key=order):
        kind, value, params = files[path]
        w.report.files += 1
        if kind != "canvas":  # canvases: see _Canvases
            _file(store, w, path, kind, value, params)
        if kind == "thumb" and value in heads:  # the next step's thumbnail starts from it
            derived_images.keep_level(store, store.step(value).result.canvas_id)
        canvases.flush()
    canvases.flush(wait=True)


def _file(store: Store, w: ExportWriter, path: str, kind: str, value: str, params: dict) -> None:
    if kind == "object":
        # an object's place in the export is its place in the store: the previous export's
        # entry names it, and while that file is whole the store is not even looked at
        if not w.known(path, path):  # object_path refuses a link anywhere below the root
            w.link(path, store.storage.object_path(value))
    elif kind == "thumb":
        step = store.step(value)
        cid = step.result.canvas_id
        parent = store.step(step.parent).result.canvas_id if step.parent else None
        _derived(
            store,
            w,
            path,
            derived_images.thumb_name(cid),
            f"thumb:{cid}",
            lambda: derived_images.thumb_data(store, cid, parent),
        )
    elif kind == "diff":
        a, b = store.step(value).result.canvas_id, store.step(params["b"]).result.canvas_id
        if not w.known(path, f"diff:{a}-{b}"):  # the rectangle follows from the canvases
            name = derived_images.diff_name(a, b, derived_images.diff_rect(store, a, b))
            _derived(
                store, w, path, name, f"diff:{a}-{b}", lambda: derived_images.diff_data(store, a, b)
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


def _derived(
    store: Store, w: ExportWriter, path: str, name: str, eid: str, make: Callable[[], bytes]
) -> None:
    """A thumbnail or diff: the viewer's cached file when there is one, else made here.

    Made here, it is not cached in the store (an export adds nothing to the store);
    a re-export knows it by ``eid`` (what it was made from) and its size.
    """
    if w.known(path, eid):
        return
    found = derived_images.find_cached(store, name)
    if found is not None:
        w.link(path, found, eid=eid)
    else:
        w.put(path, make(), eid=eid)


def canvas_png_with_recipe(store: Store, step_id: str, level: int = PNG_LEVEL) -> bytes:
    """A step's full canvas as PNG, with its step id, parent and recipe in an iTXt chunk.

    Encoded band by band from the tiles: memory follows one row of tiles.
    """
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
    buf = io.BytesIO()
    write_canvas_png(
        store.objects,
        store.canvas(step),
        buf,
        compress_level=level,
        text={imageio.ITXT_KEY: json.dumps(meta, sort_keys=True)},
    )
    return buf.getvalue()
