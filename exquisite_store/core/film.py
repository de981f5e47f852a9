"""Films of a branch's growth: the options checked once, the chain of canvases, the film.

``exq film`` and the viewer's gallery both call ``film_options`` (every argument checked
before anything is read or written) and ``write_film``; the pure planner, the renderer
and the encoders live in ``exquisite_store/film``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

from exquisite_store.errors import UserError
from exquisite_store.film import encoders
from exquisite_store.film.plan import MODES, Frame, Mode, plan
from exquisite_store.film.render import Renderer
from exquisite_store.ids import ObjectId, short
from exquisite_store.manifests import Canvas
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect

MIN_SIDE, MAX_SIDE = 16, 3840
MAX_FPS = 60
DEFAULT_SIZE = (1280, 720)
DEFAULT_FPS = 24
DEFAULT_MODE: Mode = "pan"
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class FilmOptions:
    """How a film is made: its format, frame size, frames per second and camera mode."""

    fmt: encoders.Format
    size: tuple[int, int] = DEFAULT_SIZE
    fps: int = DEFAULT_FPS
    mode: Mode = DEFAULT_MODE

    @property
    def mimetype(self) -> str:
        """The film's media type."""
        return encoders.MIMETYPES[self.fmt]

    @property
    def name(self) -> str:
        """A file name that says what the film is (the viewer's cache key)."""
        w, h = self.size
        return f"{self.mode}-{w}x{h}-{self.fps}fps.{self.fmt}"


@dataclass(frozen=True)
class Film:
    """A film made: how many frames, of what size, from how many steps."""

    frames: int
    size: tuple[int, int]
    fps: int
    steps: int
    head: ObjectId


def format_of(filename: str) -> encoders.Format:
    """The film format of an output file's name (its suffix)."""
    suffix = filename.rpartition(".")[2].lower() if "." in filename else ""
    if suffix not in encoders.FORMATS:
        shown = f".{suffix}" if suffix else "no suffix"
        raise UserError(
            f"unknown film format ({shown}): name the output .mp4, .webm, .webp or .gif"
        )
    return cast(encoders.Format, suffix)


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` with both sides even and from 16 to 3840 (what every encoder takes)."""
    m = _SIZE.match(text.strip().lower())
    w, h = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not m or not all(MIN_SIDE <= v <= MAX_SIDE and v % 2 == 0 for v in (w, h)):
        raise UserError(
            f"bad film size {text!r}: give WxH with even sides from {MIN_SIDE} to {MAX_SIDE}, "
            "e.g. 1280x720"
        )
    return w, h


def film_options(
    filename: str, *, size: str | None = None, fps: int | None = None, mode: str | None = None
) -> FilmOptions:
    """Every film argument checked (one-line errors), before anything is read."""
    fmt = format_of(filename)
    wh = parse_size(size) if size is not None else DEFAULT_SIZE
    fps = DEFAULT_FPS if fps is None else fps
    if not 1 <= fps <= MAX_FPS:
        raise UserError(f"bad film fps {fps}: give 1 to {MAX_FPS} frames a second")
    mode = DEFAULT_MODE if mode is None else mode
    if mode not in MODES:
        raise UserError(f"unknown film mode {mode!r}: use {', '.join(MODES)}")
    return FilmOptions(fmt, wh, fps, cast(Mode, mode))


def branch_head(store: Store, session: str, branch: str | None) -> ObjectId:
    """The head step of a branch of ``session`` (HEAD's branch by default)."""
    store.session(session)
    branch = branch or store.refs.current_branch(session)
    return ObjectId(store.refs.head(session, branch))


def chain(store: Store, head: str) -> list[tuple[ObjectId, str]]:
    """``(step id, canvas id)`` from the root to ``head`` (manifests only)."""
    steps = [(sid, step.result.canvas_id) for sid, step in store.history(head)]
    steps.reverse()
    return steps


def film_plan(store: Store, head: str, options: FilmOptions) -> tuple[list[str], list[Frame]]:
    """The canvas ids (root first) and the frames of the film ending at step ``head``."""
    links = chain(store, head)
    if len(links) < 2:
        raise UserError(f"step {short(head)} is a root: a film needs at least one step after it")
    canvas_ids = [cid for _, cid in links]
    rects = [canvas_rect(store.objects.get_manifest(cid, Canvas)) for cid in canvas_ids]
    return canvas_ids, plan(rects, options.size, options.fps, options.mode)


def write_film(
    store: Store,
    head: str,
    options: FilmOptions,
    out: BinaryIO | str,
    *,
    progress: Callable[[int], None] | None = None,
) -> Film:
    """Render the film of the chain ending at ``head`` into ``out`` (a file or a path).

    ``progress(n)`` is called after each frame with the number of frames done.
    """
    canvas_ids, frames = film_plan(store, head, options)
    renderer = Renderer(store, canvas_ids, options.size)

    def rendered():
        for i, arr in enumerate(renderer.frames(frames), 1):
            yield arr
            if progress:
                progress(i)

    encoders.encode(rendered(), out, options.fmt, options.fps, len(frames))
    return Film(len(frames), options.size, options.fps, len(canvas_ids) - 1, ObjectId(head))


def frame_count(store: Store, head: str, options: FilmOptions) -> int:
    """How many frames the film of ``head`` has (for a progress bar)."""
    return len(film_plan(store, head, options)[1])
