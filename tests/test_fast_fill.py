"""The ``patchmatch-fast`` fill: seeded, only the hole, no copy of the picture, and a backend.

The photos are scikit-image's bundled samples (shipped in its wheel, no download).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from skimage import data

from exquisite_store import imageio
from exquisite_store.backends import coarse_fill
from exquisite_store.backends import patchmatch as pm
from exquisite_store.backends.base import BackendRequest
from exquisite_store.backends.registry import make_backend
from exquisite_store.backends.worker_pool import WorkerPool
from exquisite_store.errors import Cancelled, TransientBackendError
from exquisite_store.geometry import fill_defects
from exquisite_store.params import BACKENDS
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

from .helpers import fixture_array


def band(photo: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A right extension: an h x h crop of the photo as context, h new columns (the hole)."""
    ctx = photo[:h, :h] if photo.shape[0] >= h else photo
    image = np.zeros((h, 2 * h, 3), np.uint8)
    image[:, :h] = ctx
    hole = np.zeros((h, 2 * h), np.uint8)
    hole[:, h:] = 255
    return image, hole


@pytest.fixture(scope="module")
def astronaut():
    image, hole = band(data.astronaut()[::2, ::2], 256)
    return image, hole, coarse_fill.fill(image, hole, 5)


@pytest.fixture
def pool():
    p = WorkerPool("patchmatch", task="fill", size=2)
    yield p
    p.close()


def request(image: np.ndarray, hole: np.ndarray, n: int, seed: int = 3) -> BackendRequest:
    mask = np.full((*image.shape[:2], 4), 255, np.uint8)
    mask[hole != 0, 3] = 0
    return BackendRequest(
        image=image, mask=mask, prompt="", n=n, seed=seed, model="", request_id="r"
    )


def test_same_seed_same_pixels_other_seed_other_pixels(astronaut) -> None:
    image, hole, first = astronaut
    assert np.array_equal(coarse_fill.fill(image, hole, 5), first)
    assert not np.array_equal(coarse_fill.fill(image, hole, 6), first)


def test_only_the_hole_changes_and_what_it_held_does_not_come_through(astronaut) -> None:
    image, hole, out = astronaut
    assert np.array_equal(out[:, :256], image[:, :256])
    marked = image.copy()
    marked[:, 256:] = (255, 0, 255)  # what the hole held before: none of it comes through
    got = coarse_fill.fill(marked, hole, 5)[:, 256:].astype(np.int32)
    assert (np.abs(got - (255, 0, 255)).max(axis=2) < 60).mean() < 0.001
    assert out[:, 256:].std() > 20  # not one flat colour


def test_it_does_not_copy_the_picture_across_the_seam(astronaut) -> None:
    """PatchMatch at full scale copies the astronaut whole (a second face): most of its
    textured blocks are copies. The fast fill repeats fewer."""
    image, hole, out = astronaut
    old = pm.fill(image, hole, 5)
    old_rate = fill_defects.repeat_rate(old, hole != 0)
    new_rate = fill_defects.repeat_rate(out, hole != 0)
    assert old_rate > 0.6
    assert new_rate < old_rate


def test_the_detail_pass_puts_back_fine_texture() -> None:
    """The half-scale fill alone is smooth; with the detail pass, the band's pixel-to-pixel
    change comes near the context's (the cat's fur)."""
    image, hole = band(data.chelsea(), 256)
    out = coarse_fill.fill(image, hole, 1).astype(np.float32)
    h, w = hole.shape
    smooth = coarse_fill.double(coarse_fill.halve(out), h, w)

    def fine(a: np.ndarray, cols: slice) -> float:
        return float(np.abs(np.diff(a[:, cols], axis=1)).mean())

    inner = slice(256 + 32, 512)  # past the seam band refilled at full scale
    assert fine(out, inner) > 1.4 * fine(smooth, inner)
    assert fine(out, inner) > 0.5 * fine(out, slice(0, 256))


def test_the_reuse_penalty_spreads_the_sources() -> None:
    """A flat guide matches every flat source alike: without the penalty one source is
    stamped everywhere; with it, the blocks take many different ones."""
    rng = np.random.default_rng(0)
    h, w = 128, 256
    hole = np.zeros((h, w), bool)
    hole[:, 128:] = True
    base = np.full((h, w, 3), 100.0, np.float32)
    detail = rng.normal(0, 10, (h, w, 3)).astype(np.float32)
    detail[hole] = 0
    tgt = coarse_fill._target_windows(hole)

    def distinct_patches(penalty: float) -> int:
        old = coarse_fill.REUSE_PENALTY
        coarse_fill.REUSE_PENALTY = penalty
        try:
            out = coarse_fill.transfer_detail(base, base, detail, hole)
        finally:
            coarse_fill.REUSE_PENALTY = old
        return len({out[y : y + 8, x : x + 8].tobytes() for y, x in tgt if x >= 144})

    assert distinct_patches(0.0) <= 3
    assert distinct_patches(coarse_fill.REUSE_PENALTY) > 20


def test_a_small_frame_is_the_full_scale_fill() -> None:
    image = fixture_array("odd.png")[:40, :64]
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[:, 40:] = 255
    assert np.array_equal(coarse_fill.fill(image, hole, 9), pm.fill(image, hole, 9))


def test_the_backend_fills_in_the_pool_as_in_process(pool) -> None:
    image, hole = band(data.coffee()[::2, ::2], 128)
    req = request(image, hole, n=2)
    parallel = pm.FastPatchMatchBackend(pool=pool).generate(req).images
    assert parallel == pm.FastPatchMatchBackend(in_process=True).generate(req).images
    assert len(set(parallel)) == 2  # seed and seed + 1
    pixels = imageio.to_array(imageio.decode(parallel[0], what="fill"))
    assert np.array_equal(pixels, coarse_fill.fill(image, hole, 3))


@pytest.mark.parametrize("stop", ["cancel", "deadline"])
def test_the_fast_fill_is_cancellable_and_has_a_deadline(pool, stop) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1024, 1536, 3), dtype=np.uint8)
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[:, 512:] = 255
    cancel = threading.Event()
    if stop == "cancel":
        threading.Timer(0.5, cancel.set).start()
    backend = pm.FastPatchMatchBackend(pool=pool, deadline_s=1.0 if stop == "deadline" else 900)
    with pytest.raises(Cancelled if stop == "cancel" else TransientBackendError):
        backend.generate(request(image, hole, n=2), cancel)
    assert pool.busy_pids() == []


def test_a_step_with_patchmatch_fast_commits_and_says_so(tmp_path) -> None:
    assert "patchmatch-fast" in BACKENDS
    store = Store.init(tmp_path / "store", tile_size=64)
    store.create_session("s", fixture_array("photo.png")[:128, :128])
    backend = make_backend("patchmatch-fast", store, "s")
    assert isinstance(backend, pm.FastPatchMatchBackend)
    backend.in_process = True
    out = run_step(store, "s", backend_impl=backend, extension_px=96, overlap_px=8, seed=4)
    step = store.step(out.step_ids[0])
    assert step.recipe.backend == "patchmatch-fast"
    again = run_step(
        store,
        "s",
        parent=step.parent,
        branch="b",
        backend_impl=backend,
        extension_px=96,
        overlap_px=8,
        seed=4,
        fresh=True,  # filled again, not answered from the run cache
    )
    assert store.step(again.step_ids[0]).result.canvas_id == step.result.canvas_id
