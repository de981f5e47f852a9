"""PatchMatch's warm workers: reused across steps, replaced when killed, n fills at once.

Each test has a pool of its own (two workers, as on the 2-core machine), closed at the
end, so the process-wide pool of the other suites is never touched.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from exquisite_store import imageio
from exquisite_store.backends.base import BackendRequest
from exquisite_store.backends.patchmatch import PatchMatchBackend
from exquisite_store.backends.worker_pool import WorkerPool
from exquisite_store.errors import Cancelled, PermanentBackendError, TransientBackendError
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

from .helpers import fixture_array, rng_image


@pytest.fixture
def pool():
    p = WorkerPool("patchmatch", task="fill", size=2)
    yield p
    p.close()


@pytest.fixture
def st(tmp_path) -> Store:
    store = Store.init(tmp_path / "store", tile_size=64)
    store.create_session("s", fixture_array("odd.png")[:96, :128])
    return store


def request(image: np.ndarray, paint_from: int, n: int, seed: int = 7) -> BackendRequest:
    """Paint every column from ``paint_from`` on."""
    mask = np.full((*image.shape[:2], 4), 255, np.uint8)
    mask[:, paint_from:, 3] = 0
    return BackendRequest(
        image=image, mask=mask, prompt="", n=n, seed=seed, model="", request_id="r"
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(predicate, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError("timed out")


def grow(st: Store, backend: PatchMatchBackend, branch: str, n: int = 2, **kw):
    return run_step(
        st,
        "s",
        parent=st.refs.branches("s")["main"],
        branch=branch,
        backend_impl=backend,
        extension_px=24,
        overlap_px=4,
        seed=11,
        n=n,
        fresh=True,  # every call fills: the run cache would answer a repeat from the store
        **kw,
    )


def test_parallel_candidates_give_the_same_pixels_as_sequential_ones(pool) -> None:
    """Three candidates on two workers (one worker fills two) equal one process filling
    them one after another, byte for byte, and each seed gives its own fill."""
    req = request(fixture_array("odd.png")[:64, :96], paint_from=64, n=3)
    parallel = PatchMatchBackend(pool=pool).generate(req).images
    sequential = PatchMatchBackend(in_process=True).generate(req).images
    assert parallel == sequential
    pixels = [imageio.to_array(imageio.decode(b, what="fill")) for b in parallel]
    assert len({p.tobytes() for p in pixels}) == 3  # seed, seed+1, seed+2 differ
    assert len(pool.idle_pids()) == 2  # both workers filled, and both are kept


def test_the_warm_workers_are_reused_across_steps(st, pool) -> None:
    backend = PatchMatchBackend(pool=pool)
    first = grow(st, backend, "a")
    warm = sorted(pool.idle_pids())
    second = grow(st, PatchMatchBackend(pool=pool), "b")  # a new backend, the same pool
    assert len(warm) == 2 and sorted(pool.idle_pids()) == warm
    assert all(alive(pid) for pid in warm)
    # the same recipe from the same parent: warm workers fill exactly what cold ones did
    a = [st.step(s).result.canvas_id for s in first.step_ids]
    b = [st.step(s).result.canvas_id for s in second.step_ids]
    assert a == b and len(set(a)) == 2


def test_a_killed_idle_worker_is_replaced(st, pool) -> None:
    grow(st, PatchMatchBackend(pool=pool), "a", n=1)
    (pid,) = pool.idle_pids()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)  # dead (a zombie until the pool finds it and reaps it)
    out = grow(st, PatchMatchBackend(pool=pool), "b", n=1)
    assert out.step_ids and out.calls == 1  # no failed call: it was never handed the fill
    (new,) = pool.idle_pids()
    assert new != pid and alive(new) and not alive(pid)


def test_a_worker_killed_mid_fill_is_replaced_and_the_retry_commits(tmp_path, pool) -> None:
    st = Store.init(tmp_path / "store")
    st.create_session("s", rng_image(256, 256, seed=3))  # a fill of a few seconds
    killed: list[int] = []

    def kill_first_busy() -> None:
        pid = wait_for(lambda: (pool.busy_pids() or [None])[0])
        time.sleep(0.2)  # started: the worker is filling now
        killed.append(pid)
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_first_busy)
    killer.start()
    out = run_step(
        st,
        "s",
        backend_impl=PatchMatchBackend(pool=pool),
        extension_px=128,
        overlap_px=8,
        seed=1,
        retry_delays=(0.0,),
    )
    killer.join()
    assert out.step_ids and out.calls == 2  # the first call died, the retry filled
    assert killed and killed[0] not in pool.idle_pids() and not alive(killed[0])


@pytest.mark.parametrize("stop", ["cancel", "deadline"])
def test_stopping_a_parallel_fill_kills_every_worker_of_it(pool, stop) -> None:
    rng = np.random.default_rng(0)
    small = request(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), 24, n=2)
    PatchMatchBackend(pool=pool).generate(small)  # warm: the big fill below is filling
    warm = set(pool.idle_pids())
    req = request(rng.integers(0, 256, (768, 768, 3), dtype=np.uint8), 256, n=2)  # many s
    cancel = threading.Event()
    seen: list[list[int]] = []

    def watch() -> None:
        seen.append(wait_for(lambda: len(pool.busy_pids()) == 2 and pool.busy_pids()))
        time.sleep(0.3)
        if stop == "cancel":
            cancel.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    backend = PatchMatchBackend(pool=pool, deadline_s=3.0 if stop == "deadline" else 900.0)
    t0 = time.monotonic()
    expected = Cancelled if stop == "cancel" else TransientBackendError
    with pytest.raises(expected, match="cancelled during|took longer than 3s"):
        backend.generate(req, cancel)
    assert time.monotonic() - t0 < 6.0
    watcher.join()
    (pids,) = seen
    assert set(pids) == warm and all(not alive(pid) for pid in pids)
    assert pool.busy_pids() == [] and pool.idle_pids() == []
    # the pool recovers: the next call starts new workers and fills
    assert len(backend.generate(small).images) == 2
    assert not set(pool.idle_pids()) & set(pids)


def test_a_failing_fill_is_a_permanent_error_and_the_worker_stays(pool) -> None:
    backend = PatchMatchBackend(pool=pool, patch_size=-1)  # pypatchmatch refuses it
    req = request(rng_image(32, 48), 24, n=1)
    with pytest.raises(PermanentBackendError, match="patchmatch failed: ValueError"):
        backend.generate(req)
    (pid,) = pool.idle_pids()
    assert len(PatchMatchBackend(pool=pool).generate(req).images) == 1
    assert pool.idle_pids() == [pid]


def broken_warm_up() -> None:
    """A worker's warm-up that fails, as a missing native library would."""
    raise OSError("libpatchmatch.so: cannot open shared object file")


def test_a_worker_that_cannot_start_gives_its_reason() -> None:
    broken = WorkerPool("patchmatch", task="fill", warm=broken_warm_up, size=1)
    try:
        with pytest.raises(PermanentBackendError, match="could not start: OSError: libpatch"):
            PatchMatchBackend(pool=broken).generate(request(rng_image(32, 48), 24, n=1))
    finally:
        broken.close()
