"""What a backend returned, as pixels."""

from __future__ import annotations

import numpy as np

from exquisite_store import imageio
from exquisite_store.errors import DecodeError, ImageRejected


def decode_output(data: bytes) -> tuple[np.ndarray, DecodeError | None]:
    """A backend's image as stored (RGB, RGBA, or L) and, for a grey one, why it is refused.

    Bytes that are no image raise DecodeError; a greyscale image decodes (so it can be
    kept and looked at) but is refused, since it would lose the canvas's colour.
    """
    arr, refused, _keep = decode_output_keeping(data)
    return arr, refused


def decode_output_keeping(data: bytes) -> tuple[np.ndarray, DecodeError | None, bool]:
    """``decode_output``, and whether ``data`` itself can be stored for those pixels.

    An 8-bit RGB/RGBA/L PNG decodes to exactly the array, so it is kept as returned
    (no second encoding); anything else (JPEG, WebP, a palette, 16 bits) is stored
    re-encoded from the decoded pixels.
    """
    try:
        img = imageio.decode(data, what="backend output")
    except ImageRejected as exc:
        raise DecodeError(exc.message, bytes=len(data)) from exc
    keep = img.format == "PNG" and img.mode in ("RGB", "RGBA", "L")
    if img.mode in ("L", "LA", "I", "I;16", "F", "1"):
        refused = DecodeError(
            f"backend returned a {img.mode} (greyscale) image; expected colour", mode=img.mode
        )
        return imageio.to_array(img.convert("L")), refused, keep
    return imageio.to_array(imageio.normalize_mode(img)), None, keep
