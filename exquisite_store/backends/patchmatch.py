"""The offline default: PatchMatch content-aware fill (``pypatchmatch``), seeded.

It ignores prompt text. Fills run in warm worker processes (one pool per process,
started on the first fill and reused by every step after it), the ``n`` candidates
in parallel across the cores, so a slow fill can be cancelled and never holds the
GIL of a server.
"""

from __future__ import annotations

import threading

import numpy as np

from exquisite_store import imageio
from exquisite_store.backends.base import BackendRequest, BackendResult, LocalBackend
from exquisite_store.backends.worker_pool import WorkerPool

PATCH_SIZE = 7
#: a fill that takes longer than this is stopped (its workers killed): a transient error
DEADLINE_S = 900.0


def fill(
    image: np.ndarray, hole: np.ndarray, seed: int, patch_size: int = PATCH_SIZE
) -> np.ndarray:
    """Fill the ``hole`` (non-zero) pixels of an RGB image; same inputs, same output.

    Every inpainting starts from the seed set just before it, so a fill's result does
    not depend on the fills the same process ran before (a warm worker gives the same
    pixels as a fresh one).
    """
    from patchmatch import patch_match

    patch_match.set_random_seed(seed % 2**32)
    return patch_match.inpaint(image, hole, patch_size=patch_size)


def fill_png(image: np.ndarray, hole: np.ndarray, seed: int, patch_size: int) -> bytes:
    """``fill``, encoded as the PNG a backend returns (a worker's job)."""
    return imageio.encode_png(imageio.from_array(fill(image, hole, seed, patch_size)))


def warm_up() -> None:  # pragma: no cover - runs in a worker
    """Load the native library once, when a worker starts."""
    from patchmatch import patch_match

    if not patch_match.patchmatch_available:
        raise RuntimeError("the patchmatch native library is not available")


#: the process's fill workers, shared by every PatchMatchBackend (and thread) in it
POOL = WorkerPool("patchmatch", task="fill", warm=warm_up)


class PatchMatchBackend(LocalBackend):
    """Seeded PatchMatch fill of the masked area; candidate ``i`` uses ``seed + i``."""

    name = "patchmatch"
    ignores_prompt = True

    def __init__(
        self,
        *,
        patch_size: int = PATCH_SIZE,
        in_process: bool = False,
        deadline_s: float = DEADLINE_S,
        pool: WorkerPool | None = None,
    ) -> None:
        self.patch_size = patch_size
        self.in_process = in_process
        self.deadline_s = deadline_s
        self.pool = pool or POOL

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Fill the frame's transparent-mask area ``n`` times."""
        hole = (request.mask[:, :, 3] == 0).astype(np.uint8) * 255
        image = np.ascontiguousarray(request.image[:, :, :3])
        jobs = [(image, hole, request.seed + i, self.patch_size) for i in range(request.n)]
        if self.in_process:
            outs = [fill_png(*job) for job in jobs]
        else:
            outs = self.pool.run(fill_png, jobs, cancel=cancel, deadline_s=self.deadline_s)
        return BackendResult(images=outs, metadata={"patch_size": str(self.patch_size)})
