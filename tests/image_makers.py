"""Start images as users' cameras and editors write them, made in the test (Pillow, numpy).

A Display P3 ICC profile is built here byte by byte (ICC v4 matrix/TRC: primaries
adapted to D50 by Bradford, the sRGB transfer curve as a parametric curve), because
ImageCms can create only sRGB, LAB and XYZ profiles; ImageCms reads it back in the
tests. ``p3_to_srgb`` is the same conversion done independently with numpy.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
SRGB = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    """Image bytes as Pillow writes them."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


# --- colour ------------------------------------------------------------------------------


def _xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries, white=D65) -> np.ndarray:
    """The linear-RGB -> XYZ matrix of a colour space (columns: the primaries)."""
    m = np.stack([_xyz(*p) for p in primaries], axis=1)
    return m * np.linalg.solve(m, _xyz(*white))


def _adapt(m: np.ndarray, src_white: np.ndarray, dst_white: np.ndarray) -> np.ndarray:
    gain = (BRADFORD @ dst_white) / (BRADFORD @ src_white)
    return np.linalg.inv(BRADFORD) @ np.diag(gain) @ BRADFORD @ m


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(v) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)


def _srgb_curve() -> bytes:  # parametric curve type 3: the sRGB transfer function
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para\0\0\0\0" + struct.pack(">H2x", 3) + b"".join(_s15(v) for v in params)


def _text(text: str) -> bytes:
    s = text.encode("utf-16-be")
    return b"mluc\0\0\0\0" + struct.pack(">II4sII", 1, 12, b"enUS", len(s), 28) + s


def icc_profile(name: str, primaries=P3, white=D65) -> bytes:
    """An ICC v4 display profile: ``primaries`` and ``white``, the sRGB tone curve."""
    white_xyz = _xyz(*white)
    m = _adapt(rgb_to_xyz(primaries, white), white_xyz, D50_XYZ)
    chad = _adapt(np.eye(3), white_xyz, D50_XYZ)
    tags = [
        (b"desc", _text(name)),
        (b"cprt", _text("test data, no rights reserved")),
        (b"wtpt", _xyz_tag(D50_XYZ)),
        (b"rXYZ", _xyz_tag(m[:, 0])),
        (b"gXYZ", _xyz_tag(m[:, 1])),
        (b"bXYZ", _xyz_tag(m[:, 2])),
        (b"rTRC", _srgb_curve()),
        (b"gTRC", _srgb_curve()),
        (b"bTRC", _srgb_curve()),
        (b"chad", b"sf32\0\0\0\0" + b"".join(_s15(v) for v in chad.flatten())),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I4sI", size, b"lcms", 0x04300000)
        + b"mntrRGB XYZ "
        + bytes(12)  # date
        + b"acsp"
        + b"APPL"
        + bytes(20)  # flags, manufacturer, model, attributes
        + bytes(4)  # rendering intent: perceptual
        + _xyz_tag(D50_XYZ)[8:]
        + b"lcms"
        + bytes(44)  # profile id, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def p3_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """Display P3 8-bit pixels as sRGB 8-bit, computed with numpy (clipped to the gamut)."""
    v = rgb.astype(np.float64) / 255
    lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    m = np.linalg.inv(rgb_to_xyz(SRGB)) @ rgb_to_xyz(P3)
    out = np.clip(lin @ m.T, 0, 1)
    enc = np.where(out <= 0.0031308, out * 12.92, 1.055 * out ** (1 / 2.4) - 0.055)
    return np.rint(enc * 255).astype(np.uint8)


# --- files -------------------------------------------------------------------------------


def png_16bit_grey(values: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG of ``values`` (uint16)."""
    img = Image.fromarray(values.astype(np.uint16))
    assert img.mode == "I;16"
    return encode(img)


def with_orientation(img: Image.Image, orientation: int, fmt: str = "PNG", **kw) -> bytes:
    """``img`` stored as is, with an EXIF orientation tag telling viewers how to turn it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif.tobytes(), **kw)


COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def animated(fmt: str, size: tuple[int, int] = (16, 12)) -> bytes:
    """An animation of three frames: red, green, blue (GIF, PNG or WEBP)."""
    frames = [Image.new("RGB", size, c) for c in COLOURS]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra
    )
