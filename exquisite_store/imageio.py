"""The one module that decodes and encodes images (Pillow), with size limits."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np
from PIL import Image

from exquisite_store.errors import ImageRejected

#: Largest image accepted from a user or a model, in pixels (a decompression-bomb guard).
MAX_PIXELS = 64 * 1024 * 1024
#: Largest image file read from a user (no compressed image of MAX_PIXELS needs more).
MAX_FILE_BYTES = 256 * 1024 * 1024
CANVAS_MODES = ("RGB", "RGBA")
STORED_MODES = ("RGB", "RGBA", "L", "LA")


def decode(data: bytes, *, max_pixels: int = MAX_PIXELS, what: str = "image") -> Image.Image:
    """Decode bytes into a fully loaded Pillow image, or raise ImageRejected."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageRejected(
                    f"{what} is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}",
                    width=w,
                    height=h,
                )
            img.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            f"{what} is too large to decode safely: over the limit of {max_pixels} pixels"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageRejected(f"{what} is not an image in a format Pillow reads") from exc
    except Exception as exc:  # Pillow raises many types for broken input
        raise ImageRejected(f"{what} cannot be decoded: {type(exc).__name__}: {exc}") from exc
    return img


def probe(data: bytes, *, what: str = "image") -> tuple[str, int, int]:
    """Format, width and height from an image's header, without decoding its pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return str(img.format), int(img.size[0]), int(img.size[1])
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"{what} is too large to open safely: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageRejected(f"{what} is not an image in a format Pillow reads") from exc
    except Exception as exc:  # Pillow raises many types for broken headers
        raise ImageRejected(f"{what} cannot be read: {type(exc).__name__}: {exc}") from exc


def normalize_mode(img: Image.Image) -> Image.Image:
    """Bring an image to a canvas mode: RGBA when it carries alpha, else RGB."""
    if img.mode in CANVAS_MODES:
        return img
    has_alpha = img.mode in ("LA", "PA", "La") or (img.mode == "P" and "transparency" in img.info)
    return img.convert("RGBA" if has_alpha else "RGB")


def to_array(img: Image.Image) -> np.ndarray:
    """Pixels as a contiguous HxWxC (or HxW for L) uint8 array."""
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def from_array(arr: np.ndarray) -> Image.Image:
    """A Pillow image from an HxW or HxWx{3,4} uint8 array."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.frombuffer(mode, (arr.shape[1], arr.shape[0]), arr.tobytes(), "raw", mode, 0, 1)


def mode_of(arr: np.ndarray) -> str:
    """The Pillow mode name of an array's channel layout."""
    if arr.ndim == 2:
        return "L"
    return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]


ITXT_KEY = "exquisite-store"


def encode_png(
    img: Image.Image, *, compress_level: int = 1, text: dict[str, str] | None = None
) -> bytes:
    """PNG bytes (with optional iTXt chunks); the id never depends on the encoding."""
    from PIL import PngImagePlugin

    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level, pnginfo=info)
    return buf.getvalue()


def read_png_text(path: str) -> dict[str, str]:
    """The text chunks (tEXt/zTXt/iTXt) of a PNG file."""
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise ImageRejected(f"{path} is a {img.format} file, not a PNG")
            img.load()
            return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"{path} is too large to read safely: {exc}") from exc
    except OSError as exc:
        raise ImageRejected(f"{path} cannot be read as a PNG: {exc}") from exc


def load_file_bytes(
    data: bytes, *, max_pixels: int = MAX_PIXELS, what: str = "image"
) -> np.ndarray:
    """Decode user-supplied bytes into a canvas-mode array (RGB or RGBA)."""
    return to_array(normalize_mode(decode(data, max_pixels=max_pixels, what=what)))


def read_image_file(path: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file given by a user into a canvas-mode array."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ImageRejected(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:  # refused whole: a cut-off file would "not decode"
        raise ImageRejected(
            f"{path} is too large: over the limit of {MAX_FILE_BYTES // (1024 * 1024)} MB",
            limit_bytes=MAX_FILE_BYTES,
        )
    return load_file_bytes(data, max_pixels=max_pixels, what=str(path))


def write_png(path: str, arr: np.ndarray, *, text: dict[str, str] | None = None) -> None:
    """Save an array as a PNG file, with optional iTXt chunks."""
    with open(path, "wb") as f:
        f.write(encode_png(from_array(arr), compress_level=6, text=text))


_PNG_COLOUR_TYPES = {"RGB": (2, 3), "RGBA": (6, 4)}


def _chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind + data)
    f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))


def _paeth_filtered(rows: np.ndarray, prev: np.ndarray, channels: int) -> np.ndarray:
    """PNG filter type 4 (Paeth) of ``rows`` (H x W*C uint8) below row ``prev``."""
    x = rows.astype(np.int16)
    up = np.vstack([prev[None, :].astype(np.int16), x[:-1]])
    left = np.zeros_like(x)
    left[:, channels:] = x[:, :-channels]
    up_left = np.zeros_like(x)
    up_left[:, channels:] = up[:, :-channels]
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    return ((x - pred) & 0xFF).astype(np.uint8)


def write_png_bands(
    f: BinaryIO,
    width: int,
    height: int,
    mode: str,
    bands: Iterable[np.ndarray],
    *,
    compress_level: int = 6,
    text: dict[str, str] | None = None,
) -> None:
    """Write a PNG from row bands (top to bottom, each H x width x C).

    Memory follows one band, never the whole image. Rows use the Paeth filter, as
    encoders do for photos; the pixels read back bit for bit.
    """
    colour_type, channels = _PNG_COLOUR_TYPES[mode]
    f.write(b"\x89PNG\r\n\x1a\n")
    _chunk(f, b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
    for key, value in (text or {}).items():
        _chunk(f, b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))
    z = zlib.compressobj(compress_level)
    prev = np.zeros(width * channels, dtype=np.uint8)
    rows_written = 0
    for band in bands:
        if band.ndim != 3 or band.shape[1:] != (width, channels) or band.dtype != np.uint8:
            raise ValueError(f"a band of shape {band.shape}, expected H x {width} x {channels}")
        rows = np.ascontiguousarray(band).reshape(band.shape[0], width * channels)
        filtered = _paeth_filtered(rows, prev, channels)
        lines = np.hstack([np.full((rows.shape[0], 1), 4, np.uint8), filtered])
        data = z.compress(lines.tobytes())
        if data:
            _chunk(f, b"IDAT", data)
        prev = rows[-1].copy()
        rows_written += rows.shape[0]
    if rows_written != height:
        raise ValueError(f"{rows_written} rows written, the header says {height}")
    _chunk(f, b"IDAT", z.flush())
    _chunk(f, b"IEND", b"")
