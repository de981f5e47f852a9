"""Films of a branch: the planner, each format decoded by the library that wrote it, the CLI's
errors, the viewer's route and gallery, the export."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from exquisite_store.cli import cli
from exquisite_store.core import film as films
from exquisite_store.film import plan as fplan
from exquisite_store.film.render import Renderer
from exquisite_store.geometry.rect import Rect
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect

from .film_helpers import grow_branch

SIZE = (320, 240)
FPS = 8
DIRECTIONS = ["right", "down", "left", "up", "right"]


@pytest.fixture(scope="module")
def branch(tmp_path_factory):
    root = tmp_path_factory.mktemp("film") / "store"
    store = Store.init(root)
    ids = grow_branch(store, "garden", (256, 320), DIRECTIONS, 96)
    store.create_session("bare", np.full((64, 64, 3), 90, np.uint8))  # a root, no step
    return store, ids


def fitted(pixels: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A picture shown whole, centred on black, as a film frame should show it."""
    w, h = size
    ph, pw = pixels.shape[:2]
    scale = min(w / pw, h / ph)
    tw, th = round(pw * scale), round(ph * scale)
    out = np.zeros((h, w, 3), np.uint8)
    small = np.asarray(Image.fromarray(pixels).resize((tw, th), Image.Resampling.BILINEAR))
    x0, y0 = (w - tw) // 2, (h - th) // 2
    out[y0 : y0 + th, x0 : x0 + tw] = small[:, :, :3]
    return out


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def canvas_of(store: Store, step_id: str) -> np.ndarray:
    return store.canvas_pixels(store.step(step_id))


