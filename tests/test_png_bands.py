"""Full-canvas PNGs written band by band: the same pixels as the canvas, any size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from exquisite_store import imageio
from exquisite_store.store import Store, put_canvas
from exquisite_store.store.canvas import iter_bands, write_canvas_png

from .helpers import rng_image


@pytest.mark.parametrize("channels", [3, 4])
def test_a_streamed_png_reads_back_bit_for_bit(channels) -> None:
    store = Store.memory(tile_size=64)
    arr = rng_image(200, 333, seed=channels, channels=channels)
    canvas = put_canvas(store.objects, arr, -70, 30, 64)
    bands = list(iter_bands(store.objects, canvas))
    # bands follow the tile rows: 30..64, 64..128, 128..192, 192..230
    assert [b.shape[0] for b in bands] == [34, 64, 64, 38]
    buf = io.BytesIO()
    write_canvas_png(store.objects, canvas, buf, text={"exquisite-store": '{"step": "é"}'})
    img = Image.open(io.BytesIO(buf.getvalue()))
    img.load()
    assert img.mode == ("RGB" if channels == 3 else "RGBA")
    assert np.array_equal(np.asarray(img), arr)
    assert img.text == {"exquisite-store": '{"step": "é"}'}


def test_rows_must_add_up_to_the_header() -> None:
    with pytest.raises(ValueError, match="2 rows written, the header says 3"):
        imageio.write_png_bands(io.BytesIO(), 4, 3, "RGB", [np.zeros((2, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="expected H x 4 x 3"):
        imageio.write_png_bands(io.BytesIO(), 4, 3, "RGB", [np.zeros((3, 5, 3), np.uint8)])
