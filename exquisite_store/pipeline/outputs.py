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
    try:
        img = imageio.decode(data, what="backend output")
    except ImageRejected as exc:
        raise DecodeError(exc.message, bytes=len(data)) from exc
    if img.mode in ("L", "LA", "I", "I;16", "F", "1"):
        refused = DecodeError(
            f"backend returned a {img.mode} (greyscale) image; expected colour", mode=img.mode
        )
        return imageio.to_array(img.convert("L")), refused
    return imageio.to_array(imageio.normalize_mode(img)), None