def decode(path: Path, fmt: str) -> list[np.ndarray]:
    """Every frame, decoded by the library that wrote the format."""
    if fmt in ("mp4", "webm"):
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with Image.open(path) as img:
        frames = []
        for i in range(img.n_frames):
            img.seek(i)
            frames.append((np.asarray(img.convert("RGB")), img.info["duration"]))
    if fmt == "gif":  # written frame by frame: every frame is in the file
        return [f for f, _ in frames]
    # libwebp stores a run of identical frames (a hold) once, with their summed duration
    each = round(1000 / FPS)
    assert all(ms % each == 0 for _, ms in frames), [ms for _, ms in frames]
    return [f for f, ms in frames for _ in range(ms // each)]


# --- the plan (pure) ----------------------------------------------------------------------------


def rects_of(store: Store, ids: list[str]) -> list[Rect]:
    return [canvas_rect(store.canvas(store.step(s))) for s in ids]


@pytest.mark.parametrize("mode", fplan.MODES)
def test_the_plan_starts_on_the_root_and_ends_on_the_head(branch, mode) -> None:
    store, ids = branch
    rects = rects_of(store, ids)
    frames = fplan.plan(rects, SIZE, FPS, mode)
    timing = fplan.Timing.of(FPS, mode, len(ids) - 1)
    assert len(frames) == timing.total(len(ids) - 1)
    assert (timing.hold_start, timing.per_step, timing.hold_end) == (8, 4, 12)
    assert timing.pull_back == (12 if mode == "pan" else 0)
    head = len(rects) - 1
    assert frames[-1] == fplan.Frame(head, fplan.fit(rects[-1], SIZE), rects[-1])
    if mode == "reveal":  # the head's own pixels, uncovered from the root's rectangle out
        assert frames[0] == fplan.Frame(head, fplan.fit(rects[-1], SIZE), rects[0])
        assert {f.canvas for f in frames} == {head}
    else:
        assert frames[0] == fplan.Frame(0, fplan.fit(rects[0], SIZE), rects[0])
        # each step's frames show its own canvas, its band wiped in to the whole canvas
        for k in range(1, len(rects)):
            of_k = [f for f in frames if f.canvas == k and f.clip != rects[-1] or f.canvas == k]
            assert of_k[0].clip.area > rects[k - 1].area or k == head
            assert rects[k].contains(of_k[0].clip) and of_k[0].clip.contains(rects[k - 1])
    clips = [f.clip.area for f in frames]
    assert clips == sorted(clips)  # nothing shown is ever hidden again


def test_pan_keeps_the_roots_scale_and_follows_the_band(branch) -> None:
    store, ids = branch
    rects = rects_of(store, ids)
    frames = fplan.plan(rects, SIZE, FPS, "pan")
    timing = fplan.Timing.of(FPS, "pan", len(ids) - 1)
    root_view = fplan.fit(rects[0], SIZE)
    steps = frames[timing.hold_start : timing.hold_start + timing.per_step * (len(ids) - 1)]
    assert {(round(f.camera.w, 6), round(f.camera.h, 6)) for f in steps} == {
        (round(root_view.w, 6), round(root_view.h, 6))
    }
    # at the end of the step that grew left, the view shows the new band (the canvas's left)
    left = steps[timing.per_step * 3 - 1]
    assert left.camera.x == pytest.approx(rects[3].x)


def test_a_long_branch_shares_at_most_30_seconds_between_its_steps() -> None:
    assert fplan.Timing.of(12, "pan", 10).per_step == 6  # half a second a step
    assert fplan.Timing.of(12, "pan", 100).per_step == 4  # 400 frames: 33 s
    assert fplan.Timing.of(12, "zoom-out", 5000).per_step == 1  # never none
    rects = [Rect(0, 0, 64 + 8 * k, 64) for k in range(101)]
    assert len(fplan.plan(rects, SIZE, 12, "zoom-out")) == 12 + 100 * 4 + 18


def test_a_film_needs_a_step() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        fplan.plan([Rect(0, 0, 10, 10)], SIZE, FPS, "pan")


# --- rendering and encoding --------------------------------------------------------------------


FORMATS = ["mp4", "webm", "webp", "gif"]
#: mean difference (levels) a codec may add to a frame of this coarse-noise picture
TOLERANCE = {"mp4": 4.0, "webm": 4.0, "webp": 4.0, "gif": 4.0}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", fplan.MODES)
def test_the_film_decodes_to_its_frames_root_first_head_last(branch, tmp_path, fmt, mode) -> None:
    store, ids = branch
    options = films.film_options(f"out.{fmt}", size="320x240", fps=FPS, mode=mode)
    out = tmp_path / f"film.{fmt}"
    with open(out, "wb") as f:
        made = films.write_film(store, ids[-1], options, f)
    frames = decode(out, fmt)
    steps = len(ids) - 1
    assert len(frames) == made.frames == fplan.Timing.of(FPS, mode, steps).total(steps)
    assert {fr.shape for fr in frames} == {(240, 320, 3)}
    head = canvas_of(store, ids[-1])
    want_last = fitted(head)
    if mode == "reveal":  # the head's pixels over the root's rectangle, the rest dark
        r0, rh = rects_of(store, [ids[0], ids[-1]])
        masked = np.zeros_like(head)
        inside = r0.relative_to(rh)
        masked[inside.y : inside.bottom, inside.x : inside.right] = head[
            inside.y : inside.bottom, inside.x : inside.right
        ]
        want_first = fitted(masked)
    else:
        want_first = fitted(canvas_of(store, ids[0]))
    tol = TOLERANCE[fmt]
    assert diff(frames[0], want_first) < tol
    assert diff(frames[-1], want_last) < tol
    # and the comparison can tell them apart: the first frame is not the head
    assert diff(frames[0], want_last) > 2 * tol


def test_frames_read_only_what_they_show(tmp_path) -> None:
    """A film of a canvas 16x wider than the frame never composes more than ~2x the frame."""
    store = Store.init(tmp_path / "s")
    ids = grow_branch(store, "wide", (256, 512), ["right"] * 12, 400)
    assert store.canvas(store.step(ids[-1])).width == 5312
    options = films.film_options("x.webm", size="320x180", fps=4, mode="zoom-out")
    canvas_ids, frames = films.film_plan(store, ids[-1], options)
    renderer = Renderer(store, canvas_ids, options.size)
    largest, reads = [0], []
    compose, get_image = renderer._compose, store.objects.get_image

    def counting_compose(index, level, region):
        largest[0] = max(largest[0], region.w * region.h)
        return compose(index, level, region)

    def counting_get(oid, **kw):
        reads.append(oid)
        return get_image(oid, **kw)

    renderer._compose = counting_compose
    store.objects.get_image = counting_get
    for _ in renderer.frames(frames):
        pass
    assert largest[0] <= (2 * 320 + 2) * (2 * 180 + 2)
    assert len(reads) == len(set(reads))  # each store tile decoded once for the whole film


# --- the command line ---------------------------------------------------------------------------


def run(store: Store, *args: str):
    return CliRunner().invoke(cli, ["--store", str(store.root), *args])


@pytest.mark.parametrize("fmt", FORMATS)
def test_exq_film_writes_the_film_and_reports_it(branch, tmp_path, fmt) -> None:
    store, ids = branch
    out = tmp_path / f"garden.{fmt}"
    r = run(store, "film", "garden", "-o", str(out), "--size", "320x240", "--fps", "8")
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: 52 frames, 320x240, 8 fps, 5 steps up to {ids[-1][:12]} (pan)" in r.output
    assert "filming 52 frames" in r.stderr
    assert len(decode(out, fmt)) == 52
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left
    assert out.stat().st_mode & 0o044 == 0o044  # readable by others, as any file you write


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "x.avi"], "error: unknown film format (.avi): name the output .mp4, .webm"),
        (["-o", "x"], "error: unknown film format (no suffix)"),
        (
            ["-o", "x.mp4", "--size", "321x240"],
            "error: bad film size '321x240': give WxH with even",
        ),
        (["-o", "x.mp4", "--size", "big"], "error: bad film size 'big'"),
        (["-o", "x.mp4", "--size", "8x8"], "error: bad film size '8x8'"),
        (["-o", "x.gif", "--fps", "0"], "error: bad film fps 0: give 1 to 60"),
        (["-o", "x.gif", "--branch", "nope"], "error: session 'garden' has no branch 'nope'"),
    ],
)
def test_bad_film_arguments_are_one_line_errors(branch, tmp_path, args, message) -> None:
    store, _ = branch
    r = CliRunner().invoke(cli, ["--store", str(store.root), "film", "garden", *args])
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_branch_with_no_step_has_no_film(branch, tmp_path) -> None:
    store, _ = branch
    out = tmp_path / "bare.webm"
    r = CliRunner().invoke(cli, ["--store", str(store.root), "film", "bare", "-o", str(out)])
    assert r.exit_code == 1
    assert "is a root: a film needs at least one step after it" in r.stderr
    assert r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_mode_is_a_usage_error(branch) -> None:
    store, _ = branch
    r = run(store, "film", "garden", "-o", "x.mp4", "--mode", "spin")
    assert r.exit_code == 2 and "'spin' is not one of 'pan', 'zoom-out', 'reveal'" in r.output


