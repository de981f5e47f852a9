"""Start images arrive as the user sees them: 16-bit, EXIF-turned, colour-managed, animated.

Every test image is made here (tests/image_makers.py) and every assertion is on the
pixels the user should get, through the core, the CLI and the viewer, and on the notes
the root step keeps of what the import did.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from exquisite_store import core, imageio
from exquisite_store.cli import cli
from exquisite_store.errors import ConfigError, ImageRejected
from exquisite_store.store import Store

from .image_makers import (
    COLOURS,
    SRGB,
    animated,
    encode,
    icc_profile,
    p3_to_srgb,
    png_16bit_grey,
    with_orientation,
)
from .viewer_helpers import csrf_of

# --- 16 bits -----------------------------------------------------------------------------


def test_16_bit_greyscale_keeps_its_greys() -> None:
    values = np.array([[0, 257, 32768, 65535], [1000, 20000, 40000, 60000]], np.uint16)
    got = imageio.import_bytes(png_16bit_grey(values))
    assert got.pixels.shape == (2, 4, 3)
    assert (got.pixels[:, :, 0] == got.pixels[:, :, 1]).all()
    assert (got.pixels[:, :, 0] == got.pixels[:, :, 2]).all()
    # v / 257 rounded: 16-bit mid-grey is 8-bit mid-grey, not white
    assert got.pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert got.pixels[1, :, 0].tolist() == [4, 78, 156, 233]
    assert got.notes == ("16-bit greyscale scaled to 8 bits",)


def test_16_bit_gradient_is_monotonic_and_spans_the_range() -> None:
    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(4, 256)
    grey = imageio.import_bytes(png_16bit_grey(ramp)).pixels[:, :, 0].flatten()
    assert grey[0] == 0 and grey[-1] == 255
    assert (np.diff(grey.astype(int)) >= 0).all()
    assert len(np.unique(grey)) == 256


# --- EXIF orientation -------------------------------------------------------------------

# what a viewer shows for each EXIF orientation, as numpy sees it (stored -> shown)
SHOWN = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(SHOWN))
def test_exif_orientation_is_applied(orientation: int) -> None:
    stored = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), np.uint8)
    got = imageio.import_bytes(with_orientation(Image.fromarray(stored), orientation))
    assert np.array_equal(got.pixels, SHOWN[orientation](stored))
    assert bool(got.notes) == (orientation != 1)
    if orientation != 1:
        assert got.notes[0].startswith(f"EXIF orientation {orientation}: ")


def test_a_phone_jpeg_turned_by_exif_stands_upright() -> None:
    """Orientation 6: stored landscape, shown portrait; the stored top-left is the top-right."""
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))  # a red corner at the stored top-left
    got = imageio.import_bytes(with_orientation(img, 6, "JPEG", quality=95))
    assert got.pixels.shape == (80, 40, 3)  # portrait: 40 wide, 80 high
    top_right, top_left = got.pixels[2, -3].astype(int), got.pixels[2, 2].astype(int)
    assert np.abs(top_right - (255, 0, 0)).max() < 12, top_right
    assert np.abs(top_left - (0, 0, 255)).max() < 12, top_left
    assert got.notes == ("EXIF orientation 6: turned 90° clockwise",)


# --- colour profiles ----------------------------------------------------------------------

P3_PIXELS = np.array([[[200, 60, 60], [60, 200, 60], [90, 140, 210], [128, 128, 128]]], np.uint8)


def test_a_display_p3_image_is_converted_to_srgb() -> None:
    p3 = icc_profile("Display P3")
    got = imageio.import_bytes(encode(Image.fromarray(P3_PIXELS), icc_profile=p3))
    cms = ImageCms.profileToProfile(
        Image.fromarray(P3_PIXELS),
        ImageCms.ImageCmsProfile(io.BytesIO(p3)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
    )
    assert np.array_equal(got.pixels, np.asarray(cms)), "the values ImageCms gives"
    # and the colours are right by an independent computation (within rounding)
    assert np.abs(got.pixels.astype(int) - p3_to_srgb(P3_PIXELS)).max() <= 1
    # the P3 red (200, 60, 60) is a more saturated red in sRGB: dropping the profile
    # would have shifted it by 18 levels
    assert got.pixels[0, 0].tolist() == [217, 42, 52]
    assert got.pixels[0, 3].tolist() == [128, 128, 128], "grey stays grey"
    assert got.notes == ("converted from its colour profile 'Display P3' to sRGB",)


def test_a_p3_image_with_alpha_keeps_its_alpha() -> None:
    rgba = np.dstack([P3_PIXELS, np.array([[0, 64, 200, 255]], np.uint8)])
    data = encode(Image.fromarray(rgba, "RGBA"), icc_profile=icc_profile("Display P3"))
    got = imageio.import_bytes(data)
    assert got.pixels.shape == (1, 4, 4)
    assert got.pixels[0, :, 3].tolist() == [0, 64, 200, 255]
    assert np.abs(got.pixels[:, :, :3].astype(int) - p3_to_srgb(P3_PIXELS)).max() <= 1


def test_an_srgb_profile_changes_nothing_and_notes_nothing() -> None:
    px = np.random.default_rng(2).integers(0, 256, (16, 16, 3), np.uint8)
    for profile in (
        icc_profile("an sRGB display", SRGB),
        ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    ):
        got = imageio.import_bytes(encode(Image.fromarray(px), icc_profile=profile))
        assert np.array_equal(got.pixels, px) and got.notes == ()


def test_a_profile_that_cannot_be_used_is_ignored_and_said_so() -> None:
    px = np.full((4, 4, 3), 77, np.uint8)
    broken = imageio.import_bytes(encode(Image.fromarray(px), icc_profile=b"not a profile"))
    assert np.array_equal(broken.pixels, px)
    assert broken.notes[0].startswith("embedded colour profile ignored: it cannot be used")
    grey = Image.fromarray(px[:, :, 0])  # an RGB profile on a greyscale image
    wrong = imageio.import_bytes(encode(grey, icc_profile=icc_profile("Display P3")))
    assert (wrong.pixels == 77).all() and "ignored" in wrong.notes[0]


# --- animation ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_an_animated_image_is_refused_unless_a_frame_is_picked(fmt: str) -> None:
    data = animated(fmt)
    with pytest.raises(ImageRejected) as info:
        imageio.import_bytes(data, what="anim")
    assert "anim is animated (3 frames)" in info.value.message
    assert "--frame N" in info.value.message and "0 to 2" in info.value.message
    for frame, colour in enumerate(COLOURS):
        got = imageio.import_bytes(data, frame=frame)
        assert got.pixels.shape == (12, 16, 3)
        assert (got.pixels == colour).all(), (fmt, frame, got.pixels[0, 0])
        assert got.notes == (f"frame {frame} of 3 of an animated {fmt}",)
    with pytest.raises(ImageRejected, match="frame 3 is not one of them"):
        imageio.import_bytes(data, frame=3)


def test_a_cameras_multi_picture_jpeg_gives_its_main_picture() -> None:
    main, extra = Image.new("RGB", (32, 24), (250, 10, 10)), Image.new("RGB", (32, 24))
    data = encode(main, "MPO", save_all=True, append_images=[extra], quality=95)
    got = imageio.import_bytes(data)
    assert np.abs(got.pixels.astype(int) - (250, 10, 10)).max() < 8
    assert got.notes == ("the main picture of 2 in a multi-picture JPEG",)


def test_a_still_image_takes_frame_0_and_nothing_else() -> None:
    data = encode(Image.new("RGB", (4, 4), (9, 9, 9)))
    assert imageio.import_bytes(data, frame=0).notes == ()
    with pytest.raises(ImageRejected, match="has 1 frame: frame 1 is not one of them"):
        imageio.import_bytes(data, frame=1)


@pytest.mark.parametrize("text", ["-1", "x", "1.5", "²", "9" * 12])
def test_a_bad_frame_number_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigError, match="frame must be a whole number from 0"):
        core.parse_frame(text)
    assert core.parse_frame("") is None and core.parse_frame(" 2 ") == 2


# --- the root step keeps the notes; front ends show them --------------------------------


def test_a_root_step_with_nothing_done_has_no_notes_field(tmp_path) -> None:
    store = Store.init(tmp_path / "store")
    start = core.image_from_bytes(encode(Image.new("RGB", (8, 8), (1, 2, 3))), "plain.png")
    _, root = core.create_session(store, core.new_session("plain", start))
    assert b"import_notes" not in store.objects.get_bytes(root)[1]


def test_exq_new_and_log_show_what_the_import_did(tmp_path) -> None:
    src = tmp_path / "phone.jpg"
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    src.write_bytes(with_orientation(img, 6, "JPEG", quality=95))
    store = tmp_path / "store"
    res = CliRunner().invoke(cli, ["--store", str(store), "new", "phone", str(src)])
    assert res.exit_code == 0, res.output
    assert "(40x80) on main" in res.output
    assert "on import: EXIF orientation 6: turned 90° clockwise" in res.output
    log = CliRunner().invoke(cli, ["--store", str(store), "log", "phone"])
    assert "on import: EXIF orientation 6: turned 90° clockwise" in log.output
    root = Store.open(store).step(Store.open(store).refs.head("phone", "main"))
    assert root.import_notes == ("EXIF orientation 6: turned 90° clockwise",)


def test_exq_new_refuses_an_animation_and_takes_the_frame_asked_for(tmp_path) -> None:
    gif = tmp_path / "anim.gif"
    gif.write_bytes(animated("GIF"))
    store = tmp_path / "store"
    refused = CliRunner().invoke(cli, ["--store", str(store), "new", "a", str(gif)])
    assert refused.exit_code == 1
    assert refused.output.splitlines()[-1].startswith("error: ")
    assert "is animated (3 frames)" in refused.output and "Traceback" not in refused.output
    assert not store.exists(), "a refusal creates no store"
    res = CliRunner().invoke(cli, ["--store", str(store), "new", "a", str(gif), "--frame", "1"])
    assert res.exit_code == 0, res.output
    assert "on import: frame 1 of 3 of an animated GIF" in res.output
    st = Store.open(store)
    assert (st.canvas_pixels(st.step(st.refs.head("a", "main"))) == (0, 255, 0)).all()
    bad = CliRunner().invoke(cli, ["--store", str(store), "new", "b", str(gif), "--frame", "-1"])
    assert bad.exit_code == 1 and "error: frame must be a whole number" in bad.output


def test_the_viewer_takes_a_frame_and_shows_the_notes(tmp_path) -> None:
    from viewer import create_app

    Store.init(tmp_path / "store")
    app = create_app({"EXQ_STORE": str(tmp_path / "store"), "TESTING": True})
    client = app.test_client()
    token = csrf_of(client)

    def upload(**fields):
        data = {"name": "anim", **fields, "image": (io.BytesIO(animated("PNG")), "anim.png")}
        return client.post(
            "/-/new",
            data=data,
            headers={"Accept": "application/json", "X-CSRF-Token": token},
            content_type="multipart/form-data",
        )

    refused = upload()
    assert refused.status_code == 400 and "is animated (3 frames)" in refused.get_json()["error"]
    bad = upload(frame="two")
    assert bad.status_code == 400 and "frame must be a whole number" in bad.get_json()["error"]
    made = upload(frame="2")
    assert made.status_code == 201, made.get_data()
    root = made.get_json()["root"]
    page = client.get(f"/step/{root}").get_data(as_text=True)
    assert "On import" in page and "frame 2 of 3 of an animated PNG" in page
    twin = json.loads(client.get(f"/step/{root}.json").get_data())
    assert twin["manifest"]["import_notes"] == ["frame 2 of 3 of an animated PNG"]
    st = Store.open(tmp_path / "store")
    assert (st.canvas_pixels(st.step(root)) == (0, 0, 255)).all()
    form = client.get("/").get_data(as_text=True)
    assert 'name="frame"' in form
