"""Frames to a film file: MP4 (H.264) and WebM (VP9) through PyAV, GIF and WebP through Pillow.

Every encoder takes the frames one at a time and holds none of them after it has
passed them on: PyAV hands each to FFmpeg's encoder; the GIF is written frame by frame
with Pillow's GIF helpers (its own animated writer keeps every frame until the end);
the animated WebP goes through Pillow's writer from a sequence image whose frames are
made as the writer seeks to them (libwebp keeps only the compressed frames).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Literal

import numpy as np
from PIL import GifImagePlugin, Image

Format = Literal["mp4", "webm", "gif", "webp"]
FORMATS: tuple[Format, ...] = ("mp4", "webm", "webp", "gif")
MIMETYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif", "webp": "image/webp"}

#: FFmpeg codec and options per video container (fast presets: a film is made on demand)
VIDEO = {
    "mp4": ("libx264", {"crf": "20", "preset": "veryfast"}),
    "webm": (
        "libvpx-vp9",
        {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
    ),
}


def _trimmer() -> Callable[[], None]:
    """The C library's ``malloc_trim(0)`` (glibc), or nothing where there is none.

    FFmpeg's encoders allocate and free frame-sized buffers from several threads, and
    glibc keeps what they free in each thread's arena: measured here, the peak memory of
    a 40-step film went from 220 MB to 428 MB that way (590 MB at 100 steps). Handing
    the freed pages back after every frame keeps it flat, at no measurable cost.
    """
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0) and None


def encode(
    frames: Iterable[np.ndarray], out: BinaryIO | str, fmt: Format, fps: int, count: int
) -> None:
    """Write ``count`` frames (``H x W x 3`` uint8) to ``out`` as a ``fmt`` film at ``fps``.

    ``out`` is a path or an open binary file. An MP4 written to a path has its index at
    the front, so a browser can start playing it before it has it all (FFmpeg moves it
    there by reopening the file by its name, which only a path has).
    """
    if fmt in VIDEO:
        _video(iter(frames), out, fmt, fps)
        return
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open(out, "wb")) if isinstance(out, str) else out
        if fmt == "gif":
            _gif(iter(frames), f, fps)
        elif fmt == "webp":
            _webp(iter(frames), f, fps, count)
        else:
            raise ValueError(f"unknown film format {fmt!r}")


def _video(frames: Iterator[np.ndarray], out: BinaryIO | str, fmt: Format, fps: int) -> None:
    import av  # imported here: it loads FFmpeg's libraries, which only a film needs

    codec, options = VIDEO[fmt]
    first = next(frames)
    h, w = first.shape[:2]
    faststart = fmt == "mp4" and isinstance(out, str)
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(out, mode="w", format=fmt, options=container_options) as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        trim = _trimmer()
        for arr in _chain(first, frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            container.mux(stream.encode(frame))
            trim()
        container.mux(stream.encode(None))  # flush the encoder's delayed frames


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _gif(frames: Iterator[np.ndarray], out: BinaryIO, fps: int) -> None:
    """A looping GIF, one local palette per frame, written as each frame comes."""
    duration = max(20, round(1000 / fps))  # GIF counts in 1/100 s; 20 ms is what players honour
    first = True
    for arr in frames:
        img = Image.fromarray(arr).quantize(256, method=Image.Quantize.FASTOCTREE)
        if first:
            header, _ = GifImagePlugin.getheader(img, info={"loop": 0, "duration": duration})
            out.write(b"".join(header))
            first = False
        params = {"duration": duration, "include_color_table": True, "disposal": 1}
        out.write(b"".join(GifImagePlugin.getdata(img, (0, 0), **params)))
    out.write(b";")  # the GIF trailer


class _Frames(Image.Image):
    """A multi-frame image whose frames are made as a writer seeks to them, in order.

    Pillow's animated writers take such an image as the whole animation; only the
    current frame (and the first, which a writer seeks back to) is held.
    """

    def __init__(self, frames: Iterator[np.ndarray], count: int) -> None:
        super().__init__()
        self._rest = frames
        self.n_frames = count
        self.is_animated = count > 1
        self._first = Image.fromarray(next(frames))
        self._at = 0
        self._show(self._first)

    def _show(self, img: Image.Image) -> None:
        self.im = img.im
        self._mode = img.mode
        self._size = img.size

    def tell(self) -> int:
        """The current frame."""
        return self._at

    def seek(self, frame: int) -> None:
        """Move to ``frame``: the next one, or back to the first."""
        if frame == self._at:
            return
        if frame == 0:
            self._show(self._first)
        elif frame == self._at + 1:
            self._show(Image.fromarray(next(self._rest)))
        else:
            raise EOFError(f"film frames are made in order, not {frame} after {self._at}")
        self._at = frame


def _webp(frames: Iterator[np.ndarray], out: BinaryIO, fps: int, count: int) -> None:
    seq = _Frames(frames, count)
    with contextlib.closing(seq):
        seq.save(
            out,
            format="WEBP",
            save_all=True,
            duration=round(1000 / fps),
            loop=0,
            quality=80,
            method=0,
        )