# --- the viewer and the export ------------------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    store = Store.init(tmp_path / "store")
    ids = grow_branch(store, "garden", (64, 96), ["right", "down"], 32)
    return store, ids


def test_the_gallery_plays_each_branchs_film(small) -> None:
    from viewer import create_app
    from viewer.films import GALLERY_FILM

    store, ids = small
    client = create_app({"EXQ_STORE": str(store.root), "TESTING": True}).test_client()
    html = client.get("/s/garden/gallery").get_data(as_text=True)
    assert f'src="/-/film/{ids[-1]}.webm"' in html and 'preload="none"' in html
    resp = client.get(f"/-/film/{ids[-1]}.webm")
    assert resp.status_code == 200 and resp.mimetype == "video/webm"
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    body = resp.get_data()
    resp.close()  # the test client leaves the served file open until the response is closed
    with av.open(io.BytesIO(body)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    opts = GALLERY_FILM
    assert len(frames) == fplan.Timing.of(opts.fps, opts.mode, 2).total(2)
    assert frames[0].shape == (opts.size[1], opts.size[0], 3)
    assert diff(frames[-1], fitted(canvas_of(store, ids[-1]), opts.size)) < TOLERANCE["webm"]
    again = client.get(f"/-/film/{ids[-1]}.webm", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304
    assert list((store.root / "cache" / "film").rglob("*.webm"))  # made once, into cache/


def test_the_viewer_refuses_a_film_of_a_root_or_a_non_step(small) -> None:
    from viewer import create_app

    store, ids = small
    client = create_app({"EXQ_STORE": str(store.root), "TESTING": True}).test_client()
    r = client.get(f"/-/film/{ids[0]}.webm", headers={"Accept": "application/json"})
    assert r.status_code == 400 and "a film needs at least one step" in r.get_json()["error"]
    canvas_id = store.step(ids[-1]).result.canvas_id
    assert client.get(f"/-/film/{canvas_id}.webm").status_code == 404
    assert client.get("/-/film/zz.webm").status_code == 404


def test_the_export_includes_the_film_of_each_exported_branch(small, tmp_path) -> None:
    from viewer.export import export_session

    store, ids = small
    out = tmp_path / "site"
    export_session(store.root, "garden", out)
    film = out / "film" / f"{ids[-1]}.webm"
    assert film.is_file()
    assert f'src="film/{ids[-1]}.webm"' in (out / "gallery.html").read_text()
    with av.open(str(film)) as container:
        assert sum(1 for _ in container.decode(video=0)) > 2
